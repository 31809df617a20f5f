"""Compiled (numba) kernels: the AstroNet views (and the tabulated noise lookup).

Views (:func:`views_from_phase`, :func:`adjacent_rows`,
:func:`overlapping_rows`, :func:`fill_rows`, :func:`normalise_rows`) loop
over the light curves inside the kernel, with work arrays allocated once per
call that stay in cache. For each light curve:

* the global view's bins keep a count and their first eight values in one
  pass (two stores a point); medians of up to four points follow from a few
  ``min``/``max``, of five to eight from a sorting network in registers, and
  the rare larger bins are gathered and selected (:func:`_adjacent_row`);
* the local view's overlapping bins become contiguous runs of "cells" after
  a counting sort; the points are ranked by value (a radix sort) and each
  run's ranks kept in a bit set as it slides, so that every median is a
  select in the bit set (:func:`_overlap_row`);
* empty bins are interpolated and the view normalised while still in cache,
  its median found by radix selection on the float bits (:func:`_median_radix`).

Rows whose every point is usable (no NaN, no ``valid`` mask: the usual
simulated light curve) take branch-free loops that the compiler vectorises.
Data-dependent indices (bins, cells, radix digits, ranks) are unsigned, so
that numba adds no negative-index wraparound to those loads and stores (a
third of the time of the scatter loops).

Every median is an exact order statistic, and the arithmetic (phases, bin
and cell numbers, interpolation weights, normalisation) is written operation
for operation as in the vectorised numpy implementation it replaced, so the
views are unchanged (``tests/transit/test_compiled_views.py`` checks this).

The tabulated white noise (:func:`tabulated_noise`: xoshiro256++ streams
and the table lookup in one pass) is here too; the transits are in
:mod:`skysift.transit._transit_kernels`.

Everything compiles lazily on first call and is cached on disk
(``cache=True``): importing this module compiles nothing.
"""

from __future__ import annotations

import platform

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros
from numba.extending import intrinsic

__all__: list[str] = []

# numpy's error model: float division by zero gives inf/NaN (empty bins) rather than raising.
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

#: Most bits sorted per radix pass in :func:`_rank_values` (32 bits: three passes at most).
_RADIX_BITS = 11
#: Ranges shorter than this are sorted by :func:`_small_sort` rather than partitioned.
_SMALL = 16
#: Values kept per global-view bin by :func:`_adjacent_row`: medians of up to this many need no gather.
_SLOTS = 8
#: Bits per radix-selection pass of :func:`_median_radix`.
_SELECT_BITS = 11
#: Rows (or radix buckets) of at most this many values are selected by :func:`_select` directly
#: (quickselect beats a radix pass below a few hundred values: 0.70 vs 1.01 us for a local view).
_SELECT_DIRECT = 256


@intrinsic
def _popcount(typingctx, word):
    """Number of set bits of an integer (one ``popcnt`` instruction; numba has no such function)."""
    if not isinstance(word, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return word(word), codegen


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
def _select(buf, n, k):
    """The ``k``-th smallest (0-based) of ``buf[:n]`` (n >= 1, no NaN); reorders ``buf``.

    Afterwards every value after index ``k`` is >= it. Quickselect with
    median-of-three pivots; short ranges are sorted by :func:`_small_sort`.
    """
    left, right = 0, n - 1
    while True:
        if right - left < _SMALL:
            _small_sort(buf, left, right)
            return buf[k]
        mid = (left + right) >> 1
        a, b, c = buf[left], buf[mid], buf[right]
        pivot = max(min(a, b), min(max(a, b), c))
        store = _partition(buf, left, right, pivot, False)
        if store == left:
            # The pivot is the range's minimum: split off the values equal to it instead.
            store = _partition(buf, left, right, pivot, True)
            if k < store:
                return pivot
            left = store
        elif k < store:
            right = store - 1
        else:
            left = store


@_jit
def _median_of(buf, n):
    """Median of ``buf[:n]`` (n >= 1, no NaN) as float64; reorders ``buf``.

    The mean of the two middle values for even ``n``, formed in float64 so
    that rounding it to float32 gives the correctly rounded float32 median.
    """
    if n == 1:
        return float(buf[0])
    if n == 2:
        return 0.5 * (float(buf[0]) + float(buf[1]))
    k = (n - 1) // 2
    low = _select(buf, n, k)
    if n % 2:
        return float(low)
    return _mean_with_next(buf, n, k, low)


@_jit
def _mean_with_next(buf, n, k, low):
    """Mean of the k-th smallest value ``low`` and the next, once :func:`_select` has put ``low`` at index k."""
    # Every value after index k is >= the k-th: the upper middle value is their minimum.
    high = buf[k + 1]
    for i in range(k + 2, n):
        high = min(high, buf[i])
    return 0.5 * (float(low) + float(high))


@_jit
def _sortable_keys(values, n, keys):
    """``keys[:n]``: float32 ``values[:n]`` as uint32 whose unsigned order is the float order (no NaN).

    Returns the smallest and largest key.
    """
    bits = values[:n].view(np.uint32)
    lowest = np.uint32(0xFFFFFFFF)
    highest = np.uint32(0)
    for i in range(n):
        key = bits[i]
        # Negative floats: flip every bit; others: set the sign bit.
        key ^= np.uint32(0xFFFFFFFF) if key >> np.uint32(31) else np.uint32(0x80000000)
        keys[i] = key
        lowest = min(lowest, key)
        highest = max(highest, key)
    return lowest, highest


@_jit
def _median_work(n):
    """Work arrays of :func:`_median_radix` for up to ``n`` values."""
    return (
        np.empty(n, dtype=np.float32),
        np.empty(n, dtype=np.uint32),
        np.empty(1 << _SELECT_BITS, dtype=np.int64),
    )


@_jit
def _median_radix(values, n, work):
    """:func:`_median_of` of float32 ``values[:n]`` (no NaN) without reordering them.

    For long rows (a global view's 2001 bins): radix selection on the
    sortable bits, :data:`_SELECT_BITS` at a time, keeps only the bucket
    holding the lower middle value and repeats until few are left, which
    :func:`_select` finishes. Three passes over a row instead of
    quickselect's data-dependent partitions. The same order statistics,
    hence the same value.
    """
    if n <= _SELECT_DIRECT:
        scratch = work[0]
        for i in range(n):
            scratch[i] = values[i]
        return _median_of(scratch, n)
    scratch, keys, histogram = work
    k = (n - 1) // 2
    lowest, highest = _sortable_keys(values, n, keys)
    m, rank = n, k
    while m > _SELECT_DIRECT and lowest != highest:
        spread = np.uint64(highest - lowest)
        n_bits = 64 - int(leading_zeros(spread))
        shift = np.uint32(max(n_bits - _SELECT_BITS, 0))
        n_buckets = (spread >> shift) + 1
        for b in range(n_buckets):
            histogram[b] = 0
        for i in range(m):
            histogram[(keys[i] - lowest) >> shift] += 1
        # The bucket holding the rank-th key, scanning from both ends at once (a global view's
        # median sits near the top: its range reaches down to the transit's floor).
        bucket, top = 0, int(n_buckets) - 1
        rank_from_top = m - 1 - rank
        while True:
            if histogram[bucket] > rank:
                break
            rank -= histogram[bucket]
            bucket += 1
            if histogram[top] > rank_from_top:
                bucket, rank = top, histogram[top] - 1 - rank_from_top
                break
            rank_from_top -= histogram[top]
            top -= 1
        # Keep the bucket's keys (in place, in order) and their range.
        kept = 0
        low_key = np.uint32(0xFFFFFFFF)
        high_key = np.uint32(0)
        for i in range(m):
            key = keys[i]
            if (key - lowest) >> shift == bucket:
                keys[kept] = key
                kept += 1
                low_key = min(low_key, key)
                high_key = max(high_key, key)
        m, lowest, highest = kept, low_key, high_key
    # Back from keys to float32 bits, in place.
    for i in range(m):
        keys[i] = _key_bits(keys[i])
    floats = keys[:m].view(np.float32)
    if lowest == highest:
        return _finish_median(values, n, floats[0])
    for i in range(m):
        scratch[i] = floats[i]
    return _finish_median(values, n, _select(scratch, m, rank))


@_jit
def _key_bits(key):
    """The float32 bits whose :func:`_sortable_keys` key is ``key``."""
    return key ^ (np.uint32(0x80000000) if key >> np.uint32(31) else np.uint32(0xFFFFFFFF))


@_jit
def _finish_median(values, n, low):
    """The median of ``values[:n]`` given its lower middle value ``low`` (the upper one found for even ``n``)."""
    if n % 2:
        return float(low)
    # The upper middle value: ``low`` again if more than k + 1 values are <= it, else the least above it.
    k = (n - 1) // 2
    at_most = 0
    above = np.float32(np.inf)
    for i in range(n):
        v = values[i]
        at_most += v <= low
        if v > low:
            above = min(above, v)
    high = low if at_most >= k + 2 else above
    return 0.5 * (float(low) + float(high))


@_jit
def _adjacent_row(bins, values, n_points, n_bins, median, work, out):
    """Statistic of ``values[:n_points]`` in bins ``bins[:n_points]`` (in [0, n_bins)) into ``out``.

    Means: one pass accumulates each bin's count and float64 sum (in the
    points' order, as ``numpy.bincount`` would). Medians: one pass counts
    each bin's points and keeps the first :data:`_SLOTS` (eight) in the
    bin's slots. The median of up to four values then follows from a few
    ``min`` and ``max``, exactly (the middle value, or the float64 mean of
    the two middle ones); of five to eight (bins where the phases of a
    near-resonant period pile up) from a sorting network
    (:func:`_median_of_slots`); the rare bins of more points are gathered in
    bin order and selected. Empty bins are NaN. ``work`` is an
    :func:`_adjacent_workspace`.
    """
    # Indices unsigned (bins, counts): numba adds no negative-index wraparound to these loads and stores.
    count, total, slots, ends, ordered, scratch = work
    for b in range(n_bins):
        count[b] = 0
    if not median:
        for b in range(n_bins):
            total[b] = 0.0
        for i in range(n_points):
            b = bins[i]
            count[b] += 1
            total[b] += float(values[i])
        for b in range(n_bins):
            # 0 / 0 is NaN (numpy error model): empty bins.
            out[b] = np.float32(total[b] / count[b])
        return
    # Two stores a point (count and slot) rather than read-modify-writes of four accumulators.
    plane = np.uint32(n_bins)
    last = np.uint32(_SLOTS - 1)
    for i in range(n_points):
        b = bins[i]
        c = count[b]
        slots[min(c, last) * plane + b] = values[i]
        count[b] = c + np.uint32(1)
    n_crowded = 0
    n_overfull = 0
    for b in range(n_bins):
        c = int(count[b])
        v0, v1, v2, v3 = slots[b], slots[n_bins + b], slots[2 * n_bins + b], slots[3 * n_bins + b]
        # Slots past the count hold stale values: every form below uses only the filled ones.
        low01, high01 = min(v0, v1), max(v0, v1)
        middle3 = max(low01, min(high01, v2))
        inner_low = max(low01, min(v2, v3))
        inner_high = min(high01, max(v2, v3))
        pair = 0.5 * (float(v0) + float(v1))
        inner = 0.5 * (float(inner_low) + float(inner_high))
        value = np.float32(pair) if c == 2 else (middle3 if c == 3 else np.float32(inner))
        value = v0 if c == 1 else value
        out[b] = value if c > 0 else np.float32(np.nan)
        n_crowded += c > 4
        n_overfull += c > _SLOTS
    if n_crowded == 0:
        return
    # Crowded bins (phases that pile up on a resonant period) of up to _SLOTS points: all in the slots.
    for b in range(n_bins):
        c = int(count[b])
        if c > 4 and c <= _SLOTS:
            out[b] = np.float32(_median_of_slots(slots, n_bins, b, c))
    if n_overfull == 0:
        return
    # Bins of more points: gathered in bin order, then an exact selection each.
    position = 0
    for b in range(n_bins):
        ends[b] = position
        if count[b] > _SLOTS:
            position += count[b]
    for i in range(n_points):
        b = bins[i]
        if count[b] > _SLOTS:
            ordered[ends[b]] = values[i]
            ends[b] += 1
    for b in range(n_bins):
        n = int(count[b])
        if n > _SLOTS:
            start = ends[b] - n
            for i in range(n):
                scratch[i] = ordered[start + i]
            out[b] = np.float32(_median_of(scratch, n))


@_jit
def _median_of_slots(slots, n_bins, b, n):
    """Median of the ``n`` (5 <= n <= 8) values of bin ``b`` in the :data:`_SLOTS` planes of ``slots``.

    Batcher's 19-comparator sorting network on registers (the unused
    inputs +inf), then the middle one or two: no branch, no memory.
    """
    inf = np.float32(np.inf)
    v0, v1, v2, v3 = slots[b], slots[n_bins + b], slots[2 * n_bins + b], slots[3 * n_bins + b]
    v4 = slots[4 * n_bins + b]
    v5 = slots[5 * n_bins + b] if n > 5 else inf
    v6 = slots[6 * n_bins + b] if n > 6 else inf
    v7 = slots[7 * n_bins + b] if n > 7 else inf
    v0, v1 = min(v0, v1), max(v0, v1)
    v2, v3 = min(v2, v3), max(v2, v3)
    v4, v5 = min(v4, v5), max(v4, v5)
    v6, v7 = min(v6, v7), max(v6, v7)
    v0, v2 = min(v0, v2), max(v0, v2)
    v1, v3 = min(v1, v3), max(v1, v3)
    v4, v6 = min(v4, v6), max(v4, v6)
    v5, v7 = min(v5, v7), max(v5, v7)
    v1, v2 = min(v1, v2), max(v1, v2)
    v5, v6 = min(v5, v6), max(v5, v6)
    v0, v4 = min(v0, v4), max(v0, v4)
    v1, v5 = min(v1, v5), max(v1, v5)
    v2, v6 = min(v2, v6), max(v2, v6)
    v3, v7 = min(v3, v7), max(v3, v7)
    v2, v4 = min(v2, v4), max(v2, v4)
    v3, v5 = min(v3, v5), max(v3, v5)
    v1, v2 = min(v1, v2), max(v1, v2)
    v3, v4 = min(v3, v4), max(v3, v4)
    v5, v6 = min(v5, v6), max(v5, v6)
    # Sorted: the lower middle is v2 (n = 5, 6) or v3 (n = 7, 8), the upper v3 or v4.
    lower = v2 if n < 7 else v3
    if n % 2:
        return float(lower)
    upper = v3 if n < 7 else v4
    return 0.5 * (float(lower) + float(upper))


@_jit
def _adjacent_workspace(n_time, n_bins):
    """Work arrays of :func:`_adjacent_row`."""
    return (
        np.empty(n_bins, dtype=np.uint32),  # count
        np.empty(n_bins, dtype=np.float64),  # sum (means)
        np.empty(_SLOTS * n_bins, dtype=np.float32),  # each bin's first _SLOTS values (medians)
        np.empty(n_bins, dtype=np.int64),
        np.empty(n_time, dtype=np.float32),
        np.empty(max(n_time, _SLOTS), dtype=np.float32),
    )


@_jit
def _overlap_workspace(n_time, max_cells):
    """Work arrays of :func:`_overlap_row` for rows of up to ``n_time`` points and ``max_cells`` cells."""
    n_words = (n_time + 63) // 64
    return (
        np.empty(n_time, dtype=np.uint32),  # cell of each point
        np.empty(max_cells + 1, dtype=np.uint32),  # cell ends (and the spare cell's)
        np.empty(n_time, dtype=np.float32),  # values in cell order
        np.empty(n_time, dtype=np.uint64),  # radix items: key << 32 | position
        np.empty(n_time, dtype=np.uint64),
        np.empty(3 << _RADIX_BITS, dtype=np.uint32),  # radix histograms
        np.empty(n_time, dtype=np.uint32),  # sortable keys
        np.empty(n_time, dtype=np.uint32),  # rank of each point (cell order)
        np.empty(n_time, dtype=np.float32),  # values in rank order
        np.empty(n_words, dtype=np.uint64),  # window: bit set of ranks
    )


@_jit
def _rank_values(values, n, work):
    """Rank (0 ... n - 1, ties by position) of each of ``values[:n]`` and the values in rank order.

    LSD radix sort of the float32 bits mapped to unsigned order, less the
    smallest: only the bits that vary are sorted, in as few passes of at
    most :data:`_RADIX_BITS` bits as they need (two for a light curve's
    local view, whose values span a few per cent). Key and position travel
    packed in one 64-bit word, so each pass moves one array.
    """
    items, items_next, histogram, keys = work[3], work[4], work[5], work[6]
    rank, by_rank = work[7], work[8]
    if n == 0:
        return
    lowest, highest = _sortable_keys(values, n, keys)
    n_bits = 64 - int(leading_zeros(np.uint64(highest - lowest)))
    n_passes = (n_bits + _RADIX_BITS - 1) // _RADIX_BITS
    width = (n_bits + n_passes - 1) // n_passes if n_passes else 0
    n_digits = 1 << width
    for i in range(n_passes * n_digits):
        histogram[i] = 0
    # Unsigned indices throughout: numba then adds no negative-index wraparound to the scatters.
    digit_mask = np.uint32(n_digits - 1)
    if n_passes == 2:
        # The usual case, unrolled: both digits counted in one pass.
        high_base = np.uint32(n_digits)
        for i in range(n):
            key = keys[i] - lowest
            histogram[key & digit_mask] += np.uint32(1)
            histogram[high_base + (key >> np.uint32(width))] += np.uint32(1)
    else:
        for step in range(n_passes):
            base = np.uint32(step * n_digits)
            for i in range(n):
                histogram[base + (((keys[i] - lowest) >> np.uint32(step * width)) & digit_mask)] += np.uint32(1)
    for i in range(n):
        items[i] = (np.uint64(keys[i] - lowest) << np.uint64(32)) | np.uint64(i)
    mask = np.uint64(n_digits - 1)
    source, target = items, items_next
    for step in range(n_passes):
        base = step * n_digits
        total = np.uint32(0)
        for d in range(n_digits):
            count = histogram[base + d]
            histogram[base + d] = total
            total += count
        shift = np.uint64(32 + step * width)
        base64 = np.uint64(base)
        for i in range(n):
            item = source[i]
            d = base64 + ((item >> shift) & mask)
            slot = histogram[d]
            histogram[d] = slot + np.uint32(1)
            target[slot] = item
        source, target = target, source
    low_half = np.uint64(0xFFFFFFFF)
    for r in range(n):
        i = source[r] & low_half
        rank[i] = r
        by_rank[r] = values[i]


@_jit
def _seek(words, cursor, below, k):
    """Move ``cursor`` to the word holding the ``k``-th (0-based) set bit; ``below`` counts the bits before it."""
    while below > k:
        cursor -= 1
        below -= _popcount(words[cursor])
    count = _popcount(words[cursor])
    while below + count <= k:
        below += count
        cursor += 1
        count = _popcount(words[cursor])
    return cursor, below


@intrinsic
def _deposit(typingctx, source, mask):
    """BMI2 ``pdep``: the low bits of ``source`` scattered to the set bits of ``mask`` (uint64)."""

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i64]), "llvm.x86.bmi.pdep.64")
        return builder.call(function, args)

    return types.uint64(types.uint64, types.uint64), codegen


def _has_fast_deposit() -> bool:
    """Whether numba compiles for this host and it has a fast BMI2 ``pdep``.

    Not for an explicit target (``NUMBA_CPU_NAME``, e.g. portable caches),
    other architectures, or AMD before Zen 3 (microcoded ``pdep``).
    """
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        return False
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    name = llvm.get_host_cpu_name()
    if name in {"znver1", "znver2"} or name.startswith(("bdver", "btver", "k8", "amdfam10")):
        return False
    return bool(llvm.get_host_cpu_features().get("bmi2", False))


@_jit
def _nth_bit_deposit(word, n):
    """Index of the ``n``-th (0-based) lowest set bit of ``word``: deposit bit ``n`` into the set bits."""
    return trailing_zeros(_deposit(np.uint64(1) << np.uint64(n), word))


@_jit
def _nth_bit_loop(word, n):
    """Index of the ``n``-th (0-based) lowest set bit of ``word``, portably."""
    for _ in range(n):
        word &= word - np.uint64(1)  # drop the lowest set bit
    return trailing_zeros(word)


#: Index of the ``n``-th lowest set bit (``pdep`` where it is fast; numba's cache is per CPU).
_nth_bit = _nth_bit_deposit if _has_fast_deposit() else _nth_bit_loop


@_jit
def _overlap_geometry(shift, half_width, n_bins):
    """Cell numbering of :func:`_overlap_row`: ``(n_short, n_cells, low_base, high_base)``.

    ``n_short`` is -1 for a degenerate geometry (e.g. zero duration), where no bin is defined.
    """
    if not (np.isfinite(shift) and half_width >= 0.0 and np.isfinite(half_width)):
        return -1, 0, 0.0, 0.0
    short = np.floor(2.0 * half_width)
    n_short = int(short)
    return n_short, 2 * (n_bins + n_short + 2), shift - 0.5 - half_width, shift - 0.5 + half_width - short


@_jit
def _cell_of(x, n_short, n_cells, low_base, high_base):
    """The cell of a point at ``x`` bin spacings (see :func:`_overlap_row`); ``n_cells`` if in no bin."""
    first = np.ceil(low_base + x)
    cell = 2 * int(first) + 2 * n_short + 2 + int(first <= high_base + x)
    return cell if cell >= 0 and cell < n_cells else n_cells


@_jit
def _overlap_row(position, values, n_points, shift, half_width, n_bins, median, work, out):
    """Statistic over the overlapping bins ``|x - (j + 1/2)| <= half_width`` into ``out``.

    ``x = position + shift`` in units of the bin spacing. Every point lies
    in ``L = floor(2 half_width)`` or ``L + 1`` consecutive bins starting at
    ``ceil(x - 1/2 - half_width)``. Numbering its "cell"
    ``2 (first bin + L + 1) + (1 if it reaches L + 1 bins)`` makes every bin
    ``j`` exactly the cells ``2j + 3 ... 2j + 2L + 3``: a contiguous run once
    the points are counting-sorted by cell (:func:`_overlap_cells`).
    ``work`` is an :func:`_overlap_workspace`.
    """
    n_short, n_cells, low_base, high_base = _overlap_geometry(shift, half_width, n_bins)
    if n_short < 0:
        out[:] = np.nan
        return
    cells = work[0]
    # Cells outside [0, n_cells) belong to no bin: they go to a spare cell n_cells, sorted last.
    for i in range(n_points):
        cells[i] = _cell_of(position[i], n_short, n_cells, low_base, high_base)
    _overlap_cells(values, n_points, n_short, n_cells, n_bins, median, work, out)


@_jit
def _overlap_cells(values, n_points, n_short, n_cells, n_bins, median, work, out):
    """:func:`_overlap_row` given the points' cells in ``work[0][:n_points]``.

    The runs of successive bins move monotonically. Medians: the points are
    ranked by value (:func:`_rank_values`) and the run's ranks kept in a
    bit set as it slides, so each median is a select in the bit set.
    Means: direct sums.
    """
    cells, ends, ordered = work[0], work[1], work[2]
    rank, by_rank, words = work[7], work[8], work[9]
    for c in range(n_cells + 1):
        ends[c] = 0
    for i in range(n_points):
        ends[cells[i]] += np.uint32(1)
    total = 0
    for c in range(n_cells + 1):
        total += ends[c]
        ends[c] = total - ends[c]
    for i in range(n_points):
        c = cells[i]
        ordered[ends[c]] = values[i]
        ends[c] += np.uint32(1)
    # Now ends[c] is the end of cell c and ends[c - 1] its start.
    if not median:
        for j in range(n_bins):
            start, stop = int(ends[2 * j + 2]), int(ends[2 * j + 2 * n_short + 3])
            total_value = 0.0
            for i in range(start, stop):
                total_value += float(ordered[i])
            out[j] = np.float32(total_value / (stop - start))
        return
    n_kept = int(ends[n_cells - 1])
    _rank_values(ordered, n_kept, work)
    for w in range((n_kept + 63) // 64):
        words[w] = 0
    low, high = 0, 0  # the window: ordered[low:high]
    # The medians move little from bin to bin: the select starts from the previous one's word.
    cursor, below = 0, 0  # below: the window's ranks in the words before the cursor's
    for j in range(n_bins):
        start, stop = int(ends[2 * j + 2]), int(ends[2 * j + 2 * n_short + 3])
        for i in range(low, min(start, high)):
            r = rank[i]
            w = r >> np.uint32(6)
            words[w] &= ~(np.uint64(1) << np.uint64(r & np.uint32(63)))
            below -= int(w < cursor)
        for i in range(max(high, start), stop):
            r = rank[i]
            w = r >> np.uint32(6)
            words[w] |= np.uint64(1) << np.uint64(r & np.uint32(63))
            below += int(w < cursor)
        low, high = start, stop
        n = stop - start
        if n == 0:
            out[j] = np.nan
            continue
        k = (n - 1) // 2
        cursor, below = _seek(words, cursor, below, k)
        bit = _nth_bit(words[cursor], k - below)
        lower = by_rank[cursor * 64 + bit]
        if n % 2:
            out[j] = lower
        else:
            # The upper middle value: the next set bit, in this word (above ``bit``) or a later one.
            word = words[cursor] & ~((np.uint64(2) << np.uint64(bit)) - np.uint64(1))
            position = cursor * 64
            while word == 0:
                position += 64
                word = words[position >> 6]
            upper = by_rank[position + trailing_zeros(word)]
            out[j] = np.float32(0.5 * (float(lower) + float(upper)))


@_jit
def _fill_row(view):
    """Fill NaN runs of ``view`` in place by linear interpolation between their neighbours.

    Runs at an end take the nearest value; an all-NaN row becomes zeros.
    """
    n = view.size
    n_nan = 0
    for i in range(n):  # vectorised: most views have no empty bin
        n_nan += np.isnan(view[i])
    if n_nan == 0:
        return
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
def _normalise_row(view, work):
    """Shift ``view`` in place to median 0 and scale it to minimum -1 (all NaN if any NaN).

    ``work`` is a :func:`_median_work` of at least ``view.size``.
    """
    n = view.size
    n_nan = 0
    for i in range(n):
        n_nan += np.isnan(view[i])
    if n_nan:
        view[:] = np.nan
        return
    _normalise_finite_row(view, work)


@_jit
def _normalise_finite_row(view, work):
    """:func:`_normalise_row` of a row without NaN (a :func:`_fill_row` output)."""
    n = view.size
    middle = np.float32(_median_radix(view, n, work))
    # Rounding is monotonic, so the least shifted value is the least value shifted.
    lowest = np.float32(_lowest(view, n, work[1]) - middle)
    floor = np.float32(-lowest)
    scale = floor if floor > 0 else np.float32(1.0)
    for i in range(n):
        view[i] = np.float32(np.float32(view[i] - middle) / scale)


@_jit
def _lowest(values, n, keys):
    """The least of float32 ``values[:n]`` (n >= 1, no NaN), overwriting ``keys[:n]``.

    An integer minimum of the sortable keys: it vectorises, where a float
    ``min`` (NaN-aware, so not reassociated) is one long dependency chain.
    """
    lowest, _ = _sortable_keys(values, n, keys)
    keys[0] = _key_bits(lowest)
    return keys[:1].view(np.float32)[0]


@_jit
def fill_rows(view):
    """:func:`_fill_row` on every row of a (N, B) float32 array, in place."""
    for r in range(view.shape[0]):
        _fill_row(view[r])


@_jit
def normalise_rows(view):
    """:func:`_normalise_row` on every row of a (N, B) float32 array, in place."""
    work = _median_work(view.shape[1])
    for r in range(view.shape[0]):
        _normalise_row(view[r], work)


@_jit
def adjacent_rows(position, values, good, n_bins, median, out):
    """Statistic per row in bins ``floor(position)`` (an exact ``n_bins`` counts in the last bin).

    ``position``, ``values`` (float32) and ``good`` are (N, T); only ``good``
    points are used. Writes (N, n_bins) float32 ``out``, NaN where empty.
    """
    n_rows, n_time = values.shape
    bins = np.empty(n_time, dtype=np.uint32)
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
    global_index = np.empty(n_time, dtype=np.uint32)
    global_values = np.empty(n_time, dtype=np.float32)
    local_position = np.empty(n_time, dtype=np.float64)
    local_values = np.empty(n_time, dtype=np.float32)
    median_work = _median_work(max(global_bins, local_bins))
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
        # The local view's cells, numbered as the points are selected (see _overlap_row).
        local_cells = local_work[0]
        n_short, n_cells, low_base, high_base = _overlap_geometry(
            (half_span - 0.5 * p) / spacing, half_width / spacing, local_bins
        )
        row_flux = flux[r]
        n_unusable = 0
        for i in range(n_time):
            # ``v - v`` is NaN exactly for NaN and infinite ``v``: a branch-free test the compiler vectorises.
            value, x = row_flux[i], phase[i]
            n_unusable += ((value - value) != 0) | ((x - x) != 0)
        n_global = 0
        n_local = 0
        if n_unusable == 0 and not use_valid:
            # Every point counts (the usual case): branch-free loops the compiler vectorises, and the
            # global view bins the row in place.
            if global_bins:
                for i in range(n_time):
                    global_index[i] = max(min(np.int32(phase[i] * global_bins), global_bins - 1), 0)
                n_global = n_time
            if local_bins and near_low <= 0.0 and near_high >= 1.0:
                # The local view spans the whole orbit (short periods): every point, vectorised.
                for i in range(n_time):
                    local_cells[i] = _cell_of(phase[i] * scale, n_short, n_cells, low_base, high_base)
                    local_values[i] = row_flux[i]
                n_local = n_time
            elif local_bins:
                for i in range(n_time):
                    x = phase[i]
                    if x >= near_low and x <= near_high:
                        local_position[n_local] = x * scale
                        local_values[n_local] = row_flux[i]
                        n_local += 1
                # The cells apart, in a loop that vectorises.
                for i in range(n_local):
                    local_cells[i] = _cell_of(local_position[i], n_short, n_cells, low_base, high_base)
            global_source = row_flux
        else:
            for i in range(n_time):
                value = row_flux[i]
                x = phase[i]
                if use_valid and not valid[r, i]:
                    continue
                if not (np.isfinite(value) and np.isfinite(x)):
                    continue
                if global_bins:
                    global_index[n_global] = max(min(np.int32(x * global_bins), global_bins - 1), 0)
                    global_values[n_global] = value
                    n_global += 1
                if local_bins and x >= near_low and x <= near_high:
                    local_position[n_local] = x * scale
                    local_values[n_local] = value
                    n_local += 1
            for i in range(n_local):
                local_cells[i] = _cell_of(local_position[i], n_short, n_cells, low_base, high_base)
            global_source = global_values
        if global_bins:
            row = out_global[r]
            _adjacent_row(global_index, global_source, n_global, global_bins, median, global_work, row)
            if finish:
                _fill_row(row)
                _normalise_finite_row(row, median_work)
        if local_bins:
            row = out_local[r]
            if n_short < 0:
                row[:] = np.nan  # degenerate geometry (e.g. zero duration): no bin is defined
            else:
                _overlap_cells(local_values, n_local, n_short, n_cells, local_bins, median, local_work, row)
            if finish:
                _fill_row(row)
                _normalise_finite_row(row, median_work)


# ---------------------------------------------------------------------------
# Tabulated white noise
# ---------------------------------------------------------------------------
#: Independent xoshiro256++ streams advanced together by :func:`tabulated_noise` (vectorised).
NOISE_LANES = 32
#: Draws per lane generated at a time by :func:`tabulated_noise` (a block of 1,024 cells stays in L1).
_NOISE_STEPS = 8


@_jit
def _rotate_left(x, k):
    """``x`` (uint64) rotated left by ``k`` bits (0 < k < 64)."""
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@_jit
def _next_draws(state, draws):
    """xoshiro256++ steps of every lane of ``state`` (4, lanes) into ``draws`` (a multiple of lanes).

    Blackman & Vigna's generator (``result = rotl(s0 + s3, 23) + s0``, then
    the xor/shift/rotate update), written lane-wise so that the lanes step
    together in vector registers; ``draws[step * lanes + lane]``.
    """
    lanes = state.shape[1]
    s0, s1, s2, s3 = state[0].copy(), state[1].copy(), state[2].copy(), state[3].copy()
    for begin in range(0, draws.size, lanes):
        for lane in range(lanes):
            a, b, c, d = s0[lane], s1[lane], s2[lane], s3[lane]
            draws[begin + lane] = _rotate_left(a + d, 23) + a
            t = b << np.uint64(17)
            c ^= a
            d ^= b
            b ^= c
            a ^= d
            c ^= t
            s0[lane], s1[lane], s2[lane], s3[lane] = a, b, c, _rotate_left(d, 45)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


@_jit
def _open_uniform(state, draws):
    """A uniform in (0, 1) (53 random bits, never 0 or 1): one step of all lanes, lane 0's draw."""
    _next_draws(state, draws)
    return (float(draws[0] >> np.uint64(11)) + 0.5) * 2.0**-53


@_jit
def _normal_tail(state, draws, edge):
    """A standard normal sample conditioned on ``x > edge`` (edge > 0), exactly.

    Marsaglia's tail method (as in the ziggurat): ``x = -ln(u1) / edge``,
    ``y = -ln(u2)``, accepted when ``2 y > x^2`` (over 95 % of the time for
    ``edge > 4``), then ``edge + x``.
    """
    while True:
        x = -np.log(_open_uniform(state, draws)) / edge
        y = -np.log(_open_uniform(state, draws))
        if 2.0 * y > x * x:
            return edge + x


@_jit
def tabulated_noise(state, table, edge, loc, scale, out):
    """Fill ``out`` (1-D) with tabulated normal samples; returns how many came from the tails.

    Each 64-bit draw of the xoshiro256++ lanes in ``state`` (4,
    :data:`NOISE_LANES` uint64, advanced in place) gives four 16-bit cells;
    ``out[i] = table[cell]``, except for the two outermost cells (0 and
    65535), whose samples are ``loc -/+ scale * t`` with ``t`` an exact
    draw of the normal tail beyond ``edge`` (:func:`_normal_tail`). The
    draws are made a block at a time and looked up while in cache.
    """
    lanes = state.shape[1]
    draws = np.empty(lanes * _NOISE_STEPS, dtype=np.uint64)
    spare = np.empty(lanes, dtype=np.uint64)
    cells = draws.view(np.uint16)
    per_block = cells.size
    n = out.size
    n_tail = 0
    ones = np.uint64(0x0001000100010001)
    highs = np.uint64(0x8000800080008000)
    for begin in range(0, n, per_block):
        _next_draws(state, draws)
        count = min(per_block, n - begin)
        for i in range(count):
            out[begin + i] = table[cells[i]]
        # Any 16-bit cell 0 (or 0xFFFF: 0 in the complement) in the block? A branch-free test per draw:
        # (v - 1) & ~v has a lane's top bit set only if some lane is zero.
        flags = np.uint64(0)
        for i in range(draws.size):
            v = draws[i]
            w = ~v
            flags |= ((v - ones) & w) | ((w - ones) & v)
        if flags & highs:
            # Rare (3e-5 of the cells): their samples drawn exactly, from lane draws of their own.
            for i in range(count):
                cell = cells[i]
                if cell == 0 or cell == 65535:
                    n_tail += 1
                    t = _normal_tail(state, spare, edge)
                    out[begin + i] = loc - scale * t if cell == 0 else loc + scale * t
    return n_tail
