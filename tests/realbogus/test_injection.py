"""Injection training set: recovery of injected sources, classes, product round trip, Dask."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from skysift.context import RunContext
from skysift.cutouts import extract_triplets
from skysift.io import FitsImage, read_product
from skysift.realbogus.injection import (
    KINDS,
    InjectionSettings,
    add_cosmic_rays,
    flux_for_snr,
    inject_point_sources,
    make_realbogus_training_set,
)
from skysift.simulate.run import run_simulate_pair
from skysift.simulate.starfield import FieldSpec, double_gaussian_psf

SPEC = FieldSpec(image_size=256, n_stars=120, n_transients=0, n_saturated=1)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("pairs")
    out = []
    for seed in range(2):
        paths = run_simulate_pair(root / f"pair{seed}", SPEC, seed=seed, pair_id=f"pair{seed}")
        out.append((paths["science"], paths["reference"]))
    return out


@pytest.fixture(scope="module")
def training_set(pairs, tmp_path_factory):
    path = tmp_path_factory.mktemp("ts") / "training.h5"
    make_realbogus_training_set(
        pairs, path, n_injections_per_image=20, n_cosmic_rays_per_image=8, snr_range=(8.0, 60.0),
        cutout_size=31, seed=3, context=RunContext(rule="test", config_digest="abc", scheduler="sync"),
    )
    return read_product(path)


def test_inject_point_sources_is_pure_and_conserves_flux():
    image = np.zeros((41, 41))
    psf = double_gaussian_psf(3.0, 21)
    out = inject_point_sources(image, psf, [20.3], [19.6], [1000.0], np.random.default_rng(0), gain=1e12)
    assert np.all(image == 0)
    assert out.sum() == pytest.approx(1000.0, rel=1e-3)
    peak = np.unravel_index(np.argmax(out), out.shape)
    assert peak == (20, 20)
    again = inject_point_sources(image, psf, [20.3], [19.6], [1000.0], np.random.default_rng(0), gain=1.0)
    np.testing.assert_array_equal(again, inject_point_sources(image, psf, [20.3], [19.6], [1000.0], np.random.default_rng(0), gain=1.0))


def test_cosmic_rays_are_sharp():
    out = add_cosmic_rays(np.zeros((20, 20)), [10.0], [10.0], [500.0], [3], [0.0])
    assert np.count_nonzero(out) == 3 and out[10, 10:13].tolist() == [500.0] * 3


def test_flux_for_snr_round_trip():
    psf = double_gaussian_psf(3.0, 21)
    flux = flux_for_snr(np.array([5.0, 50.0]), psf, sigma=20.0, gain=2.0)
    area = 1 / np.sum(psf**2)
    np.testing.assert_allclose(flux / np.sqrt(flux / 2.0 + 400.0 * area), [5.0, 50.0])


def test_settings_validated():
    with pytest.raises(ValueError, match="exactly one"):
        InjectionSettings(snr_range=None, flux_range=None)
    with pytest.raises(ValueError, match="odd"):
        InjectionSettings(cutout_size=32)


def test_classes_balanced_and_labelled(training_set):
    table = training_set.table
    assert training_set.product_type == "realbogus-training-set"
    kinds = Counter(table["kind"].tolist())
    # detected_only (the default): injections the subtraction missed are left out
    assert 30 <= kinds["injected"] <= 40
    assert np.all(table["detected"])
    assert set(kinds) <= set(KINDS) and {"cosmic-ray", "misalignment"} <= set(kinds)
    assert np.mean(table["label"]) == pytest.approx(0.5)
    assert np.all((table["label"] == 1) == (table["kind"] == "injected"))


def test_detected_samples_are_cut_at_their_candidate(training_set):
    table = training_set.table
    planted = np.isin(np.asarray(table["kind"]), ["injected", "cosmic-ray"])
    offset = np.hypot(table["x"] - table["x_true"], table["y"] - table["y_true"])[planted]
    assert np.all(offset <= 3.0) and np.any(offset > 0)
    assert np.all(np.isnan(table["x_true"][~planted]))
    assert np.all(np.isfinite(table["candidate_flux"][planted]))


def test_all_injections_kept_without_detected_only(pairs, training_set, tmp_path):
    path = make_realbogus_training_set(
        pairs, tmp_path / "all.h5", n_injections_per_image=20, n_cosmic_rays_per_image=8, snr_range=(8.0, 60.0),
        cutout_size=31, seed=3, context=RunContext(rule="test", config_digest="abc", scheduler="sync"), detected_only=False,
    )
    table = read_product(path).table
    injected = table[table["kind"] == "injected"]
    assert len(injected) == 40
    # undetected ones are cut where they were planted
    missed = ~np.asarray(injected["detected"])
    np.testing.assert_array_equal(injected["x"][missed], injected["x_true"][missed])
    assert np.sum(~missed) == np.sum(training_set.table["kind"] == "injected")
    # planted objects never blend, and bogus candidates are clear of all of them
    for pair in (0, 1):
        here = table[(table["pair_index"] == pair) & (table["repeat"] == 0)]
        planted = np.isin(np.asarray(here["kind"]), ["injected", "cosmic-ray"])
        px, py = np.asarray(here["x_true"])[planted], np.asarray(here["y_true"])[planted]
        spacing = np.hypot(px[:, None] - px[None, :], py[:, None] - py[None, :]) + np.eye(len(px)) * 1e9
        assert spacing.min() >= 16.0
        bogus = here[~planted]
        clearance = np.hypot(np.asarray(bogus["x"])[:, None] - px[None, :], np.asarray(bogus["y"])[:, None] - py[None, :])
        assert clearance.min() > 8.0


def test_injected_sources_recovered_in_difference(training_set):
    table = training_set.table
    real = table["label"] == 1
    cutouts = training_set.arrays["cutout"][real]
    # Bright injections are detected and sit as positive peaks at the stamp centre of D.
    bright = np.asarray(table["injected_snr"][real]) > 15
    assert bright.sum() >= 5
    assert np.mean(np.asarray(table["detected"][real])[bright]) >= 0.8
    centre = cutouts.shape[-1] // 2
    core = cutouts[:, 2, centre - 1 : centre + 2, centre - 1 : centre + 2].max(axis=(1, 2))
    # D has unit noise per pixel; a pure-noise 3x3 block exceeds 3 sigma ~1% of the time.
    assert np.all(core[bright] > 3.0)
    assert np.median(core[bright]) > 6.0
    assert np.corrcoef(np.asarray(table["injected_snr"][real]), np.asarray(table["scorr"][real]))[0, 1] > 0.8


def test_product_round_trip_with_parameters(training_set):
    product = training_set
    n = len(product.table)
    assert product.arrays["cutout"].shape == (n, 3, 31, 31) and product.arrays["cutout"].dtype == np.float32
    for column in ("label", "kind", "x", "y", "injected_flux", "injected_snr", "detected", "pair_index", "repeat", "wcs_shift", "scorr"):
        assert column in product.table.colnames
    assert str(product.table["x"].unit) == "pix"
    assert product.attrs["normalised"] == 0 and product.attrs["channels"] == "science,reference,difference"
    assert "LogUniform" in product.attrs["prior.snr"]
    assert product.provenance.seed == 3 and product.provenance.rule == "test" and len(product.provenance.inputs) == 4
    injected = product.table[product.table["label"] == 1]
    assert np.all((injected["injected_snr"] >= 8.0) & (injected["injected_snr"] <= 60.0))
    assert np.all(np.isfinite(injected["injected_flux"]))
    assert np.all(product.table["wcs_shift"][product.table["kind"] == "misalignment"] >= 0.7)


def test_same_seed_same_product_on_a_dask_client(pairs, training_set, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as client:
        path = make_realbogus_training_set(
            pairs, tmp_path / "again.h5", n_injections_per_image=20, n_cosmic_rays_per_image=8,
            snr_range=(8.0, 60.0), cutout_size=31, seed=3, context=RunContext(rule="test", config_digest="abc", client=client),
        )
    again = read_product(path)
    np.testing.assert_array_equal(again.arrays["cutout"], training_set.arrays["cutout"])
    assert again.table["kind"].tolist() == training_set.table["kind"].tolist()


def test_real_images_as_fits_image_input(pairs):
    """The pure function works from FitsImage objects (real survey pairs go through the same path)."""
    from skysift.io import read_fits_image
    from skysift.realbogus.injection import training_samples

    science, reference = (read_fits_image(p, require_wcs=True) for p in pairs[0])
    assert isinstance(science, FitsImage)
    settings = InjectionSettings(n_injections=5, n_cosmic_rays=2, misalignment_range=None, cutout_size=15, real_fraction=1.0,
                                 detected_only=False)
    cutouts, edge_mask, table = training_samples(science, reference, settings, np.random.default_rng(0))
    assert cutouts.shape == (5, 3, 15, 15) and edge_mask.shape == (5, 15, 15)
    # The science channel holds the injected image's pixels: brighter at the centre than the plain image.
    plain, _ = extract_triplets(science.data, science.data, science.data, table["x"], table["y"], size=15)
    assert np.all(cutouts[:, 0, 6:9, 6:9].sum(axis=(1, 2)) > plain[:, 0, 6:9, 6:9].sum(axis=(1, 2)))
    assert np.all(table["label"] == 1)
