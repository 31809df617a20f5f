"""The GW stage through the CLI: training set, training, MLGWSC-1 data, searches, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pycbc")

from skysift.cli import main  # noqa: E402
from skysift.gw.mlgwsc import read_events, read_injections  # noqa: E402
from skysift.io import read_product  # noqa: E402


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    work = tmp_path_factory.mktemp("gw")
    assert main(["gw", "simulate", "--out", str(work / "set.h5"), "--n-samples", "64", "--seed", "3"]) == 0
    assert main(["train", "--task", "gw", "--product", str(work / "set.h5"), "--outdir", str(work / "model"),
                 "--epochs", "1", "--batch-size", "16", "--threads", "1", "--val-fraction", "0.25",
                 "--test-fraction", "0.25"]) == 0
    assert main(["gw", "testdata", "--outdir", str(work / "test"), "--test-duration", "120", "--seed", "5"]) == 0
    return work


def test_training_set_and_group_split(stage):
    product = read_product(stage / "set.h5")
    assert product.arrays["strain"].shape == (64, 2, 2048)
    assert set(np.unique(product.table["label"])) == {0, 1}
    card = json.loads((stage / "model" / "model_card.json").read_text())
    assert card["split"]["group"] == "waveform_id"


def test_network_search_and_evaluation(stage):
    for which in ("foreground", "background"):
        assert main(["gw", "search", "--strain", str(stage / "test" / f"{which}.hdf"), "--out",
                     str(stage / f"net_{which}.hdf"), "--model", str(stage / "model"), "--search-step", "0.25"]) == 0
        events = read_events(stage / f"net_{which}.hdf")
        assert set(events) >= {"time", "stat", "var"}
    injections = read_injections(stage / "test" / "injections.hdf")
    assert np.all(np.abs(np.diff(np.sort(injections["tc"])) - 24) <= 3 + 1e-9)
    assert main(["gw", "evaluate", "--search", "network", str(stage / "net_foreground.hdf"), str(stage / "net_background.hdf"),
                 "--injections", str(stage / "test" / "injections.hdf"), "--background-strain",
                 str(stage / "test" / "background.hdf"), "--outdir", str(stage)]) == 0
    summary = json.loads((stage / "sensitivity.json").read_text())
    assert "network" in summary and (stage / "sensitivity.png").stat().st_size > 5000


def test_search_needs_exactly_one_method(stage, capsys):
    assert main(["gw", "search", "--strain", str(stage / "test" / "foreground.hdf"), "--out", str(stage / "x.hdf")]) == 2
    assert "either --model" in capsys.readouterr().err


@pytest.mark.slow
def test_matched_filter_baseline_finds_injections(stage):
    assert main(["gw", "search", "--strain", str(stage / "test" / "foreground.hdf"), "--out", str(stage / "mf.hdf"),
                 "--matched-filter"]) == 0
    events = read_events(stage / "mf.hdf")
    assert len(events["time"]) > 0


@pytest.mark.slow
def test_matched_filter_on_data_shorter_than_its_segment(tmp_path):
    assert main(["gw", "testdata", "--outdir", str(tmp_path), "--test-duration", "60", "--seed", "3"]) == 0
    assert main(["gw", "search", "--strain", str(tmp_path / "foreground.hdf"), "--out", str(tmp_path / "ev.hdf"),
                 "--matched-filter"]) == 0
    assert len(read_events(tmp_path / "ev.hdf")["time"]) > 0


@pytest.mark.realdata
def test_matched_filter_on_gwosc_files_writes_events_and_trigger_table(shared_data, tmp_path):
    from skysift.io import read_table

    events = shared_data / "gw" / "gwosc_events"
    if not events.is_dir():
        pytest.skip(f"GWOSC event strain not found under {events}")
    assert main(["gw", "search", "--strain", f"H1={events / 'H-H1_LOSC_4_V2-1126259446-32.hdf5'}",
                 str(events / "L-L1_LOSC_4_V2-1126259446-32.hdf5"), "--out", str(tmp_path / "ev.hdf"),
                 "--catalogue", str(tmp_path / "triggers.ecsv"), "--matched-filter", "--n-slides", "100"]) == 0
    table = read_table(tmp_path / "triggers.ecsv")
    loudest = table[np.argmax(table["stat"])]
    assert abs(loudest["time"] - 1126259462.44) < 0.05 and loudest["stat"] > 20 and loudest["n_louder"] == 0
    assert set(table.colnames) >= {"time", "stat", "far", "n_louder", "in_edge", "gated"}
    assert read_events(tmp_path / "ev.hdf")["time"].size == len(table)
