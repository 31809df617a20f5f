"""ZOGY normalisation and photometry on controlled inputs (known PSFs, white noise)."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.diffim.zogy import pad_psf, zogy, zogy_grid
from skysift.simulate.starfield import double_gaussian_psf, psf_effective_area, render_point_sources

SIZE = 384
SIGMA_NEW, SIGMA_REF = 20.0, 15.0
PSF_NEW = double_gaussian_psf(3.5, 29)
PSF_REF = double_gaussian_psf(2.5, 29)
INTERIOR = (slice(40, -40), slice(40, -40))


def transient_flux(snr: float) -> float:
    """Flux with the given optimal S/N in the new image alone (as the simulator defines it)."""
    background = psf_effective_area(3.5) * SIGMA_NEW**2
    return 0.5 * (snr**2 + np.sqrt(snr**4 + 4 * snr**2 * background))


def test_pad_psf_puts_centre_at_origin():
    psf = np.zeros((5, 5))
    psf[2, 2] = 1.0
    padded = pad_psf(psf, (16, 16))
    assert padded[0, 0] == 1.0 and padded.sum() == 1.0
    with pytest.raises(ValueError, match="odd"):
        pad_psf(np.ones((4, 4)), (16, 16))


def test_scorr_is_unit_variance_on_pure_noise():
    rng = np.random.default_rng(11)
    new = rng.normal(0, SIGMA_NEW, (SIZE, SIZE))
    reference = rng.normal(0, SIGMA_REF, (SIZE, SIZE))
    result = zogy(new, reference, PSF_NEW, PSF_REF, SIGMA_NEW, SIGMA_REF, flux_new=0.8)
    assert np.std(result.score_corr[INTERIOR]) == pytest.approx(1.0, abs=0.03)
    assert np.std(result.difference[INTERIOR]) == pytest.approx(1.0, abs=0.03)
    # F_psf errors are the noise of S / F_S.
    pulls = result.flux_psf[INTERIOR] / result.flux_psf_err[INTERIOR]
    assert np.std(pulls) == pytest.approx(1.0, abs=0.03)


def test_transient_significance_and_flux():
    rng = np.random.default_rng(12)
    snr = 20.0
    flux = transient_flux(snr)
    x, y = 190.3, 170.6
    truth = render_point_sources((SIZE, SIZE), [x], [y], [flux], 3.5)
    new = rng.poisson(truth + SIGMA_NEW**2) - SIGMA_NEW**2 + 0.0
    reference = rng.normal(0, SIGMA_REF, (SIZE, SIZE))
    result = zogy(
        new, reference, PSF_NEW, PSF_REF, SIGMA_NEW, SIGMA_REF, flux_new=0.8,
        variance_new=SIGMA_NEW**2 + truth, variance_reference=np.full((SIZE, SIZE), SIGMA_REF**2),
    )
    iy, ix = int(round(y)), int(round(x))
    peak = result.score_corr[iy - 2 : iy + 3, ix - 2 : ix + 3].max()
    # The reference adds noise, so the difference S/N is a little below 20.
    assert 0.7 * snr <= peak <= 1.3 * snr
    assert result.flux_psf[iy, ix] == pytest.approx(flux, rel=0.1)
    assert result.flux_psf_err[iy, ix] == pytest.approx(flux / snr, rel=0.3)


def test_bright_transient_flux_within_ten_percent():
    rng = np.random.default_rng(13)
    flux = transient_flux(60.0)
    truth = render_point_sources((SIZE, SIZE), [200.0], [150.0], [flux], 3.5)
    new = truth + rng.normal(0, SIGMA_NEW, (SIZE, SIZE))
    reference = rng.normal(0, SIGMA_REF, (SIZE, SIZE))
    result = zogy(new, reference, PSF_NEW, PSF_REF, SIGMA_NEW, SIGMA_REF, flux_new=1.3)
    assert result.flux_psf[150, 200] == pytest.approx(flux, rel=0.05)


def test_identical_sources_cancel():
    rng = np.random.default_rng(14)
    stars = render_point_sources((SIZE, SIZE), [100.0, 250.0], [120.0, 260.0], [5e4, 2e4], 2.5)
    reference = stars + rng.normal(0, SIGMA_REF, (SIZE, SIZE))
    new = 0.8 * render_point_sources((SIZE, SIZE), [100.0, 250.0], [120.0, 260.0], [5e4, 2e4], 3.5)
    new += rng.normal(0, SIGMA_NEW, (SIZE, SIZE))
    result = zogy(new, reference, PSF_NEW, PSF_REF, SIGMA_NEW, SIGMA_REF, flux_new=0.8)
    assert np.abs(result.score_corr[INTERIOR]).max() < 5.5


def test_grid_matches_single_solution_for_constant_psf():
    rng = np.random.default_rng(15)
    new = rng.normal(0, SIGMA_NEW, (256, 256))
    reference = rng.normal(0, SIGMA_REF, (256, 256))
    single = zogy(new, reference, PSF_NEW, PSF_REF, SIGMA_NEW, SIGMA_REF)
    psfs_new = np.broadcast_to(PSF_NEW, (2, 2) + PSF_NEW.shape)
    psfs_ref = np.broadcast_to(PSF_REF, (2, 2) + PSF_REF.shape)
    edges = np.array([0, 128, 256])
    grid = zogy_grid(new, reference, psfs_new, psfs_ref, edges, edges, SIGMA_NEW, SIGMA_REF, overlap=40)
    assert grid.psf_difference.shape[:2] == (2, 2)
    inner = (slice(40, -40), slice(40, -40))
    np.testing.assert_allclose(grid.score_corr[inner], single.score_corr[inner], atol=0.02)


def test_rejects_non_finite_input():
    image = np.zeros((64, 64))
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        zogy(image, np.zeros((64, 64)), PSF_NEW[7:-7, 7:-7], PSF_REF[7:-7, 7:-7], 1.0, 1.0)
