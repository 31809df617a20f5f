"""Pixel masks for image differencing: saturation, non-finite pixels, edges, bad pixels.

Every mask is a boolean array, ``True`` where a pixel must not be trusted.
Masked pixels are filled (with the local background) before any Fourier
transform, because a NaN or a clipped stellar core would otherwise spread over
the whole difference image, and they are excluded from detection afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "combine_masks",
    "edge_mask",
    "fill_masked",
    "grow_mask",
    "grow_regions",
    "mask_near",
    "saturated_nan_cores",
    "nonfinite_mask",
    "saturation_level",
    "saturation_mask",
]

#: Header keywords that carry the saturation level, in order of preference.
SATURATION_KEYWORDS = ("SATURATE", "SATURATA", "SATURATB", "SATLEVEL")


def grow_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a boolean mask by a disc of ``radius`` pixels.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        Mask to grow.
    radius : int
        Radius of the disc (pixels); 0 returns a copy.

    Returns
    -------
    numpy.ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask.copy()
    offsets = np.arange(-radius, radius + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return ndimage.binary_dilation(mask, structure=disc)


def saturation_level(header: Mapping[str, Any] | None, default: float | None = None) -> float | None:
    """Return the saturation level from a FITS header, or ``default``.

    Several amplifiers may report levels (DECam ``SATURATA``/``SATURATB``); the
    lowest is used so that no amplifier's clipped pixels escape the mask.

    Parameters
    ----------
    header : mapping or None
        FITS header.
    default : float, optional
        Returned when no keyword is present.

    Returns
    -------
    float or None
    """
    if default is not None:
        return float(default)
    if header is None:
        return None
    if "SATURATE" in header:
        return float(header["SATURATE"])
    levels = [float(header[key]) for key in SATURATION_KEYWORDS if key in header]
    return min(levels) if levels else None


def saturation_mask(data: np.ndarray, level: float | None, *, grow: int = 3, grow_factor: float = 0.0) -> np.ndarray:
    """Mask pixels at or above the saturation level, grown around each saturated region.

    Parameters
    ----------
    data : numpy.ndarray
        Image.
    level : float or None
        Saturation level in the image's units; None masks nothing.
    grow : int
        Fixed dilation (pixels): the pixels around a clipped core hold
        charge-bleed and non-linear signal as well.
    grow_factor : float
        Extra dilation, in units of each saturated region's equivalent radius
        ``sqrt(area / pi)``: a star saturated over a larger area is brighter,
        and its wings stay too bright to subtract cleanly further out.

    Returns
    -------
    numpy.ndarray of bool
    """
    if level is None:
        return np.zeros(data.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        saturated = np.asarray(data) >= level
    return grow_regions(saturated, grow=grow, grow_factor=grow_factor)


def grow_regions(regions: np.ndarray, *, grow: int = 3, grow_factor: float = 0.0) -> np.ndarray:
    """Grow each connected region of a mask by ``grow + grow_factor * sqrt(area / pi)`` pixels.

    Parameters
    ----------
    regions : numpy.ndarray of bool
        Seed mask (for example clipped stellar cores).
    grow, grow_factor : int, float
        As for :func:`saturation_mask`.

    Returns
    -------
    numpy.ndarray of bool
    """
    regions = np.asarray(regions, dtype=bool)
    if not regions.any():
        return regions.copy()
    if grow_factor <= 0:
        return grow_mask(regions, grow)
    labels, n_regions = ndimage.label(regions)
    areas = np.bincount(labels.ravel(), minlength=n_regions + 1)[1:]
    reach = grow + grow_factor * np.sqrt(areas / np.pi)
    # Saturated regions are few and small: grow each inside its own bounding
    # box (plus its reach) instead of a distance transform of the whole image.
    grown = regions.copy()
    ny, nx = regions.shape
    for index, window in enumerate(ndimage.find_objects(labels)):
        margin = int(np.ceil(reach[index]))
        y0, y1 = max(0, window[0].start - margin), min(ny, window[0].stop + margin)
        x0, x1 = max(0, window[1].start - margin), min(nx, window[1].stop + margin)
        region = labels[y0:y1, x0:x1] == index + 1
        distance = ndimage.distance_transform_edt(~region)
        grown[y0:y1, x0:x1] |= distance <= reach[index]
    return grown


def saturated_nan_cores(data: np.ndarray, bright_level: float) -> np.ndarray:
    """NaN regions bordered by bright pixels: stellar cores that a pipeline blanked as saturated.

    JWST, HST and drizzled products set saturated pixels to NaN instead of
    clipping them at a ``SATURATE`` level, so the saturation mask cannot find
    them by value. A NaN region whose bordering pixels have a median above
    ``bright_level`` is such a core; NaN regions in the sky (footprint edges,
    chip gaps, cosmic-ray holes) are bordered by sky and are left alone.

    Parameters
    ----------
    data : numpy.ndarray
        Image with NaNs.
    bright_level : float
        Median of the one-pixel border above which a NaN region is a core.

    Returns
    -------
    numpy.ndarray of bool
        The NaN pixels of those regions (to be grown like saturated cores).
    """
    blank = ~np.isfinite(data)
    if not blank.any():
        return blank
    labels, n_regions = ndimage.label(blank)
    # Label each border pixel with its region: a dilation of the label image.
    border_labels = ndimage.grey_dilation(labels, size=(3, 3))
    border = (border_labels > 0) & ~blank
    border_median = ndimage.median(data, labels=np.where(border, border_labels, 0), index=np.arange(1, n_regions + 1))
    bright = np.concatenate([[False], np.nan_to_num(np.asarray(border_median, dtype=np.float64), nan=-np.inf) > bright_level])
    return bright[labels]


def mask_near(mask: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Whether any masked pixel lies within ``radius`` of each position.

    Equivalent to ``grow_mask(mask, radius)[round(y), round(x)]`` but it only
    looks at a window around each position, so it costs nothing on a large
    image with a few hundred positions.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        Mask.
    x, y : numpy.ndarray
        Positions (0-based pixels); rounded to the nearest pixel.
    radius : float
        Disc radius (pixels).

    Returns
    -------
    numpy.ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    ix = np.round(np.asarray(x, dtype=np.float64)).astype(np.int64)
    iy = np.round(np.asarray(y, dtype=np.float64)).astype(np.int64)
    if ix.size == 0:
        return np.zeros(0, dtype=bool)
    r = int(np.ceil(radius))
    offsets = np.arange(-r, r + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    rows = iy[:, None, None] + offsets[None, :, None]
    cols = ix[:, None, None] + offsets[None, None, :]
    inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    values = mask[np.clip(rows, 0, mask.shape[0] - 1), np.clip(cols, 0, mask.shape[1] - 1)]
    return np.any(values & inside & disc, axis=(1, 2))


def nonfinite_mask(data: np.ndarray) -> np.ndarray:
    """Mask NaN and infinite pixels."""
    return ~np.isfinite(data)


def edge_mask(shape: tuple[int, int], width: int) -> np.ndarray:
    """Mask a border ``width`` pixels wide around an image of ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    if width > 0:
        mask[:width, :] = True
        mask[-width:, :] = True
        mask[:, :width] = True
        mask[:, -width:] = True
    return mask


def combine_masks(*masks: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Return the union (logical or) of masks, ignoring ``None`` entries.

    Parameters
    ----------
    *masks : numpy.ndarray or None
        Boolean masks (non-zero means bad) of the same ``shape``.
    shape : (int, int)
        Image shape, used when every mask is None and to check the others.

    Returns
    -------
    numpy.ndarray of bool

    Raises
    ------
    ValueError
        If a mask has another shape.
    """
    combined = np.zeros(shape, dtype=bool)
    for mask in masks:
        if mask is None:
            continue
        mask = np.asarray(mask)
        if mask.shape != tuple(shape):
            raise ValueError(f"mask shape {mask.shape} differs from image shape {tuple(shape)}")
        combined |= mask != 0
    return combined


def fill_masked(data: np.ndarray, mask: np.ndarray, fill: np.ndarray | float = 0.0) -> np.ndarray:
    """Return a copy of ``data`` with masked pixels replaced by ``fill``.

    Parameters
    ----------
    data : numpy.ndarray
        Image.
    mask : numpy.ndarray of bool
        Pixels to replace.
    fill : float or numpy.ndarray
        Replacement value, or an image of replacement values (the background
        model, so that the filled pixels carry no signal into the FFTs).

    Returns
    -------
    numpy.ndarray
    """
    filled = np.array(data, dtype=np.float64, copy=True)
    if np.ndim(fill) == 0:
        filled[mask] = float(fill)
    else:
        filled[mask] = np.asarray(fill)[mask]
    return filled
