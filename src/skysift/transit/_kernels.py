"""Compiled (numba) kernels: the AstroNet views and the Mandel & Agol transits near mid-transit.

Views (:func:`views_from_phase`, :func:`adjacent_rows`,
:func:`overlapping_rows`, :func:`fill_rows`, :func:`normalise_rows`) loop
over the light curves inside the kernel, with work arrays allocated once per
call that stay in cache. For each light curve:

* the global view's bins accumulate count, sum, minimum and maximum in one
  pass; medians of up to four points follow in closed form, the few larger
  bins are gathered and selected (:func:`_adjacent_row`);
* the local view's overlapping bins become contiguous runs of "cells" after
  a counting sort; the points are ranked by value (a radix sort) and each
  run's ranks kept in a bit set as it slides, so that every median is a
  select in the bit set (:func:`_overlap_row`);
* empty bins are interpolated and the view normalised while still in cache.

Every median is an exact order statistic, and the arithmetic (phases, bin
and cell numbers, interpolation weights, normalisation) is written operation
for operation as in the vectorised numpy implementation it replaced, so the
views are unchanged (``tests/transit/test_compiled_views.py`` checks this).

Transits (:func:`multiply_transits`) evaluate the Mandel & Agol (2002)
general cases per cadence near each mid-transit, with K, E and Pi from one
Bulirsch iteration; the rare contact geometries are left to
:func:`skysift.transit.transit_model.occult_quadratic`.

Everything compiles lazily on first call and is cached on disk
(``cache=True``): importing this module compiles nothing.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

__all__: list[str] = []

# numpy's error model: float division by zero gives inf/NaN (empty bins) rather than raising.
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

#: Most bits sorted per radix pass in :func:`_rank_values` (32 bits: three passes at most).
_RADIX_BITS = 11
#: Ranges shorter than this are sorted by :func:`_small_sort` rather than partitioned.
_SMALL = 16


@_jit
def _small_sort(buf, left, right):
    """Sort the short range ``buf[left : right + 1]`` in place.

    Odd-even transposition: compare-exchanges by ``min``/``max``, with no
    data-dependent branch (bins of a few points are sorted by the thousand,
    and an insertion sort's mispredicted branches would dominate).
    """
    for step in range(right - left + 1):
        for i in range(left + (step & 1), right, 2):
            a, b = buf[i], buf[i + 1]
            buf[i] = min(a, b)
            buf[i + 1] = max(a, b)


@_jit
def _partition(buf, left, right, pivot, or_equal):
    """Move ``buf[left : right + 1]`` below ``pivot`` (or equal, with ``or_equal``) to the front.

    Branch-free Lomuto partition (no mispredicted branch per element);
    returns the index of the first element not moved.
    """
    store = left
    for i in range(left, right + 1):
        x = buf[i]
        buf[i] = buf[store]
        buf[store] = x
        store += (x <= pivot) if or_equal else (x < pivot)
    return store


@_jit
def _median_of(buf, n):
    """Median of ``buf[:n]`` (n >= 1, no NaN) as float64; reorders ``buf``.

    The mean of the two middle values for even ``n``, formed in float64 so
    that rounding it to float32 gives the correctly rounded float32 median.
    Quickselect with median-of-three pivots; short ranges are sorted by :func:`_small_sort`.
    """
    if n == 1:
        return float(buf[0])
    if n == 2:
        return 0.5 * (float(buf[0]) + float(buf[1]))
    k = (n - 1) // 2
    left, right = 0, n - 1
    low = buf[0]
    while True:
        if right - left < _SMALL:
            _small_sort(buf, left, right)
            low = buf[k]
            break
        mid = (left + right) >> 1
        a, b, c = buf[left], buf[mid], buf[right]
        pivot = max(min(a, b), min(max(a, b), c))
        store = _partition(buf, left, right, pivot, False)
        if store == left:
            # The pivot is the range's minimum: split off the values equal to it instead.
            store = _partition(buf, left, right, pivot, True)
            if k < store:
                low = pivot
                break
            left = store
        elif k < store:
            right = store - 1
        else:
            left = store
    if n % 2:
        return float(low)
    # Every value after index k is >= the k-th: the upper middle value is their minimum.
    high = buf[k + 1]
    for i in range(k + 2, n):
        high = min(high, buf[i])
    return 0.5 * (float(low) + float(high))


@_jit
def _adjacent_row(bins, values, n_points, n_bins, median, work, out):
    """Statistic of ``values[:n_points]`` in bins ``bins[:n_points]`` (in [0, n_bins)) into ``out``.

    One pass accumulates each bin's count, float64 sum (in the points'
    order, as ``numpy.bincount`` would), minimum and maximum. The median of
    up to four values follows without sorting: with ``s`` the sum it is
    ``s``, ``s / 2``, ``s - min - max`` and ``(s - min - max) / 2`` for 1-4
    values, exact because float64 holds the sum of four float32 exactly
    unless their magnitudes differ by more than about 2^27 (never for
    fluxes). The few bins of more points (2 % of a global view's) are
    gathered in bin order and selected. ``work`` is an :func:`_adjacent_workspace`.
    """
    # Per bin: count, sum, minimum, maximum side by side (one cache line per point).
    accumulator, ends, ordered, scratch = work
    for b in range(n_bins):
        accumulator[b, 0] = 0.0
        accumulator[b, 1] = 0.0
        accumulator[b, 2] = np.inf
        accumulator[b, 3] = -np.inf
    # The current bin's sums stay in registers while successive points share it (long periods):
    # no chain of dependent loads and stores through memory. Same additions, same order.
    current = -1
    count, total, lowest, highest = 0.0, 0.0, 0.0, 0.0
    for i in range(n_points):
        b = bins[i]
        if b != current:
            if current >= 0:
                accumulator[current, 0] = count
                accumulator[current, 1] = total
                accumulator[current, 2] = lowest
                accumulator[current, 3] = highest
            current = b
            count, total = accumulator[b, 0], accumulator[b, 1]
            lowest, highest = accumulator[b, 2], accumulator[b, 3]
        v = float(values[i])
        count += 1.0
        total += v
        lowest = min(lowest, v)
        highest = max(highest, v)
    if current >= 0:
        accumulator[current, 0] = count
        accumulator[current, 1] = total
        accumulator[current, 2] = lowest
        accumulator[current, 3] = highest
    n_crowded = 0
    for b in range(n_bins):
        n = accumulator[b, 0]
        total = accumulator[b, 1]
        if median and n >= 3.0:
            total = total - accumulator[b, 2] - accumulator[b, 3]
            n -= 2.0
        # 0 / 0 is NaN (numpy error model): empty bins.
        out[b] = np.float32(total / n)
        n_crowded += accumulator[b, 0] > 4.0
    if not median or n_crowded == 0:
        return
    # Crowded bins: their points in bin order, then an exact selection each.
    position = 0
    for b in range(n_bins):
        ends[b] = position
        if accumulator[b, 0] > 4.0:
            position += int(accumulator[b, 0])
    for i in range(n_points):
        b = bins[i]
        if accumulator[b, 0] > 4.0:
            ordered[ends[b]] = values[i]
            ends[b] += 1
    for b in range(n_bins):
        n = int(accumulator[b, 0])
        if n > 4:
            start = ends[b] - n
            for i in range(n):
                scratch[i] = ordered[start + i]
            out[b] = np.float32(_median_of(scratch, n))


@_jit
def _adjacent_workspace(n_time, n_bins):
    """Work arrays of :func:`_adjacent_row`."""
    return (
        np.empty((n_bins, 4), dtype=np.float64),
        np.empty(n_bins, dtype=np.int64),
        np.empty(n_time, dtype=np.float32),
        np.empty(n_time, dtype=np.float32),
    )


@_jit
def _overlap_workspace(n_time, max_cells):
    """Work arrays of :func:`_overlap_row` for rows of up to ``n_time`` points and ``max_cells`` cells."""
    n_words = (n_time + 63) // 64
    return (
        np.empty(n_time, dtype=np.int64),  # cell of each point
        np.empty(max_cells, dtype=np.int64),  # cell ends
        np.empty(n_time, dtype=np.float32),  # values in cell order
        np.empty(n_time, dtype=np.uint32),  # radix keys
        np.empty(n_time, dtype=np.uint32),
        np.empty(n_time, dtype=np.int64),  # radix indices
        np.empty(n_time, dtype=np.int64),
        np.empty(n_time, dtype=np.int64),  # rank of each point (cell order)
        np.empty(n_time, dtype=np.float32),  # values in rank order
        np.empty(n_words, dtype=np.uint64),  # window: bit set of ranks
        np.empty(n_words, dtype=np.int64),  # window: ranks per word
        np.empty(3 << _RADIX_BITS, dtype=np.int64),  # radix histograms
    )


@_jit
def _rank_values(values, n, work):
    """Rank (0 ... n - 1, ties by position) of each of ``values[:n]`` and the values in rank order.

    LSD radix sort of the float32 bits mapped to unsigned order, less the
    smallest: only the bits that vary are sorted, in as few passes of at
    most :data:`_RADIX_BITS` bits as they need (two for a light curve's
    local view, whose values span a few per cent).
    """
    _, _, _, keys, keys_next, index, index_next, rank, by_rank, _, _, histogram = work
    if n == 0:
        return
    bits = values[:n].view(np.uint32)
    lowest = np.uint32(0xFFFFFFFF)
    highest = np.uint32(0)
    for i in range(n):
        key = bits[i]
        # Negative floats: flip every bit; others: set the sign bit.
        key ^= np.uint32(0xFFFFFFFF) if key >> np.uint32(31) else np.uint32(0x80000000)
        keys[i] = key
        index[i] = i
        lowest = min(lowest, key)
        highest = max(highest, key)
    spread = highest - lowest
    n_bits = 0
    while n_bits < 32 and (spread >> np.uint32(n_bits)) != 0:
        n_bits += 1
    n_passes = (n_bits + _RADIX_BITS - 1) // _RADIX_BITS
    width = (n_bits + n_passes - 1) // n_passes if n_passes else 0
    n_digits = 1 << width
    mask = np.uint32(n_digits - 1)
    for i in range(n_passes * n_digits):
        histogram[i] = 0
    for i in range(n):
        keys[i] -= lowest
        key = keys[i]
        for step in range(n_passes):
            histogram[step * n_digits + ((key >> np.uint32(step * width)) & mask)] += 1
    for step in range(n_passes):
        base = step * n_digits
        shift = np.uint32(step * width)
        total = 0
        for d in range(n_digits):
            count = histogram[base + d]
            histogram[base + d] = total
            total += count
        for i in range(n):
            key = keys[i]
            d = base + ((key >> shift) & mask)
            slot = histogram[d]
            histogram[d] = slot + 1
            keys_next[slot] = key
            index_next[slot] = index[i]
        keys, keys_next = keys_next, keys
        index, index_next = index_next, index
    for r in range(n):
        rank[index[r]] = r
        by_rank[r] = values[index[r]]


@_jit
def _seek(word_count, cursor, below, k):
    """Move ``cursor`` to the word holding the ``k``-th (0-based) set bit; ``below`` counts the bits before it."""
    while below > k:
        cursor -= 1
        below -= word_count[cursor]
    while below + word_count[cursor] <= k:
        below += word_count[cursor]
        cursor += 1
    return cursor, below


@_jit
def _nth_bit(word, n):
    """Index of the ``n``-th (0-based) lowest set bit of ``word``."""
    for _ in range(n):
        word &= word - np.uint64(1)  # drop the lowest set bit
    return trailing_zeros(word)


@_jit
def _overlap_row(position, values, n_points, shift, half_width, n_bins, median, work, out):
    """Statistic over the overlapping bins ``|x - (j + 1/2)| <= half_width`` into ``out``.

    ``x = position + shift`` in units of the bin spacing. Every point lies
    in ``L = floor(2 half_width)`` or ``L + 1`` consecutive bins starting at
    ``ceil(x - 1/2 - half_width)``. Numbering its "cell"
    ``2 (first bin + L + 1) + (1 if it reaches L + 1 bins)`` makes every bin
    ``j`` exactly the cells ``2j + 3 ... 2j + 2L + 3``: a contiguous run once
    the points are counting-sorted by cell, and the runs of successive bins
    move monotonically. Medians: the points are ranked by value
    (:func:`_rank_values`) and the run's ranks kept in a bit set as it
    slides, so each median is a select in the bit set. Means: direct sums.
    ``work`` is an :func:`_overlap_workspace`.
    """
    cells, ends, ordered = work[0], work[1], work[2]
    rank, by_rank, words, word_count = work[7], work[8], work[9], work[10]
    if not (np.isfinite(shift) and half_width >= 0.0 and np.isfinite(half_width)):
        out[:] = np.nan  # degenerate geometry (e.g. zero duration): no bin is defined
        return
    short = np.floor(2.0 * half_width)
    n_short = int(short)
    n_cells = 2 * (n_bins + n_short + 2)
    low_base = shift - 0.5 - half_width
    high_base = shift - 0.5 + half_width - short
    for c in range(n_cells):
        ends[c] = 0
    for i in range(n_points):
        first = np.ceil(low_base + position[i])
        cell = 2 * int(first) + 2 * n_short + 2
        if first <= high_base + position[i]:
            cell += 1
        # Cells outside [0, n_cells) belong to no bin.
        if cell < 0 or cell >= n_cells:
            cell = -1
        else:
            ends[cell] += 1
        cells[i] = cell
    total = 0
    for c in range(n_cells):
        total += ends[c]
        ends[c] = total - ends[c]
    for i in range(n_points):
        c = cells[i]
        if c >= 0:
            ordered[ends[c]] = values[i]
            ends[c] += 1
    # Now ends[c] is the end of cell c and ends[c - 1] its start.
    if not median:
        for j in range(n_bins):
            start, stop = ends[2 * j + 2], ends[2 * j + 2 * n_short + 3]
            total_value = 0.0
            for i in range(start, stop):
                total_value += float(ordered[i])
            out[j] = np.float32(total_value / (stop - start))
        return
    n_kept = total
    _rank_values(ordered, n_kept, work)
    for w in range((n_kept + 63) // 64):
        words[w] = 0
        word_count[w] = 0
    low, high = 0, 0  # the window: ordered[low:high]
    # The medians move little from bin to bin: the select starts from the previous one's word.
    cursor, below = 0, 0  # below: the window's ranks in the words before the cursor's
    for j in range(n_bins):
        start, stop = ends[2 * j + 2], ends[2 * j + 2 * n_short + 3]
        for i in range(low, min(start, high)):
            r = rank[i]
            w = r >> 6
            words[w] &= ~(np.uint64(1) << np.uint64(r & 63))
            word_count[w] -= 1
            below -= int(w < cursor)
        for i in range(max(high, start), stop):
            r = rank[i]
            w = r >> 6
            words[w] |= np.uint64(1) << np.uint64(r & 63)
            word_count[w] += 1
            below += int(w < cursor)
        low, high = start, stop
        n = stop - start
        if n == 0:
            out[j] = np.nan
            continue
        k = (n - 1) // 2
        cursor, below = _seek(word_count, cursor, below, k)
        lower = by_rank[cursor * 64 + _nth_bit(words[cursor], k - below)]
        if n % 2:
            out[j] = lower
        else:
            cursor, below = _seek(word_count, cursor, below, k + 1)
            upper = by_rank[cursor * 64 + _nth_bit(words[cursor], k + 1 - below)]
            out[j] = np.float32(0.5 * (float(lower) + float(upper)))


@_jit
def _fill_row(view):
    """Fill NaN runs of ``view`` in place by linear interpolation between their neighbours.

    Runs at an end take the nearest value; an all-NaN row becomes zeros.
    """
    n = view.size
    i = 0
    while i < n:
        if not np.isnan(view[i]):
            i += 1
            continue
        j = i
        while j < n and np.isnan(view[j]):
            j += 1
        before = i - 1
        if before >= 0 and j < n:
            v_prev = view[before]
            step = np.float32(view[j] - v_prev)
            for k in range(i, j):
                weight = (k - before) / (j - before)
                view[k] = np.float32(float(v_prev) + weight * float(step))
        else:
            value = view[before] if before >= 0 else (view[j] if j < n else np.float32(0.0))
            for k in range(i, j):
                view[k] = value
        i = j


@_jit
def _normalise_row(view, scratch):
    """Shift ``view`` in place to median 0 and scale it to minimum -1 (all NaN if any NaN)."""
    n = view.size
    for i in range(n):
        if np.isnan(view[i]):
            view[:] = np.nan
            return
        scratch[i] = view[i]
    middle = np.float32(_median_of(scratch, n))
    lowest = np.float32(np.inf)
    for i in range(n):
        view[i] = np.float32(view[i] - middle)
        if view[i] < lowest:
            lowest = view[i]
    floor = np.float32(-lowest)
    scale = floor if floor > 0 else np.float32(1.0)
    for i in range(n):
        view[i] = np.float32(view[i] / scale)


@_jit
def fill_rows(view):
    """:func:`_fill_row` on every row of a (N, B) float32 array, in place."""
    for r in range(view.shape[0]):
        _fill_row(view[r])


@_jit
def normalise_rows(view):
    """:func:`_normalise_row` on every row of a (N, B) float32 array, in place."""
    scratch = np.empty(view.shape[1], dtype=np.float32)
    for r in range(view.shape[0]):
        _normalise_row(view[r], scratch)


@_jit
def adjacent_rows(position, values, good, n_bins, median, out):
    """Statistic per row in bins ``floor(position)`` (an exact ``n_bins`` counts in the last bin).

    ``position``, ``values`` (float32) and ``good`` are (N, T); only ``good``
    points are used. Writes (N, n_bins) float32 ``out``, NaN where empty.
    """
    n_rows, n_time = values.shape
    bins = np.empty(n_time, dtype=np.int64)
    kept = np.empty(n_time, dtype=np.float32)
    work = _adjacent_workspace(n_time, n_bins)
    for r in range(n_rows):
        k = 0
        for i in range(n_time):
            if good[r, i]:
                bins[k] = min(int(position[r, i]), n_bins - 1)
                kept[k] = values[r, i]
                k += 1
        _adjacent_row(bins, kept, k, n_bins, median, work, out[r])


@_jit
def overlapping_rows(position, values, good, shift, half_width, n_bins, median, out):
    """Statistic per row over overlapping bins (see :func:`_overlap_row`).

    ``position`` (bin spacings), ``values`` (float32) and ``good`` are (N, T);
    ``shift`` and ``half_width`` (N,) in bin spacings. Writes (N, n_bins) ``out``.
    """
    n_rows, n_time = values.shape
    kept_position = np.empty(n_time, dtype=np.float64)
    kept = np.empty(n_time, dtype=np.float32)
    max_short = 0
    for r in range(n_rows):
        max_short = max(max_short, int(np.floor(2.0 * half_width[r])))
    work = _overlap_workspace(n_time, 2 * (n_bins + max_short + 2))
    for r in range(n_rows):
        k = 0
        for i in range(n_time):
            if good[r, i]:
                kept_position[k] = position[r, i]
                kept[k] = values[r, i]
                k += 1
        _overlap_row(kept_position, kept, k, shift[r], half_width[r], n_bins, median, work, out[r])


@_jit
def views_from_phase(
    time,
    shared_grid,
    phase_in,
    flux,
    valid,
    period,
    t0,
    duration,
    phase_offset,
    global_bins,
    local_bins,
    num_durations,
    bin_width_factor,
    median,
    finish,
    out_global,
    out_local,
):
    """Global and local views of every light curve, in one pass over its cadences.

    Parameters
    ----------
    time : (1, T) or (N, T) float64
        Times (a shared grid or one per row); unused when ``phase_in`` has rows.
    shared_grid : bool
        ``time`` is one grid (T,) shared by all rows (its first row is used).
    phase_in : (N, T) or (0, T) float64
        Orbital phase (0.5 at mid-transit) if given, else computed from ``time``
        as ``frac((t - t0) / P + 1/2)`` (a shared grid first shifted to start at zero).
    flux : (N, T) float32
        Fluxes; points whose flux or phase is not finite are skipped.
    valid : (N, T) or (0, T) bool
        Points to use, or no rows for all of them.
    period, t0, duration : (N,) float64
        Ephemeris and transit duration (days).
    phase_offset : float
        Added to the phase, modulo 1 (0.5: the secondary-eclipse fold).
    global_bins, local_bins : int
        Bins of each view; 0 skips that view.
    num_durations, bin_width_factor : float
        Local view half-span and bin width, in transit durations.
    median : bool
        Median bins (else mean).
    finish : bool
        Fill empty bins and normalise (else leave raw views, NaN where empty).
    out_global, out_local : (N, global_bins), (N, local_bins) float32
        Outputs.
    """
    n_rows, n_time = flux.shape
    given_phase = phase_in.shape[0] > 0
    use_valid = valid.shape[0] > 0
    phase = np.empty(n_time, dtype=np.float64)
    global_index = np.empty(n_time, dtype=np.int64)
    global_values = np.empty(n_time, dtype=np.float32)
    local_position = np.empty(n_time, dtype=np.float64)
    local_values = np.empty(n_time, dtype=np.float32)
    scratch = np.empty(max(global_bins, local_bins), dtype=np.float32)
    global_work = _adjacent_workspace(n_time, global_bins)
    max_short = 0
    for r in range(n_rows):
        half_span = min(num_durations * duration[r], 0.5 * period[r])
        spacing = 2.0 * half_span / local_bins if local_bins else 1.0
        max_short = max(max_short, int(np.floor(2.0 * (0.5 * bin_width_factor * duration[r] / spacing))))
    local_work = _overlap_workspace(n_time, 2 * (local_bins + max_short + 2))
    for r in range(n_rows):
        p, d = period[r], duration[r]
        # The phase first, in a loop of its own (vectorised).
        if given_phase:
            for i in range(n_time):
                phase[i] = phase_in[r, i]
        else:
            # A shared grid is shifted to start at zero, keeping the product precise for BJD-sized times.
            row_time = time[0] if time.shape[0] == 1 else time[r]
            start = (row_time[0] if n_time else 0.0) if shared_grid else t0[r]
            rate = 1.0 / p
            constant = (start - t0[r]) / p + 0.5
            for i in range(n_time):
                x = (row_time[i] - start) * rate
                x += constant
                phase[i] = x - np.floor(x)
        if phase_offset != 0.0:
            for i in range(n_time):
                x = phase[i] + phase_offset
                phase[i] = x - np.floor(x)
        # Local view geometry: days, then bin spacings.
        half_span = min(num_durations * d, 0.5 * p)
        spacing = 2.0 * half_span / local_bins if local_bins else 1.0
        half_width = 0.5 * bin_width_factor * d
        reach = (half_span + half_width) / p
        near_low, near_high = 0.5 - reach, 0.5 + reach
        scale = p / spacing
        n_global = 0
        n_local = 0
        for i in range(n_time):
            value = flux[r, i]
            x = phase[i]
            if use_valid and not valid[r, i]:
                continue
            if not (np.isfinite(value) and np.isfinite(x)):
                continue
            if global_bins:
                global_index[n_global] = max(min(int(x * global_bins), global_bins - 1), 0)
                global_values[n_global] = value
                n_global += 1
            if local_bins and x >= near_low and x <= near_high:
                local_position[n_local] = x * scale
                local_values[n_local] = value
                n_local += 1
        if global_bins:
            row = out_global[r]
            _adjacent_row(global_index, global_values, n_global, global_bins, median, global_work, row)
            if finish:
                _fill_row(row)
                _normalise_row(row, scratch)
        if local_bins:
            row = out_local[r]
            shift = (half_span - 0.5 * p) / spacing
            width = half_width / spacing
            _overlap_row(local_position, local_values, n_local, shift, width, local_bins, median, local_work, row)
            if finish:
                _fill_row(row)
                _normalise_row(row, scratch)


# ---------------------------------------------------------------------------
# Mandel & Agol transits near mid-transit
# ---------------------------------------------------------------------------
@_jit
def _complete_elliptic(kc, n):
    """``K(m)``, ``E(m)`` and ``Pi(n, m)`` (``1 + n sin^2`` convention) for ``kc = sqrt(1 - m)``.

    Bulirsch's ``cel`` (see :func:`skysift.transit.transit_model._cel`) for
    ``cel(kc, 1, 1, 1)``, ``cel(kc, 1, 1, kc^2)`` and ``cel(kc, 1 + n, 1, 1)``
    in one loop: the three share the ``kc``, ``e`` and ``m`` sequences, and K
    and E also ``p``. Same stopping rule (relative 1e-8 of the AGM step,
    errors of order 1e-16).
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
def _occult_general(z, p, u1, u2):
    """Mandel & Agol flux for the two general cases; NaN for any other (rare) geometry.

    The formulas of :func:`skysift.transit.transit_model.occult_quadratic`
    for the planet inside the disk (cases 3, 9) and on the limb (2, 8).
    Points within 1e-14 of a special value (``z = p``, ``z = |1 - p|``,
    ``z = 0``), full coverage and the like give NaN: the caller sends them
    through the complete case table. 1 where the disks do not overlap.
    """
    z = abs(z)
    edge = abs(1.0 - p)
    tol = 1e-14
    if abs(p - z) < tol or abs(edge - z) < tol or z < tol:
        return np.nan
    if not z < 1.0 + p:
        return 1.0
    z2, p2 = z * z, p * p
    a1 = (p - z) ** 2
    a2 = (p + z) ** 2
    a3 = p2 - z2
    if z < edge and p < 1.0:
        m = (4.0 * p * z) / (1.0 - a1)
        ellk, elle, ellpi = _complete_elliptic(math.sqrt(1.0 - m), a2 / a1 - 1.0)
        pi_term = 3.0 * a3 / a1 * ellpi
        one_a1 = 1.0 - a1
        lambda_d = (
            2.0
            / (9.0 * math.pi * math.sqrt(one_a1))
            * ((1.0 - 5.0 * z2 + p2 + a3**2) * ellk + one_a1 * (z2 + 7.0 * p2 - 4.0) * elle - pi_term)
        )
        lambda_e = p2
        eta_d = 0.5 * p2 * (p2 + 2.0 * z2)
    elif z > edge:
        m = (1.0 - a1) / (4.0 * p * z)
        ellk, elle, ellpi = _complete_elliptic(math.sqrt(1.0 - m), 1.0 / a1 - 1.0)
        pi_term = 3.0 * a3 / a1 * ellpi
        kap1 = math.acos(min(max((1.0 - p2 + z2) / (2.0 * z), -1.0), 1.0))
        kap0 = math.acos(min(max((p2 + z2 - 1.0) / (2.0 * p * z), -1.0), 1.0))
        root = math.sqrt(max(4.0 * z2 - (1.0 + z2 - p2) ** 2, 0.0))
        lambda_e = (p2 * kap0 + kap1 - 0.5 * root) / math.pi
        eta_d = (
            kap1
            + p2 * (p2 + 2.0 * z2) * kap0
            - (1.0 + 5.0 * p2 + z2) / 4.0 * math.sqrt(max((1.0 - a1) * (a2 - 1.0), 0.0))
        ) / (2.0 * math.pi)
        lambda_d = (
            2.0
            / (9.0 * math.pi * math.sqrt(a2 - a1))
            * (
                ((1.0 - a2) * (2.0 * a2 + a1 - 3.0) - 3.0 * a3 * (a2 - 2.0)) * ellk
                + (a2 - a1) * (z2 + 7.0 * p2 - 4.0) * elle
                - pi_term
            )
        )
    else:
        return np.nan
    omega4 = 1.0 - u1 / 3.0 - u2 / 6.0
    c2 = u1 + 2.0 * u2
    covers_centre = 1.0 if p > z else 0.0
    return 1.0 - ((1.0 - c2) * lambda_e + c2 * (lambda_d + 2.0 / 3.0 * covers_centre) + u2 * eta_d) / omega4


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
def multiply_transits(out, time, period, t0, rp, a, b, u1, u2, half_window):
    """Multiply ``out`` (N, T) in place by circular-orbit transits near each mid-transit.

    ``time`` (T,) must be sorted and finite. Each epoch's window (half-width
    ``half_window``, capped at half a period and then half-open) is found by
    binary search, as in :func:`skysift.transit.transit_model.transit_windows`;
    the sky separation and the product follow
    :func:`skysift.transit.transit_model._transit_points` and
    :func:`_occult_general`, formed in float64 and rounded once to
    ``out``'s type. Returns the rows, columns and separations of the rare
    geometries :func:`_occult_general` leaves out (not multiplied).
    """
    n_rows, n_time = out.shape
    rare_rows = [0 for _ in range(0)]
    rare_cols = [0 for _ in range(0)]
    rare_z = [0.0 for _ in range(0)]
    if n_time == 0:
        return np.array(rare_rows, dtype=np.int64), np.array(rare_cols, dtype=np.int64), np.array(rare_z)
    for r in range(n_rows):
        per = period[r]
        half = half_window[r]
        capped = half >= 0.5 * per
        if capped:
            half = 0.5 * per
        first = np.ceil((time[0] - t0[r] - half) / per)
        last = np.floor((time[-1] - t0[r] + half) / per)
        n_epochs = last - first + 1.0
        if not n_epochs > 0.0:
            continue
        aa, bb = a[r], b[r]
        for k in range(int(n_epochs)):
            centre = t0[r] + (first + k) * per
            lo = _search_sorted(time, centre - half, False)
            # A capped window is [c - P/2, c + P/2): the next epoch owns its upper edge.
            hi = _search_sorted(time, centre + half, not capped)
            for c in range(lo, hi):
                dt = time[c] - centre
                if not abs(dt) < 0.25 * per:
                    continue  # the far side of the orbit: no transit
                sin_phi = math.sin((2.0 * math.pi) * dt / per)
                z = math.sqrt(bb * bb + (aa * aa - bb * bb) * (sin_phi * sin_phi))
                flux = _occult_general(z, rp[r], u1[r], u2[r])
                if np.isnan(flux):
                    rare_rows.append(r)
                    rare_cols.append(c)
                    rare_z.append(z)
                else:
                    out[r, c] = out[r, c] * flux
    return np.array(rare_rows, dtype=np.int64), np.array(rare_cols, dtype=np.int64), np.array(rare_z)
