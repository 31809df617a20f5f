"""ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27).

Notation follows the paper: ``N`` is the new (science) image, ``R`` the
reference aligned to it, ``P_n`` and ``P_r`` their unit-sum PSFs, ``sigma_n``
and ``sigma_r`` their background noise per pixel and ``F_n``, ``F_r`` their
flux zero points (the flux one unit of true flux produces in each image). Hats
denote discrete Fourier transforms (numpy's unnormalised convention).

All transforms are single-precision real-input FFTs (:func:`scipy.fft.rfft2`,
all cores), and the output images are float32. The
images are zero-padded by the PSF stamp size (they must be background
subtracted) so that the periodic FFT does not wrap sources across the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = ["ZogyResult", "pad_psf", "zogy", "zogy_grid"]


@dataclass
class ZogyResult:
    """Products of :func:`zogy` (all images on the input grid).

    Attributes
    ----------
    difference : numpy.ndarray
        Proper difference image ``D`` (eq. 13), unit noise variance per pixel.
    psf_difference : numpy.ndarray
        PSF of ``D``, ``P_D`` (eq. 14), as a centred stamp; for
        :func:`zogy_grid` an array ``(n, n, size, size)``, one per cell.
    flux_difference : float or numpy.ndarray
        Flux zero point of ``D``, ``F_D`` (eq. 15); per cell for the grid.
    score : numpy.ndarray
        Matched-filter score ``S`` (eq. 17), not normalised.
    score_corr : numpy.ndarray
        ``S_corr`` (eq. 25): ``S`` divided by its standard deviation including
        source noise and astrometric noise, in units of sigma.
    flux_psf : numpy.ndarray
        PSF-photometry flux of a point source at each pixel (eq. 41-42),
        ``F_n S / F_S``, in science-image units.
    flux_psf_err : numpy.ndarray
        Its 1-sigma error, ``F_n sqrt(V(S_N) + V(S_R)) / F_S``.
    flux_score : float or numpy.ndarray
        ``F_S`` (eq. 42), the flux normalisation of ``S``.
    """

    difference: np.ndarray
    psf_difference: np.ndarray
    flux_difference: float | np.ndarray
    score: np.ndarray
    score_corr: np.ndarray
    flux_psf: np.ndarray
    flux_psf_err: np.ndarray
    flux_score: float | np.ndarray


def pad_psf(psf: np.ndarray, shape: tuple[int, int], dtype: type = np.float64) -> np.ndarray:
    """Embed a centred PSF stamp in an array of ``shape`` with its centre at pixel (0, 0).

    This is the zero-padded, ``ifftshift``-ed layout whose Fourier transform
    has no linear phase, so multiplying by it convolves without shifting.

    Parameters
    ----------
    psf : numpy.ndarray
        Odd-sized stamp, centre at ``(size // 2, size // 2)``.
    shape : (int, int)
        Output shape (at least the stamp's).
    dtype : numpy dtype
        Of the output.

    Returns
    -------
    numpy.ndarray
    """
    psf = np.asarray(psf)
    sy, sx = psf.shape
    if sy % 2 == 0 or sx % 2 == 0:
        raise ValueError(f"PSF stamp must have odd sides, got {psf.shape}")
    if sy > shape[0] or sx > shape[1]:
        raise ValueError(f"PSF stamp {psf.shape} larger than the image {shape}")
    padded = np.zeros(shape, dtype=dtype)
    # Stamp pixel i goes to (i - centre) modulo the size: the wrapped layout, without rolling a full array.
    rows = (np.arange(sy) - sy // 2) % shape[0]
    cols = (np.arange(sx) - sx // 2) % shape[1]
    padded[np.ix_(rows, cols)] = psf
    return padded


def _centre_crop(stamp: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The central part of an odd stamp that fits in ``shape`` (odd sides kept)."""
    half = min(stamp.shape[0] // 2, (min(shape) - 1) // 2)
    centre = stamp.shape[0] // 2
    return stamp[centre - half : centre + half + 1, centre - half : centre + half + 1]


def _kernels_on_small_grid(
    psf_new: np.ndarray, psf_reference: np.ndarray, pad: int, weights: tuple[float, float, float], fluxes: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real-space ZOGY kernels ``k_n``, ``k_r`` (eq. 28) and ``P_D`` (eq. 14) as centred stamps.

    They depend on the PSFs only, and are compact (a few PSF widths), so a
    grid of four stamp sides holds them with no wrap-around that matters;
    computing them there instead of on the image's FFT grid saves three
    full-size transforms. ``weights`` are ``(a_n, a_r, floor)`` of the
    denominator and ``fluxes`` ``(F_n, F_r, F_D)``.
    """
    side = scipy.fft.next_fast_len(4 * pad, real=True)
    shape = (side, side)
    p_n = scipy.fft.rfft2(pad_psf(psf_new, shape))
    p_r = scipy.fft.rfft2(pad_psf(psf_reference, shape))
    p_n2 = p_n.real**2 + p_n.imag**2
    p_r2 = p_r.real**2 + p_r.imag**2
    a_n, a_r, floor = weights
    f_n, f_r, f_d = fluxes
    denominator = a_n * p_r2 + a_r * p_n2 + floor
    half = side // 2 - 1  # an odd stamp of side - 1 pixels (side is even or odd)

    def stamp(spectrum: np.ndarray) -> np.ndarray:
        image = np.fft.fftshift(scipy.fft.irfft2(spectrum, s=shape))
        centre = side // 2
        return image[centre - half : centre + half + 1, centre - half : centre + half + 1]

    kernel_n = stamp(f_r**2 * f_n * p_r2 * np.conj(p_n) / denominator)
    kernel_r = stamp(f_n**2 * f_r * p_n2 * np.conj(p_r) / denominator)
    psf_difference = stamp(f_r * f_n / f_d * p_r * p_n / np.sqrt(denominator))
    return kernel_n, kernel_r, psf_difference


def _scalar_and_map(sigma: float | np.ndarray, variance: np.ndarray | None, shape) -> tuple[float, np.ndarray | float]:
    sigma_array = np.asarray(sigma, dtype=np.float64)
    scalar = float(np.median(sigma_array)) if sigma_array.ndim else float(sigma_array)
    if not np.isfinite(scalar) or scalar <= 0:
        raise ValueError(f"noise sigma must be positive and finite, got {scalar}")
    if variance is not None:
        # Kept in its own precision: it is transformed in float32 anyway, and a
        # float64 copy of a full variance image is pure memory traffic.
        return scalar, np.asarray(variance)
    return scalar, sigma_array**2 if sigma_array.ndim else scalar**2


def _pad_image(image: np.ndarray | float, pad: int, fft_shape, mode: str) -> np.ndarray | float:
    if np.ndim(image) == 0:
        return image
    ny, nx = np.shape(image)
    after = (fft_shape[0] - ny - pad, fft_shape[1] - nx - pad)
    return np.pad(image, ((pad, after[0]), (pad, after[1])), mode=mode)


def zogy(
    new: np.ndarray,
    reference: np.ndarray,
    psf_new: np.ndarray,
    psf_reference: np.ndarray,
    sigma_new: float | np.ndarray,
    sigma_reference: float | np.ndarray,
    *,
    flux_new: float = 1.0,
    flux_reference: float = 1.0,
    variance_new: np.ndarray | None = None,
    variance_reference: np.ndarray | None = None,
    astrometric_sigma: tuple[float, float] = (0.0, 0.0),
    regularisation: float = 1e-10,
) -> ZogyResult:
    """Proper image subtraction of an aligned, background-subtracted pair.

    Parameters
    ----------
    new : numpy.ndarray
        Science image ``N``, background subtracted, masked pixels filled.
    reference : numpy.ndarray
        Reference ``R`` on the same grid, likewise.
    psf_new, psf_reference : numpy.ndarray
        Centred, odd-sized, unit-sum PSF stamps ``P_n``, ``P_r``.
    sigma_new, sigma_reference : float or numpy.ndarray
        Background noise per pixel. A map enters the variance images; the
        Fourier-space filter uses its median (the paper's prescription for
        slowly varying noise, section 3.4).
    flux_new, flux_reference : float
        Zero points ``F_n``, ``F_r``; only their ratio matters for ``D``, ``S``
        and ``S_corr``. ``flux_psf`` is returned in units of ``new``.
    variance_new, variance_reference : numpy.ndarray, optional
        Per-pixel variance ``V_n``, ``V_r`` including the sources' Poisson
        noise (eq. 26); by default the background variance ``sigma**2``.
    astrometric_sigma : (float, float)
        Registration noise (pixels, x and y) for the astrometric term
        (eqs. 30-33).
    regularisation : float
        Relative floor added to the denominator of eq. 13 so that frequencies
        where both PSFs vanish do not amplify rounding noise; it changes no
        output at S/N that matters, and ``S_corr`` stays exactly normalised
        because its variance uses the same regularised kernels.

    Returns
    -------
    ZogyResult

    Notes
    -----
    With ``den = sigma_n^2 F_r^2 |P_r|^2 + sigma_r^2 F_n^2 |P_n|^2``:

    * eq. 13: ``D = (F_r P_r N - F_n P_n R) / sqrt(den)``;
    * eq. 15: ``F_D = F_r F_n / sqrt(sigma_n^2 F_r^2 + sigma_r^2 F_n^2)``;
    * eq. 14: ``P_D = F_r F_n P_r P_n / (F_D sqrt(den))``;
    * eq. 17: ``S = F_D D conj(P_D) = k_n N - k_r R`` with (eq. 28)
      ``k_n = F_r^2 F_n |P_r|^2 conj(P_n) / den`` and
      ``k_r = F_n^2 F_r |P_n|^2 conj(P_r) / den``;
    * eqs. 26-27: ``V(S_N) = V_n (x) k_n^2``, ``V(S_R) = V_r (x) k_r^2``
      (convolutions of the variance images with the squared real-space kernels);
    * eq. 25: ``S_corr = S / sqrt(V(S_N) + V(S_R) + V_ast)``;
    * eq. 42: ``F_S = sum_k F_n^2 F_r^2 |P_n|^2 |P_r|^2 / den`` (divided by
      the number of pixels in numpy's convention), so that ``S / F_S`` is the
      flux of a point source in units of true flux, and ``F_n S / F_S`` in
      units of the science image.
    """
    new = np.asarray(new)
    reference = np.asarray(reference)
    if new.shape != reference.shape:
        raise ValueError(f"new {new.shape} and reference {reference.shape} differ in shape")
    if not (np.all(np.isfinite(new)) and np.all(np.isfinite(reference))):
        raise ValueError("new and reference must be finite everywhere (fill masked pixels first)")
    shape = new.shape
    sigma_n, variance_n = _scalar_and_map(sigma_new, variance_new, shape)
    sigma_r, variance_r = _scalar_and_map(sigma_reference, variance_reference, shape)
    f_n, f_r = float(flux_new), float(flux_reference)

    pad = max(psf_new.shape[0], psf_reference.shape[0])
    fft_shape = tuple(scipy.fft.next_fast_len(n + 2 * pad, real=True) for n in shape)
    core = (slice(pad, pad + shape[0]), slice(pad, pad + shape[1]))

    # Single precision throughout: the images carry ~1e-3 relative noise and
    # float32 FFTs err by ~1e-7 of the largest coefficient, while halving the
    # time and memory of every transform (the dominant cost of the pipeline).
    def rfft(image: np.ndarray) -> np.ndarray:
        return scipy.fft.rfft2(np.asarray(image, dtype=np.float32), s=fft_shape, workers=-1, overwrite_x=True)

    def irfft(spectrum: np.ndarray) -> np.ndarray:
        return scipy.fft.irfft2(spectrum, s=fft_shape, workers=-1, overwrite_x=True)

    new_hat = rfft(_pad_image(new, pad, fft_shape, "constant"))
    reference_hat = rfft(_pad_image(reference, pad, fft_shape, "constant"))
    p_n = rfft(pad_psf(psf_new, fft_shape, np.float32))
    p_r = rfft(pad_psf(psf_reference, fft_shape, np.float32))
    # Products below are formed in place where a full-size temporary is not
    # needed: every temporary of the padded grid is ~18 MB at 2048^2, and
    # allocating and touching them costs as much as the arithmetic.
    p_n2 = p_n.real**2
    p_n2 += p_n.imag**2
    p_r2 = p_r.real**2
    p_r2 += p_r.imag**2

    a_n = np.float32(sigma_n**2 * f_r**2)
    a_r = np.float32(sigma_r**2 * f_n**2)
    denominator = a_n * p_r2
    denominator += a_r * p_n2
    denominator += np.float32(regularisation * (sigma_n**2 * f_r**2 + sigma_r**2 * f_n**2))
    inverse_sqrt_denominator = np.sqrt(denominator)
    np.reciprocal(inverse_sqrt_denominator, out=inverse_sqrt_denominator)

    flux_difference = f_r * f_n / np.sqrt(sigma_n**2 * f_r**2 + sigma_r**2 * f_n**2)  # eq. 15
    # eq. 13: D = (F_r P_r N - F_n P_n R) / sqrt(den).
    difference_hat = p_r * new_hat
    difference_hat *= np.float32(f_r)
    reference_term = p_n * reference_hat
    reference_term *= np.float32(f_n)
    difference_hat -= reference_term
    del reference_term
    difference_hat *= inverse_sqrt_denominator
    difference = irfft(difference_hat)
    del difference_hat, inverse_sqrt_denominator
    floor = regularisation * (sigma_n**2 * f_r**2 + sigma_r**2 * f_n**2)
    # eq. 14 (P_D) and the real-space kernels of eq. 28, from the PSFs alone.
    kernel_n, kernel_r, psf_difference = _kernels_on_small_grid(
        psf_new, psf_reference, pad, (sigma_n**2 * f_r**2, sigma_r**2 * f_n**2, floor), (f_n, f_r, flux_difference)
    )

    inverse_denominator = np.reciprocal(denominator, out=denominator)
    del denominator
    # eq. 28: k_n = F_r^2 F_n |P_r|^2 conj(P_n) / den, k_r likewise.
    kernel_n_hat = np.conj(p_n)
    kernel_n_hat *= p_r2 * inverse_denominator
    kernel_n_hat *= np.float32(f_r**2 * f_n)
    kernel_r_hat = np.conj(p_r)
    kernel_r_hat *= p_n2 * inverse_denominator
    kernel_r_hat *= np.float32(f_n**2 * f_r)

    # eq. 42: F_S = irfft(F_n^2 F_r^2 |P_n|^2 |P_r|^2 / den)[0, 0], i.e. the
    # mean of the full Hermitian spectrum, summed here on the half spectrum
    # (columns other than 0 and Nyquist stand for two), in float64.
    flux_score_spectrum = p_n2 * p_r2
    flux_score_spectrum *= inverse_denominator
    column_weight = np.full(flux_score_spectrum.shape[1], 2.0)
    column_weight[0] = 1.0
    if fft_shape[1] % 2 == 0:
        column_weight[-1] = 1.0
    column_sums = flux_score_spectrum.sum(axis=0, dtype=np.float64)
    flux_score = float(f_n**2 * f_r**2 * (column_sums @ column_weight) / (fft_shape[0] * fft_shape[1]))
    del flux_score_spectrum, inverse_denominator, p_n2, p_r2, p_n, p_r

    sigma_x, sigma_y = astrometric_sigma
    astrometric = sigma_x > 0 or sigma_y > 0
    # eq. 17: S = k_n N - k_r R (= F_D D (x) flip(P_D)); the image spectra are not needed after.
    new_hat *= kernel_n_hat
    reference_hat *= kernel_r_hat
    del kernel_n_hat, kernel_r_hat
    if astrometric:
        score_new = irfft(new_hat)
        score_reference = irfft(reference_hat)
        score = score_new - score_reference
    else:
        new_hat -= reference_hat
        score = irfft(new_hat)
    del new_hat, reference_hat

    # eqs. 26-27: variance of S from the variance images (sources included);
    # both convolutions share one inverse transform.
    kernel_n2_hat = rfft(pad_psf(_centre_crop(kernel_n, fft_shape) ** 2, fft_shape, np.float32))
    kernel_r2_hat = rfft(pad_psf(_centre_crop(kernel_r, fft_shape) ** 2, fft_shape, np.float32))
    variance_score = np.zeros(fft_shape, dtype=np.float32)
    spectrum = None
    for variance, kernel2_hat in ((variance_n, kernel_n2_hat), (variance_r, kernel_r2_hat)):
        if np.ndim(variance) == 0:
            variance_score += np.float32(float(variance) * float(kernel2_hat[0, 0].real))
        else:
            term = rfft(_pad_image(variance, pad, fft_shape, "edge"))
            term *= kernel2_hat
            if spectrum is None:
                spectrum = term
            else:
                spectrum += term
    del kernel_n2_hat, kernel_r2_hat
    if spectrum is not None:
        variance_score += irfft(spectrum)
        del spectrum
    np.maximum(variance_score, 0.0, out=variance_score)

    scale = np.float32(f_n / flux_score)
    flux_psf = scale * score
    flux_psf_err = np.sqrt(variance_score)
    flux_psf_err *= scale

    total_variance = variance_score  # modified in place below: flux_psf_err is taken already
    if astrometric:
        # eqs. 30-33: a registration error moves bright sources; the residual
        # it leaves scales with the gradient of each image's score.
        for partial_score in (score_new, score_reference):
            for axis, sigma in ((1, sigma_x), (0, sigma_y)):
                gradient = np.gradient(partial_score, axis=axis)
                gradient *= gradient
                gradient *= np.float32(sigma**2)
                total_variance += gradient
        del score_new, score_reference, gradient

    tiny = np.finfo(np.float32).tiny
    np.maximum(total_variance, tiny, out=total_variance)
    score_corr = score / np.sqrt(total_variance, out=total_variance)
    del total_variance, variance_score

    centre = psf_difference.shape[0] // 2
    half = pad // 2
    psf_difference = psf_difference[centre - half : centre + half + 1, centre - half : centre + half + 1]

    def crop(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[core])

    return ZogyResult(
        difference=crop(difference),
        psf_difference=psf_difference,
        flux_difference=float(flux_difference),
        score=crop(score),
        score_corr=crop(score_corr),
        flux_psf=crop(flux_psf),
        flux_psf_err=crop(flux_psf_err),
        flux_score=flux_score,
    )


def zogy_grid(
    new: np.ndarray,
    reference: np.ndarray,
    psfs_new: np.ndarray,
    psfs_reference: np.ndarray,
    y_edges: np.ndarray,
    x_edges: np.ndarray,
    sigma_new: float | np.ndarray,
    sigma_reference: float | np.ndarray,
    *,
    overlap: int | None = None,
    **kwargs,
) -> ZogyResult:
    """ZOGY with a spatially varying PSF: one :func:`zogy` per grid cell, with overlap.

    Parameters
    ----------
    new, reference, sigma_new, sigma_reference
        As for :func:`zogy` (maps are cut per cell).
    psfs_new, psfs_reference : numpy.ndarray
        ``(n, n, size, size)`` PSFs per cell (see :class:`~skysift.diffim.psf.PsfGrid`).
    y_edges, x_edges : numpy.ndarray
        Cell boundaries, ``n + 1`` each.
    overlap : int, optional
        Pixels added around each cell before subtracting and discarded after,
        so that the kernels see real data at the cell borders; by default the
        PSF stamp size.
    **kwargs
        Passed to :func:`zogy` (``flux_new``, ``variance_new``...); arrays of
        the image shape are cut per cell.

    Returns
    -------
    ZogyResult
        Mosaicked images; ``psf_difference`` has shape ``(n, n, s, s)`` and
        ``flux_difference``, ``flux_score`` shape ``(n, n)``.

    Notes
    -----
    ZOGY assumes a PSF constant over the image (Zackay et al. 2016, section
    3.5 suggests sub-images for a varying one); cutting the image into cells
    small enough for the PSF to be constant in each is that prescription.
    """
    shape = np.shape(new)
    grid = psfs_new.shape[0]
    overlap = psfs_new.shape[-1] if overlap is None else overlap
    outputs = {name: np.zeros(shape) for name in ("difference", "score", "score_corr", "flux_psf", "flux_psf_err")}
    psf_difference = None
    flux_difference = np.zeros((grid, grid))
    flux_score = np.zeros((grid, grid))

    def cut(value, window):
        return value[window] if np.ndim(value) == 2 and np.shape(value) == shape else value

    for i in range(grid):
        for j in range(grid):
            y0, y1 = max(0, y_edges[i] - overlap), min(shape[0], y_edges[i + 1] + overlap)
            x0, x1 = max(0, x_edges[j] - overlap), min(shape[1], x_edges[j + 1] + overlap)
            window = (slice(y0, y1), slice(x0, x1))
            cell = zogy(
                new[window],
                reference[window],
                psfs_new[i, j],
                psfs_reference[i, j],
                cut(sigma_new, window),
                cut(sigma_reference, window),
                **{key: cut(value, window) for key, value in kwargs.items()},
            )
            inner = (slice(y_edges[i] - y0, y_edges[i + 1] - y0), slice(x_edges[j] - x0, x_edges[j + 1] - x0))
            target = (slice(y_edges[i], y_edges[i + 1]), slice(x_edges[j], x_edges[j + 1]))
            for name, image in outputs.items():
                image[target] = getattr(cell, name)[inner]
            if psf_difference is None:
                psf_difference = np.zeros((grid, grid) + cell.psf_difference.shape)
            psf_difference[i, j] = cell.psf_difference
            flux_difference[i, j] = cell.flux_difference
            flux_score[i, j] = cell.flux_score
    return ZogyResult(psf_difference=psf_difference, flux_difference=flux_difference, flux_score=flux_score, **outputs)
