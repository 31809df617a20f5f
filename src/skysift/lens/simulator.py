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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import erf, gammaln

from skysift.simulate.priors import Prior, TruncatedNormal, Uniform, sample_parameters

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
    "theta_E": Uniform(0.8, 2.5, unit="arcsec"),
    "q": Uniform(0.5, 1.0),
    "phi": Uniform(0.0, 180.0, unit="deg"),
    "gamma1": TruncatedNormal(0.0, 0.05, -0.2, 0.2),
    "gamma2": TruncatedNormal(0.0, 0.05, -0.2, 0.2),
    "x_lens": Uniform(-0.1, 0.1, unit="arcsec"),
    "y_lens": Uniform(-0.1, 0.1, unit="arcsec"),
    "source_mag": Uniform(21.0, 24.0, unit="mag"),
    "source_r_eff": Uniform(0.1, 0.5, unit="arcsec"),
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
    log_norm = np.log(2.0 * np.pi * n * r_eff**2) + bn - 2.0 * n * np.log(bn) + gammaln(2.0 * n)
    return np.asarray(flux, dtype=np.float64) * np.exp(-log_norm)


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
    shape ``(N, 1, 1)`` against a ``(1, H, W)`` grid). ``R^(1/n)`` is computed as
    ``exp(log(R^2) / (2 n))``, avoiding a square root and a general power.
    """
    radius2 = _sersic_radius2(x, y, r_eff, cos_phi, sin_phi, q, x_centre, y_centre)
    return _sersic_from_radius2(radius2, amplitude, n, bn)


def _sersic_radius2(
    x: torch.Tensor,
    y: torch.Tensor,
    r_eff: torch.Tensor,
    cos_phi: torch.Tensor,
    sin_phi: torch.Tensor,
    q: torch.Tensor,
    x_centre: torch.Tensor,
    y_centre: torch.Tensor,
) -> torch.Tensor:
    """Squared circularised radius in units of ``R_e``, ``(q x'^2 + y'^2 / q) / R_e^2``, floored."""
    dx = x - x_centre
    dy = y - y_centre
    xt = cos_phi * dx + sin_phi * dy
    yt = cos_phi * dy - sin_phi * dx
    # lenstronomy floors R at 1e-5 arcsec; the floor also keeps the log finite.
    return torch.clamp(q * xt * xt + yt * yt / q, min=_SERSIC_SMOOTHING**2) / (r_eff * r_eff)


def _sersic_from_radius2(radius2: torch.Tensor, amplitude: torch.Tensor, n: torch.Tensor, bn: torch.Tensor) -> torch.Tensor:
    """``I_e exp(-b_n ((R / R_e)^(1/n) - 1))`` from ``(R / R_e)^2``.

    ``(R / R_e)^(1/n) = exp(log(R^2 / R_e^2) / (2 n))``: no square root, no general
    power, and one exp/log pair that fuses (``torch.compile``) into vectorised code.
    """
    reduced = torch.exp(torch.log(radius2) * (0.5 / n))
    return amplitude * torch.exp(-bn * (reduced - 1.0))


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
    dx = x - x_centre
    dy = y - y_centre
    xt = cos_phi * dx + sin_phi * dy
    yt = cos_phi * dy - sin_phi * dx
    psi = torch.sqrt(q * q * xt * xt + yt * yt)
    scale = b / root
    core = _SIE_CORE / torch.sqrt(q)
    ax = scale * torch.atan(root * xt / (psi + core))
    ay = scale * torch.atanh(root * yt / (psi + q * q * core))
    alpha_x = cos_phi * ax - sin_phi * ay + gamma1 * dx + gamma2 * dy
    alpha_y = sin_phi * ax + cos_phi * ay + gamma2 * dx - gamma1 * dy
    return alpha_x, alpha_y


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
    cdf = 0.5 * (1.0 + erf(edges / (math.sqrt(2.0) * sigma)))
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
        Images evaluated together on the supersampled grid; small chunks keep
        the working set in cache on CPUs. ``None``: the whole batch (GPUs).
    sersic_bn_method : str
        ``"ciotti-bertin"`` (default) or ``"capaccioli"`` (lenstronomy's), see :func:`sersic_bn`.
    compile : bool
        Fuse the elementwise surface-brightness kernels with ``torch.compile``
        (several times faster on CPU after a one-off compilation of ~20 s per kernel).
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
      centre, widened by the pixel's own footprint in the source plane (half the
      distance to its neighbours' ray-shot positions, so that pixels straddling
      the source near critical curves, or the lens centre where the mapping
      jumps, are caught);
    * lens light: pixels within :data:`ADAPTIVE_LENS_CORE_PIXELS` pixels of the
      lens centre (the Sersic cusp). The lens light does not depend on the mass
      model, so this mask is fixed by the light parameters alone.

    Elsewhere the surface brightness is smooth on the pixel scale and the
    pixel-centre value is within ~1e-3 of the image peak of the uniformly
    supersampled one (``tests/lens/test_simulator.py`` checks < 1 % of the peak
    over the default priors; ``benchmarks/lenses.py`` prints the worst case).
    With the default priors about 5-15 % of the pixels are supersampled.
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
        # Sub-pixel offsets from the pixel centre, flattened (ss * ss,), row-major like the fine grid.
        offsets = ((np.arange(ss) + 0.5) / ss - 0.5) * pixel
        self._offset_x = torch.as_tensor(np.tile(offsets, ss), dtype=dtype, device=self.device)
        self._offset_y = torch.as_tensor(np.repeat(offsets, ss), dtype=dtype, device=self.device)
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
            padded = torch.zeros((length, length), dtype=dtype, device=self.device)
            padded[:size, :size] = torch.as_tensor(self.psf_kernel, dtype=dtype, device=self.device)
            self._psf_transform = torch.fft.rfft2(padded)
        self._surface_brightness = _surface_brightness
        self._pixel_pass = _pixel_pass
        self._subpixel_arc = _subpixel_arc
        self._subpixel_light = _subpixel_light
        if compile:
            # torch.compile is lazy: only the kernels a render uses get compiled.
            self._surface_brightness = torch.compile(_surface_brightness, dynamic=False)
            self._pixel_pass = torch.compile(_pixel_pass, dynamic=False)
            # The number of supersampled pixels changes from batch to batch.
            self._subpixel_arc = torch.compile(_subpixel_arc, dynamic=True)
            self._subpixel_light = torch.compile(_subpixel_light, dynamic=True)

    # parameters ----------------------------------------------------------------
    @staticmethod
    def draw_parameters(
        n: int, rng: np.random.Generator, priors: Mapping[str, Prior] | None = None
    ) -> dict[str, np.ndarray]:
        """Draw ``n`` parameter sets from ``priors`` (default :data:`LENS_PRIORS`)."""
        return sample_parameters(LENS_PRIORS if priors is None else priors, n, rng)

    def _tensor(self, values: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(values, dtype=np.float64), dtype=self.dtype, device=self.device).reshape(-1, 1, 1)

    def _light_tensors(self, params: Mapping[str, np.ndarray], prefix: str) -> list[torch.Tensor]:
        zp = self.survey.zero_point
        n = np.asarray(params[f"{prefix}_n"], dtype=np.float64)
        r_eff = np.asarray(params[f"{prefix}_r_eff"], dtype=np.float64)
        amplitude = sersic_amplitude(magnitude_to_flux(params[f"{prefix}_mag"], zp), r_eff, n, self.sersic_bn_method)
        phi = np.deg2rad(np.asarray(params[f"{prefix}_phi"], dtype=np.float64))
        return [
            self._tensor(amplitude),
            self._tensor(r_eff),
            self._tensor(n),
            self._tensor(sersic_bn(n, self.sersic_bn_method)),
            self._tensor(np.cos(phi)),
            self._tensor(np.sin(phi)),
            self._tensor(params[f"{prefix}_q"]),
        ]

    def _parameter_tensors(self, params: Mapping[str, np.ndarray]) -> dict[str, list[torch.Tensor]]:
        q = np.minimum(np.asarray(params["q"], dtype=np.float64), _Q_MAX)
        phi = np.deg2rad(np.asarray(params["phi"], dtype=np.float64))
        x_lens = np.asarray(params.get("x_lens", 0.0), dtype=np.float64)
        y_lens = np.asarray(params.get("y_lens", 0.0), dtype=np.float64)
        n = len(np.atleast_1d(params["theta_E"]))
        x_lens = np.broadcast_to(x_lens, (n,))
        y_lens = np.broadcast_to(y_lens, (n,))
        lens = [
            self._tensor(np.asarray(params["theta_E"], dtype=np.float64) * np.sqrt(q)),
            self._tensor(q),
            self._tensor(np.sqrt(1.0 - q * q)),
            self._tensor(np.cos(phi)),
            self._tensor(np.sin(phi)),
            self._tensor(x_lens),
            self._tensor(y_lens),
            self._tensor(params["gamma1"]),
            self._tensor(params["gamma2"]),
        ]
        # The source position is relative to the lens centre.
        source = self._light_tensors(params, "source") + [
            self._tensor(x_lens + np.asarray(params["x_src"], dtype=np.float64)),
            self._tensor(y_lens + np.asarray(params["y_src"], dtype=np.float64)),
        ]
        light = self._light_tensors(params, "lens") + [self._tensor(x_lens), self._tensor(y_lens)] if "lens_mag" in params else None
        return {"lens": lens, "source": source, "light": light}

    # rendering -----------------------------------------------------------------
    @property
    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Supersampled sub-pixel coordinates ``x (1, 1, W*ss)``, ``y (1, H*ss, 1)`` in arcsec."""
        return self._x, self._y

    def render_galaxy(self, params: Mapping[str, np.ndarray], prefix: str = "lens", *, convolve: bool = True) -> torch.Tensor:
        """Image ``(N, H, W)`` (e-/s) of the Sersic galaxy ``{prefix}_mag, _r_eff, _n, _q, _phi``.

        Centred on ``x_lens, y_lens`` when present (else the stamp centre).
        """
        n = len(np.atleast_1d(params[f"{prefix}_mag"]))
        x_c = np.broadcast_to(np.asarray(params.get("x_lens", 0.0), dtype=np.float64), (n,))
        y_c = np.broadcast_to(np.asarray(params.get("y_lens", 0.0), dtype=np.float64), (n,))
        light = self._light_tensors(params, prefix) + [self._tensor(x_c), self._tensor(y_c)]
        image = self.bin(sersic_profile(self._x, self._y, *light))
        return self.convolve(image) if convolve else image

    def bin(self, fine: torch.Tensor) -> torch.Tensor:
        """Average ``ss x ss`` sub-pixels and convert surface brightness to flux per pixel."""
        n = fine.shape[0]
        ss, size = self.supersampling, self.image_size
        area = self.survey.pixel_scale**2
        if ss == 1:
            return fine * area
        # avg_pool2d is ~8x faster on CPU than a reshape-mean over strided axes.
        return torch.nn.functional.avg_pool2d(fine.reshape(n, 1, size * ss, size * ss), ss).reshape(n, size, size) * area

    def convolve(self, images: torch.Tensor) -> torch.Tensor:
        """Convolve a batch ``(N, H, W)`` with the PSF ("same" size, zero padding), by rfft2.

        With no PSF the images are returned unchanged. Flux is conserved up to
        what the kernel spreads beyond the stamp edges.
        """
        if self.psf_kernel is None:
            return images
        height, width = images.shape[-2:]
        length, c = self._fft_length, self._crop
        flat = images.reshape(-1, height, width)
        out = torch.empty_like(flat)
        # One axis at a time: the zero rows of the padding are never transformed
        # and only the kept rows are transformed back. Chunks of 32 images keep the
        # complex work arrays (~0.8 MB) in cache, ~1.4x faster than whole batches on CPU.
        for start in range(0, flat.shape[0], _FFT_CHUNK):
            part = flat[start : start + _FFT_CHUNK]
            transform = torch.fft.fft(torch.fft.rfft(part, n=length, dim=-1), n=length, dim=-2)
            transform *= self._psf_transform
            rows = torch.fft.ifft(transform, dim=-2)[..., c : c + height, :]
            out[start : start + _FFT_CHUNK] = torch.fft.irfft(rows, n=length, dim=-1)[..., c : c + width]
        return out.reshape(images.shape)

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
        tensors = self._parameter_tensors(params)
        n = tensors["lens"][0].shape[0]
        chunk = n if self.chunk_size is None else self.chunk_size
        arcs, lights = [], []
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            lens = [t[part] for t in tensors["lens"]]
            source = [t[part] for t in tensors["source"]]
            light = None if tensors["light"] is None else [t[part] for t in tensors["light"]]
            if self.adaptive_supersampling and self.supersampling > 1:
                arc_pixels, light_pixels = self._adaptive_surface_brightness(lens, source, light)
                area = self.survey.pixel_scale**2
                arcs.append(arc_pixels * area)
                if light_pixels is not None:
                    lights.append(light_pixels * area)
                continue
            arc_fine, light_fine = self._surface_brightness(self._x, self._y, lens, source, light)
            arcs.append(self.bin(arc_fine))
            if light_fine is not None:
                lights.append(self.bin(light_fine))
        arc = torch.cat(arcs)
        intrinsic = magnitude_to_flux(params["source_mag"], self.survey.zero_point)
        magnification = arc.sum(dim=(-2, -1)) / self._tensor(intrinsic).reshape(-1)
        lens_light = torch.cat(lights) if lights else None
        if convolve:
            arc = self.convolve(arc)
            if lens_light is not None:
                lens_light = self.convolve(lens_light)
        return arc, lens_light, magnification

    def _adaptive_surface_brightness(
        self, lens: list[torch.Tensor], source: list[torch.Tensor], light: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pixel-mean surface brightness ``(n, H, W)`` of arc and lens light, adaptively supersampled.

        See the class Notes for which pixels are supersampled.
        """
        core = ADAPTIVE_LENS_CORE_PIXELS * self.survey.pixel_scale
        arc, lens_light, arc_mask, light_mask = self._pixel_pass(
            self._x_centre, self._y_centre, lens, source, light, ADAPTIVE_SOURCE_RADIUS, core, self.survey.pixel_scale
        )
        grid = (self._x_centre.reshape(-1), self._y_centre.reshape(-1), self._offset_x, self._offset_y)
        # Parameters as one (n, P) table: the compiled kernels gather a row per
        # supersampled pixel inside their loop (one indirect load, no eager index ops).
        index = torch.nonzero(arc_mask.reshape(-1)).squeeze(1)
        if index.numel():
            lens_table, source_table = torch.cat(lens, dim=1)[..., 0], torch.cat(source, dim=1)[..., 0]
            arc.view(-1)[index] = self._subpixel_arc(index, *grid, lens_table, source_table)
        if lens_light is not None:
            index = torch.nonzero(light_mask.reshape(-1)).squeeze(1)
            if index.numel():
                lens_light.view(-1)[index] = self._subpixel_light(index, *grid, torch.cat(light, dim=1)[..., 0])
        return arc, lens_light

    def render(self, params: Mapping[str, np.ndarray]) -> torch.Tensor:
        """Noise-free, PSF-convolved images ``(N, H, W)`` in e-/s (arc plus lens light)."""
        arc, lens_light, _ = self.render_components(params, convolve=False)
        # Convolution is linear: one FFT pass for the sum.
        return self.convolve(arc if lens_light is None else arc + lens_light)

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

    def add_noise(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Add sky, photon, read and quantisation noise; the sky is subtracted again.

        The Poisson noise of ``(image + sky) * t`` electrons is drawn in its
        Gaussian limit (valid above ~10 e-, always true for co-adds), plus
        ``n_exposures * (read_noise^2 + gain^2 / 12)``. Returns e-/s.

        Parameters
        ----------
        images : torch.Tensor
            Noise-free images (e-/s), any shape.
        rng : numpy.random.Generator
            Source of the seed of the torch generator (pure function of ``rng``).
        """
        survey = self.survey
        t = survey.total_exposure
        fixed = survey.sky_per_pixel * t + survey.n_exposures * (survey.read_noise**2 + survey.gain**2 / 12.0)
        generator = torch.Generator(device=self.device).manual_seed(int(rng.integers(0, 2**63 - 1)))
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
        # In place on fresh tensors: one pass fewer over memory per step than out-of-place.
        sigma = torch.clamp(images, min=0.0).mul_(t).add_(fixed).sqrt_().div_(t)
        return noise.mul_(sigma).add_(images)

    def simulate(self, params: Mapping[str, np.ndarray], rng: np.random.Generator, *, noise: bool = True) -> torch.Tensor:
        """Render and (optionally) add noise: ``(N, H, W)`` images in e-/s."""
        images = self.render(params)
        return self.add_noise(images, rng) if noise else images


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
    mask = (arc > threshold * torch.sqrt(variance)).to(arc.dtype)
    signal = (arc * mask).sum(dim=(-2, -1))
    noise = torch.sqrt((variance * mask).sum(dim=(-2, -1)))
    return torch.where(noise > 0, signal / noise.clamp(min=1e-30), torch.zeros_like(signal))


def _surface_brightness(
    x: torch.Tensor,
    y: torch.Tensor,
    lens: list[torch.Tensor],
    source: list[torch.Tensor],
    light: list[torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Supersampled source-plane-mapped and lens-light surface brightness (one fused kernel)."""
    alpha_x, alpha_y = sie_deflection(x, y, *lens)
    arc = sersic_profile(x - alpha_x, y - alpha_y, *source)
    lens_light = None if light is None else sersic_profile(x, y, *light)
    return arc, lens_light


def _pixel_pass(
    x: torch.Tensor,
    y: torch.Tensor,
    lens: list[torch.Tensor],
    source: list[torch.Tensor],
    light: list[torch.Tensor] | None,
    source_radius: float,
    core_radius: float,
    pixel_scale: float,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Pixel-centre pass of adaptive supersampling (see :class:`LensSimulator` Notes).

    Returns the arc and lens light at the pixel centres ``(n, H, W)`` and the
    boolean masks of the pixels to supersample for each.
    """
    alpha_x, alpha_y = sie_deflection(x, y, *lens)
    amplitude, r_eff, n, bn, cos_phi, sin_phi, q, x_centre, y_centre = source
    radius2 = _sersic_radius2(x - alpha_x, y - alpha_y, r_eff, cos_phi, sin_phi, q, x_centre, y_centre)
    arc = _sersic_from_radius2(radius2, amplitude, n, bn)
    # Source-plane footprint of the pixel's sub-pixels (up to sqrt(2) / 3 pixel
    # from its centre; we allow sqrt(2) / 2): the lens mapping stretches
    # distances by at most |1 - kappa| + |gamma| <= |1 - kappa| + kappa + |gamma_ext|
    # (an isothermal profile has |gamma| = kappa). A pointwise bound, so this pass
    # stays one fused loop, unlike finite differences between neighbours.
    b, q_lens, _, cos_lens, sin_lens, x_lens, y_lens, gamma1, gamma2 = lens
    dx, dy = x - x_lens, y - y_lens
    xt = cos_lens * dx + sin_lens * dy
    yt = cos_lens * dy - sin_lens * dx
    kappa = b / (2.0 * torch.sqrt(q_lens * q_lens * xt * xt + yt * yt) + _SIE_CORE)
    stretch = torch.abs(1.0 - kappa) + kappa + torch.sqrt(gamma1 * gamma1 + gamma2 * gamma2)
    # The circularised radius grows at most 1 / sqrt(min(q, 1/q)) times as fast as the distance.
    reach = (0.5 * math.sqrt(2.0) * pixel_scale) * stretch / (r_eff * torch.sqrt(torch.minimum(q, 1.0 / q)))
    arc_mask = radius2 < (source_radius + reach) ** 2
    if light is None:
        return arc, None, arc_mask, None
    lens_light = sersic_profile(x, y, *light)
    light_mask = (x - light[7]) ** 2 + (y - light[8]) ** 2 < core_radius * core_radius
    return arc, lens_light, arc_mask, light_mask


def _subpixel_grid(
    index: torch.Tensor, x_pixels: torch.Tensor, y_pixels: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-pixel coordinates ``(M, ss^2)`` and image index ``(M,)`` of flat pixel indices into ``(n, H, W)``."""
    width = x_pixels.shape[0]
    n_pixels = width * y_pixels.shape[0]
    image = torch.div(index, n_pixels, rounding_mode="floor")
    pixel = index - image * n_pixels
    row = torch.div(pixel, width, rounding_mode="floor")
    x = x_pixels[pixel - row * width, None] + offset_x
    y = y_pixels[row, None] + offset_y
    return x, y, image


def _subpixel_arc(
    index: torch.Tensor,
    x_pixels: torch.Tensor,
    y_pixels: torch.Tensor,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    lens_table: torch.Tensor,
    source_table: torch.Tensor,
) -> torch.Tensor:
    """Mean lensed-source surface brightness over the sub-pixels of the flat pixel ``index`` (M,).

    ``lens_table`` and ``source_table`` hold one row of parameters per image, in
    the order of :func:`sie_deflection` and :func:`sersic_profile`.
    """
    x, y, image = _subpixel_grid(index, x_pixels, y_pixels, offset_x, offset_y)
    lens = lens_table[image].unsqueeze(-1).unbind(1)
    source = source_table[image].unsqueeze(-1).unbind(1)
    alpha_x, alpha_y = sie_deflection(x, y, *lens)
    return sersic_profile(x - alpha_x, y - alpha_y, *source).mean(dim=-1)


def _subpixel_light(
    index: torch.Tensor,
    x_pixels: torch.Tensor,
    y_pixels: torch.Tensor,
    offset_x: torch.Tensor,
    offset_y: torch.Tensor,
    light_table: torch.Tensor,
) -> torch.Tensor:
    """Mean lens-light surface brightness over the sub-pixels of the flat pixel ``index`` (M,)."""
    x, y, image = _subpixel_grid(index, x_pixels, y_pixels, offset_x, offset_y)
    return sersic_profile(x, y, *light_table[image].unsqueeze(-1).unbind(1)).mean(dim=-1)
