"""The fast paths of injection and views against straightforward references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from skysift.transit.injection import _NORMAL_CELLS, gaussian_noise, inject_transits
from skysift.transit.preprocess import (
    LOCAL_BIN_WIDTH_FACTOR,
    LOCAL_NUM_DURATIONS,
    binned_statistic,
    fill_empty_bins,
    global_view,
    local_view,
    make_views,
    normalise_views,
    phase_fold,
)
from skysift.transit.transit_model import (
    _ellpi,
    _limb_darkened_flux,
    _occultation_terms,
    occult_quadratic,
    transit_light_curve,
    transit_windows,
)

from . import _reference_views as numpy_views


# ---------------------------------------------------------------------------
# Tabulated Gaussian noise
# ---------------------------------------------------------------------------
def test_gaussian_noise_distribution():
    n = 4_000_000
    x = gaussian_noise(np.random.default_rng(123), n, dtype=np.float64)
    assert abs(x.mean()) < 5.0 / np.sqrt(n)
    assert abs(x.std() - 1.0) < 5.0 / np.sqrt(2.0 * n)
    # Two-sided tail fractions against the normal, within 5 binomial sigma.
    for t in (0.5, 1.0, 2.0, 3.0, 3.5, 4.0):
        expected = 2.0 * special.ndtr(-t)
        observed = np.mean(np.abs(x) > t)
        assert abs(observed - expected) < 5.0 * np.sqrt(expected / n) + 1.0 / n, t
    assert stats.kstest(x, "norm").statistic < 1.5e-3
    # Beyond the outermost tabulated level (4.08) the tail is sampled, not a point mass.
    q = -special.ndtri(1.0 / _NORMAL_CELLS)
    far = np.abs(x[np.abs(x) > 4.1])
    assert far.min() > q and np.unique(far).size == far.size
    assert abs(far.size / n - 2.0 / _NORMAL_CELLS) < 5.0 * np.sqrt(2.0 / _NORMAL_CELLS / n)
    tail_cdf = lambda t: 1.0 - special.ndtr(-t) / special.ndtr(-q)  # noqa: E731
    assert stats.kstest(far, tail_cdf).pvalue > 1e-3


def _xoshiro256pp_reference(state, n):
    """Blackman & Vigna's reference xoshiro256++ (one stream), in Python integers."""
    mask = (1 << 64) - 1
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & mask  # noqa: E731
    s0, s1, s2, s3 = (int(v) for v in state)
    out = []
    for _ in range(n):
        out.append((rotl((s0 + s3) & mask, 23) + s0) & mask)
        t = (s1 << 17) & mask
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
    return out


def test_noise_generator_is_xoshiro256pp():
    from skysift.transit import _kernels

    rng = np.random.default_rng(9)
    state = rng.integers(0, np.iinfo(np.uint64).max, (4, _kernels.NOISE_LANES), dtype=np.uint64, endpoint=True)
    draws = np.empty(3 * _kernels.NOISE_LANES, dtype=np.uint64)
    start = state.copy()
    _kernels._next_draws(state, draws)
    for lane in (0, 7, _kernels.NOISE_LANES - 1):
        assert draws[lane :: _kernels.NOISE_LANES].tolist() == _xoshiro256pp_reference(start[:, lane], 3)


def test_gaussian_noise_shape_scale_and_seed():
    a = gaussian_noise(np.random.default_rng(5), (300, 1001), loc=1.0, scale=3e-4)
    b = gaussian_noise(np.random.default_rng(5), (300, 1001), loc=1.0, scale=3e-4)
    assert a.shape == (300, 1001) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 1.0) < 1e-5 and abs(a.std() - 3e-4) < 3e-6
    assert gaussian_noise(np.random.default_rng(5), 7).shape == (7,)


# ---------------------------------------------------------------------------
# Mandel & Agol model
# ---------------------------------------------------------------------------
def test_bulirsch_pi_matches_carlson():
    rng = np.random.default_rng(0)
    m = np.concatenate([rng.uniform(0.0, 1.0, 20000), 1.0 - 10.0 ** rng.uniform(-14, -1, 2000), [0.0]])
    n = np.concatenate([10.0 ** rng.uniform(-4, 4, m.size - 500), rng.uniform(-0.99, 0.0, 500)])
    carlson = special.elliprf(0.0, 1.0 - m, 1.0) - n / 3.0 * special.elliprj(0.0, 1.0 - m, 1.0, 1.0 + n)
    np.testing.assert_allclose(_ellpi(n, m), carlson, rtol=1e-11)


def test_occult_quadratic_matches_full_case_table():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(0.005, 0.3, 6000), rng.uniform(0.3, 0.99, 2000), rng.uniform(1.0, 3.0, 2000)])
    z = rng.uniform(0.0, 1.0, p.size) * (1.2 + p)
    # Exactly on (and within rounding of) every special value.
    special_z = np.concatenate([p, np.abs(1.0 - p), p - 1.0, np.zeros_like(p), p + 1e-15, np.abs(1.0 - p) - 1e-15])
    p = np.concatenate([p, np.tile(p, 6), [0.5, 0.5, 1.0, 1.0]])
    z = np.concatenate([z, special_z, [0.5, 0.0, 0.0, 1.0]])
    u1 = rng.uniform(0.0, 1.0, p.size)
    u2 = rng.uniform(-0.2, 1.0, p.size) * (1.0 - u1)
    fast = occult_quadratic(z, p, u1, u2)
    # Reference: the case table applied to every point (after the same snapping).
    zs = np.abs(z)
    tol = 1e-14
    zs = np.where(np.abs(p - zs) < tol, p, zs)
    zs = np.where(np.abs((p - 1.0) - zs) < tol, p - 1.0, zs)
    zs = np.where(np.abs((1.0 - p) - zs) < tol, 1.0 - p, zs)
    zs = np.where(zs < tol, 0.0, zs)
    lambda_e, lambda_d, eta_d = _occultation_terms(zs, p)
    reference = np.where(zs < 1.0 + p, _limb_darkened_flux(zs, p, u1, u2, lambda_e, lambda_d, eta_d), 1.0)
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(fast))


@pytest.mark.parametrize("shuffle", [False, True])
def test_transit_windows_match_folding(shuffle):
    rng = np.random.default_rng(2)
    time = np.sort(rng.uniform(0.0, 30.0, 1500))
    time[700:760] = np.nan_to_num(time[700:760])  # a gap-free stretch, nothing special
    if shuffle:
        time = rng.permutation(time)
    n = 40
    period = 10.0 ** rng.uniform(-0.5, 1.5, n)
    t0 = rng.uniform(-5.0, 35.0, n)
    half = rng.uniform(0.0, 0.3, n) * period
    half[:4] = period[:4] * np.array([0.5, 0.7, 2.0, 0.49999])  # capped windows
    rows, cols, dt = transit_windows(time, period, t0, half)
    offset = time[None, :] - t0[:, None]
    folded = offset - period[:, None] * np.floor(offset / period[:, None] + 0.5)
    expected = np.abs(folded) <= np.minimum(half, 0.5 * period)[:, None]
    got = np.zeros_like(expected)
    got[rows, cols] = True
    # Cadences exactly on a capped window's edge may go to either neighbour; none occur here.
    np.testing.assert_array_equal(got, expected)
    assert np.unique(rows * time.size + cols).size == rows.size
    np.testing.assert_allclose(dt, folded[rows, cols], atol=1e-12)


def _planets(rng, n):
    """Parameters of ``n`` planets for :func:`inject_transits`."""
    return {
        "period": rng.uniform(0.6, 9.0, n), "t0": rng.uniform(0.0, 3.0, n), "rp": rng.uniform(0.02, 0.2, n),
        "a_rs": rng.uniform(3.0, 20.0, n), "b": rng.uniform(0.0, 0.9, n), "u1": np.full(n, 0.4), "u2": np.full(n, 0.2),
    }


def test_inject_transits_keeps_float32_and_matches_dense_model():
    time = np.arange(3000) * 0.0204
    rng = np.random.default_rng(3)
    n = 12
    params = _planets(rng, n)
    model = transit_light_curve(time, *(params[k] for k in ("period", "t0", "rp", "a_rs", "b", "u1", "u2")))
    flux32 = (1.0 + 1e-3 * rng.standard_normal((n, time.size))).astype(np.float32)
    out32 = inject_transits(flux32, time, params)
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32, (flux32 * model).astype(np.float32))
    flux64 = flux32.astype(np.float64)
    np.testing.assert_array_equal(inject_transits(flux64, time, params), flux64 * model)
    # A shared (T,) flux broadcasts over the planets, one planet over many light curves.
    np.testing.assert_array_equal(inject_transits(np.ones(time.size), time, params), model)
    one = {k: v[0] for k, v in params.items()}
    np.testing.assert_array_equal(inject_transits(flux64[:3], time, one), flux64[:3] * model[0])
    np.testing.assert_array_equal(inject_transits(flux64[0], time, one), flux64[0] * model[0])


def test_inject_transits_into_out_and_in_place():
    time = np.arange(2000) * 0.0204
    rng = np.random.default_rng(4)
    n = 6
    params = _planets(rng, n)
    flux = (1.0 + 1e-3 * rng.standard_normal((n, time.size))).astype(np.float32)
    expected = inject_transits(flux, time, params)
    # Into a separate buffer: flux untouched.
    before = flux.copy()
    buffer = np.empty_like(flux)
    assert inject_transits(flux, time, params, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)
    np.testing.assert_array_equal(flux, before)
    # In place: same values, no copy.
    assert inject_transits(flux, time, params, out=flux) is flux
    np.testing.assert_array_equal(flux, expected)
    # One light curve, one planet.
    one = {k: v[0] for k, v in params.items()}
    single = before[0].copy()
    inject_transits(single, time, one, out=single)
    np.testing.assert_array_equal(single, inject_transits(before[0], time, one))
    with pytest.raises(ValueError, match="shape"):
        inject_transits(before, time, params, out=np.empty((n, time.size - 1), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        inject_transits(before, time, params, out=np.empty((time.size, n), np.float32).T)
    with pytest.raises(ValueError, match="floating"):
        inject_transits(before, time, params, out=np.empty((n, time.size), np.int32))


# ---------------------------------------------------------------------------
# Binning, filling, normalising
# ---------------------------------------------------------------------------
def _sortable_roundtrip(values):
    return numpy_views._unsortable_bits(numpy_views._sortable_bits(values))


def test_sortable_bits_order_and_roundtrip():
    rng = np.random.default_rng(4)
    values = np.concatenate(
        [rng.normal(0, 10, 5000), [0.0, -0.0, np.inf, -np.inf, 1e-42, -1e-42, 3.4e38, -3.4e38]]
    ).astype(np.float32)
    np.testing.assert_array_equal(_sortable_roundtrip(values).view(np.uint32), values.view(np.uint32))
    bits = numpy_views._sortable_bits(values)
    distinct = values != 0  # +0 and -0 compare equal but have distinct bits
    order = np.argsort(bits[distinct], kind="stable")
    assert np.all(np.diff(values[distinct][order]) >= 0)


def test_overlapping_medians_match_np_median_many_rows_and_widths():
    rng = np.random.default_rng(5)
    n_rows, n_points, n_bins = 100, 160, 400
    x = rng.uniform(-1.1, 1.1, size=(n_rows, n_points))
    y = rng.normal(size=(n_rows, n_points)).astype(np.float32)
    y[3, :10] = np.nan
    valid = rng.random((n_rows, n_points)) > 0.05
    spacing = 2.0 / n_bins
    # Half-widths from well under half a spacing (gaps between bins) to ten spacings.
    width = spacing * np.concatenate([[0.3, 0.999, 1.0, 4.02, 20.0], rng.uniform(0.2, 20.0, n_rows - 5)])
    x[7] = 5.0  # a row with no point in range
    for statistic, reduce in (("median", np.median), ("mean", np.mean)):
        result = binned_statistic(x, y, n_bins, -1.0, 1.0, bin_width=width, valid=valid, statistic=statistic)
        for r in range(n_rows):
            centres = -1.0 + (np.arange(n_bins) + 0.5) * spacing
            usable = valid[r] & np.isfinite(y[r])
            inside = (np.abs(x[r][None, :] - centres[:, None]) <= 0.5 * width[r]) & usable
            for b in np.flatnonzero(inside.any(axis=1)):
                assert result[r, b] == pytest.approx(reduce(y[r, inside[b]]), rel=1e-6, abs=1e-7), (statistic, r, b)
            assert np.all(np.isnan(result[r, ~inside.any(axis=1)]))


def test_adjacent_medians_with_many_points_per_bin():
    # Every group size from 0 to 30 in one call (closed forms and the sorted fallback).
    rng = np.random.default_rng(6)
    n_bins = 31
    counts = rng.permutation(np.arange(n_bins))
    x = np.repeat((np.arange(n_bins) + rng.uniform(0.01, 0.99, n_bins)) / n_bins, counts)[None, :]
    y = rng.normal(size=x.shape)
    result = binned_statistic(x, y, n_bins, 0.0, 1.0)
    for b in range(n_bins):
        inside = np.floor(x[0] * n_bins) == b
        want = np.median(y[0, inside].astype(np.float32)) if inside.any() else np.nan
        np.testing.assert_allclose(result[0, b], want, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_fill_empty_bins_matches_interpolation():
    rng = np.random.default_rng(7)
    view = rng.normal(size=(60, 50)).astype(np.float32)
    view[rng.random(view.shape) < 0.4] = np.nan
    view[0] = np.nan
    view[1, :] = np.nan
    view[1, 25] = 2.0
    view[2, :10] = np.nan
    view[2, -7:] = np.nan
    filled = fill_empty_bins(view)
    for r in range(view.shape[0]):
        good = np.isfinite(view[r])
        want = np.zeros(50) if not good.any() else np.interp(np.arange(50), np.flatnonzero(good), view[r, good])
        np.testing.assert_allclose(filled[r], want, rtol=1e-6, atol=1e-6)


def test_normalise_views_matches_np_median():
    rng = np.random.default_rng(8)
    for n_bins in (201, 2001, 10):
        view = rng.normal(size=(20, n_bins)).astype(np.float32)
        view[3] = 5.0  # flat: scale stays 1
        out = normalise_views(view)
        centred = view - np.median(view, axis=1, keepdims=True)
        floor = -centred.min(axis=1, keepdims=True)
        want = centred / np.where(floor > 0, floor, 1.0)
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    with_nan = rng.normal(size=(2, 11)).astype(np.float32)
    with_nan[0, 4] = np.nan
    assert np.isnan(normalise_views(with_nan)[0]).all() and np.isfinite(normalise_views(with_nan)[1]).all()


def _reference_views(time, flux, period, t0, duration, valid):
    """Views of one light curve by loops and np.median (AstroNet's definition)."""
    folded = phase_fold(time, period, t0)
    usable = np.isfinite(flux) & valid
    values = flux.astype(np.float32)
    global_bin = np.floor((folded + 0.5 * period) / (period / 2001)).astype(int)
    raw_global = np.full(2001, np.nan)
    for b in range(2001):
        inside = usable & (global_bin == b)
        if inside.any():
            raw_global[b] = np.median(values[inside])
    half_span = min(LOCAL_NUM_DURATIONS * duration, 0.5 * period)
    spacing = 2.0 * half_span / 201
    centres = -half_span + (np.arange(201) + 0.5) * spacing
    raw_local = []
    for c in centres:
        inside = usable & (np.abs(folded - c) <= 0.5 * LOCAL_BIN_WIDTH_FACTOR * duration)
        raw_local.append(np.median(values[inside]) if inside.any() else np.nan)
    views = []
    for raw in (raw_global, np.array(raw_local)):
        good = np.isfinite(raw)
        raw = np.interp(np.arange(raw.size), np.flatnonzero(good), raw[good])
        raw = raw - np.median(raw)
        views.append((raw / -raw.min(), -raw.min()))
    return views


def test_make_views_matches_reference_loops():
    rng = np.random.default_rng(9)
    time = np.arange(4000) * (29.4244 / 1440.0)
    n = 8
    period = np.concatenate([[0.51, 0.5 * 81.7 / 40.0], 10.0 ** rng.uniform(-0.3, 1.6, n - 2)])
    t0 = rng.uniform(0.0, 1.0, n) * period
    duration = np.concatenate([[0.3, 0.05], rng.uniform(0.05, 0.5, n - 2)])
    flux = (1.0 + 3e-4 * rng.standard_normal((n, time.size))).astype(np.float32)
    flux[:, ::97] -= 2e-3  # a signal
    flux[1, 50:60] = np.nan
    valid = rng.random(flux.shape) > 0.02
    global_fast, local_fast = make_views(time, flux, period, t0, duration, valid=valid)
    assert global_fast.dtype == np.float32 and local_fast.dtype == np.float32
    for r in range(n):
        want_global, want_local = _reference_views(time, flux[r], period[r], t0[r], duration[r], valid[r])
        for got, (want, scale) in zip((global_fast[r], local_fast[r]), (want_global, want_local)):
            # Medians agree exactly; the library then works in float32 (flux ulp 1.2e-7 near 1),
            # the reference in float64: allow four ulps of the flux in normalised units.
            np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.finfo(np.float32).eps / scale)
    # The single-view entry points give the same views.
    np.testing.assert_array_equal(global_view(time, flux, period, t0, valid=valid), global_fast)
    np.testing.assert_array_equal(local_view(time, flux, period, t0, duration, valid=valid), local_fast)
