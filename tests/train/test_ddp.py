"""Two-process DDP on CPU (gloo) against one process with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from skysift.train.launch import launch_command

HERE = Path(__file__).parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def _losses(directory: Path) -> np.ndarray:
    with (directory / "metrics.csv").open() as stream:
        return np.array([float(row["train_loss"]) for row in csv.DictReader(stream)])


def test_launch_command_choices(monkeypatch):
    assert launch_command(1, ["--", "train", "--task", "x"])[1:] == ["-m", "skysift", "train", "--task", "x"]
    torchrun = launch_command(2, ["train"], environ={})
    assert "--standalone" in torchrun and "--nproc-per-node=2" in torchrun
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/usr/bin/{name}")
    srun = launch_command(2, ["train"], environ={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"})
    assert srun[:2] == ["srun", "--ntasks=2"]
    with pytest.raises(ValueError, match="no skysift command"):
        launch_command(2, ["--"])


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(blob_product, tmp_path):
    common = ["train", "--plugin", "blob_task", "--task", "blob", "--product", str(blob_product),
              "--epochs", "3", "--batch-size", "64", "--seed", "5", "--threads", "1", "--patience", "0",
              "--augment", "false", "--model-json", '{"width": 8, "dropout": 0.0}', "--device", "cpu"]
    one = subprocess.run(launch_command(1, [*common, "--outdir", str(tmp_path / "one")]), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(launch_command(2, [*common, "--outdir", str(tmp_path / "two")]), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    card = json.loads((tmp_path / "two" / "model_card.json").read_text())
    assert card["world_size"] == 2
    # Same global batch and data order: the curves agree up to BatchNorm statistics,
    # which each rank computes over its half of the batch.
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=0.05)
    one_card = json.loads((tmp_path / "one" / "model_card.json").read_text())
    ratio = one_card["train_seconds"] / card["train_seconds"]
    print(f"DDP 2 processes / 1 process training throughput ratio: {ratio:.2f}")
