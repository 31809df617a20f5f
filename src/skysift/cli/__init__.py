"""The ``skysift`` command line: one subcommand per workflow stage.

Workflow rules call these subcommands (``python -m skysift ...``) and stay
thin. Stage parameters are flags generated from the stage options classes
(:mod:`skysift.options`), named as the configuration keys; the few other
flags (files, provenance labels) are declared once in
:data:`skysift.cli._flags.FLAGS`. A mistake in the input or the options ends
with one line on stderr naming the flag, key or file and the problem, exit
status 2, and nothing written at the output path.

Run ``skysift --help`` or ``skysift <command> --help`` for details.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from skysift._version import __version__
from skysift.cli import records, stages, training
from skysift.cli._flags import OneLineParser
from skysift.errors import SkysiftError
from skysift.log import get_logger, setup_logging
from skysift.memory import retain_freed_memory

__all__ = ["build_parser", "main"]

log = get_logger(__name__)


def build_parser() -> OneLineParser:
    """Return the ``skysift`` argument parser with every subcommand."""
    parser = OneLineParser(
        prog="skysift",
        description=(
            "skysift: survey data to deep-learning science, reproducibly. Each subcommand is one stage of the "
            "Snakemake workflow; rules call them, and you can run them by hand."
        ),
    )
    parser.add_argument("--version", action="version", version=f"skysift {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-file", default=None, help="also append log records to this file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (records, stages, training):
        module.register(commands)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (2 for a user error, 1 for an internal one)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    setup_logging(arguments.log_level, arguments.log_file)
    if argv is None:
        # A process started as the `skysift` command (not a call from Python):
        # freed large arrays are reused instead of faulted in again.
        retain_freed_memory()
    name = " ".join(filter(None, (arguments.command, getattr(arguments, "subcommand", None))))
    try:
        return int(arguments.handler(arguments) or 0)
    except (SkysiftError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"skysift {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skysift {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug, or a library error not yet translated: still one line
        log.debug("%s", traceback.format_exc())
        print(f"skysift {name}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(rerun with --log-level DEBUG for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
