"""Options of the image-differencing pipeline (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CORRELATED_NOISE_MODES", "DiffimOptions"]

#: Values of :attr:`DiffimOptions.correlated_noise`.
CORRELATED_NOISE_MODES = ("auto", "always", "never")


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
        Electrons per image unit (> 0), for the sources' Poisson variance;
        None derives it from the header (``EFFGAIN``; ``BUNIT`` with ``GAIN``,
        ``EGAIN``, ``CCDGAIN``, ``EXPTIME``, ``PHOTMJSR``, ``PHOTFLAM``: see
        :func:`skysift.diffim.noise.electrons_per_unit`), electrons when the
        header has neither ``BUNIT`` nor a gain.
    source_noise : bool
        Include the sources' Poisson noise in ``S_corr`` (eq. 26 of ZOGY): from
        the noise map when it holds it (``ERR``, ``VAR_POISSON``), else from
        the gain; an error when neither gives it.
    assume_unit_gain : bool
        Where source noise is needed, the header converts the image back to
        counts (``EXPTIME`` with ``PHOTMJSR``, or a rate unit) but names no
        detector gain, assume 1 e-/DN (logged as a warning and stamped)
        instead of stopping with an error.
    noise_extensions : bool
        Use the ``ERR``, ``VAR_POISSON`` + ``VAR_RNOISE``, ``WHT`` (inverse
        variance) and ``DQ`` (non-zero = bad) extensions of the input files
        when present and no noise or weight file is given.
    correlated_noise : str
        ``auto``, ``always`` or ``never``: divide ``S_corr`` (and multiply the
        PSF-flux errors) by the robust width of ``S_corr`` on source-free
        pixels, which corrects the noise correlation of resampled images;
        ``auto`` does so when the width departs from 1 by more than
        ``correlated_noise_tolerance``.
    correlated_noise_tolerance : float
        Relative departure (0-1) of the measured width from 1 that ``auto``
        leaves alone, as consistent with uncorrelated noise.
    nan_saturation_snr : float
        NaN regions whose bordering pixels have a median above this many
        background sigma are treated as saturated cores and grown like them
        (sigma units, >= 0; 0 disables).
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
    assume_unit_gain: bool = True
    noise_extensions: bool = True
    correlated_noise: str = "auto"
    correlated_noise_tolerance: float = 0.05
    nan_saturation_snr: float = 20.0

    def __post_init__(self) -> None:
        if self.correlated_noise not in CORRELATED_NOISE_MODES:
            raise ValueError(f"correlated_noise must be one of {', '.join(CORRELATED_NOISE_MODES)}, got {self.correlated_noise!r}")
        if not 0 <= self.correlated_noise_tolerance < 1:
            raise ValueError(f"correlated_noise_tolerance must be in [0, 1), got {self.correlated_noise_tolerance}")
        for name in ("gain_science", "gain_reference"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-serialisable dict (for config hashes)."""
        return asdict(self)
