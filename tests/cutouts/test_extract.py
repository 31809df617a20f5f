"""Vectorised cutout triplets against astropy Cutout2D, and the cutouts product."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import Cutout2D
from astropy.table import Table

from skysift.context import RunContext
from skysift.cutouts import Triplets, extract_triplets, make_cutouts, write_cutout_product
from skysift.errors import InputDataError
from skysift.io import read_product


@pytest.fixture
def images():
    rng = np.random.default_rng(3)
    return [rng.normal(size=(80, 100)).astype(np.float32) for _ in range(3)]


def test_equals_cutout2d_with_nan_padding(images):
    rng = np.random.default_rng(4)
    # Interior, near every edge, exactly on half-integers, and partly outside.
    x = np.concatenate([rng.uniform(0, 99, 30), [0.0, 99.0, -3.2, 102.4, 10.5, 11.5, 50.0, -7.0]])
    y = np.concatenate([rng.uniform(0, 79, 30), [0.0, 79.0, 40.0, 40.0, 20.5, 21.5, -7.4, 84.0]])
    cutouts, edge_mask = extract_triplets(*images, x, y, size=15)
    assert cutouts.shape == (38, 3, 15, 15) and cutouts.dtype == np.float32
    assert edge_mask.shape == (38, 15, 15) and edge_mask.dtype == bool
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        for channel, image in enumerate(images):
            expected = Cutout2D(image, (xi, yi), 15, mode="partial", fill_value=np.nan).data
            np.testing.assert_array_equal(cutouts[i, channel], expected)
        np.testing.assert_array_equal(edge_mask[i], np.isnan(cutouts[i, 0]))
    assert not edge_mask[:30][np.all((x[:30] > 8) & (x[:30] < 91) & (y[:30] > 8) & (y[:30] < 71))].any()


def test_fully_outside_and_mask(images):
    mask = np.zeros(images[0].shape, dtype=bool)
    mask[40, 50] = True
    triplets = extract_triplets(*images, [50.0, 500.0], [40.0, 40.0], size=5, mask=mask, fill_value=0.0)
    assert triplets.edge_mask[0, 2, 2] and triplets.edge_mask[0].sum() == 1
    assert triplets.edge_mask[1].all() and np.all(triplets.cutouts[1] == 0.0)
    np.testing.assert_allclose(triplets.edge_fraction, [1 / 25, 1.0])


@pytest.mark.parametrize("size", [0, 4, 62, 7.0])
def test_even_or_bad_size_rejected(images, size):
    with pytest.raises(ValueError, match="odd"):
        extract_triplets(*images, [10.0], [10.0], size=size)


def test_shape_mismatch_rejected(images):
    with pytest.raises(ValueError, match="reference"):
        extract_triplets(images[0], images[1][:-1], images[2], [1.0], [1.0], size=3)


def test_product_round_trip(tmp_path, images, provenance):
    table = Table({"id": [1, 2], "x": [10.0, 0.0], "y": [10.0, 5.0], "scorr": [7.5, -6.0]})
    table["x"].unit = "pix"
    cutouts, edge_mask = extract_triplets(*images, table["x"], table["y"], size=9)
    path = write_cutout_product(tmp_path / "c.h5", cutouts, table, provenance, edge_mask=edge_mask)
    product = read_product(path)
    assert product.product_type == "cutouts"
    np.testing.assert_array_equal(product.arrays["cutout"], cutouts)
    np.testing.assert_array_equal(product.arrays["edge_mask"], edge_mask)
    assert set(product.table.colnames) == {"id", "x", "y", "scorr", "edge_fraction"}
    assert str(product.table["x"].unit) == "pix"
    assert product.attrs["channels"] == "science,reference,difference"
    assert product.table["edge_fraction"][1] > 0 and product.table["edge_fraction"][0] == 0


def test_make_cutouts_needs_aligned_reference(tmp_path):
    (tmp_path / "diffim").mkdir()
    with pytest.raises(InputDataError, match="aligned_reference.fits"):
        make_cutouts(tmp_path / "diffim", tmp_path / "science.fits", tmp_path / "out.h5")


def test_make_cutouts_from_a_diffim_directory(tmp_path, provenance, monkeypatch):
    from skysift.diffim.pipeline import difference_images, run_diffim
    from skysift.io import read_fits_image, write_fits_image
    from skysift.simulate.run import run_simulate_pair
    from skysift.simulate.starfield import FieldSpec

    pair = run_simulate_pair(tmp_path / "pair", FieldSpec(image_size=200, n_stars=80, n_transients=4, transient_snr_min=20.0), seed=5)
    outdir = tmp_path / "diffim"
    run_diffim(pair["science"], pair["reference"], outdir)
    # Until run_diffim writes it, the aligned reference is written here from the same computation.
    science = read_fits_image(pair["science"], require_wcs=True)
    result = difference_images(science, read_fits_image(pair["reference"], require_wcs=True))
    write_fits_image(outdir / "aligned_reference.fits", result.reference_aligned, provenance=provenance, wcs=science.wcs)
    path = make_cutouts(outdir, pair["science"], tmp_path / "cutouts.h5", cutout_size=21, context=RunContext(rule="cutouts", config_digest="x"))
    product = read_product(path)
    n = len(result.candidates)
    assert n >= 3 and product.arrays["cutout"].shape == (n, 3, 21, 21)
    np.testing.assert_allclose(product.table["x"], result.candidates["x"])
    # The unit-noise difference channel holds a significant positive source at each positive candidate.
    positive = np.asarray(product.table["scorr"]) > 0
    assert positive.sum() >= 3
    centres = product.arrays["cutout"][positive, 2, 9:12, 9:12].max(axis=(1, 2))
    assert np.all(centres > 3.0)
    np.testing.assert_array_equal(product.arrays["cutout"][:, 2], extract_triplets(*(result.difference,) * 3, result.candidates["x"], result.candidates["y"], size=21).cutouts[:, 0])
    assert product.provenance.rule == "cutouts" and len(product.provenance.inputs) == 4
    np.testing.assert_allclose(product.table["edge_fraction"], product.arrays["edge_mask"].mean(axis=(1, 2)), rtol=1e-6)
    # Streamed in batches of 2 triplets through the reused buffer: the same product.
    from skysift.cutouts import extract

    monkeypatch.setattr(extract, "_BATCH_BYTES", 2 * 21 * 21 * 13)
    batched = read_product(make_cutouts(outdir, pair["science"], tmp_path / "batched.h5", cutout_size=21))
    for name in ("cutout", "edge_mask"):
        np.testing.assert_array_equal(batched.arrays[name], product.arrays[name])
    for name in product.table.colnames:
        np.testing.assert_array_equal(batched.table[name], product.table[name])


def test_many_positions_float64_images_and_mask_near_edges():
    """More stamps than one gather block, float64 input, a bad-pixel mask seen by interior and edge stamps."""
    rng = np.random.default_rng(8)
    images = [rng.normal(size=(90, 70)) for _ in range(3)]
    mask = rng.random((90, 70)) < 0.02
    x, y = rng.uniform(-5, 74, 300), rng.uniform(-5, 94, 300)
    cutouts, edge_mask = extract_triplets(*images, x, y, size=11, mask=mask)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        for channel, image in enumerate(images):
            expected = Cutout2D(image, (xi, yi), 11, mode="partial", fill_value=np.nan).data.astype(np.float32)
            np.testing.assert_array_equal(cutouts[i, channel], expected)
        expected_mask = Cutout2D(mask.astype(float), (xi, yi), 11, mode="partial", fill_value=1.0).data > 0
        np.testing.assert_array_equal(edge_mask[i], expected_mask)


def test_threads_give_the_same_stamps():
    """Enough stamps for several gather threads: identical to one thread and to Cutout2D."""
    rng = np.random.default_rng(9)
    images = [rng.normal(size=(160, 150)).astype(np.float32) for _ in range(3)]
    mask = rng.random((160, 150)) < 0.01
    x, y = rng.uniform(-3, 152, 2000), rng.uniform(-3, 162, 2000)
    threaded = extract_triplets(*images, x, y, size=9, mask=mask, workers=3)
    single = extract_triplets(*images, x, y, size=9, mask=mask, workers=1)
    np.testing.assert_array_equal(threaded.cutouts, single.cutouts)
    np.testing.assert_array_equal(threaded.edge_mask, single.edge_mask)
    for i in rng.choice(2000, 50, replace=False):
        expected = Cutout2D(images[1], (x[i], y[i]), 9, mode="partial", fill_value=np.nan).data
        np.testing.assert_array_equal(threaded.cutouts[i, 1], expected)
    with pytest.raises(ValueError, match="workers"):
        extract_triplets(*images, x, y, size=9, workers=0)


def test_cropped_fortran_big_endian_and_integer_images_give_the_same_stamps():
    """Images seen without a copy (crops), copied (Fortran order) or cast (big-endian, integer) cut like the others."""
    rng = np.random.default_rng(10)
    images = [rng.normal(size=(120, 130)).astype(np.float32) for _ in range(3)]
    mask = rng.random((120, 130)) < 0.02
    x, y = rng.uniform(-4, 133, 700), rng.uniform(-4, 123, 700)
    expected = extract_triplets(*images, x, y, size=13, mask=mask)
    padded = [np.pad(image, ((3, 5), (7, 2))) for image in images]
    crops = [image[3:-5, 7:-2] for image in padded]
    assert not crops[0].flags.c_contiguous and crops[0].strides[1] == crops[0].itemsize
    unusual = [crops[0], np.asfortranarray(images[1]), images[2].astype(">f4")]
    mask_crop = np.pad(mask, ((1, 1), (4, 0)))[1:-1, 4:]
    for workers in (1, 2):
        cutouts, edge_mask = extract_triplets(*unusual, x, y, size=13, mask=mask_crop, workers=workers)
        np.testing.assert_array_equal(cutouts, expected.cutouts)
        np.testing.assert_array_equal(edge_mask, expected.edge_mask)
    for i in rng.choice(700, 20, replace=False):
        reference = Cutout2D(images[2], (x[i], y[i]), 13, mode="partial", fill_value=np.nan).data
        np.testing.assert_array_equal(expected.cutouts[i, 2], reference)
    counts = [np.round(image * 100).astype(np.int16) for image in images]
    np.testing.assert_array_equal(
        extract_triplets(*counts, x, y, size=13).cutouts,
        extract_triplets(*(image.astype(np.float32) for image in counts), x, y, size=13).cutouts,
    )


def test_stamps_larger_than_the_image(images):
    small = [image[:5, :7] for image in images]
    x, y = np.array([3.0, 0.0, 6.4, 13.0]), np.array([2.0, 4.0, -1.0, 2.0])
    cutouts, edge_mask = extract_triplets(*small, x, y, size=15)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        for channel, image in enumerate(small):
            expected = Cutout2D(image, (xi, yi), 15, mode="partial", fill_value=np.nan).data
            np.testing.assert_array_equal(cutouts[i, channel], expected)
        np.testing.assert_array_equal(edge_mask[i], np.isnan(cutouts[i, 0]))


def test_output_buffer_is_reused_and_fully_overwritten(images):
    rng = np.random.default_rng(11)
    x, y = rng.uniform(-5, 104, 50), rng.uniform(-5, 84, 50)
    mask = rng.random(images[0].shape) < 0.05
    for kwargs in ({}, {"mask": mask}):
        want = extract_triplets(*images, x, y, size=9, **kwargs)
        # A dirty buffer (as left by a previous batch): everything must be overwritten.
        buffer = Triplets(np.full((64, 3, 9, 9), 7.0, dtype=np.float32), np.ones((64, 9, 9), dtype=bool))
        got = extract_triplets(*images, x, y, size=9, out=Triplets(buffer.cutouts[:50], buffer.edge_mask[:50]), **kwargs)
        assert np.shares_memory(got.cutouts, buffer.cutouts) and np.shares_memory(got.edge_mask, buffer.edge_mask)
        np.testing.assert_array_equal(got.cutouts, want.cutouts)
        np.testing.assert_array_equal(got.edge_mask, want.edge_mask)


@pytest.mark.parametrize(
    "out",
    [
        Triplets(np.empty((3, 3, 9, 9), dtype=np.float32), np.empty((3, 9, 9), dtype=bool)),  # too few
        Triplets(np.empty((4, 3, 9, 9), dtype=np.float64), np.empty((4, 9, 9), dtype=bool)),  # wrong type
        Triplets(np.empty((4, 3, 9, 9), dtype=np.float32), np.empty((4, 9, 9), dtype=np.uint8)),
        Triplets(np.empty((4, 3, 9, 18), dtype=np.float32)[..., ::2], np.empty((4, 9, 9), dtype=bool)),  # strided
    ],
)
def test_bad_output_buffer_rejected(images, out):
    with pytest.raises(ValueError, match="out.(cutouts|edge_mask)"):
        extract_triplets(*images, [10, 20, 30, 40], [10, 20, 30, 40], size=9, out=out)

