"""Views, binning, detrending and BLS."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.transit.lightcurves import STELLAR_PRIORS, mission_time_grid, simulate_stars
from skysift.transit.preprocess import (
    binned_statistic,
    bls_search,
    detrend_batch,
    fill_empty_bins,
    make_views,
    robust_spline_trend,
)
from skysift.transit.transit_model import transit_duration, transit_light_curve
from skysift.simulate.priors import sample_parameters

PLANET = dict(period=3.7, t0=1.3, rp=0.1, a=11.0, b=0.2, u1=0.4, u2=0.25)


def _planet_flux(time):
    return transit_light_curve(time, *PLANET.values())


def test_binned_median_matches_loop():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(4, 500))
    y = rng.normal(size=(4, 500))
    result = binned_statistic(x, y, 17, 0.0, 1.0)
    for row in range(4):
        for b in range(17):
            inside = (x[row] >= b / 17) & (x[row] < (b + 1) / 17)
            expected = np.median(y[row, inside]) if inside.any() else np.nan
            np.testing.assert_allclose(result[row, b], expected, rtol=1e-6, equal_nan=True)
    wide = binned_statistic(x, y, 17, 0.0, 1.0, bin_width=0.15, statistic="mean")
    inside = np.abs(x[1] - 8.5 / 17) <= 0.075
    assert wide[1, 8] == pytest.approx(y[1, inside].mean(), rel=1e-5)


def test_fill_empty_bins_interpolates():
    view = np.array([[np.nan, 1.0, np.nan, 3.0, np.nan]])
    np.testing.assert_allclose(fill_empty_bins(view), [[1.0, 1.0, 2.0, 3.0, 3.0]])


def test_views_shape_and_normalisation():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(5)
    flux = _planet_flux(time) + 1e-4 * rng.standard_normal(time.size)
    duration = transit_duration(PLANET["period"], PLANET["a"], PLANET["rp"], PLANET["b"])
    global_view, local_view = make_views(time, flux, PLANET["period"], PLANET["t0"], duration)
    assert global_view.shape == (1, 2001) and local_view.shape == (1, 201)
    assert global_view.dtype == np.float32
    for view in (global_view[0], local_view[0]):
        assert np.median(view) == pytest.approx(0.0, abs=1e-6)
        assert view.min() == pytest.approx(-1.0, abs=1e-6)
        assert not np.isnan(view).any()
    # The transit is at the centre of both views.
    assert abs(int(np.argmin(global_view[0])) - 1000) <= 3
    assert abs(int(np.argmin(local_view[0])) - 100) <= 12
    # Out of transit the local view is flat near zero, well above the floor.
    assert np.abs(local_view[0, :40]).max() < 0.2


def test_detrending_preserves_depth():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(11)
    stars = sample_parameters(STELLAR_PRIORS, 4, rng)
    stars["rotation_amplitude"] = np.full(4, 3e-3)
    stars["rotation_period"] = np.full(4, 8.0)
    star, valid = simulate_stars(time, stars, np.full(4, 1e-4), rng)
    model = _planet_flux(time)
    flux = star * model
    true_depth = 1.0 - model.min()
    for detrended in (flux / detrend_batch(time, flux, valid=valid), np.stack([f / robust_spline_trend(time, f) for f in flux])):
        folded = np.mod(time - PLANET["t0"] + 0.5 * PLANET["period"], PLANET["period"]) - 0.5 * PLANET["period"]
        centre = np.abs(folded) < 0.02
        depth = 1.0 - np.nanmedian(detrended[:, centre], axis=1)
        np.testing.assert_allclose(depth, true_depth, rtol=0.05)
        out = (np.abs(folded) > 0.3) & valid.all(axis=0)
        assert np.nanstd(detrended[:, out]) < 2.5e-4  # variability (3e-3) removed


def test_bls_recovers_period():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(8)
    flux = _planet_flux(time) + 5e-4 * rng.standard_normal(time.size)
    result = bls_search(time, flux, min_period=2.0, max_period=6.0, durations=(0.08, 0.12, 0.16))
    assert result.period == pytest.approx(PLANET["period"], rel=2e-3)
    phase = (result.t0 - PLANET["t0"]) / PLANET["period"]
    assert abs(phase - round(phase)) < 0.02
    assert result.depth == pytest.approx(0.011, rel=0.3)
