"""FITS readers, simulated stars, the AstroNet model contract and the gallery."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from skysift.errors import InputDataError
from skysift.simulate.priors import sample_parameters
from skysift.transit.lightcurves import STELLAR_PRIORS, mission_time_grid, read_lightcurve, simulate_stars


def _kepler_file(path, *, columns=("TIME", "PDCSAP_FLUX", "PDCSAP_FLUX_ERR", "SAP_QUALITY"), flux=None, extname="LIGHTCURVE"):
    n = 200
    time = 131.5 + np.arange(n) * 29.4244 / 1440
    flux = np.full(n, 5000.0) if flux is None else flux
    quality = np.zeros(n, dtype=np.int32)
    quality[5] = 1  # attitude tweak: dropped
    quality[6] = 2048  # not in the default bitmask: kept
    data = {"TIME": time, "PDCSAP_FLUX": flux, "PDCSAP_FLUX_ERR": np.full(n, 10.0), "SAP_QUALITY": quality}
    data["TIME"][7] = np.nan
    cols = [fits.Column(name=c, format={"TIME": "D", "SAP_QUALITY": "J"}.get(c, "E"), array=data[c]) for c in columns]
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "Kepler"
    primary.header["KEPLERID"] = 757450
    fits.HDUList([primary, fits.BinTableHDU.from_columns(cols, name=extname)]).writeto(path)
    return path


def test_read_kepler_lightcurve(tmp_path):
    flux = np.full(200, 5000.0)
    flux[10] = np.nan
    lc = read_lightcurve(_kepler_file(tmp_path / "kplr000757450-2009166043257_llc.fits", flux=flux))
    assert lc.mission == "kepler" and lc.meta["KEPLERID"] == 757450
    assert lc.time.size == 200 - 3  # quality bit 1, NaN time, NaN flux
    assert np.median(lc.flux) == pytest.approx(1.0)
    assert lc.flux_err[0] == pytest.approx(10.0 / 5000.0)
    assert lc.cadence == pytest.approx(29.4244 / 1440, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extname": "FLUX"}, "no LIGHTCURVE extension"),
        ({"columns": ("TIME", "PDCSAP_FLUX", "SAP_QUALITY")}, "lacks column.*PDCSAP_FLUX_ERR"),
        ({"flux": np.full(200, np.nan)}, "no cadence has finite"),
        ({"flux": np.full(200, -5.0)}, "median PDCSAP_FLUX"),
    ],
)
def test_reader_errors_name_the_file(tmp_path, kwargs, message):
    path = _kepler_file(tmp_path / "kplr_bad_llc.fits", **kwargs)
    with pytest.raises(InputDataError, match=f"kplr_bad_llc.fits: .*{message}"):
        read_lightcurve(path)


def test_reader_corrupt_and_missing(tmp_path):
    corrupt = tmp_path / "corrupt_llc.fits"
    corrupt.write_bytes(b"SIMPLE  = not really a FITS file")
    with pytest.raises(InputDataError, match="corrupt_llc.fits"):
        read_lightcurve(corrupt)
    with pytest.raises(FileNotFoundError):
        read_lightcurve(tmp_path / "absent.fits")


def test_mission_grids_have_gaps():
    kepler = mission_time_grid("kepler")
    assert np.median(np.diff(kepler)) == pytest.approx(29.4244 / 1440)
    assert (np.diff(kepler) > 0.5).sum() == 2  # two monthly downlinks in a quarter
    tess = mission_time_grid("tess-2min", n_blocks=2)
    assert np.median(np.diff(tess)) == pytest.approx(2 / 1440)
    assert (np.diff(tess) > 0.5).sum() == 3  # mid-sector gaps and the sector boundary
    with pytest.raises(ValueError, match="unknown mission"):
        mission_time_grid("plato")


def test_simulated_stars_noise_level():
    time = mission_time_grid("tess-ffi")
    rng = np.random.default_rng(0)
    params = sample_parameters(STELLAR_PRIORS, 8, rng)
    params["rotation_amplitude"][:] = 1e-9
    params["granulation_ratio"][:] = 1e-6
    flux, valid = simulate_stars(time, params, np.full(8, 1e-3), rng)
    assert flux.shape == (8, time.size)
    assert np.isnan(flux[~valid]).all() and np.isfinite(flux[valid]).all()
    np.testing.assert_allclose(np.nanstd(flux, axis=1), 1e-3, rtol=0.1)


def test_model_forward_contract():
    torch = pytest.importorskip("torch")
    from skysift.transit.model import build_model

    def inputs(n, global_shape=(2001,)):
        return (torch.randn(n, *global_shape), *(torch.randn(n, 201) for _ in range(4)), torch.randn(n, 11))

    model = build_model(width_scale=0.25)
    logits = model(*inputs(5))
    assert logits.shape == (5,) and logits.dtype == torch.float32
    with pytest.raises(ValueError, match="global_view must be"):
        model(*inputs(5, (1, 2001)))
    bad_odd = list(inputs(5))
    bad_odd[3] = torch.randn(5, 200)
    with pytest.raises(ValueError, match="odd_view must be"):
        model(*bad_odd)
    full = build_model()
    assert full(*(torch.zeros_like(t[:2]) for t in inputs(2))).shape == (2,)
    # The original two-view AstroNet ignores the added inputs.
    plain = build_model(width_scale=0.25, extra_views=False, n_scalars=0)
    first = inputs(3)
    changed = (*first[:2], *(torch.randn_like(t) for t in first[2:]))
    torch.testing.assert_close(plain(*first), plain(*changed))
    assert not torch.allclose(model(*first), model(*changed))


def test_gallery_figure():
    from skysift.transit.plots import view_gallery

    rng = np.random.default_rng(0)
    figure = view_gallery(rng.normal(size=(10, 2001)), rng.normal(size=(10, 201)), rng.random(10), n_show=2, labels=["planet"] * 10)
    assert len(figure.axes) == 8


def test_score_views_needs_every_input():
    pytest.importorskip("torch")
    from skysift.transit.model import build_model
    from skysift.transit.scoring import score_views

    model = build_model(width_scale=0.125, fc_width=16, n_fc=1)
    rng = np.random.default_rng(1)
    inputs = (rng.normal(size=2001), *(rng.normal(size=201) for _ in range(4)), rng.normal(size=11))
    assert score_views(model, *inputs).shape == (1,)
    with pytest.raises(ValueError, match="expected 6 inputs"):
        score_views(model, *inputs[:2])
