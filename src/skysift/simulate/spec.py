"""Parameters of simulated star-field pairs (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.options import StageOptions, param

__all__ = ["FieldSpec", "SimulatedPairsOptions"]


@dataclass(frozen=True)
class SimulatedPairsOptions(StageOptions):
    """Workflow keys of ``simulate.pairs`` that describe the DAG, not one pair."""

    section: ClassVar[str] = "simulate.pairs"

    n_pairs: int = param(2, "Number of simulated pairs (sim00, sim01, ...).", minimum=0, maximum=1000, cli=False)


@dataclass(frozen=True)
class FieldSpec(StageOptions):
    """Parameters of a simulated reference/science pair (config section ``simulate.pairs``).

    Star fluxes follow a power law dN/dF ~ F^-2 (many faint, few bright);
    transient S/N is log-uniform and defined as the optimal PSF-photometry S/N
    in the science image alone; a star of flux F in the reference has
    ``science_flux_scale * F`` in the science image.
    """

    section: ClassVar[str] = "simulate.pairs"

    image_size: int = param(512, "Side of the square images.", unit="pix", minimum=64, maximum=16384)
    pixel_scale: float = param(0.26, "Pixel scale (DECam-like).", unit="arcsec/pix", exclusive_minimum=0)
    center_ra: float = param(150.0, "Field centre right ascension.", unit="deg", minimum=0, maximum=360)
    center_dec: float = param(2.2, "Field centre declination.", unit="deg", minimum=-90, maximum=90)
    n_stars: int = param(400, "Number of stars (fluxes from dN/dF ~ F^-2).", minimum=0)
    star_flux_min: float = param(500.0, "Faintest star flux in the reference.", unit="electron", exclusive_minimum=0)
    star_flux_max: float = param(
        2.0e5, "Brightest (unsaturated) star flux in the reference.", unit="electron", exclusive_minimum=0
    )
    n_saturated: int = param(3, "Extra stars bright enough to saturate in both images.", minimum=0)
    n_transients: int = param(10, "Point transients injected into the science image only.", minimum=0)
    transient_snr_min: float = param(5.0, "Lowest transient S/N (science image alone).", exclusive_minimum=0)
    transient_snr_max: float = param(50.0, "Highest transient S/N (log-uniform between the two).", exclusive_minimum=0)
    reference_fwhm: float = param(2.5, "Reference PSF core FWHM.", unit="pix", exclusive_minimum=0)
    science_fwhm: float = param(3.5, "Science PSF core FWHM.", unit="pix", exclusive_minimum=0)
    reference_sky: float = param(200.0, "Reference sky level.", unit="electron/pix", minimum=0)
    science_sky: float = param(400.0, "Science sky level.", unit="electron/pix", minimum=0)
    read_noise: float = param(5.0, "Read noise of both images.", unit="electron", minimum=0)
    saturation: float = param(
        60000.0, "Full well; pixels above are clipped (written as SATURATE).", unit="electron", exclusive_minimum=0
    )
    science_flux_scale: float = param(0.8, "Photometric scale of the science image relative to the reference.", exclusive_minimum=0)
    max_shift: float = param(3.0, "Largest pointing offset between the images, per axis.", unit="pix", minimum=0)
    max_rotation: float = param(0.05, "Largest rotation between the images.", unit="deg", minimum=0)
    edge_margin: int = param(20, "Transients stay this far from the image edges.", unit="pix", minimum=0)

    def check(self) -> None:
        from skysift.errors import ConfigError

        if self.star_flux_max <= self.star_flux_min:
            raise ConfigError(f"{self.section}: star_flux_max ({self.star_flux_max}) must exceed star_flux_min ({self.star_flux_min})")
        if self.transient_snr_max < self.transient_snr_min:
            raise ConfigError(
                f"{self.section}: transient_snr_max ({self.transient_snr_max}) is below transient_snr_min ({self.transient_snr_min})"
            )
