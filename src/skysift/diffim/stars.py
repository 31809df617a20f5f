"""Star detection and centring shared by PSF estimation, registration and flux scaling."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from skysift.diffim.masks import mask_near

__all__ = ["find_stars", "local_maxima", "windowed_centroids"]

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def windowed_centroids(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, fwhm: float, *, iterations: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Refine positions with Gaussian-windowed first moments.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    x, y : numpy.ndarray
        Starting positions (0-based pixels, x = column).
    fwhm : float
        Approximate PSF FWHM (pixels); sets the window width.
    iterations : int
        Number of fixed-point iterations.

    Returns
    -------
    x, y : numpy.ndarray
        Refined positions.

    Notes
    -----
    This is the ``XWIN_IMAGE`` estimator of SExtractor (Bertin & Arnouts 1996):
    a first moment weighted by a Gaussian of the PSF's width, iterated with the
    doubled step ``x <- x + 2 <w I dx> / <w I>``; it is unbiased for symmetric
    profiles and far less noisy than an unweighted moment.
    """
    sigma_window = max(fwhm / _FWHM_PER_SIGMA, 0.5)
    radius = int(np.ceil(3 * sigma_window))
    offsets = np.arange(-radius, radius + 1)
    ny, nx = data.shape
    x = np.asarray(x, dtype=np.float64).copy()
    y = np.asarray(y, dtype=np.float64).copy()
    for _ in range(iterations):
        x0 = np.clip(np.round(x).astype(int), radius, nx - 1 - radius)
        y0 = np.clip(np.round(y).astype(int), radius, ny - 1 - radius)
        rows = y0[:, None, None] + offsets[None, :, None]
        cols = x0[:, None, None] + offsets[None, None, :]
        stamps = data[rows, cols]
        dx = cols - x[:, None, None]
        dy = rows - y[:, None, None]
        weight = np.exp(-(dx**2 + dy**2) / (2 * sigma_window**2)) * stamps
        total = weight.sum(axis=(1, 2))
        ok = total > 0
        step_x = np.where(ok, 2 * (weight * dx).sum(axis=(1, 2)) / np.where(ok, total, 1), 0.0)
        step_y = np.where(ok, 2 * (weight * dy).sum(axis=(1, 2)) / np.where(ok, total, 1), 0.0)
        # A step beyond the window means the moment is dominated by noise or a
        # neighbour; freezing such stars keeps them from wandering off.
        step_x = np.clip(step_x, -1.0, 1.0)
        step_y = np.clip(step_y, -1.0, 1.0)
        x += step_x
        y += step_y
    return x, y


def _gaussian_smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Convolve with a unit-sum Gaussian of ``sigma`` pixels, by FFT on all cores.

    The transform is the periodic one; the wrap-around reaches only ~4 sigma
    into the opposite border, where :func:`find_stars` keeps no peak anyway,
    and it is several times faster than :func:`scipy.ndimage.gaussian_filter`
    on a large image (that one runs on one core).
    """
    import scipy.fft

    shape = tuple(scipy.fft.next_fast_len(n, real=True) for n in image.shape)
    spectrum = scipy.fft.rfft2(image, s=shape, workers=-1)
    fy = scipy.fft.fftfreq(shape[0])[:, None]
    fx = scipy.fft.rfftfreq(shape[1])[None, :]
    factor = 2.0 * np.pi**2 * sigma**2
    # exp(-2 pi^2 s^2 f^2) is the transfer function of the sampled Gaussian (separable).
    spectrum *= np.exp(-factor * fy**2).astype(np.float32) * np.exp(-factor * fx**2).astype(np.float32)
    smoothed = scipy.fft.irfft2(spectrum, s=shape, workers=-1, overwrite_x=True)
    return smoothed[: image.shape[0], : image.shape[1]]


def local_maxima(image: np.ndarray, threshold: float, *, size: int, border: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels above ``threshold`` that are the maximum of their ``size`` x ``size`` window.

    Parameters
    ----------
    image : numpy.ndarray
        Image (e.g. matched-filtered).
    threshold : float
        Minimum value of a peak.
    size : int
        Odd window side.
    border : int
        Peaks closer than this to an edge are dropped.

    Returns
    -------
    rows, cols : numpy.ndarray of int

    Notes
    -----
    Equivalent to ``image == maximum_filter(image, size)`` above the
    threshold, but the window is only examined around the few pixels above
    the threshold, which is far cheaper on a large, mostly empty image.
    Ties (plateaus) keep every tied pixel, as the filter comparison does.
    """
    half = size // 2
    border = max(border, half)
    ny, nx = image.shape
    interior = image[border : ny - border, border : nx - border]
    rows, cols = np.nonzero(interior > threshold)
    rows += border
    cols += border
    values = image[rows, cols]
    # Grow the window ring by ring, dropping losers early: most candidates are
    # on the flanks of a peak and fail against an immediate neighbour.
    for radius in range(1, half + 1):
        if rows.size == 0:
            break
        offsets = np.arange(-radius, radius + 1)
        ring_y = np.concatenate([np.full(offsets.size, -radius), np.full(offsets.size, radius), offsets[1:-1], offsets[1:-1]])
        ring_x = np.concatenate([offsets, offsets, np.full(offsets.size - 2, -radius), np.full(offsets.size - 2, radius)])
        keep = np.ones(rows.size, dtype=bool)
        for dy, dx in zip(ring_y, ring_x):
            keep &= values >= image[rows + dy, cols + dx]
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return rows, cols


def find_stars(
    data: np.ndarray,
    noise_sigma: float,
    *,
    mask: np.ndarray | None = None,
    fwhm: float = 3.0,
    threshold: float = 10.0,
    border: int = 10,
    max_stars: int | None = 2000,
) -> Table:
    """Find point sources as local maxima of the matched-filtered image.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image (masked pixels may hold anything).
    noise_sigma : float
        Background noise per pixel.
    mask : numpy.ndarray of bool, optional
        Pixels to ignore; a star whose core touches the mask is rejected.
    fwhm : float
        Approximate PSF FWHM (pixels), the width of the Gaussian matched filter.
    threshold : float
        Detection threshold in standard deviations of the filtered image.
    border : int
        Stars closer than this to the image edge are dropped.
    max_stars : int, optional
        Keep at most this many, brightest first.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (windowed centroids, 0-based), ``peak`` (filtered
        value), ``snr`` (filtered S/N), ``flux`` (aperture flux within 1.5 FWHM)
        and ``isolation`` (distance to the nearest other detection, pixels),
        sorted by decreasing ``snr``.

    Notes
    -----
    Filtering with the PSF before thresholding is the optimal detection
    statistic for isolated point sources in white noise (e.g. Zackay & Ofek
    2017, ApJ 836, 187); a Gaussian of the right width loses little.
    """
    data = np.asarray(data)
    bad = np.zeros(data.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    bad = bad | ~np.isfinite(data)
    # float32 is ample for a detection statistic and halves the filter's memory traffic.
    clean = np.where(bad, np.float32(0.0), data.astype(np.float32, copy=False))
    sigma_filter = max(fwhm / _FWHM_PER_SIGMA, 0.5)
    filtered = _gaussian_smooth(clean, sigma_filter)
    # Noise of the filtered image: sigma * sqrt(sum of squared kernel weights),
    # which for a unit-sum Gaussian is sigma / (2 sqrt(pi) s).
    filtered_noise = noise_sigma / (2.0 * np.sqrt(np.pi) * sigma_filter)
    size = max(3, 2 * int(np.ceil(fwhm)) + 1)
    edge = max(border, size)
    y_peak, x_peak = local_maxima(filtered, threshold * filtered_noise, size=size, border=edge)
    near_bad = mask_near(bad, x_peak, y_peak, int(np.ceil(fwhm)))
    y_peak, x_peak = y_peak[~near_bad], x_peak[~near_bad]
    snr = filtered[y_peak, x_peak] / filtered_noise
    order = np.argsort(-snr)
    y_peak, x_peak, snr = y_peak[order], x_peak[order], snr[order]
    # Isolation is measured against every detection, before truncation.
    isolation = np.full(len(x_peak), np.inf)
    if len(x_peak) > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([x_peak, y_peak]))
        distance, _ = tree.query(np.column_stack([x_peak, y_peak]), k=2)
        isolation = distance[:, 1]
    if max_stars is not None:
        keep = slice(0, max_stars)
        y_peak, x_peak, snr, isolation = y_peak[keep], x_peak[keep], snr[keep], isolation[keep]
    x, y = windowed_centroids(clean, x_peak.astype(float), y_peak.astype(float), fwhm)
    radius = 1.5 * fwhm
    r_int = int(np.ceil(radius))
    offsets = np.arange(-r_int, r_int + 1)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2
    rows = np.clip(y_peak[:, None, None] + offsets[None, :, None], 0, data.shape[0] - 1)
    cols = np.clip(x_peak[:, None, None] + offsets[None, None, :], 0, data.shape[1] - 1)
    flux = (clean[rows, cols] * disc).sum(axis=(1, 2)) if len(x_peak) else np.zeros(0)
    return Table(
        {
            "x": x,
            "y": y,
            "peak": filtered[y_peak, x_peak],
            "snr": snr,
            "flux": flux,
            "isolation": isolation,
        }
    )
