"""Searching continuous two-detector data with a sample-level scoring function.

The data are whitened with a Welch PSD estimated from each segment (as the
training samples are), a window of the training-sample length slides over
them (step 0.1 s by default), windows are scored in batches by any function
``(N, 2, T) float32 -> (N,)`` (a trained network through :func:`torch_scorer`,
or :func:`excess_power_score`), and triggers above a threshold are clustered:
a trigger is kept only if it is the loudest within ``± cluster_window``.
Events go to an MLGWSC-1 events file, so :mod:`skysift.gw.evaluate` applies
to any search alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from skysift.context import RunContext, resolve_context
from skysift.gw.noise import DEFAULT_BAND, welch_psd, whiten
from skysift.gw.series import Strain
from skysift.log import get_logger

__all__ = ["ScoreFunction", "cluster_triggers", "excess_power_score", "run_search", "sliding_scores", "torch_scorer", "whiten_strain"]

log = get_logger(__name__)

ScoreFunction = Callable[[np.ndarray], np.ndarray]


def whiten_strain(strain: Strain, *, band: tuple[float, float] = DEFAULT_BAND, welch_segment: float = 4.0) -> Strain:
    """Whiten and band-pass each detector with its Welch PSD over the whole segment.

    Unit variance for Gaussian noise (:mod:`skysift.gw.noise`). The filter is
    circular: discard about a second at either end.
    """
    psd = welch_psd(strain.data, strain.sample_rate, segment_duration=welch_segment)
    return Strain(whiten(strain.data, strain.sample_rate, psd, band), strain.start_time, strain.delta_t, strain.detectors)


def sliding_scores(whitened: Strain, score: ScoreFunction, *, window: float = 1.0, step: float = 0.1, batch_size: int = 256, edge: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Score windows of ``window`` s every ``step`` s.

    Returns
    -------
    starts : ndarray
        GPS start time of each window.
    scores : ndarray
        The score of each window.
    """
    fs = whitened.sample_rate
    n_window, n_step, n_edge = int(round(window * fs)), int(round(step * fs)), int(round(edge * fs))
    first = np.arange(n_edge, whitened.data.shape[1] - n_window - n_edge + 1, n_step)
    scores = np.empty(first.size)
    view = np.lib.stride_tricks.sliding_window_view(whitened.data, n_window, axis=1)  # (2, n - w + 1, w)
    for lo in range(0, first.size, batch_size):
        index = first[lo : lo + batch_size]
        batch = np.ascontiguousarray(view[:, index].transpose(1, 0, 2), dtype=np.float32)
        scores[lo : lo + index.size] = np.asarray(score(batch), dtype=float).reshape(-1)
    return whitened.start_time + first / fs, scores


def cluster_triggers(times: np.ndarray, stats: np.ndarray, *, threshold: float, cluster_window: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep triggers above ``threshold`` that are the loudest within ``± cluster_window``.

    Greedy: the loudest trigger is kept and its neighbourhood removed, then the
    next loudest remaining, and so on.
    """
    keep = stats > threshold
    times, stats = np.asarray(times)[keep], np.asarray(stats)[keep]
    order = np.argsort(times)
    times, stats = times[order], stats[order]
    alive = np.ones(times.size, dtype=bool)
    chosen = []
    for index in np.argsort(-stats, kind="stable"):
        if not alive[index]:
            continue
        chosen.append(index)
        lo, hi = np.searchsorted(times, [times[index] - cluster_window, times[index] + cluster_window], side="left")
        hi = np.searchsorted(times, times[index] + cluster_window, side="right")
        alive[lo:hi] = False
    chosen = np.sort(np.asarray(chosen, dtype=int))
    return times[chosen], stats[chosen]


def excess_power_score(batch: np.ndarray) -> np.ndarray:
    """A model-free score: summed whitened power of both detectors over the window.

    For whitened Gaussian noise ``sum x^2`` is chi-squared with ``2 T``
    degrees of freedom; the score is its excess in standard deviations.
    """
    power = np.sum(batch.astype(np.float64) ** 2, axis=(1, 2))
    dof = batch.shape[1] * batch.shape[2]
    return (power - dof) / np.sqrt(2.0 * dof)


def torch_scorer(model, *, device: str = "cpu") -> ScoreFunction:
    """Wrap a detector network (``forward(strain) -> logits``) as a numpy score function."""
    import torch

    model = model.to(device).eval()

    def score(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return score


def run_search(
    strain_path: str | os.PathLike[str],
    events_path: str | os.PathLike[str],
    score: ScoreFunction,
    *,
    window: float = 1.0,
    step: float = 0.1,
    merger_offset: float = 0.7,
    threshold: float = 0.0,
    cluster_window: float = 1.0,
    var: float = 0.3,
    batch_size: int = 256,
    band: tuple[float, float] = DEFAULT_BAND,
    welch_segment: float = 4.0,
    context: RunContext | None = None,
) -> Path:
    """Search an MLGWSC-1 strain file and write its events file.

    Parameters
    ----------
    strain_path, events_path : path
    score : callable
        ``(N, 2, T) float32 -> (N,)``; larger is more signal-like.
    window, step : float
        Window length (the training-sample duration) and stride (s).
    merger_offset : float
        Where in a window a merger sits when the score is highest (s after its
        start): the centre of the training set's merger window (0.7 s of 1 s).
    threshold : float
        Triggers at or below it are dropped.
    cluster_window : float
        Clustering half-width (s).
    var : float
        MLGWSC-1 ``var`` of every event (s).
    batch_size, band, welch_segment
        Scoring batch and whitening settings.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    """
    from skysift.gw.mlgwsc import read_strain, write_events

    all_times, all_stats = [], []
    for segment in read_strain(strain_path):
        whitened = whiten_strain(segment, band=band, welch_segment=welch_segment)
        starts, scores = sliding_scores(whitened, score, window=window, step=step, batch_size=batch_size)
        times, stats = cluster_triggers(starts + merger_offset, scores, threshold=threshold, cluster_window=cluster_window)
        all_times.append(times)
        all_stats.append(stats)
        log.info("searched %s segment at %.0f (%.0f s): %d events", strain_path, segment.start_time, segment.duration, times.size)
    times = np.concatenate(all_times) if all_times else np.empty(0)
    stats = np.concatenate(all_stats) if all_stats else np.empty(0)
    provenance = resolve_context(context, "gw_search").provenance(inputs=[strain_path])
    return write_events(events_path, times, stats, var, provenance=provenance)
