"""Exoplanet transit vetting: simulated light curves, Mandel & Agol transits, AstroNet views and model.

Modules: :mod:`~skysift.transit.lightcurves` (stars, cadences, FITS readers),
:mod:`~skysift.transit.transit_model` (Mandel & Agol 2002),
:mod:`~skysift.transit.injection` (planets and negatives under the priors
contract), :mod:`~skysift.transit.preprocess` (detrending, views, BLS),
:mod:`~skysift.transit.dataset` (training-set product, TCE tables),
:mod:`~skysift.transit.model` (AstroNet CNN) and :mod:`~skysift.transit.plots`.
Submodules are imported on use, so ``import skysift.transit`` does not import torch.
"""
