"""The diffim preview: four block-averaged panels with the candidates circled, encoded as PNG with numpy and zlib.

A preview is looked at, not measured: each image is block-averaged to at most
:data:`PANEL_MAX_SIDE` pixels (a report shows a panel about 300 pixels wide),
stretched with robust limits and written as an RGB PNG. Drawing it this way
costs a few tens of milliseconds at any image size, where rendering full
frames with matplotlib cost about 2 s per job at 2048 x 2048 (most of it
importing matplotlib and resampling the frames).

Panels, left to right: science, aligned reference (both asinh stretched),
the proper difference ``D`` and ``S_corr`` (both linear, +-5 robust sigma);
candidates with positive ``S_corr`` are circled red, negative ones cyan.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["PANEL_MAX_SIDE", "block_average", "encode_png", "preview_png"]

#: Largest side (pixels) of each panel.
PANEL_MAX_SIDE = 512
#: Gap between panels (pixels, white).
_GAP = 6
_POSITIVE = (255, 40, 40)
_NEGATIVE = (0, 220, 255)


def block_average(image: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Average ``image`` over square blocks so that no side exceeds ``max_side``.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; a block holding a NaN is 0.
    max_side : int
        Largest side of the result.

    Returns
    -------
    binned : numpy.ndarray
        float32 image; the trailing rows and columns that do not fill a block
        are dropped.
    factor : int
        Block side (1: unchanged).
    """
    factor = max(1, int(np.ceil(max(image.shape) / max_side)))
    data = np.asarray(image, dtype=np.float32)
    if factor == 1:
        return np.nan_to_num(data), 1
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    # NaNs are replaced after averaging, on the small array: no full-size copy.
    binned = data[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))
    return np.nan_to_num(binned, copy=False), factor


def _to_grey(image: np.ndarray, *, asinh: bool) -> np.ndarray:
    """8-bit grey levels: asinh between -2 and +30 robust sigma, or linear within +-5 sigma."""
    sample = image[:: max(1, image.shape[0] // 256), :: max(1, image.shape[1] // 256)]
    centre = float(np.median(sample))
    sigma = float(1.4826 * np.median(np.abs(sample - centre))) or float(np.std(sample)) or 1.0
    if asinh:
        low, high = centre - 2.0 * sigma, centre + 30.0 * sigma
        scaled = np.arcsinh(np.clip((image - low) / (high - low), 0.0, 1.0) * 10.0) / np.arcsinh(10.0)
    else:
        scaled = np.clip((image - centre + 5.0 * sigma) / (10.0 * sigma), 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def _draw_circles(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float, colours: Sequence[tuple[int, int, int]]) -> None:
    """Draw one-pixel rings in place (``x``, ``y`` in panel pixels, origin at the bottom row)."""
    angles = np.linspace(0.0, 2.0 * np.pi, max(16, int(2 * np.pi * radius)), endpoint=False)
    ny, nx = rgb.shape[:2]
    for xc, yc, colour in zip(x, y, colours):
        cols = np.round(xc + radius * np.cos(angles)).astype(int)
        rows = np.round(yc + radius * np.sin(angles)).astype(int)
        inside = (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny)
        rgb[rows[inside], cols[inside]] = colour


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an ``(ny, nx, 3)`` uint8 array as an 8-bit RGB PNG (first row at the top).

    Parameters
    ----------
    rgb : numpy.ndarray
        Image, uint8.

    Returns
    -------
    bytes
        PNG file content (W3C PNG specification: IHDR, one zlib IDAT (level 1: previews of noise compress little more at higher levels), IEND;
        filter type 0 on every row).
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    ny, nx = rgb.shape[:2]
    rows = np.concatenate([np.zeros((ny, 1), np.uint8), rgb.reshape(ny, nx * 3)], axis=1)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", nx, ny, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b"")


def preview_png(
    science: np.ndarray,
    reference: np.ndarray,
    difference: np.ndarray,
    score_corr: np.ndarray,
    candidates_x: np.ndarray,
    candidates_y: np.ndarray,
    candidates_positive: np.ndarray,
) -> bytes:
    """Four panels side by side with the candidates circled, as PNG bytes.

    Parameters
    ----------
    science, reference, difference, score_corr : numpy.ndarray
        Images on the science grid (NaN shown as 0).
    candidates_x, candidates_y : numpy.ndarray
        Candidate positions (0-based science pixels).
    candidates_positive : numpy.ndarray of bool
        Sign of each candidate's ``S_corr`` (circle colour).

    Returns
    -------
    bytes
    """
    panels = []
    factor = 1
    for image, asinh in ((science, True), (reference, True), (difference, False), (score_corr, False)):
        binned, factor = block_average(image, PANEL_MAX_SIDE)
        grey = _to_grey(binned, asinh=asinh)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        colours = [_POSITIVE if positive else _NEGATIVE for positive in np.asarray(candidates_positive, bool)]
        # Block i covers pixels [i f, (i + 1) f): its centre is at (i + 0.5) f - 0.5.
        px = (np.asarray(candidates_x, float) + 0.5) / factor - 0.5
        py = (np.asarray(candidates_y, float) + 0.5) / factor - 0.5
        _draw_circles(rgb, px, py, max(4.0, 8.0 / factor), colours)
        panels.append(rgb[::-1])  # row 0 of an image is its bottom; PNG rows go top down
    height = max(panel.shape[0] for panel in panels)
    width = sum(panel.shape[1] for panel in panels) + _GAP * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    column = 0
    for panel in panels:
        canvas[: panel.shape[0], column : column + panel.shape[1]] = panel
        column += panel.shape[1] + _GAP
    return encode_png(canvas)
