"""Data releases: manifests, diffs, and a workflow that reruns exactly the affected jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from skysift.cli import main
from skysift.config import read_pairs_table
from skysift.errors import ConfigError
from skysift.provenance import sha256_file
from skysift.releases import (
    DigestCache,
    affected_outputs,
    check_inputs,
    diff_releases,
    pair_fingerprint,
    read_release,
    verify_release,
    write_release,
)

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _pair(directory: Path, seed: int) -> dict[str, Path]:
    assert main(["simulate", "pair", "--outdir", str(directory), "--seed", str(seed), "--image-size", "192",
                 "--n-stars", "150", "--n-transients", "3", "--n-saturated", "1", "--edge-margin", "20"]) == 0
    return {"science": directory / "science.fits", "reference": directory / "reference.fits"}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    data = root / "data"
    p1, p2, p2_new, p3 = (_pair(data / name, seed) for name, seed in (("p1", 1), ("p2", 2), ("p2-dr2", 22), ("p3", 3)))
    (root / "releases").mkdir()
    relative = lambda pair: {k: v.relative_to(root) for k, v in pair.items()}  # noqa: E731
    dr1 = write_release({"p1": relative(p1), "p2": relative(p2)}, root / "releases" / "dr1.tsv", base_dir=root)
    dr2 = write_release({"p1": relative(p1), "p2": relative(p2_new), "p3": relative(p3)}, root / "releases" / "dr2.tsv", base_dir=root)
    return root, dr1, dr2


def test_diff_and_affected_outputs(releases):
    root, dr1, dr2 = releases
    diff = diff_releases(read_release(dr1, base_dir=root), read_release(dr2, base_dir=root))
    assert diff.unchanged == ["p1"] and diff.added == ["p3"] and diff.changed == {"p2": ["science", "reference"]}
    outputs = dict(affected_outputs(diff, "results"))
    assert "results/realbogus/candidates/p3.ecsv" in outputs
    assert not any("cutouts" in path for path in dict(affected_outputs(diff, "results", realbogus=False)))
    assert "results/diffim/p3/difference.fits" in outputs and "results/diffim/p2/scorr.fits" in outputs
    assert not any("/p1/" in path for path in outputs)
    assert outputs["results/provenance/prov.json"] == "aggregates every product of the run"


def test_release_needs_checksums_and_verify_names_mismatches(releases, tmp_path):
    root, dr1, _ = releases
    plain = tmp_path / "plain.tsv"
    plain.write_text(f"pair_id\tscience\treference\np1\t{root / 'data/p1/science.fits'}\t{root / 'data/p1/reference.fits'}\n")
    assert len(read_pairs_table(plain)) == 1
    with pytest.raises(ConfigError, match="without science_sha256"):
        read_release(plain)
    release = read_release(dr1, base_dir=root)
    assert verify_release(release) == []
    release["p1"]["science_sha256"] = "0" * 64
    [problem] = verify_release(release)
    assert problem.startswith("p1: science")


def test_release_diff_command(releases, capsys, monkeypatch):
    root, dr1, dr2 = releases
    monkeypatch.chdir(root)
    assert main(["release", "diff", "releases/dr1.tsv", "releases/dr2.tsv"]) == 0
    out = capsys.readouterr().out
    assert "added:     1 pair(s): p3" in out and "p2: science, reference" in out
    assert "results/diffim/p2/difference.fits  <- science, reference of p2 changed (sha256)" in out
    assert main(["release", "verify", "releases/dr2.tsv"]) == 0


@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
def test_switching_release_reruns_exactly_the_affected_jobs(releases, repo_root, planned_jobs):
    root, dr1, dr2 = releases
    config = {
        "run_name": "releases", "seed": 1, "release": "releases/dr1.tsv",
        "simulate": {"pairs": {"n_pairs": 0}}, "transit": {"enabled": False}, "lens": {"enabled": False},
        "gw": {"enabled": False}, "realbogus": {"enabled": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    common = [str(SNAKEMAKE), "--snakefile", str(repo_root / "Snakefile"), "--directory", str(root),
              "--configfile", str(root / "config.yaml"), "--cores", "2"]
    # Jobs run `python -m skysift`: the interpreter of this environment must come first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.run(common, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    same = subprocess.run([*common, "-n"], capture_output=True, text=True, timeout=120, env=env)
    assert "Nothing to be done" in same.stdout + same.stderr
    switched = subprocess.run([*common, "-n", "--config", "release=releases/dr2.tsv"], capture_output=True, text=True, timeout=120, env=env)
    assert switched.returncode == 0, switched.stderr[-3000:]
    output = switched.stdout + switched.stderr
    diff = diff_releases(read_release(dr1, base_dir=root), read_release(dr2, base_dir=root))
    expected = {"diffim": len(diff.affected), "product_list": 1, "provenance_summary": 1, "provenance_export": 1, "all": 1}
    assert planned_jobs(output) == expected
    rerun_pairs = sorted(re.findall(r"wildcards: pair=(\S+)", output))
    assert rerun_pairs == diff.affected == ["p2", "p3"]


def test_release_checksums_noise_maps(tmp_path):
    for name in ("s.fits", "r.fits", "n.fits"):
        (tmp_path / name).write_text(name)
    inputs = {"p1": {"science": "s.fits", "reference": "r.fits", "science_noise": "n.fits"}}
    old = read_release(write_release(inputs, tmp_path / "dr1.tsv", base_dir=tmp_path), base_dir=tmp_path)
    assert old["p1"]["science_noise_sha256"] and verify_release(old) == []
    (tmp_path / "n.fits").write_text("a new noise map")
    new = read_release(write_release(inputs, tmp_path / "dr2.tsv", base_dir=tmp_path), base_dir=tmp_path)
    assert diff_releases(old, new).changed == {"p1": ["science_noise"]}


def test_digest_cache_looks_at_each_file_once_per_run(tmp_path):
    science, reference = tmp_path / "science.fits", tmp_path / "reference.fits"
    science.write_bytes(b"science")
    reference.write_bytes(b"reference")
    row = {"pair_id": "p1", "science": science, "reference": reference}
    cache = DigestCache(tmp_path / "state" / "digests.json")
    assert check_inputs([row], cache, source="pairs.tsv") == []
    # The fingerprints the jobs carry come from the digests verification took: the files are
    # not looked at again (here they are gone, and the fingerprint is still the one verified).
    expected = f"{sha256_file(science)}:{sha256_file(reference)}:-:-"
    moved = {path: path.with_suffix(".moved") for path in (science, reference)}
    for path, aside in moved.items():
        path.rename(aside)
    assert pair_fingerprint(row, cache) == expected
    for path, aside in moved.items():
        aside.rename(path)
    # The next run (a new cache object) sees an edit.
    science.write_bytes(b"edited")
    assert DigestCache(tmp_path / "state" / "digests.json").digest(science) == sha256_file(science)
