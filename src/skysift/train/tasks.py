"""The tasks the shared trainer knows: which arrays feed which model.

A :class:`TaskSpec` names the product arrays a model takes (in order), the
label column, the function that builds the model, and optional per-batch
augmentation. Every model follows one contract: ``forward(*inputs)`` takes
float32 tensors with the batch first and returns logits of shape ``(N,)``
(binary classification: 1 = real transient, lens, planet or signal).
Models are referenced as ``"module:function"`` and imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from skysift.errors import ConfigError

__all__ = ["TASKS", "TaskSpec", "get_task", "register_task", "rot90_flip"]


def _resolve(reference: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(reference):
        return reference
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


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


@dataclass(frozen=True)
class TaskSpec:
    """What the trainer needs to know about one task.

    Attributes
    ----------
    name : str
        Task name used on the command line.
    inputs : tuple of str
        Product arrays (``/data/<name>``) passed to ``forward`` in order.
    model : str or callable
        ``"module:function"`` (or a callable) returning an ``nn.Module``; called
        with the ``model`` keyword arguments of the training configuration.
    label : str
        Label column in ``/samples``.
    augment : str or callable, optional
        ``(inputs, generator) -> inputs`` applied to training batches only.
    preprocess : str or callable, optional
        ``inputs -> inputs`` applied to every batch, in training and inference
        alike (e.g. per-image normalisation), after augmentation.
    split_group : str, optional
        Table column whose equal values must share a split (no leakage).
    gallery : str or callable, optional
        ``(arrays, scores, labels, title) -> Figure`` showing the highest- and
        lowest-scored samples, for the report.
    description : str
        One line for ``--help``.
    """

    name: str
    inputs: tuple[str, ...]
    model: str | Callable[..., torch.nn.Module]
    label: str = "label"
    augment: str | Callable[..., tuple[torch.Tensor, ...]] | None = None
    description: str = ""
    model_defaults: dict[str, Any] = field(default_factory=dict)
    gallery: str | Callable[..., Any] | None = None
    preprocess: str | Callable[..., tuple[torch.Tensor, ...]] | None = None
    split_group: str | None = None

    def build_model(self, **kwargs: Any) -> torch.nn.Module:
        """Build the task's model (defaults updated by ``kwargs``)."""
        return _resolve(self.model)(**{**self.model_defaults, **kwargs})

    def preprocessing(self) -> Callable[..., tuple[torch.Tensor, ...]] | None:
        return None if self.preprocess is None else _resolve(self.preprocess)

    def gallery_function(self) -> Callable[..., Any] | None:
        return None if self.gallery is None else _resolve(self.gallery)

    def augmentation(self) -> Callable[..., tuple[torch.Tensor, ...]] | None:
        return None if self.augment is None else _resolve(self.augment)


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add (or replace) a task in the registry."""
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """Look a task up by name.

    Raises
    ------
    ConfigError
        Naming the known tasks.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS)) or 'none'}") from None


register_task(
    TaskSpec(
        "transit",
        # skysift.transit.dataset.INPUT_NAMES (not imported here: tasks load their modules on use).
        ("global_view", "local_view", "secondary_view", "odd_view", "even_view", "scalars"),
        "skysift.transit.model:build_model",
        description="AstroNet 1-D CNN on global/local views (Shallue & Vanderburg 2018) with secondary, odd/even "
        "views and scalar diagnostics (Ansdell et al. 2018; Yu et al. 2019)",
        gallery="skysift.evaluation:transit_gallery",
    )
)


def lens_preprocess(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Per-image robust arcsinh scaling of lens images (:func:`skysift.lens.model.normalise`)."""
    from skysift.lens.model import normalise

    return (normalise(inputs[0]),)


register_task(
    TaskSpec(
        "lens",
        ("image",),
        "skysift.lens.model:build_model",
        augment=rot90_flip,
        preprocess=lens_preprocess,
        description="ResNet lens finder as CMU DeepLens (Lanusse et al. 2018)",
        gallery="skysift.evaluation:lens_gallery",
    )
)


register_task(
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


register_task(
    TaskSpec(
        "gw",
        ("strain",),
        "skysift.gw.model:build_model",
        description="1-D CNN on whitened H1/L1 strain (George & Huerta 2018; deeper residual variant)",
        split_group="waveform_id",
        gallery="skysift.evaluation:gw_gallery",
    )
)
