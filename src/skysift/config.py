"""Configuration loading and validation, run before any workflow job starts.

The workflow configuration is YAML read with :func:`yaml.safe_load` only, then
checked against the JSON schema in ``workflow/schemas/config.schema.yaml``:
types, ranges, required and unknown keys. Errors are rewritten to name the key
(``simulate.pairs.n_stars``) and what was expected. Keys the schema marks with
``x-path`` are then resolved against the project directory and checked:

``existing-file``
    must be an existing regular file;
``existing-dir``
    must be an existing directory;
``output-dir``
    must lie inside the project directory and not be an existing file.

This module imports only PyYAML and jsonschema (both Snakemake dependencies),
so the Snakefile can use it however the jobs' software is deployed.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from skysift.errors import ConfigError

__all__ = [
    "PAIRS_TABLE_COLUMNS",
    "derive_seed",
    "load_config",
    "load_schema",
    "read_pairs_table",
    "read_yaml",
    "validate_config",
]

#: Columns of a pairs table (tab-separated); masks, noise maps (1 sigma) and
#: weight maps (inverse variance) are optional.
PAIRS_TABLE_COLUMNS = (
    "pair_id", "science", "reference", "science_mask", "reference_mask",
    "science_noise", "reference_noise", "science_weight", "reference_weight",
)
#: Checksum columns: optional in a pairs table, required in a data-release manifest.
CHECKSUM_COLUMNS = tuple(f"{column}_sha256" for column in PAIRS_TABLE_COLUMNS[1:])


def derive_seed(base_seed: int, *keys: object) -> int:
    """Derive an independent 31-bit seed for one job from the run seed and job keys.

    ``derive_seed(42, "simulate", "sim00")`` is stable across runs, machines and
    Python versions (it hashes text, not Python's salted ``hash``), so a job's
    randomness does not depend on which other jobs the DAG contains.
    """
    text = ":".join([str(int(base_seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file with safe loading only.

    Raises
    ------
    ConfigError
        If the file is missing or is not valid YAML (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        with path.open(encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc


def load_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the configuration JSON schema (written in YAML)."""
    schema = read_yaml(path)
    if not isinstance(schema, dict):
        raise ConfigError(f"{path}: a schema must be a mapping")
    return schema


def _key(path: Any) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _describe(error: jsonschema.ValidationError) -> str:
    """Turn a jsonschema error into 'key: what was expected, what was found'."""
    where = _key(error.absolute_path)
    validator, expected, found = error.validator, error.validator_value, error.instance
    if validator == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return f"config key '{where}': expected {wanted}, got {found!r} ({_type_name(found)})"
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(found) - set(allowed)) if isinstance(found, dict) else []
        prefix = f"{where}." if error.absolute_path else ""
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        return f"unknown config key {names}; allowed here: {', '.join(allowed)}"
    if validator == "required":
        missing = [k for k in expected if k not in found]
        prefix = f"{where}." if error.absolute_path else ""
        return f"missing required config key(s) {', '.join(prefix + k for k in missing)}"
    if validator == "enum":
        return f"config key '{where}': expected one of {expected}, got {found!r}"
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        relation = {
            "minimum": ">=",
            "maximum": "<=",
            "exclusiveMinimum": ">",
            "exclusiveMaximum": "<",
        }[validator]
        return f"config key '{where}': expected a value {relation} {expected}, got {found!r}"
    if validator in ("minItems", "maxItems"):
        return f"config key '{where}': {error.message}"
    if validator == "pattern":
        return f"config key '{where}': {found!r} does not match the pattern {expected!r}"
    return f"config key '{where}': {error.message}"


def _resolve_ref(subschema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/name``), keeping the referring schema's own keys."""
    reference = subschema.get("$ref")
    if not reference:
        return subschema
    if not reference.startswith("#/"):
        raise ConfigError(f"schema: only local $ref are supported, got {reference!r}")
    target: Any = root
    for part in reference[2:].split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in subschema.items() if k != "$ref"}}


def _fill_defaults(config: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> None:
    """Insert schema defaults for missing keys, recursively (in place)."""
    root = schema if root is None else root
    for name, subschema in schema.get("properties", {}).items():
        subschema = _resolve_ref(subschema, root)
        if name not in config and "default" in subschema:
            config[name] = copy.deepcopy(subschema["default"])
        if isinstance(config.get(name), dict) and subschema.get("type") == "object":
            _fill_defaults(config[name], subschema, root)


def _check_paths(
    config: Mapping[str, Any], schema: Mapping[str, Any], base_dir: Path, where: tuple[str, ...]
) -> list[str]:
    problems = []
    for name, subschema in schema.get("properties", {}).items():
        if name not in config:
            continue
        value = config[name]
        key = ".".join((*where, name))
        if isinstance(value, dict):
            problems += _check_paths(value, subschema, base_dir, (*where, name))
            continue
        kind = subschema.get("x-path")
        if kind is None or value is None:
            continue
        resolved = (base_dir / value).resolve()
        shown = f"'{value}' (resolved to {resolved})"
        if kind == "existing-file" and not resolved.is_file():
            problems.append(f"config key '{key}': file {shown} does not exist")
        elif kind == "existing-dir" and not resolved.is_dir():
            problems.append(f"config key '{key}': directory {shown} does not exist")
        elif kind == "output-dir":
            if resolved.exists() and not resolved.is_dir():
                problems.append(f"config key '{key}': {shown} exists and is not a directory")
            elif not resolved.is_relative_to(base_dir.resolve()):
                problems.append(
                    f"config key '{key}': {shown} lies outside the project directory {base_dir.resolve()}"
                )
    return problems


def validate_config(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] = ".",
    source: str = "config",
) -> dict[str, Any]:
    """Validate a configuration and return a copy with schema defaults filled in.

    Parameters
    ----------
    config : mapping
        The configuration as loaded.
    schema : mapping
        JSON schema (draft 2020-12) with skysift's ``x-path`` annotations.
    base_dir : str or path-like
        Directory that relative paths are resolved against (the project root).
    source : str
        Where the configuration came from, for messages.

    Returns
    -------
    dict
        The validated configuration with defaults.

    Raises
    ------
    ConfigError
        Listing every problem found, one line each, naming the key.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: the configuration must be a mapping, got {_type_name(config)}")
    filled = copy.deepcopy(dict(config))
    _fill_defaults(filled, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = [_describe(error) for error in errors]
    if not problems:
        problems = _check_paths(filled, schema, Path(base_dir), ())
    if problems:
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(problems))
    return filled


def load_config(
    path: str | os.PathLike[str],
    schema_path: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] = ".",
) -> dict[str, Any]:
    """Read a YAML configuration safely and validate it (see :func:`validate_config`)."""
    return validate_config(read_yaml(path), load_schema(schema_path), base_dir=base_dir, source=str(path))


def read_pairs_table(path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] = ".") -> list[dict[str, Any]]:
    """Read a tab-separated table of science/reference pairs and check its paths.

    Columns: ``pair_id``, ``science``, ``reference`` and optionally
    ``science_mask`` and ``reference_mask`` (empty for none). Lines starting
    with ``#`` are comments. Paths are resolved against ``base_dir``.

    Returns
    -------
    list of dict
        One dict per pair with resolved :class:`~pathlib.Path` values (masks,
        noise and weight maps None if absent).

    Raises
    ------
    ConfigError
        On a missing column, duplicate or malformed pair id, or missing file;
        the message names the table, the line and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such pairs table")
    base = Path(base_dir)
    with path.open(encoding="utf-8", newline="") as stream:
        lines = [line for line in stream if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    header = reader.fieldnames or []
    missing = [c for c in PAIRS_TABLE_COLUMNS[:3] if c not in header]
    if missing:
        raise ConfigError(f"{path}: pairs table lacks column(s) {', '.join(missing)} (tab-separated header)")
    allowed = PAIRS_TABLE_COLUMNS + CHECKSUM_COLUMNS
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise ConfigError(f"{path}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    pairs, seen = [], set()
    for line_number, row in enumerate(reader, start=2):
        pair_id = (row.get("pair_id") or "").strip()
        if not pair_id or not all(ch.isalnum() or ch in "-_." for ch in pair_id):
            raise ConfigError(f"{path}, row {line_number}: pair_id {pair_id!r} must be letters, digits, '-', '_' or '.'")
        if pair_id in seen:
            raise ConfigError(f"{path}, row {line_number}: duplicate pair_id {pair_id!r}")
        seen.add(pair_id)
        entry: dict[str, Any] = {"pair_id": pair_id}
        for column in PAIRS_TABLE_COLUMNS[1:]:
            value = (row.get(column) or "").strip()
            if not value:
                if column in ("science", "reference"):
                    raise ConfigError(f"{path}, row {line_number}: empty '{column}' path")
                entry[column] = None
                continue
            resolved = (base / value).resolve()
            if not resolved.is_file():
                raise ConfigError(f"{path}, row {line_number}: {column} file '{value}' ({resolved}) does not exist")
            entry[column] = resolved
        for column in CHECKSUM_COLUMNS:
            value = (row.get(column) or "").strip().lower()
            if value and (len(value) != 64 or any(ch not in "0123456789abcdef" for ch in value)):
                raise ConfigError(f"{path}, row {line_number}: {column} {value!r} is not a sha256 (64 hex digits)")
            entry[column] = value or None
        for image in ("science", "reference"):
            if entry[f"{image}_noise"] is not None and entry[f"{image}_weight"] is not None:
                raise ConfigError(f"{path}, row {line_number}: {image}_noise and {image}_weight both given; give one")
        pairs.append(entry)
    return pairs
