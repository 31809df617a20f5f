"""Careless-user inputs: each ends in exit status 2, one line on stderr, no traceback, no output.

Each case is what a user could type; the message must name the flag, key or file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skysift.cli import main
from skysift.context import RunContext
from skysift.io import write_product
from skysift.train.tasks import get_task


def run(arguments: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        status = main([str(a) for a in arguments])
    except SystemExit as exc:  # argparse errors
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line and " WARNING " not in line]
    return status, lines


def assert_refused(arguments, capsys, *, names: str, output: Path | None = None) -> str:
    status, lines = run(arguments, capsys)
    text = "\n".join(lines)
    assert status == 2, f"exit {status} for {arguments}: {text}"
    assert len(lines) == 1, f"{len(lines)} lines for {arguments}:\n{text}"
    assert "Traceback" not in text and "weights_only=False" not in text
    assert names in lines[0], f"{names!r} not named in: {lines[0]}"
    if output is not None:
        assert not output.exists(), f"{output} left behind"
    return lines[0]


@pytest.fixture(scope="module")
def lens_model(tmp_path_factory) -> Path:
    """A valid (untrained) lens model directory, as the trainer writes it."""
    directory = tmp_path_factory.mktemp("lens_model")
    kwargs = {"widths": [4, 8, 8], "stem_stride": 2}
    model = get_task("lens").build_model(**kwargs)
    torch.save(model.state_dict(), directory / "model.pt")
    card = {"task": "lens", "model_kwargs": kwargs, "inputs": ["image"], "train_config": {"amp": False},
            "split": {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 0, "group": None}}
    (directory / "model_card.json").write_text(json.dumps(card))
    return directory


@pytest.fixture(scope="module")
def lens_product(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lens_product") / "images.h5"
    rng = np.random.default_rng(0)
    images = rng.normal(size=(256, 1, 32, 32)).astype(np.float32)
    return write_product(path, product_type="lens-training-set", provenance=RunContext("test").provenance(),
                         arrays={"image": images}, table={"label": (np.arange(256) % 2).astype(np.int8)})


def test_out_of_range_options(tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused(["diffim", "--science", "s.fits", "--reference", "r.fits", "--outdir", out, "--psf-grid", "-2"],
                   capsys, names="--psf-grid", output=out)
    assert_refused(["diffim", "--science", "s.fits", "--reference", "r.fits", "--outdir", out, "--threshold", "-5"],
                   capsys, names="--threshold", output=out)
    assert_refused(["diffim", "--science", "s.fits", "--reference", "r.fits", "--outdir", out, "--psf-size", "20"],
                   capsys, names="--psf-size", output=out)
    assert_refused(["diffim", "--science", "s.fits", "--reference", "r.fits", "--outdir", out, "--threshold", "nan"],
                   capsys, names="--threshold", output=out)
    for size in ("-31", "32", "abc"):
        assert_refused(["cutouts", "--diffim-dir", tmp_path, "--science", "s.fits", "--out", out, "--cutout-size", size],
                       capsys, names="--cutout-size", output=out)
    assert_refused(["score", "--model", tmp_path, "--product", "p.h5", "--out", out, "--inference-batch-size", "0"],
                   capsys, names="--inference-batch-size", output=out)
    for step in ("0", "-0.1"):
        assert_refused(["gw", "search", "--strain", "s.hdf", "--out", out, "--matched-filter", "--search-step", step],
                       capsys, names="--search-step", output=out)
    assert_refused(["gw", "simulate", "--out", out, "--seed", "1", "--mass-min", "60"], capsys, names="mass_max", output=out)
    assert_refused(["transit", "simulate", "--out", out, "--seed", "1", "--mission", "k2"], capsys, names="--mission", output=out)
    assert_refused(["train", "--task", "lens", "--product", "p.h5", "--outdir", out, "--epochs", "0"], capsys,
                   names="--epochs", output=out)
    assert_refused(["diffim", "--science", "s.fits", "--outdir", out], capsys, names="--reference", output=out)


def test_bad_models(tmp_path, capsys, lens_model, lens_product):
    out = tmp_path / "scores.h5"
    random_bytes = tmp_path / "random"
    random_bytes.mkdir()
    (random_bytes / "model_card.json").write_text((lens_model / "model_card.json").read_text())
    (random_bytes / "model.pt").write_bytes(os.urandom(4096))
    assert_refused(["score", "--model", random_bytes, "--product", lens_product, "--out", out], capsys,
                   names="model.pt", output=out)

    malicious = tmp_path / "malicious"
    malicious.mkdir()
    (malicious / "model_card.json").write_text((lens_model / "model_card.json").read_text())
    torch.save({"weights": Path("x")}, malicious / "model.pt")  # a pickle of an arbitrary object
    line = assert_refused(["score", "--model", malicious, "--product", lens_product, "--out", out], capsys,
                          names="model.pt", output=out)
    assert "never unpickled" in line

    invalid_card = tmp_path / "invalid_card"
    invalid_card.mkdir()
    (invalid_card / "model.pt").write_bytes((lens_model / "model.pt").read_bytes())
    (invalid_card / "model_card.json").write_text("{not json")
    assert_refused(["score", "--model", invalid_card, "--product", lens_product, "--out", out], capsys,
                   names="model_card.json", output=out)
    (invalid_card / "model_card.json").write_text(json.dumps({"task": "lens"}))
    assert_refused(["score", "--model", invalid_card, "--product", lens_product, "--out", out], capsys,
                   names="model_card.json", output=out)

    alerts = tmp_path / "alerts"
    alerts.mkdir()
    table = tmp_path / "ztf.ecsv"
    line = assert_refused(["realbogus", "score", "--model", lens_model, "--alerts", alerts, "--out", table], capsys,
                          names=str(lens_model), output=table)
    assert "'lens' model, not a realbogus model" in line
    assert_refused(["score", "--model", tmp_path / "absent", "--product", lens_product, "--out", out], capsys,
                   names="absent", output=out)


def test_bad_products(tmp_path, capsys, lens_model, lens_product):
    out = tmp_path / "scores.h5"
    truncated = tmp_path / "truncated.h5"
    data = lens_product.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert_refused(["score", "--model", lens_model, "--product", truncated, "--out", out], capsys,
                   names="truncated.h5", output=out)
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("hello")
    assert_refused(["score", "--model", lens_model, "--product", not_hdf5, "--out", out], capsys,
                   names="text.h5", output=out)


def test_bad_transit_inputs(tmp_path, capsys):
    model = tmp_path / "transit_model"
    model.mkdir()
    kwargs = {"width_scale": 0.25, "fc_width": 16, "n_fc": 1}
    torch.save(get_task("transit").build_model(**kwargs).state_dict(), model / "model.pt")
    card = {"task": "transit", "model_kwargs": kwargs, "inputs": list(get_task("transit").inputs)}
    (model / "model_card.json").write_text(json.dumps(card))
    out = tmp_path / "scores.ecsv"
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0,)))
    assert_refused(["transit", "score", "--model", model, "--folded", empty, "--out", out], capsys,
                   names="empty.npy", output=out)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY garbage")
    assert_refused(["transit", "score", "--model", model, "--folded", garbage, "--out", out], capsys,
                   names="garbage.npy", output=out)
    tce = tmp_path / "tces.csv"
    tce.write_text("kepid,tce_plnt_num,tce_period,tce_time0bk,tce_duration,av_training_set\n757450,1,8.88,134.4,2.0,PC\n")
    assert_refused(["transit", "score", "--model", model, "--tce-table", tce, "--lightcurve-dir", tmp_path / "nowhere",
                    "--out", out], capsys, names="--lightcurve-dir", output=out)
    assert_refused(["transit", "score", "--model", model, "--lightcurve", tmp_path / "lc.fits", "--out", out], capsys,
                   names="--period", output=out)
    assert_refused(["transit", "score", "--model", model, "--lightcurve", tmp_path / "lc.fits", "--period", "-1",
                    "--t0", "1", "--duration", "2", "--out", out], capsys, names="--period", output=out)


def test_bad_configurations(tmp_path, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert_refused(["config", "validate", tmp_path / "missing.yaml"], capsys, names="missing.yaml")
    for size, expected in ((31, "differs from the classifier's stamp size"), (64, "odd")):
        config = tmp_path / f"cutout{size}.yaml"
        text = (repo_root / "config" / "config.yaml").read_text().replace(
            "realbogus:\n", f"realbogus:\n  cutout_size: {size}\n", 1)
        config.write_text(text)
        status, lines = run(["config", "validate", config], capsys)
        assert status == 2 and "Traceback" not in "\n".join(lines)
        assert any("realbogus.cutout_size" in line and expected in line for line in lines), lines


def test_cutouts_refuse_another_pairs_diffim(tmp_path, capsys):
    for pair, seed in (("a", 1), ("b", 2)):
        assert main([str(a) for a in ["simulate", "pair", "--outdir", tmp_path / pair, "--seed", str(seed), "--image-size", "256",
                     "--n-stars", "120", "--n-transients", "3", "--label", f"pair_id={pair}"]]) == 0
    assert main([str(a) for a in ["diffim", "--science", tmp_path / "a" / "science.fits", "--reference", tmp_path / "a" / "reference.fits",
                 "--outdir", tmp_path / "diffim_a"]]) == 0
    out = tmp_path / "cutouts.h5"
    line = assert_refused(["cutouts", "--diffim-dir", tmp_path / "diffim_a", "--science", tmp_path / "b" / "science.fits",
                           "--out", out], capsys, names="difference.fits", output=out)
    assert "another pair" in line
    assert main([str(a) for a in ["cutouts", "--diffim-dir", tmp_path / "diffim_a", "--science", tmp_path / "a" / "science.fits",
                 "--out", out]]) == 0


def test_a_fresh_process_prints_one_line(tmp_path):
    """The same contract end to end: `python -m skysift`, stderr one line, exit 2."""
    result = subprocess.run([sys.executable, "-m", "skysift", "gw", "search", "--strain", "x.hdf", "--out",
                             str(tmp_path / "e.hdf"), "--matched-filter", "--search-step", "-0.1"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--search-step" in result.stderr
