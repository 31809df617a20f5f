"""Stage options: every parameter of a stage declared once.

Each workflow stage has one frozen dataclass (``DiffimOptions``,
``TransitOptions``, ...) whose field names are the configuration keys of its
section. A field is declared with :func:`param`, which records its default,
description, unit and allowed range. Everything else is generated from that
one declaration:

* the JSON schema of the configuration section (:func:`section_schema`, used
  by :func:`skysift.config.load_schema` for sections marked ``x-options``);
* the command-line flags of the stage's subcommands (``--field-name``,
  :func:`add_option_flags` in :mod:`skysift.cli`);
* the checks run when an options object is built in Python
  (:meth:`StageOptions.__post_init__`);
* the parameter table of ``config/README.md`` (:func:`markdown_table`).

This module imports nothing heavier than the standard library, so the
Snakefile and ``skysift --help`` can use it without numpy or torch.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from skysift.errors import ConfigError

__all__ = [
    "Param",
    "StageOptions",
    "check_value",
    "field_kind",
    "load_options_class",
    "markdown_table",
    "option_params",
    "param",
    "section_schema",
]


@dataclass(frozen=True)
class Param:
    """What is declared about one stage parameter besides its name, type and default.

    Attributes
    ----------
    description : str
        One sentence for the schema, ``--help`` and the README.
    unit : str, optional
        Physical unit (``pix``, ``s``, ``solMass``...).
    minimum, maximum : float, optional
        Inclusive bounds.
    exclusive_minimum, exclusive_maximum : float, optional
        Exclusive bounds.
    choices : tuple, optional
        The allowed values.
    odd : bool
        The value must be an odd integer (stamp and kernel sides).
    path : {"existing-file", "existing-dir", "output-dir"}, optional
        The value is a path checked at configuration time.
    cli : bool
        False for keys only the workflow reads (``enabled``, sizes of the DAG):
        they get no command-line flag.
    config : bool
        False for flags the workflow derives itself (per-job seeds): they are
        not configuration keys.
    """

    description: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    odd: bool = False
    path: str | None = None
    cli: bool = True
    config: bool = True


def param(default: Any, description: str, **declared: Any) -> Any:
    """Declare one stage parameter (a dataclass field carrying a :class:`Param`).

    Parameters
    ----------
    default : object
        The default value; a list or dict is copied for every instance.
    description : str
        One sentence describing the parameter.
    **declared
        Further :class:`Param` attributes (``unit``, ``minimum``...).
    """
    metadata = {"skysift": Param(description, **declared)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_params(cls: type) -> list[tuple[dataclasses.Field[Any], Param]]:
    """The fields of an options class with their declarations, in declaration order."""
    declared = []
    for item in dataclasses.fields(cls):
        spec = item.metadata.get("skysift")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{item.name} is not declared with skysift.options.param")
        declared.append((item, spec))
    return declared


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    # Resolving string annotations is slow (~1 ms a call); the CLI asks for every field of every class.
    return typing.get_type_hints(cls)


def field_kind(cls: type, name: str) -> tuple[type, bool]:
    """The base type of a field and whether it may be None (``int | None`` -> ``(int, True)``)."""
    hint = _type_hints(cls)[name]
    arguments = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in arguments if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"{cls.__name__}.{name}: unsupported type {hint}")
        inner = others[0]
        return (typing.get_origin(inner) or inner), True
    return (origin or hint), False


def default_of(item: dataclasses.Field[Any]) -> Any:
    """The default of a field (calling its factory)."""
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return None if item.default is dataclasses.MISSING else item.default


def _bounds_text(spec: Param) -> list[str]:
    parts = []
    for value, relation in (
        (spec.minimum, ">="), (spec.exclusive_minimum, ">"), (spec.maximum, "<="), (spec.exclusive_maximum, "<")
    ):
        if value is not None:
            parts.append(f"{relation} {value:g}")
    return parts


def check_value(cls: type, name: str, value: Any, *, where: str | None = None) -> Any:
    """Check one value against its declaration; returns it (an int where an int is declared).

    Raises
    ------
    ConfigError
        Naming ``where`` (a key or flag; default ``section.name``), what was
        expected and what was found.
    """
    spec = dict((item.name, declared) for item, declared in option_params(cls))[name]
    kind, optional = field_kind(cls, name)
    where = where or f"{getattr(cls, 'section', cls.__name__)}.{name}"
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required, got null")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    elif kind in (dict, list, tuple):
        if not isinstance(value, (list, tuple) if kind in (list, tuple) else dict):
            raise ConfigError(f"{where}: expected a {'list' if kind is not dict else 'mapping'}, got {value!r}")
        return value
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: expected one of {', '.join(map(str, spec.choices))}, got {value!r}")
    if kind in (int, float):
        failed = (
            (spec.minimum is not None and value < spec.minimum)
            or (spec.exclusive_minimum is not None and value <= spec.exclusive_minimum)
            or (spec.maximum is not None and value > spec.maximum)
            or (spec.exclusive_maximum is not None and value >= spec.exclusive_maximum)
        )
        if failed:
            raise ConfigError(f"{where}: expected a value {' and '.join(_bounds_text(spec))}, got {value!r}")
        if spec.odd and value % 2 != 1:
            raise ConfigError(f"{where}: expected an odd integer, got {value!r}")
    return value


class StageOptions:
    """Mixin of the stage options dataclasses: values checked on construction.

    Subclasses are frozen dataclasses whose every field is declared with
    :func:`param`, and set ``section`` to their configuration key.
    """

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for item, _ in option_params(type(self)):
            value = check_value(type(self), item.name, getattr(self, item.name))
            object.__setattr__(self, item.name, value)
        self.check()

    def check(self) -> None:
        """Cross-parameter checks (override; raise :class:`ConfigError`)."""

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-serialisable dict (keys are the config keys)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "") -> Any:
        """Build from a configuration section, refusing unknown keys."""
        known = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            prefix = f"{source}: " if source else ""
            raise ConfigError(
                f"{prefix}unknown {cls.section or cls.__name__} key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))


def load_options_class(reference: str) -> type:
    """Import an options class from ``"module:ClassName"``."""
    module_name, _, name = reference.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"schema: cannot import options class {reference!r} ({exc})") from exc


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array", tuple: "array"}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def section_schema(cls: type) -> dict[str, dict[str, Any]]:
    """JSON-schema ``properties`` of a configuration section, from its options class."""
    properties: dict[str, dict[str, Any]] = {}
    for item, spec in option_params(cls):
        if not spec.config:
            continue
        kind, optional = field_kind(cls, item.name)
        json_type = _JSON_TYPES[kind]
        entry: dict[str, Any] = {"type": [json_type, "null"] if optional else json_type}
        for key, value in (
            ("minimum", spec.minimum), ("maximum", spec.maximum),
            ("exclusiveMinimum", spec.exclusive_minimum), ("exclusiveMaximum", spec.exclusive_maximum),
        ):
            if value is not None:
                entry[key] = value
        if spec.choices is not None:
            entry["enum"] = list(spec.choices) + ([None] if optional else [])
        if spec.odd:
            entry["x-odd"] = True  # checked by the options class (a JSON-schema "not" would refuse null)
        if spec.unit:
            entry["x-unit"] = spec.unit
        if spec.path:
            entry["x-path"] = spec.path
        entry["default"] = _jsonable(default_of(item))
        entry["description"] = spec.description
        properties[item.name] = entry
    return properties


def _type_text(cls: type, name: str, spec: Param) -> str:
    kind, optional = field_kind(cls, name)
    text = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "mapping", list: "list", tuple: "list"}[kind]
    if spec.path:
        text = "path (" + spec.path.replace("existing-", "") + ")"
    if spec.odd:
        text = "odd " + text
    bounds = _bounds_text(spec)
    if bounds:
        text += " " + ", ".join(bounds)
    if spec.unit:
        text += f" ({spec.unit})"
    if spec.choices is not None:
        text = " / ".join(f"`{c}`" for c in spec.choices)
    if optional:
        text += " or null"
    return text


def _default_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list, tuple)) and not value:
        return "`{}`" if isinstance(value, dict) else "`[]`"
    return f"{value}" if not isinstance(value, str) else f"`{value}`"


def markdown_table(cls: type, prefix: str) -> str:
    """The README rows of one options class (``| key | type (unit) | default | meaning |``)."""
    rows = []
    for item, spec in option_params(cls):
        if not spec.config:
            continue
        flag = "" if spec.cli else " (workflow only)"
        rows.append(
            f"| `{prefix}{item.name}` | {_type_text(cls, item.name, spec)} | {_default_text(default_of(item))} "
            f"| {spec.description}{flag} |"
        )
    return "\n".join(rows)
