"""A release cycle on the real DECam frames, as a release manager runs it.

dr1 = a, b, c; dr2 = a copied unchanged to a new path, b replaced by an edited
copy, c withdrawn, d added. Checked: a wrong sha256 stops the run before any
job; an in-place edit with its mtime restored is caught; dr2 plans exactly the
b and d differencing jobs (and the aggregates that depend on them);
``release diff`` works after dr1's replaced file is deleted; dr2's products
name the release and the pair; the withdrawn pair is reported and moved aside.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from skysift.cli import main
from skysift.io import read_provenance
from skysift.releases import read_release, write_release

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DECAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "diffim" / "sfft_decam_i_pair" / "input_data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(not DECAM.is_dir(), reason="../shared/data/diffim/sfft_decam_i_pair is absent"),
    pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment"),
]


def _copy_pair(frame: str, directory: Path) -> None:
    directory.mkdir(parents=True)
    shutil.copyfile(DECAM / f"DEC-OBS04{frame}.mini.fits", directory / "science.fits")
    shutil.copyfile(DECAM / f"DEC-OBS18{frame}.mini.fits", directory / "reference.fits")


def test_release_cycle_on_decam_pairs(tmp_path, repo_root, capsys, monkeypatch, planned_jobs):
    root = tmp_path / "project"
    data = root / "data"
    for pair, frame in (("a", "a"), ("b", "b"), ("c", "c")):
        _copy_pair(frame, data / "dr1" / pair)
    monkeypatch.chdir(root)
    (root / "releases").mkdir()
    assert main(["release", "create", "data/dr1", "--out", "releases/dr1.tsv"]) == 0
    # dr2: a copied unchanged to a new path, b an edited copy, c withdrawn, d added.
    (data / "dr2").mkdir()
    shutil.copytree(data / "dr1" / "a", data / "dr2" / "a")
    _copy_pair("b", data / "dr2" / "b")
    with fits.open(data / "dr2" / "b" / "science.fits", mode="update") as hdus:
        hdus[0].data[100:103, 100:103] += np.float32(500.0)  # a new transient in the reprocessed frame
    _copy_pair("d", data / "dr2" / "d")
    assert main(["release", "create", "data/dr2", "--out", "releases/dr2.tsv"]) == 0

    config = {
        "run_name": "decam-releases", "seed": 1, "release": "releases/dr1.tsv",
        "simulate": {"pairs": {"n_pairs": 0}}, "diffim": {"fwhm_guess": 4.5, "background_box": 32},
        "transit": {"enabled": False}, "lens": {"enabled": False}, "gw": {"enabled": False},
        "realbogus": {"enabled": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    # No activated venv and no PATH entry: the rules take the interpreter that runs Snakemake.
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent)
    common = [str(SNAKEMAKE), "--snakefile", str(repo_root / "Snakefile"), "--directory", str(root),
              "--configfile", str(root / "config.yaml"), "--cores", "2"]

    def snakemake(*extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run([*common, *extra], capture_output=True, text=True, timeout=timeout, env=env)

    # 1. A manifest with a wrong sha256 stops the run before any job.
    wrong = (root / "releases" / "dr1.tsv").read_text()
    b_sha = read_release(root / "releases" / "dr1.tsv", base_dir=root)["b"]["science_sha256"]
    (root / "releases" / "wrong.tsv").write_text(wrong.replace(b_sha, "0" * 64))
    stopped = snakemake("--config", "release=releases/wrong.tsv")
    assert stopped.returncode != 0
    assert f"expected sha256 {'0' * 64}, found {b_sha}" in stopped.stderr and "dr1/b/science.fits" in stopped.stderr
    assert not (root / "results").exists()

    # dr1 runs: three differencing jobs.
    first = snakemake()
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in (root / "results" / "diffim").iterdir()) == ["a", "b", "c"]
    assert (root / "results" / "logs" / "diffim" / "a.log").is_file()  # logs live with the run's results
    assert "Nothing to be done" in snakemake("-n").stdout

    # 2. An in-place edit with its old mtime restored (cp -p, rsync -a) is caught.
    target = data / "dr1" / "a" / "science.fits"
    original, stat = target.read_bytes(), target.stat()
    edited = bytearray(original)
    edited[-10] ^= 0xFF
    target.write_bytes(bytes(edited))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    caught = snakemake("-n")
    assert caught.returncode != 0 and "pair 'a' science" in caught.stderr and "expected sha256" in caught.stderr
    target.write_bytes(original)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "Nothing to be done" in snakemake("-n").stdout

    # 3. dr2 plans exactly b and d (a moved unchanged; c withdrawn), and what depends on them.
    planned = snakemake("-n", "--config", "release=releases/dr2.tsv")
    assert planned.returncode == 0, planned.stderr[-3000:]
    output = planned.stdout + planned.stderr
    counts = planned_jobs(output)
    assert counts == {"diffim": 2, "product_list": 1, "provenance_summary": 1, "provenance_export": 1, "all": 1}, counts
    assert sorted(re.findall(r"wildcards: pair=(\S+)", output)) == ["b", "d"]
    assert "pair(s) c have products" in planned.stderr and "withdrawn" in planned.stderr

    # 4. release diff works from the manifests after dr1's replaced file is deleted.
    (data / "dr1" / "b" / "science.fits").unlink()
    capsys.readouterr()
    assert main(["release", "diff", "releases/dr1.tsv", "releases/dr2.tsv", "--config", "config.yaml"]) == 0
    out = capsys.readouterr().out
    assert "unchanged: 1 pair(s): a" in out and "added:     1 pair(s): d" in out and "withdrawn: 1 pair(s): c" in out
    assert "b: science" in out and "results/diffim/b/aligned_reference.fits" in out
    assert "results/diffim/d/candidates.ecsv" in out and "results/diffim/a/" not in out

    # 5. dr2 runs: its products name the release and the pair; the withdrawn pair is moved aside.
    second = snakemake("--config", "release=releases/dr2.tsv")
    assert second.returncode == 0, second.stderr[-3000:]
    dr2_sha = __import__("hashlib").sha256((root / "releases" / "dr2.tsv").read_bytes()).hexdigest()
    for pair in ("b", "d"):
        extra = read_provenance(root / "results" / "diffim" / pair / "difference.fits").extra
        assert extra["release"] == "dr2" and extra["release_sha256"] == dr2_sha and extra["pair_id"] == pair
        assert json.loads(extra["options.diffim"])["fwhm_guess"] == 4.5
    assert read_provenance(root / "results" / "diffim" / "a" / "difference.fits").extra["release"] == "dr1"
    assert not (root / "results" / "diffim" / "c").exists()
    assert (root / "results" / "withdrawn" / "dr2" / "c" / "diffim" / "c" / "difference.fits").is_file()
    summary = json.loads((root / "results" / "provenance" / "summary.json").read_text())
    assert all("/c/" not in entry["path"] for entry in summary["products"])
    # Every product of the run was made from the inputs dr2 lists; after an edit, verify names the stale one.
    assert main(["release", "verify", "releases/dr2.tsv", "--results", "results"]) == 0
    dr2 = read_release(root / "releases" / "dr2.tsv", base_dir=root)
    stale = {pair: {column: row[column] for column in ("science", "reference")} for pair, row in dr2.items()}
    stale["d"]["science"] = dr2["b"]["science"]  # a manifest claiming d was made from other pixels
    write_release(stale, root / "releases" / "stale.tsv", base_dir=root)
    capsys.readouterr()
    assert main(["release", "verify", "releases/stale.tsv", "--results", "results"]) == 1
    assert "results/diffim/d/difference.fits: stale" in capsys.readouterr().err


def test_batch_jobs_redo_only_the_pairs_a_release_changes(tmp_path, repo_root, planned_jobs):
    # inputs.pairs_per_job: 2 on three DECam pairs: batches (a, b) and (c). A new table moves a
    # to a new path unchanged and edits b: one batch job reruns, and inside it only b is redone.
    root = tmp_path / "project"
    for pair in ("a", "b", "c"):
        _copy_pair(pair, root / "data" / pair)
    (root / "data2").mkdir()
    shutil.copytree(root / "data" / "a", root / "data2" / "a")
    _copy_pair("b", root / "data2" / "b")
    with fits.open(root / "data2" / "b" / "science.fits", mode="update") as hdus:
        hdus[0].data[100:103, 100:103] += np.float32(500.0)

    def table(name: str, folders: dict[str, str]) -> str:
        rows = [f"{pair}\t{folder}/{pair}/science.fits\t{folder}/{pair}/reference.fits" for pair, folder in folders.items()]
        (root / name).write_text("pair_id\tscience\treference\n" + "\n".join(rows) + "\n")
        return name

    def config(name: str, pairs_table: str) -> Path:
        settings = {
            "run_name": "batches", "seed": 1, "inputs": {"pairs_table": pairs_table, "pairs_per_job": 2},
            "simulate": {"pairs": {"n_pairs": 0}}, "diffim": {"fwhm_guess": 4.5, "background_box": 32},
            **{task: {"enabled": False} for task in ("transit", "lens", "gw", "realbogus")},
        }
        (root / name).write_text(yaml.safe_dump(settings))
        return root / name

    first_config = config("first.yaml", table("pairs1.tsv", {"a": "data", "b": "data", "c": "data"}))
    second_config = config("second.yaml", table("pairs2.tsv", {"a": "data2", "b": "data2", "c": "data"}))

    def snakemake(configfile: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SNAKEMAKE), "--snakefile", str(repo_root / "Snakefile"), "--directory", str(root),
                               "--configfile", str(configfile), "--cores", "2", *extra],
                              capture_output=True, text=True, timeout=900)

    first = snakemake(first_config)
    assert first.returncode == 0, first.stderr[-3000:]
    results = root / "results"
    for batch, pairs in (("b00000", ["a", "b"]), ("b00001", ["c"])):
        record = json.loads((results / "batches" / "diffim" / f"{batch}.json").read_text())
        assert record["ran"] == pairs and sorted(record["jobs"]) == pairs
    for pair in ("a", "b", "c"):
        assert (results / "diffim" / pair / "candidates.ecsv").is_file() and (results / "logs" / "diffim" / f"{pair}.log").is_file()
        assert read_provenance(results / "diffim" / pair / "difference.fits").extra["pair_id"] == pair
    summary = json.loads((results / "provenance" / "summary.json").read_text())
    assert len(summary["products"]) == 18  # six per pair, listed through the batch records
    assert "Nothing to be done" in snakemake(first_config, "-n").stdout
    a_made = (results / "diffim" / "a" / "difference.fits").stat().st_mtime_ns

    planned = snakemake(second_config, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    counts = planned_jobs(planned.stdout + planned.stderr)
    assert counts == {"diffim_batch": 1, "product_list": 1, "provenance_summary": 1, "provenance_export": 1, "all": 1}, counts
    second = snakemake(second_config)
    assert second.returncode == 0, second.stderr[-3000:]
    record = json.loads((results / "batches" / "diffim" / "b00000.json").read_text())
    assert record["ran"] == ["b"] and record["skipped"] == ["a"]
    assert (results / "diffim" / "a" / "difference.fits").stat().st_mtime_ns == a_made
    assert any("data2/b/science.fits" in path for path in read_provenance(results / "diffim" / "b" / "difference.fits").inputs)
