"""Options of the image-differencing stage (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.options import StageOptions, param

__all__ = ["DiffimOptions"]


@dataclass(frozen=True)
class DiffimOptions(StageOptions):
    """Settings of :func:`~skysift.diffim.pipeline.difference_images` (config section ``diffim``).

    Every field is declared once with its unit, range and meaning; the schema,
    the ``skysift diffim`` flags and ``config/README.md`` are generated from it.
    Saturated stars' halos do not subtract to the noise level, so ZOGY's authors
    mask them: ``exclude_near_saturated`` leaves candidates flagged
    :data:`~skysift.diffim.detect.FLAG_NEAR_SATURATED` out of the catalogue.
    """

    section: ClassVar[str] = "diffim"

    threshold: float = param(5.0, "Detection threshold on abs(Scorr).", unit="sigma", exclusive_minimum=0)
    psf_grid: int = param(1, "PSFs solved on an N x N grid of sub-images (spatial variation).", minimum=1, maximum=8)
    psf_size: int | None = param(
        None, "Side of the PSF stamps; null sizes them from the FWHM (about 8 FWHM).", unit="pix", minimum=5, odd=True
    )
    fwhm_guess: float = param(3.0, "First guess of the PSF FWHM for star finding.", unit="pix", exclusive_minimum=0)
    refine_wcs: bool = param(True, "Refine the WCS registration by matching stars (affine fit).")
    match_radius: float = param(3.0, "Star-matching radius after the WCS prior.", unit="pix", exclusive_minimum=0)
    saturation: float | None = param(
        None, "Saturation level (image units); null reads SATURATE (or the lowest SATURATA/B) from each header.",
        exclusive_minimum=0,
    )
    saturation_grow: int = param(3, "Pixels by which saturated regions are grown in the mask.", unit="pix", minimum=0)
    saturation_grow_factor: float = param(
        2.0, "Extra growth of each saturated region in units of its own size (halo and bleed).", minimum=0
    )
    edge_width: int = param(10, "Width of the masked border.", unit="pix", minimum=0)
    deblend: bool = param(True, "Deblend connected candidate regions.")
    npixels: int = param(5, "Minimum connected pixels of a candidate.", unit="pix", minimum=1)
    background_box: int = param(64, "Box size of the background mesh.", unit="pix", minimum=8)
    gain_science: float | None = param(
        None, "Science gain for the source-noise term; null reads GAIN (else 1).", unit="electron/adu", exclusive_minimum=0
    )
    gain_reference: float | None = param(
        None, "Reference gain; null reads GAIN (else 1).", unit="electron/adu", exclusive_minimum=0
    )
    source_noise: bool = param(True, "Include the sources' Poisson noise in Scorr (ZOGY eq. 26).")
    astrometric_noise: bool = param(True, "Include the registration noise term in Scorr (ZOGY eqs. 30-33).")
    interpolation_order: int = param(3, "Spline order when resampling the reference.", minimum=0, maximum=5)
    exclude_near_saturated: bool = param(
        True, "Leave candidates within 10 px of a saturated pixel out of the catalogue (false keeps them, flagged)."
    )
    max_psf_stars: int = param(50, "Brightest isolated stars stacked per PSF (per cell with psf_grid).", minimum=1)
    affine_registration: bool = param(
        True, "Resample the reference with an affine transform when the WCS map is affine to 0.01 px."
    )
