"""The ``skysift`` command line: one subcommand per workflow stage.

Workflow rules call these subcommands (``python -m skysift ...``) and stay thin;
each subcommand parses its arguments, calls the library and writes products
atomically. Errors in inputs or configuration end with one clear line on
stderr naming the file or key, and exit status 2.

Run ``skysift --help`` or ``skysift <command> --help`` for details.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skysift._version import __version__
from skysift.errors import SkysiftError
from skysift.log import get_logger, setup_logging

__all__ = ["build_parser", "main"]

log = get_logger(__name__)

DEFAULT_SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _add_provenance_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("provenance (set by the workflow rules)")
    group.add_argument("--rule", default=None, help="name of the rule recorded in the products (default: the command)")
    group.add_argument("--config-hash", default="", help="sha256 of the workflow configuration, recorded in the products")


def _dataclass_field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """Add one ``--field-name`` option per field of a dataclass of scalars.

    The option defaults to the dataclass default, so the command line and the
    library share one source of truth for parameters.
    """
    group = parser.add_argument_group(title)
    hints = _dataclass_field_types(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        flag = "--" + item.name.replace("_", "-")
        optional = False
        arguments = [a for a in typing.get_args(kind) if a is not type(None)]
        if type(None) in typing.get_args(kind) and len(arguments) == 1:
            kind, optional = arguments[0], True
        parse = _parse_bool if kind is bool else kind
        if optional:
            parse = _optional(parse)
        metavar = "BOOL" if kind is bool else None
        group.add_argument(flag, type=parse, default=item.default, metavar=metavar,
                           help=f"(default {item.default}{'; none for automatic' if optional else ''})")


def _optional(parse: Any) -> Any:
    def parse_or_none(text: str) -> Any:
        return None if text.strip().lower() in ("none", "null", "") else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")
    return parse_or_none


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def dataclass_from_arguments(cls: type, arguments: argparse.Namespace) -> Any:
    """Build a dataclass instance from options added by :func:`add_dataclass_arguments`."""
    return cls(**{item.name: getattr(arguments, item.name) for item in dataclasses.fields(cls)})


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
def _cmd_config_validate(arguments: argparse.Namespace) -> int:
    from skysift.config import load_config, read_pairs_table
    from skysift.provenance import config_hash

    config = load_config(arguments.config, arguments.schema, base_dir=arguments.base_dir)
    table = config.get("inputs", {}).get("pairs_table")
    n_pairs = len(read_pairs_table(Path(arguments.base_dir) / table, base_dir=arguments.base_dir)) if table else 0
    print(f"{arguments.config}: valid (config hash {config_hash(config)[:16]}, {n_pairs} pairs from table)")
    return 0


def _cmd_simulate_pair(arguments: argparse.Namespace) -> int:
    from skysift.simulate.run import run_simulate_pair
    from skysift.simulate.spec import FieldSpec

    spec = dataclass_from_arguments(FieldSpec, arguments)
    run_simulate_pair(
        arguments.outdir,
        spec,
        seed=arguments.seed,
        pair_id=arguments.pair_id,
        rule=arguments.rule or "simulate_pair",
        config_digest=arguments.config_hash,
    )
    return 0


def _cmd_diffim(arguments: argparse.Namespace) -> int:
    from skysift.diffim.pipeline import DiffimOptions, run_diffim

    options = dataclass_from_arguments(DiffimOptions, arguments)
    run_diffim(
        arguments.science, arguments.reference, arguments.outdir,
        science_mask_path=arguments.science_mask, reference_mask_path=arguments.reference_mask,
        options=options, rule=arguments.rule or "diffim", config_digest=arguments.config_hash,
    )
    return 0


def _cmd_transit_simulate(arguments: argparse.Namespace) -> int:
    from skysift.parallel import close_client, get_client
    from skysift.transit.dataset import make_transit_training_set

    client = get_client(arguments.cluster, n_workers=arguments.workers) if arguments.cluster != "none" else None
    try:
        make_transit_training_set(
            arguments.out, arguments.n_samples, seed=arguments.seed, mission=arguments.mission,
            n_blocks=arguments.n_blocks, positive_fraction=arguments.positive_fraction,
            chunk_size=arguments.chunk_size, rule=arguments.rule or "transit_training_set",
            config_digest=arguments.config_hash, client=client,
        )
    finally:
        close_client(client)
    return 0


def _cmd_transit_score(arguments: argparse.Namespace) -> int:
    import numpy as np
    from astropy.table import Table

    from skysift.errors import InputDataError
    from skysift.io import write_table
    from skysift.provenance import Provenance
    from skysift.train.trainer import load_model
    from skysift.transit import scoring

    model, card = load_model(arguments.model)
    if card["task"] != "transit":
        raise InputDataError(f"{arguments.model}: a '{card['task']}' model, not a transit model")
    inputs = [Path(arguments.model) / "model.pt"]
    if arguments.tce_table is not None:
        if arguments.lightcurve_dir is None:
            raise InputDataError("--tce-table needs --lightcurve-dir (where kplr*_llc.fits files are)")
        table = scoring.score_tce_table(model, arguments.tce_table, arguments.lightcurve_dir, limit=arguments.limit)
        inputs.append(arguments.tce_table)
    elif arguments.folded is not None:
        path = Path(arguments.folded)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such folded light curve")
        try:
            columns = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, unpack=True)
        except (OSError, ValueError) as exc:
            raise InputDataError(f"{path}: unreadable folded light curve ({exc})") from exc
        if np.ndim(columns) != 2 or len(columns) < 2:
            raise InputDataError(f"{path}: expected rows (phase, flux[, error]), got shape {np.shape(columns)}")
        score, _, _ = scoring.score_folded(model, columns[0], columns[1])
        table = Table({"source": [str(path)], "score": [score]})
        inputs.append(path)
    elif arguments.lightcurve is not None:
        from skysift.transit.dataset import views_for_lightcurve
        from skysift.transit.lightcurves import read_lightcurve

        if None in (arguments.period, arguments.t0, arguments.duration):
            raise InputDataError("--lightcurve needs --period, --t0 and --duration (hours)")
        lightcurve = read_lightcurve(arguments.lightcurve)
        views = views_for_lightcurve(lightcurve, arguments.period, arguments.t0, arguments.duration)
        table = Table({"source": [str(arguments.lightcurve)], "period": [arguments.period], "t0": [arguments.t0],
                       "duration": [arguments.duration], "score": [float(scoring.score_views(model, *views)[0])]})
        inputs.append(arguments.lightcurve)
    else:
        raise InputDataError("give --lightcurve (with --period/--t0/--duration), --folded, or --tce-table")
    provenance = Provenance.collect(rule=arguments.rule or "transit_score", inputs=inputs, config_digest=arguments.config_hash)
    if arguments.out is not None:
        write_table(table, arguments.out, provenance=provenance)
    table.pprint(max_lines=40, max_width=140)
    return 0


def _cmd_evaluate(arguments: argparse.Namespace) -> int:
    from skysift.evaluation import evaluate_scores

    _import_plugins(arguments.plugin)
    metrics = evaluate_scores(arguments.scores, arguments.product, arguments.outdir, task_name=arguments.task)
    log.info("%s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _cmd_provenance_export(arguments: argparse.Namespace) -> int:
    from skysift.config import load_schema
    from skysift.errors import ConfigError
    from skysift.provdoc import write_prov_documents

    try:
        config = json.loads(arguments.config_json) if arguments.config_json else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config-json: not valid JSON ({exc})") from exc
    paths = write_prov_documents(
        arguments.products, arguments.outdir, schema=load_schema(arguments.schema), config=config,
        metadata_dir=arguments.metadata, run_name=arguments.run_name,
    )
    log.info("PROV documents written: %s", ", ".join(map(str, paths.values())))
    return 0


def _cmd_archive_create(arguments: argparse.Namespace) -> int:
    from skysift.archive import create_bundle
    from skysift.errors import InputDataError

    summary_path = Path(arguments.results) / "provenance" / "summary.json"
    if not summary_path.is_file():
        raise InputDataError(f"{summary_path}: no provenance summary; run the workflow first")
    summary = json.loads(summary_path.read_text())
    provenance_dir = Path(arguments.results) / "provenance"
    documents = sorted(p for p in provenance_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    report = Path(arguments.report) if arguments.report else Path(arguments.results) / "report.html"
    bundle = create_bundle(
        arguments.bundle, results_dir=arguments.results, products=[e["path"] for e in summary["products"]],
        provenance_files=documents, report=report if report.is_file() else None,
        run_name=summary.get("run_name", ""), overwrite=arguments.overwrite,
    )
    log.info("bundle written to %s (%d products)", bundle, len(summary["products"]))
    return 0


def _cmd_archive_verify(arguments: argparse.Namespace) -> int:
    from skysift.archive import verify_bundle

    report = verify_bundle(arguments.bundle)
    if report.ok:
        print(f"{arguments.bundle}: OK, {report.checked} files match the manifest")
        return 0
    for line in report.lines():
        print(f"{arguments.bundle}: {line}", file=sys.stderr)
    return 1


def _cmd_lens_simulate(arguments: argparse.Namespace) -> int:
    from skysift.lens.dataset import make_lens_training_set

    make_lens_training_set(
        arguments.out, arguments.n_samples, survey=arguments.survey, image_size=arguments.image_size,
        supersampling=arguments.supersampling, positive_fraction=arguments.positive_fraction,
        galaxies=arguments.galaxies, seed=arguments.seed, rule=arguments.rule or "lens_training_set",
        config_digest=arguments.config_hash, device=arguments.device, batch_size=arguments.batch_size,
    )
    return 0


def _cmd_release_diff(arguments: argparse.Namespace) -> int:
    from skysift.releases import affected_outputs, diff_releases, read_release

    old = read_release(arguments.old, base_dir=arguments.base_dir)
    new = read_release(arguments.new, base_dir=arguments.base_dir)
    diff = diff_releases(old, new)
    print(f"{arguments.old} -> {arguments.new}")
    print(f"  unchanged: {len(diff.unchanged)} pair(s){': ' + ', '.join(diff.unchanged) if diff.unchanged else ''}")
    print(f"  added:     {len(diff.added)} pair(s){': ' + ', '.join(diff.added) if diff.added else ''}")
    print(f"  removed:   {len(diff.removed)} pair(s){': ' + ', '.join(diff.removed) if diff.removed else ''}")
    print(f"  changed:   {len(diff.changed)} pair(s)")
    for pair_id, columns in sorted(diff.changed.items()):
        print(f"    {pair_id}: {', '.join(columns)}")
    outputs = affected_outputs(diff, arguments.results, realbogus=not arguments.no_realbogus)
    print(f"outputs that rerun ({len(outputs)}):" if outputs else "nothing reruns")
    for output, reason in outputs:
        print(f"  {output}  <- {reason}")
    return 0


def _cmd_release_verify(arguments: argparse.Namespace) -> int:
    from skysift.releases import read_release, verify_release

    release = read_release(arguments.release, base_dir=arguments.base_dir)
    problems = verify_release(release)
    for problem in problems:
        print(f"{arguments.release}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{arguments.release}: {len(release)} pair(s), every checksum matches")
    return 1 if problems else 0


def _cmd_cutouts(arguments: argparse.Namespace) -> int:
    from skysift.cutouts import make_cutouts

    make_cutouts(arguments.diffim_dir, arguments.science, arguments.out, size=arguments.size,
                 rule=arguments.rule or "cutouts", config_digest=arguments.config_hash)
    return 0


def _cmd_realbogus_simulate(arguments: argparse.Namespace) -> int:
    from skysift.diffim.options import DiffimOptions
    from skysift.parallel import close_client, get_client
    from skysift.realbogus.injection import make_realbogus_training_set

    client = get_client(arguments.cluster, n_workers=arguments.workers) if arguments.cluster != "none" else None
    try:
        make_realbogus_training_set(
            [tuple(pair) for pair in arguments.pair], arguments.out,
            n_injections_per_image=arguments.n_injections, snr_range=(arguments.snr_min, arguments.snr_max),
            n_cosmic_rays_per_image=arguments.n_cosmic_rays, real_fraction=arguments.real_fraction,
            cutout_size=arguments.cutout_size, n_repeats=arguments.n_repeats, seed=arguments.seed,
            detected_only=arguments.detected_only, diffim_options=dataclass_from_arguments(DiffimOptions, arguments),
            rule=arguments.rule or "realbogus_training_set", config_digest=arguments.config_hash, client=client,
        )
    finally:
        close_client(client)
    return 0


def _cmd_realbogus_survey_set(arguments: argparse.Namespace) -> int:
    from skysift.realbogus.stamps import StampSettings, make_survey_training_set

    settings = StampSettings(real_fraction=arguments.real_fraction, real_background_fraction=arguments.real_background_fraction,
                             snr_range=(arguments.snr_min, arguments.snr_max))
    make_survey_training_set(arguments.out, survey=arguments.survey, n_samples=arguments.n_samples, seed=arguments.seed,
                             settings=settings, real_backgrounds=arguments.real_backgrounds,
                             exclude_objects=arguments.exclude_objects, rule=arguments.rule or "realbogus_training_set",
                             config_digest=arguments.config_hash)
    return 0


def _cmd_realbogus_evaluate(arguments: argparse.Namespace) -> int:
    from skysift.realbogus.evaluate import evaluate_alerts

    summary = evaluate_alerts(arguments.model, arguments.alerts, arguments.out, arguments.summary, arguments.figure,
                              training_set=arguments.training_set, rule=arguments.rule or "evaluate_ztf_alerts",
                              config_digest=arguments.config_hash)
    print(f"AUC vs rb>=0.5: {summary['auc_rb']:.3f} (n={summary['n']}); ZTF-real scored real: "
          f"{summary['fraction_real_of_ztf_real']:.3f} (n={summary['n_ztf_real']}); "
          f"{summary['n_left_out_as_training_backgrounds']} left out as training backgrounds")
    return 0


def _cmd_realbogus_score(arguments: argparse.Namespace) -> int:
    from skysift.io import read_table
    from skysift.realbogus.ztf import run_score_alerts

    run_score_alerts(arguments.model, arguments.alerts, arguments.out, rule=arguments.rule or "score_ztf_alerts",
                     config_digest=arguments.config_hash)
    table = read_table(arguments.out)
    columns = [c for c in ("source_file", "objectId", "candid", "score", "rb", "drb", "flag") if c in table.colnames]
    table[columns].pprint(max_lines=60, max_width=160)
    for key in ("spearman_drb", "spearman_rb"):
        if key in table.meta:
            print(f"{key}: {table.meta[key]}")
    return 0


def _cmd_gw_simulate(arguments: argparse.Namespace) -> int:
    from skysift.gw.dataset import make_gw_training_set
    from skysift.parallel import close_client, get_client
    from skysift.simulate.priors import Uniform

    client = get_client(arguments.cluster, n_workers=arguments.workers) if arguments.cluster != "none" else None
    try:
        make_gw_training_set(
            arguments.out, arguments.n_samples, approximant=arguments.approximant, sample_rate=arguments.sample_rate,
            duration=arguments.duration, snr_prior=Uniform(arguments.snr_min, arguments.snr_max),
            mass_range=(arguments.mass_min, arguments.mass_max), seed=arguments.seed,
            signal_fraction=arguments.signal_fraction, rule=arguments.rule or "gw_training_set",
            config_digest=arguments.config_hash, client=client,
        )
    finally:
        close_client(client)
    return 0


def _cmd_gw_testdata(arguments: argparse.Namespace) -> int:
    from skysift.gw.mlgwsc import make_mlgwsc_test_data

    outdir = Path(arguments.outdir)
    make_mlgwsc_test_data(
        outdir / "foreground.hdf", outdir / "background.hdf", outdir / "injections.hdf",
        duration=arguments.duration, seed=arguments.seed, approximant=arguments.approximant,
        mass_range=(arguments.mass_min, arguments.mass_max), max_distance=arguments.max_distance,
        rule=arguments.rule or "gw_test_data", config_digest=arguments.config_hash,
    )
    return 0


def _cmd_gw_search(arguments: argparse.Namespace) -> int:
    from skysift.errors import InputDataError

    if (arguments.model is None) == (not arguments.matched_filter):
        raise InputDataError("give either --model DIR or --matched-filter")
    if arguments.matched_filter:
        from skysift.gw.matched_filter import matched_filter_search

        from skysift.gw.matched_filter import template_bank

        mass_range = (arguments.mass_min, arguments.mass_max)
        bank = template_bank(mass_range, n_chirp_mass=arguments.bank_chirp_masses, n_mass_ratio=arguments.bank_mass_ratios)
        matched_filter_search(arguments.strain, arguments.out, mass_range=mass_range, bank=bank,
                              rule=arguments.rule or "gw_matched_filter", config_digest=arguments.config_hash)
        return 0
    from skysift.gw.search import run_search, torch_scorer
    from skysift.train.trainer import load_model

    model, card = load_model(arguments.model)
    if card["task"] != "gw":
        raise InputDataError(f"{arguments.model}: a '{card['task']}' model, not a gw model")
    run_search(arguments.strain, arguments.out, torch_scorer(model), step=arguments.step,
               rule=arguments.rule or "gw_search", config_digest=arguments.config_hash)
    return 0


def _cmd_gw_evaluate(arguments: argparse.Namespace) -> int:
    from skysift.gw.evaluate import evaluate_search, plot_sensitivity
    from skysift.gw.mlgwsc import read_events, read_injections, read_strain
    from skysift.io import atomic_output, save_figure

    segments = read_strain(arguments.background_strain)
    background_duration = float(sum(segment.duration for segment in segments))
    injections = read_injections(arguments.injections)
    curves = {}
    for name, foreground, background in arguments.search:
        curves[name] = evaluate_search(read_events(foreground), read_events(background), injections,
                                       background_duration, max_distance=arguments.max_distance)
    summary = {name: curve.summary() for name, curve in curves.items()}
    with atomic_output(arguments.out_json) as temporary:
        temporary.write_text(json.dumps(summary, indent=2, default=float))
    save_figure(plot_sensitivity(curves), arguments.out_plot)
    for name, values in summary.items():
        log.info("%s: %s", name, ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))
    return 0


def _cmd_metrics_table(arguments: argparse.Namespace) -> int:
    from skysift.report import write_metrics_table

    write_metrics_table(arguments.metrics, arguments.out)
    return 0


def _cmd_provenance_show(arguments: argparse.Namespace) -> int:
    from skysift.io import read_provenance

    print(json.dumps(read_provenance(arguments.product).to_dict(), indent=2, sort_keys=True))
    return 0


def _cmd_provenance_summary(arguments: argparse.Namespace) -> int:
    from skysift.report import write_provenance_summary

    summary = write_provenance_summary(arguments.products, arguments.json, arguments.html, run_name=arguments.run_name,
                                       release=arguments.release)
    log.info("provenance of %d products written to %s and %s", len(summary["products"]), arguments.json, arguments.html)
    return 0


def _train_config_from_arguments(arguments: argparse.Namespace) -> Any:
    """TrainConfig from defaults, then the --config YAML, then explicit flags."""
    from skysift.config import read_yaml
    from skysift.errors import ConfigError
    from skysift.train.config import TrainConfig

    values: dict[str, Any] = {}
    if arguments.config is not None:
        loaded = read_yaml(arguments.config) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{arguments.config}: a training configuration must be a mapping")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ConfigError(f"{arguments.config}: unknown training key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        values.update(loaded)
    for item in dataclasses.fields(TrainConfig):
        given = getattr(arguments, item.name, None)
        if given is not None:
            values[item.name] = given
    if arguments.model_json is not None:
        try:
            values["model"] = {**values.get("model", {}), **json.loads(arguments.model_json)}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--model-json: not valid JSON ({exc})") from exc
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training configuration: {exc}") from exc


def _import_plugins(modules: Sequence[str]) -> None:
    import importlib

    for module in modules:
        importlib.import_module(module)


def _cmd_train(arguments: argparse.Namespace) -> int:
    from skysift.train.trainer import TrainingInterrupted, train

    _import_plugins(arguments.plugin)
    config = _train_config_from_arguments(arguments)
    try:
        train(arguments.task, arguments.product, arguments.outdir, config,
              rule=arguments.rule or "train", config_digest=arguments.config_hash)
    except TrainingInterrupted as interrupted:
        log.warning("%s", interrupted)
        return 128 + interrupted.signum
    return 0


def _cmd_score(arguments: argparse.Namespace) -> int:
    from skysift.train.inference import score_product

    _import_plugins(arguments.plugin)
    score_product(arguments.model, arguments.product, arguments.out, catalogue_path=arguments.catalogue,
                  split=arguments.split, batch_size=arguments.batch_size, device=arguments.device,
                  rule=arguments.rule or "score", config_digest=arguments.config_hash)
    return 0


def _cmd_launch(arguments: argparse.Namespace) -> int:
    from skysift.train.launch import launch_command

    command = launch_command(arguments.nproc, arguments.command_args)
    log.info("launching: %s", " ".join(command))
    os.execvp(command[0], command)
    return 0  # pragma: no cover - replaced by exec


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Return the ``skysift`` argument parser with every subcommand."""
    from skysift.simulate.spec import FieldSpec

    parser = argparse.ArgumentParser(
        prog="skysift",
        description=(
            "skysift: survey data to deep-learning science, reproducibly. Each subcommand is one "
            "stage of the Snakemake workflow; rules call them, and you can run them by hand."
        ),
    )
    parser.add_argument("--version", action="version", version=f"skysift {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-file", default=None, help="also append log records to this file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # config ----------------------------------------------------------------
    config_parser = commands.add_parser(
        "config",
        help="check a workflow configuration",
        description="Check a workflow configuration against the schema before running anything.",
    )
    config_commands = config_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    validate = config_commands.add_parser(
        "validate",
        help="validate a YAML config (types, unknown keys, paths)",
        description=(
            "Validate a YAML configuration (safe loading) against the JSON schema: types, ranges, "
            "required and unknown keys, and that every path key points where it should. Exits 2 "
            "with one line per problem, naming the key."
        ),
    )
    validate.add_argument("config", nargs="?", default="config/config.yaml", help="configuration file")
    validate.add_argument("--schema", default=str(DEFAULT_SCHEMA), help="JSON schema (YAML)")
    validate.add_argument("--base-dir", default=".", help="directory relative paths are resolved against")
    validate.set_defaults(handler=_cmd_config_validate)

    # simulate --------------------------------------------------------------
    simulate = commands.add_parser(
        "simulate",
        help="simulate inputs with known truth (star-field image pairs)",
        description="Simulate inputs whose truth is known, for the embedded demo, tests and benchmarks.",
    )
    simulate_commands = simulate.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    pair = simulate_commands.add_parser(
        "pair",
        help="a reference/science star-field pair with injected transients",
        description=(
            "Simulate a reference and a science image of one star field (different PSFs, a shift and "
            "small rotation, Poisson and read noise, saturated stars) with point transients in the "
            "science image only. Writes reference.fits, science.fits, truth.h5 (per-transient "
            "parameters and stamps), stars.ecsv and preview.png into OUTDIR."
        ),
    )
    pair.add_argument("--outdir", required=True, type=Path, help="output directory")
    pair.add_argument("--pair-id", default="sim", help="name of the pair recorded in the products")
    pair.add_argument("--seed", type=int, required=True, help="random seed")
    add_dataclass_arguments(pair, FieldSpec, "field parameters (skysift.simulate.starfield.FieldSpec)")
    _add_provenance_arguments(pair)
    pair.set_defaults(handler=_cmd_simulate_pair)

    # diffim ----------------------------------------------------------------
    from skysift.diffim.options import DiffimOptions

    diffim = commands.add_parser(
        "diffim",
        help="ZOGY image differencing of a science/reference pair; candidates out",
        description=(
            "Align the reference to the science image (WCS, refined by matching stars), estimate "
            "backgrounds, noise and PSFs from the data, scale the fluxes, subtract with ZOGY proper image "
            "subtraction (Zackay, Ofek & Gal-Yam 2016) and detect candidates on Scorr (in sigma). Writes "
            "difference.fits, scorr.fits, fpsf.fits, fpsf_err.fits, candidates.ecsv and preview.png into "
            "OUTDIR, all or nothing."
        ),
    )
    diffim.add_argument("--science", required=True, type=Path, help="science (new) image, FITS with WCS")
    diffim.add_argument("--reference", required=True, type=Path, help="reference image, FITS with WCS")
    diffim.add_argument("--outdir", required=True, type=Path, help="output directory")
    diffim.add_argument("--science-mask", type=Path, default=None, help="bad-pixel mask of the science image (FITS, nonzero = bad)")
    diffim.add_argument("--reference-mask", type=Path, default=None, help="bad-pixel mask of the reference image")
    add_dataclass_arguments(diffim, DiffimOptions, "differencing options (skysift.diffim.pipeline.DiffimOptions)")
    _add_provenance_arguments(diffim)
    diffim.set_defaults(handler=_cmd_diffim)

    # cutouts -----------------------------------------------------------------
    cutouts = commands.add_parser(
        "cutouts",
        help="science/reference/difference cutout triplets around a diffim run's candidates",
        description=(
            "Cut science/reference/difference triplets (odd size, default 63x63) around every candidate of a "
            "diffim output directory, vectorised, edges padded with NaN and masked; writes a cutouts HDF5 "
            "product with the candidate table."
        ),
    )
    cutouts.add_argument("--diffim-dir", required=True, type=Path, help="output directory of skysift diffim")
    cutouts.add_argument("--science", required=True, type=Path, help="the science image that was differenced")
    cutouts.add_argument("--out", required=True, type=Path, help="output HDF5 product")
    cutouts.add_argument("--size", type=int, default=63, help="cutout side (odd)")
    _add_provenance_arguments(cutouts)
    cutouts.set_defaults(handler=_cmd_cutouts)

    # realbogus ---------------------------------------------------------------
    realbogus = commands.add_parser(
        "realbogus",
        help="real/bogus training sets by injection into real images, and scoring of ZTF alerts",
        description=(
            "Real/bogus classification of difference-image candidates (braai, Deep-HiTS): build a training set "
            "by injecting PSF-shaped point sources into science images before subtraction (real) against the "
            "subtraction's own artefacts (bogus), or score ZTF Avro alert packets with a trained model."
        ),
    )
    realbogus_commands = realbogus.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    rb_sim = realbogus_commands.add_parser(
        "simulate",
        help="injection training set from science/reference pairs -> HDF5 product",
        description=(
            "For each science/reference pair: inject point sources made with the science image's own PSF over "
            "an S/N range, add cosmic-ray hits, difference (ZOGY), and cut triplets at the detected injections (label 1) "
            "and at candidates where nothing was injected: star residuals, saturated cores, cosmic rays, "
            "misalignment from a deliberately shifted WCS (label 0). Dask-parallel over pairs."
        ),
    )
    rb_sim.add_argument("--pair", nargs=2, action="append", required=True, metavar=("SCIENCE", "REFERENCE"),
                        type=Path, help="a science/reference FITS pair (repeat for more)")
    rb_sim.add_argument("--out", required=True, type=Path)
    rb_sim.add_argument("--seed", required=True, type=int)
    rb_sim.add_argument("--n-injections", type=int, default=50, help="injected sources per image and repeat")
    rb_sim.add_argument("--snr-min", type=float, default=5.0)
    rb_sim.add_argument("--snr-max", type=float, default=50.0)
    rb_sim.add_argument("--n-cosmic-rays", type=int, default=15, help="cosmic-ray hits per image and repeat")
    rb_sim.add_argument("--real-fraction", type=float, default=0.5)
    rb_sim.add_argument("--cutout-size", type=int, default=63)
    rb_sim.add_argument("--n-repeats", type=int, default=1, help="independent injection rounds per pair")
    rb_sim.add_argument("--detected-only", type=_parse_bool, default=True, metavar="BOOL",
                        help="keep only injections and cosmic rays the subtraction detected, cut at the candidate "
                             "(default true: the classifier only ever sees candidates)")
    rb_sim.add_argument("--cluster", default="local", choices=["none", "local", "slurm"],
                        help="Dask cluster over the pairs: local (a LocalCluster, default), slurm, or none "
                             "(threads in this process); the product is the same whichever runs it")
    rb_sim.add_argument("--workers", type=int, default=None, help="workers of a local cluster (default: Dask's choice)")
    add_dataclass_arguments(rb_sim, DiffimOptions, "differencing options (skysift.diffim.options.DiffimOptions)")
    _add_provenance_arguments(rb_sim)
    rb_sim.set_defaults(handler=_cmd_realbogus_simulate)
    rb_survey = realbogus_commands.add_parser(
        "survey-set", help="survey-like alert triplets (ZTF preset), simulated or on real alert stamps -> HDF5 product",
        description="Training set in a survey's own alert-stamp terms (skysift.realbogus.stamps): point sources "
                    "and artefact families (dipoles, PSF-mismatch, spikes, ghosts, cosmic rays, hot pixels, bad "
                    "columns, edges) on simulated survey backgrounds or on real alert stamps.")
    rb_survey.add_argument("--out", required=True, type=Path)
    rb_survey.add_argument("--seed", required=True, type=int)
    rb_survey.add_argument("--survey", default="ztf", help="survey preset (skysift.realbogus.survey)")
    rb_survey.add_argument("--n-samples", type=int, default=6000)
    rb_survey.add_argument("--snr-min", type=float, default=5.0)
    rb_survey.add_argument("--snr-max", type=float, default=300.0)
    rb_survey.add_argument("--real-fraction", type=float, default=0.5)
    rb_survey.add_argument("--real-backgrounds", nargs="*", type=Path, default=[], metavar="DIR",
                           help="alert-packet directories whose stamps serve as backgrounds")
    rb_survey.add_argument("--real-background-fraction", type=float, default=0.5)
    rb_survey.add_argument("--exclude-objects", nargs="*", default=[], metavar="OBJECTID",
                           help="objectIds never used as backgrounds (an evaluation fold)")
    _add_provenance_arguments(rb_survey)
    rb_survey.set_defaults(handler=_cmd_realbogus_survey_set)
    rb_eval = realbogus_commands.add_parser(
        "evaluate", help="agreement with ZTF's rb/drb on real alert packets: table, JSON summary, figure")
    rb_eval.add_argument("--model", required=True, type=Path, help="trained realbogus model directory")
    rb_eval.add_argument("--alerts", required=True, nargs="+", type=Path, help="directories of .avro alert packets")
    rb_eval.add_argument("--training-set", type=Path, default=None,
                         help="the model's training product: alerts it used as backgrounds are left out")
    rb_eval.add_argument("--out", required=True, type=Path, help="output ECSV table")
    rb_eval.add_argument("--summary", required=True, type=Path, help="output JSON summary")
    rb_eval.add_argument("--figure", type=Path, default=None, help="output PNG figure")
    _add_provenance_arguments(rb_eval)
    rb_eval.set_defaults(handler=_cmd_realbogus_evaluate)
    rb_score = realbogus_commands.add_parser(
        "score",
        help="score ZTF Avro alert packets; our score beside ZTF's rb and drb",
        description=(
            "Read every ZTF Avro alert packet in ALERTS (science/template/difference cutouts, gzip FITS inside), "
            "score the triplets with a trained real/bogus model, and write a table with our score beside ZTF's "
            "rb and drb (and their Spearman rank correlations). Corrupt or truncated packets and unusable "
            "cutouts give flagged rows with a NaN score, never a crash of the batch."
        ),
    )
    rb_score.add_argument("--model", required=True, type=Path, help="trained realbogus model directory")
    rb_score.add_argument("--alerts", required=True, type=Path, help="directory of .avro alert packets")
    rb_score.add_argument("--out", required=True, type=Path, help="output ECSV table")
    _add_provenance_arguments(rb_score)
    rb_score.set_defaults(handler=_cmd_realbogus_score)

    # gw ----------------------------------------------------------------------
    gw = commands.add_parser(
        "gw",
        help="gravitational waves: training sets, MLGWSC-1 test data, searches, sensitivity",
        description=(
            "Compact-binary signals in 2-detector noise (George & Huerta 2018; MLGWSC-1, Schafer et al. 2023): "
            "PyCBC waveforms projected onto H1 and L1 in aLIGO noise, whitened; MLGWSC-1 test data with injections "
            "every 24 +- 3 s; a sliding-window network search or a matched-filter baseline writing MLGWSC-1 events; "
            "sensitive distance versus false-alarm rate. Needs the gw extra (pip install 'skysift[gw]')."
        ),
    )
    gw_commands = gw.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    gw_sim = gw_commands.add_parser(
        "simulate",
        help="training set of whitened 2-detector samples with and without signals",
        description=(
            "Simulate whitened H1/L1 samples (default 1 s at 2048 Hz): half with a compact-binary signal rescaled to "
            "a network SNR drawn from [--snr-min, --snr-max], half noise only; every source parameter per sample."
        ),
    )
    gw_sim.add_argument("--out", required=True, type=Path)
    gw_sim.add_argument("--n-samples", required=True, type=int)
    gw_sim.add_argument("--seed", required=True, type=int)
    gw_sim.add_argument("--approximant", default="IMRPhenomD", choices=["IMRPhenomD", "IMRPhenomXPHM"])
    gw_sim.add_argument("--sample-rate", type=float, default=2048.0)
    gw_sim.add_argument("--duration", type=float, default=1.0, help="sample length (s)")
    gw_sim.add_argument("--snr-min", type=float, default=5.0)
    gw_sim.add_argument("--snr-max", type=float, default=20.0)
    gw_sim.add_argument("--mass-min", type=float, default=10.0, help="component mass (solar masses)")
    gw_sim.add_argument("--mass-max", type=float, default=50.0)
    gw_sim.add_argument("--signal-fraction", type=float, default=0.5)
    gw_sim.add_argument("--cluster", default="none", choices=["none", "local", "slurm"])
    gw_sim.add_argument("--workers", type=int, default=None)
    _add_provenance_arguments(gw_sim)
    gw_sim.set_defaults(handler=_cmd_gw_simulate)
    gw_test = gw_commands.add_parser(
        "testdata",
        help="MLGWSC-1 foreground/background strain files and injections",
        description=(
            "Write MLGWSC-1-format strain (foreground.hdf with injections every 24 +- 3 s, background.hdf with the "
            "same noise and none) and injections.hdf into OUTDIR; injections uniform in volume to --max-distance."
        ),
    )
    gw_test.add_argument("--outdir", required=True, type=Path)
    gw_test.add_argument("--duration", type=float, default=3600.0, help="seconds of data")
    gw_test.add_argument("--seed", required=True, type=int)
    gw_test.add_argument("--approximant", default="IMRPhenomD", choices=["IMRPhenomD", "IMRPhenomXPHM"])
    gw_test.add_argument("--mass-min", type=float, default=10.0)
    gw_test.add_argument("--mass-max", type=float, default=50.0)
    gw_test.add_argument("--max-distance", type=float, default=2000.0, help="Mpc")
    _add_provenance_arguments(gw_test)
    gw_test.set_defaults(handler=_cmd_gw_testdata)
    gw_search = gw_commands.add_parser(
        "search",
        help="search MLGWSC-1 strain with a trained network or the matched-filter baseline",
        description=(
            "Slide a trained network over continuous 2-detector data (or run the matched-filter baseline with a "
            "template bank over the same mass range), cluster triggers and write MLGWSC-1 events (time, stat, var)."
        ),
    )
    gw_search.add_argument("--strain", required=True, type=Path, help="MLGWSC-1 strain file")
    gw_search.add_argument("--out", required=True, type=Path, help="events file")
    gw_search.add_argument("--model", type=Path, default=None, help="trained gw model directory")
    gw_search.add_argument("--matched-filter", action="store_true", help="run the matched-filter baseline instead")
    gw_search.add_argument("--step", type=float, default=0.1, help="window step (s)")
    gw_search.add_argument("--mass-min", type=float, default=10.0)
    gw_search.add_argument("--mass-max", type=float, default=50.0)
    gw_search.add_argument("--bank-chirp-masses", type=int, default=40, help="matched filter: chirp-mass grid points")
    gw_search.add_argument("--bank-mass-ratios", type=int, default=12, help="matched filter: mass-ratio grid points")
    _add_provenance_arguments(gw_search)
    gw_search.set_defaults(handler=_cmd_gw_search)
    gw_eval = gw_commands.add_parser(
        "evaluate",
        help="MLGWSC-1 evaluation: FAR from background, found injections, sensitive distance",
        description=(
            "For each search (NAME FOREGROUND_EVENTS BACKGROUND_EVENTS): false-alarm rate from the background events, "
            "injections found in the foreground (injection time within an event's time +- var), sensitive distance "
            "versus FAR down to what the background duration resolves, and efficiency at network SNR >= 10."
        ),
    )
    gw_eval.add_argument("--search", nargs=3, action="append", required=True, metavar=("NAME", "FOREGROUND", "BACKGROUND"))
    gw_eval.add_argument("--injections", required=True, type=Path)
    gw_eval.add_argument("--background-strain", required=True, type=Path, help="the background strain (its duration)")
    gw_eval.add_argument("--max-distance", type=float, default=2000.0)
    gw_eval.add_argument("--out-json", required=True, type=Path)
    gw_eval.add_argument("--out-plot", required=True, type=Path)
    gw_eval.set_defaults(handler=_cmd_gw_evaluate)

    # provenance ------------------------------------------------------------
    provenance = commands.add_parser(
        "provenance",
        help="inspect and summarise the provenance of products",
        description="Show the provenance block of a product, or summarise a run's products for the report.",
    )
    provenance_commands = provenance.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    show = provenance_commands.add_parser(
        "show", help="print a product's provenance block as JSON", description="Print the provenance block of an HDF5, FITS or ECSV product as JSON."
    )
    show.add_argument("product", type=Path)
    show.set_defaults(handler=_cmd_provenance_show)
    summary = provenance_commands.add_parser(
        "summary",
        help="JSON + HTML table of many products' provenance",
        description="Checksum every product and collect its provenance block into a JSON file and an HTML table for the report.",
    )
    summary.add_argument("products", nargs="+", type=Path)
    summary.add_argument("--json", required=True, type=Path, help="output JSON")
    summary.add_argument("--html", required=True, type=Path, help="output HTML table")
    summary.add_argument("--run-name", default="", help="name of the run")
    summary.add_argument("--release", default="", help="name of the data release the run used")
    summary.set_defaults(handler=_cmd_provenance_summary)
    export = provenance_commands.add_parser(
        "export",
        help="W3C PROV (JSON and PROV-N) and an IVOA ProvenanceDM view of a run",
        description=(
            "Build the W3C PROV document of a run from its products' provenance blocks and Snakemake's job "
            "records: entities (files with sha256 and size), activities (jobs with rule, parameters, start and "
            "end), agents (skysift with version and commit, the software environment, the user), and used, "
            "wasGeneratedBy, wasDerivedFrom. Writes prov.json, prov.provn and ivoa_provenance.json (activity "
            "descriptions per rule with parameters and units from the config schema)."
        ),
    )
    export.add_argument("products", nargs="+", type=Path)
    export.add_argument("--outdir", required=True, type=Path)
    export.add_argument("--metadata", type=Path, default=Path(".snakemake") / "metadata", help="Snakemake's job records")
    export.add_argument("--schema", default=str(DEFAULT_SCHEMA), help="config schema (units and descriptions)")
    export.add_argument("--config-json", default="", help="the run's validated configuration as JSON")
    export.add_argument("--run-name", default="")
    export.set_defaults(handler=_cmd_provenance_export)

    # release -----------------------------------------------------------------
    release = commands.add_parser(
        "release",
        help="data-release manifests: what changed between releases, checksum verification",
        description=(
            "Data releases are manifests of inputs with checksums (pairs tables with *_sha256 columns); the "
            "config key 'release' selects one. Moving between releases reruns only the affected jobs."
        ),
    )
    release_commands = release.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    release_diff = release_commands.add_parser(
        "diff",
        help="what changed between two releases and which outputs would rerun, and why",
        description="Compare two release manifests by checksum and list the outputs that would rerun, with reasons.",
    )
    release_diff.add_argument("old", type=Path)
    release_diff.add_argument("new", type=Path)
    release_diff.add_argument("--results", default="results", help="results directory of the run")
    release_diff.add_argument("--base-dir", default=".", help="directory the manifests' paths are relative to")
    release_diff.add_argument("--no-realbogus", action="store_true", help="the run has realbogus.enabled: false")
    release_diff.set_defaults(handler=_cmd_release_diff)
    release_verify = release_commands.add_parser(
        "verify",
        help="recompute every checksum of a release manifest",
        description="Recompute the sha256 of every input listed in a release manifest; exit 1 naming each mismatch.",
    )
    release_verify.add_argument("release", type=Path)
    release_verify.add_argument("--base-dir", default=".")
    release_verify.set_defaults(handler=_cmd_release_verify)

    # archive ----------------------------------------------------------------
    archive = commands.add_parser(
        "archive",
        help="archive bundles: products, sha256 manifest, PROV documents, report; and their verification",
        description="Write an archive bundle of a finished run, or verify one.",
    )
    archive_commands = archive.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    create = archive_commands.add_parser(
        "create",
        help="bundle a run's products with a sha256 manifest, PROV documents and report",
        description=(
            "Copy every product listed in RESULTS/provenance/summary.json, the provenance documents and the "
            "report into BUNDLE, with MANIFEST.sha256 (sha256sum format) and BUNDLE.json. Atomic: the bundle "
            "appears whole or not at all."
        ),
    )
    create.add_argument("--results", default="results", type=Path, help="results directory of the run")
    create.add_argument("--bundle", required=True, type=Path, help="bundle directory to create")
    create.add_argument("--report", default=None, type=Path, help="HTML report (default RESULTS/report.html)")
    create.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    create.set_defaults(handler=_cmd_archive_create)
    verify = archive_commands.add_parser(
        "verify",
        help="check a bundle against its manifest; names missing or altered files",
        description="Recompute every sha256 of a bundle; exit 1 naming each missing, altered or unlisted file.",
    )
    verify.add_argument("bundle", type=Path)
    verify.set_defaults(handler=_cmd_archive_verify)

    # lens --------------------------------------------------------------------
    lens = commands.add_parser(
        "lens",
        help="strong-lens training sets (batched PyTorch simulator, injection around galaxies)",
        description=(
            "Strong-lens finding (Petrillo et al. 2017/2019; CMU DeepLens): simulate SIE + shear lenses of "
            "Sersic sources around simulated or real galaxies, with survey PSF and noise, plus negatives "
            "(the same galaxies without arcs, rings, spiral arms, companions, blends)."
        ),
    )
    lens_commands = lens.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    lens_sim = lens_commands.add_parser(
        "simulate",
        help="simulate a lens-finding training set -> HDF5 product",
        description=(
            "Simulate a lens-finding training set with the batched PyTorch simulator (CPU or GPU) and write it "
            "as a lens-training-set HDF5 product: images (N, 1, H, W) in e-/s and every parameter per sample."
        ),
    )
    lens_sim.add_argument("--out", required=True, type=Path, help="output HDF5 product")
    lens_sim.add_argument("--n-samples", required=True, type=int)
    lens_sim.add_argument("--seed", required=True, type=int)
    lens_sim.add_argument("--survey", default="lsst", choices=["lsst", "hsc", "euclid"], help="survey preset (pixel scale, PSF, noise)")
    lens_sim.add_argument("--image-size", type=int, default=64, help="image side (pixels)")
    lens_sim.add_argument("--supersampling", type=int, default=3, help="sub-pixels per pixel side")
    lens_sim.add_argument("--positive-fraction", type=float, default=0.5)
    lens_sim.add_argument("--galaxies", default="simulated",
                          help="'simulated', or a GalSim real-galaxy directory/catalogue whose galaxies host the arcs")
    lens_sim.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    lens_sim.add_argument("--batch-size", type=int, default=512, help="images simulated per batch")
    _add_provenance_arguments(lens_sim)
    lens_sim.set_defaults(handler=_cmd_lens_simulate)

    # transit -----------------------------------------------------------------
    transit = commands.add_parser(
        "transit",
        help="transit training sets (injections into light curves) and scoring of real light curves",
        description=(
            "Planetary transits as AstroNet (Shallue & Vanderburg 2018): simulate a training set of "
            "global/local views from injected transits and survey-like negatives, or score real light "
            "curves with a trained model."
        ),
    )
    transit_commands = transit.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    transit_sim = transit_commands.add_parser(
        "simulate",
        help="simulated light curves with injected transits and negatives -> views product",
        description=(
            "Simulate stars (rotation, granulation, white noise, gaps, mission cadence), inject Mandel-Agol "
            "transits (label 1) or eclipsing binaries, blends and systematics (label 0), detrend, fold and "
            "bin into AstroNet global (2001) and local (201) views. Dask-parallel over chunks of light curves. "
            "Writes a transit-training-set HDF5 product with every parameter per sample."
        ),
    )
    transit_sim.add_argument("--out", required=True, type=Path, help="output HDF5 product")
    transit_sim.add_argument("--n-samples", required=True, type=int)
    transit_sim.add_argument("--seed", required=True, type=int)
    transit_sim.add_argument("--mission", default="kepler", choices=["kepler", "tess-2min", "tess-ffi", "tess-ffi-10min"])
    transit_sim.add_argument("--n-blocks", type=int, default=1, help="quarters/sectors per light curve")
    transit_sim.add_argument("--positive-fraction", type=float, default=0.5)
    transit_sim.add_argument("--chunk-size", type=int, default=256, help="light curves per parallel task")
    transit_sim.add_argument("--cluster", default="none", choices=["none", "local", "slurm"], help="Dask cluster (none: threads in this process)")
    transit_sim.add_argument("--workers", type=int, default=None, help="Dask workers for --cluster local")
    _add_provenance_arguments(transit_sim)
    transit_sim.set_defaults(handler=_cmd_transit_simulate)
    transit_score = transit_commands.add_parser(
        "score",
        help="score a light-curve file, a folded curve or a TCE table with a trained model",
        description=(
            "Score real light curves with a trained transit model: one Kepler/TESS light-curve FITS file with "
            "its ephemeris (--lightcurve --period --t0 --duration), a phase-folded curve (--folded, .npy or text "
            "rows phase, flux[, error]), or every TCE of a table such as the Kepler DR24 TCE table whose light "
            "curves are in a directory (--tce-table --lightcurve-dir)."
        ),
    )
    transit_score.add_argument("--model", required=True, type=Path, help="trained model directory")
    transit_score.add_argument("--lightcurve", type=Path, default=None, help="Kepler or TESS light-curve FITS")
    transit_score.add_argument("--period", type=float, default=None, help="period (days)")
    transit_score.add_argument("--t0", type=float, default=None, help="epoch (days, the file's time system)")
    transit_score.add_argument("--duration", type=float, default=None, help="transit duration (hours)")
    transit_score.add_argument("--folded", type=Path, default=None, help="phase-folded light curve")
    transit_score.add_argument("--tce-table", type=Path, default=None, help="TCE table (CSV, '#' comments)")
    transit_score.add_argument("--lightcurve-dir", type=Path, default=None, help="directory of kplr*_llc.fits files")
    transit_score.add_argument("--limit", type=int, default=None, help="score only the first N TCEs")
    transit_score.add_argument("--out", type=Path, default=None, help="write the scores as ECSV")
    _add_provenance_arguments(transit_score)
    transit_score.set_defaults(handler=_cmd_transit_score)

    evaluate_parser = commands.add_parser(
        "evaluate",
        help="held-out metrics, ROC curve and gallery from a scores product",
        description=(
            "Evaluate a scores product of a labelled split: accuracy, FPR and FNR at 0.5, precision, recall, "
            "ROC AUC and TPR at FPR 1% (metrics.json), a ROC plot (roc.png) and a gallery of the highest- and "
            "lowest-scored samples (gallery.png)."
        ),
    )
    evaluate_parser.add_argument("--task", required=True)
    evaluate_parser.add_argument("--scores", required=True, type=Path, help="scores product from skysift score")
    evaluate_parser.add_argument("--product", required=True, type=Path, help="the product that was scored (for the gallery)")
    evaluate_parser.add_argument("--outdir", required=True, type=Path)
    evaluate_parser.add_argument("--plugin", action="append", default=[], help="import this module first (it may register tasks)")
    evaluate_parser.set_defaults(handler=_cmd_evaluate)
    table_parser = commands.add_parser(
        "metrics-table",
        help="HTML table of every model's held-out metrics, for the report",
        description="Collect metrics.json files written by skysift evaluate into one HTML table (one row per model).",
    )
    table_parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json files")
    table_parser.add_argument("--out", required=True, type=Path, help="output HTML")
    table_parser.set_defaults(handler=_cmd_metrics_table)

    # train -------------------------------------------------------------------
    from skysift.train.config import TrainConfig

    train_parser = commands.add_parser(
        "train",
        help="train a task's model on a training-set product (python, torchrun or srun)",
        description=(
            "Train the model of a task on an HDF5 training-set product. Runs unchanged under python, "
            "torchrun and srun (process group from the environment: gloo on CPU, NCCL on GPU), with "
            "bf16 autocast on GPU. A checkpoint is written atomically every epoch, and on SIGTERM or "
            "SIGUSR1 at the end of the current step (exit status 128+signal); rerunning the same command "
            "resumes exactly. Writes model.pt, model_card.json, metrics.csv and training_curve.png. "
            "Settings: defaults < --config YAML < explicit options."
        ),
    )
    train_parser.add_argument("--task", required=True, help="task name (see skysift.train.tasks; unknown names are reported with the known ones)")
    train_parser.add_argument("--product", required=True, type=Path, help="training-set HDF5 product")
    train_parser.add_argument("--outdir", required=True, type=Path, help="output directory (also holds the checkpoint)")
    train_parser.add_argument("--config", type=Path, default=None, help="YAML file of training settings (TrainConfig fields)")
    train_parser.add_argument("--model-json", default=None, help='model keyword arguments as JSON, e.g. \'{"width": 16}\'')
    train_parser.add_argument("--plugin", action="append", default=[], help="import this module first (it may register tasks)")
    group = train_parser.add_argument_group("training settings (skysift.train.trainer.TrainConfig)")
    hints = typing.get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        if item.name == "model":
            continue
        kind = hints[item.name]
        group.add_argument("--" + item.name.replace("_", "-"), type=_parse_bool if kind is bool else kind, default=None,
                           help=f"(default {item.default})")
    _add_provenance_arguments(train_parser)
    train_parser.set_defaults(handler=_cmd_train)

    score_parser = commands.add_parser(
        "score",
        help="score a product with a trained model; ranked catalogue out",
        description=(
            "Run a trained model over an HDF5 product in batches (CPU or GPU) and write the scores as a "
            "product (the input table plus index, score and rank) and optionally a catalogue sorted by score."
        ),
    )
    score_parser.add_argument("--model", required=True, type=Path, help="directory of model.pt and model_card.json")
    score_parser.add_argument("--product", required=True, type=Path, help="HDF5 product to score")
    score_parser.add_argument("--out", required=True, type=Path, help="output scores product (.h5)")
    score_parser.add_argument("--catalogue", type=Path, default=None, help="also write the ranked table as ECSV")
    score_parser.add_argument("--split", default="all", choices=["all", "train", "val", "test"], help="score one split of the training product")
    score_parser.add_argument("--batch-size", type=int, default=512)
    score_parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    score_parser.add_argument("--plugin", action="append", default=[], help="import this module first (it may register tasks)")
    _add_provenance_arguments(score_parser)
    score_parser.set_defaults(handler=_cmd_score)

    launch_parser = commands.add_parser(
        "launch",
        help="run a skysift command on N processes (torchrun locally, srun under SLURM)",
        description=(
            "Start NPROC copies of a skysift command for distributed training: inside a SLURM allocation "
            "with several tasks it uses srun, otherwise torchrun --standalone; with NPROC=1 it runs the "
            "command directly. Example: skysift launch --nproc 2 -- train --task lens --product p.h5 --outdir m"
        ),
    )
    launch_parser.add_argument("--nproc", type=int, default=1, help="number of processes (GPUs)")
    launch_parser.add_argument("command_args", nargs=argparse.REMAINDER, help="the skysift command and its arguments (after --)")
    launch_parser.set_defaults(handler=_cmd_launch)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    setup_logging(arguments.log_level, arguments.log_file)
    try:
        return int(arguments.handler(arguments) or 0)
    except (SkysiftError, FileNotFoundError) as exc:
        print(f"skysift {arguments.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
