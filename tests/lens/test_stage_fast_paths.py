"""The lens stage's fast paths equal the slower forms they replace (issue #22).

* ``observing.observe``: the base PSF and each image's blur in one FFT, against
  ``blur(convolve(...))`` and against both convolutions done on a canvas large
  enough that nothing is cropped between them;
* hard negatives: pixel-level (adaptively supersampled) Sersic companions,
  blends and merger discs against the uniform supersampling of a non-adaptive
  simulator, and Gaussian spots binned on their 1-D profiles against spots
  drawn on the supersampled grid and binned;
* the noise scaled to each image's depth as it is drawn, against scaling the
  drawn deviates afterwards;
* a batch whose look-alikes go through the PSF together with their galaxy,
  against the components convolved one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.lens import negatives, observing
from skysift.lens.dataset import DEFAULT_MIN_ARC_SNR, _detectable_feature, simulate_batch
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator
from skysift.simulate.priors import sample_parameters


def _simulator(survey: str = "lsst-r", size: int = 48, adaptive: bool = True) -> LensSimulator:
    return LensSimulator(survey, size, 3, psf=observing.base_psf(SURVEYS[survey]), adaptive_supersampling=adaptive,
                         chunk_size=64)


@pytest.mark.parametrize("survey", ["lsst-r", "euclid"])
def test_observe_is_psf_then_blur_in_one_fft(survey: str) -> None:
    simulator = _simulator(survey)
    rng = np.random.default_rng(0)
    n = 40
    conditions = observing.draw_conditions(simulator.survey, n, rng)
    images = simulator.render_galaxy(simulator.draw_parameters(n, rng), convolve=False)
    one_fft = observing.observe(simulator, images, conditions)
    # Reference 1: both convolutions on a canvas padded by 24 pixels, cropped once at the end.
    pad = 24
    canvas = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    wide = LensSimulator(survey, 48 + 2 * pad, 3, psf=observing.base_psf(SURVEYS[survey]))
    exact = observing.blur(wide.convolve(canvas), simulator.survey, conditions)[:, pad:-pad, pad:-pad]
    peak = exact.abs().amax(dim=(1, 2), keepdim=True)
    # Up to the Gaussian's sampling at the Nyquist frequency, which depends on the FFT length
    # (~5e-5 of the peak for Euclid's sub-pixel blurs, float rounding for LSST's).
    assert torch.all((one_fft - exact).abs() <= 2e-4 * peak)
    # The two steps at stamp size lose the light the PSF spreads beyond the stamp edges before
    # the blur: they differ near the edges only, and not at all further in than the blur reaches.
    two_steps = observing.blur(simulator.convolve(images), simulator.survey, conditions)
    margin = simulator._crop + observing._gaussian_coefficients(simulator.survey, conditions)[3]
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    assert torch.all((one_fft - two_steps)[inner].abs() <= 2e-4 * peak)
    # Fixed conditions: the PSF alone.
    torch.testing.assert_close(observing.observe(simulator, images, None), simulator.convolve(images))


@pytest.mark.parametrize("kind", ["companion", "blend", "merger"])
def test_pixel_level_sersic_look_alikes_match_uniform_supersampling(kind: str) -> None:
    rng = np.random.default_rng(1)
    params = sample_parameters(negatives.HARD_NEGATIVE_PRIORS[kind], 32, rng)
    centre = (rng.uniform(-0.1, 0.1, 32), rng.uniform(-0.1, 0.1, 32))
    fast = negatives.render_hard_negative(_simulator(), kind, params, centre, convolve=False)
    uniform = negatives.render_hard_negative(_simulator(adaptive=False), kind, params, centre, convolve=False)
    peak = uniform.abs().amax(dim=(1, 2))
    assert torch.all((fast - uniform).abs().amax(dim=(1, 2)) <= 5e-3 * peak)
    np.testing.assert_allclose(fast.sum(dim=(1, 2)).numpy(), uniform.sum(dim=(1, 2)).numpy(), rtol=5e-3)
    # Convolved on request, as before.
    torch.testing.assert_close(negatives.render_hard_negative(_simulator(), kind, params, centre),
                               _simulator().convolve(fast))


def test_binned_spots_equal_spots_binned_on_the_supersampled_grid() -> None:
    simulator = _simulator(size=32)
    rng = np.random.default_rng(2)
    xs, ys = rng.uniform(-2.0, 2.0, (5, 7)), rng.uniform(-2.0, 2.0, (5, 7))
    weight = rng.uniform(0.1, 1.0, (5, 7))
    x, y = simulator.grid
    sigma = negatives.RING_KNOT_SIGMA
    fine = sum(
        torch.as_tensor(weight[:, k, None, None], dtype=torch.float32)
        * torch.exp(-0.5 * ((x - torch.as_tensor(xs[:, k, None, None], dtype=torch.float32)) ** 2
                            + (y - torch.as_tensor(ys[:, k, None, None], dtype=torch.float32)) ** 2) / sigma**2)
        for k in range(7)
    )
    binned_after = simulator.bin(fine) / simulator.survey.pixel_scale**2
    binned_first = negatives._gaussian_spots(simulator, xs, ys, weight, sigma)
    torch.testing.assert_close(binned_first, binned_after, rtol=1e-5, atol=1e-6 * float(binned_after.max()))


def test_noise_scaled_as_drawn_equals_deviates_scaled_after() -> None:
    simulator = _simulator(size=32)
    clean = torch.rand(6, 32, 32) * 5.0
    scale = torch.linspace(0.6, 1.6, 6)
    scaled = simulator.add_noise(clean, np.random.default_rng(3), scale)
    unscaled = simulator.add_noise(clean, np.random.default_rng(3))
    torch.testing.assert_close(scaled, clean + (unscaled - clean) * scale.reshape(-1, 1, 1), rtol=0, atol=2e-6)


def test_look_alikes_through_the_psf_with_their_galaxy_match_one_by_one() -> None:
    """A batch of look-alikes equals its galaxy and its structure observed apart, plus the same noise."""
    simulator = _simulator(size=48)
    kinds = np.array(["ring", "spiral", "companion", "blend", "merger", "edge_on", "star", "galaxy"] * 3, dtype=object)
    images, columns = simulate_batch(simulator, kinds, np.random.default_rng(4), conditions="randomised")
    # The same draws by hand: the batch draws its lens parameters, conditions, then each kind's features in order.
    rng = np.random.default_rng(4)
    params = sample_parameters(LENS_PRIORS, len(kinds), rng)
    conditions = observing.draw_conditions(simulator.survey, len(kinds), rng)
    clean = observing.observe(simulator, simulator.render_galaxy(params, convolve=False), conditions)
    for kind in negatives.HARD_NEGATIVE_KINDS:
        rows = np.flatnonzero(kinds == kind)
        drawn = sample_parameters(negatives.HARD_NEGATIVE_PRIORS[kind], len(rows), rng)
        # Shapes as stored (rings and edge-on discs take the host's angle), magnitudes as first drawn.
        feature = {name: np.array(columns[name][rows]) for name in drawn}
        feature["feature_mag"] = drawn["feature_mag"]
        structure = negatives.render_hard_negative(simulator, kind, feature,
                                                   (params["x_lens"][rows], params["y_lens"][rows]), convolve=False)
        rows_conditions = {k: v[rows] for k, v in conditions.items()}
        structure = observing.observe(simulator, structure, rows_conditions)
        if kind in negatives.EXTRA_LIGHT_KINDS:
            # Faint extra light is redrawn until it passes the arcs' S/N cut (the same random draws).
            structure, _ = _detectable_feature(simulator, structure, feature, clean[rows], rng, DEFAULT_MIN_ARC_SNR,
                                               rows_conditions)
        np.testing.assert_array_equal(feature["feature_mag"], columns["feature_mag"][rows])
        clean[rows] += structure
    expected = simulator.add_noise(clean, rng, torch.as_tensor(observing.noise_scale(conditions), dtype=clean.dtype))
    peak = clean.abs().amax(dim=(1, 2))
    assert torch.all((torch.from_numpy(images[:, 0]) - expected).abs().amax(dim=(1, 2)) <= 1e-5 * peak)
