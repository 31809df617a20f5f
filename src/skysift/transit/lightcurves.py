"""Stellar light curves: mission cadences, simulated stars and Kepler/TESS FITS readers.

Simulated stars are made in batches sharing one mission time grid (as all
stars observed in one Kepler quarter or TESS sector do). Each star has

* quasi-periodic rotational modulation: a stochastically driven damped
  harmonic oscillator at the rotation period plus one at its first harmonic,
  as celerite's ``RotationTerm`` (Foreman-Mackey et al. 2017), drawn in the
  Fourier domain so spots evolve (finite coherence ``rotation_q``);
* granulation-like red noise with a Harvey (1985) spectrum
  ``1 / (1 + (2 pi f tau)^2)``;
* white noise;
* gaps: the mission's downlink and mid-sector gaps (absent from the grid) and
  per-star data loss and flagged cadences (NaN flux, ``valid`` False).

:func:`read_lightcurve` reads real Kepler ``kplr*_llc.fits`` and TESS SPOC
light curves (``LIGHTCURVE`` extension, PDCSAP flux), honouring quality flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.fft import next_fast_len

from skysift.errors import InputDataError
from skysift.simulate.priors import LogUniform, Prior, Uniform
from skysift.transit import _lightcurve_kernels
from skysift.transit.injection import gaussian_noise

__all__ = [
    "KEPLER_DEFAULT_BITMASK",
    "MISSIONS",
    "STELLAR_PRIORS",
    "TESS_DEFAULT_BITMASK",
    "LightCurve",
    "MissionSchedule",
    "mission_time_grid",
    "read_lightcurve",
    "simulate_stars",
]

#: lightkurve's "default" Kepler quality bitmask (attitude tweaks, safe mode,
#: coarse/Earth point, desaturations, argabrightening, manual exclude, ...).
KEPLER_DEFAULT_BITMASK = 1130799
#: lightkurve's "default" TESS bitmask: AttitudeTweak 1, SafeMode 2, CoarsePoint 4,
#: EarthPoint 8, Desat 32, ManualExclude 128.
TESS_DEFAULT_BITMASK = 175


@dataclass(frozen=True)
class MissionSchedule:
    """Cadence and observing blocks of a mission.

    Attributes
    ----------
    cadence : float
        Sampling interval, days.
    block_length : float
        Length of one quarter (Kepler) or sector (TESS), days.
    gaps : tuple of (start, length)
        Gaps inside a block, days from its start (downlinks, orbit perigee).
    block_gap : float
        Gap between consecutive blocks, days.
    """

    cadence: float
    block_length: float
    gaps: tuple[tuple[float, float], ...]
    block_gap: float


MISSIONS: dict[str, MissionSchedule] = {
    # Kepler long cadence: ~90-day quarters with a ~1-day downlink gap each month.
    "kepler": MissionSchedule(29.4244 / 1440.0, 89.0, ((29.5, 1.0), (59.5, 1.0)), 1.2),
    # TESS: 27.4-day sectors, two orbits with a ~1-day gap at perigee.
    "tess-2min": MissionSchedule(2.0 / 1440.0, 27.4, ((13.2, 1.0),), 0.6),
    "tess-ffi": MissionSchedule(30.0 / 1440.0, 27.4, ((13.2, 1.0),), 0.6),
    "tess-ffi-10min": MissionSchedule(10.0 / 1440.0, 27.4, ((13.2, 1.0),), 0.6),
}


def mission_time_grid(mission: str = "kepler", *, n_blocks: int = 1, start: float = 0.0) -> np.ndarray:
    """Cadence times (days) of ``n_blocks`` quarters/sectors, mission gaps removed.

    Parameters
    ----------
    mission : {"kepler", "tess-2min", "tess-ffi", "tess-ffi-10min"}
        Schedule from :data:`MISSIONS`.
    n_blocks : int
        Number of consecutive quarters or sectors.
    start : float
        Time of the first cadence.
    """
    try:
        schedule = MISSIONS[mission]
    except KeyError:
        raise ValueError(f"unknown mission {mission!r}; choose one of {sorted(MISSIONS)}") from None
    stride = schedule.block_length + schedule.block_gap
    n_cadences = int(np.floor((n_blocks * stride - schedule.block_gap) / schedule.cadence)) + 1
    time = start + schedule.cadence * np.arange(n_cadences)
    local = np.mod(time - start, stride)
    keep = local < schedule.block_length
    for gap_start, gap_length in schedule.gaps:
        keep &= ~((local >= gap_start) & (local < gap_start + gap_length))
    return time[keep]


#: Priors of the simulated stars (the noise level is set by the caller, see
#: :func:`skysift.transit.dataset.make_transit_training_set`).
STELLAR_PRIORS: dict[str, Prior] = {
    "rotation_period": LogUniform(0.8, 40.0, "d"),
    "rotation_amplitude": LogUniform(1e-4, 1e-2, ""),
    "rotation_q": LogUniform(1.0, 20.0, ""),
    "granulation_ratio": LogUniform(0.1, 1.5, ""),
    "granulation_timescale": LogUniform(0.05, 1.0, "d"),
    "gap_fraction": Uniform(0.0, 0.06, ""),
}


#: Stars simulated together by :func:`simulate_stars` (draws, spectra and series of a block stay in cache).
_STARS_PER_BLOCK = 16


def simulate_stars(
    time: np.ndarray,
    params: dict[str, np.ndarray],
    noise: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Relative fluxes of a batch of stars on a shared time grid.

    Parameters
    ----------
    time : numpy.ndarray, shape (T,)
        Cadence times (days) from :func:`mission_time_grid`.
    params : dict of str to numpy.ndarray, shape (N,)
        Draws of :data:`STELLAR_PRIORS`.
    noise : numpy.ndarray, shape (N,)
        White-noise standard deviation per cadence (relative flux).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    flux : numpy.ndarray, shape (N, T)
        Relative flux around 1; NaN at lost or flagged cadences.
    valid : numpy.ndarray of bool, shape (N, T)
        False where the flux is NaN.

    Notes
    -----
    Stars are made :data:`_STARS_PER_BLOCK` at a time (their draws, spectra
    and series stay in cache): the rotation and granulation spectra of each
    star are drawn, scaled to their rms by Parseval's theorem and summed
    (:func:`skysift.transit._lightcurve_kernels.star_spectrum`), so one
    float32 inverse real FFT per star gives both components (their sum
    equals the two float64 series scaled by their ``numpy.std``, to 1e-5 of
    the larger amplitude; ``tests/transit/test_lightcurve_kernels.py``).
    The random draws are tabulated normals (:func:`~skysift.transit.injection.gaussian_noise`).
    """
    time = np.asarray(time, dtype=np.float64)
    n = int(np.asarray(noise).shape[0])
    n_time = time.size
    cadence = float(np.median(np.diff(time)))
    index = np.rint((time - time[0]) / cadence).astype(np.int64)
    # Uniform grid covering the mission gaps, padded against circular wrap-around to at least twice
    # its length, and on to a length whose FFT is fast (2 * 4366 = 4 * 37 * 59 for a Kepler quarter).
    n_grid = 2 * int(next_fast_len(int(index[-1] + 1), real=True))

    p = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in params.items()}
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_grid, d=cadence)
    sigma = np.ascontiguousarray(noise, dtype=np.float64)
    granulation_amplitude = p["granulation_ratio"] * sigma
    flux = np.empty((n, n_time))
    scratch = np.empty(omega.size, dtype=np.complex64)
    # A few stars at a time, so that their draws, spectra and series stay in cache.
    for begin in range(0, n, _STARS_PER_BLOCK):
        rows = slice(begin, min(begin + _STARS_PER_BLOCK, n))
        n_rows = rows.stop - rows.start
        draws = gaussian_noise(rng, (4, n_rows, omega.size))
        spectrum = np.empty((n_rows, omega.size), dtype=np.complex64)
        _lightcurve_kernels.star_spectrum(
            omega, p["rotation_period"][rows], p["rotation_q"][rows], p["granulation_timescale"][rows],
            p["rotation_amplitude"][rows], granulation_amplitude[rows], draws, n_grid, scratch, spectrum,
        )  # fmt: skip
        _lightcurve_kernels.sample_stars(
            np.fft.irfft(spectrum, n_grid, axis=1), index, sigma[rows], gaussian_noise(rng, (n_rows, n_time)), flux[rows]
        )
    # Data loss: a few contiguous chunks plus scattered flagged cadences.
    flagged = rng.random((n, n_time), dtype=np.float32)
    n_chunks = 3
    chunk_length = (0.75 * p["gap_fraction"] * n_time / n_chunks).astype(np.int64)
    starts = rng.integers(0, n_time, size=(n, n_chunks))
    valid = np.empty((n, n_time), dtype=bool)
    _lightcurve_kernels.lose_cadences(flagged, 0.25 * p["gap_fraction"], starts, chunk_length, flux, valid)
    return flux, valid


@dataclass
class LightCurve:
    """One light curve.

    Attributes
    ----------
    time : numpy.ndarray
        Times, days (BKJD for Kepler, BTJD for TESS).
    flux : numpy.ndarray
        Relative flux (median 1).
    flux_err : numpy.ndarray
        Uncertainty of ``flux``.
    quality : numpy.ndarray of int
        Quality flags of the kept cadences (0: good).
    cadence : float
        Median sampling interval, days.
    mission : str
        ``"kepler"``, ``"tess"`` or a key of :data:`MISSIONS`.
    source : pathlib.Path or None
        File the light curve came from.
    meta : dict
        Header values worth keeping (``OBJECT``, ``KEPLERID``/``TICID``, ...).
    """

    time: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    quality: np.ndarray
    cadence: float
    mission: str
    source: Path | None = None
    meta: dict = field(default_factory=dict)


def read_lightcurve(
    path: str | os.PathLike[str],
    *,
    flux_column: str = "PDCSAP_FLUX",
    quality_bitmask: int | None = None,
) -> LightCurve:
    """Read a Kepler ``kplr*_llc.fits`` or TESS SPOC light-curve file.

    Parameters
    ----------
    path : str or path-like
        FITS file with a ``LIGHTCURVE`` binary table.
    flux_column : str
        Flux column (``PDCSAP_FLUX`` or ``SAP_FLUX``); its error column is
        ``<flux_column>_ERR``.
    quality_bitmask : int, optional
        Cadences with any of these quality bits set are dropped. Default:
        :data:`KEPLER_DEFAULT_BITMASK` or :data:`TESS_DEFAULT_BITMASK` by the
        ``TELESCOP`` keyword.

    Returns
    -------
    LightCurve
        Flagged cadences and NaN times/fluxes dropped, flux and error divided
        by the median flux.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        Naming the file: unreadable FITS, no ``LIGHTCURVE`` extension, missing
        columns, no finite flux left, non-positive median flux.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such light-curve file")
    try:
        with path.open("rb") as stream, fits.open(stream, memmap=False) as hdul:
            names = [h.name for h in hdul]
            if "LIGHTCURVE" not in names:
                raise InputDataError(f"{path}: no LIGHTCURVE extension (HDUs: {', '.join(names)})")
            primary = hdul[0].header
            table = hdul["LIGHTCURVE"].data
            columns = [c.upper() for c in hdul["LIGHTCURVE"].columns.names]
            telescope = str(primary.get("TELESCOP", hdul["LIGHTCURVE"].header.get("TELESCOP", ""))).strip().upper()
            quality_name = "SAP_QUALITY" if "SAP_QUALITY" in columns else "QUALITY"
            wanted = ["TIME", flux_column.upper(), f"{flux_column.upper()}_ERR", quality_name]
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise InputDataError(f"{path}: LIGHTCURVE lacks column(s) {', '.join(missing)}")
            time = np.asarray(table["TIME"], dtype=np.float64)
            flux = np.asarray(table[flux_column], dtype=np.float64)
            flux_err = np.asarray(table[f"{flux_column}_ERR"], dtype=np.float64)
            quality = np.asarray(table[quality_name], dtype=np.int64)
            meta = {k: primary[k] for k in ("OBJECT", "KEPLERID", "TICID", "QUARTER", "SECTOR") if k in primary}
    except InputDataError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, KeyError on corrupt files
        raise InputDataError(f"{path}: unreadable light-curve FITS ({type(exc).__name__}: {exc})") from exc
    mission = "kepler" if telescope.startswith("KEPLER") else "tess" if telescope.startswith("TESS") else "unknown"
    if quality_bitmask is None:
        quality_bitmask = KEPLER_DEFAULT_BITMASK if mission == "kepler" else TESS_DEFAULT_BITMASK
    if time.size == 0:
        raise InputDataError(f"{path}: LIGHTCURVE table has no rows")
    keep = np.isfinite(time) & np.isfinite(flux) & ((quality & int(quality_bitmask)) == 0)
    if not keep.any():
        raise InputDataError(f"{path}: no cadence has finite TIME and {flux_column} and good QUALITY")
    time, flux, flux_err, quality = time[keep], flux[keep], flux_err[keep], quality[keep]
    order = np.argsort(time, kind="stable")
    time, flux, flux_err, quality = time[order], flux[order], flux_err[order], quality[order]
    median = np.median(flux)
    if not median > 0:
        raise InputDataError(f"{path}: median {flux_column} is {median}, cannot normalise")
    cadence = float(np.median(np.diff(time))) if time.size > 1 else float("nan")
    return LightCurve(
        time=time,
        flux=flux / median,
        flux_err=flux_err / median,
        quality=quality,
        cadence=cadence,
        mission=mission,
        source=path,
        meta=meta,
    )
