"""W3C PROV documents of a workflow run, and an IVOA ProvenanceDM view of them.

Built from two sources that every run leaves behind:

* the products' own provenance blocks (:mod:`skysift.provenance`): rule,
  inputs with sha256, creation time, seed, configuration hash, code version;
* Snakemake's job records in ``.snakemake/metadata`` (one JSON file per output,
  named by the base64 of its path): start and end times, parameters and the
  shell command of the job that made the output.

The PROV document has entities (files, with sha256, size and location),
activities (jobs, with rule, parameters, start and end), agents (skysift as a
software agent with version and commit, the software environment, the user)
and the relations ``used``, ``wasGeneratedBy``, ``wasDerivedFrom``,
``wasAssociatedWith`` and ``actedOnBehalfOf``. It serialises to PROV-JSON and
PROV-N with the ``prov`` package. The IVOA view (Provenance Data Model,
IVOA Recommendation 2020) lists activity descriptions per rule with their
parameters and units taken from the configuration schema.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import getpass
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prov.model import PROV_TYPE, ProvDocument

from skysift.io import read_provenance
from skysift.provenance import Provenance, sha256_file

__all__ = [
    "NAMESPACE",
    "build_prov_document",
    "ivoa_view",
    "read_job_records",
    "write_prov_documents",
]

NAMESPACE = ("skysift", "https://skysift.readthedocs.io/prov#")


def read_job_records(metadata_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read Snakemake's per-output job records, keyed by output path.

    Missing directories give an empty mapping (runs outside Snakemake).
    """
    records: dict[str, dict[str, Any]] = {}
    directory = Path(metadata_dir)
    if not directory.is_dir():
        return records
    for entry in directory.iterdir():
        try:
            path = base64.b64decode(entry.name, altchars=b"+_").decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        try:
            records[path] = json.loads(entry.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return records


def _local_name(prefix: str, text: str) -> str:
    # PROV qualified names: keep letters, digits and underscores; the exact
    # path goes into prov:location, so this only needs to be unique and valid.
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', text)}"


def _time(value: float | str | None) -> _dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc)
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def build_prov_document(
    products: Iterable[str | os.PathLike[str]],
    *,
    metadata_dir: str | os.PathLike[str] = ".snakemake/metadata",
    run_name: str = "",
) -> ProvDocument:
    """Build the PROV document of a run from its products and Snakemake's records.

    Parameters
    ----------
    products : iterable of path
        The run's products (each must carry a skysift provenance block).
    metadata_dir : str or path-like
        Snakemake's metadata directory.
    run_name : str
        Recorded on the software agent's delegation.

    Returns
    -------
    prov.model.ProvDocument
    """
    document = ProvDocument()
    prefix, uri = NAMESPACE
    document.add_namespace(prefix, uri)
    records = read_job_records(metadata_dir)
    product_paths = sorted(Path(p).as_posix() for p in products)
    blocks: dict[str, Provenance] = {path: read_provenance(path) for path in product_paths}
    entities: dict[str, Any] = {}

    def entity(path: str, sha256: str, product: Provenance | None) -> Any:
        if path in entities:
            return entities[path]
        attributes: dict[str, Any] = {
            PROV_TYPE: f"{prefix}:Product" if product is not None else f"{prefix}:InputFile",
            "prov:location": path,
            f"{prefix}:sha256": sha256,
        }
        if Path(path).is_file():
            attributes[f"{prefix}:size_bytes"] = Path(path).stat().st_size
        entities[path] = document.entity(f"{prefix}:{_local_name('file', path)}_{sha256[:12]}", attributes)
        return entities[path]

    first = next(iter(blocks.values()), None)
    user = document.agent(f"{prefix}:{_local_name('user', getpass.getuser())}", {PROV_TYPE: "prov:Person", "prov:label": getpass.getuser()})
    software_agents: dict[tuple[str, str], Any] = {}

    def software_agent(block: Provenance) -> Any:
        key = (block.skysift_version, block.git_commit)
        if key not in software_agents:
            agent = document.agent(
                f"{prefix}:{_local_name('skysift', block.skysift_version + '_' + block.git_commit[:12])}",
                {
                    PROV_TYPE: "prov:SoftwareAgent",
                    f"{prefix}:version": block.skysift_version,
                    f"{prefix}:git_commit": block.git_commit,
                    f"{prefix}:software": json.dumps(block.software, sort_keys=True),
                },
            )
            document.actedOnBehalfOf(agent, user, other_attributes={f"{prefix}:run_name": run_name} if run_name else None)
            software_agents[key] = agent
        return software_agents[key]

    activities: dict[str, Any] = {}
    for path, block in blocks.items():
        record = records.get(path, {})
        # Outputs of one Snakemake job share its job hash; without a record,
        # the rule plus creation time plus extra identify the job.
        job_key = (
            f"{block.rule}_{record['job_hash']}" if "job_hash" in record
            else f"{block.rule}_{block.created_utc}_{json.dumps(block.extra, sort_keys=True)}"
        )
        if job_key not in activities:
            attributes: dict[str, Any] = {
                PROV_TYPE: f"{prefix}:Job",
                f"{prefix}:rule": block.rule,
                f"{prefix}:config_hash": block.config_hash,
                f"{prefix}:seed": -1 if block.seed is None else block.seed,
            }
            for key, value in block.extra.items():
                attributes[f"{prefix}:{_local_name('extra', key)}"] = str(value)
            if record.get("params"):
                attributes[f"{prefix}:params"] = json.dumps(record["params"]) if not isinstance(record["params"], str) else record["params"]
            if record.get("shellcmd"):
                attributes[f"{prefix}:shell_command"] = record["shellcmd"]
            activity = document.activity(
                f"{prefix}:{_local_name('job', job_key)}",
                startTime=_time(record.get("starttime")) or _time(block.created_utc),
                endTime=_time(record.get("endtime")) or _time(block.created_utc),
                other_attributes=attributes,
            )
            document.wasAssociatedWith(activity, software_agent(block))
            for input_path, input_sha in sorted(block.inputs.items()):
                document.used(activity, entity(input_path, input_sha, blocks.get(input_path)))
            activities[job_key] = activity
        activity = activities[job_key]
        product_entity = entity(path, sha256_file(path), block)
        document.wasGeneratedBy(product_entity, activity, _time(block.created_utc))
        for input_path, input_sha in sorted(block.inputs.items()):
            document.wasDerivedFrom(product_entity, entity(input_path, input_sha, blocks.get(input_path)))
    if first is None:
        document.agent(f"{prefix}:skysift", {PROV_TYPE: "prov:SoftwareAgent"})
    return document


def _schema_sections(schema: Mapping[str, Any], config: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """Rule name -> parameters (name, value, unit, description) from ``x-activity`` sections."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, subschema in schema.get("properties", {}).items():
        value = config.get(name) if isinstance(config, Mapping) else None
        if subschema.get("type") == "object" or "properties" in subschema:
            activity = subschema.get("x-activity")
            if activity:
                found.setdefault(activity, [])
                for key, leaf in subschema.get("properties", {}).items():
                    found[activity].append(
                        {
                            "name": ".".join((*path, name, key)),
                            "value": (value or {}).get(key, leaf.get("default")),
                            "unit": leaf.get("x-unit", ""),
                            "description": leaf.get("description", ""),
                        }
                    )
            found.update(_schema_sections(subschema, value or {}, (*path, name)))
    return found


def ivoa_view(
    document: ProvDocument, schema: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """An IVOA ProvenanceDM-shaped view: activity descriptions with typed parameters.

    Each rule becomes an ``ActivityDescription`` whose ``ParameterDescription``
    entries (name, unit, description) come from the configuration schema section
    annotated ``x-activity: <rule>``; each job becomes an ``Activity`` pointing to
    its description, with its ``Parameter`` values, ``used`` and
    ``wasGeneratedBy`` links to ``Entity`` records.
    """
    parameters = _schema_sections(schema, config)
    flattened = json.loads(document.serialize(format="json"))
    prefix = NAMESPACE[0]
    descriptions: dict[str, dict[str, Any]] = {}
    activities = []
    for identifier, attributes in flattened.get("activity", {}).items():
        rule = attributes.get(f"{prefix}:rule")
        rule = rule if isinstance(rule, str) else str(rule)
        descriptions.setdefault(
            rule,
            {
                "id": f"{rule}_description",
                "name": rule,
                "type": "skysift workflow rule",
                "parameters": [{k: p[k] for k in ("name", "unit", "description")} for p in parameters.get(rule, [])],
            },
        )
        activities.append(
            {
                "id": identifier,
                "name": rule,
                "description_ref": f"{rule}_description",
                "startTime": attributes.get("prov:startTime"),
                "endTime": attributes.get("prov:endTime"),
                "parameters": [{"name": p["name"], "value": p["value"], "unit": p["unit"]} for p in parameters.get(rule, [])],
            }
        )
    entities = [
        {"id": identifier, "location": attributes.get("prov:location"), "sha256": attributes.get(f"{prefix}:sha256")}
        for identifier, attributes in flattened.get("entity", {}).items()
    ]

    def links(kind: str, first: str, second: str) -> list[dict[str, str]]:
        return [{first: r.get(f"prov:{first}"), second: r.get(f"prov:{second}")} for r in flattened.get(kind, {}).values()]

    return {
        "model": "IVOA ProvenanceDM 1.0",
        "activityDescriptions": sorted(descriptions.values(), key=lambda d: d["name"]),
        "activities": activities,
        "entities": entities,
        "agents": [{"id": k, **{a: str(v) for a, v in attrs.items()}} for k, attrs in flattened.get("agent", {}).items()],
        "used": links("used", "activity", "entity"),
        "wasGeneratedBy": links("wasGeneratedBy", "entity", "activity"),
    }


def write_prov_documents(
    products: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    schema: Mapping[str, Any],
    config: Mapping[str, Any],
    metadata_dir: str | os.PathLike[str] = ".snakemake/metadata",
    run_name: str = "",
) -> dict[str, Path]:
    """Write ``prov.json`` (PROV-JSON), ``prov.provn`` (PROV-N) and ``ivoa_provenance.json``."""
    from skysift.io import atomic_output

    document = build_prov_document(products, metadata_dir=metadata_dir, run_name=run_name)
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "prov.json", "provn": out_dir / "prov.provn", "ivoa": out_dir / "ivoa_provenance.json"}
    contents = {
        "json": document.serialize(format="json", indent=2),
        "provn": document.get_provn(),
        "ivoa": json.dumps(ivoa_view(document, schema, config), indent=2, default=str),
    }
    for key, path in paths.items():
        with atomic_output(path) as temporary:
            temporary.write_text(contents[key])
    return paths
