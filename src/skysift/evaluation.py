"""Held-out evaluation of a trained model: metrics, ROC curve and a gallery for the report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from skysift.io import atomic_output, open_product, read_product, save_figure
from skysift.metrics import binary_metrics, roc_curve, tpr_at_fpr
from skysift.train.tasks import get_task

__all__ = ["evaluate_scores", "roc_figure"]


def roc_figure(labels: np.ndarray, scores: np.ndarray, *, title: str = "", mark_fpr: float = 0.01) -> Figure:
    """ROC curve on linear and logarithmic false-positive axes, with the AUC and TPR at ``mark_fpr``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(8.5, 3.6))
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        for axis in axes:
            axis.text(0.5, 0.5, "ROC undefined: the held-out split holds one class only", ha="center", va="center",
                      fontsize=9, transform=axis.transAxes)
        if title:
            figure.suptitle(title)
        return figure
    fpr, tpr, _ = roc_curve(labels, scores)
    auc = float(np.trapezoid(tpr, fpr))
    for axis, log in zip(axes, (False, True), strict=True):
        axis.plot(fpr, tpr, lw=1.5, label=f"AUC = {auc:.4f}")
        axis.axvline(mark_fpr, color="grey", ls=":", lw=1)
        axis.set_xlabel("false positive rate")
        axis.set_ylabel("true positive rate")
        if log:
            positive = fpr[fpr > 0]
            axis.set_xscale("log")
            axis.set_xlim(max(1e-4, positive.min() if positive.size else 1e-4) * 0.8, 1)
        axis.set_ylim(0, 1.02)
    axes[0].legend(loc="lower right")
    axes[1].set_title(f"TPR at FPR {mark_fpr:g}: {tpr_at_fpr(labels, scores, mark_fpr):.3f}", fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def evaluate_scores(
    scores_path: str | os.PathLike[str],
    product_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    task_name: str,
    n_gallery: int = 8,
) -> dict[str, Any]:
    """Metrics, ROC plot and gallery from a scores product of a labelled split.

    Writes ``metrics.json``, ``roc.png`` and ``gallery.png`` into ``out_dir``.

    Returns
    -------
    dict
        The metrics: accuracy, FPR and FNR at 0.5, precision, recall, ROC AUC and
        the TPR at FPR = 1%.
    """
    scores_product = read_product(scores_path)
    table = scores_product.table
    if "label" not in table.colnames:
        raise ValueError(f"{scores_path}: no label column, cannot evaluate")
    labels = np.asarray(table["label"]).astype(int)
    scores = np.asarray(table["score"], dtype=float)
    metrics = binary_metrics(labels, scores)
    metrics["tpr_at_fpr_0.01"] = tpr_at_fpr(labels, scores, 0.01) if 0 < labels.sum() < len(labels) else float("nan")
    task = get_task(task_name)
    extra_metrics = task.metrics_function()
    if extra_metrics is not None and 0 < labels.sum() < len(labels):
        metrics.update(extra_metrics(labels, scores))
    out_dir = Path(out_dir)
    with atomic_output(out_dir / "metrics.json") as temporary:
        temporary.write_text(json.dumps({"task": task_name, "split": scores_product.attrs.get("split", ""), **metrics}, indent=2))
    save_figure(roc_figure(labels, scores, title=f"{task_name}: held-out ROC ({len(labels)} samples)"), out_dir / "roc.png")
    gallery = task.gallery_function()
    if gallery is not None:
        order = np.argsort(-scores, kind="stable")
        shown = max(1, min(n_gallery, len(order) // 2))
        chosen = np.r_[order[:shown], order[len(order) - shown :]]
        indices = np.asarray(table["index"])[chosen]
        # h5py reads strictly increasing indices: read each row once, then reorder.
        unique_indices = np.unique(indices)
        with open_product(product_path) as product:
            arrays = {name: product.arrays[name][unique_indices] for name in task.inputs}
        position = np.searchsorted(unique_indices, indices)
        arrays = {name: values[position] for name, values in arrays.items()}
        figure = gallery(arrays, scores[chosen], labels[chosen], f"{task_name}: highest (left) and lowest scored held-out samples")
        save_figure(figure, out_dir / "gallery.png")
    return metrics
