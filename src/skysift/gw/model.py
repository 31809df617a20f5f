"""1-D convolutional detectors of compact-binary signals in whitened two-detector strain.

Contract (shared with :mod:`skysift.train.tasks`): ``forward(strain)`` takes a
float32 tensor (N, 2, T) of whitened H1 and L1 strain and returns logits of
shape (N,) (1 = signal).

* ``"george-huerta"``: the "Deep Filtering" network of George & Huerta
  (Phys. Rev. D 97, 044039, 2018; Phys. Lett. B 778, 64): three convolution
  blocks of 16, 32 and 64 filters (kernels 16, 8, 8; dilations 1, 4, 4), each
  followed by max-pooling by 4 and ReLU, then fully connected layers of 64
  units and the output. The original takes one detector at 8192 Hz; here both
  detectors enter as two input channels and the default rate is 2048 Hz.
* ``"deep"``: a deeper residual 1-D network (strided stem, residual blocks of
  dilated convolutions with batch normalisation, global average and max
  pooling, a small head), in the spirit of the MLGWSC-1 entries
  (Schäfer et al. 2023, Phys. Rev. D 107, 023021).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DeepResidualCNN", "GeorgeHuertaCNN", "build_model"]


class GeorgeHuertaCNN(nn.Module):
    """George & Huerta (2018) style CNN returning one logit per sample.

    Parameters
    ----------
    n_detectors : int
        Input channels.
    n_samples : int
        Samples per input (T).
    channels : tuple of int
        Filters of the three convolution blocks.
    kernels, dilations : tuple of int
    pool : int
        Max-pooling factor after each block.
    hidden : int
        Width of the hidden fully connected layer.
    dropout : float
        Dropout before the hidden layer.
    """

    def __init__(
        self,
        *,
        n_detectors: int = 2,
        n_samples: int = 2048,
        channels: tuple[int, ...] = (16, 32, 64),
        kernels: tuple[int, ...] = (16, 8, 8),
        dilations: tuple[int, ...] = (1, 4, 4),
        pool: int = 4,
        hidden: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(dilations):
            raise ValueError("channels, kernels and dilations need the same length")
        layers: list[nn.Module] = []
        previous = n_detectors
        for width, kernel, dilation in zip(channels, kernels, dilations):
            layers += [nn.Conv1d(previous, width, kernel, dilation=dilation), nn.MaxPool1d(pool), nn.ReLU()]
            previous = width
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, n_detectors, n_samples)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, strain: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(strain)).squeeze(-1)


class _ResidualBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, kernel: int, dilation: int, stride: int) -> None:
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.body = nn.Sequential(
            nn.Conv1d(channels_in, channels_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm1d(channels_out),
            nn.ReLU(),
            nn.Conv1d(channels_out, channels_out, kernel, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm1d(channels_out),
        )
        self.skip = (
            nn.Identity()
            if channels_in == channels_out and stride == 1
            else nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, stride=stride, bias=False), nn.BatchNorm1d(channels_out))
        )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.body(x)
        skip = self.skip(x)
        length = min(body.shape[-1], skip.shape[-1])
        return self.activation(body[..., :length] + skip[..., :length])


class DeepResidualCNN(nn.Module):
    """Residual 1-D CNN returning one logit per sample.

    Parameters
    ----------
    n_detectors : int
    width : int
        Channels of the stem; doubled at each stage.
    stages : int
        Residual stages (each: one strided block, one dilated block).
    kernel : int
    dropout : float
        Dropout in the head.
    """

    def __init__(self, *, n_detectors: int = 2, n_samples: int | None = None, width: int = 32, stages: int = 4, kernel: int = 7, dropout: float = 0.1) -> None:
        super().__init__()
        del n_samples  # global pooling: any input length works
        self.stem = nn.Sequential(nn.Conv1d(n_detectors, width, 15, stride=2, padding=7, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(stages):
            out = width * 2 ** min(stage, 3)
            blocks += [_ResidualBlock(channels, out, kernel, 1, 2), _ResidualBlock(out, out, kernel, 2 ** (stage % 3 + 1), 1)]
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, strain: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(strain))
        pooled = torch.cat([features.mean(dim=-1), features.amax(dim=-1)], dim=1)
        return self.head(pooled).squeeze(-1)


def build_model(variant: str = "george-huerta", **kwargs) -> nn.Module:
    """Build a detector network: ``"george-huerta"`` or ``"deep"`` (keyword arguments go to its class)."""
    if variant == "george-huerta":
        return GeorgeHuertaCNN(**kwargs)
    if variant == "deep":
        return DeepResidualCNN(**kwargs)
    raise ValueError(f"unknown GW model variant {variant!r}; choose 'george-huerta' or 'deep'")
