"""Background and noise maps (sigma-clipped, via photutils Background2D)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import SigmaClip, sigma_clipped_stats
from astropy.utils.exceptions import AstropyUserWarning
from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

__all__ = ["BackgroundEstimate", "estimate_background"]


@dataclass
class BackgroundEstimate:
    """Background model of one image.

    Attributes
    ----------
    background : numpy.ndarray
        Smooth sky level per pixel.
    rms : numpy.ndarray
        Sky noise (standard deviation) per pixel.
    sigma : float
        Median of ``rms``: the image's scalar background noise.
    """

    background: np.ndarray
    rms: np.ndarray
    sigma: float


def estimate_background(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int = 64,
    filter_size: int = 3,
    sigma_clip: float = 3.0,
) -> BackgroundEstimate:
    """Estimate the sky background and its noise with sigma-clipped statistics in boxes.

    Parameters
    ----------
    data : numpy.ndarray
        Image (NaNs allowed where ``mask`` is set).
    mask : numpy.ndarray of bool, optional
        Pixels to ignore.
    box_size : int
        Side of the boxes (pixels); reduced for small images so that at least
        four boxes fit along each axis.
    filter_size : int
        Median filter applied to the grid of box values (boxes).
    sigma_clip : float
        Clipping threshold (standard deviations) that rejects stars.

    Returns
    -------
    BackgroundEstimate

    Notes
    -----
    This is the SExtractor-style mesh background (Bertin & Arnouts 1996,
    A&AS 117, 393) as implemented by :class:`photutils.background.Background2D`,
    with a median estimator and the clipped standard deviation as the noise.
    """
    data = np.asarray(data, dtype=np.float64)
    mask = ~np.isfinite(data) if mask is None else (np.asarray(mask, dtype=bool) | ~np.isfinite(data))
    box = int(max(8, min(box_size, min(data.shape) // 4)))
    with warnings.catch_warnings():
        # Boxes dominated by masked pixels are expected near saturated stars
        # and footprint edges; Background2D replaces them by interpolation.
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            model = Background2D(
                data,
                box,
                mask=mask,
                filter_size=filter_size,
                sigma_clip=SigmaClip(sigma=sigma_clip, maxiters=5),
                bkg_estimator=MedianBackground(),
                bkg_rms_estimator=StdBackgroundRMS(),
                exclude_percentile=50.0,
            )
            background = np.asarray(model.background, dtype=np.float64)
            rms = np.asarray(model.background_rms, dtype=np.float64)
        except ValueError:
            # Too few unmasked boxes for a mesh: fall back to one global value.
            _, median, std = sigma_clipped_stats(data[~mask], sigma=sigma_clip)
            background = np.full(data.shape, float(median))
            rms = np.full(data.shape, float(std))
    return BackgroundEstimate(background=background, rms=rms, sigma=float(np.median(rms[~mask])))
