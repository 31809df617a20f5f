"""Metrics and report of the independent lens validation set, and its CLI on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from skysift.cli import main
from skysift.errors import InputDataError
from skysift.io import write_product
from skysift.lens.validation import (
    evaluate_validation,
    family_table,
    snr_table,
    threshold_at_fpr,
    validation_metrics,
)
from skysift.metrics import roc_auc, tpr_at_fpr


def _scored_table(rng: np.random.Generator, n_lenses: int = 60, per_family: int = 30) -> Table:
    """Lenses score high; 'ring' look-alikes score as high as lenses, 'spiral' low."""
    families = ["lens"] * n_lenses + ["ring"] * per_family + ["spiral"] * per_family
    scores = np.r_[rng.uniform(0.5, 1.0, n_lenses), rng.uniform(0.5, 1.0, per_family), rng.uniform(0.0, 0.4, per_family)]
    snr = np.r_[np.geomspace(10.0, 300.0, n_lenses), np.full(2 * per_family, np.nan)]
    return Table({"label": (np.array(families) == "lens").astype(np.int8), "family": families, "score": scores,
                  "index": np.arange(len(families)), "arc_snr": snr})


def test_threshold_passes_at_most_the_allowed_negatives():
    negatives = np.arange(200, dtype=float)
    threshold = threshold_at_fpr(negatives, 0.01)
    assert np.sum(negatives >= threshold) == 2 and threshold > 197
    assert np.sum(negatives >= threshold_at_fpr(negatives, 0.0)) == 0
    tied = np.ones(50)
    assert np.sum(tied >= threshold_at_fpr(tied, 0.01)) == 0  # ties cannot be split: none passes
    with pytest.raises(ValueError):
        threshold_at_fpr(np.array([]))


def test_metrics_overall_per_family_and_per_snr_bin():
    table = _scored_table(np.random.default_rng(1))
    metrics = validation_metrics(table)
    labels, scores = np.asarray(table["label"]), np.asarray(table["score"])
    assert metrics["auc"] == pytest.approx(roc_auc(labels, scores))
    assert metrics["tpr_at_fpr_0.01"] == pytest.approx(tpr_at_fpr(labels, scores, 0.01))
    assert metrics["fpr_at_threshold"] <= 0.01
    assert metrics["families"]["spiral"]["auc"] == pytest.approx(1.0) and metrics["families"]["spiral"]["fraction_above_0.5"] == 0.0
    assert 0.3 < metrics["families"]["ring"]["auc"] < 0.7 and metrics["families"]["ring"]["fraction_above_0.5"] == 1.0
    bins = snr_table(table, metrics["threshold"])
    assert bins["n"].sum() == 60 and np.all(bins["n"] > 0)
    assert [row["n"] for row in metrics["snr_bins"]] == list(bins["n"])
    families = family_table(table, metrics["threshold"])
    assert list(families["family"]) == ["ring", "spiral"] and list(families["n"]) == [30, 30]
    json.dumps(metrics)  # NaN-free, JSON-ready


def test_metrics_name_what_is_missing():
    table = _scored_table(np.random.default_rng(2))
    table.remove_column("family")
    with pytest.raises(InputDataError, match="family"):
        validation_metrics(table)
    only_lenses = _scored_table(np.random.default_rng(2))
    only_lenses = only_lenses[only_lenses["label"] == 1]
    with pytest.raises(InputDataError, match="both"):
        validation_metrics(only_lenses)


def _write_inputs(tmp_path, provenance, table: Table, image_shape: tuple[int, ...]):
    images = np.random.default_rng(3).normal(size=(len(table), *image_shape)).astype(np.float32)
    product = write_product(tmp_path / "validation.h5", product_type="lens-validation-set", provenance=provenance,
                            arrays={"image": images}, table=table["label", "family", "arc_snr"])
    scores = write_product(tmp_path / "scores.h5", product_type="scores", provenance=provenance, table=table)
    return scores, product


def test_report_writes_tables_and_figures(tmp_path, provenance):
    scores, product = _write_inputs(tmp_path, provenance, _scored_table(np.random.default_rng(4)), (1, 24, 24))
    metrics = evaluate_validation(scores, product, tmp_path / "out", n_gallery=6)
    for name in ("metrics.json", "families.ecsv", "snr_bins.ecsv", "roc.png", "families.png", "gallery.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100, name
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["auc"] == pytest.approx(metrics["auc"])


def test_cli_bad_inputs_exit_2_naming_the_file(tmp_path, provenance, capsys):
    table = _scored_table(np.random.default_rng(5), n_lenses=10, per_family=7)
    scores, product = _write_inputs(tmp_path, provenance, table, (24, 24))  # images without the channel axis
    status = main(["lens", "validation-report", "--scores", str(tmp_path / "absent.h5"), "--product", str(product),
                   "--outdir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "absent.h5" in err and "Traceback" not in err
    status = main(["lens", "validation-report", "--scores", str(scores), "--product", str(product),
                   "--outdir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "validation.h5" in err and "(N, 1, H, W)" in err
    unscored = write_product(tmp_path / "unscored.h5", product_type="scores", provenance=provenance,
                             table=table["label", "score", "index"])
    status = main(["lens", "validation-report", "--scores", str(unscored), "--product", str(product),
                   "--outdir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "unscored.h5" in err and "family" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["lens", "validation-set", "--out", str(tmp_path / "v.h5"), "--seed", "1", "--n-lookalikes", "3"])
    assert exit_info.value.code == 2 and "--n-lookalikes" in capsys.readouterr().err
