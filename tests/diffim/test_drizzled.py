"""Differencing drizzled-style products (MJy/sr, resampled noise, ERR extension, no GAIN, NaN saturated cores).

The same simulated scene is differenced twice: as simulated (electrons, white
noise) and as drizzled-style products written like JWST ``i2d`` files. The
second must find the same transients with as few false positives, and a unit
``S_corr`` on blank sky, without any option set for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage
from scipy.spatial import cKDTree

from skysift.diffim import DiffimOptions, difference_images, run_diffim
from skysift.diffim.noise import robust_std
from skysift.errors import InputDataError
from skysift.io import FitsImage
from skysift.simulate.drizzled import drizzle_style, write_drizzled
from skysift.simulate.starfield import FieldSpec, simulate_pair


def _found_and_false(candidates: Table, x: np.ndarray, y: np.ndarray, snr: np.ndarray, min_snr: float = 8.0):
    """(transients found at S/N >= min_snr, how many there are, candidates matching no transient)."""
    if len(candidates) == 0:
        return 0, int((snr >= min_snr).sum()), 0
    distance, index = cKDTree(np.column_stack([candidates["x"], candidates["y"]])).query(np.column_stack([x, y]))
    found = distance <= 2.0
    return int(found[snr >= min_snr].sum()), int((snr >= min_snr).sum()), len(candidates) - len(set(index[found].tolist()))


def _blank_sky(shape, x, y, radius=12.0):
    sources = np.zeros(shape, bool)
    inside = (x >= 0) & (x < shape[1] - 0.5) & (y >= 0) & (y < shape[0] - 0.5)
    sources[np.round(y[inside]).astype(int), np.round(x[inside]).astype(int)] = True
    return ndimage.distance_transform_edt(~sources) > radius


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 512x512 pair with 30 transients, in electrons and as drizzled-style files."""
    spec = FieldSpec(image_size=512, n_transients=30)
    sim = simulate_pair(spec, np.random.default_rng(21))
    rng = np.random.default_rng(22)
    common = dict(read_noise=spec.read_noise, saturation=spec.saturation, rng=rng, gain=1.8, photmjsr=0.6)
    science = drizzle_style(sim.science, sim.science_wcs, sky=spec.science_sky, exposure_time=1500.0, **common)
    reference = drizzle_style(sim.reference, sim.reference_wcs, sky=spec.reference_sky, exposure_time=3000.0, **common)
    directory = tmp_path_factory.mktemp("drizzled")
    paths = write_drizzled(directory / "science_i2d.fits", science), write_drizzled(directory / "reference_i2d.fits", reference)
    return sim, science, paths


def test_drizzled_style_product_is_what_it_claims(scene):
    sim, science, (science_path, _) = scene
    with fits.open(science_path) as hdul:
        assert [hdu.name for hdu in hdul] == ["PRIMARY", "SCI", "ERR"]
        header = hdul["SCI"].header
        assert header["BUNIT"] == "MJy/sr" and "GAIN" not in header and "SATURATE" not in header
        assert np.isnan(hdul["SCI"].data).any()  # saturated cores blanked
        data, error = hdul["SCI"].data, hdul["ERR"].data
    blank = _blank_sky(data.shape, sim.stars["x_sci"] + science.shift[0], sim.stars["y_sci"] + science.shift[1]) & np.isfinite(data)
    # Per pixel, ERR describes the resampled noise; a 4x4 block sum has more
    # variance than ERR says, because resampling correlated the pixels.
    assert robust_std(data[blank]) / np.median(error[blank]) == pytest.approx(1.0, abs=0.15)
    blocks = data[:512, :512].reshape(128, 4, 128, 4).sum(axis=(1, 3))
    block_blank = blank.reshape(128, 4, 128, 4).all(axis=(1, 3))
    assert robust_std(blocks[block_blank]) / (4 * np.median(error[blank])) > 1.4


def test_drizzled_products_match_electrons(scene):
    sim, science, (science_path, reference_path) = scene
    header = fits.Header({"SATURATE": sim.spec.saturation})
    electrons = difference_images(
        FitsImage(sim.science.astype(float), header, sim.science_wcs, Path("science.fits"), 0),
        FitsImage(sim.reference.astype(float), header, sim.reference_wcs, Path("reference.fits"), 0),
    )
    tx, ty, snr = sim.transients["x_sci"], sim.transients["y_sci"], sim.transients["snr"]
    found_e, total, false_e = _found_and_false(electrons.candidates, tx, ty, snr)
    assert not electrons.scorr_normalised  # white noise: S_corr left as computed

    outputs = run_diffim(science_path, reference_path, science_path.parent / "out")  # no option: ERR found by itself
    candidates = Table.read(outputs["candidates"], format="ascii.ecsv")
    dx, dy = science.shift
    found_d, _, false_d = _found_and_false(candidates, tx + dx, ty + dy, snr)
    assert total >= 20
    assert found_d >= found_e - 1  # within 5 percentage points of the pair in electrons
    assert false_d <= 5
    scorr = fits.getdata(outputs["scorr"]).astype(float)
    blank = _blank_sky(scorr.shape, np.concatenate([sim.stars["x_sci"], tx]) + dx, np.concatenate([sim.stars["y_sci"], ty]) + dy)
    assert robust_std(scorr[blank]) == pytest.approx(1.0, abs=0.1)
    stamp = fits.getheader(outputs["scorr"])
    assert stamp["NOISESCI"] == "ERR incl. sources" and stamp["NOISEREF"] == "ERR incl. sources"
    assert stamp["SCORRNRM"] is True and stamp["SCORRWID"] > 1.3  # the correlated-noise factor, measured
    assert stamp["GAINSCI"] > 0  # implied by ERR (no gain keyword), used for the flux-scale weights
    assert 1.5 < stamp["FLUXSCL"] < 1.7  # 0.8 in electrons x 2 for the exposure times


def test_source_noise_needs_a_gain_or_a_noise_map(scene, tmp_path):
    sim, science, (science_path, reference_path) = scene
    strict = DiffimOptions(noise_extensions=False, assume_unit_gain=False)
    with pytest.raises(InputDataError, match=r"science_i2d\.fits: source noise requested but BUNIT 'MJy/sr'"):
        run_diffim(science_path, reference_path, tmp_path / "out", options=strict)
    assert not (tmp_path / "out").exists()
    # The header converts MJy/sr back to counts (EXPTIME, PHOTMJSR): 1 e-/DN is assumed, and said.
    outputs = run_diffim(science_path, reference_path, tmp_path / "assumed", options=DiffimOptions(noise_extensions=False))
    header = fits.getheader(outputs["scorr"])
    assert header["GAINSRCS"].startswith("EXPTIME=1500 s x GAIN=1 (assumed)")
    assert header["GAINSCI"] == pytest.approx(1500.0 / 0.6)
    # So does a given gain (here the true one, 1.8 e-/DN).
    given = DiffimOptions(noise_extensions=False, assume_unit_gain=False, gain_science=4500.0, gain_reference=9000.0)
    assert fits.getheader(run_diffim(science_path, reference_path, tmp_path / "gain", options=given)["scorr"])["GAINSCI"] == 4500.0


def test_sky_only_error_map_gets_the_source_term(scene, tmp_path):
    sim, science, (science_path, reference_path) = scene
    with fits.open(science_path) as hdul:
        sky_error = np.full_like(hdul["ERR"].data, np.nanmedian(hdul["ERR"].data))  # no Poisson term of the sources
        hdul["ERR"].data = sky_error
        hdul.writeto(tmp_path / "science_i2d.fits")
    outputs = run_diffim(tmp_path / "science_i2d.fits", reference_path, tmp_path / "out")
    header = fits.getheader(outputs["scorr"])
    assert header["NOISESCI"] == "ERR (sky only) + sources/gain"
    assert header["NOISEREF"] == "ERR incl. sources"
    candidates = Table.read(outputs["candidates"], format="ascii.ecsv")
    tx, ty, snr = sim.transients["x_sci"] + science.shift[0], sim.transients["y_sci"] + science.shift[1], sim.transients["snr"]
    assert _found_and_false(candidates, tx, ty, snr)[2] <= 5  # bright stars are not taken for transients


def test_noise_file_and_bad_noise_inputs(scene, tmp_path):
    sim, science, (science_path, reference_path) = scene
    error = fits.getdata(science_path, "ERR")
    noise_path = tmp_path / "noise.fits"
    fits.PrimaryHDU(error).writeto(noise_path)
    outputs = run_diffim(science_path, reference_path, tmp_path / "out", science_noise_path=noise_path)
    assert fits.getheader(outputs["scorr"])["NOISESCI"] == "noise file incl. sources"
    assert str(noise_path) in fits.getheader(outputs["scorr"])["SSINP003"]  # provenance lists it
    fits.PrimaryHDU(error[:100]).writeto(tmp_path / "short.fits")
    with pytest.raises(InputDataError, match=r"short\.fits: noise map shape \(100, 512\) differs"):
        run_diffim(science_path, reference_path, tmp_path / "bad", science_noise_path=tmp_path / "short.fits")
    fits.PrimaryHDU(-np.ones_like(error)).writeto(tmp_path / "negative.fits")
    with pytest.raises(InputDataError, match=r"negative\.fits: weight map has negative values"):
        run_diffim(science_path, reference_path, tmp_path / "bad", reference_weight_path=tmp_path / "negative.fits")
    with pytest.raises(InputDataError, match="not both"):
        run_diffim(science_path, reference_path, tmp_path / "bad", science_noise_path=noise_path, science_weight_path=noise_path)
    assert not (tmp_path / "bad").exists()
