"""Per-pixel noise of real survey products: noise maps, units and gain, correlated noise.

ZOGY's ``S_corr`` is in units of sigma only if the variance images it is
given are right (Zackay, Ofek & Gal-Yam 2016, eqs. 25-27). Three things go
wrong on resampled (drizzled) survey products, and this module handles each:

* the per-pixel noise ships with the image (``ERR``, ``WHT``,
  ``VAR_POISSON`` + ``VAR_RNOISE`` extensions, or separate files):
  :func:`variance_from_noise`, :func:`variance_from_weight` and
  :func:`variance_from_components` turn them into variance maps, checked;
* the sources' Poisson variance is ``F / g`` only for ``F`` in the units of
  which ``g`` is the gain: :func:`electrons_per_unit` derives ``g`` in the
  image's own units (``BUNIT``, ``GAIN``, ``EXPTIME``, ``PHOTMJSR``...);
* resampling correlates neighbouring pixels, so the per-pixel variance
  underestimates the variance on PSF scales, which is what the ZOGY filters
  see: :func:`scorr_width` measures the width of ``S_corr`` on source-free
  pixels, the empirical normalisation that corrects it.

All functions are pure (arrays and headers in, arrays and numbers out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from skysift.errors import InputDataError

__all__ = [
    "GainModel",
    "NoiseMap",
    "electrons_per_unit",
    "quiet_pixels",
    "robust_std",
    "scorr_width",
    "variance_from_components",
    "variance_from_noise",
    "variance_from_weight",
]

#: Header keywords giving the detector gain (electrons per count), in order of preference.
GAIN_KEYWORDS = ("GAIN", "EGAIN", "CCDGAIN")
#: Effective gain of a resampled or coadded image (SWarp/SExtractor convention):
#: electrons per image unit, whatever the unit.
EFFECTIVE_GAIN_KEYWORD = "EFFGAIN"
#: Header keywords giving the exposure time (s), in order of preference.
EXPOSURE_KEYWORDS = ("EXPTIME", "EFFEXPTM", "XPOSURE", "TEXPTIME")

_ELECTRON_UNITS = {"electron", "electrons", "e", "e-"}
_COUNT_UNITS = {"adu", "count", "counts", "dn", "data number"}


@dataclass(frozen=True)
class NoiseMap:
    """Per-pixel noise of one image, in its own frame and units.

    Attributes
    ----------
    variance : numpy.ndarray
        float32 variance (image units squared); ``inf`` where the map marks a
        pixel unusable (zero weight, NaN noise).
    includes_sources : bool
        Whether the map already holds the sources' Poisson variance (an
        ``ERR`` or ``VAR_POISSON`` map does; an inverse-variance weight map of
        the sky does not).
    origin : str
        Where it came from, for logs and FITS keywords (``ERR``, ``WHT``,
        ``VAR_POISSON+VAR_RNOISE``, ``noise file``, ``weight file``).
    """

    variance: np.ndarray
    includes_sources: bool
    origin: str

    @property
    def unusable(self) -> np.ndarray:
        """Pixels the map marks bad (infinite variance)."""
        return ~np.isfinite(self.variance)


@dataclass(frozen=True)
class GainModel:
    """Electrons per image unit, and how it was derived.

    Attributes
    ----------
    electrons_per_unit : float
        One image unit is this many detected electrons (photo-electrons), so
        a source of value ``F`` has Poisson variance ``F / electrons_per_unit``.
    description : str
        How it was derived (for the log and the ``GAINSRC*`` keywords).
    """

    electrons_per_unit: float
    description: str


def _check_shape_and_values(array: np.ndarray, shape: tuple[int, int], name: str, what: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != tuple(shape):
        raise InputDataError(f"{name}: {what} shape {array.shape} differs from image shape {tuple(shape)}")
    finite = np.isfinite(array)
    if not finite.any():
        raise InputDataError(f"{name}: every pixel of the {what} is NaN or infinite")
    if np.any(array[finite] < 0):
        raise InputDataError(f"{name}: {what} has negative values (min {np.min(array[finite]):.3g})")
    if not np.any(array[finite] > 0):
        raise InputDataError(f"{name}: {what} is zero everywhere")
    return array


def variance_from_noise(noise: np.ndarray, shape: tuple[int, int], *, name: str, origin: str = "noise file") -> NoiseMap:
    """Variance map from a 1-sigma noise map (image units).

    Parameters
    ----------
    noise : numpy.ndarray
        1-sigma noise per pixel, same shape as the image; NaN or 0 mark
        unusable pixels.
    shape : (int, int)
        Shape of the image.
    name : str
        File named in error messages.
    origin : str
        Recorded in :attr:`NoiseMap.origin`.

    Returns
    -------
    NoiseMap
        With ``includes_sources=True``: a noise map of a survey product is the
        total error, sources' Poisson noise included (JWST and HST ``ERR``).

    Raises
    ------
    InputDataError
        Wrong shape, all NaN, negative values or zero everywhere.
    """
    noise = _check_shape_and_values(noise, shape, name, "noise map")
    with np.errstate(invalid="ignore"):
        variance = np.where(np.isfinite(noise) & (noise > 0), noise**2, np.inf).astype(np.float32)
    return NoiseMap(variance=variance, includes_sources=True, origin=origin)


def variance_from_weight(weight: np.ndarray, shape: tuple[int, int], *, name: str, origin: str = "weight file") -> NoiseMap:
    """Variance map from an inverse-variance weight map (1 / image units squared).

    Parameters
    ----------
    weight : numpy.ndarray
        Inverse variance per pixel; 0 or NaN mark unusable pixels.
    shape, name, origin
        As for :func:`variance_from_noise`.

    Returns
    -------
    NoiseMap
        With ``includes_sources=False``: drizzle's inverse-variance weights
        describe the sky and the detector, not the sources.

    Raises
    ------
    InputDataError
        Wrong shape, all NaN, negative weights or zero everywhere.
    """
    weight = _check_shape_and_values(weight, shape, name, "weight map")
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(np.isfinite(weight) & (weight > 0), 1.0 / weight, np.inf).astype(np.float32)
    return NoiseMap(variance=variance, includes_sources=False, origin=origin)


def variance_from_components(components: Mapping[str, np.ndarray], shape: tuple[int, int], *, name: str) -> NoiseMap:
    """Variance map as the sum of variance components (JWST ``VAR_POISSON`` + ``VAR_RNOISE``).

    Parameters
    ----------
    components : mapping of str to numpy.ndarray
        Variance maps by extension name; their sum is the variance.
    shape, name
        As for :func:`variance_from_noise`.

    Returns
    -------
    NoiseMap
        ``includes_sources`` is True when ``VAR_POISSON`` is among them.
    """
    total = np.zeros(shape, dtype=np.float64)
    for extension, values in components.items():
        total += _check_shape_and_values(values, shape, name, f"{extension} extension")
    with np.errstate(invalid="ignore"):
        variance = np.where(np.isfinite(total) & (total > 0), total, np.inf).astype(np.float32)
    return NoiseMap(variance=variance, includes_sources="VAR_POISSON" in components, origin="+".join(components))


def _header_float(header: Mapping[str, Any], keywords: tuple[str, ...]) -> tuple[str, float] | None:
    for keyword in keywords:
        try:
            value = float(header[keyword])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return keyword, value
    return None


def electrons_per_unit(header: Mapping[str, Any], override: float | None = None) -> GainModel | None:
    """Electrons per image unit from the header (``BUNIT``, gain, exposure time, photometric keywords).

    Parameters
    ----------
    header : mapping
        FITS header of the image.
    override : float, optional
        Electrons per image unit given by the user; wins over the header.

    Returns
    -------
    GainModel or None
        None when the header does not say (a calibrated unit without the
        keywords that convert it back to electrons).

    Notes
    -----
    An ``EFFGAIN`` keyword (the effective gain SWarp and SExtractor write for
    a resampled image) is electrons per image unit and is used as is.
    Otherwise, by ``BUNIT`` (case-insensitive):

    * electrons: 1;
    * counts (ADU, DN) or no ``BUNIT``: ``GAIN`` (or ``EGAIN``, ``CCDGAIN``,
      ``EFFGAIN``) electrons per count; with neither ``BUNIT`` nor a gain the
      image is taken to be in electrons (the convention of the simulated
      pairs and of most stacked ground-based products);
    * a rate (``.../s``): electrons per (unit/s) = exposure time x gain (gain
      1 for ``ELECTRONS/S``, as HST drizzled products);
    * ``MJy/sr`` (JWST): the image is ``DN/s x PHOTMJSR``, so electrons per
      MJy/sr = exposure time x gain / ``PHOTMJSR``; a missing gain here is an
      unknown, not 1, and gives None;
    * a flux density per Angstrom with ``PHOTFLAM`` (HST): electrons per unit =
      exposure time / ``PHOTFLAM`` (``PHOTFLAM`` converts electrons/s).
    """
    if override is not None:
        return GainModel(float(override), f"user gain {float(override):.6g} e-/unit")
    effective = _header_float(header, (EFFECTIVE_GAIN_KEYWORD,))
    if effective is not None:
        return GainModel(effective[1], f"{EFFECTIVE_GAIN_KEYWORD}={effective[1]:.6g} e-/unit")
    unit = str(header.get("BUNIT", "") or "").strip().lower()
    gain = _header_float(header, GAIN_KEYWORDS)
    exposure = _header_float(header, EXPOSURE_KEYWORDS)
    if unit in _ELECTRON_UNITS:
        return GainModel(1.0, "BUNIT electrons")
    if unit in _COUNT_UNITS or not unit:
        if gain is not None:
            return GainModel(gain[1], f"{gain[0]}={gain[1]:.6g} e-/{unit or 'count'}")
        if not unit:
            return GainModel(1.0, "no BUNIT or gain keyword: electrons assumed")
        return None
    rate = unit.endswith("/s") or unit.endswith("/sec") or unit.endswith(" s-1") or unit.endswith("s^-1")
    if rate:
        per_count = unit.split("/")[0].strip()
        if exposure is None:
            return None
        if per_count in _ELECTRON_UNITS:
            return GainModel(exposure[1], f"BUNIT {unit}, {exposure[0]}={exposure[1]:.6g} s")
        if gain is not None:
            return GainModel(exposure[1] * gain[1], f"BUNIT {unit}, {exposure[0]}={exposure[1]:.6g} s, {gain[0]}={gain[1]:.6g}")
        return None
    if unit.replace(" ", "") in ("mjy/sr", "mjy/steradian"):
        photometric = _header_float(header, ("PHOTMJSR",))
        if photometric is None or exposure is None or gain is None:
            return None
        value = exposure[1] * gain[1] / photometric[1]
        return GainModel(value, f"{exposure[0]}={exposure[1]:.6g} s x {gain[0]}={gain[1]:.6g} / PHOTMJSR={photometric[1]:.6g}")
    photflam = _header_float(header, ("PHOTFLAM",))
    if "erg" in unit and photflam is not None and exposure is not None:
        return GainModel(exposure[1] / photflam[1], f"{exposure[0]}={exposure[1]:.6g} s / PHOTFLAM={photflam[1]:.6g}")
    return None


def robust_std(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (1.4826 MAD) of the finite values."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def quiet_pixels(
    new: np.ndarray,
    reference: np.ndarray,
    sigma_new: float,
    sigma_reference: float,
    mask: np.ndarray,
    *,
    step: int = 2,
    threshold: float = 3.0,
    grow: int = 5,
) -> np.ndarray:
    """Source-free pixels of a pair, on a grid subsampled by ``step``.

    Parameters
    ----------
    new, reference : numpy.ndarray
        Background-subtracted images on the same grid.
    sigma_new, sigma_reference : float
        Their background noise per pixel.
    mask : numpy.ndarray of bool
        Pixels excluded anyway.
    step : int
        Subsampling step (every ``step``-th row and column).
    threshold : float
        A pixel above ``threshold`` sigma in either image belongs to a source.
    grow : int
        Sources are grown by this many subsampled pixels (their wings).

    Returns
    -------
    numpy.ndarray of bool
        On the subsampled grid ``[::step, ::step]``.
    """
    sub = (slice(None, None, step), slice(None, None, step))
    bright = (np.abs(new[sub]) > threshold * sigma_new) | (np.abs(reference[sub]) > threshold * sigma_reference)
    if grow > 0:
        bright = ndimage.maximum_filter(bright, size=2 * grow + 1)
    return ~bright & ~mask[sub]


def scorr_width(score_corr: np.ndarray, quiet: np.ndarray, *, step: int = 2, min_pixels: int = 2000) -> float:
    """Robust width of ``S_corr`` on source-free pixels (1 when its noise model is right).

    Parameters
    ----------
    score_corr : numpy.ndarray
        ``S_corr`` from ZOGY.
    quiet : numpy.ndarray of bool
        Source-free pixels on the ``[::step, ::step]`` grid (:func:`quiet_pixels`).
    step : int
        Subsampling step of ``quiet``.
    min_pixels : int
        Fewer quiet pixels than this give NaN (no reliable measurement).

    Returns
    -------
    float
        ``1.4826 MAD`` of ``S_corr`` there.

    Notes
    -----
    Resampling (drizzling, interpolation) correlates the noise of
    neighbouring pixels: the per-pixel variance falls while the variance on
    the scale of the PSF, which the ZOGY kernels integrate over, does not
    (Fruchter & Hook 2002, PASP 114, 144, section 7; Casertano et al. 2000,
    AJ 120, 2747). The variance images then underestimate ``V(S)`` by a
    factor that depends on the resampling kernel, not on the sky. Dividing
    ``S_corr`` by its empirical width on source-free pixels restores unit
    variance on the scale that matters for detection.
    """
    values = score_corr[::step, ::step][quiet]
    values = values[np.isfinite(values)]
    if values.size < min_pixels:
        return float("nan")
    return robust_std(values)
