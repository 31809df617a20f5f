"""Stochastic aligned-spin bank: coverage on a small space, fitting factors against bank_match, bank files."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycbc")

from skysift.errors import InputDataError  # noqa: E402
from skysift.gw.matched_filter import bank_match, fitting_factors, read_bank, stochastic_bank, write_bank  # noqa: E402
from skysift.gw.noise import design_psd  # noqa: E402
from skysift.gw.waveforms import intrinsic_priors, source_parameters  # noqa: E402
from skysift.simulate.priors import sample_parameters  # noqa: E402

SPACE = (30.0, 40.0)
SPIN = 0.3


@pytest.fixture(scope="module")
def small_bank():
    # 8 s at 512 Hz keeps it to seconds; heavy systems end below 256 Hz anyway.
    return stochastic_bank(SPACE, spin_max=SPIN, minimal_match=0.97, f_high=256.0, duration=8.0, patience=60, seed=3)


def _signals(n: int, seed: int) -> dict[str, np.ndarray]:
    return source_parameters(sample_parameters(intrinsic_priors("IMRPhenomD", SPACE, SPIN), n, np.random.default_rng(seed)))


def test_stochastic_bank_covers_its_space(small_bank):
    assert 2 <= small_bank["mass1"].size < 60
    assert np.all(small_bank["mass1"] >= small_bank["mass2"])
    assert np.all((small_bank["mass2"] >= SPACE[0]) & (small_bank["mass1"] <= SPACE[1]))
    assert np.all(np.abs(small_bank["spin1z"]) <= SPIN) and np.any(small_bank["spin1z"] != 0)
    factors = fitting_factors(small_bank, _signals(40, 11), f_high=256.0, duration=8.0)
    # Placement stops at ~1/patience uncovered: the 5th percentile is above the minimal match.
    assert np.percentile(factors, 5) >= 0.97
    assert factors.min() > 0.9


def test_fitting_factors_agree_with_bank_match(small_bank):
    signals = _signals(6, 12)
    ours = fitting_factors(small_bank, signals, f_high=1024.0, duration=8.0)
    theirs = bank_match(small_bank, signals, design_psd(2048.0, 8.0, f_low=18.0), duration=8.0)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_a_tighter_bank_is_larger():
    loose = stochastic_bank(SPACE, minimal_match=0.9, f_high=256.0, duration=8.0, patience=40, seed=3)
    tight = stochastic_bank(SPACE, minimal_match=0.98, f_high=256.0, duration=8.0, patience=40, seed=3)
    assert tight["mass1"].size > loose["mass1"].size
    with pytest.raises(ValueError):
        stochastic_bank(SPACE, minimal_match=1.0)


def test_bank_file_round_trip(tmp_path, small_bank):
    path = write_bank(small_bank, tmp_path / "bank.ecsv", minimal_match=0.97)
    back = read_bank(path)
    for key in ("mass1", "mass2", "spin1z", "spin2z"):
        np.testing.assert_allclose(back[key], small_bank[key])
    (tmp_path / "bad.ecsv").write_text(path.read_text().replace("mass1", "m_one"))
    with pytest.raises(InputDataError, match="mass1"):
        read_bank(tmp_path / "bad.ecsv")


def test_merge_block_peaks_equals_clustering_the_whole():
    from skysift.gw.matched_filter import merge_block_peaks
    from skysift.gw.search import cluster_triggers

    fs, start = 2048.0, 100.0
    rng = np.random.default_rng(0)
    # Block peaks of two parts on the same 0.1 s (204-sample) blocks; the whole bank's is the louder.
    blocks = np.arange(300)
    offsets = rng.integers(0, 204, (2, blocks.size))
    stats = rng.uniform(4.0, 12.0, (2, blocks.size))
    times = start + (blocks * 204 + offsets) / fs
    louder = stats.argmax(axis=0)
    whole = cluster_triggers(times[louder, blocks], stats[louder, blocks], threshold=6.0, cluster_window=1.0)
    parts = [(times[k][stats[k] > 6.0], stats[k][stats[k] > 6.0]) for k in (0, 1)]  # a part drops what is below threshold
    merged = merge_block_peaks([p[0] for p in parts], [p[1] for p in parts], start_time=start, sample_rate=fs)
    np.testing.assert_array_equal(merged[0], whole[0])
    np.testing.assert_array_equal(merged[1], whole[1])
