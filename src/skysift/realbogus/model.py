"""braai-like VGG real/bogus classifier (Duev et al. 2019), normalisation inside.

CONTRACT (shared trainer, :mod:`skysift.train.tasks`): ``RealBogusNet.forward(cutout)``
takes RAW float32 triplets ``(N, 3, H, W)`` (science, aligned reference,
difference, as stored in the ``realbogus-training-set`` and ``cutouts``
products and as read from ZTF alerts by :func:`skysift.realbogus.ztf.read_alerts`)
and returns logits of shape ``(N,)``; ``sigmoid(logit)`` is the probability
that the candidate is real. The per-channel normalisation
(:func:`skysift.realbogus.normalise.normalise`) runs inside ``forward``, so
training, product scoring and alert scoring cannot disagree on it. NaN pixels
are allowed (they become 0 after normalisation).

Architecture (braai, Duev et al. 2019, MNRAS 489, 3582, Fig. 4): two 3x3
convolutions of ``width`` filters, 2x2 max pooling, two of ``2 width``,
pooling, two of ``4 width``, pooling, dropout, a dense layer of ``dense``
units, dropout and one output logit; ReLU activations. ``width=16`` and
``dense=256`` reproduce braai's 16-16-32-32-64-64-256 layout. Any stamp side
works (the dense layer's input size is computed from it).
"""

from __future__ import annotations

import torch
from torch import nn

from skysift.realbogus.normalise import NORMALISATIONS, normalise

__all__ = ["RealBogusNet", "build_model"]


class RealBogusNet(nn.Module):
    """VGG-style triplet classifier returning one logit per cutout.

    Parameters
    ----------
    stamp_size : int
        Side of the input stamps (63 for ZTF).
    in_channels : int
        Channels per sample (3: science, reference, difference).
    width : int
        Filters of the first block (doubled in each of the next two).
    dense : int
        Units of the hidden dense layer.
    dropout : float
        Dropout probability before and after the dense layer.
    normalisation : {"l2", "robust", "none"}
        Per-channel normalisation applied at the start of ``forward``.
    """

    def __init__(
        self,
        stamp_size: int = 63,
        in_channels: int = 3,
        width: int = 16,
        dense: int = 256,
        dropout: float = 0.5,
        normalisation: str = "l2",
    ) -> None:
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}")
        if width < 1 or dense < 1 or stamp_size < 8:
            raise ValueError(f"need width >= 1, dense >= 1 and stamp_size >= 8, got {width}, {dense}, {stamp_size}")
        self.normalisation = normalisation
        self.stamp_size = stamp_size
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(3):
            out = width * 2**block
            layers += [
                nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        side = stamp_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * side * side, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, 1),
        )

    def forward(self, cutout: torch.Tensor) -> torch.Tensor:
        """Logits ``(N,)`` for raw triplets ``(N, 3, stamp_size, stamp_size)``."""
        if cutout.ndim != 4 or cutout.shape[-1] != self.stamp_size or cutout.shape[-2] != self.stamp_size:
            raise ValueError(
                f"expected (N, C, {self.stamp_size}, {self.stamp_size}) cutouts, got {tuple(cutout.shape)}"
            )
        x = normalise(cutout, self.normalisation).to(cutout.device)
        return self.classifier(self.features(x)).squeeze(-1)


def build_model(
    stamp_size: int = 63,
    in_channels: int = 3,
    width: int = 16,
    dense: int = 256,
    dropout: float = 0.5,
    normalisation: str = "l2",
) -> RealBogusNet:
    """Build the real/bogus network (the trainer's ``model`` factory); see :class:`RealBogusNet`."""
    return RealBogusNet(
        stamp_size=stamp_size, in_channels=in_channels, width=width, dense=dense,
        dropout=dropout, normalisation=normalisation,
    )
