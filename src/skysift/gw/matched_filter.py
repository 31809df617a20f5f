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
from skysift.gw.noise import welch_psd
from skysift.gw.series import PSD, Strain
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


def network_snr_series(h1: np.ndarray, l1: np.ndarray, sample_rate: float) -> np.ndarray:
    """Coincident network SNR per template and time (see the module notes)."""
    shift = int(np.ceil(COINCIDENCE_WINDOW * sample_rate))
    l1_max = maximum_filter1d(np.abs(l1), size=2 * shift + 1, axis=-1, mode="constant")
    return np.sqrt(np.abs(h1) ** 2 + l1_max**2)


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


def _search_strain(strain: Strain, templates: np.ndarray, template_duration: float, *, segment_duration: float, f_lower: float, f_high: float, welch_segment: float, template_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Network SNR maximised over the bank, per sample of ``strain`` (edges excluded)."""
    fs = strain.sample_rate
    n_seg = int(segment_duration * fs)
    delta_f = 1.0 / segment_duration
    frequencies = np.fft.rfftfreq(n_seg, 1.0 / fs)
    psd = welch_psd(strain.data, fs, segment_duration=welch_segment)
    weights = np.stack([_weights(values, frequencies, f_lower, f_high) for values in psd.at(frequencies)])
    head = int((template_duration + welch_segment / 2 + 1.0) * fs)
    tail = int((welch_segment / 2 + 1.0) * fs)
    stride = n_seg - head - tail
    if stride <= 0:
        raise ValueError("segment_duration too short for the templates and the PSD filter")
    n_total = strain.data.shape[1]
    network = np.zeros(n_total)
    covered = np.zeros(n_total, dtype=bool)
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
        network[begin + head : begin + n_seg - tail] = np.maximum(network[begin + head : begin + n_seg - tail], best)
        covered[begin + head : begin + n_seg - tail] = True
        if begin + n_seg >= n_total:
            break
    return network, covered


def matched_filter_search(
    strain_path: str | os.PathLike[str],
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
    context: RunContext | None = None,
) -> Path:
    """Run the matched-filter baseline over an MLGWSC-1 strain file and write events.

    Parameters
    ----------
    strain_path, events_path : path
    mass_range : (float, float)
        Bank masses when ``bank`` is not given (:func:`template_bank`).
    bank : dict, optional
        ``mass1``, ``mass2`` arrays.
    f_lower, f_high : float
        Filter band (Hz).
    segment_duration : float
        FFT segment (s); consecutive segments overlap by the longest template
        plus the PSD filter length so every sample is filtered validly once.
    welch_segment : float
        Welch segment length for the PSD (s).
    threshold : float
        Network SNR below which triggers are dropped.
    cluster_window, var : float
        Clustering half-width and the events' ``var`` (s).
    template_batch : int
        Templates per inverse-FFT batch (memory: 2 x batch x segment complex).
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    """
    from skysift.gw.mlgwsc import read_strain, write_events
    from skysift.gw.search import cluster_triggers

    bank = bank if bank is not None else template_bank(mass_range)
    template_duration = float(chirp_time(bank["mass1"], bank["mass2"], f_lower).max()) + 0.5
    all_times, all_stats = [], []
    cached: dict[tuple[float, float], np.ndarray] = {}
    for strain in read_strain(strain_path):
        fs = strain.sample_rate
        # Data shorter than the filter segment: use the longest power-of-two
        # seconds that fit, so the FFT length matches the templates.
        segment = float(min(segment_duration, 2.0 ** np.floor(np.log2(strain.duration))))
        if segment <= template_duration + welch_segment + 2.0:
            raise InputDataError(
                f"{strain_path}: a segment of {strain.duration:.0f} s is too short for the matched filter "
                f"(templates last up to {template_duration:.1f} s)"
            )
        key = (fs, segment)
        if key not in cached:
            n_seg = int(segment * fs)
            cached[key] = template_waveforms(bank, delta_f=1.0 / segment, n_freq=n_seg // 2 + 1, f_lower=f_lower)
        network, covered = _search_strain(strain, cached[key], template_duration, segment_duration=segment, f_lower=f_lower, f_high=min(f_high, fs / 2), welch_segment=welch_segment, template_batch=template_batch)
        # Loudest sample of every 0.1 s, then clustering.
        block = int(0.1 * fs)
        n_blocks = network.size // block
        blocks = np.where(covered[: n_blocks * block], network[: n_blocks * block], 0.0).reshape(n_blocks, block)
        peak = blocks.argmax(axis=1)
        times = strain.start_time + (np.arange(n_blocks) * block + peak) / fs
        times, stats = cluster_triggers(times, blocks[np.arange(n_blocks), peak], threshold=threshold, cluster_window=cluster_window)
        all_times.append(times)
        all_stats.append(stats)
        log.info("matched filter: %s, %d templates, %.0f s, %d events", strain_path, bank["mass1"].size, strain.duration, times.size)
    provenance = resolve_context(context, "gw_matched_filter").provenance(inputs=[strain_path], extra={"n_templates": str(bank["mass1"].size)})
    return write_events(events_path, np.concatenate(all_times), np.concatenate(all_stats), var, provenance=provenance)
