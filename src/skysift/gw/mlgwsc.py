"""MLGWSC-1 file formats and test data (Schäfer et al. 2023, Phys. Rev. D 107, 023021).

Formats (interoperable with the MLGWSC-1 ``generate_data.py`` and ``evaluate.py``)
-------------------------------------------------------------------------------
Strain file
    One group per detector (``"H1"``, ``"L1"``); each holds the segments as
    1-D datasets named by their integer GPS start time, with attributes
    ``start_time`` (GPS s) and ``delta_t`` (s). Segments of the detectors
    share names and extents.
Events file
    Three 1-D datasets of equal length: ``time`` (GPS s), ``stat`` (ranking
    statistic, larger is more significant) and ``var`` (s): an event is a
    true positive for an injection whose time lies within ``time ± var``.
Injections file
    PyCBC injection-file style: one 1-D dataset per parameter at the root
    (``tc`` the geocentric coalescence GPS time, ``mass1``, ``mass2``, spins,
    ``distance``, ``ra``, ``dec``, ``polarization``, ``inclination``,
    ``coa_phase``, and the optimal SNRs with the design PSD), root attribute
    ``approximant``.

These are field formats, not skysift products; they are still written
atomically and carry the skysift provenance block as root attributes (extra
attributes do not disturb other readers).

Test data (:func:`make_mlgwsc_test_data`) follows MLGWSC-1: continuous
two-detector Gaussian noise, injections separated by 24 ± 3 s (uniform in
[21, 27] s), the *background* file the noise alone and the *foreground* file
the same noise plus the injections.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.gw.series import Strain
from skysift.io import atomic_output
from skysift.log import get_logger
from skysift.provenance import Provenance

__all__ = [
    "INJECTION_SPACING",
    "make_mlgwsc_test_data",
    "injection_times",
    "read_events",
    "read_injections",
    "read_strain",
    "write_events",
    "write_injections",
    "write_strain",
]

log = get_logger(__name__)

#: Spacing of consecutive injections (s): 24 ± 3 as MLGWSC-1.
INJECTION_SPACING = (21.0, 27.0)


def _write_provenance(handle: h5py.File, provenance: Provenance | None) -> None:
    if provenance is not None:
        for key, value in provenance.to_hdf5_attrs().items():
            handle.attrs[key] = value


def write_strain(path: str | os.PathLike[str], segments: Strain | Sequence[Strain], *, provenance: Provenance | None = None) -> Path:
    """Write strain segments in the MLGWSC-1 layout (float32, as MLGWSC-1 does)."""
    segments = [segments] if isinstance(segments, Strain) else list(segments)
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        _write_provenance(handle, provenance)
        for segment in segments:
            name = str(int(round(segment.start_time)))
            for detector in segment.detectors:
                group = handle.require_group(detector)
                dataset = group.create_dataset(name, data=segment.detector(detector).astype(np.float32), chunks=True, compression="gzip", compression_opts=4, shuffle=True)
                dataset.attrs["start_time"] = float(segment.start_time)
                dataset.attrs["delta_t"] = float(segment.delta_t)
    return Path(path)


def read_strain(path: str | os.PathLike[str], detectors: Sequence[str] = ("H1", "L1")) -> list[Strain]:
    """Read the segments of an MLGWSC-1 strain file, sorted by start time.

    Raises
    ------
    InputDataError
        If a detector group is missing, or the detectors' segments disagree.
    """
    segments = []
    try:
        with h5py.File(path, "r") as handle:
            missing = [d for d in detectors if d not in handle]
            if missing:
                raise InputDataError(f"{path}: no group for detector(s) {missing}")
            names = sorted(handle[detectors[0]].keys(), key=lambda n: float(handle[detectors[0]][n].attrs["start_time"]))
            for name in names:
                rows, starts, steps = [], [], []
                for detector in detectors:
                    if name not in handle[detector]:
                        raise InputDataError(f"{path}: segment {name} missing in {detector}")
                    dataset = handle[detector][name]
                    rows.append(dataset[()].astype(np.float64))
                    starts.append(float(dataset.attrs["start_time"]))
                    steps.append(float(dataset.attrs["delta_t"]))
                if len({r.size for r in rows}) != 1 or len(set(starts)) != 1 or len(set(steps)) != 1:
                    raise InputDataError(f"{path}: segment {name} differs between detectors")
                segments.append(Strain(np.stack(rows), starts[0], steps[0], tuple(detectors)))
    except OSError as error:
        raise InputDataError(f"{path}: not a readable HDF5 strain file ({error})") from error
    return segments


def write_events(path: str | os.PathLike[str], time: np.ndarray, stat: np.ndarray, var: np.ndarray | float, *, provenance: Provenance | None = None) -> Path:
    """Write an MLGWSC-1 events file (datasets ``time``, ``stat``, ``var``)."""
    time = np.asarray(time, dtype=np.float64)
    stat = np.asarray(stat, dtype=np.float64)
    var = np.broadcast_to(np.asarray(var, dtype=np.float64), time.shape)
    if stat.shape != time.shape:
        raise ValueError("time and stat must have the same length")
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        _write_provenance(handle, provenance)
        handle.create_dataset("time", data=time)
        handle.create_dataset("stat", data=stat)
        handle.create_dataset("var", data=np.array(var))
    return Path(path)


def read_events(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an events file as ``{"time", "stat", "var"}`` arrays."""
    with h5py.File(path, "r") as handle:
        missing = [k for k in ("time", "stat", "var") if k not in handle]
        if missing:
            raise InputDataError(f"{path}: events file lacks {missing}")
        return {k: handle[k][()].astype(np.float64) for k in ("time", "stat", "var")}


def write_injections(path: str | os.PathLike[str], params: Mapping[str, np.ndarray], *, approximant: str, provenance: Provenance | None = None, attrs: Mapping[str, Any] | None = None) -> Path:
    """Write an injections file: one dataset per parameter (``tc`` required)."""
    if "tc" not in params:
        raise ValueError("injection parameters need 'tc'")
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        _write_provenance(handle, provenance)
        handle.attrs["approximant"] = approximant
        handle.attrs["injtype"] = "cbc"
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
        for name, values in params.items():
            handle.create_dataset(name, data=np.asarray(values))
    return Path(path)


def read_injections(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an injections file as a mapping of parameter to array."""
    with h5py.File(path, "r") as handle:
        if "tc" not in handle:
            raise InputDataError(f"{path}: injections file lacks 'tc'")
        return {name: handle[name][()] for name in handle if isinstance(handle[name], h5py.Dataset)}


def injection_times(start_time: float, duration: float, rng: np.random.Generator, *, spacing: tuple[float, float] = INJECTION_SPACING, margin: float = 16.0) -> np.ndarray:
    """Coalescence times spaced uniformly in ``spacing`` (24 ± 3 s), ``margin`` s clear of both ends."""
    times = []
    t = start_time + margin + rng.uniform(0.0, spacing[1])
    while t < start_time + duration - margin:
        times.append(t)
        t += rng.uniform(*spacing)
    return np.asarray(times)


def make_mlgwsc_test_data(
    foreground_path: str | os.PathLike[str],
    background_path: str | os.PathLike[str],
    injections_path: str | os.PathLike[str],
    *,
    duration: float = 3600.0,
    seed: int = 0,
    approximant: str = "IMRPhenomD",
    mass_range: tuple[float, float] = (10.0, 50.0),
    spin_max: float = 0.8,
    max_distance: float = 2000.0,
    sample_rate: float = 2048.0,
    f_lower: float = 20.0,
    start_time: float = 1238166018.0,
    psd_name: str = "aLIGOZeroDetHighPower",
    context: RunContext | None = None,
) -> tuple[Path, Path, Path]:
    """Generate MLGWSC-1-style foreground, background and injection files.

    Parameters
    ----------
    foreground_path, background_path, injections_path : path
        Outputs (written atomically).
    duration : float
        Seconds of continuous data (one segment).
    seed : int
        Noise of each detector and the injections use independent children of
        ``SeedSequence(seed)``.
    approximant : str
        Injected waveform family.
    mass_range, spin_max
        Source priors as :func:`skysift.gw.waveforms.intrinsic_priors`.
    max_distance : float
        Luminosity distances are uniform in Euclidean volume up to this (Mpc):
        ``d = max_distance * u^(1/3)``. The evaluation's sensitive distance
        relies on this (see :mod:`skysift.gw.evaluate`).
    sample_rate, f_lower, start_time, psd_name
        Data settings.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).

    Returns
    -------
    (Path, Path, Path)
        Foreground, background and injections paths.

    Notes
    -----
    Noise: stationary Gaussian with the design PSD, drawn in the frequency
    domain for the whole segment (independent per detector). Each injection is
    generated in the frequency domain on a 32 s buffer, projected onto H1/L1
    at its own time (antenna patterns, delays, sub-sample phase shift),
    transformed to the time domain and added. Masses are detector frame; no
    cosmology (Euclidean volume).
    """
    from skysift.gw.noise import colored_noise_fd, design_psd
    from skysift.gw.waveforms import EXTRINSIC_PRIORS, antenna_response, fd_waveforms, intrinsic_priors, optimal_snr, project_fd, source_parameters
    from skysift.simulate.priors import sample_parameters

    detectors = ("H1", "L1")
    n_time = int(round(duration * sample_rate))
    noise_seeds = np.random.SeedSequence(seed).spawn(len(detectors) + 1)
    psd = design_psd(sample_rate, n_time / sample_rate, f_low=f_lower * 0.5, name=psd_name)
    noise = np.stack([np.fft.irfft(colored_noise_fd(np.random.default_rng(s), psd.values, sample_rate, n_time), n=n_time) for s in noise_seeds[: len(detectors)]])
    rng = np.random.default_rng(noise_seeds[-1])
    times = injection_times(start_time, duration, rng)
    n = times.size
    params = source_parameters(sample_parameters(intrinsic_priors(approximant, mass_range, spin_max), n, rng) | sample_parameters(EXTRINSIC_PRIORS, n, rng))
    params["distance"] = max_distance * rng.uniform(0.0, 1.0, n) ** (1.0 / 3.0)
    params["tc"] = times

    buffer_duration = 32.0
    n_buffer = int(buffer_duration * sample_rate)
    frequencies = np.fft.rfftfreq(n_buffer, 1.0 / sample_rate)
    buffer_psd = design_psd(sample_rate, buffer_duration, f_low=f_lower * 0.5, name=psd_name)
    merger_in_buffer = buffer_duration - 2.0
    foreground = noise.copy()
    snrs = np.zeros((n, len(detectors)))
    for batch in range(0, n, 64):
        sel = slice(batch, min(batch + 64, n))
        sub = {k: v[sel] for k, v in params.items()}
        hp, hc = fd_waveforms(sub, approximant=approximant, delta_f=1.0 / buffer_duration, n_freq=frequencies.size, f_lower=f_lower, max_duration=merger_in_buffer - 2.0, distance=1.0)
        first = np.floor((sub["tc"] - start_time - merger_in_buffer) * sample_rate).astype(int)
        tc_in_buffer = sub["tc"] - (start_time + first / sample_rate)
        fplus, fcross, delays = antenna_response(detectors, sub["ra"], sub["dec"], sub["polarization"], sub["tc"])
        projected = project_fd(hp, hc, frequencies, fplus, fcross, delays, tc_in_buffer) / sub["distance"][:, None, None]
        snrs[sel] = optimal_snr(projected, buffer_psd.values, 1.0 / buffer_duration, f_low=f_lower)
        waves = np.fft.irfft(projected * sample_rate, n=n_buffer, axis=-1)
        for k in range(waves.shape[0]):
            lo, hi = max(first[k], 0), min(first[k] + n_buffer, n_time)
            foreground[:, lo:hi] += waves[k][:, lo - first[k] : hi - first[k]]
    params["snr_H1"], params["snr_L1"] = snrs[:, 0], snrs[:, 1]
    params["network_snr"] = np.sqrt(np.sum(snrs**2, axis=1))

    provenance = resolve_context(context, "gw_test_data").provenance(seed=seed, extra={"approximant": approximant, "psd": psd_name})
    delta_t = 1.0 / sample_rate
    write_strain(background_path, Strain(noise, start_time, delta_t, detectors), provenance=provenance)
    write_strain(foreground_path, Strain(foreground, start_time, delta_t, detectors), provenance=provenance)
    write_injections(
        injections_path,
        params,
        approximant=approximant,
        provenance=provenance,
        attrs={"max_distance": max_distance, "distance_distribution": "uniform in volume", "f_lower": f_lower, "duration": duration},
    )
    log.info("MLGWSC-1 test data: %.0f s, %d injections", duration, n)
    return Path(foreground_path), Path(background_path), Path(injections_path)
