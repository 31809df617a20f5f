"""Searching continuous two-detector data with a sample-level scoring function.

Each segment is conditioned (:mod:`skysift.gw.conditioning`: high-pass,
median-Welch PSD, truncated whitening filter, Tukey taper, autogating), a
window of the training-sample length slides over it (step 0.1 s by default),
windows are scored in batches by any function ``(N, 2, T) float32 -> (N,)``
(a trained network through :func:`torch_scorer`, or
:func:`excess_power_score`), and triggers above a threshold are clustered: a
trigger is kept only if it is the loudest within ``± cluster_window``.

No window that overlaps the first or last ``edge`` seconds of a segment
(at least the taper plus half the whitening filter) gives an event; such
triggers are kept apart, flagged ``in_edge`` in the trigger table. With
``n_slides`` the second detector is slid circularly against the first within
the interior (:mod:`skysift.gw.background`) and every event gets a
false-alarm rate. Events go to an MLGWSC-1 events file, so
:mod:`skysift.gw.evaluate` applies to any search alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skysift.context import RunContext, resolve_context
from skysift.gw.background import LIGHT_TRAVEL_MARGIN, false_alarm_rates, slide_offsets
from skysift.gw.conditioning import ConditionedStrain, Gate, condition_strain
from skysift.gw.noise import DEFAULT_BAND, welch_psd, whiten
from skysift.gw.series import Strain
from skysift.log import get_logger

__all__ = [
    "ScoreFunction",
    "SegmentTriggers",
    "cluster_triggers",
    "excess_power_score",
    "is_mlgwsc_strain",
    "read_search_strain",
    "run_search",
    "search_segment",
    "sliding_scores",
    "torch_scorer",
    "trigger_table",
    "whiten_strain",
]

log = get_logger(__name__)

ScoreFunction = Callable[[np.ndarray], np.ndarray]


def whiten_strain(strain: Strain, *, band: tuple[float, float] = DEFAULT_BAND, welch_segment: float = 4.0) -> Strain:
    """Whiten and band-pass each detector with its Welch PSD over the whole segment.

    Unit variance for Gaussian noise (:mod:`skysift.gw.noise`). The filter is
    circular and untruncated: a quick look only; searches condition the data
    with :func:`~skysift.gw.conditioning.condition_strain`.
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
    return whitened.start_time + first / fs, _score_windows(whitened.data, first, n_window, score, batch_size)


def _score_windows(data: np.ndarray, first: np.ndarray, n_window: int, score: ScoreFunction, batch_size: int) -> np.ndarray:
    """Scores of the windows of ``data`` (n_det, n) starting at samples ``first``."""
    scores = np.empty(first.size)
    view = np.lib.stride_tricks.sliding_window_view(data, n_window, axis=1)  # (2, n - w + 1, w)
    for lo in range(0, first.size, batch_size):
        index = first[lo : lo + batch_size]
        batch = np.ascontiguousarray(view[:, index].transpose(1, 0, 2), dtype=np.float32)
        scores[lo : lo + index.size] = np.asarray(score(batch), dtype=float).reshape(-1)
    return scores


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


@dataclass
class SegmentTriggers:
    """Clustered triggers of one segment and its time-slide background.

    Attributes
    ----------
    time, stat : ndarray
        Zero-lag triggers (GPS s, statistic), interior and edge ones.
    in_edge : ndarray of bool
        Whether the trigger's window overlaps the segment's edge region.
    gated : ndarray of bool
        Whether the trigger's window overlaps a gate.
    background : ndarray
        Statistics of the clustered triggers of all slides.
    background_time : float
        Slid time searched (s): slides times the interior's length.
    n_slides : int
    gates : tuple of Gate
    segment_start : float
    """

    time: np.ndarray
    stat: np.ndarray
    in_edge: np.ndarray
    gated: np.ndarray
    background: np.ndarray = field(default_factory=lambda: np.zeros(0))
    background_time: float = 0.0
    n_slides: int = 0
    gates: tuple[Gate, ...] = ()
    segment_start: float = 0.0


def _gated(times: np.ndarray, gates: Sequence[Gate], before: float, after: float) -> np.ndarray:
    """Whether ``[t - before, t + after]`` overlaps a gate, per trigger time ``t``."""
    return np.array([any(g.covers(t - before, t + after) for g in gates) for t in times], dtype=bool)


def search_segment(
    conditioned: ConditionedStrain,
    score: ScoreFunction,
    *,
    window: float = 1.0,
    step: float = 0.1,
    merger_offset: float = 0.7,
    threshold: float = 0.0,
    cluster_window: float = 1.0,
    edge: float = 2.5,
    n_slides: int = 0,
    batch_size: int = 256,
) -> SegmentTriggers:
    """Score, cluster and slide one conditioned segment (module notes).

    Parameters
    ----------
    conditioned : ConditionedStrain
        From :func:`~skysift.gw.conditioning.condition_strain` (two detectors).
    score : callable
    window, step, merger_offset, threshold, cluster_window
        As :func:`run_search`.
    edge : float
        No event from a window overlapping the first or last ``edge`` s;
        at least ``conditioned.corrupt``.
    n_slides : int
        Time slides of the second detector (0: no background).
    batch_size : int

    Raises
    ------
    ValueError
        If ``edge`` is below the corrupt length, or the segment too short.
    """
    whitened = conditioned.whitened
    fs, n = whitened.sample_rate, whitened.data.shape[1]
    if edge < conditioned.corrupt - 1e-9:
        raise ValueError(f"edge {edge:g} s is shorter than the conditioning's corrupt ends ({conditioned.corrupt:g} s)")
    n_window, n_step, n_edge = int(round(window * fs)), int(round(step * fs)), int(round(edge * fs))
    if n - 2 * n_edge < n_window:
        raise ValueError(f"a segment of {n / fs:g} s has no room for a {window:g} s window beside {edge:g} s edges")
    first = np.arange(0, n - n_window + 1, n_step)
    scores = _score_windows(whitened.data, first, n_window, score, batch_size)
    inside = (first >= n_edge) & (first + n_window <= n - n_edge)
    times = whitened.start_time + first / fs + merger_offset
    kept = [cluster_triggers(times[mask], scores[mask], threshold=threshold, cluster_window=cluster_window) for mask in (inside, ~inside)]
    time = np.concatenate([kept[0][0], kept[1][0]])
    stat = np.concatenate([kept[0][1], kept[1][1]])
    in_edge = np.concatenate([np.zeros(kept[0][0].size, bool), np.ones(kept[1][0].size, bool)])
    gated = _gated(time, conditioned.gates, merger_offset, window - merger_offset)

    lo, hi = n_edge, n - n_edge
    offsets = slide_offsets((hi - lo) / fs, n_slides, window + LIGHT_TRAVEL_MARGIN, fs)
    interior_first = first[inside]
    background = []
    slid = whitened.data.copy()
    for offset in offsets:
        slid[1, lo:hi] = np.roll(whitened.data[1, lo:hi], offset)
        slid_scores = _score_windows(slid, interior_first, n_window, score, batch_size)
        background.append(cluster_triggers(times[inside], slid_scores, threshold=threshold, cluster_window=cluster_window)[1])
    return SegmentTriggers(
        time, stat, in_edge, gated, np.concatenate(background) if background else np.zeros(0), offsets.size * (hi - lo) / fs,
        int(offsets.size), conditioned.gates, whitened.start_time,
    )


def trigger_table(segments: Sequence[SegmentTriggers], *, search: str, edge: float | None):
    """One table of every segment's triggers with false-alarm rates from their pooled background.

    Columns ``time`` (GPS s), ``stat``, ``far`` (Hz; an upper limit where
    ``n_louder`` is 0), ``n_louder``, ``in_edge``, ``gated`` and
    ``segment_start``; metadata: the slides, background time, the FAR floor
    ``1 / background_time`` and the gates. Edge triggers get no FAR (NaN).
    ``edge`` is the search's edge region (s; None where the search only
    computes valid samples, as the matched filter).
    """
    from astropy.table import Table

    background = np.concatenate([s.background for s in segments]) if segments else np.zeros(0)
    background_time = float(sum(s.background_time for s in segments))
    time = np.concatenate([s.time for s in segments]) if segments else np.zeros(0)
    stat = np.concatenate([s.stat for s in segments]) if segments else np.zeros(0)
    in_edge = np.concatenate([s.in_edge for s in segments]) if segments else np.zeros(0, bool)
    far, n_louder = false_alarm_rates(stat, background, background_time)
    far = np.where(in_edge, np.nan, far)
    table = Table(
        {
            "time": time,
            "stat": stat,
            "far": far,
            "n_louder": np.where(in_edge, -1, n_louder),
            "in_edge": in_edge,
            "gated": np.concatenate([s.gated for s in segments]) if segments else np.zeros(0, bool),
            "segment_start": np.concatenate([np.full(s.time.size, s.segment_start) for s in segments]) if segments else np.zeros(0),
        }
    )
    table["time"].unit = table["segment_start"].unit = "s"
    table["far"].unit = "Hz"
    table["far"].description = "false-alarm rate from time slides; an upper limit (1 / background_time) where n_louder = 0"
    table["n_louder"].description = "background triggers at least as loud (-1: edge trigger, no FAR)"
    table["in_edge"].description = (f"window overlaps the first or last {edge:g} s of its segment (not an event)" if edge is not None
                                     else "never: only samples unaffected by the segment's ends are searched")
    table["gated"].description = "window overlaps a gated stretch of either detector"
    table.sort("time")
    table.meta.update(
        {
            "search": search,
            "edge_s": edge,
            "n_slides": [s.n_slides for s in segments],
            "background_time_s": background_time,
            "far_floor_hz": 1.0 / background_time if background_time > 0 else None,
            "n_background_triggers": int(background.size),
            "loudest_background_stat": float(background.max()) if background.size else None,
            "gates": [{"detector": g.detector, "time": g.time, "width": g.width, "taper": g.taper, "peak_sigma": g.peak} for s in segments for g in s.gates],
        }
    )
    return table


def _parse_strain(strain) -> list[tuple[str | None, Path]]:
    from skysift.gw.gwosc import parse_strain_arguments

    items = [strain] if isinstance(strain, (str, os.PathLike)) else list(strain)
    return [(item[0], Path(item[1])) if isinstance(item, tuple) else parse_strain_arguments([item])[0] for item in items]


def is_mlgwsc_strain(strain) -> bool:
    """Whether ``strain`` (as :func:`read_search_strain` takes it) is one MLGWSC-1 strain file."""
    from skysift.gw.gwosc import is_gwosc_file

    parsed = _parse_strain(strain)
    return len(parsed) == 1 and parsed[0][0] is None and parsed[0][1].suffix != ".gwf" and not is_gwosc_file(parsed[0][1])


def read_search_strain(strain, *, sample_rate: float) -> tuple[list[Strain], list[Path]]:
    """Segments to search and the files they came from.

    ``strain`` is one MLGWSC-1 strain file, or one GWOSC/LOSC HDF5 or frame
    file per detector (paths or ``"H1=path"`` strings, or (detector, path)
    pairs; :func:`skysift.gw.gwosc.read_real_strain`). Segments not at
    ``sample_rate`` are resampled (:func:`skysift.gw.gwosc.resample`).
    """
    from skysift.gw.gwosc import read_real_strain, resample
    from skysift.gw.mlgwsc import read_strain

    parsed = _parse_strain(strain)
    paths = [path for _, path in parsed]
    if is_mlgwsc_strain(strain):
        segments = [
            s if s.sample_rate == sample_rate else Strain(resample(s.data, s.sample_rate, sample_rate), s.start_time, 1.0 / sample_rate, s.detectors)
            for s in read_strain(paths[0])
        ]
        return segments, paths
    return read_real_strain(parsed, sample_rate=sample_rate), paths


def run_search(
    strain,
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
    sample_rate: float = 2048.0,
    edge: float = 2.5,
    gate_threshold: float = 50.0,
    n_slides: int = 0,
    triggers_path: str | os.PathLike[str] | None = None,
    context: RunContext | None = None,
) -> Path:
    """Search strain with a scoring function and write its events file (and trigger table).

    Parameters
    ----------
    strain : path, or sequence of paths / ``"DET=path"`` / (detector, path)
        One MLGWSC-1 strain file, or one GWOSC/LOSC HDF5 or frame file per
        detector (:func:`read_search_strain`).
    events_path : path
        MLGWSC-1 events file: the clustered triggers outside the edges.
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
        Scoring batch and conditioning settings
        (:func:`~skysift.gw.conditioning.condition_strain`).
    sample_rate : float
        The scoring function's rate (Hz); other data are resampled.
    edge : float
        Seconds at either end of a segment no event's window may overlap.
    gate_threshold : float
        Autogating threshold (robust sigma of whitened strain; 0: off).
    n_slides : int
        Time slides for the background (0: none, no FAR).
    triggers_path : path, optional
        Also write the trigger table (:func:`trigger_table`) as ECSV.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    """
    from skysift.gw.mlgwsc import write_events

    segments, paths = read_search_strain(strain, sample_rate=sample_rate)
    results = []
    for segment in segments:
        conditioned = condition_strain(segment, band=band, welch_segment=welch_segment, gate_threshold=gate_threshold)
        found = search_segment(conditioned, score, window=window, step=step, merger_offset=merger_offset, threshold=threshold,
                               cluster_window=cluster_window, edge=edge, n_slides=n_slides, batch_size=batch_size)
        results.append(found)
        log.info("searched %s segment at %.0f (%.0f s): %d events, %d edge triggers, %d gates, %d slides",
                 paths[0], segment.start_time, segment.duration, int((~found.in_edge).sum()), int(found.in_edge.sum()),
                 len(found.gates), found.n_slides)
    table = trigger_table(results, search="network", edge=edge)
    events = table[~table["in_edge"]]
    provenance = resolve_context(context, "gw_search").provenance(inputs=paths)
    if triggers_path is not None:
        from skysift.io import write_table

        write_table(table, triggers_path, provenance=provenance)
    return write_events(events_path, np.asarray(events["time"]), np.asarray(events["stat"]), var, provenance=provenance)
