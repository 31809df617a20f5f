"""The one way the CLI declares a flag.

Stage parameters come from the options dataclasses (:mod:`skysift.options`):
``--field-name`` per field, typed, range-checked and documented from the
field's declaration. Everything else (files in and out, provenance labels) is
declared once in :data:`FLAGS` and picked by name by each subcommand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from skysift.errors import ConfigError
from skysift.options import check_value, default_of, field_kind, option_params

__all__ = [
    "FLAGS", "OneLineParser", "add_command", "add_flags", "add_group", "add_option_flags", "options_from_arguments",
    "run_context",
]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``skysift diffim: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def parse_bool(text: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0``."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


#: Flags that are not stage parameters, each declared once: name -> add_argument keywords.
#: A name without a leading "--" is positional.
FLAGS: dict[str, dict[str, Any]] = {
    # provenance, set by the workflow rules
    "--rule": {"default": None, "help": "rule name recorded in the products (default: the command)"},
    "--config-hash": {"default": "", "help": "sha256 of the configuration sections, recorded in the products"},
    "--label": {"action": "append", "default": [], "metavar": "KEY=VALUE",
                "help": "extra provenance entry recorded in the products (e.g. release=dr2, pair_id=a)"},
    # common files
    "--out": {"required": True, "type": Path, "help": "output file"},
    "--outdir": {"required": True, "type": Path, "help": "output directory"},
    "--seed": {"required": True, "type": int, "help": "random seed"},
    "--model": {"required": True, "type": Path, "help": "trained model directory (model.pt, model_card.json)"},
    "--product": {"required": True, "type": Path, "help": "HDF5 product"},
    "--plugin": {"action": "append", "default": [], "help": "import this module first (it may register tasks)"},
    "--task": {"required": True, "help": "task name (transit, lens, realbogus, gw, or one a plugin registers)"},
    "--science": {"required": True, "type": Path, "help": "science (new) image, FITS with WCS"},
    "--reference": {"required": True, "type": Path, "help": "reference image, FITS with WCS"},
    "--science-mask": {"type": Path, "default": None, "help": "bad-pixel mask of the science image (FITS, nonzero = bad)"},
    "--reference-mask": {"type": Path, "default": None, "help": "bad-pixel mask of the reference image"},
    "--science-noise": {"type": Path, "default": None,
                        "help": "1-sigma noise map of the science image (FITS, image units, sources' noise included)"},
    "--reference-noise": {"type": Path, "default": None, "help": "1-sigma noise map of the reference image"},
    "--science-weight": {"type": Path, "default": None,
                         "help": "inverse-variance map of the science image (FITS), instead of a noise map"},
    "--reference-weight": {"type": Path, "default": None, "help": "inverse-variance map of the reference image"},
    "--diffim-dir": {"required": True, "type": Path, "help": "output directory of skysift diffim for this science image"},
    "--pair": {"nargs": 2, "action": "append", "required": True, "metavar": ("SCIENCE", "REFERENCE"),
               "help": "a science/reference FITS pair without transients (repeat for more pairs)"},
    "--alerts": {"required": True, "type": Path, "help": "directory of ZTF .avro alert packets"},
    "--exclude-objects": {"nargs": "*", "default": [], "metavar": "OBJECTID",
                          "help": "objectIds never used as backgrounds (the alerts of an evaluation fold)"},
    # transit scoring
    "--lightcurve": {"type": Path, "default": None, "help": "Kepler or TESS light-curve FITS"},
    "--period": {"type": _finite_float, "default": None, "help": "period (days)"},
    "--t0": {"type": _finite_float, "default": None, "help": "epoch (days, the file's time system)"},
    "--duration": {"type": _finite_float, "default": None, "help": "transit duration (hours)"},
    "--folded": {"type": Path, "default": None, "help": "phase-folded light curve (.npy or text: phase, flux[, error])"},
    "--tce-table": {"type": Path, "default": None, "help": "TCE table (CSV, '#' comments)"},
    "--lightcurve-dir": {"type": Path, "default": None, "help": "directory of kplr*_llc.fits files"},
    "--limit": {"type": _positive_int, "default": None, "help": "score only the first N TCEs"},
    # gw
    "--strain": {"required": True, "nargs": "+", "metavar": "[DET=]FILE",
                 "help": "one MLGWSC-1 strain file, or one GWOSC/LOSC HDF5 or frame (.gwf) file per detector "
                         "(DET=FILE names the detector where the file does not)"},
    "--matched-filter": {"action": "store_true", "help": "run the matched-filter baseline instead of a model"},
    "--search": {"nargs": 3, "action": "append", "required": True, "metavar": ("NAME", "FOREGROUND", "BACKGROUND"),
                 "help": "a search's events on the foreground and the background (repeat per search)"},
    "--injections": {"required": True, "type": Path, "help": "MLGWSC-1 injections file"},
    "--background-strain": {"required": True, "type": Path, "help": "the background strain (its duration)"},
    # training and scoring
    "--scores": {"required": True, "type": Path, "help": "scores product from skysift score"},
    "--config": {"type": Path, "default": None, "help": "YAML file of training settings (TrainConfig fields)"},
    "--model-json": {"default": None, "help": 'model keyword arguments as JSON, e.g. \'{"width": 16}\''},
    "--catalogue": {"type": Path, "default": None, "help": "also write the ranked table as ECSV"},
    "--split": {"default": "all", "choices": ["all", "train", "val", "test"], "help": "score one split of the product"},
    "--inference-batch-size": {"type": _positive_int, "default": 512, "help": "samples per inference batch"},
    "--nproc": {"type": _positive_int, "default": 1, "help": "number of processes (GPUs)"},
    "command_args": {"nargs": argparse.REMAINDER, "help": "the skysift command and its arguments (after --)"},
    # configuration, provenance, releases, archives
    "--schema": {"type": Path, "default": None, "help": "config JSON schema (YAML; default: the workflow's own)"},
    "--base-dir": {"default": ".", "help": "directory relative paths are resolved against"},
    "products": {"nargs": "+", "type": Path, "help": "product files; @FILE stands for the paths FILE lists, one per line"},
    "--run-name": {"default": "", "help": "name of the run"},
    "--metadata": {"type": Path, "default": Path(".snakemake") / "metadata", "help": "Snakemake's job records"},
    "--config-json": {"default": "", "help": "the run's validated configuration as JSON"},
    "--results": {"type": Path, "default": Path("results"), "help": "results directory of the run"},
    "--bundle": {"required": True, "type": Path, "help": "bundle directory"},
    "--report": {"type": Path, "default": None, "help": "HTML report (default RESULTS/report.html)"},
    "--overwrite": {"action": "store_true", "help": "replace an existing output"},
    "old": {"type": Path, "help": "the earlier release manifest"},
    "new": {"type": Path, "help": "the later release manifest"},
    "path": {"type": Path, "help": "the file or directory"},
}


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str], **overrides: dict[str, Any]) -> None:
    """Add the named :data:`FLAGS` (``overrides`` maps a name to changed keywords)."""
    for name in names:
        keywords = {**FLAGS[name], **overrides.get(name.lstrip("-").replace("-", "_"), {})}
        parser.add_argument(name, **keywords)


def _option_parser(cls: type, name: str, flag: str) -> Callable[[str], Any]:
    kind, optional = field_kind(cls, name)

    def parse(text: str) -> Any:
        if optional and text.strip().lower() in ("none", "null", ""):
            return None
        if kind is bool:
            value: Any = parse_bool(text)
        else:
            try:
                value = kind(text) if kind is not float else _finite_float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a ' + kind.__name__}, got {text!r}") from None
        try:
            return check_value(cls, name, value, where=flag)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None

    parse.__name__ = kind.__name__
    return parse


def add_option_flags(
    parser: argparse.ArgumentParser, cls: type, *, only: Sequence[str] | None = None, suppress_defaults: bool = False
) -> None:
    """Add ``--field-name`` for every command-line field of an options class.

    With ``suppress_defaults`` a flag not given leaves no attribute, so that a
    caller can tell given flags from defaults.
    """
    group = parser.add_argument_group(f"{cls.__name__} ({getattr(cls, 'section', '')} section of the configuration)")
    for item, spec in option_params(cls):
        if not spec.cli or (only is not None and item.name not in only):
            continue
        flag = "--" + item.name.replace("_", "-")
        kind, optional = field_kind(cls, item.name)
        unit = f"{spec.unit}; " if spec.unit else ""
        metavar = "BOOL" if kind is bool else ("{" + ",".join(spec.choices) + "}" if spec.choices else None)
        default = argparse.SUPPRESS if suppress_defaults else default_of(item)
        described = f"{spec.description} ({unit}default {default_of(item)}{'; none for automatic' if optional else ''})"
        if kind in (list, tuple):  # a list of strings: the flag takes its values in a row
            group.add_argument(flag, nargs="*", default=default, metavar="VALUE", help=described)
            continue
        group.add_argument(flag, type=_option_parser(cls, item.name, flag), default=default, metavar=metavar,
                           help=described)


def options_from_arguments(cls: type, arguments: argparse.Namespace, **fixed: Any) -> Any:
    """An options object from parsed flags (fields without a flag keep their defaults)."""
    values = {item.name: getattr(arguments, item.name) for item in dataclasses.fields(cls) if hasattr(arguments, item.name)}
    return cls(**{**values, **fixed})


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
    flags: Sequence[str] = (),
    options: Sequence[type] = (),
    only: dict[type, Sequence[str]] | None = None,
    provenance: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> argparse.ArgumentParser:
    """Add one subcommand: its flags by name, its options classes' flags, and its handler."""
    parser = commands.add_parser(name, help=help, description=description)
    add_flags(parser, flags, **(overrides or {}))
    for cls in options:
        add_option_flags(parser, cls, only=(only or {}).get(cls))
    if provenance:
        group = parser.add_argument_group("provenance (set by the workflow rules)")
        add_flags(group, ("--rule", "--config-hash", "--label"))  # type: ignore[arg-type]
    parser.set_defaults(handler=handler)
    return parser


def _labels(items: Sequence[str], where: str) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: expected KEY=VALUE, got {item!r}")
        labels[key.strip()] = value.strip()
    return labels


def add_group(
    commands: argparse._SubParsersAction, name: str, help: str, description: str
) -> argparse._SubParsersAction:
    """Add a command that only groups subcommands (``skysift gw ...``); returns their subparsers."""
    parser = commands.add_parser(name, help=help, description=description)
    return parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)


def run_context(arguments: argparse.Namespace, rule: str, **execution: Any) -> Any:
    """The :class:`~skysift.context.RunContext` of a command from its provenance flags.

    Labels come from ``SKYSIFT_LABELS`` (``key=value,...``: the workflow sets the
    run's data release there, so that a new release does not change any job's
    command line) and then from ``--label``.
    """
    from skysift.context import RunContext

    environment = os.environ.get("SKYSIFT_LABELS", "").strip()
    labels = _labels([part for part in environment.split(",") if part.strip()], "SKYSIFT_LABELS")
    labels.update(_labels(getattr(arguments, "label", []) or [], "--label"))
    return RunContext(rule=getattr(arguments, "rule", None) or rule, config_digest=getattr(arguments, "config_hash", ""),
                      labels=labels, **execution)
