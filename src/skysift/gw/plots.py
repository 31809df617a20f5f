"""Plots of the GW stage for the report."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["gw_gallery"]


def gw_gallery(arrays: dict[str, np.ndarray], scores: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """Whitened H1 and L1 strain of the top- and bottom-scored held-out samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strain = arrays["strain"]
    figure, axes = plt.subplots(len(scores), 1, figsize=(9, 1.1 * len(scores)), sharex=True, squeeze=False)
    for axis, series, score, label in zip(axes[:, 0], strain, scores, labels, strict=True):
        for detector, values in zip(("H1", "L1"), series, strict=True):
            axis.plot(values, lw=0.5, label=detector)
        axis.set_title(f"score {score:.3f}  label {int(label)}", fontsize=7, loc="left")
        axis.set_yticks([])
    axes[0, 0].legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel("sample")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
