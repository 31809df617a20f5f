from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from skysift.train.config import TrainConfig
from skysift.train.data import EpochBatches, ProductDataset, split_indices
from skysift.train.inference import score_product
from skysift.train.trainer import TrainingInterrupted, load_model, train
from skysift.io import read_product

HERE = Path(__file__).parent
FAST = dict(epochs=3, batch_size=32, learning_rate=3e-3, patience=0, seed=3, threads=1, model={"width": 8})


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return torch.load(directory / "model.pt", weights_only=True)


def test_splits_are_disjoint_and_complete():
    splits = split_indices(101, 0.2, 0.1, seed=1)
    together = np.concatenate(list(splits.values()))
    assert sorted(together) == list(range(101))
    assert len(splits["val"]) == 20 and len(splits["test"]) == 10
    assert all(np.array_equal(a, b) for a, b in zip(splits.values(), split_indices(101, 0.2, 0.1, seed=1).values()))


def test_epoch_batches_resume_and_shard():
    indices = np.arange(100)
    single = list(EpochBatches(indices, 20, seed=1, epoch=2))
    ranks = [list(EpochBatches(indices, 20, seed=1, epoch=2, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) and all(len(batch) == 10 for batch in ranks[0] + ranks[1])
    assert set(np.concatenate(ranks[0] + ranks[1])) == set(indices)
    resumed = list(EpochBatches(indices, 20, seed=1, epoch=2, start_step=3))
    assert all(np.array_equal(a, b) for a, b in zip(resumed, single[3:]))
    assert not np.array_equal(single[0], list(EpochBatches(indices, 20, seed=1, epoch=3))[0])


def test_dataset_reads_batches_in_any_order(blob_product):
    lazy = ProductDataset(blob_product, ("image",), in_memory=False)
    eager = ProductDataset(blob_product, ("image",), in_memory=True)
    indices = np.array([7, 3, 3, 100, 0])
    (lazy_images,), lazy_labels = lazy[indices]
    (eager_images,), _ = eager[indices]
    assert torch.equal(lazy_images, eager_images)
    assert lazy_images.shape == (5, 1, 16, 16) and lazy_labels.tolist() == [1, 1, 1, 0, 0]


def test_training_learns_and_writes_everything(blob_product, tmp_path):
    card = train("blob", blob_product, tmp_path, TrainConfig(**{**FAST, "epochs": 6}))
    for name in ("model.pt", "model_card.json", "metrics.csv", "training_curve.png", "checkpoint.pt"):
        assert (tmp_path / name).is_file(), name
    assert card["metrics"]["test"]["roc_auc"] > 0.9
    assert card["task"] == "blob" and card["n_parameters"] > 0
    # The training distribution: the product's scalar settings (kinds only where it has a kind column).
    assert isinstance(card["training_distribution"]["settings"], dict)
    assert list(card["data_products"].values())[0] == card["provenance"]["inputs"][str(blob_product)]
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("epoch,train_loss,val_loss")
    model, loaded_card = load_model(tmp_path)
    assert loaded_card == json.loads((tmp_path / "model_card.json").read_text())


def test_same_seed_same_weights(blob_product, tmp_path):
    train("blob", blob_product, tmp_path / "a", TrainConfig(**FAST))
    train("blob", blob_product, tmp_path / "b", TrainConfig(**FAST))
    first, second = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(first[k], second[k]) for k in first)


class _SigtermAtStep(torch.nn.Module):
    """Wraps a model and sends SIGTERM to this process at a chosen forward call."""

    def __init__(self, inner: torch.nn.Module, at_call: int) -> None:
        super().__init__()
        self.inner, self.at_call, self.calls = inner, at_call, 0

    def forward(self, image):
        if self.training:
            self.calls += 1
            if self.calls == self.at_call:
                os.kill(os.getpid(), signal.SIGTERM)
        return self.inner(image)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.inner.load_state_dict(*args, **kwargs)


def test_sigterm_mid_epoch_then_resume_gives_identical_weights(blob_product, tmp_path):
    config = TrainConfig(**FAST)
    train("blob", blob_product, tmp_path / "straight", config)

    import blob_task

    original = blob_task.TASK.model
    calls_per_epoch = -(-len(split_indices(512, 0.15, 0.15, 3)["train"]) // 32)
    stop_at = calls_per_epoch + 5  # in the second epoch, mid-way
    spec = blob_task.TASK  # frozen dataclass: swap the builder for this test only
    object.__setattr__(spec, "model", lambda **kw: _SigtermAtStep(original(**kw), stop_at))
    try:
        with pytest.raises(TrainingInterrupted) as interrupted:
            train("blob", blob_product, tmp_path / "resumed", config)
    finally:
        object.__setattr__(spec, "model", original)
    assert interrupted.value.signum == signal.SIGTERM
    assert interrupted.value.epoch == 1 and interrupted.value.step == 5
    assert not (tmp_path / "resumed" / "model.pt").exists()
    train("blob", blob_product, tmp_path / "resumed", config)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_out_of_core_training_matches_in_memory_and_resumes(tmp_path):
    """A product over the memory limit, streamed by chunks in a worker: the same weights, stopped or not."""
    import blob_task

    product = blob_task.make_blob_product(tmp_path / "blobs48.h5", n_samples=512, size=48)  # 64-sample chunks
    ooc = dict(FAST, epochs=2, memory_limit_gib=0.001, num_workers=1, shuffle_buffer_mib=1.2)  # 2-chunk windows
    train("blob", product, tmp_path / "memory", TrainConfig(**{**ooc, "memory_limit_gib": 2.0}))
    train("blob", product, tmp_path / "streamed", TrainConfig(**ooc))
    in_memory, streamed = _weights(tmp_path / "memory"), _weights(tmp_path / "streamed")
    assert all(torch.equal(in_memory[k], streamed[k]) for k in in_memory)

    original = blob_task.TASK.model
    spec = blob_task.TASK
    object.__setattr__(spec, "model", lambda **kw: _SigtermAtStep(original(**kw), 15))  # epoch 2, step 3
    try:
        with pytest.raises(TrainingInterrupted):
            train("blob", product, tmp_path / "resumed", TrainConfig(**ooc))
    finally:
        object.__setattr__(spec, "model", original)
    train("blob", product, tmp_path / "resumed", TrainConfig(**ooc))
    resumed = _weights(tmp_path / "resumed")
    assert all(torch.equal(in_memory[k], resumed[k]) for k in in_memory)


def test_checkpoint_of_another_config_is_not_resumed(blob_product, tmp_path, caplog):
    train("blob", blob_product, tmp_path, TrainConfig(**{**FAST, "epochs": 1}))
    card = train("blob", blob_product, tmp_path, TrainConfig(**{**FAST, "epochs": 2, "learning_rate": 1e-3}))
    assert card["epochs_run"] == 2  # started afresh: two epochs under the new settings


def test_score_product_ranks_and_keeps_table(blob_product, tmp_path):
    train("blob", blob_product, tmp_path / "model", TrainConfig(**{**FAST, "epochs": 4}))
    table = score_product(tmp_path / "model", blob_product, tmp_path / "scores.h5",
                          catalogue_path=tmp_path / "ranked.ecsv", split="test", device="cpu")
    scores = read_product(tmp_path / "scores.h5")
    assert len(scores.table) == len(table) == len(split_indices(512, 0.15, 0.15, 3)["test"])
    assert set(scores.table.colnames) >= {"index", "score", "rank", "label", "x"}
    assert sorted(scores.table["rank"]) == list(range(1, len(table) + 1))
    ranked = (tmp_path / "ranked.ecsv").read_text()
    assert "provenance" in ranked


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_external_sigterm_via_cli_then_resume(blob_product, tmp_path):
    """A real process killed by SIGTERM from outside, resumed by rerunning the same command."""
    common = [sys.executable, "-m", "skysift", "train", "--plugin", "blob_task", "--task", "blob",
              "--product", str(blob_product), "--epochs", "4", "--batch-size", "16", "--seed", "3",
              "--threads", "1", "--patience", "0", "--model-json", '{"width": 8}']
    straight = subprocess.run([*common, "--outdir", str(tmp_path / "straight")], env=_cli_env(), capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    with subprocess.Popen([*common, "--outdir", str(tmp_path / "killed")], env=_cli_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.time() + 120
        while not (tmp_path / "killed" / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode in (128 + signal.SIGTERM, 0), stderr
    if process.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert "rerun to resume" in stderr
    resumed = subprocess.run([*common, "--outdir", str(tmp_path / "killed")], env=_cli_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    first, second = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_group_split_keeps_groups_together():
    groups = np.repeat(np.arange(50), 4)
    splits = split_indices(len(groups), 0.2, 0.2, seed=3, groups=groups)
    seen = {name: set(groups[idx]) for name, idx in splits.items()}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    assert sum(len(idx) for idx in splits.values()) == 200
    assert len(seen["val"]) == 10 and len(seen["test"]) == 10


def test_negative_group_ids_are_ungrouped():
    groups = np.r_[np.repeat(np.arange(20), 5), np.full(100, -1)]
    splits = split_indices(len(groups), 0.2, 0.2, seed=1, groups=groups)
    for name in ("val", "test"):
        # 20% of the 120 groups (20 real groups + 100 singletons): both kinds in each split
        assert (groups[splits[name]] == -1).any() and (groups[splits[name]] >= 0).any()
    assert sum(len(i) for i in splits.values()) == 200
