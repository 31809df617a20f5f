"""Compiled (numba) kernel: Mandel & Agol transits at the cadences near each mid-transit.

:func:`multiply_transits` walks every light curve's transit epochs (windows
found in the sorted times by :func:`_search_sorted`) and gathers the cadences
in them into work arrays, allocated once per call, until a block of about
:data:`_BLOCK` points has accumulated. The block is then evaluated in
structure-of-arrays passes whose points are independent, so that the CPU
overlaps them (out-of-order and SIMD) instead of waiting on one point's
chain of divisions and square roots at a time:

* the sky separation, with a polynomial sine (:func:`_sin`) in place of the
  scalar library call;
* the case (planet inside the disk, on the limb, out of transit, rare) and
  the elliptic integrals' parameters, by selects rather than branches;
* K, E and Pi from Bulirsch's iteration run over many points at once
  (:func:`_complete_elliptic_batch`), each point stopped by the same test as
  the one-point loop (:func:`_complete_elliptic`), so the two agree to the
  last bit;
* the limb case's arc cosines (scalar, for those points only), then the flux
  of Mandel & Agol (2002) for every point, and the product into ``out``.

The formulas are those of :func:`skysift.transit.transit_model.occult_quadratic`
for its two general cases, operation for operation; the rare contact
geometries are returned to the caller, which sends them through
:func:`~skysift.transit.transit_model.occult_quadratic`
(``tests/transit/test_compiled_views.py`` checks the whole against it).

Everything compiles lazily on first call and is cached on disk
(``cache=True``): importing this module compiles nothing.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__: list[str] = []

# numpy's error model: a division by zero in a lane whose result is discarded gives
# inf/NaN rather than raising, and the vector loops carry no checks.
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

#: Points gathered (over whole light curves) before a block is evaluated: the
#: work arrays of a block stay in the L2 cache.
_BLOCK = 1024
#: Points iterated together in :func:`_complete_elliptic_batch`: each group
#: runs until its slowest point converges, so groups are kept small.
_LANES = 64
#: Tolerance within which ``z`` counts as a special value (``p``, ``|1 - p|``, 0).
_SNAP = 1e-14

# Point cases in a block.
_OUTSIDE, _INSIDE, _LIMB, _RARE = 0, 1, 2, 3

#: ``(-1)^k / (2k + 1)!`` for k = 1..10: Taylor's series of ``sin(x) = x + x^3 (S1 + S2 x^2 + ...)``.
_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8, _S9, _S10 = ((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 11))


@_jit
def _sin(x):
    """``sin(x)`` for ``|x| <= pi / 2``, to two units in the last place.

    Taylor's series to ``x^21`` (the next term is below 1.3e-18 on that
    interval), by Horner's rule in ``x^2``: a few multiply-adds that vectorise,
    where ``math.sin`` is a scalar library call with range reduction.
    """
    x2 = x * x
    s = _S10
    s = s * x2 + _S9
    s = s * x2 + _S8
    s = s * x2 + _S7
    s = s * x2 + _S6
    s = s * x2 + _S5
    s = s * x2 + _S4
    s = s * x2 + _S3
    s = s * x2 + _S2
    s = s * x2 + _S1
    # The leading term added last, so that the rounding is mostly that of x.
    return x + x * x2 * s


#: fdlibm's (``e_asin.c``) rational approximation ``asin(x) = x + x R(x^2)`` on ``|x| <= 1/2``,
#: ``R(t) = t P(t) / Q(t)``: numerator and denominator coefficients.
_P0, _P1, _P2, _P3, _P4, _P5 = (
    1.66666666666666657415e-01, -3.25565818622400915405e-01, 2.01212532134862925881e-01,
    -4.00555345006794114027e-02, 7.91534994289814532176e-04, 3.47933107596021167570e-05,
)  # fmt: skip
_Q1, _Q2, _Q3, _Q4 = (
    -2.40339491173441421878e00, 2.02094576023350569471e00, -6.88283971605453293030e-01, 7.70381505559019352791e-02,
)  # fmt: skip


@_jit
def _acos(x):
    """``acos(x)`` for ``-1 <= x <= 1``, to within 5e-16, without branches.

    fdlibm's reduction (``e_acos.c``): ``pi/2 - asin(x)`` for ``|x| <= 1/2``,
    else ``2 asin(sqrt((1 - |x|) / 2))`` reflected for ``x < 0``, with
    fdlibm's rational ``asin``; both by selects, so that the loop calling it
    vectorises (``math.acos`` is a scalar library call).
    """
    ax = abs(x)
    small = ax <= 0.5
    t = x * x if small else (1.0 - ax) * 0.5
    num = t * (_P0 + t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5)))))
    den = 1.0 + t * (_Q1 + t * (_Q2 + t * (_Q3 + t * _Q4)))
    r = num / den
    s = x if small else math.sqrt(t)
    asin_s = s + s * r
    reflected = 2.0 * asin_s if x > 0.0 else math.pi - 2.0 * asin_s
    return 0.5 * math.pi - asin_s if small else reflected


@_jit
def _complete_elliptic(kc, n):
    """``K(m)``, ``E(m)`` and ``Pi(n, m)`` (``1 + n sin^2`` convention) for ``kc = sqrt(1 - m)``.

    Bulirsch's ``cel`` (see :func:`skysift.transit.transit_model._cel`) for
    ``cel(kc, 1, 1, 1)``, ``cel(kc, 1, 1, kc^2)`` and ``cel(kc, 1 + n, 1, 1)``
    in one loop: the three share the ``kc``, ``e`` and ``m`` sequences, and K
    and E also ``p``. Same stopping rule (relative 1e-8 of the AGM step,
    errors of order 1e-16). One point at a time: the reference for
    :func:`_complete_elliptic_batch`.
    """
    kc = abs(kc)
    e = kc
    m = 1.0
    p1 = 1.0
    a_k, b_k = 1.0, 1.0
    a_e, b_e = 1.0, kc * kc
    p2 = math.sqrt(1.0 + n)
    a_pi, b_pi = 1.0, 1.0 / p2
    for _ in range(40):
        # One division per track and pass (multiplying by the reciprocal).
        r1, r2 = 1.0 / p1, 1.0 / p2
        f_k, f_e = a_k, a_e
        a_k += b_k * r1
        a_e += b_e * r1
        g = e * r1
        b_k = 2.0 * (b_k + f_k * g)
        b_e = 2.0 * (b_e + f_e * g)
        p1 = g + p1
        f_pi = a_pi
        a_pi += b_pi * r2
        g = e * r2
        b_pi = 2.0 * (b_pi + f_pi * g)
        p2 = g + p2
        g = m
        m = kc + m
        if abs(g - kc) <= 1e-8 * g:
            break
        kc = 2.0 * math.sqrt(e)
        e = kc * m
    half_pi = 0.5 * math.pi
    return (
        half_pi * (b_k + a_k * m) / (m * (m + p1)),
        half_pi * (b_e + a_e * m) / (m * (m + p1)),
        half_pi * (b_pi + a_pi * m) / (m * (m + p2)),
    )


@_jit
def _elliptic_workspace():
    """Work array for :func:`_complete_elliptic_batch`: 12 tracks of :data:`_LANES` points."""
    return np.empty((12, _LANES))


@_jit
def _complete_elliptic_batch(kc, n, ellk, elle, ellpi, work):
    """:func:`_complete_elliptic` for each point of ``kc`` and ``n``, into ``ellk, elle, ellpi``.

    The points (at most :data:`_LANES`) are iterated together, one pass of
    Bulirsch's iteration over all of them at a time, so that their divisions
    and square roots overlap (and vectorise) instead of forming one chain. A
    point that has met the stopping rule is frozen (its state kept by
    selects) while the others go on, so every result is bit for bit that of
    :func:`_complete_elliptic`. ``work`` comes from :func:`_elliptic_workspace`.
    """
    # Loops run from 0 (not from an offset) so that LLVM can see the indices are
    # never negative (numba's wraparound) and vectorise.
    count = kc.size
    kc_t, e_t, m_t, p1_t, ak_t, bk_t, ae_t, be_t, p2_t, api_t, bpi_t, live_t = (
        work[0], work[1], work[2], work[3], work[4], work[5], work[6], work[7], work[8], work[9], work[10], work[11],
    )  # fmt: skip
    for i in range(count):
        k = abs(kc[i])
        kc_t[i] = k
        e_t[i] = k
        m_t[i] = 1.0
        p1_t[i] = 1.0
        ak_t[i] = 1.0
        bk_t[i] = 1.0
        ae_t[i] = 1.0
        be_t[i] = k * k
        p2 = math.sqrt(1.0 + n[i])
        p2_t[i] = p2
        api_t[i] = 1.0
        bpi_t[i] = 1.0 / p2
        live_t[i] = 1.0
    for _ in range(40):
        n_live = 0
        for i in range(count):
            kc, e, m, p1, p2 = kc_t[i], e_t[i], m_t[i], p1_t[i], p2_t[i]
            a_k, b_k, a_e, b_e, a_pi, b_pi = ak_t[i], bk_t[i], ae_t[i], be_t[i], api_t[i], bpi_t[i]
            live = live_t[i] > 0.0
            # The pass of _complete_elliptic, operation for operation.
            r1, r2 = 1.0 / p1, 1.0 / p2
            new_a_k = a_k + b_k * r1
            new_a_e = a_e + b_e * r1
            g = e * r1
            new_b_k = 2.0 * (b_k + a_k * g)
            new_b_e = 2.0 * (b_e + a_e * g)
            new_p1 = g + p1
            new_a_pi = a_pi + b_pi * r2
            g = e * r2
            new_b_pi = 2.0 * (b_pi + a_pi * g)
            new_p2 = g + p2
            new_m = kc + m
            going = live & (abs(m - kc) > 1e-8 * m)
            new_kc = 2.0 * math.sqrt(e)
            new_e = new_kc * new_m
            # Frozen points keep their state; a point that converges now keeps this pass.
            ak_t[i] = new_a_k if live else a_k
            ae_t[i] = new_a_e if live else a_e
            bk_t[i] = new_b_k if live else b_k
            be_t[i] = new_b_e if live else b_e
            p1_t[i] = new_p1 if live else p1
            api_t[i] = new_a_pi if live else a_pi
            bpi_t[i] = new_b_pi if live else b_pi
            p2_t[i] = new_p2 if live else p2
            m_t[i] = new_m if live else m
            kc_t[i] = new_kc if going else kc
            e_t[i] = new_e if going else e
            live_t[i] = 1.0 if going else 0.0
            n_live += 1 if going else 0
        if n_live == 0:
            break
    half_pi = 0.5 * math.pi
    for i in range(count):
        m, p1, p2 = m_t[i], p1_t[i], p2_t[i]
        ellk[i] = half_pi * (bk_t[i] + ak_t[i] * m) / (m * (m + p1))
        elle[i] = half_pi * (be_t[i] + ae_t[i] * m) / (m * (m + p1))
        ellpi[i] = half_pi * (bpi_t[i] + api_t[i] * m) / (m * (m + p2))


@_jit
def _search_sorted(time, value, right):
    """``numpy.searchsorted(time, value, "right" if right else "left")`` for sorted ``time``.

    Starts from where ``value`` would fall on a uniform grid and steps to
    the answer: one or two steps on the usual evenly sampled light curves.
    Falls back to bisection when the grid is far from uniform.
    """
    n = time.size
    span = time[n - 1] - time[0]
    guess = (value - time[0]) / span * (n - 1) if span > 0 else 0.0
    i = int(min(max(guess, 0.0), n - 1.0)) if guess == guess else 0
    for _ in range(8):
        # The answer is the first index whose time is >= value (> value for right).
        above = time[i] > value if right else time[i] >= value
        if above:
            if i == 0 or not (time[i - 1] > value if right else time[i - 1] >= value):
                return i
            i -= 1
        else:
            if i == n - 1:
                return n
            i += 1
    if right:
        return np.searchsorted(time, value, side="right")
    return np.searchsorted(time, value, side="left")


@_jit
def _block_workspace(size):
    """Work arrays for one block of :func:`_evaluate_block`: (10, ``size``) floats, (3, ``size``) ints."""
    return np.empty((10, size)), np.empty((3, size), dtype=np.int64)


@_jit
def _evaluate_block(out, count, work, index, elliptic_work, rare_rows, rare_cols, rare_z):
    """Multiply ``out`` by the transit at the ``count`` gathered points of ``work`` and ``index``.

    On entry ``work[0:4]`` hold each point's separation ``z``, radius ratio
    ``p`` and limb darkening ``u1, u2``; ``index[0:2]`` its row and column in
    ``out``. The flux follows :func:`skysift.transit.transit_model.occult_quadratic`
    (planet inside the disk, cases 3 and 9, or on the limb, 2 and 8); points
    within :data:`_SNAP` of a special value, or fully covered, are appended
    to ``rare_rows, rare_cols, rare_z`` and not multiplied.
    """
    z_t, p_t, u1_t, u2_t = work[0], work[1], work[2], work[3]
    kc_t, n_t, ellk, elle, ellpi, flux_t = work[4], work[5], work[6], work[7], work[8], work[9]
    row_t, col_t, case_t = index[0], index[1], index[2]
    tol = _SNAP

    # The case and the elliptic integrals' parameters, by selects (no branch to mispredict).
    for i in range(count):
        z, p = abs(z_t[i]), p_t[i]
        edge = abs(1.0 - p)
        rare = abs(p - z) < tol or abs(edge - z) < tol or z < tol
        inside = z < edge and p < 1.0
        limb = z > edge
        case = _RARE if rare else (_OUTSIDE if not z < 1.0 + p else (_INSIDE if inside else (_LIMB if limb else _RARE)))
        a1 = (p - z) ** 2
        a2 = (p + z) ** 2
        # Inside: m = 4pz / (1 - a1), n = a2 / a1 - 1; on the limb: m = (1 - a1) / (4pz), n = 1 / a1 - 1.
        four_pz = 4.0 * p * z
        m = (four_pz if inside else 1.0 - a1) / (1.0 - a1 if inside else four_pz)
        n = (a2 if inside else 1.0) / a1 - 1.0
        general = case == _INSIDE or case == _LIMB
        # Other points get harmless values that converge at once (NaN would never stop).
        kc_t[i] = math.sqrt(1.0 - m) if general else 1.0
        n_t[i] = n if general else 0.0
        case_t[i] = case
    for lo in range(0, count, _LANES):
        hi = min(lo + _LANES, count)
        _complete_elliptic_batch(kc_t[lo:hi], n_t[lo:hi], ellk[lo:hi], elle[lo:hi], ellpi[lo:hi], elliptic_work)

    # Mandel & Agol's terms and flux; both cases' forms by selects.
    for i in range(count):
        z, p, case = abs(z_t[i]), p_t[i], case_t[i]
        inside = case == _INSIDE
        z2, p2 = z * z, p * p
        # The limb case's angles, for every point (a select keeps them only there).
        kap1 = _acos(min(max((1.0 - p2 + z2) / (2.0 * z), -1.0), 1.0))
        kap0 = _acos(min(max((p2 + z2 - 1.0) / (2.0 * p * z), -1.0), 1.0))
        a1 = (p - z) ** 2
        a2 = (p + z) ** 2
        a3 = p2 - z2
        pi_term = 3.0 * a3 / a1 * ellpi[i]
        # sqrt(1 - a1) inside, sqrt(a2 - a1) on the limb, also the factor of E.
        span = 1.0 - a1 if inside else a2 - a1
        k_inside = 1.0 - 5.0 * z2 + p2 + a3**2
        k_limb = (1.0 - a2) * (2.0 * a2 + a1 - 3.0) - 3.0 * a3 * (a2 - 2.0)
        k_factor = k_inside if inside else k_limb
        lambda_d = (
            2.0
            / (9.0 * math.pi * math.sqrt(span))
            * (k_factor * ellk[i] + span * (z2 + 7.0 * p2 - 4.0) * elle[i] - pi_term)
        )
        root = math.sqrt(max(4.0 * z2 - (1.0 + z2 - p2) ** 2, 0.0))
        lambda_e = p2 if inside else (p2 * kap0 + kap1 - 0.5 * root) / math.pi
        eta_limb = (
            kap1
            + p2 * (p2 + 2.0 * z2) * kap0
            - (1.0 + 5.0 * p2 + z2) / 4.0 * math.sqrt(max((1.0 - a1) * (a2 - 1.0), 0.0))
        ) / (2.0 * math.pi)
        eta_d = 0.5 * p2 * (p2 + 2.0 * z2) if inside else eta_limb
        u1, u2 = u1_t[i], u2_t[i]
        omega4 = 1.0 - u1 / 3.0 - u2 / 6.0
        c2 = u1 + 2.0 * u2
        covers_centre = 1.0 if p > z else 0.0
        flux = 1.0 - ((1.0 - c2) * lambda_e + c2 * (lambda_d + 2.0 / 3.0 * covers_centre) + u2 * eta_d) / omega4
        flux_t[i] = flux if (inside or case == _LIMB) else 1.0

    for i in range(count):
        case = case_t[i]
        if case == _RARE:
            rare_rows.append(row_t[i])
            rare_cols.append(col_t[i])
            rare_z.append(z_t[i])
        elif case != _OUTSIDE:
            r, c = row_t[i], col_t[i]
            out[r, c] = out[r, c] * flux_t[i]


@_jit
def multiply_transits(out, time, period, t0, rp, a, b, u1, u2, half_window):
    """Multiply ``out`` (N, T) in place by circular-orbit transits near each mid-transit.

    ``time`` (T,) must be sorted and finite. Each epoch's window (half-width
    ``half_window``, capped at half a period and then half-open) starts where
    :func:`_search_sorted` finds it and is walked to its end: the cadences of
    :func:`skysift.transit.transit_model.transit_windows`. The sky separation
    and the product follow :func:`skysift.transit.transit_model._transit_points`
    and :func:`_evaluate_block` (blocks of about :data:`_BLOCK` points over
    whole light curves), formed in float64 and rounded once to ``out``'s type.
    Returns the rows, columns and separations of the rare geometries
    :func:`_evaluate_block` leaves out (not multiplied).
    """
    n_rows, n_time = out.shape
    rare_rows = [0 for _ in range(0)]
    rare_cols = [0 for _ in range(0)]
    rare_z = [0.0 for _ in range(0)]
    if n_time == 0:
        return np.array(rare_rows, dtype=np.int64), np.array(rare_cols, dtype=np.int64), np.array(rare_z)
    # Windows are disjoint, so one light curve adds at most n_time points to a block.
    size = _BLOCK + n_time
    work, index = _block_workspace(size)
    elliptic_work = _elliptic_workspace()
    z_t, p_t, u1_t, u2_t = work[0], work[1], work[2], work[3]
    row_t, col_t = index[0], index[1]
    count = 0
    for r in range(n_rows):
        per = period[r]
        half = half_window[r]
        capped = half >= 0.5 * per
        if capped:
            half = 0.5 * per
        first = np.ceil((time[0] - t0[r] - half) / per)
        last = np.floor((time[-1] - t0[r] + half) / per)
        n_epochs = last - first + 1.0
        begin = count
        if n_epochs > 0.0:
            for k in range(int(n_epochs)):
                centre = t0[r] + (first + k) * per
                stop = centre + half
                for c in range(_search_sorted(time, centre - half, False), n_time):
                    # The window's end, as a search would find it: a capped window is
                    # [c - P/2, c + P/2) (the next epoch owns its upper edge), others closed.
                    if time[c] >= stop if capped else time[c] > stop:
                        break
                    dt = time[c] - centre
                    if not abs(dt) < 0.25 * per:
                        continue  # the far side of the orbit: no transit
                    row_t[count] = r
                    col_t[count] = c
                    # The orbital phase for now; the separation below.
                    z_t[count] = (2.0 * math.pi) * dt / per
                    count += 1
        # sky_separation's circular orbit, front half only: z^2 = b^2 + (a^2 - b^2) sin^2(phi).
        aa, bb, p, q1, q2 = a[r], b[r], rp[r], u1[r], u2[r]
        # On views from 0, so that the loop vectorises (see _complete_elliptic_batch).
        z_row, p_row, u1_row, u2_row = z_t[begin:count], p_t[begin:count], u1_t[begin:count], u2_t[begin:count]
        for i in range(count - begin):
            sin_phi = _sin(z_row[i])
            z_row[i] = math.sqrt(bb * bb + (aa * aa - bb * bb) * (sin_phi * sin_phi))
            p_row[i] = p
            u1_row[i] = q1
            u2_row[i] = q2
        if count >= _BLOCK or (r == n_rows - 1 and count > 0):
            _evaluate_block(out, count, work, index, elliptic_work, rare_rows, rare_cols, rare_z)
            count = 0
    return np.array(rare_rows, dtype=np.int64), np.array(rare_cols, dtype=np.int64), np.array(rare_z)
