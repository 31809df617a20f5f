"""An independent lens validation set, drawn with lenstronomy only.

The lens finder is trained and tested on images of skysift's own simulator
(:mod:`skysift.lens.simulator`). A model can learn that simulator's quirks,
so this module draws a second, independent set to validate it on: its own
priors, its own look-alike families and lenstronomy's rendering (Birrer &
Amara 2018; ``LensModel`` SIE + SHEAR, ``LightModel`` SERSIC_ELLIPSE /
GAUSSIAN / INTERPOL, point sources, ``SimAPI`` with lenstronomy's own LSST
configuration). It imports none of skysift's simulator, negatives or priors
(``tests/lens/test_independent.py`` parses the imports to hold that).

Observation (``lenstronomy.SimulationAPI.ObservationConfig.LSST``, r band,
10-year coadd): 0.2"/px, zero point 28.13 mag (1 e-/s), sky 21.2 mag/arcsec^2,
460 x 15 s exposures, read noise 10 e-; a Gaussian PSF whose FWHM is drawn
uniformly in [0.6, 0.9]" per image. That is a 5-sigma point-source depth of
~27.4-27.8 mag (:func:`point_source_depth`), a little deeper than the ~27.0 of
the issue; the sky noise dominates every pixel.

Populations (every range is a uniform draw unless said otherwise):

* Deflectors as Collett (2015, ApJ 811, 20): velocity dispersion from a
  normal N(230, 40) km/s truncated to [160, 340] (the lensing-weighted SDSS
  velocity function of Choi et al. 2007 peaks there), z_l in [0.2, 0.8],
  z_s in [max(z_l + 0.4, 1.0), 3.0], flat LCDM (H0 = 70, Om0 = 0.3) and
  ``theta_E = 4 pi (sigma_v / c)^2 D_ls / D_s``; SIE axis ratio q in
  [0.5, 1], external shear |gamma| in [0, 0.08], random angles.
* Massive-galaxy light (the lens galaxy, and the host of every look-alike but
  the spirals, edge-on discs and mergers, so that the central galaxy is no
  cue): Sersic n in [3, 5.5], R_eff in [0.5, 2.0]", r in [18.5, 21.5] mag,
  axis ratio in [0.55, 1].
* Sources: Sersic n in [0.5, 2], R_eff in [0.08, 0.45]", q in [0.4, 1],
  r in [22.5, 27] mag (unlensed; faint sources are common, Collett 2015); half of them carry 1-3 Gaussian
  star-forming knots (sigma 0.03-0.08", 5-20 % of the disc flux each).

Families (``family`` column): ``lens`` (label 1): the source centre inside the
caustic (at least two images by lenstronomy's lens-equation solver), kept
only if it passes the identifiability criteria of Collett (2015): resolved,
``theta_E^2 > R_eff^2 + (seeing / 2)^2``, and tangentially stretched beyond
the seeing, ``mu R_eff > seeing / 2`` (``mu`` the total magnification), and
if the lensed light has an integrated S/N >= 10 (:func:`arc_signal_to_noise`). Look-alikes (label 0), in equal shares:

* ``arclet``: the same deflector and source priors, the source just outside
  the caustic (1.05-1.8 theta_E from the lens), singly imaged at its centre
  and at four points 1.5 R_eff from it, with the same S/N >= 10;
* ``ring``: a massive galaxy with a ring (radius 0.5-2.5", from small smooth
  rings to large clumpy ones);
* ``companions``: a massive galaxy with 1-3 small galaxies 0.8-3" away;
* ``spiral``: a bulge + exponential disc with 2-3 logarithmic spiral arms;
* ``merger``: two galaxies 0.4-1.8" apart with a curved tidal tail;
* ``edge_on``: an edge-on disc (q 0.1-0.25) with a bulge;
* ``star_blend``: a massive galaxy with 1-2 stars 0.6-2.5" away.

Ring, spiral and tidal-tail light is drawn as an array (numpy) and rendered
through lenstronomy's INTERPOL profile, so that every image goes through
the same supersampling, PSF convolution and noise.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FAMILIES",
    "LOOKALIKE_FAMILIES",
    "PIXEL_SCALE",
    "Scene",
    "arc_signal_to_noise",
    "draw_sample",
    "image_multiplicity",
    "make_validation_set",
    "point_source_depth",
    "render_scene",
]

#: Arcsec per pixel (LSST).
PIXEL_SCALE = 0.2
#: Range of the Gaussian PSF FWHM, arcsec.
SEEING_RANGE = (0.6, 0.9)
LOOKALIKE_FAMILIES = ("arclet", "ring", "companions", "spiral", "merger", "edge_on", "star_blend")
FAMILIES = ("lens", *LOOKALIKE_FAMILIES)
#: Pixels of the lensed light above this many noise sigmas enter the arc S/N.
ARC_PIXEL_THRESHOLD = 1.0
#: Draws of one system before giving up (a prior that cannot reach the cuts).
MAX_ATTEMPTS = 200
#: Fine grid of the light drawn as arrays (INTERPOL), arcsec per pixel.
_FINE_SCALE = 0.04
_SPEED_OF_LIGHT_KMS = 299792.458
#: Every numeric column of the product (NaN where a family has no such parameter).
COLUMNS: dict[str, tuple[str, str]] = {
    "theta_E": ("arcsec", "Einstein radius (lenses and arclets)"),
    "arc_snr": ("", "integrated S/N of the lensed source light (lenses and arclets)"),
    "n_images": ("", "images of the source centre by lenstronomy's solver (lenses and arclets)"),
    "magnification": ("", "lensed (in the stamp) over unlensed source flux (lenses and arclets)"),
    "seeing": ("arcsec", "FWHM of the Gaussian PSF"),
    "sigma_v": ("km / s", "velocity dispersion of the deflector"),
    "z_lens": ("", "deflector redshift"),
    "z_source": ("", "source redshift"),
    "lens_q": ("", "SIE axis ratio"),
    "shear": ("", "external shear amplitude"),
    "lens_x": ("arcsec", "deflector centre (stamp centre = 0)"),
    "lens_y": ("arcsec", "deflector centre (stamp centre = 0)"),
    "lens_e1": ("", "SIE ellipticity e1 (lenstronomy convention)"),
    "lens_e2": ("", "SIE ellipticity e2 (lenstronomy convention)"),
    "shear_gamma1": ("", "external shear component gamma1"),
    "shear_gamma2": ("", "external shear component gamma2"),
    "source_x": ("arcsec", "source centre relative to the deflector"),
    "source_y": ("arcsec", "source centre relative to the deflector"),
    "source_r_eff": ("arcsec", "source Sersic half-light radius"),
    "source_mag": ("mag", "unlensed source r magnitude (disc and knots)"),
    "source_knots": ("", "star-forming knots of the source"),
    "host_mag": ("mag", "r magnitude of the central galaxy"),
    "host_r_eff": ("arcsec", "half-light radius of the central galaxy"),
    "feature_mag": ("mag", "r magnitude of the look-alike feature (ring, companions, arms, tail, stars)"),
    "feature_radius": ("arcsec", "ring radius, distance of companions/stars/merging galaxy, disc scale length"),
    "feature_count": ("", "companions, stars, spiral arms or ring knots"),
}


@dataclass
class Scene:
    """One image described in lenstronomy's terms, magnitudes in place of amplitudes.

    ``lens_light`` is every unlensed light profile; ``source`` the light
    behind the deflector (lensed through ``lens``), empty for unlensed scenes.
    """

    lens_models: list[str] = field(default_factory=list)
    lens: list[dict[str, float]] = field(default_factory=list)
    lens_light_models: list[str] = field(default_factory=list)
    lens_light: list[dict[str, Any]] = field(default_factory=list)
    source_models: list[str] = field(default_factory=list)
    source: list[dict[str, Any]] = field(default_factory=list)
    stars: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, magnitude)

    def add_light(self, model: str, kwargs: dict[str, Any]) -> None:
        self.lens_light_models.append(model)
        self.lens_light.append(kwargs)

    def add_source(self, model: str, kwargs: dict[str, Any]) -> None:
        self.source_models.append(model)
        self.source.append(kwargs)


# --- observation ---------------------------------------------------------------------------------------------


def observation(seeing: float) -> dict[str, Any]:
    """lenstronomy's LSST r-band 10-year single-band settings with the PSF FWHM ``seeing``."""
    from lenstronomy.SimulationAPI.ObservationConfig.LSST import LSST

    band = LSST(band="r", psf_type="GAUSSIAN", coadd_years=10).kwargs_single_band()
    band["seeing"] = float(seeing)
    return band


def point_source_depth(seeing: float, n_sigma: float = 5.0) -> float:
    """Sky-limited ``n_sigma`` point-source magnitude in an optimal aperture (``4 pi sigma_psf^2``)."""
    band = observation(seeing)
    sigma_psf = seeing / 2.3548
    n_pixels = 4.0 * math.pi * sigma_psf**2 / PIXEL_SCALE**2
    exposure = band["exposure_time"] * band["num_exposures"]
    sky_per_pixel = 10 ** (-0.4 * (band["sky_brightness"] - band["magnitude_zero_point"])) * PIXEL_SCALE**2
    variance = n_pixels * (sky_per_pixel * exposure + band["read_noise"] ** 2 * band["num_exposures"])
    flux = n_sigma * math.sqrt(variance) / exposure
    return band["magnitude_zero_point"] - 2.5 * math.log10(flux)


# --- measurements ----------------------------------------------------------------------------------------------


def arc_signal_to_noise(arc: np.ndarray, noise: np.ndarray, threshold: float = ARC_PIXEL_THRESHOLD) -> float:
    """Integrated S/N of the lensed light over its pixels above ``threshold`` sigma.

    ``S/N = sum_p A_p / sqrt(sum_p sigma_p^2)`` over the pixels ``p`` where the
    noise-free, PSF-convolved lensed source ``A`` exceeds ``threshold`` times
    the pixel noise ``sigma`` (sky, read-out, and the Poisson noise of the
    lens light and the source together). Collett (2015) sums the source's S/N
    over its pixels in the same way. Zero where no pixel passes.
    """
    arc = np.asarray(arc, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if arc.shape != noise.shape:
        raise ValueError(f"arc {arc.shape} and noise {noise.shape} differ in shape")
    selected = arc > threshold * noise
    if not selected.any():
        return 0.0
    return float(arc[selected].sum() / np.sqrt(np.sum(noise[selected] ** 2)))


def image_multiplicity(lens: Sequence[dict[str, float]], x: float, y: float, *, theta_e: float) -> int:
    """Number of images of a point source at ``(x, y)`` behind an SIE + SHEAR deflector.

    lenstronomy's ``LensEquationSolver`` (image-plane search within
    ``4 theta_E + 2`` arcsec, images closer than 0.02" merged).
    """
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    solver = LensEquationSolver(LensModel(["SIE", "SHEAR"]))
    xs, _ = solver.image_position_from_source(
        x, y, list(lens), search_window=4.0 * theta_e + 2.0, min_distance=0.02, precision_limit=1e-8,
    )
    return int(len(xs))


# --- priors ----------------------------------------------------------------------------------------------------


def _ellipticity(q: float, angle: float) -> tuple[float, float]:
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    e1, e2 = phi_q2_ellipticity(angle, q)
    return float(e1), float(e2)


@functools.lru_cache(maxsize=1)
def _cosmology() -> Any:
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=70.0, Om0=0.3)


def _einstein_radius(sigma_v: float, z_lens: float, z_source: float) -> float:
    """SIS Einstein radius in arcsec, flat LCDM (H0 = 70, Om0 = 0.3)."""
    # Flat universe: D_ls / D_s = 1 - D_C(z_l) / D_C(z_s) in comoving distances.
    comoving = _cosmology().comoving_distance([z_lens, z_source]).value
    ratio = 1.0 - comoving[0] / comoving[1]
    return float(4.0 * math.pi * (sigma_v / _SPEED_OF_LIGHT_KMS) ** 2 * ratio * 180.0 / math.pi * 3600.0)


def draw_deflector(rng: np.random.Generator) -> dict[str, float]:
    """Velocity dispersion, redshifts, Einstein radius, SIE ellipticity and shear (see the module notes)."""
    while True:
        sigma_v = rng.normal(230.0, 40.0)
        if 160.0 <= sigma_v <= 340.0:
            break
    z_lens = rng.uniform(0.2, 0.8)
    z_source = rng.uniform(max(z_lens + 0.4, 1.0), 3.0)
    q = rng.uniform(0.5, 1.0)
    e1, e2 = _ellipticity(q, rng.uniform(0, math.pi))
    shear = rng.uniform(0.0, 0.08)
    shear_angle = rng.uniform(0, math.pi)
    return {
        "sigma_v": sigma_v, "z_lens": z_lens, "z_source": z_source,
        "theta_E": _einstein_radius(sigma_v, z_lens, z_source), "lens_q": q, "e1": e1, "e2": e2, "shear": shear,
        "gamma1": shear * math.cos(2 * shear_angle), "gamma2": shear * math.sin(2 * shear_angle),
        "center_x": rng.uniform(-0.2, 0.2), "center_y": rng.uniform(-0.2, 0.2),
    }


def _massive_galaxy(rng: np.random.Generator, x: float, y: float) -> dict[str, Any]:
    e1, e2 = _ellipticity(rng.uniform(0.55, 1.0), rng.uniform(0, math.pi))
    return {"magnitude": rng.uniform(18.5, 21.5), "R_sersic": rng.uniform(0.5, 2.0), "n_sersic": rng.uniform(3.0, 5.5),
            "e1": e1, "e2": e2, "center_x": x, "center_y": y}


def _draw_source(rng: np.random.Generator) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, float]]:
    """Source light relative to its centre (0, 0): a Sersic disc and 0-3 knots."""
    e1, e2 = _ellipticity(rng.uniform(0.4, 1.0), rng.uniform(0, math.pi))
    r_eff = rng.uniform(0.08, 0.45)
    magnitude = rng.uniform(22.5, 27.0)
    n_knots = int(rng.integers(1, 4)) if rng.uniform() < 0.5 else 0
    fractions = rng.uniform(0.05, 0.2, n_knots)
    disc_magnitude = magnitude + 2.5 * math.log10(1.0 + fractions.sum())  # the total stays ``magnitude``
    profiles = [("SERSIC_ELLIPSE", {"magnitude": disc_magnitude, "R_sersic": r_eff,
                                    "n_sersic": rng.uniform(0.5, 2.0), "e1": e1, "e2": e2,
                                    "center_x": 0.0, "center_y": 0.0})]
    for fraction in fractions:
        radius, angle = 1.5 * r_eff * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        profiles.append(("GAUSSIAN", {"magnitude": disc_magnitude - 2.5 * math.log10(fraction),
                                      "sigma": rng.uniform(0.03, 0.08),
                                      "center_x": radius * math.cos(angle), "center_y": radius * math.sin(angle)}))
    return profiles, {"source_r_eff": r_eff, "source_mag": magnitude, "source_knots": n_knots}


def _fine_grid(half_width: float) -> tuple[np.ndarray, np.ndarray]:
    n = int(round(2 * half_width / _FINE_SCALE))
    axis = (np.arange(n) - (n - 1) / 2.0) * _FINE_SCALE
    return np.meshgrid(axis, axis)


def _interpol(image: np.ndarray, magnitude: float, x: float, y: float) -> dict[str, Any]:
    return {"image": image / image.sum(), "magnitude": magnitude, "center_x": x, "center_y": y, "phi_G": 0.0,
            "scale": _FINE_SCALE}


def _inclined(xx: np.ndarray, yy: np.ndarray, q: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in the frame of a disc of axis ratio ``q`` whose major axis points at ``angle``."""
    cos, sin = math.cos(angle), math.sin(angle)
    return xx * cos + yy * sin, (-xx * sin + yy * cos) / q


# --- families ---------------------------------------------------------------------------------------------------


def _lensed_scene(deflector: dict[str, float], source: list[tuple[str, dict[str, Any]]], source_xy: tuple[float, float],
                  host: dict[str, Any]) -> Scene:
    scene = Scene(lens_models=["SIE", "SHEAR"])
    scene.lens = [
        {key: deflector[key] for key in ("theta_E", "e1", "e2", "center_x", "center_y")},
        {"gamma1": deflector["gamma1"], "gamma2": deflector["gamma2"], "ra_0": 0.0, "dec_0": 0.0},
    ]
    scene.add_light("SERSIC_ELLIPSE", host)
    for model, kwargs in source:
        shifted = dict(kwargs)
        shifted["center_x"] = kwargs["center_x"] + deflector["center_x"] + source_xy[0]
        shifted["center_y"] = kwargs["center_y"] + deflector["center_y"] + source_xy[1]
        scene.add_source(model, shifted)
    return scene


def _draw_lensed(rng: np.random.Generator, seeing: float, image_size: int, supersampling: int, *,
                 inside: bool, min_snr: float) -> tuple[np.ndarray, dict[str, float]]:
    """A lens (source centre inside the caustic) or an arclet (singly imaged source just outside it)."""
    for _ in range(MAX_ATTEMPTS):
        deflector = draw_deflector(rng)
        theta_e = deflector["theta_E"]
        source, source_columns = _draw_source(rng)
        r_eff = source_columns["source_r_eff"]
        if inside and theta_e**2 <= r_eff**2 + (seeing / 2.0) ** 2:  # Collett (2015): resolved
            continue
        # Lenses and arclets share one deflector population: systems whose arclet region
        # (1.8 theta_E from the lens, plus the arc's own extent) leaves the stamp are redrawn for both.
        if 2 * (theta_e + 1.8 * theta_e) > image_size * PIXEL_SCALE:
            continue
        radius = theta_e * (math.sqrt(rng.uniform()) if inside else rng.uniform(1.05, 1.8))
        angle = rng.uniform(0, 2 * math.pi)
        x, y = radius * math.cos(angle), radius * math.sin(angle)
        scene = _lensed_scene(deflector, source, (x, y), _massive_galaxy(rng, deflector["center_x"], deflector["center_y"]))
        n_images = image_multiplicity(scene.lens, x + deflector["center_x"], y + deflector["center_y"], theta_e=theta_e)
        if inside and n_images < 2:
            continue
        if not inside and (n_images != 1 or not _singly_imaged_extent(scene.lens, deflector, (x, y), r_eff)):
            continue
        model, arc, noise_free_sigma = render_scene(scene, seeing, image_size, supersampling)
        snr = arc_signal_to_noise(arc, noise_free_sigma)
        if snr < min_snr:
            continue
        unlensed_flux = 10 ** (-0.4 * (source_columns["source_mag"] - observation(seeing)["magnitude_zero_point"]))
        magnification = float(arc.sum() / unlensed_flux)
        if inside and magnification * r_eff <= seeing / 2.0:  # Collett (2015): arcs stretched beyond the seeing
            continue
        columns = {key: deflector[key] for key in ("theta_E", "sigma_v", "z_lens", "z_source", "lens_q", "shear")}
        columns.update(lens_x=deflector["center_x"], lens_y=deflector["center_y"], lens_e1=deflector["e1"],
                       lens_e2=deflector["e2"], shear_gamma1=deflector["gamma1"], shear_gamma2=deflector["gamma2"])
        columns.update(source_columns, arc_snr=snr, n_images=n_images, source_x=x, source_y=y, magnification=magnification,
                       host_mag=scene.lens_light[0]["magnitude"], host_r_eff=scene.lens_light[0]["R_sersic"])
        return _add_noise(model, noise_free_sigma, rng), columns
    raise RuntimeError(f"no {'lens' if inside else 'arclet'} passed the cuts in {MAX_ATTEMPTS} draws")


def _singly_imaged_extent(lens: list[dict[str, float]], deflector: dict[str, float], source_xy: tuple[float, float],
                          r_eff: float) -> bool:
    """Four points 1.5 R_eff from the source centre (towards, away from and across the lens) are singly imaged."""
    x, y = source_xy
    distance = math.hypot(x, y)
    ux, uy = x / distance, y / distance
    for dx, dy in ((-ux, -uy), (ux, uy), (-uy, ux), (uy, -ux)):
        px = deflector["center_x"] + x + 1.5 * r_eff * dx
        py = deflector["center_y"] + y + 1.5 * r_eff * dy
        if image_multiplicity(lens, px, py, theta_e=deflector["theta_E"]) != 1:
            return False
    return True


def _ring_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, float]]:
    host = _massive_galaxy(rng, rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2))
    radius, width = rng.uniform(0.5, 2.5), rng.uniform(0.08, 0.3)
    xx, yy = _fine_grid(radius + 4 * width + 0.2)
    u, v = _inclined(xx, yy, rng.uniform(0.5, 1.0), rng.uniform(0, math.pi))
    r, phi = np.hypot(u, v), np.arctan2(v, u)
    ring = np.exp(-0.5 * ((r - radius) / width) ** 2)
    n_knots = 0
    if rng.uniform() < 0.5:  # clumpy: azimuthal modulation by a few knots
        n_knots = int(rng.integers(2, 7))
        centres = rng.uniform(-math.pi, math.pi, n_knots)
        knots = sum(np.exp(-0.5 * (np.angle(np.exp(1j * (phi - c))) * radius / 0.2) ** 2) for c in centres)
        ring = ring * (0.3 + knots)
    magnitude = rng.uniform(21.5, 24.5)
    scene = Scene()
    scene.add_light("SERSIC_ELLIPSE", host)
    scene.add_light("INTERPOL", _interpol(ring, magnitude, host["center_x"], host["center_y"]))
    return scene, {"feature_mag": magnitude, "feature_radius": radius, "feature_count": n_knots}


def _small_galaxy(rng: np.random.Generator, x: float, y: float, magnitude_range: tuple[float, float]) -> dict[str, Any]:
    e1, e2 = _ellipticity(rng.uniform(0.3, 1.0), rng.uniform(0, math.pi))
    return {"magnitude": rng.uniform(*magnitude_range), "R_sersic": rng.uniform(0.1, 0.35),
            "n_sersic": rng.uniform(0.5, 2.5), "e1": e1, "e2": e2, "center_x": x, "center_y": y}


def _companions_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, float]]:
    host = _massive_galaxy(rng, rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2))
    scene = Scene()
    scene.add_light("SERSIC_ELLIPSE", host)
    count = int(rng.integers(1, 4))
    distances, fluxes = [], []
    for _ in range(count):
        distance, angle = rng.uniform(0.8, 3.0), rng.uniform(0, 2 * math.pi)
        companion = _small_galaxy(rng, host["center_x"] + distance * math.cos(angle),
                                  host["center_y"] + distance * math.sin(angle), (22.0, 25.0))
        scene.add_light("SERSIC_ELLIPSE", companion)
        distances.append(distance)
        fluxes.append(10 ** (-0.4 * companion["magnitude"]))
    return scene, {"feature_mag": -2.5 * math.log10(sum(fluxes)), "feature_radius": float(np.mean(distances)),
                   "feature_count": count}


def _spiral_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, float]]:
    scale_length = rng.uniform(0.4, 1.2)
    xx, yy = _fine_grid(5.5 * scale_length + 0.4)
    u, v = _inclined(xx, yy, rng.uniform(0.5, 1.0), rng.uniform(0, math.pi))
    r, phi = np.hypot(u, v), np.arctan2(v, u)
    arms = int(rng.integers(2, 4))
    pitch = math.radians(rng.uniform(10.0, 30.0))
    amplitude = rng.uniform(0.4, 0.9)
    winding = np.log(np.maximum(r, 0.05)) / math.tan(pitch)
    disc = np.exp(-r / scale_length) * (1.0 + amplitude * np.cos(arms * (phi - winding) + rng.uniform(0, 2 * math.pi)))
    magnitude = rng.uniform(19.5, 22.5)
    bulge_fraction = rng.uniform(0.1, 0.4)
    x, y = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
    scene = Scene()
    scene.add_light("INTERPOL", _interpol(disc, magnitude - 2.5 * math.log10(1 - bulge_fraction), x, y))
    e1, e2 = _ellipticity(rng.uniform(0.7, 1.0), rng.uniform(0, math.pi))
    scene.add_light("SERSIC_ELLIPSE", {"magnitude": magnitude - 2.5 * math.log10(bulge_fraction),
                                       "R_sersic": rng.uniform(0.2, 0.5), "n_sersic": 4.0, "e1": e1, "e2": e2,
                                       "center_x": x, "center_y": y})
    return scene, {"host_mag": magnitude, "feature_mag": magnitude, "feature_radius": scale_length,
                   "feature_count": arms}


def _merger_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, float]]:
    first = _massive_galaxy(rng, rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3))
    separation, angle = rng.uniform(0.4, 1.8), rng.uniform(0, 2 * math.pi)
    second = _massive_galaxy(rng, first["center_x"] + separation * math.cos(angle),
                             first["center_y"] + separation * math.sin(angle))
    second["magnitude"] = first["magnitude"] + rng.uniform(0.0, 1.5)
    second["R_sersic"] = rng.uniform(0.3, 1.2)
    # The tidal tail: a curved band along a circle about the first galaxy, fading along its length.
    tail_radius, width = rng.uniform(1.0, 2.5), rng.uniform(0.1, 0.3)
    start, extent = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(60.0, 150.0))
    xx, yy = _fine_grid(tail_radius + 4 * width + 0.2)
    r, phi = np.hypot(xx, yy), np.arctan2(yy, xx)
    along = np.mod(phi - start, 2 * math.pi)
    tail = np.exp(-0.5 * ((r - tail_radius) / width) ** 2) * np.where(along < extent, 1.0 - along / extent, 0.0)
    magnitude = rng.uniform(22.0, 24.5)
    scene = Scene()
    scene.add_light("SERSIC_ELLIPSE", first)
    scene.add_light("SERSIC_ELLIPSE", second)
    scene.add_light("INTERPOL", _interpol(tail, magnitude, first["center_x"], first["center_y"]))
    return scene, {"host_mag": first["magnitude"], "host_r_eff": first["R_sersic"], "feature_mag": magnitude,
                   "feature_radius": separation, "feature_count": 2}


def _edge_on_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, float]]:
    x, y, angle = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0, math.pi)
    e1, e2 = _ellipticity(rng.uniform(0.1, 0.25), angle)
    disc_mag, disc_r = rng.uniform(19.5, 22.0), rng.uniform(0.8, 2.0)
    scene = Scene()
    scene.add_light("SERSIC_ELLIPSE", {"magnitude": disc_mag, "R_sersic": disc_r, "n_sersic": rng.uniform(0.8, 1.5),
                                       "e1": e1, "e2": e2, "center_x": x, "center_y": y})
    b1, b2 = _ellipticity(rng.uniform(0.6, 1.0), angle)
    scene.add_light("SERSIC_ELLIPSE", {"magnitude": disc_mag + rng.uniform(0.5, 2.5), "R_sersic": rng.uniform(0.2, 0.5),
                                       "n_sersic": 4.0, "e1": b1, "e2": b2, "center_x": x, "center_y": y})
    return scene, {"host_mag": disc_mag, "host_r_eff": disc_r, "feature_radius": disc_r}


def _star_blend_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, float]]:
    host = _massive_galaxy(rng, rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2))
    scene = Scene()
    scene.add_light("SERSIC_ELLIPSE", host)
    count = int(rng.integers(1, 3))
    distances, fluxes = [], []
    for _ in range(count):
        distance, angle = rng.uniform(0.6, 2.5), rng.uniform(0, 2 * math.pi)
        magnitude = rng.uniform(20.0, 24.0)
        scene.stars.append((host["center_x"] + distance * math.cos(angle), host["center_y"] + distance * math.sin(angle),
                            magnitude))
        distances.append(distance)
        fluxes.append(10 ** (-0.4 * magnitude))
    return scene, {"feature_mag": -2.5 * math.log10(sum(fluxes)), "feature_radius": float(np.mean(distances)),
                   "feature_count": count}


_UNLENSED_FAMILIES: dict[str, Callable[[np.random.Generator], tuple[Scene, dict[str, float]]]] = {
    "ring": _ring_scene,
    "companions": _companions_scene,
    "spiral": _spiral_scene,
    "merger": _merger_scene,
    "edge_on": _edge_on_scene,
    "star_blend": _star_blend_scene,
}


# --- rendering -------------------------------------------------------------------------------------------------


def render_scene(
    scene: Scene, seeing: float, image_size: int, supersampling: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free image, its lensed-source part and the pixel noise, all ``(image_size, image_size)`` in e-/s.

    lenstronomy's ``SimAPI`` with the LSST r-band 10-year settings and a
    Gaussian PSF of FWHM ``seeing``; the noise (sky, read-out and the Poisson
    noise of every source) is ``SimAPI.estimate_noise`` of the noise-free image.
    """
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    kwargs_model: dict[str, Any] = {"lens_model_list": scene.lens_models, "lens_light_model_list": scene.lens_light_models,
                                    "source_light_model_list": scene.source_models}
    stars = None
    if scene.stars:
        kwargs_model["point_source_model_list"] = ["UNLENSED"]
        xs, ys, magnitudes = (np.array(values) for values in zip(*scene.stars))
        stars = [{"ra_image": xs, "dec_image": ys, "magnitude": magnitudes}]
    simulation = SimAPI(image_size, observation(seeing), kwargs_model)
    image_model = simulation.image_model_class({"supersampling_factor": supersampling})
    lens_light, source, point_sources = simulation.magnitude2amplitude(
        scene.lens_light or None, scene.source or None, stars)
    unlensed = image_model.image(scene.lens, None, lens_light, point_sources, source_add=False,
                                 lens_light_add=bool(scene.lens_light), point_source_add=bool(scene.stars))
    if scene.source:
        arc = image_model.image(scene.lens, source, None, None, lens_light_add=False, point_source_add=False)
    else:
        arc = np.zeros_like(unlensed)
    model = unlensed + arc
    return model, arc, simulation.estimate_noise(np.clip(model, 0.0, None))


def _add_noise(model: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of the given per-pixel sigma (the Poisson noise of these counts is Gaussian)."""
    return (model + rng.normal(size=model.shape) * sigma).astype(np.float32)


def draw_sample(family: str, seed: int, *, image_size: int = 64, supersampling: int = 2,
                min_arc_snr: float = 10.0) -> tuple[np.ndarray, dict[str, float]]:
    """One image of a family, a pure function of ``(family, seed)`` and the settings.

    Returns
    -------
    image : numpy.ndarray
        ``(image_size, image_size)`` float32, sky-subtracted e-/s per pixel, with noise.
    columns : dict
        The sample's parameters (keys of :data:`COLUMNS`; missing ones are NaN).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    rng = np.random.default_rng(seed)
    seeing = rng.uniform(*SEEING_RANGE)
    if family in ("lens", "arclet"):
        image, columns = _draw_lensed(rng, seeing, image_size, supersampling, inside=family == "lens",
                                      min_snr=min_arc_snr)
    else:
        scene, columns = _UNLENSED_FAMILIES[family](rng)
        if "host_mag" not in columns:
            columns["host_mag"] = scene.lens_light[0]["magnitude"]
            columns["host_r_eff"] = scene.lens_light[0]["R_sersic"]
        model, _, sigma = render_scene(scene, seeing, image_size, supersampling)
        image = _add_noise(model, sigma, rng)
    row = {name: math.nan for name in COLUMNS}
    row.update({key: float(value) for key, value in columns.items()})
    row["seeing"] = seeing
    return image, row


def family_counts(n_lenses: int, n_lookalikes: int) -> dict[str, int]:
    """Lenses, then the look-alikes shared as equally as possible among :data:`LOOKALIKE_FAMILIES`."""
    share, extra = divmod(n_lookalikes, len(LOOKALIKE_FAMILIES))
    counts = {"lens": n_lenses}
    counts.update({family: share + (index < extra) for index, family in enumerate(LOOKALIKE_FAMILIES)})
    return counts


def _draw_rows(tasks: list[tuple[str, int]], image_size: int, supersampling: int, min_arc_snr: float) -> list[Any]:
    return [draw_sample(family, seed, image_size=image_size, supersampling=supersampling, min_arc_snr=min_arc_snr)
            for family, seed in tasks]


def make_validation_set(
    out_path: str | os.PathLike[str],
    *,
    n_lenses: int = 300,
    n_lookalikes: int = 300,
    seed: int = 0,
    image_size: int = 64,
    supersampling: int = 2,
    min_arc_snr: float = 10.0,
    workers: int = 1,
    context: Any = None,
) -> Path:
    """Draw the validation set and write it as a lens product the lens finder scores unchanged.

    The product has the layout of :mod:`skysift.lens.dataset` that
    ``skysift score`` reads (``/data/image`` ``(N, 1, H, W)`` float32 in
    e-/s, ``/samples/label``), with ``product_type = "lens-validation-set"``
    and the columns ``family``, ``sample_seed`` and :data:`COLUMNS`. Sample
    ``i`` is ``draw_sample(family[i], sample_seed[i])``: any one can be redrawn
    alone. The order of families is shuffled.

    Parameters
    ----------
    out_path : str or path-like
        Output ``.h5`` (written atomically).
    n_lenses, n_lookalikes : int
        Samples of each class; look-alikes shared equally among the families.
    seed : int
        Seed of the order and of every sample's seed.
    image_size, supersampling : int
        Stamp side (pixels of 0.2") and sub-pixels per pixel side.
    min_arc_snr : float
        Lenses and arclets are redrawn until their integrated S/N reaches this.
    workers : int
        Processes drawing samples (the result does not depend on it).
    context : RunContext, optional
        Provenance of the run.
    """
    from skysift.context import resolve_context
    from skysift.io import ProductWriter

    if n_lenses < 1 or n_lookalikes < len(LOOKALIKE_FAMILIES):
        raise ValueError(f"need >= 1 lens and >= {len(LOOKALIKE_FAMILIES)} look-alikes, got {n_lenses} and {n_lookalikes}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
    rng = np.random.default_rng(seed)
    families = np.array([family for family, count in family_counts(n_lenses, n_lookalikes).items()
                         for _ in range(count)], dtype=object)
    families = families[rng.permutation(len(families))]
    sample_seeds = rng.integers(0, 2**62, len(families))
    tasks = [(str(family), int(sample_seed)) for family, sample_seed in zip(families, sample_seeds)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        chunks = [tasks[start::workers] for start in range(workers)]  # interleaved: lenses cost most
        draw = functools.partial(_draw_rows, image_size=image_size, supersampling=supersampling, min_arc_snr=min_arc_snr)
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(draw, chunks))
        rows: list[Any] = [None] * len(tasks)
        for start, part in enumerate(parts):
            rows[start::workers] = part
    else:
        rows = _draw_rows(tasks, image_size, supersampling, min_arc_snr)
    provenance = resolve_context(context, "lens_validation_set").provenance(seed=seed)
    attrs = {"survey": "lsst-r-10yr (lenstronomy ObservationConfig)", "pixel_scale": PIXEL_SCALE,
             "image_size": image_size, "supersampling": supersampling, "min_arc_snr": float(min_arc_snr),
             "seeing_min": SEEING_RANGE[0], "seeing_max": SEEING_RANGE[1],
             "point_source_depth_5sigma": point_source_depth(float(np.mean(SEEING_RANGE))),
             "simulator": "lenstronomy (skysift.lens.independent)"}
    with ProductWriter(out_path, "lens-validation-set", provenance, attrs=attrs, compression_level=0) as writer:
        writer.add_array("image", (1, image_size, image_size), "float32", unit="electron / s",
                         description="sky-subtracted LSST-like r-band image with noise (lenstronomy)")
        writer.add_column("label", "int8", description="1 = lens, 0 = look-alike")
        writer.add_column("family", str, description=", ".join(FAMILIES))
        writer.add_column("sample_seed", "int64", description="seed of draw_sample(family, sample_seed)")
        for name, (unit, description) in COLUMNS.items():
            writer.add_column(name, "float64", unit=unit, description=description)
        images = np.stack([image for image, _ in rows])[:, None]
        columns: dict[str, Any] = {"label": (families == "lens").astype(np.int8), "family": families,
                                   "sample_seed": sample_seeds.astype(np.int64)}
        columns.update({name: np.array([row[name] for _, row in rows]) for name in COLUMNS})
        writer.append({"image": images}, columns)
    return Path(out_path)
