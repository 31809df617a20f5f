"""Matched-filter baseline: agreement with pycbc and recovery of a loud injection."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycbc")

from skysift.gw.matched_filter import (  # noqa: E402
    _update_network_peak,
    _weights,
    matched_filter_search,
    network_snr_series,
    snr_series,
    template_bank,
    template_waveforms,
)
from skysift.gw.mlgwsc import make_mlgwsc_test_data, read_events, read_injections  # noqa: E402
from skysift.gw.noise import colored_noise_fd, design_psd  # noqa: E402

FS = 2048.0


def test_snr_series_matches_pycbc_matched_filter():
    from pycbc.filter import matched_filter
    from pycbc.types import FrequencySeries, TimeSeries

    duration = 16.0
    n_time = int(duration * FS)
    psd = design_psd(FS, duration, f_low=15.0)
    bank = {"mass1": np.array([30.0]), "mass2": np.array([25.0])}
    template = template_waveforms(bank, delta_f=1 / duration, n_freq=n_time // 2 + 1)
    data = np.fft.irfft(colored_noise_fd(np.random.default_rng(0), psd.values, FS, n_time) + 20 * FS * template[0] * np.exp(-2j * np.pi * np.fft.rfftfreq(n_time, 1 / FS) * 9.0), n=n_time)
    frequencies = np.fft.rfftfreq(n_time, 1 / FS)
    ours = snr_series(np.fft.rfft(data) / FS, template, _weights(psd.values, frequencies, 20.0, 1000.0), 1 / duration, n_time)[0]
    theirs = matched_filter(FrequencySeries(template[0], delta_f=1 / duration), TimeSeries(data, delta_t=1 / FS), psd=psd.to_pycbc(), low_frequency_cutoff=20.0, high_frequency_cutoff=1000.0)
    np.testing.assert_allclose(np.abs(ours), np.abs(np.asarray(theirs)), rtol=1e-6, atol=1e-6)
    assert np.argmax(np.abs(ours)) == pytest.approx(9.0 * FS, abs=2)


@pytest.mark.parametrize(("lo", "hi"), [(200, 1800), (0, 2000), (3, 1990)])
def test_fused_network_peak_is_the_network_snr_maximised_over_templates(lo, hi):
    rng = np.random.default_rng(lo)
    shape = (7, 2000)
    z_h = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    z_l = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    z_l[3, 1000] = 40.0  # one loud sample: the window carries it +-31 samples
    expected = network_snr_series(z_h, z_l, FS)[:, lo:hi].max(axis=0)
    best_squared = np.zeros(hi - lo)
    _update_network_peak(z_h, z_l, 31, lo, hi, best_squared)
    np.testing.assert_allclose(np.sqrt(best_squared), expected, rtol=1e-13)
    # It raises, never lowers, what an earlier batch left.
    floor = np.full(hi - lo, 30.0**2)
    _update_network_peak(z_h, z_l, 31, lo, hi, floor)
    np.testing.assert_array_equal(floor, np.maximum(best_squared, 30.0**2))


def test_matched_filter_recovers_loud_injections(tmp_path):
    foreground, _, injections = make_mlgwsc_test_data(tmp_path / "fg.hdf", tmp_path / "bg.hdf", tmp_path / "inj.hdf", duration=100.0, seed=2, max_distance=400.0, mass_range=(20.0, 40.0))
    events_path = matched_filter_search(foreground, tmp_path / "ev.hdf", bank=template_bank((20.0, 40.0), n_chirp_mass=6, n_mass_ratio=3), segment_duration=32.0)
    events, truth = read_events(events_path), read_injections(injections)
    assert truth["tc"].size >= 2
    for tc, snr in zip(truth["tc"], truth["network_snr"]):
        assert snr > 15
        nearest = np.argmin(np.abs(events["time"] - tc))
        assert abs(events["time"][nearest] - tc) < 0.05
        assert events["stat"][nearest] > 0.7 * snr
