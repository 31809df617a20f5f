"""Registration: map the reference onto the science pixel grid.

The prior comes from the two WCSs (pixel -> world -> pixel, evaluated on a
coarse grid and interpolated, which is exact for smooth distortions and fast).
It is refined by matching stars detected in both images and fitting an affine
correction with iterative outlier rejection; the RMS of the matched residuals
measures the registration quality.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from scipy import ndimage
from scipy.spatial import cKDTree

from skysift.errors import InputDataError
from skysift.log import get_logger

__all__ = [
    "AFFINE_TOLERANCE",
    "AffineTransform",
    "Registration",
    "affine_map",
    "fit_affine",
    "match_positions",
    "register",
    "reproject_to_grid",
    "science_to_reference_map",
    "vote_offset",
]

_log = get_logger(__name__)


@dataclass(frozen=True)
class AffineTransform:
    """``(x', y') = matrix @ (x, y) + offset`` in 0-based pixels."""

    matrix: np.ndarray
    offset: np.ndarray

    @classmethod
    def identity(cls) -> AffineTransform:
        """The transform that changes nothing."""
        return cls(np.eye(2), np.zeros(2))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply the transform to coordinate arrays."""
        xp = self.matrix[0, 0] * x + self.matrix[0, 1] * y + self.offset[0]
        yp = self.matrix[1, 0] * x + self.matrix[1, 1] * y + self.offset[1]
        return xp, yp

    @property
    def rotation_deg(self) -> float:
        """Rotation angle (degrees) of the similarity closest to ``matrix``."""
        return float(np.degrees(np.arctan2(self.matrix[1, 0] - self.matrix[0, 1], self.matrix[0, 0] + self.matrix[1, 1])))

    @property
    def scale(self) -> float:
        """Mean linear scale (square root of the determinant)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))


@dataclass
class Registration:
    """Result of :func:`register`.

    Attributes
    ----------
    aligned : numpy.ndarray
        Reference resampled onto the science grid (0 outside the footprint).
    footprint_mask : numpy.ndarray of bool
        True where the science pixel maps outside the reference (or onto
        reference pixels that were masked).
    map_x, map_y : numpy.ndarray
        Reference pixel coordinates of every science pixel.
    correction : AffineTransform
        Star-fitted correction applied in the science frame before the WCS map.
    rms_residual : float
        RMS distance (pixels) between matched science stars and the mapped
        reference stars after the fit (NaN when no refinement was done).
    n_matched : int
        Stars used in the final fit.
    pixel_area_ratio : float
        Reference pixel area over science pixel area: the resampled image is
        multiplied by its inverse so that fluxes are conserved.
    affine : AffineTransform or None
        The science-to-reference pixel map when it is affine to within
        ``affine_tolerance`` (then the fast paths were used), else None.
    """

    aligned: np.ndarray
    footprint_mask: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    correction: AffineTransform
    rms_residual: float
    n_matched: int
    pixel_area_ratio: float
    affine: AffineTransform | None = None

    def transfer_mask(self, mask: np.ndarray) -> np.ndarray:
        """Carry a reference-frame mask onto the science grid.

        A science pixel is flagged if its reference position lies within one
        pixel (per axis) of a masked reference pixel, i.e. if a bilinear
        interpolation would touch it.

        Parameters
        ----------
        mask : numpy.ndarray of bool
            Mask in the reference frame.

        Returns
        -------
        numpy.ndarray of bool
            Mask on the science grid.
        """
        mask = np.asarray(mask, dtype=bool)
        if self.affine is None:
            touched, _ = reproject_to_grid(mask.astype(np.float32), self.map_x, self.map_y, order=1)
            return touched > 0.01
        return _transfer_sparse_mask(mask, self.affine, self.map_x.shape)


def science_to_reference_map(
    science_wcs: WCS,
    reference_wcs: WCS,
    shape: tuple[int, int],
    *,
    correction: AffineTransform | None = None,
    step: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference pixel coordinates of every science pixel, through the sky.

    Parameters
    ----------
    science_wcs, reference_wcs : astropy.wcs.WCS
        Celestial WCSs.
    shape : (int, int)
        Science image shape.
    correction : AffineTransform, optional
        Applied to science pixel coordinates first (the star-fitted refinement).
    step : int
        Spacing of the coarse grid on which the WCSs are evaluated; the map is
        interpolated (bilinear) in between. Distortions vary on scales of
        hundreds of pixels, so 32 is far finer than needed.

    Returns
    -------
    map_x, map_y : numpy.ndarray
        Arrays of ``shape``.
    """
    ny, nx = shape
    correction = correction or AffineTransform.identity()
    n_y = max(2, int(np.ceil((ny - 1) / step)) + 1)
    n_x = max(2, int(np.ceil((nx - 1) / step)) + 1)
    ys = np.linspace(0.0, ny - 1, n_y)
    xs = np.linspace(0.0, nx - 1, n_x)
    gx, gy = np.meshgrid(xs, ys)
    cx, cy = correction(gx, gy)
    world = science_wcs.pixel_to_world_values(cx, cy)
    rx, ry = reference_wcs.world_to_pixel_values(*world)
    # The coarse grid is uniform, so full-resolution pixels sit at fractional
    # grid indices. Bilinear interpolation reproduces an affine map exactly
    # everywhere, edges included (a cubic spline's boundary conditions do
    # not), and field distortions are far too smooth to need more.
    yy = np.arange(ny) * ((n_y - 1) / max(ny - 1, 1))
    xx = np.arange(nx) * ((n_x - 1) / max(nx - 1, 1))
    index = np.array(np.meshgrid(yy, xx, indexing="ij"))
    map_x = ndimage.map_coordinates(np.asarray(rx, dtype=np.float64), index, order=1, mode="nearest")
    map_y = ndimage.map_coordinates(np.asarray(ry, dtype=np.float64), index, order=1, mode="nearest")
    return map_x, map_y


#: Largest deviation (pixels) of the true map from its affine fit for the affine fast path.
AFFINE_TOLERANCE = 0.01


def affine_map(
    science_wcs: WCS,
    reference_wcs: WCS,
    shape: tuple[int, int],
    *,
    correction: AffineTransform | None = None,
    step: int = 64,
    tolerance: float = AFFINE_TOLERANCE,
) -> tuple[AffineTransform | None, float]:
    """Fit one affine transform to the science-to-reference pixel map.

    Parameters
    ----------
    science_wcs, reference_wcs : astropy.wcs.WCS
        Celestial WCSs.
    shape : (int, int)
        Science image shape.
    correction : AffineTransform, optional
        Star-fitted correction applied to science pixels first.
    step : int
        Spacing (pixels) of the grid on which the map is evaluated.
    tolerance : float
        Largest allowed deviation (pixels) of the map from the fit.

    Returns
    -------
    transform : AffineTransform or None
        The fit, or None where the map deviates by more than ``tolerance``
        (strong distortion or a large field).
    deviation : float
        Largest deviation (pixels) on the grid, edges and corners included.

    Notes
    -----
    Over a CCD-sized field a TAN projection pair with a small pointing offset
    is affine to far better than a hundredth of a pixel, and an affine map
    lets the reference be resampled by :func:`scipy.ndimage.affine_transform`
    without building and reading two full-size coordinate arrays.
    """
    ny, nx = shape
    correction = correction or AffineTransform.identity()
    ys = np.unique(np.append(np.arange(0, ny, step), ny - 1)).astype(np.float64)
    xs = np.unique(np.append(np.arange(0, nx, step), nx - 1)).astype(np.float64)
    gx, gy = np.meshgrid(xs, ys)
    cx, cy = correction(gx, gy)
    rx, ry = reference_wcs.world_to_pixel_values(*science_wcs.pixel_to_world_values(cx, cy))
    rx, ry = np.asarray(rx, dtype=np.float64).ravel(), np.asarray(ry, dtype=np.float64).ravel()
    if not (np.all(np.isfinite(rx)) and np.all(np.isfinite(ry))):
        return None, float("inf")
    design = np.column_stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    coefficients, *_ = np.linalg.lstsq(design, np.column_stack([rx, ry]), rcond=None)
    deviation = float(np.max(np.hypot(*(design @ coefficients - np.column_stack([rx, ry])).T)))
    if deviation > tolerance:
        return None, deviation
    return AffineTransform(matrix=coefficients[:2].T.copy(), offset=coefficients[2].copy()), deviation


def affine_resample(
    image: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    output_shape: tuple[int, int],
    *,
    order: int = 3,
    threads: int | None = None,
) -> np.ndarray:
    """:func:`scipy.ndimage.affine_transform` (constant mode, zero outside), in row blocks on several threads.

    Parameters
    ----------
    image : numpy.ndarray
        2-d image to resample.
    matrix, offset : numpy.ndarray
        Map from output ``(row, column)`` to input ``(row, column)``:
        ``input = matrix @ output + offset``.
    output_shape : (int, int)
        Shape of the result.
    order : int
        Spline order (0-5).
    threads : int, optional
        Row blocks resampled concurrently; by default the CPUs this process
        may use (at most 8).

    Returns
    -------
    numpy.ndarray
        float32 image of ``output_shape``, equal to the single call to
        float32 rounding.

    Notes
    -----
    SciPy's spline prefilter and resampling release the GIL but run on one
    core. The prefilter is separable and boundary-exact in ``constant`` mode
    (SciPy pads nothing there), so it runs per axis on column then row
    blocks; the output rows are then split into blocks, each resampled from
    the prefiltered image with its offset moved to its first row. Results
    match the one-call path to rounding (~1e-12 in float64).
    """
    from concurrent.futures import ThreadPoolExecutor

    image = np.asarray(image)
    matrix = np.asarray(matrix, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    if threads is None:
        threads = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    rows = output_shape[0]
    threads = max(1, min(int(threads), rows // 64 or 1))
    output = np.empty(output_shape, dtype=np.float32)

    def blocks(n: int) -> list[slice]:
        edges = np.linspace(0, n, threads + 1).astype(int)
        return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        if order > 1:
            coefficients = np.empty(image.shape, dtype=np.float64)
            coefficients[...] = image
            for axis in (0, 1):
                # Filtering along `axis` is independent across the other axis.
                parts = [(slice(None), part) if axis == 0 else (part, slice(None)) for part in blocks(image.shape[1 - axis])]
                list(pool.map(
                    lambda index: ndimage.spline_filter1d(
                        coefficients[index], order, axis=axis, output=coefficients[index], mode="constant"
                    ),
                    parts,
                ))
        else:
            coefficients = image

        def resample(part: slice) -> None:
            ndimage.affine_transform(
                coefficients, matrix, offset=offset + matrix @ np.array([part.start, 0.0]),
                output_shape=(part.stop - part.start, output_shape[1]), output=output[part],
                order=order, mode="constant", cval=0.0, prefilter=False,
            )

        list(pool.map(resample, blocks(rows)))
    return output


def _affine_coordinates(transform: AffineTransform, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    x = np.arange(nx, dtype=np.float64)[None, :]
    y = np.arange(ny, dtype=np.float64)[:, None]
    # Each row is computed in float64 and stored in float32 (1e-4 px at 4096).
    map_x = np.empty(shape, dtype=np.float32)
    map_y = np.empty(shape, dtype=np.float32)
    map_x[...] = transform.matrix[0, 0] * x + (transform.matrix[0, 1] * y + transform.offset[0])
    map_y[...] = transform.matrix[1, 0] * x + (transform.matrix[1, 1] * y + transform.offset[1])
    return map_x, map_y


def _transfer_sparse_mask(mask: np.ndarray, transform: AffineTransform, shape: tuple[int, int]) -> np.ndarray:
    """:meth:`Registration.transfer_mask` for an affine map, looking only at the masked pixels."""
    out = np.zeros(shape, dtype=bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return out
    # Science position of each masked reference pixel (inverse affine).
    inverse = np.linalg.inv(transform.matrix)
    dx, dy = cols - transform.offset[0], rows - transform.offset[1]
    sx = inverse[0, 0] * dx + inverse[0, 1] * dy
    sy = inverse[1, 0] * dx + inverse[1, 1] * dy
    # The map is a near-identity, so the science pixels within one pixel of it
    # are the four around the inverse image; one more on each side covers
    # the rotation and scale over a single pixel.
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    ny, nx = shape
    for oy in (-1, 0, 1, 2):
        for ox in (-1, 0, 1, 2):
            xi, yi = x0 + ox, y0 + oy
            inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
            xi, yi = xi[inside], yi[inside]
            # Keep only pixels whose reference position is truly within 1 px per axis.
            mx, my = transform(xi.astype(np.float64), yi.astype(np.float64))
            near = (np.abs(mx - cols[inside]) < 1.0) & (np.abs(my - rows[inside]) < 1.0)
            out[yi[near], xi[near]] = True
    return out


def reproject_to_grid(
    image: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    order: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image`` at the pixel coordinates ``(map_x, map_y)``.

    Parameters
    ----------
    image : numpy.ndarray
        Image to resample (masked pixels should already be filled).
    map_x, map_y : numpy.ndarray
        Where to sample, in ``image`` pixel coordinates.
    mask : numpy.ndarray of bool, optional
        Bad pixels of ``image``; an output pixel is flagged if its
        interpolation touched one.
    order : int
        Spline order of :func:`scipy.ndimage.map_coordinates`.

    Returns
    -------
    resampled : numpy.ndarray
        0 where the output falls outside ``image``.
    outside : numpy.ndarray of bool
        True outside the footprint of ``image`` or on its masked pixels.
    """
    ny, nx = image.shape
    coordinates = np.array([map_y, map_x])
    resampled = ndimage.map_coordinates(image, coordinates, order=order, mode="constant", cval=0.0, prefilter=True)
    outside = (map_x < 0) | (map_x > nx - 1) | (map_y < 0) | (map_y > ny - 1)
    if mask is not None and np.any(mask):
        touched = ndimage.map_coordinates(np.asarray(mask, dtype=np.float64), coordinates, order=1, mode="constant", cval=1.0)
        outside |= touched > 0.01
    resampled[outside] = 0.0
    return resampled, outside


def vote_offset(
    x_a: np.ndarray, y_a: np.ndarray, x_b: np.ndarray, y_b: np.ndarray, *, max_offset: float = 50.0, bin_size: float = 1.0
) -> tuple[float, float]:
    """Most common offset ``b - a`` over all pairs of positions (a 2-D histogram vote).

    Robust to a WCS prior that is off by more than the matching radius:
    true pairs all agree on the offset, chance pairs spread over the histogram.

    Returns
    -------
    dx, dy : float
        Offset to add to ``a`` to land on ``b``.
    """
    dx = (x_b[None, :] - x_a[:, None]).ravel()
    dy = (y_b[None, :] - y_a[:, None]).ravel()
    near = (np.abs(dx) <= max_offset) & (np.abs(dy) <= max_offset)
    if not near.any():
        return 0.0, 0.0
    edges = np.arange(-max_offset, max_offset + bin_size, bin_size)
    histogram, _, _ = np.histogram2d(dx[near], dy[near], bins=[edges, edges])
    histogram = ndimage.uniform_filter(histogram, 3, mode="constant")  # a true peak may straddle bins
    i, j = np.unravel_index(np.argmax(histogram), histogram.shape)
    centre_x, centre_y = edges[i] + bin_size / 2, edges[j] + bin_size / 2
    close = near & (np.abs(dx - centre_x) <= 2 * bin_size) & (np.abs(dy - centre_y) <= 2 * bin_size)
    return float(np.median(dx[close])), float(np.median(dy[close]))


def match_positions(
    x_a: np.ndarray, y_a: np.ndarray, x_b: np.ndarray, y_b: np.ndarray, *, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest-neighbour matches between two position lists within ``radius``.

    Returns
    -------
    index_a, index_b : numpy.ndarray of int
        Matched indices.
    """
    if len(x_a) == 0 or len(x_b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    tree_b = cKDTree(np.column_stack([x_b, y_b]))
    distance_ab, nearest_b = tree_b.query(np.column_stack([x_a, y_a]), distance_upper_bound=radius)
    tree_a = cKDTree(np.column_stack([x_a, y_a]))
    _, nearest_a = tree_a.query(np.column_stack([x_b, y_b]), distance_upper_bound=radius)
    index_a = np.nonzero(np.isfinite(distance_ab))[0]
    index_b = nearest_b[index_a]
    mutual = nearest_a[index_b] == index_a
    return index_a[mutual], index_b[mutual]


def fit_affine(
    x_from: np.ndarray,
    y_from: np.ndarray,
    x_to: np.ndarray,
    y_to: np.ndarray,
    *,
    clip_sigma: float = 3.0,
    max_iterations: int = 10,
) -> tuple[AffineTransform, np.ndarray, float]:
    """Least-squares affine transform with iterative sigma clipping of the residuals.

    Parameters
    ----------
    x_from, y_from, x_to, y_to : numpy.ndarray
        Matched positions.
    clip_sigma : float
        Pairs whose residual exceeds ``clip_sigma`` times the robust RMS are rejected.
    max_iterations : int
        Maximum number of fit-and-clip rounds.

    Returns
    -------
    transform : AffineTransform
        Maps ``from`` onto ``to``.
    used : numpy.ndarray of bool
        Pairs kept in the final fit.
    rms : float
        RMS residual distance (pixels) of the kept pairs.

    Raises
    ------
    ValueError
        With fewer than 3 pairs.
    """
    n = len(x_from)
    if n < 3:
        raise ValueError(f"an affine fit needs at least 3 matched stars, got {n}")
    used = np.ones(n, dtype=bool)
    design = np.column_stack([x_from, y_from, np.ones(n)])
    targets = np.column_stack([x_to, y_to])
    for _ in range(max_iterations):
        coefficients, *_ = np.linalg.lstsq(design[used], targets[used], rcond=None)
        residual = np.hypot(*(design @ coefficients - targets).T)
        # Clip on the residual distance relative to its RMS: a 2-D Gaussian
        # error makes the distance Rayleigh-distributed, whose tail beyond
        # 3 RMS holds about 1e-4 of the good pairs.
        scale = np.sqrt(np.mean(residual[used] ** 2))
        keep = residual <= max(clip_sigma * scale, 1e-6)
        if keep.sum() < 3 or np.array_equal(keep, used):
            break
        used = keep
    coefficients, *_ = np.linalg.lstsq(design[used], targets[used], rcond=None)
    residual = np.hypot(*(design @ coefficients - targets).T)
    transform = AffineTransform(matrix=coefficients[:2].T.copy(), offset=coefficients[2].copy())
    return transform, used, float(np.sqrt(np.mean(residual[used] ** 2)))


def _footprint_overlap(science_wcs: WCS, reference_wcs: WCS, science_shape, reference_shape) -> float:
    """Fraction of the science image that maps inside the reference (on a 65 x 65 grid of points)."""
    ny, nx = science_shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 65), np.linspace(0, ny - 1, 65))
    map_x, map_y = reference_wcs.world_to_pixel_values(*science_wcs.pixel_to_world_values(gx, gy))
    ry, rx = reference_shape
    with np.errstate(invalid="ignore"):
        inside = (map_x >= 0) & (map_x <= rx - 1) & (map_y >= 0) & (map_y <= ry - 1)
    return float(inside.mean())


def register(
    science: np.ndarray,
    reference: np.ndarray,
    science_wcs: WCS,
    reference_wcs: WCS,
    *,
    science_stars=None,
    reference_stars=None,
    reference_mask: np.ndarray | None = None,
    refine: bool = True,
    match_radius: float = 3.0,
    min_matches: int = 6,
    min_fit_snr: float = 50.0,
    order: int = 3,
    science_name: str = "science",
    reference_name: str = "reference",
    use_affine: bool = True,
) -> Registration:
    """Align the reference to the science grid: WCS prior, star-matched affine refinement, resampling.

    Parameters
    ----------
    science, reference : numpy.ndarray
        Background-subtracted images (masked pixels filled).
    science_wcs, reference_wcs : astropy.wcs.WCS
        Their celestial WCSs.
    science_stars, reference_stars : astropy.table.Table, optional
        Stars (``x``, ``y``, brightest first) in each image's own frame, from
        :func:`~skysift.diffim.stars.find_stars`; needed when ``refine``.
    reference_mask : numpy.ndarray of bool, optional
        Bad reference pixels, propagated into ``footprint_mask``.
    refine : bool
        Fit the star-matched correction; otherwise trust the WCSs.
    match_radius : float
        Matching radius (pixels) after the WCS prior and the offset vote.
    min_matches : int
        Below this many matches the WCS prior is kept (and a warning logged).
    min_fit_snr : float
        Only pairs detected above this S/N in both images enter the fit, if
        at least ``min_matches`` of them exist.
    order : int
        Spline order of the resampling.
    science_name, reference_name : str
        File names for error messages.
    use_affine : bool
        Resample with :func:`scipy.ndimage.affine_transform` when the whole
        map is affine to within :data:`AFFINE_TOLERANCE` pixels (checked on a
        grid, see :func:`affine_map`); otherwise, or when False, evaluate the
        map per pixel and use :func:`scipy.ndimage.map_coordinates`. Both give
        the same image to within the tolerance.

    Returns
    -------
    Registration

    Raises
    ------
    InputDataError
        If the footprints do not overlap (message names both files).

    Notes
    -----
    The correction is fitted in the science frame: reference stars are mapped
    through the WCSs into science pixels, and the affine ``A`` that takes the
    observed science positions onto those predictions is found; science pixel
    ``p`` then samples the reference at ``WCS_ref^-1(WCS_sci(A p))``.
    """
    overlap = _footprint_overlap(science_wcs, reference_wcs, science.shape, reference.shape)
    if overlap <= 0.0:
        raise InputDataError(
            f"{science_name} and {reference_name}: footprints do not overlap (no science pixel maps inside the reference)"
        )
    if overlap < 0.5:
        _log.warning("%s and %s overlap over only %.0f%% of the science image", science_name, reference_name, 100 * overlap)
    correction = AffineTransform.identity()
    rms = float("nan")
    n_matched = 0
    if refine and science_stars is not None and reference_stars is not None and len(science_stars) and len(reference_stars):
        # Reference star positions predicted in the science frame by the WCSs.
        world = reference_wcs.pixel_to_world_values(np.asarray(reference_stars["x"]), np.asarray(reference_stars["y"]))
        x_pred, y_pred = science_wcs.world_to_pixel_values(*world)
        x_sci, y_sci = np.asarray(science_stars["x"]), np.asarray(science_stars["y"])
        bright = slice(0, 200)
        dx, dy = vote_offset(x_sci[bright], y_sci[bright], x_pred[bright], y_pred[bright])
        index_sci, index_ref = match_positions(x_sci + dx, y_sci + dy, x_pred, y_pred, radius=match_radius)
        # Centroid noise of faint stars would dominate both the fit and the
        # reported residual; use the well-measured ones when there are enough.
        snr = np.minimum(np.asarray(science_stars["snr"])[index_sci], np.asarray(reference_stars["snr"])[index_ref])
        if np.count_nonzero(snr >= min_fit_snr) >= min_matches:
            index_sci, index_ref = index_sci[snr >= min_fit_snr], index_ref[snr >= min_fit_snr]
        if len(index_sci) >= min_matches:
            correction, used, rms = fit_affine(x_sci[index_sci], y_sci[index_sci], x_pred[index_ref], y_pred[index_ref])
            n_matched = int(used.sum())
            _log.info(
                "registration: %d stars matched, rms %.3f px, rotation %.4f deg, scale %.5f",
                n_matched, rms, correction.rotation_deg, correction.scale,
            )
        else:
            _log.warning(
                "%s and %s: only %d stars matched; keeping the WCS alignment", science_name, reference_name, len(index_sci)
            )
    affine, deviation = affine_map(science_wcs, reference_wcs, science.shape, correction=correction) if use_affine else (None, float("nan"))
    if affine is not None:
        map_x, map_y = _affine_coordinates(affine, science.shape)
        area_ratio = float(abs(np.linalg.det(affine.matrix)))  # reference pixels per science pixel
        # affine_transform works in (row, column) order.
        matrix = np.array([[affine.matrix[1, 1], affine.matrix[1, 0]], [affine.matrix[0, 1], affine.matrix[0, 0]]])
        offset = np.array([affine.offset[1], affine.offset[0]])
        aligned = affine_resample(reference, matrix, offset, science.shape, order=order)
        ny, nx = reference.shape
        outside = (map_x < 0) | (map_x > nx - 1) | (map_y < 0) | (map_y > ny - 1)
        if reference_mask is not None and np.any(reference_mask):
            outside |= _transfer_sparse_mask(np.asarray(reference_mask, dtype=bool), affine, science.shape)
        aligned[outside] = 0.0
        _log.info("registration: affine map (deviation %.2g px), affine_transform resampling", deviation)
    else:
        map_x, map_y = science_to_reference_map(science_wcs, reference_wcs, science.shape, correction=correction)
        # Local Jacobian of the map at the centre: reference pixels per science pixel.
        cy, cx = science.shape[0] // 2, science.shape[1] // 2
        jacobian = np.array(
            [[map_x[cy, cx + 1] - map_x[cy, cx], map_x[cy + 1, cx] - map_x[cy, cx]],
             [map_y[cy, cx + 1] - map_y[cy, cx], map_y[cy + 1, cx] - map_y[cy, cx]]]
        )
        area_ratio = float(abs(np.linalg.det(jacobian)))  # reference pixels per science pixel
        aligned, outside = reproject_to_grid(reference, map_x, map_y, mask=reference_mask, order=order)
    # A science pixel covers area_ratio reference pixels, so it collects that much more flux.
    aligned *= area_ratio
    return Registration(
        aligned=aligned,
        footprint_mask=outside,
        map_x=map_x,
        map_y=map_y,
        correction=correction,
        rms_residual=rms,
        n_matched=n_matched,
        pixel_area_ratio=1.0 / area_ratio if area_ratio > 0 else float("nan"),
        affine=affine,
    )
