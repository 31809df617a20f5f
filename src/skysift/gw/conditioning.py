"""Conditioning real strain for a search: high-pass, taper, robust PSD, truncated whitening, gating.

Steps (per detector, on one segment), after PyCBC's ``pycbc_inspiral`` and
gwpy's ``TimeSeries.whiten``:

1. **High-pass**: an 8th-order Butterworth filter, run forwards and backwards
   (zero phase), at 3/4 of the band's lower edge. Real strain below 10 Hz is
   orders of magnitude louder than in band and would leak through every
   window's side lobes otherwise.
2. **PSD**: Welch with Hann windows of ``welch_segment`` s, 50 % overlap and
   the *median* average with its bias correction (:func:`~skysift.gw.noise.welch_psd`,
   as ``pycbc.psd.welch(avg_method="median")``): a loud glitch or signal in a
   few segments does not raise it.
3. **Inverse-spectrum truncation** (Allen et al. 2012, Sec. VI.A; PyCBC's
   ``inverse_spectrum_truncation``): the whitening and band-pass filter
   ``w(f) / sqrt(S(f))`` is transformed to the time domain, cut to
   ``filter_duration`` s centred on zero lag (by default the Welch segment's
   length, as PyCBC's ``psd-inverse-length`` equals its
   ``psd-segment-length``) and Hann-windowed. The filter is then strictly
   finite: whitened data are affected by nothing more than
   ``filter_duration / 2`` s away, and the notches at the 60 Hz mains
   harmonics, calibration lines and violin modes keep the PSD's resolution
   (a shorter filter smooths them away and the lines leak into the
   whitened data).
4. **Taper**: a Tukey window of ``TAPER`` s at either end, so that the data
   start and end at zero and the filter sees no step at the segment's edges.
5. **Whitening**: linear convolution with the truncated filter; whitened
   Gaussian noise has unit variance and a flat spectrum in band
   (:mod:`skysift.gw.noise`). The first and last ``TAPER + filter_duration/2``
   seconds (:attr:`ConditionedStrain.corrupt`) are not usable.
6. **Gating** (PyCBC's autogating, ``pycbc.strain.detect_loud_glitches`` and
   ``gate_data``): samples of the whitened data whose magnitude exceeds
   ``gate_threshold`` robust standard deviations are clustered within
   ``GATE_CLUSTER`` s; around each cluster's peak the high-passed strain is
   zeroed for ``± GATE_WIDTH`` s with ``GATE_TAPER`` s inverse-Tukey ramps
   (PyCBC's O3 defaults: 50 sigma, 0.5 s, 0.25 s, 0.25 s); the PSD is
   re-estimated and the data re-whitened. A real binary signal is tens of
   sigma below the threshold in whitened strain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from skysift.gw.noise import DEFAULT_BAND, _band_fraction, bandpass_window, welch_psd, whitening_filter
from skysift.gw.series import PSD, Strain
from skysift.log import get_logger

__all__ = [
    "GATE_CLUSTER",
    "GATE_TAPER",
    "GATE_WIDTH",
    "TAPER",
    "ConditionedStrain",
    "Gate",
    "apply_gates",
    "condition_strain",
    "find_glitches",
    "highpass",
    "truncated_whitening_filter",
    "tukey_edges",
]

log = get_logger(__name__)

#: Tukey taper at either end of a segment (s).
TAPER = 0.5
#: Autogating: cluster window, zeroed half-width and taper (s), PyCBC's O3 settings.
GATE_CLUSTER = 0.5
GATE_WIDTH = 0.25
GATE_TAPER = 0.25


@dataclass(frozen=True)
class Gate:
    """A loud glitch zeroed in one detector (PyCBC's ``gate_params`` row).

    Attributes
    ----------
    detector : str
    time : float
        GPS centre of the zeroed stretch (s).
    width : float
        Half-width of the zeroed stretch (s).
    taper : float
        Length of the inverse-Tukey ramp on either side (s).
    peak : float
        The glitch's peak in the whitened data (robust standard deviations).
    """

    detector: str
    time: float
    width: float = GATE_WIDTH
    taper: float = GATE_TAPER
    peak: float = float("nan")

    def covers(self, start: float, end: float) -> bool:
        """Whether the gated stretch (ramps included) overlaps ``[start, end]``."""
        reach = self.width + self.taper
        return bool(self.time - reach <= end and self.time + reach >= start)


@dataclass(frozen=True)
class ConditionedStrain:
    """A segment ready to search.

    Attributes
    ----------
    whitened : Strain
        Whitened, band-passed strain (unit variance in Gaussian noise).
    strain : Strain
        The high-passed, gated and tapered strain that was whitened (what a
        matched filter weights with ``|filter|^2``).
    psd : PSD
        Median-Welch PSD of each detector (after gating).
    filters : ndarray
        The truncated whitening filter of each detector, (n_detectors,
        n_taps), centred (sample ``n_taps // 2`` is zero lag).
    gates : tuple of Gate
    corrupt : float
        Seconds at either end affected by the taper or the filter's reach.
    """

    whitened: Strain
    strain: Strain
    psd: PSD
    filters: np.ndarray
    gates: tuple[Gate, ...]
    corrupt: float
    band: tuple[float, float] = DEFAULT_BAND

    def inverse_psd(self, n_time: int) -> np.ndarray:
        """``1 / S(f)`` after inverse-spectrum truncation, on the rfft grid of ``n_time``, (n_det, n_freq).

        The PSD the whitening assumes: ``|H|^2`` undone of the whitening's
        normalisation (:mod:`skysift.gw.noise`), tapered by the band-pass window.
        """
        fs = self.strain.sample_rate
        window = bandpass_window(np.fft.rfftfreq(n_time, 1.0 / fs), *self.band)
        return self.filter_response(n_time) ** 2 * (fs / 2.0) * _band_fraction(window, n_time)

    def filter_response(self, n_time: int) -> np.ndarray:
        """Frequency response of the whitening filters on the rfft grid of ``n_time`` samples, (n_det, n_freq).

        Real: the filters are symmetric about zero lag. ``|response|^2`` is
        the inverse of the PSD the whitening assumes (times a constant).
        """
        half = self.filters.shape[1] // 2
        circular = np.zeros((self.filters.shape[0], n_time))
        circular[:, : half + 1] = self.filters[:, half:]
        circular[:, n_time - half :] = self.filters[:, :half]
        return np.fft.rfft(circular, axis=-1).real


def highpass(data: np.ndarray, sample_rate: float, frequency: float, *, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth high-pass along the last axis (``sosfiltfilt``)."""
    sos = signal.butter(order, frequency, btype="highpass", fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, data, axis=-1)


def tukey_edges(n_time: int, sample_rate: float, taper: float = TAPER) -> np.ndarray:
    """A window that is 1 except for cosine ramps of ``taper`` s at both ends."""
    window = np.ones(n_time)
    n_taper = int(round(taper * sample_rate))
    if n_taper:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_taper) / n_taper)
        window[:n_taper] = ramp
        window[n_time - n_taper :] = ramp[::-1]
    return window


def truncated_whitening_filter(psd: PSD, sample_rate: float, *, band: tuple[float, float] = DEFAULT_BAND, filter_duration: float | None = None) -> np.ndarray:
    """Whitening and band-pass FIR filter(s) cut to ``filter_duration`` s (inverse-spectrum truncation).

    Parameters
    ----------
    psd : PSD
        One-sided PSD(s), shape (..., n_freq), on a grid reaching Nyquist.
    sample_rate : float
    band : (float, float)
        Band-pass edges (Hz), as :func:`~skysift.gw.noise.bandpass_window`.
    filter_duration : float, optional
        Length of the filter (s), at most (and by default) the PSD's
        ``1 / delta_f``. Shorter filters smooth the spectral lines' notches
        away: on GW150914's 32 s, a 2 s filter from a 4 s PSD leaves 10 times
        the in-band power around 60 Hz and 6 times around the 500 Hz violin
        modes in the whitened L1 data; 4 s leaves them flat.

    Returns
    -------
    ndarray
        Shape (..., n_taps), ``n_taps = filter_duration * fs + 1`` (odd),
        symmetric about the centre sample. Convolving strain with it gives
        unit-variance whitened noise (the module notes of :mod:`skysift.gw.noise`).
    """
    n_psd = int(round(sample_rate / psd.delta_f))
    filter_duration = 1.0 / psd.delta_f if filter_duration is None else filter_duration
    n_taps = int(round(filter_duration * sample_rate)) // 2 * 2 + 1
    if n_taps > n_psd + 1:
        raise ValueError(f"filter_duration {filter_duration} s exceeds the PSD's resolution ({1 / psd.delta_f} s)")
    frequencies = np.fft.rfftfreq(n_psd, 1.0 / sample_rate)
    response = whitening_filter(psd.at(frequencies), frequencies, sample_rate, n_psd, band)
    impulse = np.fft.irfft(response, n=n_psd, axis=-1)
    half = n_taps // 2
    centred = np.concatenate([impulse[..., n_psd - half :], impulse[..., : half + 1]], axis=-1)
    return centred * signal.windows.hann(n_taps + 2)[1:-1]


def _robust_std(values: np.ndarray) -> np.ndarray:
    median = np.median(values, axis=-1, keepdims=True)
    return 1.4826 * np.median(np.abs(values - median), axis=-1)


def find_glitches(whitened: Strain, threshold: float, *, exclude: float, cluster: float = GATE_CLUSTER) -> list[Gate]:
    """Peaks of ``|whitened|`` above ``threshold`` robust sigma, one per ``cluster`` s (edges excluded).

    Parameters
    ----------
    whitened : Strain
    threshold : float
        In robust standard deviations (1.4826 MAD) of each detector's data.
    exclude : float
        Seconds at either end not searched (the corrupt edges).
    cluster : float
        Excursions closer than this are one glitch (s).
    """
    fs = whitened.sample_rate
    n_exclude = int(round(exclude * fs))
    gates = []
    for row, detector in zip(whitened.data, whitened.detectors, strict=True):
        interior = row[n_exclude : row.size - n_exclude]
        if interior.size == 0:
            continue
        level = np.abs(interior) / _robust_std(interior)
        loud = np.flatnonzero(level > threshold)
        if loud.size == 0:
            continue
        # Split where consecutive loud samples are more than `cluster` apart.
        groups = np.split(loud, np.flatnonzero(np.diff(loud) > cluster * fs) + 1)
        for group in groups:
            peak = group[np.argmax(level[group])]
            gates.append(Gate(detector, whitened.start_time + (peak + n_exclude) / fs, peak=float(level[peak])))
    return gates


def apply_gates(strain: Strain, gates: list[Gate] | tuple[Gate, ...]) -> Strain:
    """Zero each gate's stretch with inverse-Tukey ramps (PyCBC's ``gate_data``)."""
    data = strain.data.copy()
    times = strain.sample_times
    for gate in gates:
        offset = np.abs(times - gate.time) - gate.width
        window = np.where(offset <= 0, 0.0, np.where(offset >= gate.taper, 1.0, 0.5 - 0.5 * np.cos(np.pi * np.clip(offset, 0, None) / gate.taper)))
        data[strain.detectors.index(gate.detector)] *= window
    return Strain(data, strain.start_time, strain.delta_t, strain.detectors)


def _whiten_once(strain: Strain, *, band: tuple[float, float], welch_segment: float, filter_duration: float | None) -> tuple[Strain, PSD, np.ndarray]:
    psd = welch_psd(strain.data, strain.sample_rate, segment_duration=welch_segment)
    filters = truncated_whitening_filter(psd, strain.sample_rate, band=band, filter_duration=filter_duration)
    tapered = strain.data * tukey_edges(strain.data.shape[1], strain.sample_rate)
    whitened = signal.fftconvolve(tapered, filters, mode="same", axes=-1)
    return Strain(whitened, strain.start_time, strain.delta_t, strain.detectors), psd, filters


def condition_strain(
    strain: Strain,
    *,
    band: tuple[float, float] = DEFAULT_BAND,
    welch_segment: float = 4.0,
    filter_duration: float | None = None,
    gate_threshold: float = 50.0,
    max_gating_passes: int = 2,
) -> ConditionedStrain:
    """High-pass, gate, taper and whiten a segment (the module notes).

    Parameters
    ----------
    strain : Strain
        One segment of all detectors.
    band : (float, float)
        Whitening band (Hz); the high-pass sits at ``0.75 * band[0]``.
    welch_segment : float
        Welch segment length (s).
    filter_duration : float, optional
        Truncated whitening filter length (s); default ``welch_segment``
        (:func:`truncated_whitening_filter`).
    gate_threshold : float
        Autogating threshold in robust sigma of the whitened data; 0 or less
        turns gating off.
    max_gating_passes : int
        Gate, re-whiten and look again at most this often (a gate can unmask
        a quieter glitch by lowering the PSD).

    Returns
    -------
    ConditionedStrain
    """
    fs = strain.sample_rate
    filter_duration = welch_segment if filter_duration is None else filter_duration
    corrupt = TAPER + filter_duration / 2.0
    if strain.duration < 2 * corrupt + welch_segment:
        raise ValueError(f"a segment of {strain.duration:g} s is too short to condition (taper, filter and PSD need {2 * corrupt + welch_segment:g} s)")
    data = strain.data - strain.data.mean(axis=1, keepdims=True)
    filtered = Strain(highpass(data, fs, 0.75 * band[0]), strain.start_time, strain.delta_t, strain.detectors)
    gates: list[Gate] = []
    whitened, psd, filters = _whiten_once(filtered, band=band, welch_segment=welch_segment, filter_duration=filter_duration)
    for _ in range(max_gating_passes if gate_threshold > 0 else 0):
        found = find_glitches(whitened, gate_threshold, exclude=corrupt)
        if not found:
            break
        gates += found
        for gate in found:
            log.info("gated %s at GPS %.3f (peak %.0f sigma in whitened strain)", gate.detector, gate.time, gate.peak)
        filtered = apply_gates(filtered, found)
        whitened, psd, filters = _whiten_once(filtered, band=band, welch_segment=welch_segment, filter_duration=filter_duration)
    tapered = Strain(filtered.data * tukey_edges(filtered.data.shape[1], fs), strain.start_time, strain.delta_t, strain.detectors)
    return ConditionedStrain(whitened, tapered, psd, filters, tuple(gates), corrupt, band)
