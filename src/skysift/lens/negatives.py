"""Hard negatives for lens finding: galaxies with ring-like, arc-like or blended structure.

Each kind is a declared prior (the skysift injector contract) plus a pure
function rendering a batch on a :class:`~skysift.lens.simulator.LensSimulator`
grid (supersampled, binned, PSF-convolved, noise-free, e-/s), to be added to a
lens-galaxy image:

* ``"ring"``: a non-lensed elliptical annulus (ring galaxy, Einstein-ring
  look-alike) with an azimuthal modulation, so it can look like a partial arc;
* ``"spiral"``: an exponential disc with a two-armed logarithmic spiral;
* ``"companion"``: one to three small Sersic galaxies within a few arcsec;
* ``"blend"``: a second galaxy of similar brightness overlapping the first.

These are the false positives that dominate real lens searches (Petrillo et al.
2019; Jacobs et al. 2019) and must be in the training set.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from skysift.lens.simulator import LensSimulator, magnitude_to_flux, sersic_amplitude, sersic_bn, sersic_profile
from skysift.simulate.priors import Choice, Prior, Uniform

__all__ = ["HARD_NEGATIVE_KINDS", "HARD_NEGATIVE_PRIORS", "render_hard_negative"]

HARD_NEGATIVE_KINDS = ("ring", "spiral", "companion", "blend")

#: Declared priors per hard-negative kind; positions relative to the galaxy centre.
HARD_NEGATIVE_PRIORS: dict[str, dict[str, Prior]] = {
    "ring": {
        "feature_mag": Uniform(20.5, 23.5, unit="mag"),
        "feature_radius": Uniform(0.8, 2.5, unit="arcsec"),
        "feature_width": Uniform(0.1, 0.3, unit="arcsec"),
        "feature_q": Uniform(0.6, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(0.0, 1.0),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
    },
    "spiral": {
        "feature_mag": Uniform(19.5, 22.0, unit="mag"),
        "feature_radius": Uniform(0.5, 1.5, unit="arcsec"),
        "feature_width": Uniform(10.0, 30.0, unit="deg"),
        "feature_q": Uniform(0.5, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(0.4, 0.9),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
    },
    "companion": {
        "feature_mag": Uniform(20.5, 23.5, unit="mag"),
        "feature_radius": Uniform(1.0, 3.0, unit="arcsec"),
        "feature_width": Uniform(0.1, 0.4, unit="arcsec"),
        "feature_q": Uniform(0.4, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Choice((1.0, 2.0, 3.0)),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
    },
    "blend": {
        "feature_mag": Uniform(18.5, 21.5, unit="mag"),
        "feature_radius": Uniform(0.5, 1.5, unit="arcsec"),
        "feature_width": Uniform(0.4, 1.5, unit="arcsec"),
        "feature_q": Uniform(0.4, 1.0),
        "feature_phi": Uniform(0.0, 180.0, unit="deg"),
        "feature_contrast": Uniform(1.0, 4.0),
        "feature_angle": Uniform(0.0, 360.0, unit="deg"),
    },
}


def _column(simulator: LensSimulator, values: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=simulator.dtype, device=simulator.device).reshape(-1, 1, 1)


def render_hard_negative(
    simulator: LensSimulator,
    kind: str,
    params: Mapping[str, np.ndarray],
    centre: tuple[np.ndarray, np.ndarray] | None = None,
) -> torch.Tensor:
    """Render the extra structure of a hard negative, ``(N, H, W)`` in e-/s.

    Parameters
    ----------
    simulator : LensSimulator
        Grid, PSF and survey.
    kind : str
        One of :data:`HARD_NEGATIVE_KINDS`.
    params : mapping
        Values drawn from ``HARD_NEGATIVE_PRIORS[kind]``.
    centre : (array, array), optional
        Host galaxy centres (arcsec); default the stamp centre.

    Notes
    -----
    Rings: ``I = A exp(-(R - R0)^2 / 2 w^2) (1 - c + c cos^2((theta - theta0) / 2))``.
    Spirals: ``I = I0 exp(-R / h) (1 + c cos(2 (theta - theta0) - 2 ln(R / h) / tan(pitch)))``
    with pitch angle ``feature_width``. Companions and blends are Sersic (n = 1
    and 4) galaxies at distance ``feature_radius`` and angle ``feature_angle``;
    ``feature_contrast`` is the number of companions or the blend's size ratio.
    """
    if kind not in HARD_NEGATIVE_KINDS:
        raise ValueError(f"unknown hard-negative kind {kind!r}; known: {HARD_NEGATIVE_KINDS}")
    n = len(params["feature_mag"])
    zp = simulator.survey.zero_point
    cx = np.zeros(n) if centre is None else np.asarray(centre[0], dtype=np.float64)
    cy = np.zeros(n) if centre is None else np.asarray(centre[1], dtype=np.float64)
    flux = magnitude_to_flux(params["feature_mag"], zp)
    q = np.asarray(params["feature_q"], dtype=np.float64)
    phi = np.deg2rad(np.asarray(params["feature_phi"], dtype=np.float64))
    angle = np.deg2rad(np.asarray(params["feature_angle"], dtype=np.float64))
    radius = np.asarray(params["feature_radius"], dtype=np.float64)
    width = np.asarray(params["feature_width"], dtype=np.float64)
    contrast = np.asarray(params["feature_contrast"], dtype=np.float64)
    c = lambda values: _column(simulator, values)  # noqa: E731
    x, y = simulator.grid

    def elliptical(xc: np.ndarray, yc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        dx, dy = x - c(xc), y - c(yc)
        cos, sin = c(np.cos(phi)), c(np.sin(phi))
        xt, yt = cos * dx + sin * dy, cos * dy - sin * dx
        return xt * torch.sqrt(c(q)), yt / torch.sqrt(c(q))

    if kind == "ring":
        xt, yt = elliptical(cx, cy)
        r = torch.sqrt(xt * xt + yt * yt)
        theta = torch.atan2(yt, xt)
        modulation = 1.0 - c(contrast) + c(contrast) * torch.cos(0.5 * (theta - c(angle))) ** 2
        shape = torch.exp(-0.5 * ((r - c(radius)) / c(width)) ** 2) * modulation
    elif kind == "spiral":
        xt, yt = elliptical(cx, cy)
        r = torch.sqrt(xt * xt + yt * yt) + 1e-6
        theta = torch.atan2(yt, xt)
        pitch = np.deg2rad(width)
        arms = torch.cos(2.0 * (theta - c(angle)) - 2.0 * torch.log(r / c(radius)) / c(np.tan(pitch)))
        shape = torch.exp(-r / c(radius)) * (1.0 + c(contrast) * arms)
    else:
        if kind == "companion":
            copies, r_eff, sersic_n = contrast.astype(int), width, np.ones(n)
        else:
            copies, r_eff, sersic_n = np.ones(n, dtype=int), width * contrast / 2.0, np.full(n, 4.0)
        shape = torch.zeros((n, *x.shape[-2:]), dtype=simulator.dtype, device=simulator.device)
        for k in range(int(copies.max())):
            # Companions spread in angle; each takes an equal share of the flux.
            present = (k < copies).astype(np.float64)
            a = angle + k * 2.0 * np.pi / np.maximum(copies, 1) + 0.4 * k
            xc, yc = cx + radius * (1 + 0.3 * k) * np.cos(a), cy + radius * (1 + 0.3 * k) * np.sin(a)
            amplitude = present * sersic_amplitude(flux / np.maximum(copies, 1), r_eff, sersic_n, simulator.sersic_bn_method)
            shape = shape + sersic_profile(
                x, y, c(amplitude), c(r_eff), c(sersic_n), c(sersic_bn(sersic_n, simulator.sersic_bn_method)),
                c(np.cos(phi + k)), c(np.sin(phi + k)), c(q), c(xc), c(yc),
            )
        return simulator.convolve(simulator.bin(shape))
    binned = simulator.bin(shape)
    # Normalise numerically to the requested total flux (no closed form for the modulated shapes).
    total = binned.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-30)
    binned = binned / total * c(flux)
    return simulator.convolve(binned)
