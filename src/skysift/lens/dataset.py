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
  parameters of hard negatives (:mod:`skysift.lens.negatives`; NaN otherwise).

Negatives are split between plain galaxies (40 %) and the four hard-negative
kinds (15 % each). With ``galaxies="simulated"`` the lens galaxies are Sersic
profiles from the simulator (the embedded demo); given a directory of GalSim
real-galaxy stamps, every sample uses a real HST galaxy degraded to the survey
(random one of the catalogue, randomly rotated by multiples of 90 degrees and
flipped), with arcs and hard-negative structure added on top.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from skysift.io import ProductWriter
from skysift.lens.injection import degrade_to_survey, read_real_galaxies
from skysift.lens.negatives import HARD_NEGATIVE_KINDS, HARD_NEGATIVE_PRIORS, render_hard_negative
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator
from skysift.log import get_logger, progress
from skysift.provenance import Provenance
from skysift.simulate.priors import describe, sample_parameters

__all__ = ["IMAGE_UNIT", "KINDS", "NEGATIVE_MIX", "make_lens_training_set", "simulate_batch"]

_LOG = get_logger(__name__)
IMAGE_UNIT = "electron / s"
KINDS = ("lens", "galaxy", *HARD_NEGATIVE_KINDS)
#: Share of each negative kind among the negatives.
NEGATIVE_MIX: dict[str, float] = {"galaxy": 0.4, "ring": 0.15, "spiral": 0.15, "companion": 0.15, "blend": 0.15}
_FEATURE_NAMES = tuple(HARD_NEGATIVE_PRIORS["ring"])
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


def simulate_batch(
    simulator: LensSimulator,
    kinds: np.ndarray,
    rng: np.random.Generator,
    galaxy_stamps: np.ndarray | None = None,
    galaxy_meta: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Simulate one batch: images ``(N, 1, H, W)`` float32 and the per-sample columns.

    A pure function of ``(kinds, galaxy stamps, rng)``: parameters are drawn
    from the declared priors, images rendered, noise added.

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
    """
    n = len(kinds)
    params = sample_parameters(LENS_PRIORS, n, rng)
    columns: dict[str, np.ndarray] = {name: values.copy() for name, values in params.items()}
    columns["galaxy_id"] = np.full(n, -1, dtype=np.int64)
    if galaxy_stamps is None:
        galaxies = simulator.render_galaxy(params, convolve=False)
    else:
        # Real galaxies sit at the stamp centre: the lens (and its shear) too.
        params["x_lens"][:] = 0.0
        params["y_lens"][:] = 0.0
        columns["x_lens"][:] = 0.0
        columns["y_lens"][:] = 0.0
        choice = rng.integers(0, len(galaxy_stamps), size=n)
        stamps = galaxy_stamps[choice]
        rotations, flips = rng.integers(0, 4, size=n), rng.integers(0, 2, size=n).astype(bool)
        stamps = np.stack([np.rot90(s[:, ::-1] if f else s, r) for s, r, f in zip(stamps, rotations, flips)])
        galaxies = torch.tensor(stamps, dtype=simulator.dtype, device=simulator.device)
        assert galaxy_meta is not None
        columns["galaxy_id"] = np.asarray(galaxy_meta["ident"], dtype=np.int64)[choice]
        for name in _LIGHT_NAMES:
            columns[name] = np.full(n, np.nan)
        columns["lens_mag"] = np.asarray(galaxy_meta["magnitude"], dtype=np.float64)[choice]
    # Real stamps are already PSF-matched; the rest (Sersic lens light, arcs,
    # hard negatives) goes through one PSF convolution at the end.
    unconvolved = torch.zeros_like(galaxies) if galaxy_stamps is not None else galaxies
    convolved = galaxies if galaxy_stamps is not None else torch.zeros_like(galaxies)
    is_lens = kinds == "lens"
    columns["magnification"] = np.full(n, np.nan)
    if is_lens.any():
        index = torch.as_tensor(np.flatnonzero(is_lens), device=simulator.device)
        lens_params = {k: v[is_lens] for k, v in params.items() if not k.startswith("lens_")}
        arc, _, magnification = simulator.render_components(lens_params, convolve=False)
        unconvolved = unconvolved.index_add(0, index, arc)
        columns["magnification"][is_lens] = magnification.double().cpu().numpy()
    for name in _ARC_NAMES:
        columns[name] = np.where(is_lens, columns[name], np.nan)
    for name in _FEATURE_NAMES:
        columns[name] = np.full(n, np.nan)
    for kind in HARD_NEGATIVE_KINDS:
        selected = kinds == kind
        if not selected.any():
            continue
        feature = sample_parameters(HARD_NEGATIVE_PRIORS[kind], int(selected.sum()), rng)
        centre = (params["x_lens"][selected], params["y_lens"][selected])
        structure = render_hard_negative(simulator, kind, feature, centre)
        index = torch.as_tensor(np.flatnonzero(selected), device=simulator.device)
        convolved = convolved.index_add(0, index, structure)
        for name, values in feature.items():
            columns[name][selected] = values
    images = simulator.add_noise(simulator.convolve(unconvolved) + convolved, rng)
    columns["label"] = is_lens.astype(np.int8)
    columns["kind"] = np.asarray(kinds, dtype=object)
    return images.to(torch.float32).cpu().numpy()[:, None], columns


def _column_units() -> dict[str, str]:
    units = {name: prior.unit for name, prior in LENS_PRIORS.items()}
    units.update({name: prior.unit for name, prior in HARD_NEGATIVE_PRIORS["ring"].items()})
    # arcsec for rings, companions and blends, degrees (pitch angle) for spirals.
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
    rule: str = "lens_training_set",
    config_digest: str | None = None,
    device: str = "cpu",
    batch_size: int = 512,
    compile: bool = False,
    adaptive_supersampling: bool = False,
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
        Seed of the single random generator (parameters and noise).
    rule : str
        Provenance rule name.
    config_digest : str, optional
        Precomputed config hash for the provenance block.
    device : str
        Torch device (``"cpu"``, ``"cuda"``).
    batch_size : int
        Images simulated and written per batch.
    compile : bool
        Use ``torch.compile`` for the surface-brightness kernel (pays off above
        ~10^4 images on CPU).
    adaptive_supersampling : bool
        Supersample only where the surface brightness needs it (within 0.1 % of
        the uniform result, several times faster; see
        :class:`~skysift.lens.simulator.LensSimulator`).

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
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if survey not in SURVEYS:
        raise ValueError(f"unknown survey {survey!r}; known: {sorted(SURVEYS)}")
    rng = np.random.default_rng(seed)
    simulator = LensSimulator(survey, image_size, supersampling, device=device, compile=compile,
                              adaptive_supersampling=adaptive_supersampling)
    stamps = meta = None
    inputs: list[Path] = []
    if str(galaxies) != "simulated":
        real = read_real_galaxies(galaxies)
        stamps = np.stack([degrade_to_survey(g, simulator) for g in real])
        meta = {"ident": np.array([g.ident for g in real]), "magnitude": np.array([g.magnitude for g in real])}
        inputs = sorted({g.path for g in real})
        _LOG.info("using %d real galaxies from %s", len(real), galaxies)
    kinds = _assign_kinds(n_samples, positive_fraction, rng)
    provenance = Provenance.collect(rule=rule, inputs=inputs, config_digest=config_digest, seed=seed)
    attrs = {
        "survey": survey,
        "pixel_scale": SURVEYS[survey].pixel_scale,
        "image_size": image_size,
        "supersampling": supersampling,
        "positive_fraction": positive_fraction,
        "galaxies": "simulated" if stamps is None else str(galaxies),
    }
    attrs.update({f"prior.{k}": v for k, v in describe(LENS_PRIORS).items()})
    units = _column_units()
    with ProductWriter(out_path, "lens-training-set", provenance, attrs=attrs) as writer:
        writer.add_array(
            "image", (1, image_size, image_size), "float32", unit=IMAGE_UNIT,
            description="sky-subtracted survey image with noise; normalise with skysift.lens.model.normalise",
        )
        writer.add_column("label", "int8", description="1 = lens, 0 = not a lens")
        writer.add_column("kind", str, description="lens, galaxy, ring, spiral, companion or blend")
        writer.add_column("galaxy_id", "int64", description="IDENT of the real galaxy, -1 if simulated")
        writer.add_column("magnification", "float64", description="lensed / intrinsic source flux in the stamp")
        for name in (*LENS_PRIORS, *_FEATURE_NAMES):
            writer.add_column(name, "float64", unit=units.get(name, ""))
        starts = range(0, n_samples, batch_size)
        for start in progress(starts, desc="lens training set", total=len(starts), unit="batch"):
            images, columns = simulate_batch(simulator, kinds[start : start + batch_size], rng, stamps, meta)
            writer.append({"image": images}, columns)
    return Path(out_path)
