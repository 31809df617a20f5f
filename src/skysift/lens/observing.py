"""Randomised observing conditions of lens training images: seeing, PSF shape and depth.

A survey preset (:class:`~skysift.lens.simulator.SurveySpec`) fixes one
seeing and one depth; a lens finder trained on them learns that one PSF and
one noise level, and loses its way on images taken in other conditions. Here
each image draws its own conditions from :data:`OBSERVING_PRIORS`, relative to
the preset's seeing and exposure time:

* the simulator renders with a *base* Moffat PSF (``beta`` of the preset) of
  FWHM ``BASE_SEEING_FRACTION * seeing``, narrower than any drawn seeing;
* :func:`blur` then convolves each image with its own elliptical Gaussian of
  FWHM ``sqrt(s^2 - s_base^2)`` (``s`` the drawn, nominal seeing; the FWHMs
  of a Moffat and a Gaussian add a little above quadrature: the realised FWHM
  is 0-8 % above ``s``, measured in ``tests/lens/test_look_alikes.py``), of
  ellipticity ``psf_e = (a - b) / (a + b)`` at position angle ``psf_phi``. The
  result is a Moffat core with Gaussian blurring: at good seeing the profile is
  Moffat-like with strong wings, at bad seeing nearly Gaussian, so the PSF
  shape varies with the seeing as atmospheric and optical terms do;
* the noise is scaled by ``1 / sqrt(depth)``, ``depth`` the exposure time
  relative to the preset's (its sky, photon and read noise all scale so in
  the Gaussian limit, and the noise variance used for arc S/N is divided by
  ``depth``).

The defaults span LSST 10-year co-adds across the footprint: seeing 0.55-1.0
arcsec about the preset's 0.71 (the median r-band seeing of LSST is ~0.7-0.8
arcsec; Ivezic et al. 2019, ApJ 873, 111), PSF ellipticity up to 0.1, and
depth within +-0.5 mag of the preset (exposure factor 0.4-2.5).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from skysift.lens.simulator import LensSimulator, SurveySpec, _fft_size, gaussian_psf, moffat_psf
from skysift.simulate.priors import LogUniform, Prior, Uniform, sample_parameters

__all__ = ["BASE_SEEING_FRACTION", "OBSERVING_PRIORS", "base_psf", "blur", "draw_conditions", "noise_scale", "noise_variance", "observe"]

#: FWHM of the simulator's base PSF as a fraction of the preset's seeing (below the seeing prior).
BASE_SEEING_FRACTION = 0.7
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

#: Per-image observing conditions: ``seeing`` in units of the preset's seeing
#: (stored in arcsec), ``depth`` the exposure time relative to the preset's.
OBSERVING_PRIORS: dict[str, Prior] = {
    "seeing": Uniform(0.78, 1.4),
    "psf_e": Uniform(0.0, 0.1),
    "psf_phi": Uniform(0.0, 180.0, unit="deg"),
    "depth": LogUniform(0.4, 2.5),
}


def base_psf(survey: SurveySpec) -> np.ndarray:
    """The simulator's PSF kernel when conditions are randomised: the preset's shape at a narrower FWHM."""
    narrow = dataclasses.replace(survey, seeing=BASE_SEEING_FRACTION * survey.seeing)
    if narrow.psf_model == "gaussian":
        return gaussian_psf(narrow.seeing, narrow.pixel_scale)
    return moffat_psf(narrow.seeing, narrow.pixel_scale, narrow.moffat_beta)


def draw_conditions(survey: SurveySpec, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` observing conditions; ``seeing`` in arcsec (the preset's times the prior's factor)."""
    conditions = sample_parameters(OBSERVING_PRIORS, n, rng)
    conditions["seeing"] = conditions["seeing"] * survey.seeing
    return conditions


def _gaussian_coefficients(
    survey: SurveySpec, conditions: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per-image ``(A, B, C)`` of the blur's log transfer function ``A kx^2 + B kx ky + C ky^2``, and its reach.

    ``k`` in cycles per pixel; the reach (pixels) is 5 sigma of the major axis
    (at least 3 pixels), the zero padding that keeps the circular convolution
    equal to the linear one.
    """
    base = BASE_SEEING_FRACTION * survey.seeing
    extra_fwhm = np.sqrt(np.maximum(np.asarray(conditions["seeing"]) ** 2 - base**2, 0.0))
    sigma = extra_fwhm * _FWHM_TO_SIGMA / survey.pixel_scale
    e = np.asarray(conditions["psf_e"], dtype=np.float64)
    # Axis sigmas with the geometric mean kept: a = s sqrt((1 + e) / (1 - e)), b = s sqrt((1 - e) / (1 + e)).
    sigma_major, sigma_minor = sigma * np.sqrt((1 + e) / (1 - e)), sigma * np.sqrt((1 - e) / (1 + e))
    reach = int(math.ceil(5.0 * max(float(sigma_major.max()), 0.5)))
    angle = np.deg2rad(np.asarray(conditions["psf_phi"], dtype=np.float64))
    cos, sin = np.cos(angle), np.sin(angle)
    major, minor = -2.0 * math.pi**2 * sigma_major**2, -2.0 * math.pi**2 * sigma_minor**2
    return (major * cos**2 + minor * sin**2, 2.0 * (major - minor) * cos * sin, major * sin**2 + minor * cos**2,
            reach)


def _per_image(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 values as an ``(N, 1, 1)`` tensor of ``like``'s dtype and device."""
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1, 1, 1)


def blur(images: torch.Tensor, survey: SurveySpec, conditions: dict[str, np.ndarray]) -> torch.Tensor:
    """Convolve each image ``(N, H, W)`` with its elliptical Gaussian (see the module notes).

    Exact Gaussian transfer function ``exp(-2 pi^2 k^T Sigma k)`` applied to
    the zero-padded rfft2 of each image ("same" size, zero padding like the
    simulator's PSF convolution); flux is conserved up to what spreads beyond
    the stamp edges.
    """
    n, height, width = images.shape
    if n == 0:
        return images
    a, b, c, pad = _gaussian_coefficients(survey, conditions)
    rows, columns = _fft_size(height + pad), _fft_size(width + pad)
    spectrum = torch.fft.rfft2(images, s=(rows, columns))
    # The exponent is a quadratic form in (kx, ky): A kx^2 + B kx ky + C ky^2 with per-image
    # coefficients, evaluated in the images' precision (float32 is ample for a transfer
    # function in [0, 1]).
    real = images.dtype
    ky = torch.fft.fftfreq(rows, dtype=real, device=images.device).reshape(1, -1, 1)
    kx = torch.fft.rfftfreq(columns, dtype=real, device=images.device).reshape(1, 1, -1)
    exponent = _per_image(a, images) * (kx * kx) + _per_image(b, images) * (kx * ky) + _per_image(c, images) * (ky * ky)
    spectrum *= torch.exp(exponent)
    blurred = torch.fft.irfft2(spectrum, s=(rows, columns))
    return blurred[:, :height, :width].contiguous()


def observe(simulator: LensSimulator, images: torch.Tensor, conditions: dict[str, np.ndarray] | None) -> torch.Tensor:
    """Images ``(N, H, W)`` before the PSF as observed: the simulator's PSF, then each image's blur, in one FFT.

    Equal to ``blur(simulator.convolve(images), simulator.survey, conditions)``
    up to float rounding (and Gaussian tails beyond 5 sigma): convolution is
    associative, so the base PSF's transform and each image's Gaussian
    transfer function multiply one spectrum, and a batch of components
    (lens light plus a look-alike's structure) summed before this call takes
    one transform instead of four. Without ``conditions`` (fixed conditions)
    it is ``simulator.convolve(images)``.
    """
    if conditions is None or not len(images):
        return simulator.convolve(images)
    a, b, c, reach = _gaussian_coefficients(simulator.survey, conditions)
    a, b, c = _per_image(a, images), _per_image(b, images), _per_image(c, images)

    def transfer(rows: slice, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
        return torch.exp(a[rows] * (kx * kx) + b[rows] * (kx * ky) + c[rows] * (ky * ky))

    out = torch.empty_like(images)
    for rows, convolved in simulator._convolved_parts(images, reach, transfer):
        out[rows] = convolved
    return out


def noise_scale(conditions: dict[str, np.ndarray]) -> np.ndarray:
    """Noise standard deviation relative to the preset's, ``1 / sqrt(depth)``."""
    return 1.0 / np.sqrt(np.asarray(conditions["depth"], dtype=np.float64))


def noise_variance(simulator: LensSimulator, images: torch.Tensor, conditions: dict[str, np.ndarray] | None) -> torch.Tensor:
    """Per-pixel noise variance of noise-free ``images`` ``(N, H, W)`` at each image's depth.

    :meth:`~skysift.lens.simulator.LensSimulator.noise_variance` (the preset's
    depth), scaled by :func:`noise_scale` squared where ``conditions`` are
    given: the noise the images get from :func:`~skysift.lens.simulator.LensSimulator.add_noise`
    with that scale.
    """
    variance = simulator.noise_variance(images)
    if conditions is None:
        return variance
    return variance.mul_(_per_image(noise_scale(conditions) ** 2, variance))
