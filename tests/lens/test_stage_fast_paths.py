"""The lens stage's fast paths equal the slower forms they replace (issue #22).

* ``observing.observe``: the base PSF and each image's blur in one FFT, against
  ``blur(convolve(...))`` and against both convolutions done on a canvas large
  enough that nothing is cropped between them;
* hard negatives: pixel-level (adaptively supersampled) Sersic companions,
  blends and merger discs against the uniform supersampling of a non-adaptive
  simulator, and Gaussian spots binned on their 1-D profiles against spots
  drawn on the supersampled grid and binned;
* the noise scaled to each image's depth as it is drawn, against scaling the
  drawn deviates afterwards; the stage's noise (torch's deviates) against
  ``add_noise``'s (KS);
* a batch whose look-alikes go through the PSF together with their galaxy,
  against the components convolved one by one;
* arcs that fail the magnification cuts are not observed: the redraw loop
  against a replay that observes and measures every draw (same draws, same
  cuts); and the systems without an arc draw, which the loop used to render
  first, all failed the S/N cut then (dropping that round changes only the
  random stream);
* the arcs' S/N, contrast and counter-image S/N from one shared mask, against
  the three functions (bit for bit);
* several candidate arcs per system in a round (the last few systems of a
  batch): the kept arcs follow the distribution of one draw per round (KS).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from skysift.lens import dataset, negatives, observing
from skysift.lens.dataset import DEFAULT_MIN_ARC_SNR, _detectable_feature, simulate_batch
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator, arc_signal_to_noise, magnitude_to_flux
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


def test_arc_measures_equal_the_three_measures() -> None:
    """One shared mask (floating point) gives the S/N, contrast and counter-image S/N bit for bit."""
    simulator = _simulator(size=48)
    rng = np.random.default_rng(9)
    params = sample_parameters(LENS_PRIORS, 48, rng)
    arc, light, _ = simulator.render_components(params)
    arc = arc * 20.0  # bright and faint arcs, many pixels on both sides of the cut
    variance = observing.noise_variance(simulator, arc + light, None)
    x_lens, y_lens = params["x_lens"], params["y_lens"]
    x_lens[:8] = y_lens[:8] = 0.0  # lens at the stamp centre: pixels where dx px + dy py is exactly 0
    measures = dataset._arc_measures(arc, light, variance, simulator, x_lens, y_lens)
    expected = (arc_signal_to_noise(arc, variance), dataset.arc_contrast(arc, light, variance),
                dataset.counter_image_snr(arc, variance, simulator, x_lens, y_lens))
    for measured, reference in zip(measures, expected):
        assert torch.equal(measured, reference)


def test_stage_noise_follows_add_noise_at_each_depth() -> None:
    """The stage's noise (torch's deviates) against :meth:`LensSimulator.add_noise` (Box-Muller of raw words)."""
    simulator = _simulator(size=32)
    rng = np.random.default_rng(6)
    clean = torch.rand(64, 32, 32) * torch.logspace(-1, 3, 64).reshape(-1, 1, 1)
    conditions = observing.draw_conditions(simulator.survey, 64, rng)
    sigma = observing.noise_variance(simulator, clean, conditions).sqrt()
    stage = ((dataset._noisy(simulator, clean, np.random.default_rng(7), conditions) - clean) / sigma).flatten()
    scale = torch.as_tensor(observing.noise_scale(conditions), dtype=clean.dtype)
    reference = ((simulator.add_noise(clean, np.random.default_rng(7), scale) - clean) / sigma).flatten()
    assert stats.kstest(stage.numpy(), "norm").pvalue > 1e-3
    assert stats.ks_2samp(stage.numpy(), reference.numpy()).pvalue > 1e-3
    # Per image too: each image's noise has its depth's spread.
    spread = ((dataset._noisy(simulator, clean, np.random.default_rng(8), conditions) - clean) / sigma).std(dim=(1, 2))
    assert torch.all((spread - 1.0).abs() < 0.15)
    # A pure function of rng, whatever torch's thread count.
    with dataset._torch_threads(2):
        again = dataset._noisy(simulator, clean, np.random.default_rng(7), conditions)
    assert torch.equal(again, dataset._noisy(simulator, clean, np.random.default_rng(7), conditions))


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
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63)))
    expected = clean + observing.noise_variance(simulator, clean, conditions).sqrt() * torch.randn(clean.shape,
                                                                                                  generator=generator)
    peak = clean.abs().amax(dim=(1, 2))
    assert torch.all((torch.from_numpy(images[:, 0]) - expected).abs().amax(dim=(1, 2)) <= 1e-5 * peak)


def _observed_arcs(simulator: LensSimulator, params: dict, todo: np.ndarray, light: torch.Tensor,
                   conditions: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Arcs of ``todo`` rendered, scaled to ``arc_mag``, observed; their noise variance and magnification."""
    subset = {k: v[todo] for k, v in params.items() if not k.startswith("lens_")}
    arc, _, mu = simulator.render_components(subset, convolve=False)
    rendered = arc.sum(dim=(-2, -1)).double().numpy()
    scale = magnitude_to_flux(params["arc_mag"][todo], simulator.survey.zero_point) / np.maximum(rendered, 1e-30)
    params["source_mag"][todo] = params["source_mag"][todo] - 2.5 * np.log10(scale)
    rows = {k: v[todo] for k, v in conditions.items()}
    arc = observing.observe(simulator, arc * torch.as_tensor(scale, dtype=arc.dtype).reshape(-1, 1, 1), rows)
    return arc, observing.noise_variance(simulator, arc + light[todo], rows), mu


def _replayed_arcs(simulator: LensSimulator, params: dict, light: torch.Tensor, rng: np.random.Generator,
                   conditions: dict) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The redraw loop of ``_draw_detectable_arcs`` (lenses, default cuts) observing and measuring every draw."""
    n = len(params["theta_E"])
    arcs = torch.zeros((n, simulator.image_size, simulator.image_size))
    snr, mu_all = np.zeros(n), np.zeros(n)
    seeing = conditions["seeing"]

    def unresolved(rows: np.ndarray) -> np.ndarray:
        minimum = dataset.DEFAULT_RESOLUTION_FACTOR * seeing[rows] / 2.0
        return params["theta_E"][rows] ** 2 < params["source_r_eff"][rows] ** 2 + minimum**2

    def redraw(rows: np.ndarray) -> None:
        for name, values in dataset._draw_arc_parameters(len(rows), rng, None).items():
            params[name][rows] = values

    redraw(np.flatnonzero(np.isnan(params["arc_mag"])))
    todo = np.arange(n)
    while len(todo):
        while len(bad := todo[unresolved(todo)]):
            redraw(bad)
        arc, variance, mu = _observed_arcs(simulator, params, todo, light, conditions)
        arcs[todo] = arc
        snr[todo], mu_all[todo] = arc_signal_to_noise(arc, variance).double().numpy(), mu.double().numpy()
        counter = dataset.counter_image_snr(arc, variance, simulator, params["x_lens"][todo],
                                            params["y_lens"][todo]).double().numpy()
        todo = todo[(snr[todo] < DEFAULT_MIN_ARC_SNR) | (mu_all[todo] < dataset.DEFAULT_MIN_MAGNIFICATION)
                    | (mu_all[todo] * params["source_r_eff"][todo] < seeing[todo] / 2.0)
                    | (counter < dataset.MIN_COUNTER_IMAGE_SNR)]
        redraw(todo)
    return arcs, snr, mu_all


def _lenses_without_arcs(simulator: LensSimulator, n: int, rng: np.random.Generator):
    """simulate_batch's LENS_PRIORS draws (arc_mag NaN), their observing conditions and observed lens light."""
    params = sample_parameters(LENS_PRIORS, n, rng)
    params["arc_mag"] = np.full(n, np.nan)
    conditions = observing.draw_conditions(simulator.survey, n, rng)
    light = observing.observe(simulator, simulator.render_galaxy(params, convolve=False), conditions)
    return params, conditions, light


def test_arcs_failing_the_magnification_cuts_unobserved_match_a_replay_observing_every_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dataset, "_CANDIDATE_ROWS", 0)  # one draw per system and round, as the replay
    simulator = _simulator(size=40)
    params, conditions, light = _lenses_without_arcs(simulator, 48, np.random.default_rng(6))
    replay_params = {k: v.copy() for k, v in params.items()}
    arcs, snr, mu, _, _ = dataset._draw_detectable_arcs(
        simulator, params, light, np.random.default_rng(7), min_arc_snr=DEFAULT_MIN_ARC_SNR,
        min_magnification=dataset.DEFAULT_MIN_MAGNIFICATION, resolution_factor=dataset.DEFAULT_RESOLUTION_FACTOR,
        min_arc_contrast=0.0, conditions=conditions, min_counter_snr=dataset.MIN_COUNTER_IMAGE_SNR,
    )
    replay_arcs, replay_snr, replay_mu = _replayed_arcs(simulator, replay_params, light, np.random.default_rng(7),
                                                        conditions)
    # The same draws (the skipped observations take no random numbers)...
    for name in ("theta_E", "q", "gamma1", "source_r_eff", "x_src", "arc_mag"):
        np.testing.assert_array_equal(params[name], replay_params[name])
    np.testing.assert_allclose(params["source_mag"], replay_params["source_mag"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(mu, replay_mu)
    # ... and the same arcs and S/N up to float rounding (the FFTs take other batches of images).
    np.testing.assert_allclose(snr, replay_snr, rtol=1e-4)
    peak = replay_arcs.abs().amax(dim=(1, 2))
    assert torch.all((arcs - replay_arcs).abs().amax(dim=(1, 2)) <= 1e-5 * peak)
    assert np.all(snr >= DEFAULT_MIN_ARC_SNR) and np.all(mu >= dataset.DEFAULT_MIN_MAGNIFICATION)


def test_systems_without_an_arc_draw_all_failed_the_s_n_cut() -> None:
    """simulate_batch's LENS_PRIORS draws (arc_mag NaN), rendered as the redraw loop's first round did."""
    simulator = _simulator(size=40)
    n = 32
    params, conditions, light = _lenses_without_arcs(simulator, n, np.random.default_rng(8))
    arc, variance, _ = _observed_arcs(simulator, params, np.arange(n), light, conditions)
    assert np.all(arc_signal_to_noise(arc, variance).numpy() < DEFAULT_MIN_ARC_SNR)


def _detectable_lenses(simulator: LensSimulator, n: int, seed: int, monkeypatch: pytest.MonkeyPatch,
                       candidate_rows: int) -> dict[str, np.ndarray]:
    """Lenses of fixed lens light (seed 10) through the redraw loop, its arcs' random stream from ``seed``."""
    monkeypatch.setattr(dataset, "_CANDIDATE_ROWS", candidate_rows)
    params, conditions, light = _lenses_without_arcs(simulator, n, np.random.default_rng(10))
    arcs, snr, mu, _, counter = dataset._draw_detectable_arcs(
        simulator, params, light, np.random.default_rng(seed), min_arc_snr=DEFAULT_MIN_ARC_SNR,
        min_magnification=dataset.DEFAULT_MIN_MAGNIFICATION, resolution_factor=dataset.DEFAULT_RESOLUTION_FACTOR,
        min_arc_contrast=0.0, conditions=conditions, min_counter_snr=dataset.MIN_COUNTER_IMAGE_SNR,
    )
    return {"theta_E": params["theta_E"], "source_r_eff": params["source_r_eff"], "arc_mag": params["arc_mag"],
            "magnification": mu, "arc_snr": snr, "counter_snr": counter,
            "flux": arcs.sum(dim=(1, 2)).double().numpy(), "spread": arcs.std(dim=(1, 2)).double().numpy()}


def test_candidate_arcs_per_round_keep_the_distribution_of_one_draw_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    simulator = _simulator(size=40)
    n = 200
    # Every system with eight candidates a round, against one candidate a round.
    many = _detectable_lenses(simulator, n, 11, monkeypatch, candidate_rows=8 * n)
    one = _detectable_lenses(simulator, n, 12, monkeypatch, candidate_rows=0)
    for name in many:
        assert stats.ks_2samp(many[name], one[name], method="asymp").pvalue > 0.01, name
    # Each kept candidate passed the cuts, with its own parameters moved into its system's row.
    assert np.all(many["arc_snr"] >= DEFAULT_MIN_ARC_SNR) and np.all(many["magnification"] >= 2.0)
    assert np.all(many["counter_snr"] >= dataset.MIN_COUNTER_IMAGE_SNR)
    np.testing.assert_allclose(many["flux"], 10 ** (-0.4 * (many["arc_mag"] - simulator.survey.zero_point)), rtol=0.2)
