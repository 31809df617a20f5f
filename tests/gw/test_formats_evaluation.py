"""MLGWSC-1 formats, injection spacing, clustering and evaluation (no PyCBC needed)."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InputDataError
from skysift.gw.evaluate import SECONDS_PER_MONTH, evaluate_search, event_far, injection_far, plot_sensitivity
from skysift.gw.mlgwsc import INJECTION_SPACING, injection_times, read_events, read_injections, read_strain, write_events, write_injections, write_strain
from skysift.gw.search import cluster_triggers, excess_power_score, sliding_scores
from skysift.gw.series import Strain


def test_strain_round_trip(tmp_path, provenance):
    rng = np.random.default_rng(0)
    segments = [Strain(rng.standard_normal((2, 1000)), 1000.0 + 10 * k, 1 / 2048, ("H1", "L1")) for k in range(2)]
    path = write_strain(tmp_path / "strain.hdf", segments, provenance=provenance)
    back = read_strain(path)
    assert len(back) == 2
    for original, read in zip(segments, back):
        assert read.start_time == original.start_time and read.delta_t == original.delta_t
        np.testing.assert_allclose(read.data, original.data.astype(np.float32))
    import h5py

    with h5py.File(path) as handle:  # the MLGWSC-1 layout itself
        assert sorted(handle) == ["H1", "L1"]
        assert sorted(handle["H1"]) == ["1000", "1010"]
        assert handle["L1/1010"].attrs["start_time"] == 1010.0
        assert handle.attrs["provenance.rule"] == "test_rule"


def test_strain_missing_detector_is_input_error(tmp_path):
    write_strain(tmp_path / "s.hdf", Strain(np.zeros((1, 8)), 0.0, 0.5, ("H1",)))
    with pytest.raises(InputDataError, match="L1"):
        read_strain(tmp_path / "s.hdf")


def test_events_and_injections_round_trip(tmp_path):
    write_events(tmp_path / "ev.hdf", [1.0, 2.0], [5.0, 6.0], 0.3)
    events = read_events(tmp_path / "ev.hdf")
    np.testing.assert_array_equal(events["var"], [0.3, 0.3])
    np.testing.assert_array_equal(events["stat"], [5.0, 6.0])
    write_injections(tmp_path / "inj.hdf", {"tc": np.array([3.0]), "mass1": np.array([30.0])}, approximant="IMRPhenomD")
    assert read_injections(tmp_path / "inj.hdf")["mass1"][0] == 30.0


def test_injection_spacing_24_pm_3():
    times = injection_times(0.0, 24 * 3600.0, np.random.default_rng(1))
    gaps = np.diff(times)
    assert gaps.min() >= INJECTION_SPACING[0] and gaps.max() <= INJECTION_SPACING[1]
    assert abs(gaps.mean() - 24.0) < 0.1
    assert times[0] >= 16.0 and times[-1] <= 24 * 3600.0 - 16.0


def test_cluster_keeps_loudest_per_window():
    times = np.array([0.0, 0.2, 0.4, 5.0, 5.5, 9.0])
    stats = np.array([1.0, 3.0, 2.0, 4.0, 0.5, 0.1])
    kept_times, kept_stats = cluster_triggers(times, stats, threshold=0.2, cluster_window=1.0)
    np.testing.assert_array_equal(kept_times, [0.2, 5.0])
    np.testing.assert_array_equal(kept_stats, [3.0, 4.0])


def test_sliding_windows_and_excess_power():
    strain = Strain(np.random.default_rng(2).standard_normal((2, 2048 * 6)), 100.0, 1 / 2048)
    starts, scores = sliding_scores(strain, excess_power_score, window=1.0, step=0.5, edge=1.0)
    np.testing.assert_allclose(starts, 101.0 + 0.5 * np.arange(7))
    assert np.all(np.abs(scores) < 6)


def test_evaluation_hand_made_case():
    # 1000 s of background with 10 events of stats 1..10: FAR(s) = N(>= s) / 1000.
    background = {"time": np.arange(10.0), "stat": np.arange(1.0, 11.0), "var": np.full(10, 0.3)}
    np.testing.assert_allclose(event_far(np.array([10.0, 10.5, 5.0]), background["stat"], 1000.0), [0.001, 0.0, 0.006])
    injections = {"tc": np.array([100.0, 200.0, 300.0, 400.0]), "network_snr": np.array([20.0, 12.0, 5.0, 4.0])}
    foreground = {
        "time": np.array([100.2, 200.5, 300.1, 350.0]),  # 200.5 is outside ± 0.3 of 200
        "stat": np.array([11.0, 12.0, 9.5, 50.0]),
        "var": np.full(4, 0.3),
    }
    np.testing.assert_allclose(injection_far(injections["tc"], foreground["time"], event_far(foreground["stat"], background["stat"], 1000.0), foreground["var"]), [0.0, np.inf, 0.001, np.inf])
    result = evaluate_search(foreground, background, injections, 1000.0, max_distance=1000.0)
    assert result.far[0] == pytest.approx(1e-3)  # lowest resolvable FAR: 1 / T_background
    assert result.found_fraction[0] == pytest.approx(0.5)  # injections 1 and 3
    assert result.sensitive_distance[0] == pytest.approx(1000.0 * 0.5 ** (1 / 3))
    assert result.efficiency_snr10 == pytest.approx(0.5)  # of the two with SNR >= 10, one found
    assert result.summary()["lowest_far_per_month"] == pytest.approx(1e-3 * SECONDS_PER_MONTH)
    figure = plot_sensitivity({"model": result, "matched filter": result})
    assert len(figure.axes) == 1
