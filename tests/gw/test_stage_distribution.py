"""The GW training-set stage: thread-pipelined chunks give the product the serial path gives, with its statistics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycbc")

from scipy import stats  # noqa: E402

from skysift.context import RunContext  # noqa: E402
from skysift.gw.dataset import make_gw_training_set  # noqa: E402
from skysift.io import read_product  # noqa: E402

N = 96


def test_threaded_stage_equals_serial_and_keeps_statistics(tmp_path):
    threaded = read_product(make_gw_training_set(tmp_path / "threads.h5", N, seed=3, chunk_size=16,
                                                 context=RunContext(scheduler="threads")))
    serial = read_product(make_gw_training_set(tmp_path / "sync.h5", N, seed=3, chunk_size=16,
                                               context=RunContext(scheduler="sync")))
    np.testing.assert_array_equal(threaded.arrays["strain"], serial.arrays["strain"])
    np.testing.assert_array_equal(threaded.table["network_snr"], serial.table["network_snr"])
    table, strain = threaded.table, threaded.arrays["strain"]
    labels = np.asarray(table["label"])
    assert labels.sum() == N // 2
    # Whitened noise has unit variance (4096 samples per detector and sample: 1 % rms per estimate).
    noise_std = strain[labels == 0].std(axis=-1)
    assert abs(float(np.median(noise_std)) - 1.0) < 0.05
    # Network SNRs of the signals follow the prior, uniform on [5, 20].
    snr = np.asarray(table["network_snr"])[labels == 1]
    assert stats.kstest(snr, "uniform", args=(5.0, 15.0)).pvalue > 0.001
    np.testing.assert_allclose(np.hypot(table["snr_H1"], table["snr_L1"])[labels == 1], snr, rtol=1e-6)
