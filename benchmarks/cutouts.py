"""Throughput of :func:`skysift.cutouts.extract_triplets` against a loop of astropy ``Cutout2D``.

Three in-memory 2048 x 2048 float32 images, 10,000 random positions (5% of them
within half a stamp of an edge); skysift cuts the 63 x 63 triplets in one call,
the peer loops over positions calling ``Cutout2D(image, (x, y), 63,
mode="partial", fill_value=nan)`` on each of the three images. Both see the same
positions; the peer's stamps are checked equal to skysift's on a subset. Prints
triplets/s for both and the ratio (targets: >= 50,000 triplets/s and >= 20x),
and the memory bounds: the rate of copying the same bytes from a contiguous
array into a reused array, and into freshly allocated memory.

The headline writes into one output buffer reused call after call (its pages
touched once before timing), which is how ``make_cutouts`` streams candidates
in batches; the rate with fresh output arrays on every call, where the kernel
zeroes the new pages (about a third of the time), is printed beside it. The
Cutout2D loop's small per-stamp arrays come from recycled heap memory.

``extract_triplets`` shares the copy among threads (numpy releases the GIL while
copying), by default one per CPU this process may use; the Cutout2D loop is one
Python thread whatever the machine. The headline uses the default; the
single-thread rate and ratio are printed beside it, and the memory bound is
measured with the same number of threads.

Usage: ``.venv/bin/python benchmarks/cutouts.py [--positions 10000] [--size 63] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.nddata import Cutout2D

from skysift.cutouts import Triplets, extract_triplets
from skysift.cutouts.extract import _usable_cpus


def _best_of(function, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _cutout2d_loop(images, x, y, size):
    out = np.empty((len(x), 3, size, size), dtype=np.float32)
    for index, (xi, yi) in enumerate(zip(x, y, strict=True)):
        for channel, image in enumerate(images):
            out[index, channel] = Cutout2D(image, (xi, yi), size, mode="partial", fill_value=np.nan, copy=True).data
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=2048)
    parser.add_argument("--size", type=int, default=63)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each method; the best counts (the peer too)")
    parser.add_argument("--peer-positions", type=int, default=2_000,
                        help="positions timed for the Cutout2D loop (its rate is per position, so a subset suffices)")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    side, n, size = arguments.image_size, arguments.positions, arguments.size
    images = [rng.normal(100.0, 10.0, size=(side, side)).astype(np.float32) for _ in range(3)]
    x = rng.uniform(0, side - 1, n)
    y = rng.uniform(0, side - 1, n)
    near_edge = rng.random(n) < 0.05
    x[near_edge] = rng.choice([0.0, side - 1.0], near_edge.sum()) + rng.uniform(-size / 2, size / 2, near_edge.sum())
    x = np.clip(x, -size / 2 + 1, side - 1 + size / 2 - 1)

    # The thread count extract_triplets uses by default, so the bound is measured like-for-like.
    workers = _usable_cpus()
    # Headline: into one output buffer reused call after call, as make_cutouts streams its
    # batches (its pages were touched once, before timing).
    buffer = Triplets(np.ones((n, 3, size, size), dtype=np.float32), np.ones((n, size, size), dtype=bool))
    ours = _best_of(lambda: extract_triplets(*images, x, y, size=size, out=buffer), arguments.repeats)
    ours_single = _best_of(lambda: extract_triplets(*images, x, y, size=size, workers=1, out=buffer), arguments.repeats)
    # Fresh output arrays every call: the kernel zeroes their pages on first touch.
    del buffer
    fresh = _best_of(lambda: extract_triplets(*images, x, y, size=size), arguments.repeats)
    # The floors: copy the same number of bytes from a contiguous source into a
    # reused destination, and into freshly allocated memory, split among the
    # same number of threads.
    source = np.empty((n, 3, size, size), dtype=np.float32)
    source.fill(1.0)
    destination = np.ones_like(source)

    def copy(out: np.ndarray | None = None) -> None:
        out = np.empty_like(source) if out is None else out
        bounds = np.linspace(0, n, workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda i: np.copyto(out[bounds[i]:bounds[i + 1]], source[bounds[i]:bounds[i + 1]]), range(workers)))

    copy_bound = _best_of(lambda: copy(destination), arguments.repeats)
    del destination
    bound = _best_of(copy, arguments.repeats)
    del source
    n_peer = min(n, arguments.peer_positions)
    peer = _best_of(lambda: _cutout2d_loop(images, x[:n_peer], y[:n_peer], size), arguments.repeats)

    check = min(n_peer, 500)
    cutouts, _ = extract_triplets(*images, x[:check], y[:check], size=size)
    reference = _cutout2d_loop(images, x[:check], y[:check], size)
    if not np.array_equal(cutouts, reference, equal_nan=True):
        raise SystemExit("skysift cutouts differ from Cutout2D")

    ours_rate = n / ours
    peer_rate = n_peer / peer
    print(f"images 3 x {side}x{side} float32, {n} positions ({near_edge.sum()} near an edge), stamps {size}x{size}")
    print(f"skysift extract_triplets : {ours_rate:12,.0f} triplets/s  ({ours * 1e3:.1f} ms for {n}, best of "
          f"{arguments.repeats}, {workers} threads, into a reused buffer as make_cutouts streams)")
    print(f"  the same, one thread   : {n / ours_single:12,.0f} triplets/s  (ratio {n / ours_single / peer_rate:.1f} x)")
    print(f"  fresh output arrays    : {n / fresh:12,.0f} triplets/s  (ratio {n / fresh / peer_rate:.1f} x; "
          f"{workers} threads, the kernel zeroes the new pages)")
    print(f"astropy Cutout2D loop    : {peer_rate:12,.0f} triplets/s  ({peer:.2f} s for {n_peer})")
    print(f"ratio                    : {ours_rate / peer_rate:12.1f} x")
    megabytes = n * 3 * size * size * 4 / 2**20
    print(f"memory bound (copy)      : {n / copy_bound:12,.0f} triplets/s  ({copy_bound * 1e3:.1f} ms to copy "
          f"{megabytes:.0f} MiB into a reused array; skysift reaches {copy_bound / ours:.0%} of it)")
    print(f"  (alloc+copy)           : {n / bound:12,.0f} triplets/s  ({bound * 1e3:.1f} ms into fresh memory; "
          f"fresh skysift reaches {bound / fresh:.0%} of it)")
    print(f"targets                  : >= 50,000 triplets/s {'met' if ours_rate >= 5e4 else 'NOT met'}, "
          f">= 20x {'met' if ours_rate / peer_rate >= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
