"""Injectors, the training-set product, TCE tables and real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skysift.context import RunContext
from skysift.io import read_product
from skysift.simulate.priors import Fixed, sample_parameters
from skysift.transit.dataset import (
    INPUT_NAMES,
    PLANET_PRIORS_DWARF_HOSTS,
    TABLE_COLUMNS,
    make_transit_training_set,
    read_tce_table,
    simulate_batch,
)
from skysift.transit.injection import (
    EB_PRIORS,
    NOISE_PRIORS,
    PLANET_PRIORS,
    eb_parameters,
    eclipsing_binary_flux,
    inject_systematics,
    inject_transits,
    noise_parameters,
    planet_parameters,
)
from skysift.transit.lightcurves import mission_time_grid
from skysift.transit.preprocess import make_views

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "transit"


def test_inject_transits_is_pure_and_multiplicative():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(0)
    params = planet_parameters(sample_parameters(PLANET_PRIORS, 5, rng), float(time[0]))
    flux = np.full((5, time.size), 2.0)
    injected = inject_transits(flux, time, params)
    assert np.all(flux == 2.0)
    assert np.all(injected <= 2.0) and np.all(injected.min(axis=1) < 2.0)
    assert np.all(np.isclose(injected.max(axis=1), 2.0))


def test_eb_odd_even_depths_differ_at_half_period():
    time = mission_time_grid("kepler")
    priors = {**EB_PRIORS, "radius_ratio": Fixed(0.8), "impact_fraction": Fixed(0.1),
              "surface_brightness_ratio": Fixed(0.3), "half_period": Fixed(1.0), "period": Fixed(6.0)}
    params = eb_parameters(sample_parameters(priors, 1, np.random.default_rng(1)), float(time[0]))
    flux = eclipsing_binary_flux(time, params)[0]
    tce_period, t0 = params["tce_period"][0], params["t0"][0]
    assert tce_period == pytest.approx(3.0)
    epoch = np.round((time - t0) / tce_period).astype(int)
    near = np.abs(time - t0 - epoch * tce_period) < 0.02
    odd = 1.0 - flux[near & (epoch % 2 == 1)].min()
    even = 1.0 - flux[near & (epoch % 2 == 0)].min()
    assert even > 0.3 and odd > 0.05
    assert abs(odd - even) / even > 0.3  # primary and secondary alternate


def test_systematics_kinds():
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(2)
    params = noise_parameters(sample_parameters({**NOISE_PRIORS, "systematic": Fixed(1.0)}, 3, rng), float(time[0]))
    flux = np.ones((3, time.size))
    stepped = inject_systematics(flux, time, params, np.full(3, 1e-3), rng)
    jumps = np.abs(np.diff(stepped, axis=1)).max(axis=1)
    np.testing.assert_allclose(jumps, params["systematic_amplitude"] * 1e-3)
    assert np.all(flux == 1.0)



def test_systematics_only_on_their_rows():
    """Mixed kinds in one call: each row gets its own systematic (evaluated on its rows only), none leaves rows alone."""
    time = mission_time_grid("kepler")
    rng = np.random.default_rng(5)
    params = noise_parameters(sample_parameters(NOISE_PRIORS, 8, rng), float(time[0]))
    params["systematic"] = np.array([0, 1, 2, 3, 0, 3, 2, 1], dtype=float)
    flux = np.ones((8, time.size))
    out = inject_systematics(flux, time, params, np.full(8, 1e-3), rng)
    amplitude = params["systematic_amplitude"] * 1e-3
    for row, kind in enumerate(params["systematic"].astype(int)):
        values = out[row] - 1.0
        if kind == 0:
            assert np.all(out[row] == 1.0)
        elif kind == 1:  # one step of the amplitude
            assert np.count_nonzero(np.diff(values)) == 1
            np.testing.assert_allclose(np.abs(values).max(), amplitude[row])
        elif kind == 2:  # a sinusoid of the amplitude
            np.testing.assert_allclose([values.max(), -values.min()], amplitude[row], rtol=1e-2)
        else:  # box dips of the amplitude
            assert np.unique(values).size == 2 and values.max() == 0.0
            np.testing.assert_allclose(values.min(), -amplitude[row])
    assert np.all(flux == 1.0)

def test_simulate_batch_views_and_labels():
    inputs, columns = simulate_batch({"planet": 6, "eb": 3, "blend": 2, "noise": 3}, seed=4)
    assert tuple(inputs) == INPUT_NAMES
    global_view, local_view = inputs["global_view"], inputs["local_view"]
    assert global_view.shape == (14, 2001) and local_view.shape == (14, 201)
    assert inputs["odd_view"].shape == (14, 201) and inputs["scalars"].shape == (14, 11)
    assert all(np.isfinite(a).all() and a.dtype == np.float32 for a in inputs.values())
    np.testing.assert_allclose(np.median(global_view, axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(global_view.min(axis=1), -1.0, atol=1e-6)
    assert sorted(np.unique(columns["kind"])) == ["blend", "eb", "noise", "planet"]
    np.testing.assert_array_equal(columns["label"], (columns["kind"] == "planet").astype(np.int8))
    planets = columns["kind"] == "planet"
    assert np.isfinite(columns["rp"][planets]).all() and np.isnan(columns["dilution"][planets]).all()
    # Planets sit at the centre of their local view (clearly so at high SNR).
    assert local_view[planets, 96:105].mean() < -0.4
    strong = planets & (columns["snr"] > 25)
    assert strong.any()
    assert np.all(np.abs(np.argmin(local_view[strong], axis=1) - 100) < 25)


def test_training_set_product_round_trip(tmp_path):
    path = make_transit_training_set(tmp_path / "transits.h5", 40, seed=9, chunk_size=16, context=RunContext(config_digest="0" * 64, scheduler="synchronous"))
    product = read_product(path)
    assert product.product_type == "transit-training-set"
    assert product.arrays["global_view"].shape == (40, 2001)
    assert product.arrays["local_view"].dtype == np.float32
    assert {name: product.arrays[name].shape[1:] for name in INPUT_NAMES} == {
        "global_view": (2001,), "local_view": (201,), "secondary_view": (201,), "odd_view": (201,),
        "even_view": (201,), "scalars": (11,)}
    assert product.attrs["scalar_names"].split(",")[0] == "log_depth"
    table = product.table
    assert set(TABLE_COLUMNS) | {"label", "kind"} <= set(table.colnames)
    assert str(table["period"].unit) == "d" and str(table["duration"].unit) == "h"
    assert table["label"].sum() == 20
    assert product.provenance.seed == 9
    # Same seed, different scheduler: identical product.
    again = read_product(make_transit_training_set(tmp_path / "again.h5", 40, seed=9, chunk_size=16, context=RunContext(scheduler="threads")))
    np.testing.assert_array_equal(again.arrays["local_view"], product.arrays["local_view"])
    np.testing.assert_array_equal(np.asarray(again.table["period"]), np.asarray(table["period"]))


def test_tce_table_reader_errors(tmp_path):
    bad = tmp_path / "tce.csv"
    bad.write_text("# comment\nkepid,tce_period\n1,2.0\n")
    with pytest.raises(Exception, match="tce.csv: TCE table lacks column"):
        read_tce_table(bad)


@pytest.mark.realdata
def test_real_tce_table():
    path = SHARED / "q1_q17_dr24_tce_labels.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    table = read_tce_table(path)
    assert len(table) == 15737
    assert int(table["label"].sum()) == 3600
    assert str(table["duration"].unit) == "h"
    everything = read_tce_table(path, labelled_only=False)
    assert len(everything) == 20367


@pytest.mark.realdata
def test_views_of_real_eclipsing_binary():
    path = SHARED / "eclipsebin_real_EBs" / "lc_tess_unwrapped.npy"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    phase, flux, _ = np.load(path)
    order = np.argsort(phase)
    phase, flux = phase[order], flux[order] / np.median(flux)
    # Treat the folded curve as one orbit of period 1 with the deepest point as t0.
    t0 = phase[np.argmin(flux)]
    in_eclipse = flux < 1.0 - 0.5 * (1.0 - flux.min())
    duration = max(2.5 * in_eclipse.mean(), 0.01)
    global_view, local_view = make_views(phase, flux, 1.0, t0, duration)
    for view in (global_view[0], local_view[0]):
        assert np.isfinite(view).all()
        assert view.min() == pytest.approx(-1.0)
        assert np.median(view) == pytest.approx(0.0, abs=1e-6)
    # The primary is centred and a secondary eclipse shows half an orbit away.
    assert abs(int(np.argmin(global_view[0])) - 1000) < 20
    away = np.r_[global_view[0, :300], global_view[0, -300:]]
    assert away.min() < -0.05


def test_mes_threshold_is_respected():
    counts = {"planet": 12, "eb": 5, "blend": 5, "noise": 6}
    _, columns = simulate_batch(counts, seed=21, mes_threshold=10.0)
    signals = columns["kind"] != "noise"
    assert signals.sum() == 22 and np.isfinite(columns["mes"]).all()
    assert np.all(columns["mes"][signals] >= 10.0)
    for kind, n in counts.items():
        assert (columns["kind"] == kind).sum() == n
    # Without the threshold some injected signals fall below it (so the cut matters).
    _, loose = simulate_batch(counts, seed=21, mes_threshold=None)
    assert np.any(loose["mes"][loose["kind"] != "noise"] < 10.0)
    assert "mes" in TABLE_COLUMNS


def test_planet_prior_of_training_sets_caps_the_radius_ratio():
    """Rp/Rs above 0.2 needs an M-dwarf host, outside the stellar density prior."""
    assert PLANET_PRIORS_DWARF_HOSTS["rp"].limits == (0.01, 0.2)
    assert PLANET_PRIORS_DWARF_HOSTS["stellar_density"] == PLANET_PRIORS["stellar_density"]
    _, columns = simulate_batch({"planet": 8}, seed=5)
    assert np.all(columns["rp"] <= 0.2)


def test_transit_task_takes_the_product_inputs():
    from skysift.train.tasks import get_task

    assert get_task("transit").inputs == INPUT_NAMES
