"""Survey-like alert triplets simulated stamp by stamp: a real/bogus training set per survey.

The injection training set of :mod:`skysift.realbogus.injection` is made from
whole simulated image pairs run through skysift's own subtraction; it teaches
the network what skysift's simulated candidates look like, not what a given
survey's alerts look like (pixel scale, seeing, reference depth, noise,
background and stamp conventions differ; see issue #21). This module makes
the training set in the survey's own terms (:class:`~skysift.realbogus.survey.SurveyPreset`):
raw ``science, reference, difference`` triplets of the survey's stamp size,
centred on the candidate as the survey cuts them, with the science stamp not
background subtracted, the reference a deep coadd on the science photometric
scale and the difference shown with the candidate positive (ZTF flips the
difference of negative subtractions, ``isdiffpos = 'f'``).

Each sample is a *background* plus one *family* of centred signal:

* backgrounds: simulated (:func:`simulated_background`: sky, its noise, field
  stars and galaxies seen through the science and reference PSFs, an imperfect
  subtraction of them), or **real** (:class:`RealBackgrounds`: windows of the
  science, template and difference stamps of real alert packets, so the network
  sees real noise, real galaxies and real templates);
* real families (label 1): ``"transient"`` (a PSF-shaped point source, on a host
  galaxy or not, nuclear or offset) and ``"variable"`` (a star of the reference
  brighter or fainter in the science image: positive and negative subtractions);
* bogus families (label 0): ``"dipole"`` (misalignment), ``"psf-mismatch"``
  (residual of a bright star under a wrong convolution kernel and photometric
  scale), ``"spike"`` (diffraction spikes of a bright star whose science and
  reference spikes differ), ``"ghost"`` (out-of-focus reflection, science only),
  ``"cosmic-ray"``, ``"hot-pixel"``, ``"bad-column"``, ``"edge"`` (candidate at a
  CCD edge: truncated stamp and a subtraction ramp along the edge) and
  ``"noise"`` (nothing there but a noise excursion that crossed the detection
  threshold of the matched-filtered difference).

Every family is a pure function of (rng, :class:`StampContext`) returning the
noiseless layers it adds to the science, reference and difference stamps and
the parameters drawn (stored in the sample's row), so the same families run on
simulated and real backgrounds. Signal of the science image reaches the
difference through ZOGY's science kernel (:meth:`StampContext.science_to_difference`),
as in ZTF's differences: a cosmic ray sharp in the science is softened in the
difference when the reference PSF is the broader one. Bogus families are scaled so that the
candidate would be detected (a positive difference peak of at least
``detection_snr`` noise sigmas), as the survey only sends detections.

A fraction of all samples (``SurveyPreset.edge_fraction``, both classes alike)
is truncated at a CCD edge and padded as :func:`skysift.realbogus.ztf.read_alerts`
pads real stamps, so padding says nothing about the label.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage, signal

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.io import write_product
from skysift.log import get_logger
from skysift.realbogus.survey import SurveyPreset, get_survey

__all__ = [
    "BOGUS_FAMILIES",
    "Background",
    "FAMILIES",
    "REAL_FAMILIES",
    "Layers",
    "RealBackgrounds",
    "StampContext",
    "StampSettings",
    "fill_padding",
    "make_survey_training_set",
    "moffat_psf",
    "render_stars",
    "sersic_galaxy",
    "simulate_triplets",
    "simulated_background",
    "truncate_at_edge",
]

log = get_logger(__name__)

REAL_FAMILIES = ("transient", "variable")
BOGUS_FAMILIES = ("dipole", "psf-mismatch", "spike", "ghost", "cosmic-ray", "hot-pixel", "bad-column", "edge", "noise")
FAMILIES = REAL_FAMILIES + BOGUS_FAMILIES
#: Default relative weights of the bogus families (normalised over those chosen).
DEFAULT_BOGUS_WEIGHTS: dict[str, float] = {
    "dipole": 1.5, "psf-mismatch": 1.5, "spike": 0.7, "ghost": 0.5, "cosmic-ray": 1.2,
    "hot-pixel": 0.8, "bad-column": 0.6, "edge": 0.7, "noise": 0.3,
}
#: Sub-pixel oversampling of the rendered PSFs (the ZTF core is only ~2 px wide).
OVERSAMPLE = 3


@dataclass(frozen=True)
class StampSettings:
    """What :func:`simulate_triplets` draws, beyond the survey preset.

    Attributes
    ----------
    real_fraction : float
        Fraction of label-1 samples.
    real_background_fraction : float
        Fraction of samples on real alert backgrounds (used only when backgrounds are given).
    snr_range : (float, float)
        Log-uniform PSF-photometry S/N, in the difference, of real candidates
        and the target peak S/N of bogus ones.
    detection_snr : float
        Bogus signals are scaled to at least this peak S/N in the difference
        (the survey's detection threshold).
    host_fraction : float
        Fraction of transients on a host galaxy (a fifth of them nuclear).
    bogus_weights : mapping of str to float
        Relative frequency of each bogus family (families absent or 0 are not made).
    star_density_range : (float, float)
        Log-uniform mean number of field stars per stamp (crowding varies with latitude).
    """

    real_fraction: float = 0.5
    real_background_fraction: float = 0.5
    snr_range: tuple[float, float] = (5.0, 300.0)
    detection_snr: float = 5.0
    host_fraction: float = 0.5
    bogus_weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_BOGUS_WEIGHTS))
    star_density_range: tuple[float, float] = (1.0, 40.0)

    def __post_init__(self) -> None:
        if not 0.0 < self.real_fraction < 1.0:
            raise ValueError(f"real_fraction must be in (0, 1), got {self.real_fraction}")
        if not 0.0 <= self.real_background_fraction <= 1.0:
            raise ValueError(f"real_background_fraction must be in [0, 1], got {self.real_background_fraction}")
        if not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise ValueError(f"snr_range must satisfy 0 < low <= high, got {self.snr_range}")
        unknown = set(self.bogus_weights) - set(BOGUS_FAMILIES)
        if unknown:
            raise ValueError(f"unknown bogus families {sorted(unknown)}; choose from {', '.join(BOGUS_FAMILIES)}")
        if not any(w > 0 for w in self.bogus_weights.values()):
            raise ValueError("at least one bogus family needs a weight > 0")


@dataclass(frozen=True)
class StampContext:
    """What a family needs to know about the stamp it draws into.

    Attributes
    ----------
    size : int
        Stamp side.
    x, y : float
        Candidate position (0-based pixel coordinates).
    science_fwhm, reference_fwhm, beta : float
        PSF FWHMs (pixels) and Moffat index.
    sigma_science, sigma_reference, sigma_difference : float
        Background noise of each stamp (DN).
    gain : float
        Electrons per DN.
    """

    size: int
    x: float
    y: float
    science_fwhm: float
    reference_fwhm: float
    beta: float
    sigma_science: float
    sigma_reference: float
    sigma_difference: float
    gain: float

    def psf(self, fwhm: float | None = None, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        """Unit-flux Moffat PSF at the candidate plus ``(dx, dy)``, computed within 8 FWHM of it."""
        fwhm = self.science_fwhm if fwhm is None else fwhm
        return moffat_psf(self.size, self.x + dx, self.y + dy, fwhm, self.beta, box=int(8 * fwhm) + 3)

    def flux_for_snr(self, snr: float) -> float:
        """Flux (DN) of a point source with PSF-photometry S/N ``snr`` in the difference (background-limited)."""
        psf = self.psf()
        return float(snr * self.sigma_difference / np.sqrt(np.sum(psf**2)))

    def matched_filter_snr(self, difference: np.ndarray) -> float:
        """S/N of ``difference`` at the candidate in the PSF-matched-filtered difference (the survey's detection statistic)."""
        psf = self.psf()
        return float(np.sum(difference * psf) / (self.sigma_difference * np.sqrt(np.sum(psf**2))))

    def science_to_difference(self, layer: np.ndarray) -> np.ndarray:
        """What a signal of the science image becomes in a ZOGY difference.

        ZTF subtracts with ZOGY (Zackay, Ofek & Gal-Yam 2016, eq. 13; Masci et
        al. 2019, PASP 131, 018003): the science image enters the difference
        through ``K_n = P_r / sqrt(s_n**2 |P_r|**2 + s_r**2 |P_n|**2)`` (Fourier
        space; ``P`` the PSFs, ``s`` the noise of science and flux-matched
        reference). Where the reference PSF is broader than the science's, the
        kernel is a low-pass filter, so a cosmic ray or hot pixel sharp in the
        science is softened in the difference; where it is sharper, ``K_n`` is
        close to a delta. Normalised to unit sum (the difference is on the
        science's photometric scale), so a transient keeps its flux.
        """
        return _zogy_science_kernel_apply(layer, self.science_fwhm, self.reference_fwhm, self.beta,
                                          self.sigma_science, self.sigma_reference)


@dataclass
class Layers:
    """Noiseless signal (DN) one family adds to each stamp, and the parameters it drew."""

    science: np.ndarray
    reference: np.ndarray
    difference: np.ndarray
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    truncate: tuple[str, int] | None = None
    #: The difference layer is written as science-image signal (minus the reference in the
    #: science's PSF), so it still goes through ZOGY's science kernel; False for signals
    #: that are features of the difference itself (an edge ramp, a noise excursion).
    through_subtraction: bool = True

    @classmethod
    def empty(cls, size: int) -> Layers:
        zeros = np.zeros((size, size))
        return cls(zeros.copy(), zeros.copy(), zeros.copy())


# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------
def _grid(size: int, oversample: int = OVERSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    axis = (np.arange(size)[:, None] + offsets[None, :]).ravel()
    return np.meshgrid(axis, axis, indexing="xy")


def _bin(values: np.ndarray, size: int, oversample: int = OVERSAMPLE) -> np.ndarray:
    return values.reshape(size, oversample, size, oversample).mean(axis=(1, 3))


def moffat_psf(size: int, x: float, y: float, fwhm: float, beta: float = 3.0, *, box: int | None = None) -> np.ndarray:
    """Unit-flux circular Moffat profile centred on ``(x, y)``, integrated over pixels.

    ``I(r) = (1 + (r / alpha)**2)**(-beta)`` with ``alpha = fwhm / (2 sqrt(2**(1/beta) - 1))``
    (Moffat 1969), normalised over the infinite plane (``pi alpha**2 / (beta - 1)``),
    so flux beyond the stamp is lost as in a cutout. With ``box``, only pixels
    within ``box`` of the centre are computed (the rest stay 0): field stars.
    """
    if fwhm <= 0 or beta <= 1:
        raise ValueError(f"need fwhm > 0 and beta > 1, got {fwhm}, {beta}")
    out = np.zeros((size, size))
    cx, cy = int(np.ceil(x - 0.5)), int(np.ceil(y - 0.5))
    half = size if box is None else box
    x0, x1 = max(cx - half, 0), min(cx + half + 1, size)
    y0, y1 = max(cy - half, 0), min(cy + half + 1, size)
    if x0 >= x1 or y0 >= y1:
        return out
    offsets = (np.arange(OVERSAMPLE) + 0.5) / OVERSAMPLE - 0.5
    gx = (np.arange(x0, x1)[:, None] + offsets[None, :]).ravel() - x
    gy = (np.arange(y0, y1)[:, None] + offsets[None, :]).ravel() - y
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    values = (1.0 + (gy[:, None] ** 2 + gx[None, :] ** 2) / alpha**2) ** (-beta)
    out[y0:y1, x0:x1] = values.reshape(y1 - y0, OVERSAMPLE, x1 - x0, OVERSAMPLE).mean(axis=(1, 3))
    return out / (np.pi * alpha**2 / (beta - 1.0))


def render_stars(size: int, x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float, beta: float, box: int) -> np.ndarray:
    """Sum of Moffat stars (as :func:`moffat_psf`), each computed within ``box`` pixels of its centre.

    Vectorised over the stars: the field of a stamp costs one array expression.
    Stars centred more than ``box`` pixels outside the stamp are ignored.
    """
    x, y, flux = (np.atleast_1d(np.asarray(v, float)) for v in (x, y, flux))
    side = 2 * box + 1
    # Canvas with a margin of one box on every side: a stamp at pixel (row, column) starts at (row, column).
    canvas = np.zeros((size + 2 * side, size + 2 * side))
    cx, cy = np.ceil(x - 0.5).astype(int), np.ceil(y - 0.5).astype(int)
    inside = (cx >= -box) & (cx < size + box) & (cy >= -box) & (cy < size + box)
    if not inside.any():
        return canvas[side : side + size, side : side + size]
    x, y, flux, cx, cy = x[inside], y[inside], flux[inside], cx[inside], cy[inside]
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    offsets = (np.arange(OVERSAMPLE) + 0.5) / OVERSAMPLE - 0.5
    local = (np.arange(-box, box + 1)[:, None] + offsets[None, :]).ravel()
    gx = local[None, :] + (cx - x)[:, None]
    gy = local[None, :] + (cy - y)[:, None]
    values = (1.0 + (gy[:, :, None] ** 2 + gx[:, None, :] ** 2) / alpha**2) ** (-beta)
    stamps = values.reshape(len(cx), side, OVERSAMPLE, side, OVERSAMPLE).mean(axis=(2, 4))
    stamps *= (flux / (np.pi * alpha**2 / (beta - 1.0)))[:, None, None]
    for stamp, column, row in zip(stamps, cx + box + 1, cy + box + 1, strict=True):
        canvas[row : row + side, column : column + side] += stamp
    return canvas[side : side + size, side : side + size]


def sersic_galaxy(
    size: int, x: float, y: float, effective_radius: float, index: float, axis_ratio: float, angle: float, psf: np.ndarray
) -> np.ndarray:
    """Unit-flux Sersic galaxy (pixels) convolved with ``psf`` (a centred unit-sum stamp)."""
    # Pixel-centre sampling is enough once the profile is wider than a pixel.
    gx, gy = _grid(size, OVERSAMPLE if effective_radius < 2.0 else 1)
    cos, sin = np.cos(angle), np.sin(angle)
    u = (gx - x) * cos + (gy - y) * sin
    v = (-(gx - x) * sin + (gy - y) * cos) / axis_ratio
    b = 2.0 * index - 1.0 / 3.0 + 0.009876 / index  # Prugniel & Simien (1997)
    profile = _bin(np.exp(-b * (np.hypot(u, v) / effective_radius) ** (1.0 / index)), size,
                   OVERSAMPLE if effective_radius < 2.0 else 1)
    profile /= profile.sum()
    return signal.fftconvolve(profile, psf, mode="same")


@functools.lru_cache(maxsize=8)
def _zogy_science_transfer(size: int, science_fwhm: float, reference_fwhm: float, beta: float,
                           sigma_science: float, sigma_reference: float) -> np.ndarray:
    """Fourier transform of ZOGY's unit-sum science kernel on a ``size`` grid (origin at pixel 0)."""
    centre = (size - 1) / 2.0

    def otf(fwhm: float) -> np.ndarray:
        return np.fft.fft2(np.fft.ifftshift(moffat_psf(size, centre, centre, fwhm, beta, box=int(8 * fwhm) + 3)))

    science_otf, reference_otf = otf(science_fwhm), otf(reference_fwhm)
    denominator = np.sqrt(sigma_science**2 * np.abs(reference_otf) ** 2 + sigma_reference**2 * np.abs(science_otf) ** 2)
    transfer = reference_otf / np.maximum(denominator, 1e-12 * denominator.max())
    return transfer / transfer[0, 0]


def _zogy_science_kernel_apply(layer: np.ndarray, science_fwhm: float, reference_fwhm: float, beta: float,
                               sigma_science: float, sigma_reference: float) -> np.ndarray:
    """``layer`` convolved (circularly, on the stamp grid) with ZOGY's unit-sum science kernel; see
    :meth:`StampContext.science_to_difference`."""
    transfer = _zogy_science_transfer(layer.shape[-1], science_fwhm, reference_fwhm, beta, sigma_science, sigma_reference)
    return np.fft.ifft2(np.fft.fft2(layer) * transfer).real


def _centred_psf(context: StampContext, fwhm: float) -> np.ndarray:
    centre = (context.size - 1) / 2.0
    return moffat_psf(context.size, centre, centre, fwhm, context.beta, box=int(8 * fwhm) + 3)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _scale_to_detection(layers: Layers, context: StampContext, snr: float) -> Layers:
    """Scale every layer so the difference's peak near the candidate is ``snr`` sigmas."""
    c = context.size // 2
    peak = float(layers.difference[c - 2 : c + 3, c - 2 : c + 3].max())
    if peak <= 0:
        return layers
    factor = snr * context.sigma_difference / peak
    return dataclasses.replace(layers, science=layers.science * factor, reference=layers.reference * factor,
                               difference=layers.difference * factor)


# ---------------------------------------------------------------------------
# Families: (rng, context, settings) -> Layers
# ---------------------------------------------------------------------------
def _transient(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    snr = _log_uniform(rng, *settings.snr_range)
    flux = context.flux_for_snr(snr)
    point = flux * context.psf()
    layers = Layers(point.copy(), np.zeros_like(point), point.copy(), {"snr": snr, "flux": flux})
    if rng.uniform() < settings.host_fraction:
        radius = _log_uniform(rng, 1.0, 8.0)
        nuclear = rng.uniform() < 0.2
        offset = 0.0 if nuclear else rng.uniform(0.3, 2.0) * radius
        direction = rng.uniform(0, 2 * np.pi)
        gx, gy = context.x - offset * np.cos(direction), context.y - offset * np.sin(direction)
        index, ratio, angle = float(rng.choice([1.0, 2.5, 4.0])), rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        host_flux = flux * _log_uniform(rng, 0.3, 30.0)
        science_host = host_flux * sersic_galaxy(context.size, gx, gy, radius, index, ratio, angle,
                                                 _centred_psf(context, context.science_fwhm))
        reference_host = host_flux * sersic_galaxy(context.size, gx, gy, radius, index, ratio, angle,
                                                   _centred_psf(context, context.reference_fwhm))
        layers.science += science_host
        layers.reference += reference_host
        layers.params.update(host_flux=host_flux, host_radius=radius, host_offset=offset, host_index=index)
    return layers


def _variable(rng: np.random.Generator, context: StampContext, settings: StampSettings, *, negative: bool) -> Layers:
    snr = _log_uniform(rng, *settings.snr_range)
    change = context.flux_for_snr(snr)
    # The star's reference flux: from a fraction of the change (large amplitude) to many times it.
    star = change * _log_uniform(rng, 0.2, 20.0)
    if negative:
        star = max(star, change * 1.05)  # a fading star cannot go below zero flux
    science_flux = star - change if negative else star + change
    science_psf, reference_psf = context.psf(), context.psf(context.reference_fwhm)
    return Layers(science_flux * science_psf, star * reference_psf, change * science_psf,
                  {"snr": snr, "flux": change, "star_flux": star, "negative": float(negative)})


def _dipole(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    shift = _log_uniform(rng, 0.3, 2.5)
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = shift * np.cos(angle), shift * np.sin(angle)
    star = 1.0
    science = star * context.psf(dx=dx / 2, dy=dy / 2)
    reference_in_science = star * context.psf(dx=-dx / 2, dy=-dy / 2)
    layers = Layers(science, star * context.psf(context.reference_fwhm, -dx / 2, -dy / 2), science - reference_in_science,
                    {"shift": shift})
    layers = _scale_to_detection(layers, context, _log_uniform(rng, max(settings.detection_snr, 5.0), settings.snr_range[1]))
    layers.params["star_flux"] = float(layers.science.sum())
    return layers


def _psf_mismatch(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    # The matched reference has the wrong width (kernel error) and a photometric scale error.
    # Mostly a width error: a pure scale error leaves a PSF-shaped residual, which
    # is a variable star to any classifier (and to the survey's).
    width_error = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.35)
    scale_error = rng.normal(0.0, 0.01)
    science = context.psf()
    matched = (1.0 + scale_error) * context.psf(context.science_fwhm * (1.0 + width_error))
    residual = science - matched
    layers = Layers(science, context.psf(context.reference_fwhm), residual,
                    {"width_error": float(width_error), "scale_error": float(scale_error)})
    if residual[context.size // 2 - 2 : context.size // 2 + 3, context.size // 2 - 2 : context.size // 2 + 3].max() <= 0:
        # A negative core: the survey detects the positive ring, not the centre; flip the errors' sign.
        layers = dataclasses.replace(layers, difference=-residual)
        layers.params["width_error"], layers.params["scale_error"] = -width_error, -scale_error
    layers = _scale_to_detection(layers, context, _log_uniform(rng, max(settings.detection_snr, 5.0), settings.snr_range[1]))
    layers.params["star_flux"] = float(layers.science.sum())
    return layers


def _spike_pattern(size: int, sx: float, sy: float, angle: float, length: float, width: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    pattern = np.zeros((size, size))
    for theta in (angle, angle + np.pi / 2):
        u = (xx - sx) * np.cos(theta) + (yy - sy) * np.sin(theta)
        v = -(xx - sx) * np.sin(theta) + (yy - sy) * np.cos(theta)
        pattern += np.exp(-0.5 * (v / width) ** 2) / (1.0 + np.abs(u) / length) ** 1.5
    return pattern


def _spike(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    # A bright star off the candidate, along one of its spikes; the reference's spikes differ
    # in strength and angle (coadd of other nights, saturation), leaving a streak in the difference.
    angle = rng.uniform(0, np.pi / 2)
    distance = rng.uniform(6.0, 30.0)
    arm = angle + rng.integers(0, 4) * np.pi / 2
    sx, sy = context.x + distance * np.cos(arm), context.y + distance * np.sin(arm)
    width = rng.uniform(0.6, 1.2) * context.science_fwhm / 2.355
    length = rng.uniform(5.0, 20.0)
    science_spikes = _spike_pattern(context.size, sx, sy, angle, length, width)
    reference_spikes = rng.uniform(0.0, 0.8) * _spike_pattern(context.size, sx, sy, angle + np.deg2rad(rng.normal(0, 1.0)),
                                                               length, width * context.reference_fwhm / context.science_fwhm)
    core = 50.0 * length * context.psf(dx=sx - context.x, dy=sy - context.y)
    layers = Layers(science_spikes + core, reference_spikes + core, science_spikes - reference_spikes,
                    {"distance": distance, "spike_length": length})
    return _scale_to_detection(layers, context, _log_uniform(rng, max(settings.detection_snr, 5.0), 60.0))


def _ghost(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    radius = rng.uniform(3.0, 14.0)
    thickness = rng.uniform(1.0, 3.0)
    offset = rng.uniform(0.0, radius)
    direction = rng.uniform(0, 2 * np.pi)
    gx, gy = context.x + offset * np.cos(direction), context.y + offset * np.sin(direction)
    yy, xx = np.mgrid[0 : context.size, 0 : context.size].astype(float)
    ring = np.exp(-0.5 * ((np.hypot(xx - gx, yy - gy) - radius) / thickness) ** 2)
    ring += rng.uniform(0.0, 0.8) * np.exp(-0.5 * (np.hypot(xx - gx, yy - gy) / (0.6 * radius)) ** 2)
    layers = Layers(ring, np.zeros_like(ring), ring.copy(), {"ghost_radius": radius})
    return _scale_to_detection(layers, context, _log_uniform(rng, max(settings.detection_snr, 5.0), 40.0))


def _track(size: int, x: float, y: float, length: int, angle: float, width: int) -> np.ndarray:
    image = np.zeros((size, size))
    steps = np.arange(length)
    columns = np.ceil(x - 0.5 + steps * np.cos(angle) - 1e-9).astype(int)
    rows = np.ceil(y - 0.5 + steps * np.sin(angle) - 1e-9).astype(int)
    for w in range(width):
        r, c = rows + (w if abs(np.cos(angle)) > 0.7 else 0), columns + (w if abs(np.cos(angle)) <= 0.7 else 0)
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        image[r[inside], c[inside]] = 1.0
    return image


def _cosmic_ray(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    # Charge deposited in the detector: sharper than the PSF, in the science exposure only.
    length = int(rng.choice([1, 2, 3, 4, 6, 9, 14], p=[0.25, 0.2, 0.15, 0.15, 0.1, 0.1, 0.05]))
    track = _track(context.size, context.x, context.y, length, rng.uniform(0, 2 * np.pi), int(rng.choice([1, 2], p=[0.7, 0.3])))
    track *= rng.uniform(0.4, 1.0, size=track.shape)
    track = ndimage.gaussian_filter(track, 0.3)  # charge diffusion
    peak = _log_uniform(rng, max(settings.detection_snr, 5.0), 1000.0) * context.sigma_science
    track *= peak / track.max()
    return Layers(track, np.zeros_like(track), track.copy(), {"cr_length": float(length), "snr": peak / context.sigma_science})


def _hot_pixel(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    image = np.zeros((context.size, context.size))
    row, column = int(np.ceil(context.y - 0.5)), int(np.ceil(context.x - 0.5))
    n = int(rng.choice([1, 2, 4], p=[0.6, 0.25, 0.15]))
    if n == 1:
        offsets = [(0, 0)]
    elif n == 2:
        offsets = [(0, 0), (int(rng.choice([-1, 1])), 0)]  # a pair in one column
    else:
        offsets = [(0, 0), (1, 0), (0, 1), (1, 1)]  # a 2x2 block
    for dy, dx in offsets:
        image[np.clip(row + dy, 0, context.size - 1), np.clip(column + dx, 0, context.size - 1)] = 1.0
    peak = _log_uniform(rng, max(settings.detection_snr, 5.0), 2000.0) * context.sigma_science
    image *= peak
    # A warm pixel is also in the reference when its frames were taken on the same CCD; mostly subtracted badly.
    in_reference = rng.uniform() < 0.3
    reference = image * rng.uniform(0.1, 0.6) if in_reference else np.zeros_like(image)
    return Layers(image, reference, image - reference, {"snr": peak / context.sigma_science, "n_pixels": float(n)})


def _bad_column(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    image = np.zeros((context.size, context.size))
    column = int(np.ceil(context.x - 0.5))
    start = int(rng.integers(0, context.size // 2 + 1)) if rng.uniform() < 0.4 else 0
    level = _log_uniform(rng, 3.0, 50.0) * context.sigma_science
    image[start:, column] = level
    if rng.uniform() < 0.3:
        image[start:, min(column + 1, context.size - 1)] = level * rng.uniform(0.2, 1.0)
    # The candidate is where the column brightens further (a charge trap or a hot spot on it).
    blob = _log_uniform(rng, max(settings.detection_snr, 5.0), 200.0) * context.sigma_science
    image[int(np.ceil(context.y - 0.5)), column] += blob
    if rng.uniform() < 0.5:
        image = image.T  # bad rows (bleed trails, readout) too
    return Layers(image, np.zeros_like(image), image.copy(), {"snr": blob / context.sigma_science})


def _edge(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    # The candidate a few pixels from a CCD edge, where the subtraction ramps up or rings.
    side = str(rng.choice(["left", "right", "bottom", "top"]))
    distance = int(rng.integers(1, 7))
    yy, xx = np.mgrid[0 : context.size, 0 : context.size].astype(float)
    from_edge = {"left": xx - (context.x - distance), "right": (context.x + distance) - xx,
                 "bottom": yy - (context.y - distance), "top": (context.y + distance) - yy}[side]
    scale = rng.uniform(1.5, 6.0)
    ramp = np.exp(-np.clip(from_edge, 0, None) / scale)
    along = yy if side in ("left", "right") else xx
    ramp *= 1.0 + 0.5 * np.sin(along / rng.uniform(2.0, 8.0) + rng.uniform(0, 2 * np.pi))
    ramp += 0.3 * context.psf(context.science_fwhm * 1.5) / context.psf(context.science_fwhm * 1.5).max()
    science = ramp * rng.uniform(0.0, 1.0)
    layers = Layers(science, np.zeros_like(ramp), ramp, {"edge_distance": float(distance)}, through_subtraction=False)
    layers = _scale_to_detection(layers, context, _log_uniform(rng, max(settings.detection_snr, 5.0), 60.0))
    c = context.size // 2
    kept = {"left": c - distance, "right": c + distance, "bottom": c - distance, "top": c + distance}[side]
    layers.truncate = (side, kept)
    return layers


def _noise(rng: np.random.Generator, context: StampContext, settings: StampSettings) -> Layers:
    # Nothing there, yet detected: ZTF extracts candidates where the PSF-matched-filtered
    # difference reaches 5 sigma (Masci et al. 2019), so its "nothing" bogus are noise
    # excursions that crossed that threshold, not blank stamps. Given a matched-filter
    # value nu, a white-noise field's expectation is nu sigma PSF / |PSF| (a faint point
    # source); correlated noise (resampling, kernel convolution) adds its correlation
    # length to the width and fattens the tail beyond the Gaussian nu**2 - t**2 ~ Exp(2).
    threshold = max(settings.detection_snr, 5.0)
    snr = float(np.sqrt(threshold**2 + rng.exponential(2.0 * rng.uniform(1.0, 3.0))))
    correlation_fwhm = rng.uniform(0.0, 2.0) * context.science_fwhm
    excursion = context.psf(float(np.hypot(context.science_fwhm, correlation_fwhm)))
    excursion *= snr / context.matched_filter_snr(excursion)
    # The excursion is a science-noise peak or a template-noise dip in the ratio of their variances.
    science_share = float(np.clip(context.sigma_science**2 / context.sigma_difference**2, 0.0, 1.0))
    return Layers(science_share * excursion, -(1.0 - science_share) * excursion, excursion,
                  {"snr": snr, "correlation_fwhm": correlation_fwhm}, through_subtraction=False)


_FAMILY_FUNCTIONS: dict[str, Callable[[np.random.Generator, StampContext, StampSettings], Layers]] = {
    "transient": _transient,
    "dipole": _dipole,
    "psf-mismatch": _psf_mismatch,
    "spike": _spike,
    "ghost": _ghost,
    "cosmic-ray": _cosmic_ray,
    "hot-pixel": _hot_pixel,
    "bad-column": _bad_column,
    "edge": _edge,
    "noise": _noise,
}


# ---------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------
@dataclass
class Background:
    """One stamp's science, reference and difference before the family's signal, with their noise."""

    science: np.ndarray
    reference: np.ndarray
    difference: np.ndarray
    sigma_science: float
    sigma_reference: float
    sigma_difference: float
    science_fwhm: float
    reference_fwhm: float
    beta: float
    source: str = "simulated"
    group: str = ""


def _noise_sigma(sky: float, preset: SurveyPreset) -> float:
    return float(np.sqrt(sky / preset.gain + (preset.read_noise / preset.gain) ** 2))


def simulated_background(rng: np.random.Generator, preset: SurveyPreset, settings: StampSettings) -> Background:
    """A survey-like stamp triplet with no candidate: sky, noise, field stars and galaxies.

    The science stamp keeps its sky (alert stamps are not background
    subtracted); the reference is a coadd ``reference_depth`` times deeper,
    with the science sky level and photometric scale; the difference is the
    science noise plus the matched reference's noise and an imperfect
    subtraction of the field (kernel width and photometric scale errors of a
    few per cent), so bright field stars leave residuals as they do in survey
    differences.
    """
    size = preset.stamp_size
    sky = _log_uniform(rng, *preset.sky_range)
    sigma_science = _noise_sigma(sky, preset)
    depth = rng.uniform(*preset.reference_depth_range)
    sigma_reference = sigma_science / depth
    fwhm = preset.fwhm_pixels(rng.uniform(*preset.seeing_range))
    reference_fwhm = preset.fwhm_pixels(rng.uniform(*preset.reference_seeing_range))
    beta = rng.uniform(*preset.moffat_beta_range)

    science_static = np.zeros((size, size))
    reference_static = np.zeros((size, size))
    matched_static = np.zeros((size, size))
    width_error, scale_error = rng.normal(0.0, 0.03), rng.normal(0.0, 0.02)
    n_stars = rng.poisson(_log_uniform(rng, *settings.star_density_range))
    centre_psf = moffat_psf(size, size // 2, size // 2, fwhm, beta, box=int(8 * fwhm) + 3)
    centre_reference_psf = moffat_psf(size, size // 2, size // 2, reference_fwhm, beta, box=int(8 * reference_fwhm) + 3)
    unit = float(sigma_science / np.sqrt(np.sum(centre_psf**2)))  # flux of a S/N-1 star
    star_x, star_y = rng.uniform(-3, size + 2, size=(2, n_stars))
    star_flux = unit * 3.0 / rng.uniform(0.0005, 1.0, size=n_stars)  # S/N from 3 up, dN/dS ~ S^-2
    bright = star_flux > 300 * unit  # whose wings matter over the whole stamp
    # Faint stars: 3 FWHM hold all but ~0.1% of the peak; bright ones get the whole stamp.
    for selection, box in ((~bright, int(3 * fwhm) + 2), (bright, size)):
        if selection.any():
            where = (size, star_x[selection], star_y[selection], star_flux[selection])
            science_static += render_stars(*where, fwhm, beta, box)
            reference_static += render_stars(*where, reference_fwhm, beta, box)
            matched_static += (1.0 + scale_error) * render_stars(*where, fwhm * (1.0 + width_error), beta, box)
    for _ in range(rng.poisson(1.5)):
        x, y = rng.uniform(0, size, size=2)
        shape = (_log_uniform(rng, 1.0, 6.0), float(rng.choice([1.0, 4.0])), rng.uniform(0.3, 1.0), rng.uniform(0, np.pi))
        flux = unit * _log_uniform(rng, 5.0, 300.0)
        galaxy = flux * sersic_galaxy(size, x, y, *shape, centre_psf)
        science_static += galaxy
        reference_static += flux * sersic_galaxy(size, x, y, *shape, centre_reference_psf)
        matched_static += (1.0 + scale_error) * galaxy
    science_static = np.minimum(science_static, preset.saturation - sky)

    science_noise = rng.normal(size=(size, size)) * np.sqrt(sigma_science**2 + np.clip(science_static, 0, None) / preset.gain)
    # References are coadds of frames resampled onto one grid, and the template stamp is the
    # reference resampled again onto the science frame (Masci et al. 2019): its noise is
    # correlated between neighbours (the 47 shared packets' templates: lag-1 autocorrelation
    # 0.2-0.4 in sky corners; a Gaussian of sigma s gives exp(-1 / (4 s**2)): s 0.35-0.55 px).
    reference_noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(0.35, 0.55))
    reference_noise *= sigma_reference / max(float(np.std(reference_noise)), 1e-12)
    # The reference's noise after convolution to the science PSF (smoother, and a little weaker).
    kernel_sigma = np.sqrt(max(fwhm**2 - reference_fwhm**2, 0.25)) / 2.355
    matched_noise = ndimage.gaussian_filter(reference_noise, kernel_sigma)
    matched_noise *= sigma_reference / max(float(np.std(matched_noise)), 1e-12) * 0.8
    difference = (science_static - matched_static) + science_noise - matched_noise
    return Background(
        science=sky + science_static + science_noise,
        reference=sky * rng.uniform(0.97, 1.03) + reference_static + reference_noise,
        difference=difference,
        sigma_science=sigma_science, sigma_reference=sigma_reference,
        sigma_difference=float(np.sqrt(sigma_science**2 + (0.8 * sigma_reference) ** 2)),
        science_fwhm=fwhm, reference_fwhm=reference_fwhm, beta=beta,
    )


def _mad_sigma(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(finite - np.median(finite)))) if finite.size else 0.0


class RealBackgrounds:
    """Windows of real alert triplets to inject into (science, template, difference).

    Parameters
    ----------
    directories : sequence of path-like
        Directories of Avro alert packets (read with :func:`skysift.realbogus.ztf.read_alerts`).
    preset : SurveyPreset
        The survey the packets come from (stamp size, seeing for the injected PSFs).
    exclude : sequence of str
        objectIds never used (e.g. the evaluation fold of a cross-fitting scheme).
    min_offset : float
        Injections go at least this far (pixels) from the alert's own candidate,
        at the centre of a new window cut from the stamps mirror-extended at their borders.

    Raises
    ------
    InputDataError
        If a directory is missing or holds no usable alert (the message names it).
    """

    def __init__(self, directories: Sequence[str | os.PathLike[str]], preset: SurveyPreset, *,
                 exclude: Sequence[str] = (), min_offset: float = 8.0) -> None:
        from skysift.realbogus.ztf import read_alerts

        cutouts, object_ids, files = [], [], []
        for directory in directories:
            if not Path(directory).is_dir():
                raise InputDataError(f"{directory}: no such alert directory (realbogus.real_backgrounds)")
            stamps, table = read_alerts(directory, size=preset.stamp_size)
            usable = np.asarray(table["usable"], bool) if len(table) else np.zeros(0, bool)
            keep = usable & ~np.isin(np.asarray(table["objectId"], str), list(exclude))
            if not usable.any():
                raise InputDataError(f"{directory}: no usable alert packet to use as a background")
            cutouts.append(stamps[keep])
            object_ids += list(np.asarray(table["objectId"], str)[keep])
            files += [str(Path(directory) / name) for name in np.asarray(table["file"], str)[keep]]
        self.cutouts = np.concatenate(cutouts) if cutouts else np.zeros((0, 3, preset.stamp_size, preset.stamp_size), np.float32)
        if len(self.cutouts) == 0:
            raise InputDataError(f"{', '.join(map(str, directories))}: every alert excluded; no background left")
        self.object_ids = object_ids
        self.files = files
        self.preset = preset
        self.min_offset = min_offset
        self.sigmas = np.array([[_mad_sigma(channel) for channel in triplet] for triplet in self.cutouts])

    def __len__(self) -> int:
        return len(self.cutouts)

    def draw(self, rng: np.random.Generator) -> Background:
        """A random alert's triplet re-centred away from its candidate, with random rot90/flip."""
        index = int(rng.integers(len(self)))
        size = self.preset.stamp_size
        half = size // 2
        radius = rng.uniform(self.min_offset, half - 4)
        angle = rng.uniform(0, 2 * np.pi)
        dx, dy = int(round(radius * np.cos(angle))), int(round(radius * np.sin(angle)))
        padded = np.pad(self.cutouts[index], ((0, 0), (half, half), (half, half)), mode="reflect")
        window = padded[:, half + dy : half + dy + size, half + dx : half + dx + size].astype(np.float64)
        window = np.rot90(window, int(rng.integers(4)), axes=(1, 2))
        if rng.uniform() < 0.5:
            window = window[:, :, ::-1]
        sigma_science, sigma_reference, sigma_difference = self.sigmas[index]
        preset = self.preset
        return Background(
            science=window[0].copy(), reference=window[1].copy(), difference=window[2].copy(),
            sigma_science=max(float(sigma_science), 1e-6), sigma_reference=max(float(sigma_reference), 1e-6),
            sigma_difference=max(float(sigma_difference), 1e-6),
            science_fwhm=preset.fwhm_pixels(rng.uniform(*preset.seeing_range)),
            reference_fwhm=preset.fwhm_pixels(rng.uniform(*preset.reference_seeing_range)),
            beta=rng.uniform(*preset.moffat_beta_range), source=self.files[index], group=self.object_ids[index],
        )


# ---------------------------------------------------------------------------
# Stamp conventions
# ---------------------------------------------------------------------------
def fill_padding(triplet: np.ndarray) -> np.ndarray:
    """Replace non-finite pixels by each channel's median, as :func:`~skysift.realbogus.ztf.read_alerts` does."""
    out = np.array(triplet, dtype=np.float32, copy=True)
    for channel in out:
        finite = np.isfinite(channel)
        if not finite.all():
            channel[~finite] = np.median(channel[finite]) if finite.any() else 0.0
    return out


def truncate_at_edge(triplet: np.ndarray, side: str, kept: int) -> tuple[np.ndarray, np.ndarray]:
    """Blank the part of a ``(3, S, S)`` triplet beyond a CCD edge (NaN), as a survey cuts it.

    ``side`` is where the edge is (``"left"``, ``"right"``, ``"bottom"``, ``"top"``;
    bottom = low row index) and ``kept`` the index of the last pixel inside
    (``left``/``bottom``: pixels below ``kept`` are lost; ``right``/``top``:
    pixels above it). Returns the triplet and the mask of lost pixels.
    """
    size = triplet.shape[-1]
    index = np.arange(size)
    lost_axis = {"left": index < kept, "bottom": index < kept, "right": index > kept, "top": index > kept}[side]
    mask = np.zeros((size, size), bool)
    if side in ("left", "right"):
        mask[:, lost_axis] = True
    else:
        mask[lost_axis, :] = True
    out = np.array(triplet, dtype=np.float32, copy=True)
    out[:, mask] = np.nan
    return out, mask


def _add_photon_noise(layer: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    return layer + rng.normal(size=layer.shape) * np.sqrt(np.clip(layer, 0, None) / gain)


def _truncation_probabilities(preset: SurveyPreset, settings: StampSettings) -> tuple[float, float]:
    """Probability that a (bogus, real) sample of a non-edge family is cut at a CCD edge.

    Edge bogus are always truncated; real samples are truncated more often so
    that both classes are truncated at the same overall rate and padding says
    nothing about the label.
    """
    weights = {f: w for f, w in settings.bogus_weights.items() if w > 0}
    edge_share = weights.get("edge", 0.0) / sum(weights.values())
    bogus = preset.edge_fraction
    return bogus, edge_share + (1.0 - edge_share) * bogus


def _centre_peak(image: np.ndarray) -> float:
    c = image.shape[-1] // 2
    return float(image[c - 2 : c + 3, c - 2 : c + 3].max())


def _subtracted(layers: Layers, context: StampContext, *, keep_peak: bool) -> Layers:
    """The family's difference layer as ZOGY makes it (:meth:`StampContext.science_to_difference`).

    With ``keep_peak`` (bogus families, drawn at a detection S/N) every layer is
    rescaled so that the difference's peak at the candidate stays what the family drew.
    """
    difference = context.science_to_difference(layers.difference)
    factor = 1.0
    before, after = _centre_peak(layers.difference), _centre_peak(difference)
    if keep_peak and before > 0 and after > 0:
        factor = before / after
    return dataclasses.replace(layers, science=layers.science * factor, reference=layers.reference * factor,
                               difference=difference * factor, params=dict(layers.params))


def _one_sample(
    rng: np.random.Generator, family: str, background: Background, preset: SurveyPreset, settings: StampSettings,
    truncation_probability: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    size = preset.stamp_size
    centre = (size - 1) / 2.0
    # Candidates are centred to the pixel: the sub-pixel position is anywhere within it.
    x, y = centre + rng.uniform(-0.5, 0.5), centre + rng.uniform(-0.5, 0.5)
    context = StampContext(size, x, y, background.science_fwhm, background.reference_fwhm, background.beta,
                           background.sigma_science, background.sigma_reference, background.sigma_difference, preset.gain)
    if family == "variable":
        layers = _variable(rng, context, settings, negative=rng.uniform() < preset.negative_fraction)
    else:
        layers = _FAMILY_FUNCTIONS[family](rng, context, settings)
    if layers.through_subtraction:
        layers = _subtracted(layers, context, keep_peak=family not in REAL_FAMILIES)
    science_signal = _add_photon_noise(layers.science, preset.gain, rng)
    # The science photons of the signal are in the difference too (same exposure, same kernel).
    photon_noise = science_signal - layers.science
    if layers.through_subtraction:
        photon_noise = context.science_to_difference(photon_noise)
    triplet = np.stack([
        np.minimum(background.science + science_signal, preset.saturation),
        background.reference + layers.reference,
        background.difference + layers.difference + photon_noise,
    ])
    truncation = layers.truncate
    if truncation is None and rng.uniform() < truncation_probability[int(family in REAL_FAMILIES)]:
        side = str(rng.choice(["left", "right", "bottom", "top"]))
        distance = int(rng.integers(1, size // 2))
        kept = size // 2 - distance if side in ("left", "bottom") else size // 2 + distance
        truncation = (side, kept)
    mask = np.zeros((size, size), bool)
    if truncation is not None:
        triplet, mask = truncate_at_edge(triplet, *truncation)
    row = {"family": family, "label": int(family in REAL_FAMILIES), "x": x, "y": y, "background": background.source,
           "background_group": background.group, "science_fwhm": background.science_fwhm,
           "reference_fwhm": background.reference_fwhm, "sigma_science": background.sigma_science,
           "truncated": truncation is not None, **layers.params}
    return fill_padding(triplet), mask, row


def _family_choices(settings: StampSettings, n: int, rng: np.random.Generator) -> np.ndarray:
    bogus = [f for f in BOGUS_FAMILIES if settings.bogus_weights.get(f, 0) > 0]
    weights = np.array([settings.bogus_weights[f] for f in bogus], float)
    n_real = int(round(settings.real_fraction * n))
    real = rng.choice(REAL_FAMILIES, size=n_real, p=[0.6, 0.4])
    fake = rng.choice(bogus, size=n - n_real, p=weights / weights.sum())
    return rng.permutation(np.concatenate([real, fake]))


def simulate_triplets(
    n_samples: int,
    preset: SurveyPreset,
    settings: StampSettings,
    rng: np.random.Generator,
    *,
    backgrounds: RealBackgrounds | None = None,
) -> tuple[np.ndarray, np.ndarray, Table]:
    """Draw ``n_samples`` labelled triplets of the survey (pure computation).

    Parameters
    ----------
    n_samples : int
        Samples to draw.
    preset : SurveyPreset
        The survey.
    settings : StampSettings
        Class balance, S/N range, family weights.
    rng : numpy.random.Generator
        Every random draw comes from it.
    backgrounds : RealBackgrounds, optional
        Real alert stamps; ``settings.real_background_fraction`` of the samples use them.

    Returns
    -------
    cutouts : numpy.ndarray
        ``(N, 3, S, S)`` float32 raw triplets (science with sky, reference, difference), padding filled.
    edge_mask : numpy.ndarray
        ``(N, S, S)`` bool, pixels beyond a CCD edge.
    table : astropy.table.Table
        ``label``, ``kind`` (the family), ``x``, ``y``, ``background`` (``"simulated"`` or the
        packet file), ``background_group`` (objectId), ``sky_cell`` (split group: the
        background alert, or the sample), the PSF widths, ``truncated`` and the
        family parameters (NaN where a family has none).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    families = _family_choices(settings, n_samples, rng)
    use_real = np.zeros(n_samples, bool)
    if backgrounds is not None and settings.real_background_fraction > 0:
        use_real = rng.uniform(size=n_samples) < settings.real_background_fraction
    cutouts = np.empty((n_samples, 3, preset.stamp_size, preset.stamp_size), np.float32)
    masks = np.zeros((n_samples, preset.stamp_size, preset.stamp_size), bool)
    rows = []
    truncation_probability = _truncation_probabilities(preset, settings)
    for index, (family, real) in enumerate(zip(families, use_real, strict=True)):
        background = backgrounds.draw(rng) if real else simulated_background(rng, preset, settings)
        cutouts[index], masks[index], row = _one_sample(rng, str(family), background, preset, settings, truncation_probability)
        rows.append(row)
    names = sorted({name for row in rows for name in row})
    table = Table()
    for name in names:
        values = [row.get(name, np.nan) for row in rows]
        table[name] = np.asarray(values, dtype=str) if isinstance(rows[0].get(name, 0.0), str) else np.asarray(values, float)
    table["label"] = table["label"].astype(np.int8)
    table["truncated"] = table["truncated"].astype(bool)
    table.rename_column("family", "kind")
    # Split groups: every simulated stamp is its own sky; real ones group by alert object.
    group = np.asarray(table["background_group"], str)
    table["sky_cell"] = np.array([zlib.crc32(g.encode()) if g else 2**33 + i for i, g in enumerate(group)], np.int64)
    return cutouts, masks, table


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def make_survey_training_set(
    out_path: str | os.PathLike[str],
    *,
    survey: str | SurveyPreset = "ztf",
    n_samples: int = 6000,
    seed: int = 0,
    settings: StampSettings | None = None,
    real_backgrounds: Sequence[str | os.PathLike[str]] = (),
    exclude_objects: Sequence[str] = (),
    context: RunContext | None = None,
) -> Path:
    """Write a ``realbogus-training-set`` product of survey-like triplets.

    Parameters
    ----------
    out_path : str or path-like
        Destination ``.h5``.
    survey : str or SurveyPreset
        The survey (``"ztf"``); its name is stored in ``meta.survey`` and the model card.
    n_samples : int
        Samples.
    seed : int
        Seed of the single random generator.
    settings : StampSettings, optional
        Class balance, S/N range and family weights (defaults: :class:`StampSettings`).
    real_backgrounds : sequence of path-like
        Alert-packet directories whose stamps serve as backgrounds (none: simulated only).
    exclude_objects : sequence of str
        objectIds whose packets are not used as backgrounds (the evaluation fold).
    context : RunContext, optional
        Rule, configuration digest and provenance labels (:class:`skysift.context.RunContext`).

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Same layout as :func:`skysift.realbogus.injection.make_realbogus_training_set`'s
    product (array ``cutout`` ``(N, 3, S, S)`` raw, ``edge_mask``, table with
    ``label``, ``kind``, ``sky_cell``), so the ``realbogus`` task trains on either.
    ``meta.background_objects`` lists the objectIds whose stamps were used, so
    an evaluation can leave them out.
    """
    preset = get_survey(survey) if isinstance(survey, str) else survey
    settings = settings or StampSettings()
    rng = np.random.default_rng(seed)
    backgrounds = RealBackgrounds(real_backgrounds, preset, exclude=exclude_objects) if real_backgrounds else None
    cutouts, masks, table = simulate_triplets(n_samples, preset, settings, rng, backgrounds=backgrounds)
    used = sorted(set(np.asarray(table["background_group"], str)) - {""})
    inputs = [Path(f) for f in (backgrounds.files if backgrounds is not None else [])]
    provenance = resolve_context(context, "realbogus_training_set").provenance(inputs=inputs, seed=seed)
    attrs: dict[str, Any] = {
        "survey": preset.name, "channels": "science,reference,difference", "cutout_size": preset.stamp_size,
        "normalised": False, "kinds": ",".join(FAMILIES), "generator": "skysift.realbogus.stamps",
        "real_backgrounds": ",".join(str(d) for d in real_backgrounds), "background_objects": ",".join(used),
        "excluded_objects": ",".join(exclude_objects),
        **{f"survey.{k}": str(v) for k, v in dataclasses.asdict(preset).items()},
        **{f"settings.{k}": str(v) for k, v in dataclasses.asdict(settings).items()},
    }
    write_product(out_path, product_type="realbogus-training-set", provenance=provenance,
                  arrays={"cutout": cutouts, "edge_mask": masks}, table=table, attrs=attrs,
                  descriptions={"cutout": f"raw {preset.name} alert-like triplets: science (with sky), reference, difference"})
    counts = ", ".join(f"{k} {int(np.sum(table['kind'] == k))}" for k in FAMILIES)
    log.info("wrote %s: %d %s samples (%s), %d on real backgrounds", out_path, n_samples, preset.name, counts,
             int(np.sum(np.asarray(table["background"], str) != "simulated")))
    return Path(out_path)
