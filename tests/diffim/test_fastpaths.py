"""The fast paths agree with the straightforward implementations they replace."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from skysift.diffim import DiffimOptions, difference_images
from skysift.diffim.background import clipped_box_statistics
from skysift.diffim.detect import FLAG_NEAR_SATURATED
from skysift.diffim.fluxscale import aperture_fluxes
from skysift.diffim.masks import grow_mask, mask_near
from skysift.diffim.registration import affine_map, register
from skysift.diffim.stars import local_maxima
from skysift.simulate.starfield import make_wcs


def test_clipped_statistics_match_astropy():
    rng = np.random.default_rng(4)
    values = rng.normal(100.0, 5.0, (6, 900))
    values[:, :40] += rng.uniform(50, 500, (6, 40))  # stars in the boxes
    values[2, 500:] = np.nan  # masked half
    median, std, n_good = clipped_box_statistics(values, sigma=3.0, iterations=10)
    for row in range(values.shape[0]):
        finite = values[row][np.isfinite(values[row])]
        _, expected_median, expected_std = sigma_clipped_stats(finite, sigma=3.0, maxiters=10)
        assert median[row] == pytest.approx(expected_median, abs=1e-6)
        assert std[row] == pytest.approx(expected_std, rel=1e-6)
    assert n_good[2] == 500


def test_local_maxima_match_maximum_filter():
    rng = np.random.default_rng(5)
    image = ndimage.gaussian_filter(rng.normal(size=(200, 200)), 2.0)
    rows, cols = local_maxima(image, 0.05, size=7, border=5)
    expected = (image == ndimage.maximum_filter(image, size=7)) & (image > 0.05)
    expected[:5, :] = expected[-5:, :] = expected[:, :5] = expected[:, -5:] = False
    assert set(zip(rows.tolist(), cols.tolist())) == set(zip(*np.nonzero(expected)))


def test_mask_near_matches_grown_mask():
    rng = np.random.default_rng(6)
    mask = rng.uniform(size=(120, 120)) > 0.995
    x, y = rng.uniform(0, 119, (2, 400))
    grown = grow_mask(mask, 4)
    assert np.array_equal(mask_near(mask, x, y, 4), grown[np.round(y).astype(int), np.round(x).astype(int)])


def test_aperture_fluxes_of_flat_image_are_disc_areas():
    image = np.ones((100, 100))
    flux = aperture_fluxes(image, np.array([50.3, 40.0]), np.array([49.6, 60.2]), 6.5)
    assert flux == pytest.approx(np.pi * 6.5**2, rel=2e-3)


@pytest.fixture(scope="module")
def rotated_pair():
    rng = np.random.default_rng(8)
    size = 300
    science_wcs = make_wcs(size, 0.26, 150.0, 2.2, rotation=0.04, shift=(1.37, -2.61))
    reference_wcs = make_wcs(size, 0.26, 150.0, 2.2)
    reference = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5)
    bad = np.zeros((size, size), bool)
    bad[100:104, 200:210] = True
    return science_wcs, reference_wcs, reference, bad


def test_affine_fast_path_matches_general_path(rotated_pair):
    science_wcs, reference_wcs, reference, bad = rotated_pair
    science = np.zeros_like(reference)
    fast = register(science, reference, science_wcs, reference_wcs, refine=False, reference_mask=bad, use_affine=True)
    general = register(science, reference, science_wcs, reference_wcs, refine=False, reference_mask=bad, use_affine=False)
    assert fast.affine is not None and general.affine is None
    # The maps agree to well within the 0.01 px tolerance everywhere...
    assert np.max(np.hypot(fast.map_x - general.map_x, fast.map_y - general.map_y)) < 0.01
    # ...so do the resampled images (away from the footprint edge) and the masks.
    inner = ~(grow_mask(general.footprint_mask, 3))
    assert np.max(np.abs(fast.aligned - general.aligned)[inner]) < 0.01 * np.std(reference)
    assert np.array_equal(fast.footprint_mask, general.footprint_mask)
    assert np.array_equal(fast.transfer_mask(bad), general.transfer_mask(bad))


def test_affine_map_rejects_a_distorted_map(rotated_pair):
    science_wcs, reference_wcs, _, _ = rotated_pair
    assert affine_map(science_wcs, reference_wcs, (300, 300))[0] is not None
    distorted = reference_wcs.deepcopy()
    distorted.wcs.ctype = ["RA---ZEA", "DEC--ZEA"]
    distorted.wcs.crval = [150.0, 80.0]  # a projection mismatch far from the tangent point
    science_far = science_wcs.deepcopy()
    science_far.wcs.crval = [150.0, 80.0]
    science_far.wcs.cd = science_far.wcs.cd * 200.0  # a wide field
    distorted.wcs.cd = distorted.wcs.cd * 200.0
    transform, deviation = affine_map(science_far, distorted, (300, 300))
    assert transform is None and deviation > 0.01


def test_saturated_star_candidates_excluded_by_default(pair_512, fits_image, result_512):
    science = fits_image(pair_512.science, pair_512.science_wcs, "science.fits")
    reference = fits_image(pair_512.reference, pair_512.reference_wcs, "reference.fits")
    kept = difference_images(science, reference, options=DiffimOptions(exclude_near_saturated=False)).candidates
    assert not np.any(result_512.candidates["flags"] & FLAG_NEAR_SATURATED)
    assert result_512.candidates.meta["excluded_flags"] == FLAG_NEAR_SATURATED
    flagged = kept[(kept["flags"] & FLAG_NEAR_SATURATED) != 0]
    assert len(kept) == len(result_512.candidates) + len(flagged)


@pytest.mark.parametrize("order", [1, 3, 5])
@pytest.mark.parametrize("threads", [1, 3])
def test_affine_resample_matches_one_affine_transform(order, threads):
    """Row blocks on threads, with the prefilter per axis, equal SciPy's single call to rounding."""
    from scipy import ndimage

    from skysift.diffim.registration import affine_resample

    rng = np.random.default_rng(order)
    image = rng.normal(size=(301, 257)).astype(np.float32)
    image[100:110, 50:60] += 40.0  # a sharp source, where ringing of a wrong prefilter would show
    matrix = np.array([[1.0002, 0.0031], [-0.0029, 0.9997]])
    offset = np.array([2.4, -3.7])
    expected = ndimage.affine_transform(
        image, matrix, offset=offset, output_shape=(280, 300), order=order, mode="constant", cval=0.0, output=np.float32
    )
    resampled = affine_resample(image, matrix, offset, (280, 300), order=order, threads=threads)
    assert resampled.dtype == np.float32 and resampled.shape == (280, 300)
    np.testing.assert_allclose(resampled, expected, rtol=0, atol=1e-5)
