"""Options of the image-differencing stage (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.options import StageOptions, param

__all__ = ["CORRELATED_NOISE_MODES", "DiffimOptions"]

#: Values of :attr:`DiffimOptions.correlated_noise`.
CORRELATED_NOISE_MODES = ("auto", "always", "never")


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
        None,
        "Science electrons per image unit for the source-noise term; null derives it from the header (EFFGAIN; BUNIT "
        "with GAIN/EGAIN/CCDGAIN, EXPTIME, PHOTMJSR, PHOTFLAM: skysift.diffim.noise.electrons_per_unit), electrons "
        "when the header has neither BUNIT nor a gain.",
        unit="electron per image unit", exclusive_minimum=0,
    )
    gain_reference: float | None = param(
        None, "Reference electrons per image unit; null derives it from the header, likewise.",
        unit="electron per image unit", exclusive_minimum=0,
    )
    source_noise: bool = param(
        True,
        "Include the sources' Poisson noise in Scorr (ZOGY eq. 26): from the noise map when it holds it (ERR, "
        "VAR_POISSON), else from the gain; a one-line error when neither gives it.",
    )
    astrometric_noise: bool = param(True, "Include the registration noise term in Scorr (ZOGY eqs. 30-33).")
    interpolation_order: int = param(3, "Spline order when resampling the reference.", minimum=0, maximum=5)
    exclude_near_saturated: bool = param(
        True, "Leave candidates within 10 px of a saturated pixel out of the catalogue (false keeps them, flagged)."
    )
    max_psf_stars: int = param(50, "Brightest isolated stars stacked per PSF (per cell with psf_grid).", minimum=1)
    affine_registration: bool = param(
        True, "Resample the reference with an affine transform when the WCS map is affine to 0.01 px."
    )
    assume_unit_gain: bool = param(
        True,
        "Where source noise needs a gain and the header converts the image back to counts (EXPTIME with PHOTMJSR, "
        "or a rate unit) but names no detector gain (JWST i2d): assume 1 e-/DN, warned and stamped (GAINSRCS/R), "
        "instead of stopping; space imagers' gains are 1-3 e-/DN, so this errs towards more source noise.",
    )
    noise_extensions: bool = param(
        True,
        "Use the inputs' ERR (else VAR_POISSON + VAR_RNOISE, else WHT as inverse variance) and DQ (non-zero = bad) "
        "extensions when present and no noise or weight file is given.",
    )
    correlated_noise: str = param(
        "auto",
        "Divide Scorr (and multiply the PSF-flux errors) by its robust width on source-free pixels (stamped "
        "SCORRWID, SCORRNRM): the correction for the correlated noise of resampled (drizzled) images; auto applies "
        "it when the width departs from 1 by more than correlated_noise_tolerance.",
        choices=CORRELATED_NOISE_MODES,
    )
    correlated_noise_tolerance: float = param(
        0.05, "Relative departure of the measured Scorr width from 1 that auto leaves alone.", minimum=0, exclusive_maximum=1
    )
    nan_saturation_snr: float = param(
        20.0,
        "NaN regions bordered by pixels brighter than this are saturated cores (JWST/HST blank them) and are grown "
        "like saturated pixels; 0 disables.",
        unit="sigma", minimum=0,
    )
