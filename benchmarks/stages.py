"""Benchmark: end-to-end training-set stages beside their kernels (lens and GW).

Run from the repository root::

    .venv/bin/python benchmarks/stages.py [--lens 30000] [--gw 48000] [--repeats 3]
        [--baseline-src /path/to/older/src]

Each stage is timed as the workflow rule runs it: a fresh ``python -m skysift
lens simulate`` / ``gw simulate`` process (imports, Dask start-up, simulation,
writing the HDF5 product), wall clock, on all the cores this process may use.
Its rate is printed beside the kernel rate measured in this run (one core,
one thread, CPU time: ``LensSimulator.simulate`` of 512 images, adaptive
ss=3, eager; ``simulate_gw_batch`` of 512 samples), with the ratio stage /
(kernel x cores). With ``--baseline-src`` the same commands run against an
older checkout's ``src`` (the peer), interleaved with this one, and the
speed-up is printed; the two lens products of the first repeat (same seed) are
then compared: which per-sample columns are identical, and two-sample KS tests
and the largest differences of per-image statistics (total flux, pixel spread,
arc S/N, magnification, Einstein radius) and of the kinds' shares. Rates are
medians over ``--repeats``; the load average is printed with each run, since
other jobs on a shared machine slow the stage.

Targets (issue 22): lens stage >= 3,000 images/s and GW stage >= 500 samples/s
on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"lens": 3000.0, "gw": 500.0}


def stage_seconds(
    stage: str, n: int, src: Path, out: Path, cluster: str = "local", keep: Path | None = None
) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and its children) of a fresh stage process writing
    ``out`` (moved to ``keep`` if given, else deleted)."""
    command = [sys.executable, "-m", "skysift", stage, "simulate", "--out", str(out), "--seed", "17",
               "--n-samples", str(n)] + (["--cluster", cluster] if stage == "gw" else [])  # lens: its own worker processes
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(src)}, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if keep is not None:
        out.replace(keep)
    else:
        out.unlink()
    return seconds, cpu


def compare_lens_products(this: Path, baseline: Path) -> None:
    """Print how the lens product of this checkout differs from the baseline's (same seed and size)."""
    from scipy import stats

    sys.path.insert(0, str(ROOT / "src"))
    from skysift.io import read_product

    new, old = read_product(this), read_product(baseline)
    identical, different = [], []
    for name in old.table.colnames:
        a, b = np.asarray(old.table[name]), np.asarray(new.table[name])
        same = np.array_equal(a, b) if a.dtype.kind in "OSU" else np.array_equal(a, b, equal_nan=True)
        (identical if same else different).append(name)
    print(f"lens products: {len(identical)} of {len(old.table.colnames)} columns identical; different: "
          f"{', '.join(different) or 'none'}")
    # A lens whose arc S/N moves across the cut redraws, and the rest of its batch takes other draws.
    same_draws = np.all([np.asarray(old.table[name]) == np.asarray(new.table[name])
                         for name in ("theta_E", "source_mag", "lens_mag", "seeing")], axis=0)
    print(f"  samples with the same drawn parameters: {same_draws.mean():.1%}")
    a, b = old.arrays["image"], new.arrays["image"]
    if same_draws.any():  # none where the random stream changed
        peak = np.abs(a).max(axis=(1, 2, 3))
        difference = (np.abs(a - b).max(axis=(1, 2, 3)) / peak)[same_draws]
        print(f"  images of those samples: largest difference {difference.max():.2e} of the image peak (median "
              f"{np.median(difference):.1e})")
    statistics = {"total flux": (a.sum(axis=(1, 2, 3)), b.sum(axis=(1, 2, 3))),
                  "pixel std": (a.std(axis=(1, 2, 3)), b.std(axis=(1, 2, 3)))}
    for name in ("arc_snr", "magnification", "theta_E"):
        x, y = np.asarray(old.table[name], dtype=float), np.asarray(new.table[name], dtype=float)
        statistics[name] = (x[np.isfinite(x)], y[np.isfinite(y)])
    for name, (x, y) in statistics.items():
        print(f"  {name:13s} KS p = {stats.ks_2samp(x, y, method='asymp').pvalue:.3f}, medians {np.median(x):.4g} "
              f"(baseline) / {np.median(y):.4g}")
    kinds_old, kinds_new = np.asarray(old.table["kind"]), np.asarray(new.table["kind"])
    shares = {k: (np.mean(kinds_old == k), np.mean(kinds_new == k)) for k in np.unique(kinds_old)}
    print("  kinds' shares (baseline / this): " + ", ".join(f"{k} {x:.3f}/{y:.3f}" for k, (x, y) in shares.items()))


KERNEL = {
    "lens": """
import time, numpy as np, torch
torch.set_num_threads(1)
from skysift.lens.simulator import LensSimulator
s = LensSimulator("lsst", 64, 3, chunk_size=64, adaptive_supersampling=True); rng = np.random.default_rng(0)
s.simulate(s.draw_parameters(512, rng), rng); t = []
for _ in range(3):
    p = s.draw_parameters(512, rng); c = time.process_time(); s.simulate(p, rng); t.append(time.process_time() - c)
print(512 / np.median(t))
""",
    "gw": """
import time, numpy as np
import inspect
from skysift.memory import retain_freed_memory
from skysift.gw.dataset import GWSampleConfig, make_gw_training_set, simulate_gw_batch
retain_freed_memory()  # as the `skysift` command does
chunk = inspect.signature(make_gw_training_set).parameters["chunk_size"].default  # the stage's task size
config = GWSampleConfig(); simulate_gw_batch(8, 8, seed=0, config=config); t = []
for seed in range(3):
    c = time.process_time()
    for k in range(512 // chunk):
        simulate_gw_batch(chunk // 2, chunk - chunk // 2, seed=100 * seed + k, config=config)
    t.append(time.process_time() - c)
print(512 / np.median(t))
""",
}


def kernel_rate(stage: str, src: Path) -> float:
    """Kernel rate per core (one thread, CPU time) in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", KERNEL[stage]], check=True, env=env, cwd=ROOT,
                            capture_output=True, text=True)
    return float(result.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lens", type=int, default=30000, help="lens images (0: skip)")
    parser.add_argument("--gw", type=int, default=48000, help="GW samples (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, default=None, help="an older checkout's src/ (the peer)")
    parser.add_argument("--cluster", default="local", choices=("local", "none"),
                        help="the GW stage's Dask cluster: local (worker processes, the workflow's default) or none (threads)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sources = {"this": ROOT / "src"} | ({"baseline": args.baseline_src.resolve()} if args.baseline_src else {})
    with tempfile.TemporaryDirectory() as scratch:
        for stage, n in (("lens", args.lens), ("gw", args.gw)):
            if not n:
                continue
            kernel = kernel_rate(stage, sources["this"])
            seconds: dict[str, list[float]] = {name: [] for name in sources}
            cpu: dict[str, list[float]] = {name: [] for name in sources}
            kept = {name: Path(scratch) / f"{stage}-{name}.h5" for name in sources}
            for repeat in range(args.repeats):
                for name, src in sources.items():  # interleaved: the load changes during the run
                    keep = kept[name] if stage == "lens" and repeat == 0 and "baseline" in sources else None
                    wall, used = stage_seconds(stage, n, src, Path(scratch) / f"{stage}.h5", args.cluster, keep)
                    seconds[name].append(wall)
                    cpu[name].append(used)
                    # CPU time is what other jobs on a shared box disturb least: n / (CPU / cores) is the
                    # rate on idle cores if the stage kept them all busy.
                    print(f"  {stage} {name} run {repeat + 1}: {n / wall:8.1f}/s, CPU {1e3 * used / n:.3f} ms per "
                          f"item ({n / (used / cores):.0f}/s if CPU-bound on {cores} idle cores; load average "
                          f"{os.getloadavg()[0]:.2f})", flush=True)
            rate = n / float(np.median(seconds["this"]))
            print(f"{stage}: kernel {kernel:8.1f}/s per core (one thread, CPU time); whole stage {rate:8.1f}/s on "
                  f"{cores} cores ({n} items, median of {args.repeats} fresh processes); stage / (kernel x cores) = "
                  f"{rate / (kernel * cores):.2f}; target >= {TARGETS[stage]:.0f}/s: "
                  f"{'met' if rate >= TARGETS[stage] else 'NOT met'}")
            print(f"{stage}: CPU {1e3 * np.median(cpu['this']) / n:.3f} ms per item (median), all processes included")
            if "baseline" in seconds:
                baseline = n / float(np.median(seconds["baseline"]))
                print(f"{stage}: baseline stage {baseline:8.1f}/s, CPU {1e3 * np.median(cpu['baseline']) / n:.3f} ms "
                      f"per item; this / baseline = {rate / baseline:.2f} (wall), "
                      f"{np.median(cpu['baseline']) / np.median(cpu['this']):.2f} (CPU)")
                if stage == "lens":
                    compare_lens_products(kept["this"], kept["baseline"])


if __name__ == "__main__":
    main()
