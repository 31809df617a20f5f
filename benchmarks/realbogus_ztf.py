"""The ZTF real/bogus model on real alerts, with cross-fitting: issue #21's figures.

Three models of the same size and training (the demo's ``train.realbogus``
settings), each on a ZTF survey set (:mod:`skysift.realbogus.stamps`) of
``--samples`` triplets:

* ``simulation``: simulated ZTF-like backgrounds only (no real stamp);
* ``fold-a``: half of the triplets on real stamps of ``ztf_alerts_fink`` (31
  packets), evaluated on ``ztf_alert_packets`` (16);
* ``fold-b``: half on real stamps of ``ztf_alert_packets``, evaluated on ``ztf_alerts_fink``.

With ``--seeds S1 S2 S3`` every model is made once per seed (its training set,
split, initialisation and batches); the median and range over the seeds are
printed, and the agreement of the seeds' mean score (a small ensemble).

Every model is evaluated with :func:`skysift.realbogus.evaluate.evaluate_alerts`
on all 47 shared packets, which leaves out the packets whose objects were
training backgrounds; the cross-fitted figure pools fold-a's scores of the 16
and fold-b's of the 31. Also printed: held-out accuracy on a fresh simulated
ZTF set (``--heldout`` triplets, a seed no training set used), per family.

Usage: ``.venv/bin/python benchmarks/realbogus_ztf.py --data ../shared/data/diffim --workdir /tmp/rbztf``
(``--samples 5000 --epochs 12 --seeds 1 2 3``; about 8 minutes per model on a loaded 2-core box).
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
    """Accuracy on fresh simulated ZTF triplets, overall, per family and near the threshold.

    Besides the families, ``"without noise"`` leaves out the detected noise
    excursions, and ``"real S/N a-b"`` is the accuracy on real candidates in
    bands of S/N: near the 5-sigma threshold a noise excursion and a faint
    point source look alike, so that is where the errors are expected.
    """
    model, _ = load_model(model_dir)
    model.eval()
    cutouts, _, table = simulate_triplets(n, ZTF, StampSettings(), np.random.default_rng(seed))
    with torch.no_grad():
        scores = torch.cat([torch.sigmoid(model(torch.from_numpy(cutouts[i : i + 256]))) for i in range(0, n, 256)]).numpy()
    real = np.asarray(table["label"]) == 1
    correct = (scores >= 0.5) == real
    kinds = np.asarray(table["kind"], str)
    snr = np.asarray(table["snr"], float)
    by_group = {k: float(correct[kinds == k].mean()) for k in sorted(set(kinds))}
    by_group["without noise"] = float(correct[kinds != "noise"].mean())
    for low, high in ((5, 7), (7, 15), (15, np.inf)):
        band = real & (snr >= low) & (snr < high)
        by_group[f"real S/N {low}-{high}"] = float(correct[band].mean()) if band.any() else float("nan")
    return float(correct.mean()), by_group


def _evaluated(work: Path, name: str) -> dict[str, np.ndarray]:
    """Scores, rb, drb and an alert key (file + candid) of the alerts a model was evaluated on."""
    table = read_table(work / f"{name}_alerts.ecsv")
    table = table[np.asarray(table["evaluated"], bool)]
    run = {key: np.asarray(table[key], float) for key in ("score", "rb", "drb")}
    run["key"] = np.char.add(np.asarray(table["file"], str), np.asarray(table["candid"]).astype(str))
    return run


def _pooled(work: Path, names: list[str]) -> dict[str, np.ndarray]:
    parts = [_evaluated(work, name) for name in names]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _ensemble(runs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Agreement of the seeds' mean score (alerts matched by file and candid)."""
    order = [np.argsort(run["key"]) for run in runs]
    keys = [run["key"][o] for run, o in zip(runs, order, strict=True)]
    if any(not np.array_equal(keys[0], k) for k in keys[1:]):
        raise RuntimeError("the seeds evaluated different alerts; no ensemble")
    mean = np.mean([run["score"][o] for run, o in zip(runs, order, strict=True)], axis=0)
    return alert_agreement(mean, runs[0]["rb"][order[0]], runs[0]["drb"][order[0]])


def _spread(values: list[float]) -> str:
    return f"median {np.median(values):.3f}, range {min(values):.3f}-{max(values):.3f} over {len(values)} seeds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diffim"))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--heldout", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7],
                        help="one training set and model per seed and model kind; with several, the median, "
                             "range and the seeds' mean score (an ensemble) are printed")
    parser.add_argument("--models", nargs="+", default=["simulation", "fold-a", "fold-b"])
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    work = arguments.workdir
    work.mkdir(parents=True, exist_ok=True)
    backgrounds = {"simulation": [], "fold-a": [arguments.data / FINK], "fold-b": [arguments.data / PACKETS]}
    results = {}
    for seed in arguments.seeds:
        for kind in arguments.models:
            name = f"{kind}-s{seed}"
            start = time.perf_counter()
            product = make_survey_training_set(work / f"{name}.h5", n_samples=arguments.samples, seed=seed,
                                               real_backgrounds=backgrounds[kind])
            made = time.perf_counter()
            config = TrainConfig(epochs=arguments.epochs, batch_size=64, learning_rate=1e-3, patience=5, threads=1,
                                 model=MODEL, seed=seed)
            card = train("realbogus", product, work / f"{name}_model", config)
            trained = time.perf_counter()
            summary = evaluate_alerts(work / f"{name}_model", [arguments.data / PACKETS, arguments.data / FINK],
                                      work / f"{name}_alerts.ecsv", work / f"{name}_alerts.json", work / f"{name}_alerts.png",
                                      training_set=product)
            # The held-out seed differs from every training seed.
            accuracy, by_family = heldout_accuracy(work / f"{name}_model", arguments.heldout, seed=seed + 1000)
            results[name] = {"set_seconds": made - start, "train_seconds": trained - made, "test_split": card["metrics"]["test"],
                             "heldout_accuracy": accuracy, "heldout_by_family": by_family, "alerts": summary}
            print(json.dumps({name: results[name]}, indent=1, default=float), flush=True)
    seeds = arguments.seeds
    if "simulation" in arguments.models:
        names = [f"simulation-s{seed}" for seed in seeds]
        print("simulation AUC vs rb>=0.5 (47):", _spread([results[n]["alerts"]["auc_rb"] for n in names]))
        print("simulation ZTF-real scored real:", _spread([results[n]["alerts"]["fraction_real_of_ztf_real"] for n in names]))
        print("simulation held-out accuracy:", _spread([results[n]["heldout_accuracy"] for n in names]))
        if len(seeds) > 1:
            print("simulation, mean score of the seeds:", json.dumps(_ensemble([_evaluated(work, n) for n in names]), default=float))
    if {"fold-a", "fold-b"} <= set(arguments.models):
        pooled = [_pooled(work, [f"fold-a-s{seed}", f"fold-b-s{seed}"]) for seed in seeds]
        figures = [alert_agreement(run["score"], run["rb"], run["drb"]) for run in pooled]
        for seed, figure in zip(seeds, figures, strict=True):
            print(f"cross-fitted seed {seed} (fold-a on the 16, fold-b on the 31):", json.dumps(figure, default=float))
        print("cross-fitted AUC vs rb>=0.5:", _spread([f["auc_rb"] for f in figures]))
        if len(seeds) > 1:
            print("cross-fitted, mean score of the seeds:", json.dumps(_ensemble(pooled), default=float))


if __name__ == "__main__":
    main()
