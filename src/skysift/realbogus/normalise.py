"""Per-channel normalisation of cutout triplets, identical at training and inference.

Two schemes, both applied per sample and per channel (science, reference and
difference have unrelated scales and units):

* ``"l2"`` (default): braai (Duev et al. 2019, MNRAS 489, 3582) divides each
  channel by its L2 norm. We first subtract the channel median, so that a sky
  level left in one survey's stamps (ZTF alert stamps are not background
  subtracted) and removed in another's does not change the input.
* ``"robust"``: ``(x - median) / (1.4826 MAD)``, clipped to ``+-clip``, so the
  values are in noise units; insensitive to a bright neighbour dominating the norm.

Non-finite pixels (stamps padded at an image edge, NaN-filled survey pixels)
become 0, the channel median after centring. Random rotations and flips for
training are :func:`skysift.train.augment.rot90_flip` (Deep-HiTS,
Cabrera-Vives et al. 2017), re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from skysift.train.augment import rot90_flip

__all__ = ["NORMALISATIONS", "l2_normalise", "normalise", "robust_normalise", "rot90_flip"]

NORMALISATIONS = ("l2", "robust", "none")


def _as_tensor(cutouts: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(cutouts) if not isinstance(cutouts, torch.Tensor) else cutouts)
    x = x.to(torch.float32)
    if x.ndim != 4:
        raise ValueError(f"cutouts must be (N, C, H, W), got shape {tuple(x.shape)}")
    return x


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened channels minus their NaN-ignoring median, and the finite-pixel mask."""
    flat = x.flatten(start_dim=2)
    finite = torch.isfinite(flat)
    flat = torch.where(finite, flat, torch.full_like(flat, float("nan")))
    median = torch.nanmedian(flat, dim=-1, keepdim=True).values
    median = torch.nan_to_num(median, nan=0.0)  # an all-NaN channel stays all zero
    centred = torch.where(finite, flat - median, torch.zeros_like(flat))
    return centred, finite


def l2_normalise(cutouts: Any, *, subtract_median: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """Divide each channel of each cutout by its L2 norm (braai).

    Parameters
    ----------
    cutouts : torch.Tensor or numpy.ndarray
        ``(N, C, H, W)``.
    subtract_median : bool
        Subtract the channel median first (see the module notes).
    eps : float
        Floor of the norm (a blank channel stays 0).

    Returns
    -------
    torch.Tensor
        float32, same shape; every channel with a finite pixel off the median
        has unit L2 norm.
    """
    x = _as_tensor(cutouts)
    if subtract_median:
        flat, _ = _centred(x)
    else:
        flat = torch.nan_to_num(x.flatten(start_dim=2), nan=0.0, posinf=0.0, neginf=0.0)
    norm = torch.linalg.vector_norm(flat, dim=-1, keepdim=True).clamp(min=eps)
    return (flat / norm).reshape(x.shape)


def robust_normalise(cutouts: Any, *, clip: float = 50.0, eps: float = 1e-12) -> torch.Tensor:
    """Scale each channel to noise units: ``(x - median) / (1.4826 MAD)``, clipped.

    Parameters
    ----------
    cutouts : torch.Tensor or numpy.ndarray
        ``(N, C, H, W)``.
    clip : float
        Values are clipped to ``[-clip, clip]`` (saturated cores, cosmic rays).
    eps : float
        Floor of the scale.

    Returns
    -------
    torch.Tensor
        float32, same shape; median 0 and MAD ``1 / 1.4826`` per channel before clipping.
    """
    x = _as_tensor(cutouts)
    flat, finite = _centred(x)
    deviations = torch.where(finite, flat.abs(), torch.full_like(flat, float("nan")))
    mad = torch.nan_to_num(torch.nanmedian(deviations, dim=-1, keepdim=True).values, nan=0.0)
    scaled = flat / (1.4826 * mad).clamp(min=eps)
    return scaled.clamp(-clip, clip).reshape(x.shape)


def normalise(cutouts: Any, method: str = "l2") -> torch.Tensor:
    """Apply the named normalisation (``"l2"``, ``"robust"`` or ``"none"``).

    ``"none"`` only replaces non-finite pixels by 0.
    """
    if method == "l2":
        return l2_normalise(cutouts)
    if method == "robust":
        return robust_normalise(cutouts)
    if method == "none":
        return torch.nan_to_num(_as_tensor(cutouts), nan=0.0, posinf=0.0, neginf=0.0)
    raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMALISATIONS)}")
