"""End-to-end differencing: transient recovery, products on disk and bad-input errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

import skysift.diffim.pipeline as pipeline
from skysift.context import RunContext
from skysift.diffim import DiffimOptions, difference_images, run_diffim
from skysift.diffim.detect import FLAG_NEAR_MASK, FLAG_NEAR_SATURATED
from skysift.errors import InputDataError
from skysift.provenance import Provenance
from skysift.simulate.starfield import FieldSpec, simulate_pair


def _match(candidates, transients, radius=2.0):
    tree = cKDTree(np.column_stack([candidates["x"], candidates["y"]]))
    distance, index = tree.query(np.column_stack([transients["x_sci"], transients["y_sci"]]))
    return distance <= radius, index


def test_transients_recovered_with_few_false_positives(result_512, pair_512):
    transients = pair_512.transients
    candidates = result_512.candidates
    found, index = _match(candidates, transients)
    bright = transients["snr"] >= 8
    assert found[bright].mean() >= 0.9
    # Fluxes of the bright ones within 15 % (PSF and flux-scale errors included).
    strong = found & (transients["snr"] >= 20)
    ratio = candidates["flux"][index[strong]] / transients["flux"][strong]
    assert np.median(np.abs(ratio - 1)) < 0.1
    # S_corr tracks the injected S/N (a little lower: the reference adds noise).
    near_20 = found & (np.abs(transients["snr"] - 20) < 3)
    assert np.all(np.abs(candidates["scorr"][index[near_20]] / transients["snr"][near_20] - 1) < 0.3)
    false = np.ones(len(candidates), bool)
    false[index[found]] = False
    clean = (candidates["flags"] & (FLAG_NEAR_MASK | FLAG_NEAR_SATURATED)) == 0
    assert np.count_nonzero(false & clean) <= 2
    assert np.count_nonzero(false) <= 20


def test_scorr_normalised_away_from_sources(result_512, pair_512):
    # Blank sky: far from every star and transient.
    positions = np.column_stack(
        [np.concatenate([pair_512.stars["x_sci"], pair_512.transients["x_sci"]]),
         np.concatenate([pair_512.stars["y_sci"], pair_512.transients["y_sci"]])]
    )
    yy, xx = np.mgrid[0:512, 0:512]
    distance, _ = cKDTree(positions).query(np.column_stack([xx.ravel(), yy.ravel()]))
    blank = (distance.reshape(512, 512) > 12) & ~result_512.mask
    assert blank.sum() > 5000
    assert np.std(result_512.score_corr[blank]) == pytest.approx(1.0, abs=0.08)
    assert np.isfinite(result_512.difference).all()


def test_psf_grid_option_runs(pair_512, fits_image):
    science = fits_image(pair_512.science, pair_512.science_wcs, "science.fits")
    reference = fits_image(pair_512.reference, pair_512.reference_wcs, "reference.fits")
    result = difference_images(science, reference, options=DiffimOptions(psf_grid=2))
    assert result.psf_science.psfs.shape[:2] == (2, 2)
    found, _ = _match(result.candidates, pair_512.transients)
    assert found[pair_512.transients["snr"] >= 10].mean() >= 0.9


def test_run_diffim_writes_products_with_provenance(tmp_path, pair_512, write_pair):
    science_path, reference_path = write_pair(tmp_path, pair_512)
    mask_path = tmp_path / "science_mask.fits"
    bad = np.zeros((512, 512), np.uint8)
    bad[100:110, 100:110] = 1
    fits.PrimaryHDU(bad).writeto(mask_path)
    outputs = run_diffim(science_path, reference_path, tmp_path / "out", science_mask_path=mask_path, context=RunContext(config_digest="abc"))
    assert set(outputs) == {"difference", "scorr", "fpsf", "fpsf_err", "aligned_reference", "candidates", "preview"}
    for path in outputs.values():
        assert path.is_file() and path.stat().st_size > 0
    header = fits.getheader(outputs["scorr"])
    provenance = Provenance.from_fits_header(header)
    assert set(provenance.inputs) == {str(science_path), str(reference_path), str(mask_path)}
    assert header["CTYPE1"] == "RA---TAN"
    scorr = fits.getdata(outputs["scorr"])
    assert np.isnan(scorr[105, 105])  # the user bad pixels are masked
    table = Table.read(outputs["candidates"], format="ascii.ecsv")
    assert {"x", "y", "ra", "dec", "scorr", "flux", "flux_err", "snr", "flags"} <= set(table.colnames)
    assert outputs["preview"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_failed_write_leaves_no_partial_outputs(tmp_path, pair_512, monkeypatch, write_pair):
    science_path, reference_path = write_pair(tmp_path, pair_512)

    def failing(*args, **kwargs):
        raise OSError("disk full")

    # The table fails while the other products are written beside it: none may appear.
    monkeypatch.setattr(pipeline, "write_table", failing)
    with pytest.raises(OSError, match="disk full"):
        run_diffim(science_path, reference_path, tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


_KILLED_RUN = """
import os, sys
from skysift.diffim import pipeline

def killed(*args, **kwargs):
    os._exit(9)  # as kill -9: no exception handler, no cleanup

pipeline.write_table = killed
pipeline.run_diffim(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def test_killed_run_leaves_previous_products_or_none(tmp_path, small_pair, write_pair):
    science_path, reference_path = write_pair(tmp_path, small_pair)
    outdir = tmp_path / "out"
    first = run_diffim(science_path, reference_path, outdir)
    before = {path.name: path.read_bytes() for path in outdir.iterdir()}
    environment = {**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).resolve().parents[2])}
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(science_path), str(reference_path), str(outdir)],
                            env=environment, capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    # Killed while the products are being written: the earlier set is intact, nothing new is mixed in.
    assert {path.name: path.read_bytes() for path in outdir.iterdir()} == before
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]  # its staging directory
    run_diffim(science_path, reference_path, outdir)  # the next run cleans it up
    assert sorted(path.name for path in outdir.iterdir()) == sorted(p.name for p in first.values())
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


# Bad input -----------------------------------------------------------------
@pytest.fixture(scope="module")
def small_pair():
    return simulate_pair(FieldSpec(image_size=192, n_stars=120, n_transients=0, n_saturated=1), np.random.default_rng(9))


def test_missing_file(tmp_path, small_pair, write_pair):
    _, reference_path = write_pair(tmp_path, small_pair)
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        run_diffim(tmp_path / "nope.fits", reference_path, tmp_path / "out")


def test_missing_wcs(tmp_path, small_pair, fits_image, write_pair):
    science_path, reference_path = write_pair(tmp_path, small_pair)
    fits.PrimaryHDU(small_pair.science).writeto(tmp_path / "nowcs.fits")
    with pytest.raises(InputDataError, match="nowcs.fits: no celestial WCS"):
        run_diffim(science_path, tmp_path / "nowcs.fits", tmp_path / "out")
    science = fits_image(small_pair.science, None, "bare.fits")
    reference = fits_image(small_pair.reference, small_pair.reference_wcs, "ref.fits")
    with pytest.raises(InputDataError, match="bare.fits: no celestial WCS"):
        difference_images(science, reference)


def test_unreadable_fits(tmp_path, small_pair, write_pair):
    science_path, _ = write_pair(tmp_path, small_pair)
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  = garbage" * 10)
    with pytest.raises(InputDataError, match="broken.fits"):
        run_diffim(science_path, broken, tmp_path / "out")


def test_all_nan_and_wrong_dimensions(tmp_path, small_pair, fits_image, write_pair):
    science_path, _ = write_pair(tmp_path, small_pair)
    header = small_pair.reference_wcs.to_header()
    fits.PrimaryHDU(np.full((192, 192), np.nan, np.float32), header=header).writeto(tmp_path / "nan.fits")
    with pytest.raises(InputDataError, match="nan.fits: every pixel"):
        run_diffim(science_path, tmp_path / "nan.fits", tmp_path / "out")
    fits.PrimaryHDU(np.zeros((2, 192, 192), np.float32)).writeto(tmp_path / "cube.fits")
    with pytest.raises(InputDataError, match="cube.fits: expected a 2-D image"):
        run_diffim(tmp_path / "cube.fits", science_path, tmp_path / "out")
    cube = fits_image(np.zeros((2, 4, 4)), small_pair.science_wcs, "cube2.fits")
    with pytest.raises(InputDataError, match="cube2.fits: expected a 2-D image"):
        difference_images(cube, fits_image(small_pair.reference, small_pair.reference_wcs, "ref.fits"))


def test_mask_shape_mismatch(tmp_path, small_pair, fits_image, write_pair):
    science_path, reference_path = write_pair(tmp_path, small_pair)
    fits.PrimaryHDU(np.zeros((10, 10), np.uint8)).writeto(tmp_path / "mask.fits")
    with pytest.raises(InputDataError, match="mask.fits: mask shape"):
        run_diffim(science_path, reference_path, tmp_path / "out", reference_mask_path=tmp_path / "mask.fits")
    science = fits_image(small_pair.science, small_pair.science_wcs, "sci.fits")
    reference = fits_image(small_pair.reference, small_pair.reference_wcs, "ref.fits")
    with pytest.raises(InputDataError, match="sci.fits: bad-pixel mask shape"):
        difference_images(science, reference, science_mask=np.zeros((3, 3)))


def test_mismatched_footprints(tmp_path, small_pair, fits_image):
    science = fits_image(small_pair.science, small_pair.science_wcs, "sci.fits")
    far_wcs = small_pair.reference_wcs.deepcopy()
    far_wcs.wcs.crval = [far_wcs.wcs.crval[0] + 1.0, far_wcs.wcs.crval[1]]
    reference = fits_image(small_pair.reference, far_wcs, "ref.fits")
    with pytest.raises(InputDataError, match="sci.fits and ref.fits: footprints do not overlap"):
        difference_images(science, reference)


def test_no_stars(small_pair, fits_image):
    rng = np.random.default_rng(1)
    science = fits_image(rng.normal(100, 10, (192, 192)), small_pair.science_wcs, "empty_sci.fits")
    reference = fits_image(rng.normal(100, 10, (192, 192)), small_pair.reference_wcs, "empty_ref.fits")
    with pytest.raises(InputDataError, match="empty_sci.fits: no stars found"):
        difference_images(science, reference)
