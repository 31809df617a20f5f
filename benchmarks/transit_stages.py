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

``--baseline-src DIR`` (for example ``/work/main/src``) also runs another
checkout's code in a worker process on the same core, call for call in
alternation with this one (the order swapped every call) and on the same
seeds, and prints the paired rates and their ratio: on a shared, loaded
box both sides then see the same load, which separate runs a minute apart
do not.
"""

from __future__ import annotations

import _one_core  # noqa: F401  (first: one core, one thread)

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
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


def instrument() -> tuple[dict[str, float], dict[str, int]]:
    """Wrap every stage of :data:`STAGES` to add up its process time, and count the syntheses; returns both tallies."""
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
    return seconds, synthesised


def timed_call(seed: int) -> float:
    """Process time of one :func:`simulate_batch` call of :data:`FULL_MIX`."""
    start = time.process_time()
    dataset.simulate_batch(FULL_MIX, seed=seed)
    return time.process_time() - start


def serve() -> None:
    """Worker of ``--baseline-src``: one timed call per seed read from stdin, its time and stages as a JSON line."""
    seconds, _ = instrument()
    timed_call(0)
    for line in sys.stdin:
        seconds.clear()
        total = timed_call(int(line))
        print(json.dumps({"total": total, "stages": dict(seconds)}), flush=True)


def print_stages(seconds: dict[str, float], total: float, n_out: int) -> None:
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {name:24s} {1e3 * value / n_out:7.3f} ms per output  {100 * value / total:5.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8, help="timed simulate_batch calls (256 light curves each)")
    parser.add_argument("--baseline-src", help="another checkout's src directory, run call for call in alternation")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        serve()
        return
    baseline = None
    if arguments.baseline_src:
        environment = {**os.environ, "PYTHONPATH": os.path.abspath(arguments.baseline_src)}
        baseline = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, env=environment)  # fmt: skip
    seconds, synthesised = instrument()
    timed_call(0)
    seconds.clear()
    synthesised.clear()
    per_output = sum(FULL_MIX.values())
    load = os.getloadavg()[0]
    own, other = [], []
    other_seconds: dict[str, float] = defaultdict(float)
    for call in range(arguments.calls):
        seed = 1 + call
        if baseline is None:
            own.append(timed_call(seed))
            continue
        # Alternate which side goes first, so neither always follows the other's cache footprint.
        for side in ((0, 1) if call % 2 == 0 else (1, 0)):
            if side == 0:
                own.append(timed_call(seed))
            else:
                baseline.stdin.write(f"{seed}\n")
                baseline.stdin.flush()
                reply = json.loads(baseline.stdout.readline())
                other.append(reply["total"])
                for name, value in reply["stages"].items():
                    other_seconds[name] += value
    if baseline is not None:
        baseline.stdin.close()
        baseline.wait()
    total = sum(own)
    n_out = per_output * arguments.calls
    print(f"{arguments.calls} calls of simulate_batch ({per_output} light curves each), one core, "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"process time {total:.2f} s: {n_out / total:.0f} light curves/s/core, {1e3 * total / n_out:.3f} ms per output "
          f"light curve (target 2,000/s: 0.5 ms)")
    ratios = ", ".join(f"{kind} {synthesised[kind] / (FULL_MIX[kind] * arguments.calls):.3f}" for kind in FULL_MIX)
    print(f"synthesised per output: {sum(synthesised.values()) / n_out:.3f} ({ratios})")
    print_stages(seconds, total, n_out)
    if baseline is not None:
        paired = sorted(b / a for a, b in zip(own, other))
        print(f"baseline ({arguments.baseline_src}), the same seeds in alternation: {n_out / sum(other):.0f} light curves/s/core, "
              f"{1e3 * sum(other) / n_out:.3f} ms per output light curve; this code / baseline speed: "
              f"{sum(other) / total:.3f}x overall, per call median {paired[len(paired) // 2]:.3f}x "
              f"(range {paired[0]:.3f}-{paired[-1]:.3f}x)")
        print_stages(other_seconds, sum(other), n_out)


if __name__ == "__main__":
    main()
