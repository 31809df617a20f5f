"""Drizzled-style products from simulated images: resampled, sky-subtracted, MJy/sr, ERR extension.

Space-telescope pipelines (JWST ``i2d``, HST ``drz``) deliver images that a
ground-based simulation in electrons does not resemble: the pixels are
resampled (so neighbouring pixels share noise), the sky is subtracted, the
unit is a surface brightness (MJy/sr) with no ``GAIN`` keyword, the per-pixel
error is propagated into an ``ERR`` extension as if pixels were independent,
and saturated pixels are NaN. :func:`drizzle_style` turns an image of
:func:`~skysift.simulate.starfield.simulate_pair` into such a product, with
its truth moved along, so that differencing can be tested on the same scene
in both forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

__all__ = ["DrizzledImage", "drizzle_style", "write_drizzled"]


@dataclass
class DrizzledImage:
    """One drizzled-style product.

    Attributes
    ----------
    science : numpy.ndarray
        float32 image in MJy/sr, sky subtracted, NaN on saturated pixels.
    error : numpy.ndarray
        float32 1-sigma error per pixel (MJy/sr), propagated as independent
        pixels (sources' Poisson noise, sky and read noise).
    header : astropy.io.fits.Header
        WCS (moved with the resampling), ``BUNIT``, ``PHOTMJSR``, ``EXPTIME``;
        no gain keyword.
    shift : (float, float)
        Sub-pixel shift (x, y) applied by the resampling: a source at ``x`` in
        the input is at ``x + shift[0]`` here.
    mjysr_per_electron : float
        Conversion applied: ``PHOTMJSR / (gain * EXPTIME)``.
    """

    science: np.ndarray
    error: np.ndarray
    header: fits.Header
    shift: tuple[float, float]
    mjysr_per_electron: float


def drizzle_style(
    electrons: np.ndarray,
    wcs: WCS,
    *,
    sky: float,
    read_noise: float,
    saturation: float,
    rng: np.random.Generator,
    exposure_time: float = 2000.0,
    gain: float = 2.0,
    photmjsr: float = 0.5,
) -> DrizzledImage:
    """Resample an image in electrons onto a sub-pixel-shifted grid and calibrate it like a drizzled product.

    Parameters
    ----------
    electrons : numpy.ndarray
        Observed image (electrons, sky included, clipped at ``saturation``).
    wcs : astropy.wcs.WCS
        Its WCS.
    sky, read_noise, saturation : float
        Sky level (electrons per pixel), read noise (electrons) and full well
        used to simulate it.
    rng : numpy.random.Generator
        Draws the sub-pixel shift (0.3-0.7 pixel per axis, where bilinear
        resampling correlates the noise most).
    exposure_time, gain, photmjsr : float
        ``EXPTIME`` (s), detector gain (e-/DN, not written to the header) and
        ``PHOTMJSR`` (MJy/sr per DN/s).

    Returns
    -------
    DrizzledImage

    Notes
    -----
    Bilinear resampling by a half-pixel shift keeps the total flux and the
    noise on scales of a few pixels, but averages neighbouring pixels, so the
    per-pixel variance falls by up to a factor of 4 while the variance a PSF
    filter sees does not: the correlated noise of drizzled images (Fruchter &
    Hook 2002). The ``ERR`` map is propagated the way drizzle does it, pixel
    by pixel (``sum w^2 var``), so it shares that underestimate.
    """
    shift = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)))
    data = np.asarray(electrons, dtype=np.float64)
    variance = np.maximum(data, 0.0) + read_noise**2  # as pipelines estimate it, from the data
    resampled = ndimage.shift(data - sky, (shift[1], shift[0]), order=1, mode="nearest")
    # Output pixel x is (1 - s) input[x] + s input[x - 1]; the variance
    # propagates with the squared weights (correlate's 2-tap window is [x - 1, x]).
    wx = np.array([shift[0], 1.0 - shift[0]])
    wy = np.array([shift[1], 1.0 - shift[1]])
    propagated = ndimage.correlate(variance, np.outer(wy, wx) ** 2, mode="nearest")
    touched = ndimage.shift((data >= saturation).astype(np.float64), (shift[1], shift[0]), order=1, mode="constant") > 0
    scale = photmjsr / (gain * exposure_time)
    science = (resampled * scale).astype(np.float32)
    science[touched] = np.nan
    error = (np.sqrt(propagated) * scale).astype(np.float32)
    header = wcs.to_header()
    header["CRPIX1"] += shift[0]
    header["CRPIX2"] += shift[1]
    header["BUNIT"] = ("MJy/sr", "surface brightness")
    header["PHOTMJSR"] = (photmjsr, "MJy/sr producing 1 DN/s")
    header["EXPTIME"] = (exposure_time, "[s] effective exposure time")
    return DrizzledImage(science=science, error=error, header=header, shift=shift, mjysr_per_electron=scale)


def write_drizzled(path: str | Path, image: DrizzledImage) -> Path:
    """Write a drizzled-style product like a JWST ``i2d`` file: empty primary, ``SCI``, ``ERR``.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination (overwritten).
    image : DrizzledImage

    Returns
    -------
    pathlib.Path
    """
    hdus = fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(image.science, header=image.header, name="SCI"),
        fits.ImageHDU(image.error, header=image.header, name="ERR"),
    ])
    hdus.writeto(path, overwrite=True)
    return Path(path)
