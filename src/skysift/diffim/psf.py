"""Empirical PSF estimation: bright, isolated, unsaturated stars, centred and stacked.

The PSF is measured from the data because image subtraction is only as good as
the PSFs it is given (Zackay, Ofek & Gal-Yam 2016, section 3.3): each star is
centred to sub-pixel accuracy with a windowed centroid, shifted onto the stamp
centre with a cubic spline, normalised to unit flux, and the stamps are
combined with a sigma-clipped mean. Spatial variation is handled by solving
independently on an N x N grid of cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clip
from astropy.table import Table
from scipy import ndimage

from skysift.diffim.background import clipped_box_statistics
from skysift.diffim.stars import find_stars, windowed_centroids
from skysift.errors import InputDataError
from skysift.log import get_logger

__all__ = ["PsfGrid", "auto_psf_size", "build_psf", "estimate_psf", "estimate_psf_grid", "psf_fwhm", "select_psf_stars"]

_log = get_logger(__name__)


@dataclass
class PsfGrid:
    """PSFs solved on an N x N grid of image cells.

    Attributes
    ----------
    psfs : numpy.ndarray
        Shape ``(n, n, size, size)``: ``psfs[i, j]`` is the unit-sum PSF of the
        cell in row band ``i`` and column band ``j``.
    y_edges, x_edges : numpy.ndarray
        Cell boundaries (``n + 1`` pixel indices each).
    n_stars : numpy.ndarray
        Stars used per cell (0 where the global PSF stood in).
    """

    psfs: np.ndarray
    y_edges: np.ndarray
    x_edges: np.ndarray
    n_stars: np.ndarray

    @property
    def grid(self) -> int:
        """Cells per axis."""
        return self.psfs.shape[0]

    @property
    def mean_psf(self) -> np.ndarray:
        """Average over the cells (unit sum)."""
        mean = self.psfs.mean(axis=(0, 1))
        return mean / mean.sum()


def auto_psf_size(fwhm: float) -> int:
    """Odd stamp side that holds the PSF wings: about 8 FWHM, between 15 and 63 pixels."""
    half = int(np.ceil(4.0 * fwhm))
    return int(np.clip(2 * half + 1, 15, 63))


def psf_fwhm(psf: np.ndarray, *, oversample: int = 8) -> float:
    """Measure the FWHM of a PSF stamp from the area above half maximum.

    Parameters
    ----------
    psf : numpy.ndarray
        PSF stamp.
    oversample : int
        Cubic-spline oversampling factor before thresholding.

    Returns
    -------
    float
        ``2 sqrt(A / pi)`` with ``A`` the area (pixels) where the PSF exceeds
        half its peak: the FWHM of a circular profile, a mean FWHM otherwise.
    """
    fine = ndimage.zoom(np.asarray(psf, dtype=np.float64), oversample, order=3)
    area = np.count_nonzero(fine >= 0.5 * fine.max()) / oversample**2
    return float(2.0 * np.sqrt(area / np.pi))


def select_psf_stars(
    stars: Table,
    shape: tuple[int, int],
    size: int,
    *,
    min_snr: float = 30.0,
    max_stars: int = 200,
) -> Table:
    """Keep bright, isolated stars whose stamp lies inside the image.

    Parameters
    ----------
    stars : astropy.table.Table
        Output of :func:`~skysift.diffim.stars.find_stars` (already free of
        saturated and masked cores).
    shape : (int, int)
        Image shape.
    size : int
        PSF stamp side; neighbours within ``size / 2`` disqualify a star.
    min_snr : float
        Minimum detection S/N.
    max_stars : int
        Keep at most this many, brightest first.

    Returns
    -------
    astropy.table.Table
    """
    half = size // 2 + 2
    ny, nx = shape
    inside = (stars["x"] >= half) & (stars["x"] < nx - 1 - half) & (stars["y"] >= half) & (stars["y"] < ny - 1 - half)
    keep = inside & (stars["snr"] >= min_snr) & (stars["isolation"] > 0.5 * size)
    return stars[keep][:max_stars]


def build_psf(data: np.ndarray, x: np.ndarray, y: np.ndarray, size: int, *, fwhm: float) -> np.ndarray:
    """Stack stars into a centred, unit-sum PSF stamp.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image (masked pixels filled).
    x, y : numpy.ndarray
        Centroids of the stars to stack (0-based pixels).
    size : int
        Odd stamp side.
    fwhm : float
        Approximate FWHM, the centring window.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` stamp, centre at pixel ``(size // 2, size // 2)``,
        summing to 1, zero outside the inscribed circle.

    Notes
    -----
    Each stamp has its local sky (sigma-clipped annulus) removed and is
    normalised by its own flux; the stamps are combined with a sigma-clipped,
    inverse-variance weighted mean, so outliers (cosmic rays, faint
    neighbours) are rejected pixel by pixel and bright stars weigh most. The stack is re-centred once
    with the same windowed centroid used for the stars, which makes the PSF
    centre and the star positions consistent.
    """
    if size % 2 == 0:
        raise ValueError(f"PSF size must be odd, got {size}")
    half = size // 2
    pad = half + 2
    offsets = np.arange(-pad, pad + 1)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x0 = np.round(x).astype(int)
    y0 = np.round(y).astype(int)
    ny, nx = data.shape
    inside = (x0 - pad >= 0) & (x0 + pad < nx) & (y0 - pad >= 0) & (y0 + pad < ny)
    x, y, x0, y0 = x[inside], y[inside], x0[inside], y0[inside]
    if x.size == 0:
        raise ValueError("no star stamps could be cut out")
    cutouts = np.asarray(data[y0[:, None, None] + offsets[None, :, None], x0[:, None, None] + offsets[None, None, :]], dtype=np.float64)
    # Local sky per star from a sigma-clipped annulus at the stamp edge:
    # clipping rejects the neighbours that a plain median of the corners
    # would let through (they bias the sky up and the PSF wings negative).
    ring_radius = np.hypot(offsets[:, None], offsets[None, :])
    ring = (ring_radius >= half - 3) & (ring_radius <= pad)
    sky, sky_sigma, _ = clipped_box_statistics(cutouts[:, ring], sigma=2.5, iterations=10)
    stamps: list[np.ndarray] = []
    weights: list[float] = []
    for cutout, level, noise, xi, yi, xc, yc in zip(cutouts, sky, sky_sigma, x0, y0, x, y):
        shifted = ndimage.shift(cutout - level, (yi - yc, xi - xc), order=3, mode="nearest")[2:-2, 2:-2]
        flux = shifted.sum()
        if flux > 0:
            stamps.append(shifted / flux)
            # Inverse variance of a normalised stamp pixel: F^2 / (F + A sky_var),
            # with A the PSF's noise area; bright stars dominate, as they should.
            weights.append(flux**2 / (flux + 4.0 * np.pi * fwhm**2 * noise**2))
    if not stamps:
        raise ValueError("no star stamps could be cut out")
    clipped = sigma_clip(np.array(stamps), sigma=3.0, axis=0, maxiters=3)
    stack = np.ma.filled(np.ma.average(clipped, axis=0, weights=np.array(weights)), 0.0)
    xc, yc = windowed_centroids(stack, np.array([half], float), np.array([half], float), fwhm)
    stack = ndimage.shift(stack, (half - yc[0], half - xc[0]), order=3, mode="constant")
    grid = np.arange(size) - half
    radius2 = grid[:, None] ** 2 + grid[None, :] ** 2
    outer = radius2 > half**2
    # Cut the stamp to a disc so that the PSF has no square corners.
    stack[outer] = 0.0
    return stack / stack.sum()


def _stars_for_psf(
    data: np.ndarray,
    noise_sigma: float,
    mask: np.ndarray | None,
    fwhm: float,
    size: int | None,
    name: str,
    stars: Table | None = None,
    max_stars: int = 50,
) -> tuple[Table, int, float]:
    # One detection pass; the FWHM measured from the first stack then re-centres
    # the selected stars with a matching window and resizes the stamp. Finding
    # the stars again with the new FWHM changes which bright stars pass a
    # 10-sigma cut very little and would cost a full-image filter.
    stamp_size = size or auto_psf_size(fwhm)
    if stars is None:
        stars = find_stars(data, noise_sigma, mask=mask, fwhm=fwhm, threshold=10.0, border=stamp_size // 2 + 2)
    for _ in range(2):
        selected = select_psf_stars(stars, data.shape, stamp_size, max_stars=max_stars)
        if len(selected) < 3:
            selected = select_psf_stars(stars, data.shape, stamp_size, min_snr=15.0, max_stars=max_stars)
        if len(selected) == 0:
            raise InputDataError(
                f"{name}: no stars found for PSF estimation (no isolated, unsaturated star above S/N 15)"
            )
        selected = selected.copy()
        x, y = windowed_centroids(data, selected["x"], selected["y"], fwhm)
        selected["x"], selected["y"] = x, y
        psf = build_psf(data, selected["x"], selected["y"], stamp_size, fwhm=fwhm)
        measured = psf_fwhm(psf)
        converged = abs(measured - fwhm) < 0.15 * fwhm
        fwhm = measured
        if converged:
            break
        stamp_size = size or auto_psf_size(fwhm)
    return selected, stamp_size, fwhm


def estimate_psf(
    data: np.ndarray,
    noise_sigma: float,
    *,
    mask: np.ndarray | None = None,
    fwhm_guess: float = 3.0,
    size: int | None = None,
    name: str = "image",
) -> np.ndarray:
    """Estimate one PSF for the whole image.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    noise_sigma : float
        Background noise per pixel.
    mask : numpy.ndarray of bool, optional
        Bad pixels (saturated, NaN, edges); stars touching them are not used.
    fwhm_guess : float
        Starting FWHM (pixels); refined from the data.
    size : int, optional
        Odd stamp side; by default about 8 FWHM.
    name : str
        Image name for error messages (the file path).

    Returns
    -------
    numpy.ndarray
        Unit-sum, centred, odd-sized PSF stamp.

    Raises
    ------
    InputDataError
        If no usable star is found ("no stars found").
    """
    return estimate_psf_grid(data, noise_sigma, mask=mask, grid=1, fwhm_guess=fwhm_guess, size=size, name=name).psfs[0, 0]


def estimate_psf_grid(
    data: np.ndarray,
    noise_sigma: float,
    *,
    mask: np.ndarray | None = None,
    grid: int = 1,
    fwhm_guess: float = 3.0,
    size: int | None = None,
    min_stars: int = 5,
    name: str = "image",
    stars: Table | None = None,
    max_stars: int = 50,
) -> PsfGrid:
    """Estimate PSFs on a ``grid`` x ``grid`` set of cells.

    Parameters
    ----------
    data, noise_sigma, mask, fwhm_guess, size, name
        As for :func:`estimate_psf`.
    grid : int
        Cells per axis (1: one PSF for the image).
    min_stars : int
        A cell with fewer stars takes the whole-image PSF (logged).
    stars : astropy.table.Table, optional
        Stars already found in ``data`` (:func:`~skysift.diffim.stars.find_stars`,
        saturated and masked cores excluded); found here when omitted.
    max_stars : int
        Stars stacked per cell, brightest isolated ones first: the stack's
        noise stops improving long before the cost stops growing.

    Returns
    -------
    PsfGrid

    Raises
    ------
    InputDataError
        If no usable star is found in the image.
    """
    if grid < 1:
        raise ValueError(f"psf grid must be >= 1, got {grid}")
    data = np.asarray(data)
    stars, stamp_size, fwhm = _stars_for_psf(
        data, noise_sigma, mask, fwhm_guess, size, name, stars=stars, max_stars=max_stars * grid * grid
    )
    global_psf = build_psf(data, stars["x"], stars["y"], stamp_size, fwhm=fwhm)
    ny, nx = data.shape
    y_edges = np.linspace(0, ny, grid + 1).round().astype(int)
    x_edges = np.linspace(0, nx, grid + 1).round().astype(int)
    psfs = np.empty((grid, grid, stamp_size, stamp_size))
    n_used = np.zeros((grid, grid), dtype=int)
    for i in range(grid):
        for j in range(grid):
            inside = (
                (stars["y"] >= y_edges[i]) & (stars["y"] < y_edges[i + 1])
                & (stars["x"] >= x_edges[j]) & (stars["x"] < x_edges[j + 1])
            )
            if grid > 1 and inside.sum() >= min_stars:
                psfs[i, j] = build_psf(data, stars["x"][inside], stars["y"][inside], stamp_size, fwhm=fwhm)
                n_used[i, j] = int(inside.sum())
            else:
                if grid > 1:
                    _log.warning("%s: PSF cell (%d, %d) has %d stars; using the whole-image PSF", name, i, j, int(inside.sum()))
                psfs[i, j] = global_psf
                n_used[i, j] = len(stars) if grid == 1 else 0
    _log.info("%s: PSF from %d stars, FWHM %.2f px, stamp %d px", name, len(stars), fwhm, stamp_size)
    return PsfGrid(psfs=psfs, y_edges=y_edges, x_edges=x_edges, n_stars=n_used)
