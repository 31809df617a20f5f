"""The matched-filter baseline: a template bank, per-detector SNR, coincidence, events.

Per detector, the complex matched-filter SNR of template :math:`h` against data
:math:`d` with PSD :math:`S` (Allen et al. 2012, Phys. Rev. D 85, 122006):

.. math:: z(t) = \\frac{4}{\\sigma_h} \\int_{f_\\mathrm{low}}^{f_\\mathrm{high}}
          \\frac{\\tilde d(f) \\tilde h^*(f)}{S(f)} e^{2\\pi i f t}\\, df,
          \\qquad \\sigma_h^2 = 4 \\int \\frac{|\\tilde h(f)|^2}{S(f)} df,

the same quantity as ``pycbc.filter.matched_filter`` (checked in the tests),
computed here for batches of templates with one inverse FFT each. The PSD is
a Welch estimate from the whole detector segment (4 s Hann segments).

Network statistic: for every template and time,
:math:`\\rho_\\mathrm{net} = \\sqrt{|z_{H1}(t)|^2 + \\max_{|\\delta| \\le 15\\,\\mathrm{ms}} |z_{L1}(t+\\delta)|^2}`
(the H1-L1 light travel time is 10 ms; 5 ms margin), maximised over the bank;
the loudest sample of every 0.1 s is a trigger, triggers are clustered within
± 1 s and written as MLGWSC-1 events (``stat`` = network SNR). There is no
signal-consistency test: the test data are Gaussian.

Bank: non-spinning IMRPhenomD templates on a grid log-uniform in chirp mass
and uniform in mass ratio, both components inside ``mass_range`` (about
300 templates for 10-50 solar masses by default). Its minimal match can be
estimated with :func:`bank_match` against random signals.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.ndimage import maximum_filter1d

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.gw.background import LIGHT_TRAVEL_MARGIN, slide_offsets
from skysift.gw.conditioning import TAPER, ConditionedStrain, condition_strain
from skysift.gw.series import PSD
from skysift.gw.waveforms import chirp_time
from skysift.log import get_logger

__all__ = ["bank_match", "matched_filter_search", "network_snr_series", "snr_series", "template_bank", "template_waveforms"]

log = get_logger(__name__)

#: Coincidence window: H1-L1 light travel time plus margin (s).
COINCIDENCE_WINDOW = 0.015


def template_bank(mass_range: tuple[float, float] = (10.0, 50.0), *, n_chirp_mass: int = 40, n_mass_ratio: int = 12) -> dict[str, np.ndarray]:
    """Grid bank: ``mass1``, ``mass2`` (mass1 >= mass2) inside ``mass_range``.

    Chirp mass log-spaced over the range reachable, mass ratio ``q = m1/m2``
    uniform in ``[1, m_max / m_min]``; grid points outside the mass square are dropped.
    """
    low, high = mass_range
    mc_low = (low * low) ** 0.6 / (2 * low) ** 0.2
    mc_high = (high * high) ** 0.6 / (2 * high) ** 0.2
    chirp_masses = np.geomspace(mc_low, mc_high, n_chirp_mass)
    ratios = np.linspace(1.0, high / low, n_mass_ratio)
    mc, q = np.meshgrid(chirp_masses, ratios, indexing="ij")
    total = mc * (1 + q) ** 1.2 / q**0.6
    mass2 = total / (1 + q)
    mass1 = total - mass2
    inside = (mass2 >= low * (1 - 1e-9)) & (mass1 <= high * (1 + 1e-9))
    return {"mass1": mass1[inside], "mass2": mass2[inside]}


def template_waveforms(bank: dict[str, np.ndarray], *, delta_f: float, n_freq: int, f_lower: float = 20.0, approximant: str = "IMRPhenomD") -> np.ndarray:
    """Plus-polarisation FD templates (n_templates, n_freq), face-on, merger at t = 0."""
    from skysift.gw.waveforms import fd_waveforms

    n = bank["mass1"].size
    zeros = np.zeros(n)
    params = {"mass1": bank["mass1"], "mass2": bank["mass2"], "inclination": zeros, "coa_phase": zeros}
    params |= {f"spin{k}{axis}": zeros for k in (1, 2) for axis in "xyz"}
    hp, _ = fd_waveforms(params, approximant=approximant, delta_f=delta_f, n_freq=n_freq, f_lower=f_lower)
    return hp


def _weights(psd_values: np.ndarray, frequencies: np.ndarray, f_low: float, f_high: float) -> np.ndarray:
    use = (frequencies >= f_low) & (frequencies <= f_high) & (psd_values > 0)
    return np.where(use, 1.0 / np.where(psd_values > 0, psd_values, 1.0), 0.0)


def snr_series(data_fd: np.ndarray, templates: np.ndarray, weights: np.ndarray, delta_f: float, n_time: int) -> np.ndarray:
    """Complex matched-filter SNR time series, (n_templates, n_time).

    ``data_fd`` is the continuous-FT spectrum of the data (``rfft * dt``),
    ``templates`` (n_templates, n_freq) and ``weights`` = 1/S (0 outside the
    band). Sample ``j`` is the SNR for a merger at data time ``j / fs``.
    """
    sigma = np.sqrt(4.0 * delta_f * np.sum(np.abs(templates) ** 2 * weights, axis=-1))
    full = np.zeros((templates.shape[0], n_time), dtype=np.complex128)
    full[:, : templates.shape[1]] = 4.0 * delta_f * data_fd[None, :] * np.conj(templates) * weights[None, :]
    return np.fft.ifft(full, axis=-1) * n_time / sigma[:, None]


def _coincident_max(magnitude: np.ndarray, sample_rate: float) -> np.ndarray:
    """Maximum of ``magnitude`` within the coincidence window of each sample."""
    shift = int(np.ceil(COINCIDENCE_WINDOW * sample_rate))
    return maximum_filter1d(magnitude, size=2 * shift + 1, axis=-1, mode="constant")


def network_snr_series(h1: np.ndarray, l1: np.ndarray, sample_rate: float) -> np.ndarray:
    """Coincident network SNR per template and time (see the module notes)."""
    return np.sqrt(np.abs(h1) ** 2 + _coincident_max(np.abs(l1), sample_rate) ** 2)


def bank_match(bank: dict[str, np.ndarray], signals: dict[str, np.ndarray], psd: PSD, *, f_lower: float = 20.0, duration: float = 16.0, sample_rate: float = 2048.0) -> np.ndarray:
    """Best match (maximised over time and phase) of each signal with the bank.

    ``signals`` are source parameters (:func:`~skysift.gw.waveforms.source_parameters`);
    their plus polarisation is matched. The minimum over a random signal set
    estimates the bank's minimal match.
    """
    from skysift.gw.waveforms import fd_waveforms

    n_time = int(duration * sample_rate)
    n_freq = n_time // 2 + 1
    delta_f = 1.0 / duration
    frequencies = np.arange(n_freq) * delta_f
    psd_on_grid = psd.at(frequencies)
    weights = _weights(psd_on_grid if psd_on_grid.ndim == 1 else psd_on_grid[0], frequencies, f_lower, sample_rate / 2)
    templates = template_waveforms(bank, delta_f=delta_f, n_freq=n_freq, f_lower=f_lower)
    waves, _ = fd_waveforms(signals, approximant="IMRPhenomD", delta_f=delta_f, n_freq=n_freq, f_lower=f_lower)
    best = np.empty(waves.shape[0])
    for i, wave in enumerate(waves):
        norm = np.sqrt(4.0 * delta_f * np.sum(np.abs(wave) ** 2 * weights))
        best[i] = np.abs(snr_series(wave, templates, weights, delta_f, n_time)).max() / norm
    return best


def _block_triggers(network: np.ndarray, covered: np.ndarray, start_time: float, sample_rate: float, *, threshold: float, cluster_window: float) -> tuple[np.ndarray, np.ndarray]:
    """The loudest sample of every 0.1 s, then clustering (:func:`~skysift.gw.search.cluster_triggers`)."""
    from skysift.gw.search import cluster_triggers

    block = int(0.1 * sample_rate)
    n_blocks = network.size // block
    blocks = np.where(covered[: n_blocks * block], network[: n_blocks * block], 0.0).reshape(n_blocks, block)
    peak = blocks.argmax(axis=1)
    times = start_time + (np.arange(n_blocks) * block + peak) / sample_rate
    return cluster_triggers(times, blocks[np.arange(n_blocks), peak], threshold=threshold, cluster_window=cluster_window)


def _search_strain(
    conditioned: ConditionedStrain,
    templates: np.ndarray,
    template_duration: float,
    *,
    segment_duration: float,
    f_lower: float,
    f_high: float,
    template_batch: int,
    n_slides: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network SNR maximised over the bank, per sample (edges excluded), and per time slide.

    The data are the conditioned (high-passed, gated, tapered) strain; the
    inner products are weighted by the inverse PSD after inverse-spectrum
    truncation (``|H(f)|^2``, ``H`` the truncated whitening filter; as PyCBC). ``n_slides`` slides of the second detector's SNR
    (circular within the valid samples, :func:`~skysift.gw.background.slide_offsets`)
    need the segment to fit one FFT segment.

    Returns
    -------
    network : ndarray
        Zero-lag network SNR (0 where not valid).
    covered : ndarray of bool
        Valid samples.
    slid : ndarray
        (n_offsets, n_valid) network SNR of each slide over the valid samples.
    """
    strain = conditioned.strain
    fs = strain.sample_rate
    n_seg = int(segment_duration * fs)
    delta_f = 1.0 / segment_duration
    frequencies = np.fft.rfftfreq(n_seg, 1.0 / fs)
    in_band = (frequencies >= f_lower) & (frequencies <= f_high)
    weights = np.where(in_band, conditioned.inverse_psd(n_seg), 0.0)
    # |H|^2 reaches as far as the whole filter is long (its autocorrelation);
    # the tapered ends are not valid data either.
    reach = conditioned.filters.shape[1] / fs
    head = int(np.ceil((template_duration + reach + TAPER) * fs))
    tail = int(np.ceil((reach + TAPER) * fs))
    stride = n_seg - head - tail
    if stride <= 0:
        raise ValueError("segment_duration too short for the templates and the whitening filter")
    n_total = strain.data.shape[1]
    offsets = slide_offsets(stride / fs, n_slides, 1.0 + LIGHT_TRAVEL_MARGIN, fs)
    if offsets.size and n_total > n_seg:
        raise ValueError(f"time slides need a segment of at most {segment_duration:g} s")
    network = np.zeros(n_total)
    covered = np.zeros(n_total, dtype=bool)
    slid = np.zeros((offsets.size, n_seg - head - tail), dtype=np.float32)
    for begin in range(0, max(n_total - n_seg, 0) + stride, stride):
        begin = min(begin, n_total - n_seg)
        chunk = strain.data[:, begin : begin + n_seg]
        spectra = np.fft.rfft(chunk, axis=-1) / fs
        best = np.zeros(n_seg - head - tail)
        for lo in range(0, templates.shape[0], template_batch):
            batch = templates[lo : lo + template_batch]
            z_h = snr_series(spectra[0], batch, weights[0], delta_f, n_seg)
            z_l = snr_series(spectra[1], batch, weights[1], delta_f, n_seg)
            best = np.maximum(best, network_snr_series(z_h, z_l, fs)[:, head : n_seg - tail].max(axis=0))
            if offsets.size:
                h1 = (np.abs(z_h[:, head : n_seg - tail]) ** 2).astype(np.float32)
                l1 = (_coincident_max(np.abs(z_l), fs)[:, head : n_seg - tail] ** 2).astype(np.float32)
                for k, offset in enumerate(offsets):
                    np.maximum(slid[k], np.sqrt((h1 + np.roll(l1, offset, axis=1)).max(axis=0)), out=slid[k])
        network[begin + head : begin + n_seg - tail] = np.maximum(network[begin + head : begin + n_seg - tail], best)
        covered[begin + head : begin + n_seg - tail] = True
        if begin + n_seg >= n_total:
            break
    return network, covered, slid


def matched_filter_search(
    strain,
    events_path: str | os.PathLike[str],
    *,
    mass_range: tuple[float, float] = (10.0, 50.0),
    bank: dict[str, np.ndarray] | None = None,
    f_lower: float = 20.0,
    f_high: float = 1000.0,
    segment_duration: float = 64.0,
    welch_segment: float = 4.0,
    threshold: float = 6.0,
    cluster_window: float = 1.0,
    var: float = 0.3,
    template_batch: int = 16,
    sample_rate: float = 2048.0,
    gate_threshold: float = 50.0,
    n_slides: int = 0,
    triggers_path: str | os.PathLike[str] | None = None,
    context: RunContext | None = None,
) -> Path:
    """Run the matched-filter baseline over strain and write events (and a trigger table).

    Parameters
    ----------
    strain : path, or sequence of paths / ``"DET=path"`` / (detector, path)
        One MLGWSC-1 strain file, or one GWOSC/LOSC HDF5 or frame file per
        detector (:func:`skysift.gw.search.read_search_strain`).
    events_path : path
    mass_range : (float, float)
        Bank masses when ``bank`` is not given (:func:`template_bank`).
    bank : dict, optional
        ``mass1``, ``mass2`` arrays.
    f_lower, f_high : float
        Filter band (Hz).
    segment_duration : float
        FFT segment (s); consecutive segments overlap by the longest template
        plus the whitening filter's reach so every sample is filtered validly once.
    welch_segment : float
        Welch segment length for the PSD (s), also the whitening filter's
        length (:mod:`skysift.gw.conditioning`).
    threshold : float
        Network SNR below which triggers are dropped.
    cluster_window, var : float
        Clustering half-width and the events' ``var`` (s).
    template_batch : int
        Templates per inverse-FFT batch (memory: 2 x batch x segment complex).
    sample_rate : float
        Data at other rates are resampled to it (Hz).
    gate_threshold : float
        Autogating threshold (robust sigma of whitened strain; 0: off).
    n_slides : int
        Time slides of the second detector's SNR for the background (0:
        none); segments must fit one FFT segment.
    triggers_path : path, optional
        Also write the trigger table (:func:`skysift.gw.search.trigger_table`).
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    """
    from skysift.gw.mlgwsc import write_events
    from skysift.gw.search import SegmentTriggers, _gated, read_search_strain, trigger_table

    bank = bank if bank is not None else template_bank(mass_range)
    template_duration = float(chirp_time(bank["mass1"], bank["mass2"], f_lower).max()) + 0.5
    segments, paths = read_search_strain(strain, sample_rate=sample_rate)
    results = []
    cached: dict[tuple[float, float], np.ndarray] = {}
    for segment in segments:
        fs = segment.sample_rate
        # Data shorter than the filter segment: use the longest power-of-two
        # seconds that fit, so the FFT length matches the templates.
        fft_segment = float(min(segment_duration, 2.0 ** np.floor(np.log2(segment.duration))))
        if fft_segment <= template_duration + 2 * (welch_segment + TAPER):
            raise InputDataError(
                f"{paths[0]}: a segment of {segment.duration:.0f} s is too short for the matched filter "
                f"(templates last up to {template_duration:.1f} s)"
            )
        key = (fs, fft_segment)
        if key not in cached:
            n_seg = int(fft_segment * fs)
            cached[key] = template_waveforms(bank, delta_f=1.0 / fft_segment, n_freq=n_seg // 2 + 1, f_lower=f_lower)
        conditioned = condition_strain(segment, band=(f_lower, min(f_high, fs / 2)), welch_segment=welch_segment, gate_threshold=gate_threshold)
        network, covered, slid = _search_strain(conditioned, cached[key], template_duration, segment_duration=fft_segment, f_lower=f_lower,
                                                f_high=min(f_high, fs / 2), template_batch=template_batch, n_slides=n_slides)
        times, stats = _block_triggers(network, covered, segment.start_time, fs, threshold=threshold, cluster_window=cluster_window)
        valid_start = segment.start_time + np.flatnonzero(covered)[0] / fs if covered.any() else segment.start_time
        background = [_block_triggers(row.astype(float), np.ones(row.size, bool), valid_start, fs, threshold=threshold, cluster_window=cluster_window)[1] for row in slid]
        results.append(SegmentTriggers(
            times, stats, np.zeros(times.size, bool), _gated(times, conditioned.gates, template_duration, 0.5),
            np.concatenate(background) if background else np.zeros(0), slid.shape[0] * slid.shape[1] / fs, slid.shape[0],
            conditioned.gates, segment.start_time,
        ))
        log.info("matched filter: %s, %d templates, %.0f s, %d events, %d gates, %d slides", paths[0], bank["mass1"].size, segment.duration,
                 times.size, len(conditioned.gates), slid.shape[0])
    provenance = resolve_context(context, "gw_matched_filter").provenance(inputs=paths, extra={"n_templates": str(bank["mass1"].size)})
    table = trigger_table(results, search="matched_filter", edge=None)
    if triggers_path is not None:
        from skysift.io import write_table

        write_table(table, triggers_path, provenance=provenance)
    return write_events(events_path, np.asarray(table["time"]), np.asarray(table["stat"]), var, provenance=provenance)
