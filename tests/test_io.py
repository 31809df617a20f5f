from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.errors import InputDataError, ProductError
from skysift.io import (
    ProductWriter,
    atomic_directory,
    atomic_output,
    open_product,
    read_fits_image,
    read_image_extensions,
    read_path_list,
    read_product,
    read_provenance,
    read_table,
    write_fits_image,
    write_path_list,
    write_product,
    write_table,
)
from skysift.simulate.starfield import make_wcs


def _sample_table(n):
    table = Table({"flux": np.linspace(1, 2, n), "label": np.array(["real", "bogus"] * (n // 2))})
    table["flux"].unit = "electron"
    table["flux"].description = "injected flux"
    return table


def test_product_round_trip(tmp_path, provenance):
    cutouts = np.random.default_rng(0).normal(size=(10, 3, 15, 15)).astype(np.float32)
    path = write_product(
        tmp_path / "p.h5",
        product_type="cutouts",
        provenance=provenance,
        arrays={"cutout": cutouts},
        table=_sample_table(10),
        units={"cutout": "adu"},
        attrs={"stamp_size": 15},
    )
    product = read_product(path)
    np.testing.assert_array_equal(product.arrays["cutout"], cutouts)
    assert product.product_type == "cutouts"
    assert product.provenance == provenance
    assert product.units["cutout"] == "adu"
    assert str(product.table["flux"].unit) == "electron"
    assert product.table["flux"].description == "injected flux"
    assert list(product.table["label"]) == ["real", "bogus"] * 5
    assert product.attrs["stamp_size"] == 15
    assert len(product) == 10


def test_product_layout_is_chunked_and_compressed(tmp_path, provenance):
    path = write_product(
        tmp_path / "p.h5", product_type="t", provenance=provenance,
        arrays={"x": np.zeros((50, 8, 8), np.float32)}, table={"y": np.arange(50)},
    )
    with h5py.File(path, "r") as handle:
        dataset = handle["data/x"]
        assert dataset.chunks is not None and dataset.chunks[1:] == (8, 8)
        assert dataset.compression == "gzip"
        assert handle.attrs["skysift.format"] == "skysift-product"
        assert handle.attrs["n_samples"] == 50
        for key in ("skysift_version", "git_commit", "config_hash", "inputs", "rule",
                    "created_utc", "software", "seed"):
            assert f"provenance.{key}" in handle.attrs


def test_incremental_writer_and_lazy_reader(tmp_path, provenance):
    with ProductWriter(tmp_path / "p.h5", "training-set", provenance) as writer:
        writer.add_array("image", (4, 4), np.float32, unit="adu")
        writer.add_column("label", np.int8)
        for start in range(0, 30, 7):
            n = min(7, 30 - start)
            writer.append({"image": np.full((n, 4, 4), start, np.float32)}, {"label": np.arange(n) % 2})
    with open_product(tmp_path / "p.h5") as handle:
        assert len(handle) == 30
        assert handle.arrays["image"][7:9].shape == (2, 4, 4)
        assert float(handle.arrays["image"][8, 0, 0]) == 7.0


def test_writer_without_filters_stores_values_as_written(tmp_path, provenance):
    images = np.random.default_rng(0).standard_normal((40, 2, 8, 8)).astype(np.float32)
    with ProductWriter(tmp_path / "p.h5", "t", provenance, compression_level=None) as writer:
        writer.add_array("image", (2, 8, 8), np.float32)
        writer.add_column("kind", str)
        writer.append({"image": images}, {"kind": np.array(["a", "bb"] * 20, dtype=object)})
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        assert handle["data/image"].compression is None and not handle["data/image"].shuffle
        assert handle["data/image"].chunks is not None and handle["samples/kind"].compression is None
    product = read_product(tmp_path / "p.h5")
    assert np.array_equal(product.arrays["image"], images)
    assert list(product.table["kind"]) == ["a", "bb"] * 20


def test_mismatched_sample_counts_leave_no_file(tmp_path, provenance):
    path = tmp_path / "p.h5"
    with pytest.raises(ProductError, match="disagree on the number of samples"):
        with ProductWriter(path, "t", provenance) as writer:
            writer.add_array("a", (2,), np.float32)
            writer.add_column("b", np.float64)
            writer.append({"a": np.zeros((3, 2))}, {"b": np.zeros(2)})
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_exception_inside_writer_leaves_nothing(tmp_path, provenance):
    path = tmp_path / "p.h5"
    with pytest.raises(RuntimeError):
        with ProductWriter(path, "t", provenance) as writer:
            writer.add_array("a", (2,), np.float32)
            writer.append({"a": np.zeros((3, 2))})
            raise RuntimeError("job failed half way")
    assert not list(tmp_path.iterdir())


def test_wrong_sample_shape_is_rejected(tmp_path, provenance):
    with pytest.raises(ValueError, match="per-sample shape"):
        with ProductWriter(tmp_path / "p.h5", "t", provenance) as writer:
            writer.add_array("a", (2, 2), np.float32)
            writer.append({"a": np.zeros((3, 2, 3))})


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from skysift.io import ProductWriter
    from skysift.provenance import Provenance
    provenance = Provenance.collect(rule="killed", config={})
    with ProductWriter(sys.argv[1], "t", provenance) as writer:
        writer.add_array("a", (64, 64), np.float32)
        writer.append({"a": np.ones((100, 64, 64), np.float32)})
        writer._file.flush()
        print("MID-WRITE", flush=True)
        time.sleep(60)
        writer.append({"a": np.ones((100, 64, 64), np.float32)})
    """
)


def test_kill_9_mid_write_leaves_no_file_at_output_path(tmp_path):
    path = tmp_path / "product.h5"
    with subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout.readline().strip() == "MID-WRITE"
            temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(".product.h5.tmp-")]
            assert temporaries, "the writer should be writing to a temporary file"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not path.exists()


def test_atomic_output_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_output(path) as temporary:
            temporary.write_text("new and partial")
            1 / 0  # noqa: B018
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_read_product_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_product(tmp_path / "missing.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(ProductError, match="garbage.h5"):
        read_product(garbage)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(ProductError, match="foreign.h5.*not a skysift product"):
        read_product(foreign)


# FITS -----------------------------------------------------------------------
def test_fits_round_trip_with_provenance_and_wcs(tmp_path, provenance):
    wcs = make_wcs(32, 0.2, 10.0, -5.0)
    image = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    path = write_fits_image(tmp_path / "im.fits", image, provenance=provenance, wcs=wcs, unit="electron",
                            header={"GAIN": 1.5}, extensions={"mask": np.zeros((32, 32), np.uint8)})
    loaded = read_fits_image(path, require_wcs=True)
    np.testing.assert_array_equal(loaded.data, image)
    assert loaded.header["GAIN"] == 1.5
    np.testing.assert_allclose(loaded.wcs.wcs.crval, [10.0, -5.0])
    assert read_provenance(path) == provenance
    assert fits.getdata(path, "MASK").shape == (32, 32)


def test_fits_writer_never_swaps_the_callers_array_in_place(tmp_path, provenance, monkeypatch):
    # astropy byteswaps a writeable little-endian array in place for the write:
    # the diffim preview thread, reading the same array meanwhile, once saw
    # values near the float32 maximum. The caller's array must stay readable.
    image = np.linspace(-3.0, 5.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    mask = np.arange(64 * 64, dtype=np.int32).reshape(64, 64)
    expected = {id(image): image.copy(), id(mask): mask.copy()}
    original_writearray = fits.file._File.writearray
    seen_during_writes = []

    def checking_writearray(self, array):
        seen_during_writes.append(all(np.array_equal(a, expected[id(a)]) for a in (image, mask)))
        return original_writearray(self, array)

    monkeypatch.setattr(fits.file._File, "writearray", checking_writearray)
    path = write_fits_image(tmp_path / "im.fits", image, provenance=provenance, extensions={"mask": mask})
    assert seen_during_writes and all(seen_during_writes)
    np.testing.assert_array_equal(fits.getdata(path), image)
    np.testing.assert_array_equal(fits.getdata(path, "MASK"), mask)
    assert image.dtype.isnative and mask.dtype.isnative


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100), "unreadable FITS"),
        (lambda p: fits.PrimaryHDU(np.zeros((2, 3, 4))).writeto(p), "expected a 2-D image"),
        (lambda p: fits.PrimaryHDU(np.full((5, 5), np.nan)).writeto(p), "NaN"),
        (lambda p: fits.PrimaryHDU(np.zeros((5, 5))).writeto(p), "no celestial WCS"),
        (lambda p: fits.PrimaryHDU().writeto(p), "no HDU holds image data"),
    ],
    ids=["corrupt", "3d", "all-nan", "no-wcs", "no-image"],
)
def test_bad_fits_inputs_give_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad.fits"
    make(path)
    with pytest.raises(InputDataError, match=f"bad.fits.*{message}"):
        read_fits_image(path, require_wcs=True)


def test_missing_fits_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.fits"):
        read_fits_image(tmp_path / "absent.fits")


def test_table_round_trip_with_provenance(tmp_path, provenance):
    table = _sample_table(4)
    write_table(table, tmp_path / "t.ecsv", provenance=provenance)
    loaded = read_table(tmp_path / "t.ecsv")
    assert str(loaded["flux"].unit) == "electron"
    assert read_provenance(tmp_path / "t.ecsv") == provenance


# Sets of files -------------------------------------------------------------
def _write_set(staging, names, text):
    for name in names:
        (staging / name).write_text(text)


def test_atomic_directory_replaces_the_whole_set(tmp_path):
    outdir = tmp_path / "out"
    names = ("a.fits", "b.ecsv", "c.png")
    with atomic_directory(outdir, names) as staging:
        _write_set(staging, names, "first")
    assert sorted(p.name for p in outdir.iterdir()) == sorted(names)
    with atomic_directory(outdir, names) as staging:
        _write_set(staging, names[:2], "second")  # a run that writes fewer files leaves no stale third one
    assert sorted(p.name for p in outdir.iterdir()) == sorted(names[:2])
    assert (outdir / "a.fits").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old directory left


def test_atomic_directory_failure_keeps_the_old_set(tmp_path):
    outdir = tmp_path / "out"
    names = ("a.fits", "b.ecsv")
    with atomic_directory(outdir, names) as staging:
        _write_set(staging, names, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(outdir, names) as staging:
            (staging / "a.fits").write_text("new")
            raise RuntimeError("boom")
    assert {p.name: p.read_text() for p in outdir.iterdir()} == {"a.fits": "old", "b.ecsv": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_directory_into_an_empty_directory_and_beside_foreign_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()  # as Snakemake creates an output's directory before the job
    with atomic_directory(empty, ["a.fits"]) as staging:
        (staging / "a.fits").write_text("x")
    assert [p.name for p in empty.iterdir()] == ["a.fits"]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("keep me")
    with atomic_directory(shared, ["a.fits"]) as staging:
        (staging / "a.fits").write_text("x")
    assert sorted(p.name for p in shared.iterdir()) == ["a.fits", "notes.txt"]
    assert (shared / "notes.txt").read_text() == "keep me"


def test_atomic_directory_removes_a_killed_runs_staging(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{int(dead.stdout)}-0badc0de"
    stale.mkdir()
    (stale / "a.fits").write_text("partial")
    live = tmp_path / f".out.tmp-{os.getpid()}-00000000"  # a concurrent live writer's: left alone
    live.mkdir()
    with atomic_directory(tmp_path / "out", ["a.fits"]) as staging:
        (staging / "a.fits").write_text("x")
    assert not stale.exists() and live.exists()


def test_read_image_extensions(tmp_path):
    path = tmp_path / "i2d.fits"
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(np.ones((4, 5)), name="SCI"),
        fits.ImageHDU(np.full((4, 5), 2.0), name="ERR"),
        fits.ImageHDU(np.zeros((2, 4, 5)), name="WHT"),
    ]).writeto(path)
    assert read_image_extensions(path, ["ERR", "DQ"])["ERR"][0, 0] == 2.0
    assert set(read_image_extensions(path, ["ERR", "DQ"])) == {"ERR"}
    with pytest.raises(InputDataError, match=r"i2d\.fits: extension WHT has shape \(2, 4, 5\)"):
        read_image_extensions(path, ["WHT"])


def test_path_list_round_trip(tmp_path):
    paths = [tmp_path / "a b.fits", "results/diffim/p1/scorr.fits", tmp_path / "ünï.h5"]
    listing = write_path_list(paths, tmp_path / "lists" / "products.txt")
    assert read_path_list(listing) == [tmp_path / "a b.fits", Path("results/diffim/p1/scorr.fits"), tmp_path / "ünï.h5"]
    assert read_path_list(write_path_list([], tmp_path / "empty.txt")) == []
    with pytest.raises(ValueError, match="newline"):
        write_path_list(["a\nb.fits"], tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists()
    with pytest.raises(InputDataError, match="missing.txt: cannot read the list of paths"):
        read_path_list(tmp_path / "missing.txt")
