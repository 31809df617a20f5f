"""Where the transit training-set path spends its time: process time per stage, one core.

Run from the repository root::

    .venv/bin/python benchmarks/transit_stages.py [--calls 8]

Times ``REPEATS`` calls of :func:`skysift.transit.dataset.simulate_batch` (one
chunk of the stage: 256 light curves in the default mix) after a first call
that compiles or loads the kernels, with every stage function wrapped to add
up its process time (``time.process_time``: CPU time of this process, less
disturbed by other jobs than wall-clock time, though a loaded box still
slows caches and shared cores). Prints the rate, the milliseconds per
*output* light curve of each stage (stages nest: ``_simulate_round`` holds
the stars, signals, detrend and detection statistic;
``make_vetting_views`` the views, vetting statistics and scalars), and how
many light curves were synthesised per output one (the MES selection
redraws the undetected ones). The target of issue #22, 2,000 light
curves/s/core, is 0.5 ms per output light curve in all.
"""

from __future__ import annotations

import _one_core  # noqa: F401  (first: one core, one thread)

import argparse  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import skysift.transit.dataset as dataset  # noqa: E402
import skysift.transit.preprocess as preprocess  # noqa: E402

FULL_MIX = {"planet": 128, "eb": 51, "blend": 26, "noise": 51}
#: (module, function) pairs timed; names of the dataset module are the ones simulate_batch calls.
STAGES = (
    (dataset, "_simulate_round"),
    (dataset, "simulate_stars"),
    (dataset, "_signal"),
    (dataset, "inject_systematics"),
    (dataset, "transit_mask"),
    (dataset, "adaptive_spline_trend"),
    (dataset, "detection_statistic"),
    (dataset, "make_vetting_views"),
    (preprocess, "_binned_views"),
    (preprocess, "_vetting_statistics"),
    (preprocess, "_vetting_scalars"),
)


def timed(seconds: dict, label: str, function):
    """``function`` adding its process time to ``seconds[label]``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[label] += time.process_time() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8, help="timed simulate_batch calls (256 light curves each)")
    arguments = parser.parse_args()
    seconds: dict[str, float] = defaultdict(float)
    for module, name in STAGES:
        setattr(module, name, timed(seconds, name, getattr(module, name)))
    synthesised: dict[str, int] = defaultdict(int)
    simulate_round = dataset._simulate_round

    def counting_round(counts, *args, **kwargs):
        for kind, count in counts.items():
            synthesised[kind] += count
        return simulate_round(counts, *args, **kwargs)

    dataset._simulate_round = counting_round
    dataset.simulate_batch(FULL_MIX, seed=0)
    seconds.clear()
    synthesised.clear()
    load = os.getloadavg()[0]
    start = time.process_time()
    for call in range(arguments.calls):
        dataset.simulate_batch(FULL_MIX, seed=1 + call)
    total = time.process_time() - start
    n_out = sum(FULL_MIX.values()) * arguments.calls
    print(f"{arguments.calls} calls of simulate_batch ({sum(FULL_MIX.values())} light curves each), one core, "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"process time {total:.2f} s: {n_out / total:.0f} light curves/s/core, {1e3 * total / n_out:.3f} ms per output "
          f"light curve (target 2,000/s: 0.5 ms)")
    ratios = ", ".join(f"{kind} {synthesised[kind] / (FULL_MIX[kind] * arguments.calls):.3f}" for kind in FULL_MIX)
    print(f"synthesised per output: {sum(synthesised.values()) / n_out:.3f} ({ratios})")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {name:24s} {1e3 * value / n_out:7.3f} ms per output  {100 * value / total:5.1f} %")


if __name__ == "__main__":
    main()
