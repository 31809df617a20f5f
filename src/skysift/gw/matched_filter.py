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

Banks: non-spinning IMRPhenomD templates on a grid log-uniform in chirp mass
and uniform in mass ratio, both components inside ``mass_range`` (about
300 templates for 10-50 solar masses by default, :func:`template_bank`), or a
stochastic bank with aligned spins placed to a chosen minimal match
(:func:`stochastic_bank`; Harry, Allen & Sathyaprakash 2009, Phys. Rev. D 80,
104014). The fitting factor of either can be measured with :func:`bank_match`
against random signals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np
from scipy.ndimage import maximum_filter1d

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.gw.background import LIGHT_TRAVEL_MARGIN, slide_offsets
from skysift.gw.conditioning import TAPER, ConditionedStrain, condition_strain
from skysift.gw.series import PSD
from skysift.gw.waveforms import chirp_time
from skysift.log import get_logger

__all__ = [
    "bank_match",
    "fitting_factors",
    "matched_filter_search",
    "merge_block_peaks",
    "network_snr_series",
    "read_bank",
    "snr_series",
    "stochastic_bank",
    "template_bank",
    "template_waveforms",
    "write_bank",
]

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
    """Plus-polarisation FD templates (n_templates, n_freq), face-on, merger at t = 0.

    ``bank`` holds ``mass1``, ``mass2`` and, for aligned-spin banks,
    ``spin1z``, ``spin2z`` (zero where absent).
    """
    from skysift.gw.waveforms import fd_waveforms

    n = bank["mass1"].size
    zeros = np.zeros(n)
    params = {"mass1": bank["mass1"], "mass2": bank["mass2"], "inclination": zeros, "coa_phase": zeros}
    params |= {f"spin{k}{axis}": zeros for k in (1, 2) for axis in "xyz"}
    params |= {key: np.asarray(bank[key], dtype=float) for key in ("spin1z", "spin2z") if key in bank}
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
    from scipy.fft import ifft

    sigma = np.sqrt(4.0 * delta_f * np.sum(np.abs(templates) ** 2 * weights, axis=-1))
    n_freq = templates.shape[1]
    # Normalisation folded in before the transform (n_freq, not n_time, values per row), the
    # upper half zeroed in place, and the transform done in place: the same numbers, half the time.
    full = np.empty((templates.shape[0], n_time), dtype=np.complex128)
    np.multiply(np.conj(templates), (data_fd * weights * (4.0 * delta_f * n_time))[None, :], out=full[:, :n_freq])
    full[:, :n_freq] /= sigma[:, None]
    full[:, n_freq:] = 0.0
    return ifft(full, axis=-1, overwrite_x=True)


def _coincident_max(magnitude: np.ndarray, sample_rate: float) -> np.ndarray:
    """Maximum of ``magnitude`` within the coincidence window of each sample."""
    shift = int(np.ceil(COINCIDENCE_WINDOW * sample_rate))
    return maximum_filter1d(magnitude, size=2 * shift + 1, axis=-1, mode="constant")


def network_snr_series(h1: np.ndarray, l1: np.ndarray, sample_rate: float) -> np.ndarray:
    """Coincident network SNR per template and time (see the module notes)."""
    return np.sqrt(np.abs(h1) ** 2 + _coincident_max(np.abs(l1), sample_rate) ** 2)


@numba.njit(cache=True, nogil=True)
def _update_network_peak(z_h: np.ndarray, z_l: np.ndarray, shift: int, lo: int, hi: int, best_squared: np.ndarray) -> None:  # pragma: no cover - compiled
    """Raise ``best_squared`` to the squared network SNR of every template row, samples ``lo:hi``.

    ``best_squared[j - lo] = max(best_squared[j - lo], max_k |z_h[k, j]|^2 + max_{|d| <= shift} |z_l[k, j + d]|^2)``:
    :func:`network_snr_series` squared and maximised over the rows, in one pass per row
    without its (rows, samples) temporaries. The window maximum is van Herk's and
    Gil & Werman's (three comparisons per sample whatever the window), with
    zeros outside the series as ``maximum_filter1d(mode="constant")`` has.
    Squares, not magnitudes: both maxima commute with the monotone square
    root, which is taken once, on the result.
    """
    n = z_l.shape[1]
    size = 2 * shift + 1
    m = hi - lo + 2 * shift
    power = np.empty(m)
    prefix = np.empty(m)
    suffix = np.empty(m)
    for k in range(z_h.shape[0]):
        for i in range(m):
            j = lo - shift + i
            if 0 <= j < n:
                value = z_l[k, j]
                power[i] = value.real * value.real + value.imag * value.imag
            else:
                power[i] = 0.0
        for i in range(m):  # running maxima from each block's start ...
            prefix[i] = power[i] if i % size == 0 else max(prefix[i - 1], power[i])
        for i in range(m - 1, -1, -1):  # ... and to each block's end
            suffix[i] = power[i] if (i + 1) % size == 0 or i == m - 1 else max(suffix[i + 1], power[i])
        for o in range(hi - lo):
            value = z_h[k, lo + o]
            network = value.real * value.real + value.imag * value.imag + max(suffix[o], prefix[o + size - 1])
            if network > best_squared[o]:
                best_squared[o] = network


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


#: Solar mass in seconds (G M_sun / c^3).
_MSUN_S = 4.925490947641267e-06


def _bank_coordinates(mass1: np.ndarray, mass2: np.ndarray, chi_eff: np.ndarray, f_lower: float) -> np.ndarray:
    """Chirp times (tau0, tau3) and a spin term, all in seconds: near-flat coordinates of the bank metric.

    ``tau0`` (Newtonian) and ``tau3`` (1.5PN) at ``f_lower``; the spin-orbit
    term enters the phase at the same order as ``tau3`` in proportion to
    ``(113/12) chi_eff / (4 pi)``, hence the third coordinate. Used only to
    pick the templates a proposal is compared with, never to decide coverage.
    """
    m1, m2 = np.asarray(mass1, float), np.asarray(mass2, float)
    total = (m1 + m2) * _MSUN_S
    eta = m1 * m2 / (m1 + m2) ** 2
    v = np.pi * total * f_lower
    tau0 = 5.0 / (256.0 * np.pi * f_lower * eta) * v ** (-5.0 / 3.0)
    tau3 = 1.0 / (8.0 * f_lower * eta) * v ** (-2.0 / 3.0)
    return np.stack([tau0, tau3, tau3 * np.asarray(chi_eff, float) * 113.0 / (48.0 * np.pi)], axis=-1)


def _unit_whitened(templates: np.ndarray, sqrt_weights: np.ndarray, band: np.ndarray) -> np.ndarray:
    """In-band templates whitened by the PSD and normalised to unit norm (complex64)."""
    whitened = (templates[:, band] * sqrt_weights[band]).astype(np.complex64)
    return whitened / np.linalg.norm(whitened, axis=1, keepdims=True)


def _max_overlap(proposal: np.ndarray, templates: np.ndarray, n_ifft: int) -> np.ndarray:
    """Match of one unit whitened waveform with each of ``templates``, maximised over time and phase.

    The band's first bin is moved to bin 0: a constant frequency shift only
    multiplies the overlap series by a phase ramp, leaving its modulus alone.
    """
    from scipy.fft import ifft

    series = ifft(np.conj(templates) * proposal[None, :], n=n_ifft, axis=-1) * n_ifft
    return np.abs(series).max(axis=-1)


def _nearest_match(waveform: np.ndarray, coordinate: np.ndarray, templates: np.ndarray, coordinates: np.ndarray, n_neighbours: int, n_ifft: int,
                   enough: float = 1.0) -> float:
    """Best match of a unit whitened waveform with its ``n_neighbours`` nearest templates (a lower bound on the bank's).

    The nearest 16 first: a proposal is usually covered by one of them, and
    the search stops as soon as a match reaches ``enough``.
    """
    distance = np.sum((coordinates - coordinate) ** 2, axis=1)
    order = np.argsort(distance)[:n_neighbours]
    best = 0.0
    for chunk in (order[:16], order[16:]):
        if chunk.size:
            best = max(best, float(_max_overlap(waveform, templates[chunk], n_ifft).max()))
            if best >= enough:
                break
    return best


def _chi_eff(params: dict[str, np.ndarray]) -> np.ndarray:
    m1, m2 = params["mass1"], params["mass2"]
    return (m1 * params.get("spin1z", 0.0 * m1) + m2 * params.get("spin2z", 0.0 * m2)) / (m1 + m2)


def _draw_bank_proposals(n: int, mass_range: tuple[float, float], spin_max: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Bank proposals: half from the search's space, half dense where templates are dense.

    Half have component masses uniform in the square (the datasets'
    distribution); half have the Newtonian chirp time uniform (chirp mass
    density ``Mc^(-8/3)``, about the template density) and ``log q``
    uniform, so the light corner, a small part of the square that needs many
    templates, is proposed often enough to be covered. Aligned spins are
    uniform in ``[-spin_max, spin_max]``; masses are ordered.
    """
    low, high = mass_range
    masses = rng.uniform(low, high, size=(2, n))
    mass1, mass2 = masses.max(axis=0), masses.min(axis=0)
    dense = np.flatnonzero(rng.random(n) < 0.5)
    chirp_low, chirp_high = (low * low) ** 0.6 / (2 * low) ** 0.2, (high * high) ** 0.6 / (2 * high) ** 0.2
    for i in dense:
        while True:  # rejection from the square; accepts often
            tau = rng.uniform(chirp_high ** (-5.0 / 3.0), chirp_low ** (-5.0 / 3.0))
            chirp, ratio = tau ** (-3.0 / 5.0), np.exp(rng.uniform(0.0, np.log(high / low)))
            total = chirp * (1 + ratio) ** 1.2 / ratio**0.6
            m1, m2 = total * ratio / (1 + ratio), total / (1 + ratio)
            if low <= m2 and m1 <= high:
                mass1[i], mass2[i] = m1, m2
                break
    return {
        "mass1": mass1,
        "mass2": mass2,
        "spin1z": rng.uniform(-spin_max, spin_max, n) if spin_max > 0 else np.zeros(n),
        "spin2z": rng.uniform(-spin_max, spin_max, n) if spin_max > 0 else np.zeros(n),
    }


def _whitening_grid(psd: PSD | None, f_lower: float, f_high: float, duration: float) -> tuple[float, int, np.ndarray, np.ndarray, int]:
    """Frequency grid of the bank's matches: ``delta_f``, ``n_freq``, sqrt of the weights, the band, inverse-FFT length.

    The design PSD stands in where ``psd`` is None; the inverse FFT of the
    in-band products has about ``0.5 / f_high`` time resolution.
    """
    from skysift.gw.noise import design_psd

    sample_rate = 2.0 * f_high
    n_freq = int(round(duration * sample_rate)) // 2 + 1
    delta_f = 1.0 / duration
    frequencies = np.arange(n_freq) * delta_f
    psd = psd if psd is not None else design_psd(sample_rate, duration, f_low=f_lower * 0.9)
    weights = _weights(psd.at(frequencies), frequencies, f_lower, f_high)
    band = weights > 0
    n_ifft = 2 ** int(np.ceil(np.log2(2 * band.sum())))
    return delta_f, n_freq, np.sqrt(weights), band, n_ifft


def stochastic_bank(
    mass_range: tuple[float, float] = (10.0, 50.0),
    *,
    spin_max: float = 0.0,
    minimal_match: float = 0.97,
    psd: PSD | None = None,
    f_lower: float = 20.0,
    f_high: float = 1024.0,
    duration: float = 16.0,
    n_neighbours: int = 128,
    patience: int = 300,
    max_templates: int = 20000,
    batch: int = 64,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Aligned-spin IMRPhenomD bank placed stochastically to ``minimal_match``.

    Proposals are drawn over the search's parameter space (component masses
    in ``mass_range``, ``spin1z``, ``spin2z`` uniform in
    ``[-spin_max, spin_max]``; :func:`_draw_bank_proposals`) and kept when their match with every nearby
    template (the ``n_neighbours`` nearest in chirp-time coordinates,
    :func:`_bank_coordinates`), maximised over time and phase, is below
    ``minimal_match``. Placement stops after ``patience`` consecutive
    proposals are rejected, i.e. once under about ``1/patience`` of the space
    is left uncovered (Harry, Allen & Sathyaprakash 2009, Phys. Rev. D 80,
    104014; Babak 2008, Class. Quantum Grav. 25, 195011).

    Comparing with neighbours only can keep a proposal that a farther template
    already covers: the bank may be larger than needed, never less covering.
    Measure its coverage with :func:`bank_match`.

    Parameters
    ----------
    mass_range : (float, float)
        Component masses (solar masses, detector frame).
    spin_max : float
        Largest aligned spin magnitude (0: non-spinning bank).
    minimal_match : float
        Match below which a proposal becomes a template.
    psd : PSD, optional
        Noise PSD of the inner products (default aLIGOZeroDetHighPower).
    f_lower, f_high : float
        Band of the inner products (Hz).
    duration : float
        Frequency resolution is ``1 / duration``; longer than the longest template.
    n_neighbours, patience, max_templates, batch : int
        Templates compared per proposal, rejections that end placement, a cap
        on the bank's size, proposals generated per waveform call.
    seed : int
        Seed of the proposals.

    Returns
    -------
    dict
        ``mass1``, ``mass2``, ``spin1z``, ``spin2z`` arrays.
    """
    from skysift.gw.waveforms import fd_waveforms

    if not 0 < minimal_match < 1:
        raise ValueError(f"minimal_match must lie in (0, 1), got {minimal_match}")
    delta_f, n_freq, sqrt_weights, band, n_ifft = _whitening_grid(psd, f_lower, f_high, duration)
    rng = np.random.default_rng(seed)
    kept: dict[str, list[float]] = {key: [] for key in ("mass1", "mass2", "spin1z", "spin2z")}
    whitened = np.zeros((min(max_templates, 256), int(band.sum())), dtype=np.complex64)
    coordinates = np.zeros((whitened.shape[0], 3))
    n_kept, rejected_in_a_row, n_proposed = 0, 0, 0
    while rejected_in_a_row < patience and n_kept < max_templates:
        proposals = _draw_bank_proposals(batch, mass_range, spin_max, rng)
        zeros = np.zeros(batch)
        params = proposals | {"spin1x": zeros, "spin1y": zeros, "spin2x": zeros, "spin2y": zeros, "inclination": zeros, "coa_phase": zeros}
        hp, _ = fd_waveforms(params, approximant="IMRPhenomD", delta_f=delta_f, n_freq=n_freq, f_lower=f_lower)
        candidates = _unit_whitened(hp, sqrt_weights, band)
        candidate_coordinates = _bank_coordinates(proposals["mass1"], proposals["mass2"], _chi_eff(proposals), f_lower)
        for i in range(batch):
            n_proposed += 1
            if n_proposed % 2000 == 0:
                log.info("stochastic bank: %d templates after %d proposals", n_kept, n_proposed)
            if n_kept and _nearest_match(candidates[i], candidate_coordinates[i], whitened[:n_kept], coordinates[:n_kept], n_neighbours, n_ifft, minimal_match) >= minimal_match:
                rejected_in_a_row += 1
                if rejected_in_a_row >= patience:
                    break
                continue
            if n_kept == whitened.shape[0]:
                whitened = np.concatenate([whitened, np.zeros_like(whitened)])
                coordinates = np.concatenate([coordinates, np.zeros_like(coordinates)])
            whitened[n_kept], coordinates[n_kept] = candidates[i], candidate_coordinates[i]
            for key in kept:
                kept[key].append(float(proposals[key][i]))
            n_kept += 1
            rejected_in_a_row = 0
            if n_kept >= max_templates:
                break
    log.info("stochastic bank: %d templates from %d proposals (minimal match %.3f, masses %s, |spin z| <= %.2f)",
             n_kept, n_proposed, minimal_match, mass_range, spin_max)
    return {key: np.asarray(values) for key, values in kept.items()}


def fitting_factors(
    bank: dict[str, np.ndarray],
    signals: dict[str, np.ndarray],
    *,
    psd: PSD | None = None,
    approximant: str = "IMRPhenomD",
    f_lower: float = 20.0,
    f_high: float = 1024.0,
    duration: float = 16.0,
    n_neighbours: int = 256,
) -> np.ndarray:
    """Fitting factor of each signal with the bank, over its ``n_neighbours`` nearest templates.

    The match (maximised over time and phase) of each signal's plus
    polarisation with the ``n_neighbours`` templates nearest in chirp-time
    coordinates: a lower bound on the fitting factor against the whole bank
    (exact when the bank is no larger). ``signals`` are source parameters
    (:func:`~skysift.gw.waveforms.source_parameters`), generated with
    ``approximant`` (IMRPhenomXPHM: precession and higher modes, which an
    aligned-spin dominant-mode bank cannot fit fully).
    """
    from skysift.gw.waveforms import fd_waveforms

    delta_f, n_freq, sqrt_weights, band, n_ifft = _whitening_grid(psd, f_lower, f_high, duration)
    templates = _unit_whitened(template_waveforms(bank, delta_f=delta_f, n_freq=n_freq, f_lower=f_lower), sqrt_weights, band)
    coordinates = _bank_coordinates(bank["mass1"], bank["mass2"], _chi_eff(bank), f_lower)
    waves, _ = fd_waveforms(signals, approximant=approximant, delta_f=delta_f, n_freq=n_freq, f_lower=f_lower)
    whitened = _unit_whitened(waves, sqrt_weights, band)
    signal_coordinates = _bank_coordinates(signals["mass1"], signals["mass2"], _chi_eff(signals), f_lower)
    return np.array([_nearest_match(w, c, templates, coordinates, n_neighbours, n_ifft) for w, c in zip(whitened, signal_coordinates)])


def write_bank(bank: dict[str, np.ndarray], path: str | os.PathLike[str], **meta) -> Path:
    """Write a template bank as an ECSV table (``meta`` goes to the table's metadata)."""
    from astropy.table import Table

    from skysift.io import write_table

    table = Table({key: np.asarray(values, dtype=float) for key, values in bank.items()})
    for key in ("mass1", "mass2"):
        table[key].unit = "solMass"
    table.meta.update(meta)
    return write_table(table, path)


def read_bank(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a template bank written by :func:`write_bank`.

    Raises
    ------
    InputDataError
        If the table lacks ``mass1`` or ``mass2``.
    """
    from skysift.io import read_table

    table = read_table(path)
    missing = [key for key in ("mass1", "mass2") if key not in table.colnames]
    if missing:
        raise InputDataError(f"{path}: template bank lacks column(s) {missing}")
    return {key: np.asarray(table[key], dtype=float) for key in table.colnames if key in ("mass1", "mass2", "spin1z", "spin2z")}


def _block_triggers(network: np.ndarray, covered: np.ndarray, start_time: float, sample_rate: float, *, threshold: float, cluster_window: float) -> tuple[np.ndarray, np.ndarray]:
    """The loudest sample of every 0.1 s, then clustering (:func:`~skysift.gw.search.cluster_triggers`)."""
    from skysift.gw.search import cluster_triggers

    block = int(0.1 * sample_rate)
    n_blocks = network.size // block
    blocks = np.where(covered[: n_blocks * block], network[: n_blocks * block], 0.0).reshape(n_blocks, block)
    peak = blocks.argmax(axis=1)
    times = start_time + (np.arange(n_blocks) * block + peak) / sample_rate
    return cluster_triggers(times, blocks[np.arange(n_blocks), peak], threshold=threshold, cluster_window=cluster_window)


def merge_block_peaks(times: Sequence[np.ndarray], stats: Sequence[np.ndarray], *, start_time: float, sample_rate: float,
                      threshold: float = 6.0, cluster_window: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered events of a whole bank from unclustered runs over parts of it.

    Each part's run with ``cluster_window=0`` gives the loudest sample of every
    0.1 s block above ``threshold`` (:func:`_block_triggers`); the whole bank's
    block peak is the loudest of the parts' in that block, and clustering those
    as :func:`matched_filter_search` does gives its events. (The parts' FFT
    segments follow their own longest template, so statistics may differ from
    one whole-bank run in the third decimal.) Lets a bank be searched by
    several processes.
    """
    from skysift.gw.search import cluster_triggers

    time = np.concatenate([np.asarray(t, dtype=float) for t in times])
    stat = np.concatenate([np.asarray(s, dtype=float) for s in stats])
    block = np.floor(np.round((time - start_time) * sample_rate) / int(0.1 * sample_rate)).astype(np.int64)
    order = np.lexsort((-stat, block))  # by block, loudest first
    first = np.ones(order.size, dtype=bool)
    first[1:] = block[order][1:] != block[order][:-1]
    loudest = order[first]
    return cluster_triggers(time[loudest], stat[loudest], threshold=threshold, cluster_window=cluster_window)


def _search_strain(
    conditioned: ConditionedStrain,
    templates: np.ndarray,
    template_duration: float,
    *,
    segment_duration: float,
    f_lower: float,
    f_high: float,
    template_batch: int,
    n_slides: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network SNR maximised over the bank, per sample (edges excluded), and per time slide.

    The data are the conditioned (high-passed, gated, tapered) strain; the
    inner products are weighted by the inverse PSD after inverse-spectrum
    truncation (``|H(f)|^2``, ``H`` the truncated whitening filter; as PyCBC). ``n_slides`` slides of the second detector's SNR
    (circular within the valid samples, :func:`~skysift.gw.background.slide_offsets`)
    need the segment to fit one FFT segment.

    Returns
    -------
    network : ndarray
        Zero-lag network SNR (0 where not valid).
    covered : ndarray of bool
        Valid samples.
    slid : ndarray
        (n_offsets, n_valid) network SNR of each slide over the valid samples.
    """
    strain = conditioned.strain
    fs = strain.sample_rate
    n_seg = int(segment_duration * fs)
    delta_f = 1.0 / segment_duration
    frequencies = np.fft.rfftfreq(n_seg, 1.0 / fs)
    in_band = (frequencies >= f_lower) & (frequencies <= f_high)
    weights = np.where(in_band, conditioned.inverse_psd(n_seg), 0.0)
    # |H|^2 reaches as far as the whole filter is long (its autocorrelation);
    # the tapered ends are not valid data either.
    reach = conditioned.filters.shape[1] / fs
    head = int(np.ceil((template_duration + reach + TAPER) * fs))
    tail = int(np.ceil((reach + TAPER) * fs))
    stride = n_seg - head - tail
    if stride <= 0:
        raise ValueError("segment_duration too short for the templates and the whitening filter")
    n_total = strain.data.shape[1]
    offsets = slide_offsets(stride / fs, n_slides, 1.0 + LIGHT_TRAVEL_MARGIN, fs)
    if offsets.size and n_total > n_seg:
        raise ValueError(f"time slides need a segment of at most {segment_duration:g} s")
    shift = int(np.ceil(COINCIDENCE_WINDOW * fs))
    network = np.zeros(n_total)
    covered = np.zeros(n_total, dtype=bool)
    slid = np.zeros((offsets.size, n_seg - head - tail), dtype=np.float32)
    for begin in range(0, max(n_total - n_seg, 0) + stride, stride):
        begin = min(begin, n_total - n_seg)
        chunk = strain.data[:, begin : begin + n_seg]
        spectra = np.fft.rfft(chunk, axis=-1) / fs
        best_squared = np.zeros(n_seg - head - tail)
        for lo in range(0, templates.shape[0], template_batch):
            batch = templates[lo : lo + template_batch]
            z_h = snr_series(spectra[0], batch, weights[0], delta_f, n_seg)
            z_l = snr_series(spectra[1], batch, weights[1], delta_f, n_seg)
            _update_network_peak(z_h, z_l, shift, head, n_seg - tail, best_squared)
            if offsets.size:
                h1 = (np.abs(z_h[:, head : n_seg - tail]) ** 2).astype(np.float32)
                l1 = (_coincident_max(np.abs(z_l), fs)[:, head : n_seg - tail] ** 2).astype(np.float32)
                for k, offset in enumerate(offsets):
                    np.maximum(slid[k], np.sqrt((h1 + np.roll(l1, offset, axis=1)).max(axis=0)), out=slid[k])
        network[begin + head : begin + n_seg - tail] = np.maximum(network[begin + head : begin + n_seg - tail], np.sqrt(best_squared))
        covered[begin + head : begin + n_seg - tail] = True
        if begin + n_seg >= n_total:
            break
    return network, covered, slid


def matched_filter_search(
    strain,
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
    sample_rate: float = 2048.0,
    gate_threshold: float = 50.0,
    n_slides: int = 0,
    triggers_path: str | os.PathLike[str] | None = None,
    context: RunContext | None = None,
) -> Path:
    """Run the matched-filter baseline over strain and write events (and a trigger table).

    Parameters
    ----------
    strain : path, or sequence of paths / ``"DET=path"`` / (detector, path)
        One MLGWSC-1 strain file, or one GWOSC/LOSC HDF5 or frame file per
        detector (:func:`skysift.gw.search.read_search_strain`).
    events_path : path
    mass_range : (float, float)
        Bank masses when ``bank`` is not given (:func:`template_bank`).
    bank : dict, optional
        ``mass1``, ``mass2`` arrays.
    f_lower, f_high : float
        Filter band (Hz).
    segment_duration : float
        FFT segment (s); consecutive segments overlap by the longest template
        plus the whitening filter's reach so every sample is filtered validly once.
    welch_segment : float
        Welch segment length for the PSD (s), also the whitening filter's
        length (:mod:`skysift.gw.conditioning`).
    threshold : float
        Network SNR below which triggers are dropped.
    cluster_window, var : float
        Clustering half-width and the events' ``var`` (s).
    template_batch : int
        Templates per inverse-FFT batch (memory: 2 x batch x segment complex).
    sample_rate : float
        Data at other rates are resampled to it (Hz).
    gate_threshold : float
        Autogating threshold (robust sigma of whitened strain; 0: off).
    n_slides : int
        Time slides of the second detector's SNR for the background (0:
        none); segments must fit one FFT segment.
    triggers_path : path, optional
        Also write the trigger table (:func:`skysift.gw.search.trigger_table`).
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    """
    from skysift.gw.mlgwsc import write_events
    from skysift.gw.search import SegmentTriggers, _gated, read_search_strain, trigger_table

    bank = bank if bank is not None else template_bank(mass_range)
    template_duration = float(chirp_time(bank["mass1"], bank["mass2"], f_lower).max()) + 0.5
    segments, paths = read_search_strain(strain, sample_rate=sample_rate)
    results = []
    cached: dict[tuple[float, float], np.ndarray] = {}
    for segment in segments:
        fs = segment.sample_rate
        # Data shorter than the filter segment: use the longest power-of-two
        # seconds that fit, so the FFT length matches the templates.
        fft_segment = float(min(segment_duration, 2.0 ** np.floor(np.log2(segment.duration))))
        if fft_segment <= template_duration + 2 * (welch_segment + TAPER):
            raise InputDataError(
                f"{paths[0]}: a segment of {segment.duration:.0f} s is too short for the matched filter "
                f"(templates last up to {template_duration:.1f} s)"
            )
        key = (fs, fft_segment)
        if key not in cached:
            n_seg = int(fft_segment * fs)
            cached[key] = template_waveforms(bank, delta_f=1.0 / fft_segment, n_freq=n_seg // 2 + 1, f_lower=f_lower)
        conditioned = condition_strain(segment, band=(f_lower, min(f_high, fs / 2)), welch_segment=welch_segment, gate_threshold=gate_threshold)
        network, covered, slid = _search_strain(conditioned, cached[key], template_duration, segment_duration=fft_segment, f_lower=f_lower,
                                                f_high=min(f_high, fs / 2), template_batch=template_batch, n_slides=n_slides)
        times, stats = _block_triggers(network, covered, segment.start_time, fs, threshold=threshold, cluster_window=cluster_window)
        valid_start = segment.start_time + np.flatnonzero(covered)[0] / fs if covered.any() else segment.start_time
        background = [_block_triggers(row.astype(float), np.ones(row.size, bool), valid_start, fs, threshold=threshold, cluster_window=cluster_window)[1] for row in slid]
        results.append(SegmentTriggers(
            times, stats, np.zeros(times.size, bool), _gated(times, conditioned.gates, template_duration, 0.5),
            np.concatenate(background) if background else np.zeros(0), slid.shape[0] * slid.shape[1] / fs, slid.shape[0],
            conditioned.gates, segment.start_time,
        ))
        log.info("matched filter: %s, %d templates, %.0f s, %d events, %d gates, %d slides", paths[0], bank["mass1"].size, segment.duration,
                 times.size, len(conditioned.gates), slid.shape[0])
    provenance = resolve_context(context, "gw_matched_filter").provenance(inputs=paths, extra={"n_templates": str(bank["mass1"].size)})
    table = trigger_table(results, search="matched_filter", edge=None)
    if triggers_path is not None:
        from skysift.io import write_table

        write_table(table, triggers_path, provenance=provenance)
    return write_events(events_path, np.asarray(table["time"]), np.asarray(table["stat"]), var, provenance=provenance)
