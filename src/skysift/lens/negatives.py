"""Hard negatives for lens finding: galaxies with ring-like, arc-like or blended structure.

Each kind is a declared prior (the skysift injector contract) plus a pure
function rendering a batch on a :class:`~skysift.lens.simulator.LensSimulator`
grid (supersampled, binned, PSF-convolved, noise-free, e-/s), to be added to a
lens-galaxy image. Every kind is something real lens searches confuse with
lenses but that is physically *not* a lensed image (Petrillo et al. 2019,
MNRAS 484, 3879; Jacobs et al. 2019, ApJS 243, 17; Metcalf et al. 2019, A&A
625, A119):

* ``"ring"``: a collisional ring galaxy (Appleton & Struck-Marcell 1996,
  Fund. Cosmic Phys. 16, 111): a ring of star-forming knots on a fainter
  smooth ring, its centre offset from the nucleus (the lens galaxy), brighter
  on the side nearest the nucleus, with no tangential stretching and no
  counter-image;
* ``"spiral"``: an exponential disc with a two-armed logarithmic spiral;
  (radii 0.4-4 arcsec, from small smooth resonance rings centred on the
  nucleus to large knotty collisional rings); the ring is an inclined circle,
  so its axis ratio and position angle are those of the host disc;
* ``"spiral"``: an exponential disc with a two-armed logarithmic spiral;
* ``"companion"``: one to three small Sersic galaxies at independent random
  positions within a few arcsec (no lensing symmetry);
* ``"blend"``: a second galaxy of similar brightness overlapping the first;
* ``"merger"``: a disc companion with two curved tidal tails, one from each
  galaxy, winding in opposite senses (Toomre & Toomre 1972, ApJ 178, 623);
* ``"edge_on"``: a thin edge-on exponential disc with a dust lane;
* ``"star"``: one to three foreground stars (point sources) near the galaxy.

A ring centred on the galaxy that is *tangentially stretched* (elongated
perpendicular to the lens light, with the surface brightness of a lensed
source) is what an Einstein ring looks like; the rings here are inclined
circles sharing the host disc's ellipticity, which is what separates a ring
galaxy from an Einstein ring in one band. The singly imaged arclets outside
the caustic, the remaining look-alike family, are lensed images and are
drawn by :mod:`skysift.lens.dataset` with the lens simulator.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from skysift.lens.simulator import LensSimulator, magnitude_to_flux
from skysift.simulate.priors import Choice, LogUniform, Prior, SeedPrior, Uniform

__all__ = ["EXTRA_LIGHT_KINDS", "EXTRA_LIGHT_MAG", "FEATURE_NAMES", "HARD_NEGATIVE_KINDS", "HARD_NEGATIVE_PRIORS", "render_hard_negative"]

HARD_NEGATIVE_KINDS = ("ring", "spiral", "companion", "blend", "merger", "edge_on", "star")

#: Total magnitude (r band) of the light a lens search looks at beside the galaxy: the lensed
#: arcs of lenses and arclets (their observed, magnified flux) and the rings, arms, companions,
#: tidal features and stars of the look-alikes all draw it from this one prior (and pass the same
#: S/N cut), so the amount of extra light round a galaxy says nothing of the label. Lensed arcs
#: of LSST-depth lenses are r ~ 20-26 (Collett 2015: sources of r ~ 23-27 magnified 2-20 times).
EXTRA_LIGHT_MAG = Uniform(20.0, 26.0, unit="mag")
#: Kinds whose ``feature_mag`` is drawn from :data:`EXTRA_LIGHT_MAG` (blends and edge-on discs are
#: whole galaxies, as bright as the lens galaxy, and keep their own priors).
EXTRA_LIGHT_KINDS = ("ring", "spiral", "companion", "merger", "star")


#: Gaussian sigma (arcsec) of a star-forming knot of a ring galaxy: giant HII
#: complexes of ~1 kpc (Cartwheel: Higdon 1995) at the lens redshifts z ~ 0.2-0.7.
RING_KNOT_SIGMA = 0.1
#: Log-normal scatter (dex) of the knot fluxes.
RING_KNOT_SCATTER_DEX = 0.3
#: Projected distances (arcsec) of companions and stars from the galaxy.
COMPANION_DISTANCE = (0.5, 3.5)
#: Gaussian sigma (arcsec) of the knots that trace a tidal tail (its thickness).
TAIL_SIGMA = 0.2
#: Knots per tidal tail.
TAIL_KNOTS = 24
#: Gaussian sigma (arcsec) standing for a point source on the supersampled grid
#: (well below the pixel and the PSF: the binned, convolved star is the PSF).
POINT_SIGMA = 0.03

#: Declared priors per hard-negative kind; positions relative to the galaxy centre.
HARD_NEGATIVE_PRIORS: dict[str, dict[str, Prior]] = {
    # Ring galaxies of every size: collisional rings with ring diameters 10-50 kpc
    # and narrow rings, width ~0.1-0.3 of the radius (Romano, Mayya & Vorobyov
    # 2008, AJ 136, 1259; Madore, Nelson & Petrillo 2009, ApJS 181, 572), i.e.
    # radii ~1-4 arcsec at z ~ 0.3-0.6, and the smaller, smooth resonance rings
    # of S0/Sa galaxies centred on the nucleus (Buta & Combes 1996, Fund. Cosmic
    # Phys. 17, 95; inner rings of a few kpc: 0.4-1 arcsec), overlapping the
    # Einstein radii of the lenses on purpose. The nucleus sits 0-0.5 ring radii
    # from the ring centre (0 for resonance rings, off-centre collisions for the
    # rest; Appleton & Struck-Marcell 1996), and 3-16 knots carry 0-90 % of the
    # ring light (0: a smooth ring; the Cartwheel and Arp 147 rings are chains
    # of HII complexes).
    "ring": {
        "feature_mag": EXTRA_LIGHT_MAG,
        # The Einstein-radius prior of the lenses (LENS_PRIORS["theta_E"]): rings sit where arcs do.
        "feature_radius": LogUniform(0.5, 3.0, unit="arcsec"),
        "feature_width": Uniform(0.08, 0.35),
        "feature_q": Uniform(0.4, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(0.0, 0.9),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
        "feature_offset": Uniform(0.0, 0.5),
        "feature_knots": Choice(tuple(float(k) for k in range(3, 17))),
        "feature_seed": SeedPrior(),
    },
    # Sa-Sc discs: scale lengths 2-8 kpc, arm pitch angles 10-30 deg (Kennicutt
    # 1981, AJ 86, 1847), arm-interarm contrast 0.4-0.9.
    "spiral": {
        "feature_mag": EXTRA_LIGHT_MAG,
        "feature_radius": Uniform(0.5, 1.5, unit="arcsec"),
        "feature_width": Uniform(10.0, 30.0, unit="deg"),
        "feature_q": Uniform(0.5, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(0.4, 0.9),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
    },
    # Satellites and line-of-sight galaxies at any projected distance that fits
    # the stamp, down to the faint, compact ones that mimic lensed images.
    "companion": {
        "feature_mag": EXTRA_LIGHT_MAG,
        "feature_radius": LogUniform(COMPANION_DISTANCE[0], COMPANION_DISTANCE[1], unit="arcsec"),
        "feature_width": Uniform(0.05, 0.4, unit="arcsec"),
        "feature_q": Uniform(0.4, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Choice((1.0, 2.0, 3.0)),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
        "feature_seed": SeedPrior(),
    },
    "blend": {
        "feature_mag": Uniform(18.5, 21.5, unit="mag"),
        "feature_radius": Uniform(0.5, 1.5, unit="arcsec"),
        "feature_width": Uniform(0.4, 1.5, unit="arcsec"),
        "feature_q": Uniform(0.4, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(1.0, 4.0),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
    },
    # Interacting pairs: a disc companion 0.6-2.5 arcsec away (5-15 kpc) with
    # tidal tails 1.5-4 arcsec long carrying 20-60 % of the merger light,
    # curvature radii 1-3 arcsec (the Antennae and the Mice: Toomre & Toomre 1972).
    "merger": {
        "feature_mag": EXTRA_LIGHT_MAG,
        "feature_radius": Uniform(0.6, 2.5, unit="arcsec"),
        "feature_width": Uniform(1.5, 4.0, unit="arcsec"),
        "feature_q": Uniform(0.4, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(0.2, 0.6),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
        "feature_curvature": Uniform(0.33, 1.0, unit="1 / arcsec"),
        "feature_seed": SeedPrior(),
    },
    # Edge-on discs: exponential discs of intrinsic thickness 0.1-0.25 seen
    # edge-on, r_eff 0.5-2 arcsec, with a dust lane of depth 0-70 % and FWHM
    # ~0.1-0.5 arcsec along the major axis.
    "edge_on": {
        "feature_mag": Uniform(19.5, 22.5, unit="mag"),
        "feature_radius": Uniform(0.5, 2.0, unit="arcsec"),
        "feature_width": Uniform(0.05, 0.2, unit="arcsec"),
        "feature_q": Uniform(0.1, 0.25),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(0.0, 0.7),
    },
    # Foreground stars blended with the galaxy: 1-3 point sources of r = 19-24.
    "star": {
        "feature_mag": EXTRA_LIGHT_MAG,
        "feature_radius": LogUniform(COMPANION_DISTANCE[0], COMPANION_DISTANCE[1], unit="arcsec"),
        "feature_contrast": Choice((1.0, 2.0, 3.0)),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
        "feature_seed": SeedPrior(),
    },
}

#: Every hard-negative parameter name (the union over kinds, first-seen order):
#: the ``feature_*`` columns of the training set (NaN where a kind lacks one).
FEATURE_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(name for priors in HARD_NEGATIVE_PRIORS.values() for name in priors)
)


#: Smallest exponent whose exp is a normal float32 (exp(-87) = 1.6e-38).
_EXP_FLOOR = -87.0


def _exp(exponent: torch.Tensor) -> torch.Tensor:
    """``exp`` of an exponent floored at :data:`_EXP_FLOOR`, in place.

    Vectorised ``exp`` on CPUs takes a slow path wherever the result
    underflows (10-40x slower per element), and the profiles here underflow on
    most sub-pixels (a narrow ring, a knot, a dust lane far from the pixel):
    flooring changes those results from 0 or a denormal to ~1e-38 of the
    profile's peak, nothing at float32 precision of the images.
    """
    return torch.exp_(exponent.clamp_(min=_EXP_FLOOR))


def _column(simulator: LensSimulator, values: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=simulator.dtype, device=simulator.device).reshape(-1, 1, 1)


def _normalised(simulator: LensSimulator, fine: torch.Tensor, flux: np.ndarray, *, binned: bool = False) -> torch.Tensor:
    """Bin a supersampled shape (unless already ``binned``) and scale each image to ``flux`` inside the stamp."""
    binned = fine if binned else simulator.bin(fine)
    total = binned.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-30)
    return binned / total * _column(simulator, flux)


def _ring_knots(params: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knot azimuths (rad, ring frame), radial offsets (ring widths) and relative fluxes, ``(N, max knots)``.

    Knots are spread evenly round the ring with a random jitter of up to half
    the spacing, scattered radially by half the ring width (rms), with log-normal
    fluxes; unused slots (beyond ``feature_knots``) have zero flux.
    """
    n_knots = np.asarray(params["feature_knots"]).astype(int)
    slots = int(n_knots.max())
    azimuth, radial, weight = (np.zeros((len(n_knots), slots)) for _ in range(3))
    for i, (count, seed) in enumerate(zip(n_knots, np.asarray(params["feature_seed"]).astype(np.int64))):
        rng = np.random.default_rng(int(seed))
        spacing = 2.0 * np.pi / count
        phase, jitter = rng.uniform(0.0, 2.0 * np.pi), rng.uniform(-0.5, 0.5, count)
        azimuth[i, :count] = phase + spacing * (np.arange(count) + jitter)
        radial[i, :count] = rng.normal(0.0, 0.5, count)
        weight[i, :count] = 10.0 ** (RING_KNOT_SCATTER_DEX * rng.normal(size=count))
    return azimuth, radial, weight


def render_hard_negative(
    simulator: LensSimulator,
    kind: str,
    params: Mapping[str, np.ndarray],
    centre: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    convolve: bool = True,
) -> torch.Tensor:
    """Render the extra structure of a hard negative, ``(N, H, W)`` in e-/s.

    Parameters
    ----------
    simulator : LensSimulator
        Grid, PSF and survey.
    kind : str
        One of :data:`HARD_NEGATIVE_KINDS`.
    params : mapping
        Values drawn from ``HARD_NEGATIVE_PRIORS[kind]``.
    centre : (array, array), optional
        Host galaxy (nucleus) centres (arcsec); default the stamp centre.
    convolve : bool
        Apply the simulator's PSF (default), or return the binned structure
        before it (to be convolved together with the host galaxy's light).

    Returns
    -------
    torch.Tensor
        ``(N, H, W)``; the flux inside the stamp before PSF convolution is
        ``10**(-0.4 (feature_mag - zero_point))`` for rings and spirals (the
        PSF spreads a little beyond the edges), at most that for companions and
        blends (Sersic wings beyond the stamp).

    Raises
    ------
    ValueError
        Unknown ``kind``.

    Notes
    -----
    Rings: a circular ring of radius ``R = feature_radius`` inclined to axis
    ratio ``feature_q`` at position angle ``feature_phi``, centred
    ``feature_offset * R`` from the nucleus towards ``feature_angle``. A
    Gaussian annulus of sigma ``w = feature_width * R`` carries ``1 - c`` of the
    flux (``c = feature_contrast``), ``feature_knots`` Gaussian knots of sigma
    :data:`RING_KNOT_SIGMA` on it (positions and fluxes from ``feature_seed``,
    see :func:`_ring_knots`) carry ``c``; both are brightened by
    ``1 + d cos(theta - theta_n)`` towards the nucleus (azimuth ``theta_n``,
    ``d = feature_offset``), where an off-centre collision compresses the ring
    (Appleton & Struck-Marcell 1996).
    Spirals: ``I = I0 exp(-R / h) (1 + c cos(2 (theta - theta0) - 2 ln(R / h) / tan(pitch)))``
    with pitch angle ``feature_width``. Companions and blends are Sersic (n = 1
    and 4) galaxies; ``feature_contrast`` is the number of companions or the
    blend's size ratio. The first companion (and the blend) sits at distance
    ``feature_radius`` and angle ``feature_angle``; further companions take
    independent uniform angles, distances in :data:`COMPANION_DISTANCE`, axis
    ratios and position angles from ``feature_seed``, and the flux is shared
    equally. Stars are placed likewise (``feature_contrast`` of them, equal
    fluxes) as point sources. Mergers: an exponential disc (``r_eff = 0.3
    feature_radius``) at distance ``feature_radius`` towards ``feature_angle``
    carries half of ``1 - c`` of the flux (the host's own light is the lens
    galaxy), and two tidal tails carry ``c = feature_contrast``: each leaves one
    galaxy away from the other and bends with curvature ``feature_curvature``
    (opposite senses, sign from ``feature_seed``) over a length
    ``feature_width``, fading exponentially, drawn as :data:`TAIL_KNOTS` Gaussian
    knots of sigma :data:`TAIL_SIGMA`. Edge-on discs: an exponential (n = 1)
    disc of axis ratio ``feature_q`` and ``r_eff = feature_radius`` whose light
    is dimmed by ``1 - c exp(-y'^2 / 2 s^2)`` along its major axis
    (``c = feature_contrast``, ``s = feature_width``).
    """
    if kind not in HARD_NEGATIVE_KINDS:
        raise ValueError(f"unknown hard-negative kind {kind!r}; known: {HARD_NEGATIVE_KINDS}")
    n = len(params["feature_mag"])
    zp = simulator.survey.zero_point
    cx = np.zeros(n) if centre is None else np.asarray(centre[0], dtype=np.float64)
    cy = np.zeros(n) if centre is None else np.asarray(centre[1], dtype=np.float64)
    flux = magnitude_to_flux(params["feature_mag"], zp)

    def value(name: str, default: float) -> np.ndarray:
        # Stars have no shape: their priors lack q, phi and width.
        return np.asarray(params[name], dtype=np.float64) if name in params else np.full(n, default)

    q = value("feature_q", 1.0)
    phi = np.deg2rad(value("feature_phi", 0.0))
    angle = np.deg2rad(value("feature_angle", 0.0))
    radius = value("feature_radius", 0.0)
    width = value("feature_width", 0.0)
    contrast = value("feature_contrast", 0.0)
    c = lambda values: _column(simulator, values)  # noqa: E731
    finish = simulator.convolve if convolve else (lambda images: images)
    x, y = simulator.grid

    def elliptical(xc: np.ndarray, yc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        dx, dy = x - c(xc), y - c(yc)
        cos, sin = c(np.cos(phi)), c(np.sin(phi))
        xt, yt = cos * dx + sin * dy, cos * dy - sin * dx
        # In place on the full-grid temporaries (here and below: the same operations in the same order).
        return xt.mul_(torch.sqrt(c(q))), yt.div_(torch.sqrt(c(q)))

    if kind == "ring":
        return finish(_render_ring(simulator, params, cx, cy, flux))
    if kind == "spiral":
        xt, yt = elliptical(cx, cy)
        r = (xt * xt).add_(yt * yt).sqrt_().add_(1e-6)
        theta = torch.atan2(yt, xt)
        pitch = np.deg2rad(width)
        winding = (r / c(radius)).log_().mul_(2.0).div_(c(np.tan(pitch)))
        arms = theta.sub_(c(angle)).mul_(2.0).sub_(winding).cos_()
        shape = r.neg_().div_(c(radius)).exp_().mul_(arms.mul_(c(contrast)).add_(1.0))
        return finish(_normalised(simulator, shape, flux))
    if kind == "merger":
        return finish(_render_merger(simulator, params, cx, cy, flux))
    if kind == "edge_on":
        xt, yt = elliptical(cx, cy)
        # Exponential disc (Sersic n = 1, b_1 = 1.678) with a dust lane along the major axis.
        r = (xt * xt).add_(yt * yt).sqrt_()
        lane_distance = yt.mul_(torch.sqrt(c(q)))
        lane = _exp(lane_distance.div_(c(np.maximum(width, 1e-3))).pow_(2).mul_(-0.5))
        shape = r.mul_(-1.678).div_(c(radius)).exp_().mul_(lane.mul_(c(contrast)).neg_().add_(1.0))
        return finish(_normalised(simulator, shape, flux))
    if kind in ("companion", "star"):
        copies, r_eff, sersic_n = contrast.astype(int), width, np.ones(n)
        # Companions beyond the first: independent positions and shapes (satellites
        # and line-of-sight galaxies know nothing of the lens symmetry).
        extra = [np.random.default_rng(int(seed)) for seed in np.asarray(params["feature_seed"]).astype(np.int64)]
        draws = np.array([[g.uniform(0.0, 2.0 * np.pi, 2), g.uniform(*COMPANION_DISTANCE, 2), g.uniform(0.4, 1.0, 2),
                           g.uniform(0.0, np.pi, 2)] for g in extra]).reshape(n, 4, 2)
        angles = np.column_stack([angle, draws[:, 0]])
        distances = np.column_stack([radius, draws[:, 1]])
        axis_ratios = np.column_stack([q, draws[:, 2]])
        position_angles = np.column_stack([phi, draws[:, 3]])
        if kind == "star":
            slots = np.arange(3)[None, :]
            weight = (slots < copies[:, None]).astype(np.float64)
            sx = cx[:, None] + distances * np.cos(angles)
            sy = cy[:, None] + distances * np.sin(angles)
            sigma = max(POINT_SIGMA, 0.5 * simulator.survey.pixel_scale / simulator.supersampling)
            return finish(_normalised(simulator, _gaussian_spots(simulator, sx, sy, weight, sigma), flux, binned=True))
    else:
        copies, r_eff, sersic_n = np.ones(n, dtype=int), width * contrast / 2.0, np.full(n, 4.0)
        angles, distances = angle[:, None], radius[:, None]
        axis_ratios, position_angles = q[:, None], phi[:, None]
    image = torch.zeros((n, simulator.image_size, simulator.image_size), dtype=simulator.dtype, device=simulator.device)
    for k in range(int(copies.max())):
        rows = np.flatnonzero(k < copies)
        xc = cx + distances[:, k] * np.cos(angles[:, k])
        yc = cy + distances[:, k] * np.sin(angles[:, k])
        image[rows] += _sersic_galaxies(
            simulator, (flux / np.maximum(copies, 1))[rows], r_eff[rows], sersic_n[rows], axis_ratios[rows, k],
            position_angles[rows, k], xc[rows], yc[rows],
        )
    return finish(image)


def _sersic_galaxies(
    simulator: LensSimulator, flux: np.ndarray, r_eff: np.ndarray, sersic_n: np.ndarray, q: np.ndarray,
    phi: np.ndarray, x_centre: np.ndarray, y_centre: np.ndarray,
) -> torch.Tensor:
    """Binned Sersic galaxies ``(N, H, W)`` (e-/s per pixel, before the PSF) of total ``flux``, ``phi`` in radians.

    Rendered as the simulator renders its lens light
    (:meth:`~skysift.lens.simulator.LensSimulator.render_galaxy`): with adaptive
    supersampling only the pixels near the centre are supersampled, elsewhere
    the profile is smooth on the pixel scale and its pixel-centre value is
    kept; otherwise every pixel is supersampled.
    """
    magnitude = simulator.survey.zero_point - 2.5 * np.log10(np.maximum(flux, 1e-300))
    galaxies = {"sersic_mag": magnitude, "sersic_r_eff": r_eff, "sersic_n": sersic_n, "sersic_q": q,
                "sersic_phi": np.rad2deg(phi), "x_lens": x_centre, "y_lens": y_centre}
    return simulator.render_galaxy(galaxies, "sersic", convolve=False)


def _render_ring(
    simulator: LensSimulator, params: Mapping[str, np.ndarray], cx: np.ndarray, cy: np.ndarray, flux: np.ndarray
) -> torch.Tensor:
    """Binned, unconvolved collisional ring galaxies (see :func:`render_hard_negative`)."""
    c = lambda values: _column(simulator, values)  # noqa: E731
    x, y = simulator.grid
    radius = np.asarray(params["feature_radius"], dtype=np.float64)
    width = np.asarray(params["feature_width"], dtype=np.float64) * radius
    q = np.asarray(params["feature_q"], dtype=np.float64)
    phi = np.deg2rad(np.asarray(params["feature_phi"], dtype=np.float64))
    angle = np.deg2rad(np.asarray(params["feature_angle"], dtype=np.float64))
    offset = np.asarray(params["feature_offset"], dtype=np.float64)
    contrast = np.asarray(params["feature_contrast"], dtype=np.float64)
    # The ring centre, offset from the nucleus in the sky plane.
    rx, ry = cx + offset * radius * np.cos(angle), cy + offset * radius * np.sin(angle)
    # Ring frame: u along the major axis, v along the minor axis (foreshortened by q).
    dx, dy = x - c(rx), y - c(ry)
    cos, sin = c(np.cos(phi)), c(np.sin(phi))
    u, v = cos * dx + sin * dy, (cos * dy - sin * dx).div_(c(q))
    # In place from here on (each full-grid temporary is ~0.6 MB per four images; the same
    # operations in the same order as the out-of-place expressions).
    r = (u * u).add_(v * v).sqrt_()
    # Azimuth of the nucleus as seen from the ring centre, in the ring frame.
    nucleus_sky = angle + np.pi
    theta_n = np.arctan2((np.cos(phi) * np.sin(nucleus_sky) - np.sin(phi) * np.cos(nucleus_sky)) / q,
                         np.cos(phi) * np.cos(nucleus_sky) + np.sin(phi) * np.sin(nucleus_sky))
    # cos(theta - theta_n) with theta = atan2(v, u) is (u cos theta_n + v sin theta_n) / r:
    # no atan2 and cos per sub-pixel (theta = 0 where r = 0, as atan2 gives).
    cos_n, sin_n = c(np.cos(theta_n)), c(np.sin(theta_n))
    cosine = torch.where(r > 0, u.mul_(cos_n).add_(v.mul_(sin_n)).div_(r.clamp(min=1e-30)), cos_n)
    brightening = cosine.mul_(c(offset)).add_(1.0)
    smooth = _exp(r.sub_(c(radius)).div_(c(width)).pow_(2).mul_(-0.5)).mul_(brightening)
    image = _normalised(simulator, smooth, (1.0 - contrast) * flux)
    azimuth, radial, weight = _ring_knots(params)
    weight = weight * (1.0 + offset[:, None] * np.cos(azimuth - theta_n[:, None]))
    weight = weight / weight.sum(axis=1, keepdims=True)
    # Knot centres on the (inclined) ring, back in the sky frame, (N, K).
    kr = radius[:, None] + radial * width[:, None]
    ku, kv = kr * np.cos(azimuth), kr * np.sin(azimuth) * q[:, None]
    kx = rx[:, None] + np.cos(phi)[:, None] * ku - np.sin(phi)[:, None] * kv
    ky = ry[:, None] + np.sin(phi)[:, None] * ku + np.cos(phi)[:, None] * kv
    knots = _gaussian_spots(simulator, kx, ky, weight, RING_KNOT_SIGMA)
    return image + _normalised(simulator, knots, contrast * flux, binned=True)


def _gaussian_spots(
    simulator: LensSimulator, xs: np.ndarray, ys: np.ndarray, weight: np.ndarray, sigma: float
) -> torch.Tensor:
    """Weighted circular Gaussians of one ``sigma`` at ``(xs, ys)``, ``(N, K)`` each, sampled on the
    supersampled grid and averaged over each pixel's sub-pixels: ``(N, H, W)``.

    A circular Gaussian is the product of two 1-D ones: the sum over spots of
    ``w_k g(y - y_k) g(x - x_k)`` is one ``(H, K) x (K, W)`` matrix product per
    image, instead of an exponential per spot and sub-pixel. The mean over a
    pixel's ``ss x ss`` sub-pixels of such a product is the product of the
    1-D means over its ``ss`` sub-rows and ``ss`` sub-columns, so the binning
    is done on the 1-D profiles, before the product (9x fewer products at ss =
    3; equal to binning the supersampled image up to float rounding).
    Unnormalised (peak ``w_k``, before the averaging).
    """
    x, y = simulator.grid
    ss, size = simulator.supersampling, simulator.image_size

    def profile(grid: torch.Tensor, centres: np.ndarray) -> torch.Tensor:
        offsets = grid.reshape(1, -1, 1) - torch.as_tensor(centres[:, None, :], dtype=simulator.dtype, device=simulator.device)
        fine = _exp((-0.5 / sigma**2) * offsets * offsets)
        return fine.reshape(len(centres), size, ss, -1).mean(dim=2)

    weighted_rows = profile(y, ys) * torch.as_tensor(weight[:, None, :], dtype=simulator.dtype, device=simulator.device)
    return torch.bmm(weighted_rows, profile(x, xs).transpose(1, 2))


def _render_merger(
    simulator: LensSimulator, params: Mapping[str, np.ndarray], cx: np.ndarray, cy: np.ndarray, flux: np.ndarray
) -> torch.Tensor:
    """Binned, unconvolved merging companions with tidal tails (see :func:`render_hard_negative`)."""
    x, y = simulator.grid
    n = len(cx)
    separation = np.asarray(params["feature_radius"], dtype=np.float64)
    length = np.asarray(params["feature_width"], dtype=np.float64)
    q = np.asarray(params["feature_q"], dtype=np.float64)
    phi = np.deg2rad(np.asarray(params["feature_phi"], dtype=np.float64))
    angle = np.deg2rad(np.asarray(params["feature_angle"], dtype=np.float64))
    tail_fraction = np.asarray(params["feature_contrast"], dtype=np.float64)
    curvature = np.asarray(params["feature_curvature"], dtype=np.float64)
    sense = np.where(np.asarray(params["feature_seed"]).astype(np.int64) % 2 == 0, 1.0, -1.0)
    # The companion: an exponential disc of half the non-tail light.
    ox, oy = cx + separation * np.cos(angle), cy + separation * np.sin(angle)
    r_eff = 0.3 * separation
    ones = np.ones(n)
    companion = _sersic_galaxies(simulator, ones, r_eff, ones, q, phi, ox, oy)
    image = _normalised(simulator, companion, 0.5 * (1.0 - tail_fraction) * flux, binned=True)
    # Two tails along arcs of constant curvature: one from each galaxy, leaving it
    # away from the other and bending in opposite senses (the two spirals of a
    # prograde encounter), fading exponentially along their length.
    step = np.linspace(0.0, 1.0, TAIL_KNOTS)[None, :] * length[:, None]
    tails = []
    for start_x, start_y, heading, bend in ((cx, cy, angle + np.pi, sense), (ox, oy, angle, -sense)):
        turn = (bend * curvature)[:, None]
        direction = heading[:, None] + turn * step
        # Position along a circular arc: integral of the unit tangent.
        safe = np.where(np.abs(turn) > 1e-6, turn, 1e-6)
        px = start_x[:, None] + (np.sin(direction) - np.sin(heading[:, None])) / safe
        py = start_y[:, None] - (np.cos(direction) - np.cos(heading[:, None])) / safe
        tails.append((px, py))
    tx = np.concatenate([t[0] for t in tails], axis=1)
    ty = np.concatenate([t[1] for t in tails], axis=1)
    fade = np.exp(-2.0 * step / length[:, None])
    weight = np.concatenate([fade, fade], axis=1)
    spots = _gaussian_spots(simulator, tx, ty, weight, TAIL_SIGMA)
    return image + _normalised(simulator, spots, tail_fraction * flux, binned=True)
