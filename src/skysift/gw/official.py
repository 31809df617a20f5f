"""Calling the official MLGWSC-1 scripts and reading what they write.

The challenge's own generator (``generate_data.py``) and evaluator
(``evaluate.py``; Schäfer et al. 2023, Phys. Rev. D 107, 023021; Apache-2.0)
are used as any entrant would use them: run as separate processes from where
they are installed (by default ``../shared/tools/mlgwsc1`` beside the
repository), never copied into skysift. This module only builds their command
lines and reads their outputs:

* :func:`find_tools` says whether the scripts are there;
* :func:`generator_command` / :func:`run_generator` make dataset 1-4 files
  (``generate_data.py`` finds its PSD files by paths relative to its own
  folder, so it runs there, with absolute output paths);
* :func:`evaluator_command` / :func:`run_evaluator` evaluate events files;
* :func:`read_official_evaluation` reads ``far`` and ``sensitive-distance``;
* :func:`distance_at_far` reads the sensitive distance at one false-alarm
  rate off those arrays, saying whether that rate was resolved, interpolated
  or only approached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skysift.errors import InputDataError

__all__ = [
    "DEFAULT_TOOLS",
    "FarLookup",
    "distance_at_far",
    "evaluator_command",
    "find_tools",
    "generator_command",
    "read_official_evaluation",
    "run_evaluator",
    "run_generator",
]

#: Where the scripts are installed for this project: ``shared/tools/mlgwsc1`` beside the checkout.
DEFAULT_TOOLS = Path(__file__).resolve().parents[3].parent / "shared" / "tools" / "mlgwsc1"

_SCRIPTS = ("generate_data.py", "evaluate.py")


def find_tools(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of the official scripts, or None where either script is absent."""
    folder = Path(path) if path is not None else DEFAULT_TOOLS
    return folder.resolve() if all((folder / name).is_file() for name in _SCRIPTS) else None


def generator_command(tools: str | os.PathLike[str], dataset: int, out_dir: str | os.PathLike[str], *, duration: int, seed: int,
                      python: str = sys.executable) -> list[str]:
    """``generate_data.py`` command for one dataset: ``injections.hdf``, ``foreground.hdf``, ``background.hdf`` in ``out_dir``."""
    if dataset not in (1, 2, 3, 4):
        raise ValueError(f"MLGWSC-1 has datasets 1-4, not {dataset}")
    out = Path(out_dir).resolve()
    return [python, str(Path(tools) / "generate_data.py"), "--data-set", str(dataset),
            "--output-injection-file", str(out / "injections.hdf"), "--output-foreground-file", str(out / "foreground.hdf"),
            "--output-background-file", str(out / "background.hdf"), "--duration", str(int(duration)), "--seed", str(int(seed)),
            "--verbose", "--force"]


def _environment(python: str) -> dict[str, str]:
    """The environment with the interpreter's bin/ first on PATH (the generator calls ``pycbc_create_injections``)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_generator(tools: str | os.PathLike[str], dataset: int, out_dir: str | os.PathLike[str], *, duration: int, seed: int,
                  python: str = sys.executable, log_path: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Run ``generate_data.py`` in its own folder; returns the three file paths.

    Raises
    ------
    RuntimeError
        If the generator fails (its log is named).
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path is not None else out / "generate.log"
    with open(log_path, "w") as log:
        status = subprocess.call(generator_command(tools, dataset, out, duration=duration, seed=seed, python=python),
                                 cwd=tools, env=_environment(python), stdout=log, stderr=subprocess.STDOUT)
    if status != 0:
        raise RuntimeError(f"generate_data.py failed for dataset {dataset} (exit {status}); see {log_path}")
    return {name: out / f"{name}.hdf" for name in ("injections", "foreground", "background")}


def evaluator_command(tools: str | os.PathLike[str], *, injections: str | os.PathLike[str], foreground_events: str | os.PathLike[str],
                      foreground: str | os.PathLike[str], background_events: str | os.PathLike[str], output: str | os.PathLike[str],
                      python: str = sys.executable) -> list[str]:
    """``evaluate.py`` command for one search on one dataset (``output`` must end in ``.hdf``)."""
    if Path(output).suffix != ".hdf":
        raise ValueError(f"{output}: evaluate.py writes only files ending in .hdf")
    return [python, str(Path(tools) / "evaluate.py"), "--injection-file", str(injections), "--foreground-events", str(foreground_events),
            "--foreground-files", str(foreground), "--background-events", str(background_events), "--output-file", str(output), "--force"]


def run_evaluator(tools: str | os.PathLike[str], *, python: str = sys.executable, log_path: str | os.PathLike[str] | None = None,
                  **files: str | os.PathLike[str]) -> Path:
    """Run ``evaluate.py`` (arguments as :func:`evaluator_command`); returns its output file.

    Raises
    ------
    RuntimeError
        If the evaluator fails (its log is named).
    """
    output = Path(files["output"])
    log_path = Path(log_path) if log_path is not None else output.with_suffix(".log")
    with open(log_path, "w") as log:
        status = subprocess.call(evaluator_command(tools, python=python, **files), cwd=tools, env=_environment(python),
                                 stdout=log, stderr=subprocess.STDOUT)
    if status != 0:
        raise RuntimeError(f"evaluate.py failed (exit {status}); see {log_path}")
    return output


def read_official_evaluation(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``far`` (Hz), ``sensitive_distance`` (Mpc) and ``sensitive_fraction`` from an ``evaluate.py`` output.

    Raises
    ------
    InputDataError
        If the file is unreadable, lacks those datasets, or their lengths differ.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in ("far", "sensitive-distance") if key not in handle]
            if missing:
                raise InputDataError(f"{path}: not an evaluate.py output (no {missing})")
            out = {"far": handle["far"][()].astype(float), "sensitive_distance": handle["sensitive-distance"][()].astype(float)}
            if "sensitive-fraction" in handle:
                out["sensitive_fraction"] = handle["sensitive-fraction"][()].astype(float)
    except OSError as error:
        raise InputDataError(f"{path}: not a readable HDF5 file ({error})") from error
    if out["far"].shape != out["sensitive_distance"].shape:
        raise InputDataError(f"{path}: far and sensitive-distance differ in length")
    return out


@dataclass(frozen=True)
class FarLookup:
    """A sensitive distance read at a false-alarm rate.

    Attributes
    ----------
    distance : float
        Mpc (NaN where the evaluation has no background events).
    far : float
        The rate it belongs to (Hz): the target where ``method`` is
        ``"resolved"`` or ``"interpolated"``, the nearest resolved one for ``"nearest"``.
    method : str
        ``"resolved"`` (the target is one of the evaluation's rates),
        ``"interpolated"`` (linear in log rate between the two resolved rates
        about it) or ``"nearest"`` (the target lies outside the resolved rates).
    """

    distance: float
    far: float
    method: str


def distance_at_far(far: Sequence[float] | np.ndarray, distance: Sequence[float] | np.ndarray, target: float) -> FarLookup:
    """Sensitive distance at false-alarm rate ``target`` (Hz) from an evaluation's arrays.

    ``evaluate.py`` gives one rate per background event, ``k / duration`` for
    ``k`` louder background events (the loudest has rate 0, which cannot be
    placed on a log axis and is ignored). With one hour of background, one per
    hour is resolved exactly.
    """
    far = np.asarray(far, dtype=float)
    distance = np.asarray(distance, dtype=float)
    if target <= 0:
        raise ValueError("the false-alarm rate must be positive")
    usable = far > 0
    if not usable.any():
        return FarLookup(float("nan"), float("nan"), "nearest")
    far, distance = far[usable], distance[usable]
    order = np.argsort(far)
    far, distance = far[order], distance[order]
    exact = np.isclose(far, target, rtol=1e-9, atol=0.0)
    if exact.any():
        return FarLookup(float(distance[exact][0]), float(far[exact][0]), "resolved")
    if far[0] < target < far[-1]:
        upper = int(np.searchsorted(far, target))
        weight = (np.log(target) - np.log(far[upper - 1])) / (np.log(far[upper]) - np.log(far[upper - 1]))
        return FarLookup(float(distance[upper - 1] + weight * (distance[upper] - distance[upper - 1])), float(target), "interpolated")
    nearest = int(np.argmin(np.abs(np.log(far) - np.log(target))))
    return FarLookup(float(distance[nearest]), float(far[nearest]), "nearest")
