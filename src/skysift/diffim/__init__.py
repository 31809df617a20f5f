"""Image differencing: registration, PSFs, ZOGY proper subtraction and transient detection.

Pure algorithms (arrays in, arrays and :class:`~astropy.table.Table` out) live
in the submodules; :func:`run_diffim` is the only function that touches files.
"""

# Submodules are imported on first use (PEP 562), so that the CLI can read
# DiffimOptions without paying for scipy, astropy and photutils imports.
# The ZOGY function is not re-exported: its name is also the submodule's, and
# once the submodule is imported the package attribute is the module. Use
# ``from skysift.diffim.zogy import zogy``.
import importlib
from typing import Any

_LAZY = {
    "BackgroundEstimate": "skysift.diffim.background",
    "DiffimOptions": "skysift.diffim.pipeline",
    "DiffimResult": "skysift.diffim.pipeline",
    "FluxScale": "skysift.diffim.fluxscale",
    "GainModel": "skysift.diffim.noise",
    "NoiseMap": "skysift.diffim.noise",
    "PsfGrid": "skysift.diffim.psf",
    "Registration": "skysift.diffim.registration",
    "ZogyResult": "skysift.diffim.zogy",
    "combine_masks": "skysift.diffim.masks",
    "detect_candidates": "skysift.diffim.detect",
    "difference_images": "skysift.diffim.pipeline",
    "edge_mask": "skysift.diffim.masks",
    "electrons_per_unit": "skysift.diffim.noise",
    "estimate_background": "skysift.diffim.background",
    "estimate_psf": "skysift.diffim.psf",
    "estimate_psf_grid": "skysift.diffim.psf",
    "fill_masked": "skysift.diffim.masks",
    "find_stars": "skysift.diffim.stars",
    "fit_affine": "skysift.diffim.registration",
    "flux_scale": "skysift.diffim.fluxscale",
    "match_positions": "skysift.diffim.registration",
    "pad_psf": "skysift.diffim.zogy",
    "psf_fwhm": "skysift.diffim.psf",
    "read_noise_inputs": "skysift.diffim.pipeline",
    "register": "skysift.diffim.registration",
    "run_diffim": "skysift.diffim.pipeline",
    "saturation_mask": "skysift.diffim.masks",
    "scorr_width": "skysift.diffim.noise",
    "zogy_grid": "skysift.diffim.zogy",
}

__all__ = [
    "BackgroundEstimate",
    "DiffimOptions",
    "DiffimResult",
    "FluxScale",
    "GainModel",
    "NoiseMap",
    "PsfGrid",
    "Registration",
    "ZogyResult",
    "combine_masks",
    "detect_candidates",
    "difference_images",
    "edge_mask",
    "electrons_per_unit",
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
    "read_noise_inputs",
    "register",
    "run_diffim",
    "saturation_mask",
    "scorr_width",
    "zogy_grid",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skysift.diffim' has no attribute {name!r}")
