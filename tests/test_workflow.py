"""The Snakemake workflow: DAG builds on the demo config, bad configs fail fast."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists() and shutil.which("snakemake") is None,
                                reason="snakemake is not installed (pip install -e '.[workflow]')")


def _snakemake(repo_root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    executable = str(SNAKEMAKE) if SNAKEMAKE.exists() else "snakemake"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([executable, *args], cwd=repo_root, capture_output=True, text=True, timeout=timeout, env=env)


def test_dry_run_of_demo_config(repo_root, tmp_path):
    # A fresh working directory, so the checkout's own results do not make it a no-op.
    result = _snakemake(repo_root, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(repo_root / "config" / "config.yaml"), "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for rule in ("simulate_pair", "diffim", "provenance_summary"):
        assert rule in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", "config key 'seed': expected integer"),
        ("no_such_key=1", "unknown config key 'no_such_key'"),
        ("inputs={'pairs_table': 'missing/pairs.tsv'}", "'inputs.pairs_table': file 'missing/pairs.tsv'"),
    ],
    ids=["wrong-type", "unknown-key", "missing-file"],
)
def test_bad_config_fails_fast_and_runs_nothing(repo_root, tmp_path, override, message):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # --directory keeps the check from touching the checkout's own .snakemake state.
    result = _snakemake(repo_root, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(repo_root / "config" / "config.yaml"), "--cores", "1",
                        "--config", override)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the snakemake process: what the check costs, whatever else loads the machine
    # (about 1 s of wall time on an idle 2-core machine).
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode != 0
    assert message in result.stderr
    assert cpu_seconds < 5.0, f"bad config took {cpu_seconds:.1f} s of CPU to fail"
    assert not (tmp_path / "results").exists()


def test_lint_is_clean(repo_root):
    result = _snakemake(repo_root, "--lint")
    assert result.returncode == 0
    assert "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.realdata
def test_decam_config_builds_its_dag(repo_root, shared_data):
    result = _snakemake(repo_root, "-n", "--quiet", "rules", "--configfile", str(repo_root / "config" / "decam.yaml"))
    assert result.returncode == 0, result.stderr
    assert "diffim" in result.stdout + result.stderr


@pytest.mark.realdata
def test_jwst_config_passes_the_noise_maps(repo_root, shared_data):
    if not (shared_data / "diffim" / "sfft_jwst_nircam_f200w_pair").is_dir():
        pytest.skip("JWST pair not found")
    result = _snakemake(repo_root, "results/jwst/diffim/nircam_f200w/scorr.fits", "-n", "-p", "--forceall",
                        "--configfile", str(repo_root / "config" / "jwst.yaml"))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "--science-noise " in output and "--reference-noise " in output
    assert "jw02561001002-02561-o001_t003_nircam_clear-f200w_i2d_stamp.noise.fits --reference-noise " in output


def _release_table(directory: Path, n_pairs: int) -> Path:
    """A pairs table of ``n_pairs`` pairs of tiny, distinct files (a dry run stats and hashes them)."""
    lines = ["pair_id\tscience\treference"]
    for index in range(n_pairs):
        pair_dir = directory / "data" / f"p{index:05d}"
        pair_dir.mkdir(parents=True)
        for image in ("science", "reference"):
            (pair_dir / f"{image}.fits").write_bytes(f"{image} of p{index:05d}".encode())
        lines.append(f"p{index:05d}\t{pair_dir / 'science.fits'}\t{pair_dir / 'reference.fits'}")
    table = directory / "pairs.tsv"
    table.write_text("\n".join(lines) + "\n")
    return table


def _table_config(directory: Path, table: Path, **sections: dict) -> Path:
    """A configuration differencing only ``table``'s pairs; ``sections`` switch stages on or set keys."""
    config = {"inputs": {"pairs_table": str(table)}, "simulate": {"pairs": {"n_pairs": 0}},
              **{task: {"enabled": False} for task in ("realbogus", "transit", "lens", "gw")}, **sections}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_a_release_of_2000_pairs_plans_every_job(repo_root, tmp_path, planned_jobs):
    # Survey scale: the DAG of 2,000 pairs is planned in seconds (benchmarks/workflow_dag.py times
    # 10,000), and no job's command outgrows what the kernel passes to `bash -c` (128 KiB).
    config = _table_config(tmp_path, _release_table(tmp_path, 2000))
    result = _snakemake(repo_root, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(repo_root / "config" / "config.yaml"), str(config), "-n", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert planned_jobs(output) == {"diffim": 2000, "product_list": 1, "provenance_summary": 1,
                                    "provenance_export": 1, "all": 1}
    commands = [line for line in output.splitlines() if line.startswith("Shell command: ") and line != "Shell command: None"]
    assert len(commands) == 2002 and max(map(len, commands)) < 131072
    assert any("provenance summary @" in command for command in commands)


def test_batch_jobs_plan_a_release_of_2000_pairs_in_few_jobs(repo_root, tmp_path, planned_jobs):
    # inputs.pairs_per_job: 100 pairs per job of each per-pair stage (the largest batch the schema
    # allows), and the batch's plan still fits one `bash -c` argument (128 KiB).
    config = _table_config(tmp_path, _release_table(tmp_path, 2001), realbogus={"enabled": True},
                           inputs={"pairs_table": str(tmp_path / "pairs.tsv"), "pairs_per_job": 100})
    result = _snakemake(repo_root, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(repo_root / "config" / "config.yaml"), str(config), "-n", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    counts = planned_jobs(output)
    assert counts["diffim_batch"] == counts["cutouts_batch"] == counts["score_candidates_batch"] == 21, counts
    assert "diffim" not in counts and "cutouts" not in counts and "score_candidates" not in counts
    commands = [line for line in output.splitlines() if line.startswith("Shell command: ") and " batch - " in line]
    assert len(commands) == 63 and max(map(len, commands)) < 131072
    assert "p02000" in output and "b00020" in output  # the last, one-pair batch


def test_slurm_profile_batches_the_per_pair_jobs(repo_root, tmp_path):
    # The SLURM profile's job groups, given here on the command line (its executor plugin is not
    # installed in every environment): each batch holds the jobs of `group-components` pairs.
    profile = yaml.safe_load((repo_root / "profiles" / "slurm" / "config.yaml").read_text())
    components = dict(item.split("=") for item in profile["group-components"])
    n_pairs = 2 * int(components["pairs"]) + 1
    config = _table_config(tmp_path, _release_table(tmp_path, n_pairs), realbogus={"enabled": True})
    result = _snakemake(repo_root, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(repo_root / "config" / "config.yaml"), str(config), "-n",
                        "--groups", *profile["groups"], "--group-components", *profile["group-components"])
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert output.count("Group job pairs ") == 3  # 2 x components pairs + 1: three batches
    assert output.count("Group job scores ") == -(-n_pairs // int(components["scores"]))
