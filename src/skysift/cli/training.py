"""Subcommands of training and inference: train, score, launch, evaluate, metrics-table."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

from skysift.cli._flags import add_command, add_option_flags, run_context
from skysift.errors import ConfigError
from skysift.log import get_logger
from skysift.train.config import TrainConfig

__all__ = ["register"]

log = get_logger(__name__)


def _import_plugins(modules: Sequence[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--plugin {module}: cannot import it ({exc})") from None


def train_config(arguments: argparse.Namespace) -> TrainConfig:
    """TrainConfig from defaults, then the ``--config`` YAML, then flags given explicitly."""
    from skysift.config import read_yaml

    values: dict[str, Any] = {}
    if arguments.config is not None:
        loaded = read_yaml(arguments.config) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{arguments.config}: a training configuration must be a mapping")
        values.update(TrainConfig.from_mapping(loaded, source=str(arguments.config)).to_dict())
    for item in dataclasses.fields(TrainConfig):
        if hasattr(arguments, item.name) and getattr(arguments, item.name) is not None:  # given on the command line
            values[item.name] = getattr(arguments, item.name)
    if arguments.model_json is not None:
        try:
            extra = json.loads(arguments.model_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--model-json: not valid JSON ({exc})") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"--model-json: expected a JSON object, got {arguments.model_json!r}")
        values["model"] = {**values.get("model", {}), **extra}
    return TrainConfig(**values)


def _train(arguments: argparse.Namespace) -> int:
    from skysift.train.trainer import TrainingInterrupted, train

    _import_plugins(arguments.plugin)
    config = train_config(arguments)
    try:
        train(arguments.task, arguments.product, arguments.outdir, config, context=run_context(arguments, "train"))
    except TrainingInterrupted as interrupted:
        log.warning("%s", interrupted)
        return 128 + interrupted.signum
    return 0


def _score(arguments: argparse.Namespace) -> int:
    from skysift.train.inference import score_product

    _import_plugins(arguments.plugin)
    score_product(arguments.model, arguments.product, arguments.out, catalogue_path=arguments.catalogue,
                  split=arguments.split, batch_size=arguments.inference_batch_size, device=arguments.device,
                  context=run_context(arguments, "score"))
    return 0


def _evaluate(arguments: argparse.Namespace) -> int:
    from skysift.evaluation import evaluate_scores

    _import_plugins(arguments.plugin)
    metrics = evaluate_scores(arguments.scores, arguments.product, arguments.outdir, task_name=arguments.task)
    log.info("%s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _metrics_table(arguments: argparse.Namespace) -> int:
    from skysift.report import write_metrics_table

    write_metrics_table(arguments.products, arguments.out)
    return 0


def _launch(arguments: argparse.Namespace) -> int:
    from skysift.train.launch import launch_command

    command = launch_command(arguments.nproc, arguments.command_args)
    log.info("launching: %s", " ".join(command))
    os.execvp(command[0], command)
    return 0  # pragma: no cover - replaced by exec


def register(commands: argparse._SubParsersAction) -> None:
    """Add the training and inference subcommands to the ``skysift`` parser."""
    train_parser = add_command(
        commands, "train", _train, provenance=True,
        flags=("--task", "--product", "--outdir", "--config", "--model-json", "--plugin", "--seed"),
        overrides={"seed": {"required": False, "default": None}},
        help="train a task's model on a training-set product (python, torchrun or srun)",
        description="Train the model of a task on an HDF5 training-set product. Runs unchanged under python, "
        "torchrun and srun (gloo on CPU, NCCL on GPU), bf16 autocast on GPU. A checkpoint is written atomically "
        "every epoch, and on SIGTERM or SIGUSR1 at the end of the current step (exit status 128+signal); "
        "rerunning the same command resumes exactly. Settings: defaults < --config YAML < flags given.",
    )
    # Training flags default to "not given", so that only the ones given override the --config file.
    add_option_flags(train_parser, TrainConfig, only=[f.name for f in dataclasses.fields(TrainConfig) if f.name != "seed"],
                     suppress_defaults=True)
    add_command(
        commands, "score", _score, provenance=True,
        flags=("--model", "--product", "--out", "--catalogue", "--split", "--inference-batch-size", "--plugin"),
        options=(TrainConfig,), only={TrainConfig: ("device",)},
        overrides={"out": {"help": "output scores product (.h5)"}},
        help="score a product with a trained model; ranked catalogue out",
        description="Run a trained model over an HDF5 product in batches (CPU or GPU) and write the scores as a "
        "product (the input table plus index, score and rank) and optionally a catalogue sorted by score.",
    )
    add_command(
        commands, "launch", _launch, flags=("--nproc", "command_args"),
        help="run a skysift command on N processes (torchrun locally, srun under SLURM)",
        description="Start NPROC copies of a skysift command for distributed training: srun inside a SLURM "
        "allocation with several tasks, torchrun --standalone otherwise, the command itself with NPROC=1. "
        "Example: skysift launch --nproc 2 -- train --task lens --product p.h5 --outdir m",
    )
    add_command(
        commands, "evaluate", _evaluate, flags=("--task", "--scores", "--product", "--outdir", "--plugin"),
        overrides={"product": {"help": "the product that was scored (for the gallery)"}},
        help="held-out metrics, ROC curve and gallery from a scores product",
        description="Evaluate a scores product of a labelled split: metrics.json (accuracy, FPR, FNR, precision, "
        "recall, ROC AUC, TPR at FPR 1%% and the task's own metrics), roc.png and gallery.png.",
    )
    add_command(
        commands, "metrics-table", _metrics_table, flags=("products", "--out"),
        overrides={"products": {"help": "metrics.json files"}, "out": {"help": "output HTML"}},
        help="HTML table of every model's held-out metrics, for the report",
        description="Collect metrics.json files written by skysift evaluate into one HTML table (one row per model).",
    )
