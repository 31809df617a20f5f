"""Noise maps, units and gain, S_corr width, NaN saturated cores, spline weights and the PNG preview."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from skysift.diffim.background import _spline_weights
from skysift.diffim.masks import saturated_nan_cores
from skysift.diffim.noise import (
    effective_gain,
    electrons_per_unit,
    holds_source_noise,
    nominal_electrons_per_unit,
    quiet_pixels,
    scorr_width,
    variance_from_components,
    variance_from_noise,
    variance_from_weight,
)
from skysift.diffim.preview import block_average, encode_png
from skysift.errors import InputDataError


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ({"BUNIT": "electrons", "GAIN": 3.0}, 1.0),
        ({"GAIN": 2.5}, 2.5),
        ({"BUNIT": "ADU", "EGAIN": 1.5}, 1.5),
        ({}, 1.0),  # the simulated pairs: electrons
        ({"BUNIT": "ELECTRONS/S", "EXPTIME": 400.0}, 400.0),  # HST drz
        ({"BUNIT": "DN/s", "EXPTIME": 100.0, "GAIN": 2.0}, 200.0),
        ({"BUNIT": "MJy/sr", "EXPTIME": 1000.0, "GAIN": 2.0, "PHOTMJSR": 0.5}, 4000.0),
        ({"BUNIT": "MJy/sr", "EFFGAIN": 5000.0, "EXPTIME": 1000.0, "PHOTMJSR": 0.5}, 5000.0),  # SWarp's effective gain
        ({"BUNIT": "erg/s/cm2/A", "EXPTIME": 10.0, "PHOTFLAM": 1e-19}, 1e20),
    ],
)
def test_electrons_per_unit_from_header(cards, expected):
    model = electrons_per_unit(fits.Header(cards))
    assert model is not None
    assert model.electrons_per_unit == pytest.approx(expected)
    assert model.description


@pytest.mark.parametrize(
    "cards",
    [
        {"BUNIT": "MJy/sr", "EXPTIME": 1000.0, "PHOTMJSR": 0.5},  # JWST i2d: no gain keyword
        {"BUNIT": "ADU"},
        {"BUNIT": "DN/s", "GAIN": 2.0},  # a rate without exposure time
    ],
)
def test_electrons_per_unit_unknown(cards):
    assert electrons_per_unit(fits.Header(cards)) is None
    assert electrons_per_unit(fits.Header(cards), override=3.0).electrons_per_unit == 3.0


def test_nominal_gain_only_where_the_header_converts_to_counts():
    jwst = nominal_electrons_per_unit(fits.Header({"BUNIT": "MJy/sr", "EXPTIME": 1000.0, "PHOTMJSR": 0.5}))
    assert jwst.electrons_per_unit == pytest.approx(2000.0) and "(assumed)" in jwst.description
    assert nominal_electrons_per_unit(fits.Header({"BUNIT": "MJy/sr", "PHOTMJSR": 0.5})) is None
    assert nominal_electrons_per_unit(fits.Header({"BUNIT": "Jy"})) is None


def test_noise_and_weight_maps_checked():
    shape = (20, 30)
    noise = np.full(shape, 2.0)
    noise[0, 0] = np.nan
    noise[0, 1] = -1e-5  # real maps hold a few: unusable, not fatal
    converted = variance_from_noise(noise, shape, name="n.fits")
    assert converted.includes_sources and converted.variance[5, 5] == pytest.approx(4.0)
    assert converted.unusable[0, 0] and converted.unusable[0, 1] and converted.unusable.sum() == 2
    weight = variance_from_weight(np.full(shape, 0.25), shape, name="w.fits")
    assert not weight.includes_sources and weight.variance[3, 3] == pytest.approx(4.0)
    with pytest.raises(InputDataError, match=r"w\.fits: weight map shape \(3, 3\) differs"):
        variance_from_weight(np.ones((3, 3)), shape, name="w.fits")
    with pytest.raises(InputDataError, match=r"n\.fits: every pixel of the noise map is NaN"):
        variance_from_noise(np.full(shape, np.nan), shape, name="n.fits")
    with pytest.raises(InputDataError, match=r"w\.fits: weight map has negative values"):
        variance_from_weight(np.full(shape, -1.0), shape, name="w.fits")
    with pytest.raises(InputDataError, match="zero everywhere"):
        variance_from_noise(np.zeros(shape), shape, name="n.fits")
    components = variance_from_components({"VAR_POISSON": np.ones(shape), "VAR_RNOISE": np.ones(shape)}, shape, name="x")
    assert components.includes_sources and components.variance[0, 0] == pytest.approx(2.0)
    assert components.origin == "VAR_POISSON+VAR_RNOISE"


def test_effective_gain_recovers_the_source_term():
    rng = np.random.default_rng(1)
    gain, sky_variance = 40.0, 1e-4
    data = np.abs(rng.normal(0.0, 0.01, (200, 200)))
    data[50:60, 50:60] = rng.uniform(1.0, 5.0, (10, 10))  # bright sources
    noise = variance_from_noise(np.sqrt(sky_variance + data / gain), data.shape, name="err")
    model = effective_gain(data, noise, np.zeros(data.shape, bool))
    assert model.electrons_per_unit == pytest.approx(gain, rel=0.02)
    sky_only = variance_from_weight(np.full(data.shape, 1 / sky_variance), data.shape, name="wht")
    assert effective_gain(data, sky_only, np.zeros(data.shape, bool)) is None
    good = np.zeros(data.shape, bool)
    assert holds_source_noise(data, noise, good) is True
    constant = variance_from_noise(np.full(data.shape, np.sqrt(sky_variance)), data.shape, name="err")
    assert holds_source_noise(data, constant, good) is False
    assert holds_source_noise(np.zeros_like(data), noise, good) is None  # nothing bright: cannot tell


def _correlated_noise(shape, rng):
    white = rng.normal(size=shape)
    # A half-pixel bilinear shift: per-pixel variance 1/4, PSF-scale variance unchanged.
    return 0.25 * (white + np.roll(white, 1, 0) + np.roll(white, 1, 1) + np.roll(np.roll(white, 1, 0), 1, 1))


def test_scorr_width_finds_unit_width_and_ignores_sources():
    rng = np.random.default_rng(2)
    shape = (400, 400)
    scorr = rng.normal(size=shape).astype(np.float32) * 1.8
    image = _correlated_noise(shape, rng)
    image[100:140, 100:140] += 50.0  # a bright source, where S_corr is off
    scorr[100:140, 100:140] = 30.0
    quiet = quiet_pixels(image, _correlated_noise(shape, rng), np.zeros(shape, bool))
    assert not quiet[100 // 4 : 140 // 4, 100 // 4 : 140 // 4].any()
    assert 0.8 < quiet.mean() < 1.0  # noise peaks are not taken for sources
    assert scorr_width(scorr, quiet) == pytest.approx(1.8, rel=0.03)
    assert np.isnan(scorr_width(scorr, np.zeros_like(quiet)))


def test_saturated_nan_cores_only_in_bright_surroundings():
    image = np.random.default_rng(3).normal(0.0, 1.0, (100, 100))
    image[40:50, 40:50] = 500.0  # a saturated star's wings ...
    image[43:47, 43:47] = np.nan  # ... around its blanked core
    image[:, :5] = np.nan  # a footprint edge in the sky
    image[80, 80] = np.nan  # a blanked cosmic ray in the sky
    cores = saturated_nan_cores(image, bright_level=20.0)
    assert cores[43:47, 43:47].all()
    assert cores.sum() == 16


@pytest.mark.parametrize("n", [2, 3, 4, 7, 33])
def test_spline_weights_match_scipy(n):
    from scipy.interpolate import make_interp_spline

    centres = (np.arange(n) + 0.5) * 64 - 0.5 + np.linspace(0, 3, n)
    positions = np.clip(np.arange(n * 64, dtype=float), centres[0], centres[-1])
    expected = make_interp_spline(centres, np.eye(n), k=min(3, n - 1))(positions)
    assert np.allclose(_spline_weights(n * 64, centres), expected, atol=1e-12)


def test_block_average_and_png():
    image = np.arange(36.0).reshape(6, 6)
    binned, factor = block_average(image, 3)
    assert factor == 2 and binned.shape == (3, 3)
    assert binned[0, 0] == pytest.approx(np.mean([0, 1, 6, 7]))
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    png = encode_png(rgb)
    from matplotlib.image import imread

    decoded = imread(io.BytesIO(png), format="png")
    assert decoded.shape == (5, 7, 3)
    assert np.allclose(decoded[0, 0], (1.0, 0.0, 0.0)) and np.allclose(decoded[1:, :], 0.0)
