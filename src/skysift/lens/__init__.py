"""Strong-lens finding: simulation-based training sets, a ResNet finder, metrics and plots.

Modules: :mod:`~skysift.lens.simulator` (batched SIE + shear + Sersic
simulator, survey presets), :mod:`~skysift.lens.negatives` (hard negatives),
:mod:`~skysift.lens.injection` (arcs on real HST galaxies),
:mod:`~skysift.lens.dataset` (the training-set product), :mod:`~skysift.lens.model`
(DeepLens-style ResNet), :mod:`~skysift.lens.metrics`, :mod:`~skysift.lens.plots`.
Submodules are imported on use, so ``skysift.lens.options`` (read when the
workflow's configuration is validated) does not import torch.
"""

import importlib
from typing import Any

_LAZY = {
    "LENS_PRIORS": "skysift.lens.simulator",
    "SURVEYS": "skysift.lens.simulator",
    "LensSimulator": "skysift.lens.simulator",
    "SurveySpec": "skysift.lens.simulator",
    "build_model": "skysift.lens.model",
    "make_lens_training_set": "skysift.lens.dataset",
    "normalise": "skysift.lens.model",
}

__all__ = ["LENS_PRIORS", "SURVEYS", "LensSimulator", "SurveySpec", "build_model", "make_lens_training_set", "normalise"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skysift.lens' has no attribute {name!r}")
