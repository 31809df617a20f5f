"""Photometric scaling between the science and reference images from matched stars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skysift.diffim.background import clipped_box_statistics
from skysift.errors import InputDataError

__all__ = ["FluxScale", "aperture_fluxes", "flux_scale"]


@dataclass(frozen=True)
class FluxScale:
    """``ratio = F_n / F_r`` with its uncertainty and the number of stars used."""

    ratio: float
    error: float
    n_stars: int


def aperture_fluxes(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    *,
    annulus: tuple[float, float] | None = None,
    subsample: int = 5,
) -> np.ndarray:
    """Sum of ``image`` in discs of ``radius`` around each position.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image.
    x, y : numpy.ndarray
        Positions (0-based pixels).
    radius : float
        Aperture radius (pixels).
    annulus : (float, float), optional
        Inner and outer radii of a sky annulus; its sigma-clipped (3 sigma)
        median per pixel is subtracted (residual sky left by the mesh background).
    subsample : int
        Each pixel's overlap with the disc is measured on a ``subsample`` x
        ``subsample`` grid of points.

    Returns
    -------
    numpy.ndarray
        NaN for an aperture that leaves the image.

    Notes
    -----
    All apertures are evaluated at once on stacked cutouts. Pixels cut by the
    edge of the disc count with the fraction of their sub-pixel points inside
    it; the error this leaves (a few 1e-4 of the flux) is the same in both
    images of a pair and cancels in their ratio.
    """
    image = np.asarray(image)
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    outer = annulus[1] if annulus is not None else radius
    half = int(np.ceil(outer)) + 1
    offsets = np.arange(-half, half + 1)
    x0, y0 = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    ny, nx = image.shape
    inside = (x0 - half >= 0) & (x0 + half < nx) & (y0 - half >= 0) & (y0 + half < ny)
    rows = np.clip(y0[:, None, None] + offsets[None, :, None], 0, ny - 1)
    cols = np.clip(x0[:, None, None] + offsets[None, None, :], 0, nx - 1)
    cutouts = np.asarray(image[rows, cols], dtype=np.float64)
    dy = rows - y[:, None, None]
    dx = cols - x[:, None, None]
    sub = (np.arange(subsample) + 0.5) / subsample - 0.5
    weight = np.zeros(cutouts.shape)
    for sy in sub:
        for sx in sub:
            weight += (dx + sx) ** 2 + (dy + sy) ** 2 <= radius**2
    weight /= subsample**2
    sums = np.sum(weight * cutouts, axis=(1, 2))
    if annulus is not None:
        distance2 = dx**2 + dy**2
        ring = (distance2 >= annulus[0] ** 2) & (distance2 <= annulus[1] ** 2)
        sky, _, _ = clipped_box_statistics(np.where(ring, cutouts, np.nan).reshape(len(x), -1), sigma=3.0, iterations=10)
        sums -= np.nan_to_num(sky) * np.pi * radius**2
    return np.where(inside, sums, np.nan)


def _enclosed_fraction(psf: np.ndarray, radius: float) -> float:
    centre = psf.shape[0] // 2
    return float(aperture_fluxes(psf, np.array([centre]), np.array([centre]), radius)[0])


def flux_scale(
    science: np.ndarray,
    reference: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    psf_science: np.ndarray,
    psf_reference: np.ndarray,
    *,
    radius: float,
    sigma_science: float,
    sigma_reference: float,
    clip_sigma: float = 3.0,
    name: str = "science",
    gain_science: float = 1.0,
    gain_reference: float = 1.0,
) -> FluxScale:
    """Flux ratio ``F_n / F_r`` from aperture photometry of stars in both (aligned) images.

    Parameters
    ----------
    science, reference : numpy.ndarray
        Background-subtracted science image and reference aligned to it.
    x, y : numpy.ndarray
        Positions of bright, unsaturated, isolated stars (science frame).
    psf_science, psf_reference : numpy.ndarray
        Unit-sum PSF stamps, for the aperture corrections.
    radius : float
        Aperture radius (pixels), a few FWHM of the wider PSF; the sky is
        taken from an annulus 2 to 8 pixels beyond it.
    sigma_science, sigma_reference : float
        Background noise per pixel, for the per-star weights.
    clip_sigma : float
        Outlier threshold on the normalised ratio residuals.
    name : str
        Image name for error messages.
    gain_science, gain_reference : float
        Electrons per image unit, for the stars' Poisson variance in the
        weights (1: images in electrons). In calibrated units (MJy/sr) a gain
        of 1 would make the source term dwarf the sky by orders of magnitude.

    Returns
    -------
    FluxScale

    Raises
    ------
    InputDataError
        If fewer than 3 stars have positive fluxes in both images.

    Notes
    -----
    Each image's aperture flux is divided by the fraction of its own PSF
    inside the aperture (the aperture correction), so that different seeing
    does not bias the ratio. The ratio is the inverse-variance weighted mean
    of the per-star ratios after iterative clipping of outliers (variable
    stars, blends): the zero-point ratio ``F_n / F_r`` of Zackay et al.
    (2016), section 3.2.
    """
    annulus = (radius + 2.0, radius + 8.0)
    area = np.pi * radius**2
    flux_science = aperture_fluxes(science, x, y, radius, annulus=annulus) / _enclosed_fraction(psf_science, radius)
    flux_reference = aperture_fluxes(reference, x, y, radius, annulus=annulus) / _enclosed_fraction(psf_reference, radius)
    good = (flux_science > 0) & (flux_reference > 0) & np.isfinite(flux_science) & np.isfinite(flux_reference)
    if good.sum() < 3:
        raise InputDataError(f"{name}: fewer than 3 stars measurable in both images for the flux scale")
    f_s, f_r = flux_science[good], flux_reference[good]
    ratios = f_s / f_r
    # Background plus source noise of each aperture flux, in image units.
    relative_variance = (area * sigma_science**2 + f_s / gain_science) / f_s**2 + (
        area * sigma_reference**2 + f_r / gain_reference
    ) / f_r**2
    variance = ratios**2 * relative_variance
    kept = np.ones(ratios.size, dtype=bool)
    for _ in range(10):
        weights = np.where(kept, 1.0 / variance, 0.0)
        mean = float(np.sum(weights * ratios) / np.sum(weights))
        normalised = (ratios - mean) / np.sqrt(variance)
        scatter = max(float(np.sqrt(np.mean(normalised[kept] ** 2))), 1.0)
        new_kept = np.abs(normalised) <= clip_sigma * scatter
        if new_kept.sum() < 3 or np.array_equal(new_kept, kept):
            break
        kept = new_kept
    error = scatter / np.sqrt(np.sum(1.0 / variance[kept]))
    return FluxScale(ratio=mean, error=float(error), n_stars=int(kept.sum()))
