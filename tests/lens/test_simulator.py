"""Physics and numerics of the lens simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.lens.simulator import (
    LENS_PRIORS,
    SURVEYS,
    LensSimulator,
    gaussian_psf,
    moffat_psf,
    sersic_bn,
    sie_deflection,
)
from scipy.special import gammainc

from skysift.simulate.priors import Fixed


def _sie(x, y, theta_e, q, phi_deg=0.0, g1=0.0, g2=0.0):
    q = min(q, 0.99999999)
    phi = np.deg2rad(phi_deg)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return sie_deflection(
        x, y, t(theta_e * np.sqrt(q)), t(q), t(np.sqrt(1 - q * q)), t(np.cos(phi)), t(np.sin(phi)),
        t(0.0), t(0.0), t(g1), t(g2),
    )


def test_sis_deflection_has_modulus_theta_e() -> None:
    angle = torch.linspace(0, 2 * np.pi, 37, dtype=torch.float64)
    radius = torch.tensor([0.1, 0.7, 3.0], dtype=torch.float64)[:, None]
    x, y = radius * torch.cos(angle), radius * torch.sin(angle)
    ax, ay = _sie(x, y, 1.3, 1.0)
    np.testing.assert_allclose(torch.hypot(ax, ay).numpy(), 1.3, rtol=1e-6)
    # Radial, pointing away from the centre.
    np.testing.assert_allclose((ax * x + ay * y).numpy(), 1.3 * radius.numpy() * np.ones_like(x.numpy()), rtol=1e-6)


def test_sie_convergence_from_divergence() -> None:
    """kappa = div(alpha) / 2 = theta_E / (2 sqrt(q x^2 + y^2 / q)) (finite differences)."""
    x = torch.tensor([0.8, -0.5, 0.3], dtype=torch.float64)
    y = torch.tensor([0.2, 0.9, -1.1], dtype=torch.float64)
    h = 1e-5
    q, theta_e = 0.6, 1.2
    ax1, _ = _sie(x + h, y, theta_e, q)
    ax0, _ = _sie(x - h, y, theta_e, q)
    _, ay1 = _sie(x, y + h, theta_e, q)
    _, ay0 = _sie(x, y - h, theta_e, q)
    kappa = ((ax1 - ax0) + (ay1 - ay0)) / (4 * h)
    expected = theta_e / (2 * torch.sqrt(q * x**2 + y**2 / q))
    np.testing.assert_allclose(kappa.numpy(), expected.numpy(), rtol=1e-5)


def test_centred_source_makes_einstein_ring_at_theta_e() -> None:
    params = {k: np.array([v]) for k, v in {
        "theta_E": 1.5, "q": 1.0, "phi": 0.0, "gamma1": 0.0, "gamma2": 0.0, "x_lens": 0.0, "y_lens": 0.0,
        "source_mag": 20.0, "source_r_eff": 0.05, "source_n": 1.0, "source_q": 1.0, "source_phi": 0.0,
        "x_src": 0.0, "y_src": 0.0,
    }.items()}
    simulator = LensSimulator("euclid", 64, 3, psf=None, dtype=torch.float64)
    arc, light, _ = simulator.render_components(params)
    assert light is None
    image = arc[0].numpy()
    centres = (np.arange(64) - 31.5) * simulator.survey.pixel_scale
    radius = np.hypot(centres[None, :], centres[:, None])
    bins = np.arange(0, 3.2, 0.1)
    profile = [image[(radius >= a) & (radius < a + 0.1)].mean() for a in bins[:-1]]
    peak = bins[int(np.argmax(profile))] + 0.05
    assert abs(peak - 1.5) <= 0.1
    # Azimuthally uniform: a ring, not arcs (flux in eight sectors).
    angle = np.arctan2(centres[:, None], centres[None, :])
    near = np.abs(radius - 1.5) < 0.4
    sectors = [image[near & (np.floor((angle + np.pi) / (np.pi / 4)) == k)].sum() for k in range(8)]
    assert np.std(sectors) / np.mean(sectors) < 0.05


def test_sersic_bn_solves_its_definition() -> None:
    n = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(gammainc(2 * n, sersic_bn(n)), 0.5, atol=2e-4)


@pytest.mark.parametrize("survey", sorted(SURVEYS))
def test_psf_convolution_conserves_flux(survey: str) -> None:
    simulator = LensSimulator(survey, 48, 1)
    images = torch.zeros((3, 48, 48))
    images[0, 24, 24] = 5.0
    images[1, 19:29, 20:30] = 1.0
    images[2] = torch.rand(48, 48, generator=torch.Generator().manual_seed(0)) * 0 + 0
    images[2, 20, 26] = 2.0
    out = simulator.convolve(images)
    np.testing.assert_allclose(out.sum(dim=(1, 2)).numpy(), images.sum(dim=(1, 2)).numpy(), rtol=1e-5)
    # A point source becomes the kernel itself.
    k = simulator.psf_kernel
    h = k.shape[0] // 2
    np.testing.assert_allclose(out[0, 24 - h : 24 + h + 1, 24 - h : 24 + h + 1].numpy(), 5.0 * k, atol=1e-6)


def test_psf_kernels_have_the_requested_fwhm() -> None:
    for kernel in (gaussian_psf(0.8, 0.05), moffat_psf(0.8, 0.05, beta=3.0)):
        centre = kernel.shape[0] // 2
        row = kernel[centre]
        above = np.flatnonzero(row >= row.max() / 2)
        width = (above[-1] - above[0] + 1) * 0.05
        assert abs(width - 0.8) <= 0.1
        assert abs(kernel.sum() - 1) < 1e-12


def test_noise_model_variance() -> None:
    simulator = LensSimulator("lsst", 32, 1, psf=None)
    survey = simulator.survey
    level = 2.0
    images = torch.full((64, 32, 32), level, dtype=torch.float32)
    noisy = simulator.add_noise(images, np.random.default_rng(3))
    expected = survey.background_variance + level / survey.total_exposure
    measured = float((noisy - images).double().var())
    assert measured == pytest.approx(expected, rel=0.03)
    blank = simulator.add_noise(torch.zeros(64, 32, 32), np.random.default_rng(3))
    assert float(blank.double().var()) == pytest.approx(survey.background_variance, rel=0.03)
    # Pure function of the rng.
    again = simulator.add_noise(images, np.random.default_rng(3))
    assert torch.equal(noisy, again)


def test_priors_respected_and_fixed_values_used() -> None:
    rng = np.random.default_rng(0)
    params = LensSimulator.draw_parameters(2000, rng)
    for name, prior in LENS_PRIORS.items():
        low, high = prior.limits
        assert params[name].min() >= low and params[name].max() <= high, name
    custom = dict(LENS_PRIORS, theta_E=Fixed(1.0, unit="arcsec"))
    assert np.all(LensSimulator.draw_parameters(10, rng, custom)["theta_E"] == 1.0)


def test_float32_and_float64_agree_and_batch_independent() -> None:
    params = LensSimulator.draw_parameters(6, np.random.default_rng(1))
    img64 = LensSimulator("hsc", 32, 2, dtype=torch.float64, chunk_size=4).render(params).numpy()
    img32 = LensSimulator("hsc", 32, 2, dtype=torch.float32, chunk_size=None).render(params).numpy()
    np.testing.assert_allclose(img32, img64, atol=1e-4 * img64.max())
    single = LensSimulator("hsc", 32, 2, dtype=torch.float64).render({k: v[2:3] for k, v in params.items()})
    np.testing.assert_allclose(single[0].numpy(), img64[2], rtol=1e-10, atol=1e-12)


def test_magnification_is_large_for_aligned_source() -> None:
    params = LensSimulator.draw_parameters(4, np.random.default_rng(2))
    params["x_src"][:] = 0.01
    params["y_src"][:] = 0.0
    _, _, magnification = LensSimulator("lsst", 64, 2).render_components(params)
    assert torch.all(magnification > 3)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    params = LensSimulator.draw_parameters(8, np.random.default_rng(1))
    cpu = LensSimulator("lsst", 32, 3, dtype=torch.float64).render(params)
    gpu = LensSimulator("lsst", 32, 3, dtype=torch.float64, device="cuda").render(params).cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=1e-9 * float(cpu.max()))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown survey"):
        LensSimulator("sdss")
    with pytest.raises(ValueError, match="odd side"):
        LensSimulator("lsst", psf=np.ones((4, 4)))
    with pytest.raises(ValueError, match="b_n method"):
        LensSimulator("lsst", sersic_bn_method="guess")


@pytest.mark.parametrize("survey", ["lsst", "euclid"])
def test_adaptive_supersampling_matches_uniform(survey: str) -> None:
    """Adaptive ss=3 within 1 % of the peak of uniform ss=3 (noise-free, no PSF: the strictest case)."""
    params = LensSimulator.draw_parameters(300, np.random.default_rng(9))
    uniform = LensSimulator(survey, 48, 3, psf=None, dtype=torch.float64)
    adaptive = LensSimulator(survey, 48, 3, psf=None, dtype=torch.float64, adaptive_supersampling=True)
    arc_u, light_u, mag_u = uniform.render_components(params)
    arc_a, light_a, mag_a = adaptive.render_components(params)
    peak = (arc_u + light_u).amax(dim=(1, 2))
    worst = float((((arc_a + light_a) - (arc_u + light_u)).abs().amax(dim=(1, 2)) / peak).max())
    assert worst < 0.01, f"adaptive vs uniform: {worst:.2e} of the peak"
    # The arc alone, against its own (much fainter) peak.
    worst_arc = float(((arc_a - arc_u).abs().amax(dim=(1, 2)) / arc_u.amax(dim=(1, 2))).max())
    assert worst_arc < 0.01, f"arc: {worst_arc:.2e} of the arc peak"
    np.testing.assert_allclose(mag_a.numpy(), mag_u.numpy(), rtol=0.01)
    # ss=1 is far off (so the test has teeth): the adaptive pass does supersample.
    arc_1, _, _ = LensSimulator(survey, 48, 1, psf=None, dtype=torch.float64).render_components(params)
    assert float(((arc_1 - arc_u).abs().amax(dim=(1, 2)) / arc_u.amax(dim=(1, 2))).max()) > 0.05
