"""The ``skysift`` command line: one subcommand per workflow stage.

Workflow rules call these subcommands (``python -m skysift ...``) and stay thin;
each subcommand parses its arguments, calls the library and writes products
atomically. Errors in inputs or configuration end with one clear line on
stderr naming the file or key, and exit status 2.

Run ``skysift --help`` or ``skysift <command> --help`` for details.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skysift._version import __version__
from skysift.errors import SkysiftError
from skysift.log import get_logger, setup_logging

__all__ = ["build_parser", "main"]

log = get_logger(__name__)

DEFAULT_SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _add_provenance_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("provenance (set by the workflow rules)")
    group.add_argument("--rule", default=None, help="name of the rule recorded in the products (default: the command)")
    group.add_argument("--config-hash", default="", help="sha256 of the workflow configuration, recorded in the products")


def _dataclass_field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """Add one ``--field-name`` option per field of a dataclass of scalars.

    The option defaults to the dataclass default, so the command line and the
    library share one source of truth for parameters.
    """
    group = parser.add_argument_group(title)
    hints = _dataclass_field_types(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        flag = "--" + item.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, type=_parse_bool, default=item.default, metavar="BOOL", help=f"(default {item.default})")
        else:
            group.add_argument(flag, type=kind, default=item.default, help=f"(default {item.default})")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def dataclass_from_arguments(cls: type, arguments: argparse.Namespace) -> Any:
    """Build a dataclass instance from options added by :func:`add_dataclass_arguments`."""
    return cls(**{item.name: getattr(arguments, item.name) for item in dataclasses.fields(cls)})


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
def _cmd_config_validate(arguments: argparse.Namespace) -> int:
    from skysift.config import load_config, read_pairs_table
    from skysift.provenance import config_hash

    config = load_config(arguments.config, arguments.schema, base_dir=arguments.base_dir)
    table = config.get("inputs", {}).get("pairs_table")
    n_pairs = len(read_pairs_table(Path(arguments.base_dir) / table, base_dir=arguments.base_dir)) if table else 0
    print(f"{arguments.config}: valid (config hash {config_hash(config)[:16]}, {n_pairs} pairs from table)")
    return 0


def _cmd_simulate_pair(arguments: argparse.Namespace) -> int:
    from skysift.simulate.run import run_simulate_pair
    from skysift.simulate.starfield import FieldSpec

    spec = dataclass_from_arguments(FieldSpec, arguments)
    run_simulate_pair(
        arguments.outdir,
        spec,
        seed=arguments.seed,
        pair_id=arguments.pair_id,
        rule=arguments.rule or "simulate_pair",
        config_digest=arguments.config_hash,
    )
    return 0


def _cmd_provenance_show(arguments: argparse.Namespace) -> int:
    from skysift.io import read_provenance

    print(json.dumps(read_provenance(arguments.product).to_dict(), indent=2, sort_keys=True))
    return 0


def _cmd_provenance_summary(arguments: argparse.Namespace) -> int:
    from skysift.report import write_provenance_summary

    summary = write_provenance_summary(arguments.products, arguments.json, arguments.html, run_name=arguments.run_name)
    log.info("provenance of %d products written to %s and %s", len(summary["products"]), arguments.json, arguments.html)
    return 0


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Return the ``skysift`` argument parser with every subcommand."""
    from skysift.simulate.starfield import FieldSpec

    parser = argparse.ArgumentParser(
        prog="skysift",
        description=(
            "skysift: survey data to deep-learning science, reproducibly. Each subcommand is one "
            "stage of the Snakemake workflow; rules call them, and you can run them by hand."
        ),
    )
    parser.add_argument("--version", action="version", version=f"skysift {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-file", default=None, help="also append log records to this file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # config ----------------------------------------------------------------
    config_parser = commands.add_parser(
        "config",
        help="check a workflow configuration",
        description="Check a workflow configuration against the schema before running anything.",
    )
    config_commands = config_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    validate = config_commands.add_parser(
        "validate",
        help="validate a YAML config (types, unknown keys, paths)",
        description=(
            "Validate a YAML configuration (safe loading) against the JSON schema: types, ranges, "
            "required and unknown keys, and that every path key points where it should. Exits 2 "
            "with one line per problem, naming the key."
        ),
    )
    validate.add_argument("config", nargs="?", default="config/config.yaml", help="configuration file")
    validate.add_argument("--schema", default=str(DEFAULT_SCHEMA), help="JSON schema (YAML)")
    validate.add_argument("--base-dir", default=".", help="directory relative paths are resolved against")
    validate.set_defaults(handler=_cmd_config_validate)

    # simulate --------------------------------------------------------------
    simulate = commands.add_parser(
        "simulate",
        help="simulate inputs with known truth (star-field image pairs)",
        description="Simulate inputs whose truth is known, for the embedded demo, tests and benchmarks.",
    )
    simulate_commands = simulate.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    pair = simulate_commands.add_parser(
        "pair",
        help="a reference/science star-field pair with injected transients",
        description=(
            "Simulate a reference and a science image of one star field (different PSFs, a shift and "
            "small rotation, Poisson and read noise, saturated stars) with point transients in the "
            "science image only. Writes reference.fits, science.fits, truth.h5 (per-transient "
            "parameters and stamps), stars.ecsv and preview.png into OUTDIR."
        ),
    )
    pair.add_argument("--outdir", required=True, type=Path, help="output directory")
    pair.add_argument("--pair-id", default="sim", help="name of the pair recorded in the products")
    pair.add_argument("--seed", type=int, required=True, help="random seed")
    add_dataclass_arguments(pair, FieldSpec, "field parameters (skysift.simulate.starfield.FieldSpec)")
    _add_provenance_arguments(pair)
    pair.set_defaults(handler=_cmd_simulate_pair)

    # provenance ------------------------------------------------------------
    provenance = commands.add_parser(
        "provenance",
        help="inspect and summarise the provenance of products",
        description="Show the provenance block of a product, or summarise a run's products for the report.",
    )
    provenance_commands = provenance.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    show = provenance_commands.add_parser(
        "show", help="print a product's provenance block as JSON", description="Print the provenance block of an HDF5, FITS or ECSV product as JSON."
    )
    show.add_argument("product", type=Path)
    show.set_defaults(handler=_cmd_provenance_show)
    summary = provenance_commands.add_parser(
        "summary",
        help="JSON + HTML table of many products' provenance",
        description="Checksum every product and collect its provenance block into a JSON file and an HTML table for the report.",
    )
    summary.add_argument("products", nargs="+", type=Path)
    summary.add_argument("--json", required=True, type=Path, help="output JSON")
    summary.add_argument("--html", required=True, type=Path, help="output HTML table")
    summary.add_argument("--run-name", default="", help="name of the run")
    summary.set_defaults(handler=_cmd_provenance_summary)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    setup_logging(arguments.log_level, arguments.log_file)
    try:
        return int(arguments.handler(arguments) or 0)
    except (SkysiftError, FileNotFoundError) as exc:
        print(f"skysift {arguments.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
