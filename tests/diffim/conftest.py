"""Shared simulated pairs for the image-differencing tests (computed once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skysift.diffim import DiffimOptions, difference_images
from skysift.io import FitsImage
from skysift.simulate.starfield import FieldSpec, simulate_pair


def fits_image(data: np.ndarray, wcs, name: str, saturate: float | None = 60000.0) -> FitsImage:
    """Wrap a simulated array as a FitsImage (as read_fits_image would return it)."""
    header = fits.Header()
    if saturate is not None:
        header["SATURATE"] = saturate
    return FitsImage(data=np.asarray(data, dtype=np.float64), header=header, wcs=wcs, path=Path(name), hdu=0)


@pytest.fixture(scope="session")
def pair_512():
    """A 512x512 simulated pair with 30 transients between S/N 5 and 50."""
    return simulate_pair(FieldSpec(image_size=512, n_transients=30), np.random.default_rng(3))


@pytest.fixture(scope="session")
def result_512(pair_512):
    """The pipeline run on ``pair_512``."""
    science = fits_image(pair_512.science, pair_512.science_wcs, "science.fits")
    reference = fits_image(pair_512.reference, pair_512.reference_wcs, "reference.fits")
    return difference_images(science, reference, options=DiffimOptions())


def write_pair(directory: Path, pair, *, science_name: str = "science.fits", reference_name: str = "reference.fits"):
    """Write a simulated pair to FITS files with WCS and SATURATE; return both paths."""
    paths = []
    for name, data, wcs in ((science_name, pair.science, pair.science_wcs), (reference_name, pair.reference, pair.reference_wcs)):
        header = wcs.to_header()
        header["SATURATE"] = pair.spec.saturation
        path = directory / name
        fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=header).writeto(path)
        paths.append(path)
    return paths


@pytest.fixture(name="fits_image")
def fits_image_fixture():
    """:func:`fits_image` as a fixture (test modules are not a package)."""
    return fits_image


@pytest.fixture(name="write_pair")
def write_pair_fixture():
    """:func:`write_pair` as a fixture."""
    return write_pair
