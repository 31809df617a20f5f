from __future__ import annotations

import numpy as np
import pytest

from skysift.metrics import binary_metrics, roc_auc, roc_curve, tpr_at_fpr


def test_auc_matches_mann_whitney():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(labels * 1.0, 1.0)
    pos, neg = scores[labels == 1], scores[labels == 0]
    mann_whitney = np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
    assert roc_auc(labels, scores) == pytest.approx(mann_whitney, abs=1e-12)


def test_ties_and_extremes():
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    fpr, tpr, thresholds = roc_curve([0, 1, 1], [0.3, 0.3, 0.9])
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1])
    assert thresholds[0] == np.inf
    assert tpr_at_fpr([0, 0, 0, 0, 1, 1], [0.9, 0.1, 0.2, 0.3, 0.8, 0.95], 0.25) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        roc_curve([1, 1], [0.2, 0.3])


def test_binary_metrics_counts():
    metrics = binary_metrics([1, 1, 0, 0, 0], [0.9, 0.2, 0.7, 0.1, 0.3])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["fnr"] == pytest.approx(0.5)
    assert metrics["fpr"] == pytest.approx(1 / 3)
    assert metrics["precision"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([1, 0], [np.nan, 0.1])
