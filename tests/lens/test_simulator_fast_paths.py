"""The fast paths of the lens simulator: polynomial forms, noise deviates, chunking, the lens-light core block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from skysift.lens import simulator as sim_module
from skysift.lens.simulator import LensSimulator
from skysift.simulate.priors import Uniform

#: torch.compile imports modules that use torch.jit, deprecated in torch 2.13 (not our code).
compile_warnings = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@compile_warnings
def test_polynomial_forms_are_float32_accurate_when_compiled() -> None:
    log2 = torch.compile(sim_module._log2, dynamic=False)
    x = torch.exp(torch.linspace(-40.0, 40.0, 200_001, dtype=torch.float64)).float()
    reference = torch.log2(x.double())
    assert float((log2(x).double() - reference).abs().max()) < 3e-6  # float32 rounding of |log2| <= 58
    near_one = torch.linspace(0.99, 1.01, 20_001, dtype=torch.float32)
    exact = torch.log2(near_one.double())
    relative = (log2(near_one).double() - exact).abs() / exact.abs().clamp(min=1e-30)
    assert float(relative[exact != 0].max()) < 3e-7

    atan = torch.compile(sim_module._atan_ratio, dynamic=False)
    numerator = torch.linspace(-50.0, 50.0, 200_001, dtype=torch.float32)
    denominator = torch.full_like(numerator, 0.7)
    exact = torch.atan(numerator.double() / denominator.double())
    relative = (atan(numerator, denominator).double() - exact).abs() / exact.abs().clamp(min=1e-30)
    assert float(relative[exact != 0].max()) < 3e-7


def test_polynomial_forms_are_library_calls_in_eager_mode() -> None:
    x = torch.rand(1000) + 0.1
    assert torch.equal(sim_module._log2(x), torch.log2(x))
    assert torch.equal(sim_module._atan_ratio(x - 0.5, x), torch.atan((x - 0.5) / x))
    x64 = x.double()
    assert torch.equal(sim_module._log2(x64), torch.log2(x64))


def test_noise_deviates_are_standard_normal() -> None:
    rng = np.random.default_rng(11)
    n, m = 64, 4096
    words = rng.bit_generator.random_raw(n * m).view(np.int32).reshape(n, m, 2)
    deviates = sim_module._noisy(torch.zeros(n, 2, m), torch.from_numpy(words), 1.0, 1.0).double().numpy()
    flat = deviates.ravel()
    assert abs(flat.mean()) < 5e-3 and abs(flat.var() - 1.0) < 5e-3
    assert stats.kstest(flat, "norm").statistic < 2e-3
    assert abs(stats.kurtosis(flat)) < 0.02
    assert np.abs(flat).max() <= np.sqrt(50 * np.log(2)) + 1e-5
    # The two deviates of a pair are independent.
    assert abs(np.corrcoef(deviates[:, 0].ravel(), deviates[:, 1].ravel())[0, 1]) < 5e-3
    assert abs(np.corrcoef(deviates[:, 0].ravel() ** 2, deviates[:, 1].ravel() ** 2)[0, 1]) < 5e-3


def test_unit_circle_polynomials_cover_every_angle() -> None:
    turns = torch.arange(-(1 << 23), 1 << 23, dtype=torch.int32)
    cos_angle, sin_angle = sim_module._unit_circle(turns.float())
    angle = turns.double() * (2 * np.pi / 2**24)
    assert float((cos_angle.double() - torch.cos(angle)).abs().max()) < 2e-7
    assert float((sin_angle.double() - torch.sin(angle)).abs().max()) < 2e-7


@compile_warnings
def test_noise_from_int64_words_matches_int32_pairs() -> None:
    """The batch path (int64 words, strided images, written in place) against :func:`_noisy`."""
    rng = np.random.default_rng(12)
    words = rng.bit_generator.random_raw(16 * 32 * 64)
    pairs = torch.from_numpy(words.view(np.int32).reshape(16, 32, 64, 2))
    raw = torch.from_numpy(words.view(np.int64).reshape(16, 32, 64))
    work = torch.rand(16, 2, 32, 80) * 100.0
    images = work[..., 8:72]  # strided, as the inverse FFT's crop
    reference = sim_module._noisy(images.contiguous(), pairs, 3.0, 4.0)
    out = torch.empty(16, 2, 32, 64)
    sim_module._noisy_into(out, images, raw, 3.0, 4.0)
    assert torch.equal(out, reference)
    # Compiled float32: polynomial log2, sin and cos, within float32 rounding of the deviates.
    compiled = torch.compile(sim_module._noisy_into)
    compiled(out, images, raw, 3.0, 4.0)
    sigma = torch.sqrt(images * 3.0 + 4.0) / 3.0
    assert float(((out - reference) / sigma).abs().max()) < 3e-6


def test_add_noise_with_an_odd_number_of_pixels() -> None:
    simulator = LensSimulator("hsc", 15, 1, psf=None)
    images = torch.full((400, 15, 15), 3.0)
    noisy = simulator.add_noise(images, np.random.default_rng(0))
    assert noisy.shape == images.shape
    expected = simulator.survey.background_variance + 3.0 / simulator.survey.total_exposure
    assert float((noisy - images).double().var()) == pytest.approx(expected, rel=0.03)
    assert torch.equal(noisy, simulator.add_noise(images, np.random.default_rng(0)))


@pytest.mark.parametrize("adaptive", [False, True])
def test_simulate_is_add_noise_of_render_whatever_the_chunks(adaptive: bool) -> None:
    params = LensSimulator.draw_parameters(7, np.random.default_rng(3))
    chunked = LensSimulator("lsst", 32, 3, chunk_size=3, adaptive_supersampling=adaptive)
    whole = LensSimulator("lsst", 32, 3, chunk_size=None, adaptive_supersampling=adaptive)
    images = chunked.simulate(params, np.random.default_rng(5))
    reference = whole.add_noise(whole.render(params), np.random.default_rng(5))
    np.testing.assert_allclose(images.numpy(), reference.numpy(), rtol=0, atol=1e-5 * float(reference.abs().max()))
    # render_components gives the same pixels (arc and light convolved apart: float32 rounding).
    arc, light, magnification = chunked.render_components(params)
    clean = whole.render(params).numpy()
    np.testing.assert_allclose((arc + light).numpy(), clean, rtol=0, atol=1e-5 * float(np.abs(clean).max()))
    assert torch.all(magnification > 0)


def test_lens_light_core_block_at_stamp_edges_and_small_stamps() -> None:
    """Lens centres far off the stamp centre, and a stamp smaller than the core block."""
    priors = dict(sim_module.LENS_PRIORS, x_lens=Uniform(-1.2, 1.2), y_lens=Uniform(-1.2, 1.2))
    params = LensSimulator.draw_parameters(200, np.random.default_rng(4), priors)
    for size in (8, 24):
        uniform = LensSimulator("lsst", size, 3, psf=None, dtype=torch.float64)
        adaptive = LensSimulator("lsst", size, 3, psf=None, dtype=torch.float64, adaptive_supersampling=True)
        light_u = uniform.render_galaxy(params, convolve=False)
        _, light_a, _ = adaptive.render_components(params, convolve=False)
        worst = float(((light_a - light_u).abs().amax(dim=(1, 2)) / light_u.amax(dim=(1, 2))).max())
        assert worst < 0.01, f"{size}x{size}: {worst:.2e} of the peak"


@pytest.mark.slow
@compile_warnings
def test_compiled_float32_matches_eager_float64() -> None:
    """The compiled kernels (polynomial forms, fused refinement) against the float64 reference."""
    params = LensSimulator.draw_parameters(24, np.random.default_rng(8))
    reference = LensSimulator("lsst", 32, 3, dtype=torch.float64, adaptive_supersampling=True).render(params)
    for adaptive in (True, False):
        compiled = LensSimulator("lsst", 32, 3, compile=True, chunk_size=8, adaptive_supersampling=adaptive)
        images = compiled.render(params).double()
        worst = float(((images - reference).abs().amax(dim=(1, 2)) / reference.amax(dim=(1, 2))).max())
        assert worst < 1e-3, f"adaptive={adaptive}: {worst:.2e} of the peak"


def test_eager_subpixels_in_one_array_match_the_loop_over_subpixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager refinement evaluates all sub-pixels as one (K, M) array; the loop form (compiled) is the reference."""
    simulator = LensSimulator("lsst", 48, 3, chunk_size=64, adaptive_supersampling=True)
    params = simulator.draw_parameters(96, np.random.default_rng(9))
    one_array = simulator.render(params)
    # The compiled kernels' loop over sub-pixels, run eagerly with the library functions.
    monkeypatch.setattr(sim_module, "_is_compiling", lambda: True)
    monkeypatch.setattr(sim_module, "_fusing", lambda x: False)
    loop = simulator.render(params)
    peak = loop.abs().amax(dim=(1, 2))
    # Float rounding only (a vectorised or a scalar exp2 for the elements at a vector's tail).
    assert torch.all((one_array - loop).abs().amax(dim=(1, 2)) <= 1e-6 * peak)


def test_fused_source_plane_map_is_the_lens_equation() -> None:
    """:func:`_source_radius2` (composed per-image maps) against deflecting, then the source's Sersic radius."""
    simulator = LensSimulator("lsst", 32, 3, dtype=torch.float64)
    params = simulator.draw_parameters(50, np.random.default_rng(11))
    tables = simulator._parameter_tables(params)
    lens, source = sim_module._columns(tables["lens"]), sim_module._columns(tables["source"])
    x, y = simulator.grid
    alpha_x, alpha_y, psi = sim_module._sie(x, y, lens)
    expected = sim_module._sersic_radius2(x - alpha_x, y - alpha_y, source)
    radius2, fused_psi = sim_module._source_radius2(x, y, lens, source)
    torch.testing.assert_close(radius2, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused_psi, psi, rtol=1e-12, atol=0.0)
    # In float32 the two round differently, by a few 1e-5 of the arc's peak at most.
    fast = LensSimulator("lsst", 32, 3, adaptive_supersampling=False)
    exact = LensSimulator("lsst", 32, 3, adaptive_supersampling=False, dtype=torch.float64)
    arc = fast.render_components(params, convolve=False)[0].double()
    reference = exact.render_components(params, convolve=False)[0]
    peak = reference.abs().amax(dim=(1, 2))
    assert torch.all((arc - reference).abs().amax(dim=(1, 2)) <= 2e-4 * peak)
