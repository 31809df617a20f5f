"""Strong-lens finding: simulation-based training sets, a ResNet finder, metrics and plots.

Modules: :mod:`~skysift.lens.simulator` (batched SIE + shear + Sersic
simulator, survey presets), :mod:`~skysift.lens.negatives` (hard negatives),
:mod:`~skysift.lens.injection` (arcs on real HST galaxies),
:mod:`~skysift.lens.dataset` (the training-set product), :mod:`~skysift.lens.model`
(DeepLens-style ResNet), :mod:`~skysift.lens.metrics`, :mod:`~skysift.lens.plots`.
"""

from skysift.lens.dataset import make_lens_training_set
from skysift.lens.model import build_model, normalise
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator, SurveySpec

__all__ = ["LENS_PRIORS", "SURVEYS", "LensSimulator", "SurveySpec", "build_model", "make_lens_training_set", "normalise"]
