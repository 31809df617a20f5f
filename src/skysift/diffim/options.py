"""Options of the image-differencing pipeline (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DiffimOptions"]


@dataclass(frozen=True)
class DiffimOptions:
    """Settings of :func:`difference_images`.

    Attributes
    ----------
    threshold : float
        Detection threshold on ``|S_corr|`` (sigma).
    psf_grid : int
        PSFs are solved on ``psf_grid`` x ``psf_grid`` cells and ZOGY is run per
        cell (1: one PSF per image).
    psf_size : int or None
        Odd PSF stamp side; None picks about 8 FWHM.
    fwhm_guess : float
        Starting FWHM (pixels) for star finding; refined from the data.
    refine_wcs : bool
        Refine the WCS alignment with matched stars (affine fit).
    match_radius : float
        Star-matching radius (pixels) after the WCS prior.
    saturation : float or None
        Saturation level (image units) for both images; None reads ``SATURATE``
        (or the lowest ``SATURATA``/``SATURATB``) from each header.
    saturation_grow : int
        Saturated pixels are grown by this many pixels...
    saturation_grow_factor : float
        ...plus this many times the equivalent radius of each saturated
        region, because the wings of a brighter star stay unusable further out.
    edge_width : int
        Border (pixels) of the science image excluded from detection.
    deblend : bool
        Deblend connected detections.
    npixels : int
        Minimum connected pixels of a detection.
    background_box : int
        Box size (pixels) of the background mesh.
    gain_science, gain_reference : float or None
        Electrons per image unit, for the sources' Poisson variance; None reads
        ``GAIN`` from the header, else 1 (images in electrons).
    source_noise : bool
        Include the sources' Poisson noise in ``S_corr`` (eq. 26 of ZOGY).
    astrometric_noise : bool
        Include the registration noise term (eqs. 30-33), with the standard
        error of the fitted transform as sigma.
    interpolation_order : int
        Spline order when resampling the reference.
    exclude_near_saturated : bool
        Leave candidates flagged :data:`~skysift.diffim.detect.FLAG_NEAR_SATURATED`
        (peak within 10 px of a saturated pixel of either image) out of the
        catalogue. Saturated stars' halos do not subtract to the noise level,
        so ZOGY's authors mask them; set False to keep them, flagged.
    max_psf_stars : int
        Brightest isolated stars stacked per PSF (per cell with ``psf_grid``).
    affine_registration : bool
        Resample the reference with :func:`scipy.ndimage.affine_transform` when
        the WCS map is affine to 0.01 px (see
        :func:`~skysift.diffim.registration.register`).
    """

    threshold: float = 5.0
    psf_grid: int = 1
    psf_size: int | None = None
    fwhm_guess: float = 3.0
    refine_wcs: bool = True
    match_radius: float = 3.0
    saturation: float | None = None
    saturation_grow: int = 3
    saturation_grow_factor: float = 2.0
    edge_width: int = 10
    deblend: bool = True
    npixels: int = 5
    background_box: int = 64
    gain_science: float | None = None
    gain_reference: float | None = None
    source_noise: bool = True
    astrometric_noise: bool = True
    interpolation_order: int = 3
    exclude_near_saturated: bool = True
    max_psf_stars: int = 50
    affine_registration: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-serialisable dict (for config hashes)."""
        return asdict(self)
