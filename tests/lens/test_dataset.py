"""The lens training-set product, real-galaxy injection and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skysift.context import RunContext
from skysift.errors import InputDataError
from skysift.io import read_product
from skysift.lens.dataset import KINDS, make_lens_training_set
from skysift.lens.injection import degrade_to_survey, inject_arcs, read_real_galaxies, resample_flux_conserving
from skysift.lens.negatives import HARD_NEGATIVE_KINDS, HARD_NEGATIVE_PRIORS, render_hard_negative
from skysift.lens.simulator import LENS_PRIORS, LensSimulator

GALSIM_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lens" / "galsim_real_galaxies"


def test_training_set_round_trip(tmp_path: Path) -> None:
    path = make_lens_training_set(tmp_path / "lenses.h5", 60, image_size=32, supersampling=2, seed=4, batch_size=25,
                                  context=RunContext(config_digest="abc"))
    product = read_product(path)
    assert product.product_type == "lens-training-set"
    image = product.arrays["image"]
    assert image.shape == (60, 1, 32, 32) and image.dtype == np.float32
    assert product.units["image"] == "electron / s"
    table = product.table
    assert table["label"].dtype == np.int8
    assert set(table["kind"]) <= set(KINDS)
    assert np.sum(table["label"]) == 30
    assert np.all((table["label"] == 1) == (table["kind"] == "lens"))
    lenses = table["label"] == 1
    for name in LENS_PRIORS:
        assert name in table.colnames
    # Arclets are lensed (singly imaged) sources: they carry arc parameters too.
    lensed = np.isin(np.asarray(table["kind"]), ("lens", "arclet"))
    assert np.all(np.isfinite(table["theta_E"][lensed])) and np.all(np.isnan(table["theta_E"][~lensed]))
    assert np.all(table["magnification"][lenses] > 0)
    assert str(table["theta_E"].unit) == "arcsec"
    assert product.provenance.seed == 4 and product.provenance.config_hash == "abc"
    # Same seed, same product.
    again = read_product(make_lens_training_set(tmp_path / "again.h5", 60, image_size=32, supersampling=2, seed=4,
                                                batch_size=25))
    np.testing.assert_array_equal(again.arrays["image"], image)


@pytest.mark.parametrize("kind", HARD_NEGATIVE_KINDS)
def test_hard_negatives_have_requested_flux(kind: str) -> None:
    simulator = LensSimulator("lsst", 64, 2, psf=None)
    from skysift.simulate.priors import sample_parameters

    params = sample_parameters(HARD_NEGATIVE_PRIORS[kind], 5, np.random.default_rng(0))
    images = render_hard_negative(simulator, kind, params)
    assert images.shape == (5, 64, 64) and torch.isfinite(images).all()
    flux = 10 ** (-0.4 * (params["feature_mag"] - simulator.survey.zero_point))
    if kind in ("ring", "spiral"):
        np.testing.assert_allclose(images.sum(dim=(1, 2)).numpy(), flux, rtol=1e-3)
    else:
        # Compact companions are coarsely sampled (r_eff down to half a pixel): 5 %.
        assert np.all(images.sum(dim=(1, 2)).numpy() <= flux * 1.05)


def test_resampling_conserves_flux() -> None:
    image = np.random.default_rng(0).random((90, 90))
    out = resample_flux_conserving(image, 0.03, 0.2, 12)  # 12 x 0.2" covers 2.4" < 2.7"
    assert out.shape == (12, 12)
    covered = image[45 - 40 : 45 + 40, 45 - 40 : 45 + 40].sum()
    assert out.sum() == pytest.approx(covered, rel=1e-10)


def _write_catalogue(directory: Path, image_name: str) -> Path:
    from astropy.io import fits
    from astropy.table import Table

    table = Table({
        "IDENT": [1], "MAG": [22.0], "GAL_FILENAME": [image_name], "GAL_HDU": [0],
        "PSF_FILENAME": ["psf.fits"], "PSF_HDU": [0], "PIXEL_SCALE": [0.03],
    })
    path = directory / "mini_catalog.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(table)]).writeto(path)
    yy, xx = np.mgrid[:21, :21]
    fits.PrimaryHDU(np.exp(-((xx - 10) ** 2 + (yy - 10) ** 2) / 4.0)).writeto(directory / "psf.fits")
    return path


def test_synthetic_catalogue_is_read_and_degraded(tmp_path: Path) -> None:
    from astropy.io import fits

    catalogue = _write_catalogue(tmp_path, "gal.fits")
    yy, xx = np.mgrid[:81, :81]
    fits.PrimaryHDU(np.exp(-np.hypot(xx - 40, yy - 40) / 6.0)).writeto(tmp_path / "gal.fits")
    galaxies = read_real_galaxies(catalogue)
    assert len(galaxies) == 1 and galaxies[0].ident == 1
    simulator = LensSimulator("lsst", 32, 2)
    stamp = degrade_to_survey(galaxies[0], simulator)
    expected = 10 ** (-0.4 * (22.0 - simulator.survey.zero_point))
    assert stamp.sum() == pytest.approx(expected, rel=0.02)
    assert np.unravel_index(stamp.argmax(), stamp.shape) in {(15, 15), (15, 16), (16, 15), (16, 16)}
    params = LensSimulator.draw_parameters(3, np.random.default_rng(0))
    images, magnification = inject_arcs(simulator, torch.tensor(np.stack([stamp] * 3)), params,
                                        np.random.default_rng(1), noise=False)
    assert images.shape == (3, 32, 32) and torch.all(images.sum(dim=(1, 2)) > stamp.sum())
    assert torch.all(magnification > 0)


def test_missing_galaxy_file_names_it(tmp_path: Path) -> None:
    catalogue = _write_catalogue(tmp_path, "absent.fits")
    with pytest.raises(InputDataError, match="absent.fits"):
        read_real_galaxies(catalogue)


def test_corrupt_galaxy_file_names_it(tmp_path: Path) -> None:
    catalogue = _write_catalogue(tmp_path, "corrupt.fits")
    (tmp_path / "corrupt.fits").write_bytes(b"SIMPLE  = T" + b"\x00garbage" * 50)
    with pytest.raises(InputDataError, match="corrupt.fits"):
        read_real_galaxies(catalogue)


def test_corrupt_or_missing_catalogue_names_it(tmp_path: Path) -> None:
    (tmp_path / "bad_catalog.fits").write_bytes(b"not fits at all")
    with pytest.raises(InputDataError, match="bad_catalog.fits"):
        read_real_galaxies(tmp_path / "bad_catalog.fits")
    with pytest.raises(InputDataError, match="nothing_catalog.fits"):
        read_real_galaxies(tmp_path / "nothing_catalog.fits")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputDataError, match="no \\*catalog"):
        read_real_galaxies(empty)


@pytest.mark.realdata
def test_real_galsim_galaxies(tmp_path: Path) -> None:
    if not GALSIM_DIR.is_dir():
        pytest.skip(f"shared data not found at {GALSIM_DIR}")
    galaxies = read_real_galaxies(GALSIM_DIR)
    assert len(galaxies) >= 10
    assert all(abs(g.pixel_scale - 0.03) < 1e-6 for g in galaxies)
    assert all(g.image.ndim == 2 and g.psf.ndim == 2 for g in galaxies)
    path = make_lens_training_set(tmp_path / "real.h5", 24, survey="hsc", image_size=48, supersampling=2,
                                  galaxies=GALSIM_DIR, seed=2, batch_size=12)
    product = read_product(path)
    assert product.arrays["image"].shape == (24, 1, 48, 48)
    assert np.all(product.table["galaxy_id"] > 0)
    assert len(product.provenance.inputs) >= 3
    assert np.isfinite(product.arrays["image"]).all()


def test_arc_signal_to_noise_hand_made() -> None:
    from skysift.lens.simulator import arc_signal_to_noise

    arc = torch.zeros((2, 8, 8), dtype=torch.float64)
    variance = torch.full((2, 8, 8), 4.0, dtype=torch.float64)  # sigma = 2
    arc[0, 3, 2:6] = 6.0  # four pixels at 3 sigma
    arc[0, 5, 5] = 1.5  # below 1 sigma: not counted
    variance[0, 3, 2] = 9.0  # sigma = 3, still under the 6 e-/s arc
    # S/N = 24 / sqrt(9 + 3 * 4) over the four selected pixels; the second image has no arc.
    snr = arc_signal_to_noise(arc, variance)
    np.testing.assert_allclose(snr.numpy(), [24.0 / np.sqrt(21.0), 0.0])
    # A 2-sigma selection drops the pixel with sigma = 3 (6 e-/s is not above 2 x 3).
    np.testing.assert_allclose(arc_signal_to_noise(arc, variance, threshold=2.0).numpy(), [18.0 / np.sqrt(12.0), 0.0])


def test_noise_variance_matches_add_noise() -> None:
    simulator = LensSimulator("lsst", 16, 1, psf=None, dtype=torch.float64)
    clean = torch.full((400, 16, 16), 5.0, dtype=torch.float64)
    noisy = simulator.add_noise(clean, np.random.default_rng(0))
    variance = simulator.noise_variance(clean)
    assert float((noisy - clean).var()) == pytest.approx(float(variance.mean()), rel=0.02)


def test_detectability_cuts_are_respected(tmp_path: Path) -> None:
    path = make_lens_training_set(tmp_path / "cut.h5", 40, image_size=32, supersampling=1, seed=5,
                                  min_arc_snr=100.0, min_magnification=3.0, resolution_factor=3.0, conditions="fixed",
                                  negative_mix={"galaxy": 1.0})
    product = read_product(path)
    table = product.table
    lenses = table["label"] == 1
    assert product.attrs["min_arc_snr"] == 100.0
    plain = np.asarray(table["kind"]) != "arclet"
    assert np.all(table["arc_snr"][lenses] >= 100.0) and np.all(np.isnan(table["arc_snr"][~lenses & plain]))
    assert np.all(table["magnification"][lenses] >= 3.0)
    assert np.all(table["theta_E"][lenses] >= 3.0 * 0.71 / 2.0)
    # The stored S/N is that of the arc rendered from the stored parameters.
    from skysift.lens.simulator import arc_signal_to_noise

    simulator = LensSimulator("lsst", 32, 1)
    params = {name: np.asarray(table[name][lenses], dtype=np.float64) for name in LENS_PRIORS}
    arc, light, _ = simulator.render_components(params)
    snr = arc_signal_to_noise(arc, simulator.noise_variance(arc + light)).numpy()
    np.testing.assert_allclose(snr, table["arc_snr"][lenses], rtol=1e-4)


def test_unreachable_detectability_cut_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="detectability"):
        make_lens_training_set(tmp_path / "never.h5", 4, image_size=16, supersampling=1, seed=0, min_arc_snr=1e9)
    with pytest.raises(ValueError, match="must be >= 0"):
        make_lens_training_set(tmp_path / "bad.h5", 4, image_size=16, supersampling=1, min_magnification=-1.0)


def test_arc_contrast_is_stored_and_cut(tmp_path: Path) -> None:
    from skysift.lens.dataset import arc_contrast
    from skysift.lens.simulator import arc_signal_to_noise

    path = make_lens_training_set(tmp_path / "contrast.h5", 30, image_size=48, supersampling=1, seed=8,
                                  min_arc_contrast=0.2)
    product = read_product(path)
    table = product.table
    lenses = table["label"] == 1
    assert product.attrs["min_arc_contrast"] == 0.2
    plain = np.asarray(table["kind"]) != "arclet"
    assert np.all(table["arc_contrast"][lenses] >= 0.2) and np.all(np.isnan(table["arc_contrast"][~lenses & plain]))
    # Hand-made: an arc of 6 e-/s on four pixels (sigma 2) over a lens light of 3 e-/s -> contrast 2.
    arc = torch.zeros((1, 8, 8), dtype=torch.float64)
    arc[0, 3, 2:6] = 6.0
    light = torch.full((1, 8, 8), 3.0, dtype=torch.float64)
    variance = torch.full((1, 8, 8), 4.0, dtype=torch.float64)
    assert float(arc_contrast(arc, light, variance)[0]) == pytest.approx(2.0)
    assert float(arc_signal_to_noise(arc, variance)[0]) == pytest.approx(24.0 / 4.0)
