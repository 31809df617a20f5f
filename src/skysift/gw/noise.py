"""Detector noise: the design PSD, coloured Gaussian noise, Welch PSDs, whitening.

Conventions (used throughout :mod:`skysift.gw`)
-----------------------------------------------
* Discrete spectra are numpy's raw ``rfft`` of ``n`` samples at rate ``fs``,
  ``X_k = sum_j x_j exp(-2 pi i j k / n)``, on the grid ``f_k = k fs / n``.
  The continuous Fourier transform of a waveform (PyCBC's ``h(f)``, strain/Hz)
  corresponds to ``X_k = fs * h(f_k)``.
* Stationary noise with one-sided PSD ``S`` has ``E|X_k|^2 = n fs S(f_k) / 2``.
* Whitening divides by ``sqrt(fs S / 2)`` and applies a smooth band-pass
  window ``w(f)``; the result is further divided by ``sqrt(band_fraction)``
  (the fraction of the spectrum the window passes) so that whitened,
  band-passed Gaussian noise has **unit variance** in the time domain and a
  flat spectrum in band. The CNN therefore sees inputs of order one.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import signal

from skysift.gw.series import PSD

__all__ = [
    "DEFAULT_BAND",
    "bandpass_window",
    "bandpassed_white_noise",
    "colored_noise_fd",
    "design_psd",
    "psd_files_in",
    "read_psd_file",
    "whiten",
    "whitening_filter",
    "welch_psd",
    "white_noise_fd",
]

#: Default whitening band (Hz).
DEFAULT_BAND = (20.0, 500.0)
#: Width of the cosine ramps at the band edges (Hz): a hard edge would ring.
_RAMP_HZ = (4.0, 40.0)


def design_psd(sample_rate: float, duration: float, *, f_low: float = 10.0, name: str = "aLIGOZeroDetHighPower") -> PSD:
    """An analytic design PSD from ``pycbc.psd`` on the ``rfft`` grid of a segment.

    Parameters
    ----------
    sample_rate : float
        Hz.
    duration : float
        Segment length (s); the grid spacing is ``1 / duration``.
    f_low : float
        Below this frequency the PSD is zero (excluded from inner products).
    name : str
        Any analytic PSD of ``pycbc.psd`` (default: Advanced LIGO zero-detuned
        high power, LIGO-T0900288).

    Returns
    -------
    PSD
    """
    import pycbc.psd

    n_time = int(round(sample_rate * duration))
    n_freq = n_time // 2 + 1
    delta_f = sample_rate / n_time
    series = pycbc.psd.from_string(name, n_freq, delta_f, f_low)
    return PSD(delta_f, np.asarray(series, dtype=float).copy(), name=name)


def read_psd_file(path: str | os.PathLike[str]) -> PSD:
    """A PSD stored as a PyCBC frequency series in HDF5 (dataset ``data``, attribute ``delta_f``).

    The layout of the MLGWSC-1 PSD files (``psds/H1/psd-*.hdf``).

    Raises
    ------
    InputDataError
        If the file is unreadable or lacks ``data`` or ``delta_f``.
    """
    import h5py

    from skysift.errors import InputDataError

    try:
        with h5py.File(path, "r") as handle:
            if "data" not in handle or "delta_f" not in handle["data"].attrs:
                raise InputDataError(f"{path}: not a PSD file (needs a 'data' dataset with a 'delta_f' attribute)")
            values = handle["data"][()].astype(float)
            delta_f = float(handle["data"].attrs["delta_f"])
    except OSError as error:
        raise InputDataError(f"{path}: not a readable HDF5 PSD file ({error})") from error
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InputDataError(f"{path}: PSD values must be one finite, non-negative row")
    return PSD(delta_f, values, name=os.fspath(path))


def psd_files_in(folder: str | os.PathLike[str], detectors: tuple[str, ...] = ("H1", "L1")) -> dict[str, tuple[str, ...]]:
    """PSD files per detector in a folder laid out as MLGWSC-1's ``psds/`` (``H1/*.hdf``, ``L1/*.hdf``).

    Raises
    ------
    InputDataError
        If the folder or a detector's files are missing.
    """
    from pathlib import Path

    from skysift.errors import InputDataError

    folder = Path(folder)
    files = {detector: tuple(sorted(str(p) for p in (folder / detector).glob("*.hdf"))) for detector in detectors}
    empty = [detector for detector, paths in files.items() if not paths]
    if empty:
        raise InputDataError(f"{folder}: no PSD files (*.hdf) for {empty} (expected {folder}/H1/*.hdf and {folder}/L1/*.hdf)")
    return files


def bandpass_window(frequencies: np.ndarray, f_low: float, f_high: float) -> np.ndarray:
    """Band-pass window: 1 in [f_low, f_high], cosine ramps outside, 0 beyond.

    The low ramp rises over ``f_low - 4 Hz .. f_low``; the high ramp falls over
    ``f_high .. f_high + 40 Hz`` (clipped at Nyquist).
    """
    frequencies = np.asarray(frequencies, dtype=float)
    window = np.zeros_like(frequencies)
    low_ramp, high_ramp = _RAMP_HZ
    window[(frequencies >= f_low) & (frequencies <= f_high)] = 1.0
    rising = (frequencies > f_low - low_ramp) & (frequencies < f_low)
    window[rising] = 0.5 - 0.5 * np.cos(np.pi * (frequencies[rising] - (f_low - low_ramp)) / low_ramp)
    falling = (frequencies > f_high) & (frequencies < f_high + high_ramp)
    window[falling] = 0.5 + 0.5 * np.cos(np.pi * (frequencies[falling] - f_high) / high_ramp)
    return window


def _band_fraction(window: np.ndarray, n_time: int) -> float:
    """Variance passed by ``window`` (on an rfft grid of ``n_time``) for unit white noise."""
    squared = window**2
    interior = squared[1:-1].sum() if n_time % 2 == 0 else squared[1:].sum()
    edges = squared[0] + (squared[-1] if n_time % 2 == 0 else 0.0)
    return float((edges + 2.0 * interior) / n_time)


def whitening_filter(psd_values: np.ndarray, frequencies: np.ndarray, sample_rate: float, n_time: int, band: tuple[float, float] = DEFAULT_BAND) -> np.ndarray:
    """The real filter that whitens and band-passes raw rfft spectra.

    Multiplying ``rfft(x)`` by this filter and inverting gives unit-variance
    whitened noise (see the module notes). Bins where the PSD is zero get 0.

    Parameters
    ----------
    psd_values : ndarray
        PSD on ``frequencies``, shape (..., n_freq).
    frequencies : ndarray
        The rfft grid of ``n_time`` samples.
    sample_rate : float
    n_time : int
    band : (float, float)
        Band-pass edges (Hz).
    """
    window = bandpass_window(frequencies, *band)
    psd_values = np.asarray(psd_values, dtype=float)
    with np.errstate(divide="ignore"):
        inverse_asd = np.where(psd_values > 0, 1.0 / np.sqrt(np.where(psd_values > 0, psd_values, 1.0) * sample_rate / 2.0), 0.0)
    return inverse_asd * window / np.sqrt(_band_fraction(window, n_time))


def white_noise_fd(rng: np.random.Generator, shape: tuple[int, ...], n_time: int) -> np.ndarray:
    """rfft of unit-variance white Gaussian noise of ``n_time`` samples, shape (*shape, n_freq).

    Drawn directly in the frequency domain: interior bins are complex normal
    with ``E|X|^2 = n_time``; the DC (and even-length Nyquist) bin is real.
    """
    n_freq = n_time // 2 + 1
    # float32 normals are twice as fast to draw; the spectrum itself is float64.
    spectrum = rng.standard_normal((*shape, n_freq, 2), dtype=np.float32).astype(np.float64).view(np.complex128)[..., 0]
    spectrum *= np.sqrt(n_time / 2.0)
    spectrum[..., 0] = spectrum[..., 0].real * np.sqrt(2.0)
    if n_time % 2 == 0:
        spectrum[..., -1] = spectrum[..., -1].real * np.sqrt(2.0)
    return spectrum


def bandpassed_white_noise(rng: np.random.Generator, shape: tuple[int, ...], n_time: int, sample_rate: float, band: tuple[float, float] = DEFAULT_BAND) -> np.ndarray:
    """Whitened Gaussian noise as :func:`whiten` produces it with the true PSD, (*shape, n_time).

    Whitening coloured Gaussian noise with its own PSD gives white noise, so
    this draws white noise and applies only the band-pass (unit variance).
    """
    frequencies = np.fft.rfftfreq(n_time, 1.0 / sample_rate)
    window = bandpass_window(frequencies, *band)
    spectrum = white_noise_fd(rng, shape, n_time) * (window / np.sqrt(_band_fraction(window, n_time)))
    return np.fft.irfft(spectrum, n=n_time, axis=-1)


def colored_noise_fd(rng: np.random.Generator, psd_values: np.ndarray, sample_rate: float, n_time: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """rfft of Gaussian noise with one-sided PSD ``psd_values`` (on the rfft grid of ``n_time``).

    White noise shaped by ``sqrt(fs S / 2)``: batched, no per-sample loop.
    ``irfft`` of the result is the (circular) coloured time series.
    """
    spectrum = white_noise_fd(rng, shape, n_time)
    spectrum *= np.sqrt(np.asarray(psd_values) * sample_rate / 2.0)
    return spectrum


def welch_psd(data: np.ndarray, sample_rate: float, *, segment_duration: float = 0.5, average: str = "median") -> PSD:
    """Welch PSD estimate along the last axis (batched over leading axes).

    Hann windows of ``segment_duration`` with 50 % overlap; the median average
    (bias-corrected by scipy, as ``pycbc.psd.welch`` does) resists loud
    signals in the data. No detrending: the band of interest starts far above
    the segment's fundamental frequency.

    Returns
    -------
    PSD
        ``values`` of shape (..., n_freq), ``delta_f = 1 / segment_duration``.
    """
    nperseg = int(round(segment_duration * sample_rate))
    _, values = signal.welch(data, fs=sample_rate, window="hann", nperseg=nperseg, noverlap=nperseg // 2, average=average, detrend=False, axis=-1)
    return PSD(sample_rate / nperseg, values, name="welch")


def whiten(data: np.ndarray, sample_rate: float, psd: PSD, band: tuple[float, float] = DEFAULT_BAND) -> np.ndarray:
    """Whiten and band-pass time series (along the last axis) with ``psd``.

    Parameters
    ----------
    data : ndarray
        (..., n_time) strain.
    sample_rate : float
    psd : PSD
        One PSD for all rows, or one per leading index (broadcast against
        ``data.shape[:-1]``); interpolated onto the rfft grid of ``data``.
    band : (float, float)

    Returns
    -------
    ndarray
        Whitened data, unit variance for Gaussian noise of that PSD. The
        filtering is circular: taper or discard the edges of long data.
    """
    n_time = data.shape[-1]
    frequencies = np.fft.rfftfreq(n_time, 1.0 / sample_rate)
    response = whitening_filter(psd.at(frequencies), frequencies, sample_rate, n_time, band)
    return np.fft.irfft(np.fft.rfft(data, axis=-1) * response, n=n_time, axis=-1)
