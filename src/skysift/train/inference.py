"""Batch inference over HDF5 products: scores written back as a product and a ranked catalogue."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError
from skysift.io import write_product, write_table
from skysift.log import get_logger
from skysift.train.data import ProductDataset, split_indices
from skysift.train.distributed import init_distributed
from skysift.train.tasks import get_task
from skysift.train.trainer import evaluate, load_model

__all__ = ["score_product"]

log = get_logger(__name__)


def score_product(
    model_dir: str | os.PathLike[str],
    product_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    catalogue_path: str | os.PathLike[str] | None = None,
    split: str = "all",
    batch_size: int = 512,
    device: str = "auto",
    context: RunContext | None = None,
) -> Table:
    """Score every sample (or one split) of a product with a trained model.

    Parameters
    ----------
    model_dir : str or path-like
        Directory with ``model.pt`` and ``model_card.json`` (from :func:`~skysift.train.trainer.train`).
    product_path : str or path-like
        Product holding the model's input arrays.
    out_path : str or path-like
        Scores product (``product_type`` "scores"): the input product's table
        for the scored rows plus ``index``, ``score`` (probability) and ``rank``
        (1 = most likely positive).
    catalogue_path : str or path-like, optional
        Also write the table sorted by score as ECSV.
    split : {"all", "train", "val", "test"}
        Score only one split, as the model card's split defines it (``test`` is
        the held-out set when the product is the training set).
    batch_size : int
        Samples per forward pass.
    device : {"auto", "cpu", "cuda"}
        Where to run.

    Returns
    -------
    astropy.table.Table
        The scored rows in product order.
    """
    torch_device = init_distributed(device).device
    model, card = load_model(model_dir, torch_device)
    dataset = ProductDataset(product_path, card["inputs"], label="label")
    if split == "all":
        indices = np.arange(len(dataset))
    else:
        info = card.get("split")
        if not isinstance(info, dict) or not {"val_fraction", "test_fraction", "seed"} <= set(info):
            raise InputDataError(f"{model_dir}: the model card records no split, so --split {split} is undefined")
        groups = np.asarray(dataset.table[info["group"]]) if info.get("group") else None
        indices = split_indices(len(dataset), info["val_fraction"], info["test_fraction"], info["seed"], groups)[split]
    amp = bool((card.get("train_config") or {}).get("amp")) and torch_device.type == "cuda"
    preprocess = get_task(card["task"]).preprocessing()
    scores, _ = evaluate(model, dataset, indices, batch_size=batch_size, device=torch_device, amp=amp, preprocess=preprocess)
    table = dataset.table[indices]
    table["index"] = indices
    table["score"] = scores.astype(np.float64)
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    table["rank"] = ranks
    provenance = resolve_context(context, "score").provenance(inputs=[product_path, Path(model_dir) / "model.pt"],
        extra={"task": card["task"], "split": split})
    write_product(out_path, product_type="scores", provenance=provenance, table=table,
                  descriptions={"score": "model probability of the positive class", "rank": "1 = highest score"},
                  attrs={"task": card["task"], "split": split})
    if catalogue_path is not None:
        ranked = table[np.argsort(-scores, kind="stable")]
        write_table(ranked, catalogue_path, provenance=provenance)
    log.info("scored %d samples of %s with the %s model", len(indices), product_path, card["task"])
    return table

