"""The numpy detrend, detection statistic and star synthesis that the compiled kernels replaced: references for the tests.

Verbatim from ``skysift.transit.preprocess`` and ``skysift.transit.lightcurves``
before they moved to numba (:mod:`skysift.transit._lightcurve_kernels`),
renamed ``reference_*``; the helpers that did not change (basis, row
medians, phase fold) are imported from it.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from skysift.transit.preprocess import (
    GAP_WIDTH,
    KNOT_SPACINGS,
    _DEPTH_ERROR_FLOOR,
    _banded_basis,
    _row_median,
    _row_robust_sigma,
    phase_fold,
)


def _weighted_spline_fit(first, values, n_cols, penalty, flux, weight, lam):
    """Penalised least-squares spline coefficients (N, M) for weights (N, T)."""
    import scipy.linalg as sla

    n_time = first.size
    n_rows = flux.shape[0]
    band = np.zeros((n_rows, 4, n_cols))
    for k in range(4):
        for d in range(4 - k):
            column = first + k + d
            ok = column < n_cols
            product = values[:, k] * values[:, k + d]
            s = sparse.csr_array((product[ok], (np.arange(n_time)[ok], column[ok])), shape=(n_time, n_cols))
            band[:, 3 - d, :] += (s.T @ weight.T).T
    rhs = np.zeros((n_rows, n_cols))
    weighted = weight * flux
    for k in range(4):
        column = first + k
        ok = column < n_cols
        s = sparse.csr_array((values[ok, k], (np.arange(n_time)[ok], column[ok])), shape=(n_time, n_cols))
        rhs += (s.T @ weighted.T).T
    scale = lam * np.maximum(band[:, 3, :].mean(axis=1), 1e-12)
    band += scale[:, None, None] * penalty[None]
    band[:, 3, :] += 1e-10 * np.maximum(band[:, 3, :].max(axis=1, keepdims=True), 1e-12)
    coefficients = np.empty((n_rows, n_cols))
    for row in range(n_rows):
        coefficients[row] = sla.solveh_banded(band[row], rhs[row], lower=False, check_finite=False)
    return coefficients


def _evaluate(first, values, coefficients):
    n_cols = coefficients.shape[1]
    index = np.minimum(first[:, None] + np.arange(4), n_cols - 1)
    return np.einsum("tk,ntk->nt", values, coefficients[:, index])


def reference_adaptive_spline_trend(
    time: np.ndarray,
    flux: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    knot_spacings: tuple[float, ...] | float = KNOT_SPACINGS,
    sigma_clip: float = 3.0,
    n_iter: int = 3,
    penalty: float = 1e-3,
    gap_width: float = GAP_WIDTH,
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
    short spacings, quiet stars long ones.

    Everything is vectorised over light curves: per spacing and pass, the
    banded normal matrices of all N stars come from ten sparse products and
    each is solved by a banded Cholesky (O(M) per star).

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
    return_spacing : bool
        Also return the chosen spacing per light curve.

    Returns
    -------
    trend : numpy.ndarray, shape (N, T)
    spacing : numpy.ndarray, shape (N,)
        Only with ``return_spacing``.
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    n_rows, n_time = flux.shape
    good = np.isfinite(flux) if valid is None else (np.broadcast_to(valid, flux.shape) & np.isfinite(flux))
    fittable = good if exclude is None else good & ~np.broadcast_to(exclude, flux.shape)
    # Stars with too little unmasked data fall back to fitting everything.
    fittable = np.where(fittable.sum(axis=1, keepdims=True) >= 16, fittable, good)
    clean = np.where(good, flux, 0.0)
    # Point-to-point noise, for the BIC (insensitive to slow trends).
    diffs = np.where(good[:, 1:] & good[:, :-1], np.diff(clean, axis=1), np.nan)
    p2p = np.nan_to_num(_row_robust_sigma(diffs, 2048) / np.sqrt(2.0), nan=1.0)
    p2p = np.maximum(p2p, 1e-12)
    spacings = np.atleast_1d(np.asarray(knot_spacings, dtype=np.float64))
    n_points = np.maximum(fittable.sum(axis=1), 1)
    best_bic = np.full(n_rows, np.inf)
    best_trend = np.full(flux.shape, np.nan)
    best_spacing = np.full(n_rows, np.nan)
    for spacing in spacings:
        first, values, n_cols, pen = _banded_basis(time, float(spacing), gap_width)
        weight = fittable.astype(np.float64)
        for _ in range(n_iter):
            coefficients = _weighted_spline_fit(first, values, n_cols, pen, clean, weight, penalty)
            fit = _evaluate(first, values, coefficients)
            residual = np.where(fittable, clean - fit, np.nan)
            scatter = np.maximum(_row_robust_sigma(residual, 1024), 1e-12)
            new_weight = (fittable & (np.abs(clean - fit) <= sigma_clip * scatter[:, None])).astype(np.float64)
            if np.array_equal(new_weight, weight):
                break
            weight = new_weight
        chi2 = np.where(fittable, np.minimum(((clean - fit) / p2p[:, None]) ** 2, sigma_clip**2), 0.0).sum(axis=1)
        bic = chi2 + n_cols * np.log(n_points)
        better = bic < best_bic
        best_bic = np.where(better, bic, best_bic)
        best_trend[better] = fit[better]
        best_spacing[better] = spacing
    return (best_trend, best_spacing) if return_spacing else best_trend


def reference_detection_statistic(
    time: np.ndarray,
    flux: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    duration: np.ndarray,
    *,
    valid: np.ndarray | None = None,
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

    Returns
    -------
    dict
        ``mes``, ``depth`` (relative), ``noise`` (relative, per duration),
        ``n_in`` (in-transit cadences), ``n_transits`` (equivalent full transits).
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    n_rows, n_time = flux.shape
    period = np.broadcast_to(np.asarray(period, dtype=np.float64), (n_rows,))
    t0 = np.broadcast_to(np.asarray(t0, dtype=np.float64), (n_rows,))
    duration = np.broadcast_to(np.asarray(duration, dtype=np.float64), (n_rows,))
    good = np.isfinite(flux) if valid is None else (np.broadcast_to(valid, flux.shape) & np.isfinite(flux))
    folded = np.abs(phase_fold(time, period, t0))
    inside = good & (folded < 0.5 * duration[:, None])
    outside = good & (folded > duration[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline = _row_median(np.where(outside, flux, np.nan))
        baseline = np.where(np.isfinite(baseline), baseline, 1.0)
        n_in = inside.sum(axis=1)
        mean_in = np.where(inside, flux, 0.0).sum(axis=1) / np.maximum(n_in, 1)
        depth = np.where(n_in > 0, baseline - mean_in, 0.0)
        cadence = float(np.median(np.diff(time))) if n_time > 1 else 1.0
        width = np.clip(np.rint(duration / cadence).astype(np.int64), 1, max(n_time - 1, 1))
        residual = np.where(outside, flux - baseline[:, None], 0.0)
        csum = np.concatenate([np.zeros((n_rows, 1)), np.cumsum(residual, axis=1)], axis=1)
        ccount = np.concatenate([np.zeros((n_rows, 1)), np.cumsum(outside, axis=1)], axis=1)
        begin = np.arange(n_time)[None, :]
        end = np.minimum(begin + width[:, None], n_time)
        box_count = np.take_along_axis(ccount, end, axis=1) - ccount[:, :n_time]
        box_sum = np.take_along_axis(csum, end, axis=1) - csum[:, :n_time]
        full = (box_count >= 0.8 * width[:, None]) & (end - begin == width[:, None])
        box_mean = np.where(full, box_sum / np.maximum(box_count, 1), np.nan)
        noise = _row_robust_sigma(box_mean)
        # Too few boxes (very long durations): scale the per-cadence scatter.
        per_cadence = _row_robust_sigma(np.where(outside, flux, np.nan)) / np.sqrt(width)
        noise = np.where(np.isfinite(noise) & (full.sum(axis=1) >= 20), noise, per_cadence)
        noise = np.where(np.isfinite(noise) & (noise > 0), noise, np.inf)
        n_transits = n_in / width
        mes = np.where(n_in > 0, depth / noise * np.sqrt(n_transits), 0.0)
    return {"mes": mes, "depth": depth, "noise": noise, "n_in": n_in, "n_transits": n_transits}


def reference_depth_consistency(
    time: np.ndarray,
    flux: np.ndarray,
    usable: np.ndarray,
    cycle: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    half_duration: np.ndarray,
) -> np.ndarray:
    """Reduced chi^2 of the individual transits' depths about their weighted mean, (N,).

    Each transit's depth is the mean flux deficit within ``half_duration / 2``
    of its mid-time (the central half, as for the odd/even depths), with the
    error of a box of that many cadences from :func:`detection_statistic`'s
    noise, plus :data:`_DEPTH_ERROR_FLOOR` of the mean depth. A planet gives
    about 1 whatever its number of transits; a single event (one transit much
    deeper than the others) or alternating depths give much more. Rows with
    fewer than two covered transits give 1. This is the idea of the Kepler
    pipeline's and Robovetter's individual-transit tests (Twicken et al. 2018;
    Thompson et al. 2018), reduced to one statistic.
    """
    n_rows, n_time = flux.shape
    statistic = reference_detection_statistic(time, flux, period, t0, half_duration, valid=usable)
    inside = usable & (np.abs(phase_fold(time, period, t0)) < 0.5 * half_duration[:, None])
    first = np.where(inside, cycle, np.inf).min(axis=1)
    first = np.where(np.isfinite(first), first, 0.0)
    index = (cycle - first[:, None]).astype(np.int64)
    n_cycles = int(index[inside].max(initial=0)) + 1
    key = (np.arange(n_rows)[:, None] * n_cycles + index)[inside]
    counts = np.bincount(key, minlength=n_rows * n_cycles).reshape(n_rows, n_cycles)
    sums = np.bincount(key, weights=flux[inside], minlength=n_rows * n_cycles).reshape(n_rows, n_cycles)
    with np.errstate(divide="ignore", invalid="ignore"):
        covered = counts > 0
        # detection_statistic's depth is the out-of-transit median minus the mean in transit.
        baseline = statistic["depth"] + sums.sum(axis=1) / np.maximum(counts.sum(axis=1), 1)
        depth = np.where(covered, baseline[:, None] - sums / np.maximum(counts, 1), 0.0)
        width = np.where(statistic["n_transits"] > 0, statistic["n_in"] / statistic["n_transits"], 1.0)
        variance = statistic["noise"][:, None] ** 2 * width[:, None] / np.maximum(counts, 1)
        weight = np.where(covered, 1.0 / variance, 0.0)
        mean = (weight * depth).sum(axis=1) / weight.sum(axis=1)
        variance = variance + (_DEPTH_ERROR_FLOOR * mean[:, None]) ** 2
        chi2 = np.where(covered, (depth - mean[:, None]) ** 2 / variance, 0.0).sum(axis=1)
        dof = covered.sum(axis=1) - 1
        reduced = np.where((dof >= 1) & np.isfinite(chi2), chi2 / np.maximum(dof, 1), 1.0)
    return reduced


def reference_vetting_statistics(time, flux, usable, period, t0, duration):
    """Secondary, odd and even statistics and the depth consistency as the former ``make_vetting_views`` made them.

    ``flux`` is a float32 block (N, T), ``usable`` its usable cadences.
    """
    detrended = flux.astype(np.float64)
    secondary = reference_detection_statistic(time, detrended, period, t0 + 0.5 * period, duration, valid=usable)
    cycle = np.floor((time[None, :] - t0[:, None]) / period[:, None] + 0.5)
    is_even = np.mod(cycle, 2.0) == 0.0
    odd = reference_detection_statistic(time, detrended, period, t0, 0.5 * duration, valid=usable & ~is_even)
    even = reference_detection_statistic(time, detrended, period, t0, 0.5 * duration, valid=usable & is_even)
    consistency = reference_depth_consistency(time, detrended, usable, cycle, period, t0, 0.5 * duration)
    return secondary, odd, even, consistency, is_even


def _sho_psd(omega: np.ndarray, omega0: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Unnormalised power spectrum of a stochastically driven damped oscillator."""
    return omega0**4 / ((omega**2 - omega0**2) ** 2 + (omega0 * omega / q) ** 2)


def _gaussian_process_draws(psd: np.ndarray, n_time: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary series with the given (N, F) one-sided PSD, unit rms per row."""
    noise = rng.standard_normal(psd.shape) + 1j * rng.standard_normal(psd.shape)
    noise[:, 0] = 0.0
    series = np.fft.irfft(noise * np.sqrt(psd), axis=1)[:, :n_time]
    rms = series.std(axis=1, keepdims=True)
    return series / np.where(rms > 0, rms, 1.0)


def reference_simulate_stars(
    time: np.ndarray,
    params: dict[str, np.ndarray],
    noise: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Relative fluxes of a batch of stars on a shared time grid.

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Cadence times (days) from :func:`mission_time_grid`.
    params : dict of str to numpy.ndarray, shape (N,)
        Draws of :data:`STELLAR_PRIORS`.
    noise : numpy.ndarray, shape (N,)
        White-noise standard deviation per cadence (relative flux).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    flux : numpy.ndarray, shape (N, T)
        Relative flux around 1; NaN at lost or flagged cadences.
    valid : numpy.ndarray of bool, shape (N, T)
        False where the flux is NaN.
    """
    time = np.asarray(time, dtype=np.float64)
    n = int(np.asarray(noise).shape[0])
    n_time = time.size
    cadence = float(np.median(np.diff(time)))
    index = np.rint((time - time[0]) / cadence).astype(np.int64)
    # Uniform grid covering the mission gaps, padded against circular wrap-around.
    n_grid = int(2 * (index[-1] + 1))
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_grid, d=cadence)[None, :]

    p = {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in params.items()}
    omega_rot = 2.0 * np.pi / p["rotation_period"]
    rotation_psd = _sho_psd(omega, omega_rot, p["rotation_q"]) + 0.5 * _sho_psd(omega, 2.0 * omega_rot, p["rotation_q"])
    rotation = _gaussian_process_draws(rotation_psd, n_grid, rng)[:, index]
    harvey = 1.0 / (1.0 + (omega * p["granulation_timescale"]) ** 2)
    granulation = _gaussian_process_draws(harvey, n_grid, rng)[:, index]

    sigma = np.asarray(noise, dtype=np.float64)[:, None]
    flux = (
        1.0
        + p["rotation_amplitude"] * rotation
        + p["granulation_ratio"] * sigma * granulation
        + sigma * rng.standard_normal((n, n_time))
    )
    # Data loss: a few contiguous chunks plus scattered flagged cadences.
    valid = rng.random((n, n_time)) >= 0.25 * p["gap_fraction"]
    n_chunks = 3
    chunk_length = (0.75 * p["gap_fraction"] * n_time / n_chunks).astype(np.int64)
    starts = rng.integers(0, n_time, size=(n, n_chunks))
    position = np.arange(n_time)[None, None, :]
    lost = (position >= starts[:, :, None]) & (position < starts[:, :, None] + chunk_length[:, :, None])
    valid &= ~lost.any(axis=1)
    flux[~valid] = np.nan
    return flux, valid
