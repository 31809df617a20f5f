"""Figures for the report: image panels and provenance tables.

Functions here build matplotlib figures from arrays and return them; saving is
:func:`skysift.io.save_figure`. The Agg backend is selected so figures render
on headless cluster nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["image_panels"]


def image_panels(
    images: Mapping[str, np.ndarray],
    *,
    title: str = "",
    markers: Sequence[tuple[float, float]] | None = None,
    marker_radius: float = 8.0,
    panel_size: float = 3.6,
) -> Figure:
    """Show images side by side with a zscale + asinh stretch each.

    Parameters
    ----------
    images : mapping of str to 2-D array
        Panel title to image; non-finite pixels are shown blank.
    title : str
        Figure title.
    markers : sequence of (x, y), optional
        Positions (0-based pixels) circled on every panel.
    marker_radius : float
        Circle radius in pixels.
    panel_size : float
        Width of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = plt.subplots(1, len(images), figsize=(panel_size * len(images), panel_size + 0.4), squeeze=False)
    for axis, (name, image) in zip(axes[0], images.items(), strict=True):
        finite = np.isfinite(image)
        if finite.any():
            norm = ImageNormalize(image[finite], interval=ZScaleInterval(), stretch=AsinhStretch(0.3))
        else:
            norm = None
        axis.imshow(np.where(finite, image, np.nan), origin="lower", cmap="gray", norm=norm, interpolation="nearest")
        for x, y in markers or ():
            axis.add_patch(plt.Circle((x, y), marker_radius, fill=False, color="tab:red", lw=0.8))
        axis.set_title(name, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure
