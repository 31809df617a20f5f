"""Secondary, odd/even views and scalar diagnostics (make_vetting_views)."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.simulate.priors import Fixed, sample_parameters
from skysift.transit.injection import EB_PRIORS, eb_parameters, eclipsing_binary_flux
from skysift.transit.lightcurves import mission_time_grid
from skysift.transit import _lightcurve_kernels
from skysift.transit.preprocess import (
    _TRAPEZOID_FLAT,
    _TRAPEZOID_T14,
    LOCAL_BINS,
    VETTING_SCALARS,
    _trapezoid_fit,
    _trapezoid_shapes,
    _trapezoid_templates,
    make_vetting_views,
    make_views,
    phase_fold,
)
from skysift.transit.transit_model import semi_major_axis_from_density, transit_duration, transit_light_curve

SCALAR = {name: i for i, name in enumerate(VETTING_SCALARS)}


def _binary(time, half_period, n=1, seed=1):
    priors = {**EB_PRIORS, "radius_ratio": Fixed(0.8), "impact_fraction": Fixed(0.1), "period": Fixed(6.0),
              "surface_brightness_ratio": Fixed(0.3), "half_period": Fixed(float(half_period))}
    params = eb_parameters(sample_parameters(priors, n, np.random.default_rng(seed)), float(time[0]))
    return eclipsing_binary_flux(time, params), params


def _noisy(flux, sigma, seed=0):
    return flux + sigma * np.random.default_rng(seed).standard_normal(flux.shape)


def test_global_and_local_views_equal_make_views():
    time = mission_time_grid("kepler")
    flux, p = _binary(time, 0, n=3)
    flux = _noisy(flux, 1e-3)
    valid = np.random.default_rng(2).random(flux.shape) > 0.05
    args = (time, flux, p["tce_period"], p["tce_t0"], p["tce_duration"])
    inputs = make_vetting_views(*args, valid=valid)
    global_view, local_view = make_views(*args, valid=valid)
    np.testing.assert_array_equal(inputs["global_view"], global_view)
    np.testing.assert_array_equal(inputs["local_view"], local_view)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in inputs.values())
    assert inputs["scalars"].shape == (3, len(VETTING_SCALARS))
    with pytest.raises(ValueError, match="one grid"):
        make_vetting_views(np.tile(time, (3, 1)), *args[1:])


def test_binary_shows_its_secondary_and_alternating_depths():
    time = mission_time_grid("kepler")
    full, p = _binary(time, 0)
    half, q = _binary(time, 1)
    flux = _noisy(np.vstack([full, half]), 2e-4)
    views = make_vetting_views(time, flux, np.r_[p["tce_period"], q["tce_period"]], np.r_[p["t0"], q["t0"]],
                               np.r_[p["tce_duration"], q["tce_duration"]])
    centre = slice(95, 106)
    # Folded on the true period: the secondary sits half an orbit away, odd and even alike.
    at_secondary = np.abs(phase_fold(time, p["period"], p["t0"] + 0.5 * p["period"]))[0] < 0.05 * p["duration"][0]
    true_ratio = (1.0 - full[0, at_secondary].min()) / (1.0 - full.min())
    assert 0.1 < true_ratio < 0.9
    assert views["secondary_view"][0, centre].min() == pytest.approx(-true_ratio, abs=0.05)
    assert views["scalars"][0, SCALAR["secondary_ratio"]] > 0.5 * true_ratio
    np.testing.assert_allclose(views["odd_view"][0, centre], views["even_view"][0, centre], atol=0.05)
    # Folded on half the period: primaries and secondaries alternate between even and odd transits.
    odd, even = views["odd_view"][1, centre].min(), views["even_view"][1, centre].min()
    assert abs(odd - even) > 0.5
    # arcsinh(n sigma) / 2: below 3 sigma on the true period, above 27 sigma on half of it.
    assert views["scalars"][0, SCALAR["odd_even_significance"]] < 0.5 * np.arcsinh(3.0)
    assert views["scalars"][1, SCALAR["odd_even_significance"]] > 0.5 * np.arcsinh(27.0)


def test_planet_views_and_trapezoid_geometry():
    """A limb-darkening-free planet: flat secondary, equal odd/even, Seager & Mallen-Ornelas geometry."""
    time = mission_time_grid("kepler")
    period, k, b, density = np.full(2, 5.0), np.array([0.05, 0.1]), np.array([0.0, 0.5]), np.full(2, 1.4)
    a = semi_major_axis_from_density(period, density)
    duration = transit_duration(period, a, k, b)
    flux = _noisy(transit_light_curve(time, period, np.full(2, 1.0), k, a, b, np.zeros(2), np.zeros(2)), 2e-5)
    views = make_vetting_views(time, flux, period, np.full(2, 1.0), duration)
    scalars = views["scalars"]
    assert np.all(np.abs(views["secondary_view"]) < 0.1)
    assert np.all(scalars[:, SCALAR["odd_even_significance"]] < 1.5)
    np.testing.assert_allclose(scalars[:, SCALAR["log_depth"]], np.log10(k**2) + 3.0, atol=0.05)
    np.testing.assert_allclose(scalars[:, SCALAR["log_fit_duration"]], 0.0, atol=0.05)
    np.testing.assert_allclose(scalars[:, SCALAR["impact_squared"]], b**2, atol=0.2)
    np.testing.assert_allclose(scalars[:, SCALAR["log_density"]], np.log10(density), atol=0.15)
    assert np.all(scalars[:, SCALAR["ingress_fraction"]] < 0.35)


def test_folded_light_curve_copies_the_local_view_into_odd_and_even():
    phase = np.linspace(0.0, 1.0, 3000, endpoint=False)
    flux = 1.0 - 0.01 * (np.abs(phase - 0.3) < 0.02) + 1e-4 * np.random.default_rng(0).standard_normal(phase.size)
    views = make_vetting_views(phase, flux, np.array([1.0]), np.array([0.3]), np.array([0.04]), odd_even=False)
    np.testing.assert_array_equal(views["odd_view"], views["local_view"])
    np.testing.assert_array_equal(views["even_view"], views["local_view"])
    assert views["scalars"][0, SCALAR["odd_even_significance"]] == 0.0
    assert np.isfinite(views["scalars"]).all()


def test_depth_consistency_flags_a_single_event():
    """Equal transits give a reduced chi^2 near 1; one deep event among them, far more."""
    time = mission_time_grid("kepler")
    period, duration, t0 = np.full(2, 4.0), np.full(2, 0.2), np.full(2, 1.0)
    folded = np.abs(phase_fold(time, period, t0))
    in_transit = folded < 0.5 * duration[:, None]
    flux = 1.0 - 1e-3 * in_transit
    flux[1] = 1.0 - 5e-3 * (in_transit[1] & (np.abs(time - t0[1]) < 1.0))  # the first transit only
    views = make_vetting_views(time, _noisy(flux, 2e-4), period, t0, duration)
    consistency = views["scalars"][:, SCALAR["depth_consistency"]]
    assert abs(consistency[0]) < 0.3  # log10 of about 1
    assert consistency[1] > 1.0


def test_compiled_trapezoid_overlaps_equal_the_templates():
    """Views capped at half an orbit: the kernel's overlaps and norms are the materialised templates' (to rounding)."""
    rng = np.random.default_rng(7)
    half_span = rng.uniform(0.6, 3.99, 12)
    view = rng.normal(0.0, 0.3, (12, LOCAL_BINS)) - np.exp(-0.5 * (np.linspace(-4, 4, LOCAL_BINS) / 0.4) ** 2)
    templates = _trapezoid_templates(half_span)
    half_total, slope = _trapezoid_shapes()
    overlap, norm = np.empty((2, 12, half_total.size))
    _lightcurve_kernels.trapezoid_overlaps(view, half_span, half_total, slope, overlap, norm)
    np.testing.assert_allclose(overlap, -np.einsum("nb,nbk->nk", view, templates), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm, np.einsum("nbk,nbk->nk", templates, templates), rtol=1e-12, atol=1e-12)
    # And the fit picks the template a brute-force search over the materialised ones picks.
    depth, t14, flat = _trapezoid_fit(view, half_span)
    dot = np.einsum("nb,nbk->nk", view, templates)
    gain = np.where(dot < 0, dot**2 / np.einsum("nbk,nbk->nk", templates, templates), -1.0)
    best = np.argmax(gain, axis=1)
    np.testing.assert_array_equal(t14, np.repeat(_TRAPEZOID_T14, _TRAPEZOID_FLAT.size)[best])
    np.testing.assert_array_equal(flat, np.tile(_TRAPEZOID_FLAT, _TRAPEZOID_T14.size)[best])
