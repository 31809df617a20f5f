"""Simulated star fields: reference/science image pairs with known transients.

The embedded demo and the image-differencing tests and benchmark need image
pairs whose truth is known: the same stars seen through two different PSFs,
a sub-pixel shift and a small rotation between the two pointings, different
photometric scales, Poisson and read noise, a few saturated stars, and point
transients present only in the science image at chosen signal-to-noise ratios.

Sources are drawn with a double-Gaussian PSF (a core plus a wider wing) that is
integrated exactly over each pixel (differences of error functions per axis), so
fluxes are conserved to rounding and the PSF is known analytically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.special import erf

from skysift.simulate.spec import FieldSpec

__all__ = [
    "FieldSpec",
    "PairSimulation",
    "double_gaussian_psf",
    "make_wcs",
    "psf_effective_area",
    "render_point_sources",
    "simulate_pair",
]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Fraction of flux in the wing component and its width relative to the core.
WING_FRACTION = 0.1
WING_SCALE = 2.5


@dataclass
class PairSimulation:
    """A simulated pair and its truth (see :func:`simulate_pair`)."""

    reference: np.ndarray
    science: np.ndarray
    reference_wcs: WCS
    science_wcs: WCS
    stars: Table
    transients: Table
    spec: FieldSpec
    shift: tuple[float, float]
    rotation: float


def make_wcs(
    image_size: int,
    pixel_scale: float,
    center_ra: float,
    center_dec: float,
    *,
    rotation: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> WCS:
    """Return a TAN WCS for a square image, optionally rotated and shifted.

    Parameters
    ----------
    image_size : int
        Side of the image (pixels).
    pixel_scale : float
        Arcseconds per pixel.
    center_ra, center_dec : float
        Sky position (degrees) of the reference pixel.
    rotation : float
        Position angle of the pixel grid (degrees, counter-clockwise).
    shift : (float, float)
        Offset (x, y) in pixels of the reference pixel from the image centre,
        which moves the pointing by that many pixels.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [center_ra, center_dec]
    centre = (image_size + 1) / 2.0  # FITS pixels are 1-based
    wcs.wcs.crpix = [centre + shift[0], centre + shift[1]]
    scale = pixel_scale / 3600.0
    angle = np.deg2rad(rotation)
    cos, sin = np.cos(angle), np.sin(angle)
    # East to the left (RA decreases with x), north up, rotated by `rotation`.
    wcs.wcs.cd = scale * np.array([[-cos, sin], [sin, cos]])
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    return wcs


def _pixel_integrated_profile(offsets: np.ndarray, sigma: float) -> np.ndarray:
    """Integral of a unit 1-D Gaussian over pixels centred at ``offsets``."""
    scale = 1.0 / (np.sqrt(2.0) * sigma)
    return 0.5 * (erf((offsets + 0.5) * scale) - erf((offsets - 0.5) * scale))


def double_gaussian_psf(fwhm: float, size: int, center: tuple[float, float] | None = None) -> np.ndarray:
    """Return the pixel-integrated PSF used by the simulator, normalised to 1.

    Parameters
    ----------
    fwhm : float
        FWHM of the core Gaussian (pixels).
    size : int
        Side of the (odd) stamp.
    center : (float, float), optional
        (x, y) of the PSF centre in stamp pixels; the central pixel by default.
    """
    if size % 2 == 0:
        raise ValueError(f"PSF stamp size must be odd, got {size}")
    cx, cy = center if center is not None else ((size - 1) / 2.0, (size - 1) / 2.0)
    grid = np.arange(size, dtype=np.float64)
    sigma = fwhm * _FWHM_TO_SIGMA
    psf = np.zeros((size, size))
    for weight, width in ((1.0 - WING_FRACTION, sigma), (WING_FRACTION, WING_SCALE * sigma)):
        psf += weight * np.outer(_pixel_integrated_profile(grid - cy, width), _pixel_integrated_profile(grid - cx, width))
    return psf / psf.sum()


def psf_effective_area(fwhm: float) -> float:
    """Noise-equivalent area 1 / sum(P^2) of the simulator PSF (pixels)."""
    size = 2 * int(np.ceil(6 * WING_SCALE * fwhm * _FWHM_TO_SIGMA)) + 1
    psf = double_gaussian_psf(fwhm, size)
    return float(1.0 / np.sum(psf**2))


def render_point_sources(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float
) -> np.ndarray:
    """Render point sources with the double-Gaussian PSF, without a Python loop per source.

    Each source's separable profile is integrated exactly over pixels within a
    stamp whose radius grows with brightness (faint stars need no wide wings);
    contributions are summed with one :func:`numpy.bincount` per radius class.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx).
    x, y : numpy.ndarray
        Source positions in 0-based pixel coordinates (x = column).
    flux : numpy.ndarray
        Total flux of each source (electrons).
    fwhm : float
        PSF core FWHM (pixels).

    Returns
    -------
    numpy.ndarray
        Noiseless image (float64).
    """
    x, y, flux = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, y, flux))
    ny, nx = shape
    image = np.zeros(ny * nx)
    sigma = fwhm * _FWHM_TO_SIGMA
    wing = WING_SCALE * sigma
    # Radius classes: 4 wing sigmas for faint sources, 8 for bright ones.
    bright = flux > 3e4
    for selection, n_sigma in ((~bright, 4.0), (bright, 8.0)):
        if not selection.any():
            continue
        radius = int(np.ceil(n_sigma * wing))
        offsets = np.arange(-radius, radius + 1)
        xs, ys, fs = x[selection], y[selection], flux[selection]
        x0, y0 = np.round(xs).astype(int), np.round(ys).astype(int)
        columns = x0[:, None] + offsets[None, :]  # (n, w)
        rows = y0[:, None] + offsets[None, :]
        dx = columns - xs[:, None]
        dy = rows - ys[:, None]
        # Each component is separable: stamp = sum_k w_k * outer(p_k(dy), p_k(dx)).
        stamps = (1 - WING_FRACTION) * (
            _pixel_integrated_profile(dy, sigma)[:, :, None] * _pixel_integrated_profile(dx, sigma)[:, None, :]
        )
        stamps += WING_FRACTION * (
            _pixel_integrated_profile(dy, wing)[:, :, None] * _pixel_integrated_profile(dx, wing)[:, None, :]
        )
        stamps *= fs[:, None, None]
        inside = (rows[:, :, None] >= 0) & (rows[:, :, None] < ny) & (columns[:, None, :] >= 0) & (columns[:, None, :] < nx)
        flat_index = rows[:, :, None] * nx + columns[:, None, :]
        image += np.bincount(flat_index[inside], weights=stamps[inside], minlength=ny * nx)
    return image.reshape(ny, nx)


def _power_law_fluxes(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    # dN/dF ~ F^-2, sampled by inverting the CDF of 1/F.
    u = rng.uniform(size=n)
    return 1.0 / (1.0 / low - u * (1.0 / low - 1.0 / high))


def _observe(
    rng: np.random.Generator, noiseless: np.ndarray, sky: float, read_noise: float, saturation: float
) -> np.ndarray:
    expected = noiseless + sky
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0.0, read_noise, size=expected.shape)
    return np.minimum(counts, saturation).astype(np.float32)


def simulate_pair(spec: FieldSpec, rng: np.random.Generator) -> PairSimulation:
    """Simulate a reference/science pair of the same star field.

    The reference WCS is centred on the field; the science WCS is shifted by a
    random sub-pixel-plus-integer offset (up to ``max_shift``) and rotated by up
    to ``max_rotation``. Stars keep their sky positions; the science image sees
    them with ``science_flux_scale`` times the flux. Transients appear in the
    science image only, with flux set from the requested S/N using the
    background-limited optimal-photometry relation
    ``S/N = F / sqrt(A_eff * (sky + read_noise**2))`` (Poisson noise of the
    transient itself included by solving the quadratic).

    Parameters
    ----------
    spec : FieldSpec
        What to simulate.
    rng : numpy.random.Generator
        Source of randomness (the result is a pure function of spec and rng state).

    Returns
    -------
    PairSimulation
        Images in electrons (float32), both WCSs and truth tables. ``stars``
        has ``ra``, ``dec``, ``flux`` (reference electrons), ``x_ref``, ``y_ref``,
        ``x_sci``, ``y_sci``, ``saturated``; ``transients`` has ``ra``, ``dec``,
        ``x_sci``, ``y_sci``, ``flux`` (science electrons) and ``snr``.
    """
    if spec.image_size < 2 * spec.edge_margin + 8:
        raise ValueError(f"image_size {spec.image_size} too small for edge_margin {spec.edge_margin}")
    size = spec.image_size
    shape = (size, size)
    shift = (float(rng.uniform(-spec.max_shift, spec.max_shift)), float(rng.uniform(-spec.max_shift, spec.max_shift)))
    rotation = float(rng.uniform(-spec.max_rotation, spec.max_rotation))
    reference_wcs = make_wcs(size, spec.pixel_scale, spec.center_ra, spec.center_dec)
    science_wcs = make_wcs(size, spec.pixel_scale, spec.center_ra, spec.center_dec, rotation=rotation, shift=shift)

    # Stars over a slightly larger area so that the edges are filled in both images.
    pad = spec.max_shift + 10
    n_total = spec.n_stars + spec.n_saturated
    x_ref = rng.uniform(-pad, size - 1 + pad, size=n_total)
    y_ref = rng.uniform(-pad, size - 1 + pad, size=n_total)
    flux = _power_law_fluxes(rng, n_total, spec.star_flux_min, spec.star_flux_max)
    saturated = np.zeros(n_total, dtype=bool)
    if spec.n_saturated:
        saturated[spec.n_stars :] = True
        flux[spec.n_stars :] = rng.uniform(50, 200, size=spec.n_saturated) * spec.saturation
        # Keep saturated stars inside both images, where they matter.
        x_ref[spec.n_stars :] = rng.uniform(spec.edge_margin, size - spec.edge_margin, size=spec.n_saturated)
        y_ref[spec.n_stars :] = rng.uniform(spec.edge_margin, size - spec.edge_margin, size=spec.n_saturated)
    ra, dec = reference_wcs.wcs_pix2world(x_ref, y_ref, 0)
    x_sci, y_sci = science_wcs.wcs_world2pix(ra, dec, 0)

    # Transients: science only, away from edges.
    n_tr = spec.n_transients
    tx = rng.uniform(spec.edge_margin, size - 1 - spec.edge_margin, size=n_tr)
    ty = rng.uniform(spec.edge_margin, size - 1 - spec.edge_margin, size=n_tr)
    snr = np.exp(rng.uniform(np.log(spec.transient_snr_min), np.log(spec.transient_snr_max), size=n_tr))
    area = psf_effective_area(spec.science_fwhm)
    background_variance = area * (spec.science_sky + spec.read_noise**2)
    # S/N^2 = F^2 / (F + B): F = (S/N^2 + sqrt(S/N^4 + 4 S/N^2 B)) / 2.
    transient_flux = 0.5 * (snr**2 + np.sqrt(snr**4 + 4 * snr**2 * background_variance))
    t_ra, t_dec = science_wcs.wcs_pix2world(tx, ty, 0)

    reference_truth = render_point_sources(shape, x_ref, y_ref, flux, spec.reference_fwhm)
    science_truth = render_point_sources(
        shape,
        np.concatenate([x_sci, tx]),
        np.concatenate([y_sci, ty]),
        np.concatenate([spec.science_flux_scale * flux, transient_flux]),
        spec.science_fwhm,
    )
    reference = _observe(rng, reference_truth, spec.reference_sky, spec.read_noise, spec.saturation)
    science = _observe(rng, science_truth, spec.science_sky, spec.read_noise, spec.saturation)

    stars = Table(
        {
            "ra": ra,
            "dec": dec,
            "flux": flux,
            "x_ref": x_ref,
            "y_ref": y_ref,
            "x_sci": x_sci,
            "y_sci": y_sci,
            "saturated": saturated,
        },
        units={"ra": "deg", "dec": "deg", "flux": "electron", "x_ref": "pix", "y_ref": "pix", "x_sci": "pix", "y_sci": "pix"},
    )
    transients = Table(
        {"ra": t_ra, "dec": t_dec, "x_sci": tx, "y_sci": ty, "flux": transient_flux, "snr": snr},
        units={"ra": "deg", "dec": "deg", "x_sci": "pix", "y_sci": "pix", "flux": "electron"},
    )
    return PairSimulation(
        reference=reference,
        science=science,
        reference_wcs=reference_wcs,
        science_wcs=science_wcs,
        stars=stars,
        transients=transients,
        spec=spec,
        shift=shift,
        rotation=rotation,
    )
