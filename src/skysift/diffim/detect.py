"""Transient candidates: connected regions of |S_corr| above a threshold, deblended."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from skysift.diffim.masks import mask_near
from skysift.diffim.stars import local_maxima

__all__ = [
    "FLAG_DEBLENDED",
    "FLAG_NEAR_MASK",
    "FLAG_NEAR_SATURATED",
    "FLAG_NEGATIVE",
    "detect_candidates",
]

#: The candidate lies within ``mask_radius`` pixels of a masked pixel (image or footprint edge, bad pixel, NaN).
FLAG_NEAR_MASK = 1
#: The candidate lies within ``saturated_radius`` pixels of a saturated pixel.
FLAG_NEAR_SATURATED = 2
#: The signal is negative: the source faded (brighter in the reference).
FLAG_NEGATIVE = 4
#: The candidate was split from a larger region by deblending.
FLAG_DEBLENDED = 8

_COLUMNS = ("id", "x", "y", "ra", "dec", "scorr", "flux", "flux_err", "snr", "npix", "flags")


def _deblend(image: np.ndarray, labels: np.ndarray, n_labels: int, separation: int) -> tuple[np.ndarray, set[int]]:
    """Split regions holding several peaks by a watershed from those peaks.

    A peak is a local maximum over a ``(2 separation + 1)`` square; each
    region with more than one is divided along the valleys between them
    (:func:`scipy.ndimage.watershed_ift` on the inverted, quantised image).
    Peaks are only searched among the (few) pixels above the threshold.
    """
    size = 2 * separation + 1
    threshold = float(image[labels > 0].min()) if n_labels else 0.0
    peak_rows, peak_cols = local_maxima(image, np.nextafter(threshold, -np.inf), size=size)
    peak_labels = labels[peak_rows, peak_cols]
    on_region = peak_labels > 0
    peak_rows, peak_cols, peak_labels = peak_rows[on_region], peak_cols[on_region], peak_labels[on_region]
    peak_count = np.bincount(peak_labels, minlength=n_labels + 1)
    crowded = np.nonzero(peak_count > 1)[0]
    if crowded.size == 0:
        return labels, set()
    new_labels = labels.copy()
    next_label = n_labels + 1
    split: set[int] = set()
    objects = ndimage.find_objects(labels)
    for label in crowded:
        window = objects[label - 1]
        region = labels[window] == label
        values = np.where(region, image[window], 0.0)
        mine = peak_labels == label
        peaks_y = peak_rows[mine] - window[0].start
        peaks_x = peak_cols[mine] - window[1].start
        markers = np.zeros(region.shape, dtype=np.int32)
        markers[~region] = -1
        children = []
        for py, px in zip(peaks_y, peaks_x):
            markers[py, px] = len(children) + 1
            children.append(next_label)
            next_label += 1
        # watershed_ift floods from low to high; invert so peaks are basins.
        top = values.max()
        quantised = np.round(65535 * (1.0 - values / top)).clip(0, 65535).astype(np.uint16)
        flooded = ndimage.watershed_ift(quantised, markers)
        block = new_labels[window]
        for index, child in enumerate(children, start=1):
            block[region & (flooded == index)] = child
        split.update(children)
    return new_labels, split


def _peak_positions(image: np.ndarray, segmentation: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(row, col)`` of the maximum of ``image`` in each labelled region, in the order of ``labels``.

    Same answer as :func:`scipy.ndimage.maximum_position`, but it sorts only
    the labelled pixels rather than the whole image.
    """
    flat = np.flatnonzero(segmentation)
    region = segmentation.ravel()[flat]
    values = image.ravel()[flat]
    # Sort by region, then by decreasing value: the first entry of each region is its peak.
    order = np.lexsort((-values, region))
    region_sorted = region[order]
    first = np.searchsorted(region_sorted, labels)
    peak_flat = flat[order[first]]
    return np.column_stack(np.unravel_index(peak_flat, image.shape)).astype(np.int64)


def _segments(image: np.ndarray, threshold: float, npixels: int, deblend: bool, separation: int) -> tuple[np.ndarray, set[int]]:
    """8-connected regions of at least ``npixels`` pixels above ``threshold`` (photutils' ``detect_sources``)."""
    labels, n_labels = ndimage.label(image > threshold, structure=np.ones((3, 3), dtype=bool))
    if n_labels == 0:
        return labels.astype(np.int32), set()
    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)
    small = sizes < npixels
    small[0] = False
    if small.any():
        # Drop small regions and renumber the rest consecutively.
        relabel = np.zeros(n_labels + 1, dtype=np.int32)
        kept = np.nonzero(~small[1:])[0] + 1
        relabel[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
        labels = relabel[labels]
        n_labels = int(kept.size)
    labels = labels.astype(np.int32, copy=False)
    if not deblend or n_labels == 0:
        return labels, set()
    return _deblend(image, labels, n_labels, separation)


def detect_candidates(
    score_corr: np.ndarray,
    *,
    threshold: float = 5.0,
    mask: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    flux: np.ndarray | None = None,
    flux_err: np.ndarray | None = None,
    wcs: WCS | None = None,
    npixels: int = 5,
    deblend: bool = True,
    deblend_separation: int = 4,
    mask_radius: int = 3,
    saturated_radius: int = 10,
    exclude_flags: int = 0,
) -> Table:
    """Find candidates in ``S_corr`` and measure them at their peaks.

    Parameters
    ----------
    score_corr : numpy.ndarray
        ``S_corr`` in units of sigma (:func:`~skysift.diffim.zogy.zogy`).
    threshold : float
        Detection threshold on ``|S_corr|`` (sigma).
    mask : numpy.ndarray of bool, optional
        Pixels that cannot hold a candidate (saturated, NaN, edges, footprint, bad).
    saturated : numpy.ndarray of bool, optional
        Saturated pixels, for :data:`FLAG_NEAR_SATURATED`.
    flux, flux_err : numpy.ndarray, optional
        PSF flux and error maps (``flux_psf``, ``flux_psf_err``), sampled at the peak.
    wcs : astropy.wcs.WCS, optional
        Science WCS for ``ra``, ``dec``.
    npixels : int
        Minimum connected pixels above threshold.
    deblend : bool
        Split regions with several peaks (watershed from the peaks).
    deblend_separation : int
        Half-size (pixels) of the window in which a deblending peak must be
        the maximum: closer peaks are not separated.
    mask_radius, saturated_radius : int
        Distances (pixels) for :data:`FLAG_NEAR_MASK` and :data:`FLAG_NEAR_SATURATED`.
    exclude_flags : int
        Candidates with any of these flag bits set are left out of the table
        (e.g. :data:`FLAG_NEAR_SATURATED`: the residuals of saturated stars'
        halos, which the ZOGY paper masks). 0 keeps everything.

    Returns
    -------
    astropy.table.Table
        One row per candidate: ``id``, ``x``, ``y`` (0-based science pixels,
        peak refined by a quadratic fit), ``ra``, ``dec`` (deg; NaN without a
        WCS), ``scorr`` (signed peak), ``flux``, ``flux_err`` (science units),
        ``snr`` (``|flux| / flux_err``), ``npix`` and ``flags`` (bitmask of
        the ``FLAG_*`` constants), sorted by decreasing ``|scorr|``.

    Notes
    -----
    ``S_corr`` is the optimal point-source detection statistic (Zackay et al.
    2016, eq. 25), so a threshold on it is a threshold on significance; a
    positive and a negative pass are run separately so that a dipole left by
    a mis-registered star yields two flagged candidates instead of one merged
    region.
    """
    score_corr = np.asarray(score_corr)
    shape = score_corr.shape
    mask = np.zeros(shape, bool) if mask is None else np.asarray(mask, bool)
    mask = mask | ~np.isfinite(score_corr)
    saturated = np.zeros(shape, bool) if saturated is None else np.asarray(saturated, bool)
    clean = np.where(mask, np.float32(0.0), score_corr).astype(np.float32, copy=False)
    rows: list[dict] = []
    for sign in (1.0, -1.0):
        image = clean if sign > 0 else -clean
        segmentation, split = _segments(image, threshold, npixels, deblend, deblend_separation)
        n_segments = int(segmentation.max())
        if n_segments == 0:
            continue
        sizes = np.bincount(segmentation.ravel(), minlength=n_segments + 1)
        labels = np.nonzero(sizes[1:])[0] + 1
        peaks = _peak_positions(image, segmentation, labels)
        near_mask = mask_near(mask, peaks[:, 1], peaks[:, 0], mask_radius)
        near_saturated = mask_near(saturated, peaks[:, 1], peaks[:, 0], saturated_radius)
        for label, (py, px), size, is_near_mask, is_near_saturated in zip(
            labels, peaks, sizes[labels], near_mask, near_saturated
        ):
            dx, dy = _quadratic_offset(image, py, px)
            flags = 0
            if is_near_mask:
                flags |= FLAG_NEAR_MASK
            if is_near_saturated:
                flags |= FLAG_NEAR_SATURATED
            if sign < 0:
                flags |= FLAG_NEGATIVE
            if int(label) in split:
                flags |= FLAG_DEBLENDED
            if flags & exclude_flags:
                continue
            peak_flux = float(flux[py, px]) if flux is not None else np.nan
            peak_err = float(flux_err[py, px]) if flux_err is not None else np.nan
            rows.append(
                {
                    "x": px + dx,
                    "y": py + dy,
                    "scorr": float(score_corr[py, px]),
                    "flux": peak_flux,
                    "flux_err": peak_err,
                    "snr": abs(peak_flux) / peak_err if peak_err > 0 else np.nan,
                    "npix": int(size),
                    "flags": flags,
                }
            )
    rows.sort(key=lambda row: -abs(row["scorr"]))
    table = Table(
        {
            "id": np.arange(1, len(rows) + 1, dtype=np.int64),
            "x": np.array([r["x"] for r in rows], dtype=np.float64),
            "y": np.array([r["y"] for r in rows], dtype=np.float64),
            "ra": np.full(len(rows), np.nan),
            "dec": np.full(len(rows), np.nan),
            "scorr": np.array([r["scorr"] for r in rows], dtype=np.float64),
            "flux": np.array([r["flux"] for r in rows], dtype=np.float64),
            "flux_err": np.array([r["flux_err"] for r in rows], dtype=np.float64),
            "snr": np.array([r["snr"] for r in rows], dtype=np.float64),
            "npix": np.array([r["npix"] for r in rows], dtype=np.int64),
            "flags": np.array([r["flags"] for r in rows], dtype=np.int32),
        },
        units={"x": "pix", "y": "pix", "ra": "deg", "dec": "deg"},
    )
    if wcs is not None and len(table):
        ra, dec = wcs.pixel_to_world_values(table["x"].data, table["y"].data)
        table["ra"][:] = ra
        table["dec"][:] = dec
    table.meta["threshold"] = threshold
    table.meta["excluded_flags"] = int(exclude_flags)
    table.meta["flag_bits"] = {
        "1": "near a masked pixel or the image/footprint edge",
        "2": "near a saturated star",
        "4": "negative (fading) source",
        "8": "deblended from a larger region",
    }
    return table


def _quadratic_offset(image: np.ndarray, py: int, px: int) -> tuple[float, float]:
    """Sub-pixel offset of a peak from a 1-D parabola through it and its neighbours on each axis."""
    ny, nx = image.shape
    offsets = []
    for axis_length, before, centre, after in (
        (nx, image[py, px - 1] if px > 0 else None, image[py, px], image[py, px + 1] if px < nx - 1 else None),
        (ny, image[py - 1, px] if py > 0 else None, image[py, px], image[py + 1, px] if py < ny - 1 else None),
    ):
        if before is None or after is None:
            offsets.append(0.0)
            continue
        curvature = before - 2 * centre + after
        offsets.append(float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0)
    return offsets[0], offsets[1]
