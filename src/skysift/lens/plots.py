"""Gallery of the top-scored lens candidates."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["candidate_gallery", "lens_gallery"]


def candidate_gallery(
    images: np.ndarray,
    scores: np.ndarray,
    *,
    n_show: int = 25,
    ncols: int = 5,
    labels: Sequence[int] | np.ndarray | None = None,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Figure of the ``n_show`` highest-scored images, best first, arcsinh-stretched.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` or ``(N, C, H, W)`` (the first channel is shown).
    scores : numpy.ndarray
        ``(N,)`` lens scores (higher = more lens-like).
    n_show, ncols : int
        Panels and columns.
    labels : array, optional
        Truth (1 = lens) written in each title, green for lenses, red otherwise.
    titles : sequence of str, optional
        Extra text per image (e.g. an identifier).

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot (save with :func:`skysift.io.save_figure`).
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if images.ndim != 3 or len(images) != len(scores):
        raise ValueError(f"need (N, H, W) images and N scores, got {images.shape} and {scores.shape}")
    order = np.argsort(-scores, kind="stable")[: max(1, min(n_show, len(scores)))]
    nrows = int(np.ceil(len(order) / ncols))
    figure = Figure(figsize=(2.0 * ncols, 2.15 * nrows))
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, index in zip(axes.flat, order):
        image = images[index].astype(np.float64)
        median = np.median(image)
        sigma = 1.4826 * np.median(np.abs(image - median)) or 1.0
        axis.imshow(np.arcsinh((image - median) / (3.0 * sigma)), origin="lower", cmap="gray_r", interpolation="nearest")
        text = f"#{index} s={scores[index]:.3f}"
        color = "black"
        if labels is not None:
            truth = int(np.asarray(labels)[index])
            text += f" y={truth}"
            color = "tab:green" if truth == 1 else "tab:red"
        if titles is not None:
            text += f"\n{titles[index]}"
        axis.set_title(text, fontsize=7, color=color)
    figure.tight_layout()
    return figure


def lens_gallery(arrays: dict[str, np.ndarray], scores: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """Images of the top- and bottom-scored held-out samples, best first (truth in green/red)."""
    figure = candidate_gallery(arrays["image"], scores, n_show=len(scores), ncols=max(1, len(scores) // 2), labels=labels)
    figure.suptitle(title)
    return figure
