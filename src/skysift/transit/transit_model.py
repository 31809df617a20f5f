"""Planetary transit light curves: Mandel & Agol (2002) with quadratic limb darkening.

The occultation of a quadratically limb-darkened star by an opaque disk is
computed in closed form (Mandel & Agol 2002, ApJ 580, L171; the case table of
Eastman & Agol as used in batman), here vectorised over arbitrary broadcast
shapes so that a batch of light curves with different parameters is one call.
The complete elliptic integrals come from :mod:`scipy.special`: ``ellipk`` and
``ellipe`` for K and E, and the Carlson forms ``elliprf``/``elliprj`` for the
integral of the third kind.

Orbits are circular. ``b`` is the impact parameter ``a cos(i) / R_s`` and ``a``
is the semi-major axis in stellar radii; :func:`transit_duration` and
:func:`scaled_semi_major_axis` convert between ``a`` and the total duration.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "occult_quadratic",
    "scaled_semi_major_axis",
    "semi_major_axis_from_density",
    "sky_separation",
    "transit_duration",
    "transit_light_curve",
]

_G_CGS = 6.674e-8


def _ellpi(n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Complete elliptic integral of the third kind with the ``(1 + n sin^2)`` sign convention.

    ``Pi(n, m) = int_0^{pi/2} dphi / ((1 + n sin^2 phi) sqrt(1 - m sin^2 phi))``
    written with Carlson's symmetric integrals:
    ``R_F(0, 1 - m, 1) - n / 3 R_J(0, 1 - m, 1, 1 + n)``.
    """
    mc = 1.0 - m
    return special.elliprf(0.0, mc, 1.0) - n / 3.0 * special.elliprj(0.0, mc, 1.0, 1.0 + n)


def occult_quadratic(z: np.ndarray, p: np.ndarray, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Relative flux of a quadratically limb-darkened star occulted by an opaque disk.

    Parameters
    ----------
    z : array_like
        Centre-to-centre sky separation in stellar radii.
    p : array_like
        Radius ratio of occulter to star (any positive value; ``p >= 1`` is
        allowed, which the eclipsing-binary negatives need).
    u1, u2 : array_like
        Quadratic limb-darkening coefficients,
        ``I(mu) / I(1) = 1 - u1 (1 - mu) - u2 (1 - mu)^2``.

    All inputs broadcast against each other.

    Returns
    -------
    numpy.ndarray
        Flux relative to the unocculted star (1 out of transit).

    Notes
    -----
    Mandel & Agol (2002), section 4 and table 1:
    ``F = 1 - [(1 - c2) lambda^e + c2 (lambda^d + 2/3 H(p - z)) - c4 eta^d] / (4 Omega)``
    with ``c2 = u1 + 2 u2``, ``c4 = -u2`` and ``4 Omega = 1 - u1/3 - u2/6``;
    lambda^e is the uniform-disk occulted fraction, eta^d the quadratic term
    (closed form) and lambda^d the linear term (elliptic integrals).
    """
    z, p, u1, u2 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (z, p, u1, u2)))
    shape = z.shape
    z, p, u1, u2 = (v.ravel() for v in (z, p, u1, u2))
    z = np.abs(z)
    # Snap near-equalities onto the exact special cases, as the reference code does.
    tol = 1e-14
    z = np.where(np.abs(p - z) < tol, p, z)
    z = np.where(np.abs((p - 1.0) - z) < tol, p - 1.0, z)
    z = np.where(np.abs((1.0 - p) - z) < tol, 1.0 - p, z)
    z = np.where(z < tol, 0.0, z)

    lambda_e = np.zeros_like(z)
    lambda_d = np.zeros_like(z)
    eta_d = np.zeros_like(z)
    x1 = (p - z) ** 2
    x2 = (p + z) ** 2
    x3 = p**2 - z**2

    overlap = z < 1.0 + p
    # Case 11: the star is completely covered.
    covered = overlap & (p >= 1.0) & (z <= p - 1.0)
    lambda_e[covered] = 1.0
    eta_d[covered] = 0.5
    rest = overlap & ~covered

    # Cases 2, 7, 8: the occulter crosses the limb (uniform-disk and eta_1 terms).
    limb = rest & (z >= np.abs(1.0 - p)) & (z < 1.0 + p)
    if limb.any():
        zl, pl = z[limb], p[limb]
        kap1 = np.arccos(np.clip((1.0 - pl**2 + zl**2) / (2.0 * zl), -1.0, 1.0))
        kap0 = np.arccos(np.clip((pl**2 + zl**2 - 1.0) / (2.0 * pl * zl), -1.0, 1.0))
        root = np.sqrt(np.clip(4.0 * zl**2 - (1.0 + zl**2 - pl**2) ** 2, 0.0, None))
        lambda_e[limb] = (pl**2 * kap0 + kap1 - 0.5 * root) / np.pi
        eta_d[limb] = (
            kap1
            + pl**2 * (pl**2 + 2.0 * zl**2) * kap0
            - (1.0 + 5.0 * pl**2 + zl**2) / 4.0 * np.sqrt(np.clip((1.0 - x1[limb]) * (x2[limb] - 1.0), 0.0, None))
        ) / (2.0 * np.pi)

    # Cases 5, 6, 7: the occulter's edge lies on the stellar centre (z == p).
    centre_edge = rest & (z == p)
    if centre_edge.any():
        pc = p[centre_edge]
        value = np.empty_like(pc)
        small, half, large = pc < 0.5, pc == 0.5, pc > 0.5
        q = 2.0 * pc[small]
        m = q**2
        value[small] = 1.0 / 3.0 + 2.0 / (9.0 * np.pi) * (
            4.0 * (2.0 * pc[small] ** 2 - 1.0) * special.ellipe(m) + (1.0 - 4.0 * pc[small] ** 2) * special.ellipk(m)
        )
        pl_ = pc[large]
        m = (0.5 / pl_) ** 2
        value[large] = (
            1.0 / 3.0
            + 16.0 * pl_ / (9.0 * np.pi) * (2.0 * pl_**2 - 1.0) * special.ellipe(m)
            - (32.0 * pl_**4 - 20.0 * pl_**2 + 3.0) / (9.0 * np.pi * pl_) * special.ellipk(m)
        )
        value[half] = 1.0 / 3.0 - 4.0 / (9.0 * np.pi)
        lambda_d[centre_edge] = value
        inside_small = np.zeros_like(pc, dtype=bool)
        inside_small[small] = True
        idx = np.flatnonzero(centre_edge)
        eta_d[idx[small]] = pc[small] ** 2 / 2.0 * (pc[small] ** 2 + 2.0 * z[idx[small]] ** 2)
        lambda_e[idx[small]] = pc[small] ** 2
        eta_d[idx[half]] = 3.0 / 32.0
    rest &= ~centre_edge

    # Cases 2, 8: limb crossing with limb darkening (lambda_1).
    crossing = rest & (((z > 0.5 + np.abs(p - 0.5)) & (z < 1.0 + p)) | ((p > 0.5) & (z > np.abs(1.0 - p)) & (z < p)))
    if crossing.any():
        a1, a2, a3, zc, pc = x1[crossing], x2[crossing], x3[crossing], z[crossing], p[crossing]
        m = (1.0 - a1) / (a2 - a1)
        n = 1.0 / a1 - 1.0
        lambda_d[crossing] = (
            2.0
            / (9.0 * np.pi * np.sqrt(a2 - a1))
            * (
                ((1.0 - a2) * (2.0 * a2 + a1 - 3.0) - 3.0 * a3 * (a2 - 2.0)) * special.ellipk(m)
                + (a2 - a1) * (zc**2 + 7.0 * pc**2 - 4.0) * special.ellipe(m)
                - 3.0 * a3 / a1 * _ellpi(n, m)
            )
        )
    rest &= ~crossing

    # Cases 3, 4, 9, 10: the occulter is entirely inside the disk.
    inside = rest & (p < 1.0) & (z <= 1.0 - p)
    if inside.any():
        pi_, zi = p[inside], z[inside]
        eta_d[inside] = pi_**2 / 2.0 * (pi_**2 + 2.0 * zi**2)
        lambda_e[inside] = pi_**2
        value = np.empty_like(zi)
        edge = zi == 1.0 - pi_
        origin = (zi == 0.0) & ~edge
        general = ~edge & ~origin
        pe = pi_[edge]
        value[edge] = 2.0 / (3.0 * np.pi) * np.arccos(1.0 - 2.0 * pe) - 4.0 / (9.0 * np.pi) * np.sqrt(
            pe * (1.0 - pe)
        ) * (3.0 + 2.0 * pe - 8.0 * pe**2) - np.where(pe > 0.5, 2.0 / 3.0, 0.0)
        value[origin] = -2.0 / 3.0 * (1.0 - pi_[origin] ** 2) ** 1.5
        a1, a2, a3 = x1[inside][general], x2[inside][general], x3[inside][general]
        zg, pg = zi[general], pi_[general]
        m = (a2 - a1) / (1.0 - a1)
        n = a2 / a1 - 1.0
        value[general] = (
            2.0
            / (9.0 * np.pi * np.sqrt(1.0 - a1))
            * (
                (1.0 - 5.0 * zg**2 + pg**2 + a3**2) * special.ellipk(m)
                + (1.0 - a1) * (zg**2 + 7.0 * pg**2 - 4.0) * special.ellipe(m)
                - 3.0 * a3 / a1 * _ellpi(n, m)
            )
        )
        lambda_d[inside] = value

    omega4 = 1.0 - u1 / 3.0 - u2 / 6.0
    c2 = u1 + 2.0 * u2
    flux = 1.0 - ((1.0 - c2) * lambda_e + c2 * (lambda_d + 2.0 / 3.0 * (p > z)) + u2 * eta_d) / omega4
    flux = np.where(overlap, flux, 1.0)
    return flux.reshape(shape)


def semi_major_axis_from_density(period: np.ndarray, stellar_density: np.ndarray) -> np.ndarray:
    """Semi-major axis in stellar radii from Kepler's third law.

    ``a / R_s = (G rho P^2 / (3 pi))^(1/3)`` (Seager & Mallen-Ornelas 2003), with
    ``period`` in days and ``stellar_density`` in g cm^-3 (the Sun: 1.41).
    """
    seconds = np.asarray(period, dtype=float) * 86400.0
    return np.cbrt(_G_CGS * np.asarray(stellar_density, dtype=float) * seconds**2 / (3.0 * np.pi))


def transit_duration(period: np.ndarray, a: np.ndarray, rp: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Total (first to fourth contact) duration of a circular-orbit transit, in days.

    ``T14 = P / pi * arcsin( sqrt((1 + rp)^2 - b^2) / (a sin i) )`` (Winn 2010,
    eq. 14); zero when ``b >= 1 + rp`` (no transit).
    """
    period, a, rp, b = (np.asarray(v, dtype=float) for v in (period, a, rp, b))
    sin_i = np.sqrt(np.clip(1.0 - (b / a) ** 2, 0.0, None))
    chord = np.sqrt(np.clip((1.0 + rp) ** 2 - b**2, 0.0, None))
    return period / np.pi * np.arcsin(np.clip(chord / (a * sin_i), 0.0, 1.0))


def scaled_semi_major_axis(period: np.ndarray, duration: np.ndarray, rp: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inverse of :func:`transit_duration`: ``a / R_s`` giving total ``duration`` (days)."""
    period, duration, rp, b = (np.asarray(v, dtype=float) for v in (period, duration, rp, b))
    chord2 = np.clip((1.0 + rp) ** 2 - b**2, 0.0, None)
    s = np.sin(np.pi * duration / period) ** 2
    return np.sqrt(chord2 / s + b**2)


def sky_separation(time: np.ndarray, period: np.ndarray, t0: np.ndarray, a: np.ndarray, b: np.ndarray, *, secondary: bool = False) -> np.ndarray:
    """Projected star-planet separation (stellar radii) on a circular orbit.

    ``z^2 = a^2 sin^2(phi) + b^2 cos^2(phi)`` with ``phi = 2 pi (t - t0) / P``.
    Only the half orbit in front of the star (``cos phi > 0``; behind it for
    ``secondary=True``) gets a real separation; the other half gets ``inf``.
    """
    phi = 2.0 * np.pi * (np.asarray(time, dtype=float) - t0) / period
    cos_phi = np.cos(phi)
    z = np.sqrt((a * np.sin(phi)) ** 2 + (b * cos_phi) ** 2)
    front = cos_phi < 0 if secondary else cos_phi > 0
    return np.where(front, z, np.inf)


def transit_light_curve(
    time: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    rp: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    u1: np.ndarray,
    u2: np.ndarray,
    *,
    exposure_time: float | None = None,
    supersample: int = 1,
) -> np.ndarray:
    """Transit light curves of a batch of planets, evaluated only near transits.

    Parameters
    ----------
    time : array_like, shape (T,) or (N, T)
        Mid-exposure times, days.
    period, t0, rp, a, b, u1, u2 : array_like, shape () or (N,)
        Period (d), mid-transit time (d), radius ratio, ``a / R_s``, impact
        parameter and quadratic limb darkening, one per light curve.
    exposure_time : float, optional
        Integration time (days) to average over, e.g. 29.4244 min for Kepler
        long cadence; used with ``supersample > 1``.
    supersample : int
        Number of sub-exposures per cadence (batman's ``supersample_factor``).

    Returns
    -------
    numpy.ndarray, shape (N, T) (or (T,) for scalar parameters)
        Relative flux.

    Notes
    -----
    The model is evaluated only at cadences within half a transit duration
    (plus half an exposure) of a mid-transit time; every other cadence is
    exactly 1. This is what makes batches cheap: a few per cent of cadences
    are in transit.
    """
    time = np.asarray(time, dtype=float)
    params = [np.asarray(v, dtype=float) for v in (period, t0, rp, a, b, u1, u2)]
    scalar = all(v.ndim == 0 for v in params) and time.ndim == 1
    params = [np.atleast_1d(v) for v in params]
    n = max(v.shape[0] for v in params)
    period, t0, rp, a, b, u1, u2 = (np.broadcast_to(v, (n,)) for v in params)
    times = np.broadcast_to(time, (n, time.shape[-1]))
    half_window = 0.5 * transit_duration(period, a, rp, b) * 1.0001 + 1e-6
    if supersample > 1 and exposure_time:
        half_window = half_window + 0.5 * exposure_time
    # Time from the nearest mid-transit.
    offset = times - t0[:, None]
    # floor(x + 1/2) rather than np.round (several times slower per element);
    # they differ only at half-period ties, never inside a transit window.
    offset = offset - np.floor(offset * (1.0 / period)[:, None] + 0.5) * period[:, None]
    rows, cols = np.nonzero(np.abs(offset) <= half_window[:, None])
    flux = np.ones(times.shape)
    if rows.size:
        dt = offset[rows, cols]
        if supersample > 1 and exposure_time:
            steps = (np.arange(supersample) + 0.5) / supersample - 0.5
            dt = dt[:, None] + steps[None, :] * exposure_time
            r = rows[:, None]
        else:
            r = rows
        z = sky_separation(dt, period[r], 0.0, a[r], b[r])
        model = occult_quadratic(z, rp[r], u1[r], u2[r])
        if model.ndim == 2:
            model = model.mean(axis=1)
        flux[rows, cols] = model
    return flux[0] if scalar else flux
