"""Strong-lens training sets as skysift HDF5 products (``product_type = "lens-training-set"``).

Layout (see ``docs/data-products.md``):

* ``/data/image``: ``(N, 1, H, W)`` float32, unit ``electron / s`` per pixel,
  sky-subtracted, with survey noise. Feed it through
  :func:`skysift.lens.model.normalise` before the network, at training and at
  inference alike.
* ``/samples``: ``label`` (int8; 1 = lens, 0 = not), ``kind`` (``"lens"``,
  ``"galaxy"``, ``"ring"``, ``"spiral"``, ``"companion"``, ``"blend"``),
  ``galaxy_id`` (catalogue ``IDENT`` of a real galaxy, -1 for simulated ones),
  every parameter of :data:`~skysift.lens.simulator.LENS_PRIORS` with its unit
  (arc parameters NaN for non-lenses; ``lens_*`` light parameters NaN except
  ``lens_mag`` for real galaxies), ``magnification`` (lensed over intrinsic
  source flux inside the stamp; NaN for non-lenses), and the ``feature_*``
  parameters of hard negatives (:mod:`skysift.lens.negatives`; NaN otherwise),
  ``arc_snr`` (integrated arc S/N) and ``arc_contrast`` (arc over lens-light
  flux in the arc's pixels; both NaN for non-lenses). Lenses are redrawn
  until detectable (arc S/N, magnification and resolution cuts; see
  :func:`make_lens_training_set`).

Negatives are split between plain galaxies (40 %) and the four hard-negative
kinds (15 % each). With ``galaxies="simulated"`` the lens galaxies are Sersic
profiles from the simulator (the embedded demo); given a directory of GalSim
real-galaxy stamps, every sample uses a real HST galaxy degraded to the survey
(random one of the catalogue, randomly rotated by multiples of 90 degrees and
flipped), with arcs and hard-negative structure added on top.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from skysift.context import RunContext, resolve_context
from skysift.io import ProductWriter
from skysift.lens.injection import degrade_to_survey, read_real_galaxies
from skysift.lens.negatives import FEATURE_NAMES, HARD_NEGATIVE_KINDS, HARD_NEGATIVE_PRIORS, render_hard_negative
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator, arc_signal_to_noise
from skysift.log import get_logger
from skysift.parallel import compute_in_windows, usable_cores
from skysift.simulate.priors import describe, sample_parameters

__all__ = [
    "DEFAULT_MIN_ARC_CONTRAST",
    "DEFAULT_MIN_ARC_SNR",
    "DEFAULT_MIN_MAGNIFICATION",
    "DEFAULT_RESOLUTION_FACTOR",
    "IMAGE_UNIT",
    "KINDS",
    "NEGATIVE_MIX",
    "arc_contrast",
    "make_lens_training_set",
    "simulate_batch",
]

_LOG = get_logger(__name__)
IMAGE_UNIT = "electron / s"
KINDS = ("lens", "galaxy", *HARD_NEGATIVE_KINDS)
#: Share of each negative kind among the negatives.
NEGATIVE_MIX: dict[str, float] = {"galaxy": 0.4, "ring": 0.15, "spiral": 0.15, "companion": 0.15, "blend": 0.15}
_ARC_NAMES = tuple(k for k in LENS_PRIORS if not k.startswith("lens_") and k not in ("x_lens", "y_lens"))
_LIGHT_NAMES = tuple(k for k in LENS_PRIORS if k.startswith("lens_"))


def _assign_kinds(n_samples: int, positive_fraction: float, rng: np.random.Generator) -> np.ndarray:
    n_pos = int(round(n_samples * positive_fraction))
    n_neg = n_samples - n_pos
    names = list(NEGATIVE_MIX)
    counts = np.floor(np.array([NEGATIVE_MIX[k] for k in names]) * n_neg).astype(int)
    counts[0] += n_neg - counts.sum()
    kinds = np.array(["lens"] * n_pos + [k for k, c in zip(names, counts) for _ in range(c)], dtype=object)
    return kinds[rng.permutation(n_samples)]


#: Default detectability selection of the simulated lenses (see :func:`make_lens_training_set`).
DEFAULT_MIN_ARC_SNR = 20.0
DEFAULT_MIN_MAGNIFICATION = 3.0
DEFAULT_RESOLUTION_FACTOR = 1.2
DEFAULT_MIN_ARC_CONTRAST = 0.0
#: Rounds of redrawing rejected lenses before giving up.
MAX_REDRAW_ROUNDS = 50
#: Hard negatives rendered together on the supersampled grid (temporaries of ~0.6 MB each).
_NEGATIVE_CHUNK = 4


def arc_contrast(arc: torch.Tensor, lens_light: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Arc-to-lens-light flux ratio over the arc's pixels above 1 sigma, ``(N,)``.

    ``C = sum_p A_p / sum_p L_p`` over the pixels where the noise-free arc
    ``A`` exceeds the local noise (those of
    :func:`~skysift.lens.simulator.arc_signal_to_noise`); ``L`` is the
    noise-free lens light. This is the "contrast with the lens galaxy", one of
    the lens characteristics (with lensed-image brightness and size) on which
    lens-finder completeness depends in the challenge of Metcalf et al. (2019,
    A&A 625, A119): an arc at ``C << 1`` is a small perturbation of the lens
    light. Infinite where no lens light falls on the arc, zero where no pixel
    passes.
    """
    mask = (arc > torch.sqrt(variance)).to(arc.dtype)
    signal = (arc * mask).sum(dim=(-2, -1))
    return torch.where(signal > 0, signal / (lens_light * mask).sum(dim=(-2, -1)), torch.zeros_like(signal))


def _draw_detectable_arcs(
    simulator: LensSimulator,
    params: dict[str, np.ndarray],
    lens_light: torch.Tensor,
    rng: np.random.Generator,
    *,
    min_arc_snr: float,
    min_magnification: float,
    resolution_factor: float,
    min_arc_contrast: float,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Draw arcs until every system passes the detectability cuts.

    ``params`` (one row per lens, every key of :data:`LENS_PRIORS`) has its arc
    parameters (:data:`_ARC_NAMES`) redrawn in place for the rejected systems;
    the lens light and position are kept. Vectorised: each round renders only
    the systems still rejected. Returns the PSF-convolved arcs ``(n, H, W)``,
    their S/N, magnifications and contrasts (:func:`arc_contrast`).
    """
    n = len(params["theta_E"])
    arcs = torch.zeros((n, simulator.image_size, simulator.image_size), dtype=simulator.dtype, device=simulator.device)
    snr, magnification, contrast = np.zeros(n), np.zeros(n), np.zeros(n)
    min_theta_e = resolution_factor * simulator.survey.seeing / 2.0
    arc_priors = {name: LENS_PRIORS[name] for name in _ARC_NAMES}
    todo = np.arange(n)
    for _ in range(MAX_REDRAW_ROUNDS):
        # The resolution cut needs no rendering: redraw unresolved systems first.
        for _ in range(MAX_REDRAW_ROUNDS):
            unresolved = todo[params["theta_E"][todo] < min_theta_e]
            if not len(unresolved):
                break
            for name, values in sample_parameters(arc_priors, len(unresolved), rng).items():
                params[name][unresolved] = values
        subset = {k: v[todo] for k, v in params.items() if not k.startswith("lens_")}
        arc, _, mu = simulator.render_components(subset, convolve=True)
        index = torch.as_tensor(todo, device=simulator.device)
        light = lens_light.index_select(0, index)
        variance = simulator.noise_variance(arc + light)
        arcs[index] = arc
        snr[todo] = arc_signal_to_noise(arc, variance).double().cpu().numpy()
        magnification[todo] = mu.double().cpu().numpy()
        contrast[todo] = arc_contrast(arc, light, variance).double().cpu().numpy()
        rejected = (
            (snr[todo] < min_arc_snr) | (magnification[todo] < min_magnification)
            | (params["theta_E"][todo] < min_theta_e) | (contrast[todo] < min_arc_contrast)
        )
        todo = todo[rejected]
        if not len(todo):
            return arcs, snr, magnification, contrast
        for name, values in sample_parameters(arc_priors, len(todo), rng).items():
            params[name][todo] = values
    raise ValueError(
        f"{len(todo)} of {n} simulated lenses still fail the detectability cuts (arc S/N >= {min_arc_snr}, "
        f"magnification >= {min_magnification}, theta_E >= {min_theta_e:.3f} arcsec, arc contrast >= "
        f"{min_arc_contrast}) after {MAX_REDRAW_ROUNDS} "
        "redraws: lower the cuts or widen LENS_PRIORS for this survey"
    )


def simulate_batch(
    simulator: LensSimulator,
    kinds: np.ndarray,
    rng: np.random.Generator,
    galaxy_stamps: np.ndarray | None = None,
    galaxy_meta: Mapping[str, np.ndarray] | None = None,
    *,
    min_arc_snr: float = DEFAULT_MIN_ARC_SNR,
    min_magnification: float = DEFAULT_MIN_MAGNIFICATION,
    resolution_factor: float = DEFAULT_RESOLUTION_FACTOR,
    min_arc_contrast: float = DEFAULT_MIN_ARC_CONTRAST,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Simulate one batch: images ``(N, 1, H, W)`` float32 and the per-sample columns.

    A pure function of ``(kinds, galaxy stamps, rng)``: parameters are drawn
    from the declared priors, lenses redrawn until detectable (see
    :func:`make_lens_training_set`), images rendered, noise added.

    Parameters
    ----------
    simulator : LensSimulator
    kinds : array of str
        Kind of each sample (:data:`KINDS`).
    rng : numpy.random.Generator
    galaxy_stamps : numpy.ndarray, optional
        ``(G, H, W)`` noise-free real-galaxy stamps (e-/s); if given, each
        sample draws one of them as its lens galaxy instead of a Sersic.
    galaxy_meta : mapping, optional
        ``ident`` and ``magnitude`` arrays of length G for the stamps.
    min_arc_snr, min_magnification, resolution_factor, min_arc_contrast : float
        Detectability cuts on the lenses (:func:`make_lens_training_set`).
    """
    n = len(kinds)
    params = sample_parameters(LENS_PRIORS, n, rng)
    columns: dict[str, np.ndarray] = {"galaxy_id": np.full(n, -1, dtype=np.int64)}
    if galaxy_stamps is None:
        # Convolution is linear: the lens light is convolved once, on its own,
        # because the arc S/N needs its noise.
        galaxies = simulator.render_galaxy(params, convolve=True)
    else:
        # Real galaxies sit at the stamp centre: the lens (and its shear) too.
        params["x_lens"][:] = 0.0
        params["y_lens"][:] = 0.0
        choice = rng.integers(0, len(galaxy_stamps), size=n)
        stamps = galaxy_stamps[choice]
        rotations, flips = rng.integers(0, 4, size=n), rng.integers(0, 2, size=n).astype(bool)
        stamps = np.stack([np.rot90(s[:, ::-1] if f else s, r) for s, r, f in zip(stamps, rotations, flips)])
        # Real stamps are already PSF-matched.
        galaxies = torch.tensor(stamps, dtype=simulator.dtype, device=simulator.device)
        assert galaxy_meta is not None
        columns["galaxy_id"] = np.asarray(galaxy_meta["ident"], dtype=np.int64)[choice]
    is_lens = kinds == "lens"
    columns["magnification"] = np.full(n, np.nan)
    columns["arc_snr"] = np.full(n, np.nan)
    columns["arc_contrast"] = np.full(n, np.nan)
    clean = galaxies
    if is_lens.any():
        index = torch.as_tensor(np.flatnonzero(is_lens), device=simulator.device)
        lens_params = {k: v[is_lens] for k, v in params.items()}
        arc, snr, magnification, contrast = _draw_detectable_arcs(
            simulator, lens_params, galaxies.index_select(0, index), rng,
            min_arc_snr=min_arc_snr, min_magnification=min_magnification, resolution_factor=resolution_factor,
            min_arc_contrast=min_arc_contrast,
        )
        for name in _ARC_NAMES:
            params[name][is_lens] = lens_params[name]
        clean = clean.index_add(0, index, arc)
        columns["magnification"][is_lens] = magnification
        columns["arc_snr"][is_lens] = snr
        columns["arc_contrast"][is_lens] = contrast
    columns.update({name: values.copy() for name, values in params.items()})
    if galaxy_stamps is not None:
        for name in _LIGHT_NAMES:
            columns[name] = np.full(n, np.nan)
        columns["lens_mag"] = np.asarray(galaxy_meta["magnitude"], dtype=np.float64)[choice]
    for name in _ARC_NAMES:
        columns[name] = np.where(is_lens, columns[name], np.nan)
    for name in FEATURE_NAMES:
        columns[name] = np.full(n, np.nan)
    for kind in HARD_NEGATIVE_KINDS:
        selected = kinds == kind
        if not selected.any():
            continue
        feature = sample_parameters(HARD_NEGATIVE_PRIORS[kind], int(selected.sum()), rng)
        x_centre, y_centre = params["x_lens"][selected], params["y_lens"][selected]
        # The structures are drawn on the supersampled grid: a few images at a time keep
        # its temporaries in cache (each image is rendered on its own, so this changes nothing).
        structure = torch.cat([
            render_hard_negative(simulator, kind, {k: v[part] for k, v in feature.items()},
                                 (x_centre[part], y_centre[part]))
            for part in (slice(start, start + _NEGATIVE_CHUNK) for start in range(0, len(x_centre), _NEGATIVE_CHUNK))
        ])
        index = torch.as_tensor(np.flatnonzero(selected), device=simulator.device)
        clean = clean.index_add(0, index, structure)
        for name, values in feature.items():
            columns[name][selected] = values
    images = simulator.add_noise(clean, rng)
    columns["label"] = is_lens.astype(np.int8)
    columns["kind"] = np.asarray(kinds, dtype=object)
    return images.to(torch.float32).cpu().numpy()[:, None], columns


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU kernels on ``count`` threads for a while (the setting is process-wide)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _column_units() -> dict[str, str]:
    units = {name: prior.unit for name, prior in LENS_PRIORS.items()}
    for priors in HARD_NEGATIVE_PRIORS.values():
        units.update({name: prior.unit for name, prior in priors.items()})
    # Ring radii for rings, arcsec for companions and blends, degrees (pitch angle) for spirals.
    units["feature_width"] = ""
    return units


def make_lens_training_set(
    out_path: str | os.PathLike[str],
    n_samples: int,
    *,
    survey: str = "lsst",
    image_size: int = 64,
    supersampling: int = 3,
    positive_fraction: float = 0.5,
    galaxies: str | os.PathLike[str] = "simulated",
    seed: int = 0,
    context: RunContext | None = None,
    device: str = "cpu",
    batch_size: int = 512,
    compile: bool = False,
    adaptive_supersampling: bool = True,
    workers: int | None = None,
    min_arc_snr: float = DEFAULT_MIN_ARC_SNR,
    min_magnification: float = DEFAULT_MIN_MAGNIFICATION,
    resolution_factor: float = DEFAULT_RESOLUTION_FACTOR,
    min_arc_contrast: float = DEFAULT_MIN_ARC_CONTRAST,
) -> Path:
    """Simulate a lens-finding training set and write it as an HDF5 product.

    Parameters
    ----------
    out_path : str or path-like
        Destination ``.h5``.
    n_samples : int
        Number of images.
    survey : str
        Key of :data:`~skysift.lens.simulator.SURVEYS`.
    image_size : int
        Stamp side (pixels).
    supersampling : int
        Sub-pixels per pixel side.
    positive_fraction : float
        Share of lenses (label 1).
    galaxies : "simulated" or path
        Sersic lens galaxies from the simulator, or a directory / catalogue of
        GalSim real-galaxy stamps (:func:`~skysift.lens.injection.read_real_galaxies`).
    seed : int
        Seed of the sample kinds; batch ``i`` draws its parameters and noise
        from child ``i`` of ``SeedSequence(seed)``, so the product does not
        depend on ``workers``.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    device : str
        Torch device (``"cpu"``, ``"cuda"``).
    batch_size : int
        Images simulated and written per batch (the unit of work of a thread).
    compile : bool
        Use ``torch.compile`` for the surface-brightness kernel (pays off above
        ~10^4 images on CPU).
    adaptive_supersampling : bool
        Supersample only where the surface brightness needs it (default; within
        0.1 % of the image peak of the uniform result and ~2x faster; see
        :class:`~skysift.lens.simulator.LensSimulator`). The hard-negative
        structures are always supersampled uniformly.
    workers : int, optional
        Threads simulating batches concurrently (default: the usable cores);
        each runs torch on one thread (its kernels release the GIL), while this
        thread writes finished batches in order.
    min_arc_snr : float
        Keep only lenses whose arc has an integrated S/N of at least this
        (:func:`~skysift.lens.simulator.arc_signal_to_noise`: arc flux over the
        pixels where the noise-free arc exceeds 1 sigma of the local noise,
        lens-light photon noise included). Default 20, the cut of Collett
        (2015, ApJ 811, 20) for LSST/Euclid lens forecasts.
    min_magnification : float
        Keep only lenses with total source magnification (``magnification``
        column) of at least this; default 3 (Collett 2015: multiple images or
        an arc clearly stretched by the lens).
    resolution_factor : float
        Keep only lenses with ``theta_E >= resolution_factor * seeing / 2``, i.e.
        an Einstein radius resolved from the lens centre; default 1.2.
    min_arc_contrast : float
        Keep only lenses whose arc-to-lens-light flux ratio over the arc's
        pixels (:func:`arc_contrast`, stored as ``arc_contrast``) is at least
        this; default 0 (no cut): the arcs buried in the lens light are the
        hardest detectable lenses in one band, but they are kept, as a
        survey's lens search meets them (Metcalf et al. 2019 report lens-finder
        completeness above thresholds on this contrast).

    Lenses failing a cut get their arc parameters (mass model, shear and
    source) redrawn from :data:`~skysift.lens.simulator.LENS_PRIORS`, the lens
    galaxy kept, until all pass (a bounded, vectorised loop), so the training
    positives are the detectable part of the prior, as in the lens-finding
    training sets of Collett (2015), Jacobs et al. (2019) and Petrillo et al.
    (2019), which select by arc S/N, magnification and Einstein radius. The
    per-lens ``arc_snr`` is stored. With the LSST 10-year co-add and the
    default priors the S/N and resolution cuts almost never bite (arc S/N is
    above ~100 for 95 % of the prior); the magnification cut removes ~5 %.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    InputDataError
        Unusable real-galaxy files (the message names the file).
    ValueError
        Bad arguments.
    """
    import dask

    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if survey not in SURVEYS:
        raise ValueError(f"unknown survey {survey!r}; known: {sorted(SURVEYS)}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if min(min_arc_snr, min_magnification, resolution_factor, min_arc_contrast) < 0:
        raise ValueError(
            f"detectability cuts must be >= 0, got min_arc_snr={min_arc_snr}, "
            f"min_magnification={min_magnification}, resolution_factor={resolution_factor}, "
            f"min_arc_contrast={min_arc_contrast}"
        )
    rng = np.random.default_rng(seed)
    # Chunks of 64 images keep the adaptive kernels' working set in cache (16 for uniform).
    simulator = LensSimulator(survey, image_size, supersampling, device=device, compile=compile,
                              adaptive_supersampling=adaptive_supersampling,
                              chunk_size=None if device != "cpu" else 64 if adaptive_supersampling else 16)
    stamps = meta = None
    inputs: list[Path] = []
    if str(galaxies) != "simulated":
        real = read_real_galaxies(galaxies)
        stamps = np.stack([degrade_to_survey(g, simulator) for g in real])
        meta = {"ident": np.array([g.ident for g in real]), "magnitude": np.array([g.magnitude for g in real])}
        inputs = sorted({g.path for g in real})
        _LOG.info("using %d real galaxies from %s", len(real), galaxies)
    kinds = _assign_kinds(n_samples, positive_fraction, rng)
    provenance = resolve_context(context, "lens_training_set").provenance(inputs=inputs, seed=seed)
    attrs = {
        "survey": survey,
        "pixel_scale": SURVEYS[survey].pixel_scale,
        "image_size": image_size,
        "supersampling": supersampling,
        "positive_fraction": positive_fraction,
        "galaxies": "simulated" if stamps is None else str(galaxies),
        "min_arc_snr": float(min_arc_snr),
        "min_magnification": float(min_magnification),
        "resolution_factor": float(resolution_factor),
        "min_arc_contrast": float(min_arc_contrast),
    }
    attrs.update({f"prior.{k}": v for k, v in describe(LENS_PRIORS).items()})
    for kind, priors in HARD_NEGATIVE_PRIORS.items():
        attrs.update({f"prior.{kind}.{k}": v for k, v in describe(priors).items()})
    units = _column_units()
    # Noisy float32 stamps barely compress (gzip 4 saves 17 % at ~30 MB/s, more than the
    # simulation itself costs): the gzip filter stays, at level 0 (stored), so readers are unchanged.
    with ProductWriter(out_path, "lens-training-set", provenance, attrs=attrs, compression_level=0) as writer:
        writer.add_array(
            "image", (1, image_size, image_size), "float32", unit=IMAGE_UNIT,
            description="sky-subtracted survey image with noise; normalise with skysift.lens.model.normalise",
        )
        writer.add_column("label", "int8", description="1 = lens, 0 = not a lens")
        writer.add_column("kind", str, description="lens, galaxy, ring, spiral, companion or blend")
        writer.add_column("galaxy_id", "int64", description="IDENT of the real galaxy, -1 if simulated")
        writer.add_column("magnification", "float64", description="lensed / intrinsic source flux in the stamp")
        writer.add_column("arc_snr", "float64",
                          description="integrated S/N of the arc over its pixels above 1 sigma (NaN for non-lenses)")
        writer.add_column("arc_contrast", "float64",
                          description="arc / lens-light flux over the arc's pixels above 1 sigma (NaN for non-lenses)")
        for name in (*LENS_PRIORS, *FEATURE_NAMES):
            writer.add_column(name, "float64", unit=units.get(name, ""))
        starts = range(0, n_samples, batch_size)
        batch_seeds = np.random.SeedSequence(seed).spawn(len(starts))
        tasks = [
            dask.delayed(simulate_batch, pure=False)(
                simulator, kinds[start : start + batch_size], np.random.default_rng(batch_seed), stamps, meta,
                min_arc_snr=min_arc_snr, min_magnification=min_magnification, resolution_factor=resolution_factor,
                min_arc_contrast=min_arc_contrast,
            )
            for start, batch_seed in zip(starts, batch_seeds)
        ]
        threads = 1 if device != "cpu" else workers or usable_cores()
        with _torch_threads(1 if threads > 1 else torch.get_num_threads()):
            for images, columns in compute_in_windows(tasks, scheduler=None if threads > 1 else "sync",
                                                      window=2 * threads, desc="lens training set"):
                writer.append({"image": images}, columns)
    return Path(out_path)
