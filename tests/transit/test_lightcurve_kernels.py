"""The compiled detrend, detection statistic and stars against the numpy code they replaced."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from skysift.simulate.priors import sample_parameters
from skysift.transit.injection import PLANET_PRIORS, planet_parameters
from skysift.transit import _lightcurve_kernels
from skysift.transit.lightcurves import STELLAR_PRIORS, mission_time_grid, simulate_stars
from skysift.transit.preprocess import (
    MASK_HALF_WIDTH,
    _vetting_statistics,
    adaptive_spline_trend,
    detection_statistic,
    phase_fold,
    transit_mask,
)
from skysift.transit.transit_model import transit_light_curve

from ._reference_detrend import (
    _sho_psd,
    reference_adaptive_spline_trend,
    reference_detection_statistic,
    reference_simulate_stars,
    reference_vetting_statistics,
)


@pytest.fixture(scope="module")
def planets_on_stars():
    """Forty simulated stars (gaps, rotation, granulation) with transits, as the training sets make them."""
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(3)
    n = 40
    noise = 10 ** rng.uniform(-4.5, -2.5, n)
    flux, valid = simulate_stars(time, sample_parameters(STELLAR_PRIORS, n, rng), noise, rng)
    p = planet_parameters(sample_parameters(PLANET_PRIORS, n, rng), float(time[0]))
    flux = flux * transit_light_curve(time, p["period"], p["t0"], p["rp"], p["a_rs"], p["b"], p["u1"], p["u2"])
    return time, flux, valid, noise, p


def test_adaptive_spline_matches_the_scipy_reference(planets_on_stars):
    time, flux, valid, noise, p = planets_on_stars
    exclude = transit_mask(time, p["period"], p["t0"], p["duration"])
    want, want_spacing = reference_adaptive_spline_trend(time, flux, valid=valid, exclude=exclude, return_spacing=True)
    tolerance = 1e-5 * np.broadcast_to(noise[:, None], flux.shape)
    # BIC of the clipped fits, as the reference: same knots, penalty, clipping and BIC; the banded solves
    # differ only by rounding (which can move a cadence sitting on the clipping threshold), far below the noise.
    exhaustive = {"spacing_patience": 6, "return_spacing": True}
    trend, spacing = adaptive_spline_trend(time, flux, valid=valid, exclude=exclude, choice_fits=3, **exhaustive)
    np.testing.assert_array_equal(spacing, want_spacing)
    assert np.all(np.abs(trend - want)[valid] <= tolerance[valid])
    # The default compares the spacings' unclipped fits: the same choice but for near-ties (here 1 of 40,
    # 0.4 d for 0.7 d), and the winner is clipped as the reference clips it.
    one_fit, one_fit_spacing = adaptive_spline_trend(time, flux, valid=valid, exclude=exclude, **exhaustive)
    same = one_fit_spacing == want_spacing
    assert same.mean() >= 0.9
    assert np.all((np.abs(one_fit - want) <= tolerance)[valid & same[:, None]])
    # The default descends from the longest spacing and stops one past a settled best: the exhaustive
    # choice for nearly every star, and then the very same trend (a spacing's fit does not depend on the order).
    trend, spacing = adaptive_spline_trend(time, flux, valid=valid, exclude=exclude, return_spacing=True)
    same = spacing == one_fit_spacing
    assert same.mean() >= 0.95
    np.testing.assert_array_equal(trend[same], one_fit[same])
    assert np.all(spacing[~same] > one_fit_spacing[~same])  # a local BIC minimum at a longer spacing


def test_spacing_descent_tries_every_spacing_when_patient():
    """A patience of the number of spacings is the exhaustive scan, in whatever order they are given."""
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(8)
    n = 12
    flux, valid = simulate_stars(time, sample_parameters(STELLAR_PRIORS, n, rng), np.full(n, 1e-4), rng)
    spacings = (0.15, 0.25, 0.4, 0.7, 1.2, 2.0)
    want, want_spacing = adaptive_spline_trend(
        time, flux, valid=valid, knot_spacings=spacings, spacing_patience=6, return_spacing=True
    )
    got, got_spacing = adaptive_spline_trend(
        time, flux, valid=valid, knot_spacings=spacings[::-1], spacing_patience=6, return_spacing=True
    )
    np.testing.assert_array_equal(got_spacing, want_spacing)
    np.testing.assert_array_equal(got, want)
    # Impatient descents stop at the first local minimum from the long end: never a shorter spacing.
    _, quick_spacing = adaptive_spline_trend(time, flux, valid=valid, spacing_patience=0, return_spacing=True)
    assert np.all(quick_spacing >= want_spacing)


def test_adaptive_spline_edge_cases():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(4)
    flux = 1.0 + 1e-4 * rng.standard_normal((3, time.size))
    flux[1, 100:4000] = np.nan  # too little data left for the mask: falls back to every good cadence
    exclude = np.zeros(flux.shape, dtype=bool)
    exclude[2, ::2] = True
    for spacings in ((0.4,), (0.15, 2.0)):
        got = adaptive_spline_trend(time, flux, exclude=exclude, knot_spacings=spacings)
        want = reference_adaptive_spline_trend(time, flux, exclude=exclude, knot_spacings=spacings)
        finite = np.isfinite(flux)
        np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=1e-9)


def test_detection_statistic_matches_the_numpy_reference(planets_on_stars):
    time, flux, valid, _, p = planets_on_stars
    detrended = flux / reference_adaptive_spline_trend(time, flux, valid=valid)
    for duration in (p["duration"], 0.5 * p["duration"], np.full(p["duration"].size, 30.0)):  # 30 d: too few boxes
        got = detection_statistic(time, detrended, p["period"], p["t0"], duration, valid=valid, max_boxes=0)
        want = reference_detection_statistic(time, detrended, p["period"], p["t0"], duration, valid=valid)
        # The in-transit sums are sequential here and pairwise in numpy: depths agree to ~1e-15 (absolute).
        tolerance = {"depth": 1e-12, "mes": 1e-6}
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=tolerance.get(name, 0.0), err_msg=name)


def test_detection_noise_from_a_quarter_of_the_boxes(planets_on_stars):
    """The default noise from every fourth running mean: the same scale, unbiased, within ~10 % per star.

    Per star the two MADs differ by a few per cent (at most 10 % here, for three-cadence boxes): of
    the order of the MAD's own sampling error on ~4,000 values whose neighbours overlap (~5 % for
    boxes of ten cadences), so the noise estimate keeps its meaning; the product's distribution is
    tested in test_product_distribution.py.
    """
    time, flux, valid, _, p = planets_on_stars
    detrended = flux / reference_adaptive_spline_trend(time, flux, valid=valid)
    for duration in (p["duration"], 0.25 * p["duration"]):
        every = detection_statistic(time, detrended, p["period"], p["t0"], duration, valid=valid, max_boxes=0)
        sampled = detection_statistic(time, detrended, p["period"], p["t0"], duration, valid=valid)
        ratio = sampled["noise"] / every["noise"]
        assert np.all(np.abs(ratio - 1.0) < 0.15)
        assert abs(np.median(ratio) - 1.0) < 0.02
        assert np.median(np.abs(ratio - 1.0)) < 0.04
        for name in ("depth", "n_in", "n_transits"):
            np.testing.assert_array_equal(sampled[name], every[name])


def test_stars_unchanged_in_distribution():
    """The compiled stars (tabulated normals, a fast FFT length) against the numpy ones, by KS tests."""
    time = mission_time_grid("kepler")
    n = 300

    def summaries(simulate, seed):
        rng = np.random.default_rng(seed)
        params = sample_parameters(STELLAR_PRIORS, n, rng)
        flux, valid = simulate(time, params, np.full(n, 2e-4), rng)
        white = np.nanstd(np.diff(flux, axis=1), axis=1) / np.sqrt(2.0)
        slow = np.nanstd(flux, axis=1)
        lag = np.array([np.corrcoef(f[v][:-50], f[v][50:])[0, 1] for f, v in zip(flux, valid)])
        return {"white": white, "rms": slow, "lag-50 correlation": lag, "lost": (~valid).mean(axis=1)}

    new, old = summaries(simulate_stars, 1), summaries(reference_simulate_stars, 2)
    for name in new:
        assert ks_2samp(new[name], old[name]).pvalue > 0.01, name
    np.testing.assert_allclose(np.median(new["white"]), 2e-4, rtol=0.05)


@pytest.mark.parametrize("n_grid", [8748, 8749])
def test_star_spectrum_is_the_sum_of_the_two_unit_rms_series(n_grid):
    """One inverse FFT of the combined spectrum equals the two series scaled by numpy.std and summed (rounding aside)."""
    rng = np.random.default_rng(5)
    n = 6
    cadence = 29.4244 / 1440.0
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_grid, d=cadence)
    draws = rng.standard_normal((4, n, omega.size)).astype(np.float32)
    params = {k: np.ascontiguousarray(v) for k, v in sample_parameters(STELLAR_PRIORS, n, rng).items()}
    amplitude = 10 ** rng.uniform(-5, -2, (2, n))
    spectrum = np.empty((n, omega.size), dtype=np.complex64)
    _lightcurve_kernels.star_spectrum(
        omega, params["rotation_period"], params["rotation_q"], params["granulation_timescale"], amplitude[0],
        amplitude[1], draws, n_grid, np.empty(omega.size, dtype=np.complex64), spectrum,
    )  # fmt: skip
    got = np.fft.irfft(spectrum, n_grid, axis=1).astype(np.float64)
    w, w_rot = omega[None, :], 2.0 * np.pi / params["rotation_period"][:, None]
    q, tau = params["rotation_q"][:, None], params["granulation_timescale"][:, None]
    psds = (_sho_psd(w, w_rot, q) + 0.5 * _sho_psd(w, 2.0 * w_rot, q), 1.0 / (1.0 + (w * tau) ** 2))
    want = np.zeros((n, n_grid))
    for k, psd in enumerate(psds):
        component = (draws[2 * k] + 1j * draws[2 * k + 1]) * np.sqrt(psd)
        component[:, 0] = 0.0
        series = np.fft.irfft(component, n_grid, axis=1)
        want += amplitude[k][:, None] * series / series.std(axis=1, keepdims=True)
    scale = amplitude.max(axis=0)[:, None]
    assert np.all(np.abs(got - want) <= 1e-5 * scale)
    # The rms of the sum is that of two independent unit series at these amplitudes, to their sample covariance.
    np.testing.assert_allclose(got.std(axis=1), want.std(axis=1), rtol=1e-5)


def test_vetting_statistics_match_the_numpy_reference(planets_on_stars):
    """The secondary, odd/even and depth-consistency statistics of one compiled pass against one call each."""
    time, flux, valid, _, p = planets_on_stars
    detrended = (flux / reference_adaptive_spline_trend(time, flux, valid=valid)).astype(np.float32)
    usable = valid & np.isfinite(detrended)
    for duration in (p["duration"], np.full(p["duration"].size, 30.0)):
        got = _vetting_statistics(time, detrended, usable, p["period"], p["t0"], duration, max_boxes=0)
        want = reference_vetting_statistics(time, detrended, usable, p["period"], p["t0"], duration)
        for name, mine, theirs in zip(("secondary", "odd", "even"), got[:3], want[:3]):
            for key in theirs:
                np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-9, atol=1e-12, err_msg=f"{name} {key}")
        # Per-transit sums in a different order: the reduced chi^2 agrees to rounding.
        np.testing.assert_allclose(got[3], want[3], rtol=1e-9, err_msg="consistency")
        np.testing.assert_array_equal(got[4], want[4])


def test_compiled_transit_mask_equals_the_fold():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(6)
    period, t0, duration = 10 ** rng.uniform(-0.5, 2.5, 200), rng.uniform(-50, 150, 200), rng.uniform(0.02, 1.0, 200)
    want = np.abs(phase_fold(time, period, t0)) < MASK_HALF_WIDTH * duration[:, None]
    np.testing.assert_array_equal(transit_mask(time, period, t0, duration), want)
    # Scalars and a grid per row take the numpy path.
    np.testing.assert_array_equal(transit_mask(time, period[0], t0[0], duration[0]), want[:1])
    np.testing.assert_array_equal(transit_mask(np.broadcast_to(time, (2, time.size)), period[:2], t0[:2], duration[:2]), want[:2])


@pytest.mark.parametrize("max_boxes", [1024, 0])
def test_parity_box_statistics_equal_three_box_statistics(planets_on_stars, max_boxes):
    """The odd, even and all-transit statistics of the shared passes are those of three separate calls, bit for bit."""
    time, flux, valid, _, p = planets_on_stars
    detrended = (flux / reference_adaptive_spline_trend(time, flux, valid=valid)).astype(np.float32)
    good = valid & np.isfinite(detrended)
    cadence = float(np.median(np.diff(time)))
    distance = np.empty(time.size)
    scratch = _lightcurve_kernels._detection_scratch(time.size)
    parity_scratch = _lightcurve_kernels._parity_scratch(time.size)
    # The TCE durations, and 30 days: too few full boxes, so the noise falls back to the per-cadence scatter.
    for row, duration in [(row, p["duration"][row]) for row in range(0, 40, 3)] + [(5, 30.0)]:
        half = 0.5 * duration
        width = int(np.clip(np.rint(half / cadence), 1, time.size - 1))
        _lightcurve_kernels._fold_distance(time, p["period"][row], p["t0"][row], distance)
        cycle = np.floor((time - p["t0"][row]) / p["period"][row] + 0.5).astype(np.int64)
        is_even = (cycle & 1) == 0
        got = _lightcurve_kernels._parity_box_statistics(
            detrended[row], good[row], is_even, distance, half, width, max_boxes, parity_scratch
        )
        for statistic, usable in zip(got, (good[row] & ~is_even, good[row] & is_even, good[row])):
            want = _lightcurve_kernels._box_statistic(detrended[row], usable, distance, half, width, max_boxes, scratch)
            assert statistic == want
