"""Batch augmentations shared by the tasks (kept apart from the registry, which imports every task)."""

from __future__ import annotations

import torch

__all__ = ["rot90_flip"]


def rot90_flip(inputs: tuple[torch.Tensor, ...], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random rotation by multiples of 90 degrees and flips of image batches (N, C, H, W).

    The dihedral group of the square leaves a point source or a lens
    statistically unchanged (Deep-HiTS, Cabrera-Vives et al. 2017); each sample
    gets its own of the 8 transformations, drawn from ``generator``.
    """
    augmented = []
    for batch in inputs:
        choice = torch.randint(0, 8, (batch.shape[0],), generator=generator)
        out = batch.clone()
        for k in range(4):
            for flip in (False, True):
                selected = choice == (2 * k + int(flip))
                if selected.any():
                    part = torch.rot90(batch[selected], k, dims=(-2, -1))
                    out[selected] = torch.flip(part, dims=(-1,)) if flip else part
        augmented.append(out)
    return tuple(augmented)
