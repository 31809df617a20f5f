"""Training settings, kept free of torch so the CLI can describe them without importing it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Training hyper-parameters (every field is also a ``skysift train`` option).

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Global batch size (summed over processes).
    learning_rate, weight_decay : float
        AdamW parameters.
    scheduler : {"cosine", "constant"}
        Learning-rate schedule over ``epochs``.
    patience : int
        Early stopping: stop after this many epochs without a better validation
        loss (0: never).
    val_fraction, test_fraction : float
        Held-out fractions of the product (deterministic split from ``seed``).
    seed : int
        Seed of the split, batch order, initialisation and per-step randomness.
    num_workers : int
        DataLoader worker processes reading the product.
    device : {"auto", "cpu", "cuda"}
        Where to train; ``auto`` takes the GPU when there is one.
    amp : bool
        bf16 autocast on GPU (ignored on CPU).
    augment : bool
        Apply the task's augmentation to training batches.
    max_steps_per_epoch : int
        Cap on steps per epoch (0: the whole training split).
    threads : int
        ``torch.set_num_threads`` for this process (0: leave torch's default).
    model : dict
        Keyword arguments for the task's model builder.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    patience: int = 5
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    max_steps_per_epoch: int = 0
    threads: int = 0
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {self.scheduler!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
