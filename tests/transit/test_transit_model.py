"""Mandel & Agol model: agreement with batman, geometry helpers."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.transit.transit_model import (
    occult_quadratic,
    scaled_semi_major_axis,
    transit_duration,
    transit_light_curve,
)


def _draws(rng: np.random.Generator, n: int):
    for i in range(n):
        rp = rng.uniform(0.005, 0.3)
        # A third of the draws are grazing (b > 1 - rp).
        b = rng.uniform(1.0 - rp, 1.0 + rp) if i % 3 == 0 else rng.uniform(0.0, 1.0 - rp)
        u1 = rng.uniform(0.0, 1.0)
        u2 = rng.uniform(-0.2, 1.0 - u1)
        yield dict(period=rng.uniform(0.5, 30.0), rp=rp, a=rng.uniform(2.5, 40.0), b=b, u1=u1, u2=u2)


def test_agrees_with_batman_to_1e6():
    batman = pytest.importorskip("batman")
    rng = np.random.default_rng(2024)
    time = np.linspace(-0.35, 0.35, 1501)
    worst = 0.0
    for p in _draws(rng, 150):
        params = batman.TransitParams()
        params.t0, params.per, params.rp, params.a = 0.0, p["period"], p["rp"], p["a"]
        params.inc = np.degrees(np.arccos(p["b"] / p["a"]))
        params.ecc, params.w, params.u, params.limb_dark = 0.0, 90.0, [p["u1"], p["u2"]], "quadratic"
        reference = batman.TransitModel(params, time).light_curve(params)
        ours = transit_light_curve(time, p["period"], 0.0, p["rp"], p["a"], p["b"], p["u1"], p["u2"])
        worst = max(worst, float(np.max(np.abs(ours - reference))))
    assert worst < 1e-6


def test_supersampling_agrees_with_batman():
    batman = pytest.importorskip("batman")
    exposure = 29.4244 / 1440.0
    time = np.linspace(-0.3, 0.3, 401)
    params = batman.TransitParams()
    params.t0, params.per, params.rp, params.a, params.inc = 0.0, 3.0, 0.1, 10.0, 89.0
    params.ecc, params.w, params.u, params.limb_dark = 0.0, 90.0, [0.4, 0.25], "quadratic"
    # Our sub-exposures sit at the centres of 15 equal slices of the exposure
    # (batman's own supersampling includes the exposure edges instead).
    offsets = ((np.arange(15) + 0.5) / 15 - 0.5) * exposure
    fine = (time[:, None] + offsets).ravel()
    reference = batman.TransitModel(params, fine).light_curve(params).reshape(time.size, 15).mean(axis=1)
    b = 10.0 * np.cos(np.radians(89.0))
    ours = transit_light_curve(time, 3.0, 0.0, 0.1, 10.0, b, 0.4, 0.25, exposure_time=exposure, supersample=15)
    assert np.max(np.abs(ours - reference)) < 1e-6


def test_batch_matches_single_and_is_one_outside_transit():
    rng = np.random.default_rng(1)
    time = np.linspace(0, 20, 3000)
    n = 6
    args = dict(
        period=rng.uniform(1, 5, n), t0=rng.uniform(0, 1, n), rp=rng.uniform(0.02, 0.2, n),
        a=rng.uniform(5, 20, n), b=rng.uniform(0, 0.8, n), u1=np.full(n, 0.4), u2=np.full(n, 0.2),
    )
    batch = transit_light_curve(time, *args.values())
    for i in range(n):
        single = transit_light_curve(time, *(v[i] for v in args.values()))
        np.testing.assert_array_equal(batch[i], single)
    assert batch.shape == (n, time.size)
    assert np.all(batch <= 1.0) and np.any(batch < 1.0)


def test_limits_and_geometry():
    # Deep inside a uniform disk the depth is rp^2.
    assert occult_quadratic(0.0, 0.1, 0.0, 0.0) == pytest.approx(0.99, abs=1e-12)
    assert occult_quadratic(2.0, 0.1, 0.3, 0.2) == 1.0
    assert occult_quadratic(0.0, 1.5, 0.3, 0.2) == pytest.approx(0.0, abs=1e-12)
    duration = transit_duration(5.0, 12.0, 0.1, 0.3)
    assert scaled_semi_major_axis(5.0, duration, 0.1, 0.3) == pytest.approx(12.0, rel=1e-9)
