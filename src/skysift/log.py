"""Logging and progress bars shared by the library and the CLI.

skysift logs through the standard :mod:`logging` module under the ``skysift``
logger; the CLI configures it once (:func:`setup_logging`). Long loops use
:func:`progress`, a tqdm bar that switches itself off when standard error is not
a terminal (Snakemake logs, CI), unless ``SKYSIFT_PROGRESS`` forces it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar


__all__ = ["get_logger", "progress", "setup_logging"]

T = TypeVar("T")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """Return a logger under the ``skysift`` hierarchy (pass ``__name__``)."""
    return logging.getLogger(name if name.startswith("skysift") else f"skysift.{name}")


def setup_logging(level: int | str = "INFO", log_file: str | os.PathLike[str] | None = None) -> None:
    """Configure the ``skysift`` logger to write to stderr (and optionally a file).

    Parameters
    ----------
    level : int or str
        Logging level name or number.
    log_file : str or path-like, optional
        Also append records to this file.
    """
    logger = logging.getLogger("skysift")
    logger.setLevel(level if isinstance(level, int) else level.upper())
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()  # a batch of jobs opens one log file per job
    formatter = logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    logger.propagate = False


def _progress_disabled() -> bool | None:
    forced = os.environ.get("SKYSIFT_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return False
    if forced in ("0", "false", "no", "off"):
        return True
    return None  # tqdm's own rule: off when the stream is not a TTY


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar on stderr (off when not a TTY).

    Parameters
    ----------
    iterable : iterable
        What to loop over.
    desc : str
        Short label shown before the bar.
    total : int, optional
        Number of items, if ``iterable`` has no ``len``.
    unit : str
        Name of one item.
    """
    return iter(
        _tqdm()(iterable, desc=desc, total=total, unit=unit, disable=_progress_disabled(), file=sys.stderr)
    )


def _tqdm():
    """tqdm, imported on first use (it costs a short command like ``skysift --help`` about 0.1 s)."""
    from tqdm import tqdm

    return tqdm
