"""Background from time slides and false-alarm rates of real-data triggers.

Shifting one detector's data against the other's by more than the light
travel time plus the search window makes any coincidence accidental: a search
of slid data is a search of pure background (Was et al. 2010, Class. Quantum
Grav. 27, 015005; PyCBC's ``pycbc_coinc_findtrigs``). On a short segment the
slides are circular within the searchable interior (the part outside the
corrupt edges), as PyCBC slides its single-detector triggers within an
analysis chunk.

Offsets are spread evenly over ``[min_shift, T - min_shift]`` (``T`` the
interior's length): nearby offsets are not independent trials (PyCBC slides
every 0.1 s for the same reason: the background is better sampled, not more
independent), but every slid sample pairs data that share no signal.

False-alarm rate of a zero-lag trigger of statistic ``s``:
``FAR = N(background triggers with stat >= s) / T_background``,
``T_background = n_slides * T``. With no louder background trigger the FAR is
an upper limit, below ``1 / T_background``; :func:`false_alarm_rates`
returns ``1 / T_background`` for those and the count, 0, beside it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LIGHT_TRAVEL_MARGIN", "false_alarm_rates", "slide_offsets"]

#: H1-L1 light travel time (10 ms) plus margin (s).
LIGHT_TRAVEL_MARGIN = 0.015


def slide_offsets(interior: float, n_slides: int, min_shift: float, sample_rate: float) -> np.ndarray:
    """Circular slide offsets (samples), evenly spread over ``[min_shift, interior - min_shift]``.

    Parameters
    ----------
    interior : float
        Length of the data that are slid (s).
    n_slides : int
    min_shift : float
        Smallest shift either way (s): the window plus the light travel time.
    sample_rate : float

    Raises
    ------
    ValueError
        If the interior is too short for ``n_slides`` distinct offsets.
    """
    if n_slides <= 0:
        return np.zeros(0, dtype=int)
    lo, hi = int(np.ceil(min_shift * sample_rate)), int(np.floor((interior - min_shift) * sample_rate))
    if hi - lo + 1 < n_slides:
        raise ValueError(f"{interior:g} s of data leave no room for {n_slides} slides of at least {min_shift:g} s")
    offsets = np.unique(np.round(np.linspace(lo, hi, n_slides)).astype(int))
    return offsets


def false_alarm_rates(stats: np.ndarray, background: np.ndarray, background_time: float) -> tuple[np.ndarray, np.ndarray]:
    """FAR (Hz) of each zero-lag statistic against background triggers (module notes).

    Returns
    -------
    far : ndarray
        ``max(n_louder, 1) / background_time``: with ``n_louder == 0`` an upper limit.
    n_louder : ndarray
        Background triggers at least as loud.
    """
    stats = np.asarray(stats, dtype=float)
    if not background_time > 0:
        return np.full(stats.shape, np.nan), np.zeros(stats.shape, dtype=int)
    ordered = np.sort(np.asarray(background, dtype=float))
    n_louder = ordered.size - np.searchsorted(ordered, stats, side="left")
    return np.maximum(n_louder, 1) / background_time, n_louder
