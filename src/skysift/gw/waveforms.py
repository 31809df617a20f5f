"""Compact-binary source priors, frequency-domain waveforms and network projection.

Injector contract (:mod:`skysift.simulate.priors`): parameters are drawn from
the declared priors below with :func:`~skysift.simulate.priors.sample_parameters`,
turned into physical source parameters by :func:`source_parameters`, and every
injection is a pure function of (data, parameters, rng).

Waveforms come from LALSuite through ``pycbc.waveform.get_fd_waveform``
(IMRPhenomD: aligned spins, dominant mode; IMRPhenomXPHM: precessing spins,
higher modes). The detector response is computed in the frequency domain:

.. math:: \\tilde h_d(f) = [F_+^d \\tilde h_+(f) + F_\\times^d \\tilde h_\\times(f)]
          \\, e^{-2\\pi i f (t_c + \\Delta t_d)}

with antenna patterns :math:`F_{+,\\times}^d(\\alpha, \\delta, \\psi, t)` and the
delay :math:`\\Delta t_d` from the geocentre (``pycbc.detector.Detector``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from skysift.simulate.priors import Prior, Uniform

__all__ = [
    "APPROXIMANTS",
    "EXTRINSIC_PRIORS",
    "REFERENCE_GPS",
    "antenna_response",
    "chirp_mass",
    "chirp_time",
    "fd_waveforms",
    "intrinsic_priors",
    "optimal_snr",
    "project_fd",
    "source_parameters",
]

APPROXIMANTS = ("IMRPhenomD", "IMRPhenomXPHM")
#: GPS time about which samples are placed (2019-04-01, O3a); antenna patterns
#: depend on it only through sidereal time, and right ascension is uniform.
REFERENCE_GPS = 1238166018.0

#: Extrinsic parameters. Angles are drawn as uniform auxiliary variables
#: (``sin_dec``, ``cos_inclination``) so the sky and orientation are isotropic.
EXTRINSIC_PRIORS: dict[str, Prior] = {
    "ra": Uniform(0.0, 2 * np.pi, "rad"),
    "sin_dec": Uniform(-1.0, 1.0, ""),
    "polarization": Uniform(0.0, 2 * np.pi, "rad"),
}


def intrinsic_priors(approximant: str = "IMRPhenomD", mass_range: tuple[float, float] = (10.0, 50.0), spin_max: float = 0.8) -> dict[str, Prior]:
    """Declared priors of the intrinsic parameters (masses detector-frame).

    IMRPhenomD takes aligned spins ``spin1z``, ``spin2z`` uniform in
    ``[-spin_max, spin_max]``; IMRPhenomXPHM takes isotropic spins with
    magnitudes uniform in ``[0, spin_max]``. Both masses are drawn uniform in
    ``mass_range`` and ordered so that ``mass1 >= mass2``.
    """
    if approximant not in APPROXIMANTS:
        raise ValueError(f"unknown approximant {approximant!r}; choose one of {APPROXIMANTS}")
    low, high = mass_range
    priors: dict[str, Prior] = {
        "mass_a": Uniform(low, high, "solMass"),
        "mass_b": Uniform(low, high, "solMass"),
        "cos_inclination": Uniform(-1.0, 1.0, ""),
        "coa_phase": Uniform(0.0, 2 * np.pi, "rad"),
    }
    if approximant == "IMRPhenomD":
        priors |= {"spin1z": Uniform(-spin_max, spin_max, ""), "spin2z": Uniform(-spin_max, spin_max, "")}
    else:
        for k in (1, 2):
            priors |= {
                f"a{k}": Uniform(0.0, spin_max, ""),
                f"cos_tilt{k}": Uniform(-1.0, 1.0, ""),
                f"phi{k}": Uniform(0.0, 2 * np.pi, "rad"),
            }
    return priors


def source_parameters(draw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Physical parameters from a prior draw (masses ordered, angles from auxiliaries).

    Returns ``mass1``, ``mass2``, ``spin{1,2}{x,y,z}``, ``inclination``,
    ``coa_phase`` and, where drawn, ``ra``, ``dec``, ``polarization``.
    """
    out: dict[str, np.ndarray] = {}
    if "mass_a" in draw:
        out["mass1"] = np.maximum(draw["mass_a"], draw["mass_b"])
        out["mass2"] = np.minimum(draw["mass_a"], draw["mass_b"])
        n = out["mass1"].size
        for k in (1, 2):
            if f"a{k}" in draw:
                sin_tilt = np.sqrt(1.0 - draw[f"cos_tilt{k}"] ** 2)
                out[f"spin{k}x"] = draw[f"a{k}"] * sin_tilt * np.cos(draw[f"phi{k}"])
                out[f"spin{k}y"] = draw[f"a{k}"] * sin_tilt * np.sin(draw[f"phi{k}"])
                out[f"spin{k}z"] = draw[f"a{k}"] * draw[f"cos_tilt{k}"]
            else:
                out[f"spin{k}x"] = np.zeros(n)
                out[f"spin{k}y"] = np.zeros(n)
                out[f"spin{k}z"] = np.asarray(draw[f"spin{k}z"], dtype=float)
        out["inclination"] = np.arccos(draw["cos_inclination"])
        out["coa_phase"] = np.asarray(draw["coa_phase"], dtype=float)
    if "ra" in draw:
        out["ra"] = np.asarray(draw["ra"], dtype=float)
        out["dec"] = np.arcsin(draw["sin_dec"])
        out["polarization"] = np.asarray(draw["polarization"], dtype=float)
    return out


def chirp_mass(mass1: np.ndarray, mass2: np.ndarray) -> np.ndarray:
    """Chirp mass (same unit as the masses)."""
    return (mass1 * mass2) ** 0.6 / (mass1 + mass2) ** 0.2


def chirp_time(mass1: np.ndarray, mass2: np.ndarray, frequency: float | np.ndarray) -> np.ndarray:
    """Leading-order (Newtonian) time from gravitational-wave ``frequency`` to merger (s).

    :math:`\\tau_0 = \\frac{5}{256} (\\pi f)^{-8/3} (G\\mathcal{M}/c^3)^{-5/3}`.
    """
    mc_seconds = chirp_mass(np.asarray(mass1, float), np.asarray(mass2, float)) * 4.925490947641267e-06
    return 5.0 / 256.0 * (np.pi * np.asarray(frequency, float)) ** (-8.0 / 3.0) * mc_seconds ** (-5.0 / 3.0)


def _start_frequency(mass1: float, mass2: float, f_lower: float, max_duration: float) -> float:
    """Lowest frequency whose chirp time fits in ``max_duration`` (>= ``f_lower``)."""
    tau = float(chirp_time(mass1, mass2, f_lower))
    if tau <= max_duration:
        return f_lower
    return f_lower * (max_duration / tau) ** (-3.0 / 8.0)


def fd_waveforms(
    params: Mapping[str, np.ndarray],
    *,
    approximant: str,
    delta_f: float,
    n_freq: int,
    f_lower: float = 20.0,
    max_duration: float | None = None,
    distance: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frequency-domain plus and cross polarisations, one row per parameter set.

    Parameters
    ----------
    params : mapping
        :func:`source_parameters` output (only the intrinsic keys are used).
    approximant : {"IMRPhenomD", "IMRPhenomXPHM"}
    delta_f : float
        Grid spacing (Hz): ``1 / buffer duration``.
    n_freq : int
        Bins of the grid (``n_time // 2 + 1``).
    f_lower : float
        Starting frequency (Hz).
    max_duration : float, optional
        Longest inspiral to keep: for light systems the waveform starts at
        the frequency whose chirp time is ``max_duration`` (with a smooth 10 %
        taper) so that the cyclic buffer does not wrap the early inspiral onto
        the merger. The dropped part lies far outside a short sample window.
    distance : float
        Luminosity distance (Mpc).

    Returns
    -------
    hp, hc : ndarray
        complex128 (n, n_freq), continuous Fourier transforms (strain/Hz) with
        the merger at t = 0 (cyclically).
    """
    from pycbc.waveform import get_fd_waveform

    n = np.asarray(params["mass1"]).size
    hp_all = np.zeros((n, n_freq), dtype=np.complex128)
    hc_all = np.zeros((n, n_freq), dtype=np.complex128)
    frequencies = np.arange(n_freq) * delta_f
    f_final = (n_freq - 1) * delta_f
    for i in range(n):
        m1, m2 = float(params["mass1"][i]), float(params["mass2"][i])
        f_start = f_lower if max_duration is None else _start_frequency(m1, m2, f_lower, max_duration)
        # Generate from a little below f_start so the taper acts on real signal.
        f_gen = f_start / 1.1 if f_start > f_lower else f_lower
        hp, hc = get_fd_waveform(
            approximant=approximant,
            mass1=m1,
            mass2=m2,
            spin1x=float(params["spin1x"][i]),
            spin1y=float(params["spin1y"][i]),
            spin1z=float(params["spin1z"][i]),
            spin2x=float(params["spin2x"][i]),
            spin2y=float(params["spin2y"][i]),
            spin2z=float(params["spin2z"][i]),
            inclination=float(params["inclination"][i]),
            coa_phase=float(params["coa_phase"][i]),
            distance=distance,
            delta_f=delta_f,
            f_lower=f_gen,
            f_final=f_final,
        )
        length = min(len(hp), n_freq)
        hp_all[i, :length] = np.asarray(hp)[:length]
        hc_all[i, :length] = np.asarray(hc)[:length]
        if f_start > f_lower:
            ramp = np.clip((frequencies - f_gen) / (f_start - f_gen), 0.0, 1.0)
            taper = 0.5 - 0.5 * np.cos(np.pi * ramp)
            hp_all[i] *= taper
            hc_all[i] *= taper
    return hp_all, hc_all


@lru_cache(maxsize=8)
def _detector(name: str):
    """``pycbc.detector.Detector`` objects are slow to build (they read tables): cache them."""
    from pycbc.detector import Detector

    return Detector(name)


def antenna_response(detectors: Sequence[str], ra: np.ndarray, dec: np.ndarray, polarization: np.ndarray, gps: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Antenna patterns and delays from the geocentre, shape (n_det, n) each.

    Uses ``pycbc.detector.Detector`` (vectorised over the sky positions).
    ``gps`` may be a scalar or one time per sample.
    """
    ra, dec, polarization = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (ra, dec, polarization))
    gps = np.broadcast_to(np.asarray(gps, dtype=float), ra.shape)
    fplus = np.empty((len(detectors), ra.size))
    fcross = np.empty_like(fplus)
    delays = np.empty_like(fplus)
    for d, name in enumerate(detectors):
        detector = _detector(name)
        # One vectorised call per detector: PyCBC's sidereal time is linear in
        # gps about its reference time (set once, the first call's ~2 s), so
        # per-sample times need no loop (the same values as a loop over them).
        fplus[d], fcross[d] = detector.antenna_pattern(ra, dec, polarization, np.array(gps))
        delays[d] = detector.time_delay_from_earth_center(ra, dec, np.array(gps))
    return fplus, fcross, delays


def project_fd(hp: np.ndarray, hc: np.ndarray, frequencies: np.ndarray, fplus: np.ndarray, fcross: np.ndarray, delays: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """Detector strains in the frequency domain, (n, n_det, n_freq).

    ``hp``/``hc`` (n, n_freq) have their merger at t = 0; the projection moves
    it to ``tc + delay`` (seconds from the start of the buffer) by a phase
    ramp. ``fplus``, ``fcross``, ``delays`` are (n_det, n); ``tc`` is (n,).
    """
    shift = np.asarray(tc)[None, :] + delays  # (n_det, n)
    phase = np.exp(-2j * np.pi * shift.T[:, :, None] * frequencies[None, None, :])
    response = fplus.T[:, :, None] * hp[:, None, :] + fcross.T[:, :, None] * hc[:, None, :]
    return response * phase


def optimal_snr(h: np.ndarray, psd_values: np.ndarray, delta_f: float, f_low: float = 20.0, f_high: float | None = None) -> np.ndarray:
    """Optimal SNR :math:`\\sqrt{4 \\Delta f \\sum |\\tilde h|^2 / S}` along the last axis.

    ``h`` is a continuous-FT spectrum (strain/Hz) on the grid ``k * delta_f``;
    bins with ``S = 0`` or outside ``[f_low, f_high]`` are excluded.
    """
    n_freq = h.shape[-1]
    frequencies = np.arange(n_freq) * delta_f
    psd_values = np.asarray(psd_values, dtype=float)
    use = (frequencies >= f_low) & (psd_values > 0)
    if f_high is not None:
        use &= frequencies <= f_high
    weight = np.where(use, 1.0 / np.where(psd_values > 0, psd_values, 1.0), 0.0)
    return np.sqrt(4.0 * delta_f * np.sum(np.abs(h) ** 2 * weight, axis=-1))
