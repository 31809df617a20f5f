"""The real/bogus stage through the CLI: injection set, training, candidate scoring, ZTF alerts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skysift.cli import main
from skysift.io import read_product, read_table
from skysift.realbogus.evaluate import alert_agreement


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    work = tmp_path_factory.mktemp("realbogus")
    for name, seed, transients in (("train", 5, 0), ("field", 6, 4)):
        assert main(["simulate", "pair", "--outdir", str(work / name), "--seed", str(seed), "--image-size", "384",
                     "--n-stars", "400", "--n-transients", str(transients), "--n-saturated", "1"]) == 0
    assert main(["realbogus", "simulate", "--pair", str(work / "train/science.fits"), str(work / "train/reference.fits"),
                 "--out", str(work / "set.h5"), "--seed", "1", "--n-injections-per-image", "30", "--cutout-size", "63"]) == 0
    assert main(["train", "--task", "realbogus", "--product", str(work / "set.h5"), "--outdir", str(work / "model"),
                 "--epochs", "1", "--batch-size", "16", "--threads", "1", "--model-json", '{"width": 4, "dense": 16}']) == 0
    return work


def test_training_set_has_both_classes_and_parameters(stage):
    product = read_product(stage / "set.h5")
    assert product.arrays["cutout"].shape[1:] == (3, 63, 63)
    assert set(np.unique(product.table["label"])) == {0, 1}
    assert {"kind", "injected_snr", "x", "y"} <= set(product.table.colnames)


def test_cutouts_and_candidate_scores(stage):
    assert main(["diffim", "--science", str(stage / "field/science.fits"), "--reference", str(stage / "field/reference.fits"),
                 "--outdir", str(stage / "diffim")]) == 0
    assert (stage / "diffim" / "aligned_reference.fits").is_file()
    assert main(["cutouts", "--diffim-dir", str(stage / "diffim"), "--science", str(stage / "field/science.fits"),
                 "--out", str(stage / "cutouts.h5"), "--cutout-size", "63"]) == 0
    cutouts = read_product(stage / "cutouts.h5")
    candidates = read_table(stage / "diffim" / "candidates.ecsv")
    assert len(cutouts) == len(candidates) and cutouts.arrays["cutout"].shape[1:] == (3, 63, 63)
    assert main(["score", "--model", str(stage / "model"), "--product", str(stage / "cutouts.h5"),
                 "--out", str(stage / "scores.h5"), "--catalogue", str(stage / "ranked.ecsv")]) == 0
    ranked = read_table(stage / "ranked.ecsv")
    assert len(ranked) == len(candidates) and {"ra", "dec", "score", "rank"} <= set(ranked.colnames)


@pytest.mark.realdata
def test_score_real_ztf_alerts(stage, shared_data, capsys):
    alerts = shared_data / "diffim" / "ztf_alert_packets"
    if not alerts.is_dir():
        pytest.skip(f"{alerts} not present")
    assert main(["realbogus", "score", "--model", str(stage / "model"), "--alerts", str(alerts),
                 "--out", str(stage / "ztf.ecsv")]) == 0
    table = read_table(stage / "ztf.ecsv")
    assert len(table) == len(list(alerts.glob("*.avro")))
    usable = np.isfinite(table["score"])
    assert usable.sum() >= 10 and np.all((table["score"][usable] >= 0) & (table["score"][usable] <= 1))
    assert {"rb", "drb", "flag"} <= set(table.colnames)
    assert "provenance" in table.meta
    assert "spearman_drb" in capsys.readouterr().out


@pytest.fixture(scope="module")
def survey_stage(tmp_path_factory):
    work = tmp_path_factory.mktemp("survey")
    assert main(["realbogus", "survey-set", "--survey", "ztf", "--out", str(work / "set.h5"), "--seed", "3",
                 "--n-survey-samples", "120"]) == 0
    assert main(["train", "--task", "realbogus", "--product", str(work / "set.h5"), "--outdir", str(work / "model"),
                 "--epochs", "1", "--batch-size", "16", "--threads", "1", "--model-json", '{"width": 4, "dense": 16}']) == 0
    return work


def test_survey_set_model_card_names_the_survey(survey_stage):
    product = read_product(survey_stage / "set.h5")
    assert product.attrs["survey"] == "ztf" and product.arrays["cutout"].shape == (120, 3, 63, 63)
    card = json.loads((survey_stage / "model" / "model_card.json").read_text())
    assert card["survey"] == "ztf"


@pytest.mark.realdata
def test_evaluate_leaves_out_training_backgrounds(survey_stage, shared_data, capsys):
    alerts = shared_data / "diffim" / "ztf_alert_packets"
    if not alerts.is_dir():
        pytest.skip(f"{alerts} not present")
    work = survey_stage
    assert main(["realbogus", "survey-set", "--out", str(work / "real.h5"), "--seed", "4", "--n-survey-samples", "100",
                 "--survey", "ztf",
                 "--real-backgrounds", str(alerts), "--real-background-fraction", "1.0",
                 "--exclude-objects", "ZTF18aaxjdyr", "ZTF17aaajnnn"]) == 0
    used = read_product(work / "real.h5").attrs["background_objects"].split(",")
    assert used and not {"ZTF18aaxjdyr", "ZTF17aaajnnn"} & set(used)
    assert main(["realbogus", "evaluate", "--model", str(work / "model"), "--alerts", str(alerts),
                 "--product", str(work / "real.h5"), "--outdir", str(work / "eval")]) == 0
    table = read_table(work / "eval" / "alerts_evaluation.ecsv")
    summary = json.loads((work / "eval" / "alerts_evaluation.json").read_text())
    seen = np.isin(np.asarray(table["objectId"], str), used)
    assert seen.any() and not np.asarray(table["evaluated"])[seen].any()
    assert summary["n_left_out_as_training_backgrounds"] == int(seen.sum())
    assert summary["n"] == int((~seen).sum()) and summary["survey"] == "ztf"
    evaluated = np.asarray(table["evaluated"], bool)
    expected = alert_agreement(table["score"][evaluated], table["rb"][evaluated], table["drb"][evaluated])
    np.testing.assert_equal(summary["auc_rb"], expected["auc_rb"])  # NaN when what is left is one class
    assert (work / "eval" / "alerts_evaluation.png").stat().st_size > 0
    assert "AUC vs rb>=0.5" in capsys.readouterr().out
