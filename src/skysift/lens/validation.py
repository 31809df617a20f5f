"""Scores of the lens finder on the independent validation set: metrics, tables and figures.

The set (:mod:`skysift.lens.independent`) is scored by ``skysift score`` like
any lens product; this module reads that scores product and reports

* overall ROC AUC and the TPR at FPR 1 %, the threshold set on the
  look-alikes' scores alone (:func:`threshold_at_fpr`);
* per look-alike family: the AUC of all lenses against that family, and the
  fractions of the family scored above 0.5 and above the 1 % threshold;
* per arc-S/N bin: the AUC of the lenses of that bin against all look-alikes
  and their TPR at the 1 % threshold;
* a ROC figure, a per-family bar chart and a gallery of the highest-scoring
  look-alikes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from matplotlib.figure import Figure

from skysift.errors import InputDataError
from skysift.metrics import roc_auc

__all__ = [
    "SNR_BIN_EDGES",
    "evaluate_validation",
    "family_figure",
    "family_table",
    "lookalike_gallery",
    "snr_table",
    "threshold_at_fpr",
    "validation_metrics",
]

#: Arc S/N bin edges of the per-S/N table (the set's lenses all have S/N >= 10).
SNR_BIN_EDGES = (10.0, 20.0, 40.0, 80.0, 160.0, np.inf)
#: False-positive rate of the operating threshold.
OPERATING_FPR = 0.01
_REQUIRED_COLUMNS = ("label", "family", "score", "index", "arc_snr")


def threshold_at_fpr(negative_scores: np.ndarray, fpr: float = OPERATING_FPR) -> float:
    """Lowest score threshold (``score >= t`` is positive) passing at most ``fpr`` of the negatives.

    Set on the negatives alone, as a survey would set it on known non-lenses:
    ``floor(fpr N)`` negatives at most score at or above it.
    """
    negatives = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    if negatives.size == 0:
        raise ValueError("no negative scores to set a threshold on")
    allowed = int(np.floor(fpr * negatives.size + 1e-9))
    if allowed >= negatives.size:
        return float(negatives[-1])
    return float(np.nextafter(negatives[allowed], np.inf))


def _auc_or_nan(positive: np.ndarray, negative: np.ndarray) -> float:
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    labels = np.r_[np.ones(positive.size), np.zeros(negative.size)]
    return roc_auc(labels, np.r_[positive, negative])


def family_table(table: Table, threshold: float) -> Table:
    """Per look-alike family: count, AUC of all lenses against it, fractions above 0.5 and the threshold."""
    families = np.asarray(table["family"]).astype(str)
    scores = np.asarray(table["score"], dtype=np.float64)
    lens_scores = scores[np.asarray(table["label"]) == 1]
    rows = []
    for family in sorted(set(families[np.asarray(table["label"]) == 0])):
        selected = scores[families == family]
        rows.append((family, selected.size, _auc_or_nan(lens_scores, selected), float(np.mean(selected > 0.5)),
                     float(np.mean(selected >= threshold))))
    result = Table(rows=rows or None, names=("family", "n", "auc", "fraction_above_0.5", "fraction_above_threshold"),
                   dtype=(str, int, float, float, float))
    result["auc"].description = "ROC AUC of all lenses against this family"
    result["fraction_above_threshold"].description = f"fraction at or above the FPR {OPERATING_FPR:g} threshold"
    return result


def snr_table(table: Table, threshold: float, edges: tuple[float, ...] = SNR_BIN_EDGES) -> Table:
    """Per arc-S/N bin: lenses in it, their AUC against all look-alikes and TPR at the threshold."""
    labels = np.asarray(table["label"])
    scores = np.asarray(table["score"], dtype=np.float64)
    snr = np.asarray(table["arc_snr"], dtype=np.float64)
    negatives = scores[labels == 0]
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        selected = scores[(labels == 1) & (snr >= low) & (snr < high)]
        rows.append((low, high, selected.size, _auc_or_nan(selected, negatives),
                     float(np.mean(selected >= threshold)) if selected.size else float("nan")))
    result = Table(rows=rows, names=("snr_min", "snr_max", "n", "auc", "tpr_at_threshold"),
                   dtype=(float, float, int, float, float))
    result["auc"].description = "ROC AUC of these lenses against all look-alikes"
    return result


def validation_metrics(table: Table, fpr: float = OPERATING_FPR) -> dict[str, Any]:
    """Overall, per-family and per-S/N-bin figures of a scored validation set (see the module notes)."""
    missing = [name for name in _REQUIRED_COLUMNS if name not in table.colnames]
    if missing:
        raise InputDataError(f"scores table lacks column(s) {', '.join(missing)}: not a scored lens validation set")
    labels = np.asarray(table["label"]).astype(int)
    scores = np.asarray(table["score"], dtype=np.float64)
    if not (labels == 1).any() or not (labels == 0).any():
        raise InputDataError("the validation set needs both lenses and look-alikes")
    threshold = threshold_at_fpr(scores[labels == 0], fpr)
    families = family_table(table, threshold)
    bins = snr_table(table, threshold)
    return {
        "n_lenses": int((labels == 1).sum()),
        "n_lookalikes": int((labels == 0).sum()),
        "auc": roc_auc(labels, scores),
        f"tpr_at_fpr_{fpr:g}": float(np.mean(scores[labels == 1] >= threshold)),
        "threshold": threshold,
        "fpr_at_threshold": float(np.mean(scores[labels == 0] >= threshold)),
        "tpr_at_0.5": float(np.mean(scores[labels == 1] > 0.5)),
        "fpr_at_0.5": float(np.mean(scores[labels == 0] > 0.5)),
        "families": {row["family"]: {k: _jsonable(row[k]) for k in families.colnames[1:]} for row in families},
        "snr_bins": [{k: _jsonable(row[k]) for k in bins.colnames} for row in bins],
    }


def _jsonable(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


def family_figure(families: Table, bins: Table, overall_auc: float) -> Figure:
    """Bars: AUC of the lenses against each family and the family's fraction above 0.5; AUC per arc-S/N bin."""
    figure = Figure(figsize=(10.0, 3.8))
    left, middle, right = figure.subplots(1, 3)
    names = list(families["family"])
    positions = np.arange(len(names))
    left.bar(positions, families["auc"], color="tab:blue")
    left.axhline(overall_auc, color="grey", ls=":", lw=1, label=f"all: {overall_auc:.3f}")
    left.set_ylim(0.0, 1.0)
    left.set_ylabel("ROC AUC, lenses vs family")
    left.legend(loc="lower right", fontsize=8)
    middle.bar(positions, families["fraction_above_0.5"], color="tab:red")
    middle.set_ylim(0.0, 1.0)
    middle.set_ylabel("fraction scored > 0.5")
    for axis in (left, middle):
        axis.set_xticks(positions, names, rotation=40, ha="right", fontsize=8)
    labels = [f"{low:g}-{high:g}" if np.isfinite(high) else f">={low:g}" for low, high in zip(bins["snr_min"], bins["snr_max"])]
    aucs = np.nan_to_num(np.asarray(bins["auc"], dtype=float), nan=0.0)
    right.bar(np.arange(len(labels)), aucs, color="tab:green")
    for position, count in enumerate(bins["n"]):
        right.text(position, 0.02, f"n={count}", ha="center", fontsize=7, rotation=90, va="bottom")
    right.set_xticks(np.arange(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    right.set_ylim(0.0, 1.0)
    right.set_xlabel("arc S/N")
    right.set_ylabel("ROC AUC, these lenses vs all look-alikes")
    figure.tight_layout()
    return figure


def lookalike_gallery(images: np.ndarray, scores: np.ndarray, titles: list[str], n_show: int = 16) -> Figure:
    """The ``n_show`` highest-scoring look-alikes, best first, each titled (family, product row)."""
    from skysift.lens.plots import candidate_gallery

    figure = candidate_gallery(images, scores, n_show=n_show, ncols=min(8, max(1, n_show)), titles=titles)
    figure.suptitle("Independent validation: highest-scoring look-alikes (label 0)")
    figure.tight_layout()
    return figure


def _check_product_images(product_path: Path, n_rows: int, indices: np.ndarray) -> tuple[int, ...]:
    from skysift.io import open_product

    with open_product(product_path) as product:
        if "image" not in product.arrays:
            raise InputDataError(f"{product_path}: no /data/image array: not a lens product")
        shape = tuple(product.arrays["image"].shape)
    if len(shape) != 4 or shape[1] != 1:
        raise InputDataError(f"{product_path}: /data/image has shape {shape}, expected (N, 1, H, W)")
    if indices.size != n_rows or (indices.size and (indices.min() < 0 or indices.max() >= shape[0])):
        raise InputDataError(f"{product_path}: its {shape[0]} images do not match the scores' indices")
    return shape


def evaluate_validation(
    scores_path: str | os.PathLike[str],
    product_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    n_gallery: int = 16,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``families.ecsv``, ``snr_bins.ecsv``, ``roc.png``, ``families.png`` and ``gallery.png``.

    Parameters
    ----------
    scores_path : str or path-like
        ``skysift score --split all`` output for the validation set.
    product_path : str or path-like
        The validation set (for the gallery images).
    out_dir : str or path-like
        Output directory.
    n_gallery : int
        Look-alikes shown.

    Raises
    ------
    FileNotFoundError, ProductError
        A file is missing or not a skysift product.
    InputDataError
        The scores lack the validation columns, or the product's images do not
        have the lens layout ``(N, 1, H, W)`` or do not match the scores.
    """
    from skysift.evaluation import roc_figure
    from skysift.io import atomic_output, open_product, read_product, save_figure, write_table

    scores_path, product_path, out_dir = Path(scores_path), Path(product_path), Path(out_dir)
    table = read_product(scores_path).table
    try:
        metrics = validation_metrics(table)
    except InputDataError as exc:
        raise InputDataError(f"{scores_path}: {exc}") from None
    indices = np.asarray(table["index"], dtype=np.int64)
    _check_product_images(product_path, len(table), indices)
    threshold = metrics["threshold"]
    families, bins = family_table(table, threshold), snr_table(table, threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / "metrics.json") as temporary:
        temporary.write_text(json.dumps(metrics, indent=2))
    write_table(families, out_dir / "families.ecsv")
    write_table(bins, out_dir / "snr_bins.ecsv")
    labels = np.asarray(table["label"]).astype(int)
    scores = np.asarray(table["score"], dtype=np.float64)
    title = (f"lens: independent lenstronomy validation set "
             f"({metrics['n_lenses']} lenses, {metrics['n_lookalikes']} look-alikes)")
    save_figure(roc_figure(labels, scores, title=title), out_dir / "roc.png")
    save_figure(family_figure(families, bins, metrics["auc"]), out_dir / "families.png")
    negative = np.flatnonzero(labels == 0)
    top = negative[np.argsort(-scores[negative], kind="stable")[:n_gallery]]
    rows = indices[top]
    unique_rows = np.unique(rows)  # h5py reads increasing indices; reorder afterwards
    with open_product(product_path) as product:
        images = product.arrays["image"][unique_rows][np.searchsorted(unique_rows, rows)]
    titles = [f"{family}, row {row}" for family, row in zip(np.asarray(table["family"])[top], rows)]
    save_figure(lookalike_gallery(images, scores[top], titles, n_show=len(top)), out_dir / "gallery.png")
    return metrics
