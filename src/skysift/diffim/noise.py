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
    "effective_gain",
    "electrons_per_unit",
    "holds_source_noise",
    "nominal_electrons_per_unit",
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


def _check_shape_and_values(
    array: np.ndarray, shape: tuple[int, int], name: str, what: str, *, allow_negative: bool = False
) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != tuple(shape):
        raise InputDataError(f"{name}: {what} shape {array.shape} differs from image shape {tuple(shape)}")
    finite = np.isfinite(array)
    if not finite.any():
        raise InputDataError(f"{name}: every pixel of the {what} is NaN or infinite")
    if not allow_negative and np.any(array[finite] < 0):
        raise InputDataError(f"{name}: {what} has negative values (min {np.min(array[finite]):.3g})")
    if not np.any(array[finite] > 0):
        raise InputDataError(f"{name}: {what} is zero everywhere")
    return array


def variance_from_noise(noise: np.ndarray, shape: tuple[int, int], *, name: str, origin: str = "noise file") -> NoiseMap:
    """Variance map from a 1-sigma noise map (image units).

    Parameters
    ----------
    noise : numpy.ndarray
        1-sigma noise per pixel, same shape as the image; NaN, 0 or negative
        values mark unusable pixels (real noise maps hold a few negative
        values where their pipeline's variance went below zero).
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
        Wrong shape, all NaN, or no positive value.
    """
    noise = _check_shape_and_values(noise, shape, name, "noise map", allow_negative=True)
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


def effective_gain(data: np.ndarray, noise: NoiseMap, bad: np.ndarray, *, min_snr: float = 20.0) -> GainModel | None:
    """Electrons per image unit implied by a noise map that holds the sources' Poisson noise.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image (image units).
    noise : NoiseMap
        Its noise map, with ``includes_sources``.
    bad : numpy.ndarray of bool
        Pixels to ignore.
    min_snr : float
        Only pixels brighter than this many sky sigma are used, where the
        sources' variance dominates the map.

    Returns
    -------
    GainModel or None
        Median of ``data / (variance - sky variance)`` over those pixels; None
        without such pixels or when the map holds no source term.

    Notes
    -----
    A Poisson source of ``F`` image units adds ``F / g`` to the variance, so
    the excess of the map over its sky level on bright pixels gives ``g`` in
    the image's own units, whatever they are. For a resampled image the map's
    per-pixel variance and hence this ``g`` share the resampling factor, which
    is what weighting fluxes measured on that image needs.
    """
    if not noise.includes_sources:
        return None
    usable = ~bad & np.isfinite(noise.variance)
    sky_variance = float(np.median(noise.variance[::2, ::2][usable[::2, ::2]]))
    bright = usable & (data > min_snr * np.sqrt(sky_variance))
    excess = noise.variance[bright] - sky_variance
    positive = excess > 0
    if positive.sum() < 10:
        return None
    value = float(np.median(data[bright][positive] / excess[positive]))
    return GainModel(value, f"{value:.6g} e-/unit from the {noise.origin} map")


def holds_source_noise(data: np.ndarray, noise: NoiseMap, bad: np.ndarray, *, min_snr: float = 50.0) -> bool | None:
    """Whether a noise map rises on bright sources as their Poisson noise makes it.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    noise : NoiseMap
        Its noise map.
    bad : numpy.ndarray of bool
        Pixels to ignore.
    min_snr : float
        Pixels brighter than this many sky sigma are examined: there a Poisson
        source term is at least comparable to the sky's, for any sky level
        (``F / g`` against ``sigma^2 = sky / g``, with ``F >= 50 sigma``).

    Returns
    -------
    bool or None
        True when the median variance of those pixels exceeds the sky's by
        more than 10 %; None when fewer than 10 pixels are that bright.

    Notes
    -----
    A map of the sky and read noise alone (a constant ``ERR``, or a weight
    map written as an error) would leave bright stars without their Poisson
    noise, and every one of them a false positive.
    """
    usable = ~bad & np.isfinite(noise.variance)
    sky_variance = float(np.median(noise.variance[::2, ::2][usable[::2, ::2]]))
    bright = usable & (data > min_snr * np.sqrt(sky_variance))
    if bright.sum() < 10:
        return None
    return bool(np.median(noise.variance[bright]) > 1.1 * sky_variance)


def nominal_electrons_per_unit(header: Mapping[str, Any]) -> GainModel | None:
    """Electrons per image unit assuming a detector gain of 1 e-/DN, where the header gives all else.

    For calibrated images whose header converts them back to counts
    (``EXPTIME`` with ``PHOTMJSR`` for MJy/sr, ``EXPTIME`` for a rate) but
    names no detector gain, as JWST ``i2d`` products. Detector gains of
    space-telescope imagers are 1-3 e-/DN, so the sources' variance derived
    this way is at most a few times too large: conservative for detection.

    Returns
    -------
    GainModel or None
        None when even the conversion to counts is unknown.
    """
    model = electrons_per_unit({**dict(header), "GAIN": 1.0})
    if model is None:
        return None
    return GainModel(model.electrons_per_unit, model.description.replace("GAIN=1", "GAIN=1 (assumed)"))


def robust_std(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (1.4826 MAD) of the finite values."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _block_mean(image: np.ndarray, block: int) -> np.ndarray:
    ny, nx = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    return np.asarray(image[:ny, :nx], dtype=np.float32).reshape(ny // block, block, nx // block, block).mean(axis=(1, 3))


def quiet_pixels(
    new: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    *,
    block: int = 4,
    threshold: float = 3.0,
    grow: int = 2,
) -> np.ndarray:
    """Source-free blocks of a pair: where neither image holds a source.

    Parameters
    ----------
    new, reference : numpy.ndarray
        Background-subtracted images on the same grid.
    mask : numpy.ndarray of bool
        Pixels excluded anyway (a block with one is excluded).
    block : int
        Side of the blocks (pixels) the images are averaged over.
    threshold : float
        A block mean above ``threshold`` times the robust std of the block
        means, in either image, belongs to a source.
    grow : int
        Source blocks are grown by this many blocks (their wings).

    Returns
    -------
    numpy.ndarray of bool
        One value per block, ``(ny // block, nx // block)``.

    Notes
    -----
    Block means catch faint extended sources that no single pixel shows,
    and their noise is measured from the block means themselves, so that
    correlated noise (which makes the per-pixel sigma misleading) sets the
    threshold correctly. Only positive excursions are sources; a threshold
    on single pixels instead would reject the noise peaks themselves and
    bias the width measured on what is left.
    """
    sources = np.zeros((new.shape[0] // block, new.shape[1] // block), dtype=bool)
    for image in (new, reference):
        means = _block_mean(image, block)
        sources |= means > np.median(means) + threshold * robust_std(means)
    if grow > 0:
        sources = ndimage.maximum_filter(sources, size=2 * grow + 1)
    ny, nx = sources.shape
    masked = np.asarray(mask, dtype=bool)[: ny * block, : nx * block].reshape(ny, block, nx, block).any(axis=(1, 3))
    return ~sources & ~masked


def scorr_width(score_corr: np.ndarray, quiet: np.ndarray, *, block: int = 4, min_pixels: int = 1000) -> float:
    """Robust width of ``S_corr`` on source-free pixels (1 when its noise model is right).

    Parameters
    ----------
    score_corr : numpy.ndarray
        ``S_corr`` from ZOGY.
    quiet : numpy.ndarray of bool
        Source-free blocks (:func:`quiet_pixels`); ``S_corr`` is sampled at
        the centre pixel of each.
    block : int
        Block side used for ``quiet``.
    min_pixels : int
        Fewer quiet blocks than this give NaN (no reliable measurement).

    Returns
    -------
    float
        ``1.4826 MAD`` of ``S_corr`` there.

    Notes
    -----
    Resampling (drizzling, interpolation) correlates the noise of
    neighbouring pixels: the per-pixel variance falls while the variance on
    the scale of the PSF, which the ZOGY kernels integrate over, does not
    (Fruchter & Hook 2002, PASP 114, 144; Casertano et al. 2000, AJ 120,
    2747). The variance images then underestimate ``V(S)`` by a factor that
    depends on the resampling kernel, not on the sky. Dividing ``S_corr`` by
    its empirical width on source-free pixels restores unit variance on the
    scale that matters for detection.
    """
    centre = block // 2
    samples = score_corr[centre::block, centre::block][: quiet.shape[0], : quiet.shape[1]]
    values = samples[quiet]
    values = values[np.isfinite(values)]
    if values.size < min_pixels:
        return float("nan")
    return robust_std(values)
