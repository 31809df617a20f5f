"""Classification metrics shared by every task (pure numpy, no scikit-learn).

Scores are probabilities or any monotonic statistic; labels are 1 for the
positive class (real transient, lens, planet, GW signal) and 0 otherwise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["binary_metrics", "roc_auc", "roc_curve", "tpr_at_fpr"]


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return labels, scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic, with tied scores grouped.

    Returns
    -------
    fpr, tpr, thresholds : numpy.ndarray
        False and true positive rates for ``score >= threshold``, starting at
        (0, 0) with threshold +inf and ending at (1, 1).
    """
    labels, scores = _check(labels, scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs both classes among the labels")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # Last index of each run of tied scores.
    distinct = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(labels)[distinct]
    false_positives = (distinct + 1) - true_positives
    tpr = np.r_[0.0, true_positives / n_pos]
    fpr = np.r_[0.0, false_positives / n_neg]
    return fpr, tpr, np.r_[np.inf, scores[distinct]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; equals the Mann-Whitney U statistic)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_target: float) -> float:
    """Highest true positive rate at a false positive rate not above ``fpr_target``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_target].max())


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, false positive/negative rates at ``threshold``, precision, recall and ROC AUC.

    Returns
    -------
    dict
        ``accuracy``, ``fpr``, ``fnr``, ``precision``, ``recall``, ``roc_auc``
        (NaN where undefined, e.g. AUC with one class only), ``n``.
    """
    labels, scores = _check(labels, scores)
    predicted = scores >= threshold
    tp = np.sum(predicted & labels)
    fp = np.sum(predicted & ~labels)
    tn = np.sum(~predicted & ~labels)
    fn = np.sum(~predicted & labels)

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    both_classes = labels.any() and (~labels).any()
    return {
        "n": float(labels.size),
        "accuracy": ratio(tp + tn, labels.size),
        "fpr": ratio(fp, fp + tn),
        "fnr": ratio(fn, fn + tp),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "roc_auc": roc_auc(labels, scores) if both_classes else float("nan"),
    }
