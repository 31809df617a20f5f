"""Throughput of skysift's atomic, chunked, compressed HDF5 products against plain writers.

Writes and reads a cutout-like training set (N x 3 x 63 x 63 float32, plus a per-sample
table) with ``skysift.io.write_product`` / ``read_product`` and, in the same run, with
plain h5py (contiguous, uncompressed, not atomic) and ``numpy.save``; prints MB/s and the
ratios. Usage: ``.venv/bin/python benchmarks/product_io.py [--samples 20000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from skysift.io import read_product, write_product
from skysift.provenance import Provenance


def _timed(function, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20000)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    # Realistic content: background noise plus a source, so compression is honest.
    cutouts = rng.normal(100.0, 10.0, size=(arguments.samples, 3, 63, 63)).astype(np.float32)
    labels = rng.integers(0, 2, arguments.samples).astype(np.int8)
    megabytes = cutouts.nbytes / 1e6
    provenance = Provenance.collect(rule="benchmark", config={})
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        timings = {
            "skysift write": _timed(lambda: write_product(work / "s.h5", product_type="bench", provenance=provenance,
                                                          arrays={"cutout": cutouts}, table={"label": labels})),
            "h5py write": _timed(lambda: _h5py_write(work / "p.h5", cutouts, labels)),
            "numpy.save": _timed(lambda: np.save(work / "n.npy", cutouts)),
            "skysift read": _timed(lambda: read_product(work / "s.h5")),
            "h5py read": _timed(lambda: _h5py_read(work / "p.h5")),
            "numpy.load": _timed(lambda: np.load(work / "n.npy")),
        }
        sizes = {"skysift": (work / "s.h5").stat().st_size / 1e6, "h5py": (work / "p.h5").stat().st_size / 1e6}
    print(f"{arguments.samples} samples of 3x63x63 float32 = {megabytes:.0f} MB")
    for name, seconds in timings.items():
        print(f"  {name:14s} {seconds:7.3f} s  {megabytes / seconds:8.1f} MB/s")
    print(f"  file size: skysift {sizes['skysift']:.0f} MB (gzip+shuffle), plain h5py {sizes['h5py']:.0f} MB")
    print(f"  ratio write skysift/h5py: {timings['skysift write'] / timings['h5py write']:.2f}x time")
    print(f"  ratio read  skysift/h5py: {timings['skysift read'] / timings['h5py read']:.2f}x time")


def _h5py_write(path: Path, cutouts: np.ndarray, labels: np.ndarray) -> None:
    with h5py.File(path, "w") as handle:
        handle["cutout"] = cutouts
        handle["label"] = labels


def _h5py_read(path: Path) -> None:
    with h5py.File(path, "r") as handle:
        handle["cutout"][()]
        handle["label"][()]


if __name__ == "__main__":
    main()
