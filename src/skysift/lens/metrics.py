"""Lens-finding metrics: ROC AUC, TPR at fixed FPR, and the Bologna challenge TPR0 / TPR10.

Pure numpy. Scores: higher = more lens-like; labels: 1 = lens, 0 = not.
TPR0 and TPR10 follow the Bologna strong-lens finding challenge (Metcalf et
al. 2019): the highest true-positive rate reached at a score threshold that
admits zero (TPR0) or fewer than ten (TPR10) false positives.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "roc_curve", "tpr_at_fpr", "tpr_at_false_positives"]


def _validate(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.size} vs {scores.size}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    if labels.all() or not labels.any():
        raise ValueError("need at least one positive and one negative")
    return labels, scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (tied scores grouped).

    Returns
    -------
    fpr, tpr, thresholds : numpy.ndarray
        Starting at (0, 0) with threshold +inf; a sample counts as positive when
        its score is >= the threshold.
    """
    labels, scores = _validate(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(~labels)[last_of_tie]
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """Highest TPR at a threshold whose false-positive rate is <= ``fpr``."""
    rates, tpr, _ = roc_curve(labels, scores)
    return float(tpr[rates <= fpr + 1e-12].max())


def tpr_at_false_positives(labels: np.ndarray, scores: np.ndarray, max_false_positives: int = 0) -> float:
    """Highest TPR at a threshold with at most ``max_false_positives`` false positives.

    ``max_false_positives=0`` is the Bologna TPR0, ``9`` (fewer than ten) TPR10.
    """
    labels_b, _ = _validate(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    false_positives = np.rint(fpr * (~labels_b).sum())
    return float(tpr[false_positives <= max_false_positives].max())
