"""The tasks the shared trainer knows: which arrays feed which model.

A :class:`TaskSpec` names the product arrays a model takes (in order), the
label column, the function that builds the model, and optional per-batch
augmentation. Every model follows one contract: ``forward(*inputs)`` takes
float32 tensors with the batch first and returns logits of shape ``(N,)``
(binary classification: 1 = real transient, lens, planet or signal).
Models are referenced as ``"module:function"`` and imported only when used.
Each domain package registers its own task in ``<package>/task.py``
(:func:`discover_tasks` imports them), so the registry points downward.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from skysift.errors import ConfigError
from skysift.train.augment import rot90_flip

__all__ = ["TASKS", "TaskSpec", "discover_tasks", "get_task", "register_task", "rot90_flip"]


def _resolve(reference: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(reference):
        return reference
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


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
    metrics : str or callable, optional
        ``(labels, scores) -> dict`` of the task's own held-out metrics, added to
        the shared ones by ``skysift evaluate``.
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
    metrics: str | Callable[..., dict[str, float]] | None = None

    def build_model(self, **kwargs: Any) -> torch.nn.Module:
        """Build the task's model (defaults updated by ``kwargs``)."""
        return _resolve(self.model)(**{**self.model_defaults, **kwargs})

    def preprocessing(self) -> Callable[..., tuple[torch.Tensor, ...]] | None:
        return None if self.preprocess is None else _resolve(self.preprocess)

    def gallery_function(self) -> Callable[..., Any] | None:
        return None if self.gallery is None else _resolve(self.gallery)

    def metrics_function(self) -> Callable[..., dict[str, float]] | None:
        return None if self.metrics is None else _resolve(self.metrics)

    def augmentation(self) -> Callable[..., tuple[torch.Tensor, ...]] | None:
        return None if self.augment is None else _resolve(self.augment)


TASKS: dict[str, TaskSpec] = {}
_discovered = False


def discover_tasks() -> dict[str, TaskSpec]:
    """Import every ``skysift.<package>.task`` module once; each registers its own task.

    The registry names no domain: adding a task means adding ``task.py`` to
    its package (and the stage to the workflow), nothing here.
    """
    global _discovered
    if not _discovered:
        _discovered = True
        import skysift

        for module in pkgutil.iter_modules(skysift.__path__):
            if module.ispkg and importlib.util.find_spec(f"skysift.{module.name}.task") is not None:
                importlib.import_module(f"skysift.{module.name}.task")
    return TASKS


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
    discover_tasks()
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS)) or 'none'}") from None
