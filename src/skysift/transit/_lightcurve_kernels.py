"""Compiled (numba) kernels of the training-set path: the robust spline detrend and the detection statistics.

They loop over the light curves inside the kernel (one row at a time, work
arrays allocated once per call), so a batch costs no Python per light curve:

* :func:`adaptive_spline_rows` is
  :func:`skysift.transit.preprocess.adaptive_spline_trend`: for the
  candidate knot spacings, from the longest down until the BIC stops
  improving on a settled fit, an iteratively sigma-clipped, penalised
  least-squares cubic B-spline, and the spacing of lowest BIC (of each
  spacing's first fit by default; only the winner is clipped). The basis on
  the shared time grid and its unweighted normal matrix are made once per
  batch; per light curve the normal matrix and right-hand side start from
  them with the unfitted cadences taken out, and each clipping pass only
  takes out or puts back the cadences whose weight changed (a few per cent),
  so a pass costs one banded Cholesky solve (O(M)) and one evaluation of
  the spline (O(T)) rather than O(T) sparse products. The passes over the
  cadences go run by run (cadences sharing their first basis column, found
  once per batch): the right-hand side's four sums and the spline's four
  coefficients stay in registers over a run, and the unfitted cadences of
  a star are listed once for all its spacings. Each cadence's four basis
  values lie at ``4 t ... 4 t + 3`` of one flat row per spacing, indexed
  with unsigned integers: with the (T, 4) array and signed indices read
  from ``run_starts``, numba added a negative-index wraparound and a stride
  multiply to every access and the loops spilled registers (the chi^2 pass
  of one spacing took 15-17 us on a Kepler quarter, 6 us after);
* :func:`detection_rows` is
  :func:`skysift.transit.preprocess.detection_statistic`, with exact medians
  by selection instead of a sort of every row
  (:func:`_median_bracketed`, sampled brackets), the noise from at most
  ``max_boxes`` running means (every k-th);
* :func:`vetting_statistics_rows` makes the secondary, odd and even
  statistics and the depth consistency of the vetting inputs in one pass
  per light curve (one fold per ephemeris, no (N, T) temporaries); the
  odd, even and all-transit statistics share their passes
  (:func:`_parity_box_statistics`).

The box statistics keep their running sums in registers (read back from
memory, each cadence would wait on the store of the one before) and take
each box as soon as the sums reach its end. All of this reorders no
floating-point operation: the outputs are bit-identical to those of the
plainer loops they replaced.

The arithmetic follows the numpy implementations operation for operation
(float32 robust scatters, float64 fits and sums), so the results agree with
them to rounding (``tests/transit/test_lightcurve_kernels.py``).

Everything compiles lazily on first call and is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from skysift.transit._kernels import _mean_with_next, _select

__all__: list[str] = []

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

#: 1 / Phi^-1(3/4): the MAD of a normal distribution times this is its standard deviation.
_MAD_TO_SIGMA = np.float32(1.4826)


#: Values sampled per narrowing step of :func:`_median_bracketed`, and the margin (in sample ranks)
#: kept on either side of the median's expected place: the sample rank of the median scatters by
#: sqrt(128) / 2 = 5.7, so a margin of 18 misses about once in 1,500 (then the step is retried on
#: all the values), and a step keeps about 29 % of them.
_SAMPLE = 128
_MARGIN = 18
#: At most this many values are selected directly (quickselect) rather than narrowed first.
_DIRECT = 384


@_jit
def _median_work(n):
    """Work arrays of :func:`_median_bracketed` for up to ``n`` values."""
    return np.empty(n), np.empty(n), np.empty(_SAMPLE)


@_jit
def _narrow(source, m, rank, even, target, sample):
    """One step of :func:`_median_bracketed`: the values of ``source[:m]`` inside a sampled bracket into ``target``.

    Returns ``(kept, below)``: how many were kept and how many lay below the
    bracket, or ``(-1, 0)`` when the bracket missed the middle values (ranks
    ``rank`` and ``rank + even``) or did not narrow.
    """
    stride = m // _SAMPLE
    for j in range(_SAMPLE):
        sample[j] = source[j * stride]
    centre = (rank * _SAMPLE) // m
    # The two order statistics of the sample by selection, not a sort of it: the higher first,
    # after which the lower is among the values before it.
    high_rank = min(centre + _MARGIN, _SAMPLE - 1)
    high = _select(sample, _SAMPLE, high_rank)
    low = _select(sample, high_rank, max(centre - _MARGIN, 0))
    below = 0
    kept = 0
    for i in range(m):
        x = source[i]
        below += x < low
        target[kept] = x
        kept += (x >= low) & (x <= high)
    if below > rank or below + kept <= rank + even or kept == m:
        return -1, 0
    return kept, below


@_jit
def _median_bracketed(values, n, work):
    """:func:`~skysift.transit._kernels._median_of` of ``values[:n]`` (n >= 1, no NaN) without reordering them.

    Exact, and the same float64 value (the middle value, or the float64 mean
    of the two middle ones), in a few passes instead of quickselect's
    partitions (39 us for 4,000 float64 values) or three radix passes (17
    us): two order statistics of a systematic sample of :data:`_SAMPLE`
    values (by selection) around the median's place bracket it, one
    branch-free pass counts the values below the bracket and gathers those
    inside (about 29 %), and the same is repeated on them until few are left
    for quickselect (Floyd & Rivest 1975). A bracket that misses the median
    (rarely) is replaced by the whole range, so the result never depends on
    the sample.
    """
    source, target, sample = work
    k = (n - 1) // 2
    # The middle values have ranks k and k + even inside source[:m]; rank is k's, less the values dropped below.
    even = 1 - n % 2
    m, rank = n, k
    # The first step reads ``values`` themselves (no copy of them first); a copy only when it does not narrow.
    kept = below = 0
    narrowing = n > _DIRECT
    if narrowing:
        kept, below = _narrow(values, n, rank, even, target, sample)
        narrowing = kept >= 0
    if narrowing:
        source, target = target, source
        m, rank = kept, rank - below
    else:
        for i in range(n):
            source[i] = values[i]
    while narrowing and m > _DIRECT:
        kept, below = _narrow(source, m, rank, even, target, sample)
        if kept < 0:
            break  # select from what is left
        source, target = target, source
        m, rank = kept, rank - below
    low_value = _select(source, m, rank)
    if not even:
        return float(low_value)
    return _mean_with_next(source, m, rank, low_value)


@_jit
def _robust_sigma32(values, n, work, deviations):
    """1.4826 MAD of float32 ``values[:n]`` in float32 arithmetic, as numpy's float32 medians give it (NaN if n == 0)."""
    if n == 0:
        return np.float32(np.nan)
    median = np.float32(_median_bracketed(values, n, work))
    for i in range(n):
        deviations[i] = abs(values[i] - median)
    return _MAD_TO_SIGMA * np.float32(_median_bracketed(deviations, n, work))


# ---------------------------------------------------------------------------
# Banded normal equations of a cubic B-spline
# ---------------------------------------------------------------------------
#: Rows of padding before the first column of the banded factor (its band reaches 3 columns back).
_PAD = 3
#: Unsigned offsets for the cadence and column indices of the spline passes: numba adds a
#: negative-index wraparound (a compare and a mask per access) to every signed index, and an
#: unsigned index mixed with a signed one would be promoted to float.
_U1, _U2, _U3, _U4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)


@_jit
def _add_point(band, rhs, first, basis, t, value, sign):
    """Add (``sign`` 1) or take out (-1) cadence ``t`` of flux ``value`` from the normal equations.

    ``basis`` holds the four basis values of cadence ``t`` at ``4 t ... 4 t + 3``
    (columns ``first[t] ... first[t] + 3``). ``band[j, 3 - d]`` holds entry
    ``(j - d, j)`` (the transpose of ``scipy.linalg.solveh_banded``'s upper
    form); ``band`` and ``rhs`` have three rows of slack past the last
    column, which absorb the products of basis values that are zero there.
    """
    i = np.int64(t)  # signed or unsigned ``t`` alike (rare calls: the wraparound costs nothing here)
    f = first[i]
    for k in range(4):
        vk = basis[4 * i + k] * sign
        rhs[f + k] += vk * value
        for d in range(4 - k):
            band[f + k + d, 3 - d] += vk * basis[4 * i + k + d]


@_jit
def _banded_cholesky_solve(a, rhs, factor, inverse_diagonal, out, n_cols):
    """Solve the symmetric positive definite system ``a`` (bandwidth 3, layout of :func:`_add_point`).

    ``factor`` and ``inverse_diagonal`` (``n_cols + 2 * _PAD`` rows) receive
    ``U`` (``A = U^T U``) shifted down by :data:`_PAD` rows, whose padding
    (zero off-diagonals, unit diagonal) lets every column take the same
    branch-free formulas; ``out`` (same length) receives the solution at
    ``_PAD:_PAD + n_cols`` and zeros around it. A non-positive pivot
    (numerically singular system) becomes a tiny one rather than failing.
    """
    for j in range(_PAD):
        for r in range(4):
            factor[j, r] = 0.0
            factor[n_cols + _PAD + j, r] = 0.0
        inverse_diagonal[j] = 1.0
        inverse_diagonal[n_cols + _PAD + j] = 1.0
        out[j] = 0.0
        out[n_cols + _PAD + j] = 0.0
    for c in range(n_cols):
        j = c + _PAD
        # factor[j, 3 - d] = U[c - d, c] (column c of U, d rows above the diagonal).
        u3 = a[c, 0] * inverse_diagonal[j - 3]
        u2 = (a[c, 1] - factor[j - 2, 2] * u3) * inverse_diagonal[j - 2]
        u1 = (a[c, 2] - factor[j - 1, 1] * u3 - factor[j - 1, 2] * u2) * inverse_diagonal[j - 1]
        pivot = a[c, 3] - u3 * u3 - u2 * u2 - u1 * u1
        u0 = np.sqrt(pivot) if pivot > 0.0 else 1e-150
        factor[j, 0], factor[j, 1], factor[j, 2], factor[j, 3] = u3, u2, u1, u0
        inverse_diagonal[j] = 1.0 / u0
    # U^T y = rhs, then U x = y.
    for c in range(n_cols):
        j = c + _PAD
        out[j] = (rhs[c] - factor[j, 0] * out[j - 3] - factor[j, 1] * out[j - 2] - factor[j, 2] * out[j - 1]) * inverse_diagonal[j]
    for j in range(n_cols + _PAD - 1, _PAD - 1, -1):
        out[j] = (out[j] - factor[j + 1, 2] * out[j + 1] - factor[j + 2, 1] * out[j + 2] - factor[j + 3, 0] * out[j + 3]) * inverse_diagonal[j]


@_jit
def _spline_at(first, basis, coefficients, t):
    """The spline of ``coefficients`` at cadence ``t`` (unsigned; ``basis`` flat, as :func:`_add_point`'s)."""
    f = np.uint64(first[t])
    k = _U4 * t
    return (
        basis[k] * coefficients[f] + basis[k + _U1] * coefficients[f + _U1]
        + basis[k + _U2] * coefficients[f + _U2] + basis[k + _U3] * coefficients[f + _U3]
    )  # fmt: skip


@_jit
def _run_coefficients(first, coefficients, run_starts, r):
    """Cadence range (unsigned) of run ``r`` and the four coefficients its cadences share."""
    begin, end = np.uint64(run_starts[r]), np.uint64(run_starts[r + 1])
    f = np.uint64(first[begin])
    return begin, end, coefficients[f], coefficients[f + _U1], coefficients[f + _U2], coefficients[f + _U3]


@_jit
def _run_value(basis, t, c0, c1, c2, c3):
    """The spline at cadence ``t`` (unsigned) of a run whose coefficients are ``c0 ... c3``."""
    k = _U4 * t
    return basis[k] * c0 + basis[k + _U1] * c1 + basis[k + _U2] * c2 + basis[k + _U3] * c3


@_jit
def _solve_penalised(band, rhs, penalty_band, penalty, m, system, factor, inverse_diagonal, solution):
    """Coefficients of the penalised normal equations ``band`` (``m`` columns) into ``solution[_PAD:]``.

    The penalty is ``penalty`` times the mean diagonal of ``band``, plus a
    ridge of 1e-10 of the largest diagonal; past the last column the
    coefficients repeat it, as preprocess's evaluation clamped the column
    index (the basis values there are zero).
    """
    diagonal = 0.0
    for j in range(m):
        diagonal += band[j, 3]
    scale = penalty * max(diagonal / m, 1e-12)
    largest = -np.inf
    for j in range(m):
        for r in range(4):
            system[j, r] = band[j, r] + scale * penalty_band[j, r]
        largest = max(largest, system[j, 3])
    ridge = 1e-10 * max(largest, 1e-12)
    for j in range(m):
        system[j, 3] += ridge
    _banded_cholesky_solve(system, rhs, factor, inverse_diagonal, solution, m)
    coefficients = solution[_PAD:]
    for j in range(m, m + 3):
        coefficients[j] = coefficients[m - 1]


@_jit
def _clipping_threshold(clean, fittable, first, basis, coefficients, stride, sigma_clip, scratch, work, deviations):
    """``sigma_clip`` times the robust scatter of the residuals of every ``stride``-th fitted cadence.

    float32, as numpy forms ``sigma_clip * scatter``, returned as float64.
    """
    n = 0
    for t in range(np.uint64(0), np.uint64(clean.size), np.uint64(stride)):
        if fittable[t]:
            scratch[n] = np.float32(clean[t] - _spline_at(first, basis, coefficients, t))
            n += 1
    scatter = _robust_sigma32(scratch, n, work, deviations)
    return np.float64(np.float32(sigma_clip) * max(scatter, np.float32(1e-12)))


@_jit
def _residual_pass(
    clean, fittable, first, basis, coefficients, inverse_p2p, clip2, threshold, weight, band, rhs, run_starts, n_runs
):  # fmt: skip
    """Capped chi^2 of the fitted cadences, and clipping at ``threshold``.

    Cadences whose weight changes are taken out of (or put back into) the
    normal equations; returns ``(chi2, changed)``. Run by run (cadences
    sharing their first column, ``run_starts[:n_runs + 1]``), four
    coefficients held per run.
    """
    chi2 = 0.0
    changed = 0
    for r in range(n_runs):
        begin, end, c0, c1, c2, c3 = _run_coefficients(first, coefficients, run_starts, r)
        for t in range(begin, end):
            residual = clean[t] - _run_value(basis, t, c0, c1, c2, c3)
            if fittable[t]:
                z = residual * inverse_p2p
                chi2 += min(z * z, clip2)
                keep = abs(residual) <= threshold
                if keep != weight[t]:
                    changed += 1
                    weight[t] = keep
                    _add_point(band, rhs, first, basis, t, clean[t], 1.0 if keep else -1.0)
    return chi2, changed


@_jit
def _remove_from_band(band, first, basis, t):
    """Take cadence ``t`` out of the normal matrix ``band`` (:func:`_add_point` without the right-hand side)."""
    f = first[t]
    for k in range(4):
        vk = -basis[4 * t + k]
        for d in range(4 - k):
            band[f + k + d, 3 - d] += vk * basis[4 * t + k + d]


@_jit
def _capped_chi2(clean, fittable, first, basis, coefficients, inverse_p2p, clip2, run_starts, n_runs):
    """The chi^2 of :func:`_residual_pass` without clipping, run by run (four coefficients held per run)."""
    chi2 = 0.0
    for r in range(n_runs):
        begin, end, c0, c1, c2, c3 = _run_coefficients(first, coefficients, run_starts, r)
        for t in range(begin, end):
            residual = clean[t] - _run_value(basis, t, c0, c1, c2, c3)
            z = residual * inverse_p2p
            if fittable[t]:
                chi2 += min(z * z, clip2)
    return chi2


@_jit
def adaptive_spline_rows(
    flux, good, fittable, firsts, values, n_cols, penalties, grams, penalty, sigma_clip, n_iter, choice_fits,
    patience, settled_chi2, trend, best_spacing,
):  # fmt: skip
    """Transit-masked robust spline trends with BIC-chosen knot spacing, row by row.

    Parameters
    ----------
    flux : float64 (N, T)
        Fluxes (any value where not ``good``).
    good, fittable : bool (N, T)
        Usable cadences, and those the spline is fitted to (``good`` less the
        excluded ones; rows with under 16 such fall back to ``good`` before the call).
    firsts, values : int64 (S, T), float64 (S, T, 4)
        Per candidate spacing, the first non-zero basis column of each cadence
        and the four basis values from it (zero beyond the last column).
    n_cols : int64 (S,)
        Basis columns per spacing.
    penalties, grams : float64 (S, M_max + 3, 4)
        Second-difference penalty and the normal matrix ``B^T B`` of every
        cadence, in the banded layout of :func:`_add_point`.
    penalty, sigma_clip : float
        Penalty weight (times the mean diagonal of the normal matrix) and clipping threshold.
    n_iter : int
        Fits of the chosen spacing (each after clipping on the previous one).
    choice_fits : int
        Fits per spacing before its BIC is taken (``n_iter``: the BIC of the
        final clipped fit; 1: of the first fit, and only the winner is
        clipped and refitted).
    patience : int
        The spacings (sorted by increasing length) are tried from the
        longest down, and a row stops once this many in a row have not
        lowered its BIC below the best so far, provided the best fit's capped
        chi^2 per fitted cadence is below ``settled_chi2`` (``S`` or more: all
        are tried, the exhaustive choice).
    settled_chi2 : float
        While the best fit so far leaves more than this capped chi^2 per
        cadence (a trend it cannot follow, e.g. a fast rotator: its residuals
        hit the cap and the BIC is flat but for the columns' cost until the
        knots get close enough), the descent goes on whatever the patience.
    trend : float64 (N, T), out
        Trend of the winning spacing.
    best_spacing : int64 (N,), out
        Its index (-1 if no spacing gave a finite BIC).
    """
    n_rows, n_time = flux.shape
    n_spacings = firsts.shape[0]
    # Each cadence's four basis values at 4 t ... 4 t + 3 of one flat row per spacing (one unsigned index).
    flat_values = values.reshape((n_spacings, 4 * n_time))
    max_rows = grams.shape[1]
    choice_fits = max(min(choice_fits, n_iter), 1)
    band = np.empty((max_rows, 4))
    system = np.empty((max_rows, 4))
    factor = np.empty((max_rows + 2 * _PAD, 4))
    inverse_diagonal = np.empty(max_rows + 2 * _PAD)
    rhs = np.empty(max_rows)
    solution = np.empty(max_rows + 2 * _PAD)
    coefficients = solution[_PAD:]
    # The winner's state after its last fit (normal equations, weights, coefficients), to go on clipping from.
    best_band = np.empty((max_rows, 4))
    best_rhs = np.empty(max_rows)
    best_weight = np.empty(n_time, dtype=np.bool_)
    best_solution = np.empty(max_rows + 2 * _PAD)
    clean = np.empty(n_time)
    fitted_flux = np.empty(n_time)
    unfitted = np.empty(n_time, dtype=np.int64)
    weight = np.empty(n_time, dtype=np.bool_)
    # Per spacing, the cadences where ``first`` changes (runs of cadences sharing their columns).
    run_starts = np.empty((n_spacings, n_time + 1), dtype=np.int64)
    n_runs = np.zeros(n_spacings, dtype=np.int64)
    for s in range(n_spacings):
        for t in range(n_time):
            if t == 0 or firsts[s, t] != firsts[s, t - 1]:
                run_starts[s, n_runs[s]] = t
                n_runs[s] += 1
        run_starts[s, n_runs[s]] = n_time
    scratch = np.empty(n_time, dtype=np.float32)
    deviations = np.empty(n_time, dtype=np.float32)
    work = _median_work(n_time)
    # Residual scatter from at most ~1024 cadences and the point-to-point noise from ~2048
    # differences, as preprocess._row_robust_sigma subsamples them.
    residual_stride = -(-n_time // 1024) if n_time > 1024 else 1
    n_diffs = max(n_time - 1, 0)
    diff_stride = -(-n_diffs // 2048) if n_diffs > 2048 else 1
    clip2 = sigma_clip * sigma_clip
    for row in range(n_rows):
        row_fittable = fittable[row]
        n_points = 0
        n_unfitted = 0
        for t in range(n_time):
            clean[t] = flux[row, t] if good[row, t] else 0.0
            n_points += row_fittable[t]
            fitted_flux[t] = clean[t] if row_fittable[t] else 0.0
            unfitted[n_unfitted] = t
            n_unfitted += not row_fittable[t]
        n_points = max(n_points, 1)
        # Point-to-point noise (insensitive to slow trends) for the BIC.
        n = 0
        for j in range(0, n_diffs, diff_stride):
            if good[row, j] and good[row, j + 1]:
                scratch[n] = np.float32(clean[j + 1] - clean[j])
                n += 1
        p2p = np.float64(_robust_sigma32(scratch, n, work, deviations)) / np.sqrt(2.0)
        if not np.isfinite(p2p):
            p2p = 1.0
        p2p = max(p2p, 1e-12)
        inverse_p2p = 1.0 / p2p
        log_points = np.log(n_points)
        best_bic = np.inf
        best_spacing[row] = -1
        best_converged = True
        best_chi2 = np.inf
        for s in range(n_spacings - 1, -1, -1):
            if best_spacing[row] - s > patience and best_chi2 < settled_chi2 * n_points:
                break  # ``patience`` shorter spacings in a row did not beat a settled best: stop the descent
            m = n_cols[s]
            first = firsts[s]
            basis = flat_values[s]
            # Normal equations of the fittable cadences: all cadences' minus the others'.
            for j in range(m + 3):
                for r in range(4):
                    band[j, r] = grams[s, j, r]
                rhs[j] = 0.0
            # B^T (w f): a run of cadences sharing their first column adds to four entries, summed in
            # registers over the run (the zeroed flux of the unfitted cadences adds nothing).
            for r in range(n_runs[s]):
                f = first[run_starts[s, r]]
                s0 = s1 = s2 = s3 = 0.0
                for t in range(np.uint64(run_starts[s, r]), np.uint64(run_starts[s, r + 1])):
                    c = fitted_flux[t]
                    k = _U4 * t
                    s0 += basis[k] * c
                    s1 += basis[k + _U1] * c
                    s2 += basis[k + _U2] * c
                    s3 += basis[k + _U3] * c
                rhs[f] += s0
                rhs[f + 1] += s1
                rhs[f + 2] += s2
                rhs[f + 3] += s3
            for i in range(n_unfitted):
                _remove_from_band(band, first, basis, unfitted[i])
            for t in range(n_time):
                weight[t] = row_fittable[t]
            converged = False
            for iteration in range(choice_fits):
                _solve_penalised(band, rhs, penalties[s], penalty, m, system, factor, inverse_diagonal, solution)
                # Clip (on the subsampled residuals' scatter) only where another fit follows here.
                threshold = np.inf
                if iteration < choice_fits - 1:
                    threshold = _clipping_threshold(
                        clean, row_fittable, first, basis, coefficients, residual_stride, sigma_clip, scratch, work,
                        deviations,
                    )  # fmt: skip
                if threshold < np.inf:
                    chi2, changed = _residual_pass(
                        clean, row_fittable, first, basis, coefficients, inverse_p2p, clip2, threshold, weight, band,
                        rhs, run_starts[s], n_runs[s],
                    )  # fmt: skip
                else:
                    chi2, changed = _capped_chi2(clean, row_fittable, first, basis, coefficients, inverse_p2p, clip2,
                                                 run_starts[s], n_runs[s]), 0
                if changed == 0:
                    # Converged (another fit would repeat this one), or no clipping asked for here.
                    converged = iteration < choice_fits - 1 or choice_fits == n_iter
                    break
            bic = chi2 + m * log_points
            # ``<=``: on a tie the shorter spacing wins, as an ascending scan with ``<`` chose.
            if bic < best_bic or (bic == best_bic and bic < np.inf):
                best_bic = bic
                best_spacing[row] = s
                best_converged = converged
                best_chi2 = chi2
                for j in range(m + 3):
                    best_rhs[j] = rhs[j]
                    for r in range(4):
                        best_band[j, r] = band[j, r]
                for j in range(solution.size):
                    best_solution[j] = solution[j]
                for t in range(n_time):
                    best_weight[t] = weight[t]
        s = best_spacing[row]
        if s < 0:
            for t in range(n_time):
                trend[row, t] = np.nan
            continue
        m = n_cols[s]
        first = firsts[s]
        basis = flat_values[s]
        final = best_solution[_PAD:]
        if not best_converged:
            # Go on clipping the winner from its last fit, as if it had been clipped all along.
            for j in range(m + 3):
                rhs[j] = best_rhs[j]
                for r in range(4):
                    band[j, r] = best_band[j, r]
            for t in range(n_time):
                weight[t] = best_weight[t]
            for j in range(solution.size):
                solution[j] = best_solution[j]
            for _ in range(choice_fits, n_iter):
                threshold = _clipping_threshold(
                    clean, row_fittable, first, basis, coefficients, residual_stride, sigma_clip, scratch, work, deviations
                )
                _, changed = _residual_pass(
                    clean, row_fittable, first, basis, coefficients, inverse_p2p, clip2, threshold, weight, band, rhs,
                    run_starts[s], n_runs[s],
                )  # fmt: skip
                if changed == 0:
                    break
                _solve_penalised(band, rhs, penalties[s], penalty, m, system, factor, inverse_diagonal, solution)
            final = coefficients
        row_trend = trend[row]
        for r in range(n_runs[s]):
            begin, end, c0, c1, c2, c3 = _run_coefficients(first, final, run_starts[s], r)
            for t in range(begin, end):
                row_trend[t] = _run_value(basis, t, c0, c1, c2, c3)


# ---------------------------------------------------------------------------
# Detection statistic
# ---------------------------------------------------------------------------
@_jit
def _distance_at(time, period, inverse, t0):
    """``|preprocess.phase_fold(time, period, t0)|`` of one time, operation for operation (``inverse``: ``1 / period``)."""
    offset = time - t0
    x = offset - period * np.floor(offset * inverse + 0.5)
    if x >= 0.5 * period:
        x -= period
    return abs(x)


@_jit
def _fold_distance(time, period, t0, out):
    """:func:`_distance_at` of every time into ``out``."""
    inverse = 1.0 / period
    for t in range(time.size):
        out[t] = _distance_at(time[t], period, inverse, t0)


@_jit
def transit_mask_rows(time, period, t0, duration, half_width, out):
    """:func:`~skysift.transit.preprocess.transit_mask` of each row into ``out`` (N, T) bool, operation for operation."""
    distance = np.empty(time.size)
    for row in range(out.shape[0]):
        _fold_distance(time, period[row], t0[row], distance)
        limit = half_width * duration[row]
        for t in range(time.size):
            out[row, t] = distance[t] < limit


@_jit
def _box_statistic(flux, usable, distance, duration, width, max_boxes, scratch):
    """:func:`~skysift.transit.preprocess.detection_statistic` of one row: ``(mes, depth, noise, n_in, n_transits)``.

    ``flux`` (T,) float32 or float64; ``usable`` (T,) bool (finite and
    wanted); ``distance`` (T,) the time from the nearest mid-transit
    (:func:`_fold_distance`); ``width`` the box length in cadences;
    ``max_boxes`` the most running means whose robust scatter is taken
    (every k-th full box; 0: all of them); ``scratch`` a :func:`_detection_scratch`.
    """
    outside_values, box_values, deviations, csum, ccount, work = scratch
    n_time = flux.size
    n_out = 0
    count_in = 0
    sum_in = 0.0
    for t in range(n_time):
        if usable[t]:
            x = distance[t]
            if x < 0.5 * duration:
                count_in += 1
                sum_in += float(flux[t])
            if x > duration:
                outside_values[n_out] = flux[t]
                n_out += 1
    baseline = _median_bracketed(outside_values, n_out, work) if n_out > 0 else 1.0
    mean_in = sum_in / max(count_in, 1)
    depth = baseline - mean_in if count_in > 0 else 0.0
    # Running means over one duration of the out-of-transit residuals (cumulative sums, as numpy's),
    # each box taken as soon as the sums reach its end. The running sums stay in registers: read
    # back from the arrays, every cadence would wait on the store of the one before.
    w = width
    csum[0] = 0.0
    ccount[0] = 0
    running = 0.0
    running_count = 0
    n_begins = max(n_time - w + 1, 0)
    stride = -(-n_begins // max_boxes) if 0 < max_boxes < n_begins else 1
    n_full = 0
    n_kept = 0
    skip = 0  # full boxes still to pass over before the next kept one
    enough = 0.8 * w
    for t in range(n_time):
        outside = usable[t] and distance[t] > duration
        running += (float(flux[t]) - baseline) if outside else 0.0
        running_count += outside
        csum[t + 1] = running
        ccount[t + 1] = running_count
        begin = t + 1 - w
        if begin >= 0:
            box_count = running_count - ccount[begin]
            if box_count >= enough:
                if skip == 0:
                    box_values[n_kept] = np.float32((running - csum[begin]) / max(box_count, 1))
                    n_kept += 1
                    skip = stride
                skip -= 1
                n_full += 1
    return _finish_box_statistic(outside_values, n_out, box_values, n_kept, n_full, count_in, depth, w, work, deviations)


@_jit
def _finish_box_statistic(outside_values, n_out, box_values, n_kept, n_full, count_in, depth, w, work, deviations):
    """The last step of :func:`_box_statistic`: the noise of the kept running means, and the statistic tuple."""
    sigma = np.float64(_robust_sigma32(box_values, n_kept, work, deviations))
    if not (np.isfinite(sigma) and n_full >= 20):
        # Too few boxes (very long durations): scale the per-cadence scatter.
        for i in range(n_out):
            box_values[i] = np.float32(outside_values[i])
        sigma = np.float64(_robust_sigma32(box_values, n_out, work, deviations)) / np.sqrt(np.float64(w))
    if not (np.isfinite(sigma) and sigma > 0):
        sigma = np.inf
    n_transits = count_in / w
    mes = depth / sigma * np.sqrt(n_transits) if count_in > 0 else 0.0
    return mes, depth, sigma, count_in, n_transits


@_jit
def _parity_scratch(n_time):
    """Work arrays of :func:`_parity_box_statistics` for rows of ``n_time`` cadences."""
    return (
        np.empty((3, n_time)), np.empty((3, n_time), dtype=np.float32), np.empty(n_time, dtype=np.float32),
        np.empty((3, n_time + 1)), np.empty((3, n_time + 1), dtype=np.int64), _median_work(n_time),
    )  # fmt: skip


@_jit
def _parity_box_statistics(flux, good, is_even, distance, duration, width, max_boxes, scratch):
    """:func:`_box_statistic` of the odd, the even and all ``good`` cadences at once: ``(odd, even, all)``.

    The same values as three calls with ``good & ~is_even``, ``good &
    is_even`` and ``good`` (each set's sums in time order, exact medians),
    from one pass that sorts every cadence into its sets, one that forms
    the three running sums side by side (independent chains, so they
    overlap in the CPU instead of following one another) and one over the
    box beginnings: three passes over the light curve instead of nine.
    """
    outside, box_values, deviations, csum, ccount, work = scratch
    n_time = flux.size
    # Set 0 odd, 1 even, 2 all.
    n_odd = n_even = n_all = 0
    in_odd = in_even = in_all = 0
    sum_odd = sum_even = sum_all = 0.0
    for t in range(n_time):
        if good[t]:
            x = distance[t]
            value = flux[t]
            even = is_even[t]
            if x < 0.5 * duration:
                in_all += 1
                sum_all += float(value)
                if even:
                    in_even += 1
                    sum_even += float(value)
                else:
                    in_odd += 1
                    sum_odd += float(value)
            if x > duration:
                outside[2, n_all] = value
                n_all += 1
                if even:
                    outside[1, n_even] = value
                    n_even += 1
                else:
                    outside[0, n_odd] = value
                    n_odd += 1
    n_out = (n_odd, n_even, n_all)
    count_in = (in_odd, in_even, in_all)
    sum_in = (sum_odd, sum_even, sum_all)
    base_odd = _median_bracketed(outside[0], n_odd, work) if n_odd > 0 else 1.0
    base_even = _median_bracketed(outside[1], n_even, work) if n_even > 0 else 1.0
    base_all = _median_bracketed(outside[2], n_all, work) if n_all > 0 else 1.0
    baseline = (base_odd, base_even, base_all)
    c_odd, c_even, c_all = csum[0], csum[1], csum[2]
    k_odd, k_even, k_all = ccount[0], ccount[1], ccount[2]
    c_odd[0] = c_even[0] = c_all[0] = 0.0
    k_odd[0] = k_even[0] = k_all[0] = 0
    run_odd = run_even = run_all = 0.0
    count_odd = count_even = count_all = 0
    w = width
    n_begins = max(n_time - w + 1, 0)
    stride = -(-n_begins // max_boxes) if 0 < max_boxes < n_begins else 1
    full_odd = full_even = full_all = 0
    kept_odd = kept_even = kept_all = 0
    skip_odd = skip_even = skip_all = 0
    enough = 0.8 * w
    for t in range(n_time):
        out = good[t] and distance[t] > duration
        even = is_even[t]
        value = float(flux[t])
        out_even = out and even
        out_odd = out and not even
        run_odd += (value - base_odd) if out_odd else 0.0
        run_even += (value - base_even) if out_even else 0.0
        run_all += (value - base_all) if out else 0.0
        count_odd += out_odd
        count_even += out_even
        count_all += out
        c_odd[t + 1], c_even[t + 1], c_all[t + 1] = run_odd, run_even, run_all
        k_odd[t + 1], k_even[t + 1], k_all[t + 1] = count_odd, count_even, count_all
        begin = t + 1 - w
        if begin < 0:
            continue
        count = count_odd - k_odd[begin]
        if count >= enough:
            if skip_odd == 0:
                box_values[0, kept_odd] = np.float32((run_odd - c_odd[begin]) / max(count, 1))
                kept_odd += 1
                skip_odd = stride
            skip_odd -= 1
            full_odd += 1
        count = count_even - k_even[begin]
        if count >= enough:
            if skip_even == 0:
                box_values[1, kept_even] = np.float32((run_even - c_even[begin]) / max(count, 1))
                kept_even += 1
                skip_even = stride
            skip_even -= 1
            full_even += 1
        count = count_all - k_all[begin]
        if count >= enough:
            if skip_all == 0:
                box_values[2, kept_all] = np.float32((run_all - c_all[begin]) / max(count, 1))
                kept_all += 1
                skip_all = stride
            skip_all -= 1
            full_all += 1
    kept = (kept_odd, kept_even, kept_all)
    full = (full_odd, full_even, full_all)
    statistics = []
    for k in range(3):
        depth = baseline[k] - sum_in[k] / max(count_in[k], 1) if count_in[k] > 0 else 0.0
        statistics.append(
            _finish_box_statistic(
                outside[k], n_out[k], box_values[k], kept[k], full[k], count_in[k], depth, w, work, deviations
            )
        )
    return statistics[0], statistics[1], statistics[2]


@_jit
def _store(out, row, statistic):
    """Write a :func:`_box_statistic` tuple into row ``row`` of an (N, 5) float64 array."""
    out[row, 0], out[row, 1], out[row, 2], out[row, 3], out[row, 4] = statistic


@_jit
def _detection_scratch(n_time):
    """Work arrays of :func:`_box_statistic` for rows of ``n_time`` cadences."""
    return (
        np.empty(n_time), np.empty(n_time, dtype=np.float32), np.empty(n_time, dtype=np.float32),
        np.empty(n_time + 1), np.empty(n_time + 1, dtype=np.int64), _median_work(n_time),
    )  # fmt: skip


@_jit
def detection_rows(time, flux, good, period, t0, duration, width, max_boxes, mes, depth, noise, n_in, n_transits):
    """:func:`~skysift.transit.preprocess.detection_statistic` of each row into the output arrays.

    ``time`` (T,) shared; ``flux`` float64 (N, T); ``good`` bool (N, T)
    (finite and valid); ``period``, ``t0``, ``duration`` float64 (N,);
    ``width`` int64 (N,), the box length in cadences; ``max_boxes`` as :func:`_box_statistic`.
    """
    n_rows, n_time = flux.shape
    distance = np.empty(n_time)
    scratch = _detection_scratch(n_time)
    for row in range(n_rows):
        _fold_distance(time, period[row], t0[row], distance)
        mes[row], depth[row], noise[row], n_in[row], n_transits[row] = _box_statistic(
            flux[row], good[row], distance, duration[row], width[row], max_boxes, scratch
        )


@_jit
def vetting_statistics_rows(
    time, flux, good, period, t0, duration, width, half_width, depth_error_floor, max_boxes, secondary, odd, even,
    consistency, is_even,
):  # fmt: skip
    """The detection statistics of :func:`~skysift.transit.preprocess.make_vetting_views`, one pass per row.

    For each row (``flux`` float32 (N, T), ``good`` bool (N, T) finite and
    usable, ephemeris float64 (N,), box lengths ``width`` and
    ``half_width`` in cadences of one and half a duration, ``max_boxes`` as
    :func:`_box_statistic`): the statistic
    (mes, depth, noise, n_in, n_transits as columns of the (N, 5) outputs)
    of the secondary (``t0 + P / 2``, whole duration), of the odd and the
    even transits (central half of the duration), and the reduced chi^2 of
    the individual transits' depths (:func:`_depth_consistency`) into
    ``consistency`` (N,); ``is_even`` (N, T) receives the parity of each
    cadence's transit number ``floor((t - t0) / P + 0.5)``. One fold per
    ephemeris instead of one per statistic, and no (N, T) temporaries.
    """
    n_rows, n_time = flux.shape
    distance = np.empty(n_time)
    scratch = _detection_scratch(n_time)
    parity_scratch = _parity_scratch(n_time)
    counts = np.empty(n_time + 1, dtype=np.int64)
    sums = np.empty(n_time + 1)
    for row in range(n_rows):
        p, e, d = period[row], t0[row], duration[row]
        half = 0.5 * d
        _fold_distance(time, p, e + 0.5 * p, distance)
        _store(secondary, row, _box_statistic(flux[row], good[row], distance, d, width[row], max_boxes, scratch))
        # One pass: the distance from the nearest mid-transit, the transit number and its parity, and the
        # in-transit sums of each transit for the depth consistency (the central half of each, numbered
        # from the first one covered: cycle numbers never decrease along the grid).
        inverse = 1.0 / p
        first = np.int64(0)
        n_cycles = 0
        total_count = 0
        for t in range(n_time):
            distance[t] = _distance_at(time[t], p, inverse, e)
            cycle = np.int64(np.floor((time[t] - e) / p + 0.5))
            # The parity from the integer's low bit (two's complement: right for negative numbers too),
            # not a float modulo (a libm call per cadence).
            is_even[row, t] = (cycle & 1) == 0
            if good[row, t] and distance[t] < 0.5 * half:
                if n_cycles == 0:
                    first = cycle
                c = cycle - first
                while n_cycles <= c:
                    counts[n_cycles] = 0
                    sums[n_cycles] = 0.0
                    n_cycles += 1
                counts[c] += 1
                sums[c] += float(flux[row, t])
                total_count += 1
        # Odd, even and all transits over the central half of the duration, in shared passes.
        odd_statistic, even_statistic, all_statistic = _parity_box_statistics(
            flux[row], good[row], is_even[row], distance, half, half_width[row], max_boxes, parity_scratch
        )
        _store(odd, row, odd_statistic)
        _store(even, row, even_statistic)
        _, all_depth, all_noise, all_in, all_transits = all_statistic
        total_sum = 0.0
        for c in range(n_cycles):
            total_sum += sums[c]
        # detection_statistic's depth is the out-of-transit median minus the mean in transit.
        baseline = all_depth + total_sum / max(total_count, 1)
        box = all_in / all_transits if all_transits > 0 else 1.0
        weight_sum = 0.0
        weighted_depth = 0.0
        n_covered = 0
        for c in range(n_cycles):
            if counts[c] > 0:
                weight = 1.0 / (all_noise * all_noise * box / counts[c])
                weight_sum += weight
                weighted_depth += weight * (baseline - sums[c] / counts[c])
                n_covered += 1
        mean = weighted_depth / weight_sum
        floor = (depth_error_floor * mean) ** 2
        chi2 = 0.0
        for c in range(n_cycles):
            if counts[c] > 0:
                variance = all_noise * all_noise * box / counts[c] + floor
                deviation = baseline - sums[c] / counts[c] - mean
                chi2 += deviation * deviation / variance
        dof = n_covered - 1
        consistency[row] = chi2 / dof if dof >= 1 and np.isfinite(chi2) else 1.0


@_jit
def trapezoid_overlaps(view, half_span, half_total, slope, overlap, norm):
    """Overlap and norm of each row's view with its own trapezoid templates, without materialising them.

    ``view`` (N, B) float64 spans ``+-half_span`` (N,) durations; template
    ``k`` at bin ``b`` is ``clip((half_total[k] - |x_b|) / slope[k], 0, 1)``
    with ``x_b = (-1 + (2 b + 1) / B) half_span`` (as
    :func:`~skysift.transit.preprocess._trapezoid_templates` forms it);
    ``overlap[n, k]`` receives minus the dot product of the view with it and
    ``norm[n, k]`` its squared norm. Only the bins where a template is not
    zero are visited (``|x_b| < half_total[k]``), in order of ``b``.
    """
    n_rows, n_bins = view.shape
    x = np.empty(n_bins)
    for row in range(n_rows):
        for b in range(n_bins):
            x[b] = abs((-1.0 + (2.0 * b + 1.0) / n_bins) * half_span[row])
        for k in range(half_total.size):
            dot = 0.0
            squares = 0.0
            for b in range(n_bins):
                if x[b] < half_total[k]:
                    value = min(max((half_total[k] - x[b]) / slope[k], 0.0), 1.0)
                    dot += view[row, b] * value
                    squares += value * value
            overlap[row, k] = -dot
            norm[row, k] = squares


# ---------------------------------------------------------------------------
# Simulated stars
# ---------------------------------------------------------------------------
@_jit
def _sho_psd(omega, omega0, q):
    """Unnormalised power spectrum of a stochastically driven damped oscillator."""
    omega0_squared = omega0 * omega0
    detuning = omega * omega - omega0_squared
    damping = omega0 * omega / q
    return omega0_squared * omega0_squared / (detuning * detuning + damping * damping)


@_jit
def star_spectrum(
    omega, rotation_period, rotation_q, granulation_timescale, rotation_amplitude, granulation_amplitude, draws, n_grid,
    granulation, spectrum,
):  # fmt: skip
    """One spectrum per star whose inverse real FFT is its rotation plus granulation, each at its own rms.

    ``omega`` (F,) angular frequencies; ``draws`` (4, N, F) standard normals
    (real and imaginary parts of the two spectra). The rotation is an
    oscillator at the rotation frequency plus one at twice it with half the
    power (celerite's ``RotationTerm``), the granulation a Harvey (1985)
    profile ``1 / (1 + (omega tau)^2)``; the amplitude at each frequency is
    the square root of the power, zero at zero frequency. Each spectrum is
    scaled so that its series (the inverse real FFT of length ``n_grid``)
    has rms ``rotation_amplitude`` or ``granulation_amplitude`` (N,) over
    the grid, and the two are summed: one inverse FFT per star instead of
    two. The rms comes from the spectrum by Parseval's theorem (the
    zero-frequency bin is zero, so the series' mean is zero; an inverse real
    FFT of even length keeps only the real part of the Nyquist bin), equal to
    ``numpy.std`` of the series up to rounding; a zero rms scales by 1.
    ``granulation`` (F,) is scratch; ``spectrum`` (N, F) the output
    (complex64: the series are float32, 1e-7 of their rms, far below any
    white noise of the simulation).
    """
    n_rows, n_freq = spectrum.shape
    # An even-length inverse real FFT keeps only the real part of its last (Nyquist) bin.
    nyquist = n_grid % 2 == 0
    normalisation = 1.0 / (float(n_grid) * float(n_grid))
    for row in range(n_rows):
        omega_rotation = 2.0 * np.pi / rotation_period[row]
        q = rotation_q[row]
        tau = granulation_timescale[row]
        for f in range(1, n_freq):
            w = omega[f]
            power = _sho_psd(w, omega_rotation, q) + 0.5 * _sho_psd(w, 2.0 * omega_rotation, q)
            amplitude = np.sqrt(power)
            spectrum[row, f] = complex(draws[0, row, f] * amplitude, draws[1, row, f] * amplitude)
            x = w * tau
            amplitude = np.sqrt(1.0 / (1.0 + x * x))
            granulation[f] = complex(draws[2, row, f] * amplitude, draws[3, row, f] * amplitude)
        # Every bin but zero counts twice (its conjugate); the Nyquist bin once, and only its real part.
        rotation_power = 0.0
        granulation_power = 0.0
        for f in range(1, n_freq):
            r, g = spectrum[row, f], granulation[f]
            rotation_power += float(r.real) * float(r.real) + float(r.imag) * float(r.imag)
            granulation_power += float(g.real) * float(g.real) + float(g.imag) * float(g.imag)
        rotation_power *= 2.0
        granulation_power *= 2.0
        if nyquist:
            r, g = spectrum[row, n_freq - 1], granulation[n_freq - 1]
            rotation_power -= float(r.real) ** 2 + 2.0 * float(r.imag) ** 2
            granulation_power -= float(g.real) ** 2 + 2.0 * float(g.imag) ** 2
        rotation_rms = np.sqrt(rotation_power * normalisation)
        granulation_rms = np.sqrt(granulation_power * normalisation)
        rotation_scale = rotation_amplitude[row] / rotation_rms if rotation_rms > 0 else rotation_amplitude[row]
        granulation_scale = granulation_amplitude[row] / granulation_rms if granulation_rms > 0 else granulation_amplitude[row]
        spectrum[row, 0] = 0.0
        for f in range(1, n_freq):
            spectrum[row, f] = rotation_scale * spectrum[row, f] + granulation_scale * granulation[f]


@_jit
def sample_stars(series, index, sigma, white, flux):
    """``flux[row, t] = 1 + series[row, index[t]] + sigma[row] white[row, t]`` (``white`` unit normals)."""
    n_rows, n_time = flux.shape
    for row in range(n_rows):
        s = sigma[row]
        for t in range(n_time):
            flux[row, t] = 1.0 + series[row, index[t]] + s * float(white[row, t])


@_jit
def lose_cadences(flagged, flag_probability, starts, chunk_length, flux, valid):
    """Data loss of :func:`~skysift.transit.lightcurves.simulate_stars`: ``valid`` (N, T) and NaN in ``flux``.

    A cadence is lost if its uniform draw ``flagged`` (N, T) float32 is below
    ``flag_probability`` (N,), or if it falls in one of the chunks
    ``[starts[row, c], starts[row, c] + chunk_length[row])``.
    """
    n_rows, n_time = flux.shape
    for row in range(n_rows):
        probability = flag_probability[row]
        for t in range(n_time):
            valid[row, t] = flagged[row, t] >= probability
        for c in range(starts.shape[1]):
            for t in range(starts[row, c], min(starts[row, c] + chunk_length[row], n_time)):
                valid[row, t] = False
        for t in range(n_time):
            if not valid[row, t]:
                flux[row, t] = np.nan
