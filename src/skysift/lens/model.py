"""ResNet lens finder after CMU DeepLens (Lanusse et al. 2018), with its input normalisation.

CONTRACT (shared trainer): ``LensFinder.forward(image)`` takes float32
``(N, C, H, W)`` images already passed through :func:`normalise` and returns
logits of shape ``(N,)`` (``sigmoid(logit)`` = lens probability; train with
``BCEWithLogitsLoss``). :func:`build_model` is the factory.

Architecture: a 7x7 stem convolution, then ``len(depths)`` stages of
pre-activation residual blocks (He et al. 2016b: BN -> ELU -> conv, twice,
plus an identity or 1x1 strided shortcut); each stage after the first halves
the resolution and widens by ``widths``; global average pooling and a linear
layer give the logit. DeepLens uses widths 16/32/64/128/256 with three blocks
per stage on 45x45 images; the CPU-demo default is smaller.

Point-symmetric residual: with ``symmetric_residual`` (default) the network
also sees ``x - rot180(x)`` of each normalised band about the stamp centre. A
(centred) elliptical lens galaxy is point-symmetric and cancels, so arcs buried
in the lens light, the hardest detectable lenses in one band, stand out; it
plays the part of the lens-light subtraction of arc finders (e.g. Gavazzi et
al. 2014, ApJ 785, 144) at no fitting cost. The original band is kept, so
point-symmetric lensed images (full Einstein rings) are still seen.

Polar view: with ``polar_view`` the stem also sees every input channel
resampled onto a polar grid about the stamp centre (rows: radius from 0 to
the stamp's half side, columns: azimuth over 360 degrees), stacked as further
channels. Lensed arcs are stretched tangentially around the lens (Einstein
rings and arcs are curves of nearly constant radius): in the polar view they
become horizontal streaks at one row, which a few 3x3 convolutions detect,
whereas rings inclined to the line of sight (off-centre or elliptical about
the nucleus), companions and stars (compact, or radially elongated) do not.
It costs one ``grid_sample`` per batch and the stem's extra input channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LensFinder", "PreActBlock", "build_model", "normalise", "polar_grid"]


def normalise(images: torch.Tensor | "np.ndarray", *, softening: float = 3.0) -> torch.Tensor:  # noqa: F821
    """Per-image robust arcsinh scaling, identical at training and inference.

    Each image (per channel) is centred on its median and divided by its
    robust noise level ``sigma = 1.4826 MAD``; then ``asinh(x / softening)``
    compresses bright cores while keeping faint arcs near linear (Lupton et
    al. 1999 stretch). Scale-free, so it is insensitive to the image unit.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        ``(N, C, H, W)``.
    softening : float
        Noise multiples at which the stretch turns logarithmic.

    Returns
    -------
    torch.Tensor
        float32, same shape.
    """
    x = torch.as_tensor(images).to(torch.float32)
    flat = x.flatten(start_dim=2)
    median = flat.median(dim=-1, keepdim=True).values
    mad = (flat - median).abs().median(dim=-1, keepdim=True).values
    sigma = (1.4826 * mad).clamp(min=1e-12)
    scaled = torch.asinh((flat - median) / (softening * sigma))
    return scaled.reshape(x.shape)


class PreActBlock(nn.Module):
    """Pre-activation residual block (BN-ELU-conv3x3, BN-ELU-conv3x3, shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.activation = nn.ELU()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.activation(self.norm1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.activation(self.norm2(out)))
        return out + identity


class LensFinder(nn.Module):
    """DeepLens-style ResNet returning one logit per image.

    Parameters
    ----------
    in_channels : int
        Bands per image.
    widths : sequence of int
        Channels of each stage.
    depths : sequence of int
        Residual blocks per stage (same length as ``widths``).
    dropout : float
        Dropout before the final linear layer.
    stem_stride : int
        Stride of the 7x7 stem convolution; 2 halves every feature map (4x
        fewer operations at the same widths, the ResNet stem), 1 (default)
        keeps the full resolution.
    symmetric_residual : bool
        Also feed ``image - rot180(image)`` (see the module notes).
    polar_view : bool
        Also feed the polar resampling of those channels (see the module notes).
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64),
        depths: Sequence[int] = (1, 1, 1),
        dropout: float = 0.0,
        stem_stride: int = 1,
        symmetric_residual: bool = True,
        polar_view: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"widths and depths need the same non-zero length, got {widths}, {depths}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.symmetric_residual = symmetric_residual
        self.polar_view = polar_view
        stem_channels = 2 * in_channels if symmetric_residual else in_channels
        stem_channels *= 2 if polar_view else 1
        self.stem = nn.Conv2d(stem_channels, widths[0], 7, stride=stem_stride, padding=3, bias=False)
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for block in range(depth):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(PreActBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head_norm = nn.BatchNorm2d(channels)
        self.activation = nn.ELU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, 1)

    def stem_input(self, image: torch.Tensor) -> torch.Tensor:
        """The stem's input: ``image``, ``image - rot180(image)`` with ``symmetric_residual``, then their polar views."""
        channels = image
        if self.symmetric_residual:
            channels = torch.cat([image, image - torch.rot90(image, 2, dims=(-2, -1))], dim=1)
        if self.polar_view:
            grid = polar_grid(image.shape[-2], image.shape[-1], device=image.device, dtype=channels.dtype)
            polar = F.grid_sample(channels, grid.expand(len(channels), -1, -1, -1), mode="bilinear",
                                  padding_mode="zeros", align_corners=False)
            channels = torch.cat([channels, polar], dim=1)
        return channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(N,)`` for normalised float32 images ``(N, C, H, W)``."""
        x = self.blocks(self.stem(self.stem_input(image)))
        x = self.activation(self.head_norm(x)).mean(dim=(-2, -1))
        return self.classifier(self.dropout(x)).squeeze(-1)


def polar_grid(height: int, width: int, *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``grid_sample`` grid ``(1, height, width, 2)`` of a polar view about the stamp centre.

    Row ``i`` is the radius ``(i + 0.5) / height`` of the stamp's half side
    (so the view reaches the middle of each edge), column ``j`` the azimuth
    ``2 pi j / width``; coordinates normalised as ``align_corners=False``.
    """
    radius = (torch.arange(height, device=device, dtype=torch.float64) + 0.5) / height
    azimuth = torch.arange(width, device=device, dtype=torch.float64) * (2.0 * math.pi / width)
    x = radius[:, None] * torch.cos(azimuth)[None, :]
    y = radius[:, None] * torch.sin(azimuth)[None, :]
    return torch.stack([x, y], dim=-1)[None].to(dtype)


def build_model(
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32, 64),
    depths: Sequence[int] = (1, 1, 1),
    dropout: float = 0.0,
    stem_stride: int = 1,
    symmetric_residual: bool = True,
    polar_view: bool = False,
) -> LensFinder:
    """Build a :class:`LensFinder`; DeepLens proper is ``widths=(16, 32, 64, 128, 256), depths=(3,) * 5``."""
    return LensFinder(in_channels=in_channels, widths=tuple(widths), depths=tuple(depths), dropout=dropout,
                      stem_stride=stem_stride, symmetric_residual=symmetric_residual, polar_view=polar_view)
