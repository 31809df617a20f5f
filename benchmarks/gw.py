"""Benchmark: two-detector GW training samples per second per core, fast path vs per-sample PyCBC.

Run from the repository root::

    .venv/bin/python benchmarks/gw.py

Pinned to one core (affinity where the OS allows, one BLAS/OpenMP thread);
each rate is the median of ``REPEATS`` timed runs after a warm-up (PyCBC
imports and LAL setup excluded). Samples: 1 s at 2048 Hz cut from a 4 s
buffer, H1 and L1, half signals (IMRPhenomD, masses 10-50, network SNR 5-20),
half noise, aLIGOZeroDetHighPower noise, whitened and band-passed 20-500 Hz.

* ``peer``: :func:`skysift.gw.dataset.simulate_gw_sample_pycbc`, one sample at
  a time: ``noise_from_psd`` per detector, ``get_td_waveform``,
  ``Detector.project_wave``, ``pycbc.filter.sigma`` SNR rescaling,
  ``TimeSeries.psd`` (Welch) and whitening.
* ``fast (welch)``: :func:`skysift.gw.dataset.simulate_gw_batch`, the default
  training-set path: FD waveforms reused for ``reuse`` extrinsic draws, FD
  projection, FD coloured noise in batches, batched Welch PSD and whitening.
* ``fast (analytic)``: the same with analytic whitening by the known PSD.
* XPHM rows: IMRPhenomXPHM (precessing, higher modes) instead.

The target (issue "Gravitational-wave training set and detector") is
>= 300 samples per second per core; the ratio to the peer is printed.
"""

from __future__ import annotations

import os

import _one_core  # noqa: F401  (first: one core, one thread)

import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from skysift.gw.dataset import GWSampleConfig, _draw_signals, simulate_gw_batch, simulate_gw_sample_pycbc  # noqa: E402

REPEATS = 3
BATCH = 512
PEER_SAMPLES = 40
TARGET = 300.0


def median_rate(function, n_items: int) -> float:
    """Items per second from the median of ``REPEATS`` timed calls (the box may be shared)."""
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return n_items / float(np.median(seconds))


def peer_rate(config: GWSampleConfig) -> float:
    params, _ = _draw_signals(PEER_SAMPLES // 2, config, np.random.default_rng(1))
    samples = [{k: v[i] for k, v in params.items()} for i in range(PEER_SAMPLES // 2)] + [{}] * (PEER_SAMPLES // 2)

    def run() -> None:
        for seed, sample in enumerate(samples):
            simulate_gw_sample_pycbc(sample, seed=seed, config=config)

    simulate_gw_sample_pycbc(samples[0], seed=0, config=config)
    return median_rate(run, len(samples))


def fast_rate(config: GWSampleConfig) -> float:
    simulate_gw_batch(8, 8, seed=0, config=config)
    return median_rate(lambda: simulate_gw_batch(BATCH // 2, BATCH // 2, seed=1, config=config), BATCH)


def waveform_rate(approximant: str) -> float:
    from skysift.gw.waveforms import fd_waveforms

    config = GWSampleConfig(approximant=approximant)
    params, _ = _draw_signals(32, GWSampleConfig(approximant=approximant, reuse=1), np.random.default_rng(2))
    n_freq = config.n_buffer // 2 + 1
    return median_rate(lambda: fd_waveforms(params, approximant=approximant, delta_f=1 / config.buffer_duration, n_freq=n_freq, max_duration=config.max_inspiral), 32)


def main() -> None:
    warnings.simplefilter("ignore")  # LAL/PyCBC import chatter; not a benchmark concern
    print(f"cpu affinity: {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'n/a'}, 1 thread")
    rows = []
    peer = peer_rate(GWSampleConfig())
    rows.append(("peer: per-sample PyCBC (IMRPhenomD)", peer))
    for label, config in [
        ("fast, welch whitening, IMRPhenomD, reuse 4", GWSampleConfig()),
        ("fast, welch whitening, IMRPhenomD, reuse 1", GWSampleConfig(reuse=1)),
        ("fast, analytic whitening, IMRPhenomD, reuse 4", GWSampleConfig(whitening="analytic")),
        ("fast, welch whitening, IMRPhenomXPHM, reuse 4", GWSampleConfig(approximant="IMRPhenomXPHM")),
        ("fast, welch whitening, IMRPhenomXPHM, reuse 16", GWSampleConfig(approximant="IMRPhenomXPHM", reuse=16)),
    ]:
        rows.append((label, fast_rate(config)))
    print(f"{'path':50s} {'samples/s/core':>15s} {'x peer':>8s} {'>= 300?':>8s}")
    for label, rate in rows:
        print(f"{label:50s} {rate:15.1f} {rate / peer:8.1f} {'yes' if rate >= TARGET else 'no':>8s}")
    for approximant in ("IMRPhenomD", "IMRPhenomXPHM"):
        print(f"FD waveforms/s/core, {approximant} (4 s buffer, from 20 Hz): {waveform_rate(approximant):.1f}")


if __name__ == "__main__":
    main()
