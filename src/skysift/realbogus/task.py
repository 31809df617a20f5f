"""The real/bogus task of the shared trainer: a braai-like VGG on candidate triplets."""

from __future__ import annotations

from skysift.train.augment import rot90_flip
from skysift.train.tasks import TaskSpec, register_task

__all__ = ["TASK"]

TASK = register_task(
    TaskSpec(
        "realbogus",
        ("cutout",),
        "skysift.realbogus.model:build_model",
        augment=rot90_flip,
        description="braai-like VGG on science/reference/difference triplets (Duev et al. 2019)",
        split_group="sky_cell",
        gallery="skysift.realbogus.plots:realbogus_gallery",
    )
)
