"""Real/bogus training sets by injecting point sources before image subtraction.

Following the injection approach of survey real/bogus classifiers (Goldstein et
al. 2015 for DES; Duev et al. 2019 for ZTF's braai; Cabrera-Vives et al. 2017
for HiTS), the *real* class is made of fake point sources added to the real
science image **before** subtraction, drawn with that image's own PSF (as
measured by :func:`skysift.diffim.pipeline.difference_images`), so they carry
the PSF, noise, registration and subtraction artefacts of true transients. The
*bogus* class is what the same survey pipeline detects where nothing was
injected, labelled by cause (the ``kind`` column):

``"star-residual"``
    candidates on a star of the aligned reference (imperfect PSF matching, variable stars);
``"saturated"``
    candidates flagged near saturated pixels (halos and bleed of bright stars);
``"cosmic-ray"``
    sharp 1-4 pixel hits added to the science image (in the same pass as the injections);
``"misalignment"``
    candidates of a second subtraction whose reference WCS was shifted on purpose
    (0.7-1.5 px by default) with WCS refinement off: dipoles of every star;
``"noise"``
    the remaining candidates (nothing in either image).

The injector follows :mod:`skysift.simulate.priors`: positions, S/N (or flux) and
cosmic-ray parameters are drawn with :func:`~skysift.simulate.priors.sample_parameters`
from declared priors, the injection (:func:`inject_point_sources`,
:func:`add_cosmic_rays`) is a pure function of (image, parameters, rng), and the
parameters are stored in every sample's row.

The product (``realbogus-training-set``) stores **raw** triplets (science
pixels as read, aligned and background-subtracted reference, ZOGY difference
``D``): the model normalises inside ``forward`` (see
:mod:`skysift.realbogus.model`), exactly as it does for ZTF alert stamps.

Pairs are processed with :func:`dask.delayed` tasks, one per (pair, repeat),
each with its own seed derived from ``(seed, pair index, repeat)``, so the
product does not depend on which scheduler or cluster runs them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from scipy import ndimage

from skysift.context import RunContext, resolve_context
from skysift.cutouts.extract import CHANNELS, extract_triplets
from skysift.diffim.detect import FLAG_NEAR_SATURATED
from skysift.diffim.pipeline import DiffimOptions, DiffimResult, difference_images
from skysift.diffim.psf import PsfGrid, psf_fwhm
from skysift.errors import InputDataError
from skysift.io import FitsImage, ProductWriter, read_fits_image
from skysift.log import get_logger
from skysift.simulate.priors import Choice, LogUniform, Prior, Uniform, describe, sample_parameters

__all__ = [
    "KINDS",
    "InjectionSettings",
    "add_cosmic_rays",
    "cosmic_ray_priors",
    "flux_for_snr",
    "injection_priors",
    "inject_point_sources",
    "make_realbogus_training_set",
    "psf_at",
    "sky_cells",
    "training_samples",
]

log = get_logger(__name__)

#: Values of the ``kind`` column; only ``"injected"`` has label 1.
KINDS = ("injected", "star-residual", "cosmic-ray", "misalignment", "saturated", "noise")
_COLUMN_UNITS = {"x": "pix", "y": "pix", "wcs_shift": "pix", "psf_fwhm": "pix"}


@dataclass(frozen=True)
class InjectionSettings:
    """What :func:`training_samples` injects and how it cuts the samples.

    Attributes
    ----------
    n_injections : int
        Point sources injected per image (and per repeat).
    snr_range : (float, float) or None
        Log-uniform range of the injected sources' optimal PSF-photometry S/N
        in the science image alone (flux follows from the PSF, noise and gain).
    flux_range : (float, float) or None
        Log-uniform flux range (science image units) instead of ``snr_range``.
    n_cosmic_rays : int
        Cosmic-ray hits added per image.
    cosmic_ray_snr_range : (float, float)
        Log-uniform peak-pixel amplitude of the hits, in units of the science background sigma.
    misalignment_range : (float, float) or None
        Magnitude (pixels) of the reference WCS shift of the misaligned
        subtraction; None skips it.
    real_fraction : float
        Fraction of label-1 samples per image; bogus samples are subsampled
        (or all kept, if too few) to match it.
    cutout_size : int
        Odd stamp side.
    match_radius : float
        Candidates within this distance (pixels) of an injection or a
        cosmic ray belong to it (and set its ``detected`` flag).
    exclusion_radius : float
        Bogus samples come only from candidates farther than this (pixels)
        from every planted object; planted objects are at least twice this
        far apart (and from each other's cosmic rays).
    margin : int
        Injections stay this far (pixels) from the image edges.
    detected_only : bool
        Keep only the injections and cosmic rays the subtraction detected
        (a candidate within ``match_radius``), cut at that candidate's
        position, as the classifier will see them: it only ever scores
        candidates (braai and Deep-HiTS train on detections too). Without it,
        injections below the detection threshold, invisible in ``D``, are
        labelled real.
    diffim : DiffimOptions
        Subtraction settings (near-saturated candidates are always kept, flagged).
    """

    n_injections: int = 50
    snr_range: tuple[float, float] | None = (5.0, 50.0)
    flux_range: tuple[float, float] | None = None
    n_cosmic_rays: int = 15
    cosmic_ray_snr_range: tuple[float, float] = (8.0, 200.0)
    misalignment_range: tuple[float, float] | None = (0.7, 1.5)
    real_fraction: float = 0.5
    cutout_size: int = 63
    match_radius: float = 3.0
    exclusion_radius: float = 8.0
    margin: int = 20
    detected_only: bool = True
    diffim: DiffimOptions = DiffimOptions()

    def __post_init__(self) -> None:
        if (self.snr_range is None) == (self.flux_range is None):
            raise ValueError("give exactly one of snr_range and flux_range")
        if not 0.0 < self.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in (0, 1], got {self.real_fraction}")
        if self.cutout_size % 2 == 0:
            raise ValueError(f"cutout_size must be odd, got {self.cutout_size}")
        if self.n_injections < 1:
            raise ValueError(f"n_injections must be >= 1, got {self.n_injections}")
        if self.exclusion_radius < self.match_radius:
            raise ValueError(f"exclusion_radius ({self.exclusion_radius}) must be >= match_radius ({self.match_radius})")


# ---------------------------------------------------------------------------
# Priors and pure injections
# ---------------------------------------------------------------------------
def injection_priors(
    shape: tuple[int, int],
    *,
    margin: int = 20,
    snr_range: tuple[float, float] | None = (5.0, 50.0),
    flux_range: tuple[float, float] | None = None,
    flux_unit: str = "",
) -> dict[str, Prior]:
    """Declared priors of injected point sources: ``x``, ``y`` and ``snr`` or ``flux``."""
    ny, nx = shape
    if nx - 1 - 2 * margin <= 0 or ny - 1 - 2 * margin <= 0:
        raise ValueError(f"image {shape} too small for an injection margin of {margin} px")
    priors: dict[str, Prior] = {
        "x": Uniform(float(margin), float(nx - 1 - margin), "pix"),
        "y": Uniform(float(margin), float(ny - 1 - margin), "pix"),
    }
    if snr_range is not None:
        priors["snr"] = LogUniform(float(snr_range[0]), float(snr_range[1]))
    else:
        priors["flux"] = LogUniform(float(flux_range[0]), float(flux_range[1]), flux_unit)
    return priors


def cosmic_ray_priors(
    shape: tuple[int, int], *, margin: int = 20, snr_range: tuple[float, float] = (8.0, 200.0)
) -> dict[str, Prior]:
    """Declared priors of cosmic-ray hits: position, peak S/N, length (pixels) and angle (deg)."""
    priors = injection_priors(shape, margin=margin, snr_range=snr_range)
    priors["length"] = Choice((1.0, 2.0, 3.0, 4.0), (0.4, 0.3, 0.2, 0.1))
    priors["angle"] = Uniform(0.0, 180.0, "deg")
    return priors


def psf_at(psf: PsfGrid, x: float, y: float) -> np.ndarray:
    """The unit-sum PSF of the grid cell holding pixel ``(x, y)``."""
    row = int(np.clip(np.searchsorted(psf.y_edges, y, side="right") - 1, 0, psf.grid - 1))
    column = int(np.clip(np.searchsorted(psf.x_edges, x, side="right") - 1, 0, psf.grid - 1))
    return psf.psfs[row, column]


def flux_for_snr(snr: np.ndarray, psf: np.ndarray, sigma: float, gain: float = 1.0) -> np.ndarray:
    """Flux (image units) of a point source with optimal PSF-photometry S/N ``snr``.

    Solves ``snr = F / sqrt(F / gain + sigma**2 A)`` with the noise-equivalent
    area ``A = 1 / sum(P**2)`` (source Poisson noise included).
    """
    snr = np.asarray(snr, dtype=np.float64)
    area = 1.0 / float(np.sum(np.asarray(psf, dtype=np.float64) ** 2))
    s2 = snr**2
    return 0.5 * (s2 / gain + np.sqrt(s2**2 / gain**2 + 4.0 * s2 * sigma**2 * area))


def _add_stamp(image: np.ndarray, stamp: np.ndarray, cx: int, cy: int) -> None:
    half = stamp.shape[0] // 2
    ny, nx = image.shape
    y0, x0 = cy - half, cx - half
    ys, xs = slice(max(y0, 0), min(y0 + stamp.shape[0], ny)), slice(max(x0, 0), min(x0 + stamp.shape[1], nx))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    image[ys, xs] += stamp[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def inject_point_sources(
    image: np.ndarray,
    psf: np.ndarray | PsfGrid,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    rng: np.random.Generator,
    *,
    gain: float = 1.0,
) -> np.ndarray:
    """Return ``image`` plus point sources drawn with its PSF and their Poisson noise.

    Parameters
    ----------
    image : numpy.ndarray
        Science image (not modified).
    psf : numpy.ndarray or PsfGrid
        Unit-sum PSF stamp (odd side) or a grid of them (the cell at each position is used).
    x, y, flux : numpy.ndarray
        0-based positions and total fluxes (image units).
    rng : numpy.random.Generator
        Source of the sources' photon noise.
    gain : float
        Electrons per image unit (Poisson variance ``signal / gain``).

    Returns
    -------
    numpy.ndarray
        float64 copy of ``image`` with the sources added.

    Notes
    -----
    The PSF is shifted to each sub-pixel position by cubic-spline interpolation
    (:func:`scipy.ndimage.shift`), clipped at 0 and renormalised to unit sum.
    """
    out = np.array(image, dtype=np.float64, copy=True)
    for xi, yi, fi in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux), strict=True):
        stamp = psf_at(psf, xi, yi) if isinstance(psf, PsfGrid) else np.asarray(psf, dtype=np.float64)
        cx, cy = int(np.ceil(xi - 0.5)), int(np.ceil(yi - 0.5))
        shifted = np.clip(ndimage.shift(stamp, (yi - cy, xi - cx), order=3, mode="constant"), 0.0, None)
        signal = fi * shifted / shifted.sum()
        noisy = signal + rng.normal(0.0, 1.0, size=signal.shape) * np.sqrt(signal / gain)
        _add_stamp(out, noisy, cx, cy)
    return out


def add_cosmic_rays(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, peak: np.ndarray, length: np.ndarray, angle: np.ndarray
) -> np.ndarray:
    """Return ``image`` plus cosmic-ray hits: short straight tracks of sharp pixels.

    Each hit deposits ``peak`` (image units) in ``length`` pixels along
    direction ``angle`` (degrees) from ``(x, y)``, with no PSF blurring (the
    charge is deposited in the detector), so the hit is sharper than any star.
    """
    out = np.array(image, dtype=np.float64, copy=True)
    ny, nx = out.shape
    for xi, yi, pi, li, ai in zip(*(np.atleast_1d(v) for v in (x, y, peak, length, angle)), strict=True):
        steps = np.arange(int(li))
        columns = np.ceil(xi - 0.5 + steps * np.cos(np.deg2rad(ai)) - 1e-9).astype(int)
        rows = np.ceil(yi - 0.5 + steps * np.sin(np.deg2rad(ai)) - 1e-9).astype(int)
        inside = (columns >= 0) & (columns < nx) & (rows >= 0) & (rows < ny)
        out[rows[inside], columns[inside]] += pi
    return out


# ---------------------------------------------------------------------------
# One pair
# ---------------------------------------------------------------------------
def _gain(header: Mapping[str, Any]) -> float:
    try:
        gain = float(header.get("GAIN", 1.0))
    except (TypeError, ValueError):
        return 1.0
    return gain if np.isfinite(gain) and gain > 0 else 1.0


def _clear_positions(
    params: dict[str, np.ndarray],
    unusable: np.ndarray,
    radius: int,
    n: int,
    *,
    separation: float = 0.0,
    occupied: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The first ``n`` draws whose surroundings hold no unusable pixel and no other planted object.

    The prior is truncated to the usable area, and a draw closer than
    ``separation`` pixels to an earlier accepted draw or to an ``occupied``
    position is skipped, so that no two planted objects blend (a cosmic ray on
    an injection, two injections in one candidate) and every sample has one
    unambiguous label.
    """
    grown = ndimage.binary_dilation(unusable, iterations=radius) if radius > 0 else unusable
    cx = np.ceil(params["x"] - 0.5).astype(int)
    cy = np.ceil(params["y"] - 0.5).astype(int)
    usable = np.flatnonzero(~grown[cy, cx])
    if separation <= 0:
        keep = usable[:n]
    else:
        taken_x = list(np.asarray(occupied[0], float)) if occupied is not None else []
        taken_y = list(np.asarray(occupied[1], float)) if occupied is not None else []
        chosen: list[int] = []
        for index in usable:
            if len(chosen) == n:
                break
            x, y = float(params["x"][index]), float(params["y"][index])
            if taken_x and np.min(np.hypot(np.asarray(taken_x) - x, np.asarray(taken_y) - y)) < separation:
                continue
            chosen.append(int(index))
            taken_x.append(x)
            taken_y.append(y)
        keep = np.asarray(chosen, dtype=int)
    return {name: values[keep] for name, values in params.items()}


def _nearest(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Distance from each (x, y) to the nearest (px, py) (inf if there is none)."""
    return _nearest_index(x, y, px, py)[0]


def _nearest_index(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each (x, y) to the nearest (px, py) and its index (inf and -1 if there is none)."""
    if len(px) == 0 or len(x) == 0:
        return np.full(len(x), np.inf), np.full(len(x), -1)
    d2 = (np.asarray(x)[:, None] - np.asarray(px)[None, :]) ** 2 + (np.asarray(y)[:, None] - np.asarray(py)[None, :]) ** 2
    index = d2.argmin(axis=1)
    return np.sqrt(d2[np.arange(len(x)), index]), index


def _candidate_kinds(result: DiffimResult, candidates: Table) -> np.ndarray:
    """Label subtraction candidates by cause: saturated, star-residual or noise."""
    kinds = np.full(len(candidates), "noise", dtype=object)
    if len(candidates) == 0:
        return kinds.astype(str)
    cx = np.clip(np.ceil(np.asarray(candidates["x"]) - 0.5).astype(int), 0, result.difference.shape[1] - 1)
    cy = np.clip(np.ceil(np.asarray(candidates["y"]) - 0.5).astype(int), 0, result.difference.shape[0] - 1)
    # A star in the aligned reference (or a steady source in the science image) under the candidate.
    peak_reference = ndimage.maximum_filter(result.reference_aligned, size=3)[cy, cx]
    peak_science = ndimage.maximum_filter(result.science, size=3)[cy, cx]
    on_star = (peak_reference > 5.0 * result.sigma_reference) & (peak_science > 5.0 * result.sigma_science)
    kinds[on_star] = "star-residual"
    kinds[(np.asarray(candidates["flags"]) & FLAG_NEAR_SATURATED) != 0] = "saturated"
    return kinds.astype(str)


def _balanced_choice(kinds: np.ndarray, n_wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_wanted`` bogus samples spread as evenly as possible over kinds (water filling)."""
    if n_wanted >= len(kinds):
        return np.arange(len(kinds))
    groups = {kind: rng.permutation(np.flatnonzero(kinds == kind)) for kind in KINDS[1:] if (kinds == kind).any()}
    quota = dict.fromkeys(groups, 0)
    remaining = n_wanted
    while remaining > 0:
        open_kinds = [k for k in groups if quota[k] < len(groups[k])]
        share = max(1, remaining // len(open_kinds))
        for kind in open_kinds:
            take = min(share, len(groups[kind]) - quota[kind], remaining)
            quota[kind] += take
            remaining -= take
            if remaining == 0:
                break
    return np.sort(np.concatenate([groups[k][: quota[k]] for k in groups]))


def _samples_table(n: int, **columns: Any) -> Table:
    defaults = {
        "label": np.zeros(n, np.int8), "kind": np.full(n, "noise"), "x": np.full(n, np.nan), "y": np.full(n, np.nan),
        "x_true": np.full(n, np.nan), "y_true": np.full(n, np.nan),
        "injected_flux": np.full(n, np.nan), "injected_snr": np.full(n, np.nan), "cr_length": np.zeros(n, np.int16),
        "scorr": np.full(n, np.nan), "candidate_flux": np.full(n, np.nan), "detected": np.zeros(n, bool),
        "wcs_shift": np.zeros(n), "flags": np.zeros(n, np.int32),
    }
    for name, values in columns.items():
        defaults[name] = np.broadcast_to(np.asarray(values), (n,)).copy() if np.ndim(values) == 0 else np.asarray(values)
    return Table(defaults)


def _candidate_rows(candidates: Table, kinds: np.ndarray, wcs_shift: float = 0.0) -> Table:
    return _samples_table(
        len(candidates), kind=kinds, x=np.asarray(candidates["x"], float), y=np.asarray(candidates["y"], float),
        scorr=np.asarray(candidates["scorr"], float), candidate_flux=np.asarray(candidates["flux"], float),
        detected=np.ones(len(candidates), bool), wcs_shift=wcs_shift, flags=np.asarray(candidates["flags"], np.int32),
    )


def training_samples(
    science: FitsImage,
    reference: FitsImage,
    settings: InjectionSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, Table]:
    """Injected (real) and bogus triplets from one science/reference pair (pure computation).

    Parameters
    ----------
    science, reference : FitsImage
        The pair, with celestial WCSs.
    settings : InjectionSettings
        What to inject and cut.
    rng : numpy.random.Generator
        Every random draw comes from it.

    Returns
    -------
    cutouts : numpy.ndarray
        ``(N, 3, S, S)`` float32 raw triplets (see the module notes).
    edge_mask : numpy.ndarray
        ``(N, S, S)`` bool.
    table : astropy.table.Table
        ``label`` (1 = injected), ``kind``, ``x``, ``y`` (the cutout centre: the
        candidate's position where one was detected), ``x_true``, ``y_true``
        (where an injection or cosmic ray was planted), ``injected_flux``,
        ``injected_snr``, ``cr_length``, ``scorr`` (S_corr at the planted position),
        ``candidate_flux``, ``detected``, ``wcs_shift``, ``flags``, ``psf_fwhm``.

    Raises
    ------
    InputDataError
        If the subtraction of the pair fails (see :func:`difference_images`).
    """
    options = dataclasses.replace(settings.diffim, exclude_near_saturated=False)
    shape = science.data.shape
    gain = _gain(science.header)
    # 1. The pair as it is: the science PSF, noise and unusable pixels.
    clean = difference_images(science, reference, options=options)
    sigma = clean.sigma_science
    psf_mean = clean.psf_science.mean_psf
    fwhm = float(psf_fwhm(psf_mean))
    unusable = clean.mask | clean.saturated | ~np.isfinite(science.data)
    radius = max(2, int(np.ceil(2 * fwhm)))
    margin = max(settings.margin, options.edge_width + psf_mean.shape[0] // 2)

    # 2. Parameters from the declared priors (oversampled, then truncated to usable places).
    flux_unit = str(science.header.get("BUNIT", ""))
    priors = injection_priors(shape, margin=margin, snr_range=settings.snr_range, flux_range=settings.flux_range, flux_unit=flux_unit)
    separation = 2.0 * max(radius, settings.exclusion_radius)
    drawn = _clear_positions(sample_parameters(priors, 8 * settings.n_injections, rng), unusable, radius, settings.n_injections,
                             separation=separation)
    if len(drawn["x"]) < settings.n_injections:
        log.warning("%s: room for only %d of %d injections %.0f px apart", science.path, len(drawn["x"]), settings.n_injections, separation)
    if "snr" in drawn:
        drawn["flux"] = flux_for_snr(drawn["snr"], psf_mean, sigma, gain)
    else:
        area = 1.0 / float(np.sum(psf_mean**2))
        drawn["snr"] = drawn["flux"] / np.sqrt(drawn["flux"] / gain + sigma**2 * area)
    rays = _clear_positions(
        sample_parameters(cosmic_ray_priors(shape, margin=margin, snr_range=settings.cosmic_ray_snr_range), 4 * settings.n_cosmic_rays, rng),
        unusable, radius, settings.n_cosmic_rays, separation=separation, occupied=(drawn["x"], drawn["y"]),
    ) if settings.n_cosmic_rays > 0 else {k: np.zeros(0) for k in ("x", "y", "snr", "length", "angle")}

    # 3. Inject into the science image before subtraction, and subtract again.
    injected = inject_point_sources(science.data, clean.psf_science, drawn["x"], drawn["y"], drawn["flux"], rng, gain=gain)
    injected = add_cosmic_rays(injected, rays["x"], rays["y"], rays["snr"] * sigma, rays["length"], rays["angle"])
    injected_image = dataclasses.replace(science, data=injected)
    result = difference_images(injected_image, reference, options=options)

    planted_x = np.concatenate([drawn["x"], rays["x"]])
    planted_y = np.concatenate([drawn["y"], rays["y"]])
    candidates = result.candidates
    distance_to_candidate, nearest_candidate = _nearest_index(planted_x, planted_y, candidates["x"], candidates["y"])
    detected = distance_to_candidate <= settings.match_radius
    n_inj = len(drawn["x"])
    pixel = lambda xs, ys: (np.clip(np.ceil(ys - 0.5).astype(int), 0, shape[0] - 1), np.clip(np.ceil(xs - 0.5).astype(int), 0, shape[1] - 1))  # noqa: E731
    # Cutouts are centred where the pipeline put the candidate when it found one.
    centre_x, centre_y = planted_x.copy(), planted_y.copy()
    candidate_flux = np.full(len(planted_x), np.nan)
    if detected.any():
        centre_x[detected] = np.asarray(candidates["x"], float)[nearest_candidate[detected]]
        centre_y[detected] = np.asarray(candidates["y"], float)[nearest_candidate[detected]]
        candidate_flux[detected] = np.asarray(candidates["flux"], float)[nearest_candidate[detected]]
    real = _samples_table(
        n_inj, label=np.ones(n_inj, np.int8), kind="injected", x=centre_x[:n_inj], y=centre_y[:n_inj],
        x_true=drawn["x"], y_true=drawn["y"], injected_flux=drawn["flux"],
        injected_snr=drawn["snr"], scorr=result.score_corr[pixel(drawn["x"], drawn["y"])],
        candidate_flux=candidate_flux[:n_inj], detected=detected[:n_inj],
    )
    n_rays = len(rays["x"])
    cosmic = _samples_table(
        n_rays, kind="cosmic-ray", x=centre_x[n_inj:], y=centre_y[n_inj:], x_true=rays["x"], y_true=rays["y"],
        injected_flux=rays["snr"] * sigma * rays["length"],
        injected_snr=rays["snr"], cr_length=rays["length"].astype(np.int16), scorr=result.score_corr[pixel(rays["x"], rays["y"])],
        candidate_flux=candidate_flux[n_inj:], detected=detected[n_inj:],
    )
    if settings.detected_only:
        real, cosmic = real[np.asarray(real["detected"])], cosmic[np.asarray(cosmic["detected"])]
    # Beyond match_radius but within exclusion_radius: fragments of a planted
    # object (deblending, centroid error), neither cleanly real nor bogus.
    far = _nearest(candidates["x"], candidates["y"], planted_x, planted_y) > settings.exclusion_radius
    natural = candidates[far]
    natural_rows = _candidate_rows(natural, _candidate_kinds(result, natural))

    science_pixels = np.asarray(injected, dtype=np.float32)
    pieces = []
    for table in (real, cosmic, natural_rows):
        if len(table):
            triplets = extract_triplets(science_pixels, result.reference_aligned, result.difference, table["x"], table["y"], size=settings.cutout_size)
            pieces.append((triplets.cutouts, triplets.edge_mask, table))

    # 4. A deliberately misaligned subtraction: the reference WCS shifted, no refinement.
    if settings.misalignment_range is not None:
        magnitude = float(rng.uniform(*settings.misalignment_range))
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        shifted_wcs = reference.wcs.deepcopy()
        shifted_wcs.wcs.crpix = shifted_wcs.wcs.crpix + np.array([magnitude * np.cos(angle), magnitude * np.sin(angle)])
        try:
            misaligned = difference_images(
                injected_image, dataclasses.replace(reference, wcs=shifted_wcs), options=dataclasses.replace(options, refine_wcs=False)
            )
        except InputDataError as exc:
            log.warning("%s: misaligned subtraction failed, no misalignment samples (%s)", science.path, exc)
        else:
            found = misaligned.candidates
            found = found[_nearest(found["x"], found["y"], planted_x, planted_y) > settings.exclusion_radius]
            rows = _candidate_rows(found, np.full(len(found), "misalignment"), wcs_shift=magnitude)
            if len(rows):
                triplets = extract_triplets(science_pixels, misaligned.reference_aligned, misaligned.difference, rows["x"], rows["y"], size=settings.cutout_size)
                pieces.append((triplets.cutouts, triplets.edge_mask, rows))

    cutouts = np.concatenate([p[0] for p in pieces])
    edge_mask = np.concatenate([p[1] for p in pieces])
    table = vstack([p[2] for p in pieces], metadata_conflicts="silent")

    # 5. Class balance: keep all injections, subsample bogus evenly over kinds.
    bogus = np.flatnonzero(np.asarray(table["label"]) == 0)
    n_real = int(np.sum(table["label"] == 1))
    wanted = int(round(n_real * (1.0 - settings.real_fraction) / settings.real_fraction))
    if len(bogus) < wanted:
        log.warning("%s: only %d bogus samples for %d wanted; the real fraction will be higher", science.path, len(bogus), wanted)
    keep = np.concatenate([np.flatnonzero(np.asarray(table["label"]) == 1), bogus[_balanced_choice(np.asarray(table["kind"])[bogus], wanted, rng)]])
    table = table[keep]
    table["psf_fwhm"] = np.full(len(table), fwhm)
    table["edge_fraction"] = edge_mask[keep].mean(axis=(1, 2), dtype=np.float32)
    return cutouts[keep], edge_mask[keep], table


def _pair_task(
    science_path: str, reference_path: str, pair_index: int, repeat: int, seed: int, settings: InjectionSettings
) -> tuple[np.ndarray, np.ndarray, Table]:
    """Read one pair and make its samples (runs on a Dask worker)."""
    science = read_fits_image(science_path, require_wcs=True)
    reference = read_fits_image(reference_path, require_wcs=True)
    rng = np.random.default_rng([seed, pair_index, repeat])
    cutouts, edge_mask, table = training_samples(science, reference, settings, rng)
    table["pair_index"] = np.full(len(table), pair_index, dtype=np.int32)
    table["repeat"] = np.full(len(table), repeat, dtype=np.int32)
    table["science_file"] = np.full(len(table), str(science_path))
    table["sky_cell"] = sky_cells(pair_index, table["x"], table["y"])
    return cutouts, edge_mask, table


#: Side (pixels) of the sky cells that group samples for train/val/test splits.
SPLIT_CELL = 128


def sky_cells(pair_index: int, x: Any, y: Any, cell: int = SPLIT_CELL) -> np.ndarray:
    """Group id of ``cell`` x ``cell`` pixel squares of one pair's images.

    Every repeat injects into, and misaligns, the same images, so one star's
    residual or dipole recurs across repeats; splitting by sky cell (the
    ``realbogus`` task's ``split_group``) keeps each patch of sky in one split,
    so held-out figures are measured on sky the network has not seen.
    """
    column = np.floor(np.asarray(x, float) / cell).astype(np.int64)
    row = np.floor(np.asarray(y, float) / cell).astype(np.int64)
    return (int(pair_index) * 1_000_000 + row * 1000 + column).astype(np.int64)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def make_realbogus_training_set(
    pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    out_path: str | os.PathLike[str],
    *,
    n_injections_per_image: int = 50,
    snr_range: tuple[float, float] | None = (5.0, 50.0),
    flux_range: tuple[float, float] | None = None,
    n_cosmic_rays_per_image: int = 15,
    misalignment_range: tuple[float, float] | None = (0.7, 1.5),
    real_fraction: float = 0.5,
    cutout_size: int = 63,
    n_repeats: int = 1,
    seed: int = 0,
    detected_only: bool = True,
    diffim_options: DiffimOptions = DiffimOptions(),
    context: RunContext | None = None,
) -> Path:
    """Build the ``realbogus-training-set`` product from science/reference FITS pairs.

    Parameters
    ----------
    pairs : sequence of (science_path, reference_path)
        FITS images with celestial WCSs (simulated by ``simulate_pair`` or real).
        Pairs should hold no known transients: natural candidates are labelled
        bogus (for real data, true transients contaminate the bogus class at the
        survey's rate; simulate with ``n_transients: 0`` for the demo).
    out_path : str or path-like
        Destination ``.h5``.
    n_injections_per_image : int
        Point sources injected per pair and repeat.
    snr_range, flux_range : (float, float)
        Give one: log-uniform S/N or flux (science image units) of injections.
    n_cosmic_rays_per_image : int
        Cosmic-ray hits per pair and repeat.
    misalignment_range : (float, float) or None
        Reference WCS shift (pixels) of the misaligned subtraction; None skips it.
    real_fraction : float
        Target fraction of label 1 (per pair; met unless bogus candidates run short).
    cutout_size : int
        Odd stamp side.
    n_repeats : int
        Independent injection rounds per pair (different positions and fluxes).
    seed : int
        Master seed; pair ``i``, repeat ``r`` uses ``default_rng([seed, i, r])``.
    detected_only : bool
        Keep only detected injections and cosmic rays (see :class:`InjectionSettings`).
    diffim_options : DiffimOptions
        Subtraction settings.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Product: array ``cutout`` ``(N, 3, S, S)`` float32, RAW (normalised in the
    model's ``forward``), channels ``science, reference, difference``; array
    ``edge_mask``; table ``label``, ``kind``, ``x``, ``y``, ``x_true``, ``y_true``, ``injected_flux``,
    ``injected_snr``, ``cr_length``, ``scorr``, ``candidate_flux``,
    ``detected``, ``wcs_shift``, ``flags``, ``psf_fwhm``, ``edge_fraction``,
    ``pair_index``, ``repeat``, ``science_file``, ``sky_cell`` (split group,
    :func:`sky_cells`); ``meta.prior.*`` the priors,
    ``meta.settings.*`` the settings. Samples are written in (pair, repeat)
    order whatever the scheduler.
    """
    import dask

    if not pairs:
        raise ValueError("no image pairs given")
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    settings = InjectionSettings(
        n_injections=n_injections_per_image, snr_range=snr_range, flux_range=flux_range,
        n_cosmic_rays=n_cosmic_rays_per_image, misalignment_range=misalignment_range, real_fraction=real_fraction,
        cutout_size=cutout_size, detected_only=detected_only, diffim=diffim_options,
    )
    jobs = [(str(s), str(r), index, repeat) for index, (s, r) in enumerate(pairs) for repeat in range(n_repeats)]
    tasks = [dask.delayed(_pair_task, pure=True)(s, r, index, repeat, seed, settings) for s, r, index, repeat in jobs]
    log.info("real/bogus training set: %d pairs x %d repeats, %d injections each", len(pairs), n_repeats, n_injections_per_image)
    client = context.client if context else None
    if client is not None:
        futures = client.compute(tasks)
        results = (future.result() for future in futures)
    else:
        results = iter(dask.compute(*tasks, scheduler=(context.scheduler if context else None) or "threads"))

    inputs = [Path(p) for pair in pairs for p in pair]
    provenance = resolve_context(context, "realbogus_training_set").provenance(inputs=inputs, seed=seed)
    # Positions are uniform over each image's usable area; the other priors are global.
    priors = {k: v for k, v in injection_priors((1024, 1024), snr_range=snr_range, flux_range=flux_range).items() if k not in ("x", "y")}
    priors.update({f"cosmic_ray_{k}": v for k, v in cosmic_ray_priors((1024, 1024), snr_range=settings.cosmic_ray_snr_range).items() if k not in ("x", "y")})
    attrs: dict[str, Any] = {
        # skysift's own simulated images (skysift.simulate), not a survey preset's.
        "survey": "simulated", "channels": ",".join(CHANNELS), "cutout_size": cutout_size, "normalised": False, "kinds": ",".join(KINDS),
        "n_pairs": len(pairs), "n_repeats": n_repeats,
        **{f"prior.{name}": text for name, text in describe(priors).items()},
        **{f"settings.{k}": str(v) for k, v in dataclasses.asdict(settings).items() if k != "diffim"},
        **{f"diffim.{k}": str(v) for k, v in diffim_options.to_dict().items()},
    }
    with ProductWriter(out_path, "realbogus-training-set", provenance, attrs=attrs) as writer:
        writer.add_array("cutout", (3, cutout_size, cutout_size), np.float32,
                         description="raw triplets: science pixels, aligned background-subtracted reference, ZOGY difference D")
        writer.add_array("edge_mask", (cutout_size, cutout_size), bool, description="pixel outside the image")
        declared = False
        n_total = 0
        for cutouts, edge_mask, table in results:
            if not declared:
                for name in table.colnames:
                    values = np.asarray(table[name])
                    writer.add_column(name, str if values.dtype.kind in ("U", "S", "O") else values.dtype, unit=_COLUMN_UNITS.get(name, ""))
                declared = True
            writer.append({"cutout": cutouts, "edge_mask": edge_mask}, {name: np.asarray(table[name]) for name in table.colnames})
            n_total += len(table)
    log.info("wrote %s (%d samples)", out_path, n_total)
    return Path(out_path)
