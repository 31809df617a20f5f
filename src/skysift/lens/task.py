"""The lens-finding task of the shared trainer: a DeepLens-style ResNet on survey images."""

from __future__ import annotations

import torch

from skysift.train.augment import rot90_flip
from skysift.train.tasks import TaskSpec, register_task

__all__ = ["TASK", "lens_preprocess"]


def lens_preprocess(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Per-image robust arcsinh scaling of lens images (:func:`skysift.lens.model.normalise`)."""
    from skysift.lens.model import normalise

    return (normalise(inputs[0]),)


TASK = register_task(
    TaskSpec(
        "lens",
        ("image",),
        "skysift.lens.model:build_model",
        augment=rot90_flip,
        preprocess=lens_preprocess,
        description="ResNet lens finder as CMU DeepLens (Lanusse et al. 2018)",
        gallery="skysift.lens.plots:lens_gallery",
        metrics="skysift.lens.metrics:bologna_metrics",
    )
)
