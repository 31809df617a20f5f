"""Gravitational-wave training sets: whitened two-detector strain with labels.

Entry points
------------
* :func:`make_gw_training_set`: write a ``gw-training-set`` HDF5 product,
  parallel over chunks with dask (any ``dask.distributed.Client`` or none).
* :func:`simulate_gw_batch`: the fast batched generator behind it.
* :func:`simulate_gw_sample_pycbc`: the straightforward per-sample PyCBC path,
  kept as the peer the benchmark (``benchmarks/gw.py``) compares against.

The fast path
-------------
1. Intrinsic parameters (masses, spins, inclination, phase) are drawn once per
   waveform and the frequency-domain polarisations generated once; each is
   reused for ``reuse`` samples with their own sky position, polarisation
   angle, merger time and SNR (the distance follows from the SNR). Samples of
   one waveform share a ``waveform_id``: split training/validation by it.
2. Projection onto H1/L1 is done in the frequency domain (antenna patterns
   times polarisations, a phase ramp for the merger time plus the geocentre
   delay), batched over samples.
3. Each sample is rescaled so that its optimal network SNR (computed with the
   design PSD) equals a draw from ``snr_prior``.
4. Noise and whitening, two modes:

   ``whitening="welch"``
       Coloured Gaussian noise is drawn in the frequency domain (white noise
       shaped by the design ASD, independent draws per detector), the signal
       added, the buffer transformed to the time domain, a Welch PSD
       estimated from each sample and detector (batched), and the buffer
       whitened with it and band-passed. This is what the search does to
       real data.
   ``whitening="analytic"``
       Whitening with the *known* PSD maps coloured Gaussian noise to white
       Gaussian noise exactly, so the noise is drawn white (and band-passed)
       on the sample window directly and only the signal is whitened by the
       design ASD. Statistically identical to whitening with the true PSD; it
       differs from the Welch mode only by the PSD-estimation error (a few
       per cent per bin for the default 4 s buffer), which the search sees.

All samples are cropped to ``duration`` seconds and normalised so whitened
noise has unit variance (:mod:`skysift.gw.noise`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.gw.noise import DEFAULT_BAND, bandpassed_white_noise, colored_noise_fd, design_psd, welch_psd, whiten, whitening_filter
from skysift.gw.series import PSD
from skysift.gw.waveforms import (
    EXTRINSIC_PRIORS,
    REFERENCE_GPS,
    antenna_response,
    fd_waveforms,
    intrinsic_priors,
    optimal_snr,
    project_fd,
    source_parameters,
)
from skysift.io import ProductWriter
from skysift.log import get_logger
from skysift.parallel import compute_in_windows
from skysift.simulate.priors import Prior, Uniform, describe, sample_parameters

__all__ = [
    "DETECTORS",
    "PRODUCT_TYPE",
    "TABLE_COLUMNS",
    "GWSampleConfig",
    "make_gw_training_set",
    "simulate_gw_batch",
    "simulate_gw_sample_pycbc",
]

log = get_logger(__name__)

PRODUCT_TYPE = "gw-training-set"
DETECTORS = ("H1", "L1")
#: Default optimal network SNR prior (George & Huerta 2018 train on 5-20ish).
SNR_PRIOR: Prior = Uniform(5.0, 20.0, "")

#: Column name -> (unit, description); NaN for noise samples (SNRs are 0).
TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    "mass1": ("solMass", "primary mass (detector frame)"),
    "mass2": ("solMass", "secondary mass (detector frame)"),
    "spin1x": ("", "dimensionless spin of the primary, x"),
    "spin1y": ("", "dimensionless spin of the primary, y"),
    "spin1z": ("", "dimensionless spin of the primary, z (along L)"),
    "spin2x": ("", "dimensionless spin of the secondary, x"),
    "spin2y": ("", "dimensionless spin of the secondary, y"),
    "spin2z": ("", "dimensionless spin of the secondary, z"),
    "distance": ("Mpc", "luminosity distance implied by the SNR rescaling"),
    "ra": ("rad", "right ascension"),
    "dec": ("rad", "declination"),
    "polarization": ("rad", "polarisation angle"),
    "inclination": ("rad", "inclination of the orbital angular momentum"),
    "coa_phase": ("rad", "coalescence phase"),
    "tc": ("s", "GPS time of coalescence at the geocentre"),
    "merger_offset": ("s", "geocentric coalescence time after the first sample"),
    "gps_start": ("s", "GPS time of the first sample"),
    "network_snr": ("", "optimal network SNR (design PSD)"),
    "snr_H1": ("", "optimal SNR in H1 (design PSD)"),
    "snr_L1": ("", "optimal SNR in L1 (design PSD)"),
}


class GWSampleConfig:
    """Everything that defines how a sample is made (one object, passed to workers).

    Parameters
    ----------
    approximant : {"IMRPhenomD", "IMRPhenomXPHM"}
    sample_rate : float
        Hz.
    duration : float
        Sample length (s).
    buffer_duration : float
        Length of the simulated segment the sample is cut from (s); longer
        than ``duration`` so circular filtering and the early inspiral stay
        clear of the window.
    snr_prior : Prior
        Optimal network SNR of signal samples.
    mass_range : (float, float)
        Component masses (solar masses, detector frame).
    spin_max : float
    merger_window : (float, float)
        Merger time, as fractions of ``duration`` after the first sample.
    f_lower : float
        Waveform starting frequency (Hz).
    band : (float, float)
        Whitening band-pass (Hz).
    whitening : {"welch", "analytic"}
    welch_segment : float
        Welch segment length (s).
    psd_name : str
        Analytic PSD of ``pycbc.psd``.
    psd_files : mapping of str to sequence of str, optional
        PSD files per detector (:func:`~skysift.gw.noise.read_psd_file`, e.g.
        MLGWSC-1's ``psds/``): each sample's noise in each detector has one of
        them, drawn uniformly, instead of ``psd_name`` (noise that varies
        from sample to sample as dataset 3's varies in time; Welch whitening only).
    reuse : int
        Samples per intrinsic waveform (fast path only).
    """

    def __init__(
        self,
        *,
        approximant: str = "IMRPhenomD",
        sample_rate: float = 2048.0,
        duration: float = 1.0,
        buffer_duration: float = 4.0,
        snr_prior: Prior = SNR_PRIOR,
        mass_range: tuple[float, float] = (10.0, 50.0),
        spin_max: float = 0.8,
        merger_window: tuple[float, float] = (0.5, 0.9),
        f_lower: float = 20.0,
        band: tuple[float, float] = DEFAULT_BAND,
        whitening: str = "welch",
        welch_segment: float = 0.5,
        psd_name: str = "aLIGOZeroDetHighPower",
        psd_files: Mapping[str, Any] | None = None,
        reuse: int = 4,
    ) -> None:
        if whitening not in ("welch", "analytic"):
            raise ValueError(f"whitening must be 'welch' or 'analytic', got {whitening!r}")
        if buffer_duration < duration + 1.0:
            raise ValueError("buffer_duration must exceed duration by at least 1 s")
        if reuse < 1:
            raise ValueError("reuse must be >= 1")
        if psd_files is not None:
            missing = [d for d in DETECTORS if not psd_files.get(d)]
            if missing:
                raise ValueError(f"psd_files has no files for {missing}")
            if whitening != "welch":
                raise ValueError("PSD files need whitening='welch' (analytic whitening assumes one known PSD)")
        self.approximant = approximant
        self.sample_rate = float(sample_rate)
        self.duration = float(duration)
        self.buffer_duration = float(buffer_duration)
        self.snr_prior = snr_prior
        self.mass_range = tuple(map(float, mass_range))
        self.spin_max = float(spin_max)
        self.merger_window = tuple(map(float, merger_window))
        self.f_lower = float(f_lower)
        self.band = tuple(map(float, band))
        self.whitening = whitening
        self.welch_segment = float(welch_segment)
        self.psd_name = psd_name
        self.psd_files = {d: tuple(map(str, psd_files[d])) for d in DETECTORS} if psd_files is not None else None
        self.reuse = int(reuse)
        self.intrinsic_priors = intrinsic_priors(approximant, self.mass_range, self.spin_max)

    # derived sizes ----------------------------------------------------------
    @property
    def n_window(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_buffer(self) -> int:
        return int(round(self.buffer_duration * self.sample_rate))

    @property
    def window_start(self) -> float:
        """Start of the sample window inside the buffer (s): a 0.25 s margin before the end."""
        return self.buffer_duration - self.duration - 0.25

    @property
    def max_inspiral(self) -> float:
        """Longest inspiral kept before merger (s) so nothing wraps onto the window."""
        return self.window_start + self.merger_window[0] * self.duration - 0.25

    def attrs(self) -> dict[str, Any]:
        """Product metadata (``meta.*``)."""
        out: dict[str, Any] = {
            "approximant": self.approximant,
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "buffer_duration": self.buffer_duration,
            "detectors": ",".join(DETECTORS),
            "f_lower": self.f_lower,
            "band_low": self.band[0],
            "band_high": self.band[1],
            "whitening": self.whitening,
            "welch_segment": self.welch_segment,
            "psd": self.psd_name if self.psd_files is None else f"one of {len(self.psd_files[DETECTORS[0]])} files per detector, per sample",
            "reuse": self.reuse,
            "merger_window_low": self.merger_window[0],
            "merger_window_high": self.merger_window[1],
        }
        priors = {**self.intrinsic_priors, **EXTRINSIC_PRIORS, "network_snr": self.snr_prior}
        out.update({f"prior.{k}": v for k, v in describe(priors).items()})
        return out


@lru_cache(maxsize=8)
def _psd_table(paths: tuple[str, ...], sample_rate: float, n_time: int, f_low: float, f_high: float) -> np.ndarray:
    """PSD files on the rfft grid of ``n_time`` samples, (n_files, n_freq); zero below ``f_low`` as the design PSD.

    Each must be positive from ``f_low`` to ``f_high`` (the top of the band-pass).
    """
    from skysift.gw.noise import read_psd_file

    frequencies = np.fft.rfftfreq(n_time, 1.0 / sample_rate)
    table = np.stack([read_psd_file(path).at(frequencies) for path in paths])
    table[:, frequencies < f_low] = 0.0
    if np.any(table[:, (frequencies >= f_low) & (frequencies <= f_high)] <= 0):
        raise InputDataError(f"{paths[0]}...: a PSD file does not cover {f_low:g}-{f_high:g} Hz")
    return table


def _empty_columns(n: int) -> dict[str, np.ndarray]:
    columns = {name: np.full(n, np.nan) for name in TABLE_COLUMNS}
    for name in ("network_snr", "snr_H1", "snr_L1"):
        columns[name] = np.zeros(n)
    columns["gps_start"] = np.full(n, REFERENCE_GPS)
    return columns


def _draw_signals(n_signal: int, config: GWSampleConfig, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Intrinsic draws (one per waveform) and extrinsic draws (one per sample)."""
    n_waveforms = -(-n_signal // config.reuse)
    intrinsic = source_parameters(sample_parameters(config.intrinsic_priors, n_waveforms, rng))
    extrinsic = source_parameters(sample_parameters(EXTRINSIC_PRIORS, n_signal, rng))
    waveform_index = np.repeat(np.arange(n_waveforms), config.reuse)[:n_signal]
    params = {name: values[waveform_index] for name, values in intrinsic.items()} | extrinsic
    params["merger_offset"] = rng.uniform(*config.merger_window, size=n_signal) * config.duration
    params["network_snr"] = config.snr_prior.sample(rng, n_signal)
    return params, waveform_index


def simulate_gw_batch(n_signal: int, n_noise: int, *, seed: Any, config: GWSampleConfig, waveform_id_offset: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Make ``n_signal + n_noise`` whitened samples (fast batched path).

    Parameters
    ----------
    n_signal, n_noise : int
    seed : int or numpy.random.SeedSequence
        Everything drawn comes from this seed (pure in (config, seed)).
    config : GWSampleConfig
    waveform_id_offset : int
        Added to the per-batch waveform index (unique ids across chunks).

    Returns
    -------
    strain : ndarray
        float32 (n, 2, T), whitened H1 and L1, shuffled order.
    label : ndarray
        int8 (n,), 1 signal, 0 noise.
    columns : dict of ndarray
        :data:`TABLE_COLUMNS` plus ``waveform_id`` (-1 for noise).
    """
    rng = np.random.default_rng(seed)
    fs, n_buf, n_win = config.sample_rate, config.n_buffer, config.n_window
    n_total = n_signal + n_noise
    frequencies = np.fft.rfftfreq(n_buf, 1.0 / fs)
    delta_f = fs / n_buf
    psd = design_psd(fs, config.buffer_duration, f_low=config.f_lower * 0.5, name=config.psd_name)
    i0 = int(round(config.window_start * fs))
    psd_values = psd.values
    if config.psd_files is not None:
        # One PSD per sample and detector: (n_total, n_det, n_freq) broadcasts through SNRs and noise.
        # Drawn from a child seed, so the other draws do not depend on whether PSD files are used.
        psd_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
        choices = [_psd_table(config.psd_files[d], fs, n_buf, config.f_lower * 0.5, config.band[1]) for d in DETECTORS]
        psd_values = np.stack([table[psd_rng.integers(0, table.shape[0], n_total)] for table in choices], axis=1)

    columns = _empty_columns(n_total)
    waveform_id = np.full(n_total, -1, dtype=np.int64)
    signal_fd = np.zeros((n_total, len(DETECTORS), frequencies.size), dtype=np.complex128)
    if n_signal:
        params, waveform_index = _draw_signals(n_signal, config, rng)
        first = {k: v[:: config.reuse] for k, v in params.items()}
        hp, hc = fd_waveforms(first, approximant=config.approximant, delta_f=delta_f, n_freq=frequencies.size, f_lower=config.f_lower, max_duration=config.max_inspiral)
        hp, hc = hp[waveform_index], hc[waveform_index]
        tc = config.window_start + params["merger_offset"]
        fplus, fcross, delays = antenna_response(DETECTORS, params["ra"], params["dec"], params["polarization"], REFERENCE_GPS - config.window_start + tc)
        projected = project_fd(hp, hc, frequencies, fplus, fcross, delays, tc)
        detector_snr = optimal_snr(projected, psd_values if psd_values.ndim == 1 else psd_values[:n_signal], delta_f, f_low=config.f_lower)
        network = np.sqrt(np.sum(detector_snr**2, axis=1))
        scale = params["network_snr"] / network
        signal_fd[:n_signal] = projected * scale[:, None, None]
        for name in TABLE_COLUMNS:
            if name in params:
                columns[name][:n_signal] = params[name]
        columns["distance"][:n_signal] = 1.0 / scale  # waveforms were made at 1 Mpc
        columns["snr_H1"][:n_signal] = detector_snr[:, 0] * scale
        columns["snr_L1"][:n_signal] = detector_snr[:, 1] * scale
        columns["tc"][:n_signal] = REFERENCE_GPS + params["merger_offset"]
        waveform_id[:n_signal] = waveform_id_offset + waveform_index

    if config.whitening == "welch":
        noise = colored_noise_fd(rng, psd_values, fs, n_buf, shape=(n_total, len(DETECTORS)))
        data = np.fft.irfft(noise + fs * signal_fd, n=n_buf, axis=-1)
        estimate = welch_psd(data, fs, segment_duration=config.welch_segment)
        strain = whiten(data, fs, estimate, config.band)[..., i0 : i0 + n_win]
    else:
        response = whitening_filter(psd.values, frequencies, fs, n_buf, config.band)
        strain = np.zeros((n_total, len(DETECTORS), n_win))
        if n_signal:
            strain[:n_signal] = np.fft.irfft(fs * signal_fd[:n_signal] * response, n=n_buf, axis=-1)[..., i0 : i0 + n_win]
        strain += bandpassed_white_noise(rng, (n_total, len(DETECTORS)), n_win, fs, config.band)

    label = np.zeros(n_total, dtype=np.int8)
    label[:n_signal] = 1
    order = rng.permutation(n_total)
    columns = {name: values[order] for name, values in columns.items()}
    columns["waveform_id"] = waveform_id[order]
    return strain[order].astype(np.float32), label[order], columns


def simulate_gw_sample_pycbc(params: Mapping[str, float], *, seed: int, config: GWSampleConfig) -> tuple[np.ndarray, dict[str, float]]:
    """One sample the straightforward way, with PyCBC objects throughout (the peer).

    Per detector: ``pycbc.noise.noise_from_psd`` (its own seed), a time-domain
    waveform (``get_td_waveform``) projected with ``Detector.project_wave``
    (antenna patterns and delay), the optimal SNR with ``pycbc.filter.sigma``
    and the design PSD, rescaling to ``params["network_snr"]``, a Welch PSD
    from the data (``TimeSeries.psd``) and whitening/band-pass. Used by the
    benchmark and tests; not by :func:`make_gw_training_set`.

    Parameters
    ----------
    params : mapping
        :func:`~skysift.gw.waveforms.source_parameters` of one signal plus
        ``merger_offset`` and ``network_snr``; an empty mapping gives noise.
    seed : int
    config : GWSampleConfig

    Returns
    -------
    strain : ndarray
        float32 (2, T).
    info : dict
        ``snr_H1``, ``snr_L1``, ``distance``.
    """
    import pycbc.noise
    import pycbc.psd
    from pycbc.detector import Detector
    from pycbc.filter import sigma
    from pycbc.types import TimeSeries
    from pycbc.waveform import get_td_waveform

    fs, n_buf = config.sample_rate, config.n_buffer
    delta_t = 1.0 / fs
    psd = pycbc.psd.from_string(config.psd_name, n_buf // 2 + 1, 1.0 / config.buffer_duration, config.f_lower * 0.5)
    start = REFERENCE_GPS - config.window_start
    streams = []
    for k, _ in enumerate(DETECTORS):
        noise = pycbc.noise.noise_from_psd(n_buf, delta_t, psd, seed=int(seed) * 2 + k)
        noise.start_time = start
        streams.append(noise)
    info = {"snr_H1": 0.0, "snr_L1": 0.0, "distance": float("nan")}
    if params:
        hp, hc = get_td_waveform(
            approximant=config.approximant,
            **{k: float(params[k]) for k in ("mass1", "mass2", "spin1x", "spin1y", "spin1z", "spin2x", "spin2y", "spin2z", "inclination", "coa_phase")},
            distance=1.0,
            delta_t=delta_t,
            f_lower=config.f_lower,
        )
        tc = REFERENCE_GPS + float(params["merger_offset"])
        hp.start_time += tc
        hc.start_time += tc
        projected = []
        for name in DETECTORS:
            h = Detector(name).project_wave(hp, hc, float(params["ra"]), float(params["dec"]), float(params["polarization"]))
            # Place it on the noise grid (the detector delay is already in h's start time).
            placed = TimeSeries(np.zeros(n_buf), delta_t=delta_t, epoch=start)
            offset = int(round((float(h.start_time) - start) * fs))
            lo, hi = max(offset, 0), min(offset + len(h), n_buf)
            placed.data[lo:hi] = np.asarray(h)[lo - offset : hi - offset]
            projected.append(placed)
        snrs = np.array([sigma(h, psd=psd, low_frequency_cutoff=config.f_lower) for h in projected])
        scale = float(params["network_snr"]) / float(np.sqrt(np.sum(snrs**2)))
        for stream, h in zip(streams, projected):
            stream.data += scale * np.asarray(h)
        info = {"snr_H1": snrs[0] * scale, "snr_L1": snrs[1] * scale, "distance": 1.0 / scale}
    i0 = int(round(config.window_start * fs))
    out = np.empty((len(DETECTORS), config.n_window), dtype=np.float32)
    for k, stream in enumerate(streams):
        estimate = stream.psd(config.welch_segment, avg_method="median")
        out[k] = whiten(np.asarray(stream), fs, PSD.from_pycbc(estimate), config.band)[i0 : i0 + config.n_window]
    return out, info


def make_gw_training_set(
    out_path: str | os.PathLike[str],
    n_samples: int,
    *,
    approximant: str = "IMRPhenomD",
    sample_rate: float = 2048.0,
    duration: float = 1.0,
    snr_prior: Prior | None = None,
    mass_range: tuple[float, float] = (10.0, 50.0),
    seed: int = 0,
    signal_fraction: float = 0.5,
    whitening: str = "welch",
    reuse: int = 4,
    chunk_size: int = 64,
    band: tuple[float, float] = DEFAULT_BAND,
    context: RunContext | None = None,
    **config_kwargs: Any,
) -> Path:
    """Write a ``gw-training-set`` HDF5 product.

    Parameters
    ----------
    out_path : str or path-like
        Destination ``.h5`` (written atomically).
    n_samples : int
        Samples in total.
    approximant : {"IMRPhenomD", "IMRPhenomXPHM"}
    sample_rate : float
        Hz (default 2048).
    duration : float
        Sample length in seconds (default 1).
    snr_prior : Prior, optional
        Optimal network SNR of signals (default uniform 5-20).
    mass_range : (float, float)
        Component masses, solar masses.
    seed : int
        Master seed; chunk ``i`` uses child ``i`` of ``SeedSequence(seed)``, so
        the product does not depend on the cluster or the number of workers.
    signal_fraction : float
        Fraction of samples with a signal (``label`` 1).
    whitening : {"welch", "analytic"}
        See the module notes.
    reuse : int
        Samples per intrinsic waveform.
    chunk_size : int
        Samples per dask task. Small enough that a chunk's temporaries (the
        frequency-domain buffers are ``chunk x 2 x n_freq`` complex128, 17 MB
        at 64 samples of 8 s at 2048 Hz) stay under glibc's largest mmap
        threshold and are reused (:func:`skysift.memory.retain_freed_memory`)
        instead of faulted in afresh: 64 made the kernel 1.5x faster than 512.
    band : (float, float)
        Band-pass (Hz).
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    **config_kwargs
        Further :class:`GWSampleConfig` options (``buffer_duration``,
        ``merger_window``, ``f_lower``, ``spin_max``, ``psd_name``...).

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Array ``strain``: (N, 2, T) float32, whitened H1 and L1 (unit variance for
    noise). Table: ``label`` (int8), ``waveform_id`` (int64, -1 for noise)
    and :data:`TABLE_COLUMNS` with units. Samples of one ``waveform_id``
    share intrinsic parameters: keep them in the same train/validation split.
    """
    import dask

    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if not 0.0 <= signal_fraction <= 1.0:
        raise ValueError(f"signal_fraction must be in [0, 1], got {signal_fraction}")
    config = GWSampleConfig(
        approximant=approximant,
        sample_rate=sample_rate,
        duration=duration,
        snr_prior=snr_prior or SNR_PRIOR,
        mass_range=mass_range,
        whitening=whitening,
        reuse=reuse,
        band=band,
        **config_kwargs,
    )
    sizes = [min(chunk_size, n_samples - start) for start in range(0, n_samples, chunk_size)]
    n_signal_total = int(round(signal_fraction * n_samples))
    signal_counts = np.diff(np.round(np.cumsum([0, *sizes]) * (n_signal_total / n_samples)).astype(int))
    chunk_seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    offsets = np.cumsum([0, *signal_counts[:-1]])
    tasks = [
        dask.delayed(simulate_gw_batch)(int(n_sig), int(size - n_sig), seed=chunk_seed, config=config, waveform_id_offset=int(offset))
        for size, n_sig, chunk_seed, offset in zip(sizes, signal_counts, chunk_seeds, offsets)
    ]
    provenance = resolve_context(context, "gw_training_set").provenance(inputs=(), seed=seed)
    attrs = config.attrs() | {"signal_fraction": signal_fraction}
    log.info("gw training set: %d samples (%s, %g s at %g Hz) in %d chunks", n_samples, approximant, duration, sample_rate, len(tasks))
    # Whitened noise barely compresses (gzip 4 saves 16 % at ~30 MB/s, a third of the
    # stage's time at 48,000 samples): the gzip filter is kept at level 0 (stored, ~300 MB/s),
    # so every reader opens the product unchanged.
    with ProductWriter(out_path, PRODUCT_TYPE, provenance, attrs=attrs, compression_level=0) as writer:
        writer.add_array("strain", (len(DETECTORS), config.n_window), "float32", description="whitened, band-passed H1 and L1 strain (unit-variance noise)")
        writer.add_column("label", "int8", description="1 signal, 0 noise")
        writer.add_column("waveform_id", "int64", description="intrinsic waveform shared by samples (-1: noise)")
        for name, (unit, description) in TABLE_COLUMNS.items():
            writer.add_column(name, "float64", unit=unit, description=description)
        for strain, label, columns in compute_in_windows(tasks, client=context.client if context else None,
            scheduler=context.scheduler if context else None, desc="gw chunks"):
            writer.append({"strain": strain}, {"label": label, **columns})
    return Path(out_path)
