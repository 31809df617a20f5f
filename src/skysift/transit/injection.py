"""Transit injector and the negatives a transit survey sees, under the priors contract.

Each signal class declares its parameters as a ``dict[str, Prior]``
(:mod:`skysift.simulate.priors`), is drawn with
:func:`~skysift.simulate.priors.sample_parameters`, turned into physical
parameters by a ``*_parameters`` function, and injected by a pure function of
``(flux, time, parameters)``:

``planet``
    Mandel & Agol transit (:func:`inject_transits`, multiplicative). Limb
    darkening is drawn uniformly in Kipping's (2013) ``q1, q2``; ``a / R_s``
    follows from the period and the stellar density.
``eb``
    Eclipsing binary: primary and secondary eclipses of two limb-darkened
    stars (:func:`eclipsing_binary_flux`). Grazing geometries give V shapes;
    when the survey's period is half the true one (``half_period`` = 1) the
    primary and secondary alternate, so odd and even "transits" differ.
``blend``
    A background eclipsing binary diluted by the target's light: a deep
    eclipse made shallow, keeping its V shape and secondary.
``noise``
    No astrophysical signal: white and red noise plus a systematic
    (:func:`inject_systematics`: step discontinuity, sinusoid, or single-event
    dips/outliers), folded on a random ephemeris as a spurious detection.

Every drawn and derived parameter is returned so it can be stored per sample.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special

from skysift.simulate.priors import Choice, LogUniform, Prior, Uniform
from skysift.transit import _kernels
from skysift.transit.transit_model import (
    _multiply_transits,
    semi_major_axis_from_density,
    transit_duration,
    transit_light_curve,
)

__all__ = [
    "BLEND_PRIORS",
    "EB_PRIORS",
    "NOISE_PRIORS",
    "PLANET_PRIORS",
    "SYSTEMATICS",
    "eb_parameters",
    "eclipsing_binary_flux",
    "gaussian_noise",
    "inject_systematics",
    "inject_transits",
    "kipping_to_quadratic",
    "noise_parameters",
    "planet_parameters",
]

PLANET_PRIORS: dict[str, Prior] = {
    "period": LogUniform(0.5, 40.0, "d"),
    "t0_phase": Uniform(0.0, 1.0, ""),
    "rp": LogUniform(0.01, 0.3, ""),
    # Impact parameter as a fraction of 1 + rp (grazing transits included).
    "impact_fraction": Uniform(0.0, 0.95, ""),
    "stellar_density": LogUniform(0.2, 3.0, "g / cm3"),
    "q1": Uniform(0.0, 1.0, ""),
    "q2": Uniform(0.0, 1.0, ""),
}

EB_PRIORS: dict[str, Prior] = {
    "period": LogUniform(0.5, 40.0, "d"),
    "t0_phase": Uniform(0.0, 1.0, ""),
    # Secondary-to-primary radius ratio.
    "radius_ratio": Uniform(0.3, 1.0, ""),
    "impact_fraction": Uniform(0.0, 1.0, ""),
    "stellar_density": LogUniform(0.2, 3.0, "g / cm3"),
    # Secondary-to-primary surface brightness (sets the secondary depth).
    "surface_brightness_ratio": Uniform(0.02, 1.0, ""),
    "q1": Uniform(0.0, 1.0, ""),
    "q2": Uniform(0.0, 1.0, ""),
    # 1: the survey detected the binary at half its period (odd/even differ).
    "half_period": Choice((0.0, 1.0), unit=""),
}

BLEND_PRIORS: dict[str, Prior] = {
    **EB_PRIORS,
    "radius_ratio": Uniform(0.5, 1.0, ""),
    # Fraction of the aperture's light from the background binary.
    "dilution": LogUniform(0.01, 0.2, ""),
}

#: Codes of :func:`inject_systematics` (stored in the ``systematic`` column).
SYSTEMATICS = {0: "none", 1: "step", 2: "sinusoid", 3: "single-events"}

NOISE_PRIORS: dict[str, Prior] = {
    "period": LogUniform(0.5, 40.0, "d"),
    "t0_phase": Uniform(0.0, 1.0, ""),
    "duration": LogUniform(1.0, 12.0, "h"),
    "systematic": Choice((0.0, 1.0, 2.0, 3.0), unit=""),
    # Amplitude in units of the white-noise sigma.
    "systematic_amplitude": LogUniform(2.0, 20.0, ""),
    "sinusoid_period": LogUniform(0.2, 10.0, "d"),
}


def kipping_to_quadratic(q1: np.ndarray, q2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kipping (2013) ``q1, q2`` in [0, 1]^2 to physical quadratic ``u1, u2``."""
    root = np.sqrt(q1)
    return 2.0 * root * q2, root * (1.0 - 2.0 * q2)


def planet_parameters(draws: dict[str, np.ndarray], time_start: float) -> dict[str, np.ndarray]:
    """Physical transit parameters from draws of :data:`PLANET_PRIORS`.

    Adds ``t0`` (d), ``b``, ``a_rs``, ``u1``, ``u2`` and ``duration`` (days)
    to a copy of ``draws``. ``t0`` is the first mid-transit after ``time_start``.
    """
    p = dict(draws)
    p["t0"] = time_start + p["t0_phase"] * p["period"]
    p["b"] = p["impact_fraction"] * (1.0 + p["rp"])
    p["a_rs"] = np.maximum(semi_major_axis_from_density(p["period"], p["stellar_density"]), 1.5 * (1.0 + p["rp"]))
    p["u1"], p["u2"] = kipping_to_quadratic(p["q1"], p["q2"])
    p["duration"] = transit_duration(p["period"], p["a_rs"], p["rp"], p["b"])
    return p


def inject_transits(
    flux: np.ndarray,
    time: np.ndarray,
    params: dict[str, np.ndarray],
    rng: np.random.Generator | None = None,
    *,
    exposure_time: float | None = None,
    supersample: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Multiply light curves by planetary transits (inputs are not modified unless passed as ``out``).

    Parameters
    ----------
    flux : numpy.ndarray, shape (N, T) or (T,)
        Relative fluxes.
    time : numpy.ndarray, shape (T,) or (N, T)
        Times, days.
    params : dict
        Output of :func:`planet_parameters` (``period``, ``t0``, ``rp``,
        ``a_rs``, ``b``, ``u1``, ``u2``), arrays of shape (N,).
    rng : numpy.random.Generator, optional
        Unused (the transit is deterministic); accepted for the injector contract.
    exposure_time, supersample
        Integration-time smearing, see :func:`transit_light_curve`.
    out : numpy.ndarray, optional
        C-contiguous floating array of the result's shape to write into; it
        may be ``flux`` itself, which then gains its transits in place (no
        copy: the cheap way to inject into light curves made for the purpose).

    Returns
    -------
    numpy.ndarray, shape (N, T) ((T,) for one light curve and scalar parameters)
        ``flux`` times the transit model, in ``flux``'s floating dtype
        (float64 for other inputs; ``out``'s dtype if given): float32 light
        curves stay float32. ``out`` itself when given.

    Raises
    ------
    ValueError
        If ``out`` has the wrong shape, is not floating, C-contiguous and writable.

    Notes
    -----
    Only the cadences near a transit are multiplied (the model is exactly 1
    elsewhere), so the cost beyond copying ``flux`` scales with the
    in-transit cadences; on a shared sorted time grid a compiled kernel
    evaluates the model cadence by cadence (see
    :func:`skysift.transit.transit_model._multiply_transits`).
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.asarray(flux)
    values = [np.asarray(params[k], dtype=np.float64) for k in ("period", "t0", "rp", "a_rs", "b", "u1", "u2")]
    single = flux.ndim == 1 and time.ndim == 1 and all(v.ndim == 0 for v in values)
    # Rows: one per planet, per light curve or per time grid, whichever is more (broadcasting).
    n = max([v.size for v in values] + [flux.shape[0] if flux.ndim == 2 else 1, time.shape[0] if time.ndim == 2 else 1])
    values = [np.broadcast_to(np.atleast_1d(v), (n,)) for v in values]
    shape = (n, time.shape[-1])
    if out is None:
        dtype = flux.dtype if np.issubdtype(flux.dtype, np.floating) else np.float64
        rows = np.array(np.broadcast_to(flux, shape), dtype=dtype, order="C", copy=True)
    else:
        expected = shape[1:] if single else shape
        if not isinstance(out, np.ndarray) or out.shape != expected:
            raise ValueError(f"inject_transits: out must be an array of shape {expected}, got {getattr(out, 'shape', type(out).__name__)}")
        if not (np.issubdtype(out.dtype, np.floating) and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"inject_transits: out must be a writable C-contiguous floating array, got {out.dtype} {out.flags}")
        rows = out.reshape(shape)
        if out is not flux:
            np.copyto(rows, np.broadcast_to(flux, shape), casting="same_kind")
    # The product is formed in float64 and rounded once, as flux * model would be.
    _multiply_transits(rows, time, *values, exposure_time, supersample)
    if out is not None:
        return out
    return rows[0] if single else rows


#: Equiprobable cells of the tabulated normal in :func:`gaussian_noise`.
_NORMAL_CELLS = 1 << 16
#: Where the outermost cells of :func:`gaussian_noise` begin: ``-Phi^-1(1 / M)`` (4.17 sigma).
_NORMAL_TAIL_EDGE = float(-special.ndtri(1.0 / _NORMAL_CELLS))


@lru_cache(maxsize=1)
def _normal_cell_means() -> np.ndarray:
    """Mean of N(0, 1) within each of ``_NORMAL_CELLS`` equiprobable cells (float64).

    For the cell between quantiles ``q_k = Phi^-1(k / M)``: ``M (phi(q_k) - phi(q_k+1))``.
    """
    edges = special.ndtri(np.arange(_NORMAL_CELLS + 1) / _NORMAL_CELLS)
    density = np.exp(-0.5 * edges**2) / np.sqrt(2.0 * np.pi)
    return (density[:-1] - density[1:]) * _NORMAL_CELLS


@lru_cache(maxsize=8)
def _normal_table(loc: float, scale: float, dtype: np.dtype) -> np.ndarray:
    """``loc + scale *`` :func:`_normal_cell_means` in ``dtype``, read-only (made once, not at every call: 65,536 cells)."""
    table = (loc + scale * _normal_cell_means()).astype(dtype)
    table.setflags(write=False)
    return table


def gaussian_noise(
    rng: np.random.Generator,
    shape: int | tuple[int, ...],
    *,
    loc: float = 0.0,
    scale: float = 1.0,
    dtype: type = np.float32,
) -> np.ndarray:
    """White Gaussian noise from a 65,536-cell table: one 16-bit random draw per sample.

    About nine times cheaper than ``rng.standard_normal`` (float32, scaled), which
    would otherwise dominate injection benchmarks.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness: it seeds the call's own random streams (the
        same ``rng`` state gives the same noise).
    shape : int or tuple of int
        Output shape.
    loc, scale : float
        Mean and standard deviation.
    dtype : numpy dtype
        Output floating type.

    Returns
    -------
    numpy.ndarray
        ``loc + scale * x`` with ``x`` approximately N(0, 1), as described below.

    Notes
    -----
    The real line is cut into ``M = 2^16`` cells of probability ``1 / M``
    each (edges at the normal quantiles ``Phi^-1(k / M)``); a uniformly drawn
    16-bit integer picks a cell, and the sample is the normal's mean within
    that cell. Hence:

    * the distribution function is exact at every cell edge, i.e. every
      tail probability ``P(x < Phi^-1(k / M))`` is exact (to 4.17 sigma),
      and the Kolmogorov-Smirnov distance to N(0, 1) is at most ``1 / M =
      1.5e-5``;
    * within a cell the value is quantised: the levels are ``4e-5`` sigma
      apart at the centre (finer than float32 resolves in ``1 + 3e-4 x``),
      ``0.003`` sigma at 3 sigma, ``0.12`` sigma at 4 sigma;
    * the two outermost cells (``|x| > 4.17``, probability ``3e-5``) are
      not tabulated: those draws are exact samples of the normal tail
      (Marsaglia's tail method, as in the ziggurat), so there is no cut-off;
    * the mean is exact (the table is symmetric) and the variance is
      ``1 - 1.4e-7`` (the within-cell variance of the interior cells is lost).

    The random bits come from 32 xoshiro256++ streams (Blackman & Vigna
    2021) seeded afresh from ``rng`` at every call, stepped together in
    vector registers and looked up in one compiled pass
    (:func:`skysift.transit._kernels.tabulated_noise`).
    """
    table = _normal_table(float(loc), float(scale), np.dtype(dtype))
    out = np.empty(int(np.prod(shape)), dtype=dtype)
    # Fresh xoshiro256++ streams for this call, seeded from ``rng`` (never the all-zero state).
    state = rng.integers(0, np.iinfo(np.uint64).max, (4, _kernels.NOISE_LANES), dtype=np.uint64, endpoint=True)
    state[0] |= np.uint64(1)
    _kernels.tabulated_noise(state, table, _NORMAL_TAIL_EDGE, float(loc), float(scale), out)
    return out.reshape(shape)


def eb_parameters(draws: dict[str, np.ndarray], time_start: float) -> dict[str, np.ndarray]:
    """Physical binary parameters from draws of :data:`EB_PRIORS` or :data:`BLEND_PRIORS`.

    Adds ``t0`` (primary eclipse), ``b`` (in primary radii), ``a_rs``, ``u1``,
    ``u2``, ``duration`` (days) and the ephemeris a survey would report,
    ``tce_period``, ``tce_t0``, ``tce_duration``.
    """
    p = dict(draws)
    k = p["radius_ratio"]
    p["t0"] = time_start + p["t0_phase"] * p["period"]
    p["b"] = p["impact_fraction"] * (1.0 + k)
    # Total density of a binary with two similar stars ~ that of the primary; keep separated.
    p["a_rs"] = np.maximum(semi_major_axis_from_density(p["period"], p["stellar_density"]), 2.0 * (1.0 + k))
    p["u1"], p["u2"] = kipping_to_quadratic(p["q1"], p["q2"])
    p["duration"] = transit_duration(p["period"], p["a_rs"], k, p["b"])
    p["tce_period"] = np.where(p["half_period"] > 0, 0.5 * p["period"], p["period"])
    p["tce_t0"] = p["t0"]
    p["tce_duration"] = p["duration"]
    return p


def eclipsing_binary_flux(time: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Relative flux (N, T) of eclipsing binaries, optionally diluted.

    The primary eclipse is star 2 (radius ratio ``k``) crossing star 1; the
    secondary, half an orbit later, is star 1 covering star 2, computed with
    the same occultation model in star 2's units (radius ratio ``1/k``,
    separation ``z/k``). Star 2 contributes ``L2 = s k^2`` of star 1's light
    (``s``: surface brightness ratio). With ``dilution`` (blends) the eclipse
    signal is scaled by the binary's share of the light.
    """
    k = params["radius_ratio"]
    period, t0, a, b = params["period"], params["t0"], params["a_rs"], params["b"]
    u1, u2 = params["u1"], params["u2"]
    primary = transit_light_curve(time, period, t0, k, a, b, u1, u2)
    secondary = transit_light_curve(time, period, t0 + 0.5 * period, 1.0 / k, a / k, b / k, u1, u2)
    light2 = (params["surface_brightness_ratio"] * k**2)[:, None]
    flux = (primary + light2 * secondary) / (1.0 + light2)
    if "dilution" in params:
        flux = 1.0 + params["dilution"][:, None] * (flux - 1.0)
    return flux


def noise_parameters(draws: dict[str, np.ndarray], time_start: float) -> dict[str, np.ndarray]:
    """Spurious-detection ephemeris from draws of :data:`NOISE_PRIORS` (``duration`` h -> d)."""
    p = dict(draws)
    p["t0"] = time_start + p["t0_phase"] * p["period"]
    p["duration"] = p["duration"] / 24.0
    p["tce_period"], p["tce_t0"], p["tce_duration"] = p["period"], p["t0"], p["duration"]
    return p


def inject_systematics(
    flux: np.ndarray,
    time: np.ndarray,
    params: dict[str, np.ndarray],
    noise: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Add instrumental systematics (pure: returns a new array).

    ``systematic`` selects per light curve (:data:`SYSTEMATICS`): 1, a step
    discontinuity at a random time (a sudden pixel-sensitivity dropout);
    2, a sinusoid of period ``sinusoid_period`` (pointing jitter, heaters);
    3, one to three box-shaped single-event dips of the ephemeris' duration,
    the first at ``t0`` (cosmic-ray or momentum-dump artefacts that a pipeline
    folds into a spurious detection). Amplitudes are
    ``systematic_amplitude * noise``.
    """
    flux = np.array(flux, dtype=np.float64, copy=True)
    time = np.broadcast_to(np.asarray(time, dtype=np.float64), flux.shape)
    kind = np.asarray(params["systematic"]).astype(int)
    amplitude = (params["systematic_amplitude"] * np.asarray(noise))[:, None]
    n = flux.shape[0]
    t_lo, t_hi = time[:, 0:1], time[:, -1:]
    # Every row draws all its random numbers (the stream does not depend on the kinds), but each
    # systematic is evaluated only on the rows that have it (element for element the same arithmetic).
    step_time = t_lo + rng.random((n, 1)) * (t_hi - t_lo)
    sign = np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    n_events = rng.integers(1, 4, size=n)
    event_times = np.concatenate([params["t0"][:, None], t_lo + rng.random((n, 2)) * (t_hi - t_lo)], axis=1)
    rows = np.flatnonzero(kind == 1)
    flux[rows] += sign[rows] * amplitude[rows] * (time[rows] > step_time[rows])
    rows = np.flatnonzero(kind == 2)
    flux[rows] += amplitude[rows] * np.sin(2 * np.pi * time[rows] / params["sinusoid_period"][rows, None] + phase[rows])
    rows = np.flatnonzero(kind == 3)
    half = 0.5 * params["duration"][rows, None, None]
    in_event = np.abs(time[rows, None, :] - event_times[rows, :, None]) < half
    in_event &= (np.arange(3)[None, :] < n_events[rows, None])[:, :, None]
    flux[rows] += -amplitude[rows] * in_event.any(axis=1)
    return flux
