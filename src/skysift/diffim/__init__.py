"""Image differencing: registration, PSFs, ZOGY proper subtraction and transient detection.

Pure algorithms (arrays in, arrays and :class:`~astropy.table.Table` out) live
in the submodules; :func:`run_diffim` is the only function that touches files.
"""

from skysift.diffim.background import BackgroundEstimate, estimate_background
from skysift.diffim.detect import detect_candidates
from skysift.diffim.fluxscale import FluxScale, flux_scale
from skysift.diffim.masks import combine_masks, edge_mask, fill_masked, saturation_mask
from skysift.diffim.pipeline import DiffimOptions, DiffimResult, difference_images, run_diffim
from skysift.diffim.psf import PsfGrid, estimate_psf, estimate_psf_grid, psf_fwhm
from skysift.diffim.registration import Registration, fit_affine, match_positions, register
from skysift.diffim.stars import find_stars
from skysift.diffim.zogy import ZogyResult, pad_psf, zogy, zogy_grid

__all__ = [
    "BackgroundEstimate",
    "DiffimOptions",
    "DiffimResult",
    "FluxScale",
    "PsfGrid",
    "Registration",
    "ZogyResult",
    "combine_masks",
    "detect_candidates",
    "difference_images",
    "edge_mask",
    "estimate_background",
    "estimate_psf",
    "estimate_psf_grid",
    "fill_masked",
    "find_stars",
    "fit_affine",
    "flux_scale",
    "match_positions",
    "pad_psf",
    "psf_fwhm",
    "register",
    "run_diffim",
    "saturation_mask",
    "zogy",
    "zogy_grid",
]
