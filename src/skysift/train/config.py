"""Training settings, kept free of torch so the CLI can describe them without importing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from skysift.options import StageOptions, param

__all__ = ["TrainConfig", "TrainResources"]


@dataclass
class TrainConfig(StageOptions):
    """Training hyper-parameters (config section ``train.<task>``; every field but
    ``model`` is also a ``skysift train`` option; ``model`` is ``--model-json``)."""

    section: ClassVar[str] = "train"

    epochs: int = param(10, "Maximum number of epochs.", minimum=1)
    batch_size: int = param(128, "Global batch size of training (summed over processes).", minimum=1)
    learning_rate: float = param(1e-3, "AdamW learning rate.", exclusive_minimum=0)
    weight_decay: float = param(1e-4, "AdamW weight decay.", minimum=0)
    scheduler: str = param("cosine", "Learning-rate schedule over the epochs.", choices=("cosine", "constant"))
    patience: int = param(5, "Early-stopping patience in epochs (0 never stops early).", minimum=0)
    val_fraction: float = param(0.15, "Validation fraction of the training set.", minimum=0, maximum=0.5)
    test_fraction: float = param(0.15, "Held-out test fraction.", minimum=0, maximum=0.5)
    seed: int = param(0, "Seed of the split, batch order, initialisation and per-step randomness.", minimum=0, config=False)
    num_workers: int = param(
        1, "DataLoader worker processes decompressing a product larger than memory_limit_gib (0: the training process).",
        minimum=0,
    )
    memory_limit_gib: float = param(
        2.0, "Input arrays (uncompressed) up to this size are read into memory; larger products stream from disk by chunks.",
        unit="GiB", minimum=0,
    )
    shuffle_buffer_mib: float = param(
        128.0, "Decoded inputs shuffled together: a window of whole chunks, each read once per epoch (sets the batch order).",
        unit="MiB", exclusive_minimum=0,
    )
    device: str = param("auto", "Where to train; auto takes the GPU when there is one.", choices=("auto", "cpu", "cuda"))
    amp: bool = param(True, "bf16 autocast on GPU (ignored on CPU).")
    augment: bool = param(True, "Apply the task's augmentation to training batches.")
    max_steps_per_epoch: int = param(0, "Cap on steps per epoch (0: the whole training split).", minimum=0)
    threads: int = param(0, "Torch threads per process (0 leaves torch's default).", minimum=0)
    model: dict[str, Any] = param({}, "Keyword arguments of the task's model builder.", cli=False)


@dataclass(frozen=True)
class TrainResources(StageOptions):
    """Cluster resources of one training job (config section ``train.<task>``; read by the workflow)."""

    section: ClassVar[str] = "train"

    gpus: int = param(0, "GPUs per training job (more than 1 runs DDP through skysift launch).", minimum=0, cli=False)
    cpus_per_gpu: int = param(4, "CPUs per GPU for data loading.", minimum=1, cli=False)
    mem_mb: int = param(4000, "Memory of the training job.", unit="MB", minimum=100, cli=False)
    runtime: int = param(60, "Wall-time limit of the training job.", unit="min", minimum=1, cli=False)
