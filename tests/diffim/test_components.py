"""Masks, backgrounds, PSFs, registration, flux scale and detection on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from skysift.diffim.background import estimate_background
from skysift.diffim.detect import FLAG_DEBLENDED, FLAG_NEAR_MASK, FLAG_NEAR_SATURATED, FLAG_NEGATIVE, detect_candidates
from skysift.diffim.masks import combine_masks, edge_mask, fill_masked, grow_mask, saturation_level, saturation_mask
from skysift.diffim.psf import estimate_psf, estimate_psf_grid, psf_fwhm
from skysift.diffim.registration import fit_affine, register
from skysift.diffim.stars import find_stars, windowed_centroids
from skysift.errors import InputDataError
from skysift.simulate.starfield import double_gaussian_psf, make_wcs


# Masks ---------------------------------------------------------------------
def test_saturation_level_prefers_keyword_and_lowest_amplifier():
    assert saturation_level(fits.Header({"SATURATE": 5.0})) == 5.0
    assert saturation_level(fits.Header({"SATURATA": 7.0, "SATURATB": 6.0})) == 6.0
    assert saturation_level(fits.Header(), default=3.0) == 3.0
    assert saturation_level(fits.Header()) is None


def test_saturation_mask_grows_with_region_size():
    image = np.zeros((64, 64))
    image[10, 10] = 100.0
    image[40:46, 40:46] = 100.0
    mask = saturation_mask(image, 50.0, grow=1, grow_factor=2.0)
    assert mask[10, 11] and not mask[10, 14]
    assert mask[43, 52]  # 6x6 block: radius ~3.4, reach 1 + 6.8 px beyond its edge
    assert not saturation_mask(image, None).any()


def test_combine_fill_and_edges():
    shape = (20, 20)
    nan_mask = np.zeros(shape, bool)
    nan_mask[5, 5] = True
    combined = combine_masks(nan_mask, None, edge_mask(shape, 2), shape=shape)
    assert combined[5, 5] and combined[0, 7] and not combined[10, 10]
    with pytest.raises(ValueError, match="shape"):
        combine_masks(np.zeros((3, 3)), shape=shape)
    filled = fill_masked(np.full(shape, np.nan), combined | ~combined, 2.0)
    assert np.all(filled == 2.0)
    assert grow_mask(nan_mask, 2).sum() == 13


def test_background_noise_matches_simulation(pair_512):
    spec = pair_512.spec
    estimate = estimate_background(pair_512.science, pair_512.science >= spec.saturation)
    assert estimate.sigma == pytest.approx(np.sqrt(spec.science_sky + spec.read_noise**2), rel=0.05)
    assert np.median(estimate.background) == pytest.approx(spec.science_sky, abs=3.0)


# PSF -----------------------------------------------------------------------
@pytest.mark.parametrize("which", ["science", "reference"])
def test_psf_fwhm_recovered(pair_512, which):
    spec = pair_512.spec
    image = getattr(pair_512, which)
    fwhm = spec.science_fwhm if which == "science" else spec.reference_fwhm
    saturated = saturation_mask(image, spec.saturation, grow=3, grow_factor=2.0)
    background = estimate_background(image, saturated)
    psf = estimate_psf(image - background.background, background.sigma, mask=saturated, name=which)
    assert psf.shape[0] % 2 == 1 and psf.shape[0] == psf.shape[1]
    assert psf.sum() == pytest.approx(1.0)
    true_fwhm = psf_fwhm(double_gaussian_psf(fwhm, psf.shape[0]))
    assert psf_fwhm(psf) == pytest.approx(true_fwhm, rel=0.10)
    # Centred: the windowed centroid (the one used for stars) is the central pixel.
    centre = psf.shape[0] // 2
    cx, cy = windowed_centroids(psf, np.array([centre + 0.3]), np.array([centre - 0.3]), fwhm)
    assert abs(cx[0] - centre) < 0.05 and abs(cy[0] - centre) < 0.05


def test_psf_grid_gives_one_psf_per_cell(pair_512):
    image = pair_512.science - 400.0
    saturated = saturation_mask(pair_512.science, 60000.0, grow=3, grow_factor=2.0)
    grid = estimate_psf_grid(image, 20.6, mask=saturated, grid=2)
    assert grid.psfs.shape[:2] == (2, 2)
    assert np.allclose(grid.psfs.sum(axis=(2, 3)), 1.0)
    assert list(grid.y_edges) == [0, 256, 512]


def test_no_stars_found_is_input_error():
    rng = np.random.default_rng(5)
    with pytest.raises(InputDataError, match="blank.fits: no stars found"):
        estimate_psf(rng.normal(0, 1, (128, 128)), 1.0, name="blank.fits")


# Registration --------------------------------------------------------------
def _stars(image, spec):
    saturated = saturation_mask(image, spec.saturation, grow=3)
    background = estimate_background(image, saturated)
    data = np.where(saturated, 0.0, image - background.background)
    return data, saturated, find_stars(data, background.sigma, mask=saturated, fwhm=3.0)


def test_registration_recovers_known_shift_and_rotation(pair_512):
    spec = pair_512.spec
    science, _, science_stars = _stars(pair_512.science, spec)
    reference, reference_bad, reference_stars = _stars(pair_512.reference, spec)
    # Spoil the science WCS by a 4.3 px offset: star matching must find it.
    spoiled = pair_512.science_wcs.deepcopy()
    spoiled.wcs.crpix = spoiled.wcs.crpix + np.array([4.3, -2.7])
    result = register(
        science, reference, spoiled, pair_512.reference_wcs,
        science_stars=science_stars, reference_stars=reference_stars, reference_mask=reference_bad,
    )
    assert result.rms_residual < 0.1
    assert result.n_matched >= 10
    stars = pair_512.stars
    inside = (stars["x_sci"] > 5) & (stars["x_sci"] < 506) & (stars["y_sci"] > 5) & (stars["y_sci"] < 506)
    ix = np.round(stars["x_sci"][inside]).astype(int)
    iy = np.round(stars["y_sci"][inside]).astype(int)
    # The map at a pixel must land where that pixel's sky position is in the reference.
    world = pair_512.science_wcs.pixel_to_world_values(ix, iy)
    true_x, true_y = pair_512.reference_wcs.world_to_pixel_values(*world)
    error = np.hypot(result.map_x[iy, ix] - true_x, result.map_y[iy, ix] - true_y)
    assert np.max(error) < 0.1
    assert not result.footprint_mask[256, 256]
    assert result.footprint_mask.any()  # the shifted edges fall outside the reference


def test_no_overlap_names_both_files():
    size = 128
    science_wcs = make_wcs(size, 0.26, 150.0, 2.2)
    reference_wcs = make_wcs(size, 0.26, 151.0, 2.2)
    image = np.zeros((size, size))
    with pytest.raises(InputDataError, match="sci.fits and ref.fits: footprints do not overlap"):
        register(image, image, science_wcs, reference_wcs, science_name="sci.fits", reference_name="ref.fits")


def test_fit_affine_rejects_outliers():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 500, (2, 60))
    angle = np.deg2rad(0.3)
    xt = 1.001 * (np.cos(angle) * x - np.sin(angle) * y) + 3.2 + rng.normal(0, 0.02, 60)
    yt = 1.001 * (np.sin(angle) * x + np.cos(angle) * y) - 1.1 + rng.normal(0, 0.02, 60)
    xt[:5] += 10.0
    transform, used, rms = fit_affine(x, y, xt, yt)
    assert not used[:5].any() and used[5:].all()
    assert rms < 0.05
    assert transform.rotation_deg == pytest.approx(0.3, abs=0.01)
    assert transform.scale == pytest.approx(1.001, abs=1e-4)


# Flux scale ----------------------------------------------------------------
def test_flux_scale_recovered(result_512, pair_512):
    assert result_512.flux_scale.ratio == pytest.approx(pair_512.spec.science_flux_scale, rel=0.03)
    assert result_512.flux_scale.n_stars >= 10


# Detection -----------------------------------------------------------------
def test_detect_candidates_signs_flags_and_masks():
    shape = (128, 128)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]

    def blob(x, y, amplitude):
        return amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))

    score = blob(40.2, 50.7, 12.0) + blob(90.0, 90.0, -9.0) + blob(64.0, 20.0, 30.0) + blob(20.0, 100.0, 8.0)
    score += blob(100.0, 30.0, 10.0) + blob(105.0, 30.0, 10.0)  # a blend
    mask = np.zeros(shape, bool)
    mask[14:27, 58:71] = True  # covers the 30-sigma blob entirely
    mask[100, 22] = True  # 2 px from the S/N 8 source
    wcs = make_wcs(128, 0.26, 150.0, 2.2)
    table = detect_candidates(score, threshold=5.0, mask=mask, flux=score * 10, flux_err=np.full(shape, 10.0), wcs=wcs)
    assert len(table) == 5
    assert not np.any((np.abs(table["x"] - 64) < 3) & (np.abs(table["y"] - 20) < 3))
    first = table[np.argmin(np.hypot(table["x"] - 40.2, table["y"] - 50.7))]
    assert first["x"] == pytest.approx(40.2, abs=0.15) and first["y"] == pytest.approx(50.7, abs=0.15)
    assert first["snr"] == pytest.approx(first["scorr"], rel=0.01)
    negative = table[table["scorr"] < 0]
    assert len(negative) == 1 and negative["flags"][0] & FLAG_NEGATIVE
    near = table[np.argmin(np.hypot(table["x"] - 20, table["y"] - 100))]
    assert near["flags"] & FLAG_NEAR_MASK
    blended = table[np.abs(table["y"] - 30) < 2]
    assert len(blended) == 2 and all(blended["flags"] & FLAG_DEBLENDED)
    ra, dec = wcs.pixel_to_world_values(first["x"], first["y"])
    assert first["ra"] == pytest.approx(float(ra)) and first["dec"] == pytest.approx(float(dec))
    assert FLAG_NEAR_SATURATED == 2


def test_detect_on_empty_score_returns_empty_table():
    table = detect_candidates(np.zeros((64, 64)))
    assert len(table) == 0 and "flags" in table.colnames


def test_background_agrees_with_photutils_background2d():
    """Our vectorised mesh matches photutils' Background2D (median, clipped std, same boxes)."""
    photutils_background = pytest.importorskip("photutils.background")
    from astropy.stats import SigmaClip

    rng = np.random.default_rng(5)
    ny, nx = 512, 640
    yy, xx = np.mgrid[:ny, :nx]
    sky = 100.0 + 0.02 * xx - 0.015 * yy + 5.0 * np.sin(xx / 150.0)
    noise = 4.0 + 0.002 * xx
    image = sky + noise * rng.standard_normal((ny, nx))
    # stars the clipping has to reject
    for y, x in rng.uniform(20, [ny - 20, nx - 20], size=(150, 2)):
        image += 400.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
    ours = estimate_background(image, box_size=64, filter_size=3, sigma_clip=3.0)
    theirs = photutils_background.Background2D(
        image, 64, filter_size=3, sigma_clip=SigmaClip(sigma=3.0), bkg_estimator=photutils_background.MedianBackground(),
        bkg_rms_estimator=photutils_background.StdBackgroundRMS(),
    )
    inner = (slice(64, ny - 64), slice(64, nx - 64))  # the two treat the outermost half-box differently
    assert np.max(np.abs(ours.background[inner] - theirs.background[inner])) < 0.15 * noise.min()
    assert np.max(np.abs(ours.rms[inner] / theirs.background_rms[inner] - 1)) < 0.03
    # and both recover the truth
    assert np.median(np.abs(ours.background - sky)) < 0.1 * noise.min()
    assert abs(np.median(ours.rms / noise) - 1) < 0.03
