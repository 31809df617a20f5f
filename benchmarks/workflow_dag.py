"""Time to plan a release: ``snakemake -n`` on a generated pairs table, against bare Snakemake.

Writes ``--pairs`` pairs (two tiny, distinct FITS files each: what the workflow reads before
its DAG is the table, one ``stat`` and the sha256 of every file) and a pairs table into a
temporary directory, then times ``snakemake -n`` of this repository's Snakefile on it:

* ``diffim``: the image-differencing stage alone (one job per pair, plus the provenance
  aggregates), other stages off;
* ``diffim, N pairs per job``: the same with ``inputs.pairs_per_job: N`` (``--pairs-per-job``,
  default 20, as the SLURM profile batches pairs): one ``skysift batch`` job per N pairs;
* ``all stages`` (``--all-stages``): the demo's stages on as well (cutouts and scoring per pair,
  the model tasks), in both modes;

each twice: with a cold digest cache (the first run on a release hashes every file) and a warm
one (every later run: one ``stat`` per file). The named peer, in the same run, is bare
Snakemake planning as many trivial jobs (one rule, ``touch {output}``) as the one-job-per-pair
``diffim`` variant: what Snakemake alone costs for one job per pair. Prints seconds, jobs
planned and the ratio to the peer. Target (issue #22): 10,000 pairs in under 20 s on 2 cores.

Wall seconds are the headline (what a user waits); the CPU seconds of the ``snakemake`` process
are printed beside them, as they hold better on a machine other jobs load. Warm runs and the
peer alternate, best of ``--repeats``.

Usage: ``.venv/bin/python benchmarks/workflow_dag.py [--pairs 10000] [--pairs-per-job 20]
[--all-stages] [--repeats 3] [--profile]``. ``--profile`` writes a cProfile of one warm ``diffim`` run
(``workflow_dag.prof`` in the current directory).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _fits_bytes(pair_id: str, image: str) -> bytes:
    """A valid, minimal FITS file (primary header, no data), distinct per pair and image."""
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    0",
             f"OBJECT  = '{pair_id[:60]}'", f"IMAGETYP= '{image}'", "END"]
    header = "".join(card.ljust(80) for card in cards)
    return header.ljust(2880).encode("ascii")


def write_release_table(directory: Path, n_pairs: int) -> Path:
    """Write ``n_pairs`` pairs of tiny FITS files and their pairs table under ``directory``."""
    lines = ["pair_id\tscience\treference"]
    for index in range(n_pairs):
        pair_id = f"p{index:06d}"
        pair_dir = directory / "data" / pair_id[:4] / pair_id
        pair_dir.mkdir(parents=True, exist_ok=True)
        for image in ("science", "reference"):
            (pair_dir / f"{image}.fits").write_bytes(_fits_bytes(pair_id, image))
        lines.append(f"{pair_id}\t{pair_dir / 'science.fits'}\t{pair_dir / 'reference.fits'}")
    table = directory / "pairs.tsv"
    table.write_text("\n".join(lines) + "\n")
    return table


def write_config(directory: Path, table: Path, *, all_stages: bool, pairs_per_job: int = 1) -> Path:
    """A configuration on the generated table: no simulated pairs; other stages on or off."""
    config = {"run_name": "dag-benchmark", "results_dir": "results",
              "inputs": {"pairs_table": str(table), "pairs_per_job": pairs_per_job},
              "simulate": {"pairs": {"n_pairs": 0}}}
    if not all_stages:
        config.update({task: {"enabled": False} for task in ("realbogus", "transit", "lens", "gw")})
    path = directory / f"config-{'all' if all_stages else 'diffim'}-{pairs_per_job}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_peer(directory: Path, n_jobs: int) -> Path:
    """Bare Snakemake: ``n_jobs`` trivial jobs of one rule, and a target rule."""
    snakefile = directory / "Snakefile"
    snakefile.write_text(
        f"rule all:\n    input: expand('out/{{i}}.txt', i=range({n_jobs}))\n\n"
        "rule job:\n    output: 'out/{i}.txt'\n    shell: 'touch {output}'\n"
    )
    return snakefile


def dry_run(arguments: list[str], workdir: Path, *, profile: Path | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and jobs planned of ``snakemake -n`` with ``arguments`` in ``workdir``."""
    command = [str(SNAKEMAKE), *arguments, "--directory", str(workdir), "-n"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake failed:\n{result.stderr[-3000:]}")
    match = re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE)
    return seconds, cpu, int(match.group(1)) if match else 0


def _best(runs: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    return min(run[0] for run in runs), min(run[1] for run in runs), runs[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--pairs-per-job", type=int, default=20, help="pairs per batch job of the batched variants")
    parser.add_argument("--all-stages", action="store_true", help="also time the variants with every stage on")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs and peer runs (best of)")
    parser.add_argument("--profile", action="store_true", help="cProfile one warm diffim run (workflow_dag.prof)")
    arguments = parser.parse_args()
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}, "
          f"{len(os.sched_getaffinity(0))} CPUs")
    with tempfile.TemporaryDirectory(prefix="skysift-dag-") as scratch:
        work = Path(scratch)
        start = time.perf_counter()
        table = write_release_table(work, arguments.pairs)
        print(f"{arguments.pairs} pairs ({2 * arguments.pairs} files) written in {time.perf_counter() - start:.1f} s")
        batched = f"{arguments.pairs_per_job} pairs per job"
        variants = [("diffim", False, 1), (f"diffim, {batched}", False, arguments.pairs_per_job)]
        if arguments.all_stages:
            variants += [("all stages", True, 1), (f"all stages, {batched}", True, arguments.pairs_per_job)]
        peer_dir = work / "peer"
        peer_dir.mkdir()
        timings: dict[str, tuple[float, float, int]] = {}
        peer_runs = []
        for name, all_stages, pairs_per_job in variants:
            config = write_config(work, table, all_stages=all_stages, pairs_per_job=pairs_per_job)
            run_dir = work / f"run-{re.sub(r'[^a-z0-9]+', '-', name)}"
            run_dir.mkdir()
            common = ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "config.yaml"),
                      str(config)]
            timings[f"{name}, cold cache"] = dry_run(common, run_dir)
            if name == "diffim":  # the peer plans as many jobs as this variant
                peer = ["--snakefile", str(write_peer(peer_dir, timings["diffim, cold cache"][2] - 1)), "--cores", "1"]
            warm_runs = []
            for _ in range(arguments.repeats):  # alternating, so that a change of load hits both
                warm_runs.append(dry_run(common, run_dir))
                if name == "diffim":
                    peer_runs.append(dry_run(peer, peer_dir))
            timings[f"{name}, warm cache"] = _best(warm_runs)
            if arguments.profile and name == "diffim":
                dry_run(common, run_dir, profile=Path.cwd() / "workflow_dag.prof")
        timings["bare Snakemake (peer)"] = _best(peer_runs)
    peer_seconds, peer_cpu, _ = timings["bare Snakemake (peer)"]
    print(f"snakemake -n, {arguments.pairs} pairs (best of {arguments.repeats} for warm runs and the peer):")
    for name, (seconds, cpu, jobs) in timings.items():
        print(f"  {name:44s} {seconds:7.1f} s wall ({seconds / peer_seconds:4.2f}x peer)  "
              f"{cpu:7.1f} s CPU ({cpu / peer_cpu:4.2f}x peer)  {jobs:7d} jobs")
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
