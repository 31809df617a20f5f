"""AstroNet (Shallue & Vanderburg 2018) with the vetting inputs of its successors.

The global column sees the 2001-bin global view through five blocks of
[conv, conv, max-pool] with 16, 32, 64, 128 and 256 channels (kernel 5,
pool 5 stride 2); the local column sees the 201-bin local view through two
blocks with 16 and 32 channels (pool 7 stride 2). Their flattened outputs are
concatenated and passed through four fully connected layers of 512 units to
one logit (AJ 155, 94, figure 6 and section 4.3).

Following section 7 of that paper and its successors (Ansdell et al. 2018,
ApJL 869, L7, "Exonet"; Yu et al. 2019, AJ 158, 25), the model also sees the
views that separate eclipsing binaries from planets: the secondary-eclipse
view and the odd- and even-transit views enter the local column as extra
channels beside the local view (all four share its time axis, so the first
convolution can difference odd and even transits or compare primary and
secondary, as Exonet stacks centroid and flux), and the scalar diagnostics
(:data:`~skysift.transit.preprocess.VETTING_SCALARS`: depth, duration,
secondary, odd/even and transit-to-transit significances, trapezoid shape,
implied stellar density) join the flattened features before the fully
connected layers.

Contract: ``forward(global_view, local_view, secondary_view, odd_view,
even_view, scalars)`` takes float32 tensors of shape (N, 2001), four times
(N, 201) and (N, 11) and returns logits of shape (N,). ``width_scale``
scales every channel count and FC width, for CPU demos; ``extra_views`` and
``n_scalars`` switch the added inputs off (the inputs are then ignored), for
ablations and the original two-view AstroNet.
"""

from __future__ import annotations

import torch
from torch import nn

from skysift.transit.preprocess import GLOBAL_BINS, LOCAL_BINS, VETTING_SCALARS

__all__ = ["AstroNet", "build_model"]


def _column(channels: list[int], pool_size: int, pool_stride: int, kernel: int, in_channels: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    previous = in_channels
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
    """AstroNet classifier with secondary, odd/even views and scalar features; one logit per light curve.

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
    fc_width : int
        Units per hidden layer (before ``width_scale``).
    dropout : float
        Dropout before each hidden FC layer (0 in the paper's best model).
    extra_views : bool
        Feed the secondary, odd and even views to the local column (False:
        the local view alone, as the original AstroNet).
    n_scalars : int
        Scalar features fed to the fully connected layers (0: none).
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
        extra_views: bool = True,
        n_scalars: int = len(VETTING_SCALARS),
    ) -> None:
        super().__init__()
        scale = lambda c: max(1, int(round(c * width_scale)))  # noqa: E731
        self.global_bins, self.local_bins = global_bins, local_bins
        self.extra_views, self.n_scalars = extra_views, n_scalars
        self.global_column = _column([scale(c) for c in (16, 32, 64, 128, 256)], 5, 2, kernel_size)
        local_channels = 4 if extra_views else 1
        self.local_column = _column([scale(c) for c in (16, 32)], 7, 2, kernel_size, in_channels=local_channels)
        with torch.no_grad():
            n_global = self.global_column(torch.zeros(1, 1, global_bins)).numel()
            n_local = self.local_column(torch.zeros(1, local_channels, local_bins)).numel()
        layers: list[nn.Module] = []
        previous = n_global + n_local + n_scalars
        for _ in range(n_fc):
            if dropout:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(previous, scale(fc_width)), nn.ReLU()]
            previous = scale(fc_width)
        layers.append(nn.Linear(previous, 1))
        self.head = nn.Sequential(*layers)

    def _check(self, name: str, tensor: torch.Tensor, length: int) -> None:
        if tensor.ndim != 2 or tensor.shape[1] != length:
            raise ValueError(f"{name} must be (N, {length}), got {tuple(tensor.shape)}")

    def forward(
        self,
        global_view: torch.Tensor,
        local_view: torch.Tensor,
        secondary_view: torch.Tensor,
        odd_view: torch.Tensor,
        even_view: torch.Tensor,
        scalars: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (N,) for views (N, 2001), (N, 201) x 4 and scalars (N, n_scalars)."""
        self._check("global_view", global_view, self.global_bins)
        local_views = {"local_view": local_view}
        if self.extra_views:
            local_views.update(odd_view=odd_view, even_view=even_view, secondary_view=secondary_view)
        for name, tensor in local_views.items():
            self._check(name, tensor, self.local_bins)
        g = self.global_column(global_view.unsqueeze(1)).flatten(1)
        loc = self.local_column(torch.stack(list(local_views.values()), dim=1)).flatten(1)
        features = [g, loc]
        if self.n_scalars:
            self._check("scalars", scalars, self.n_scalars)
            features.append(scalars)
        return self.head(torch.cat(features, dim=1)).squeeze(1)


def build_model(**kwargs) -> AstroNet:
    """Build an :class:`AstroNet`; keyword arguments as its constructor (e.g. ``width_scale=0.25``)."""
    return AstroNet(**kwargs)
