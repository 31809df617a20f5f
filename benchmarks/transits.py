"""Benchmark: injected transit light curves per second per core, including AstroNet views.

Run from the repository root::

    .venv/bin/python benchmarks/transits.py

Pinned to one core (``taskset``-style affinity where the OS allows, and one
BLAS/OpenMP thread); every rate is the median of ``REPEATS`` timed runs
(wall-clock time, so a loaded machine lowers every figure: compare the
ratios to batman, measured in the same run). Measures, on 4,000-cadence
Kepler long-cadence light curves with quadratic limb darkening:

* ``inject+views`` (the headline, the figure the >= 20,000/s/core target
  refers to): for every light curve, fresh float32 white noise at every
  cadence (:func:`skysift.transit.injection.gaussian_noise`, a 65,536-cell
  tabulated normal with exact tails; one 16-bit draw per cadence from
  xoshiro256++ streams seeded by the run's ``numpy`` Generator), the exact
  Mandel & Agol quadratic-LD transit multiplied in, in place
  (``inject_transits(..., out=flux)``: float64 model at the cadences near
  each transit, found per epoch in the sorted times, evaluated in vectorised
  blocks of independent points: :mod:`skysift.transit._transit_kernels`),
  phase fold, global view (2001 median bins) and local view (201
  overlapping median bins over +-4 durations), empty-bin interpolation,
  normalisation (median 0, min -1). The views come from one compiled pass
  per light curve (numba, :mod:`skysift.transit._kernels`): fold, medians
  of the small global bins from the values each keeps (closed forms up to
  four, a sorting network up to eight), a counting sort into local-view
  cells, a radix ranking and a sliding bit set for the overlapping local
  medians, all exact. The light curves (N, T) are materialised; nothing is
  reused between light curves or repeats. The kernels are compiled (or
  loaded from numba's cache) before timing.
* the same with ``numpy.random.Generator.standard_normal`` noise and with
  mean bins, to show what the noise generator and the median cost; and
  injection into existing light curves (one batch of distinct noisy light
  curves made before timing, each with its own planet, copied into a work
  buffer on every run so the stars stay untouched: what injecting into a
  pool of real or simulated stars costs, without making the stars).
* ``full synthetic`` (the stage rate, target >= 2,000/s/core and >= 0.3x
  batman): the training-set path a chunk of ``skysift transit simulate``
  runs (:func:`skysift.transit.dataset.simulate_batch`, 256 light curves a
  call, as the stage's default chunk): simulated stars with rotation,
  granulation and gaps (on the Kepler quarter grid, 4,160 cadences),
  planets, eclipsing binaries, blends and noise negatives made in the same
  pass, the transit-masked robust spline detrend with BIC-chosen knot
  spacing, the MES selection with its redraws, and every model input
  (global, local, secondary, odd and even views, eleven scalars). Timed
  after a first call that compiles or loads the kernels; that first call's
  time is printed too.
* ``batman``: batman computing only the model, one light curve at a time in a
  Python loop (one reused ``TransitModel``), for the same parameters.
"""

from __future__ import annotations

import os

import _one_core  # noqa: F401  (first: one core, one thread)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from skysift.simulate.priors import sample_parameters  # noqa: E402
from skysift.transit.dataset import simulate_batch  # noqa: E402
from skysift.transit.injection import PLANET_PRIORS, gaussian_noise, inject_transits, planet_parameters  # noqa: E402
from skysift.transit.preprocess import make_views  # noqa: E402

N_POINTS = 4000
CADENCE = 29.4244 / 1440.0
BATCH = 2000
REPEATS = 5
NOISE = 3e-4
#: One chunk of the stage (``chunk_size`` 256) in its default mix: half planets, negatives 0.4 EB, 0.2 blend, 0.4 noise.
FULL_CHUNK = 256
FULL_MIX = {"planet": 128, "eb": 51, "blend": 26, "noise": 51}
KERNEL_TARGET = 20_000
FULL_TARGET = 2_000
FULL_RATIO_TARGET = 0.3


def inject_and_view(
    time_grid: np.ndarray, params: dict, rng: np.random.Generator, statistic: str, noise: str = "table"
) -> tuple:
    """One batch: noisy float32 light curves, transits injected, both views made."""
    if noise == "table":
        flux = gaussian_noise(rng, (BATCH, N_POINTS), loc=1.0, scale=NOISE)
    else:
        flux = rng.standard_normal((BATCH, N_POINTS), dtype=np.float32) * np.float32(NOISE) + np.float32(1.0)
    # Into the fresh light curves in place: nothing else holds them, so no copy.
    flux = inject_transits(flux, time_grid, params, out=flux)
    return make_views(time_grid, flux, params["period"], params["t0"], params["duration"], statistic=statistic)


def median_rate(function, n_items: int) -> float:
    """Items per second from the median of ``REPEATS`` timed calls (the box may be shared)."""
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return n_items / float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full-only", action="store_true", help="only the full synthetic path and batman")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    time_grid = CADENCE * np.arange(N_POINTS)
    draws = sample_parameters({**PLANET_PRIORS}, BATCH, rng)
    params = planet_parameters(draws, 0.0)
    in_transit = np.mean(np.abs(np.mod(time_grid[None, :] - params["t0"][:, None] + params["period"][:, None] / 2, params["period"][:, None]) - params["period"][:, None] / 2) < params["duration"][:, None] / 2)
    print(f"light curves: {N_POINTS} cadences ({N_POINTS * CADENCE:.1f} d, Kepler LC), batch {BATCH}, "
          f"periods {params['period'].min():.1f}-{params['period'].max():.1f} d, {100 * in_transit:.1f}% of cadences in transit")
    print(f"one core: affinity {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}, 1 BLAS thread; median of {REPEATS}; "
          f"load average {os.getloadavg()[0]:.2f} at start")

    # The full path first: its first call compiles or loads every kernel it uses.
    start = time.perf_counter()
    simulate_batch(FULL_MIX, seed=0)
    first_call = time.perf_counter() - start
    full_rate = median_rate(lambda: simulate_batch(FULL_MIX, seed=1), FULL_CHUNK)

    if not arguments.full_only:
        # Compile (or load from numba's on-disk cache) the kernels outside the timed runs.
        for statistic in ("median", "mean"):
            inject_and_view(time_grid, params, rng, statistic)
        headline_rate = median_rate(lambda: inject_and_view(time_grid, params, rng, "median"), BATCH)
        numpy_noise_rate = median_rate(lambda: inject_and_view(time_grid, params, rng, "median", "numpy"), BATCH)
        mean_rate = median_rate(lambda: inject_and_view(time_grid, params, rng, "mean"), BATCH)
        stars = gaussian_noise(rng, (BATCH, N_POINTS), loc=1.0, scale=NOISE)
        injected = np.empty_like(stars)  # the stars stay untouched: each run copies them into this buffer
        existing_rate = median_rate(
            lambda: make_views(time_grid, inject_transits(stars, time_grid, params, out=injected), params["period"],
                               params["t0"], params["duration"]),
            BATCH,
        )  # fmt: skip
        noise_rate = median_rate(lambda: gaussian_noise(rng, (BATCH, N_POINTS), loc=1.0, scale=NOISE), BATCH)
        ones = np.ones((BATCH, N_POINTS), dtype=np.float32)
        model_only = median_rate(lambda: inject_transits(ones, time_grid, params), BATCH)
        fixed = inject_transits(gaussian_noise(rng, (BATCH, N_POINTS), loc=1.0, scale=NOISE), time_grid, params)
        views_only = median_rate(
            lambda: make_views(time_grid, fixed, params["period"], params["t0"], params["duration"]), BATCH
        )

    try:
        import batman
    except ImportError:
        batman_rate = None
    else:
        bp = batman.TransitParams()
        bp.t0, bp.per, bp.rp, bp.a, bp.inc = 0.0, 1.0, 0.1, 10.0, 90.0
        bp.ecc, bp.w, bp.u, bp.limb_dark = 0.0, 90.0, [0.3, 0.2], "quadratic"
        model = batman.TransitModel(bp, time_grid)
        inclination = np.degrees(np.arccos(params["b"] / params["a_rs"]))

        def batman_loop() -> None:
            for i in range(BATCH):
                bp.t0, bp.per, bp.rp, bp.a, bp.inc = params["t0"][i], params["period"][i], params["rp"][i], params["a_rs"][i], inclination[i]
                bp.u = [params["u1"][i], params["u2"][i]]
                model.light_curve(bp)

        batman_rate = median_rate(batman_loop, BATCH)

    if not arguments.full_only:
        print("headline (inject+views) includes, per light curve: fresh float32 white noise at all 4000 cadences")
        print("  (tabulated normal, skysift.transit.injection.gaussian_noise), exact Mandel & Agol quadratic-LD transit")
        print("  (float64, evaluated at the cadences near a transit, compiled) multiplied in place, phase fold, global view")
        print("  (2001 median bins) and local view (201 overlapping median bins over +-4 durations), empty-bin")
        print("  interpolation, normalisation (median 0, min -1), in compiled numba kernels (exact medians).")
        print("  Whole batch materialised as (2000, 4000) float32; kernels compiled/loaded before timing.")
        print("  Not included: stellar variability, gaps, the spline detrend, negatives (all in the full-path figure).")
        print(f"skysift inject+views (median bins)   : {headline_rate:10.0f} light curves/s/core   <- kernel headline")
        print(f"  same, numpy standard_normal noise  : {numpy_noise_rate:10.0f} light curves/s/core")
        print(f"  same, mean bins                    : {mean_rate:10.0f} light curves/s/core")
        print(f"  into existing light curves (no noise generation): {existing_rate:10.0f} light curves/s/core")
        print(f"  parts: tabulated noise only        : {noise_rate:10.0f} light curves/s/core")
        print(f"         injection only (batched)    : {model_only:10.0f} light curves/s/core (copy + model near transits)")
        print(f"         views only (median bins)    : {views_only:10.0f} light curves/s/core (on one fixed batch)")
    print("full synthetic training path (the stage): per chunk of 256, stars with rotation+granulation+gaps on the")
    print("  Kepler quarter grid, planets, EBs, blends and noise negatives in one pass, transit-masked robust spline")
    print("  detrend (BIC over 6 knot spacings' first fits, the winner clipped), MES >= 7.1 selection with redraws, all six model inputs")
    print(f"skysift full synthetic training path  : {full_rate:10.0f} light curves/s/core   <- stage "
          f"(first call, compiling or loading the kernels: {first_call:.1f} s)")
    if batman_rate is None:
        print("batman not installed: no peer figure (pip install batman-package)")
    else:
        print(f"batman model only (Python loop)       : {batman_rate:10.0f} light curves/s/core")
        if not arguments.full_only:
            print(f"ratio inject+views (median) / batman model-only: {headline_rate / batman_rate:.2f}")
            print(f"ratio injection only / batman model-only        : {model_only / batman_rate:.2f}")
        print(f"ratio full synthetic path / batman model-only   : {full_rate / batman_rate:.2f}")
    if not arguments.full_only:
        verdict = "met" if headline_rate >= KERNEL_TARGET else "NOT met"
        print(f"target >= {KERNEL_TARGET} inject+views light curves/s/core: {verdict} ({headline_rate:.0f})")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min); wall-clock rates are lower bounds on a loaded box")
    verdict = "met" if full_rate >= FULL_TARGET else "NOT met"
    print(f"target >= {FULL_TARGET} full-path light curves/s/core: {verdict} ({full_rate:.0f})")
    if batman_rate is not None:
        ratio = full_rate / batman_rate
        verdict = "met" if ratio >= FULL_RATIO_TARGET else "NOT met"
        print(f"target >= {FULL_RATIO_TARGET}x batman for the full path: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
