"""Vectorised cutout triplets and the ``cutouts`` product.

A real/bogus classifier sees three stamps per candidate, centred on the same
pixel of the science grid: the science image, the reference aligned onto the
science grid, and the difference image (Bloom et al. 2012; Goldstein et al.
2015; Duev et al. 2019, "braai"). :func:`extract_triplets` cuts them for all
candidates at once: interior stamps are gathered with one fancy index per
channel on a :func:`numpy.lib.stride_tricks.sliding_window_view` of each image
(no padded copy), in cache-sized blocks shared among threads; only the few
stamps that cross an edge are cut one by one. There is no Python loop per
interior cutout.

Centring follows :class:`astropy.nddata.Cutout2D` exactly: a stamp of odd side
``S`` around ``(x, y)`` is centred on pixel ``(ceil(x - 0.5), ceil(y - 0.5))``
(half-integers round down), so the stamps equal ``Cutout2D(..., mode="partial",
fill_value=nan)`` pixel for pixel (tested).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from astropy.table import Table

from skysift.errors import InputDataError
from skysift.io import ProductWriter, read_fits_image, read_table
from skysift.log import get_logger
from skysift.provenance import Provenance

__all__ = ["ALIGNED_REFERENCE_FILE", "CHANNELS", "Triplets", "extract_triplets", "make_cutouts", "write_cutout_product"]

log = get_logger(__name__)

#: Channel order of every cutout array in skysift (axis 1 of ``(N, 3, S, S)``).
CHANNELS = ("science", "reference", "difference")
#: Name of the aligned-reference image that :func:`make_cutouts` expects in a diffim directory.
ALIGNED_REFERENCE_FILE = "aligned_reference.fits"


class Triplets(NamedTuple):
    """Result of :func:`extract_triplets` (unpacks as ``cutouts, edge_mask``).

    Attributes
    ----------
    cutouts : numpy.ndarray
        ``(N, 3, S, S)`` float32, channels in :data:`CHANNELS` order; NaN
        where the stamp falls outside the image.
    edge_mask : numpy.ndarray
        ``(N, S, S)`` bool, True where the stamp falls outside the image or on
        a pixel flagged in the ``mask`` argument.
    """

    cutouts: np.ndarray
    edge_mask: np.ndarray

    @property
    def edge_fraction(self) -> np.ndarray:
        """Fraction of masked pixels per cutout, ``(N,)`` float32."""
        if self.edge_mask.size == 0:
            return np.zeros(len(self.edge_mask), dtype=np.float32)
        return self.edge_mask.mean(axis=(1, 2), dtype=np.float32)


def _centres(values: Any) -> np.ndarray:
    # Cutout2D: edges_min = ceil(pos - S/2), i.e. centre = ceil(pos - 0.5).
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if values.ndim != 1:
        raise ValueError(f"positions must be 1-D, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("positions must be finite")
    return np.ceil(values - 0.5).astype(np.intp)


#: Stamps gathered per block: 64 stamps of 63 x 63 float32 (1 MB) stay in cache.
_CHUNK = 64
#: Fewer interior stamps than this per thread are not worth a thread.
_MIN_STAMPS_PER_WORKER = 256


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def extract_triplets(
    science: np.ndarray,
    reference: np.ndarray,
    difference: np.ndarray,
    x: Any,
    y: Any,
    size: int = 63,
    mask: np.ndarray | None = None,
    *,
    fill_value: float = np.nan,
    workers: int | None = None,
) -> Triplets:
    """Cut ``size`` x ``size`` stamps of three aligned images around many positions.

    Parameters
    ----------
    science, reference, difference : numpy.ndarray
        2-D images on the same pixel grid (the reference already aligned onto
        the science grid), same shape.
    x, y : array-like
        0-based pixel positions (x = column), shape ``(N,)``.
    size : int
        Odd side of the stamps (pixels).
    mask : numpy.ndarray of bool, optional
        Bad pixels of the science grid (non-zero = bad), copied into ``edge_mask``.
    fill_value : float
        Value of the pixels outside the image (NaN by default; 0 is the other
        usual choice). They are flagged in ``edge_mask`` either way.
    workers : int, optional
        Threads that gather the stamps; default the CPUs this process may use.
        The result does not depend on it.

    Returns
    -------
    Triplets
        ``cutouts`` ``(N, 3, size, size)`` float32 and ``edge_mask``
        ``(N, size, size)`` bool. A position whose stamp misses the image
        entirely gives an all-``fill_value``, all-masked stamp.

    Raises
    ------
    ValueError
        If ``size`` is not a positive odd integer, the images differ in shape
        or are not 2-D, ``x`` and ``y`` differ in length or are not finite.

    Notes
    -----
    Centring matches :class:`astropy.nddata.Cutout2D` (``mode="partial"``):
    the stamp is centred on pixel ``ceil(x - 0.5)``; there is no
    sub-pixel resampling, so cutouts keep the noise properties of the images.
    Cost: ``N * 3 * size**2`` copied values, gathered by numpy's fancy
    indexing on a strided window view of each image in cache-sized blocks;
    no padded copy of the images is made (stamps that cross an edge are cut
    one by one). The blocks are shared among ``workers`` threads: numpy
    releases the GIL while copying, and one thread does not saturate the
    memory bandwidth.
    """
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"cutout size must be a positive odd integer (the stamp is centred on a pixel), got {size!r}")
    size = int(size)
    n_workers = _usable_cpus() if workers is None else int(workers)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    images = [np.asarray(image) for image in (science, reference, difference)]
    shape = images[0].shape
    if len(shape) != 2:
        raise ValueError(f"images must be 2-D, got shape {shape}")
    for name, image in zip(CHANNELS, images, strict=True):
        if image.shape != shape:
            raise ValueError(f"{name} image has shape {image.shape}, science has {shape}")
    if mask is not None and np.shape(mask) != shape:
        raise ValueError(f"mask has shape {np.shape(mask)}, images have {shape}")
    cx, cy = _centres(x), _centres(y)
    if cx.shape != cy.shape:
        raise ValueError(f"x and y differ in length ({cx.size} and {cy.size})")
    n = cx.size
    half = size // 2
    ny, nx = shape

    cutouts = np.empty((n, 3, size, size), dtype=np.float32)
    # np.zeros maps zero pages lazily: only stamps that cross an edge are written.
    edge_mask = np.zeros((n, size, size), dtype=bool)
    outside = (cx < -half) | (cx > nx - 1 + half) | (cy < -half) | (cy > ny - 1 + half)
    crosses = ((cx < half) | (cx > nx - 1 - half) | (cy < half) | (cy > ny - 1 - half)) & ~outside
    interior = np.flatnonzero(~(crosses | outside))

    # Interior stamps: gathered from a strided window view of each image (no
    # padded copy), in raster order so that overlapping stamps' rows are still
    # in cache, in chunks small enough that the gathered block is still in
    # cache when it is scattered back to the caller's order (about 2.5x faster
    # than one gather of everything).
    order = interior[np.lexsort((cx[interior], cy[interior]))]
    rows, columns = cy[order] - half, cx[order] - half
    windows = [np.lib.stride_tricks.sliding_window_view(image, (size, size)) for image in images]
    mask_windows = None if mask is None else np.lib.stride_tricks.sliding_window_view(np.asarray(mask, dtype=bool), (size, size))

    def gather(first: int, last: int) -> None:
        for start in range(first, last, _CHUNK):
            chunk = slice(start, min(start + _CHUNK, last))
            where = order[chunk]
            for channel, window in enumerate(windows):
                cutouts[where, channel] = window[rows[chunk], columns[chunk]]
            if mask_windows is not None:
                edge_mask[where] = mask_windows[rows[chunk], columns[chunk]]

    # numpy releases the GIL while it copies, so threads gathering disjoint
    # blocks of stamps scale with the cores (the copy is memory-bound; one
    # thread does not saturate the memory bus). Small batches stay inline.
    n_workers = min(n_workers, max(1, order.size // _MIN_STAMPS_PER_WORKER))
    pool = ThreadPoolExecutor(n_workers) if n_workers > 1 else None
    try:
        if pool is None:
            gather(0, order.size)
            pending = []
        else:
            # Contiguous blocks of the raster order, a few per worker so that an
            # unlucky thread does not leave the others idle.
            bounds = np.linspace(0, order.size, 4 * n_workers + 1).astype(int)
            pending = [pool.submit(gather, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        _cut_edge_stamps(images, mask, cutouts, edge_mask, np.flatnonzero(crosses), cx, cy, half, fill_value)
        for future in pending:
            future.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if outside.any():
        cutouts[outside] = fill_value
        edge_mask[outside] = True
    return Triplets(cutouts, edge_mask)


def _cut_edge_stamps(
    images: list[np.ndarray],
    mask: np.ndarray | None,
    cutouts: np.ndarray,
    edge_mask: np.ndarray,
    indices: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    half: int,
    fill_value: float,
) -> None:
    # Stamps that cross an edge (a few per cent in practice): one at a time,
    # fill everywhere, then the overlapping part of the image. Measured 4x
    # faster than one clipped fancy-index gather of all of them.
    size = 2 * half + 1
    ny, nx = images[0].shape
    for index in indices.tolist():
        y0, x0 = int(cy[index]) - half, int(cx[index]) - half
        top, bottom = max(0, -y0), min(size, ny - y0)
        left, right = max(0, -x0), min(size, nx - x0)
        cutouts[index] = fill_value
        for channel, image in enumerate(images):
            cutouts[index, channel, top:bottom, left:right] = image[y0 + top : y0 + bottom, x0 + left : x0 + right]
        stamp_mask = edge_mask[index]
        stamp_mask[...] = True
        stamp_mask[top:bottom, left:right] = False if mask is None else np.asarray(mask[y0 + top : y0 + bottom, x0 + left : x0 + right], dtype=bool)


def write_cutout_product(
    path: str | os.PathLike[str],
    cutouts: np.ndarray,
    table: Table,
    provenance: Provenance,
    *,
    edge_mask: np.ndarray | None = None,
    product_type: str = "cutouts",
    unit: str = "",
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write cutout triplets and their per-sample table as an HDF5 product.

    Parameters
    ----------
    path : str or path-like
        Destination ``.h5``.
    cutouts : numpy.ndarray
        ``(N, 3, S, S)`` float32 in :data:`CHANNELS` order.
    table : astropy.table.Table
        One row per cutout (candidate columns, ``x``, ``y``...); an
        ``edge_fraction`` column is added from ``edge_mask`` if absent.
    provenance : Provenance
        Provenance block.
    edge_mask : numpy.ndarray, optional
        ``(N, S, S)`` bool, stored as array ``edge_mask``.
    product_type : str
        ``"cutouts"`` (or ``"realbogus-training-set"`` for the training set).
    unit : str
        Unit of the ``cutout`` array ("" when the channels differ in unit, as
        science/reference in image units and a unit-variance ZOGY difference).
    attrs : mapping, optional
        Further ``meta.*`` attributes.

    Returns
    -------
    pathlib.Path
    """
    cutouts = np.asarray(cutouts, dtype=np.float32)
    if cutouts.ndim != 4 or cutouts.shape[1] != 3 or cutouts.shape[2] != cutouts.shape[3]:
        raise ValueError(f"cutouts must be (N, 3, S, S), got {cutouts.shape}")
    if len(table) != len(cutouts):
        raise ValueError(f"table has {len(table)} rows for {len(cutouts)} cutouts")
    table = Table(table, copy=False)
    if edge_mask is not None:
        edge_mask = np.asarray(edge_mask, dtype=bool)
        if edge_mask.shape != (len(cutouts), *cutouts.shape[2:]):
            raise ValueError(f"edge_mask must be {(len(cutouts), *cutouts.shape[2:])}, got {edge_mask.shape}")
        if "edge_fraction" not in table.colnames:
            table["edge_fraction"] = Triplets(cutouts, edge_mask).edge_fraction
    meta = {"channels": ",".join(CHANNELS), "cutout_size": int(cutouts.shape[-1]), **dict(attrs or {})}
    with ProductWriter(path, product_type, provenance, attrs=meta) as writer:
        writer.add_array(
            "cutout", cutouts.shape[1:], np.float32, unit=unit,
            description="triplets (science, aligned reference, difference), raw pixel values, NaN outside the image",
        )
        arrays: dict[str, np.ndarray] = {"cutout": cutouts}
        if edge_mask is not None:
            writer.add_array("edge_mask", edge_mask.shape[1:], bool, description="pixel outside the image or masked")
            arrays["edge_mask"] = edge_mask
        columns = {}
        for name in table.colnames:
            values = np.asarray(table[name])
            if values.ndim != 1:
                continue  # multidimensional candidate columns do not fit the per-sample table
            column_unit = "" if table[name].unit is None else table[name].unit.to_string()
            dtype = str if values.dtype.kind in ("U", "S", "O") else values.dtype
            writer.add_column(name, dtype, unit=column_unit, description=table[name].description or "")
            columns[name] = values
        writer.append(arrays, columns)
    return Path(path)


def make_cutouts(
    diffim_dir: str | os.PathLike[str],
    science_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    size: int = 63,
    aligned_reference_path: str | os.PathLike[str] | None = None,
    rule: str = "cutouts",
    config_digest: str = "",
) -> Path:
    """Cut triplets around every candidate of a diffim run and write the ``cutouts`` product.

    Parameters
    ----------
    diffim_dir : str or path-like
        Output directory of :func:`skysift.diffim.pipeline.run_diffim`; uses
        ``difference.fits``, ``candidates.ecsv`` and ``aligned_reference.fits``.
    science_path : str or path-like
        The science image given to ``run_diffim`` (the science channel holds
        its raw pixels, as survey alert stamps do).
    out_path : str or path-like
        Destination ``.h5``.
    size : int
        Odd stamp side.
    aligned_reference_path : str or path-like, optional
        Aligned reference image, if not ``diffim_dir/aligned_reference.fits``.
    rule, config_digest : str
        Provenance.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputDataError
        If a diffim product is missing or the images differ in shape.
    """
    diffim_dir = Path(diffim_dir)
    difference_path = diffim_dir / "difference.fits"
    candidates_path = diffim_dir / "candidates.ecsv"
    aligned_path = Path(aligned_reference_path) if aligned_reference_path is not None else diffim_dir / ALIGNED_REFERENCE_FILE
    for required in (difference_path, candidates_path, aligned_path):
        if not required.is_file():
            raise InputDataError(
                f"{required}: missing; make_cutouts needs difference.fits, candidates.ecsv and "
                f"{ALIGNED_REFERENCE_FILE} (DiffimResult.reference_aligned) from run_diffim"
            )
    science = read_fits_image(science_path)
    aligned = read_fits_image(aligned_path, allow_all_nan=True)
    difference = read_fits_image(difference_path, allow_all_nan=True)
    for image in (aligned, difference):
        if image.data.shape != science.data.shape:
            raise InputDataError(f"{image.path}: shape {image.data.shape} differs from {science.path} {science.data.shape}")
    candidates = read_table(candidates_path)
    triplets = extract_triplets(
        science.data, aligned.data, difference.data, candidates["x"], candidates["y"], size=size
    )
    table = Table(candidates, copy=True)
    table.meta.clear()
    provenance = Provenance.collect(
        rule=rule, inputs=[Path(science_path), aligned_path, difference_path, candidates_path], config_digest=config_digest
    )
    log.info("%s: %d triplets of %dx%d", diffim_dir, len(table), size, size)
    return write_cutout_product(
        out_path, triplets.cutouts, table, provenance, edge_mask=triplets.edge_mask,
        attrs={"science_unit": str(science.header.get("BUNIT", "")), "difference_unit": "sigma (ZOGY D)"},
    )
