"""Options of the strong-lens training-set stage (config section ``lens``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.options import StageOptions, param

__all__ = ["LensOptions", "LensValidationOptions"]


@dataclass(frozen=True)
class LensOptions(StageOptions):
    """Settings of :func:`~skysift.lens.dataset.make_lens_training_set`."""

    section: ClassVar[str] = "lens"

    enabled: bool = param(True, "Build, train and evaluate the lens finder.", cli=False)
    n_samples: int = param(2000, "Images in the training set.", minimum=10)
    survey: str = param(
        "lsst", "Survey preset (pixel scale, PSF, sky, noise); 'lsst' is LSST's i band, 'lsst-g/r/i' each band.",
        choices=("lsst", "lsst-g", "lsst-r", "lsst-i", "hsc", "euclid"),
    )
    image_size: int = param(64, "Image side.", unit="pix", minimum=16, maximum=512)
    supersampling: int = param(3, "Sub-pixels per pixel side.", minimum=1, maximum=9)
    positive_fraction: float = param(0.5, "Fraction of lenses.", exclusive_minimum=0, exclusive_maximum=1)
    galaxies: str = param(
        "simulated", "'simulated' (the demo), or a GalSim real-galaxy directory whose HST galaxies host the arcs."
    )
    conditions: str = param(
        "randomised", "Observing conditions: each image its own seeing, PSF shape and depth, or the survey preset's.",
        choices=("randomised", "fixed"),
    )
    negative_mix: str = param(
        "", "Negative families and weights, e.g. 'galaxy:2,arclet:1,ring:1'; empty for the default mixture "
        "(kinds: galaxy, arclet, ring, spiral, companion, blend, merger, edge_on, star).",
    )
    source_catalogue: str = param(
        "", "GalSim COSMOS parametric-fit catalogue whose real Sersic fits give the sources' shapes; empty for the "
        "declared priors (e.g. ../shared/data/lens/galsim_real_galaxies/real_galaxy_catalog_23.5_example_fits.fits).",
    )
    bands: list[str] = param(
        [], "Multi-band images: survey presets of the bands, e.g. [lsst-g, lsst-r, lsst-i] with survey lsst-r "
        "(set train.lens.model.in_channels to their number); empty for single-band images of the survey.",
    )
    device: str = param("cpu", "Where the batched simulator runs.", choices=("cpu", "cuda"))
    simulation_batch: int = param(512, "Images simulated per batch (memory, not results).", minimum=1)


@dataclass(frozen=True)
class LensValidationOptions(StageOptions):
    """Settings of :func:`~skysift.lens.independent.make_validation_set` (config section ``lens_validation``)."""

    section: ClassVar[str] = "lens_validation"

    enabled: bool = param(True, "Build the independent lenstronomy validation set and score the lens finder on it "
                          "(needs lens.enabled).", cli=False)
    n_lenses: int = param(300, "Lenses in the independent validation set.", minimum=1)
    n_lookalikes: int = param(300, "Look-alikes (non-lenses), shared equally among the seven families.", minimum=7)
    image_size: int = param(64, "Image side (0.2 arcsec pixels); match lens.image_size.", unit="pix", minimum=32,
                            maximum=256)
    supersampling: int = param(2, "Sub-pixels per pixel side in lenstronomy's rendering.", minimum=1, maximum=9)
    min_arc_snr: float = param(10.0, "Lenses (and arclets) are redrawn until their arcs' integrated S/N reaches this.",
                               minimum=0)
    workers: int | None = param(None, "Processes drawing images (none: the usable cores); results do not depend on it.",
                                minimum=1)
