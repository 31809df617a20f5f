"""How a real/bogus model agrees with the survey's own scores on real alerts.

ZTF alert packets carry ZTF's random-forest score ``rb`` (Mahabal et al. 2019)
and, from schema 3.3, braai's deep score ``drb`` (Duev et al. 2019). Neither is
a human label, but agreement with them on real alerts is the test a model
trained on simulations has to pass (issue #21):

* ``auc_rb``: ROC AUC of our score against ``rb >= 0.5``;
* ``fraction_real_of_ztf_real``: the fraction scored real (``score >= 0.5``) of
  the alerts ZTF's best available model calls real (``drb >= 0.5`` where the
  packet has ``drb``, else ``rb >= 0.5``).

Alerts whose stamps the model was trained on (as injection backgrounds, see
:class:`skysift.realbogus.stamps.RealBackgrounds`) are listed in the training
product's ``meta.background_objects``; :func:`evaluate_alerts` leaves them out of
every figure and says how many it left out, so a cross-fitting scheme (train
on one set of packets' backgrounds, evaluate on the others) is honest by
construction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.io import atomic_output, open_product, save_figure, write_table
from skysift.log import get_logger
from skysift.metrics import roc_auc, roc_curve

__all__ = ["alert_agreement", "background_objects", "evaluate_alerts", "plot_alert_agreement", "ztf_calls_real"]

log = get_logger(__name__)


def ztf_calls_real(rb: np.ndarray, drb: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """ZTF's verdict per alert: ``drb >= threshold`` where ``drb`` exists, else ``rb >= threshold``."""
    rb, drb = np.asarray(rb, float), np.asarray(drb, float)
    return np.where(np.isfinite(drb), drb >= threshold, rb >= threshold)


def alert_agreement(scores: np.ndarray, rb: np.ndarray, drb: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Agreement of ``scores`` with ZTF's ``rb`` and ``drb`` (see the module notes).

    Alerts with a NaN score (unusable stamps) are left out. AUCs are NaN when
    one class is absent; fractions are NaN when no alert qualifies.

    Returns
    -------
    dict
        ``n``, ``auc_rb``, ``n_rb_real``, ``n_rb_bogus``, ``auc_drb`` and
        ``n_drb`` (alerts with ``drb``), ``fraction_real_of_ztf_real`` and
        ``n_ztf_real``, ``fraction_real_of_rb_real``, ``fraction_real_of_drb_real``
        and ``n_drb_real``, ``fraction_real_of_rb_bogus``.
    """
    scores, rb, drb = (np.asarray(v, float) for v in (scores, rb, drb))
    usable = np.isfinite(scores) & np.isfinite(rb)
    scores, rb, drb = scores[usable], rb[usable], drb[usable]
    called = scores >= threshold

    def auc(labels: np.ndarray, values: np.ndarray) -> float:
        return roc_auc(labels, values) if 0 < labels.sum() < labels.size else float("nan")

    def fraction(selection: np.ndarray) -> float:
        return float(called[selection].mean()) if selection.any() else float("nan")

    has_drb = np.isfinite(drb)
    ztf_real = ztf_calls_real(rb, drb, threshold)
    return {
        "n": int(scores.size),
        "auc_rb": auc(rb >= threshold, scores),
        "n_rb_real": int(np.sum(rb >= threshold)),
        "n_rb_bogus": int(np.sum(rb < threshold)),
        "auc_drb": auc(drb[has_drb] >= threshold, scores[has_drb]),
        "n_drb": int(has_drb.sum()),
        "fraction_real_of_ztf_real": fraction(ztf_real),
        "n_ztf_real": int(ztf_real.sum()),
        "fraction_real_of_rb_real": fraction(rb >= threshold),
        "fraction_real_of_drb_real": fraction(has_drb & (drb >= threshold)),
        "n_drb_real": int(np.sum(has_drb & (drb >= threshold))),
        "fraction_real_of_rb_bogus": fraction(rb < threshold),
    }


def background_objects(training_set: str | os.PathLike[str] | None) -> list[str]:
    """objectIds whose alert stamps a training product used as injection backgrounds."""
    if training_set is None:
        return []
    with open_product(training_set) as product:
        listed = str(product.attrs.get("background_objects", ""))
    return [name for name in listed.split(",") if name]


def plot_alert_agreement(table: Table, summary: dict[str, Any], title: str) -> Any:
    """ROC curve against ``rb >= 0.5`` and our score against ``rb`` (``drb`` marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    evaluated = np.asarray(table["evaluated"], bool)
    scores, rb, drb = (np.asarray(table[name], float)[evaluated] for name in ("score", "rb", "drb"))
    labels = rb >= 0.5
    if 0 < labels.sum() < labels.size:
        fpr, tpr, _ = roc_curve(labels, scores)
        left.plot(fpr, tpr, drawstyle="steps-post", label=f"AUC {summary['auc_rb']:.3f} (n={labels.size})")
        left.legend(loc="lower right")
    else:
        left.text(0.5, 0.5, "one class only: no ROC", ha="center")
    left.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    left.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC against rb >= 0.5")
    has_drb = np.isfinite(drb)
    right.scatter(rb[~has_drb], scores[~has_drb], s=18, label="rb only")
    right.scatter(rb[has_drb], scores[has_drb], s=40, marker="*", label="with drb")
    right.axhline(0.5, color="0.7", lw=0.8)
    right.axvline(0.5, color="0.7", lw=0.8)
    right.set(xlabel="ZTF rb", ylabel="our score", xlim=(0, 1), ylim=(-0.02, 1.02),
              title=f"ZTF-real scored real: {summary['fraction_real_of_ztf_real']:.2f} (n={summary['n_ztf_real']})")
    right.legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def evaluate_alerts(
    model_dir: str | os.PathLike[str],
    alert_dirs: Sequence[str | os.PathLike[str]],
    out_table: str | os.PathLike[str],
    out_summary: str | os.PathLike[str],
    out_figure: str | os.PathLike[str] | None = None,
    *,
    training_set: str | os.PathLike[str] | None = None,
    context: RunContext | None = None,
) -> dict[str, Any]:
    """Score alert directories with a trained model and measure agreement with ZTF's ``rb``/``drb``.

    Parameters
    ----------
    model_dir : str or path-like
        Trained ``realbogus`` model directory.
    alert_dirs : sequence of path-like
        Directories of Avro alert packets.
    out_table, out_summary, out_figure : str or path-like
        ECSV table (one row per alert, ``score``, ``evaluated``), JSON summary
        (:func:`alert_agreement` figures, overall and per directory) and PNG figure.
    training_set : str or path-like, optional
        The model's training product: alerts it used as backgrounds are not evaluated.
    context : RunContext, optional
        Rule, configuration digest and provenance labels (:class:`skysift.context.RunContext`).

    Returns
    -------
    dict
        The summary written to ``out_summary``.
    """
    from skysift.realbogus.ztf import score_alerts
    from skysift.train.trainer import load_model

    for directory in alert_dirs:
        if not Path(directory).is_dir():
            raise InputDataError(f"{directory}: no such alert directory")
    model, card = load_model(model_dir)
    tables = []
    for directory in alert_dirs:
        table = score_alerts(model, directory)
        table.meta.clear()
        table["directory"] = np.full(len(table), Path(directory).name)
        tables.append(table)
    table = vstack(tables) if tables else Table()
    seen = set(background_objects(training_set))
    table["evaluated"] = np.isfinite(np.asarray(table["score"], float)) & ~np.isin(np.asarray(table["objectId"], str), list(seen))
    evaluated = np.asarray(table["evaluated"], bool)
    summary: dict[str, Any] = {
        "model": str(model_dir), "survey": card.get("survey", "unspecified"),
        "alert_dirs": [str(d) for d in alert_dirs], "n_alerts": len(table),
        "n_left_out_as_training_backgrounds": int(np.sum(np.isin(np.asarray(table["objectId"], str), list(seen)))),
        **alert_agreement(np.asarray(table["score"], float)[evaluated], np.asarray(table["rb"])[evaluated],
                          np.asarray(table["drb"])[evaluated]),
        "by_directory": {},
    }
    for name in dict.fromkeys(np.asarray(table["directory"], str)):
        rows = evaluated & (np.asarray(table["directory"], str) == name)
        summary["by_directory"][name] = alert_agreement(np.asarray(table["score"], float)[rows],
                                                        np.asarray(table["rb"])[rows], np.asarray(table["drb"])[rows])
    inputs = [p for d in alert_dirs for p in sorted(Path(d).glob("*.avro"))]
    provenance = resolve_context(context, "evaluate_ztf_alerts").provenance(inputs=inputs)
    table.meta["summary"] = json.dumps(summary, default=float)
    write_table(table, out_table, provenance=provenance)
    with atomic_output(out_summary) as temporary:
        temporary.write_text(json.dumps(summary, indent=2, default=float))
    if out_figure is not None:
        save_figure(plot_alert_agreement(table, summary, f"{summary['survey']} model on real alerts"), out_figure)
    log.info("real alerts: AUC vs rb>=0.5 %.3f (n=%d), ZTF-real scored real %.2f (n=%d), %d left out as backgrounds",
             summary["auc_rb"], summary["n"], summary["fraction_real_of_ztf_real"], summary["n_ztf_real"],
             summary["n_left_out_as_training_backgrounds"])
    return summary
