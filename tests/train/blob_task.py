"""A small real task for testing the trainer: find a faint Gaussian blob in noise.

Importing this module registers the task ``blob`` (usable with ``--plugin blob_task``
when this directory is on PYTHONPATH). The model has BatchNorm and dropout, so
determinism and resume tests exercise random state and running statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from skysift.io import write_product
from skysift.provenance import Provenance
from skysift.train.tasks import TaskSpec, register_task, rot90_flip


class BlobFinder(nn.Module):
    def __init__(self, width: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image)).squeeze(-1)


def build_model(**kwargs) -> BlobFinder:
    return BlobFinder(**kwargs)


TASK = register_task(TaskSpec("blob", ("image",), build_model, augment=rot90_flip, description="test task"))


def make_blob_product(path: Path, n_samples: int = 512, size: int = 16, amplitude: float = 1.5, seed: int = 0) -> Path:
    """Noise images, half with a Gaussian blob at a random position."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n_samples) % 2).astype(np.int8)
    images = rng.normal(0, 1, size=(n_samples, 1, size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(4, size - 4, size=(n_samples, 2))
    blobs = np.exp(-((xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2) / (2 * 1.5**2))
    images[:, 0] += amplitude * labels[:, None, None] * blobs
    provenance = Provenance.collect(rule="test", config={}, seed=seed)
    return write_product(path, product_type="training-set", provenance=provenance, arrays={"image": images},
                         table={"label": labels, "x": centres[:, 0]})
