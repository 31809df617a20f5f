"""Agreement with ZTF's rb/drb on real alerts: the figures, and leaving training backgrounds out."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InputDataError
from skysift.realbogus.evaluate import alert_agreement, background_objects, evaluate_alerts, ztf_calls_real
from skysift.realbogus.stamps import make_survey_training_set


def test_ztf_verdict_prefers_drb():
    rb = np.array([0.9, 0.3, 0.6, 0.1])
    drb = np.array([np.nan, 0.9, 0.2, np.nan])
    np.testing.assert_array_equal(ztf_calls_real(rb, drb), [True, True, False, False])


def test_agreement_figures_by_hand():
    scores = np.array([0.9, 0.8, 0.2, 0.1, np.nan])
    rb = np.array([0.9, 0.3, 0.6, 0.1, 0.9])
    drb = np.array([np.nan, 0.9, np.nan, np.nan, np.nan])
    summary = alert_agreement(scores, rb, drb)
    assert summary["n"] == 4  # the NaN score (unusable stamp) is left out
    # rb >= 0.5: positives score 0.9 and 0.2, negatives 0.8 and 0.1; 3 of 4 pairs ordered.
    assert summary["auc_rb"] == pytest.approx(0.75)
    assert summary["n_ztf_real"] == 3 and summary["fraction_real_of_ztf_real"] == pytest.approx(2 / 3)
    assert summary["fraction_real_of_drb_real"] == pytest.approx(1.0) and summary["n_drb_real"] == 1
    assert summary["fraction_real_of_rb_bogus"] == pytest.approx(0.5)
    assert np.isnan(summary["auc_drb"])  # one class only among the drb alerts


def test_background_objects_of_a_simulated_set_is_empty(tmp_path):
    path = make_survey_training_set(tmp_path / "set.h5", n_samples=10, seed=0)
    assert background_objects(path) == [] and background_objects(None) == []


def test_missing_alert_directory_names_it(tmp_path):
    with pytest.raises(InputDataError, match="no_alerts_here"):
        evaluate_alerts(tmp_path / "model", [tmp_path / "no_alerts_here"], tmp_path / "t.ecsv", tmp_path / "s.json")
