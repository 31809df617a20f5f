"""Strong-lens training sets as skysift HDF5 products (``product_type = "lens-training-set"``).

Layout (see ``docs/data-products.md``):

* ``/data/image``: ``(N, 1, H, W)`` float32, unit ``electron / s`` per pixel,
  sky-subtracted, with survey noise. Feed it through
  :func:`skysift.lens.model.normalise` before the network, at training and at
  inference alike.
* ``/samples``: ``label`` (int8; 1 = lens, 0 = not), ``kind`` (``"lens"`` or
  the negative's family: ``"galaxy"``, ``"arclet"`` and the hard-negative
  kinds of :mod:`skysift.lens.negatives`: ``"ring"``, ``"spiral"``,
  ``"companion"``, ``"blend"``, ``"merger"``, ``"edge_on"``, ``"star"``),
  ``galaxy_id`` (catalogue ``IDENT`` of a real galaxy, -1 for simulated ones),
  every parameter of :data:`~skysift.lens.simulator.LENS_PRIORS` with its unit
  (arc parameters NaN except for lenses and arclets; ``lens_*`` light
  parameters NaN except ``lens_mag`` for real galaxies), ``magnification``
  (lensed over intrinsic source flux inside the stamp), ``arc_snr``
  (integrated arc S/N) and ``arc_contrast`` (arc over lens-light flux in the
  arc's pixels; these three NaN except for lenses and arclets), the
  ``feature_*`` parameters of hard negatives (NaN otherwise) and the observing
  conditions ``seeing``, ``psf_e``, ``psf_phi``, ``depth``
  (:mod:`skysift.lens.observing`). Lenses are redrawn until detectable (arc
  S/N, magnification and resolution cuts; see :func:`make_lens_training_set`).

Negatives are drawn in the shares of :data:`NEGATIVE_MIX` (or the
``negative_mix`` argument): plain galaxies, singly imaged arclets (the same
lens with its source just outside the caustics,
:func:`place_source_outside_caustic`: a lensed, tangentially stretched image
with no counter-image) and the hard-negative families. Each image has its
own seeing, PSF ellipticity and depth unless ``conditions="fixed"``. With
``galaxies="simulated"`` the lens galaxies are Sersic profiles from the
simulator (the embedded demo); given a directory of GalSim real-galaxy
stamps, every sample uses a real HST galaxy degraded to the survey (random
one of the catalogue, randomly rotated by multiples of 90 degrees and
flipped), with arcs and hard-negative structure added on top.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skysift.context import RunContext, resolve_context
from skysift.io import ProductWriter
from skysift.lens.injection import COSMOS_SOURCE_SIZE_FACTOR, degrade_to_survey, read_cosmos_sersic_fits, read_real_galaxies
from skysift.lens import observing
from skysift.lens.negatives import (
    EXTRA_LIGHT_KINDS, EXTRA_LIGHT_MAG, FEATURE_NAMES, HARD_NEGATIVE_KINDS, HARD_NEGATIVE_PRIORS, render_hard_negative,
)
from skysift.lens.simulator import LENS_PRIORS, SURVEYS, LensSimulator, SurveySpec, arc_signal_to_noise, magnitude_to_flux
from skysift.log import get_logger
from skysift.parallel import map_in_order, usable_cores
from skysift.simulate.priors import Prior, Uniform, describe, sample_parameters

__all__ = [
    "BAND_LETTERS",
    "COLOUR_PRIORS",
    "CONDITIONS",
    "DEFAULT_MIN_ARC_CONTRAST",
    "DEFAULT_MIN_ARC_SNR",
    "DEFAULT_MIN_MAGNIFICATION",
    "DEFAULT_RESOLUTION_FACTOR",
    "MIN_COUNTER_IMAGE_SNR",
    "IMAGE_UNIT",
    "KINDS",
    "NEGATIVE_MIX",
    "arc_contrast",
    "check_negative_mix",
    "counter_image_snr",
    "draw_colours",
    "make_lens_training_set",
    "parse_negative_mix",
    "place_source_outside_caustic",
    "simulate_batch",
]

_LOG = get_logger(__name__)
IMAGE_UNIT = "electron / s"
KINDS = ("lens", "galaxy", "arclet", *HARD_NEGATIVE_KINDS)
#: Default share of each negative kind among the negatives: the look-alike
#: families lens searches meet most (rings, arclets, companions) weigh most;
#: plain galaxies stay the largest single kind, as they dominate a real survey.
NEGATIVE_MIX: dict[str, float] = {
    "galaxy": 0.2, "arclet": 0.15, "ring": 0.15, "companion": 0.12, "spiral": 0.1, "merger": 0.08,
    "star": 0.08, "edge_on": 0.07, "blend": 0.05,
}
#: Observing conditions: the preset's fixed seeing and depth, or randomised per image (:mod:`skysift.lens.observing`).
CONDITIONS = ("fixed", "randomised")
_ARC_NAMES = tuple(k for k in LENS_PRIORS if not k.startswith("lens_") and k not in ("x_lens", "y_lens"))
_LIGHT_NAMES = tuple(k for k in LENS_PRIORS if k.startswith("lens_"))


def check_negative_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Validate a negative mixture (kind -> weight) and normalise it to unit sum.

    Raises
    ------
    ValueError
        Unknown kinds, negative weights or no positive weight.
    """
    unknown = sorted(set(mix) - set(KINDS[1:]))
    if unknown:
        raise ValueError(f"negative_mix: unknown kinds {unknown}; known: {list(KINDS[1:])}")
    weights = {k: float(v) for k, v in mix.items()}
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"negative_mix: weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items() if v > 0}


def parse_negative_mix(text: str) -> dict[str, float] | None:
    """Parse ``"kind:weight,kind:weight"`` (the ``lens.negative_mix`` option); ``None`` for an empty string.

    Raises
    ------
    ValueError
        An item that is not ``kind:number`` (the message quotes it); kinds and
        weights are checked by :func:`check_negative_mix`.
    """
    if not text.strip():
        return None
    mix: dict[str, float] = {}
    for item in text.split(","):
        kind, _, weight = item.partition(":")
        try:
            mix[kind.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"negative_mix: expected 'kind:weight' items separated by commas, got {item!r}") from None
    return check_negative_mix(mix)


def _assign_kinds(
    n_samples: int, positive_fraction: float, rng: np.random.Generator, mix: Mapping[str, float] = NEGATIVE_MIX
) -> np.ndarray:
    n_pos = int(round(n_samples * positive_fraction))
    n_neg = n_samples - n_pos
    names = list(mix)
    # Largest remainders: every kind within one image of its share.
    wanted = np.array([mix[k] for k in names]) * n_neg
    counts = np.floor(wanted).astype(int)
    counts[np.argsort(counts - wanted, kind="stable")[: n_neg - counts.sum()]] += 1
    kinds = np.array(["lens"] * n_pos + [k for k, c in zip(names, counts) for _ in range(c)], dtype=object)
    return kinds[rng.permutation(n_samples)]


#: Default detectability selection of the simulated lenses (see :func:`make_lens_training_set`).
DEFAULT_MIN_ARC_SNR = 10.0
# 2: the boundary between single and multiple images of a point source behind a singular
# isothermal sphere (mu = 2 theta_E / beta inside, 1 + theta_E / beta outside the Einstein
# radius), so doubles of low magnification, most of a real sample (Collett 2015: ~70 % of
# LSST lenses are doubles), are kept; 3 kept only the bright, ring-like ones.
DEFAULT_MIN_MAGNIFICATION = 2.0
DEFAULT_RESOLUTION_FACTOR = 1.2
#: Lenses need a detected counter-image: S/N >= 5 of the lensed light on the far side of the lens
#: from the arc's brightest pixel (Oguri & Marshall 2010, MNRAS 405, 2579, count a double only when
#: its fainter image is detected). Without it, doubles of magnification ~2 whose counter-image is
#: lost in the noise (~15 % of the lenses, measured on the training set) are arclets labelled lenses.
MIN_COUNTER_IMAGE_SNR = 5.0
DEFAULT_MIN_ARC_CONTRAST = 0.0
#: Rounds of redrawing rejected lenses before giving up.
MAX_REDRAW_ROUNDS = 50
#: Redraw rounds with fewer systems left than this give each several candidate arcs (at most
#: _MAX_CANDIDATES), enough to fill about this many rows (:func:`_draw_detectable_arcs`).
_CANDIDATE_ROWS = 32
_MAX_CANDIDATES = 8
#: Hard negatives rendered together on the supersampled grid (temporaries of ~0.6 MB each).
_NEGATIVE_CHUNK = 4
#: Hard-negative kinds drawn on the whole supersampled grid (the others are rendered at pixel
#: resolution, supersampled only where needed, and go through in one call per batch).
_FINE_GRID_KINDS = ("ring", "spiral", "edge_on")


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


def counter_image_snr(arc: torch.Tensor, variance: torch.Tensor, simulator: LensSimulator,
                      x_lens: np.ndarray, y_lens: np.ndarray) -> torch.Tensor:
    """S/N of the lensed light on the far side of the lens from the arc's brightest pixel, ``(N,)``.

    The pixels whose offset from the lens centre has a negative dot product
    with the brightest arc pixel's offset: where a counter-image lies, and
    where a singly imaged arclet leaves only the wings of its PSF. The S/N is
    :func:`~skysift.lens.simulator.arc_signal_to_noise` over those pixels.
    """
    n, height, width = arc.shape
    scale = simulator.survey.pixel_scale
    ys = (torch.arange(height, dtype=arc.dtype, device=arc.device) - (height - 1) / 2.0) * scale
    xs = (torch.arange(width, dtype=arc.dtype, device=arc.device) - (width - 1) / 2.0) * scale
    dx = xs.reshape(1, 1, -1) - torch.as_tensor(x_lens, dtype=arc.dtype, device=arc.device).reshape(-1, 1, 1)
    dy = ys.reshape(1, -1, 1) - torch.as_tensor(y_lens, dtype=arc.dtype, device=arc.device).reshape(-1, 1, 1)
    peak = arc.reshape(n, -1).argmax(dim=1)
    rows, columns = peak // width, peak % width
    index = torch.arange(n, device=arc.device)
    px, py = dx[index, 0, columns], dy[index, rows, 0]
    far = (dx * px.reshape(-1, 1, 1) + dy * py.reshape(-1, 1, 1)) < 0
    return arc_signal_to_noise(arc * far.to(arc.dtype), variance)


def _arc_measures(arc: torch.Tensor, light: torch.Tensor, variance: torch.Tensor, simulator: LensSimulator,
                  x_lens: np.ndarray, y_lens: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Arc S/N, contrast and counter-image S/N, ``(N,)`` each, sharing one pixel mask.

    The values of :func:`~skysift.lens.simulator.arc_signal_to_noise`,
    :func:`arc_contrast` and :func:`counter_image_snr` (the same products and
    sums of the same pixels): a pixel of the far side passes the counter-image
    mask when it passes the arc's (``0 > sigma`` never holds), so both masks are
    the arc's, times the far side's. Masks are made in floating point, ``sign(max(a - b, 0))``
    for ``a > b`` (exact: ``a - b > 0`` iff ``a > b`` with gradual underflow):
    torch's comparisons to bool and their conversion cost ~2.3 ms per million
    pixels on CPUs, the three float passes ~0.55 ms. The brightest pixel is
    found by numpy on CPUs (torch's ``argmax`` ~10x slower).
    """
    n, height, width = arc.shape
    mask = (arc - variance.sqrt()).clamp_(min=0.0).sign_()
    arc_in, variance_in = arc * mask, variance * mask
    signal, noise = arc_in.sum(dim=(-2, -1)), variance_in.sum(dim=(-2, -1)).sqrt_()
    snr = torch.where(noise > 0, signal / noise.clamp(min=1e-30), torch.zeros_like(signal))
    contrast = torch.where(signal > 0, signal / (light * mask).sum(dim=(-2, -1)), torch.zeros_like(signal))
    scale = simulator.survey.pixel_scale
    ys = (torch.arange(height, dtype=arc.dtype, device=arc.device) - (height - 1) / 2.0) * scale
    xs = (torch.arange(width, dtype=arc.dtype, device=arc.device) - (width - 1) / 2.0) * scale
    dx = xs.reshape(1, 1, -1) - torch.as_tensor(x_lens, dtype=arc.dtype, device=arc.device).reshape(-1, 1, 1)
    dy = ys.reshape(1, -1, 1) - torch.as_tensor(y_lens, dtype=arc.dtype, device=arc.device).reshape(-1, 1, 1)
    flat = arc.reshape(n, -1)
    peak = torch.from_numpy(flat.numpy().argmax(axis=1)) if arc.device.type == "cpu" else flat.argmax(dim=1)
    rows, columns = peak // width, peak % width
    index = torch.arange(n, device=arc.device)
    px, py = dx[index, 0, columns], dy[index, rows, 0]
    # Far side: dx px + dy py < 0, as 1.0 / 0.0 (sign of max(-(dx px + dy py), 0)); products and sum
    # rounded apart as counter_image_snr's (a fused multiply-add moves the pixels on the line
    # through the lens centre, where the sum is ~0, across the cut).
    far = (dx * px.reshape(-1, 1, 1) + dy * py.reshape(-1, 1, 1)).neg_().clamp_(min=0.0).sign_()
    far_signal = (arc_in * far).sum(dim=(-2, -1))
    far_noise = (variance_in * far).sum(dim=(-2, -1)).sqrt_()
    counter = torch.where(far_noise > 0, far_signal / far_noise.clamp(min=1e-30), torch.zeros_like(far_signal))
    return snr, contrast, counter


def _draw_arc_parameters(
    n: int, rng: np.random.Generator, source_shapes: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Arc parameters (:data:`_ARC_NAMES` and ``arc_mag``) of ``n`` systems.

    Mass model, shear and source shape from :data:`LENS_PRIORS`; the source
    position inside the Einstein radius (:func:`place_source_inside_einstein_radius`);
    ``arc_mag``, the lensed image's observed magnitude, from
    :data:`~skysift.lens.negatives.EXTRA_LIGHT_MAG` (the source magnitude
    follows from it and the magnification, :func:`_draw_detectable_arcs`).
    With ``source_shapes`` (:func:`~skysift.lens.injection.read_cosmos_sersic_fits`)
    each source's Sersic index, axis ratio and size are one real galaxy's,
    drawn jointly, the size scaled by
    :data:`~skysift.lens.injection.COSMOS_SOURCE_SIZE_FACTOR` and clipped to
    0.05-1 arcsec.
    """
    params = sample_parameters({name: LENS_PRIORS[name] for name in _ARC_NAMES}, n, rng)
    params["arc_mag"] = EXTRA_LIGHT_MAG.sample(rng, n)
    place_source_inside_einstein_radius(params, np.arange(n), rng)
    if source_shapes is not None:
        _use_real_source_shapes(params, np.arange(n), rng, source_shapes)
    return params


def place_source_inside_einstein_radius(params: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator) -> None:
    """Put the sources of ``rows`` uniformly (in area) inside their Einstein radius, in place.

    ``beta = theta_E sqrt(u)``, ``u ~ U(0, 1)``, uniform azimuth: the region
    where a singular isothermal sphere makes two images, scaling with the lens
    (a fixed box of source positions makes rings of large lenses and misses
    small ones). Ellipticity and shear move the caustics; the magnification
    cut then keeps the multiply imaged systems.
    """
    beta = params["theta_E"][rows] * np.sqrt(rng.uniform(0.0, 1.0, len(rows)))
    azimuth = rng.uniform(0.0, 2.0 * np.pi, len(rows))
    params["x_src"][rows] = beta * np.cos(azimuth)
    params["y_src"][rows] = beta * np.sin(azimuth)


def _use_real_source_shapes(
    params: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator, source_shapes: Mapping[str, np.ndarray]
) -> None:
    choice = rng.integers(0, len(source_shapes["n"]), size=len(rows))
    params["source_n"][rows] = source_shapes["n"][choice]
    params["source_q"][rows] = source_shapes["q"][choice]
    params["source_r_eff"][rows] = np.clip(COSMOS_SOURCE_SIZE_FACTOR * source_shapes["r_eff"][choice], 0.05, 1.0)


def place_source_outside_caustic(
    params: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator, half_width: float = np.inf
) -> None:
    """Move the sources of ``rows`` just outside the caustics, in place: singly imaged arclets.

    The source centre is put at ``beta = theta_E (1.15 + 2 |gamma| + u) + 1.5 r_eff``
    from the lens centre (``u ~ U(0, 0.5)``, uniform azimuth). The cut (the
    pseudo-caustic) of an SIE of axis ratio ``q >= 0.5`` lies within ``1.08
    theta_E`` of the centre (Kormann et al. 1994), and external shear ``gamma``
    widens the caustics by about ``2 gamma theta_E``; the ``1.5 r_eff`` keeps the
    bright part of the source outside too. So the source forms one image,
    stretched tangentially into an arclet (magnification ~1.5-3) on the side
    of the lens facing the source, with no counter-image: what lens searches
    confuse with an arc but is not a multiply imaged lens. The image lies
    about ``theta_E`` beyond the source, so ``u`` is capped to keep it (and
    ``2 r_eff`` of its light) inside ``half_width`` (arcsec) of the lens.
    """
    theta_e, r_eff = params["theta_E"][rows], params["source_r_eff"][rows]
    gamma = np.hypot(params["gamma1"][rows], params["gamma2"][rows])
    closest = theta_e * (1.15 + 2.0 * gamma) + 1.5 * r_eff
    room = np.clip((half_width - theta_e - 2.0 * r_eff - closest) / theta_e, 0.0, 0.5)
    beta = closest + theta_e * room * rng.uniform(0.0, 1.0, len(rows))
    azimuth = rng.uniform(0.0, 2.0 * np.pi, len(rows))
    params["x_src"][rows] = beta * np.cos(azimuth)
    params["y_src"][rows] = beta * np.sin(azimuth)


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
    singly_imaged: bool = False,
    conditions: dict[str, np.ndarray] | None = None,
    source_shapes: Mapping[str, np.ndarray] | None = None,
    min_counter_snr: float = 0.0,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw arcs until every system passes the detectability cuts.

    ``params`` (one row per lens, every key of :data:`LENS_PRIORS` and
    ``arc_mag``) has its arc parameters (:func:`_draw_arc_parameters`) drawn
    in place where ``arc_mag`` is NaN, and redrawn for the rejected systems;
    the lens light and position are kept.
    Each arc is rendered, then scaled to its observed magnitude ``arc_mag``
    (its ``source_mag`` set to match: the image is linear in the source flux),
    so lensed light and the look-alikes' extra light share one brightness
    prior. Vectorised: each round renders only the systems still rejected.
    With ``singly_imaged`` every source is placed outside the caustics
    (:func:`place_source_outside_caustic`) and systems whose arclet would leave
    the stamp are redrawn. With ``conditions`` (one row per lens,
    :mod:`~skysift.lens.observing`) the arcs are blurred to each image's seeing,
    the noise scaled to its depth and the resolution cuts set by its seeing
    before the cuts. Besides the arguments' cuts, every arc (and arclet) must
    be identifiable as Collett (2015, ApJ 811, 20) defines it: resolved,
    ``theta_E^2 >= R_eff^2 + (resolution_factor seeing / 2)^2``, and
    tangentially stretched, ``mu R_eff >= seeing / 2``; and its counter-image
    S/N (:func:`counter_image_snr`) must reach ``min_counter_snr``. Returns the
    PSF-convolved arcs ``(n, H, W)``, their S/N, magnifications, contrasts
    (:func:`arc_contrast`) and counter-image S/N.
    """
    n = len(params["theta_E"])
    arcs = torch.zeros((n, simulator.image_size, simulator.image_size), dtype=simulator.dtype, device=simulator.device)
    snr, magnification, contrast, counter = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    seeing = np.full(n, simulator.survey.seeing) if conditions is None else np.asarray(conditions["seeing"], dtype=np.float64)
    min_theta_e = resolution_factor * seeing / 2.0
    half_width = 0.5 * simulator.image_size * simulator.survey.pixel_scale
    zero_point = simulator.survey.zero_point

    def unresolved(rows: np.ndarray) -> np.ndarray:
        """Collett's (2015) resolution: ``theta_E^2 >= R_eff^2 + (f seeing / 2)^2`` fails (``f = resolution_factor``)."""
        return params["theta_E"][rows] ** 2 < params["source_r_eff"][rows] ** 2 + min_theta_e[rows] ** 2

    def unusable(rows: np.ndarray) -> np.ndarray:
        """Rows rejected before rendering: unresolved, or (arclets) imaged beyond the stamp."""
        theta_e = params["theta_E"][rows]
        bad = unresolved(rows)
        if singly_imaged:
            gamma = np.hypot(params["gamma1"][rows], params["gamma2"][rows])
            bad |= theta_e * (2.15 + 2.0 * gamma) + 3.5 * params["source_r_eff"][rows] > half_width
        return rows[bad]

    # Systems without an arc draw yet (arc_mag NaN: simulate_batch draws LENS_PRIORS, whose
    # source magnitude and box-placed position the arcs do not use) draw theirs first; rendered
    # as they were, they all failed the S/N cut (a NaN magnitude has no S/N), a wasted round.
    undrawn = np.flatnonzero(np.isnan(params["arc_mag"]))
    if len(undrawn):
        for name, values in _draw_arc_parameters(len(undrawn), rng, source_shapes).items():
            params[name][undrawn] = values
    todo = np.arange(n)
    for _ in range(MAX_REDRAW_ROUNDS):
        # The last few systems of a batch each try several candidate arcs in one round (rows
        # appended after the n systems, sharing their lens): a round costs ~5 ms of dispatch
        # however few systems it renders, and the tail of rejections took ~25 rounds a batch
        # (lenses and arclets together; ~12 with the candidates).
        copies = min(_MAX_CANDIDATES, -(-_CANDIDATE_ROWS // len(todo))) if len(todo) < _CANDIDATE_ROWS else 1
        owners = np.repeat(todo, copies - 1)
        if len(owners):
            for name, values in params.items():
                params[name] = np.concatenate([values, values[owners]])
            for name, values in _draw_arc_parameters(len(owners), rng, source_shapes).items():
                params[name][n:] = values
            seeing, min_theta_e = np.concatenate([seeing, seeing[owners]]), np.concatenate([min_theta_e, min_theta_e[owners]])
            if conditions is not None:
                conditions = {k: np.concatenate([v, v[owners]]) for k, v in conditions.items()}
            lens_light = torch.cat([lens_light[:n], lens_light.index_select(0, torch.as_tensor(owners, device=lens_light.device))])
            arcs = torch.cat([arcs, arcs.new_zeros((len(owners), *arcs.shape[1:]))])
            snr, magnification, contrast, counter = (np.concatenate([v, v[owners]])
                                                     for v in (snr, magnification, contrast, counter))
            todo = np.concatenate([todo, n + np.arange(len(owners))])
        # The resolution cut needs no rendering: redraw unresolved systems first.
        for _ in range(MAX_REDRAW_ROUNDS):
            redraw = unusable(todo)
            if not len(redraw):
                break
            for name, values in _draw_arc_parameters(len(redraw), rng, source_shapes).items():
                params[name][redraw] = values
        if singly_imaged:
            place_source_outside_caustic(params, todo, rng, half_width)
        subset = {k: v[todo] for k, v in params.items() if not k.startswith("lens_")}
        arc, _, mu = simulator.render_components(subset, convolve=False)
        magnification[todo] = mu.double().cpu().numpy()
        # Collett's (2015) second identifiability criterion: the magnified source is
        # tangentially resolved (mu R_eff > seeing / 2), so the arc is stretched, not a blob.
        unstretched = magnification[todo] * params["source_r_eff"][todo] < seeing[todo] / 2.0
        # The cuts on the magnification need no PSF and no noise: only the systems that pass
        # them are observed and measured (a third to a half of the draws fail them).
        rejected = (magnification[todo] < min_magnification) | unresolved(todo) | unstretched
        magnified = np.flatnonzero(~rejected)
        observed = todo[magnified]
        # Scale each arc to its drawn observed magnitude (flux in the stamp), then the PSF and
        # each image's blur in one FFT (observing.observe).
        rendered = arc.sum(dim=(-2, -1)).double().cpu().numpy()
        scale = magnitude_to_flux(params["arc_mag"][todo], zero_point) / np.maximum(rendered, 1e-30)
        params["source_mag"][todo] = params["source_mag"][todo] - 2.5 * np.log10(scale)
        if len(observed):
            if len(magnified) < len(todo):
                arc = arc.index_select(0, torch.as_tensor(magnified, device=arc.device))
            arc = arc * torch.as_tensor(scale[magnified], dtype=arc.dtype, device=arc.device).reshape(-1, 1, 1)
            rows = None if conditions is None else {k: v[observed] for k, v in conditions.items()}
            arc = observing.observe(simulator, arc, rows)
            index = torch.as_tensor(observed, device=simulator.device)
            light = lens_light.index_select(0, index)
            variance = observing.noise_variance(simulator, arc + light, rows)
            arcs[index] = arc
            measures = _arc_measures(arc, light, variance, simulator, params["x_lens"][observed], params["y_lens"][observed])
            for values, measured in zip((snr, contrast, counter), measures):
                values[observed] = measured.double().cpu().numpy()
            rejected[magnified] = (
                (snr[observed] < min_arc_snr) | (contrast[observed] < min_arc_contrast) | (counter[observed] < min_counter_snr)
            )
        if len(owners):
            # Each system keeps its first candidate that passed: its own draw, else its extra rows
            # in the order drawn (first-passing of independent draws: rejection sampling's law).
            passed = todo[~rejected]
            system = np.concatenate([np.arange(n), owners])[passed]
            systems, first = np.unique(system, return_index=True)
            chosen = passed[first]
            moved, sources = systems[chosen >= n], chosen[chosen >= n]
            for name in params:
                params[name][moved] = params[name][sources]
                params[name] = params[name][:n]
            index, from_index = torch.as_tensor(moved, device=arcs.device), torch.as_tensor(sources, device=arcs.device)
            arcs[index] = arcs.index_select(0, from_index)
            arcs, lens_light = arcs[:n], lens_light[:n]
            for values in (snr, magnification, contrast, counter):
                values[moved] = values[sources]
            snr, magnification, contrast, counter = snr[:n], magnification[:n], contrast[:n], counter[:n]
            seeing, min_theta_e = seeing[:n], min_theta_e[:n]
            if conditions is not None:
                conditions = {k: v[:n] for k, v in conditions.items()}
            todo = np.setdiff1d(todo[todo < n], systems)
        else:
            todo = todo[rejected]
        if not len(todo):
            return arcs, snr, magnification, contrast, counter
        for name, values in _draw_arc_parameters(len(todo), rng, source_shapes).items():
            params[name][todo] = values
    raise ValueError(
        f"{len(todo)} of {n} simulated {'arclets' if singly_imaged else 'lenses'} still fail the detectability cuts "
        f"(arc S/N >= {min_arc_snr}, magnification >= {min_magnification}, theta_E^2 >= R_eff^2 + "
        f"({resolution_factor} seeing / 2)^2, magnification R_eff >= seeing / 2, "
        f"arc contrast >= {min_arc_contrast}, counter-image S/N >= {min_counter_snr}) after {MAX_REDRAW_ROUNDS} "
        "redraws: lower the cuts or widen LENS_PRIORS for this survey"
    )


#: Hard-negative kinds whose structure is the host's own disc: they share its axis ratio and position angle.
_HOST_DISC_KINDS = ("ring", "edge_on")


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
    conditions: str = "fixed",
    source_shapes: Mapping[str, np.ndarray] | None = None,
    band_simulators: Sequence[LensSimulator] = (),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Simulate one batch: images ``(N, 1, H, W)`` float32 and the per-sample columns.

    A pure function of ``(kinds, galaxy stamps, rng)``: parameters are drawn
    from the declared priors, lenses redrawn until detectable (see
    :func:`make_lens_training_set`), images rendered, noise added.

    Parameters
    ----------
    simulator : LensSimulator
        With ``conditions="randomised"``, one built with
        :func:`~skysift.lens.observing.base_psf` as its PSF.
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
    conditions : {"fixed", "randomised"}
        The preset's seeing and depth for every image, or each image's own
        (:mod:`skysift.lens.observing`; stored as ``seeing``, ``psf_e``,
        ``psf_phi`` and ``depth``).
    source_shapes : mapping, optional
        Real source shapes (:func:`_draw_arc_parameters`); default the priors.
    band_simulators : sequence of LensSimulator
        For multi-band images, one per band (only their survey noise is used):
        the light components rendered with ``simulator`` (the r band) are
        scaled by their colours (:func:`draw_colours`) and each band gets its
        own noise; images are ``(N, bands, H, W)``. Empty: ``(N, 1, H, W)``.
    """
    n = len(kinds)
    params = sample_parameters(LENS_PRIORS, n, rng)
    params["arc_mag"] = np.full(n, np.nan)
    if source_shapes is not None:
        _use_real_source_shapes(params, np.arange(n), rng, source_shapes)
    columns: dict[str, np.ndarray] = {"galaxy_id": np.full(n, -1, dtype=np.int64)}
    randomised = conditions == "randomised"
    observed = observing.draw_conditions(simulator.survey, n, rng) if randomised else None

    def rows_of(rows: np.ndarray | slice) -> dict[str, np.ndarray] | None:
        return None if observed is None else {k: v[rows] for k, v in observed.items()}

    def degrade(images: torch.Tensor, rows: np.ndarray | slice = slice(None)) -> torch.Tensor:
        """Blur images of the given rows to their own seeing (randomised conditions only)."""
        if observed is None:
            return images
        return observing.blur(images, simulator.survey, rows_of(rows))

    def observe(images: torch.Tensor, rows: np.ndarray | slice = slice(None)) -> torch.Tensor:
        """The PSF and (randomised conditions) each image's blur, in one FFT, on images before the PSF."""
        return observing.observe(simulator, images, rows_of(rows))

    # Look-alikes' structure joins their galaxy's light before the PSF (one FFT for both, see
    # below); multi-band images scale the two by their own colours, so they stay apart there.
    joint = np.isin(kinds, HARD_NEGATIVE_KINDS) if galaxy_stamps is None and not band_simulators else np.zeros(n, bool)
    if galaxy_stamps is None:
        # Convolution is linear: the lens light is convolved on its own (not with the arcs)
        # because the arc S/N needs its noise.
        light = simulator.render_galaxy(params, convolve=False)
        galaxies = torch.zeros_like(light)
        alone = np.flatnonzero(~joint)
        galaxies[alone] = observe(light[alone], alone)
    else:
        # Real galaxies sit at the stamp centre: the lens (and its shear) too.
        params["x_lens"][:] = 0.0
        params["y_lens"][:] = 0.0
        choice = rng.integers(0, len(galaxy_stamps), size=n)
        stamps = galaxy_stamps[choice]
        rotations, flips = rng.integers(0, 4, size=n), rng.integers(0, 2, size=n).astype(bool)
        stamps = np.stack([np.rot90(s[:, ::-1] if f else s, r) for s, r, f in zip(stamps, rotations, flips)])
        # Real stamps are already PSF-matched (to the simulator's PSF).
        galaxies = degrade(torch.tensor(stamps, dtype=simulator.dtype, device=simulator.device))
        assert galaxy_meta is not None
        columns["galaxy_id"] = np.asarray(galaxy_meta["ident"], dtype=np.int64)[choice]
    is_lens = kinds == "lens"
    is_arclet = kinds == "arclet"
    columns["magnification"] = np.full(n, np.nan)
    columns["arc_snr"] = np.full(n, np.nan)
    columns["arc_contrast"] = np.full(n, np.nan)
    columns["counter_snr"] = np.full(n, np.nan)
    # Updated in place, a kind's rows at a time (index_add would copy the whole batch per kind).
    clean = galaxies.clone()
    # Multi-band images need each light component on its own (its colour scales it per band).
    lensed_light = torch.zeros_like(galaxies) if band_simulators else None
    feature_light = torch.zeros_like(galaxies) if band_simulators else None
    for selected, singly_imaged in ((is_lens, False), (is_arclet, True)):
        if not selected.any():
            continue
        rows = np.flatnonzero(selected)
        index = torch.as_tensor(rows, device=simulator.device)
        lens_params = {k: v[selected] for k, v in params.items()}
        arc, snr, magnification, contrast, counter = _draw_detectable_arcs(
            simulator, lens_params, galaxies.index_select(0, index), rng,
            min_arc_snr=min_arc_snr, min_magnification=0.0 if singly_imaged else min_magnification,
            resolution_factor=resolution_factor, min_arc_contrast=0.0 if singly_imaged else min_arc_contrast,
            singly_imaged=singly_imaged, source_shapes=source_shapes,
            min_counter_snr=0.0 if singly_imaged else MIN_COUNTER_IMAGE_SNR,
            conditions=rows_of(rows),
        )
        for name in (*_ARC_NAMES, "arc_mag"):
            params[name][selected] = lens_params[name]
        clean[index] += arc
        if lensed_light is not None:
            lensed_light[index] += arc
        columns["magnification"][selected] = magnification
        columns["arc_snr"][selected] = snr
        columns["arc_contrast"][selected] = contrast
        columns["counter_snr"][selected] = counter
    columns.update({name: values.copy() for name, values in params.items()})
    if galaxy_stamps is not None:
        for name in _LIGHT_NAMES:
            columns[name] = np.full(n, np.nan)
        columns["lens_mag"] = np.asarray(galaxy_meta["magnitude"], dtype=np.float64)[choice]
    lensed = is_lens | is_arclet
    for name in _ARC_NAMES:
        columns[name] = np.where(lensed, columns[name], np.nan)
    for name in (*FEATURE_NAMES, "feature_snr"):
        columns[name] = np.full(n, np.nan)
    for kind in HARD_NEGATIVE_KINDS:
        selected = kinds == kind
        if not selected.any():
            continue
        feature = sample_parameters(HARD_NEGATIVE_PRIORS[kind], int(selected.sum()), rng)
        if kind in _HOST_DISC_KINDS and galaxy_stamps is None:
            # A ring galaxy's ring and an edge-on disc are the host's own (inclined) disc.
            feature["feature_phi"] = params["lens_phi"][selected].copy()
            if kind == "ring":
                feature["feature_q"] = params["lens_q"][selected].copy()
        x_centre, y_centre = params["x_lens"][selected], params["y_lens"][selected]
        # Structures drawn on the whole supersampled grid go a few images at a time, to keep its
        # temporaries in cache (each image is rendered on its own, so this changes nothing).
        chunk = _NEGATIVE_CHUNK if kind in _FINE_GRID_KINDS else len(x_centre)
        structure = torch.cat([
            render_hard_negative(simulator, kind, {k: v[part] for k, v in feature.items()},
                                 (x_centre[part], y_centre[part]), convolve=False)
            for part in (slice(start, start + chunk) for start in range(0, len(x_centre), chunk))
        ])
        rows = np.flatnonzero(selected)
        index = torch.as_tensor(rows, device=simulator.device)
        if kind in EXTRA_LIGHT_KINDS:
            # The structure's S/N needs it on its own: structure and galaxy through the PSF apart.
            structure = observe(structure, rows)
            host = observe(light[rows], rows) if joint[rows].all() else galaxies.index_select(0, index)
            structure, columns["feature_snr"][rows] = _detectable_feature(
                simulator, structure, feature, host, rng, min_arc_snr, rows_of(rows),
            )
            if joint[rows].all():
                structure = structure + host
        else:
            if joint[rows].all():
                # The galaxy's light and its structure through the PSF together.
                structure = structure + light[rows]
            structure = observe(structure, rows)
        clean[index] += structure
        if feature_light is not None:
            feature_light[index] += structure
        for name, values in feature.items():
            columns[name][selected] = values
    if band_simulators:
        colours = draw_colours(kinds, [band.survey for band in band_simulators], rng)
        columns.update(colours)
        components = {"lens": galaxies, "source": lensed_light, "feature": feature_light}
        band_images = []
        for band in band_simulators:
            scale = {component: _band_flux_scale(colours[f"{component}_dmag_{_band_letter(band.survey)}"],
                                                 band.survey, simulator.survey) for component in components}
            band_clean = sum(components[c] * torch.as_tensor(scale[c], dtype=galaxies.dtype,
                                                              device=galaxies.device).reshape(-1, 1, 1)
                             for c in components)
            band_images.append(_noisy(band, band_clean, rng, observed))
        images = torch.stack(band_images, dim=1)
    else:
        images = _noisy(simulator, clean, rng, observed)[:, None]
    if observed is not None:
        columns.update({name: np.asarray(values, dtype=np.float64) for name, values in observed.items()})
    else:
        survey = simulator.survey
        columns.update({"seeing": np.full(n, survey.seeing), "psf_e": np.zeros(n), "psf_phi": np.zeros(n),
                        "depth": np.ones(n)})
    columns["label"] = is_lens.astype(np.int8)
    columns["kind"] = np.asarray(kinds, dtype=object)
    return images.to(torch.float32).cpu().numpy(), columns


def _detectable_feature(
    simulator: LensSimulator,
    structure: torch.Tensor,
    feature: dict[str, np.ndarray],
    light: torch.Tensor,
    rng: np.random.Generator,
    min_snr: float,
    conditions: dict[str, np.ndarray] | None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Redraw the magnitude of look-alike structures until their S/N reaches ``min_snr``, as the arcs'.

    ``structure`` (``(N, H, W)``, noise-free, at each image's seeing) is rescaled
    (it is linear in ``feature_mag``, which is updated in place) to magnitudes
    redrawn from :data:`~skysift.lens.negatives.EXTRA_LIGHT_MAG`; the S/N is the
    arcs' (:func:`~skysift.lens.simulator.arc_signal_to_noise` against the noise
    of galaxy plus structure at each image's depth). So the look-alikes' extra
    light passes the lenses' detectability cut: without it, faint look-alikes
    next to lenses kept only when visible teach "visible light round a galaxy
    means lens". Structures that stay below the cut after
    :data:`MAX_REDRAW_ROUNDS` (mostly beyond the stamp) are kept at their last
    draw. Returns the structures and their S/N.
    """
    snr = np.zeros(len(structure))
    todo = np.arange(len(structure))
    for _ in range(MAX_REDRAW_ROUNDS):
        index = torch.as_tensor(todo, device=structure.device)
        part = structure.index_select(0, index)
        variance = observing.noise_variance(simulator, part + light.index_select(0, index),
                                            None if conditions is None else {k: v[todo] for k, v in conditions.items()})
        snr[todo] = arc_signal_to_noise(part, variance).double().cpu().numpy()
        todo = todo[snr[todo] < min_snr]
        if not len(todo):
            break
        magnitude = EXTRA_LIGHT_MAG.sample(rng, len(todo))
        scale = magnitude_to_flux(magnitude - feature["feature_mag"][todo], 0.0)
        feature["feature_mag"][todo] = magnitude
        index = torch.as_tensor(todo, device=structure.device)
        structure = structure.index_copy(0, index, structure.index_select(0, index) * torch.as_tensor(
            scale, dtype=structure.dtype, device=structure.device).reshape(-1, 1, 1))
    return structure, snr


def _noisy(
    simulator: LensSimulator, clean: torch.Tensor, rng: np.random.Generator, observed: dict[str, np.ndarray] | None
) -> torch.Tensor:
    """Survey noise on ``clean`` (N, H, W), scaled to each image's depth where conditions are randomised.

    ``clean + sigma z``: ``sigma^2`` is :func:`~skysift.lens.observing.noise_variance`
    (what the S/N cuts assume; the noise model of
    :meth:`~skysift.lens.simulator.LensSimulator.add_noise`) and ``z`` standard
    normal deviates in the images' precision from torch's CPU generator seeded
    from ``rng`` (its vectorised Box-Muller draws 2 million in ~13 ms on one
    core, numpy's ziggurat in ~28 ms; the whole noise of 512 stamps of 64x64
    costs ~35 ms against ~60-75 ms for ``add_noise``'s transform of raw words in
    eager mode). The draws do not depend on torch's thread count.
    """
    variance = observing.noise_variance(simulator, clean, observed)
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63)))
    deviates = torch.randn(tuple(clean.shape), generator=generator, dtype=clean.dtype)
    return variance.sqrt_().mul_(deviates.to(clean.device)).add_(clean)


#: Bands of the multi-band mode, by the last letter of a survey preset's name ("lsst-g").
BAND_LETTERS = ("g", "r", "i")
#: Colour priors (AB): ``g - r`` and ``r - i`` of the lens light, the lensed source (and
#: arclets), and the hard-negative structures. Lenses are early-type galaxies at
#: z ~ 0.3-0.7 (luminous red galaxies: g - r ~ 1.0-1.7, r - i ~ 0.35-0.65; Eisenstein et
#: al. 2001, AJ 122, 2267); sources are star-forming galaxies at z ~ 1-3, nearly flat
#: in f_nu (g - r ~ -0.1-0.5); the rings, spiral arms and tidal tails are star-forming
#: (bluish), while companions, blends, stars and edge-on discs take any colour from blue
#: to red: colour alone does not tell them from lenses.
COLOUR_PRIORS: dict[str, dict[str, Prior]] = {
    "lens": {"g-r": Uniform(1.0, 1.7), "r-i": Uniform(0.35, 0.65)},
    "source": {"g-r": Uniform(-0.1, 0.5), "r-i": Uniform(-0.1, 0.4)},
    "feature_blue": {"g-r": Uniform(0.1, 0.8), "r-i": Uniform(0.0, 0.4)},
    "feature_any": {"g-r": Uniform(0.1, 1.7), "r-i": Uniform(0.0, 0.7)},
}
_BLUE_FEATURES = ("ring", "spiral", "merger")


def _band_letter(survey: SurveySpec) -> str:
    letter = survey.name.rsplit("-", 1)[-1]
    if letter not in BAND_LETTERS:
        raise ValueError(f"band {survey.name!r}: multi-band images need presets named '<survey>-g/r/i'")
    return letter


def draw_colours(kinds: np.ndarray, bands: Sequence[SurveySpec], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-sample magnitude offsets ``<component>_dmag_<band>`` from the r band (:data:`COLOUR_PRIORS`).

    ``m_g - m_r = g - r``, ``m_i - m_r = -(r - i)``; components ``lens``,
    ``source`` (lenses and arclets) and ``feature`` (hard-negative structure).
    """
    n = len(kinds)
    offsets: dict[str, np.ndarray] = {}
    drawn = {name: sample_parameters(priors, n, rng) for name, priors in COLOUR_PRIORS.items()}
    blue = np.isin(kinds, _BLUE_FEATURES)
    feature = {colour: np.where(blue, drawn["feature_blue"][colour], drawn["feature_any"][colour])
               for colour in ("g-r", "r-i")}
    for component, colour in (("lens", drawn["lens"]), ("source", drawn["source"]), ("feature", feature)):
        for band in bands:
            letter = _band_letter(band)
            offsets[f"{component}_dmag_{letter}"] = (
                colour["g-r"] if letter == "g" else -colour["r-i"] if letter == "i" else np.zeros(n)
            ).astype(np.float64)
    return offsets


def _band_flux_scale(dmag: np.ndarray, band: SurveySpec, reference: SurveySpec) -> np.ndarray:
    """e-/s in ``band`` per e-/s rendered in ``reference`` for a component ``dmag`` fainter in ``band``."""
    return 10.0 ** (-0.4 * (np.asarray(dmag) - (band.zero_point - reference.zero_point)))


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU kernels on ``count`` threads for a while (the setting is process-wide)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _simulate_seeded_batch(
    simulator: LensSimulator, batch: tuple[np.ndarray, np.random.SeedSequence], **options: Any
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`simulate_batch` of ``batch = (kinds, seed)``, its random stream started from ``seed``."""
    kinds, seed = batch
    return simulate_batch(simulator, kinds, np.random.default_rng(seed), **options)


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
    conditions: str = "randomised",
    negative_mix: Mapping[str, float] | None = None,
    source_catalogue: str | os.PathLike[str] | None = None,
    bands: Sequence[str] = (),
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
        Images simulated and written per batch (the unit of work of a worker).
    compile : bool
        Use ``torch.compile`` for the surface-brightness kernel (pays off above
        ~10^4 images on CPU).
    adaptive_supersampling : bool
        Supersample only where the surface brightness needs it (default; within
        0.1 % of the image peak of the uniform result and ~2x faster; see
        :class:`~skysift.lens.simulator.LensSimulator`); it applies to the
        Sersic look-alikes (companions, blends, merger discs) too, while the
        other hard-negative structures are always supersampled uniformly.
    workers : int, optional
        Processes simulating batches concurrently on CPUs (forked, on Linux;
        threads elsewhere; default: the usable cores); each runs torch on one
        thread (one thread also for one worker, in this process, so the product is
        bit-identical for any count), while this process writes finished batches
        in order. Processes, not threads: the simulation's Python between its
        kernels holds the GIL: two threads cost 6-28 % more CPU per image than two
        processes, at load average ~1.5 on two cores (at load 5-6 threads were faster).
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
    conditions : {"randomised", "fixed"}
        Each image its own seeing, PSF shape and depth
        (:mod:`~skysift.lens.observing`, default), or the survey preset's.
    negative_mix : mapping, optional
        Weight of each negative kind (``"galaxy"``, ``"arclet"`` and
        :data:`~skysift.lens.negatives.HARD_NEGATIVE_KINDS`); default
        :data:`NEGATIVE_MIX`. Normalised; kinds left out are not drawn.
    source_catalogue : path, optional
        A GalSim COSMOS parametric-fit catalogue
        (``real_galaxy_catalog_23.5_example_fits.fits``): source Sersic index,
        axis ratio and size are drawn jointly from its real galaxies
        (:func:`~skysift.lens.injection.read_cosmos_sersic_fits`) instead of
        the independent uniform priors.
    bands : sequence of str
        Multi-band images: survey presets of the bands in channel order (e.g.
        ``("lsst-g", "lsst-r", "lsst-i")``); ``survey`` must be the r-band one
        among them (the arc S/N cut and the stored magnitudes are in r). Each
        light component gets colours from :data:`COLOUR_PRIORS` (stored as
        ``<component>_dmag_<band>``) and each band its own noise. Empty (the
        default): single-band images of ``survey``.

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
    if conditions not in CONDITIONS:
        raise ValueError(f"conditions must be one of {CONDITIONS}, got {conditions!r}")
    mix = check_negative_mix(NEGATIVE_MIX if negative_mix is None else negative_mix)
    band_specs = [SURVEYS[band] if band in SURVEYS else None for band in bands]
    if bands:
        if None in band_specs or survey not in bands:
            raise ValueError(f"bands {list(bands)} must be survey presets ({sorted(SURVEYS)}) including survey {survey!r}")
        if _band_letter(SURVEYS[survey]) != "r" or len({spec.pixel_scale for spec in band_specs}) != 1:
            raise ValueError(f"bands {list(bands)}: survey {survey!r} must be the r band, all bands one pixel scale")
        for spec in band_specs:
            _band_letter(spec)
    rng = np.random.default_rng(seed)
    # Chunks of 64 images keep the adaptive kernels' working set in cache (16 for uniform).
    simulator = LensSimulator(survey, image_size, supersampling, device=device, compile=compile,
                              psf=observing.base_psf(SURVEYS[survey]) if conditions == "randomised" else "survey",
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
    source_shapes = None
    if source_catalogue:
        source_shapes = read_cosmos_sersic_fits(source_catalogue)
        inputs.append(Path(source_catalogue))
        _LOG.info("source shapes from %d COSMOS Sersic fits in %s", len(source_shapes["n"]), source_catalogue)
    kinds = _assign_kinds(n_samples, positive_fraction, rng, mix)
    # Only the noise model of each band is used: no supersampling, no PSF.
    band_simulators = [LensSimulator(spec, image_size, 1, psf=None, device=device) for spec in band_specs]
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
        "conditions": conditions,
        "source_shapes": str(source_catalogue) if source_catalogue else "priors",
        "bands": ",".join(bands) if bands else survey,
        # The training distribution, for the model card: kinds and their shares.
        "negative_mix": ",".join(f"{k}:{v:.4g}" for k, v in mix.items()),
    }
    attrs.update({f"prior.{k}": v for k, v in describe(LENS_PRIORS).items()})
    # What the training set draws instead of LENS_PRIORS' source magnitude and position.
    attrs["prior.arc_mag"] = describe({"arc_mag": EXTRA_LIGHT_MAG})["arc_mag"]
    attrs["prior.source_mag"] = "derived: arc_mag + 2.5 log10(magnification)"
    attrs["prior.x_src"] = attrs["prior.y_src"] = "uniform in area inside theta_E (place_source_inside_einstein_radius)"
    for kind, priors in HARD_NEGATIVE_PRIORS.items():
        attrs.update({f"prior.{kind}.{k}": v for k, v in describe(priors).items()})
    if bands:
        for component, priors in COLOUR_PRIORS.items():
            attrs.update({f"prior.colour.{component}.{k}": v for k, v in describe(priors).items()})
    if conditions == "randomised":
        attrs.update({f"prior.observing.{k}": v for k, v in describe(observing.OBSERVING_PRIORS).items()})
        attrs["prior.observing.seeing"] += f" x {SURVEYS[survey].seeing} arcsec"
    units = _column_units()
    # Noisy float32 stamps barely compress (gzip 4 saves 17 % at ~30 MB/s, more than the
    # simulation itself costs): stored without filters (gzip level 0 and shuffle still cost
    # ~7 ms of this process's CPU per 512-image batch written and ~50 ms per batch read).
    with ProductWriter(out_path, "lens-training-set", provenance, attrs=attrs, compression_level=None) as writer:
        writer.add_array(
            "image", (max(len(bands), 1), image_size, image_size), "float32", unit=IMAGE_UNIT,
            description="sky-subtracted survey image with noise; normalise with skysift.lens.model.normalise",
        )
        writer.add_column("label", "int8", description="1 = lens, 0 = not a lens")
        writer.add_column("kind", str, description="lens, or the negative's family: " + ", ".join(KINDS[1:]))
        writer.add_column("galaxy_id", "int64", description="IDENT of the real galaxy, -1 if simulated")
        writer.add_column("magnification", "float64",
                          description="lensed / intrinsic source flux in the stamp (lenses and arclets)")
        writer.add_column("arc_snr", "float64",
                          description="integrated S/N of the arc over its pixels above 1 sigma (lenses and arclets)")
        writer.add_column("arc_contrast", "float64",
                          description="arc / lens-light flux over the arc's pixels above 1 sigma (lenses and arclets)")
        writer.add_column("counter_snr", "float64",
                          description="S/N of the lensed light on the far side of the lens from the arc's brightest "
                          "pixel (lenses and arclets; lenses need >= 5)")
        writer.add_column("arc_mag", "float64", unit="mag",
                          description="observed (lensed) magnitude of the arc in the stamp (lenses and arclets)")
        writer.add_column("feature_snr", "float64",
                          description="integrated S/N of a look-alike's extra light, as arc_snr (rings, spirals, "
                          "companions, mergers, stars)")
        writer.add_column("seeing", "float64", unit="arcsec", description="nominal PSF FWHM of the image (see skysift.lens.observing)")
        writer.add_column("psf_e", "float64", description="ellipticity of the PSF's Gaussian component")
        writer.add_column("psf_phi", "float64", unit="deg", description="position angle of the PSF ellipticity")
        writer.add_column("depth", "float64", description="exposure time relative to the survey preset's")
        for component in ("lens", "source", "feature"):
            for spec in band_specs:
                writer.add_column(f"{component}_dmag_{_band_letter(spec)}", "float64", unit="mag",
                                  description=f"{component} magnitude in {spec.name} minus that in r")
        for name in (*LENS_PRIORS, *FEATURE_NAMES):
            writer.add_column(name, "float64", unit=units.get(name, ""))
        starts = range(0, n_samples, batch_size)
        batch_seeds = np.random.SeedSequence(seed).spawn(len(starts))
        batches = [(kinds[start : start + batch_size], batch_seed) for start, batch_seed in zip(starts, batch_seeds)]
        simulate = functools.partial(
            _simulate_seeded_batch, simulator, galaxy_stamps=stamps, galaxy_meta=meta,
            min_arc_snr=min_arc_snr, min_magnification=min_magnification, resolution_factor=resolution_factor,
            min_arc_contrast=min_arc_contrast, conditions=conditions, source_shapes=source_shapes,
            band_simulators=band_simulators,
        )
        n_workers = 1 if device != "cpu" else workers or usable_cores()
        # One torch thread per worker on CPUs, also for one worker: how torch splits an
        # element-wise kernel among its threads changes the last bit of some results (a
        # vectorised or a scalar exp for the elements at a split), and the product must
        # not depend on the thread count.
        with _torch_threads(1 if device == "cpu" else torch.get_num_threads()):
            for images, columns in map_in_order(simulate, batches, workers=n_workers, processes=device == "cpu",
                                                desc="lens training set"):
                writer.append({"image": images}, columns)
    return Path(out_path)
