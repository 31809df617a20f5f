"""Batched strong-lens image simulator in PyTorch (CPU or GPU, float32 or float64).

A lens system is a singular isothermal ellipsoid (SIE) with external shear
deflecting an elliptical Sersic source, plus the Sersic light of the lens
galaxy. Surface brightness is evaluated on a supersampled pixel grid and
averaged into pixels, convolved with the survey PSF by FFT and, optionally,
degraded with the survey noise (:class:`SurveySpec`). Every step works on
whole batches (``N x H x W`` tensors); no Python loop runs per image.

Conventions (chosen to match lenstronomy exactly, so that the test suite can
compare pixel values; Birrer & Amara 2018):

* Angles are in arcsec on a grid whose ``x`` grows with the column index and
  ``y`` with the row index, centred on the stamp centre (pixel centres at
  ``(i - (n - 1) / 2) * pixel_scale``). Position angles ``phi`` are in degrees,
  counter-clockwise from ``+x``; axis ratios ``q = b/a``. lenstronomy's
  ellipticities are ``e1, e2 = (1 - q) / (1 + q) * (cos 2 phi, sin 2 phi)``
  (:func:`ellipticity_from_q_phi`).
* SIE (Kormann, Schneider & Bartelmann 1994; the NIE form of Keeton & Kochanek
  1998 with zero core): convergence
  ``kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q))`` in the frame of the major
  axis, deflection ``alpha_x' = b / sqrt(1 - q^2) atan(sqrt(1 - q^2) x' / psi)``,
  ``alpha_y' = b / sqrt(1 - q^2) atanh(sqrt(1 - q^2) y' / psi)`` with
  ``b = theta_E sqrt(q)``, ``psi = sqrt(q^2 x'^2 + y'^2)``. For ``q = 1`` it is a
  singular isothermal sphere, ``|alpha| = theta_E``.
* External shear: ``alpha = (g1 x + g2 y, g2 x - g1 y)`` about the lens centre.
* Sersic: ``I(R) = I_e exp(-b_n ((R / R_e)^(1/n) - 1))`` with the circularised
  radius ``R = sqrt(q x'^2 + y'^2 / q)`` (lenstronomy's default "product
  average" convention, so ``R_e`` is the geometric-mean half-light radius) and
  ``b_n`` from the asymptotic expansion of Ciotti & Bertin (1999, eq. 18).
  lenstronomy uses the linear fit ``b_n = 1.9992 n - 0.3271`` (Capaccioli 1989),
  which is off by 0.02 at ``n = 0.5`` (a 2 % change of the central surface
  brightness) and by 6e-3 at ``n = 1``; ``sersic_bn_method="capaccioli"`` selects
  it for bit-level comparisons. The total flux of the profile is
  ``F = 2 pi n R_e^2 I_e e^{b_n} b_n^{-2n} Gamma(2n)``, so magnitudes convert to
  ``I_e`` exactly (:func:`sersic_amplitude`).

Images are in electrons per second per pixel (e-/s); a magnitude ``m`` is a
flux of ``10**(-0.4 (m - zero_point))`` e-/s. Supersampling evaluates
``supersampling**2`` sub-pixels per pixel and averages them; the PSF is applied
to the binned image (as lenstronomy does with ``supersampling_convolution=False``),
which is exact for a PSF that is well sampled by the pixels and 9x cheaper than
convolving the supersampled image. With ``adaptive_supersampling=True`` only
the pixels whose surface brightness varies on sub-pixel scales (the lensed
source and the lens-light core) are supersampled (:class:`LensSimulator` Notes). Convolution is linear ("same" size, zero
padding), by ``torch.fft.rfft2`` of a padded batch with a precomputed kernel
transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from skysift.simulate.priors import LogUniform, Prior, TruncatedNormal, Uniform, sample_parameters

__all__ = [
    "ADAPTIVE_LENS_CORE_PIXELS",
    "ADAPTIVE_SOURCE_RADIUS",
    "LENS_PRIORS",
    "SURVEYS",
    "LensSimulator",
    "SurveySpec",
    "arc_signal_to_noise",
    "ellipticity_from_q_phi",
    "gaussian_psf",
    "magnitude_to_flux",
    "moffat_psf",
    "sersic_amplitude",
    "SERSIC_BN_METHODS",
    "sersic_bn",
    "survey_psf",
    "sersic_profile",
    "sie_deflection",
]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
# The C library's erf and log-gamma, element-wise: scipy.special would add ~0.4 s of imports
# to every process that simulates lenses, for a few hundred values per batch.
_erf = np.vectorize(math.erf, otypes=[np.float64])
_log_gamma = np.vectorize(math.lgamma, otypes=[np.float64])
#: Core radius (arcsec) that keeps the SIE finite at its centre, as lenstronomy's SIE.
_SIE_CORE = 1e-10
#: Largest axis ratio used for the SIE formulae (they are singular at q = 1), as lenstronomy.
_Q_MAX = 0.99999999
#: Radius floor (arcsec) of the Sersic profile, lenstronomy's ``_smoothing``.
_SERSIC_SMOOTHING = 1e-5
#: Images per rfft chunk in :meth:`LensSimulator.convolve` (cache-sized on CPUs).
_FFT_CHUNK = 32
#: Adaptive supersampling of the lensed source: pixels whose ray-shot position
#: (widened by their source-plane footprint) lies within this many circularised
#: effective radii of the source centre.
ADAPTIVE_SOURCE_RADIUS = 3.0
#: Adaptive supersampling of the lens light: pixels within this many pixels of the lens centre.
ADAPTIVE_LENS_CORE_PIXELS = 5.5


# ---------------------------------------------------------------------------
# Surveys
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SurveySpec:
    """Observing conditions of a survey: pixels, photometry, PSF and noise.

    Attributes
    ----------
    name : str
        Short name.
    pixel_scale : float
        Arcsec per pixel.
    zero_point : float
        AB magnitude giving 1 e-/s.
    sky_brightness : float
        Sky surface brightness (mag/arcsec^2).
    exposure_time : float
        Time of one exposure (s).
    n_exposures : int
        Number of co-added exposures.
    read_noise : float
        Read noise per exposure (e- rms).
    gain : float
        e- per ADU; the quantisation noise ``gain^2 / 12`` per exposure is included.
    seeing : float
        PSF full width at half maximum (arcsec).
    psf_model : str
        ``"gaussian"`` or ``"moffat"``.
    moffat_beta : float
        Moffat power index (used when ``psf_model == "moffat"``).
    """

    name: str
    pixel_scale: float
    zero_point: float
    sky_brightness: float
    exposure_time: float
    n_exposures: int
    read_noise: float
    gain: float
    seeing: float
    psf_model: str = "moffat"
    moffat_beta: float = 3.5

    @property
    def total_exposure(self) -> float:
        """Total exposure time (s)."""
        return self.exposure_time * self.n_exposures

    @property
    def sky_per_pixel(self) -> float:
        """Sky level (e-/s per pixel)."""
        return magnitude_to_flux(self.sky_brightness, self.zero_point) * self.pixel_scale**2

    @property
    def background_variance(self) -> float:
        """Variance of a sky-only pixel in (e-/s)^2: sky, read and quantisation noise."""
        t = self.total_exposure
        electrons = self.sky_per_pixel * t + self.n_exposures * (self.read_noise**2 + self.gain**2 / 12.0)
        return electrons / t**2


#: Survey presets, single-band (i or VIS) full-depth co-adds; values follow
#: lenstronomy's ``SimulationAPI.ObservationConfig`` and the survey papers
#: (LSST: Ivezic et al. 2019; HSC-SSP Wide: Aihara et al. 2018; Euclid VIS:
#: Euclid Collaboration 2022). Approximate, for training-set realism only.
SURVEYS: dict[str, SurveySpec] = {
    "lsst": SurveySpec("lsst", 0.2, 27.79, 20.48, 15.0, 460, 10.0, 2.3, 0.71, "moffat", 3.5),
    "hsc": SurveySpec("hsc", 0.168, 27.6, 20.5, 200.0, 6, 4.5, 3.0, 0.6, "moffat", 3.5),
    "euclid": SurveySpec("euclid", 0.1, 24.0, 22.35, 565.0, 4, 4.2, 3.1, 0.16, "gaussian"),
    # LSST 10-year co-adds per band (lenstronomy's LSST g, r, i; "lsst" is the i band):
    # lens searches in LSST use g, r, i, and r is the band of the deepest single-band
    # co-add for blue arcs.
    "lsst-g": SurveySpec("lsst-g", 0.2, 28.30, 22.26, 15.0, 200, 10.0, 2.3, 0.77, "moffat", 3.5),
    "lsst-r": SurveySpec("lsst-r", 0.2, 28.13, 21.2, 15.0, 460, 10.0, 2.3, 0.73, "moffat", 3.5),
    "lsst-i": SurveySpec("lsst-i", 0.2, 27.79, 20.48, 15.0, 460, 10.0, 2.3, 0.71, "moffat", 3.5),
}


def magnitude_to_flux(magnitude: Any, zero_point: float) -> Any:
    """Convert AB magnitudes to fluxes in e-/s: ``10**(-0.4 (m - zero_point))``."""
    return 10.0 ** (-0.4 * (np.asarray(magnitude, dtype=np.float64) - zero_point))


# ---------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------
#: Declared priors of a lens system (the skysift injector contract). Units are
#: arcsec, degrees and AB magnitudes. Source positions are relative to the lens
#: centre, within the region that gives arcs and rings for these Einstein radii.
LENS_PRIORS: dict[str, Prior] = {
    # Galaxy-scale lenses: Einstein radii mostly 0.5-2 arcsec, many below 1 (the
    # LSST/Euclid population of Collett 2015, ApJ 811, 20; SLACS 0.7-1.5, Bolton
    # et al. 2008; SL2S up to ~2.5, Sonnenfeld et al. 2013), log-uniform so that
    # small radii weigh as much as large ones.
    "theta_E": LogUniform(0.5, 3.0, unit="arcsec"),
    "q": Uniform(0.5, 1.0),
    "phi": Uniform(0.0, 180.0, unit="deg"),
    "gamma1": TruncatedNormal(0.0, 0.05, -0.2, 0.2),
    "gamma2": TruncatedNormal(0.0, 0.05, -0.2, 0.2),
    "x_lens": Uniform(-0.1, 0.1, unit="arcsec"),
    "y_lens": Uniform(-0.1, 0.1, unit="arcsec"),
    # Sources down to 26 mag, so that the arcs reach the detection limit of
    # deep co-adds (integrated arc S/N ~10 for LSST 10-year): the arc S/N cut of
    # the training set, not this prior, sets the faintest arcs.
    "source_mag": Uniform(21.0, 26.0, unit="mag"),
    # Half-light radii of z ~ 1-3 sources of r ~ 23-27 (0.05-0.6 arcsec; Collett 2015 draws them
    # from the size-magnitude relation of faint HST galaxies), log-uniform.
    "source_r_eff": LogUniform(0.05, 0.6, unit="arcsec"),
    "source_n": Uniform(0.5, 4.0),
    "source_q": Uniform(0.4, 1.0),
    "source_phi": Uniform(0.0, 180.0, unit="deg"),
    "x_src": Uniform(-0.6, 0.6, unit="arcsec"),
    "y_src": Uniform(-0.6, 0.6, unit="arcsec"),
    "lens_mag": Uniform(18.0, 21.0, unit="mag"),
    "lens_r_eff": Uniform(0.5, 2.0, unit="arcsec"),
    "lens_n": Uniform(2.0, 6.0),
    "lens_q": Uniform(0.5, 1.0),
    "lens_phi": Uniform(0.0, 180.0, unit="deg"),
}


# ---------------------------------------------------------------------------
# Profiles (pure tensor functions; parameters broadcast as (N, 1, 1))
# ---------------------------------------------------------------------------
def ellipticity_from_q_phi(q: Any, phi_deg: Any) -> tuple[np.ndarray, np.ndarray]:
    """lenstronomy ellipticities ``(e1, e2)`` of an axis ratio and position angle (deg)."""
    q = np.asarray(q, dtype=np.float64)
    phi = np.deg2rad(np.asarray(phi_deg, dtype=np.float64))
    e = (1.0 - q) / (1.0 + q)
    return e * np.cos(2.0 * phi), e * np.sin(2.0 * phi)


SERSIC_BN_METHODS = ("ciotti-bertin", "capaccioli")


def sersic_bn(n: Any, method: str = "ciotti-bertin") -> np.ndarray:
    """Sersic ``b_n``, defined by ``gamma(2n, b_n) = Gamma(2n) / 2``.

    ``"ciotti-bertin"``: the asymptotic expansion of Ciotti & Bertin (1999,
    eq. 18), within 6e-4 relative at ``n = 0.5`` and 1e-6 for ``n >= 2``. ``"capaccioli"``: the
    linear fit ``1.9992 n - 0.3271`` (Capaccioli 1989) that lenstronomy uses.
    """
    n = np.asarray(n, dtype=np.float64)
    if method == "capaccioli":
        return np.maximum(1.9992 * n - 0.3271, 1e-5)
    if method != "ciotti-bertin":
        raise ValueError(f"unknown b_n method {method!r}; known: {SERSIC_BN_METHODS}")
    return (
        2.0 * n
        - 1.0 / 3.0
        + 4.0 / (405.0 * n)
        + 46.0 / (25515.0 * n**2)
        + 131.0 / (1148175.0 * n**3)
        - 2194697.0 / (30690717750.0 * n**4)
    )


def sersic_amplitude(flux: Any, r_eff: Any, n: Any, bn_method: str = "ciotti-bertin") -> np.ndarray:
    """Surface brightness at ``R_e`` of a Sersic profile of total ``flux``.

    ``I_e = F / (2 pi n R_e^2 e^{b_n} b_n^{-2n} Gamma(2n))`` (per arcsec^2 when
    ``r_eff`` is in arcsec); with the circularised radius the axis ratio does
    not enter.
    """
    n = np.asarray(n, dtype=np.float64)
    r_eff = np.asarray(r_eff, dtype=np.float64)
    bn = sersic_bn(n, bn_method)
    log_norm = np.log(2.0 * np.pi * n * r_eff**2) + bn - 2.0 * n * np.log(bn) + _log_gamma(2.0 * n)
    return np.asarray(flux, dtype=np.float64) * np.exp(-log_norm)


#: Coefficients (lowest order first) of ``atan(t) = t P(t^2)`` on ``[0, 1]`` and
#: ``log2(1 + f) = f Q(f)`` on ``[sqrt(1/2) - 1, sqrt(2) - 1]``, near-minimax fits
#: (least squares with Lawson reweighting): within 1.6e-7 and 1.4e-7 relative when
#: evaluated in float32, whose own rounding is 6e-8.
_ATAN_COEFFICIENTS = (
    9.999999864e-01, -3.333309395e-01, 1.999305383e-01, -1.420713110e-01, 1.065466686e-01,
    -7.533653141e-02, 4.303909522e-02, -1.628284010e-02, 2.903510623e-03,
)
_LOG2_COEFFICIENTS = (
    1.442695004e00, -7.213473468e-01, 4.809106427e-01, -3.607036824e-01, 2.879162548e-01,
    -2.389448233e-01, 2.157155540e-01, -2.072697816e-01, 1.258372263e-01,
)
#: Bit pattern of float32 ``sqrt(1/2)``: mantissas are reduced to ``[sqrt(1/2), sqrt(2))``.
_FLOAT32_SQRT_HALF_BITS = 0x3F3504F3


def _polynomial(x: torch.Tensor, coefficients: Sequence[float]) -> torch.Tensor:
    """Horner evaluation of ``sum_k coefficients[k] x^k``."""
    result = coefficients[-1] * x + coefficients[-2]
    for coefficient in reversed(coefficients[:-2]):
        result = result * x + coefficient
    return result


def _fusing(x: torch.Tensor) -> bool:
    """Whether polynomial forms pay off for ``x``: float32 inside ``torch.compile``.

    Compiled, they fuse into the surrounding kernel; in eager mode each of their
    ~20 operations is a separate pass over memory, slower than one vectorised
    library call.
    """
    return x.dtype == torch.float32 and _is_compiling()


_is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling


def _log2(x: torch.Tensor) -> torch.Tensor:
    """``log2(x)`` of positive normal numbers; compiled float32 by exponent extraction and a polynomial.

    Sleef's vectorised ``log2`` (what ``torch.log2`` compiles to on CPUs) costs
    ~3x more than this form. Elsewhere (:func:`_fusing`) ``torch.log2``.
    """
    if not _fusing(x):
        return torch.log2(x)
    bits = x.view(torch.int32)
    exponent = (bits - _FLOAT32_SQRT_HALF_BITS) >> 23
    fraction = (bits - (exponent << 23)).view(torch.float32) - 1.0  # exact (Sterbenz)
    return exponent.to(torch.float32) + fraction * _polynomial(fraction, _LOG2_COEFFICIENTS)


def _atan_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``atan(numerator / denominator)`` for ``denominator > 0``; compiled float32 by a polynomial.

    ``atan(t) = pi/2 - atan(1/t)`` maps the argument into ``[0, 1]`` with the
    one division the ratio needs anyway; ~3x cheaper than Sleef's ``atan``.
    Elsewhere (:func:`_fusing`) ``torch.atan``.
    """
    if not _fusing(numerator):
        return torch.atan(numerator / denominator)
    size = numerator.abs()
    t = torch.minimum(size, denominator) / torch.maximum(size, denominator)
    angle = t * _polynomial(t * t, _ATAN_COEFFICIENTS)
    angle = torch.where(size > denominator, (0.5 * math.pi) - angle, angle)
    return torch.copysign(angle, numerator)


def sersic_profile(
    x: torch.Tensor,
    y: torch.Tensor,
    amplitude: torch.Tensor,
    r_eff: torch.Tensor,
    n: torch.Tensor,
    bn: torch.Tensor,
    cos_phi: torch.Tensor,
    sin_phi: torch.Tensor,
    q: torch.Tensor,
    x_centre: torch.Tensor,
    y_centre: torch.Tensor,
) -> torch.Tensor:
    """Elliptical Sersic surface brightness (see the module notes for conventions).

    All parameters are tensors broadcastable against ``x`` and ``y`` (typically
    shape ``(N, 1, 1)`` against a ``(1, H, W)`` grid).
    """
    return _sersic(x, y, _sersic_columns(amplitude, r_eff, n, bn, cos_phi, sin_phi, q, x_centre, y_centre))


def _sersic_columns(
    amplitude: Any, r_eff: Any, n: Any, bn: Any, cos_phi: Any, sin_phi: Any, q: Any, x_centre: Any, y_centre: Any
) -> tuple[Any, ...]:
    """The per-image constants :func:`_sersic` reads, in :data:`_SERSIC_COLUMNS` order (tensors or arrays)."""
    inverse_area = 1.0 / (r_eff * r_eff)
    return (
        amplitude,
        cos_phi,
        sin_phi,
        x_centre,
        y_centre,
        q * inverse_area,
        inverse_area / q,
        _SERSIC_SMOOTHING**2 * inverse_area,
        0.5 / n,
        bn * _LOG2_E,
    )


#: Columns of a Sersic parameter table: ``radius2 = weight_x x'^2 + weight_y y'^2``
#: is ``(R / R_e)^2``, floored at ``floor`` (lenstronomy's smoothing radius), and
#: ``I = amplitude 2^(bn_log2e (1 - radius2^exponent))``.
_SERSIC_COLUMNS = ("amplitude", "cos", "sin", "x", "y", "weight_x", "weight_y", "floor", "exponent", "bn_log2e")
_LOG2_E = 1.0 / math.log(2.0)
#: Floor of the Sersic profile's base-2 exponent in eager mode (float32's smallest normal, 2^-126).
_EXP2_FLOOR = -126.0
_LN_2 = math.log(2.0)


def _sersic_radius2(x: torch.Tensor, y: torch.Tensor, light: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``(R / R_e)^2`` of the Sersic columns ``light``, floored as lenstronomy does (no division)."""
    _, cos_phi, sin_phi, x_centre, y_centre, weight_x, weight_y, floor = light[:8]
    dx = x - x_centre
    dy = y - y_centre
    xt = cos_phi * dx + sin_phi * dy
    yt = cos_phi * dy - sin_phi * dx
    return torch.maximum(torch.addcmul((weight_y * yt) * yt, weight_x * xt, xt), floor)


def _sersic_from_radius2(radius2: torch.Tensor, light: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``I_e exp(-b_n ((R / R_e)^(1/n) - 1))`` from ``(R / R_e)^2``.

    In base 2: ``(R / R_e)^(1/n) = 2^(log2(R^2 / R_e^2) / (2 n))`` and
    ``exp(-b_n (t - 1)) = 2^(b_n log2(e) (1 - t))``; no square root, no general
    power, and ``exp2`` is the cheapest vectorised exponential.
    """
    amplitude, exponent, bn_log2e = light[0], light[8], light[9]
    reduced = torch.exp2(_log2(radius2) * exponent)
    # bn_log2e - bn_log2e reduced as one multiply-add (the same rounding: -1 x is exact), floored at
    # float32's smallest normal exponent: vectorised exp2 takes a ~2x slower path where it
    # underflows (most of the stamp for a small source), and 2^-126 of the amplitude is nothing at
    # float32 precision of the images.
    exponent2 = torch.addcmul(bn_log2e, bn_log2e, reduced, value=-1.0)
    if not _is_compiling():
        exponent2 = exponent2.clamp_(min=_EXP2_FLOOR)
    return amplitude * torch.exp2(exponent2)


def _sersic(x: torch.Tensor, y: torch.Tensor, light: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Sersic surface brightness at ``(x, y)`` of the columns ``light`` (:data:`_SERSIC_COLUMNS`)."""
    return _sersic_from_radius2(_sersic_radius2(x, y, light), light)


def sie_deflection(
    x: torch.Tensor,
    y: torch.Tensor,
    b: torch.Tensor,
    q: torch.Tensor,
    root: torch.Tensor,
    cos_phi: torch.Tensor,
    sin_phi: torch.Tensor,
    x_centre: torch.Tensor,
    y_centre: torch.Tensor,
    gamma1: torch.Tensor,
    gamma2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deflection ``(alpha_x, alpha_y)`` of an SIE plus external shear.

    Parameters
    ----------
    x, y : torch.Tensor
        Image-plane positions (arcsec).
    b : torch.Tensor
        ``theta_E * sqrt(q)`` (Keeton & Kochanek's critical radius).
    q : torch.Tensor
        Axis ratio, below 1 (clamped by the caller to ``0.99999999``).
    root : torch.Tensor
        ``sqrt(1 - q^2)``, precomputed in float64.
    cos_phi, sin_phi : torch.Tensor
        Orientation of the major axis.
    x_centre, y_centre : torch.Tensor
        Lens centre (arcsec); the shear is centred there too.
    gamma1, gamma2 : torch.Tensor
        External shear.

    Notes
    -----
    Kormann, Schneider & Bartelmann (1994); Keeton & Kochanek (1998) eq. 8 with
    zero core. ``atanh(z) = 0.5 log((1 + z) / (1 - z))``.
    """
    alpha_x, alpha_y, _ = _sie(x, y, _sie_columns(b, q, root, cos_phi, sin_phi, x_centre, y_centre, gamma1, gamma2))
    return alpha_x, alpha_y


def _sie_columns(
    b: Any, q: Any, root: Any, cos_phi: Any, sin_phi: Any, x_centre: Any, y_centre: Any, gamma1: Any, gamma2: Any
) -> tuple[Any, ...]:
    """The per-image constants :func:`_sie` reads, in :data:`_SIE_COLUMNS` order (tensors or arrays)."""
    core_x = _SIE_CORE / q**0.5
    return (b / root, q * q, root, cos_phi, sin_phi, x_centre, y_centre, gamma1, gamma2, core_x, q * q * core_x)


#: Columns of an SIE + shear parameter table; ``scale = b / sqrt(1 - q^2)``,
#: ``q2 = q^2`` and the cores that keep the centre finite (as lenstronomy's SIE).
_SIE_COLUMNS = ("scale", "q2", "root", "cos", "sin", "x", "y", "gamma1", "gamma2", "core_x", "core_y")


def _sie(
    x: torch.Tensor, y: torch.Tensor, lens: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deflection of the SIE + shear columns ``lens`` (:data:`_SIE_COLUMNS`), and ``psi``.

    ``psi = sqrt(q^2 x'^2 + y'^2)`` is returned for the convergence
    ``kappa = b / (2 psi)``. ``atanh`` is written as one log of a ratio
    (one division instead of two).
    """
    scale, q2, root, cos_phi, sin_phi, x_centre, y_centre, gamma1, gamma2, core_x, core_y = lens[:11]
    dx = x - x_centre
    dy = y - y_centre
    xt = cos_phi * dx + sin_phi * dy
    yt = cos_phi * dy - sin_phi * dx
    psi = torch.sqrt(q2 * xt * xt + yt * yt)
    ax = scale * _atan_ratio(root * xt, psi + core_x)
    ry = root * yt
    ay = (0.5 * _LN_2) * scale * _log2((psi + core_y + ry) / (psi + core_y - ry))
    alpha_x = cos_phi * ax - sin_phi * ay + gamma1 * dx + gamma2 * dy
    alpha_y = sin_phi * ax + cos_phi * ay + gamma2 * dx - gamma1 * dy
    return alpha_x, alpha_y, psi


#: Columns the lens table carries after :data:`_SIE_COLUMNS`, ``b / 2`` and ``|gamma|``: the
#: source-plane coordinates of :func:`_source_radius2` as affine maps of the lens frame's
#: ``(x', y')`` and the SIE's two deflection terms (:func:`_source_map`).
_SOURCE_MAP_COLUMNS = ("u_x", "u_y", "u_atan", "u_log", "u_0", "v_x", "v_y", "v_atan", "v_log", "v_0")
_SOURCE_MAP_START = len(_SIE_COLUMNS) + 2


def _source_map(
    scale: np.ndarray, cos_l: np.ndarray, sin_l: np.ndarray, gamma1: np.ndarray, gamma2: np.ndarray,
    offset_x: np.ndarray, offset_y: np.ndarray, source_columns: Sequence[np.ndarray],
) -> tuple[np.ndarray, ...]:
    """Per-image coefficients (:data:`_SOURCE_MAP_COLUMNS`, float64) of the fused lens equation.

    With ``(x', y')`` the lens frame, ``A = atan(...)`` and ``L = log2(...)``
    the SIE's terms (:func:`_sie` before its scale factors), the scaled
    source-frame coordinates whose squares sum to the Sersic ``(R / R_e)^2``
    are ``(u, v) = W R_s [D + (I - G) R_l (x', y') - R_l diag(s, s ln2 / 2) (A, L)]``:
    ``R_l`` the lens frame's rotation to the sky, ``G`` the shear matrix,
    ``D`` the lens centre minus the source centre (``offset``), ``R_s`` the
    sky's rotation to the source frame and ``W = diag(sqrt(weight_x),
    sqrt(weight_y))`` of the Sersic columns. Composing the per-image 2x2 maps
    once leaves ~8 fewer passes over the pixels than deflecting, subtracting,
    shifting, rotating and weighting in turn (the same lens equation; float
    rounding differs).
    """
    cos_s, sin_s, weight_x, weight_y = source_columns[1], source_columns[2], source_columns[5], source_columns[6]
    root_x, root_y = np.sqrt(weight_x), np.sqrt(weight_y)
    # W R_s as rows (per image): row u = root_x (cos_s, sin_s), row v = root_y (-sin_s, cos_s).
    rows = ((root_x * cos_s, root_x * sin_s), (-root_y * sin_s, root_y * cos_s))
    # (I - G) R_l and R_l diag(s, s ln2 / 2), columns by (x', y') and by (A, L).
    ig = ((1.0 - gamma1, -gamma2), (-gamma2, 1.0 + gamma1))
    rl = ((cos_l, -sin_l), (sin_l, cos_l))
    frame = tuple(tuple(ig[i][0] * rl[0][j] + ig[i][1] * rl[1][j] for j in range(2)) for i in range(2))
    half_log = 0.5 * _LN_2 * scale
    deflection = ((cos_l * scale, -sin_l * half_log), (sin_l * scale, cos_l * half_log))
    columns: list[np.ndarray] = []
    for row in rows:
        columns += [row[0] * frame[0][j] + row[1] * frame[1][j] for j in range(2)]
        columns += [-(row[0] * deflection[0][j] + row[1] * deflection[1][j]) for j in range(2)]
        columns.append(row[0] * offset_x + row[1] * offset_y)
    return tuple(columns)


def _source_radius2(
    x: torch.Tensor, y: torch.Tensor, lens: tuple[torch.Tensor, ...], source: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sersic ``(R / R_e)^2`` (floored) of the source seen through the lens at ``(x, y)``, and ``psi``.

    ``_sersic_radius2(x - alpha_x, y - alpha_y, source)`` with ``alpha`` from
    :func:`_sie`, by the composed affine maps of :func:`_source_map` (the lens
    table's :data:`_SOURCE_MAP_COLUMNS`); ``psi`` as :func:`_sie` returns it.
    """
    _, q2, root, cos_phi, sin_phi, x_centre, y_centre, _, _, core_x, core_y = lens[:11]
    u_x, u_y, u_atan, u_log, u_0, v_x, v_y, v_atan, v_log, v_0 = lens[_SOURCE_MAP_START : _SOURCE_MAP_START + 10]
    dx = x - x_centre
    dy = y - y_centre
    xt = cos_phi * dx + sin_phi * dy
    yt = cos_phi * dy - sin_phi * dx
    # Multiply-adds as one operation each (addcmul): one pass over the pixels instead of two.
    psi = torch.addcmul(yt * yt, q2 * xt, xt).sqrt_()
    along = _atan_ratio(root * xt, psi + core_x)
    ry = root * yt
    across = _log2((psi + core_y + ry) / (psi + core_y - ry))
    u = torch.addcmul(u_0, u_x, xt).addcmul_(u_y, yt).addcmul_(u_atan, along).addcmul_(u_log, across)
    v = torch.addcmul(v_0, v_x, xt).addcmul_(v_y, yt).addcmul_(v_atan, along).addcmul_(v_log, across)
    return torch.maximum(torch.addcmul(u * u, v, v), source[7]), psi


# ---------------------------------------------------------------------------
# PSFs
# ---------------------------------------------------------------------------
def _kernel_size(fwhm_pixels: float, width: float) -> int:
    half = max(2, int(math.ceil(width * fwhm_pixels)))
    return 2 * half + 1


def gaussian_psf(fwhm: float, pixel_scale: float, size: int | None = None) -> np.ndarray:
    """Pixel-integrated circular Gaussian PSF, normalised to unit sum.

    Integrated exactly over each pixel (differences of error functions).
    ``size`` (odd) defaults to about 6 FWHM.
    """
    sigma = fwhm * _FWHM_TO_SIGMA / pixel_scale
    size = size or _kernel_size(fwhm / pixel_scale, 3.0)
    edges = np.arange(size + 1) - size / 2.0
    cdf = 0.5 * (1.0 + _erf(edges / (math.sqrt(2.0) * sigma)))
    profile = np.diff(cdf)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


def moffat_psf(fwhm: float, pixel_scale: float, beta: float = 3.5, size: int | None = None, oversampling: int = 5) -> np.ndarray:
    """Circular Moffat PSF (Moffat 1969), averaged over each pixel, unit sum.

    ``I(r) ~ (1 + (r / alpha)^2)^-beta`` with ``alpha = FWHM / (2 sqrt(2^(1/beta) - 1))``;
    evaluated on an ``oversampling``-times finer grid and binned. ``size`` (odd)
    defaults to about 8 FWHM (the wings matter).
    """
    fwhm_pixels = fwhm / pixel_scale
    size = size or _kernel_size(fwhm_pixels, 4.0)
    alpha = fwhm_pixels / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    fine = (np.arange(size * oversampling) + 0.5) / oversampling - size / 2.0
    r2 = fine[:, None] ** 2 + fine[None, :] ** 2
    image = (1.0 + r2 / alpha**2) ** (-beta)
    kernel = image.reshape(size, oversampling, size, oversampling).mean(axis=(1, 3))
    return kernel / kernel.sum()


def survey_psf(survey: SurveySpec) -> np.ndarray:
    """The PSF kernel of a survey preset (pixel-sampled, unit sum)."""
    if survey.psf_model == "gaussian":
        return gaussian_psf(survey.seeing, survey.pixel_scale)
    if survey.psf_model == "moffat":
        return moffat_psf(survey.seeing, survey.pixel_scale, survey.moffat_beta)
    raise ValueError(f"survey {survey.name!r}: unknown psf_model {survey.psf_model!r}")


def _fft_size(n: int) -> int:
    """Smallest integer >= n with no prime factor above 5 (fast FFT sizes)."""
    size = n
    while True:
        m = size
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return size
        size += 1


# ---------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------
class LensSimulator:
    """Render batches of strong-lens images for one survey and stamp size.

    Grids, the PSF transform and dtype/device choices are fixed at
    construction, so rendering a batch is a fixed sequence of tensor
    operations.

    Parameters
    ----------
    survey : str or SurveySpec
        A key of :data:`SURVEYS` or a spec.
    image_size : int
        Stamp side (pixels).
    supersampling : int
        Sub-pixels per pixel side (1 = pixel centres only).
    psf : "survey", None, or numpy.ndarray
        ``"survey"`` (default) builds the survey's Gaussian/Moffat PSF, ``None``
        disables convolution, an array (odd square, any normalisation; it is
        normalised to unit sum) is used as given.
    dtype : torch.dtype
        ``torch.float32`` (fast) or ``torch.float64``.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``...
    chunk_size : int
        Images rendered together, from ray shooting to noise; small chunks keep
        the working set in cache on CPUs (64 is best for adaptive, 16-32 for
        uniform supersampling at 64x64). ``None``: the whole batch (GPUs).
    sersic_bn_method : str
        ``"ciotti-bertin"`` (default) or ``"capaccioli"`` (lenstronomy's), see :func:`sersic_bn`.
    compile : bool
        Fuse the surface-brightness kernels and the noise with ``torch.compile``
        (2.5-4x faster on CPU). Compilation is one-off but slow: ~30 s per kernel,
        ~2 min for the adaptive refinement kernel (compiled for a fixed and then
        a symbolic number of pixels); inductor caches the results on disk.
    adaptive_supersampling : bool
        Supersample only the pixels that need it (see Notes); ``False``
        (default) evaluates every pixel on the full ``supersampling`` grid.

    Notes
    -----
    Adaptive supersampling (the idea of lenstronomy's adaptive grids and
    ``supersampling_kernel_size``): a first pass evaluates every pixel at its
    centre. Only two kinds of pixels are then re-evaluated on the
    ``supersampling x supersampling`` sub-grid and replaced by the sub-pixel
    mean:

    * lensed source: pixels whose ray-shot position lies within
      :data:`ADAPTIVE_SOURCE_RADIUS` circularised effective radii of the source
      centre, widened by the pixel's own footprint in the source plane (half a
      pixel diagonal times a bound on the lens mapping's stretch at the pixel,
      ``|1 - kappa| + kappa + |gamma_ext|``, so that pixels straddling the
      source near critical curves, or near the lens centre where the mapping
      stretches most, are caught);
    * lens light: pixels within :data:`ADAPTIVE_LENS_CORE_PIXELS` pixels of the
      lens centre (the Sersic cusp). The lens light does not depend on the mass
      model, so this mask is fixed by the light parameters alone; its pixels
      are refined as one dense block per image in the first pass.

    Elsewhere the surface brightness is smooth on the pixel scale and the
    pixel-centre value is within ~1e-3 of the image peak of the uniformly
    supersampled one (``tests/lens/test_simulator.py`` checks < 1 % of the peak
    over the default priors; ``benchmarks/lenses.py`` prints the worst case).
    With the default priors about 5-15 % of the pixels are supersampled. For odd
    ``supersampling`` the middle sub-pixel is the pixel centre, reused from the
    first pass.

    CPU throughput (``benchmarks/lenses.py``): batches are rendered
    ``chunk_size`` images at a time through ray shooting, PSF and noise, so no
    batch-sized temporaries are written (their fresh pages cost more than the
    arithmetic on them). Per-image parameters are derived once per batch, in
    float64, into small tables (:data:`_SIE_COLUMNS`, :data:`_SERSIC_COLUMNS`)
    that the kernels read without divisions. Compiled float32 kernels use
    polynomial ``atan`` and ``log2`` (:func:`_atan_ratio`, :func:`_log2`,
    within 2e-7 relative) instead of the ~3x slower vectorised library calls;
    float64 and eager mode keep the library functions.
    """

    def __init__(
        self,
        survey: str | SurveySpec = "lsst",
        image_size: int = 64,
        supersampling: int = 3,
        *,
        psf: str | np.ndarray | None = "survey",
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        chunk_size: int | None = 16,
        sersic_bn_method: str = "ciotti-bertin",
        compile: bool = False,
        adaptive_supersampling: bool = False,
    ) -> None:
        if sersic_bn_method not in SERSIC_BN_METHODS:
            raise ValueError(f"unknown b_n method {sersic_bn_method!r}; known: {SERSIC_BN_METHODS}")
        self.sersic_bn_method = sersic_bn_method
        if isinstance(survey, str):
            if survey not in SURVEYS:
                raise ValueError(f"unknown survey {survey!r}; known: {sorted(SURVEYS)}")
            survey = SURVEYS[survey]
        if image_size < 4 or supersampling < 1:
            raise ValueError(f"need image_size >= 4 and supersampling >= 1, got {image_size}, {supersampling}")
        self.survey = survey
        self.image_size = int(image_size)
        self.supersampling = int(supersampling)
        self.dtype = dtype
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        pixel = survey.pixel_scale
        ss = self.supersampling
        # Sub-pixel centres: pixel centres at (i - (n-1)/2) * pixel, sub-pixels at
        # offsets ((k + 0.5) / ss - 0.5) * pixel (lenstronomy's make_subgrid).
        fine = (np.arange(self.image_size * ss) + 0.5) / ss - 0.5 - (self.image_size - 1) / 2.0
        fine = fine * pixel
        self._x = torch.as_tensor(fine[None, None, :], dtype=dtype, device=self.device)
        self._y = torch.as_tensor(fine[None, :, None], dtype=dtype, device=self.device)
        self.adaptive_supersampling = bool(adaptive_supersampling)
        centres = (np.arange(self.image_size) - (self.image_size - 1) / 2.0) * pixel
        self._x_centre = torch.as_tensor(centres[None, None, :], dtype=dtype, device=self.device)
        self._y_centre = torch.as_tensor(centres[None, :, None], dtype=dtype, device=self.device)
        # Sub-pixel offsets from the pixel centre (ss * ss,), row-major like the fine grid.
        # For odd ss the middle sub-pixel is the pixel centre, already evaluated by the
        # pixel pass of adaptive supersampling: it is left out of the refinement offsets.
        offsets = ((np.arange(ss) + 0.5) / ss - 0.5) * pixel
        offset_x, offset_y = np.tile(offsets, ss), np.repeat(offsets, ss)
        self._subpixel_x = torch.as_tensor(offset_x, dtype=dtype, device=self.device)
        self._subpixel_y = torch.as_tensor(offset_y, dtype=dtype, device=self.device)
        self._centre_is_subpixel = ss % 2 == 1
        if self._centre_is_subpixel:
            offset_x, offset_y = np.delete(offset_x, ss * ss // 2), np.delete(offset_y, ss * ss // 2)
        self._offset_x = torch.as_tensor(offset_x, dtype=dtype, device=self.device)
        self._offset_y = torch.as_tensor(offset_y, dtype=dtype, device=self.device)
        # Side of the pixel block that holds the supersampled lens-light core: the
        # core's diameter plus one pixel (:func:`_supersample_core`).
        self._core_window = min(int(math.ceil(2.0 * ADAPTIVE_LENS_CORE_PIXELS)) + 1, self.image_size)
        if isinstance(psf, str):
            if psf != "survey":
                raise ValueError(f"psf must be 'survey', None or an array, got {psf!r}")
            psf = survey_psf(survey)
        self.psf_kernel: np.ndarray | None = None
        if psf is not None:
            kernel = np.asarray(psf, dtype=np.float64)
            if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
                raise ValueError(f"the PSF must be a square array of odd side, got shape {kernel.shape}")
            if not np.isfinite(kernel).all() or kernel.sum() <= 0:
                raise ValueError("the PSF must be finite with a positive sum")
            self.psf_kernel = kernel / kernel.sum()
            size = kernel.shape[0]
            self._crop = (size - 1) // 2
            # The smallest circular convolution equal to the zero-padded linear one on
            # the kept ("same") pixels needs image_size + (size - 1) / 2 points, not the
            # full image_size + size - 1: the wrapped-around part lands outside the crop
            # (80 instead of 96 points for LSST's 31-pixel Moffat at 64x64, ~1.8x faster).
            length = _fft_size(max(self.image_size + self._crop, size))
            self._fft_length = length
            # The PSF's transforms by FFT length: this one now, longer ones (:meth:`_convolved_parts`
            # with a margin) on first use.
            self._psf_transforms: dict[int, torch.Tensor] = {}
            self._psf_transform_at(length)
        self._surface_brightness = _surface_brightness
        self._pixel_pass = _pixel_pass
        self._refine_arc = _refine_arc
        self._noisy = _noisy
        self._noisy_into = _noisy_into
        if compile:
            # torch.compile is lazy: only the kernels a render uses get compiled.
            # Inductor stores an intermediate that more than realize_reads_threshold (4)
            # expressions read; the rotated coordinates and deflections are read more
            # often, and recomputing them in registers beats a round trip through
            # memory (~10 % on the adaptive path, measured with torch 2.13 on CPU).
            self._surface_brightness = torch.compile(_surface_brightness, dynamic=False)
            self._pixel_pass = torch.compile(_pixel_pass, dynamic=False, options={"realize_reads_threshold": 8})
            # The number of supersampled pixels changes from batch to batch: the
            # default (dynamic=None) recompiles once with that size symbolic. dynamic=True
            # would also make every float constant (polynomial coefficients...) a graph
            # input, converted to a tensor on each call (~50 us per call).
            self._refine_arc = torch.compile(_refine_arc, options={"realize_reads_threshold": 16})
            self._noisy = torch.compile(_noisy)
            # Writes into a slice of the batch: no copy of the noisy images.
            self._noisy_into = torch.compile(_noisy_into)

    # parameters ----------------------------------------------------------------
    @staticmethod
    def draw_parameters(
        n: int, rng: np.random.Generator, priors: Mapping[str, Prior] | None = None
    ) -> dict[str, np.ndarray]:
        """Draw ``n`` parameter sets from ``priors`` (default :data:`LENS_PRIORS`)."""
        return sample_parameters(LENS_PRIORS if priors is None else priors, n, rng)

    def _tensor(self, values: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(values, dtype=np.float64), dtype=self.dtype, device=self.device).reshape(-1, 1, 1)

    def _table(self, columns: Sequence[Any], n: int) -> torch.Tensor:
        """``(n, P)`` table of per-image columns (arrays or scalars, broadcast), derived in float64."""
        table = np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in columns], axis=1)
        return torch.as_tensor(table, dtype=self.dtype, device=self.device)

    def _sersic_table(
        self, params: Mapping[str, np.ndarray], prefix: str, x_centre: np.ndarray, y_centre: np.ndarray, *, reach: bool = False
    ) -> torch.Tensor:
        """Sersic table (:data:`_SERSIC_COLUMNS`) of ``{prefix}_*`` in e-/s per pixel (the pixel area folded in).

        With ``reach``, one more column: the source-plane radius (in ``R_e``) that half a
        pixel diagonal spans per unit lens stretch (the adaptive supersampling criterion).
        """
        columns = self._sersic_columns(params, prefix, x_centre, y_centre, reach=reach)
        return self._table(columns, len(np.atleast_1d(columns[0])))

    def _sersic_columns(
        self, params: Mapping[str, np.ndarray], prefix: str, x_centre: np.ndarray, y_centre: np.ndarray, *, reach: bool = False
    ) -> tuple[np.ndarray, ...]:
        """The columns of :meth:`_sersic_table`, float64 arrays (scalars broadcast to the images)."""
        n = np.atleast_1d(np.asarray(params[f"{prefix}_n"], dtype=np.float64))
        r_eff = np.asarray(params[f"{prefix}_r_eff"], dtype=np.float64)
        q = np.asarray(params[f"{prefix}_q"], dtype=np.float64)
        pixel = self.survey.pixel_scale
        flux = magnitude_to_flux(params[f"{prefix}_mag"], self.survey.zero_point)
        amplitude = sersic_amplitude(flux, r_eff, n, self.sersic_bn_method) * pixel**2
        phi = np.deg2rad(np.asarray(params[f"{prefix}_phi"], dtype=np.float64))
        bn = sersic_bn(n, self.sersic_bn_method)
        columns = _sersic_columns(amplitude, r_eff, n, bn, np.cos(phi), np.sin(phi), q, x_centre, y_centre)
        if reach:
            # The circularised radius grows at most 1 / sqrt(min(q, 1/q)) times as fast as the distance.
            columns += ((0.5 * math.sqrt(2.0) * pixel) / (r_eff * np.sqrt(np.minimum(q, 1.0 / q))),)
        return tuple(np.broadcast_to(np.asarray(c, dtype=np.float64), n.shape) for c in columns)

    def _parameter_tables(self, params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor | None]:
        """Per-image tables of the lens (:data:`_SIE_COLUMNS` plus ``b / 2`` and ``|gamma|``),
        source (Sersic plus reach) and lens light (Sersic, or None)."""
        q = np.minimum(np.atleast_1d(np.asarray(params["q"], dtype=np.float64)), _Q_MAX)
        n = len(q)
        phi = np.deg2rad(np.asarray(params["phi"], dtype=np.float64))
        x_lens = np.broadcast_to(np.asarray(params.get("x_lens", 0.0), dtype=np.float64), (n,))
        y_lens = np.broadcast_to(np.asarray(params.get("y_lens", 0.0), dtype=np.float64), (n,))
        gamma1 = np.asarray(params["gamma1"], dtype=np.float64)
        gamma2 = np.asarray(params["gamma2"], dtype=np.float64)
        b = np.asarray(params["theta_E"], dtype=np.float64) * np.sqrt(q)
        lens_columns = _sie_columns(b, q, np.sqrt(1.0 - q * q), np.cos(phi), np.sin(phi), x_lens, y_lens, gamma1, gamma2)
        # The source position is relative to the lens centre.
        x_source = x_lens + np.asarray(params["x_src"], dtype=np.float64)
        y_source = y_lens + np.asarray(params["y_src"], dtype=np.float64)
        source_columns = self._sersic_columns(params, "source", x_source, y_source, reach=True)
        source_map = _source_map(lens_columns[0], np.cos(phi), np.sin(phi), gamma1, gamma2, x_lens - x_source,
                                 y_lens - y_source, source_columns)
        lens = self._table(lens_columns + (0.5 * b, np.hypot(gamma1, gamma2)) + source_map, n)
        source = self._table(source_columns, n)
        light = self._sersic_table(params, "lens", x_lens, y_lens) if "lens_mag" in params else None
        return {"lens": lens, "source": source, "light": light}

    # rendering -----------------------------------------------------------------
    @property
    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Supersampled sub-pixel coordinates ``x (1, 1, W*ss)``, ``y (1, H*ss, 1)`` in arcsec."""
        return self._x, self._y

    def render_galaxy(self, params: Mapping[str, np.ndarray], prefix: str = "lens", *, convolve: bool = True) -> torch.Tensor:
        """Image ``(N, H, W)`` (e-/s) of the Sersic galaxy ``{prefix}_mag, _r_eff, _n, _q, _phi``.

        Centred on ``x_lens, y_lens`` when present (else the stamp centre).
        Rendered ``chunk_size`` images at a time; with adaptive supersampling
        only the core (:data:`ADAPTIVE_LENS_CORE_PIXELS`) is supersampled, as
        the lens light of :meth:`render_components`.
        """
        n = len(np.atleast_1d(params[f"{prefix}_mag"]))
        x_c = np.broadcast_to(np.asarray(params.get("x_lens", 0.0), dtype=np.float64), (n,))
        y_c = np.broadcast_to(np.asarray(params.get("y_lens", 0.0), dtype=np.float64), (n,))
        table = self._sersic_table(params, prefix, x_c, y_c)
        images = self._empty(n)
        chunk = n if self.chunk_size is None else self.chunk_size
        adaptive = self.adaptive_supersampling and self.supersampling > 1
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            light = table[rows]
            if adaptive:
                image = _supersample_core(
                    _sersic(self._x_centre, self._y_centre, _columns(light)), self._x_centre, self._y_centre, light,
                    self._offset_x, self._offset_y, self._centre_is_subpixel,
                    ADAPTIVE_LENS_CORE_PIXELS * self.survey.pixel_scale, self._core_window,
                )
            else:
                image = self._average(_sersic(self._x, self._y, _columns(light)))
            if convolve and self.psf_kernel is not None:
                self._convolve_into(image, images[rows])
            else:
                images[rows] = image
        return images

    def bin(self, fine: torch.Tensor) -> torch.Tensor:
        """Average ``ss x ss`` sub-pixels and convert surface brightness to flux per pixel."""
        return self._average(fine) * self.survey.pixel_scale**2

    def _average(self, fine: torch.Tensor) -> torch.Tensor:
        """Mean over the ``ss x ss`` sub-pixels of each pixel, ``(N, H*ss, W*ss)`` to ``(N, H, W)``."""
        ss, size = self.supersampling, self.image_size
        if ss == 1:
            return fine
        # avg_pool2d is ~8x faster on CPU than a reshape-mean over strided axes.
        return torch.nn.functional.avg_pool2d(fine.reshape(-1, 1, size * ss, size * ss), ss).reshape(-1, size, size)

    def convolve(self, images: torch.Tensor) -> torch.Tensor:
        """Convolve a batch ``(N, H, W)`` with the PSF ("same" size, zero padding), by rfft2.

        With no PSF the images are returned unchanged. Flux is conserved up to
        what the kernel spreads beyond the stamp edges.
        """
        if self.psf_kernel is None:
            return images
        return self._convolve_into(images, torch.empty_like(images))

    def _convolve_into(self, images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`convolve` (with a PSF) writing into ``out``, of the shape of ``images``."""
        flat_out = out.view(-1, *images.shape[-2:])
        for rows, convolved in self._convolved_parts(images):
            flat_out[rows] = convolved
        return out

    def _psf_transform_at(self, length: int) -> torch.Tensor:
        """The PSF's transposed ``rfft2`` at FFT length ``length`` (cached; dict writes are atomic across threads).

        Transposed (x frequency, y frequency), as :meth:`_convolved_parts` multiplies it.
        """
        transform = self._psf_transforms.get(length)
        if transform is None:
            size = self.psf_kernel.shape[0]
            padded = torch.zeros((length, length), dtype=self.dtype, device=self.device)
            padded[:size, :size] = torch.as_tensor(self.psf_kernel, dtype=self.dtype, device=self.device)
            transform = self._psf_transforms[length] = torch.fft.rfft2(padded).t().contiguous()
        return transform

    def _convolved_parts(
        self,
        images: torch.Tensor,
        margin: int = 0,
        transfer: Callable[[slice, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """PSF-convolved ``images`` (with a PSF), :data:`_FFT_CHUNK` at a time.

        Yields ``(rows, convolved)``: ``convolved (n, H, W)`` is a strided view into
        the inverse transform's work array, valid until the next part is made, so
        that callers read it once (copy or add noise) without an extra copy.

        ``transfer(rows, kx, ky)``, if given, returns a further per-image transfer
        function ``(n, L // 2 + 1, L)`` of a kernel centred on the origin that
        reaches at most ``margin`` pixels (L the FFT length, ``kx (1, L // 2 + 1,
        1)`` and ``ky (1, 1, L)`` the frequencies in cycles per pixel): it is
        multiplied into the PSF's transform, so both convolutions take one FFT
        pair (:func:`skysift.lens.observing.observe`). The padding grows by
        ``margin`` so that nothing wraps around onto the kept pixels.
        """
        height, width = images.shape[-2:]
        c = self._crop
        length = self._fft_length if not margin else _fft_size(max(max(height, width) + c + margin, 2 * c + 1))
        psf_transform = self._psf_transform_at(length)
        if transfer is not None:
            kx = torch.fft.rfftfreq(length, dtype=self.dtype, device=self.device).reshape(1, -1, 1)
            ky = torch.fft.fftfreq(length, dtype=self.dtype, device=self.device).reshape(1, 1, -1)
        flat = images.reshape(-1, height, width)
        # One axis at a time: the zero rows of the padding are never transformed
        # and only the kept rows are transformed back. The column transforms run on
        # the transposed row spectra (contiguous, ~15 % faster than strided ones).
        # Chunks of 32 images keep the complex work arrays (~0.8 MB) in cache, ~1.4x
        # faster than whole batches on CPU.
        for start in range(0, flat.shape[0], _FFT_CHUNK):
            part = flat[start : start + _FFT_CHUNK]
            rows = slice(start, start + part.shape[0])
            columns = torch.fft.rfft(part, n=length, dim=-1).transpose(-1, -2)
            transform = torch.fft.fft(columns, n=length, dim=-1)
            transform *= psf_transform
            if transfer is not None:
                transform *= transfer(rows, kx, ky)
            kept = torch.fft.ifft(transform, dim=-1)[..., c : c + height].transpose(-1, -2)
            yield rows, torch.fft.irfft(kept, n=length, dim=-1)[..., c : c + width]

    def render_components(
        self, params: Mapping[str, np.ndarray], *, convolve: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Noise-free images of the lensed source and the lens light.

        Parameters
        ----------
        params : mapping of str to array
            One value per system for every key of :data:`LENS_PRIORS` (the
            ``lens_*`` keys may be absent: no lens light).
        convolve : bool
            Apply the PSF (default) or return the images before convolution.

        Returns
        -------
        arc : torch.Tensor
            ``(N, H, W)`` lensed source after PSF convolution (e-/s).
        lens_light : torch.Tensor or None
            ``(N, H, W)`` lens galaxy after PSF convolution, or None.
        magnification : torch.Tensor
            ``(N,)`` lensed source flux inside the stamp (before the PSF)
            over the intrinsic source flux.
        """
        n = len(np.atleast_1d(params["theta_E"]))
        arc = self._empty(n)
        lens_light = self._empty(n) if "lens_mag" in params else None
        flux = torch.empty(n, dtype=self.dtype, device=self.device)
        for part, arc_part, light_part in self._pixel_chunks(params):
            flux[part] = arc_part.sum(dim=(-2, -1))
            arc[part] = self.convolve(arc_part) if convolve else arc_part
            if lens_light is not None:
                lens_light[part] = self.convolve(light_part) if convolve else light_part
        intrinsic = magnitude_to_flux(params["source_mag"], self.survey.zero_point)
        return arc, lens_light, flux / self._tensor(intrinsic).reshape(-1)

    def _empty(self, n: int) -> torch.Tensor:
        return torch.empty((n, self.image_size, self.image_size), dtype=self.dtype, device=self.device)

    def _pixel_chunks(
        self, params: Mapping[str, np.ndarray]
    ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor | None]]:
        """Arc and lens light (e-/s per pixel, before the PSF) of ``chunk_size`` systems at a time.

        Yields ``(rows, arc, lens_light)``, ``rows`` the slice of the batch. Callers
        finish each chunk (sum, convolution, noise) while it is in cache and write
        only the result into the batch: no batch-sized temporaries, whose fresh
        pages cost more to fault in than the arithmetic on them.
        """
        tables = self._parameter_tables(params)
        n = tables["lens"].shape[0]
        chunk = n if self.chunk_size is None else self.chunk_size
        adaptive = self.adaptive_supersampling and self.supersampling > 1
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            lens, source = tables["lens"][rows], tables["source"][rows]
            light = None if tables["light"] is None else tables["light"][rows]
            if adaptive:
                yield (rows, *self._adaptive_pixels(lens, source, light))
            else:
                subpixels = (self._x_centre, self._y_centre, self._subpixel_x, self._subpixel_y)
                yield (rows, *self._surface_brightness(*subpixels, lens, source, light))

    def _adaptive_pixels(
        self, lens: torch.Tensor, source: torch.Tensor, light: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Arc and lens light ``(n, H, W)`` in e-/s per pixel, adaptively supersampled.

        See the class Notes for which pixels are supersampled.
        """
        offsets = (self._offset_x, self._offset_y)
        arc, lens_light, arc_flag = self._pixel_pass(
            self._x_centre, self._y_centre, lens, source, light, *offsets, self._centre_is_subpixel,
            ADAPTIVE_SOURCE_RADIUS, ADAPTIVE_LENS_CORE_PIXELS * self.survey.pixel_scale, self._core_window,
        )
        # numpy compacts a bool mask ~4x faster than torch.nonzero on CPUs.
        if arc_flag.device.type == "cpu":
            index = torch.from_numpy(np.flatnonzero(arc_flag.numpy().view(np.bool_)))
        else:
            index = torch.nonzero(arc_flag.reshape(-1)).squeeze(1)
        if index.numel():
            grid = (self._x_centre.reshape(-1), self._y_centre.reshape(-1), *offsets)
            self._refine_arc(arc, index, self._centre_is_subpixel, *grid, lens, source)
        return arc, lens_light

    def render(self, params: Mapping[str, np.ndarray]) -> torch.Tensor:
        """Noise-free, PSF-convolved images ``(N, H, W)`` in e-/s (arc plus lens light)."""
        return self._render(params, None)

    def _render(self, params: Mapping[str, np.ndarray], rng: np.random.Generator | None) -> torch.Tensor:
        """:meth:`render`, plus :meth:`add_noise` chunk by chunk when ``rng`` is given."""
        images = self._empty(len(np.atleast_1d(params["theta_E"])))
        for part, arc, lens_light in self._pixel_chunks(params):
            # Convolution is linear: one FFT pass for the sum.
            clean = arc if lens_light is None else arc.add_(lens_light)
            out = images[part]
            if self.psf_kernel is None:
                if rng is None:
                    out.copy_(clean)
                else:
                    self._add_noise_into(clean, rng, out)
            elif rng is None:
                self._convolve_into(clean, out)
            else:
                # Noise is added as each part leaves the inverse FFT, straight into the batch.
                for rows, convolved in self._convolved_parts(clean):
                    self._add_noise_into(convolved, rng, out[rows])
        return images

    def noise_variance(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel noise variance ``(e-/s)^2`` of noise-free images (e-/s), as :meth:`add_noise` draws it.

        ``((max(image, 0) + sky) t + n_exp (read^2 + gain^2 / 12)) / t^2`` with
        ``t`` the total exposure time: the photon noise of the source, lens and
        sky plus the read and quantisation noise.
        """
        survey = self.survey
        t = survey.total_exposure
        fixed = survey.sky_per_pixel * t + survey.n_exposures * (survey.read_noise**2 + survey.gain**2 / 12.0)
        return torch.clamp(images, min=0.0).mul(t).add_(fixed).div_(t * t)

    def add_noise(
        self, images: torch.Tensor, rng: np.random.Generator, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Add sky, photon, read and quantisation noise; the sky is subtracted again.

        The Poisson noise of ``(image + sky) * t`` electrons is drawn in its
        Gaussian limit (valid above ~10 e-; the sky alone gives ~100 (Euclid) to
        ~10^5 (LSST) electrons per pixel in these co-adds), plus
        ``n_exposures * (read_noise^2 + gain^2 / 12)``. Returns e-/s.

        Parameters
        ----------
        images : torch.Tensor
            Noise-free images (e-/s), any shape.
        rng : numpy.random.Generator
            Source of the random bits (a pure function of ``rng``).
        scale : torch.Tensor, optional
            ``(N,)`` factor on each image's noise standard deviation (images of
            other depths: :func:`skysift.lens.observing.noise_scale`); the
            random bits drawn do not depend on it.

        Notes
        -----
        Standard normal deviates by the Box-Muller transform (Box & Muller 1958)
        of 24-bit uniforms cut from the raw 64-bit words of ``rng``'s bit
        generator: one word gives two deviates, and the transform fuses with the
        noise scaling into one pass (:func:`_noisy`; ~3x faster on CPU than
        ``torch.randn`` plus the scaling). Compiled float32 kernels take the
        logarithm, sine and cosine from polynomials (:func:`_log2`,
        :func:`_unit_circle`, within float32 rounding of the library functions).
        The smallest uniform is ``2^-25``, so deviates are bounded by
        ``sqrt(50 ln 2) = 5.89`` (a tail of probability 4e-9 is cut).
        """
        out = torch.empty(images.shape, dtype=images.dtype, device=images.device)
        return self._add_noise_into(images, rng, out, scale)

    def _add_noise_into(
        self, images: torch.Tensor, rng: np.random.Generator, out: torch.Tensor, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`add_noise` writing into ``out`` (contiguous, of the shape of ``images``, not aliasing it)."""
        survey = self.survey
        t = survey.total_exposure
        fixed = survey.sky_per_pixel * t + survey.n_exposures * (survey.read_noise**2 + survey.gain**2 / 12.0)
        # One row per image (pairs of deviates within it), so that noise added to a
        # batch chunk by chunk, in order, equals noise added to the whole batch. The
        # first deviate of each pair goes to the first half of the image's pixels.
        height, width = images.shape[-2:] if images.ndim >= 2 else (1, images.numel())
        count = height * width
        n_rows = images.numel() // count
        pairs = (count + 1) // 2
        words = rng.bit_generator.random_raw(n_rows * pairs).view(np.int64)
        if height % 2 == 0:
            # The halves are halves of the rows: views, also of strided images.
            halves = images.reshape(n_rows, 2, height // 2, width)
            raw = torch.from_numpy(words.reshape(n_rows, height // 2, width)).to(images.device)
            scale = None if scale is None else scale.reshape(n_rows, 1, 1, 1)
            self._noisy_into(out.view(n_rows, 2, height // 2, width), halves, raw, t, fixed, scale)
            return out
        words = words.view(np.int32)
        rows = images.reshape(n_rows, count)
        if count % 2:
            rows = torch.nn.functional.pad(rows, (0, 1))
        bits = torch.from_numpy(words.reshape(n_rows, pairs, 2)).to(images.device)
        noisy = self._noisy(rows.reshape(-1, 2, pairs), bits, t, fixed, None if scale is None else scale.reshape(-1, 1, 1))
        out.view(n_rows, count).copy_(noisy.reshape(-1, 2 * pairs)[:, :count])
        return out

    def simulate(self, params: Mapping[str, np.ndarray], rng: np.random.Generator, *, noise: bool = True) -> torch.Tensor:
        """Render and (optionally) add noise: ``(N, H, W)`` images in e-/s.

        Equal to ``add_noise(render(params), rng)``, computed chunk by chunk.
        """
        return self._render(params, rng if noise else None)


def arc_signal_to_noise(arc: torch.Tensor, variance: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Integrated signal-to-noise ratio of lensed arcs, ``(N,)``.

    ``S/N = sum_p A_p / sqrt(sum_p V_p)`` over the pixels ``p`` where the
    noise-free, PSF-convolved arc ``A`` is above ``threshold`` times the local
    noise ``sqrt(V)``; ``V`` is the full per-pixel variance of the image (sky,
    lens light and arc photon noise, read noise;
    :meth:`LensSimulator.noise_variance`), so arcs buried in a bright lens
    galaxy count as faint. This is the matched aperture S/N of the part of the
    arc that stands out of the noise (the "arc S/N" of lens-detectability cuts,
    e.g. Collett 2015, ApJ 811, 20, who keeps lenses with S/N > 20). Zero when
    no pixel passes.

    Parameters
    ----------
    arc : torch.Tensor
        ``(N, H, W)`` noise-free arc images (e-/s per pixel).
    variance : torch.Tensor
        ``(N, H, W)`` noise variance of the same pixels ((e-/s)^2).
    threshold : float
        Pixel selection in units of the local noise.
    """
    # The mask in floating point, sign(max(A - t sqrt(V), 0)): the same pixels as A > t sqrt(V)
    # (a - b > 0 iff a > b, with gradual underflow), without torch's slow bool path on CPUs.
    mask = (arc - threshold * torch.sqrt(variance)).clamp_(min=0.0).sign_()
    signal = (arc * mask).sum(dim=(-2, -1))
    noise = torch.sqrt((variance * mask).sum(dim=(-2, -1)))
    return torch.where(noise > 0, signal / noise.clamp(min=1e-30), torch.zeros_like(signal))


def _columns(table: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The columns of an ``(n, P)`` parameter table as ``(n, 1, 1)`` views, for ``(1, H, W)`` grids."""
    return table[:, :, None, None].unbind(1)


def _surface_brightness(
    x: torch.Tensor,
    y: torch.Tensor,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    lens: torch.Tensor,
    source: torch.Tensor,
    light: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lensed-source and lens-light pixel means ``(n, H, W)`` over sub-pixels at ``offset_x, offset_y``.

    ``x (1, 1, W)``, ``y (1, H, 1)`` are the pixel centres. The loop over
    sub-pixels is unrolled at trace time into one fused kernel over the pixels:
    the supersampled images are never stored.
    """
    lens_columns, source_columns = _columns(lens), _columns(source)
    light_columns = None if light is None else _columns(light)
    arc = lens_light = None
    for k in range(offset_x.shape[0]):
        x_sub, y_sub = x + offset_x[k], y + offset_y[k]
        term = _sersic_from_radius2(_source_radius2(x_sub, y_sub, lens_columns, source_columns)[0], source_columns)
        arc = term if arc is None else arc + term
        if light_columns is not None:
            term = _sersic(x_sub, y_sub, light_columns)
            lens_light = term if lens_light is None else lens_light + term
    weight = 1.0 / offset_x.shape[0]
    return arc * weight, None if lens_light is None else lens_light * weight


def _pixel_pass(
    x: torch.Tensor,
    y: torch.Tensor,
    lens: torch.Tensor,
    source: torch.Tensor,
    light: torch.Tensor | None,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    centre_is_subpixel: bool,
    source_radius: float,
    core_radius: float,
    window: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Pixel-centre pass of adaptive supersampling (see :class:`LensSimulator` Notes).

    Returns the arc at the pixel centres ``(n, H, W)``, the lens light with its
    core already supersampled (:func:`_supersample_core`), and the flags
    (true or 1: supersample) of the arc pixels: compiled, uint8 through int32
    (inductor's vectorised CPU code stores bool ~30x slower than integers);
    eager, bool (two passes over the flags fewer).
    """
    lens_columns, source_columns = _columns(lens), _columns(source)
    radius2, psi = _source_radius2(x, y, lens_columns, source_columns)
    arc = _sersic_from_radius2(radius2, source_columns)
    # Source-plane footprint of the pixel's sub-pixels (up to sqrt(2) / 3 pixel
    # from its centre; we allow sqrt(2) / 2): the lens mapping stretches
    # distances by at most |1 - kappa| + |gamma| <= |1 - kappa| + kappa + |gamma_ext|
    # (an isothermal profile has |gamma| = kappa, and kappa = b / (2 psi)). A
    # pointwise bound, so this pass stays one fused loop, unlike finite
    # differences between neighbours.
    half_b, core, shear = lens_columns[11], lens_columns[9], lens_columns[12]
    kappa = half_b / (psi + core)
    limit = source_radius + source_columns[10] * (torch.abs(1.0 - kappa) + kappa + shear)
    if _is_compiling():
        arc_flag = (radius2 < limit * limit).to(torch.int32).to(torch.uint8)
    elif radius2.device.type == "cpu":
        # numpy's vectorised comparison: ~4x faster than torch's to bool on CPUs (same flags).
        arc_flag = torch.from_numpy(np.less(radius2.numpy(), (limit * limit).numpy()))
    else:
        arc_flag = radius2 < limit * limit
    if light is None:
        return arc, None, arc_flag
    lens_light = _sersic(x, y, _columns(light))
    lens_light = _supersample_core(
        lens_light, x, y, light, offset_x, offset_y, centre_is_subpixel, core_radius, window
    )
    return arc, lens_light, arc_flag


def _supersample_core(
    lens_light: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    light: torch.Tensor,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    centre_is_subpixel: bool,
    core_radius: float,
    window: int,
) -> torch.Tensor:
    """Replace the lens-light pixels within ``core_radius`` of the light centre by their sub-pixel mean.

    Those pixels lie in a ``window x window`` block per image (its corner from
    the light centre, clamped to the stamp), so the block is evaluated densely:
    no compaction of flagged pixels, and one scatter of the block back.
    """
    x_pixels, y_pixels = x.reshape(-1), y.reshape(-1)
    pixel = x_pixels[1] - x_pixels[0]
    columns = _columns(light)
    x_centre, y_centre = light[:, 3], light[:, 4]
    # Last pixel index before the core, floor(p - r) for a centre at pixel index p: the
    # core's pixels j, |j - p| < r, are within floor(p - r) + [1, ceil(2 r)], inside a block
    # of ceil(2 r) + 1 pixels with one to spare (rounding of the corner can only drop a
    # pixel at distance ~r, whose flag is itself decided by rounding).
    start_x = torch.floor((x_centre - x_pixels[0] - core_radius) / pixel).long()
    start_y = torch.floor((y_centre - y_pixels[0] - core_radius) / pixel).long()
    steps = torch.arange(window, device=lens_light.device)
    block_columns = torch.clamp(start_x, 0, x_pixels.shape[0] - window)[:, None] + steps
    block_rows = torch.clamp(start_y, 0, y_pixels.shape[0] - window)[:, None] + steps
    x_block, y_block = x_pixels[block_columns][:, None, :], y_pixels[block_rows][:, :, None]
    images = torch.arange(lens_light.shape[0], device=lens_light.device)[:, None, None]
    index = (images, block_rows[:, :, None], block_columns[:, None, :])
    block = lens_light[index]
    total = block if centre_is_subpixel else torch.zeros_like(block)
    if _is_compiling():
        for k in range(offset_x.shape[0]):
            total = total + _sersic(x_block + offset_x[k], y_block + offset_y[k], columns)
    else:
        # Eager, all sub-pixels in one (K, n, window, window) array, as in _subpixel_arc.
        shape = (-1, 1, 1, 1)
        for value in _sersic(x_block + offset_x.reshape(shape), y_block + offset_y.reshape(shape), columns):
            total = total + value
    dx, dy = x_block - columns[3], y_block - columns[4]
    inside = dx * dx + dy * dy < core_radius * core_radius
    weight = 1.0 / (offset_x.shape[0] + int(centre_is_subpixel))
    return lens_light.index_put(index, torch.where(inside, total * weight, block))


def _flat_positions(
    index: torch.Tensor, x_pixels: torch.Tensor, y_pixels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(M,)`` and image index ``(M,)`` of flat indices into ``(n, H, W)``.

    The quotients are taken in float64, ``floor((i + 0.5) / d)``, exact for
    ``i < 2^52``: vectorised int64 division is emulated lane by lane on CPUs.
    """
    width = x_pixels.shape[0]
    n_pixels = width * y_pixels.shape[0]
    image = torch.floor((index.double() + 0.5) * (1.0 / n_pixels)).long()
    pixel = index - image * n_pixels
    row = torch.floor((pixel.double() + 0.5) * (1.0 / width)).long()
    return x_pixels[pixel - row * width], y_pixels[row], image


def _gathered_columns(
    table: torch.Tensor, image: torch.Tensor, needed: Sequence[int] | None = None
) -> tuple[torch.Tensor | None, ...]:
    """The rows ``image (M,)`` of an ``(n, P)`` parameter table as ``P`` columns ``(M,)``.

    Eager, each column is gathered contiguous (``table.t()[:, image]``): every
    column is read by a dozen operations per sub-pixel, and strided reads (the
    columns of ``table[image]``) are not vectorised: the eager kernel
    (``benchmarks/stages.py``'s) ran 1.6x faster with contiguous columns, with
    the same values. With ``needed`` (column positions), eager, only those are
    gathered and the others are None. Compiled, the gathers fuse into the
    kernel's loads either way.
    """
    if _is_compiling():
        return table[image].unbind(1)
    if needed is None:
        return table.t()[:, image].unbind(0)
    columns: list[torch.Tensor | None] = [None] * table.shape[1]
    for position, column in zip(needed, table.t()[list(needed)][:, image].unbind(0)):
        columns[position] = column
    return tuple(columns)


#: Lens and source table columns that the refinement's kernel reads (:func:`_source_radius2`,
#: :func:`_sersic_from_radius2`): a third of the ~34 columns are not gathered per sub-pixel.
_REFINED_LENS_COLUMNS = (1, 2, 3, 4, 5, 6, 9, 10, *range(_SOURCE_MAP_START, _SOURCE_MAP_START + len(_SOURCE_MAP_COLUMNS)))
_REFINED_SOURCE_COLUMNS = (0, 7, 8, 9)


def _subpixel_arc(
    index: torch.Tensor,
    centre: torch.Tensor | None,
    x_pixels: torch.Tensor,
    y_pixels: torch.Tensor,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    lens: torch.Tensor,
    source: torch.Tensor,
) -> torch.Tensor:
    """Mean lensed-source brightness over the sub-pixels of the flat pixel ``index (M,)`` into ``(n, H, W)``.

    ``centre`` (the pixel-pass values, when the pixel centre is a sub-pixel)
    supplies the middle sub-pixel; the others are at ``offset_x, offset_y``.
    The loop over sub-pixels is unrolled at trace time, so the compiled kernel
    runs over the pixels, vectorised, and gathers each pixel's parameter row once.
    """
    x, y, image = _flat_positions(index, x_pixels, y_pixels)
    lens_columns = _gathered_columns(lens, image, _REFINED_LENS_COLUMNS)
    source_columns = _gathered_columns(source, image, _REFINED_SOURCE_COLUMNS)
    total = torch.zeros_like(x) if centre is None else centre.reshape(-1)[index]
    if _is_compiling():
        for k in range(offset_x.shape[0]):
            x_sub, y_sub = x + offset_x[k], y + offset_y[k]
            total = total + _sersic_from_radius2(_source_radius2(x_sub, y_sub, lens_columns, source_columns)[0],
                                                 source_columns)
    else:
        # Eager, the sub-pixels go through as one (K, M) array: each of the kernel's ~60
        # operations is dispatched once, not K times (at ~5 us a dispatch, that overhead
        # was as large as the arithmetic on a chunk's few thousand flagged pixels).
        x_sub, y_sub = x + offset_x[:, None], y + offset_y[:, None]
        for value in _sersic_from_radius2(_source_radius2(x_sub, y_sub, lens_columns, source_columns)[0], source_columns):
            total = total + value
    return total * (1.0 / (offset_x.shape[0] + int(centre is not None)))


def _refine_arc(
    arc: torch.Tensor,
    index: torch.Tensor,
    centre_is_subpixel: bool,
    x_pixels: torch.Tensor,
    y_pixels: torch.Tensor,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    lens: torch.Tensor,
    source: torch.Tensor,
) -> torch.Tensor:
    """Replace the pixels at the flat ``index`` of ``arc (n, H, W)`` by their sub-pixel mean, in place.

    :func:`_subpixel_arc`, with the pixel-centre values of ``arc`` as the middle
    sub-pixel when ``centre_is_subpixel``. Compiled, the scatter is a store of
    the fused kernel into ``arc`` (no separate indexing pass).
    """
    centre = arc if centre_is_subpixel else None
    arc.view(-1)[index] = _subpixel_arc(index, centre, x_pixels, y_pixels, offset_x, offset_y, lens, source)
    return arc


def _noisy(
    images: torch.Tensor, bits: torch.Tensor, exposure_time: float, fixed: float, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """``images + sigma z`` for ``images (n, 2, ...)`` in e-/s, ``z`` by Box-Muller from int32 ``bits (n, ..., 2)``.

    ``sigma = sqrt(max(image, 0) t + fixed) / t`` (see :meth:`LensSimulator.add_noise`), times ``scale``
    (broadcast against ``images``) if given.
    """
    return _add_deviates(images, bits[..., 0], bits[..., 1], exposure_time, fixed, scale)


def _add_deviates(
    images: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    exposure_time: float,
    fixed: float,
    scale: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`_noisy` from the low and high 32-bit halves of the words (bits 8-31 are read; ``high`` sign-extended).

    The halves may be int64 (``words`` and ``words >> 32``): one contiguous load
    per word, where int32 halves interleaved in memory make inductor give up
    vectorising the kernel (it counts strided loads). Eager, the result goes
    into ``out`` when given.
    """
    unit = 2.0**-24
    if not _is_compiling():
        return _add_deviates_eager(images, low, high, exposure_time, fixed, scale, out)
    # Top 24 bits of each half (arithmetic shift, then mask): uniforms in (0, 1) and [0, 1).
    u1 = (((low >> 8) & 0xFFFFFF).to(images.dtype) + 0.5) * unit
    if _fusing(images):
        radius = torch.sqrt((-2.0 * _LN_2) * _log2(u1))
        # Signed top 24 bits: the same angle modulo 2 pi, in [-pi, pi).
        cos_angle, sin_angle = _unit_circle((high >> 8).to(images.dtype))
    else:
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2.0 * math.pi * unit) * ((high >> 8) & 0xFFFFFF).to(images.dtype)
        cos_angle, sin_angle = torch.cos(angle), torch.sin(angle)
    deviates = torch.stack((radius * cos_angle, radius * sin_angle), dim=1)
    sigma = torch.sqrt(torch.clamp(images, min=0.0) * exposure_time + fixed) / exposure_time
    if scale is not None:
        sigma = sigma * scale
    return images + sigma * deviates


def _add_deviates_eager(
    images: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    exposure_time: float,
    fixed: float,
    scale: torch.Tensor | None,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`_add_deviates` without ``torch.compile``: the same operations on the same values, in place.

    Each step overwrites its operand instead of allocating a new array (eager,
    every operation is one pass over memory, and fresh arrays cost page faults
    besides), and the noisy images are written straight into ``out``.
    Products and sums are only reordered where IEEE arithmetic commutes, so the
    result is the same.
    """
    unit = 2.0**-24
    radius = (low >> 8).bitwise_and_(0xFFFFFF).to(images.dtype).add_(0.5).mul_(unit).log_().mul_(-2.0).sqrt_()
    angle = (high >> 8).bitwise_and_(0xFFFFFF).to(images.dtype).mul_(2.0 * math.pi * unit)
    deviates = torch.empty((radius.shape[0], 2, *radius.shape[1:]), dtype=images.dtype, device=images.device)
    torch.cos(angle, out=deviates[:, 0]).mul_(radius)
    torch.sin(angle, out=deviates[:, 1]).mul_(radius)
    sigma = torch.clamp(images, min=0.0).mul_(exposure_time).add_(fixed).sqrt_().div_(exposure_time)
    if scale is not None:
        sigma.mul_(scale)
    sigma.mul_(deviates)
    return torch.add(images, sigma) if out is None else torch.add(images, sigma, out=out)


#: Coefficients (lowest order first) of ``sin(x) = x S(x^2)`` and ``cos(x) = C(x^2)`` on
#: ``[-pi/4, pi/4]``, least-squares fits on Chebyshev nodes: within 7e-8 evaluated in float32.
_SIN_COEFFICIENTS = (1.0, -1.6666666632e-01, 8.3333287836e-03, -1.9839202471e-04, 2.717347545e-06)
_COS_COEFFICIENTS = (1.0, -4.9999999999e-01, 4.1666666544e-02, -1.3888880395e-03, 2.4798928965e-05, -2.7173442003e-07)


def _unit_circle(turns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``2 pi turns / 2^24`` for integer-valued floats ``|turns| <= 2^23``, by polynomials.

    The reduction to the nearest quarter turn ``k`` is exact, so the polynomials
    only see ``[-pi/4, pi/4]``; the rotation by ``k`` quarter turns multiplies by
    ``cos(k pi / 2) = 1 - |k|`` and ``sin(k pi / 2) = k (2 - |k|)`` (0 or +-1: exact).
    ~2x cheaper than Sleef's ``sin`` plus ``cos``.
    """
    quarter = torch.floor(turns * 2.0**-22 + 0.5)  # -2 to 2
    x = (turns - quarter * 2.0**22) * (2.0 * math.pi * 2.0**-24)
    x2 = x * x
    sine, cosine = x * _polynomial(x2, _SIN_COEFFICIENTS), _polynomial(x2, _COS_COEFFICIENTS)
    size = torch.abs(quarter)
    cos_quarter, sin_quarter = 1.0 - size, quarter * (2.0 - size)
    return cos_quarter * cosine - sin_quarter * sine, sin_quarter * cosine + cos_quarter * sine


def _noisy_into(
    out: torch.Tensor,
    images: torch.Tensor,
    words: torch.Tensor,
    exposure_time: float,
    fixed: float,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`_noisy` written into ``out``, for ``images (n, 2, ...)`` and int64 ``words (n, ...)``."""
    if not _is_compiling():
        return _add_deviates(images, words, words >> 32, exposure_time, fixed, scale, out)
    return out.copy_(_add_deviates(images, words, words >> 32, exposure_time, fixed, scale))
