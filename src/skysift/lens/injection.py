"""Real HST galaxies degraded to a survey, with and without injected lensed arcs.

GalSim's ``RealGalaxyCatalog`` format (Mandelbaum et al. 2012; Rowe et al.
2015) is a FITS table with one row per galaxy (``IDENT``, ``MAG``,
``GAL_FILENAME``/``GAL_HDU``, ``PSF_FILENAME``/``PSF_HDU``, ``PIXEL_SCALE``)
pointing into multi-extension FITS files of HST/ACS postage stamps.
:func:`read_real_galaxies` reads them; :func:`degrade_to_survey` turns one
into a noise-free survey stamp; :func:`inject_arcs` adds SIE-lensed Sersic arcs
centred on the galaxies (the positives of Petrillo et al. 2017, 2019).

Degradation (a pure function of the galaxy and the survey):

1. **PSF matching**, approximated by Gaussians: the HST PSF's second-moment
   width ``sigma_hst`` and the survey PSF's ``sigma_survey``
   (FWHM / 2.355) give a matching kernel of width
   ``sqrt(sigma_survey^2 - sigma_hst^2)``, applied at the HST pixel scale.
   The Moffat wings of ground-based PSFs are thus not reproduced; the
   survey kernel proper is applied to the arcs.
2. **Flux-conserving resampling** to the survey pixel scale: the image is
   treated as piecewise constant over its pixels and integrated over the new
   pixel edges (bilinear interpolation of the cumulative sums), so the total
   flux is preserved exactly where the stamp covers the galaxy.
3. **Photometric scaling** so the galaxy has the catalogue magnitude in the
   survey zero point (e-/s).
4. Noise is added by the caller after the arc, with the simulator's
   survey noise model (HST noise, ~10x below, is neglected).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from skysift.errors import InputDataError
from skysift.io import read_fits_image
from skysift.lens.simulator import LensSimulator, magnitude_to_flux
from skysift.log import get_logger

if TYPE_CHECKING:  # astropy is imported where a catalogue is read (the simulated-galaxy stage needs none)
    from astropy.table import Table

__all__ = [
    "COSMOS_SOURCE_SIZE_FACTOR",
    "RealGalaxy",
    "degrade_to_survey",
    "inject_arcs",
    "read_cosmos_sersic_fits",
    "read_real_galaxies",
    "resample_flux_conserving",
]

_LOG = get_logger(__name__)
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_REQUIRED_COLUMNS = ("IDENT", "MAG", "GAL_FILENAME", "GAL_HDU", "PSF_FILENAME", "PSF_HDU", "PIXEL_SCALE")


@dataclass(frozen=True)
class RealGalaxy:
    """One HST galaxy stamp with its PSF.

    Attributes
    ----------
    ident : int
        Catalogue identifier.
    magnitude : float
        Catalogue magnitude (AB).
    image : numpy.ndarray
        HST stamp (float64, native units, sky-subtracted).
    psf : numpy.ndarray
        HST PSF image at the same pixel scale.
    pixel_scale : float
        Arcsec per pixel of ``image`` and ``psf``.
    path : pathlib.Path
        Image file, for error messages and provenance.
    hdu : int
        HDU of the image in ``path``.
    """

    ident: int
    magnitude: float
    image: np.ndarray
    psf: np.ndarray
    pixel_scale: float
    path: Path
    hdu: int


def _read_catalogue(path: Path, what: str, kind: str, columns: Sequence[str]) -> Table:
    """The first table of a GalSim catalogue FITS file; errors name the file, ``what`` it is and what is wrong."""
    if not path.is_file():
        raise InputDataError(f"{path}: {what} not found")
    from astropy.io import fits
    from astropy.table import Table

    try:
        with path.open("rb") as stream, fits.open(stream, memmap=False) as hdul:
            table = Table(hdul[1].data)
    except Exception as exc:  # astropy raises OSError/ValueError/IndexError/TypeError on corrupt files
        raise InputDataError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise InputDataError(f"{path}: not a {kind}, missing column(s) {', '.join(missing)}")
    return table


def _read_stamp(path: Path, hdu: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputDataError(f"{path}: {what} file named in the catalogue is missing")
    image = read_fits_image(path, hdu=hdu).data
    return np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)


def read_real_galaxies(source: str | os.PathLike[str]) -> list[RealGalaxy]:
    """Read GalSim real-galaxy stamps from a catalogue file or a directory.

    Parameters
    ----------
    source : str or path-like
        A ``RealGalaxyCatalog`` FITS file, or a directory: every
        ``*catalog*.fits`` in it is read, except the parametric-fit tables
        (``*_fits.fits``); catalogues whose image files are *all* absent (the
        GalSim example catalogue ships without its 4 MB image file) are skipped
        with a warning. Rows pointing at the same stamp are read once.

    Returns
    -------
    list of RealGalaxy

    Raises
    ------
    InputDataError
        A catalogue or stamp file is missing (when the catalogue names it and
        others of its files exist), unreadable or corrupt, or nothing usable
        was found; the message names the file.
    """
    source = Path(source)
    if source.is_dir():
        catalogues = sorted(p for p in source.glob("*catalog*.fits") if not p.name.endswith("_fits.fits"))
        if not catalogues:
            raise InputDataError(f"{source}: no *catalog*.fits real-galaxy catalogue in this directory")
        skip_absent = True
    else:
        catalogues = [source]
        skip_absent = False
    galaxies: list[RealGalaxy] = []
    seen: set[tuple[Path, int]] = set()
    for catalogue in catalogues:
        table = _read_catalogue(catalogue, "real-galaxy catalogue", "GalSim RealGalaxyCatalog", _REQUIRED_COLUMNS)
        directory = catalogue.parent
        files = {directory / str(name).strip() for name in table["GAL_FILENAME"]}
        if skip_absent and not any(f.is_file() for f in files):
            _LOG.warning("%s: none of its image files is present; skipped", catalogue)
            continue
        for row in table:
            path = directory / str(row["GAL_FILENAME"]).strip()
            hdu = int(row["GAL_HDU"])
            if (path, hdu) in seen:
                continue
            seen.add((path, hdu))
            image = _read_stamp(path, hdu, "galaxy image")
            psf = _read_stamp(directory / str(row["PSF_FILENAME"]).strip(), int(row["PSF_HDU"]), "PSF")
            if image.sum() <= 0 or psf.sum() <= 0:
                raise InputDataError(f"{path}: HDU {hdu} (or its PSF) has no positive flux")
            galaxies.append(
                RealGalaxy(int(row["IDENT"]), float(row["MAG"]), image, psf, float(row["PIXEL_SCALE"]), path, hdu)
            )
    if not galaxies:
        raise InputDataError(f"{source}: no usable real galaxies found")
    return galaxies


def _second_moment_sigma(psf: np.ndarray) -> float:
    """Gaussian-equivalent width (pixels) of a PSF from its second moments."""
    weights = np.clip(psf, 0.0, None)
    total = weights.sum()
    yy, xx = np.indices(psf.shape, dtype=np.float64)
    xc, yc = (weights * xx).sum() / total, (weights * yy).sum() / total
    variance = (weights * ((xx - xc) ** 2 + (yy - yc) ** 2)).sum() / total / 2.0
    return float(math.sqrt(max(variance, 1e-6)))


def resample_flux_conserving(image: np.ndarray, in_scale: float, out_scale: float, out_size: int) -> np.ndarray:
    """Resample a centred image onto a centred ``out_size`` grid of pixel ``out_scale``.

    The input is treated as constant over each pixel and integrated over the
    output pixels (exact area weighting via interpolated cumulative sums), so
    flux inside the common footprint is conserved.
    """
    height, width = image.shape
    cumulative = np.zeros((height + 1, width + 1))
    cumulative[1:, 1:] = image.cumsum(0).cumsum(1)
    # Output pixel edges, in input-pixel units, with both grids centred.
    edges = (np.arange(out_size + 1) - out_size / 2.0) * (out_scale / in_scale)
    ey = np.clip(edges + height / 2.0, 0.0, height)
    ex = np.clip(edges + width / 2.0, 0.0, width)

    def along(axis_edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lower = np.clip(np.floor(axis_edges).astype(int), 0, n - 1)
        frac = axis_edges - lower
        return lower, lower + 1, frac

    y0, y1, fy = along(ey, height)
    x0, x1, fx = along(ex, width)
    rows = (1 - fy)[:, None] * cumulative[y0] + fy[:, None] * cumulative[y1]
    grid = (1 - fx)[None, :] * rows[:, x0] + fx[None, :] * rows[:, x1]
    return np.diff(np.diff(grid, axis=0), axis=1)


def degrade_to_survey(galaxy: RealGalaxy, simulator: LensSimulator) -> np.ndarray:
    """Noise-free survey stamp (``H x W``, e-/s) of a real galaxy (see the module notes)."""
    survey = simulator.survey
    sigma_hst = _second_moment_sigma(galaxy.psf)
    sigma_survey = survey.seeing * _FWHM_TO_SIGMA / galaxy.pixel_scale
    sigma_match = math.sqrt(max(sigma_survey**2 - sigma_hst**2, 0.0))
    # Imported here: scipy.ndimage costs ~0.5 s of start-up in every lens-stage process, which
    # needs it only for real galaxies.
    from scipy.ndimage import gaussian_filter

    smoothed = gaussian_filter(galaxy.image, sigma_match, mode="constant") if sigma_match > 0 else galaxy.image
    stamp = resample_flux_conserving(smoothed, galaxy.pixel_scale, survey.pixel_scale, simulator.image_size)
    flux = magnitude_to_flux(galaxy.magnitude, survey.zero_point)
    return stamp * (flux / galaxy.image.sum())


def inject_arcs(
    simulator: LensSimulator,
    galaxy_images: torch.Tensor,
    params: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    *,
    noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add SIE-lensed arcs to noise-free galaxy stamps, then survey noise.

    Parameters
    ----------
    simulator : LensSimulator
        Survey, grid and PSF.
    galaxy_images : torch.Tensor
        ``(N, H, W)`` noise-free galaxy stamps (e-/s), e.g. from :func:`degrade_to_survey`.
    params : mapping
        Lens and source parameters (:data:`~skysift.lens.simulator.LENS_PRIORS`);
        ``lens_*`` light keys are ignored (the galaxy is the lens light).
    rng : numpy.random.Generator
        Noise seed.
    noise : bool
        Add the survey noise.

    Returns
    -------
    images : torch.Tensor
        ``(N, H, W)`` e-/s.
    magnification : torch.Tensor
        ``(N,)`` (see :meth:`LensSimulator.render_components`).
    """
    arc_params = {k: v for k, v in params.items() if not k.startswith("lens_")}
    arc, _, magnification = simulator.render_components(arc_params)
    images = galaxy_images.to(arc) + arc
    return (simulator.add_noise(images, rng) if noise else images), magnification


#: Angular-size factor from the COSMOS galaxies (I < 23.5, median z ~ 0.5) to
#: lensed sources at z ~ 1.5-2: galaxies of a given luminosity are ~(1 + z)^-1
#: smaller in proper size (van der Wel et al. 2014, ApJ 788, 28), and the
#: angular-diameter distance barely grows beyond z ~ 1, so ~0.5.
COSMOS_SOURCE_SIZE_FACTOR = 0.5


def read_cosmos_sersic_fits(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Sersic shapes of real galaxies from a GalSim COSMOS parametric-fit catalogue (``*_fits.fits``).

    Reads the single-Sersic fits of GalSim's ``COSMOSCatalog`` format
    (``sersicfit`` = ``[I_e, r_half (0.03" pixels, major axis), n, q, ...]``,
    ``hlr[:, 0]`` the circularised half-light radius in arcsec,
    ``viable_sersic``) and keeps the viable fits with ``0.3 <= n <= 6``.

    Returns
    -------
    dict
        ``n``, ``q`` and ``r_eff`` (arcsec) arrays, one row per galaxy: joint
        draws of the source shape (:func:`~skysift.lens.dataset.make_lens_training_set`).

    Raises
    ------
    InputDataError
        Missing or unreadable file, missing columns or no viable fit (the
        message names the file).
    """
    path = Path(path)
    table = _read_catalogue(path, "COSMOS parametric-fit catalogue", "GalSim COSMOS parametric-fit catalogue",
                            ("sersicfit", "hlr"))
    fits_ = np.asarray(table["sersicfit"], dtype=np.float64)
    hlr = np.asarray(table["hlr"], dtype=np.float64)
    if fits_.ndim != 2 or fits_.shape[1] < 4 or hlr.ndim != 2:
        raise InputDataError(f"{path}: sersicfit/hlr columns have shapes {fits_.shape}, {hlr.shape}; expected (N, >=4), (N, 3)")
    viable = np.asarray(table["viable_sersic"], dtype=bool) if "viable_sersic" in table.colnames else np.ones(len(table), bool)
    n, q, r_eff = fits_[:, 2], fits_[:, 3], hlr[:, 0]
    keep = viable & (n >= 0.3) & (n <= 6.0) & (q > 0.05) & (q <= 1.0) & (r_eff > 0) & np.isfinite(r_eff)
    if not keep.any():
        raise InputDataError(f"{path}: no viable Sersic fit (0.3 <= n <= 6, 0 < q <= 1)")
    return {"n": n[keep], "q": q[keep], "r_eff": r_eff[keep]}
