"""Figures for transit vetting: a gallery of global and local views by score."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["transit_gallery", "view_gallery"]


def view_gallery(
    global_views: np.ndarray,
    local_views: np.ndarray,
    scores: np.ndarray,
    *,
    n_show: int = 4,
    labels: Sequence[object] | None = None,
    title: str = "",
) -> Figure:
    """Global and local views of the ``n_show`` highest- and lowest-scored samples.

    Parameters
    ----------
    global_views : numpy.ndarray, shape (N, G)
    local_views : numpy.ndarray, shape (N, L)
    scores : numpy.ndarray, shape (N,)
        Classifier scores (probability or logit).
    n_show : int
        Rows per group (top and bottom).
    labels : sequence, optional
        Per-sample label or kind shown in the panel titles.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Rows: top scores first, then bottom; columns: global, local view.
    """
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(scores)
    n_show = min(n_show, scores.size)
    chosen = [("top", i) for i in order[::-1][:n_show]] + [("bottom", i) for i in order[:n_show]]
    figure, axes = plt.subplots(len(chosen), 2, figsize=(10, 1.6 * len(chosen)), squeeze=False, width_ratios=(2.5, 1))
    for row, (group, index) in enumerate(chosen):
        tag = f"{group} #{index}  score {scores[index]:.3g}"
        if labels is not None:
            tag += f"  [{labels[index]}]"
        g = np.asarray(global_views[index])
        loc = np.asarray(local_views[index])
        axes[row, 0].plot(np.linspace(-0.5, 0.5, g.size), g, ".", ms=1.5, color="k")
        axes[row, 0].set_title(tag, fontsize=8, loc="left")
        axes[row, 1].plot(np.linspace(-4, 4, loc.size), loc, ".", ms=2.5, color="C0")
        for axis in axes[row]:
            axis.tick_params(labelsize=7)
            axis.set_ylim(-1.3, max(0.6, float(np.nanmax(g)) if g.size else 0.6))
    axes[-1, 0].set_xlabel("phase (orbits)", fontsize=8)
    axes[-1, 1].set_xlabel("time from transit (durations)", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def transit_gallery(arrays: dict[str, np.ndarray], scores: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """Global and local views of the top- and bottom-scored held-out samples."""
    return view_gallery(arrays["global_view"], arrays["local_view"], scores, labels=labels, title=title)
