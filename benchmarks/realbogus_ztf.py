"""The ZTF real/bogus model on real alerts, with cross-fitting: issue #21's figures.

Three models of the same size and training (the demo's ``train.realbogus``
settings), each on a ZTF survey set (:mod:`skysift.realbogus.stamps`) of
``--samples`` triplets:

* ``simulation``: simulated ZTF-like backgrounds only (no real stamp);
* ``fold-a``: half of the triplets on real stamps of ``ztf_alerts_fink`` (31
  packets), evaluated on ``ztf_alert_packets`` (16);
* ``fold-b``: half on real stamps of ``ztf_alert_packets``, evaluated on ``ztf_alerts_fink``.

Every model is evaluated with :func:`skysift.realbogus.evaluate.evaluate_alerts`
on all 47 shared packets, which leaves out the packets whose objects were
training backgrounds; the cross-fitted figure pools fold-a's scores of the 16
and fold-b's of the 31. Also printed: held-out accuracy on a fresh simulated
ZTF set (``--heldout`` triplets, a seed no training set used), per family.

Usage: ``.venv/bin/python benchmarks/realbogus_ztf.py --data ../shared/data/diffim --workdir /tmp/rbztf``
(``--samples 5000 --epochs 12``; about 8 minutes per model on a loaded 2-core box).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from skysift.io import read_table
from skysift.realbogus.evaluate import alert_agreement, evaluate_alerts
from skysift.realbogus.stamps import StampSettings, make_survey_training_set, simulate_triplets
from skysift.realbogus.survey import ZTF
from skysift.train.config import TrainConfig
from skysift.train.trainer import load_model, train

PACKETS, FINK = "ztf_alert_packets", "ztf_alerts_fink"
MODEL = {"width": 16, "dense": 64, "normalisation": "robust", "dropout": 0.2}


def heldout_accuracy(model_dir: Path, n: int, seed: int) -> tuple[float, dict[str, float]]:
    """Accuracy on fresh simulated ZTF triplets, overall and per family."""
    model, _ = load_model(model_dir)
    model.eval()
    cutouts, _, table = simulate_triplets(n, ZTF, StampSettings(), np.random.default_rng(seed))
    with torch.no_grad():
        scores = torch.cat([torch.sigmoid(model(torch.from_numpy(cutouts[i : i + 256]))) for i in range(0, n, 256)]).numpy()
    correct = (scores >= 0.5) == (np.asarray(table["label"]) == 1)
    kinds = np.asarray(table["kind"], str)
    return float(correct.mean()), {k: float(correct[kinds == k].mean()) for k in sorted(set(kinds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diffim"))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--heldout", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=["simulation", "fold-a", "fold-b"])
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    work = arguments.workdir
    work.mkdir(parents=True, exist_ok=True)
    backgrounds = {"simulation": [], "fold-a": [arguments.data / FINK], "fold-b": [arguments.data / PACKETS]}
    results = {}
    for name in arguments.models:
        start = time.perf_counter()
        product = make_survey_training_set(work / f"{name}.h5", n_samples=arguments.samples, seed=arguments.seed,
                                           real_backgrounds=backgrounds[name])
        made = time.perf_counter()
        config = TrainConfig(epochs=arguments.epochs, batch_size=64, learning_rate=1e-3, patience=5, threads=1, model=MODEL)
        card = train("realbogus", product, work / f"{name}_model", config)
        trained = time.perf_counter()
        summary = evaluate_alerts(work / f"{name}_model", [arguments.data / PACKETS, arguments.data / FINK],
                                  work / f"{name}_alerts.ecsv", work / f"{name}_alerts.json", work / f"{name}_alerts.png",
                                  training_set=product)
        accuracy, by_family = heldout_accuracy(work / f"{name}_model", arguments.heldout, seed=arguments.seed + 1000)
        results[name] = {"set_seconds": made - start, "train_seconds": trained - made, "test_split": card["metrics"]["test"],
                         "heldout_accuracy": accuracy, "heldout_by_family": by_family, "alerts": summary}
        print(json.dumps({name: results[name]}, indent=1, default=float), flush=True)
    if {"fold-a", "fold-b"} <= set(results):
        pooled = [read_table(work / f"{name}_alerts.ecsv") for name in ("fold-a", "fold-b")]
        rows = [table[np.asarray(table["evaluated"], bool)] for table in pooled]
        scores = np.concatenate([np.asarray(t["score"], float) for t in rows])
        rb = np.concatenate([np.asarray(t["rb"], float) for t in rows])
        drb = np.concatenate([np.asarray(t["drb"], float) for t in rows])
        print("cross-fitted (fold-a on the 16, fold-b on the 31):", json.dumps(alert_agreement(scores, rb, drb), default=float))


if __name__ == "__main__":
    main()
