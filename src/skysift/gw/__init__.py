"""Gravitational-wave training sets, detectors, MLGWSC-1 data and searches.

Modules
-------
waveforms
    Source priors, frequency-domain waveform banks (PyCBC/LALSuite) and their
    projection onto the H1/L1 network (antenna patterns and time delays).
noise
    The design PSD, coloured Gaussian noise, Welch PSD estimates, whitening
    and band-pass filtering.
dataset
    ``gw-training-set`` products: the fast batched generator and the
    straightforward per-sample PyCBC peer (:func:`make_gw_training_set`).
model
    1-D CNN detectors (George & Huerta 2018 and a deeper residual variant).
mlgwsc
    MLGWSC-1 file formats (strain, events, injections) and test-data generation.
search
    Sliding a scoring function over continuous data and clustering triggers.
matched_filter
    The matched-filter baseline (template bank, coincidence, clustering).
evaluate
    MLGWSC-1 evaluation: false-alarm rate, found injections, sensitive distance.

PyCBC and LALSuite are an optional dependency (the ``gw`` extra); the model,
file formats and evaluation work without them.
"""

from __future__ import annotations

__all__: list[str] = []
