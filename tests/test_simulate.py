from __future__ import annotations

import numpy as np
import pytest

from skysift.simulate.run import cut_stamps
from skysift.simulate.starfield import (
    FieldSpec,
    double_gaussian_psf,
    psf_effective_area,
    render_point_sources,
    simulate_pair,
)


def test_rendered_flux_and_centroid():
    image = render_point_sources((64, 64), np.array([20.3, 40.0]), np.array([30.7, 10.2]), np.array([1000.0, 5e4]), 3.0)
    assert image.sum() == pytest.approx(51000.0, rel=1e-4)
    stamp = image[22:40, 12:30]
    yy, xx = np.mgrid[22:40, 12:30]
    assert (xx * stamp).sum() / stamp.sum() == pytest.approx(20.3, abs=0.02)
    assert (yy * stamp).sum() / stamp.sum() == pytest.approx(30.7, abs=0.02)


def test_psf_stamp_matches_renderer():
    psf = double_gaussian_psf(3.0, 31)
    rendered = render_point_sources((31, 31), np.array([15.0]), np.array([15.0]), np.array([1.0]), 3.0)
    np.testing.assert_allclose(rendered, psf, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        double_gaussian_psf(3.0, 30)


def test_pair_truth_is_consistent():
    spec = FieldSpec(image_size=256, n_stars=150, n_transients=8, n_saturated=2)
    first = simulate_pair(spec, np.random.default_rng(5))
    second = simulate_pair(spec, np.random.default_rng(5))
    np.testing.assert_array_equal(first.science, second.science)  # pure function of the seed
    assert first.science.shape == (256, 256) and first.science.dtype == np.float32
    assert len(first.transients) == 8
    # Sky positions map back to the recorded pixel positions through each WCS.
    x, y = first.science_wcs.wcs_world2pix(first.transients["ra"], first.transients["dec"], 0)
    np.testing.assert_allclose(x, first.transients["x_sci"], atol=1e-6)
    # Saturated stars are clipped to the full well.
    assert first.reference.max() == spec.saturation
    assert first.stars["saturated"].sum() == 2
    # The transients are there: background-subtracted aperture flux near the truth.
    t = first.transients[np.argmax(first.transients["snr"])]
    cx, cy = int(round(t["x_sci"])), int(round(t["y_sci"]))
    aperture = first.science[cy - 8 : cy + 9, cx - 8 : cx + 9] - spec.science_sky
    # The aperture can contain faint stars too, so only a lower bound.
    assert aperture.sum() > 0.8 * t["flux"]


def test_transient_snr_definition():
    # S/N = F / sqrt(F + A (sky + rn^2)) holds for the flux that was drawn.
    spec = FieldSpec(image_size=128, n_stars=0, n_saturated=0, n_transients=5)
    sim = simulate_pair(spec, np.random.default_rng(1))
    area = psf_effective_area(spec.science_fwhm)
    flux = np.asarray(sim.transients["flux"])
    snr = flux / np.sqrt(flux + area * (spec.science_sky + spec.read_noise**2))
    np.testing.assert_allclose(snr, sim.transients["snr"], rtol=1e-10)


def test_cut_stamps_pads_edges_with_nan():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    stamps = cut_stamps(image, np.array([5.0, 0.0]), np.array([5.0, 0.0]), 3)
    np.testing.assert_array_equal(stamps[0], image[4:7, 4:7])
    assert np.isnan(stamps[1, 0]).all() and stamps[1, 1, 1] == 0.0
