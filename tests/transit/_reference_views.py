"""The numpy AstroNet views that the compiled kernels replaced: a reference for the tests.

Verbatim from ``skysift.transit.preprocess`` before the views moved to numba
(:mod:`skysift.transit._kernels`), plus :func:`vetting_views`, the view part
of the former ``make_vetting_views``; the view sizes and the helpers that
did not change (input checks, row medians) are imported from it. Fully
vectorised (no loop over light curves or bins) and exact, so the compiled
views must reproduce it.
"""

from __future__ import annotations

import numpy as np

from skysift.transit.preprocess import (
    _ROWS_PER_BLOCK,
    GLOBAL_BINS,
    LOCAL_BIN_WIDTH_FACTOR,
    LOCAL_BINS,
    LOCAL_NUM_DURATIONS,
    _check_statistic,
    _row_medians,
    _usable_points,
)

#: Overlapping bins whose medians are sorted in one array (bins of similar size together).
_BINS_PER_CHUNK = 1024
#: Pads short bins in the median sorts: above the sortable bits of every float32, NaN excepted.
_PAD = np.uint32(0xFFFFFFFF)


# ---------------------------------------------------------------------------
# Folding and binning
# ---------------------------------------------------------------------------
def _orbital_phase(time: np.ndarray, period: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """``phase_fold(...) / period + 1/2``: orbital phase in [0, 1], 0.5 at mid-transit, (N, T) float64.

    Four operations per cadence (multiply, add, floor, subtract). A shared
    time grid is first shifted to start at zero, so that the product keeps
    its precision even for BJD-sized times. Rounding may give exactly 1.
    """
    time = np.asarray(time, dtype=np.float64)
    period = np.atleast_1d(np.asarray(period, dtype=np.float64))
    t0 = np.broadcast_to(np.asarray(t0, dtype=np.float64), period.shape)
    rate = (1.0 / period)[:, None]
    if time.ndim == 1:
        start = float(time[0]) if time.size else 0.0
        phase = (time - start) * rate
        phase += ((start - t0) / period + 0.5)[:, None]
    else:
        phase = (time - t0[:, None]) * rate
        phase += 0.5
    phase -= np.floor(phase)
    return phase


def _sortable_bits(values: np.ndarray) -> np.ndarray:
    """Map float32 to uint32 so that unsigned order equals float order (NaN aside)."""
    signed = np.ascontiguousarray(values, dtype=np.float32).view(np.int32)
    # Negative floats: flip every bit; others: set the sign bit.
    flip = (signed >> 31).view(np.uint32) | np.uint32(0x80000000)
    return signed.view(np.uint32) ^ flip


def _unsortable_bits(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_sortable_bits`."""
    bits = np.ascontiguousarray(bits, dtype=np.uint32)
    flip = (~(bits.view(np.int32) >> 31)).view(np.uint32) | np.uint32(0x80000000)
    return (bits ^ flip).view(np.float32)


def _sorted_group_median(key: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` (float32) per group ``key`` by one sort of packed 64-bit keys.

    Returns the groups present (ascending) and their float32 medians; any
    group size. Work is proportional to ``key.size`` alone: used for the few
    crowded bins that :func:`_group_median` does not do in closed form.
    """
    if key.size == 0:
        return key, np.empty(0, dtype=np.float32)
    # Renumber the groups if the key does not fit in 32 bits.
    present, dense_key = (None, key) if int(key.max()) < 1 << 32 else np.unique(key, return_inverse=True)
    packed = (dense_key.astype(np.uint64) << np.uint64(32)) | _sortable_bits(values).astype(np.uint64)
    packed.sort()
    group = packed >> np.uint64(32)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    counts = np.diff(np.append(starts, packed.size))
    low = _unsortable_bits(packed[starts + (counts - 1) // 2] & np.uint64(0xFFFFFFFF))
    high = _unsortable_bits(packed[starts + counts // 2] & np.uint64(0xFFFFFFFF))
    groups = group[starts].astype(np.intp) if present is None else present[group[starts].astype(np.intp)]
    return groups, 0.5 * (low + high)


def _group_median(key: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Median of ``values`` (float32) per group ``key`` in ``[0, size)``; fast when groups are small.

    A group of at most four values needs no sort: with its sum ``s``, minimum
    and maximum, the median of 1, 2, 3, 4 values is ``s``, ``s / 2``,
    ``s - min - max`` and ``(s - min - max) / 2``. Sums are accumulated in
    float64, which holds the sum of four float32 exactly unless their
    magnitudes within a group differ by more than about 2^27 (never for
    fluxes; otherwise the error is below 2^-50 of the largest). Larger
    groups (2 % of a global view's bins, 8 % of its points) go through
    :func:`_sorted_group_median`. Returns float32, NaN for empty groups.
    """
    counts = np.bincount(key, minlength=size)
    sums = np.bincount(key, weights=values, minlength=size)
    kept = counts.astype(np.float64)
    if counts.max(initial=0) >= 3:
        several = counts >= 3
        lowest = np.full(size, np.inf, dtype=np.float32)
        highest = np.full(size, -np.inf, dtype=np.float32)
        np.minimum.at(lowest, key, values)
        np.maximum.at(highest, key, values)
        # In place and only where selected: groups of fewer than three have infinite extremes.
        np.subtract(sums, lowest, out=sums, where=several)
        np.subtract(sums, highest, out=sums, where=several)
        np.subtract(kept, 2.0, out=kept, where=several)
    # One or two values left: their mean (0 / 0 = NaN marks empty groups).
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(sums, kept, out=sums)
    out = sums.astype(np.float32)
    if counts.max(initial=0) > 4:
        members = np.flatnonzero((counts > 4)[key])
        groups, medians = _sorted_group_median(key[members], values[members])
        out[groups] = medians
    return out


def _adjacent_statistic(
    position: np.ndarray, values: np.ndarray, good: np.ndarray | None, n_bins: int, statistic: str
) -> np.ndarray:
    """Median or mean of ``values`` (N, T) in bins ``floor(position)`` (bin units, in [0, n_bins]).

    ``good`` (N, T) selects the points used (None: all). A position of exactly
    ``n_bins`` counts in the last bin. Returns (N, n_bins) float32, NaN where empty.
    """
    n_rows = values.shape[0]
    size = n_rows * n_bins
    if good is not None:
        position = np.where(good, position, 0.0)
    key = position.astype(np.intp)
    np.minimum(key, n_bins - 1, out=key)
    key += (np.arange(n_rows, dtype=np.intp) * n_bins)[:, None]
    if good is not None:
        # Unused points go to one extra group, dropped at the end.
        key[~good] = size
    key = key.ravel()
    values = np.ascontiguousarray(values, dtype=np.float32)
    if good is not None:
        values = np.where(good, values, np.float32(0.0))  # NaN would poison the dropped group's min/max
    values = values.ravel()
    if statistic == "median":
        out = _group_median(key, values, size + 1)[:size]
    else:
        counts = np.bincount(key, minlength=size + 1)[:size]
        sums = np.bincount(key, weights=values, minlength=size + 1)[:size]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (sums / counts).astype(np.float32)
    return out.reshape(n_rows, n_bins)


def _run_medians(bits: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Median of each run ``bits[start : start + length]`` (sortable float32 bits); NaN for empty runs.

    Runs are ordered by length and taken ``_BINS_PER_CHUNK`` at a time into a
    dense (runs, longest) array padded with :data:`_PAD`, which is sorted
    along its short rows (SIMD sorting networks for rows of up to 256).
    """
    out = np.full(start.size, np.nan, dtype=np.float32)
    by_length = np.argsort(length.astype(np.uint16) if length.max(initial=0) < 1 << 16 else length, kind="stable")
    sorted_length = length[by_length]
    start = start.astype(np.int32) if bits.size < 1 << 31 else start
    for begin in range(int(np.searchsorted(sorted_length, 1)), by_length.size, _BINS_PER_CHUNK):
        runs = by_length[begin : begin + _BINS_PER_CHUNK]
        n = sorted_length[begin : begin + _BINS_PER_CHUNK]
        slot = np.arange(n[-1], dtype=start.dtype)
        block = bits.take(start[runs][:, None] + slot, mode="clip")
        block[slot >= n[:, None]] = _PAD
        block.sort(axis=1)
        flat = block.reshape(-1)
        row = np.arange(runs.size) * int(n[-1])
        out[runs] = 0.5 * (_unsortable_bits(flat[row + (n - 1) // 2]) + _unsortable_bits(flat[row + n // 2]))
    return out


def _overlapping_statistic(
    rows: np.ndarray,
    position: np.ndarray,
    shift: np.ndarray,
    values: np.ndarray,
    n_bins: int,
    half_width: np.ndarray,
    statistic: str,
) -> np.ndarray:
    """Median (or mean) over overlapping bins ``|x - (j + 1/2)| <= half_width``, row by row.

    ``rows`` (ascending), ``position`` and ``values`` list the points of all
    rows, whose abscissa in units of the bin spacing is
    ``x = position + shift[row]``; ``shift`` and ``half_width`` (N,) are per
    row, also in bin spacings. Returns (N, n_bins) float32, NaN in empty bins.

    Every point lies in ``L = floor(2 half_width)`` or ``L + 1`` consecutive
    bins starting at ``ceil(x - 1/2 - half_width)``. Numbering the points'
    "cells" ``2 (first bin + L + 1) + (1 if it reaches L + 1 bins)`` makes
    every bin ``j`` exactly the cells ``2j + 3 ... 2j + 2L + 3``: a
    contiguous run once the points are sorted by cell, which one stable
    radix sort of 16-bit keys does for many rows at once. Medians of the
    runs: :func:`_run_medians`; means: differences of a cumulative sum.
    """
    n_rows = shift.size
    out = np.full((n_rows, n_bins), np.nan, dtype=np.float32)
    if rows.size == 0:
        return out
    half_width = np.broadcast_to(np.asarray(half_width, dtype=np.float64), (n_rows,))
    short = np.floor(2.0 * half_width)
    cells_per_row = 2 * (n_bins + short.astype(np.intp) + 2)
    # Rows in groups whose cells fit in 16 bits (radix sort); one group for a make_views block.
    per_group = max(1, ((1 << 16) - 1) // int(cells_per_row.max()))
    group_of_row = np.arange(n_rows) // per_group
    ends = np.cumsum(cells_per_row)
    offset = ends - cells_per_row
    offset -= offset[group_of_row * per_group]
    # Per row: x - 1/2 -+ half_width (the second less L), and the cell numbering's base.
    low = (shift - 0.5 - half_width)[rows]
    low += position
    first = np.ceil(low)
    high = (shift - 0.5 + half_width - short)[rows]
    high += position
    key = 2.0 * first
    key += (2.0 * (short + 1.0) + offset)[rows]
    key += first <= high
    bounds = np.searchsorted(rows, np.arange(0, n_rows + per_group, per_group))
    bits = _sortable_bits(values) if statistic == "median" else None
    for group, begin in enumerate(range(0, n_rows, per_group)):
        lo, hi = bounds[group], bounds[group + 1]
        if lo == hi:
            continue
        group_rows = np.arange(begin, min(begin + per_group, n_rows))
        n_cells = int(offset[group_rows[-1]] + cells_per_row[group_rows[-1]])
        group_key = key[lo:hi].astype(np.uint16 if n_cells <= 1 << 16 else np.intp)
        order = np.argsort(group_key, kind="stable")
        edges = np.zeros(n_cells + 1, dtype=np.intp)
        np.cumsum(np.bincount(group_key, minlength=n_cells), out=edges[1:])
        first_cell = offset[group_rows][:, None] + (2 * np.arange(n_bins) + 3)
        start = edges[first_cell]
        length = edges[first_cell + (2 * short[group_rows].astype(np.intp) + 1)[:, None]] - start
        if statistic == "median":
            medians = _run_medians(bits[lo:hi][order], start.ravel(), length.ravel())
            out[group_rows] = medians.reshape(group_rows.size, n_bins)
        else:
            cumulative = np.concatenate([[0.0], np.cumsum(values[lo:hi][order], dtype=np.float64)])
            with np.errstate(invalid="ignore", divide="ignore"):
                out[group_rows] = (cumulative[start + length] - cumulative[start]) / length
    return out


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
    Values are binned as float32, and the medians are the exact middle
    values (see :func:`_group_median` for its one float64 caveat). Adjacent
    bins (``bin_width`` not given) use closed forms for bins of up to four
    points and one packed sort for the rest (:func:`_group_median`);
    overlapping bins become contiguous runs of each row's points after one
    radix sort by "cell", and each run is sorted on its own
    (:func:`_overlapping_statistic`). No loop runs over rows or bins.
    """
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    y = np.atleast_2d(y)
    n_rows = y.shape[0]
    x = np.broadcast_to(np.atleast_2d(x), y.shape)
    x_min = np.broadcast_to(np.asarray(x_min, dtype=np.float64), (n_rows,))
    x_max = np.broadcast_to(np.asarray(x_max, dtype=np.float64), (n_rows,))
    spacing = (x_max - x_min) / n_bins
    good = np.isfinite(y) & np.isfinite(x)
    if valid is not None:
        good &= valid
    if bin_width is None:
        with np.errstate(invalid="ignore"):
            position = (x - x_min[:, None]) * (1.0 / spacing)[:, None]
            good &= (position >= 0) & (position < n_bins)
        return _adjacent_statistic(position, y, good, n_bins, statistic)
    width = np.broadcast_to(np.asarray(bin_width, dtype=np.float64), (n_rows,))
    half_width = 0.5 * width
    # Only points inside [x_min - w/2, x_max + w/2) can land in a bin.
    with np.errstate(invalid="ignore"):
        reach = good & (x >= (x_min - half_width)[:, None]) & (x < (x_max + half_width)[:, None])
    rows, cols = np.nonzero(reach)
    position = (x[rows, cols] - x_min[rows]) / spacing[rows]
    values = y[rows, cols].astype(np.float32)
    shift = np.zeros(n_rows)
    return _overlapping_statistic(rows, position, shift, values, n_bins, half_width / spacing, statistic)


def fill_empty_bins(view: np.ndarray) -> np.ndarray:
    """Fill NaN bins by linear interpolation between the nearest filled bins of each row.

    Bins before the first (after the last) filled bin take its value; a row
    with no filled bin becomes zeros.
    """
    view = np.array(view, dtype=np.float32, copy=True)
    n_bins = view.shape[-1]
    flat = view.reshape(-1)
    empty = np.flatnonzero(np.isnan(flat))
    if empty.size == 0:
        return view
    # Runs of consecutive empty bins within a row; work is per empty bin only.
    starts_run = np.ones(empty.size, dtype=bool)
    starts_run[1:] = (np.diff(empty) != 1) | (empty[1:] % n_bins == 0)
    run = np.cumsum(starts_run) - 1
    first = empty[starts_run]
    last = empty[np.append(starts_run[1:], True)]
    previous = (first - 1)[run]
    following = (last + 1)[run]
    has_prev = (first % n_bins != 0)[run]
    has_next = (following % n_bins != 0) & (following < flat.size)
    v_prev = flat[np.where(has_prev, previous, 0)]
    v_next = flat[np.where(has_next, following, 0)]
    weight = (empty - previous) / (following - previous)
    flat[empty] = np.where(
        has_prev & has_next,
        v_prev + weight * (v_next - v_prev),
        np.where(has_prev, v_prev, np.where(has_next, v_next, 0.0)),
    )
    return view


def normalise_views(view: np.ndarray) -> np.ndarray:
    """Shift each row to median 0 and scale it so its minimum is -1 (AstroNet)."""
    view = np.asarray(view, dtype=np.float32)
    centred = view - _row_medians(view)[:, None]
    floor = -centred.min(axis=1, keepdims=True)
    scale = np.where(floor > 0, floor, 1.0).astype(np.float32)
    return (centred / scale).astype(np.float32)


def _global_from_phase(
    phase: np.ndarray, flux: np.ndarray, good: np.ndarray | None, n_bins: int, statistic: str
) -> np.ndarray:
    """Raw global view (NaN where empty): bins of width ``1 / n_bins`` in orbital phase."""
    return _adjacent_statistic(phase * n_bins, flux, good, n_bins, statistic)


def _local_from_phase(
    phase: np.ndarray,
    flux: np.ndarray,
    good: np.ndarray | None,
    period: np.ndarray,
    duration: np.ndarray,
    n_bins: int,
    num_durations: float,
    bin_width_factor: float,
    statistic: str,
) -> np.ndarray:
    """Raw local view (NaN where empty) from the orbital phase of :func:`_orbital_phase`."""
    n_rows, n_points = flux.shape
    half_span = np.minimum(num_durations * duration, 0.5 * period)
    spacing = 2.0 * half_span / n_bins
    half_width = 0.5 * bin_width_factor * duration
    # Points within half a bin of the view's ends, in phase units (two comparisons:
    # no full-size float temporaries).
    reach = ((half_span + half_width) / period)[:, None]
    near = phase >= 0.5 - reach
    near &= phase <= 0.5 + reach
    if good is not None:
        near &= good
    flat = np.flatnonzero(near)
    rows = flat // n_points
    # Bin spacings from the view's left end: (folded + half_span) / spacing
    # = phase * P / spacing + (half_span - P / 2) / spacing.
    position = phase.ravel()[flat]
    position *= (period / spacing)[rows]
    values = np.ascontiguousarray(flux, dtype=np.float32).ravel()[flat]
    shift = (half_span - 0.5 * period) / spacing
    return _overlapping_statistic(rows, position, shift, values, n_bins, half_width / spacing, statistic)


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
    if folded is None:
        phase = _orbital_phase(time, period, np.broadcast_to(np.asarray(t0, dtype=np.float64), period.shape))
    else:
        phase = np.clip(np.asarray(folded, dtype=np.float64) / period[:, None] + 0.5, 0.0, 1.0)
    good = _usable_points(flux, valid, np.asarray(time if folded is None else folded, dtype=np.float64))
    view = _global_from_phase(phase, flux, good, n_bins, statistic)
    return normalise_views(fill_empty_bins(view))


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
    duration = np.broadcast_to(np.asarray(duration, dtype=np.float64), period.shape)
    if folded is None:
        phase = _orbital_phase(time, period, np.broadcast_to(np.asarray(t0, dtype=np.float64), period.shape))
    else:
        phase = np.asarray(folded, dtype=np.float64) / period[:, None] + 0.5
    good = _usable_points(flux, valid, np.asarray(time if folded is None else folded, dtype=np.float64))
    view = _local_from_phase(phase, flux, good, period, duration, n_bins, num_durations, bin_width_factor, statistic)
    return normalise_views(fill_empty_bins(view))


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

    Notes
    -----
    Rows go in blocks of ``_ROWS_PER_BLOCK``, each folded once (the orbital
    phase of every cadence serves both views), so a block's temporaries stay
    in cache. Equal to :func:`global_view` and :func:`local_view` called on
    the whole batch.
    """
    _check_statistic(statistic)
    flux = np.atleast_2d(flux)
    n_rows = flux.shape[0]
    period, t0, duration = (
        np.broadcast_to(np.asarray(v, dtype=np.float64), (n_rows,)) for v in (period, t0, duration)
    )
    time = np.asarray(time, dtype=np.float64)
    if valid is not None:
        valid = np.broadcast_to(valid, flux.shape)
    views = []
    for begin in range(0, n_rows, _ROWS_PER_BLOCK):
        rows = slice(begin, begin + _ROWS_PER_BLOCK)
        block_time = time[rows] if time.ndim == 2 and time.shape[0] > 1 else time
        block_flux = np.ascontiguousarray(flux[rows], dtype=np.float32)
        phase = _orbital_phase(block_time, period[rows], t0[rows])
        good = _usable_points(block_flux, None if valid is None else valid[rows], block_time)
        raw_global = _global_from_phase(phase, block_flux, good, GLOBAL_BINS, statistic)
        raw_local = _local_from_phase(
            phase, block_flux, good, period[rows], duration[rows], LOCAL_BINS,
            LOCAL_NUM_DURATIONS, LOCAL_BIN_WIDTH_FACTOR, statistic,
        )
        views.append((normalise_views(fill_empty_bins(raw_global)), normalise_views(fill_empty_bins(raw_local))))
    return np.concatenate([g for g, _ in views]), np.concatenate([v for _, v in views])


def vetting_views(time, flux, period, t0, duration, *, valid=None, statistic="median"):
    """The five views of the former ``make_vetting_views`` (raw local views depth-scaled as there)."""
    from skysift.transit.preprocess import _VIEW_CLIP

    def depth_scaled(raw, depth):
        view = fill_empty_bins(raw)
        centred = view - _row_medians(view)[:, None]
        return np.clip(centred / depth[:, None], -_VIEW_CLIP, _VIEW_CLIP).astype(np.float32)

    time = np.asarray(time, dtype=np.float64)
    flux = np.atleast_2d(flux)
    n_rows = flux.shape[0]
    period, t0, duration = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n_rows,)) for v in (period, t0, duration))
    if valid is not None:
        valid = np.broadcast_to(valid, flux.shape)
    names = ("global_view", "local_view", "secondary_view", "odd_view", "even_view")
    blocks = {name: [] for name in names}
    local_args = (LOCAL_BINS, LOCAL_NUM_DURATIONS, LOCAL_BIN_WIDTH_FACTOR, statistic)
    for begin in range(0, n_rows, _ROWS_PER_BLOCK):
        rows = slice(begin, begin + _ROWS_PER_BLOCK)
        block_flux = np.ascontiguousarray(flux[rows], dtype=np.float32)
        block_valid = None if valid is None else valid[rows]
        p, d, e = period[rows], duration[rows], t0[rows]
        phase = _orbital_phase(time, p, e)
        good = _usable_points(block_flux, block_valid, time)
        raw_local = fill_empty_bins(_local_from_phase(phase, block_flux, good, p, d, *local_args))
        centred = raw_local - _row_medians(raw_local)[:, None]
        depth = -centred.min(axis=1)
        depth = np.where(depth > 0, depth, 1.0)
        blocks["local_view"].append(normalise_views(raw_local))
        raw_global = _global_from_phase(phase, block_flux, good, GLOBAL_BINS, statistic)
        blocks["global_view"].append(normalise_views(fill_empty_bins(raw_global)))
        secondary_phase = phase + 0.5
        secondary_phase -= np.floor(secondary_phase)
        blocks["secondary_view"].append(
            depth_scaled(_local_from_phase(secondary_phase, block_flux, good, p, d, *local_args), depth)
        )
        usable = np.ones(block_flux.shape, dtype=bool) if good is None else good
        cycle = np.floor((time[None, :] - e[:, None]) / p[:, None] + 0.5)
        is_even = np.mod(cycle, 2.0) == 0.0
        for name, parity in (("even_view", is_even), ("odd_view", ~is_even)):
            raw = _local_from_phase(phase, block_flux, usable & parity, p, d, *local_args)
            blocks[name].append(depth_scaled(raw, depth))
    return {name: np.concatenate(parts) for name, parts in blocks.items()}
