"""Planetary transit light curves: Mandel & Agol (2002) with quadratic limb darkening.

The occultation of a quadratically limb-darkened star by an opaque disk is
computed in closed form (Mandel & Agol 2002, ApJ 580, L171; the case table of
Eastman & Agol as used in batman), here vectorised over arbitrary broadcast
shapes so that a batch of light curves with different parameters is one call.
The complete elliptic integrals K and E come from :mod:`scipy.special`
(``ellipk``, ``ellipe``); the integral of the third kind from Bulirsch's
``cel`` iteration (:func:`_cel`).

Light curves on a shared, sorted time grid (the usual case, including
:func:`transit_light_curve` and :func:`skysift.transit.injection.inject_transits`)
go through a compiled per-cadence version of the same formulas
(:func:`skysift.transit._transit_kernels.multiply_transits`, equal to this module's
to about 1e-14), which leaves only the rare contact geometries to
:func:`occult_quadratic`.

Orbits are circular. ``b`` is the impact parameter ``a cos(i) / R_s`` and ``a``
is the semi-major axis in stellar radii; :func:`transit_duration` and
:func:`scaled_semi_major_axis` convert between ``a`` and the total duration.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from skysift.transit import _transit_kernels

__all__ = [
    "occult_quadratic",
    "scaled_semi_major_axis",
    "semi_major_axis_from_density",
    "sky_separation",
    "transit_duration",
    "transit_light_curve",
    "transit_windows",
]

_G_CGS = 6.674e-8


def _cel(kc: np.ndarray, p: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Bulirsch's general complete elliptic integral, vectorised, for ``p > 0``.

    ``cel(kc, p, a, b) = int_0^{pi/2} (a cos^2 + b sin^2) dphi /
    ((cos^2 + p sin^2) sqrt(cos^2 + kc^2 sin^2))`` (Bulirsch 1969, Numer.
    Math. 13, 305), by its quadratically convergent Landen/AGM iteration;
    stopped when every element has converged to a relative ``1e-8`` of the
    AGM step, which leaves an error of order ``1e-16`` (checked against
    Carlson's forms in the tests). Elements that converge early keep
    iterating harmlessly; the loop runs at most 40 times (7 for ``m = 1 - 1e-14``).
    """
    kc = np.abs(kc)
    e = kc
    m = np.ones_like(kc)
    p = np.sqrt(p)
    b = b / p
    a = a + np.zeros_like(kc)
    for _ in range(40):
        f = a
        a = a + b / p
        g = e / p
        b = 2.0 * (b + f * g)
        p = g + p
        g = m
        m = kc + m
        if np.all(np.abs(g - kc) <= 1e-8 * g):
            break
        kc = 2.0 * np.sqrt(e)
        e = kc * m
    return 0.5 * np.pi * (b + a * m) / (m * (m + p))


def _ellpi(n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Complete elliptic integral of the third kind with the ``(1 + n sin^2)`` sign convention.

    ``Pi(n, m) = int_0^{pi/2} dphi / ((1 + n sin^2 phi) sqrt(1 - m sin^2 phi))
    = cel(sqrt(1 - m), 1 + n, 1, 1)``, valid for ``n > -1`` (all the
    Mandel & Agol cases). Bulirsch's iteration (five passes for the transit
    cases) is several times cheaper than Carlson's ``R_J`` in
    :mod:`scipy.special`, which used to dominate the model's cost.
    """
    return _cel(np.sqrt(1.0 - m), 1.0 + n, 1.0, 1.0)


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

    The two general cases (planet inside the disk, planet on the limb),
    nearly every in-transit point, are evaluated on their own with one call
    each of K, E and Pi; the measure-zero cases and full coverage go through
    the complete case table (:func:`_occultation_terms`).
    """
    z, p, u1, u2 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (z, p, u1, u2)))
    shape = z.shape
    z, p, u1, u2 = (v.ravel() for v in (z, p, u1, u2))
    z = np.abs(z)
    edge = np.abs(1.0 - p)
    # Snap near-equalities onto the exact special cases, as the reference code
    # does (z within 1e-14 of p, |1 - p| or 0); only candidates are touched.
    tol = 1e-14
    near = np.flatnonzero((np.abs(p - z) < tol) | (np.abs(edge - z) < tol) | (z < tol))
    if near.size:
        zn, pn = z[near], p[near]
        zn = np.where(np.abs(pn - zn) < tol, pn, zn)
        zn = np.where(np.abs((pn - 1.0) - zn) < tol, pn - 1.0, zn)
        zn = np.where(np.abs((1.0 - pn) - zn) < tol, 1.0 - pn, zn)
        z = z.copy()
        z[near] = np.where(zn < tol, 0.0, zn)

    flux = np.ones_like(z)
    overlap = z < 1.0 + p
    # The general cases (Mandel & Agol 3/9: planet inside the disk; 2/8: on
    # the limb) make up nearly every in-transit point and share K, E and Pi;
    # the rest (z = 0, z = p, z = |1 - p|, star fully covered) is rare.
    inside = np.flatnonzero(overlap & (z < edge) & (p < 1.0) & (z > 0.0) & (z != p))
    limb = np.flatnonzero(overlap & (z > edge) & (z != p))
    n_in = inside.size
    index = np.concatenate([inside, limb])
    if index.size < np.count_nonzero(overlap):
        rare = overlap.copy()
        rare[index] = False
        rare = np.flatnonzero(rare)
        lambda_e, lambda_d, eta_d = _occultation_terms(z[rare], p[rare])
        flux[rare] = _limb_darkened_flux(z[rare], p[rare], u1[rare], u2[rare], lambda_e, lambda_d, eta_d)
    if index.size == 0:
        return flux.reshape(shape)
    zz, pp = z[index], p[index]
    z2, p2 = zz * zz, pp * pp
    a1 = (pp - zz) ** 2
    a2 = (pp + zz) ** 2
    a3 = p2 - z2
    lambda_e = np.empty_like(zz)
    lambda_d = np.empty_like(zz)
    eta_d = np.empty_like(zz)
    # m = k^2 and the characteristic n of Pi(n, m), in each case's form.
    s_in, s_limb = slice(None, n_in), slice(n_in, None)
    m = np.empty_like(zz)
    m[s_in] = (4.0 * pp[s_in] * zz[s_in]) / (1.0 - a1[s_in])
    m[s_limb] = (1.0 - a1[s_limb]) / (4.0 * pp[s_limb] * zz[s_limb])
    n = np.empty_like(zz)
    n[s_in] = a2[s_in] / a1[s_in] - 1.0
    n[s_limb] = 1.0 / a1[s_limb] - 1.0
    ellk, elle, ellpi = special.ellipk(m), special.ellipe(m), _ellpi(n, m)
    pi_term = 3.0 * a3 / a1 * ellpi

    # Inside the disk (cases 3, 9).
    one_a1 = 1.0 - a1[s_in]
    zi2, pi2 = z2[s_in], p2[s_in]
    lambda_d[s_in] = (
        2.0
        / (9.0 * np.pi * np.sqrt(one_a1))
        * (
            (1.0 - 5.0 * zi2 + pi2 + a3[s_in] ** 2) * ellk[s_in]
            + one_a1 * (zi2 + 7.0 * pi2 - 4.0) * elle[s_in]
            - pi_term[s_in]
        )
    )
    lambda_e[s_in] = pi2
    eta_d[s_in] = 0.5 * pi2 * (pi2 + 2.0 * zi2)

    # Crossing the limb (cases 2, 8).
    if limb.size:
        zl, pl, zl2, pl2 = zz[s_limb], pp[s_limb], z2[s_limb], p2[s_limb]
        a1l, a2l, a3l = a1[s_limb], a2[s_limb], a3[s_limb]
        kap1 = np.arccos(np.clip((1.0 - pl2 + zl2) / (2.0 * zl), -1.0, 1.0))
        kap0 = np.arccos(np.clip((pl2 + zl2 - 1.0) / (2.0 * pl * zl), -1.0, 1.0))
        root = np.sqrt(np.clip(4.0 * zl2 - (1.0 + zl2 - pl2) ** 2, 0.0, None))
        lambda_e[s_limb] = (pl2 * kap0 + kap1 - 0.5 * root) / np.pi
        eta_d[s_limb] = (
            kap1
            + pl2 * (pl2 + 2.0 * zl2) * kap0
            - (1.0 + 5.0 * pl2 + zl2) / 4.0 * np.sqrt(np.clip((1.0 - a1l) * (a2l - 1.0), 0.0, None))
        ) / (2.0 * np.pi)
        lambda_d[s_limb] = (
            2.0
            / (9.0 * np.pi * np.sqrt(a2l - a1l))
            * (
                ((1.0 - a2l) * (2.0 * a2l + a1l - 3.0) - 3.0 * a3l * (a2l - 2.0)) * ellk[s_limb]
                + (a2l - a1l) * (zl2 + 7.0 * pl2 - 4.0) * elle[s_limb]
                - pi_term[s_limb]
            )
        )
    flux[index] = _limb_darkened_flux(zz, pp, u1[index], u2[index], lambda_e, lambda_d, eta_d)
    return flux.reshape(shape)


def _limb_darkened_flux(z, p, u1, u2, lambda_e, lambda_d, eta_d):
    """Mandel & Agol's flux from the three occultation terms (see :func:`occult_quadratic`)."""
    omega4 = 1.0 - u1 / 3.0 - u2 / 6.0
    c2 = u1 + 2.0 * u2
    return 1.0 - ((1.0 - c2) * lambda_e + c2 * (lambda_d + 2.0 / 3.0 * (p > z)) + u2 * eta_d) / omega4


def _occultation_terms(z: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lambda^e``, ``lambda^d`` and ``eta^d`` of Mandel & Agol's table 1, every case.

    ``z`` (>= 0, already snapped onto the special values) and ``p`` are 1-D
    arrays of one length. :func:`occult_quadratic` sends only the
    measure-zero and fully covered cases here; the two general cases take
    its leaner path.
    """
    x1 = (p - z) ** 2
    x2 = (p + z) ** 2
    x3 = p**2 - z**2
    overlap = z < 1.0 + p
    lambda_e = np.zeros_like(z)
    lambda_d = np.zeros_like(z)
    eta_d = np.zeros_like(z)
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
    # 0.5 + |p - 0.5| written as max(1 - p, p): the same rounding as the case-3/4 test
    # z <= 1 - p, so second/third contact (z = 1 - p) never lands here (K(1) = inf).
    crossing = rest & (((z > np.maximum(1.0 - p, p)) & (z < 1.0 + p)) | ((p > 0.5) & (z > np.abs(1.0 - p)) & (z < p)))
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

    return lambda_e, lambda_d, eta_d


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


def transit_windows(
    time: np.ndarray, period: np.ndarray, t0: np.ndarray, half_width: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cadences within ``half_width`` of a mid-transit, found without scanning every cadence.

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Times (days), shared by all rows; need not be sorted (NaN times are
        never in a window).
    period, t0, half_width : numpy.ndarray, shape (N,)
        Ephemeris and window half-width (days) per row.

    Returns
    -------
    rows, cols : numpy.ndarray of int
        Row (light curve) and cadence of every cadence in a window, grouped by
        row, then by transit epoch, then in time order.
    dt : numpy.ndarray of float64
        Time from that cadence's mid-transit (days).

    Notes
    -----
    Each transit epoch's window is located by binary search in the sorted
    times, so the cost grows with the number of epochs and of in-window
    cadences, not with ``N * T``. Windows are capped at half a period and
    half-open at their upper end, so every cadence belongs to at most one:
    the same cadences as ``|t - t0 - P round((t - t0) / P)| <= half_width``.
    """
    time = np.asarray(time, dtype=np.float64)
    period, t0, half_width = (np.asarray(v, dtype=np.float64) for v in (period, t0, half_width))
    order = None
    if not np.isfinite(time).all() or np.any(time[1:] < time[:-1]):
        # Search the finite times in sorted order; map back at the end.
        order = np.flatnonzero(np.isfinite(time))
        order = order[np.argsort(time[order], kind="stable")]
        time = time[order]
    empty = np.empty(0, dtype=np.intp)
    if time.size == 0 or period.size == 0:
        return empty, empty, np.empty(0)
    capped = half_width >= 0.5 * period
    half_width = np.where(capped, 0.5 * period, half_width)
    # Epochs whose window can touch [time[0], time[-1]], per row.
    first = np.ceil((time[0] - t0 - half_width) / period)
    last = np.floor((time[-1] - t0 + half_width) / period)
    n_epochs = np.nan_to_num(np.maximum(last - first + 1.0, 0.0)).astype(np.intp)
    epoch_row = np.repeat(np.arange(period.size), n_epochs)
    epoch = first[epoch_row] + (np.arange(epoch_row.size) - np.repeat(np.cumsum(n_epochs) - n_epochs, n_epochs))
    centre = t0[epoch_row] + epoch * period[epoch_row]
    hw = half_width[epoch_row]
    lo = np.searchsorted(time, centre - hw, "left")
    hi = np.searchsorted(time, centre + hw, "right")
    if capped.any():
        # A capped window is [c - P/2, c + P/2): the next epoch owns its upper edge.
        full = np.flatnonzero(capped[epoch_row])
        hi[full] = np.searchsorted(time, centre[full] + hw[full], "left")
    count = np.maximum(hi - lo, 0)
    total = int(count.sum())
    if total == 0:
        return empty, empty, np.empty(0)
    which = np.repeat(np.arange(count.size), count)
    cols = lo[which] + (np.arange(total) - (np.cumsum(count) - count)[which])
    dt = time[cols] - centre[which]
    rows = epoch_row[which]
    if order is not None:
        cols = order[cols]
    return rows, cols, dt


def _half_window(period: np.ndarray, a: np.ndarray, rp: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Half-width (days) of the window around mid-transit where the model may differ from 1.

    Half the total duration, widened by a hair so that rounding never drops
    a cadence at first or fourth contact.
    """
    return 0.5 * transit_duration(period, a, rp, b) * 1.0001 + 1e-6


#: Light curves per block in :func:`_transit_points`: the in-transit points of a
#: block (a few thousand) keep the model's many temporaries in cache.
_ROWS_PER_BLOCK = 64


def _transit_points(
    time: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    rp: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    u1: np.ndarray,
    u2: np.ndarray,
    exposure_time: float | None = None,
    supersample: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model where it may differ from 1: ``rows, cols, flux``, for (N,) parameters and (T,) or (N, T) times."""
    n = period.size
    if n > _ROWS_PER_BLOCK:
        parts = []
        for begin in range(0, n, _ROWS_PER_BLOCK):
            rows = slice(begin, begin + _ROWS_PER_BLOCK)
            block_time = time[rows] if time.ndim == 2 and time.shape[0] > 1 else time
            r, c, f = _transit_points(
                block_time, *(v[rows] for v in (period, t0, rp, a, b, u1, u2)), exposure_time, supersample
            )
            parts.append((r + begin, c, f))
        return tuple(np.concatenate(x) for x in zip(*parts))
    half_window = _half_window(period, a, rp, b)
    smear = supersample > 1 and bool(exposure_time)
    if smear:
        half_window = half_window + 0.5 * exposure_time
    if time.ndim == 1:
        rows, cols, dt = transit_windows(time, period, t0, half_window)
    else:
        # Per-row time grids: fold every cadence.
        offset = np.broadcast_to(time, (n, time.shape[-1])) - t0[:, None]
        # floor(x + 1/2) rather than np.round (several times slower per element);
        # they differ only at half-period ties, never inside a transit window.
        offset = offset - np.floor(offset * (1.0 / period)[:, None] + 0.5) * period[:, None]
        rows, cols = np.nonzero(np.abs(offset) <= half_window[:, None])
        dt = offset[rows, cols]
    if rows.size == 0:
        return rows, cols, np.empty(0)
    r = rows
    if smear:
        steps = (np.arange(supersample) + 0.5) / supersample - 0.5
        dt = dt[:, None] + steps[None, :] * exposure_time
        r = rows[:, None]
    # sky_separation's circular orbit, front half only: z^2 = b^2 + (a^2 - b^2) sin^2(phi).
    per, aa, bb = period[r], a[r], b[r]
    sin_phi = np.sin((2.0 * np.pi) * dt / per)
    z = np.sqrt(bb * bb + (aa * aa - bb * bb) * (sin_phi * sin_phi))
    z = np.where(np.abs(dt) < 0.25 * per, z, np.inf)
    model = occult_quadratic(z, rp[r], u1[r], u2[r])
    if model.ndim == 2:
        model = model.mean(axis=1)
    return rows, cols, model


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
    are in transit, and with a shared time grid they are found per transit
    epoch by a search in the sorted times (:func:`transit_windows`; compiled
    in :func:`_multiply_transits`) rather than by folding every cadence.
    """
    time = np.asarray(time, dtype=float)
    params = [np.asarray(v, dtype=float) for v in (period, t0, rp, a, b, u1, u2)]
    scalar = all(v.ndim == 0 for v in params) and time.ndim == 1
    params = [np.atleast_1d(v) for v in params]
    n = max(v.shape[0] for v in params)
    period, t0, rp, a, b, u1, u2 = (np.broadcast_to(v, (n,)) for v in params)
    flux = np.ones((n, time.shape[-1]))
    _multiply_transits(flux, time, period, t0, rp, a, b, u1, u2, exposure_time, supersample)
    return flux[0] if scalar else flux


def _multiply_transits(
    out: np.ndarray,
    time: np.ndarray,
    period: np.ndarray,
    t0: np.ndarray,
    rp: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    u1: np.ndarray,
    u2: np.ndarray,
    exposure_time: float | None = None,
    supersample: int = 1,
) -> None:
    """Multiply ``out`` (N, T), in place, by the transits of (N,) planets at ``time`` (T,) or (N, T).

    Each product is formed in float64 and rounded once to ``out``'s type.
    A shared, sorted, finite time grid without exposure smearing (the common
    case) goes through the compiled :func:`_transit_kernels.multiply_transits`, which
    leaves the rare geometries (contact points, full coverage) to
    :func:`occult_quadratic`; other inputs through :func:`_transit_points`.
    """
    smear = supersample > 1 and bool(exposure_time)
    if time.ndim == 1 and not smear and np.isfinite(time).all() and not np.any(time[1:] < time[:-1]):
        params = [np.ascontiguousarray(v, dtype=np.float64) for v in (period, t0, rp, a, b, u1, u2)]
        rows, cols, z = _transit_kernels.multiply_transits(
            out, np.ascontiguousarray(time), *params, _half_window(params[0], params[3], params[2], params[4])
        )
        if rows.size:
            out[rows, cols] = out[rows, cols] * occult_quadratic(z, rp[rows], u1[rows], u2[rows])
        return
    rows, cols, model = _transit_points(time, period, t0, rp, a, b, u1, u2, exposure_time, supersample)
    out[rows, cols] = out[rows, cols] * model
