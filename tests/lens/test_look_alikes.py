"""Look-alike families and randomised observing conditions of the lens training set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from skysift.io import read_product
from skysift.lens import observing
from skysift.lens.dataset import (
    NEGATIVE_MIX,
    check_negative_mix,
    make_lens_training_set,
    parse_negative_mix,
    place_source_outside_caustic,
)
from skysift.lens.negatives import render_hard_negative
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator, arc_signal_to_noise, moffat_psf
from skysift.simulate.priors import sample_parameters


def _image_count(simulator: LensSimulator, params: dict[str, np.ndarray]) -> np.ndarray:
    """Number of separate images of a compact Gaussian source (connected pixels above 1e-3 of the peak)."""
    arc, _, _ = simulator.render_components(params, convolve=False)
    counts = []
    for image in arc.numpy():
        labels, count = ndimage.label(image > 1e-3 * image.max(), structure=np.ones((3, 3)))
        counts.append(count)
    return np.array(counts)


def _compact_sources(n: int, seed: int) -> dict[str, np.ndarray]:
    params = sample_parameters(LENS_PRIORS, n, np.random.default_rng(seed))
    params["source_r_eff"][:] = 0.05
    params["source_n"][:] = 0.5
    # Einstein radii of 1-1.6 arcsec: images of smaller lenses merge at this pixel scale.
    params["theta_E"] = np.random.default_rng(seed + 100).uniform(1.0, 1.6, n)
    return params


def test_arclets_are_singly_imaged_and_lenses_are_not() -> None:
    simulator = LensSimulator("lsst", 56, 4, psf=None)
    params = _compact_sources(40, 1)
    place_source_outside_caustic(params, np.arange(40), np.random.default_rng(2), 5.6)
    assert np.all(_image_count(simulator, params) == 1)
    # The control: the same lenses with the source near the centre give two or four
    # images (a few merge into one arc at this threshold).
    inside = _compact_sources(40, 1)
    inside["x_src"] = 0.15 * inside["theta_E"]
    inside["y_src"] = 0.1 * inside["theta_E"]
    assert np.mean(_image_count(simulator, inside) >= 2) > 0.85


def test_new_families_are_not_centred_rings() -> None:
    # A merger's tails and companion and a star's light lie off the galaxy centre.
    simulator = LensSimulator("lsst", 64, 2)
    yy, xx = (np.mgrid[:64, :64] - 31.5) * simulator.survey.pixel_scale
    for kind in ("merger", "star"):
        from skysift.lens.negatives import HARD_NEGATIVE_PRIORS

        params = sample_parameters(HARD_NEGATIVE_PRIORS[kind], 8, np.random.default_rng(5))
        images = render_hard_negative(simulator, kind, params).numpy()
        centroid = np.hypot((images * xx).sum(axis=(1, 2)), (images * yy).sum(axis=(1, 2))) / images.sum(axis=(1, 2))
        assert np.median(centroid) > 0.3, kind


def test_edge_on_disc_is_thin_and_dust_lane_dims_its_midplane() -> None:
    simulator = LensSimulator("lsst", 64, 3, psf=None)
    params = {"feature_mag": np.full(2, 20.0), "feature_radius": np.full(2, 1.5), "feature_width": np.full(2, 0.1),
              "feature_q": np.full(2, 0.15), "feature_phi": np.zeros(2), "feature_contrast": np.array([0.0, 0.6])}
    plain, dusty = render_hard_negative(simulator, "edge_on", params).numpy()
    # Long along x, thin along y.
    assert plain[31:33].sum() > 4.0 * plain[:, 31:33].sum()
    # The lane dims the midplane relative to a little above it.
    assert dusty[31:33, 24:40].sum() / dusty[34:36, 24:40].sum() < plain[31:33, 24:40].sum() / plain[34:36, 24:40].sum()


def test_blur_reaches_the_drawn_seeing() -> None:
    survey = SURVEYS["lsst"]
    simulator = LensSimulator(survey, 65, 1, psf=observing.base_psf(survey), dtype=torch.float64)
    point = torch.zeros((3, 65, 65), dtype=torch.float64)
    point[:, 32, 32] = 1.0
    conditions = {"seeing": np.array([0.6, 0.8, 1.0]), "psf_e": np.zeros(3), "psf_phi": np.zeros(3),
                  "depth": np.ones(3)}
    psf = observing.blur(simulator.convolve(point), survey, conditions).numpy()
    assert psf.sum(axis=(1, 2)) == pytest.approx(1.0, abs=1e-6)

    def fwhm(kernel: np.ndarray) -> float:
        # Half-maximum contour by interpolation along the centre row and column (pixels).
        widths = []
        for cut in (kernel[kernel.shape[0] // 2], kernel[:, kernel.shape[1] // 2]):
            above = np.flatnonzero(cut >= 0.5 * cut.max())
            left, right = above[0], above[-1]
            half = 0.5 * cut.max()
            widths.append(right - left + (cut[left] - half) / (cut[left] - cut[left - 1])
                          + (cut[right] - half) / (cut[right] - cut[right + 1]))
        return float(np.mean(widths))

    # Against Moffat kernels of the drawn (nominal) seeing, pixel-integrated alike: the
    # FWHMs of a Moffat and a Gaussian add a little above quadrature, 0-8 % here.
    reference = np.array([fwhm(moffat_psf(s, survey.pixel_scale, survey.moffat_beta, size=65))
                          for s in conditions["seeing"]])
    ratio = np.array([fwhm(p) for p in psf]) / reference
    assert np.all((ratio > 1.0) & (ratio < 1.08)), ratio
    # Ellipticity: the blurred point is longer along psf_phi.
    elongated = observing.blur(point[:1], survey, {"seeing": np.array([1.0]), "psf_e": np.array([0.1]),
                                                   "psf_phi": np.array([90.0])})[0].numpy()
    assert elongated[:, 32].sum() > 1.05 * elongated[32].sum()


def test_randomised_conditions_are_stored_and_reproducible(tmp_path: Path) -> None:
    settings = {"image_size": 32, "supersampling": 1, "seed": 9, "batch_size": 30, "negative_mix": {"galaxy": 1.0}}
    product = read_product(make_lens_training_set(tmp_path / "a.h5", 60, **settings))
    table = product.table
    for name, prior in observing.OBSERVING_PRIORS.items():
        low, high = prior.limits
        scale = SURVEYS["lsst"].seeing if name == "seeing" else 1.0
        assert np.all((table[name] >= low * scale) & (table[name] <= high * scale)), name
    assert np.std(table["seeing"]) > 0.05
    again = read_product(make_lens_training_set(tmp_path / "b.h5", 60, **settings))
    np.testing.assert_array_equal(again.arrays["image"], product.arrays["image"])
    # The stored arc S/N is that of the arc at the image's own seeing and depth.
    lenses = np.asarray(table["label"]) == 1
    simulator = LensSimulator("lsst", 32, 1, psf=observing.base_psf(SURVEYS["lsst"]))
    params = {name: np.asarray(table[name][lenses], dtype=np.float64) for name in LENS_PRIORS}
    rows = {name: np.asarray(table[name][lenses], dtype=np.float64) for name in observing.OBSERVING_PRIORS}
    # Each image's PSF: the base PSF and its own blur (one kernel, so light the base PSF spreads
    # beyond the stamp edge and the blur brings back counts, as in observing.observe).
    arc, light, _ = simulator.render_components(params, convolve=False)
    arc, light = observing.observe(simulator, arc, rows), observing.observe(simulator, light, rows)
    variance = simulator.noise_variance(arc + light) / torch.as_tensor(rows["depth"], dtype=arc.dtype).reshape(-1, 1, 1)
    np.testing.assert_allclose(arc_signal_to_noise(arc, variance).numpy(), table["arc_snr"][lenses], rtol=2e-3)
    assert np.all(table["arc_snr"][lenses] >= 10.0)


def test_noise_follows_depth(tmp_path: Path) -> None:
    product = read_product(make_lens_training_set(tmp_path / "d.h5", 120, image_size=32, supersampling=1, seed=3,
                                                  positive_fraction=0.1, negative_mix={"galaxy": 1.0}))
    images = product.arrays["image"][:, 0]
    # Sky-dominated corners: noise sigma ~ 1 / sqrt(depth); differences of neighbouring
    # pixels remove the smooth wings of the galaxy.
    corners = np.concatenate([np.diff(images[:, :8, :8], axis=2).reshape(len(images), -1),
                              np.diff(images[:, -8:, -8:], axis=2).reshape(len(images), -1)], 1)
    sigma = corners.std(axis=1) / np.sqrt(2.0)
    depth = np.asarray(product.table["depth"])
    slope = np.polyfit(np.log(depth), np.log(sigma), 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.1)


def test_negative_mix_is_parsed_and_checked(tmp_path: Path) -> None:
    assert parse_negative_mix("") is None
    assert parse_negative_mix("galaxy:3, ring:1") == {"galaxy": 0.75, "ring": 0.25}
    assert check_negative_mix(NEGATIVE_MIX) == pytest.approx(NEGATIVE_MIX)
    with pytest.raises(ValueError, match="unknown kinds"):
        parse_negative_mix("galaxy:1,donut:1")
    with pytest.raises(ValueError, match="kind:weight"):
        parse_negative_mix("galaxy=1")
    table = read_product(make_lens_training_set(tmp_path / "m.h5", 40, image_size=16, supersampling=1, seed=1,
                                                negative_mix={"star": 1.0, "merger": 1.0})).table
    assert set(np.asarray(table["kind"]).astype(str)) == {"lens", "star", "merger"}


COSMOS_FITS = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lens" / "galsim_real_galaxies"
               / "real_galaxy_catalog_23.5_example_fits.fits")


@pytest.mark.realdata
@pytest.mark.skipif(not COSMOS_FITS.is_file(), reason="no ../shared/data COSMOS fits")
def test_sources_take_real_cosmos_shapes(tmp_path: Path) -> None:
    from skysift.lens.injection import COSMOS_SOURCE_SIZE_FACTOR, read_cosmos_sersic_fits

    shapes = read_cosmos_sersic_fits(COSMOS_FITS)
    assert len(shapes["n"]) > 50
    product = read_product(make_lens_training_set(tmp_path / "c.h5", 40, image_size=32, supersampling=1, seed=2,
                                                  source_catalogue=COSMOS_FITS))
    table = product.table
    lensed = np.isin(np.asarray(table["kind"]), ("lens", "arclet"))
    # Every source's (n, q) pair is one galaxy's.
    pairs = {(round(n, 9), round(q, 9)) for n, q in zip(shapes["n"], shapes["q"])}
    assert all((round(n, 9), round(q, 9)) in pairs for n, q in zip(table["source_n"][lensed], table["source_q"][lensed]))
    sizes = np.clip(COSMOS_SOURCE_SIZE_FACTOR * shapes["r_eff"], 0.05, 1.0)
    assert np.all(np.isin(np.round(table["source_r_eff"][lensed], 9), np.round(sizes, 9)))
    assert product.attrs["source_shapes"] == str(COSMOS_FITS)


def test_bad_cosmos_catalogue_names_the_file(tmp_path: Path) -> None:
    from skysift.errors import InputDataError
    from skysift.lens.injection import read_cosmos_sersic_fits

    with pytest.raises(InputDataError, match="not found"):
        read_cosmos_sersic_fits(tmp_path / "absent.fits")
    (tmp_path / "junk.fits").write_bytes(b"not fits")
    with pytest.raises(InputDataError, match="junk.fits"):
        read_cosmos_sersic_fits(tmp_path / "junk.fits")


def test_multi_band_images_follow_the_drawn_colours(tmp_path: Path) -> None:
    bands = ("lsst-g", "lsst-r", "lsst-i")
    product = read_product(make_lens_training_set(tmp_path / "gri.h5", 40, survey="lsst-r", bands=bands, seed=4,
                                                  image_size=32, supersampling=1, positive_fraction=0.0,
                                                  negative_mix={"galaxy": 1.0}, conditions="fixed"))
    images, table = product.arrays["image"], product.table
    assert images.shape == (40, 3, 32, 32) and product.attrs["bands"] == ",".join(bands)
    # Plain galaxies: the band fluxes are the r-band flux scaled by the lens colours and zero points.
    flux = images.sum(axis=(2, 3))
    for channel, band in enumerate(bands):
        letter = band[-1]
        zero_point_offset = SURVEYS[band].zero_point - SURVEYS["lsst-r"].zero_point
        expected = 10 ** (-0.4 * (np.asarray(table[f"lens_dmag_{letter}"]) - zero_point_offset))
        np.testing.assert_allclose(flux[:, channel] / flux[:, 1], expected, rtol=0.1)
    # Lens light is red: g - r >= 1.
    assert np.all(np.asarray(table["lens_dmag_g"]) >= 1.0)
    with pytest.raises(ValueError, match="r band"):
        make_lens_training_set(tmp_path / "bad.h5", 4, survey="lsst-g", bands=bands, image_size=16, supersampling=1)
