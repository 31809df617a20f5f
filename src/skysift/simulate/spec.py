"""Parameters of simulated star-field pairs (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FieldSpec"]


@dataclass(frozen=True)
class FieldSpec:
    """Parameters of a simulated reference/science pair.

    Attributes
    ----------
    image_size : int
        Side of the square images (pixels).
    pixel_scale : float
        Arcseconds per pixel.
    center_ra, center_dec : float
        Field centre (degrees).
    n_stars : int
        Number of stars.
    star_flux_min, star_flux_max : float
        Range of star fluxes in the reference (electrons); drawn from a
        power law dN/dF ~ F^-2 (many faint, few bright).
    n_saturated : int
        Number of extra stars bright enough to saturate in both images.
    n_transients : int
        Number of point transients in the science image only.
    transient_snr_min, transient_snr_max : float
        Range of the transients' signal-to-noise ratio (log-uniform), defined
        as the optimal PSF-photometry S/N in the science image alone.
    reference_fwhm, science_fwhm : float
        PSF core FWHM (pixels).
    reference_sky, science_sky : float
        Sky level (electrons per pixel).
    read_noise : float
        Read noise (electrons).
    saturation : float
        Full-well level (electrons); pixels above are clipped to it.
    science_flux_scale : float
        Photometric scale of the science image relative to the reference
        (transparency and exposure): a star of flux F in the reference has
        ``science_flux_scale * F`` in the science image.
    max_shift : float
        Largest pointing offset between the images (pixels, each axis).
    max_rotation : float
        Largest rotation between the images (degrees).
    edge_margin : int
        Transients stay this many pixels away from the edges.
    """

    image_size: int = 512
    pixel_scale: float = 0.26
    center_ra: float = 150.0
    center_dec: float = 2.2
    n_stars: int = 400
    star_flux_min: float = 500.0
    star_flux_max: float = 2.0e5
    n_saturated: int = 3
    n_transients: int = 10
    transient_snr_min: float = 5.0
    transient_snr_max: float = 50.0
    reference_fwhm: float = 2.5
    science_fwhm: float = 3.5
    reference_sky: float = 200.0
    science_sky: float = 400.0
    read_noise: float = 5.0
    saturation: float = 60000.0
    science_flux_scale: float = 0.8
    max_shift: float = 3.0
    max_rotation: float = 0.05
    edge_margin: int = 20
