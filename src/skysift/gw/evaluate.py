"""Search evaluation as MLGWSC-1 defines it (Schäfer et al. 2023, section IV).

* False-alarm rate of a ranking statistic ``s`` from the background run:
  :math:`\\mathrm{FAR}(s) = N_\\mathrm{bg}(\\mathrm{stat} \\ge s) / T_\\mathrm{bg}`.
  Only FARs of at least :math:`1/T_\\mathrm{bg}` are resolved: lower values are
  not quoted.
* An injection is *found* at FAR threshold ``F`` when a foreground event with
  ``|time - tc| <= var`` has ``FAR(stat) <= F``.
* Sensitive distance, for injections uniform in Euclidean volume out to
  :math:`d_\\max` (as :func:`skysift.gw.mlgwsc.make_mlgwsc_test_data` draws
  them): :math:`V = \\frac{4}{3}\\pi d_\\max^3 \\, N_\\mathrm{found}/N_\\mathrm{inj}`
  and :math:`D = (3V/4\\pi)^{1/3} = d_\\max (N_\\mathrm{found}/N_\\mathrm{inj})^{1/3}`.
  (MLGWSC-1 draws chirp distances and reweights found injections by
  :math:`\\mathcal{M}^{5/2}`; with uniform-in-volume luminosity distances
  no weights are needed.) The error is from the binomial error on the
  found fraction.
* Efficiency: found fraction among injections with optimal network SNR
  >= 10 (design PSD), at the lowest resolvable FAR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SECONDS_PER_MONTH", "SearchSensitivity", "evaluate_search", "evaluate_searches", "event_far", "injection_far",
    "plot_sensitivity",
]

#: MLGWSC-1 quotes FARs per month (30 days).
SECONDS_PER_MONTH = 30 * 86400.0


def event_far(stat: np.ndarray, background_stat: np.ndarray, background_duration: float) -> np.ndarray:
    """FAR (1/s) of each ``stat``: background events at least as loud per background second."""
    ordered = np.sort(np.asarray(background_stat, dtype=float))
    louder = ordered.size - np.searchsorted(ordered, np.asarray(stat, dtype=float), side="left")
    return louder / float(background_duration)


def injection_far(injection_times: np.ndarray, event_times: np.ndarray, event_fars: np.ndarray, event_vars: np.ndarray) -> np.ndarray:
    """Lowest FAR of the foreground events that contain each injection time (inf if none)."""
    order = np.argsort(event_times)
    times, fars, variances = event_times[order], event_fars[order], event_vars[order]
    widest = float(variances.max()) if variances.size else 0.0
    out = np.full(np.asarray(injection_times).shape, np.inf)
    for i, tc in enumerate(np.asarray(injection_times, dtype=float)):
        lo, hi = np.searchsorted(times, [tc - widest, tc + widest])
        near = slice(lo, hi)
        hit = np.abs(times[near] - tc) <= variances[near]
        if hit.any():
            out[i] = fars[near][hit].min()
    return out


@dataclass(frozen=True)
class SearchSensitivity:
    """Sensitivity of one search on one foreground/background pair.

    Attributes
    ----------
    far : ndarray
        FAR thresholds (1/s), increasing from ``1 / background_duration``.
    found_fraction, sensitive_distance, distance_error : ndarray
        At each threshold (distance in Mpc).
    efficiency_snr10 : float
        Found fraction of injections with network SNR >= 10 at the lowest FAR.
    n_injections, n_injections_snr10 : int
    background_duration : float
        Seconds.
    max_distance : float
        Mpc.
    """

    far: np.ndarray
    found_fraction: np.ndarray
    sensitive_distance: np.ndarray
    distance_error: np.ndarray
    efficiency_snr10: float
    n_injections: int
    n_injections_snr10: int
    background_duration: float
    max_distance: float

    def summary(self) -> dict[str, float]:
        """Numbers at the lowest resolvable FAR (for reports)."""
        return {
            "lowest_far_per_month": float(self.far[0] * SECONDS_PER_MONTH),
            "sensitive_distance_mpc": float(self.sensitive_distance[0]),
            "sensitive_distance_error_mpc": float(self.distance_error[0]),
            "found_fraction": float(self.found_fraction[0]),
            "efficiency_snr10": float(self.efficiency_snr10),
            "n_injections": self.n_injections,
            "n_injections_snr10": self.n_injections_snr10,
            "background_duration_s": self.background_duration,
        }


def evaluate_search(
    foreground_events: Mapping[str, np.ndarray],
    background_events: Mapping[str, np.ndarray],
    injections: Mapping[str, np.ndarray],
    background_duration: float,
    *,
    max_distance: float,
    n_far: int = 30,
) -> SearchSensitivity:
    """MLGWSC-1 sensitivity curve of a search.

    Parameters
    ----------
    foreground_events, background_events : mapping
        ``time``, ``stat``, ``var`` arrays (:func:`skysift.gw.mlgwsc.read_events`).
    injections : mapping
        ``tc`` and ``network_snr`` arrays (:func:`skysift.gw.mlgwsc.read_injections`).
    background_duration : float
        Seconds of background data searched.
    max_distance : float
        Distance out to which injections are uniform in volume (Mpc).
    n_far : int
        Log-spaced FAR thresholds from ``1 / background_duration`` to the FAR
        of the quietest background event (at least one threshold).
    """
    if background_duration <= 0:
        raise ValueError("background_duration must be positive")
    background_stat = np.asarray(background_events["stat"], dtype=float)
    fars = event_far(np.asarray(foreground_events["stat"], dtype=float), background_stat, background_duration)
    inj_far = injection_far(np.asarray(injections["tc"], dtype=float), np.asarray(foreground_events["time"], dtype=float), fars, np.asarray(foreground_events["var"], dtype=float))
    lowest = 1.0 / background_duration
    highest = max(lowest, background_stat.size / background_duration)
    thresholds = np.unique(np.geomspace(lowest, highest, n_far)) if highest > lowest else np.array([lowest])
    n_inj = inj_far.size
    found = np.array([(inj_far <= f * (1 + 1e-12)).sum() for f in thresholds], dtype=float)
    fraction = found / max(n_inj, 1)
    distance = max_distance * np.cbrt(fraction)
    # dD/df = D / (3 f); binomial error on f (floored at one injection for f = 0).
    fraction_error = np.sqrt(np.maximum(fraction * (1 - fraction), 1.0 / max(n_inj, 1)) / max(n_inj, 1))
    error = max_distance * fraction_error / (3 * np.maximum(fraction, 1.0 / max(n_inj, 1)) ** (2.0 / 3.0))
    loud = np.asarray(injections["network_snr"], dtype=float) >= 10.0
    efficiency = float(np.mean(inj_far[loud] <= lowest * (1 + 1e-12))) if loud.any() else float("nan")
    return SearchSensitivity(thresholds, fraction, distance, error, efficiency, n_inj, int(loud.sum()), float(background_duration), float(max_distance))


def plot_sensitivity(curves: Mapping[str, SearchSensitivity], *, title: str = "Sensitive distance vs false-alarm rate"):
    """Sensitive distance against FAR (per month) for several searches -> Figure.

    Shaded bands are the binomial errors; only resolved FARs are shown.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4))
    axes = figure.add_subplot()
    for name, curve in curves.items():
        far = curve.far * SECONDS_PER_MONTH
        (line,) = axes.plot(far, curve.sensitive_distance, marker=".", label=f"{name} (eff. SNR>=10: {curve.efficiency_snr10:.2f})")
        axes.fill_between(far, curve.sensitive_distance - curve.distance_error, curve.sensitive_distance + curve.distance_error, color=line.get_color(), alpha=0.2)
    axes.set_xscale("log")
    axes.set_xlabel("false-alarm rate (per month)")
    axes.set_ylabel("sensitive distance (Mpc)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def evaluate_searches(
    searches: Mapping[str, tuple[str, str]],
    injections_path: str,
    background_strain_path: str,
    *,
    max_distance: float,
) -> dict[str, SearchSensitivity]:
    """Evaluate several searches of one MLGWSC-1 test set (files in, curves out).

    Parameters
    ----------
    searches : mapping of str to (path, path)
        Search name to its foreground and background events files.
    injections_path, background_strain_path : path
        The injections file and the background strain (whose duration sets the
        false-alarm rates).
    max_distance : float
        Distance (Mpc) out to which injections are uniform in volume.
    """
    from skysift.gw.mlgwsc import read_events, read_injections, read_strain

    background_duration = float(sum(segment.duration for segment in read_strain(background_strain_path)))
    injections = read_injections(injections_path)
    return {
        name: evaluate_search(read_events(foreground), read_events(background), injections, background_duration,
                              max_distance=max_distance)
        for name, (foreground, background) in searches.items()
    }
