"""Waveform projection, SNR rescaling, whitening and the training-set product (need PyCBC)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycbc")

from skysift.context import RunContext  # noqa: E402
from skysift.gw.dataset import GWSampleConfig, make_gw_training_set, simulate_gw_batch, simulate_gw_sample_pycbc  # noqa: E402
from skysift.gw.noise import design_psd  # noqa: E402
from skysift.gw.waveforms import REFERENCE_GPS, antenna_response, fd_waveforms, optimal_snr, project_fd  # noqa: E402
from skysift.io import read_product  # noqa: E402

FS = 2048.0
ZERO_SPINS = {f"spin{k}{a}": np.zeros(1) for k in (1, 2) for a in "xyz"}


def _one_source(**overrides):
    params = {"mass1": np.array([35.0]), "mass2": np.array([30.0]), "inclination": np.zeros(1), "coa_phase": np.zeros(1), **ZERO_SPINS}
    params |= {k: np.atleast_1d(v) for k, v in overrides.items()}
    return params


def test_projection_time_delay_h1_l1():
    from pycbc.detector import Detector

    duration = 8.0
    n_time = int(duration * FS)
    frequencies = np.fft.rfftfreq(n_time, 1 / FS)
    hp, hc = fd_waveforms(_one_source(), approximant="IMRPhenomD", delta_f=1 / duration, n_freq=frequencies.size)
    ra, dec = np.array([1.3]), np.array([-0.4])
    fplus, fcross, delays = antenna_response(("H1", "L1"), ra, dec, np.array([0.3]), REFERENCE_GPS)
    strain = np.fft.irfft(project_fd(hp, hc, frequencies, fplus, fcross, delays, np.array([6.0])) * FS, n=n_time)[0]
    # Face-on: h_cross = i h_plus, so each detector's envelope peaks at its own arrival time.
    from scipy.signal import hilbert

    peaks = np.array([np.argmax(np.abs(hilbert(row))) for row in strain]) / FS
    expected = Detector("L1").time_delay_from_detector(Detector("H1"), 1.3, -0.4, REFERENCE_GPS)
    assert abs(expected) > 1e-3
    assert peaks[1] - peaks[0] == pytest.approx(expected, abs=1.5 / FS)
    assert delays[1, 0] - delays[0, 0] == pytest.approx(expected, abs=1e-9)


def test_optimal_snr_rescaling_hits_target_with_pycbc_sigma():
    from pycbc.filter import sigma
    from pycbc.types import FrequencySeries

    duration = 8.0
    frequencies = np.fft.rfftfreq(int(duration * FS), 1 / FS)
    psd = design_psd(FS, duration, f_low=10.0)
    hp, hc = fd_waveforms(_one_source(inclination=0.7), approximant="IMRPhenomD", delta_f=1 / duration, n_freq=frequencies.size)
    fplus, fcross, delays = antenna_response(("H1", "L1"), np.array([2.0]), np.array([0.5]), np.array([1.0]), REFERENCE_GPS)
    projected = project_fd(hp, hc, frequencies, fplus, fcross, delays, np.array([5.0]))
    detector_snr = optimal_snr(projected, psd.values, 1 / duration)
    scaled = projected * (12.0 / np.sqrt(np.sum(detector_snr**2)))
    by_pycbc = [sigma(FrequencySeries(row, delta_f=1 / duration), psd=psd.to_pycbc(), low_frequency_cutoff=20.0) for row in scaled[0]]
    assert np.sqrt(np.sum(np.square(by_pycbc))) == pytest.approx(12.0, rel=1e-3)


@pytest.mark.parametrize("whitening", ["welch", "analytic"])
def test_fast_path_snrs_and_whitened_noise(whitening):
    config = GWSampleConfig(whitening=whitening)
    strain, label, columns = simulate_gw_batch(24, 48, seed=3, config=config)
    assert strain.shape == (72, 2, 2048) and strain.dtype == np.float32
    assert label.sum() == 24
    signal = label == 1
    np.testing.assert_allclose(np.hypot(columns["snr_H1"], columns["snr_L1"])[signal], columns["network_snr"][signal], rtol=1e-9)
    assert np.all((columns["network_snr"][signal] >= 5) & (columns["network_snr"][signal] <= 20))
    assert np.all(np.isnan(columns["mass1"][~signal])) and np.all(columns["waveform_id"][~signal] == -1)
    noise = strain[~signal].astype(np.float64)
    assert noise.std() == pytest.approx(1.0, abs=0.04)
    power = np.mean(np.abs(np.fft.rfft(noise, axis=-1)) ** 2, axis=(0, 1)) / noise.shape[-1]
    frequencies = np.fft.rfftfreq(noise.shape[-1], 1 / FS)
    in_band = power[(frequencies > 30) & (frequencies < 450)]
    assert in_band.std() / in_band.mean() < 0.15  # flat in band
    assert power[(frequencies > 30) & (frequencies < 100)].mean() == pytest.approx(power[(frequencies > 300) & (frequencies < 450)].mean(), rel=0.1)
    assert power[frequencies > 600].mean() < 1e-3 * in_band.mean()  # band-passed


def test_peer_path_rescales_to_target():
    config = GWSampleConfig()
    params = _one_source(ra=1.0, dec=0.2, polarization=0.4, merger_offset=0.7, network_snr=15.0)
    strain, info = simulate_gw_sample_pycbc({k: v[0] for k, v in params.items()}, seed=5, config=config)
    assert strain.shape == (2, 2048)
    assert np.hypot(info["snr_H1"], info["snr_L1"]) == pytest.approx(15.0, rel=1e-6)


def test_training_set_product_round_trip(tmp_path):
    path = make_gw_training_set(tmp_path / "gw.h5", 20, seed=4, chunk_size=8, whitening="analytic", context=RunContext(rule="test", config_digest="abc", scheduler="synchronous"))
    product = read_product(path)
    assert product.arrays["strain"].shape == (20, 2, 2048)
    table = product.table
    assert int(table["label"].sum()) == 10
    assert str(table["mass1"].unit) == "solMass" and str(table["distance"].unit) == "Mpc"
    signal = np.asarray(table["label"]) == 1
    for name in ("mass1", "mass2", "spin1z", "distance", "ra", "dec", "polarization", "inclination", "tc", "network_snr", "snr_H1", "snr_L1"):
        assert np.all(np.isfinite(np.asarray(table[name])[signal])), name
    assert np.all(np.asarray(table["mass1"])[signal] >= np.asarray(table["mass2"])[signal])
    ids = np.asarray(table["waveform_id"])[signal]
    _, counts = np.unique(ids, return_counts=True)
    assert counts.max() == 4 and counts.size == 3  # chunks of 4 signals, 4 samples per waveform
    assert product.provenance.seed == 4
    again = read_product(make_gw_training_set(tmp_path / "gw2.h5", 20, seed=4, chunk_size=8, whitening="analytic", context=RunContext(scheduler="threads")))
    np.testing.assert_array_equal(again.arrays["strain"], product.arrays["strain"])


def _psd_file(path, scale: float) -> str:
    """A PSD file in MLGWSC-1's layout: the design PSD on a 1 Hz grid times ``scale``."""
    import h5py

    psd = design_psd(2048.0, 1.0, f_low=5.0)
    with h5py.File(path, "w") as handle:
        handle["data"] = psd.values * scale
        handle["data"].attrs["delta_f"] = psd.delta_f
    return str(path)


def test_psd_files_set_each_samples_noise(tmp_path):
    from skysift.gw.noise import psd_files_in

    for detector in ("H1", "L1"):
        (tmp_path / detector).mkdir()
        _psd_file(tmp_path / detector / "psd-0.hdf", 4.0)
    files = psd_files_in(tmp_path)
    config = GWSampleConfig(buffer_duration=4.0)
    louder = GWSampleConfig(buffer_duration=4.0, psd_files=files)
    _, _, design = simulate_gw_batch(8, 0, seed=3, config=config)
    _, _, scaled = simulate_gw_batch(8, 0, seed=3, config=louder)
    # Four times the noise power: the same SNR is reached at half the distance; the draws are unchanged.
    np.testing.assert_allclose(scaled["mass1"], design["mass1"])
    np.testing.assert_allclose(scaled["distance"], design["distance"] / 2.0, rtol=1e-3)
    assert "files" in louder.attrs()["psd"]
    with pytest.raises(ValueError, match="welch"):
        GWSampleConfig(psd_files=files, whitening="analytic")


def test_psd_files_are_drawn_per_sample_and_detector(tmp_path):
    from skysift.gw.noise import psd_files_in

    for detector in ("H1", "L1"):
        (tmp_path / detector).mkdir()
        for k, scale in enumerate((1.0, 100.0)):
            _psd_file(tmp_path / detector / f"psd-{k}.hdf", scale)
    _, _, columns = simulate_gw_batch(64, 0, seed=4, config=GWSampleConfig(buffer_duration=4.0, psd_files=psd_files_in(tmp_path)))
    _, _, design = simulate_gw_batch(64, 0, seed=4, config=GWSampleConfig(buffer_duration=4.0))
    ratio = columns["distance"] / design["distance"]
    # Each sample's distance shrinks by 1 (both detectors quiet) up to 10 (both loud), in between otherwise.
    assert np.all((ratio > 0.099) & (ratio < 1.001))
    assert np.any(ratio > 0.9) and np.any(ratio < 0.11) and np.any((ratio > 0.12) & (ratio < 0.9))


def test_psd_folder_errors_name_the_folder(tmp_path):
    from skysift.errors import InputDataError
    from skysift.gw.noise import psd_files_in, read_psd_file

    with pytest.raises(InputDataError, match=str(tmp_path)):
        psd_files_in(tmp_path)
    (tmp_path / "bad.hdf").write_text("no")
    with pytest.raises(InputDataError, match="bad.hdf"):
        read_psd_file(tmp_path / "bad.hdf")


def test_priors_reach_light_masses_and_high_aligned_spins(tmp_path):
    config = GWSampleConfig(mass_range=(5.0, 8.0), spin_max=0.99, buffer_duration=4.0)
    _, label, columns = simulate_gw_batch(64, 0, seed=5, config=config)
    assert np.all(label == 1)
    assert np.all((columns["mass2"] >= 5.0) & (columns["mass1"] <= 8.0) & (columns["mass1"] >= columns["mass2"]))
    assert np.abs(columns["spin1z"]).max() > 0.8 and np.abs(columns["spin1z"]).max() <= 0.99
    assert np.all(columns["spin1x"] == 0)
    assert config.attrs()["prior.spin1z"]
