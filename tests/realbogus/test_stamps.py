"""Survey presets and the stamp-level survey training set: profiles, families, conventions, product."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from skysift.errors import InputDataError
from skysift.io import read_product
from skysift.realbogus.stamps import (
    BOGUS_FAMILIES,
    FAMILIES,
    REAL_FAMILIES,
    RealBackgrounds,
    StampContext,
    StampSettings,
    fill_padding,
    make_survey_training_set,
    moffat_psf,
    render_stars,
    simulate_triplets,
    simulated_background,
    truncate_at_edge,
)
from skysift.realbogus.stamps import _FAMILY_FUNCTIONS, _subtracted, _variable
from skysift.realbogus.survey import ZTF, SurveyPreset, get_survey

ALERTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "diffim" / "ztf_alert_packets"


def _context(**changes) -> StampContext:
    values = dict(size=63, x=31.2, y=30.9, science_fwhm=2.0, reference_fwhm=1.8, beta=3.0,
                  sigma_science=5.0, sigma_reference=1.0, sigma_difference=5.1, gain=6.2)
    values.update(changes)
    return StampContext(**values)


def test_ztf_preset_and_lookup():
    assert get_survey("ZTF") is ZTF
    assert ZTF.pixel_scale == pytest.approx(1.01) and ZTF.stamp_size == 63
    assert 1.5 <= ZTF.fwhm_pixels(2.0) <= 2.5
    with pytest.raises(ValueError, match="unknown survey"):
        get_survey("lsst-someday")
    with pytest.raises(ValueError, match="stamp_size"):
        dataclasses.replace(ZTF, stamp_size=64)
    with pytest.raises(ValueError, match="seeing_range"):
        dataclasses.replace(ZTF, seeing_range=(3.0, 2.0))
    assert isinstance(ZTF, SurveyPreset)


def test_moffat_is_unit_flux_with_the_requested_width():
    psf = moffat_psf(63, 31.0, 31.0, 2.5, 3.0)
    assert psf.sum() == pytest.approx(1.0, abs=0.01)
    # Half maximum at half the FWHM from the centre (pixel integration blurs the core a little).
    fine = moffat_psf(63, 31.0, 31.0, 10.0, 3.0)
    assert fine[31, 36] / fine[31, 31] == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError):
        moffat_psf(63, 31.0, 31.0, 2.0, 1.0)


def test_vectorised_stars_match_single_profiles():
    x, y, flux = np.array([10.3, -2.0, 40.7, 80.0]), np.array([20.1, 5.0, 62.5, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])
    field = render_stars(63, x, y, flux, 2.2, 3.0, 20)
    expected = sum(f * moffat_psf(63, xi, yi, 2.2, 3.0) for xi, yi, f in zip(x[:3], y[:3], flux[:3]))
    np.testing.assert_allclose(field, expected, atol=1e-4 * expected.max())


def test_simulated_background_looks_like_ztf_stamps():
    rng = np.random.default_rng(3)
    background = simulated_background(rng, ZTF, StampSettings())
    sky = np.median(background.science)
    assert ZTF.sky_range[0] * 0.9 <= sky <= ZTF.sky_range[1] * 1.1  # not background subtracted
    assert np.median(background.reference) == pytest.approx(sky, rel=0.1)  # the reference is on the science scale
    assert abs(np.median(background.difference)) < 3 * background.sigma_difference
    assert background.sigma_reference < background.sigma_science / 2.5  # a deep coadd
    assert 1.5 / 1.01 <= background.science_fwhm <= 3.5 / 1.01


def test_transients_are_psf_shaped_sources_at_the_centre():
    rng = np.random.default_rng(0)
    settings = StampSettings(snr_range=(50.0, 50.0), host_fraction=0.0)
    layers = _FAMILY_FUNCTIONS["transient"](rng, _context(), settings)
    assert np.unravel_index(layers.difference.argmax(), layers.difference.shape) == (31, 31)
    np.testing.assert_allclose(layers.science, layers.difference)
    assert not layers.reference.any()
    # Its PSF-photometry S/N in the difference is what was drawn.
    psf = _context().psf()
    snr = float(np.sum(layers.difference * psf) / (5.1 * np.sqrt(np.sum(psf**2))))
    assert snr == pytest.approx(50.0, rel=0.01)


def test_negative_subtractions_are_shown_positive():
    rng = np.random.default_rng(1)
    layers = _variable(rng, _context(), StampSettings(), negative=True)
    assert layers.difference[31, 31] > 0  # ZTF flips the difference of isdiffpos = 'f'
    assert layers.reference[31, 31] > layers.science[31, 31] >= 0  # the star faded


@pytest.mark.parametrize("family", BOGUS_FAMILIES[:-1])
def test_bogus_families_are_detectable_candidates(family):
    rng = np.random.default_rng(5)
    settings = StampSettings()
    for _ in range(5):
        layers = _FAMILY_FUNCTIONS[family](rng, _context(), settings)
        peak = layers.difference[29:34, 29:34].max()
        assert peak >= 0.99 * settings.detection_snr * 5.1, family


def test_artefacts_differ_from_point_sources():
    rng = np.random.default_rng(2)
    context = _context(science_fwhm=2.5)
    ray = _FAMILY_FUNCTIONS["cosmic-ray"](rng, context, StampSettings())
    assert not ray.reference.any()
    hot = _FAMILY_FUNCTIONS["hot-pixel"](np.random.default_rng(4), context, StampSettings())
    psf = context.psf()
    # Sharper than the PSF: a larger share of the flux in the brightest pixel.
    assert hot.difference.max() / hot.difference.sum() > 2 * psf.max() / psf.sum()
    dipole = _FAMILY_FUNCTIONS["dipole"](rng, context, StampSettings())
    assert dipole.difference.min() < -0.3 * dipole.difference.max()  # a negative lobe
    assert abs(dipole.difference.sum()) < 0.1 * np.abs(dipole.difference).sum()


def test_edge_truncation_and_padding_as_the_alert_reader_does():
    triplet = np.arange(3 * 63 * 63, dtype=np.float32).reshape(3, 63, 63)
    cut, mask = truncate_at_edge(triplet, "left", 20)
    assert mask[:, :20].all() and not mask[:, 20:].any()
    assert np.isnan(cut[:, :, :20]).all()
    filled = fill_padding(cut)
    assert np.isfinite(filled).all()
    assert filled[1, 0, 0] == pytest.approx(np.median(cut[1][np.isfinite(cut[1])]))
    _, top = truncate_at_edge(triplet, "top", 40)
    assert top[41:].all() and not top[:41].any()


def test_simulated_set_classes_families_and_determinism():
    settings = StampSettings(real_fraction=0.4)
    cutouts, masks, table = simulate_triplets(300, ZTF, settings, np.random.default_rng(11))
    assert cutouts.shape == (300, 3, 63, 63) and cutouts.dtype == np.float32 and np.isfinite(cutouts).all()
    assert masks.shape == (300, 63, 63)
    assert np.mean(table["label"]) == pytest.approx(0.4, abs=0.01)
    kinds = Counter(np.asarray(table["kind"], str))
    assert set(kinds) <= set(FAMILIES) and set(REAL_FAMILIES) <= set(kinds) and len(set(BOGUS_FAMILIES) & set(kinds)) >= 7
    assert all((table["label"] == 1) == np.isin(np.asarray(table["kind"], str), REAL_FAMILIES))
    assert np.asarray(table["truncated"]).any() and masks.any()
    assert len(np.unique(table["sky_cell"])) == 300  # every simulated stamp its own split group
    again, _, table_again = simulate_triplets(300, ZTF, settings, np.random.default_rng(11))
    np.testing.assert_array_equal(cutouts, again)
    with pytest.raises(ValueError, match="unknown bogus"):
        StampSettings(bogus_weights={"satellite": 1.0})


def test_product_round_trip_says_which_survey(tmp_path):
    path = make_survey_training_set(tmp_path / "ztf.h5", n_samples=40, seed=2)
    product = read_product(path)
    assert product.arrays["cutout"].shape == (40, 3, 63, 63)
    assert product.attrs["survey"] == "ztf" and product.attrs["survey.pixel_scale"] == "1.01"
    assert product.attrs["background_objects"] == ""
    assert {"label", "kind", "sky_cell", "background"} <= set(product.table.colnames)


def test_missing_or_empty_background_directory_is_a_one_line_input_error(tmp_path):
    with pytest.raises(InputDataError, match="nowhere"):
        RealBackgrounds([tmp_path / "nowhere"], ZTF)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.avro").write_bytes(b"not avro")
    with pytest.raises(InputDataError, match=r"empty: no usable alert packet"):
        RealBackgrounds([tmp_path / "empty"], ZTF)


@pytest.mark.realdata
def test_real_backgrounds_leave_out_excluded_objects(tmp_path):
    if not ALERTS.is_dir():
        pytest.skip(f"ZTF alert packets not found at {ALERTS}")
    backgrounds = RealBackgrounds([ALERTS], ZTF, exclude=["ZTF18aaxjdyr"])
    assert "ZTF18aaxjdyr" not in backgrounds.object_ids and len(backgrounds) == 15
    background = backgrounds.draw(np.random.default_rng(0))
    assert background.science.shape == (63, 63) and np.isfinite(background.science).all()
    path = make_survey_training_set(tmp_path / "real.h5", n_samples=60, seed=1, real_backgrounds=[ALERTS],
                                    exclude_objects=["ZTF18aaxjdyr"], settings=StampSettings(real_background_fraction=1.0))
    product = read_product(path)
    used = product.attrs["background_objects"].split(",")
    assert used and "ZTF18aaxjdyr" not in used and set(used) <= set(backgrounds.object_ids)
    assert set(np.asarray(product.table["background_group"], str)) == set(used)
    # Real-background stamps keep the real sky level of ZTF science stamps.
    assert np.median(product.arrays["cutout"][:, 0]) > 50


def test_noise_bogus_are_threshold_crossings_of_the_matched_filter():
    rng = np.random.default_rng(8)
    settings = StampSettings()
    context = _context()
    for _ in range(20):
        layers = _FAMILY_FUNCTIONS["noise"](rng, context, settings)
        snr = context.matched_filter_snr(layers.difference)
        assert settings.detection_snr <= snr < settings.detection_snr + 6
        assert snr == pytest.approx(layers.params["snr"])
        assert not layers.through_subtraction  # a fluctuation of the difference itself
        # Mostly a science-noise peak (the reference is the deeper image), a little template dip.
        assert layers.science.sum() > 0 > layers.reference.sum()


def test_zogy_science_kernel_keeps_flux_and_softens_sharp_science_signal():
    delta = np.zeros((63, 63))
    delta[31, 31] = 1.0
    broad_reference = _context(science_fwhm=1.6, reference_fwhm=2.6).science_to_difference(delta)
    sharp_reference = _context(science_fwhm=3.0, reference_fwhm=1.8).science_to_difference(delta)
    for kernel in (broad_reference, sharp_reference):
        assert kernel.sum() == pytest.approx(1.0, abs=1e-9)
        assert np.unravel_index(kernel.argmax(), kernel.shape) == (31, 31)
    assert broad_reference.max() < 0.9  # a cosmic ray is softened in the difference
    assert sharp_reference.max() > 0.95  # nearly a delta: the science enters the difference as it is


def test_bogus_keep_their_detection_peak_through_the_subtraction():
    context = _context(science_fwhm=1.6, reference_fwhm=2.6)
    ray = _FAMILY_FUNCTIONS["cosmic-ray"](np.random.default_rng(6), context, StampSettings())
    subtracted = _subtracted(ray, context, keep_peak=True)
    assert subtracted.difference[29:34, 29:34].max() == pytest.approx(ray.difference[29:34, 29:34].max())
    # Softer in the difference than in the science, as ZTF's cosmic rays are.
    share = lambda image: image.max() / image.sum()  # noqa: E731
    assert share(subtracted.difference) < share(subtracted.science)
    transient = _FAMILY_FUNCTIONS["transient"](np.random.default_rng(6), context, StampSettings(host_fraction=0.0))
    assert _subtracted(transient, context, keep_peak=False).difference.sum() == pytest.approx(transient.difference.sum(), rel=1e-6)
