"""AstroNet: the two-column 1-D convolutional network of Shallue & Vanderburg (2018).

The global column sees the 2001-bin global view through five blocks of
[conv, conv, max-pool] with 16, 32, 64, 128 and 256 channels (kernel 5,
pool 5 stride 2); the local column sees the 201-bin local view through two
blocks with 16 and 32 channels (pool 7 stride 2). Their flattened outputs are
concatenated and passed through four fully connected layers of 512 units to
one logit (AJ 155, 94, figure 6 and section 4.3).

Contract: ``forward(global_view, local_view)`` takes float32 tensors of shape
(N, 2001) and (N, 201) and returns logits of shape (N,). ``width_scale``
scales every channel count and FC width, for CPU demos.
"""

from __future__ import annotations

import torch
from torch import nn

from skysift.transit.preprocess import GLOBAL_BINS, LOCAL_BINS

__all__ = ["AstroNet", "build_model"]


def _column(channels: list[int], pool_size: int, pool_stride: int, kernel: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    previous = 1
    for width in channels:
        layers += [
            nn.Conv1d(previous, width, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.Conv1d(width, width, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.MaxPool1d(pool_size, stride=pool_stride),
        ]
        previous = width
    return nn.Sequential(*layers)


class AstroNet(nn.Module):
    """Two-column AstroNet classifier returning one logit per light curve.

    Parameters
    ----------
    width_scale : float
        Multiplies channel counts and fully connected widths (1: the paper).
    global_bins, local_bins : int
        View lengths.
    kernel_size : int
        Convolution kernel length.
    n_fc : int
        Number of fully connected hidden layers.
    dropout : float
        Dropout before each hidden FC layer (0 in the paper's best model).
    """

    def __init__(
        self,
        *,
        width_scale: float = 1.0,
        global_bins: int = GLOBAL_BINS,
        local_bins: int = LOCAL_BINS,
        kernel_size: int = 5,
        n_fc: int = 4,
        fc_width: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        scale = lambda c: max(1, int(round(c * width_scale)))  # noqa: E731
        self.global_bins, self.local_bins = global_bins, local_bins
        self.global_column = _column([scale(c) for c in (16, 32, 64, 128, 256)], 5, 2, kernel_size)
        self.local_column = _column([scale(c) for c in (16, 32)], 7, 2, kernel_size)
        with torch.no_grad():
            n_global = self.global_column(torch.zeros(1, 1, global_bins)).numel()
            n_local = self.local_column(torch.zeros(1, 1, local_bins)).numel()
        layers: list[nn.Module] = []
        previous = n_global + n_local
        for _ in range(n_fc):
            if dropout:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(previous, scale(fc_width)), nn.ReLU()]
            previous = scale(fc_width)
        layers.append(nn.Linear(previous, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, global_view: torch.Tensor, local_view: torch.Tensor) -> torch.Tensor:
        """Logits (N,) for views (N, 2001) and (N, 201)."""
        if global_view.ndim != 2 or global_view.shape[1] != self.global_bins:
            raise ValueError(f"global_view must be (N, {self.global_bins}), got {tuple(global_view.shape)}")
        if local_view.ndim != 2 or local_view.shape[1] != self.local_bins:
            raise ValueError(f"local_view must be (N, {self.local_bins}), got {tuple(local_view.shape)}")
        g = self.global_column(global_view.unsqueeze(1)).flatten(1)
        loc = self.local_column(local_view.unsqueeze(1)).flatten(1)
        return self.head(torch.cat([g, loc], dim=1)).squeeze(1)


def build_model(**kwargs) -> AstroNet:
    """Build an :class:`AstroNet`; keyword arguments as its constructor (e.g. ``width_scale=0.25``)."""
    return AstroNet(**kwargs)
