"""Score real light curves with a trained transit classifier.

Light curves come with an ephemeris (period, epoch, duration), one at a time or
from a TCE table, or already phase-folded (as many eclipsing-binary catalogues
ship them). The inputs are built exactly as for the training set (AstroNet
global and local views, secondary and odd/even views, scalar diagnostics:
:data:`~skysift.transit.dataset.INPUT_NAMES`) and scored with the model saved
by the shared trainer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from skysift.errors import InputDataError
from skysift.log import get_logger, progress
from skysift.transit.dataset import INPUT_NAMES, read_tce_table, views_for_lightcurve
from skysift.transit.lightcurves import read_lightcurve
from skysift.transit.preprocess import make_vetting_views

__all__ = ["score_folded", "score_request", "score_tce_table", "score_views"]

log = get_logger(__name__)


@torch.no_grad()
def score_views(model: torch.nn.Module, *inputs: np.ndarray) -> np.ndarray:
    """Probabilities for stacks of model inputs, in :data:`~skysift.transit.dataset.INPUT_NAMES` order.

    Each input is (N, ...) or a single sample without the batch axis, as
    :func:`~skysift.transit.dataset.views_for_lightcurve` returns them.
    """
    if len(inputs) != len(INPUT_NAMES):
        raise ValueError(f"expected {len(INPUT_NAMES)} inputs ({', '.join(INPUT_NAMES)}), got {len(inputs)}")
    model.eval()
    logits = model(*(torch.as_tensor(np.atleast_2d(a), dtype=torch.float32) for a in inputs))
    return torch.sigmoid(logits).numpy()


def score_folded(
    model: torch.nn.Module, phase: np.ndarray, flux: np.ndarray, *, duration_phase: float | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Score a phase-folded light curve (phase in cycles, any zero point).

    The deepest point is taken as the epoch; the duration, if not given, is the
    width of the region below half the maximum depth. The folded curve is used
    as one orbit of period 1 (no detrending: folded catalogues are already
    detrended). Folding lost the transit numbers, so the odd and even views
    are the local view and their depth difference counts as zero
    (``odd_even=False`` of :func:`~skysift.transit.preprocess.make_vetting_views`);
    the period-dependent scalars take period 1 d.

    Returns
    -------
    score, global_view, local_view
    """
    phase, flux = np.asarray(phase, float), np.asarray(flux, float)
    good = np.isfinite(phase) & np.isfinite(flux)
    if good.sum() < 100:
        raise InputDataError(f"folded light curve has only {good.sum()} finite points")
    phase, flux = np.mod(phase[good], 1.0), flux[good] / np.median(flux[good])
    order = np.argsort(phase)
    phase, flux = phase[order], flux[order]
    t0 = phase[np.argmin(flux)]
    if duration_phase is None:
        depth = 1.0 - flux.min()
        below = np.mod(phase[flux < 1.0 - 0.5 * depth] - t0 + 0.5, 1.0) - 0.5
        duration_phase = float(np.clip(2.0 * np.abs(below).max(), 0.005, 0.25))
    inputs = make_vetting_views(phase, flux, np.array([1.0]), np.array([t0]), np.array([duration_phase]), odd_even=False)
    score = float(score_views(model, *(inputs[name] for name in INPUT_NAMES))[0])
    return score, inputs["global_view"][0], inputs["local_view"][0]


def score_tce_table(
    model: torch.nn.Module,
    tce_table: str | os.PathLike[str],
    lightcurve_dir: str | os.PathLike[str],
    *,
    limit: int | None = None,
) -> Table:
    """Score every TCE whose Kepler light curves (``kplr<kepid:09d>*_llc.fits``) are in a directory.

    Rows without light curves are kept with ``score`` NaN and ``flag`` "no-lightcurve";
    unreadable files give ``flag`` "unreadable" (and a logged reason), never a crash of
    the whole table.
    """
    table = read_tce_table(tce_table, labelled_only=False)
    if limit is not None:
        table = table[:limit]
    directory = Path(lightcurve_dir)
    scores = np.full(len(table), np.nan)
    flags = np.array(["ok"] * len(table), dtype="<U16")
    for index, row in enumerate(progress(table, desc="TCEs", total=len(table))):
        files = sorted(directory.glob(f"kplr{int(row['kepid']):09d}*_llc.fits"))
        if not files:
            flags[index] = "no-lightcurve"
            continue
        try:
            parts = [read_lightcurve(f) for f in files]
        except InputDataError as exc:
            log.warning("%s", exc)
            flags[index] = "unreadable"
            continue
        time = np.concatenate([p.time for p in parts])
        flux = np.concatenate([p.flux for p in parts])
        merged = type(parts[0])(time=time, flux=flux, flux_err=np.concatenate([p.flux_err for p in parts]),
                                quality=np.concatenate([p.quality for p in parts]), cadence=parts[0].cadence,
                                mission=parts[0].mission, source=directory)
        inputs = views_for_lightcurve(merged, float(row["period"]), float(row["t0"]), float(row["duration"]))
        scores[index] = score_views(model, *inputs)[0]
    table["score"] = scores
    table["flag"] = flags
    return table


def score_request(
    model: torch.nn.Module,
    *,
    lightcurve: str | os.PathLike[str] | None = None,
    period: float | None = None,
    t0: float | None = None,
    duration: float | None = None,
    folded: str | os.PathLike[str] | None = None,
    tce_table: str | os.PathLike[str] | None = None,
    lightcurve_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> tuple[Table, list[Path]]:
    """Score one of three kinds of input: a light curve with its ephemeris, a folded curve, or a TCE table.

    Parameters
    ----------
    model : torch.nn.Module
        A trained transit model.
    lightcurve : path, optional
        Kepler or TESS light-curve FITS, with ``period`` (days), ``t0`` (days,
        the file's time system) and ``duration`` (hours).
    folded : path, optional
        Phase-folded curve: ``.npy`` or text rows ``phase, flux[, error]``.
    tce_table, lightcurve_dir : path, optional
        A TCE table and the directory of its ``kplr*_llc.fits`` files.
    limit : int, optional
        Score only the first ``limit`` TCEs.

    Returns
    -------
    table : astropy.table.Table
        One row per scored source with its ``score``.
    inputs : list of Path
        The files read (for the provenance block).

    Raises
    ------
    InputDataError
        When no input, or an incomplete one, is given, or a file is unreadable
        or of the wrong shape; the message names the flag or file.
    """
    if tce_table is not None:
        if lightcurve_dir is None:
            raise InputDataError("--tce-table needs --lightcurve-dir (where kplr*_llc.fits files are)")
        if not Path(lightcurve_dir).is_dir():
            raise InputDataError(f"{lightcurve_dir}: --lightcurve-dir is not a directory")
        if not Path(tce_table).is_file():
            raise InputDataError(f"{tce_table}: no such TCE table")
        table = score_tce_table(model, tce_table, lightcurve_dir, limit=limit)
        if len(table) and not np.isfinite(np.asarray(table["score"], dtype=float)).any():
            raise InputDataError(f"{lightcurve_dir}: no light curve of any TCE of {tce_table} was found or readable")
        return table, [Path(tce_table)]
    if folded is not None:
        path = Path(folded)
        if not path.is_file():
            raise InputDataError(f"{path}: no such folded light curve")
        try:
            columns = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, unpack=True, ndmin=2)
        except (OSError, ValueError, EOFError) as exc:
            raise InputDataError(f"{path}: unreadable folded light curve ({exc})") from exc
        if np.ndim(columns) != 2 or len(columns) < 2 or np.shape(columns)[1] < 2:
            raise InputDataError(f"{path}: expected rows (phase, flux[, error]), got shape {np.shape(columns)}")
        score, _, _ = score_folded(model, columns[0], columns[1])
        return Table({"source": [str(path)], "score": [score]}), [path]
    if lightcurve is not None:
        if None in (period, t0, duration):
            raise InputDataError("--lightcurve needs --period, --t0 and --duration (hours)")
        if period <= 0 or duration <= 0:
            raise InputDataError(f"--period and --duration must be positive, got {period} and {duration}")
        views = views_for_lightcurve(read_lightcurve(lightcurve), period, t0, duration)
        table = Table({"source": [str(lightcurve)], "period": [period], "t0": [t0], "duration": [duration],
                       "score": [float(score_views(model, *views)[0])]})
        return table, [Path(lightcurve)]
    raise InputDataError("give --lightcurve (with --period/--t0/--duration), --folded, or --tce-table")
