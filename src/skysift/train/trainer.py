"""One trainer for every task: DDP, bf16 on GPU, exact resume after preemption.

The same entry point runs under ``python``, ``torchrun`` and ``srun``
(:mod:`skysift.train.distributed`). Determinism: the batch order of an epoch is
a function of ``(seed, epoch)``, the product's chunk layout and the shuffle
buffer (:class:`~skysift.train.data.EpochBatches`), the same whether the
product is read in memory or streamed by chunks from disk and whatever the
number of DataLoader workers; the random state of each step (dropout,
augmentation) is a function of ``(seed, epoch, step, rank)``. A run stopped at
any step and resumed from its checkpoint (which records the epoch and step)
thus ends with the same weights as one that was never stopped.

Preemption: SIGTERM or SIGUSR1 (what SLURM sends before preempting or at the
end of the time limit with ``--signal``) makes every rank finish its current
step; rank 0 writes a checkpoint atomically and the processes exit with
status ``128 + signal``. Rerunning the same command resumes. A checkpoint from
a different configuration or data product is ignored (logged), not resumed.

Outputs in ``outdir``: ``model.pt`` (best state_dict), ``model_card.json``,
``metrics.csv`` (one row per epoch), ``training_curve.png`` and
``checkpoint.pt`` (kept for resumption and inspection).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from skysift.context import RunContext, resolve_context
from skysift.errors import InputDataError, ProductError
from skysift.io import atomic_output, open_product, save_figure
from skysift.log import get_logger, progress
from skysift.metrics import binary_metrics
from skysift.provenance import sha256_file
from skysift.train.data import EpochBatches, ProductDataset, epoch_loader, split_indices
from skysift.train.distributed import DistributedContext, cleanup_distributed, init_distributed
from skysift.train.config import TrainConfig
from skysift.train.tasks import TaskSpec, get_task

__all__ = ["TrainConfig", "TrainingInterrupted", "evaluate", "load_model", "train"]

log = get_logger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
CARD_NAME = "model_card.json"


class TrainingInterrupted(Exception):
    """Raised after a checkpoint was written in response to SIGTERM/SIGUSR1."""

    def __init__(self, signum: int, epoch: int, step: int) -> None:
        super().__init__(f"stopped by signal {signum} at epoch {epoch} step {step}; rerun to resume")
        self.signum, self.epoch, self.step = signum, epoch, step


class _SignalFlag:
    """Records SIGTERM/SIGUSR1 so the loop can stop at a step boundary."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalFlag:
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("received signal %d: checkpointing at the end of this step", signum)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _step_seed(seed: int, *keys: int) -> int:
    digest = hashlib.sha256(":".join(map(str, (seed, *keys))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _fingerprint(task: TaskSpec, config: TrainConfig, product_sha256: str, world_size: int) -> str:
    fields = dataclasses.asdict(config)
    for volatile in ("num_workers", "device", "threads", "memory_limit_gib"):  # do not change the result
        fields.pop(volatile)
    text = json.dumps({"task": task.name, "config": fields, "product": product_sha256, "world": world_size}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_output(path) as temporary:
        temporary.write_bytes(buffer.getvalue())


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.learning_rate * 0.01)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: ProductDataset,
    indices: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    preprocess: Any = None,
    num_workers: int = 0,
    shuffle_buffer_mib: float = 128.0,
) -> tuple[np.ndarray, float]:
    """Scores (sigmoid of logits) for ``indices`` and the mean BCE loss (NaN without labels).

    ``preprocess`` is the task's per-batch preprocessing (the same as in
    training). A product larger than memory is streamed in order, window by
    window of ``shuffle_buffer_mib``, by ``num_workers`` DataLoader workers.
    """
    model.eval()
    scores, loss_sum = [], 0.0
    sampler = EpochBatches(indices, batch_size, seed=0, epoch=0, shuffle=False, block_size=dataset.block_size,
                           window_blocks=dataset.window_blocks(shuffle_buffer_mib * 2**20))
    for inputs, labels in epoch_loader(dataset, sampler, num_workers=num_workers, pin_memory=device.type == "cuda"):
        if preprocess is not None:
            inputs = preprocess(inputs)
        inputs = tuple(t.to(device, non_blocking=True) for t in inputs)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(*inputs).float()
        if labels is not None:
            loss_sum += float(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(device), reduction="sum"))
        scores.append(torch.sigmoid(logits).cpu().numpy())
    scores_array = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    loss = loss_sum / max(1, len(indices)) if dataset.has_labels else float("nan")
    return scores_array, loss


def _plot_training_curve(history: list[dict[str, float]], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("binary cross-entropy")
    loss_axis.set_yscale("log")
    loss_axis.legend()
    metric_axis.plot(epochs, [row["val_accuracy"] for row in history], "o-", label="accuracy")
    metric_axis.plot(epochs, [row["val_roc_auc"] for row in history], "s-", label="ROC AUC")
    metric_axis.set_xlabel("epoch")
    metric_axis.set_ylabel("validation metric")
    metric_axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    with atomic_output(path) as temporary, temporary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def _agree_on_stop(flag: int, context: DistributedContext) -> int:
    """All ranks learn the largest pending signal number (0: none)."""
    if not context.distributed:
        return flag
    tensor = torch.tensor([flag], dtype=torch.int64, device=context.device if context.backend == "nccl" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def train(
    task_name: str,
    product_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    context: RunContext | None = None,
) -> dict[str, Any]:
    """Train ``task_name``'s model on an HDF5 product, resuming if a checkpoint matches.

    Parameters
    ----------
    task_name : str
        A registered task (:data:`skysift.train.tasks.TASKS`).
    product_path : str or path-like
        Training-set product with the task's input arrays and label column.
    outdir : str or path-like
        Where the model, card, metrics, plot and checkpoint go.
    config : TrainConfig
        Hyper-parameters.
    context : RunContext, optional
        Rule and configuration digest recorded in the model card.

    Returns
    -------
    dict
        The model card (on every rank).

    Raises
    ------
    TrainingInterrupted
        After checkpointing, when SIGTERM or SIGUSR1 arrived.
    ProductError
        If the product lacks the task's arrays or labels.
    """
    task = get_task(task_name)
    run = resolve_context(context, "train")
    distributed = init_distributed(config.device)
    try:
        return _train(task, Path(product_path), Path(outdir), config, distributed, run)
    finally:
        cleanup_distributed()


def _train(
    task: TaskSpec,
    product_path: Path,
    outdir: Path,
    config: TrainConfig,
    context: DistributedContext,
    run: RunContext,
) -> dict[str, Any]:
    if config.threads:
        torch.set_num_threads(config.threads)
    dataset = ProductDataset(product_path, task.inputs, task.label, memory_limit_bytes=int(config.memory_limit_gib * 2**30))
    if context.is_main:
        log.info("%s: %.2f GiB of inputs, %s", product_path, dataset.nbytes / 2**30,
                 "read into memory" if dataset.in_memory else
                 f"over the {config.memory_limit_gib:g} GiB memory limit: streamed by chunks with {config.num_workers} worker(s)")
    if not dataset.has_labels:
        raise ProductError(f"{product_path}: no '{task.label}' column to train on")
    dataset.load()  # before the first epoch's clock starts
    groups = None
    if task.split_group is not None and task.split_group in dataset.table.colnames:
        groups = np.asarray(dataset.table[task.split_group])
    splits = split_indices(len(dataset), config.val_fraction, config.test_fraction, config.seed, groups)
    if len(splits["train"]) == 0 or len(splits["val"]) == 0:
        raise ProductError(f"{product_path}: {len(dataset)} samples are too few for a train/validation split")
    product_sha256 = sha256_file(product_path)
    fingerprint = _fingerprint(task, config, product_sha256, context.world_size)
    outdir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = outdir / CHECKPOINT_NAME

    torch.manual_seed(_step_seed(config.seed, -1))
    model = task.build_model(**config.model).to(context.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "loss_sum": 0.0,
        "seen": 0,
        "history": [],
        "best_val_loss": math.inf,
        "best_state": None,
        "bad_epochs": 0,
        "train_seconds": 0.0,
    }
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state.update(saved["state"])
            if context.is_main:
                log.info("resuming from %s at epoch %d step %d", checkpoint_path, state["epoch"], state["step"])
        elif context.is_main:
            log.warning("%s belongs to another configuration or product; starting afresh", checkpoint_path)

    network: torch.nn.Module = model
    if context.distributed:
        network = DistributedDataParallel(model, device_ids=[context.device.index] if context.device.type == "cuda" else None)
    augment = task.augmentation() if config.augment else None
    preprocess = task.preprocessing()
    use_amp = config.amp and context.device.type == "cuda"
    loss_function = torch.nn.BCEWithLogitsLoss()

    def save_checkpoint() -> None:
        if context.is_main:
            _atomic_torch_save(
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "state": state,
                },
                checkpoint_path,
            )
        if context.distributed:
            dist.barrier()

    with _SignalFlag() as signals:
        while state["epoch"] < config.epochs and not state.get("stopped_early", False):
            epoch = state["epoch"]
            # Resuming mid-epoch: the order is a pure function of the seed and epoch, so skipping
            # the steps already taken replays exactly the rest of the interrupted epoch.
            sampler = EpochBatches(
                splits["train"], config.batch_size, seed=config.seed, epoch=epoch, rank=context.rank,
                world_size=context.world_size, start_step=state["step"], max_steps=config.max_steps_per_epoch,
                block_size=dataset.block_size, window_blocks=dataset.window_blocks(config.shuffle_buffer_mib * 2**20),
            )
            loader = epoch_loader(dataset, sampler, num_workers=config.num_workers, pin_memory=context.device.type == "cuda")
            network.train()
            epoch_start = time.perf_counter()
            step = state["step"]
            for inputs, labels in progress(loader, desc=f"{task.name} epoch {epoch + 1}/{config.epochs}", total=len(sampler), unit="batch"):
                step_seed = _step_seed(config.seed, epoch, step, context.rank)
                torch.manual_seed(step_seed)
                if augment is not None:
                    inputs = augment(inputs, torch.Generator().manual_seed(step_seed))
                if preprocess is not None:
                    inputs = preprocess(inputs)
                inputs = tuple(t.to(context.device, non_blocking=True) for t in inputs)
                labels = labels.to(context.device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=context.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    logits = network(*inputs).float()
                loss = loss_function(logits, labels)
                loss.backward()
                optimizer.step()
                state["loss_sum"] += float(loss.detach()) * len(labels)
                state["seen"] += len(labels)
                step += 1
                state["step"] = step
                pending = _agree_on_stop(signals.signum, context)
                if pending:
                    state["train_seconds"] += time.perf_counter() - epoch_start
                    save_checkpoint()
                    raise TrainingInterrupted(pending, epoch, step)
            state["train_seconds"] += time.perf_counter() - epoch_start
            epoch_seconds = time.perf_counter() - epoch_start
            # Mean training loss over the epoch, summed over ranks.
            totals = torch.tensor([state["loss_sum"], state["seen"]], dtype=torch.float64)
            if context.distributed:
                totals = totals.to(context.device if context.backend == "nccl" else "cpu")
                dist.all_reduce(totals)
            train_loss = float(totals[0] / max(1.0, float(totals[1])))
            scheduler.step()
            row: dict[str, float] = {"epoch": epoch + 1, "train_loss": train_loss}
            if context.is_main:
                scores, val_loss = evaluate(model, dataset, splits["val"], batch_size=config.batch_size, device=context.device,
                                            amp=use_amp, preprocess=preprocess, num_workers=config.num_workers,
                                            shuffle_buffer_mib=config.shuffle_buffer_mib)
                metrics = binary_metrics(dataset.labels[splits["val"]], scores)
                row.update(
                    val_loss=val_loss, val_accuracy=metrics["accuracy"], val_roc_auc=metrics["roc_auc"],
                    learning_rate=optimizer.param_groups[0]["lr"], epoch_seconds=epoch_seconds,
                    samples_per_second=float(totals[1]) / max(epoch_seconds, 1e-9),
                )
                log.info(
                    "epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f, val AUC %.4f (%.1f samples/s)",
                    epoch + 1, train_loss, val_loss, metrics["accuracy"], metrics["roc_auc"], row["samples_per_second"],
                )
                if val_loss < state["best_val_loss"]:
                    state["best_val_loss"] = val_loss
                    state["best_state"] = copy.deepcopy(model.state_dict())
                    state["bad_epochs"] = 0
                else:
                    state["bad_epochs"] += 1
                stop = config.patience > 0 and state["bad_epochs"] >= config.patience
            else:
                stop = False
            if context.distributed:
                flag = torch.tensor([int(stop)], device=context.device if context.backend == "nccl" else "cpu")
                dist.broadcast(flag, src=0)
                stop = bool(flag.item())
            state["history"].append(row)
            state.update(epoch=epoch + 1, step=0, loss_sum=0.0, seen=0, stopped_early=stop)
            save_checkpoint()
            if stop and context.is_main:
                log.info("early stopping: no better validation loss in %d epochs", config.patience)

    card: dict[str, Any] = {}
    if context.is_main:
        card = _finish(task, model, dataset, splits, state, config, context, product_path, product_sha256, outdir, run)
    if context.distributed:
        dist.barrier()
        if not context.is_main:
            card = json.loads((outdir / CARD_NAME).read_text())
    return card


def _finish(
    task: TaskSpec,
    model: torch.nn.Module,
    dataset: ProductDataset,
    splits: dict[str, np.ndarray],
    state: dict[str, Any],
    config: TrainConfig,
    context: DistributedContext,
    product_path: Path,
    product_sha256: str,
    outdir: Path,
    run: RunContext,
) -> dict[str, Any]:
    """Write the best model, its card, the metrics table and the training curve (rank 0)."""
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    test_metrics: dict[str, float] = {}
    if len(splits["test"]):
        scores, test_loss = evaluate(model, dataset, splits["test"], batch_size=config.batch_size, device=context.device,
                                     preprocess=task.preprocessing(), num_workers=config.num_workers,
                                     shuffle_buffer_mib=config.shuffle_buffer_mib)
        test_metrics = {"loss": test_loss, **binary_metrics(dataset.labels[splits["test"]], scores)}
    history = [{k: float(v) for k, v in row.items()} for row in state["history"]]
    _atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, outdir / MODEL_NAME)
    _write_history(history, outdir / "metrics.csv")
    survey = _product_survey(product_path)
    # The report's training curve says which survey's data the model is for, when the product says.
    suffix = f" (for {survey})" if survey != "unspecified" else ""
    save_figure(_plot_training_curve(history, f"{task.name}: training curve{suffix}"), outdir / "training_curve.png")
    provenance = run.provenance(inputs=[product_path], seed=config.seed)
    card = {
        "task": task.name,
        "architecture": type(model).__name__,
        "model_kwargs": config.model,
        "inputs": list(task.inputs),
        "sample_shapes": {k: list(v) for k, v in dataset.sample_shapes.items()},
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "data_products": {str(product_path): product_sha256},
        # Which survey's data the model is for (a product without ``meta.survey`` says nothing).
        "survey": survey,
        "training_distribution": _training_distribution(product_path, dataset.table),
        "split": {
            "seed": config.seed, "val_fraction": config.val_fraction, "test_fraction": config.test_fraction,
            "group": task.split_group if task.split_group in dataset.table.colnames else None,
            **{f"n_{name}": int(len(idx)) for name, idx in splits.items()},
        },
        "train_config": dataclasses.asdict(config),
        "world_size": context.world_size,
        "device": str(context.device),
        "epochs_run": len(history),
        "stopped_early": bool(state.get("stopped_early", False)),
        "train_seconds": state["train_seconds"],
        "metrics": {"best_val_loss": state["best_val_loss"], "validation": history[-1] if history else {}, "test": test_metrics},
        "provenance": provenance.to_dict(),
    }
    with atomic_output(outdir / CARD_NAME) as temporary:
        temporary.write_text(json.dumps(card, indent=2, sort_keys=True, default=float))
    log.info("test metrics: %s", ", ".join(f"{k} {v:.4f}" for k, v in test_metrics.items()))
    return card


def _training_distribution(product_path: Path, table: Any) -> dict[str, Any]:
    """What the model was trained on: the product's settings and priors, and the share of each sample kind.

    ``settings`` holds the product's scalar attributes (survey, cuts, the
    declared priors as ``prior.*`` text, observing conditions...); ``kinds``
    the fraction of samples of each value of the product's ``kind`` column,
    where it has one (e.g. the lens finder's look-alike families).
    """
    with open_product(product_path) as product:
        settings = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in product.attrs.items()
                    if isinstance(v, (str, int, float, bool, np.generic))}
    distribution: dict[str, Any] = {"settings": settings}
    if "kind" in table.colnames:
        kinds, counts = np.unique(np.asarray(table["kind"]).astype(str), return_counts=True)
        distribution["kinds"] = {str(k): float(c) / float(counts.sum()) for k, c in zip(kinds, counts)}
    return distribution


def _product_survey(product_path: Path) -> str:
    with open_product(product_path) as product:
        return str(product.attrs.get("survey", "unspecified"))


def load_model(
    model_dir: str | os.PathLike[str], device: str | torch.device = "cpu", *, task: str | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a trained model and its card with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    model_dir : str or path-like
        Directory of ``model.pt`` and ``model_card.json``.
    device : str or torch.device
        Where the model goes.
    task : str, optional
        The task the caller expects; a model of another task is refused.

    Raises
    ------
    FileNotFoundError
        If the model or card is missing (the message names it).
    InputDataError
        If the card is not a model card, the model is of another task, or
        ``model.pt`` is not a state dict of the card's architecture (corrupt,
        truncated, or a pickle that would run code: never unpickled here).
    """
    model_dir = Path(model_dir)
    card_path, weights_path = model_dir / CARD_NAME, model_dir / MODEL_NAME
    for path in (card_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (train the model first)")
    try:
        card = json.loads(card_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{card_path}: not a model card (invalid JSON: {exc})") from None
    if (not isinstance(card, dict) or not isinstance(card.get("task"), str) or not isinstance(card.get("model_kwargs"), dict)
            or not isinstance(card.get("inputs"), list)):
        raise InputDataError(f"{card_path}: not a model card (needs 'task', 'model_kwargs' and 'inputs')")
    if task is not None and card["task"] != task:
        raise InputDataError(f"{model_dir}: a '{card['task']}' model, not a {task} model")
    try:
        model = get_task(card["task"]).build_model(**card["model_kwargs"])
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"{card_path}: model_kwargs do not build a {card['task']} model ({exc})") from None
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds objects other than tensors, which are never unpickled"
        raise InputDataError(f"{weights_path}: not a readable skysift state dict ({reason[:200]})") from None
    if not isinstance(state, dict):
        raise InputDataError(f"{weights_path}: not a state dict (found {type(state).__name__})")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputDataError(f"{weights_path}: does not fit the card's architecture ({str(exc).splitlines()[0][:200]})") from None
    return model.to(device).eval(), card
