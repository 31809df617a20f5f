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

This module imports only PyYAML, jsonschema (both Snakemake dependencies) and
the stage options classes (standard library only), so the Snakefile can use it
however the jobs' software is deployed.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from skysift.errors import ConfigError
from skysift.options import load_options_class, section_schema

__all__ = [
    "PAIRS_TABLE_COLUMNS",
    "default_schema_path",
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
    """Read the configuration JSON schema (written in YAML) and expand its ``x-options``.

    A section marked ``x-options: [module:Class, ...]`` declares no keys of its
    own: its ``properties`` are generated from the stage options classes
    (:func:`skysift.options.section_schema`), so a parameter is declared once.
    """
    schema = read_yaml(path)
    if not isinstance(schema, dict):
        raise ConfigError(f"{path}: a schema must be a mapping")
    _expand_options(schema, str(path))
    return schema


def _expand_options(node: Any, source: str) -> None:
    """Fill ``properties`` of every ``x-options`` section from its options classes (in place)."""
    if isinstance(node, list):
        for item in node:
            _expand_options(item, source)
        return
    if not isinstance(node, dict):
        return
    references = node.get("x-options")
    if references:
        if "properties" in node:
            raise ConfigError(f"{source}: a section with x-options declares no properties of its own")
        properties: dict[str, Any] = {}
        for reference in references:
            for name, entry in section_schema(load_options_class(reference)).items():
                if name in properties:
                    raise ConfigError(f"{source}: key {name!r} is declared by two options classes ({reference})")
                properties[name] = entry
        node["properties"] = properties
        node.setdefault("additionalProperties", False)
    for key, value in node.items():
        if key != "x-options":
            _expand_options(value, source)


def _options_sections(schema: Mapping[str, Any], config: Any, where: tuple[str, ...], root: Mapping[str, Any]):
    """Yield (dotted key, options classes, section values) for every ``x-options`` section present."""
    if not isinstance(config, Mapping):
        return
    for name, subschema in schema.get("properties", {}).items():
        subschema = _resolve_ref(subschema, root)
        if name not in config:
            continue
        key = (*where, name)
        if subschema.get("x-options"):
            yield ".".join(key), [load_options_class(r) for r in subschema["x-options"]], config[name]
        else:
            yield from _options_sections(subschema, config[name], key, root)


def _cross_checks(config: Mapping[str, Any]) -> list[str]:
    """Checks that span sections, run at configuration time (before any job)."""
    problems = []
    realbogus = config.get("realbogus") or {}
    model = ((config.get("train") or {}).get("realbogus") or {}).get("model") or {}
    stamp = model.get("stamp_size", 63)
    if realbogus.get("enabled", True) and "cutout_size" in realbogus and realbogus["cutout_size"] != stamp:
        problems.append(
            f"config key 'realbogus.cutout_size': {realbogus['cutout_size']} differs from the classifier's stamp size "
            f"{stamp} (train.realbogus.model.stamp_size); set both to the same odd size"
        )
    return problems


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
    if not problems:
        for key, classes, values in _options_sections(schema, filled, (), schema):
            for cls in classes:
                own = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
                try:
                    cls(**own)
                except ConfigError as exc:
                    problems.append(f"config key '{key}': {str(exc).split(': ', 1)[-1]}")
        problems += _cross_checks(filled)
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


class _PathResolver:
    """``(base / value).resolve()`` and whether it is a file, for many files in few directories.

    ``resolve`` checks every component of a path for a symbolic link (one ``lstat``
    each, in Python); a table of 20,000 files spends seconds there. Directories are
    resolved once each here; a file costs one ``stat``, and a full resolve only when
    it is itself a link.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self._directories: dict[str, str] = {}

    def __call__(self, value: str) -> tuple[Path, bool]:
        joined = os.path.join(self.base, value)
        directory, name = os.path.split(joined)
        if directory not in self._directories:
            self._directories[directory] = os.path.realpath(directory)
        candidate = os.path.join(self._directories[directory], name)
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            return Path(candidate), False
        if stat.S_ISLNK(mode) or name in ("", ".", ".."):
            resolved = Path(joined).resolve()
            return resolved, resolved.is_file()
        return Path(candidate), stat.S_ISREG(mode)


def read_pairs_table(
    path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] = ".", require_files: bool = True
) -> list[dict[str, Any]]:
    """Read a tab-separated table of science/reference pairs and check its paths.

    Columns: ``pair_id``, ``science``, ``reference`` and optionally
    ``science_mask`` and ``reference_mask`` (empty for none). Lines starting
    with ``#`` are comments. Paths are resolved against ``base_dir``; with
    ``require_files`` False they need not exist (an old release whose files
    were replaced).

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
    resolve = _PathResolver(base)
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
            resolved, is_file = resolve(value)
            if require_files and not is_file:
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


#: Where the parameter tables of the stages are generated in config/README.md.
_TABLE_MARKER = re.compile(r"<!-- options: ([a-z_.<>]+) -->\n.*?<!-- /options -->", re.DOTALL)
_TABLE_HEADER = "| key | type (unit) | default | meaning |\n|---|---|---|---|"


def default_schema_path() -> Path:
    """The workflow's configuration schema beside this source tree (``workflow/schemas/config.schema.yaml``)."""
    return Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def options_sections(schema_path: str | os.PathLike[str] | None = None) -> dict[str, list[type]]:
    """Dotted configuration section -> its options classes, from the schema's ``x-options``."""
    raw = read_yaml(Path(schema_path) if schema_path else default_schema_path())
    sections: dict[str, list[type]] = {}

    def walk(node: Any, where: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        node = _resolve_ref(node, raw)
        if node.get("x-options"):
            sections[".".join(where)] = [load_options_class(r) for r in node["x-options"]]
            return
        for name, sub in node.get("properties", {}).items():
            walk(sub, (*where, name))

    walk(raw, ())
    train = sections.pop("train.transit", None)
    for task in ("lens", "realbogus", "gw"):
        sections.pop(f"train.{task}", None)
    if train is not None:
        sections["train.<task>"] = train
    return sections


def render_parameter_tables(markdown: str | None, schema_path: str | os.PathLike[str] | None = None) -> str:
    """The Markdown parameter tables of every stage, generated from the options classes.

    With ``markdown``, rewrite each block between ``<!-- options: SECTION -->``
    and ``<!-- /options -->`` and return the text; with None, return every table.
    """
    from skysift.options import markdown_table

    sections = options_sections(schema_path)

    def table(section: str) -> str:
        if section not in sections:
            raise ConfigError(f"no options section {section!r}; known: {', '.join(sections)}")
        rows = "\n".join(markdown_table(cls, f"{section}.") for cls in sections[section])
        return f"<!-- options: {section} -->\n{_TABLE_HEADER}\n{rows}\n<!-- /options -->"

    if markdown is None:
        return "\n\n".join(table(section) for section in sections)
    return _TABLE_MARKER.sub(lambda match: table(match.group(1)), markdown)
