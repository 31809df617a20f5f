"""Lens-finding metrics: the Bologna challenge TPR0 / TPR10, plus the shared ROC metrics.

ROC curve, ROC AUC and TPR at a fixed FPR are those of :mod:`skysift.metrics`
(shared by every task) and are re-exported here so that lens code has one
import. Only the lens-specific Bologna strong-lens finding challenge metrics
(Metcalf et al. 2019) live here: the highest true-positive rate reached at a
score threshold that admits zero (TPR0) or fewer than ten (TPR10) false
positives.

Pure numpy. Scores: higher = more lens-like; labels: 1 = lens, 0 = not.
"""

from __future__ import annotations

import numpy as np

from skysift.metrics import roc_auc, roc_curve, tpr_at_fpr

__all__ = ["bologna_metrics", "roc_auc", "roc_curve", "tpr_at_false_positives", "tpr_at_fpr"]


def tpr_at_false_positives(labels: np.ndarray, scores: np.ndarray, max_false_positives: int = 0) -> float:
    """Highest TPR at a threshold with at most ``max_false_positives`` false positives.

    Parameters
    ----------
    labels : numpy.ndarray
        1 for lenses, 0 otherwise; both classes must be present.
    scores : numpy.ndarray
        Finite lens scores (higher = more lens-like); tied scores share a threshold.
    max_false_positives : int
        ``0`` gives the Bologna TPR0, ``9`` (fewer than ten) TPR10.

    Returns
    -------
    float
        The true-positive rate.

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite scores, or a single class.

    Notes
    -----
    Metcalf et al. (2019), A&A 625, A119, section 4.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    n_negatives = int(np.sum(~np.asarray(labels).astype(bool)))
    false_positives = np.rint(fpr * n_negatives)
    return float(tpr[false_positives <= max_false_positives].max())


def bologna_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Bologna lens-challenge figures: TPR0 (before the first false positive) and TPR10 (< 10 false positives)."""
    return {"tpr0": tpr_at_false_positives(labels, scores, 0), "tpr10": tpr_at_false_positives(labels, scores, 9)}
