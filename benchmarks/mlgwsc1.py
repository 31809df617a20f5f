"""Benchmark: the network and the matched filter measured with the official MLGWSC-1 tools.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/mlgwsc1.py --datasets 1 2 3 --duration 3600 \\
        --model results/gw-mlgwsc/models/gw --out /tmp/mlgwsc1 [--seed 90210] [--tools ../shared/tools/mlgwsc1]

For each dataset (1-3):

1. the official ``generate_data.py`` writes one stretch of foreground,
   background and injections (``--seed``: the default is used for no training
   set; skysift's training sets are simulated by skysift itself, never by the
   generator);
2. skysift's network search (``--model``, a trained gw model directory) and
   skysift's matched filter search the foreground and the background files
   and write MLGWSC-1 events files;
3. the official ``evaluate.py`` evaluates each search;
4. the sensitive distance at a false-alarm rate of one per hour is read off
   its output (resolved exactly with one hour of background; otherwise
   interpolated in log rate, or the nearest resolved rate: the table says which),
   with the ratio network / matched filter, and sensitive distance against
   false-alarm rate is plotted for both searches, one panel per dataset.

The matched filter uses a stochastic aligned-spin bank of minimal match
``--minimal-match`` (0.97) over each dataset's space
(:func:`skysift.gw.matched_filter.stochastic_bank`): dataset 1 non-spinning
10-50 solar masses, datasets 2 and 3 7-50 with aligned spins up to 0.99
(dataset 3's precession and higher modes are not modelled by the bank).
Banks are built once into ``OUT/banks`` (or read from ``--bank-dir``); their
fitting factors over ``--coverage-signals`` random signals from the
dataset's distribution are measured and reported (5th percentile and
minimum, a lower bound: each signal is matched with its 256 nearest
templates). ``--bank-parts N`` searches interleaved parts of the bank in N
processes and merges their block peaks exactly as one run clusters them
(:func:`skysift.gw.matched_filter.merge_block_peaks`). Every step's wall and
CPU time (the CPU time of parts' processes is not counted) and the load
average are recorded in ``OUT/summary.json``. Steps whose outputs exist are reused with ``--reuse``.

The official scripts are called from ``--tools`` (default
``../shared/tools/mlgwsc1``); where they are absent the benchmark says so and
stops. Issue 18's target: the network at >= 0.9 of the matched filter's
sensitive distance at one false alarm per hour on datasets 1-3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from skysift.gw.official import DEFAULT_TOOLS, FarLookup, distance_at_far, find_tools, read_official_evaluation, run_evaluator, run_generator

#: Generator seed of the benchmark: used for no training set or bank.
DEFAULT_SEED = 90210
TARGET_FAR = 1.0 / 3600.0
TARGET_RATIO = 0.9

#: Each dataset's bank space: (mass range, largest aligned spin, waveform of the coverage signals, spins of those signals).
BANK_SPACES: dict[int, dict] = {
    1: {"name": "nonspinning-10-50", "mass_range": (10.0, 50.0), "spin_max": 0.0, "signals": "IMRPhenomD", "signal_spins": "none"},
    2: {"name": "aligned-7-50", "mass_range": (7.0, 50.0), "spin_max": 0.99, "signals": "IMRPhenomD", "signal_spins": "aligned"},
    3: {"name": "aligned-7-50", "mass_range": (7.0, 50.0), "spin_max": 0.99, "signals": "IMRPhenomXPHM", "signal_spins": "isotropic"},
}


def load_average() -> float:
    return os.getloadavg()[0]


def timed(label: str, record: dict, function, *args, **kwargs):
    """Run ``function``, record its wall and CPU seconds (this process, all threads) and the load average under ``label``.

    On a shared machine the wall time depends on the other jobs; the CPU time
    is what the step costs (subprocesses, the official scripts, are not in it).
    """
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    record[label] = {"seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
                     "load_average": round(load_average(), 2)}
    print(f"  {label}: {record[label]['seconds']:.1f} s wall, {record[label]['cpu_seconds']:.1f} s CPU "
          f"(load {record[label]['load_average']:.1f})", flush=True)
    return result


def coverage_signals(dataset: int, n: int, seed: int) -> dict[str, np.ndarray]:
    """Random source parameters from a dataset's intrinsic distribution (masses uniform, ordered; its spins)."""
    from skysift.gw.waveforms import intrinsic_priors, source_parameters
    from skysift.simulate.priors import sample_parameters

    space = BANK_SPACES[dataset]
    rng = np.random.default_rng(seed)
    if space["signal_spins"] == "isotropic":
        priors = intrinsic_priors("IMRPhenomXPHM", space["mass_range"], 0.99)
    else:
        priors = intrinsic_priors("IMRPhenomD", space["mass_range"], max(space["spin_max"], 1e-12))
    params = source_parameters(sample_parameters(priors, n, rng))
    if space["signal_spins"] == "none":
        for key in ("spin1z", "spin2z"):
            params[key] = np.zeros(n)
    return params


def dataset_bank(dataset: int, out: Path, bank_dir: Path | None, minimal_match: float, n_signals: int, reuse: bool, record: dict) -> tuple[dict, dict]:
    """The dataset's bank (built or read) and its measured coverage."""
    from skysift.gw.matched_filter import fitting_factors, read_bank, stochastic_bank, write_bank

    space = BANK_SPACES[dataset]
    path = (bank_dir or out / "banks") / f"{space['name']}-mm{minimal_match:g}.ecsv"
    if path.is_file() and (reuse or bank_dir is not None):
        bank = read_bank(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        bank = timed(f"bank {space['name']}", record, stochastic_bank, space["mass_range"], spin_max=space["spin_max"], minimal_match=minimal_match)
        write_bank(bank, path, minimal_match=minimal_match, mass_range=list(space["mass_range"]), spin_max=space["spin_max"])
    coverage_path = out / f"ds{dataset}" / "bank_coverage.json"
    if coverage_path.is_file() and reuse:
        return bank, json.loads(coverage_path.read_text())
    signals = coverage_signals(dataset, n_signals, seed=1000 + dataset)
    factors = timed(f"ds{dataset} bank coverage", record, fitting_factors, bank, signals, approximant=space["signals"])
    coverage = {"bank": str(path), "n_templates": int(bank["mass1"].size), "minimal_match": minimal_match, "signals": space["signals"],
                "signal_spins": space["signal_spins"], "n_signals": n_signals, "fitting_factor_p5": float(np.percentile(factors, 5)),
                "fitting_factor_min": float(factors.min()), "fitting_factor_median": float(np.median(factors)),
                "fraction_below_minimal_match": float(np.mean(factors < minimal_match))}
    coverage_path.parent.mkdir(parents=True, exist_ok=True)
    coverage_path.write_text(json.dumps(coverage, indent=1))
    return bank, coverage


def _part_search(strain: Path, out: Path, part: dict) -> Path:
    from skysift.gw.matched_filter import matched_filter_search

    return matched_filter_search(strain, out, bank=part, cluster_window=0.0)


def matched_filter_in_parts(strain: Path, out: Path, bank: dict, n_parts: int) -> Path:
    """The matched filter over ``n_parts`` interleaved parts of the bank in as many processes, merged exactly
    (:func:`skysift.gw.matched_filter.merge_block_peaks`); one part: a single ordinary run."""
    from concurrent.futures import ProcessPoolExecutor

    from skysift.gw.matched_filter import matched_filter_search, merge_block_peaks
    from skysift.gw.mlgwsc import read_events, read_strain, write_events

    if n_parts <= 1:
        return matched_filter_search(strain, out, bank=bank)
    parts = [{key: values[k::n_parts] for key, values in bank.items()} for k in range(n_parts)]
    outputs = [out.with_name(f"{out.stem}.part{k}.hdf") for k in range(n_parts)]
    with ProcessPoolExecutor(n_parts) as pool:
        list(pool.map(_part_search, [strain] * n_parts, outputs, parts))
    segments = read_strain(strain)
    if len(segments) != 1:
        raise ValueError(f"{strain}: merging parts assumes one segment, found {len(segments)}")
    events = [read_events(path) for path in outputs]
    times, stats = merge_block_peaks([e["time"] for e in events], [e["stat"] for e in events],
                                     start_time=segments[0].start_time, sample_rate=segments[0].sample_rate)
    return write_events(out, times, stats, 0.3)


def search_files(dataset_dir: Path, search: str, run, reuse: bool, record: dict, label: str) -> dict[str, Path]:
    """Events of one search on the foreground and background files (``run(strain, events)``)."""
    events = {}
    for which in ("foreground", "background"):
        events[which] = dataset_dir / f"events_{search}_{which}.hdf"
        if not (reuse and events[which].is_file()):
            timed(f"{label} {search} {which}", record, run, dataset_dir / f"{which}.hdf", events[which])
    return events


def evaluate(tools: Path, dataset_dir: Path, search: str, events: dict[str, Path], record: dict, label: str) -> tuple[dict, FarLookup]:
    output = dataset_dir / f"eval_{search}.hdf"
    timed(f"{label} evaluate {search}", record, run_evaluator, tools, injections=dataset_dir / "injections.hdf",
          foreground_events=events["foreground"], foreground=dataset_dir / "foreground.hdf", background_events=events["background"], output=output)
    result = read_official_evaluation(output)
    return result, distance_at_far(result["far"], result["sensitive_distance"], TARGET_FAR)


def plot(curves: dict[int, dict[str, dict]], path: Path) -> None:
    """Sensitive distance against false-alarm rate (per hour), both searches, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.6), squeeze=False, sharey=True)
    for ax, (dataset, searches) in zip(axes[0], sorted(curves.items())):
        for search, result in searches.items():
            use = result["far"] > 0
            ax.step(result["far"][use] * 3600.0, result["sensitive_distance"][use], where="post", label=search)
        ax.axvline(1.0, color="0.6", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("false-alarm rate (per hour)")
        ax.set_title(f"MLGWSC-1 dataset {dataset}")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("sensitive distance (Mpc)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    parser.add_argument("--duration", type=int, default=3600, help="seconds of foreground and of background per dataset")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed (default: used for no training)")
    parser.add_argument("--model", type=Path, help="trained gw model directory (network search); omitted: no network search")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tools", type=Path, default=DEFAULT_TOOLS, help="folder of generate_data.py and evaluate.py")
    parser.add_argument("--minimal-match", type=float, default=0.97)
    parser.add_argument("--bank-dir", type=Path, help="read banks from here instead of building them")
    parser.add_argument("--coverage-signals", type=int, default=300)
    parser.add_argument("--bank-parts", type=int, default=1, help="search the bank in this many processes (merged exactly)")
    parser.add_argument("--no-matched-filter", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep data, events and banks that exist")
    args = parser.parse_args(argv)

    tools = find_tools(args.tools)
    if tools is None:
        print(f"MLGWSC-1 scripts not found in {args.tools} (generate_data.py and evaluate.py): nothing measured. "
              "Install them there or pass --tools.", file=sys.stderr)
        return 2
    import warnings

    warnings.simplefilter("ignore")
    from skysift.gw.search import run_search, torch_scorer

    args.out.mkdir(parents=True, exist_ok=True)
    scorer = None
    if args.model is not None:
        from skysift.train.trainer import load_model

        model, _ = load_model(args.model, task="gw")
        scorer = torch_scorer(model)
    summary: dict = {"seed": args.seed, "duration_s": args.duration, "model": str(args.model) if args.model else None, "tools": str(tools),
                     "minimal_match": args.minimal_match, "target_far_hz": TARGET_FAR, "datasets": {}, "timings": {}}
    curves: dict[int, dict[str, dict]] = {}
    for dataset in args.datasets:
        label = f"ds{dataset}"
        print(f"dataset {dataset}", flush=True)
        dataset_dir = args.out / label
        if not (args.reuse and all((dataset_dir / f"{name}.hdf").is_file() for name in ("injections", "foreground", "background"))):
            timed(f"{label} generate", summary["timings"], run_generator, tools, dataset, dataset_dir, duration=args.duration, seed=args.seed)
        row: dict = {}
        curves[dataset] = {}
        if scorer is not None:
            events = search_files(dataset_dir, "network", lambda strain, out: run_search(strain, out, scorer), args.reuse, summary["timings"], label)
            result, lookup = evaluate(tools, dataset_dir, "network", events, summary["timings"], label)
            curves[dataset]["network"] = result
            row["network"] = lookup.__dict__
        if not args.no_matched_filter:
            bank, coverage = dataset_bank(dataset, args.out, args.bank_dir, args.minimal_match, args.coverage_signals, args.reuse, summary["timings"])
            row["bank"] = coverage
            events = search_files(dataset_dir, "matched_filter", lambda strain, out: matched_filter_in_parts(strain, out, bank, args.bank_parts),
                                  args.reuse, summary["timings"], label)
            result, lookup = evaluate(tools, dataset_dir, "matched_filter", events, summary["timings"], label)
            curves[dataset]["matched filter"] = result
            row["matched_filter"] = lookup.__dict__
        if "network" in row and "matched_filter" in row:
            row["ratio"] = row["network"]["distance"] / row["matched_filter"]["distance"]
        summary["datasets"][str(dataset)] = row
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(curves, args.out / "sensitivity_official.png")
    print(f"\nsensitive distance at FAR 1/hour (official evaluate.py; seed {args.seed}, {args.duration} s each)")
    print(f"{'dataset':>7s} {'network Mpc':>12s} {'MF Mpc':>8s} {'ratio':>6s} {'>= 0.9?':>7s} {'bank':>6s} {'FF p5':>6s}  how read")
    for dataset, row in summary["datasets"].items():
        network, mf = row.get("network", {}), row.get("matched_filter", {})
        ratio = row.get("ratio", float("nan"))
        how = ", ".join(sorted({x["method"] for x in (network, mf) if x}))
        print(f"{dataset:>7s} {network.get('distance', float('nan')):12.0f} {mf.get('distance', float('nan')):8.0f} {ratio:6.3f} "
              f"{('yes' if ratio >= TARGET_RATIO else 'no') if 'ratio' in row else '-':>7s} {row.get('bank', {}).get('n_templates', 0):6d} "
              f"{row.get('bank', {}).get('fitting_factor_p5', float('nan')):6.3f}  {how}")
    print(f"figure: {args.out / 'sensitivity_official.png'}; summary: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
