"""Transit training sets (AstroNet views of simulated stars) and TCE tables.

Entry points for the CLI:

* :func:`make_transit_training_set`: simulate stars, inject planets and
  negatives, detrend, make the model inputs (:data:`INPUT_NAMES`: global and
  local views, secondary, odd and even views, scalar diagnostics) and write a
  ``transit-training-set`` HDF5 product; parallel over chunks with dask.
* :func:`views_for_lightcurve`: the same inputs for a real light curve.
* :func:`read_tce_table`: the Kepler DR24 TCE table with AstroNet labels.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.io import ProductWriter
from skysift.log import get_logger
from skysift.parallel import compute_in_windows
from skysift.simulate.priors import LogUniform, Prior, describe, sample_parameters
from skysift.transit.injection import (
    BLEND_PRIORS,
    EB_PRIORS,
    NOISE_PRIORS,
    PLANET_PRIORS,
    eb_parameters,
    eclipsing_binary_flux,
    inject_systematics,
    noise_parameters,
    planet_parameters,
)
from skysift.transit.lightcurves import MISSIONS, STELLAR_PRIORS, LightCurve, mission_time_grid, simulate_stars
from skysift.transit.preprocess import (
    GLOBAL_BINS,
    LOCAL_BINS,
    MES_THRESHOLD,
    VETTING_INPUT_NAMES,
    VETTING_SCALARS,
    adaptive_spline_trend,
    detection_statistic,
    make_vetting_views,
    robust_spline_trend,
    transit_mask,
)
from skysift.transit.transit_model import transit_light_curve

__all__ = [
    "INPUT_NAMES",
    "KINDS",
    "PLANET_PRIORS_DWARF_HOSTS",
    "PRODUCT_TYPE",
    "TABLE_COLUMNS",
    "make_transit_training_set",
    "read_tce_table",
    "simulate_batch",
    "views_for_lightcurve",
]

log = get_logger(__name__)

PRODUCT_TYPE = "transit-training-set"
KINDS = ("planet", "eb", "blend", "noise")
#: Arrays of the product that the model takes, in the order of its ``forward``
#: (:func:`~skysift.transit.preprocess.make_vetting_views`).
INPUT_NAMES = VETTING_INPUT_NAMES
#: Planet prior of the training sets: :data:`~skysift.transit.injection.PLANET_PRIORS`
#: with the radius ratio capped at 0.2 instead of 0.3. The stellar density prior
#: (0.2-3 g/cm3) describes FGK dwarfs and subgiants (R* >~ 0.7 R_sun); Jupiter
#: around the Sun gives Rp/Rs = 0.1, inflated hot Jupiters 0.15-0.2, and larger
#: ratios need M-dwarf hosts (densities above ~5 g/cm3), outside that prior. A
#: "planet" of Rp/Rs 0.3 around a solar-density star is a 3 R_J body, i.e. a
#: low-mass star: the eclipsing-binary class, not a planet label.
PLANET_PRIORS_DWARF_HOSTS: dict[str, Prior] = {**PLANET_PRIORS, "rp": LogUniform(0.01, 0.2, "")}
#: Detection signal-to-noise drawn for every sample (all classes alike, so the
#: noise level carries no label information).
SNR_PRIOR: Prior = LogUniform(8.0, 80.0, "")
#: Column name -> (unit, description), written for every sample (NaN where not applicable).
TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    "period": ("d", "true orbital period"),
    "t0": ("d", "mid-transit / primary-eclipse time"),
    "duration": ("h", "true total transit/eclipse duration"),
    "tce_period": ("d", "period the views are folded on"),
    "tce_t0": ("d", "epoch the views are centred on"),
    "tce_duration": ("h", "duration used for the local view"),
    "rp": ("", "radius ratio (planet/star, or secondary/primary for binaries)"),
    "b": ("", "impact parameter"),
    "a_rs": ("", "semi-major axis / primary radius"),
    "stellar_density": ("g / cm3", "density setting a_rs"),
    "q1": ("", "Kipping limb-darkening q1"),
    "q2": ("", "Kipping limb-darkening q2"),
    "u1": ("", "quadratic limb darkening u1"),
    "u2": ("", "quadratic limb darkening u2"),
    "surface_brightness_ratio": ("", "binary surface brightness ratio"),
    "half_period": ("", "1 if folded at half the binary period"),
    "dilution": ("", "background binary light fraction"),
    "systematic": ("", "systematic code (0 none, 1 step, 2 sinusoid, 3 single events)"),
    "systematic_amplitude": ("", "systematic amplitude / noise"),
    "sinusoid_period": ("d", "period of the sinusoidal systematic"),
    "depth": ("ppm", "maximum depth of the injected signal"),
    "snr": ("", "injected strength: depth / white noise * sqrt(in-transit cadences), before red noise and detrending"),
    "mes": ("", "detection statistic measured on the detrended light curve at the TCE ephemeris (MES-like)"),
    "noise": ("ppm", "white noise per cadence"),
    "rotation_period": ("d", "stellar rotation period"),
    "rotation_amplitude": ("", "rms of rotational modulation"),
    "rotation_q": ("", "quality factor of rotational modulation"),
    "granulation_ratio": ("", "granulation rms / white noise"),
    "granulation_timescale": ("d", "granulation timescale"),
    "gap_fraction": ("", "fraction of cadences lost"),
}

#: What :func:`~skysift.transit.preprocess.detection_statistic` returns, carried from the selection to the vetting inputs.
_DETECTION_NAMES = ("mes", "depth", "noise", "n_in", "n_transits")
_DETECTION_KEYS = tuple(f"detection_{name}" for name in _DETECTION_NAMES)

_PRIOR_SETS = {"planet": PLANET_PRIORS_DWARF_HOSTS, "eb": EB_PRIORS, "blend": BLEND_PRIORS, "noise": NOISE_PRIORS}


def _signal(kind: str, time: np.ndarray, n: int, rng: np.random.Generator, priors: Mapping[str, Prior]) -> tuple[dict, np.ndarray]:
    draws = sample_parameters(priors, n, rng)
    if kind == "planet":
        p = planet_parameters(draws, float(time[0]))
        model = transit_light_curve(time, p["period"], p["t0"], p["rp"], p["a_rs"], p["b"], p["u1"], p["u2"])
        p["tce_period"], p["tce_t0"], p["tce_duration"] = p["period"], p["t0"], p["duration"]
    elif kind in ("eb", "blend"):
        p = eb_parameters(draws, float(time[0]))
        p["rp"] = p.pop("radius_ratio")
        model = eclipsing_binary_flux(time, {**p, "radius_ratio": p["rp"]})
    else:
        p = noise_parameters(draws, float(time[0]))
        model = np.ones((n, time.size))
    return p, model


def _simulate_round(
    counts: Mapping[str, int],
    time: np.ndarray,
    rng: np.random.Generator,
    priors: Mapping[str, Any],
) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """Simulate ``counts[kind]`` light curves of every kind in one pass, detrend them and measure their MES.

    Positives and negatives differ only in their signal (and the systematics
    of noise negatives); the stars, the transit-masked detrend and the
    detection statistic are computed for all of them at once. Returns, per
    kind, the detrended flux (n, T), the valid mask and the per-sample
    parameters (``mes`` included).
    """
    kinds = [kind for kind in KINDS if counts.get(kind, 0) > 0]
    snr_prior = priors.get("snr", SNR_PRIOR)
    snr_prior = snr_prior if isinstance(snr_prior, Prior) else SNR_PRIOR
    params, models = {}, []
    for kind in kinds:
        n = int(counts[kind])
        p, model = _signal(kind, time, n, rng, {**_PRIOR_SETS[kind], **priors.get(kind, {})})
        depth = 1.0 - model.min(axis=1)
        n_in = np.maximum((model < 1.0).sum(axis=1), 1)
        snr_target = snr_prior.sample(rng, n)
        if kind == "noise":
            # No signal: draw the noise level directly (same range the signals produce).
            noise = LogUniform(3e-5, 3e-3).sample(rng, n)
        else:
            noise = np.clip(depth * np.sqrt(n_in) / snr_target, 2e-5, 5e-3)
        p["noise"], p["depth"] = noise, depth
        p["snr"] = depth * np.sqrt(n_in) / noise
        p["label"] = np.full(n, 1 if kind == "planet" else 0, dtype=np.int8)
        p["kind"] = np.full(n, kind, dtype=object)
        params[kind] = p
        models.append(model)
    bounds = np.cumsum([0] + [params[kind]["noise"].size for kind in kinds])
    rows = {kind: slice(int(bounds[i]), int(bounds[i + 1])) for i, kind in enumerate(kinds)}
    noise = np.concatenate([params[kind]["noise"] for kind in kinds])
    star = sample_parameters({**STELLAR_PRIORS, **priors.get("star", {})}, noise.size, rng)
    flux, valid = simulate_stars(time, star, noise, rng)
    for kind, model in zip(kinds, models):
        flux[rows[kind]] *= model  # in place, kind by kind: no (N, T) concatenation of the models
    if "noise" in rows:
        flux[rows["noise"]] = inject_systematics(flux[rows["noise"]], time, params["noise"], params["noise"]["noise"], rng)
    ephemeris = {name: np.concatenate([params[kind][name] for kind in kinds]) for name in ("tce_period", "tce_t0", "tce_duration")}
    # The pipeline detrends with the candidate's transits masked (all kinds alike).
    exclude = transit_mask(time, ephemeris["tce_period"], ephemeris["tce_t0"], ephemeris["tce_duration"])
    trend = adaptive_spline_trend(time, flux, valid=valid, exclude=exclude)
    detrended = np.divide(flux, trend, out=trend)  # into the trend's memory: no new (N, T) array
    detection = detection_statistic(
        time, detrended, ephemeris["tce_period"], ephemeris["tce_t0"], ephemeris["tce_duration"], valid=valid
    )
    out = {}
    for kind in kinds:
        p = params[kind]
        p["mes"] = detection["mes"][rows[kind]]
        # The whole statistic, kept for the vetting inputs (their primary).
        p.update({f"detection_{name}": values[rows[kind]] for name, values in detection.items()})
        p.update({name: values[rows[kind]] for name, values in star.items()})
        out[kind] = (detrended[rows[kind]], valid[rows[kind]], p)
    return out


def simulate_batch(
    n_per_kind: Mapping[str, int],
    *,
    mission: str = "kepler",
    n_blocks: int = 1,
    seed: int | np.random.SeedSequence = 0,
    priors: Mapping[str, Mapping[str, Prior]] | None = None,
    statistic: str = "median",
    mes_threshold: float | None = MES_THRESHOLD,
    noise_mes_threshold: float | None = None,
    max_rounds: int = 12,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Simulate, detrend, select like a survey and make the model inputs for one chunk of samples.

    Each light curve is a simulated star times its signal, detrended with the
    BIC-chosen, transit-masked robust spline
    (:func:`~skysift.transit.preprocess.adaptive_spline_trend`); the
    detection statistic ``mes`` of the folded signal is then measured on the
    detrended flux itself
    (:func:`~skysift.transit.preprocess.detection_statistic`). Like a
    survey's TCE list, only planets, eclipsing binaries and blends with
    ``mes >= mes_threshold`` are kept; the others are redrawn (all their
    parameters, star included), in vectorised rounds sized by the
    acceptance rate so far, at most ``max_rounds`` rounds. Every round
    simulates all the kinds still short in one pass (:func:`_simulate_round`):
    negatives are made beside the positives, not in a pass of their own.

    Noise/systematics negatives keep their random ephemeris and are not
    selected by default (``noise_mes_threshold=None``): most spurious folds
    of pure noise score far below any threshold, and requiring them to pass
    would keep only the few whose systematic happens to sit on the
    ephemeris. Their ``mes`` is stored all the same.

    Parameters
    ----------
    n_per_kind : mapping of kind to int
        How many ``planet``, ``eb``, ``blend`` and ``noise`` samples.
    mission, n_blocks
        Time grid (:func:`~skysift.transit.lightcurves.mission_time_grid`).
    seed : int or numpy.random.SeedSequence
        Everything in the chunk follows from it.
    priors : mapping, optional
        Per-kind prior overrides, e.g. ``{"planet": {"rp": LogUniform(0.02, 0.1)}}``;
        ``"star"`` overrides :data:`STELLAR_PRIORS`; ``"snr"`` (a single
        :class:`~skysift.simulate.priors.Prior`) replaces :data:`SNR_PRIOR`.
    mes_threshold : float or None
        Detection threshold for planets, binaries and blends (Kepler: 7.1);
        None keeps every draw.
    noise_mes_threshold : float or None
        Threshold for noise negatives (None: no selection).
    max_rounds : int
        Redraw rounds per kind before giving up (:class:`RuntimeError`).

    Returns
    -------
    inputs : dict of str to numpy.ndarray
        The :data:`INPUT_NAMES` arrays
        (:func:`~skysift.transit.preprocess.make_vetting_views`), float32.
    columns : dict of str to numpy.ndarray
        ``label``, ``kind`` and every :data:`TABLE_COLUMNS` entry, in sample order.
    """
    rng = np.random.default_rng(seed)
    priors = priors or {}
    time = mission_time_grid(mission, n_blocks=n_blocks)
    n_total = int(sum(n_per_kind.values()))
    names = ("label", "kind", *TABLE_COLUMNS)
    kinds = [kind for kind in KINDS if int(n_per_kind.get(kind, 0)) > 0]
    threshold = {kind: noise_mes_threshold if kind == "noise" else mes_threshold for kind in kinds}
    need = {kind: int(n_per_kind[kind]) for kind in kinds}
    tried = dict.fromkeys(kinds, 0)
    accepted = dict.fromkeys(kinds, 0)
    kept: dict[str, list] = {kind: [] for kind in kinds}
    for _ in range(max_rounds):
        # Size each kind's draw by its acceptance rate so far (bounded), so few rounds are needed;
        # every kind still short is simulated in the same pass.
        counts = {}
        for kind in kinds:
            if need[kind] == 0:
                continue
            rate = max(accepted[kind] / tried[kind], 0.1) if tried[kind] else 1.0
            counts[kind] = need[kind] if threshold[kind] is None else int(min(np.ceil(1.15 * need[kind] / rate) + 2, 10 * need[kind] + 8))
        if not counts:
            break
        for kind, (detrended, valid, p) in _simulate_round(counts, time, rng, priors).items():
            n_try = counts[kind]
            keep = np.ones(n_try, dtype=bool) if threshold[kind] is None else p["mes"] >= threshold[kind]
            tried[kind] += n_try
            accepted[kind] += int(keep.sum())
            index = np.flatnonzero(keep)[: need[kind]]
            kept[kind].append((detrended[index], valid[index], {k: (v[index] if isinstance(v, np.ndarray) and v.shape[:1] == (n_try,) else v) for k, v in p.items()}))
            need[kind] -= index.size
    short = [kind for kind in kinds if need[kind] > 0]
    if short:
        kind = short[0]
        raise RuntimeError(
            f"only {n_per_kind[kind] - need[kind]} of {n_per_kind[kind]} {kind} signals reached mes >= {threshold[kind]} "
            f"after {max_rounds} rounds (acceptance {accepted[kind]}/{tried[kind]}); loosen the threshold or raise the snr prior"
        )
    fluxes = [np.concatenate([part[0] for part in kept[kind]]) for kind in kinds]
    valids = [np.concatenate([part[1] for part in kept[kind]]) for kind in kinds]
    tables = [
        {k: np.concatenate([t.get(k, np.full(t["label"].size, np.nan)) for _, _, t in kept[kind]]) for k in (*names, *STELLAR_PRIORS, *_DETECTION_KEYS)}
        for kind in kinds
    ]
    detrended = np.concatenate(fluxes)
    valid = np.concatenate(valids)
    params = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    detection = {name: params[f"detection_{name}"] for name in _DETECTION_NAMES}
    inputs = make_vetting_views(
        time, detrended, params["tce_period"], params["tce_t0"], params["tce_duration"], valid=valid,
        statistic=statistic, detection=detection,
    )  # fmt: skip
    out = {}
    for name in names:
        values = params[name]
        if name in ("duration", "tce_duration"):
            values = values * 24.0
        elif name in ("depth", "noise"):
            values = values * 1e6
        out[name] = values
    out["label"] = out["label"].astype(np.int8)
    out["kind"] = out["kind"].astype(str)
    # Kinds were simulated in blocks; interleave them.
    order = rng.permutation(n_total)
    return {k: v[order] for k, v in inputs.items()}, {k: v[order] for k, v in out.items()}


def _split_counts(n_samples: int, positive_fraction: float, negative_mix: Mapping[str, float], rng: np.random.Generator) -> np.ndarray:
    """Kind index (into KINDS) of every sample, shuffled."""
    n_planet = int(round(positive_fraction * n_samples))
    weights = np.array([negative_mix.get(k, 0.0) for k in KINDS[1:]], dtype=float)
    if n_samples - n_planet and weights.sum() <= 0:
        raise ValueError(f"negative_mix {dict(negative_mix)} gives no negative kind a weight")
    negatives = rng.choice(np.arange(1, len(KINDS)), size=n_samples - n_planet, p=weights / max(weights.sum(), 1e-300))
    kinds = np.concatenate([np.zeros(n_planet, dtype=int), negatives])
    rng.shuffle(kinds)
    return kinds


def make_transit_training_set(
    out_path: str | os.PathLike[str],
    n_samples: int,
    *,
    seed: int,
    mission: str = "kepler",
    n_blocks: int = 1,
    positive_fraction: float = 0.5,
    negative_mix: Mapping[str, float] | None = None,
    priors: Mapping[str, Mapping[str, Prior]] | None = None,
    chunk_size: int = 256,
    statistic: str = "median",
    mes_threshold: float | None = MES_THRESHOLD,
    noise_mes_threshold: float | None = None,
    context: RunContext | None = None,
) -> Path:
    """Write a ``transit-training-set`` HDF5 product of AstroNet views and vetting inputs.

    Parameters
    ----------
    out_path : str or path-like
        Destination ``.h5`` (written atomically).
    n_samples : int
        Number of light curves.
    seed : int
        Master seed; chunk ``i`` uses the ``i``-th child of
        ``numpy.random.SeedSequence(seed)``, so the product does not depend on
        the scheduler or the number of workers.
    mission : str
        Key of :data:`~skysift.transit.lightcurves.MISSIONS`.
    n_blocks : int
        Quarters/sectors per light curve.
    positive_fraction : float
        Fraction of planets (``label`` 1).
    negative_mix : mapping, optional
        Relative weights of ``eb``, ``blend`` and ``noise`` among negatives
        (default 0.4, 0.2, 0.4).
    priors : mapping, optional
        Prior overrides per kind (see :func:`simulate_batch`).
    chunk_size : int
        Light curves per task.
    statistic : {"median", "mean"}
        Bin statistic of the views.
    mes_threshold : float or None
        Planets, eclipsing binaries and blends are kept only if their
        detection statistic on the detrended light curve reaches it (Kepler's
        7.1), as in a survey's TCE list; None keeps every draw.
    noise_mes_threshold : float or None
        The same for noise/systematics negatives (default: not selected).
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Notes
    -----
    Arrays (float32): ``global_view`` (N, 2001); ``local_view``,
    ``secondary_view``, ``odd_view`` and ``even_view`` (N, 201); ``scalars``
    (N, 11), the :data:`~skysift.transit.preprocess.VETTING_SCALARS` (their
    names in the ``scalar_names`` attribute). Table: ``label`` (int8),
    ``kind`` and :data:`TABLE_COLUMNS` with units.
    Each light curve is a simulated star (rotation, granulation, white noise,
    gaps; :func:`~skysift.transit.lightcurves.simulate_stars`) times the signal,
    detrended with the transit-masked robust spline whose knot spacing BIC
    picks per star (:func:`~skysift.transit.preprocess.adaptive_spline_trend`)
    and binned with medians, as AstroNet does for Kepler light curves. Signals
    below ``mes_threshold`` on the detrended flux are redrawn
    (:func:`simulate_batch`), so every label-1 sample is a detectable planet.
    """
    import dask

    if mission not in MISSIONS:
        raise ValueError(f"unknown mission {mission!r}; choose one of {sorted(MISSIONS)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    negative_mix = dict(negative_mix or {"eb": 0.4, "blend": 0.2, "noise": 0.4})
    sequence = np.random.SeedSequence(seed)
    kinds = _split_counts(n_samples, positive_fraction, negative_mix, np.random.default_rng(sequence.spawn(1)[0]))
    chunks = [kinds[i : i + chunk_size] for i in range(0, n_samples, chunk_size)]
    chunk_seeds = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(len(chunks))
    tasks = [
        dask.delayed(simulate_batch)(
            {kind: int((chunk == i).sum()) for i, kind in enumerate(KINDS)},
            mission=mission,
            n_blocks=n_blocks,
            seed=chunk_seed,
            priors=priors,
            statistic=statistic,
            mes_threshold=mes_threshold,
            noise_mes_threshold=noise_mes_threshold,
        )
        for chunk, chunk_seed in zip(chunks, chunk_seeds)
    ]
    provenance = resolve_context(context, "transit_training_set").provenance(inputs=(), seed=seed)
    attrs = {
        "mission": mission,
        "n_blocks": n_blocks,
        "positive_fraction": positive_fraction,
        "statistic": statistic,
        "global_bins": GLOBAL_BINS,
        "local_bins": LOCAL_BINS,
        "scalar_names": ",".join(VETTING_SCALARS),
        "detrend": "adaptive_spline_trend (BIC knot spacing, transit-masked)",
        "mes_threshold": float("nan") if mes_threshold is None else float(mes_threshold),
        "noise_mes_threshold": float("nan") if noise_mes_threshold is None else float(noise_mes_threshold),
    }
    for kind, kind_priors in _PRIOR_SETS.items():
        merged = {**kind_priors, **(priors or {}).get(kind, {})}
        attrs.update({f"prior.{kind}.{k}": v for k, v in describe(merged).items()})
    log.info("transit training set: %d samples in %d chunks (%s)", n_samples, len(tasks), mission)
    with ProductWriter(out_path, PRODUCT_TYPE, provenance, attrs=attrs) as writer:
        writer.add_array("global_view", (GLOBAL_BINS,), "float32", description="AstroNet global view (median 0, min -1)")
        writer.add_array("local_view", (LOCAL_BINS,), "float32", description="AstroNet local view (median 0, min -1)")
        for name, where in (("secondary", "centred half an orbit after t0"), ("odd", "of odd transits only"),
                            ("even", "of even transits only")):
            writer.add_array(f"{name}_view", (LOCAL_BINS,), "float32",
                             description=f"local view {where} (median 0, in units of the primary depth)")
        writer.add_array("scalars", (len(VETTING_SCALARS),), "float32",
                         description="vetting diagnostics: " + ", ".join(VETTING_SCALARS))
        writer.add_column("label", "int8", description="1 planet, 0 otherwise")
        writer.add_column("kind", str, description="planet, eb, blend or noise")
        for name, (unit, description) in TABLE_COLUMNS.items():
            writer.add_column(name, "float64", unit=unit, description=description)
        for inputs, columns in compute_in_windows(tasks, client=context.client if context else None,
            scheduler=context.scheduler if context else None, desc="transit chunks"):
            writer.append(inputs, columns)
    return Path(out_path)


def views_for_lightcurve(
    lc: LightCurve,
    period: float,
    t0: float,
    duration: float,
    *,
    knot_spacing: float | None = None,
    statistic: str = "median",
) -> tuple[np.ndarray, ...]:
    """The model inputs (:data:`INPUT_NAMES`, in that order) of one real light curve.

    The flux is detrended as the training sets are: the robust spline with
    the candidate's transits masked and the knot spacing chosen by BIC
    (:func:`~skysift.transit.preprocess.adaptive_spline_trend`); a number for
    ``knot_spacing`` instead uses AstroNet's fixed-spacing, unmasked
    :func:`~skysift.transit.preprocess.robust_spline_trend` (the former
    behaviour, default 1 d). Then the flux is folded on the ephemeris:
    ``period`` and ``t0`` in days (same time system as ``lc.time``),
    ``duration`` the total transit duration in **hours** (as in TCE tables),
    and the views and scalars are made as for the training sets
    (:func:`~skysift.transit.preprocess.make_vetting_views`).

    Returns
    -------
    tuple of numpy.ndarray
        ``global_view`` (2001,), ``local_view``, ``secondary_view``,
        ``odd_view``, ``even_view`` (201,) and ``scalars`` (11,).
    """
    if knot_spacing is None:
        exclude = transit_mask(lc.time, period, t0, duration / 24.0)
        trend = adaptive_spline_trend(lc.time, lc.flux, exclude=exclude)[0]
    else:
        trend = robust_spline_trend(lc.time, lc.flux, knot_spacing=knot_spacing)
    detrended = lc.flux / trend
    inputs = make_vetting_views(lc.time, detrended, period, t0, duration / 24.0, statistic=statistic)
    return tuple(inputs[name][0] for name in INPUT_NAMES)


_TCE_COLUMNS = {
    "kepid": ("kepid", int),
    "tce_plnt_num": ("tce_plnt_num", int),
    "tce_period": ("period", float),
    "tce_time0bk": ("t0", float),
    "tce_duration": ("duration", float),
    "av_training_set": ("av_training_set", str),
}
#: AstroNet's binary labels: planet candidates are positives; astrophysical and
#: non-transiting false positives negatives; "UNK" rows are not labelled.
_LABELS = {"PC": 1, "AFP": 0, "NTP": 0}


def read_tce_table(path: str | os.PathLike[str], *, labelled_only: bool = True):
    """Read a Kepler TCE table (NASA Exoplanet Archive CSV export, ``#`` comments).

    Parameters
    ----------
    path : str or path-like
        CSV with columns ``kepid, tce_plnt_num, tce_period, tce_time0bk,
        tce_duration, av_training_set`` (others ignored).
    labelled_only : bool
        Drop rows whose ``av_training_set`` is not PC, AFP or NTP (AstroNet's 15,737).

    Returns
    -------
    astropy.table.Table
        ``kepid``, ``tce_plnt_num``, ``period`` (d), ``t0`` (BKJD, d),
        ``duration`` (h), ``av_training_set`` and ``label`` (1 for PC, 0 for
        AFP/NTP, -1 otherwise).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        Naming the file: missing columns or unparsable values.
    """
    from astropy import units as u
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such TCE table")
    with path.open(newline="") as stream:
        reader = csv.DictReader(line for line in stream if line.strip() and not line.startswith("#"))
        header = reader.fieldnames or []
        missing = [c for c in _TCE_COLUMNS if c not in header]
        if missing:
            raise InputDataError(f"{path}: TCE table lacks column(s) {', '.join(missing)}")
        values: dict[str, list] = {name: [] for name, _ in _TCE_COLUMNS.values()}
        for line_number, row in enumerate(reader, start=2):
            try:
                for source, (name, kind) in _TCE_COLUMNS.items():
                    values[name].append(kind(row[source].strip()))
            except (TypeError, ValueError) as exc:
                raise InputDataError(f"{path}: bad value in data row {line_number} ({exc})") from exc
    table = Table(
        {
            "kepid": np.array(values["kepid"], dtype=np.int64),
            "tce_plnt_num": np.array(values["tce_plnt_num"], dtype=np.int32),
            "period": np.array(values["period"]) * u.day,
            "t0": np.array(values["t0"]) * u.day,
            "duration": np.array(values["duration"]) * u.hour,
            "av_training_set": np.array(values["av_training_set"], dtype=str),
        }
    )
    table["label"] = np.array([_LABELS.get(v, -1) for v in table["av_training_set"]], dtype=np.int8)
    if labelled_only:
        table = table[table["label"] >= 0]
    return table
