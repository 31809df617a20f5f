"""Vectorised cutout triplets and the ``cutouts`` product.

A real/bogus classifier sees three stamps per candidate, centred on the same
pixel of the science grid: the science image, the reference aligned onto the
science grid, and the difference image (Bloom et al. 2012; Goldstein et al.
2015; Duev et al. 2019, "braai"). :func:`extract_triplets` cuts them for all
candidates at once: interior stamps are gathered with one fancy index per
channel on a view of each image whose items are the runs of ``S`` pixels along
its rows (no padded copy, one ``memcpy`` per stamp row), in cache-sized blocks
shared among threads and copied to the caller's order by a compiled loop; the
few stamps that cross an edge are cut by compiled loops. There is no Python
loop per cutout.

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

import numba
import numpy as np
from astropy.table import Table

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError, ProductError
from skysift.io import ProductWriter, read_fits_image, read_provenance, read_table
from skysift.log import get_logger, progress
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


#: Bytes of one channel's stamps gathered per block (66 stamps of 63 x 63
#: float32, 33 of float64): the block stays in cache (blocks of 64 float64
#: stamps measured ~10% slower with two threads).
_CHUNK_BYTES = 1 << 20
#: Bytes of triplets (and masks) that :func:`make_cutouts` cuts per batch into its reused buffer.
_BATCH_BYTES = 256 << 20
#: Fewer interior stamps than this per thread are not worth a thread.
_MIN_STAMPS_PER_WORKER = 256


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _StampRows(NamedTuple):
    """An image seen as overlapping runs of ``size`` pixels along its rows.

    ``rows[r * pitch + c]`` is the opaque (``numpy.void``) block of the
    ``size`` pixels ``image[r, c:c + size]``, for ``c <= nx - size``.
    """

    rows: np.ndarray
    dtype: np.dtype  # pixel type, to read gathered blocks back as pixels
    pitch: int  # pixels from one image row to the next

    @classmethod
    def of(cls, image: np.ndarray, size: int) -> _StampRows:
        """View ``image`` (no copy if its rows are contiguous, as in any crop of a C-ordered array)."""
        itemsize = image.itemsize
        row_stride, column_stride = image.strides
        if column_stride != itemsize or row_stride <= 0 or row_stride % itemsize:
            image = np.ascontiguousarray(image)
            row_stride = image.strides[0]
        pitch = row_stride // itemsize
        ny, nx = image.shape
        # The pixels from image[0, 0] to image[-1, -1] as one 1-D run (a crop
        # includes the pixels between its rows, which no stamp row reaches).
        run = np.lib.stride_tricks.as_strided(image, shape=((ny - 1) * pitch + nx,), strides=(itemsize,), writeable=False)
        windows = np.lib.stride_tricks.sliding_window_view(run, size)
        # One void item per stamp row: numpy's single-index fancy indexing then
        # copies each row with one memcpy, about 25% faster than indexing a 2-D
        # sliding window of the image, whose subspace loop steps pixel rows.
        return cls(windows.view(np.dtype((np.void, size * itemsize)))[:, 0], image.dtype, pitch)


@numba.njit(cache=True, nogil=True)
def _scatter_stamps(block: np.ndarray, stamps: np.ndarray, where: np.ndarray, channel: int) -> None:
    # stamps[where[k], channel] = block[k], cast to the type of stamps. A
    # plain loop that the compiler vectorises, measured ~15% faster than
    # numpy's fancy-index assignment, which memmoves each stamp (glibc's
    # "rep movsb" for 16 kB blocks is slow on AMD EPYC).
    pixels = block.shape[1]
    for k in range(where.size):
        stamp = stamps[where[k], channel]
        source = block[k]
        for i in range(pixels):
            stamp[i] = source[i]


def _gather_interior(
    channels: list[_StampRows],
    mask: _StampRows | None,
    size: int,
    x0: np.ndarray,
    y0: np.ndarray,
    where: np.ndarray,
    cutouts: np.ndarray,
    edge_mask: np.ndarray,
) -> None:
    # Stamp k (top-left pixel (y0[k], x0[k]), inside the image) goes to
    # cutouts[where[k]], in blocks of _CHUNK_BYTES: a gathered block is still
    # in cache when it is scattered to the caller's order and cast to float32
    # (by _scatter_stamps, which sees each stamp as a flat run of pixels).
    if where.size == 0:
        return
    stamps_per_block = max(1, _CHUNK_BYTES // (size * size * max(source.dtype.itemsize for source in channels)))
    cutouts_flat = cutouts.reshape(len(cutouts), 3, size * size)
    edge_mask_flat = edge_mask.reshape(len(edge_mask), 1, size * size)
    sources = channels if mask is None else [*channels, mask]
    pitches = {source.pitch for source in sources}
    row_offsets = np.arange(size)
    for first in range(0, where.size, stamps_per_block):
        chunk = slice(first, first + stamps_per_block)
        pixel_rows = (y0[chunk, None] + row_offsets).reshape(-1)
        pixel_columns = np.repeat(x0[chunk], size)
        row_starts = {pitch: pixel_rows * pitch + pixel_columns for pitch in pitches}
        stamps = where[chunk]
        for channel, source in enumerate(channels):
            block = source.rows[row_starts[source.pitch]].view(source.dtype)
            if block.dtype != np.float64:
                # The copy is compiled for float32 and float64 (what images
                # hold); other pixel types are cast here, still in cache.
                block = block.astype(np.float32, copy=False)
            _scatter_stamps(block.reshape(-1, size * size), cutouts_flat, stamps, channel)
        if mask is not None:
            block = mask.rows[row_starts[mask.pitch]].view(bool)
            _scatter_stamps(block.reshape(-1, size * size), edge_mask_flat, stamps, 0)


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
    out: Triplets | None = None,
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
    out : Triplets, optional
        Arrays to write into (C-contiguous ``(N, 3, size, size)`` float32 and
        ``(N, size, size)`` bool, e.g. views of one buffer reused batch after
        batch, as :func:`make_cutouts` does): fresh arrays otherwise. Every
        element is overwritten.

    Returns
    -------
    Triplets
        ``cutouts`` ``(N, 3, size, size)`` float32 and ``edge_mask``
        ``(N, size, size)`` bool (``out`` if given). A position whose stamp
        misses the image entirely gives an all-``fill_value``, all-masked stamp.

    Raises
    ------
    ValueError
        If ``size`` is not a positive odd integer, the images differ in shape
        or are not 2-D, ``x`` and ``y`` differ in length or are not finite, or
        ``out`` has the wrong shape, type or layout.

    Notes
    -----
    Centring matches :class:`astropy.nddata.Cutout2D` (``mode="partial"``):
    the stamp is centred on pixel ``ceil(x - 0.5)``; there is no
    sub-pixel resampling, so cutouts keep the noise properties of the images.
    Cost: ``N * 3 * size**2`` copied values, gathered stamp row by stamp row
    (one ``memcpy`` each) by numpy's fancy indexing on a view of each image,
    in cache-sized blocks that a compiled loop then copies to the output; no
    copy of the images is made unless their rows are not contiguous (stamps
    that cross an edge are cut by a compiled loop). The blocks are shared among
    ``workers`` threads: both copies release the GIL, and one thread does
    not saturate the memory bandwidth. Fresh output costs the kernel's
    zeroing of its pages on first touch (about a third of a call's time for
    10,000 stamps of 63 x 63): ``out`` avoids it when stamps come in batches.
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
    if mask is not None:
        if np.shape(mask) != shape:
            raise ValueError(f"mask has shape {np.shape(mask)}, images have {shape}")
        mask = np.asarray(mask, dtype=bool)  # once, for the interior and the edge stamps
    cx, cy = _centres(x), _centres(y)
    if cx.shape != cy.shape:
        raise ValueError(f"x and y differ in length ({cx.size} and {cy.size})")
    n = cx.size
    half = size // 2
    ny, nx = shape

    if out is None:
        cutouts = np.empty((n, 3, size, size), dtype=np.float32)
        # np.zeros maps zero pages lazily: only stamps that cross an edge are written.
        edge_mask = np.zeros((n, size, size), dtype=bool)
    else:
        cutouts, edge_mask = _checked_output(out, n, size)
        if mask is None:
            edge_mask[...] = False  # the interior stamps' masks are not written otherwise
    x0, y0 = cx - half, cy - half
    outside = (x0 <= -size) | (x0 >= nx) | (y0 <= -size) | (y0 >= ny)
    crosses = ((x0 < 0) | (x0 > nx - size) | (y0 < 0) | (y0 > ny - size)) & ~outside
    interior = np.flatnonzero(~(crosses | outside))

    # Interior stamps straight from the images (no padded copy), in raster
    # order so that the rows of overlapping stamps are still in cache.
    order = interior[np.argsort(y0[interior] * nx + x0[interior], kind="stable")]
    x0_order, y0_order = x0[order], y0[order]
    # (No view when no stamp is interior: the image may be smaller than a stamp.)
    channels = [_StampRows.of(image, size) for image in images] if order.size else []
    mask_rows = None if mask is None or not order.size else _StampRows.of(mask, size)

    def gather(first: int, last: int) -> None:
        _gather_interior(
            channels, mask_rows, size, x0_order[first:last], y0_order[first:last], order[first:last], cutouts, edge_mask
        )

    # numpy and the compiled copy release the GIL, so threads gathering
    # disjoint blocks of stamps scale with the cores. Small batches stay inline.
    n_workers = min(n_workers, max(1, order.size // _MIN_STAMPS_PER_WORKER))
    pool = ThreadPoolExecutor(n_workers) if n_workers > 1 else None
    try:
        if pool is None:
            gather(0, order.size)
            pending = []
        else:
            # Contiguous blocks of the raster order, a few per worker so that an
            # unlucky thread does not leave the others idle.
            bounds = np.linspace(0, order.size, 4 * n_workers + 1).astype(int).tolist()
            pending = [pool.submit(gather, a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        _cut_edge_stamps(images, mask, cutouts, edge_mask, np.flatnonzero(crosses), x0, y0, size, fill_value)
        for future in pending:
            future.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if outside.any():
        cutouts[outside] = fill_value
        edge_mask[outside] = True
    return Triplets(cutouts, edge_mask)


def _checked_output(out: Triplets, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``out``'s arrays, after checking that :func:`extract_triplets` can write ``n`` stamps into them."""
    cutouts, edge_mask = out
    for name, array, shape, dtype in (
        ("cutouts", cutouts, (n, 3, size, size), np.float32),
        ("edge_mask", edge_mask, (n, size, size), np.bool_),
    ):
        if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
            raise ValueError(
                f"out.{name} must be a {np.dtype(dtype).name} array of shape {shape}, got "
                f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"
            )
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"out.{name} must be C-contiguous and writeable")
    return cutouts, edge_mask


def _cut_edge_stamps(
    images: list[np.ndarray],
    mask: np.ndarray | None,
    cutouts: np.ndarray,
    edge_mask: np.ndarray,
    indices: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    size: int,
    fill_value: float,
) -> None:
    # Stamps that cross an edge (a few per cent in practice), in compiled loops: fill_value
    # and True in the mask outside the image, the pixels and the (bool) mask inside.
    # (Gathering them like interior stamps from padded copies of the edges measured no faster.)
    if indices.size == 0:
        return
    ny, nx = images[0].shape
    for channel, image in enumerate(images):
        _edge_stamps(_native_pixels(image), True, cutouts, channel, indices, x0, y0, size, np.float32(fill_value), ny, nx)
    has_mask = mask is not None
    mask_pixels = mask if has_mask else np.zeros((1, 1), dtype=bool)
    # Without a mask the pixels inside the image are unmasked (not ``outside``).
    stamp_masks = edge_mask.reshape(len(edge_mask), 1, size, size)
    _edge_stamps(mask_pixels, has_mask, stamp_masks, 0, indices, x0, y0, size, True, ny, nx)


def _native_pixels(image: np.ndarray) -> np.ndarray:
    """``image`` itself if the compiled loops read it as it is (native float), else a float32 copy."""
    if image.dtype.kind == "f" and image.dtype.isnative and image.dtype.itemsize in (4, 8):
        return image
    return np.asarray(image, dtype=np.float32)


@numba.njit(cache=True, nogil=True)
def _edge_stamps(source, use_source, stamps, channel, indices, x0, y0, size, outside, ny, nx):
    # For n in indices, stamps[n, channel] = ``outside`` beyond the ny x nx image, and inside it
    # the source's pixels around (y0[n], x0[n]) (or not ``outside`` when use_source is False).
    # Row slices of C-ordered stamps, which compile to straight copies (a loop per pixel, or a
    # strided view of one channel, measured 10-50% slower).
    inside = not outside
    for k in range(indices.size):
        n = indices[k]
        top, left = y0[n], x0[n]
        first = min(max(0, -left), size)
        last = max(min(size, nx - left), first)
        stamp = stamps[n, channel]
        for i in range(size):
            row = top + i
            line = stamp[i]
            if row < 0 or row >= ny:
                line[:] = outside
                continue
            line[:first] = outside
            if use_source:
                line[first:last] = source[row, left + first : left + last]
            else:
                line[first:last] = inside
            line[last:] = outside


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
        columns = _declare_cutouts(writer, int(cutouts.shape[-1]), table, edge_mask is not None, unit)
        arrays = {"cutout": cutouts} if edge_mask is None else {"cutout": cutouts, "edge_mask": edge_mask}
        writer.append(arrays, columns)
    return Path(path)


def _declare_cutouts(
    writer: ProductWriter, size: int, table: Table, with_edge_mask: bool, unit: str
) -> dict[str, np.ndarray]:
    """Declare a cutouts product's arrays and the table's 1-D columns; returns those columns' values."""
    writer.add_array(
        "cutout", (3, size, size), np.float32, unit=unit,
        description="triplets (science, aligned reference, difference), raw pixel values, NaN outside the image",
    )  # fmt: skip
    if with_edge_mask:
        writer.add_array("edge_mask", (size, size), bool, description="pixel outside the image or masked")
    columns = {}
    for name in table.colnames:
        values = np.asarray(table[name])
        if values.ndim != 1:
            continue  # multidimensional candidate columns do not fit the per-sample table
        column_unit = "" if table[name].unit is None else table[name].unit.to_string()
        dtype = str if values.dtype.kind in ("U", "S", "O") else values.dtype
        writer.add_column(name, dtype, unit=column_unit, description=table[name].description or "")
        columns[name] = values
    return columns


def _check_same_science(difference_path: Path, science_path: Path) -> None:
    """Refuse a diffim directory whose difference image was made from another science image.

    The difference product records the sha256 of its inputs; a science image
    whose checksum is not among them belongs to another pair.
    """
    from skysift.provenance import sha256_file

    try:
        recorded = read_provenance(difference_path).inputs
    except (ProductError, InputDataError, KeyError, ValueError):
        return  # a difference image from elsewhere (no provenance): nothing to compare
    if recorded and sha256_file(science_path) not in recorded.values():
        raise InputDataError(
            f"{difference_path}: made from {', '.join(sorted(recorded))}, not from the science image {science_path} "
            "(a diffim directory of another pair?)"
        )


def make_cutouts(
    diffim_dir: str | os.PathLike[str],
    science_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    cutout_size: int = 63,
    aligned_reference_path: str | os.PathLike[str] | None = None,
    context: RunContext | None = None,
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
    cutout_size : int
        Odd stamp side.
    aligned_reference_path : str or path-like, optional
        Aligned reference image, if not ``diffim_dir/aligned_reference.fits``.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputDataError
        If a diffim product is missing, the images differ in shape, or the
        diffim products were made from another science image.
    """
    size = cutout_size
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
    _check_same_science(difference_path, Path(science_path))
    candidates = read_table(candidates_path)
    table = Table(candidates, copy=True)
    table.meta.clear()
    table["edge_fraction"] = np.zeros(len(table), dtype=np.float32)  # filled batch by batch below
    provenance = resolve_context(context, "cutouts").provenance(inputs=[Path(science_path), aligned_path, difference_path, candidates_path])
    log.info("%s: %d triplets of %dx%d", diffim_dir, len(table), size, size)
    meta = {
        "channels": ",".join(CHANNELS), "cutout_size": size,
        "science_unit": str(science.header.get("BUNIT", "")), "difference_unit": "sigma (ZOGY D)",
    }  # fmt: skip
    # Batches into one reused buffer: memory stays bounded however many candidates there are, and
    # the buffer's pages are zeroed by the kernel once rather than for every stamp.
    batch = max(1, min(len(table), _BATCH_BYTES // (size * size * (3 * 4 + 1))))
    buffer = Triplets(np.empty((batch, 3, size, size), dtype=np.float32), np.empty((batch, size, size), dtype=bool))
    x, y = np.asarray(candidates["x"]), np.asarray(candidates["y"])
    with ProductWriter(out_path, "cutouts", provenance, attrs=meta) as writer:
        columns = _declare_cutouts(writer, size, table, True, "")
        for first in progress(range(0, len(table), batch), desc="cutouts", unit="batch"):
            rows = slice(first, first + batch)
            n = len(x[rows])
            triplets = extract_triplets(
                science.data, aligned.data, difference.data, x[rows], y[rows], size=size,
                out=Triplets(buffer.cutouts[:n], buffer.edge_mask[:n]),
            )  # fmt: skip
            part = {name: values[rows] for name, values in columns.items()}
            part["edge_fraction"] = triplets.edge_fraction
            writer.append({"cutout": triplets.cutouts, "edge_mask": triplets.edge_mask}, part)
    return Path(out_path)
