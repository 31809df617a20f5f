"""Training throughput on a product 4x larger than the in-memory limit: streamed by chunks against in memory.

Writes a GW-like training set (N x 2 x 2048 float32 whitened "strain", half with a
sine-Gaussian burst) of ``--factor`` times ``--limit-gib`` with ``skysift.io.ProductWriter``,
then trains the ``gw`` task's model (George & Huerta CNN) with the project's trainer
(``skysift.train.trainer.train``) for ``--steps`` steps of ``--batch-size``, twice in the same run:

* in memory: ``train.memory_limit_gib`` raised above the product, which is loaded before the clock starts;
* out of core: ``train.memory_limit_gib = --limit-gib``, so the product streams from disk by chunks,
  decompressed in ``--workers`` DataLoader worker(s) (:class:`skysift.train.data.ChunkStream`).

It prints the trainer's samples/s of each (``metrics.csv``; the epoch's wall time, worker start-up
and the first window's read included) and the ratio out-of-core / in-memory (target >= 0.8), and
checks that both runs end with the same weights (identical batches). The named peer is the path
this replaced: batches of random samples read with one sorted h5py selection
(``ProductDataset.__getitem__``), from the same data written as products were before (gzip level 4),
with the same model step, for ``--peer-steps`` steps. ``--filters`` also times writing and reading
the strain with the HDF5 filters considered for products.

Usage: ``.venv/bin/python benchmarks/training_throughput.py [--limit-gib 0.25 --factor 4 --steps 150]``.
The product lies in the page cache after writing (the machine has more memory than the
product); the out-of-core path pays decompression, not disk reads.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from skysift.io import ProductWriter
from skysift.provenance import Provenance
from skysift.train.config import TrainConfig
from skysift.train.data import EpochBatches, ProductDataset, epoch_loader
from skysift.train.tasks import get_task
from skysift.train.trainer import train

SAMPLE_SHAPE = (2, 2048)
SAMPLE_RATE = 2048.0


def write_strain_product(path: Path, n_samples: int, *, compression_level: int | None = None, seed: int = 0) -> Path:
    """Unit-variance noise in two detectors; label 1 adds a sine-Gaussian burst (SNR ~ 8-20) to both."""
    rng = np.random.default_rng(seed)
    provenance = Provenance.collect(rule="benchmark", config={}, seed=seed)
    options = {} if compression_level is None else {"compression_level": compression_level}
    time_axis = np.arange(SAMPLE_SHAPE[1]) / SAMPLE_RATE
    with ProductWriter(path, "training-set", provenance, **options) as writer:
        writer.add_array("strain", SAMPLE_SHAPE, "float32", description="GW-like whitened strain")
        writer.add_column("label", "int8")
        for start in range(0, n_samples, 4096):
            n = min(4096, n_samples - start)
            strain = rng.standard_normal((n, *SAMPLE_SHAPE), dtype=np.float32)
            labels = rng.integers(0, 2, n).astype(np.int8)
            centre = rng.uniform(0.3, 0.7, (n, 1))
            frequency = rng.uniform(40.0, 300.0, (n, 1))
            width = rng.uniform(0.01, 0.05, (n, 1))
            amplitude = rng.uniform(8.0, 20.0, (n, 1)) / np.sqrt(width * SAMPLE_RATE * np.sqrt(np.pi) / 2)
            burst = amplitude * np.exp(-(((time_axis - centre) / width) ** 2)) * np.sin(2 * np.pi * frequency * time_axis)
            strain += (labels[:, None, None] * burst[:, None, :]).astype(np.float32)
            writer.append({"strain": strain}, {"label": labels})
    return path


def trainer_rate(product: Path, outdir: Path, *, steps: int, batch_size: int, memory_limit_gib: float, workers: int,
                 threads: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Samples/s of one epoch of ``steps`` steps of the project's trainer, and the final weights."""
    config = TrainConfig(epochs=1, batch_size=batch_size, max_steps_per_epoch=steps, val_fraction=0.02, test_fraction=0.0,
                         patience=0, seed=0, num_workers=workers, memory_limit_gib=memory_limit_gib, device="cpu",
                         threads=threads)
    train("gw", product, outdir, config)
    with (outdir / "metrics.csv").open() as stream:
        rate = float(next(csv.DictReader(stream))["samples_per_second"])
    return rate, torch.load(outdir / "model.pt", weights_only=True)


def stream_rate(product: Path, *, steps: int, batch_size: int, memory_limit_gib: float, workers: int) -> float:
    """Samples/s of the out-of-core data path alone (no model): the headroom over the model's rate."""
    dataset = ProductDataset(product, ("strain",), memory_limit_bytes=int(memory_limit_gib * 2**30))
    sampler = EpochBatches(np.arange(len(dataset)), batch_size, seed=0, epoch=0, max_steps=steps, block_size=dataset.block_size,
                           window_blocks=dataset.window_blocks(TrainConfig().shuffle_buffer_mib * 2**20))
    start = time.perf_counter()
    for _ in epoch_loader(dataset, sampler, num_workers=workers):
        pass
    return steps * batch_size / (time.perf_counter() - start)


def random_read_rate(product: Path, *, steps: int, batch_size: int, threads: int) -> float:
    """Samples/s of the replaced path: random batches read sample-wise from chunks, then the same model step."""
    torch.set_num_threads(threads)
    dataset = ProductDataset(product, ("strain",), in_memory=False)
    model = get_task("gw").build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    order = np.random.default_rng(0).permutation(len(dataset))
    start = time.perf_counter()
    for step in range(steps):
        (strain,), labels = dataset[order[step * batch_size : (step + 1) * batch_size]]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(strain), labels)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def filter_table(path: Path, n_samples: int = 8192) -> None:
    """Write and read MB/s and stored fraction of the strain under each candidate filter (1 MiB chunks)."""
    strain = np.random.default_rng(1).standard_normal((n_samples, *SAMPLE_SHAPE), dtype=np.float32)
    megabytes = strain.nbytes / 1e6
    filters = {"gzip 4 + shuffle (before)": dict(compression="gzip", compression_opts=4, shuffle=True),
               "gzip 1 + shuffle (now)": dict(compression="gzip", compression_opts=1, shuffle=True),
               "lzf + shuffle": dict(compression="lzf", shuffle=True), "none": {}}
    print(f"filters on {n_samples} GW-like samples ({megabytes:.0f} MB), 64-sample chunks, best of 3:")
    for name, options in filters.items():
        write, read = np.inf, np.inf
        for _ in range(3):
            start = time.perf_counter()
            with h5py.File(path, "w") as handle:
                handle.create_dataset("strain", data=strain, chunks=(64, *SAMPLE_SHAPE), **options)
            write = min(write, time.perf_counter() - start)
            start = time.perf_counter()
            with h5py.File(path, "r") as handle:
                handle["strain"][()]
            read = min(read, time.perf_counter() - start)
        print(f"  {name:26s} stored {path.stat().st_size / strain.nbytes:.3f}  write {megabytes / write:6.0f} MB/s"
              f"  read {megabytes / read:6.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-gib", type=float, default=0.25, help="in-memory limit of the out-of-core run")
    parser.add_argument("--factor", type=float, default=4.0, help="product size over the limit")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the out-of-core run")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--peer-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (in memory, out of core), alternating")
    parser.add_argument("--filters", action="store_true", help="also time the candidate HDF5 filters")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the products are written and kept for later runs (default: a temporary directory)")
    arguments = parser.parse_args()
    n_samples = int(arguments.factor * arguments.limit_gib * 2**30 // (4 * np.prod(SAMPLE_SHAPE)))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch {torch.__version__}, "
          f"{arguments.threads} torch threads, h5py {h5py.__version__}")
    with tempfile.TemporaryDirectory() as temporary:
        work = arguments.workdir or Path(temporary)  # a given workdir keeps the products for the next run
        work.mkdir(parents=True, exist_ok=True)
        if arguments.filters:
            filter_table(work / "filters.h5")
        product, old_product = work / f"strain-{n_samples}.h5", work / f"strain-{n_samples}-gzip4.h5"
        start = time.perf_counter()
        if not product.exists():
            write_strain_product(product, n_samples)
        print(f"product: {n_samples} samples of 2 x 2048 float32 = {n_samples * 16384 / 2**30:.2f} GiB "
              f"({arguments.factor:g}x the {arguments.limit_gib:g} GiB limit), {product.stat().st_size / 2**30:.2f} GiB "
              f"on disk ({time.perf_counter() - start:.0f} s to write or find)")
        rates: dict[str, list[float]] = {"in memory": [], "out of core": []}
        weights = {}
        for round_number in range(arguments.repeats):
            for name, limit in (("in memory", 4 * arguments.factor * arguments.limit_gib), ("out of core", arguments.limit_gib)):
                outdir = Path(temporary) / f"{name.replace(' ', '-')}-{round_number}"
                rate, weights[name] = trainer_rate(product, outdir, steps=arguments.steps, batch_size=arguments.batch_size,
                                                   memory_limit_gib=limit, workers=arguments.workers, threads=arguments.threads)
                rates[name].append(rate)
                print(f"  round {round_number + 1}: {name:11s} {rate:7.0f} samples/s  (load average {os.getloadavg()[0]:.2f})",
                      flush=True)
        alone = stream_rate(product, steps=arguments.steps, batch_size=arguments.batch_size, memory_limit_gib=arguments.limit_gib,
                            workers=arguments.workers)
        identical = all(torch.equal(weights["in memory"][k], weights["out of core"][k]) for k in weights["in memory"])
        if not old_product.exists():
            write_strain_product(old_product, n_samples, compression_level=4)
        peer = random_read_rate(old_product, steps=arguments.peer_steps, batch_size=arguments.batch_size, threads=arguments.threads)
    best = {name: max(values) for name, values in rates.items()}
    paired = [ooc / memory for memory, ooc in zip(rates["in memory"], rates["out of core"])]
    print(f"{arguments.steps} steps of {arguments.batch_size}, best of {arguments.repeats} (load average now "
          f"{os.getloadavg()[0]:.2f}):")
    print(f"  in memory                  {best['in memory']:7.0f} samples/s")
    print(f"  out of core ({arguments.workers} worker{'s' * (arguments.workers != 1)})     {best['out of core']:7.0f} samples/s")
    print(f"  out of core, data path alone (no model): {alone:7.0f} samples/s")
    print(f"  peer: random sample reads  {peer:7.0f} samples/s ({arguments.peer_steps} steps; "
          f"{arguments.batch_size / peer:.2f} s per batch)")
    print(f"  ratio out of core / in memory: {best['out of core'] / best['in memory']:.2f} of the best rates (target >= 0.8); "
          f"round by round {', '.join(f'{r:.2f}' for r in paired)}")
    print(f"  ratio out of core / random sample reads: {best['out of core'] / peer:.1f}x")
    print(f"  same final weights in memory and out of core: {identical}")


if __name__ == "__main__":
    main()
