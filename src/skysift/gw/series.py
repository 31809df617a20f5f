"""Light containers that carry their sampling, in PyCBC's spirit.

:class:`Strain` is a multi-detector time series (start time, sample spacing,
detector names travel with the samples); :class:`PSD` is a one-sided power
spectral density (frequency grid and name travel with the values). Both hold
plain numpy arrays so that batched code stays vectorised, and both convert to
and from ``pycbc.types`` where PyCBC is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PSD", "Strain"]


@dataclass(frozen=True)
class PSD:
    """One-sided power spectral density on a uniform frequency grid.

    Attributes
    ----------
    delta_f : float
        Frequency spacing (Hz); the grid starts at 0 Hz.
    values : ndarray
        PSD in strain^2 / Hz, shape (..., n_freq): leading axes index
        detectors or samples of a batch. Zero marks bins without a model
        (below the low-frequency cutoff): they are excluded from every inner
        product and whitening filter.
    name : str
        Where the PSD came from (``"aLIGOZeroDetHighPower"``, ``"welch"``).
    """

    delta_f: float
    values: np.ndarray
    name: str = ""

    @property
    def frequencies(self) -> np.ndarray:
        """Frequencies of the bins (Hz)."""
        return np.arange(self.values.shape[-1]) * self.delta_f

    def at(self, frequencies: np.ndarray) -> np.ndarray:
        """Values linearly interpolated onto ``frequencies`` (0 outside the grid).

        Interpolating a zero-marked bin gives zero, so cutoffs survive.
        """
        frequencies = np.asarray(frequencies, dtype=float)
        grid = self.frequencies
        flat = self.values.reshape(-1, grid.size)
        out = np.stack([np.interp(frequencies, grid, row, left=0.0, right=0.0) for row in flat])
        # A bin next to a zero-marked one would be a blend; keep it excluded.
        index = np.clip(np.searchsorted(grid, frequencies), 0, grid.size - 1)
        lower = np.clip(index - 1, 0, grid.size - 1)
        out[(flat[:, index] <= 0) | (flat[:, lower] <= 0)] = 0.0
        return out.reshape(self.values.shape[:-1] + frequencies.shape)

    @classmethod
    def from_pycbc(cls, series) -> PSD:
        """From a ``pycbc.types.FrequencySeries``."""
        return cls(float(series.delta_f), np.asarray(series, dtype=float).copy(), name=type(series).__name__)

    def to_pycbc(self):
        """A ``pycbc.types.FrequencySeries`` (one-dimensional PSDs only)."""
        from pycbc.types import FrequencySeries

        if self.values.ndim != 1:
            raise ValueError("only a one-dimensional PSD converts to a pycbc FrequencySeries")
        return FrequencySeries(self.values.copy(), delta_f=self.delta_f)


@dataclass(frozen=True)
class Strain:
    """Strain of several detectors sampled together.

    Attributes
    ----------
    data : ndarray
        Shape (n_detectors, n_samples).
    start_time : float
        GPS time of the first sample (s).
    delta_t : float
        Sample spacing (s).
    detectors : tuple of str
        Detector names, one per row of ``data`` (e.g. ``("H1", "L1")``).
    """

    data: np.ndarray
    start_time: float
    delta_t: float
    detectors: tuple[str, ...] = field(default=("H1", "L1"))

    def __post_init__(self) -> None:
        if self.data.ndim != 2 or self.data.shape[0] != len(self.detectors):
            raise ValueError(f"Strain data must be (n_detectors={len(self.detectors)}, n), got {self.data.shape}")

    @property
    def sample_rate(self) -> float:
        return 1.0 / self.delta_t

    @property
    def duration(self) -> float:
        return self.data.shape[1] * self.delta_t

    @property
    def end_time(self) -> float:
        return self.start_time + self.duration

    @property
    def sample_times(self) -> np.ndarray:
        return self.start_time + np.arange(self.data.shape[1]) * self.delta_t

    def detector(self, name: str) -> np.ndarray:
        """The row of one detector."""
        return self.data[self.detectors.index(name)]
