"""AstroNet preprocessing: detrend, phase fold, bin into global and local views, BLS.

Implements the input representation of Shallue & Vanderburg (2018, AJ 155, 94):

* light curves are split at gaps and detrended with an iteratively
  sigma-clipped cubic B-spline (their ``kepler_spline``; knots every
  ``knot_spacing`` days, 3-sigma clipping on a robust scatter, five passes);
* the detrended flux is folded on the ephemeris (period, mid-transit ``t0``)
  so the transit sits at phase 0;
* a **global view** (2001 median bins over the whole orbit, bin width
  ``P / 2001``) and a **local view** (201 median bins spanning +-4 transit
  durations, each bin ``0.16`` durations wide, so neighbouring bins overlap)
  are made, empty bins are interpolated from their neighbours, and each view
  is normalised to median 0 and minimum -1.

Everything works on batches: ``flux`` of shape (N, T) with one ephemeris per
row. Folding and binning run in compiled kernels (numba,
:mod:`skysift.transit._kernels`) that loop over the light curves: each
cadence is folded once and counting-sorted into its global bin and local
cells, and every median is an exact order statistic (see
:func:`binned_statistic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import linalg, sparse
from scipy.interpolate import BSpline, make_lsq_spline

from skysift.transit import _kernels, _lightcurve_kernels

__all__ = [
    "GLOBAL_BINS",
    "LOCAL_BINS",
    "LOCAL_BIN_WIDTH_FACTOR",
    "LOCAL_NUM_DURATIONS",
    "KNOT_SPACINGS",
    "MES_THRESHOLD",
    "VETTING_INPUT_NAMES",
    "VETTING_SCALARS",
    "BLSResult",
    "adaptive_spline_trend",
    "detection_statistic",
    "transit_mask",
    "binned_statistic",
    "bls_search",
    "detrend_batch",
    "fill_empty_bins",
    "global_view",
    "local_view",
    "make_views",
    "make_vetting_views",
    "normalise_views",
    "phase_fold",
    "robust_spline_trend",
    "split_on_gaps",
]

GLOBAL_BINS = 2001
LOCAL_BINS = 201
LOCAL_NUM_DURATIONS = 4.0
LOCAL_BIN_WIDTH_FACTOR = 0.16
#: Rows per block in :func:`make_vetting_views` (its numpy diagnostics' temporaries stay in cache).
_ROWS_PER_BLOCK = 64
#: AstroNet splits light curves at gaps longer than this (days).
GAP_WIDTH = 0.75


# ---------------------------------------------------------------------------
# Folding and binning
# ---------------------------------------------------------------------------
def phase_fold(time: np.ndarray, period: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """Time from the nearest mid-transit, in days, in ``[-P/2, P/2)``.

    ``time`` is (T,) or (N, T); ``period`` and ``t0`` scalars or (N,).
    """
    time = np.asarray(time, dtype=np.float64)
    period = np.asarray(period, dtype=np.float64)
    t0 = np.asarray(t0, dtype=np.float64)
    if period.ndim:
        period, t0 = period[:, None], t0[:, None]
    # floor of a product rather than np.mod: several times cheaper per element.
    offset = time - t0
    folded = offset - period * np.floor(offset * (1.0 / period) + 0.5)
    # Rounding can land a point on +P/2; wrap it like np.mod would.
    return np.where(folded >= 0.5 * period, folded - period, folded)


def binned_statistic(
    x: np.ndarray,
    y: np.ndarray,
    n_bins: int,
    x_min: np.ndarray,
    x_max: np.ndarray,
    *,
    bin_width: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    statistic: str = "median",
) -> np.ndarray:
    """Median (or mean) of ``y`` in ``n_bins`` bins of ``x``, row by row.

    Parameters
    ----------
    x, y : numpy.ndarray, shape (N, T)
        Abscissa (for example folded time) and values.
    n_bins : int
        Number of bins, centred at ``x_min + (i + 0.5) (x_max - x_min) / n_bins``.
    x_min, x_max : float or numpy.ndarray, shape (N,)
        Range binned, per row.
    bin_width : float or numpy.ndarray, shape (N,), optional
        Width of each bin; defaults to the spacing of bin centres. Wider bins
        overlap (AstroNet's local view), so a point counts in every bin whose
        window contains it.
    valid : numpy.ndarray of bool, shape (N, T), optional
        Points to use (NaN values are always ignored).
    statistic : {"median", "mean"}
        Statistic per bin; the median of an even count is the mean of the two
        middle values.

    Returns
    -------
    numpy.ndarray, shape (N, n_bins), float32
        NaN in empty bins (see :func:`fill_empty_bins`).

    Notes
    -----
    Values are binned as float32 and the medians are exact order statistics.
    Adjacent bins (``bin_width`` not given) are ``[x_min + i s, x_min + (i +
    1) s)`` with ``s`` the spacing (points outside ``[x_min, x_max)`` are
    ignored); overlapping bins hold the points with ``|x - centre| <=
    bin_width / 2``. Compiled kernels (:mod:`skysift.transit._kernels`) loop
    over the rows: adjacent bins take one pass over the points (medians of up
    to four points in closed form, larger bins gathered and selected);
    overlapping bins are contiguous runs of half-bin "cells" after a counting
    sort, and their medians are selected from the points' ranks in a bit set
    that slides along the runs.
    """
    _check_statistic(statistic)
    y = np.atleast_2d(y)
    n_rows = y.shape[0]
    x = np.broadcast_to(np.atleast_2d(x), y.shape)
    x_min = np.broadcast_to(np.asarray(x_min, dtype=np.float64), (n_rows,))
    x_max = np.broadcast_to(np.asarray(x_max, dtype=np.float64), (n_rows,))
    spacing = (x_max - x_min) / n_bins
    good = np.isfinite(y) & np.isfinite(x)
    if valid is not None:
        good &= valid
    values = np.ascontiguousarray(y, dtype=np.float32)
    out = np.empty((n_rows, n_bins), dtype=np.float32)
    median = statistic == "median"
    if bin_width is None:
        with np.errstate(invalid="ignore"):
            position = (x - x_min[:, None]) * (1.0 / spacing)[:, None]
            good &= (position >= 0) & (position < n_bins)
        _kernels.adjacent_rows(np.ascontiguousarray(position), values, good, n_bins, median, out)
        return out
    width = np.broadcast_to(np.asarray(bin_width, dtype=np.float64), (n_rows,))
    half_width = 0.5 * width
    # Only points inside [x_min - w/2, x_max + w/2) can land in a bin.
    with np.errstate(invalid="ignore"):
        good &= (x >= (x_min - half_width)[:, None]) & (x < (x_max + half_width)[:, None])
        position = (x - x_min[:, None]) / spacing[:, None]
    _kernels.overlapping_rows(
        position, values, good, np.zeros(n_rows), np.ascontiguousarray(half_width / spacing), n_bins, median, out
    )
    return out


def fill_empty_bins(view: np.ndarray) -> np.ndarray:
    """Fill NaN bins by linear interpolation between the nearest filled bins of each row.

    Bins before the first (after the last) filled bin take its value; a row
    with no filled bin becomes zeros.
    """
    view = np.array(view, dtype=np.float32, copy=True, order="C")
    if view.size:
        _kernels.fill_rows(view.reshape(-1, view.shape[-1]))
    return view


def _row_medians(view: np.ndarray) -> np.ndarray:
    """Median of each row of a float32 array (NaN if the row has any NaN), by partition."""
    n = view.shape[1]
    middle = (n - 1) // 2, n // 2
    part = np.partition(view, sorted(set(middle)), axis=1)
    median = 0.5 * (part[:, middle[0]] + part[:, middle[1]])
    return np.where(np.isnan(view).any(axis=1), np.float32(np.nan), median)


def normalise_views(view: np.ndarray) -> np.ndarray:
    """Shift each row to median 0 and scale it so its minimum is -1 (AstroNet)."""
    view = np.array(view, dtype=np.float32, copy=True, order="C")
    if view.size:
        _kernels.normalise_rows(view.reshape(-1, view.shape[-1]))
    return view


def _usable_points(flux: np.ndarray, valid: np.ndarray | None, time: np.ndarray) -> np.ndarray | None:
    """Points to bin (finite flux and time, ``valid``), or None when that is all of them."""
    good = None if valid is None else np.array(np.broadcast_to(valid, flux.shape), dtype=bool)
    if not np.isfinite(flux).all():
        good = np.isfinite(flux) if good is None else good & np.isfinite(flux)
    if not np.isfinite(time).all():
        finite_time = np.broadcast_to(np.isfinite(time), flux.shape)
        good = finite_time.copy() if good is None else good & finite_time
    return good


def _binned_views(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    statistic: str = "median",
    global_bins: int = GLOBAL_BINS,
    local_bins: int = LOCAL_BINS,
    num_durations: float = LOCAL_NUM_DURATIONS,
    bin_width_factor: float = LOCAL_BIN_WIDTH_FACTOR,
    phase: np.ndarray | None = None,
    phase_offset: float = 0.0,
    finish: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Global (N, ``global_bins``) and local (N, ``local_bins``) views by :func:`_kernels.views_from_phase`.

    The orbital phase (0.5 at mid-transit) of every cadence is computed from
    ``time`` unless ``phase`` (N, T) is given, and shifted by
    ``phase_offset`` modulo 1. Points with non-finite flux or phase, or not
    ``valid``, are skipped. A view of 0 bins is skipped (an (N, 0) array).
    ``finish`` fills empty bins and normalises (else the raw views, NaN where
    empty, are returned).
    """
    flux = np.ascontiguousarray(np.atleast_2d(flux), dtype=np.float32)
    n_rows, n_time = flux.shape
    period, t0, duration = (
        np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (n_rows,)))
        for v in (period, t0, duration)
    )
    time = np.asarray(time, dtype=np.float64)
    shared_grid = time.ndim == 1
    time = np.ascontiguousarray(np.atleast_2d(time))
    phase = np.empty((0, n_time)) if phase is None else np.ascontiguousarray(phase, dtype=np.float64)
    if valid is None:
        valid = np.empty((0, n_time), dtype=bool)
    else:
        valid = np.ascontiguousarray(np.broadcast_to(valid, flux.shape), dtype=bool)
    out_global = np.empty((n_rows, global_bins), dtype=np.float32)
    out_local = np.empty((n_rows, local_bins), dtype=np.float32)
    _kernels.views_from_phase(
        time, shared_grid, phase, flux, valid, period, t0, duration, float(phase_offset), global_bins, local_bins,
        float(num_durations), float(bin_width_factor), statistic == "median", finish, out_global, out_local,
    )  # fmt: skip
    return out_global, out_local


def _check_statistic(statistic: str) -> None:
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")


def global_view(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    n_bins: int = GLOBAL_BINS,
    statistic: str = "median",
    folded: np.ndarray | None = None,
) -> np.ndarray:
    """Global view: ``n_bins`` bins over the whole folded orbit, normalised.

    ``folded`` (N, T), the output of :func:`phase_fold`, may be given to save
    folding again. Returns an (N, n_bins) float32 array (one row per light curve).
    """
    _check_statistic(statistic)
    flux = np.atleast_2d(flux)
    period = np.broadcast_to(np.asarray(period, dtype=np.float64), (flux.shape[0],))
    phase = None
    if folded is not None:
        phase = np.clip(np.asarray(folded, dtype=np.float64) / period[:, None] + 0.5, 0.0, 1.0)
    view, _ = _binned_views(
        time, flux, period, t0, period, valid=valid, statistic=statistic, global_bins=n_bins, local_bins=0, phase=phase
    )
    return view


def local_view(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    n_bins: int = LOCAL_BINS,
    num_durations: float = LOCAL_NUM_DURATIONS,
    bin_width_factor: float = LOCAL_BIN_WIDTH_FACTOR,
    statistic: str = "median",
    folded: np.ndarray | None = None,
) -> np.ndarray:
    """Local view: ``n_bins`` bins over +-``num_durations`` transit durations (days).

    Each bin is ``bin_width_factor`` durations wide, so neighbours overlap.
    The window is capped at half the period. Returns (N, n_bins) float32.
    """
    _check_statistic(statistic)
    flux = np.atleast_2d(flux)
    period = np.broadcast_to(np.asarray(period, dtype=np.float64), (flux.shape[0],))
    phase = None if folded is None else np.asarray(folded, dtype=np.float64) / period[:, None] + 0.5
    _, view = _binned_views(
        time, flux, period, t0, duration, valid=valid, statistic=statistic, global_bins=0, local_bins=n_bins,
        num_durations=num_durations, bin_width_factor=bin_width_factor, phase=phase,
    )  # fmt: skip
    return view


def make_views(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    statistic: str = "median",
) -> tuple[np.ndarray, np.ndarray]:
    """Global (N, 2001) and local (N, 201) views of detrended light curves.

    Parameters
    ----------
    time : numpy.ndarray, shape (T,) or (N, T)
        Times, days.
    flux : numpy.ndarray, shape (N, T) or (T,)
        Detrended relative flux (baseline 1 or 0; normalisation removes it).
    period, t0, duration : float or numpy.ndarray, shape (N,)
        Ephemeris (days) and total transit duration (days).
    valid : numpy.ndarray of bool, optional
        Cadences to use; NaN fluxes are always skipped.
    statistic : {"median", "mean"}
        Bin statistic (AstroNet: median).

    Returns
    -------
    global_view, local_view : numpy.ndarray, float32
        Shapes (N, 2001) and (N, 201).

    Notes
    -----
    One compiled pass per light curve (:func:`_kernels.views_from_phase`):
    each cadence is folded once and binned into both views, whose bins are
    then filled and normalised while in cache. Equal to :func:`global_view`
    and :func:`local_view` called on the whole batch.
    """
    _check_statistic(statistic)
    return _binned_views(time, flux, period, t0, duration, valid=valid, statistic=statistic)


# ---------------------------------------------------------------------------
# Detrending
# ---------------------------------------------------------------------------
def split_on_gaps(time: np.ndarray, gap_width: float = GAP_WIDTH) -> list[slice]:
    """Slices of ``time`` (sorted) between gaps longer than ``gap_width`` days."""
    time = np.asarray(time)
    breaks = np.flatnonzero(np.diff(time) > gap_width) + 1
    edges = np.concatenate([[0], breaks, [time.size]])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _robust_sigma(residual: np.ndarray, axis: int | None = None) -> np.ndarray:
    median = np.nanmedian(residual, axis=axis, keepdims=axis is not None)
    return 1.4826 * np.nanmedian(np.abs(residual - median), axis=axis, keepdims=axis is not None)


def _interior_knots(t: np.ndarray, knot_spacing: float) -> np.ndarray:
    n_knots = int(np.floor((t[-1] - t[0]) / knot_spacing))
    if n_knots < 1:
        return np.empty(0)
    return np.linspace(t[0], t[-1], n_knots + 1)[1:-1]


def robust_spline_trend(
    time: np.ndarray,
    flux: np.ndarray,
    *,
    knot_spacing: float = 1.0,
    sigma_clip: float = 3.0,
    max_iter: int = 5,
    gap_width: float = GAP_WIDTH,
) -> np.ndarray:
    """Trend of one light curve: sigma-clipped cubic B-spline per gap-free segment.

    AstroNet's ``kepler_spline``: in each segment a least-squares cubic spline
    with interior knots every ``knot_spacing`` days is fitted, points more
    than ``sigma_clip`` robust standard deviations (1.4826 MAD) from it are
    dropped and the fit repeated until nothing changes or ``max_iter`` passes.
    Segments too short for a spline get their median.

    Returns
    -------
    numpy.ndarray
        Trend at every input time (divide the flux by it).
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    trend = np.full_like(flux, np.nan)
    for segment in split_on_gaps(time, gap_width):
        t, f = time[segment], flux[segment]
        finite = np.isfinite(f)
        if finite.sum() < 8:
            trend[segment] = np.nanmedian(f) if finite.any() else np.nan
            continue
        mask = finite.copy()
        fit = np.full_like(f, np.nanmedian(f))
        for _ in range(max_iter):
            tk, fk = t[mask], f[mask]
            inner = _interior_knots(tk, knot_spacing)
            # Schoenberg-Whitney: every knot interval needs data; drop empty ones.
            if inner.size:
                counts = np.histogram(tk, bins=np.concatenate([[tk[0]], inner, [tk[-1]]]))[0]
                while inner.size and (counts < 2).any():
                    drop = min(int(np.argmin(counts)), inner.size - 1)
                    inner = np.delete(inner, drop)
                    counts = np.histogram(tk, bins=np.concatenate([[tk[0]], inner, [tk[-1]]]))[0]
            knots = np.concatenate([[tk[0]] * 4, inner, [tk[-1]] * 4])
            try:
                spline = make_lsq_spline(tk, fk, knots, k=3)
            except (ValueError, np.linalg.LinAlgError):
                break
            fit = spline(t)
            residual = f - fit
            scatter = _robust_sigma(residual[mask])
            new_mask = finite & (np.abs(residual) <= sigma_clip * max(scatter, 1e-12))
            if np.array_equal(new_mask, mask) or new_mask.sum() < 8:
                break
            mask = new_mask
        trend[segment] = fit
    return trend


def _design_matrix(time: np.ndarray, knot_spacing: float, gap_width: float) -> sparse.csr_array:
    """Block-diagonal cubic B-spline basis, one block per gap-free segment."""
    blocks = []
    for segment in split_on_gaps(time, gap_width):
        t = time[segment]
        inner = _interior_knots(t, knot_spacing) if t.size >= 8 else np.empty(0)
        degree = 3 if t.size >= 4 else 0
        knots = np.concatenate([[t[0]] * (degree + 1), inner, [t[-1] + 1e-9] * (degree + 1)])
        blocks.append(BSpline.design_matrix(t, knots, degree))
    return sparse.csr_array(sparse.block_diag(blocks, format="csr"))


def detrend_batch(
    time: np.ndarray,
    flux: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    knot_spacing: float = 1.0,
    sigma_clip: float = 3.0,
    n_iter: int = 4,
    gap_width: float = GAP_WIDTH,
) -> np.ndarray:
    """Robust spline trends of a batch of light curves sharing one time grid.

    The same clipped cubic B-spline as :func:`robust_spline_trend`, made
    cheap for batches: the basis ``B`` (block-diagonal over gap-free segments)
    and its normal matrix are built once for the shared grid; masked or
    clipped points are replaced by the current fit and the fit repeated
    (imputation, whose fixed point is the least-squares fit to the unmasked
    points). Each pass is two sparse products and one Cholesky solve for all
    N light curves at once.

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Shared, sorted times (days).
    flux : numpy.ndarray, shape (N, T)
        Fluxes; NaN marks missing cadences.
    valid : numpy.ndarray of bool, shape (N, T), optional
        Cadences to fit.

    Returns
    -------
    numpy.ndarray, shape (N, T)
        Trends.
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    good = np.isfinite(flux) if valid is None else (valid & np.isfinite(flux))
    basis = _design_matrix(time, knot_spacing, gap_width)
    basis_t = basis.T.tocsr()
    normal = (basis_t @ basis).toarray()
    normal[np.diag_indices_from(normal)] += 1e-9 * np.trace(normal) / normal.shape[0]
    factor = linalg.cho_factor(normal, lower=False, check_finite=False)
    row_median = np.array([np.median(r[g]) if g.any() else 1.0 for r, g in zip(flux, good)])
    fit = np.broadcast_to(row_median[:, None], flux.shape)
    mask = good
    for _ in range(n_iter):
        filled = np.where(mask, flux, fit)
        coefficients = linalg.cho_solve(factor, basis_t @ filled.T, check_finite=False)
        fit = (basis @ coefficients).T
        residual = np.where(good, flux - fit, np.nan)
        scatter = _robust_sigma(residual, axis=1)
        mask = good & (np.abs(flux - fit) <= sigma_clip * np.maximum(scatter, 1e-12))
    return fit


# ---------------------------------------------------------------------------
# Box least squares
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BLSResult:
    """Best box-least-squares peak: ``period`` (d), ``t0`` (d), ``duration`` (d), ``depth`` (relative), ``power``."""

    period: float
    t0: float
    duration: float
    depth: float
    power: float


def bls_search(
    time: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray | None = None,
    *,
    periods: np.ndarray | None = None,
    min_period: float = 0.5,
    max_period: float | None = None,
    durations: np.ndarray = (0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.33),
    oversample: float = 3.0,
) -> BLSResult:
    """Search a detrended light curve for a periodic box with astropy's BLS.

    Parameters
    ----------
    time, flux : numpy.ndarray
        Times (d) and detrended relative flux.
    flux_err : numpy.ndarray, optional
        Uncertainties.
    periods : numpy.ndarray, optional
        Explicit period grid (d). Default: uniform in log period between
        ``min_period`` and ``max_period`` (half the baseline) with
        ``d ln P = min(durations) / (oversample * baseline)``, so that across
        the baseline a transit drifts by at most ``1 / oversample`` of the
        shortest trial duration between neighbouring periods.
    durations : sequence of float
        Trial durations (d); those not shorter than the smallest period are dropped.

    Returns
    -------
    BLSResult
    """
    from astropy.timeseries import BoxLeastSquares

    time = np.asarray(time, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    good = np.isfinite(time) & np.isfinite(flux)
    dy = None if flux_err is None else np.asarray(flux_err, dtype=np.float64)[good]
    t, y = time[good], flux[good]
    baseline = t.max() - t.min()
    durations = np.asarray(durations, dtype=np.float64)
    if periods is None:
        max_period = 0.5 * baseline if max_period is None else max_period
        step = durations.min() / (oversample * baseline)
        periods = np.exp(np.arange(np.log(min_period), np.log(max_period), step))
    periods = np.asarray(periods, dtype=np.float64)
    durations = durations[durations < periods.min()]
    model = BoxLeastSquares(t, y, dy)
    result = model.power(periods, durations, objective="snr")
    best = int(np.nanargmax(result.power))
    return BLSResult(
        period=float(result.period[best]),
        t0=float(result.transit_time[best]),
        duration=float(result.duration[best]),
        depth=float(result.depth[best]),
        power=float(result.power[best]),
    )


# ---------------------------------------------------------------------------
# Adaptive, transit-masked detrending and the detection statistic
# ---------------------------------------------------------------------------
#: Knot spacings (days) tried per light curve by :func:`adaptive_spline_trend`;
#: the Bayesian information criterion picks one per star (AstroNet's
#: ``kepler_spline.choose_kepler_spline`` does the same over 0.5-20 d).
KNOT_SPACINGS = (0.15, 0.25, 0.4, 0.7, 1.2, 2.0)
#: Half-width of the window masked around each transit, in transit durations.
MASK_HALF_WIDTH = 0.55
#: The BIC descent of :func:`adaptive_spline_trend`: spacings are fitted from the longest (the
#: cheapest, and the commonest winner: 114 of 294 light curves of a training-set chunk) down, and a
#: star stops after ``SPACING_PATIENCE`` shorter spacing(s) in a row failed to lower its BIC, provided
#: its best fit is settled: capped chi^2 per fitted cadence below ``SETTLED_CHI2`` (white residuals
#: give about 1). An unsettled best (a fast rotator that long spacings cannot follow: residuals
#: hit the cap, and the BIC only counts columns until the knots get close enough) goes on down.
#: On two training-set chunks (seeds 5 and 11, 294 light curves each) this fits 3.86 and 3.84 of
#: the 6 spacings per star (the short, costly ones are the ones skipped) and picks the exhaustive
#: scan's spacing for 293 and 294 of them; without the settled test, 3.31-3.42 fits and 265-272
#: (and fast rotators keep their rotation: test_preprocess.py). Patience 2 without it: 4.34-4.39, 282-284.
SPACING_PATIENCE = 1
SETTLED_CHI2 = 1.5
#: Running means (boxes of one duration) whose robust scatter is the detection statistic's noise
#: (:func:`detection_statistic`): every k-th full box when there are more (about 4,000 on a Kepler
#: quarter). Neighbouring boxes share all but one cadence, so for boxes of four or more cadences
#: the kept ones still cover every cadence and the MAD loses next to nothing; for one- or two-cadence
#: boxes it is the MAD of 1,024 nearly independent values (about 3 % relative error instead of
#: 1.5 %, well inside the noise's spread between stars), as the spline's clipping scatter is
#: taken. Two of the three exact medians of each of the five box statistics run on a quarter of the values.
NOISE_BOXES = 1024
#: Kepler's detection threshold on the multiple-event statistic.
MES_THRESHOLD = 7.1


def _banded_basis(time: np.ndarray, knot_spacing: float, gap_width: float):
    """Cubic B-spline basis of a sorted grid in banded form.

    Returns ``first`` (T,) the first non-zero column of each row, ``values``
    (T, 4) the basis values of columns ``first + k``, the number of columns and
    the second-difference penalty (segment by segment) in upper banded form (4, M).
    """
    basis = _design_matrix(time, knot_spacing, gap_width).tocoo()
    n_time, n_cols = basis.shape
    rows, cols = basis.row, basis.col
    first = np.full(n_time, n_cols, dtype=np.int64)
    np.minimum.at(first, rows, cols)
    values = np.zeros((n_time, 4))
    values[rows, cols - first[rows]] = basis.data
    # Second differences inside each segment (columns of one segment are contiguous).
    segment_of_col = np.zeros(n_cols, dtype=np.int64)
    np.maximum.at(segment_of_col, cols, np.cumsum(np.r_[0, np.diff(time) > gap_width])[rows])
    start = np.flatnonzero((segment_of_col[:-2] == segment_of_col[2:]))
    penalty = np.zeros((4, n_cols))
    d = np.array([1.0, -2.0, 1.0])
    for a in range(3):
        for b in range(a, 3):
            # entry (start + a, start + b) += d[a] d[b]; upper band row 3 - (b - a), column start + b
            np.add.at(penalty[3 - (b - a)], start + b, d[a] * d[b])
    return first, values, n_cols, penalty


def _row_median(values: np.ndarray) -> np.ndarray:
    """Median of each row of a 2-D array, ignoring NaN (NaN for all-NaN rows); one sort, no row loop."""
    ordered = np.sort(values, axis=1)
    count = np.isfinite(ordered).sum(axis=1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.minimum(count // 2, np.maximum(count - 1, 0))[:, None], axis=1)[:, 0]
    return np.where(count > 0, 0.5 * (low + high), np.nan)


def _row_robust_sigma(values: np.ndarray, max_columns: int | None = None) -> np.ndarray:
    """1.4826 MAD of each row, ignoring NaN; from every k-th column if there are over ``max_columns``."""
    if max_columns is not None and values.shape[1] > max_columns:
        values = values[:, :: int(np.ceil(values.shape[1] / max_columns))]
    values = values.astype(np.float32)
    median = _row_median(values)
    return 1.4826 * _row_median(np.abs(values - median[:, None]))


@lru_cache(maxsize=8)
def _spline_bases_cached(time_bytes: bytes, spacings: tuple[float, ...], gap_width: float):
    time = np.frombuffer(time_bytes, dtype=np.float64)
    bases = [_banded_basis(time, spacing, gap_width) for spacing in spacings]
    n_cols = np.array([basis[2] for basis in bases], dtype=np.int64)
    max_cols = int(n_cols.max())
    firsts = np.stack([basis[0] for basis in bases])
    values = np.stack([basis[1] for basis in bases])
    # Banded layout of the kernel: row j holds entries (j - 3, j) ... (j, j); three rows of slack.
    penalties = np.zeros((len(bases), max_cols + 3, 4))
    grams = np.zeros((len(bases), max_cols + 3, 4))
    for s, (first, value, m, pen) in enumerate(bases):
        penalties[s, :m] = pen.T
        for k in range(4):
            for d in range(4 - k):
                column = first + k + d
                ok = column < m
                grams[s, :m, 3 - d] += np.bincount(column[ok], weights=(value[:, k] * value[:, k + d])[ok], minlength=m)
    for array in (firsts, values, n_cols, penalties, grams):
        array.setflags(write=False)
    return firsts, values, n_cols, penalties, grams


def _spline_bases(time: np.ndarray, spacings: np.ndarray, gap_width: float):
    """Banded cubic B-spline bases of a shared grid for several knot spacings, stacked for the kernel.

    Returns ``firsts`` (S, T), ``values`` (S, T, 4), ``n_cols`` (S,) and the
    penalty and unweighted normal matrix ``B^T B`` (S, M_max + 3, 4), row
    ``j`` holding entries ``(j - 3, j) ... (j, j)``. Cached: every chunk of a training set shares its mission's grid.
    """
    time = np.ascontiguousarray(time, dtype=np.float64)
    return _spline_bases_cached(time.tobytes(), tuple(float(s) for s in spacings), float(gap_width))


def transit_mask(
    time: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    half_width: float = MASK_HALF_WIDTH,
) -> np.ndarray:
    """Cadences within ``half_width`` transit durations of a mid-transit, (N, T) bool."""
    period = np.atleast_1d(np.asarray(period, dtype=np.float64))
    duration = np.broadcast_to(np.asarray(duration, dtype=np.float64), period.shape)
    t0 = np.broadcast_to(np.asarray(t0, dtype=np.float64), period.shape)
    time = np.asarray(time, dtype=np.float64)
    if time.ndim == 1 and period.ndim == 1:
        # One compiled pass per row, the same arithmetic as phase_fold (no (N, T) float temporaries).
        out = np.empty((period.size, time.size), dtype=bool)
        _lightcurve_kernels.transit_mask_rows(
            np.ascontiguousarray(time), *(np.ascontiguousarray(v) for v in (period, t0, duration)), float(half_width), out
        )  # fmt: skip
        return out
    folded = phase_fold(time, period, t0)
    return np.abs(folded) < half_width * duration[:, None]


def adaptive_spline_trend(
    time: np.ndarray,
    flux: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    knot_spacings: tuple[float, ...] | float = KNOT_SPACINGS,
    sigma_clip: float = 3.0,
    n_iter: int = 3,
    choice_fits: int = 1,
    penalty: float = 1e-3,
    gap_width: float = GAP_WIDTH,
    spacing_patience: int = SPACING_PATIENCE,
    settled_chi2: float = SETTLED_CHI2,
    return_spacing: bool = False,
):
    """Robust cubic-spline trends with per-star knot spacing chosen by BIC.

    For each candidate knot spacing a cubic B-spline (split at gaps longer
    than ``gap_width``) is fitted by weighted least squares to every light
    curve, iteratively dropping points more than ``sigma_clip`` robust
    standard deviations from the fit (AstroNet's ``kepler_spline``). Points in
    ``exclude`` (for example :func:`transit_mask` of the ephemeris being
    vetted) never enter the fit: the spline bridges them, held smooth by a
    small second-difference penalty on its coefficients (``penalty`` times
    the mean diagonal of the normal matrix), so transits up to the mask width
    keep their depth even with knots much closer than their duration. Per
    star the spacing with the lowest Bayesian information criterion
    ``chi2 + n_coefficients ln(n_points)`` wins, with ``chi2`` measured
    against the point-to-point scatter (``1.4826 MAD(diff) / sqrt 2``) and
    each point's contribution capped at ``sigma_clip^2``; fast rotators get
    short spacings, quiet stars long ones. The BIC is taken after
    ``choice_fits`` fits of each spacing (default one, the unclipped fit:
    with the cap, the few points that clipping would drop change chi2 by
    far less than a step in spacing does), and only the winner is then
    clipped and refitted up to ``n_iter`` fits; ``choice_fits=n_iter``
    compares fully clipped fits (three times the work, the same
    distribution of trends: ``tests/transit/test_lightcurve_kernels.py``).
    The spacings are fitted from the longest down and a star stops once
    ``spacing_patience`` shorter ones in a row have not lowered the BIC of
    a settled best fit (:data:`SPACING_PATIENCE`, :data:`SETTLED_CHI2`):
    the exhaustive scan's choice for 587 of 588 stars of two training-set
    chunks with 3.85 of 6 fits per star (the short, costly spacings are the
    ones mostly skipped); ``spacing_patience=len(knot_spacings)`` is the
    exhaustive scan.

    A compiled kernel (:func:`skysift.transit._lightcurve_kernels.adaptive_spline_rows`)
    loops over the light curves: the basis and its unweighted normal matrix
    are made once per time grid (and cached); per star and spacing the
    unfitted cadences are taken out of it, each clipping pass takes out or
    puts back only the cadences whose weight changed, and the banded system
    is solved by Cholesky (O(M)). A star stops iterating at a spacing once
    its clipping no longer changes (another fit would repeat the last).

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Shared, sorted times (days).
    flux : numpy.ndarray, shape (N, T) or (T,)
        Fluxes; NaN marks missing cadences.
    valid : numpy.ndarray of bool, shape (N, T), optional
        Cadences that may be fitted.
    exclude : numpy.ndarray of bool, shape (N, T), optional
        Cadences never fitted (masked transits).
    knot_spacings : float or sequence of float
        Candidate knot spacings (days).
    n_iter : int
        Fits of the chosen spacing, each after clipping on the previous one.
    spacing_patience : int
        The spacings are tried from the longest down, and a star stops once
        this many shorter ones in a row failed to lower its BIC (see
        :data:`SPACING_PATIENCE`); ``len(knot_spacings)`` or more tries all.
    settled_chi2 : float
        The descent stops only once the best fit leaves less capped chi^2
        per fitted cadence than this (:data:`SETTLED_CHI2`).
    choice_fits : int
        Fits of every spacing before its BIC is compared (1 to ``n_iter``).
    return_spacing : bool
        Also return the chosen spacing per light curve.

    Returns
    -------
    trend : numpy.ndarray, shape (N, T)
    spacing : numpy.ndarray, shape (N,)
        Only with ``return_spacing``.
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.ascontiguousarray(np.atleast_2d(np.asarray(flux, dtype=np.float64)))
    good = np.isfinite(flux) if valid is None else (np.broadcast_to(valid, flux.shape) & np.isfinite(flux))
    fittable = good if exclude is None else good & ~np.broadcast_to(exclude, flux.shape)
    # Stars with too little unmasked data fall back to fitting everything.
    fittable = np.ascontiguousarray(np.where(fittable.sum(axis=1, keepdims=True) >= 16, fittable, good))
    spacings = np.sort(np.atleast_1d(np.asarray(knot_spacings, dtype=np.float64)))
    firsts, values, n_cols, penalties, grams = _spline_bases(time, spacings, gap_width)
    best_trend = np.empty(flux.shape)
    best_index = np.empty(flux.shape[0], dtype=np.int64)
    _lightcurve_kernels.adaptive_spline_rows(
        flux, np.ascontiguousarray(good), fittable, firsts, values, n_cols, penalties, grams, float(penalty),
        float(sigma_clip), int(n_iter), int(choice_fits), int(spacing_patience), float(settled_chi2), best_trend,
        best_index,
    )  # fmt: skip
    best_spacing = np.where(best_index >= 0, spacings[np.maximum(best_index, 0)], np.nan)
    return (best_trend, best_spacing) if return_spacing else best_trend


def detection_statistic(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    max_boxes: int = NOISE_BOXES,
) -> dict[str, np.ndarray]:
    """MES-like detection statistic of a folded dip in detrended light curves.

    ``depth`` is the out-of-transit median minus the mean in-transit flux
    (cadences within half a duration of a mid-transit), ``noise`` the robust
    (1.4826 MAD) scatter of running means over one transit duration of the
    out-of-transit flux (more than one duration from any mid-transit), so
    residual red noise counts as a pipeline's CDPP does, and

    ``mes = depth / noise * sqrt(n_in / n_per_transit)``,

    which for white noise of scatter ``sigma`` is ``depth * sqrt(n_in) / sigma``.

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Sorted times (days), shared by all rows.
    flux : numpy.ndarray, shape (N, T)
        Detrended flux (baseline 1).
    period, t0, duration : numpy.ndarray, shape (N,)
        Ephemeris, days.
    valid : numpy.ndarray of bool, optional
        Cadences to use (NaN always skipped).
    max_boxes : int
        The noise is the robust scatter of every k-th running mean where
        there are more than this many (:data:`NOISE_BOXES`); 0 takes all.

    Returns
    -------
    dict
        ``mes``, ``depth`` (relative), ``noise`` (relative, per duration),
        ``n_in`` (in-transit cadences), ``n_transits`` (equivalent full transits).
    """
    time = np.ascontiguousarray(time, dtype=np.float64)
    flux = np.ascontiguousarray(np.atleast_2d(np.asarray(flux, dtype=np.float64)))
    n_rows, n_time = flux.shape
    period, t0, duration = (
        np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (n_rows,))) for v in (period, t0, duration)
    )
    good = np.isfinite(flux) if valid is None else (np.broadcast_to(valid, flux.shape) & np.isfinite(flux))
    cadence = float(np.median(np.diff(time))) if n_time > 1 else 1.0
    width = np.clip(np.rint(duration / cadence).astype(np.int64), 1, max(n_time - 1, 1))
    mes, depth, noise, n_transits = (np.empty(n_rows) for _ in range(4))
    n_in = np.empty(n_rows, dtype=np.int64)
    _lightcurve_kernels.detection_rows(
        time, flux, np.ascontiguousarray(good), period, t0, duration, width, int(max_boxes), mes, depth, noise, n_in,
        n_transits,
    )  # fmt: skip
    return {"mes": mes, "depth": depth, "noise": noise, "n_in": n_in, "n_transits": n_transits}


# ---------------------------------------------------------------------------
# Vetting inputs: secondary, odd and even views and scalar diagnostics
# ---------------------------------------------------------------------------
#: Arrays returned by :func:`make_vetting_views`, in the order the transit model takes them.
VETTING_INPUT_NAMES = ("global_view", "local_view", "secondary_view", "odd_view", "even_view", "scalars")
#: Scalar diagnostics of :func:`make_vetting_views`, in column order: name -> description.
#: Each is a fixed transform of a measured quantity (no per-dataset statistics), of order one.
VETTING_SCALARS: dict[str, str] = {
    "log_depth": "log10(primary depth) + 3, depth of the binned local view (relative flux)",
    "log_duration_fraction": "log10(duration / period) + 1.5",
    "log_period": "log10(period / 1 d) - 1",
    "secondary_ratio": "depth at phase 0.5 / primary depth (box depths), clipped to [-1, 2]",
    "secondary_significance": "arcsinh(MES of a box at phase 0.5) / 2 (weak-secondary test)",
    "odd_even_significance": "arcsinh(|odd - even depth| / its error) / 2 (odd/even depth test, central half of the transits)",
    "depth_consistency": "log10 reduced chi^2 of the individual transits' depths (central half), clipped to [-1, 3]",
    "ingress_fraction": "1 - T23 / T14 of the trapezoid fitted to the local view (0 box, 1 V)",
    "log_fit_duration": "log10(fitted T14 / TCE duration)",
    "impact_squared": "b^2 from the trapezoid (Seager & Mallen-Ornelas 2003, k = sqrt(depth)), clipped to [-2, 2]",
    "log_density": "log10(stellar density implied by P, T14, T23 and depth / 1 g cm^-3), clipped to [-3, 3]",
}
#: Trapezoid grid of :func:`_trapezoid_fit`: total durations (TCE durations) and flat-bottom
#: fractions T23/T14, denser towards box shapes (small planets' ingress is a few per cent).
_TRAPEZOID_T14 = np.geomspace(0.4, 2.5, 25)
_TRAPEZOID_FLAT = 1.0 - np.geomspace(0.02, 1.0, 20)
#: Secondary, odd and even views may exceed the primary's depth; keep outliers bounded.
_VIEW_CLIP = 5.0
_GRAVITY_CGS = 6.674e-8
#: Fractional systematic error added to each odd/even and single-transit depth (see
#: :func:`_vetting_scalars`).
_DEPTH_ERROR_FLOOR = 0.01


def _depth_scaled(raw: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """A raw local view with its own median subtracted, divided by the primary's depth."""
    view = fill_empty_bins(raw)
    centred = view - _row_medians(view)[:, None]
    return np.clip(centred / depth[:, None], -_VIEW_CLIP, _VIEW_CLIP).astype(np.float32)


def _trapezoid_templates(half_span: float | np.ndarray, n_bins: int = LOCAL_BINS) -> np.ndarray:
    """Unit trapezoid dips of the :data:`_TRAPEZOID_T14` x :data:`_TRAPEZOID_FLAT` grid, (..., B, K).

    A dip is 1 on the flat bottom and falls linearly to 0 at the first and
    fourth contacts, sampled at the bin centres of a local view spanning
    ``+-half_span`` durations (a scalar, or (N,) for one grid per row). Not
    averaged over the bins: a median over a bin of a monotonic ingress is its
    value at the bin centre.
    """
    half_span = np.asarray(half_span, dtype=np.float64)
    x = (-1.0 + (2.0 * np.arange(n_bins) + 1.0) / n_bins) * half_span[..., None]
    half_total, slope = _trapezoid_shapes()
    return np.clip((half_total - np.abs(x)[..., None]) / slope, 0.0, 1.0)


@lru_cache(maxsize=1)
def _trapezoid_shapes() -> tuple[np.ndarray, np.ndarray]:
    """Half of T14 and the ingress slope's run (both in durations) of each template, (K,) each."""
    half_total = 0.5 * np.repeat(_TRAPEZOID_T14, _TRAPEZOID_FLAT.size)
    slope = np.maximum(half_total * (1.0 - np.tile(_TRAPEZOID_FLAT, _TRAPEZOID_T14.size)), 1e-9)
    for array in (half_total, slope):
        array.setflags(write=False)
    return half_total, slope


@lru_cache(maxsize=1)
def _standard_trapezoid_templates() -> np.ndarray:
    """Templates of the uncapped local view (+-``LOCAL_NUM_DURATIONS`` durations), (B, K)."""
    templates = _trapezoid_templates(LOCAL_NUM_DURATIONS)
    templates.setflags(write=False)
    return templates


def _trapezoid_fit(view: np.ndarray, half_span: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares trapezoid (depth, T14, T23/T14) on a normalised local view, by grid search.

    ``view`` (N, B) spans ``+-half_span`` (N,) transit durations. Returns
    the depth in view units (primary minimum -1 gives about 1), T14 in
    durations and the flat fraction T23/T14 of the best template per row.
    """
    view = view.astype(np.float64)
    standard = _standard_trapezoid_templates()
    overlap = -(view @ standard)
    norm = np.broadcast_to(np.einsum("bk,bk->k", standard, standard), overlap.shape).copy()
    # Views capped at half an orbit (long durations) span fewer durations: their own templates.
    capped = np.flatnonzero(half_span < LOCAL_NUM_DURATIONS - 1e-9)
    if capped.size:
        half_total, slope = _trapezoid_shapes()
        capped_overlap, capped_norm = np.empty((2, capped.size, half_total.size))
        _lightcurve_kernels.trapezoid_overlaps(
            np.ascontiguousarray(view[capped]), np.ascontiguousarray(half_span[capped], dtype=np.float64), half_total,
            slope, capped_overlap, capped_norm,
        )  # fmt: skip
        overlap[capped], norm[capped] = capped_overlap, capped_norm
    norm = np.maximum(norm, 1e-12)
    # Best dip (not bump): the largest drop of chi^2, overlap^2 / norm, with positive depth.
    gain = np.where(overlap > 0, overlap**2 / norm, -1.0)
    best = np.argmax(gain, axis=1)
    rows = np.arange(view.shape[0])
    depth = np.maximum(overlap[rows, best] / norm[rows, best], 0.0)
    t14 = np.repeat(_TRAPEZOID_T14, _TRAPEZOID_FLAT.size)
    flat = np.tile(_TRAPEZOID_FLAT, _TRAPEZOID_T14.size)
    return depth, t14[best], flat[best]


def _density_from_trapezoid(
    period: np.ndarray, t14: np.ndarray, flat: np.ndarray, depth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Impact parameter squared and stellar density (g cm^-3) of a transit shape.

    Seager & Mallen-Ornelas (2003, eqs. 7, 8 and 9) for a dark planet of
    radius ratio ``k = sqrt(depth)`` on a circular orbit; ``t14`` in days.
    The density is the one a real planet would need; diluted or stellar
    eclipses give values the star cannot have.
    """
    k = np.sqrt(np.clip(depth, 0.0, 1.0))
    sin14 = np.sin(np.pi * np.minimum(t14 / period, 0.5)) ** 2
    sin23 = np.sin(np.pi * np.minimum(flat * t14 / period, 0.5)) ** 2
    ratio = np.minimum(sin23 / np.maximum(sin14, 1e-300), 0.99)
    impact_squared = ((1.0 - k) ** 2 - ratio * (1.0 + k) ** 2) / (1.0 - ratio)
    a_rs_squared = ((1.0 + k) ** 2 - impact_squared * (1.0 - sin14)) / np.maximum(sin14, 1e-300)
    seconds = period * 86400.0
    density = 3.0 * np.pi / (_GRAVITY_CGS * seconds**2) * np.maximum(a_rs_squared, 1e-6) ** 1.5
    return impact_squared, density


def _vetting_statistics(
    time: np.ndarray,
    flux: np.ndarray,
    usable: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    max_boxes: int = NOISE_BOXES,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Detection statistics of the secondary, the odd and the even transits, the depth consistency and parities.

    Secondary: :func:`detection_statistic` at ``t0 + P / 2``; odd and even:
    at ``t0`` over the central half of the duration, from the odd- or
    even-numbered transits only (numbered ``floor((t - t0) / P + 0.5)``).
    The depth consistency is the reduced chi^2 of the individual transits'
    depths about their weighted mean, (N,): each transit's depth is the
    mean flux deficit within a quarter duration of its mid-time (the central
    half, as for the odd/even depths), with the error of a box of that many
    cadences from the noise of the central-half statistic of all transits,
    plus :data:`_DEPTH_ERROR_FLOOR` of the mean depth. A planet gives about 1
    whatever its number of transits; a single event (one transit much deeper
    than the others) or alternating depths give much more; rows with fewer
    than two covered transits give 1. This is the idea of the Kepler
    pipeline's and Robovetter's individual-transit tests (Twicken et al.
    2018; Thompson et al. 2018), reduced to one statistic. Also returns
    whether each cadence's transit number is even, (N, T) bool.

    One compiled pass per light curve
    (:func:`~skysift.transit._lightcurve_kernels.vetting_statistics_rows`),
    equal to the statistics computed one by one (up to summation order);
    each noise from at most ``max_boxes`` running means, as :func:`detection_statistic`.
    """
    flux = np.ascontiguousarray(flux)
    n_rows, n_time = flux.shape
    good = np.ascontiguousarray(usable & np.isfinite(flux))
    cadence = float(np.median(np.diff(time))) if n_time > 1 else 1.0
    width, half_width = (np.clip(np.rint(w / cadence).astype(np.int64), 1, max(n_time - 1, 1)) for w in (duration, 0.5 * duration))
    secondary, odd, even = (np.empty((n_rows, 5)) for _ in range(3))
    consistency = np.empty(n_rows)
    is_even = np.empty((n_rows, n_time), dtype=bool)
    _lightcurve_kernels.vetting_statistics_rows(
        np.ascontiguousarray(time, dtype=np.float64), flux, good, *(np.ascontiguousarray(v) for v in (period, t0, duration)),
        width, half_width, _DEPTH_ERROR_FLOOR, int(max_boxes), secondary, odd, even, consistency, is_even,
    )  # fmt: skip
    names = ("mes", "depth", "noise", "n_in", "n_transits")
    statistics = tuple({name: table[:, i] for i, name in enumerate(names)} for table in (secondary, odd, even))
    return (*statistics, consistency, is_even)


def _vetting_scalars(
    period: np.ndarray,
    duration: np.ndarray,
    primary_depth: np.ndarray,
    local: np.ndarray,
    half_span: np.ndarray,
    primary: dict[str, np.ndarray],
    secondary: dict[str, np.ndarray],
    odd: dict[str, np.ndarray] | None,
    even: dict[str, np.ndarray] | None,
    consistency: np.ndarray,
) -> np.ndarray:
    """The columns of :data:`VETTING_SCALARS` (N, 11) float32 from the measured diagnostics."""
    with np.errstate(divide="ignore", invalid="ignore"):
        box_depth = primary["depth"]
        secondary_ratio = np.where(box_depth > 0, secondary["depth"] / box_depth, 0.0)
        secondary_mes = np.where(np.isfinite(secondary["noise"]), secondary["mes"], 0.0)
        if odd is None or even is None:
            odd_even = np.zeros_like(period)
        else:
            errors = [np.where(d["n_transits"] > 0, d["noise"] / np.sqrt(d["n_transits"]), np.inf) for d in (odd, even)]
            # Plus 1 % of the depth: at very high S/N, sampling a curved eclipse bottom at different
            # cadence phases in odd and even transits alone gives "significant" differences.
            floor = _DEPTH_ERROR_FLOOR * np.abs(0.5 * (odd["depth"] + even["depth"]))
            error = np.sqrt(errors[0] ** 2 + errors[1] ** 2 + 2.0 * floor**2)
            odd_even = np.where(np.isfinite(error) & (error > 0), np.abs(odd["depth"] - even["depth"]) / error, 0.0)
    fit_depth, t14, flat = _trapezoid_fit(local, half_span)
    impact_squared, density = _density_from_trapezoid(period, t14 * duration, flat, fit_depth * primary_depth)
    columns = [
        np.log10(np.maximum(primary_depth, 1e-6)) + 3.0,
        np.log10(duration / period) + 1.5,
        np.log10(period) - 1.0,
        np.clip(np.nan_to_num(secondary_ratio), -1.0, 2.0),
        np.arcsinh(np.nan_to_num(secondary_mes)) / 2.0,
        np.arcsinh(np.nan_to_num(odd_even)) / 2.0,
        np.clip(np.log10(np.maximum(np.nan_to_num(consistency, nan=1.0), 1e-3)), -1.0, 3.0),
        1.0 - flat,
        np.log10(t14),
        np.clip(impact_squared, -2.0, 2.0),
        np.clip(np.log10(density), -3.0, 3.0),
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def make_vetting_views(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    statistic: str = "median",
    odd_even: bool = True,
    detection: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """AstroNet views plus the secondary, odd and even views and scalar diagnostics.

    ``global_view`` and ``local_view`` equal :func:`make_views`. The extra
    inputs follow the later AstroNet vetting models (Shallue & Vanderburg
    2018, section 7; Yu et al. 2019, AJ 158, 25) and Exonet (Ansdell et al.
    2018), and the Kepler pipeline's diagnostics (Twicken et al. 2018):

    * ``secondary_view``: the local view centred half an orbit after ``t0``
      (where a circular binary's secondary eclipse falls);
    * ``odd_view`` and ``even_view``: local views of the odd- and
      even-numbered transits only (numbered from ``t0``);
    * ``scalars``: the :data:`VETTING_SCALARS`, among them the depth that the
      normalised views discard, the weak-secondary and odd/even significances
      (box depths and noise of :func:`detection_statistic`), the consistency
      of the individual transits' depths (single events), and a trapezoid
      fitted to the local view with the impact parameter and stellar density
      it implies (Seager & Mallen-Ornelas 2003).

    The three extra views are median-subtracted and divided by the depth of
    the primary local view (not by their own minimum, as AstroNet's views
    are), so a missing secondary stays flat, a secondary half as deep reaches
    -0.5 and odd/even depth differences survive, as in Yu et al. (2019).

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Sorted times (days), shared by all rows.
    flux, period, t0, duration, valid, statistic
        As :func:`make_views` (durations in days).
    odd_even : bool
        Measure odd and even transits separately. False (for light curves
        already folded, whose transit numbers are lost) copies the local view
        into both and sets the odd/even significance to 0 and the depth
        consistency to 1 (the values of a consistent signal).
    detection : dict of str to numpy.ndarray, optional
        :func:`detection_statistic` of the primary at this ephemeris, if
        already measured (the training-set path selects on it, from the
        float64 flux: the same up to the rounding of the flux to float32
        that the views bin); measured here otherwise.

    Returns
    -------
    dict of str to numpy.ndarray
        ``global_view`` (N, 2001); ``local_view``, ``secondary_view``,
        ``odd_view``, ``even_view`` (N, 201); ``scalars`` (N, 11); all float32.
    """
    _check_statistic(statistic)
    time = np.asarray(time, dtype=np.float64)
    if time.ndim != 1:
        raise ValueError(f"time must be one grid (T,) shared by all rows, got shape {time.shape}")
    flux = np.atleast_2d(flux)
    n_rows = flux.shape[0]
    period, t0, duration = (
        np.broadcast_to(np.asarray(v, dtype=np.float64), (n_rows,)) for v in (period, t0, duration)
    )
    if valid is not None:
        valid = np.broadcast_to(valid, flux.shape)
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in VETTING_INPUT_NAMES}
    # Raw (unfilled) local views only, for the secondary and odd/even folds.
    raw_local_only = dict(statistic=statistic, global_bins=0, finish=False)
    for begin in range(0, n_rows, _ROWS_PER_BLOCK):
        rows = slice(begin, begin + _ROWS_PER_BLOCK)
        block_flux = np.ascontiguousarray(flux[rows], dtype=np.float32)
        block_valid = None if valid is None else valid[rows]
        p, d, e = period[rows], duration[rows], t0[rows]
        good = _usable_points(block_flux, block_valid, time)
        raw_global, raw_local = _binned_views(
            time, block_flux, p, e, d, valid=block_valid, statistic=statistic, finish=False
        )
        raw_local = fill_empty_bins(raw_local)
        centred = raw_local - _row_medians(raw_local)[:, None]
        depth = -centred.min(axis=1)
        depth = np.where(depth > 0, depth, 1.0)
        local = normalise_views(raw_local)
        blocks["global_view"].append(normalise_views(fill_empty_bins(raw_global)))
        blocks["local_view"].append(local)
        # Secondary: fold on t0 + P/2, i.e. shift the phase by half an orbit.
        _, raw_secondary = _binned_views(
            time, block_flux, p, e, d, valid=block_valid, phase_offset=0.5, **raw_local_only
        )
        blocks["secondary_view"].append(_depth_scaled(raw_secondary, depth))
        usable = np.ones(block_flux.shape, dtype=bool) if good is None else good
        if detection is None:
            primary = detection_statistic(time, block_flux, p, e, d, valid=usable)
        else:
            primary = {name: np.asarray(values)[rows] for name, values in detection.items()}
        secondary, odd, even, consistency, is_even = _vetting_statistics(time, block_flux, usable, p, e, d)
        if odd_even:
            for name, parity in (("even_view", is_even), ("odd_view", ~is_even)):
                _, raw = _binned_views(time, block_flux, p, e, d, valid=usable & parity, **raw_local_only)
                blocks[name].append(_depth_scaled(raw, depth))
        else:
            blocks["odd_view"].append(local.copy())
            blocks["even_view"].append(local.copy())
            odd = even = None
            consistency = np.ones(p.shape)
        half_span = np.minimum(LOCAL_NUM_DURATIONS * d, 0.5 * p) / d
        blocks["scalars"].append(
            _vetting_scalars(p, d, depth, local, half_span, primary, secondary, odd, even, consistency)
        )
    return {name: np.concatenate(parts) for name, parts in blocks.items()}
