"""Real/bogus classification of difference-image candidates.

* :mod:`~skysift.realbogus.injection`: training set by injecting point sources
  with each image's own PSF before subtraction (``make_realbogus_training_set``).
* :mod:`~skysift.realbogus.survey`: survey presets (ZTF: pixel scale, seeing, depth, noise, stamps).
* :mod:`~skysift.realbogus.stamps`: a survey's alert-like triplets, stamp by stamp, on simulated or
  real alert backgrounds, with real and bogus families (``make_survey_training_set``).
* :mod:`~skysift.realbogus.evaluate`: agreement with ZTF's ``rb``/``drb`` on real alerts (``evaluate_alerts``).
* :mod:`~skysift.realbogus.normalise`: per-channel L2 (braai) and robust scaling.
* :mod:`~skysift.realbogus.model`: braai-like VGG (``build_model``).
* :mod:`~skysift.realbogus.ztf`: ZTF Avro alert packets (``read_alerts``, ``score_alerts``).
* :mod:`~skysift.realbogus.plots`: triplet galleries.

Submodules are imported on use (torch is only needed by the model and scoring).
"""

__all__: list[str] = []
