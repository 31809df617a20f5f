"""End-to-end image differencing: masks, backgrounds, registration, PSFs, ZOGY, detection.

:func:`difference_images` is pure (FitsImage objects in, arrays and a table
out); :func:`run_diffim` is the thin runner that reads the files, calls it and
writes the products with :mod:`skysift.io`, all or nothing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.context import RunContext, resolve_context
from skysift.diffim.options import DiffimOptions
from skysift.diffim.background import BackgroundEstimate, estimate_background, mesh_to_image
from skysift.diffim.detect import FLAG_NEAR_SATURATED, detect_candidates
from skysift.diffim.fluxscale import FluxScale, flux_scale
from skysift.diffim.masks import (
    combine_masks, edge_mask, grow_regions, mask_near, nonfinite_mask, saturated_nan_cores, saturation_level, saturation_mask,
)
from skysift.diffim.noise import (
    GainModel, NoiseMap, effective_gain, electrons_per_unit, holds_source_noise, nominal_electrons_per_unit,
    quiet_pixels, robust_std, scorr_width, variance_from_components, variance_from_noise, variance_from_weight,
)
from skysift.diffim.preview import preview_png
from skysift.diffim.psf import PsfGrid, estimate_psf_grid, psf_fwhm, select_psf_stars
from skysift.diffim.registration import Registration, register, reproject_to_grid
from skysift.diffim.stars import find_stars
from skysift.diffim.zogy import ZogyResult, zogy, zogy_grid
from skysift.errors import InputDataError
from skysift.io import FitsImage, atomic_directory, read_fits_image, read_image_extensions, write_fits_image, write_table
from skysift.log import get_logger

__all__ = ["DiffimOptions", "DiffimResult", "NoiseMap", "difference_images", "read_noise_inputs", "run_diffim"]

_log = get_logger(__name__)

#: Names of the files :func:`run_diffim` writes, by product key.
PRODUCT_FILES = {
    "difference": "difference.fits",
    "scorr": "scorr.fits",
    "fpsf": "fpsf.fits",
    "fpsf_err": "fpsf_err.fits",
    "aligned_reference": "aligned_reference.fits",
    "candidates": "candidates.ecsv",
    "preview": "preview.png",
}


@dataclass
class DiffimResult:
    """Everything :func:`difference_images` computed (images on the science grid).

    Attributes
    ----------
    science : numpy.ndarray
        Background-subtracted science image, masked pixels set to 0.
    reference_aligned : numpy.ndarray
        Background-subtracted reference resampled onto the science grid.
    difference : numpy.ndarray
        ZOGY proper difference ``D`` (unit variance).
    score : numpy.ndarray
        ZOGY score ``S``.
    score_corr : numpy.ndarray
        ``S_corr`` (sigma units), NaN where masked.
    flux_psf, flux_psf_err : numpy.ndarray
        PSF flux of a point source at each pixel and its error (science units).
    mask : numpy.ndarray of bool
        Pixels excluded from detection.
    saturated : numpy.ndarray of bool
        Saturated pixels of either image (science grid).
    psf_science, psf_reference : PsfGrid
        Estimated PSFs (the reference's on the science grid).
    psf_difference : numpy.ndarray
        PSF of ``D`` (one stamp, or one per cell).
    registration : Registration
        Alignment details; ``registration.rms_residual`` is in pixels.
    flux_scale : FluxScale
        ``F_n / F_r`` from matched stars.
    sigma_science, sigma_reference : float
        Noise per pixel of each image (own units): the median of its noise
        map, else of its background mesh rms; ZOGY's scalar ``sigma_n``, ``sigma_r``.
    candidates : astropy.table.Table
        Detections (see :func:`~skysift.diffim.detect.detect_candidates`).
    scorr_width : float
        Robust width of ZOGY's ``S_corr`` on source-free pixels before any
        correlated-noise correction (1 for a right noise model; NaN if too
        few source-free pixels).
    scorr_normalised : bool
        Whether ``score_corr`` and ``flux_psf_err`` were corrected by it.
    noise_model_science, noise_model_reference : str
        How each image's variance was built (noise map, source term).
    gain_science, gain_reference : GainModel or None
        Electrons per image unit used for the source noise and the flux-scale
        weights, and where it came from (None: not derivable).
    """

    science: np.ndarray
    reference_aligned: np.ndarray
    difference: np.ndarray
    score: np.ndarray
    score_corr: np.ndarray
    flux_psf: np.ndarray
    flux_psf_err: np.ndarray
    mask: np.ndarray
    saturated: np.ndarray
    psf_science: PsfGrid
    psf_reference: PsfGrid
    psf_difference: np.ndarray
    registration: Registration
    flux_scale: FluxScale
    sigma_science: float
    sigma_reference: float
    candidates: Table
    scorr_width: float = float("nan")
    scorr_normalised: bool = False
    noise_model_science: str = ""
    noise_model_reference: str = ""
    gain_science: GainModel | None = None
    gain_reference: GainModel | None = None

    @property
    def registration_rms(self) -> float:
        """RMS registration residual (pixels)."""
        return self.registration.rms_residual


def _check_image(image: FitsImage, user_mask: np.ndarray | None) -> None:
    if image.data.ndim != 2:
        raise InputDataError(f"{image.path}: expected a 2-D image, got shape {image.data.shape}")
    if image.wcs is None:
        raise InputDataError(f"{image.path}: no celestial WCS in the header")
    if not np.isfinite(image.data).any():
        raise InputDataError(f"{image.path}: every pixel is NaN or infinite")
    if user_mask is not None and np.shape(user_mask) != image.data.shape:
        raise InputDataError(f"{image.path}: bad-pixel mask shape {np.shape(user_mask)} differs from image shape {image.data.shape}")


@dataclass
class _Prepared:
    data: np.ndarray  # background subtracted, bad pixels 0
    bad: np.ndarray
    saturated: np.ndarray
    background: BackgroundEstimate


def _nan_core_level(data: np.ndarray) -> tuple[float, float]:
    """Rough sky level and noise of an image (every 4th pixel per axis, finite only)."""
    sample = data[::4, ::4]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, float("inf")
    return float(np.median(sample)), robust_std(sample)


def _prepare(image: FitsImage, user_mask: np.ndarray | None, options: DiffimOptions, noise: NoiseMap | None) -> _Prepared:
    _check_image(image, user_mask)
    level = saturation_level(image.header, options.saturation)
    saturated = saturation_mask(image.data, level, grow=options.saturation_grow, grow_factor=options.saturation_grow_factor)
    if options.nan_saturation_snr > 0 and not np.isfinite(image.data).all():
        sky, sigma = _nan_core_level(image.data)
        cores = saturated_nan_cores(image.data, sky + options.nan_saturation_snr * sigma)
        if cores.any():
            _log.info("%s: %d NaN pixels in bright surroundings treated as saturated", image.path, int(cores.sum()))
            saturated |= grow_regions(cores, grow=options.saturation_grow, grow_factor=options.saturation_grow_factor)
    unusable = noise.unusable if noise is not None else None
    bad = combine_masks(nonfinite_mask(image.data), saturated, user_mask, unusable, shape=image.data.shape)
    if bad.all():
        raise InputDataError(f"{image.path}: every pixel is masked (saturated, NaN or flagged bad)")
    # Single precision from here on: 24-bit mantissas resolve 0.01 electron at
    # full well, far below the noise, and halve the memory traffic of every step.
    pixels = np.asarray(image.data, dtype=np.float32)
    background = estimate_background(pixels, bad, box_size=options.background_box)
    # NaN and saturated pixels become background (0 after subtraction) so that
    # the FFTs see no spikes; they stay in the mask for detection.
    data = pixels - background.background
    data[bad] = 0.0
    return _Prepared(data=data, bad=bad, saturated=saturated, background=background)


def _prepare_with_stars(
    image: FitsImage, user_mask: np.ndarray | None, options: DiffimOptions, noise: NoiseMap | None
) -> tuple[_Prepared, Table]:
    """:func:`_prepare` and the image's star list, found once in its own frame.

    Every later step (registration, both PSFs, the flux scale) reuses these lists.
    """
    prepared = _prepare(image, user_mask, options, noise)
    stars = find_stars(prepared.data, prepared.background.sigma, mask=prepared.bad, fwhm=options.fwhm_guess, threshold=10.0)
    return prepared, stars


def _variance_image(
    data: np.ndarray,
    background_variance: np.ndarray,
    noise: NoiseMap | None,
    gain: GainModel | None,
    *,
    source_noise: bool,
    name: str,
) -> tuple[np.ndarray, str]:
    """Per-pixel variance of one image for ZOGY's eqs. 26-27, and a description of the model.

    ``background_variance`` is the noise map's variance when there is one (on
    the science grid), else the background mesh's.
    """
    origin = noise.origin if noise is not None else "mesh rms"
    if noise is not None and noise.includes_sources:
        return background_variance, f"{origin} incl. sources"
    if not source_noise:
        return background_variance, f"{origin}, no source noise"
    if gain is None:  # _gain_model raised already where source noise needs a gain
        raise InputDataError(f"{name}: no gain for the source noise")
    variance = background_variance + np.maximum(data, np.float32(0.0)) * np.float32(1.0 / gain.electrons_per_unit)
    return variance, f"{origin} + sources/gain"


def _gain_model(
    image: FitsImage, data: np.ndarray, noise: NoiseMap | None, bad: np.ndarray, override: float | None, options: DiffimOptions
) -> tuple[GainModel | None, NoiseMap | None]:
    """Electrons per image unit, and the noise map marked for whether it holds the sources' noise.

    The gain is the user's, else the header's, else what the noise map
    implies, else (for source noise, with ``options.assume_unit_gain``) the
    header's conversion to counts with 1 e-/DN.

    Raises
    ------
    InputDataError
        If source noise is requested, the noise map (if any) does not hold it
        and nothing gives the gain.
    """
    model = electrons_per_unit(image.header, override)
    if noise is not None and noise.includes_sources and holds_source_noise(data, noise, bad) is False:
        _log.warning("%s: the %s map does not rise on bright sources: treated as sky noise only", image.path, noise.origin)
        noise = replace(noise, includes_sources=False, origin=f"{noise.origin} (sky only)")
    if model is None and noise is not None and noise.includes_sources:
        model = effective_gain(data, noise, bad)
    needs_gain = options.source_noise and not (noise is not None and noise.includes_sources)
    if model is None and needs_gain and options.assume_unit_gain:
        model = nominal_electrons_per_unit(image.header)
        if model is not None:
            _log.warning("%s: no detector gain in the header; source noise with %s", image.path, model.description)
    if model is None and needs_gain:
        raise InputDataError(
            f"{image.path}: source noise requested but BUNIT {image.header.get('BUNIT')!r} with these keywords gives "
            "no electrons per unit (EFFGAIN; GAIN/EGAIN/CCDGAIN with EXPTIME, PHOTMJSR or PHOTFLAM); give the gain "
            "(--gain-science/--gain-reference), a noise map with the sources' noise (ERR), or --source-noise false"
        )
    return model, noise


def _noise_sigma(noise: NoiseMap, bad: np.ndarray) -> float:
    """Typical per-pixel noise of a noise map (median over its good pixels): ZOGY's scalar sigma."""
    values = noise.variance[::2, ::2][~bad[::2, ::2]]
    values = values[np.isfinite(values)]
    return float(np.sqrt(np.median(values))) if values.size else float("nan")


def _usable_stars(stars: Table, unusable: np.ndarray, fwhm: float) -> Table:
    """Stars inside the image whose core (``fwhm`` pixels) touches no unusable pixel."""
    ny, nx = unusable.shape
    inside = (stars["x"] >= 0) & (stars["x"] <= nx - 1) & (stars["y"] >= 0) & (stars["y"] <= ny - 1)
    stars = stars[inside]
    clear = ~mask_near(unusable, stars["x"], stars["y"], int(np.ceil(fwhm)))
    return stars[clear]


def _reference_stars_on_science_grid(stars: Table, science_wcs, reference_wcs, registration: Registration) -> Table:
    """Reference stars moved onto the science grid (where the aligned reference has them)."""
    world = reference_wcs.pixel_to_world_values(np.asarray(stars["x"]), np.asarray(stars["y"]))
    x_pred, y_pred = science_wcs.world_to_pixel_values(*world)
    # The registration correction A maps science pixels onto these WCS
    # predictions, so the aligned image holds the star at A^-1(prediction).
    inverse = np.linalg.inv(registration.correction.matrix)
    dx, dy = np.asarray(x_pred) - registration.correction.offset[0], np.asarray(y_pred) - registration.correction.offset[1]
    moved = stars.copy()
    moved["x"] = inverse[0, 0] * dx + inverse[0, 1] * dy
    moved["y"] = inverse[1, 0] * dx + inverse[1, 1] * dy
    return moved


def _reference_rms_on_science_grid(background: BackgroundEstimate, registration: Registration, shape) -> np.ndarray:
    """The reference noise map on the science grid."""
    affine = registration.affine
    if affine is not None and background.mesh_rms is not None and background.box > 0 and np.all(np.diag(affine.matrix) > 0):
        # The noise map is smooth on the scale of a mesh box: moving the box
        # centres by the (near-identity) affine and re-interpolating is exact
        # to well below a box, and avoids resampling a full image.
        box = background.box
        centres_x = (np.arange(background.mesh_rms.shape[1]) + 0.5) * box - 0.5
        centres_y = (np.arange(background.mesh_rms.shape[0]) + 0.5) * box - 0.5
        science_x = (centres_x - affine.offset[0] - affine.matrix[0, 1] * np.mean(centres_y)) / affine.matrix[0, 0]
        science_y = (centres_y - affine.offset[1] - affine.matrix[1, 0] * np.mean(centres_x)) / affine.matrix[1, 1]
        return mesh_to_image(background.mesh_rms, shape, box, centres_y=science_y, centres_x=science_x)
    rms, outside = reproject_to_grid(background.rms, registration.map_x, registration.map_y, order=1)
    rms[outside] = background.sigma
    return rms


def difference_images(
    science: FitsImage,
    reference: FitsImage,
    *,
    science_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    options: DiffimOptions = DiffimOptions(),
    science_noise: NoiseMap | None = None,
    reference_noise: NoiseMap | None = None,
) -> DiffimResult:
    """Subtract ``reference`` from ``science`` with ZOGY and detect transients.

    Parameters
    ----------
    science, reference : FitsImage
        Images with celestial WCSs (from :func:`skysift.io.read_fits_image`).
    science_mask, reference_mask : numpy.ndarray, optional
        Bad-pixel masks (non-zero = bad), each in its image's frame.
    options : DiffimOptions
        Settings.
    science_noise, reference_noise : NoiseMap, optional
        Per-pixel noise of each image in its own frame and units (see
        :func:`read_noise_inputs`); by default the background mesh rms plus
        the sources' Poisson noise from the gain.

    Returns
    -------
    DiffimResult

    Raises
    ------
    InputDataError
        Missing WCS, wrong dimensions, all-NaN data, a mask or noise map of the
        wrong shape, footprints that do not overlap, no stars for the PSF, or
        source noise requested where neither a noise map nor the header gives
        it; the message names the file(s).

    Notes
    -----
    Steps: masks (saturation, NaN, user) and mesh backgrounds per image; the
    reference is aligned to the science grid (WCS prior refined by an affine
    fit to matched stars); PSFs are measured from both images on the science
    grid; ``F_n / F_r`` comes from aperture photometry of the PSF stars;
    variance images come from the noise maps or the background mesh, plus the
    sources' Poisson noise in the image's own units; ZOGY (Zackay, Ofek &
    Gal-Yam 2016) gives ``D``, ``S``, ``S_corr`` and PSF fluxes; ``S_corr`` is
    divided by its width on source-free pixels when that departs from 1
    (correlated noise of resampled images, see
    :func:`~skysift.diffim.noise.scorr_width`); candidates are regions of
    ``|S_corr|`` above ``options.threshold``.
    """
    # The two images are prepared (masks, background, star list) independently,
    # in two threads: sorting, filtering and matrix products release the GIL.
    fwhm = options.fwhm_guess
    with ThreadPoolExecutor(max_workers=2) as pool:
        science_job = pool.submit(_prepare_with_stars, science, science_mask, options, science_noise)
        reference_job = pool.submit(_prepare_with_stars, reference, reference_mask, options, reference_noise)
        sci, science_stars = science_job.result()
        ref, reference_stars = reference_job.result()
    # Electrons per image unit, for the source noise and the flux-scale
    # weights; checked here, before the costly steps, when source noise needs it.
    gain_new, science_noise = _gain_model(science, sci.data, science_noise, sci.bad, options.gain_science, options)
    gain_reference, reference_noise = _gain_model(
        reference, ref.data, reference_noise, ref.bad, options.gain_reference, options
    )
    science_name, reference_name = str(science.path), str(reference.path)

    registration = register(
        sci.data,
        ref.data,
        science.wcs,
        reference.wcs,
        science_stars=science_stars,
        reference_stars=reference_stars,
        reference_mask=ref.bad,
        refine=options.refine_wcs,
        match_radius=options.match_radius,
        order=options.interpolation_order,
        science_name=science_name,
        reference_name=reference_name,
        use_affine=options.affine_registration,
    )
    saturated = sci.saturated | registration.transfer_mask(ref.saturated)

    mask = sci.bad | registration.footprint_mask | edge_mask(sci.data.shape, options.edge_width)
    if mask.all():
        raise InputDataError(f"{science_name} and {reference_name}: no unmasked pixel in the overlap")
    new = np.where(mask, np.float32(0.0), sci.data)
    aligned = np.where(mask, np.float32(0.0), registration.aligned.astype(np.float32, copy=False))
    unusable = mask | saturated

    # Two independent branches, run concurrently: PSFs and the flux scale
    # (from the stars), and the variance images (from the noise models).
    def psfs_and_flux_scale():
        stars_science = _usable_stars(science_stars, unusable, fwhm)
        psf_science = estimate_psf_grid(
            new, sci.background.sigma, mask=unusable, grid=options.psf_grid,
            fwhm_guess=fwhm, size=options.psf_size, name=science_name,
            stars=stars_science, max_stars=options.max_psf_stars,
        )
        size = psf_science.psfs.shape[-1]
        stars_reference = _usable_stars(
            _reference_stars_on_science_grid(reference_stars, science.wcs, reference.wcs, registration), unusable, fwhm
        )
        psf_reference = estimate_psf_grid(
            aligned, ref.background.sigma, mask=unusable, grid=options.psf_grid,
            fwhm_guess=fwhm, size=size, name=reference_name,
            stars=stars_reference, max_stars=options.max_psf_stars,
        )
        fwhm_science = psf_fwhm(psf_science.mean_psf)
        fwhm_reference = psf_fwhm(psf_reference.mean_psf)

        calibrators = select_psf_stars(stars_science, new.shape, size, min_snr=20.0)
        if len(calibrators) < 3:
            calibrators = stars_science[stars_science["snr"] >= 10.0][:200]
        scale = flux_scale(
            new, aligned, calibrators["x"], calibrators["y"], psf_science.mean_psf, psf_reference.mean_psf,
            radius=3.0 * max(fwhm_science, fwhm_reference),
            sigma_science=sci.background.sigma, sigma_reference=ref.background.sigma, name=science_name,
            gain_science=gain_new.electrons_per_unit if gain_new else 1.0,
            gain_reference=gain_reference.electrons_per_unit if gain_reference else 1.0,
        )
        _log.info("flux scale F_n/F_r = %.4f +- %.4f from %d stars", scale.ratio, scale.error, scale.n_stars)
        return psf_science, psf_reference, fwhm_science, fwhm_reference, scale

    def variance_images():
        # float32: the variances only set S_corr's normalisation.
        if science_noise is not None:
            background_variance_new = np.where(sci.bad, np.float32(sci.background.sigma**2), science_noise.variance)
            sigma_new = _noise_sigma(science_noise, sci.bad)
        else:
            background_variance_new = sci.background.rms.astype(np.float32) ** 2
            sigma_new = sci.background.sigma
        if reference_noise is not None:
            # Unusable pixels are in the mask already; a finite fill keeps the
            # interpolation from spreading infinities.
            finite_variance = np.where(ref.bad, np.float32(ref.background.sigma**2), reference_noise.variance)
            background_variance_reference, outside = reproject_to_grid(finite_variance, registration.map_x, registration.map_y, order=1)
            background_variance_reference[outside] = np.float32(ref.background.sigma**2)
            background_variance_reference = background_variance_reference.astype(np.float32, copy=False)
            sigma_reference = _noise_sigma(reference_noise, ref.bad)
        else:
            # The reference noise is measured before resampling: interpolation lowers
            # the per-pixel variance but not the low-frequency power that the ZOGY
            # filters pass, so the native-frame value is the one S_corr needs.
            reference_rms = _reference_rms_on_science_grid(ref.background, registration, sci.data.shape)
            background_variance_reference = np.asarray(reference_rms, dtype=np.float32) ** 2
            sigma_reference = ref.background.sigma
        variance_new, model_new = _variance_image(
            new, background_variance_new, science_noise,
            gain_new, source_noise=options.source_noise, name=science_name,
        )
        variance_reference, model_reference = _variance_image(
            aligned, background_variance_reference, reference_noise,
            gain_reference, source_noise=options.source_noise, name=reference_name,
        )
        return (variance_new, model_new, sigma_new), (variance_reference, model_reference, sigma_reference)

    with ThreadPoolExecutor(max_workers=2) as pool:
        psf_job = pool.submit(psfs_and_flux_scale)
        variance_job = pool.submit(variance_images)
        psf_science, psf_reference, fwhm_science, fwhm_reference, scale = psf_job.result()
        (variance_new, model_new, sigma_new), (variance_reference, model_reference, sigma_reference) = variance_job.result()
    _log.info(
        "noise model: science %s (gain: %s); reference %s (gain: %s)", model_new,
        gain_new.description if gain_new else "none", model_reference,
        gain_reference.description if gain_reference else "none",
    )
    astrometric_sigma = (0.0, 0.0)
    if options.astrometric_noise and registration.n_matched > 0 and np.isfinite(registration.rms_residual):
        # Per-axis standard error of the fitted transform: rms distance / sqrt(2 n).
        per_axis = registration.rms_residual / np.sqrt(2.0 * registration.n_matched)
        astrometric_sigma = (per_axis, per_axis)
    common = dict(
        flux_new=scale.ratio,
        flux_reference=1.0,
        variance_new=variance_new,
        variance_reference=variance_reference,
        astrometric_sigma=astrometric_sigma,
    )
    result: ZogyResult
    if options.psf_grid == 1:
        result = zogy(new, aligned, psf_science.psfs[0, 0], psf_reference.psfs[0, 0], sigma_new, sigma_reference, **common)
    else:
        result = zogy_grid(
            new, aligned, psf_science.psfs, psf_reference.psfs, psf_science.y_edges, psf_science.x_edges,
            sigma_new, sigma_reference, **common,
        )
    width, normalised = _normalise_scorr(result, new, aligned, mask, options)
    candidates = detect_candidates(
        result.score_corr,
        threshold=options.threshold,
        mask=mask,
        saturated=saturated,
        flux=result.flux_psf,
        flux_err=result.flux_psf_err,
        wcs=science.wcs,
        npixels=options.npixels,
        deblend=options.deblend,
        exclude_flags=FLAG_NEAR_SATURATED if options.exclude_near_saturated else 0,
    )
    _log.info("%s: %d candidates above %.1f sigma", science_name, len(candidates), options.threshold)
    score_corr = np.where(mask, np.nan, result.score_corr)
    return DiffimResult(
        science=new,
        reference_aligned=aligned,
        difference=result.difference,
        score=result.score,
        score_corr=score_corr,
        flux_psf=result.flux_psf,
        flux_psf_err=result.flux_psf_err,
        mask=mask,
        saturated=saturated,
        psf_science=psf_science,
        psf_reference=psf_reference,
        psf_difference=result.psf_difference,
        registration=registration,
        flux_scale=scale,
        sigma_science=sigma_new,
        sigma_reference=sigma_reference,
        candidates=candidates,
        scorr_width=width,
        scorr_normalised=normalised,
        noise_model_science=model_new,
        noise_model_reference=model_reference,
        gain_science=gain_new,
        gain_reference=gain_reference,
    )


def _normalise_scorr(
    result: ZogyResult, new: np.ndarray, aligned: np.ndarray, mask: np.ndarray, options: DiffimOptions
) -> tuple[float, bool]:
    """Measure ``S_corr``'s width on source-free pixels and divide it out when the options say so (in place)."""
    quiet = quiet_pixels(new, aligned, mask)
    width = scorr_width(result.score_corr, quiet)
    if options.correlated_noise == "never" or not np.isfinite(width) or width <= 0:
        apply = False
    elif options.correlated_noise == "always":
        apply = True
    else:
        apply = abs(width - 1.0) > options.correlated_noise_tolerance
    _log.info("S_corr width on %d source-free blocks: %.3f (%s)", int(quiet.sum()), width,
              "normalised" if apply else "left as computed")
    if apply:
        result.score_corr /= np.float32(width)
        result.flux_psf_err *= np.float32(width)
    return width, apply


def _read_mask(path: str | os.PathLike[str] | None, image: FitsImage) -> np.ndarray | None:
    if path is None:
        return None
    mask_image = read_fits_image(path, allow_all_nan=True)
    if mask_image.data.shape != image.data.shape:
        raise InputDataError(
            f"{mask_image.path}: mask shape {mask_image.data.shape} differs from {image.path} shape {image.data.shape}"
        )
    # Non-zero means bad; a NaN in a mask is bad too.
    return ~np.isfinite(mask_image.data) | (np.nan_to_num(mask_image.data) != 0)


#: Extensions of survey products read by :func:`read_noise_inputs`, in order of preference for the noise.
NOISE_EXTENSIONS = ("ERR", "VAR_POISSON", "VAR_RNOISE", "WHT", "DQ")


def read_noise_inputs(
    image: FitsImage,
    *,
    noise_path: str | os.PathLike[str] | None = None,
    weight_path: str | os.PathLike[str] | None = None,
    use_extensions: bool = True,
) -> tuple[NoiseMap | None, np.ndarray | None]:
    """Read the per-pixel noise and data-quality mask of one image.

    Parameters
    ----------
    image : FitsImage
        The image (its file is searched for extensions).
    noise_path : str or path-like, optional
        FITS 1-sigma noise map in image units (first image HDU), sources'
        noise included.
    weight_path : str or path-like, optional
        FITS inverse-variance map (first image HDU), sky and detector only.
    use_extensions : bool
        Without a noise or weight file, use the image file's ``ERR``, else
        ``VAR_POISSON`` + ``VAR_RNOISE``, else ``WHT`` extension; and its
        ``DQ`` extension (non-zero = bad) in any case.

    Returns
    -------
    noise : NoiseMap or None
        None when there is no noise information (the background mesh is used).
    dq_mask : numpy.ndarray of bool or None
        Bad pixels from ``DQ``.

    Raises
    ------
    InputDataError
        Both a noise and a weight file, a map of the wrong shape, all NaN or
        negative; the message names the file.
    """
    shape = image.data.shape
    if noise_path is not None and weight_path is not None:
        raise InputDataError(f"{image.path}: give a noise map ({noise_path}) or a weight map ({weight_path}), not both")
    if noise_path is not None:
        noise_image = read_fits_image(noise_path, allow_all_nan=True)
        return variance_from_noise(noise_image.data, shape, name=str(noise_image.path)), None
    if weight_path is not None:
        weight_image = read_fits_image(weight_path, allow_all_nan=True)
        return variance_from_weight(weight_image.data, shape, name=str(weight_image.path)), None
    if not use_extensions:
        return None, None
    extensions = read_image_extensions(image.path, NOISE_EXTENSIONS)
    dq_mask = None
    if "DQ" in extensions:
        dq = extensions["DQ"]
        if dq.shape != shape:
            raise InputDataError(f"{image.path}: DQ extension shape {dq.shape} differs from image shape {shape}")
        dq_mask = ~np.isfinite(dq) | (np.nan_to_num(dq) != 0)
    name = str(image.path)
    if "ERR" in extensions:
        return variance_from_noise(extensions["ERR"], shape, name=name, origin="ERR"), dq_mask
    components = {key: extensions[key] for key in ("VAR_POISSON", "VAR_RNOISE") if key in extensions}
    if components:
        return variance_from_components(components, shape, name=name), dq_mask
    if "WHT" in extensions:
        return variance_from_weight(extensions["WHT"], shape, name=name, origin="WHT"), dq_mask
    return None, dq_mask


def render_preview(result: DiffimResult) -> bytes:
    """Render the 4-panel PNG preview (science, aligned reference, D, S_corr) with candidates circled.

    Parameters
    ----------
    result : DiffimResult

    Returns
    -------
    bytes
        PNG file content (see :mod:`skysift.diffim.preview`).
    """
    candidates = result.candidates
    return preview_png(
        result.science, result.reference_aligned, result.difference, result.score_corr,
        np.asarray(candidates["x"], float) if len(candidates) else np.zeros(0),
        np.asarray(candidates["y"], float) if len(candidates) else np.zeros(0),
        np.asarray(candidates["scorr"]) > 0 if len(candidates) else np.zeros(0, bool),
    )


def _gain_value(gain: GainModel | None) -> float:
    return float(gain.electrons_per_unit) if gain is not None else -1.0


def _fits_text(text: str, limit: int = 40) -> str:
    """A header string value short enough to share its card with a short comment."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_diffim(
    science_path: str | os.PathLike[str],
    reference_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    science_mask_path: str | os.PathLike[str] | None = None,
    reference_mask_path: str | os.PathLike[str] | None = None,
    options: DiffimOptions = DiffimOptions(),
    context: RunContext | None = None,
    seed: int | None = None,
    science_noise_path: str | os.PathLike[str] | None = None,
    reference_noise_path: str | os.PathLike[str] | None = None,
    science_weight_path: str | os.PathLike[str] | None = None,
    reference_weight_path: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Read a science/reference pair, difference them and write the products.

    Parameters
    ----------
    science_path, reference_path : str or path-like
        FITS images with celestial WCSs.
    outdir : str or path-like
        Output directory (created if needed).
    science_mask_path, reference_mask_path : str or path-like, optional
        FITS bad-pixel masks (non-zero = bad), same shape as their images.
    options : DiffimOptions
        Settings.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).
    seed : int, optional
        Recorded in the provenance (the computation is deterministic).
    science_noise_path, reference_noise_path : str or path-like, optional
        FITS 1-sigma noise maps (image units, sources' noise included).
    science_weight_path, reference_weight_path : str or path-like, optional
        FITS inverse-variance maps (instead of a noise map).

    Returns
    -------
    dict of str to pathlib.Path
        ``difference``, ``scorr``, ``fpsf``, ``fpsf_err``,
        ``aligned_reference`` (FITS), ``candidates`` (ECSV) and ``preview`` (PNG).

    Raises
    ------
    FileNotFoundError
        If an input does not exist.
    InputDataError
        For unusable input (see :func:`difference_images` and :func:`read_noise_inputs`).

    Notes
    -----
    Everything is computed before the first write; the products are written
    into a hidden directory next to ``outdir`` and moved into place together
    (:func:`skysift.io.atomic_directory`), so a failed or killed run leaves
    either every product or none.
    """
    science = read_fits_image(science_path, require_wcs=True)
    reference = read_fits_image(reference_path, require_wcs=True)
    science_mask = _read_mask(science_mask_path, science)
    reference_mask = _read_mask(reference_mask_path, reference)
    science_noise, science_dq = read_noise_inputs(
        science, noise_path=science_noise_path, weight_path=science_weight_path, use_extensions=options.noise_extensions
    )
    reference_noise, reference_dq = read_noise_inputs(
        reference, noise_path=reference_noise_path, weight_path=reference_weight_path, use_extensions=options.noise_extensions
    )
    if science_dq is not None:
        science_mask = science_dq if science_mask is None else science_mask | science_dq
    if reference_dq is not None:
        reference_mask = reference_dq if reference_mask is None else reference_mask | reference_dq
    result = difference_images(
        science, reference, science_mask=science_mask, reference_mask=reference_mask, options=options,
        science_noise=science_noise, reference_noise=reference_noise,
    )
    inputs = [Path(science_path), Path(reference_path)]
    inputs += [
        Path(p) for p in (science_mask_path, reference_mask_path, science_noise_path, reference_noise_path,
                          science_weight_path, reference_weight_path) if p is not None
    ]
    provenance = resolve_context(context, "diffim").provenance(inputs=inputs, seed=seed)
    header = {
        "DIFFALGO": ("ZOGY", "Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27"),
        "FLUXSCL": (result.flux_scale.ratio, "F_n / F_r from matched stars"),
        "REGRMS": (float(np.nan_to_num(result.registration_rms, nan=-1.0)), "registration rms residual (pix)"),
        "SIGSCI": (result.sigma_science, "science noise per pixel (image units)"),
        "SIGREF": (result.sigma_reference, "reference noise per pixel (image units)"),
        "NOISESCI": (_fits_text(result.noise_model_science), "science variance"),
        "NOISEREF": (_fits_text(result.noise_model_reference), "reference variance"),
        "GAINSCI": (_gain_value(result.gain_science), "science e-/unit (-1: none)"),
        "GAINREF": (_gain_value(result.gain_reference), "reference e-/unit (-1: none)"),
        "GAINSRCS": (_fits_text(result.gain_science.description if result.gain_science else "none"), "science gain from"),
        "GAINSRCR": (_fits_text(result.gain_reference.description if result.gain_reference else "none"), "reference gain from"),
        "SCORRWID": (float(np.nan_to_num(result.scorr_width, nan=-1.0)), "robust std of S_corr, source-free"),
        "SCORRNRM": (result.scorr_normalised, "S_corr, FPSF_ERR corrected by SCORRWID"),
    }
    outdir = Path(outdir)
    images = {
        "difference": (result.difference, None),
        "scorr": (result.score_corr, None),
        "fpsf": (result.flux_psf, science.header.get("BUNIT")),
        "fpsf_err": (result.flux_psf_err, science.header.get("BUNIT")),
        # The background-subtracted reference on the science grid: the middle
        # channel of science/reference/difference cutout triplets.
        "aligned_reference": (result.reference_aligned, reference.header.get("BUNIT")),
    }
    # One header for every image (WCS cards built once, not per file and thread).
    product_header = science.wcs.to_header(relax=True)
    for key, value in header.items():
        product_header[key] = value

    def write_image(key: str) -> None:
        image, unit = images[key]
        write_fits_image(
            staging / PRODUCT_FILES[key], image.astype(np.float32, copy=False), provenance=provenance,
            header=product_header, unit=unit,
        )

    def write_preview() -> None:
        (staging / PRODUCT_FILES["preview"]).write_bytes(render_preview(result))

    # The products are independent files: written concurrently, the float32
    # conversions, big-endian copies, PNG compression and fsyncs (which release
    # the GIL) overlap. Any failure propagates and discards the staging directory.
    with atomic_directory(outdir, PRODUCT_FILES.values()) as staging, ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(write_image, key) for key in images]
        jobs.append(pool.submit(write_preview))
        jobs.append(pool.submit(write_table, result.candidates, staging / PRODUCT_FILES["candidates"], provenance=provenance))
        for job in jobs:
            job.result()
    return {key: outdir / name for key, name in PRODUCT_FILES.items()}
