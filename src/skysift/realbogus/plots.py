"""Galleries of cutout triplets (science, reference, difference) for the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skysift.cutouts.extract import CHANNELS  # noqa: E402

__all__ = ["realbogus_gallery", "triplet_gallery"]


def _display(stamp: np.ndarray) -> tuple[np.ndarray, float, float]:
    finite = stamp[np.isfinite(stamp)]
    if finite.size == 0:
        return np.zeros_like(stamp), -1.0, 1.0
    low, high = np.percentile(finite, [1.0, 99.5])
    return np.nan_to_num(stamp, nan=float(np.median(finite))), float(low), float(high if high > low else low + 1.0)


def triplet_gallery(
    cutouts: np.ndarray,
    scores: np.ndarray,
    *,
    n_show: int = 6,
    labels: Sequence[int] | np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """The ``n_show`` highest- and lowest-scored triplets, one row each.

    Parameters
    ----------
    cutouts : numpy.ndarray
        ``(N, 3, H, W)`` raw triplets.
    scores : numpy.ndarray
        ``(N,)`` real/bogus scores; NaN scores are left out.
    n_show : int
        Rows of each group (top and bottom).
    labels : array, optional
        Truth (1 = real), shown in green (real) or red (bogus).
    titles : sequence of str, optional
        Extra text per sample (an identifier or the kind).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot (save with :func:`skysift.io.save_figure`).
    """
    cutouts = np.asarray(cutouts)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if cutouts.ndim != 4 or cutouts.shape[1] != 3 or len(cutouts) != len(scores):
        raise ValueError(f"need (N, 3, H, W) cutouts and N scores, got {cutouts.shape} and {scores.shape}")
    valid = np.flatnonzero(np.isfinite(scores))
    ranked = valid[np.argsort(-scores[valid], kind="stable")]
    n = max(1, min(n_show, len(ranked) // 2 if len(ranked) > 1 else 1))
    groups = [("top", ranked[:n]), ("bottom", ranked[::-1][:n])] if len(ranked) > 1 else [("top", ranked)]
    rows = [(name, index) for name, indices in groups for index in indices]
    figure = Figure(figsize=(6.0, 2.0 * max(1, len(rows)) + 0.4))
    axes = figure.subplots(max(1, len(rows)), 3, squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    for row, (group, index) in enumerate(rows):
        for channel in range(3):
            image, low, high = _display(cutouts[index, channel].astype(np.float64))
            axes[row, channel].imshow(image, origin="lower", cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            if row == 0:
                axes[row, channel].set_title(CHANNELS[channel], fontsize=9)
        text = f"{group}: {scores[index]:.3f}"
        colour = "black"
        if labels is not None:
            label = int(np.asarray(labels)[index])
            text += f" (label {label})"
            colour = "green" if label == 1 else "red"
        if titles is not None:
            text += f"\n{titles[index]}"
        axes[row, 0].set_ylabel(text, fontsize=7, color=colour)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def realbogus_gallery(arrays: Mapping[str, np.ndarray], scores: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """The trainer's gallery hook (``TaskSpec.gallery``): top and bottom held-out triplets."""
    return triplet_gallery(arrays["cutout"], scores, labels=labels, title=title)
