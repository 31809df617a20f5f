"""Calling the official MLGWSC-1 scripts: command lines, reading their evaluation, FAR look-ups."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest

from skysift.errors import InputDataError
from skysift.gw.official import (
    distance_at_far,
    evaluator_command,
    find_tools,
    generator_command,
    read_official_evaluation,
    run_evaluator,
)

HOUR = 3600.0


def _evaluate_py_far(n_background: int, duration: float) -> np.ndarray:
    """The rates evaluate.py gives its sorted background: (n - i - 1) / duration."""
    return (n_background - np.arange(n_background) - 1) / duration


def test_distance_at_far_resolved_with_one_hour_of_background():
    far = _evaluate_py_far(10, HOUR)
    distance = np.linspace(1000.0, 2000.0, 10)  # louder thresholds: farther down the list
    lookup = distance_at_far(far, distance, 1 / HOUR)
    assert lookup.method == "resolved"
    assert lookup.far == pytest.approx(1 / HOUR)
    assert lookup.distance == pytest.approx(distance[-2])  # one background event louder


def test_distance_at_far_interpolates_in_log_rate():
    far = np.array([4.0, 1.0, 0.0]) / HOUR
    distance = np.array([1200.0, 1000.0, 900.0])
    lookup = distance_at_far(far, distance, 2.0 / HOUR)
    assert lookup.method == "interpolated"
    assert lookup.distance == pytest.approx(1100.0)  # log 2 halfway between log 1 and log 4


def test_distance_at_far_nearest_outside_the_resolved_rates():
    far = _evaluate_py_far(5, 600.0)  # 10 minutes: 1/hour is below the lowest nonzero rate
    distance = np.arange(5.0)
    lookup = distance_at_far(far, distance, 1 / HOUR)
    assert lookup.method == "nearest"
    assert lookup.far == pytest.approx(1 / 600.0)
    assert lookup.distance == 3.0
    assert np.isnan(distance_at_far([0.0], [5.0], 1 / HOUR).distance)
    with pytest.raises(ValueError):
        distance_at_far(far, distance, 0.0)


def test_read_official_evaluation(tmp_path):
    path = tmp_path / "eval.hdf"
    with h5py.File(path, "w") as handle:
        handle["far"] = np.array([2.0, 1.0, 0.0])
        handle["sensitive-distance"] = np.array([3.0, 2.0, 1.0])
    result = read_official_evaluation(path)
    np.testing.assert_array_equal(result["sensitive_distance"], [3.0, 2.0, 1.0])
    with h5py.File(path, "w") as handle:
        handle["far"] = np.zeros(2)
    with pytest.raises(InputDataError, match="sensitive-distance"):
        read_official_evaluation(path)
    (tmp_path / "junk.hdf").write_text("not hdf5")
    with pytest.raises(InputDataError, match="junk.hdf"):
        read_official_evaluation(tmp_path / "junk.hdf")


def test_command_lines(tmp_path):
    command = generator_command("/tools", 3, tmp_path, duration=3600, seed=5, python="/py")
    assert command[:2] == ["/py", "/tools/generate_data.py"]
    assert command[command.index("--data-set") + 1] == "3" and command[command.index("--seed") + 1] == "5"
    assert command[command.index("--output-foreground-file") + 1] == str(tmp_path.resolve() / "foreground.hdf")
    with pytest.raises(ValueError):
        generator_command("/tools", 5, tmp_path, duration=60, seed=0)
    with pytest.raises(ValueError, match=".hdf"):
        evaluator_command("/tools", injections="i", foreground_events="f", foreground="g", background_events="b", output="out.h5")


def test_find_tools(tmp_path):
    assert find_tools(tmp_path) is None
    (tmp_path / "generate_data.py").write_text("")
    assert find_tools(tmp_path) is None
    (tmp_path / "evaluate.py").write_text("")
    assert find_tools(tmp_path) == tmp_path.resolve()


def _strain_file(path, start: float, duration: float) -> None:
    with h5py.File(path, "w") as handle:
        for detector in ("H1", "L1"):
            data = handle.create_dataset(f"{detector}/{int(start)}", data=np.zeros(int(duration * 16), dtype=np.float32))
            data.attrs["start_time"] = start
            data.attrs["delta_t"] = 1 / 16


def _events_file(path, time, stat) -> None:
    with h5py.File(path, "w") as handle:
        handle["time"], handle["stat"], handle["var"] = np.asarray(time, float), np.asarray(stat, float), np.full(len(time), 0.3)


def test_official_evaluator_on_a_known_answer(tmp_path):
    tools = find_tools()
    if tools is None:
        pytest.skip("the official MLGWSC-1 scripts are not installed beside the repository")
    pytest.importorskip("tqdm")
    start, duration = 1000.0, 600.0
    tc = start + 40.0 + 24.0 * np.arange(20)
    distance = np.linspace(100.0, 1000.0, 20)
    with h5py.File(tmp_path / "inj.hdf", "w") as handle:
        handle["tc"], handle["distance"] = tc, distance
        handle["mass1"], handle["mass2"] = np.full(20, 30.0), np.full(20, 30.0)
    _strain_file(tmp_path / "fg.hdf", start, duration)
    # Found: the ten nearest injections, louder than all but the loudest background event.
    _events_file(tmp_path / "fg_events.hdf", tc[:10], np.full(10, 50.0))
    _events_file(tmp_path / "bg_events.hdf", start + np.arange(5.0), [1.0, 2.0, 3.0, 4.0, 100.0])
    out = run_evaluator(tools, python=sys.executable, injections=tmp_path / "inj.hdf", foreground_events=tmp_path / "fg_events.hdf",
                        foreground=tmp_path / "fg.hdf", background_events=tmp_path / "bg_events.hdf", output=tmp_path / "eval.hdf")
    result = read_official_evaluation(out)
    inside = (tc >= start + 30) & (tc <= start + duration - 30)
    lookup = distance_at_far(result["far"], result["sensitive_distance"], 1.0 / duration)
    assert lookup.method == "resolved"
    # Volume-weighted: the fraction found times the volume out to the farthest injection.
    expected = (np.sum(inside[:10]) / inside.sum()) ** (1 / 3) * distance[inside].max()
    assert lookup.distance == pytest.approx(expected, rel=1e-9)
