"""Reading inputs and writing skysift data products: the only module that touches files.

Two product kinds exist (``docs/data-products.md`` is the specification):

* **HDF5 products** (:func:`write_product`, :class:`ProductWriter`,
  :func:`read_product`, :func:`open_product`): chunked, compressed arrays with
  samples along the first axis under ``/data``, one per-sample table of
  parameters and labels under ``/samples``, units in attributes and the
  :class:`~skysift.provenance.Provenance` block in the root attributes.
* **FITS images** (:func:`write_fits_image`, :func:`read_fits_image`) carrying
  the same provenance as header keywords.

Every write is atomic: data go to a hidden temporary file in the destination
directory, which is flushed, synced and renamed over the destination only when
complete, so a killed job never leaves a partial file at the output path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skysift.errors import InputDataError, ProductError
from skysift.provenance import Provenance

if TYPE_CHECKING:  # h5py is imported where HDF5 is read or written: FITS-only jobs skip its import
    import h5py
    # astropy likewise where FITS, WCS or tables are used (~0.5 s of CPU per process that
    # only writes HDF5 products, such as the lens and GW training-set stages).
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

__all__ = [
    "PRODUCT_FORMAT",
    "PRODUCT_FORMAT_VERSION",
    "FitsImage",
    "Product",
    "ProductFile",
    "ProductWriter",
    "atomic_directory",
    "atomic_output",
    "open_product",
    "read_fits_image",
    "read_image_extensions",
    "read_path_list",
    "read_product",
    "read_provenance",
    "read_table",
    "save_figure",
    "write_fits_image",
    "write_path_list",
    "write_product",
    "write_table",
]

PRODUCT_FORMAT = "skysift-product"
PRODUCT_FORMAT_VERSION = 1
#: Target uncompressed chunk size; HDF5 recommends tens of kB to about 1 MB.
_CHUNK_TARGET_BYTES = 1 << 20
#: gzip level of products, with the shuffle filter. On GW-like whitened strain level 1
#: stores 0.861 of the raw size (level 4: 0.856) and writes at 45 MB/s (level 4: 37);
#: both decompress at 380-470 MB/s on one core, far above what training consumes
#: (16 MB/s for the GW model at 1,000 samples/s); lzf + shuffle stores 0.932 and reads
#: at 224 MB/s. ``benchmarks/training_throughput.py --filters``, 2-core machine.
_GZIP_LEVEL = 1
#: Table rows :class:`ProductWriter` holds before writing its columns: each column write
#: costs ~0.3 ms of HDF5 calls, more than a 512-sample batch of 60 columns is worth.
_COLUMN_BUFFER_ROWS = 1 << 16


# ---------------------------------------------------------------------------
# Atomic output
# ---------------------------------------------------------------------------
def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    The temporary file lives in the destination directory (so the final
    :func:`os.replace` is an atomic rename on POSIX filesystems) under a hidden
    name ``.<name>.tmp-<pid>-<token>``. On an exception it is removed; if the
    process is killed, the destination is untouched.

    Parameters
    ----------
    path : str or path-like
        Final destination. Its parent directory is created if needed.

    Yields
    ------
    pathlib.Path
        Where to write.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield temporary
        if not temporary.exists():
            raise ProductError(f"{final}: writer produced no file")
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, final)
        _fsync_directory(final.parent)
    finally:
        if temporary.exists():
            temporary.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_stale_staging(final: Path) -> None:
    """Remove staging directories of ``final`` left by killed processes (hidden siblings)."""
    for kind in ("tmp", "old"):
        for candidate in final.parent.glob(f".{final.name}.{kind}-*"):
            try:
                pid = int(candidate.name.rsplit("-", 2)[-2])
            except (IndexError, ValueError):
                continue
            if candidate.is_dir() and not _pid_alive(pid):
                shutil.rmtree(candidate, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], names: Sequence[str] | Iterator[str]) -> Iterator[Path]:
    """Yield a staging directory whose files replace those of directory ``path`` all together, or not at all.

    The staging directory is a hidden sibling of ``path``
    (``.<name>.tmp-<pid>-<token>``), on the same filesystem, so moving it into
    place is a rename. If the block fails, or the process is killed, ``path``
    is untouched (a killed run's staging directory is removed by the next run).

    Parameters
    ----------
    path : str or path-like
        Output directory.
    names : sequence of str
        File names the block writes (the product set). An existing ``path``
        that holds only these names (an earlier run's products) is replaced as
        a whole.

    Yields
    ------
    pathlib.Path
        Where to write the files.

    Notes
    -----
    An absent or empty ``path`` is replaced by one :func:`os.replace` of the
    directory (atomic on POSIX). One holding an earlier product set is first
    renamed aside, so that a kill between the two renames leaves no product
    at ``path`` rather than a mixture. One holding other files too cannot be
    swapped without moving those: the files are then renamed one by one, and
    only each file is atomic.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(final)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    staging = final.parent / f".{final.name}.tmp-{token}"
    staging.mkdir()
    names = set(names)
    try:
        yield staging
        for file in staging.iterdir():
            with open(file, "rb+") as stream:
                os.fsync(stream.fileno())
        _fsync_directory(staging)
        existing = set(os.listdir(final)) if final.is_dir() else set()
        if not existing:
            os.replace(staging, final)
        elif existing <= names:
            aside = final.parent / f".{final.name}.old-{token}"
            os.replace(final, aside)
            os.replace(staging, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            for file in staging.iterdir():
                os.replace(file, final / file.name)
        _fsync_directory(final.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_path_list(paths: Iterable[str | os.PathLike[str]], path: str | os.PathLike[str]) -> Path:
    """Write ``paths`` to ``path`` (atomically), one per line.

    For lists of files longer than a command line holds: the kernel limits one
    argument, and so a whole ``bash -c`` command, to 128 KiB (about 2,000
    product paths).

    Raises
    ------
    ValueError
        If a path contains a newline.
    """
    lines = [os.fspath(item) for item in paths]
    if any("\n" in line for line in lines):
        raise ValueError(f"{path}: a path with a newline cannot be listed one per line")
    with atomic_output(path) as temporary:
        temporary.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return Path(path)


def read_path_list(path: str | os.PathLike[str]) -> list[Path]:
    """The paths of a :func:`write_path_list` file, in order (blank lines skipped).

    Raises
    ------
    InputDataError
        If the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the list of paths ({exc.strerror or exc})") from None
    return [Path(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# FITS images
# ---------------------------------------------------------------------------
@dataclass
class FitsImage:
    """A 2-D image read from FITS.

    Attributes
    ----------
    data : numpy.ndarray
        Image as float64 (native byte order); NaN where the file has NaN.
    header : astropy.io.fits.Header
        Header of the image HDU.
    wcs : astropy.wcs.WCS or None
        Celestial WCS, or None if the header has none.
    path : pathlib.Path
        File it came from (for error messages downstream).
    hdu : int
        Index of the HDU read.
    """

    data: np.ndarray
    header: fits.Header
    wcs: WCS | None
    path: Path
    hdu: int


def _celestial_wcs(header: fits.Header) -> WCS | None:
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        # Headers from real surveys often trigger FITSFixedWarning (date
        # normalisation and the like); those are harmless and expected.
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, relax=True)
    if not wcs.has_celestial:
        return None
    return wcs.celestial


def read_fits_image(
    path: str | os.PathLike[str],
    *,
    hdu: int | None = None,
    require_wcs: bool = False,
    allow_all_nan: bool = False,
) -> FitsImage:
    """Read a 2-D image from a FITS file, with clear errors for bad input.

    Parameters
    ----------
    path : str or path-like
        FITS file.
    hdu : int, optional
        HDU index; by default the first HDU holding image data.
    require_wcs : bool
        Raise if the header has no celestial WCS.
    allow_all_nan : bool
        Accept an image whose pixels are all non-finite.

    Returns
    -------
    FitsImage

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        If the file is unreadable or corrupt, holds no image, the image is not
        2-D, is empty or all NaN, or lacks a WCS when ``require_wcs`` is set.
        The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FITS file")
    from astropy.io import fits

    try:
        # Open the stream ourselves: astropy leaks its handle when parsing fails.
        with path.open("rb") as stream, fits.open(stream, memmap=False) as hdul:
            hdul.verify("silentfix+ignore")
            if hdu is None:
                candidates = [i for i, h in enumerate(hdul) if h.is_image and h.data is not None]
                if not candidates:
                    raise InputDataError(f"{path}: no HDU holds image data")
                index = candidates[0]
            else:
                if hdu >= len(hdul):
                    raise InputDataError(f"{path}: HDU {hdu} requested but the file has {len(hdul)}")
                index = hdu
            header = hdul[index].header.copy()
            raw = hdul[index].data
    except InputDataError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError on corrupt files
        raise InputDataError(f"{path}: unreadable FITS file ({type(exc).__name__}: {exc})") from exc
    if raw is None:
        raise InputDataError(f"{path}: HDU {index} holds no image data")
    data = np.asarray(raw)
    if data.ndim != 2:
        raise InputDataError(f"{path}: expected a 2-D image, HDU {index} has shape {data.shape}")
    if data.size == 0:
        raise InputDataError(f"{path}: image in HDU {index} is empty")
    data = data.astype(np.float64)
    if not allow_all_nan and not np.isfinite(data).any():
        raise InputDataError(f"{path}: every pixel of HDU {index} is NaN or infinite")
    wcs = _celestial_wcs(header)
    if require_wcs and wcs is None:
        raise InputDataError(f"{path}: no celestial WCS in the header of HDU {index}")
    return FitsImage(data=data, header=header, wcs=wcs, path=path, hdu=index)


def read_image_extensions(path: str | os.PathLike[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the named image extensions of a FITS file that are present (``ERR``, ``WHT``, ``DQ``...).

    Parameters
    ----------
    path : str or path-like
        FITS file.
    names : sequence of str
        ``EXTNAME`` values to look for (case-insensitive).

    Returns
    -------
    dict of str to numpy.ndarray
        float64 arrays by upper-case name, for the extensions that exist and
        hold 2-D data; absent names are left out.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        If the file is unreadable, or a named extension is not a 2-D image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FITS file")
    from astropy.io import fits

    wanted = {name.upper() for name in names}
    found: dict[str, np.ndarray] = {}
    try:
        with path.open("rb") as stream, fits.open(stream, memmap=False) as hdul:
            for index, hdu in enumerate(hdul):
                name = str(hdu.name).upper()
                if name not in wanted or name in found or index == 0 or not hdu.is_image or hdu.data is None:
                    continue
                data = np.asarray(hdu.data)
                if data.ndim != 2:
                    raise InputDataError(f"{path}: extension {name} has shape {data.shape}, expected a 2-D image")
                found[name] = data.astype(np.float64)
    except InputDataError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError on corrupt files
        raise InputDataError(f"{path}: unreadable FITS file ({type(exc).__name__}: {exc})") from exc
    return found


def _big_endian(array: np.ndarray) -> np.ndarray:
    """``array`` in FITS byte order, copied when it is not already big-endian.

    Given a writeable little-endian array, astropy swaps its bytes in place for
    the write and back afterwards: another thread reading the same array
    meanwhile (the diffim products are written concurrently with their
    preview) sees garbage. A big-endian copy leaves the caller's array alone.
    """
    if array.dtype.byteorder in ("|", ">") or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        return array
    return array.astype(array.dtype.newbyteorder(">"))


def write_fits_image(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    provenance: Provenance,
    wcs: WCS | None = None,
    header: fits.Header | Mapping[str, Any] | None = None,
    unit: str | None = None,
    extensions: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a 2-D image (and optional named image extensions) atomically.

    Parameters
    ----------
    path : str or path-like
        Destination.
    data : numpy.ndarray
        2-D image for the primary HDU.
    provenance : Provenance
        Written as ``SS*`` header keywords (see :meth:`Provenance.to_fits_cards`).
    wcs : astropy.wcs.WCS, optional
        World coordinate system written into the header.
    header : Header or mapping, optional
        Further keywords.
    unit : str, optional
        ``BUNIT`` value.
    extensions : mapping of str to ndarray, optional
        Extra image HDUs by ``EXTNAME`` (for example a mask or variance).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    from astropy.io import fits

    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{path}: FITS image products are 2-D, got shape {data.shape}")
    primary_header = fits.Header()
    if wcs is not None:
        primary_header.update(wcs.to_header(relax=True))
    if isinstance(header, fits.Header):
        primary_header.update(header)  # keeps the cards' comments
    elif header is not None:
        for key, value in dict(header).items():
            primary_header[key] = value
    if unit is not None:
        primary_header["BUNIT"] = unit
    for keyword, value, comment in provenance.to_fits_cards():
        primary_header[keyword] = (value, comment)
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU(data=_big_endian(data), header=primary_header)]
    for name, array in (extensions or {}).items():
        extension_header = fits.Header()
        if wcs is not None:
            extension_header.update(wcs.to_header(relax=True))
        hdus.append(fits.ImageHDU(data=_big_endian(np.asarray(array)), header=extension_header, name=name.upper()))
    with atomic_output(path) as temporary:
        fits.HDUList(hdus).writeto(temporary, output_verify="exception")
    return Path(path)


# ---------------------------------------------------------------------------
# HDF5 products
# ---------------------------------------------------------------------------
def _chunk_samples(sample_shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Samples per chunk: a power of two near ``_CHUNK_TARGET_BYTES``.

    Powers of two make the chunks of every array of a product line up (the
    largest row count divides by the others), so a training data loader that
    reads blocks of whole chunks (:class:`skysift.train.data.ChunkStream`)
    decompresses each chunk of each array once.
    """
    per_sample = max(1, int(np.prod(sample_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    rows = max(1, min(4096, _CHUNK_TARGET_BYTES // per_sample))
    return 1 << (int(rows).bit_length() - 1)


def _column_dtype(values: np.ndarray) -> Any:
    import h5py
    if values.dtype.kind in ("U", "S", "O"):
        return h5py.string_dtype(encoding="utf-8")
    if values.dtype.kind == "b":
        return np.bool_
    return values.dtype


class ProductWriter:
    """Write an HDF5 product incrementally, in batches of samples.

    Arrays (under ``/data``) and table columns (under ``/samples``) are
    declared first, then filled with :meth:`append`; every array and column
    must have the same number of samples when the writer closes. Nothing is
    visible at ``path`` until :meth:`close` succeeds (use it as a context
    manager: an exception discards the file). Column batches are held in
    memory and written :data:`_COLUMN_BUFFER_ROWS` rows at a time (and at
    :meth:`close`): one HDF5 write per column costs more than a small batch.

    Parameters
    ----------
    path : str or path-like
        Destination ``.h5`` file.
    product_type : str
        What the product holds (``"truth"``, ``"cutouts"``, ``"training-set"``...).
    provenance : Provenance
        Provenance block for the root attributes.
    attrs : mapping, optional
        Further root attributes (scalars or strings), stored as ``meta.<key>``.
    compression_level : int or None
        gzip level (0-9) of every dataset (with the shuffle filter on arrays);
        None: no filter (chunked, stored as is; readers need nothing else). For
        data that barely compresses (noisy float32 images), level 0 still runs
        every chunk through shuffle and stored deflate blocks: ~2x the write
        CPU and ~15x the read CPU of no filter.

    Examples
    --------
    >>> with ProductWriter("cutouts.h5", "cutouts", prov) as writer:  # doctest: +SKIP
    ...     writer.add_array("cutout", (3, 63, 63), "float32", unit="adu")
    ...     writer.add_column("x", "float64", unit="pix")
    ...     writer.append({"cutout": batch}, {"x": xs})
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        product_type: str,
        provenance: Provenance,
        *,
        attrs: Mapping[str, Any] | None = None,
        compression_level: int | None = _GZIP_LEVEL,
    ) -> None:
        import h5py
        self.path = Path(path)
        self._context = atomic_output(self.path)
        self._temporary = self._context.__enter__()
        self._compression_level = compression_level
        self._file = h5py.File(self._temporary, "w")
        self._file.attrs["skysift.format"] = PRODUCT_FORMAT
        self._file.attrs["skysift.format_version"] = PRODUCT_FORMAT_VERSION
        self._file.attrs["product_type"] = product_type
        for key, value in provenance.to_hdf5_attrs().items():
            self._file.attrs[key] = value
        for key, value in (attrs or {}).items():
            self._file.attrs[f"meta.{key}"] = value
        self._data = self._file.create_group("data")
        self._samples = self._file.create_group("samples")
        # Column batches not yet written (see _COLUMN_BUFFER_ROWS), by column.
        self._pending: dict[str, list[np.ndarray]] = {}
        self._pending_rows: dict[str, int] = {}
        self._closed = False

    def _filters(self, *, shuffle: bool) -> dict[str, Any]:
        """``create_dataset`` keywords of the filters: gzip at the writer's level (and shuffle), or none."""
        if self._compression_level is None:
            return {}
        return {"compression": "gzip", "compression_opts": self._compression_level, "shuffle": shuffle}

    # declaration ------------------------------------------------------------
    def add_array(
        self,
        name: str,
        sample_shape: Sequence[int],
        dtype: Any,
        *,
        unit: str = "",
        description: str = "",
    ) -> None:
        """Declare an array dataset of shape ``(n_samples, *sample_shape)``."""
        sample_shape = tuple(int(s) for s in sample_shape)
        dtype = np.dtype(dtype)
        chunk = (_chunk_samples(sample_shape, dtype), *sample_shape)
        dataset = self._data.create_dataset(
            name,
            shape=(0, *sample_shape),
            maxshape=(None, *sample_shape),
            dtype=dtype,
            chunks=chunk,
            **self._filters(shuffle=True),
        )
        dataset.attrs["unit"] = unit
        dataset.attrs["description"] = description

    def add_column(self, name: str, dtype: Any, *, unit: str = "", description: str = "") -> None:
        """Declare a per-sample table column (1-D, one value per sample)."""
        import h5py
        if dtype is str or np.dtype(dtype).kind in ("U", "S", "O"):
            h5_dtype = h5py.string_dtype(encoding="utf-8")
        else:
            h5_dtype = np.dtype(dtype)
        dataset = self._samples.create_dataset(
            name,
            shape=(0,),
            maxshape=(None,),
            dtype=h5_dtype,
            chunks=(4096,),
            **self._filters(shuffle=False),
        )
        dataset.attrs["unit"] = unit
        dataset.attrs["description"] = description
        self._pending[name], self._pending_rows[name] = [], 0

    # filling -----------------------------------------------------------------
    @staticmethod
    def _extend(dataset: h5py.Dataset, values: np.ndarray, label: str) -> None:
        if values.shape[1:] != dataset.shape[1:]:
            raise ValueError(
                f"{label}: batch has per-sample shape {values.shape[1:]}, declared {dataset.shape[1:]}"
            )
        start = dataset.shape[0]
        dataset.resize(start + values.shape[0], axis=0)
        dataset[start:] = values

    def append(
        self,
        arrays: Mapping[str, np.ndarray] | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a batch of samples to declared arrays and columns."""
        for name, values in (arrays or {}).items():
            if name not in self._data:
                raise KeyError(f"array {name!r} was not declared with add_array")
            self._extend(self._data[name], np.asarray(values), f"array {name!r}")
        for name, values in (columns or {}).items():
            if name not in self._pending:
                raise KeyError(f"column {name!r} was not declared with add_column")
            values = np.asarray(values)
            if values.ndim != 1:
                raise ValueError(f"column {name!r}: batch has per-sample shape {values.shape[1:]}, declared ()")
            if values.dtype.kind in ("U", "S", "O"):
                values = values.astype(object)
            self._pending[name].append(values)
            self._pending_rows[name] += len(values)
            if self._pending_rows[name] >= _COLUMN_BUFFER_ROWS:
                self._flush_column(name)

    def _flush_column(self, name: str) -> None:
        """Write the buffered batches of column ``name`` in one HDF5 call."""
        if self._pending[name]:
            self._extend(self._samples[name], np.concatenate(self._pending[name]), f"column {name!r}")
        self._pending[name], self._pending_rows[name] = [], 0

    # closing -----------------------------------------------------------------
    def close(self) -> Path:
        """Check sample counts, finish the file and move it to ``path``.

        Raises
        ------
        ProductError
            If arrays and columns disagree on the number of samples.
        """
        if self._closed:
            return self.path
        try:
            for name in self._pending:
                self._flush_column(name)
        except Exception:
            self.abort()
            raise
        lengths = {f"data/{k}": v.shape[0] for k, v in self._data.items()}
        lengths.update({f"samples/{k}": v.shape[0] for k, v in self._samples.items()})
        if len(set(lengths.values())) > 1:
            self.abort()
            raise ProductError(f"{self.path}: datasets disagree on the number of samples: {lengths}")
        self._file.attrs["n_samples"] = next(iter(lengths.values()), 0)
        self._file.close()
        self._closed = True
        self._context.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Discard everything written; nothing appears at ``path``."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(Exception):
            self._context.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> ProductWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _as_columns(table: Table | Mapping[str, Any] | None) -> dict[str, tuple[np.ndarray, str, str]]:
    """Normalise a table to ``{name: (values, unit, description)}``."""
    if table is None:
        return {}
    # Only an imported astropy makes Tables: no import for plain mappings.
    astropy_table = sys.modules.get("astropy.table")
    if astropy_table is not None and isinstance(table, astropy_table.Table):
        return {
            name: (
                np.asarray(table[name]),
                "" if table[name].unit is None else table[name].unit.to_string(),
                table[name].description or "",
            )
            for name in table.colnames
        }
    return {name: (np.asarray(values), "", "") for name, values in table.items()}


def write_product(
    path: str | os.PathLike[str],
    *,
    product_type: str,
    provenance: Provenance,
    arrays: Mapping[str, np.ndarray] | None = None,
    table: Table | Mapping[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a whole HDF5 product in one call (atomically).

    Parameters
    ----------
    path : str or path-like
        Destination ``.h5`` file.
    product_type : str
        What the product holds.
    provenance : Provenance
        Provenance block.
    arrays : mapping of str to ndarray, optional
        Datasets with samples along axis 0.
    table : astropy.table.Table or mapping, optional
        Per-sample parameters and labels; column units are taken from an
        astropy Table or from ``units``.
    units, descriptions : mapping of str to str, optional
        Units and descriptions by array or column name (override the table's).
    attrs : mapping, optional
        Further root attributes.

    Returns
    -------
    pathlib.Path
    """
    units = dict(units or {})
    descriptions = dict(descriptions or {})
    columns = _as_columns(table)
    arrays = {name: np.asarray(values) for name, values in (arrays or {}).items()}
    with ProductWriter(path, product_type, provenance, attrs=attrs) as writer:
        for name, values in arrays.items():
            if values.ndim == 0:
                raise ValueError(f"array {name!r} needs a leading sample axis, got a scalar")
            writer.add_array(
                name,
                values.shape[1:],
                values.dtype,
                unit=units.get(name, ""),
                description=descriptions.get(name, ""),
            )
        for name, (values, unit, description) in columns.items():
            if values.ndim != 1:
                raise ValueError(f"table column {name!r} must be 1-D, got shape {values.shape}")
            writer.add_column(
                name,
                _column_dtype(values),
                unit=units.get(name, unit),
                description=descriptions.get(name, description),
            )
        writer.append(arrays, {name: values for name, (values, _, _) in columns.items()})
    return Path(path)


@dataclass
class Product:
    """An HDF5 product loaded into memory (see :func:`read_product`)."""

    product_type: str
    arrays: dict[str, np.ndarray]
    table: Table
    provenance: Provenance
    units: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table) if len(self.table.colnames) else next(
            (len(a) for a in self.arrays.values()), 0
        )


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


class ProductFile:
    """An open HDF5 product with lazy access (see :func:`open_product`).

    ``arrays[name]`` are :class:`h5py.Dataset` objects sliced on demand, which
    is what data loaders need for training sets larger than memory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import h5py
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such product file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise ProductError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        attrs = {k: _decode(v) for k, v in self._file.attrs.items()}
        if attrs.get("skysift.format") != PRODUCT_FORMAT:
            self._file.close()
            raise ProductError(f"{self.path}: not a skysift product (no 'skysift.format' attribute)")
        version = int(attrs.get("skysift.format_version", -1))
        if version > PRODUCT_FORMAT_VERSION:
            self._file.close()
            raise ProductError(
                f"{self.path}: product format version {version} is newer than this skysift "
                f"reads ({PRODUCT_FORMAT_VERSION}); upgrade skysift"
            )
        try:
            self.provenance = Provenance.from_hdf5_attrs(attrs)
        except (ValueError, KeyError) as exc:
            self._file.close()
            raise ProductError(f"{self.path}: bad provenance block ({exc})") from exc
        self.product_type: str = attrs.get("product_type", "")
        self.attrs = {k[len("meta.") :]: v for k, v in attrs.items() if k.startswith("meta.")}
        self.n_samples = int(attrs.get("n_samples", 0))
        self.arrays: dict[str, h5py.Dataset] = dict(self._file["data"].items())

    @property
    def units(self) -> dict[str, str]:
        """Units of every array and column by name (empty string: dimensionless)."""
        found = {name: _decode(ds.attrs.get("unit", "")) for name, ds in self.arrays.items()}
        found.update({name: _decode(ds.attrs.get("unit", "")) for name, ds in self._file["samples"].items()})
        return found

    def read_table(self) -> Table:
        """Return the per-sample table as an astropy Table with units."""
        import h5py
        from astropy.table import Table

        table = Table()
        for name, dataset in self._file["samples"].items():
            values = dataset[()]
            if h5py.check_string_dtype(dataset.dtype) is not None:
                values = np.array([_decode(v) for v in values], dtype=str)
            unit = _decode(dataset.attrs.get("unit", "")) or None
            table[name] = values
            if unit:
                table[name].unit = unit
            table[name].description = _decode(dataset.attrs.get("description", "")) or None
        return table

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()

    def __len__(self) -> int:
        return self.n_samples

    def __enter__(self) -> ProductFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_product(path: str | os.PathLike[str]) -> ProductFile:
    """Open an HDF5 product for lazy reading (use as a context manager).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ProductError
        If it is not a readable skysift product.
    """
    return ProductFile(path)


def read_product(path: str | os.PathLike[str]) -> Product:
    """Read a whole HDF5 product into memory.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ProductError
        If it is not a readable skysift product.
    """
    with open_product(path) as handle:
        return Product(
            product_type=handle.product_type,
            arrays={name: dataset[()] for name, dataset in handle.arrays.items()},
            table=handle.read_table(),
            provenance=handle.provenance,
            units=handle.units,
            attrs=handle.attrs,
        )


# ---------------------------------------------------------------------------
# Tables and figures
# ---------------------------------------------------------------------------
def write_table(table: Table, path: str | os.PathLike[str], *, provenance: Provenance | None = None) -> Path:
    """Write an astropy Table as ECSV atomically, with provenance in its metadata.

    Parameters
    ----------
    table : astropy.table.Table
        The table (units and descriptions are kept by ECSV).
    path : str or path-like
        Destination, conventionally ``*.ecsv``.
    provenance : Provenance, optional
        Stored under ``table.meta['provenance']``.
    """
    table = table.copy(copy_data=False)
    if provenance is not None:
        table.meta["provenance"] = provenance.to_dict()
    with atomic_output(path) as temporary:
        table.write(temporary, format="ascii.ecsv")
    return Path(path)


def read_table(path: str | os.PathLike[str]) -> Table:
    """Read an ECSV table written by :func:`write_table`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        If it is not a readable ECSV table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table")
    from astropy.table import Table

    try:
        return Table.read(path, format="ascii.ecsv")
    except Exception as exc:
        raise InputDataError(f"{path}: unreadable ECSV table ({type(exc).__name__}: {exc})") from exc


def save_figure(figure: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (PNG by default) and close it."""
    import matplotlib.pyplot as plt

    suffix = Path(path).suffix.lstrip(".") or "png"
    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, dpi=dpi, format=suffix, bbox_inches="tight")
    finally:
        plt.close(figure)
    return Path(path)


def read_provenance(path: str | os.PathLike[str]) -> Provenance:
    """Return the provenance block of any skysift product (HDF5, FITS or ECSV).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ProductError
        If it carries no skysift provenance.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such product")
    suffix = path.suffix.lower()
    try:
        if suffix in (".h5", ".hdf5"):
            with open_product(path) as handle:
                return handle.provenance
        if suffix in (".fits", ".fit", ".fz") or path.name.endswith(".fits.gz"):
            from astropy.io import fits

            return Provenance.from_fits_header(fits.getheader(path, 0))
        if suffix == ".ecsv":
            return Provenance.from_dict(read_table(path).meta["provenance"])
    except ProductError:
        raise
    except (KeyError, ValueError, OSError, InputDataError) as exc:
        raise ProductError(f"{path}: no skysift provenance ({exc})") from exc
    raise ProductError(f"{path}: unknown product type '{suffix}' (expected .h5, .fits or .ecsv)")
