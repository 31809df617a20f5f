"""The compiled (numba) views and transits against the numpy implementations they replaced."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from skysift.simulate.priors import sample_parameters
from skysift.transit import _kernels
from skysift.transit.injection import EB_PRIORS, PLANET_PRIORS, eb_parameters, planet_parameters
from skysift.transit.preprocess import (
    binned_statistic,
    fill_empty_bins,
    global_view,
    local_view,
    make_vetting_views,
    make_views,
    normalise_views,
    phase_fold,
)
from skysift.transit.transit_model import _transit_points, transit_light_curve

from . import _reference_views as numpy_views

CADENCE = 29.4244 / 1440.0


def _light_curves(n=60, n_time=3000, seed=0, bjd=True):
    """Noisy float32 light curves with dips, gaps, NaNs and awkward ephemerides."""
    rng = np.random.default_rng(seed)
    time = CADENCE * np.arange(n_time) + (2454833.0 if bjd else 0.0)
    span = time[-1] - time[0]
    # Short periods (a few cadences), ordinary ones and periods longer than the baseline.
    period = np.concatenate([[0.05, 0.3, 0.51], 10.0 ** rng.uniform(-0.3, 1.6, n - 6), [span, 1.7 * span, 400.0]])
    t0 = time[0] + rng.uniform(-1.0, 2.0, n) * period
    # Durations from under a cadence to wider than the orbit (local view capped at P / 2).
    fraction = 10.0 ** rng.uniform(-3.0, -0.5, n)
    fraction[:6] = [1e-4, 0.9, 0.02, 2.0, 0.25, 1e-3]
    duration = fraction * period
    flux = (1.0 + 3e-4 * rng.standard_normal((n, n_time))).astype(np.float32)
    folded = phase_fold(time, period, t0)
    flux -= np.float32(2e-3) * (np.abs(folded) < 0.5 * duration[:, None])
    # Repeated values (ties in the medians), isolated NaNs and infinities, and a gap.
    flux[::7, ::5] = np.round(flux[::7, ::5], 3)
    flux[rng.random(flux.shape) < 0.01] = np.nan
    flux[3, 17] = np.inf
    flux[4, 18] = -np.inf
    flux[:, 1200:1500] = np.nan
    flux[5] = np.nan  # no usable point at all
    valid = rng.random(flux.shape) > 0.05
    return time, flux, period, t0, duration, valid


def _assert_views_equal(got, want, statistic):
    if statistic == "median":
        # Exact order statistics and the same float32 arithmetic: identical views.
        np.testing.assert_array_equal(got, want)
    else:
        # Means are summed in another order (direct sums, not differences of a cumulative sum).
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("statistic", ["median", "mean"])
@pytest.mark.parametrize("with_valid", [False, True])
def test_make_views_equal_numpy_implementation(statistic, with_valid):
    time, flux, period, t0, duration, valid = _light_curves()
    valid = valid if with_valid else None
    got = make_views(time, flux, period, t0, duration, valid=valid, statistic=statistic)
    want = numpy_views.make_views(time, flux, period, t0, duration, valid=valid, statistic=statistic)
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        _assert_views_equal(g, w, statistic)


def test_make_views_other_inputs_equal_numpy_implementation():
    # Per-row time grids, float64 flux, times near zero, all-finite flux (no usable-point mask).
    time, flux, period, t0, duration, _ = _light_curves(n=20, seed=1, bjd=False)
    flux = np.nan_to_num(flux, nan=1.0, posinf=1.0, neginf=1.0).astype(np.float64)
    grids = time[None, :] + np.random.default_rng(2).uniform(0.0, 1e-3, (20, 1))
    for grid in (time, grids):
        got = make_views(grid, flux, period, t0, duration)
        want = numpy_views.make_views(grid, flux, period, t0, duration)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_single_views_with_folded_times_equal_numpy_implementation(statistic):
    time, flux, period, t0, duration, valid = _light_curves(n=25, seed=3)
    folded = phase_fold(time, period, t0)
    for kwargs in ({}, {"folded": folded}):
        got = global_view(time, flux, period, t0, valid=valid, statistic=statistic, **kwargs)
        want = numpy_views.global_view(time, flux, period, t0, valid=valid, statistic=statistic, **kwargs)
        _assert_views_equal(got, want, statistic)
        got = local_view(time, flux, period, t0, duration, valid=valid, statistic=statistic, **kwargs)
        want = numpy_views.local_view(time, flux, period, t0, duration, valid=valid, statistic=statistic, **kwargs)
        _assert_views_equal(got, want, statistic)
    # Other bin counts and widths.
    got = local_view(time, flux, period, t0, duration, n_bins=61, num_durations=2.0, bin_width_factor=0.9)
    want = numpy_views.local_view(time, flux, period, t0, duration, n_bins=61, num_durations=2.0, bin_width_factor=0.9)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        global_view(time, flux, period, t0, n_bins=201), numpy_views.global_view(time, flux, period, t0, n_bins=201)
    )


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_binned_statistic_equals_numpy_implementation(statistic):
    rng = np.random.default_rng(4)
    n_rows, n_points, n_bins = 80, 400, 57
    x = rng.uniform(-1.2, 1.2, size=(n_rows, n_points))
    x[:, :20] = np.linspace(-1.0, 1.0, 20)  # on bin edges
    x[1, 5] = np.nan
    y = rng.normal(size=(n_rows, n_points))
    y[::3, ::4] = np.round(y[::3, ::4], 1)  # ties
    y[2, :30] = np.nan
    valid = rng.random(x.shape) > 0.1
    spacing = 2.0 / n_bins
    width = spacing * np.concatenate([[0.1, 0.5, 1.0, 2.0, 4.02, 30.0], rng.uniform(0.05, 12.0, n_rows - 6)])
    for kwargs in ({}, {"bin_width": width}, {"bin_width": 0.16}):
        got = binned_statistic(x, y, n_bins, -1.0, 1.0, valid=valid, statistic=statistic, **kwargs)
        want = numpy_views.binned_statistic(x, y, n_bins, -1.0, 1.0, valid=valid, statistic=statistic, **kwargs)
        _assert_views_equal(got, want, statistic)


def test_adjacent_bin_medians_for_every_count():
    # Bins of 0-12 points: the closed forms (1-4), the sorting network (5-8) and the gathered selection (9+).
    rng = np.random.default_rng(12)
    counts = np.tile(np.arange(13), 5)
    bins = np.repeat(np.arange(counts.size), counts)
    order = rng.permutation(bins.size)
    values = rng.normal(size=bins.size).astype(np.float32)
    values[::5] = np.round(values[::5], 0)  # ties
    bins, values = bins[order], values[order]
    out = np.empty(counts.size, dtype=np.float32)
    work = _kernels._adjacent_workspace(bins.size, counts.size)
    _kernels._adjacent_row(bins, values, bins.size, counts.size, True, work, out)
    for b, n in enumerate(counts):
        if n == 0:
            assert np.isnan(out[b])
        else:
            assert out[b] == np.float32(np.median(values[bins == b].astype(np.float64))), (b, n)


def test_fill_and_normalise_equal_numpy_implementation():
    rng = np.random.default_rng(5)
    for n_bins in (1, 2, 10, 201, 2001):
        view = rng.normal(size=(30, n_bins)).astype(np.float32)
        view[rng.random(view.shape) < 0.3] = np.nan
        view[0] = np.nan
        view[1, :] = 3.0  # flat: scale stays 1
        view[2, ::2] = np.round(view[2, ::2], 1)
        filled = fill_empty_bins(view)
        np.testing.assert_array_equal(filled, numpy_views.fill_empty_bins(view))
        np.testing.assert_array_equal(normalise_views(filled), numpy_views.normalise_views(filled))
        np.testing.assert_array_equal(normalise_views(view), numpy_views.normalise_views(view))


def test_vetting_views_equal_numpy_implementation():
    time, flux, period, t0, duration, valid = _light_curves(n=20, seed=6)
    got = make_vetting_views(time, flux, period, t0, duration, valid=valid)
    want = numpy_views.vetting_views(time, flux, period, t0, duration, valid=valid)
    for name, view in want.items():
        np.testing.assert_array_equal(got[name], view, err_msg=name)
    assert np.isfinite(got["scalars"]).all()


def test_median_selection_and_ranking_kernels():
    rng = np.random.default_rng(7)
    for n in list(range(1, 40)) + [101, 2001]:
        for values in (rng.normal(size=n), rng.integers(0, 3, n), np.full(n, 2.5)):
            values = values.astype(np.float32)
            got = np.float32(_kernels._median_of(values.copy(), n))
            assert got == np.median(values), n
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-42, -1e-42, 3.4e38, -3.4e38, 1.0, -1.0], dtype=np.float32)
    values = np.concatenate([special, rng.normal(0, 10, 500).astype(np.float32), special])
    # Ties (a stable sort keeps positions) and one distinct value rank too; fluxes near 1 take two radix passes.
    fluxes = (1.0 + 0.01 * rng.normal(size=1500)).astype(np.float32)
    for ranked in (rng.integers(-3, 4, 700).astype(np.float32), np.full(300, 1.5, dtype=np.float32), fluxes):
        work = _kernels._overlap_workspace(ranked.size, 8)
        _kernels._rank_values(ranked, ranked.size, work)
        np.testing.assert_array_equal(work[7][: ranked.size], np.argsort(np.argsort(ranked, kind="stable"), kind="stable"))
    work = _kernels._overlap_workspace(values.size, 8)
    _kernels._rank_values(values, values.size, work)
    rank, by_rank = work[7][: values.size], work[8][: values.size]
    np.testing.assert_array_equal(np.sort(rank), np.arange(values.size))
    np.testing.assert_array_equal(by_rank, np.sort(values))
    np.testing.assert_array_equal(by_rank[rank], values)


def test_nth_set_bit_kernels_agree():
    rng = np.random.default_rng(11)
    words = np.concatenate([rng.integers(1, 2**63, 200, dtype=np.uint64) | (rng.integers(0, 2, 200, dtype=np.uint64) << 63),
                            np.array([1, 2**63, 2**64 - 1], dtype=np.uint64)])
    for word in words:
        bits = [b for b in range(64) if (int(word) >> b) & 1]
        for n in (0, len(bits) // 2, len(bits) - 1):
            assert _kernels._nth_bit_loop(word, n) == bits[n]
            assert _kernels._nth_bit(word, n) == bits[n]


def test_deposit_only_for_the_host_cpu(monkeypatch):
    # A portable target (NUMBA_CPU_NAME=generic) must not get the x86 BMI2 instruction.
    import numba

    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")
    assert not _kernels._has_fast_deposit()


def test_radix_median_equals_numpy_median():
    # Long rows take the radix selection (several passes where the values crowd one bucket), short
    # rows quickselect; both must give numpy's (float32) median exactly, without reordering the row.
    rng = np.random.default_rng(9)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-42, -1e-42, 3.4e38, -3.4e38], dtype=np.float32)
    work = _kernels._median_work(6000)
    for n in (1, 2, 3, 95, 96, 97, 98, 201, 1000, 2001, 2002, 5999):
        rows = [
            rng.normal(size=n),
            1.0 + 3e-4 * rng.normal(size=n) - 0.01 * (rng.random(n) < 0.05),  # a flux view with a dip
            rng.integers(0, 3, n),  # ties across the middle
            np.full(n, -2.5),
            np.concatenate([rng.normal(size=n - 1), [1e30]]),  # one outlier stretches the first pass
            np.resize(special, n),
        ]
        for values in rows:
            values = values.astype(np.float32)
            before = values.copy()
            got = np.float32(_kernels._median_radix(values, n, work))
            np.testing.assert_array_equal(values, before)
            want = np.median(values)
            assert got == want or (np.isnan(want) and np.isnan(got)), (n, values[:5])


def test_compiled_transits_match_numpy_model():
    rng = np.random.default_rng(8)
    time = CADENCE * np.arange(4000)
    planets = planet_parameters(sample_parameters(PLANET_PRIORS, 300, rng), 0.0)
    planets["b"][:3] = 0.0
    planets["t0"][:3] = time[[100, 2001, 3999]]  # a cadence exactly at mid-transit, z = 0
    binaries = eb_parameters(sample_parameters(EB_PRIORS, 100, rng), 0.0)
    k = binaries["radius_ratio"]
    cases = [
        [planets[name] for name in ("period", "t0", "rp", "a_rs", "b", "u1", "u2")],
        [binaries["period"], binaries["t0"], k, binaries["a_rs"], binaries["b"], binaries["u1"], binaries["u2"]],
        # Secondary eclipses: an occulter larger than the star (full coverage included).
        [binaries["period"], binaries["t0"] + 0.5 * binaries["period"], 1.0 / k, binaries["a_rs"] / k,
         binaries["b"] / k, binaries["u1"], binaries["u2"]],
    ]  # fmt: skip
    for values in cases:
        compiled = transit_light_curve(time, *values)
        rows, cols, model = _transit_points(time, *(np.asarray(v, dtype=np.float64) for v in values))
        reference = np.ones_like(compiled)
        reference[rows, cols] = model
        np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-12)
        assert (compiled < 1.0).any()


def test_importing_compiles_nothing():
    code = (
        "import skysift, skysift.transit.preprocess, skysift.transit.injection, skysift.transit.dataset\n"
        "from skysift.transit import _kernels\n"
        "import numba\n"
        "compiled = [n for n, f in vars(_kernels).items() if isinstance(f, numba.core.registry.CPUDispatcher)"
        " and f.signatures]\n"
        "assert not compiled, compiled\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_degenerate_durations_give_flat_local_views():
    time = CADENCE * np.arange(500)
    flux = (1.0 + 1e-3 * np.random.default_rng(9).standard_normal((3, time.size))).astype(np.float32)
    for duration in (0.0, np.nan):
        got = make_views(time, flux, 3.0, 1.0, [duration, 0.1, duration])
        want = numpy_views.make_views(time, flux[1:2], 3.0, 1.0, 0.1)
        np.testing.assert_array_equal(got[1][[0, 2]], 0.0)
        np.testing.assert_array_equal(got[1][1:2], want[1])
        np.testing.assert_array_equal(got[0][1:2], want[0])
