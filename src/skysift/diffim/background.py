"""Background and noise maps: a sigma-clipped mesh (SExtractor style), vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

__all__ = ["BackgroundEstimate", "clipped_box_statistics", "estimate_background", "mesh_to_image"]

#: A box needs at least this fraction of unmasked pixels to be measured
#: (photutils' ``exclude_percentile=50``); others are filled from neighbours.
_MIN_GOOD_FRACTION = 0.5


@dataclass
class BackgroundEstimate:
    """Background model of one image.

    Attributes
    ----------
    background : numpy.ndarray
        Smooth sky level per pixel.
    rms : numpy.ndarray
        Sky noise (standard deviation) per pixel.
    sigma : float
        Median of ``rms``: the image's scalar background noise.
    mesh_background, mesh_rms : numpy.ndarray or None
        The per-box values the maps interpolate (after the median filter).
    box : int
        Box side of the mesh (pixels); 0 without a mesh.
    """

    background: np.ndarray
    rms: np.ndarray
    sigma: float
    mesh_background: np.ndarray | None = None
    mesh_rms: np.ndarray | None = None
    box: int = 0


def clipped_box_statistics(
    values: np.ndarray, *, sigma: float = 3.0, iterations: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped median and standard deviation of each row of ``values``.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n_boxes, n_pixels)``; NaN marks masked pixels.
    sigma : float
        Clipping threshold (standard deviations about the median).
    iterations : int
        Clipping rounds.

    Returns
    -------
    median, std : numpy.ndarray
        Per row (NaN where no pixel survives).
    n_good : numpy.ndarray
        Unmasked pixels per row.

    Notes
    -----
    Each row is sorted once; every clipping round then keeps a contiguous
    range ``[lo, hi)`` of the sorted values, so the median is an index lookup
    and the mean and variance come from prefix sums. This gives the same
    answer as :class:`astropy.stats.SigmaClip` (median centre, population
    std) at a fraction of the cost, because nothing is re-sorted or copied.
    """
    ordered = np.sort(values, axis=1)  # NaNs sort to the end of each row
    n_rows, n_columns = ordered.shape
    n_good = np.count_nonzero(np.isfinite(ordered), axis=1)
    # Prefix sums in float64 about a rough centre (the row's middle value), so
    # that the variance E[x^2] - E[x]^2 does not cancel catastrophically.
    centre = ordered[np.arange(n_rows), np.maximum(n_good - 1, 0) // 2].astype(np.float64)
    filled = np.nan_to_num(ordered - centre[:, None].astype(ordered.dtype), nan=0.0).astype(np.float64)
    zero = np.zeros((n_rows, 1))
    cumulative = np.concatenate([zero, np.cumsum(filled, axis=1)], axis=1)
    cumulative2 = np.concatenate([zero, np.cumsum(filled**2, axis=1)], axis=1)
    rows = np.arange(n_rows)
    lo = np.zeros(n_rows, dtype=np.int64)
    hi = n_good.astype(np.int64)
    median = np.full(n_rows, np.nan)
    std = np.full(n_rows, np.nan)
    for _ in range(iterations + 1):
        count = hi - lo
        ok = count > 0
        safe = np.maximum(count, 1)
        middle_low = np.clip(lo + (safe - 1) // 2, 0, n_columns - 1)
        middle_high = np.clip(lo + safe // 2, 0, n_columns - 1)
        median = np.where(ok, 0.5 * (filled[rows, middle_low] + filled[rows, middle_high]), np.nan)
        total = cumulative[rows, hi] - cumulative[rows, lo]
        total2 = cumulative2[rows, hi] - cumulative2[rows, lo]
        mean = total / safe
        std = np.where(ok, np.sqrt(np.maximum(total2 / safe - mean**2, 0.0)), np.nan)
        low_bound = (centre + median - sigma * std)[:, None]
        high_bound = (centre + median + sigma * std)[:, None]
        with np.errstate(invalid="ignore"):
            new_lo = np.count_nonzero(ordered < low_bound, axis=1)
            new_hi = n_good - np.count_nonzero(ordered[:, :] > high_bound, axis=1)
        new_hi = np.maximum(new_hi, new_lo)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    return median + centre, std, n_good


def _not_a_knot_second_derivatives(knots: np.ndarray) -> np.ndarray:
    """``(n, n)`` matrix taking data at ``knots`` to the second derivatives of their not-a-knot cubic spline."""
    n = len(knots)
    h = np.diff(knots)
    system = np.zeros((n, n))
    rhs = np.zeros((n, n))
    for i in range(1, n - 1):  # continuity of the first derivative at interior knots
        system[i, i - 1 : i + 2] = h[i - 1], 2.0 * (h[i - 1] + h[i]), h[i]
        rhs[i, i - 1 : i + 2] = 6.0 / h[i - 1], -6.0 / h[i - 1] - 6.0 / h[i], 6.0 / h[i]
    # Not-a-knot: the third derivative is continuous at the second and the second-to-last knots.
    system[0, :3] = 1.0 / h[0], -1.0 / h[0] - 1.0 / h[1], 1.0 / h[1]
    system[-1, -3:] = 1.0 / h[-2], -1.0 / h[-2] - 1.0 / h[-1], 1.0 / h[-1]
    return np.linalg.solve(system, rhs)


def _spline_weights(n_out: int, centres: np.ndarray) -> np.ndarray:
    """``(n_out, len(centres))`` matrix that interpolates box values to pixels.

    The interpolant is the not-a-knot cubic spline through the box values
    (a polynomial of degree ``n - 1`` for ``n < 4`` boxes), the one
    :func:`scipy.interpolate.make_interp_spline` builds; it is linear in the
    data, so one weight matrix maps the mesh onto every pixel. It is written
    out here because importing :mod:`scipy.interpolate` costs a fresh
    ``skysift diffim`` process more time than the whole interpolation.
    """
    centres = np.asarray(centres, dtype=np.float64)
    n = len(centres)
    positions = np.clip(np.arange(n_out, dtype=np.float64), centres[0], centres[-1])
    if n < 2:
        return np.ones((n_out, 1))
    if n < 4:
        # Lagrange basis of the interpolating polynomial.
        weights = np.ones((n_out, n))
        for j in range(n):
            for m in range(n):
                if m != j:
                    weights[:, j] *= (positions - centres[m]) / (centres[j] - centres[m])
        return weights
    second = _not_a_knot_second_derivatives(centres)
    interval = np.clip(np.searchsorted(centres, positions, side="right") - 1, 0, n - 2)
    h = (centres[interval + 1] - centres[interval])[:, None]
    left = (centres[interval + 1] - positions)[:, None]
    right = (positions - centres[interval])[:, None]
    identity = np.eye(n)
    return (
        second[interval] * left**3 / (6.0 * h)
        + second[interval + 1] * right**3 / (6.0 * h)
        + (identity[interval] - second[interval] * h**2 / 6.0) * left / h
        + (identity[interval + 1] - second[interval + 1] * h**2 / 6.0) * right / h
    )


def mesh_to_image(
    mesh: np.ndarray,
    shape: tuple[int, int],
    box: int,
    *,
    centres_y: np.ndarray | None = None,
    centres_x: np.ndarray | None = None,
) -> np.ndarray:
    """Interpolate a mesh of box values (box centres) to a full image with a bicubic spline.

    Parameters
    ----------
    mesh : numpy.ndarray
        ``(ny_boxes, nx_boxes)`` values at the box centres.
    shape : (int, int)
        Image shape.
    box : int
        Box side (pixels).
    centres_y, centres_x : numpy.ndarray, optional
        Pixel coordinates of the box centres in the output image; by default
        those of the image the mesh was measured on. Passing shifted centres
        carries a mesh onto a (nearly) aligned grid without resampling.

    Returns
    -------
    numpy.ndarray
        float32 image of ``shape``; constant beyond the outermost box centres.
    """
    ny, nx = shape
    if centres_y is None:
        centres_y = (np.arange(mesh.shape[0]) + 0.5) * box - 0.5
    if centres_x is None:
        centres_x = (np.arange(mesh.shape[1]) + 0.5) * box - 0.5
    weights_y = _spline_weights(ny, centres_y)
    weights_x = _spline_weights(nx, centres_x)
    # float32 output: a smooth map needs no more, and it halves the largest product.
    return (weights_y @ mesh).astype(np.float32) @ weights_x.T.astype(np.float32)


def _fill_missing(mesh: np.ndarray) -> np.ndarray:
    """Replace NaN boxes by the value of the nearest measured box."""
    missing = ~np.isfinite(mesh)
    if not missing.any():
        return mesh
    _, (rows, cols) = ndimage.distance_transform_edt(missing, return_indices=True)
    return mesh[rows, cols]


def estimate_background(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int = 64,
    filter_size: int = 3,
    sigma_clip: float = 3.0,
) -> BackgroundEstimate:
    """Estimate the sky background and its noise with sigma-clipped statistics in boxes.

    Parameters
    ----------
    data : numpy.ndarray
        Image (NaNs allowed where ``mask`` is set).
    mask : numpy.ndarray of bool, optional
        Pixels to ignore.
    box_size : int
        Side of the boxes (pixels); reduced for small images so that at least
        four boxes fit along each axis.
    filter_size : int
        Median filter applied to the grid of box values (boxes).
    sigma_clip : float
        Clipping threshold (standard deviations) that rejects stars.

    Returns
    -------
    BackgroundEstimate

    Notes
    -----
    This is the SExtractor mesh background (Bertin & Arnouts 1996, A&AS 117,
    393) with a median estimator and the clipped standard deviation as the
    noise, as :class:`photutils.background.Background2D` computes it: boxes
    less than half unmasked are replaced by their nearest neighbours, the
    mesh is median filtered and interpolated with a bicubic spline. The image
    is cut into whole boxes; the last partial row and column of boxes are
    folded into their neighbours by clipping the interpolation at the last
    box centre.
    """
    data = np.asarray(data)
    bad = ~np.isfinite(data) if mask is None else (np.asarray(mask, dtype=bool) | ~np.isfinite(data))
    box = int(max(8, min(box_size, min(data.shape) // 4)))
    ny, nx = data.shape
    n_y, n_x = max(1, ny // box), max(1, nx // box)
    if ny < box or nx < box:
        box = min(ny, nx)
        n_y, n_x = ny // box, nx // box
    # float32 halves the sort cost; the clipped statistics need no more.
    core = np.where(bad, np.nan, data)[: n_y * box, : n_x * box].astype(np.float32, copy=False)
    # Every other column of each box: 2048 pixels of a 64-pixel box pin the
    # median to 2 % of sigma, and the sort and prefix sums cost half as much.
    stride = 2 if box * box >= 1024 else 1
    blocks = core.reshape(n_y, box, n_x, box)[:, :, :, ::stride].transpose(0, 2, 1, 3).reshape(n_y * n_x, -1)
    median, std, n_good = clipped_box_statistics(blocks, sigma=sigma_clip)
    usable = n_good >= _MIN_GOOD_FRACTION * blocks.shape[1]
    if not usable.any():
        # Too few unmasked boxes for a mesh: fall back to one global value.
        _, level, noise = sigma_clipped_stats(data[~bad], sigma=sigma_clip)
        background = np.full(data.shape, float(level), dtype=np.float32)
        rms = np.full(data.shape, float(noise), dtype=np.float32)
        return BackgroundEstimate(background=background, rms=rms, sigma=float(noise))
    median = _fill_missing(np.where(usable, median, np.nan).reshape(n_y, n_x))
    std = _fill_missing(np.where(usable, std, np.nan).reshape(n_y, n_x))
    if filter_size > 1 and min(n_y, n_x) >= filter_size:
        median = ndimage.median_filter(median, size=filter_size, mode="nearest")
        std = ndimage.median_filter(std, size=filter_size, mode="nearest")
    background = mesh_to_image(median, data.shape, box)
    rms = mesh_to_image(std, data.shape, box)
    sigma = float(np.median(std[np.isfinite(std)]))
    return BackgroundEstimate(
        background=background, rms=rms, sigma=sigma, mesh_background=median, mesh_rms=std, box=box
    )
