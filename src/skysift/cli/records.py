"""Subcommands of configuration, provenance, data releases and archives."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from skysift.cli._flags import add_command, add_group, run_context
from skysift.errors import ConfigError
from skysift.log import get_logger

__all__ = ["register"]

log = get_logger(__name__)


def _batch(arguments: argparse.Namespace) -> int:
    from skysift.batch import read_batch_plan, run_batch, write_batch_record
    from skysift.cli import main
    from skysift.errors import SkysiftError
    from skysift.log import setup_logging

    source = str(arguments.path)
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    plan = read_batch_plan(text, source="standard input" if source == "-" else source)

    def run_one(argv):
        try:
            return main(argv)
        finally:  # each job logs to its own file; the batch's own handlers come back
            setup_logging(arguments.log_level, arguments.log_file)

    result = run_batch(plan, run_one)
    log.info("batch %s: %d jobs run, %d current (skipped), %d failed", plan.command[0], len(result.ran),
             len(result.skipped), len(result.failed))
    if result.failed:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in result.failed.items())
        raise SkysiftError(f"{len(result.failed)} of {len(plan.jobs)} jobs failed ({reasons}); the others are kept")
    write_batch_record(arguments.out, plan, result)
    return 0


def _config_validate(arguments: argparse.Namespace) -> int:
    from skysift.config import default_schema_path, load_config, read_pairs_table
    from skysift.provenance import config_hash

    config = load_config(arguments.path, arguments.schema or default_schema_path(), base_dir=arguments.base_dir)
    table = config.get("inputs", {}).get("pairs_table")
    n_pairs = len(read_pairs_table(Path(arguments.base_dir) / table, base_dir=arguments.base_dir)) if table else 0
    print(f"{arguments.path}: valid (config hash {config_hash(config)[:16]}, {n_pairs} pairs from table)")
    return 0


def _config_docs(arguments: argparse.Namespace) -> int:
    from skysift.config import render_parameter_tables

    if arguments.path is None:
        print(render_parameter_tables(None))
        return 0
    path = Path(arguments.path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such Markdown file")
    text = path.read_text(encoding="utf-8")
    updated = render_parameter_tables(text)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
        log.info("%s: parameter tables updated", path)
    return 0


def _provenance_show(arguments: argparse.Namespace) -> int:
    from skysift.io import read_provenance

    for product in arguments.products:
        print(json.dumps(read_provenance(product).to_dict(), indent=2, sort_keys=True))
    return 0


def _listed_products(arguments: argparse.Namespace) -> list[Path]:
    """The products given as arguments, an ``@FILE`` argument standing for the paths FILE lists."""
    from skysift.io import read_path_list

    products: list[Path] = []
    for product in arguments.products:
        text = str(product)
        products += read_path_list(text[1:]) if text.startswith("@") else [product]
    if not products:
        raise ConfigError("no products: give product files or @FILE (a file listing them)")
    return products


def _provenance_summary(arguments: argparse.Namespace) -> int:
    from skysift.report import write_provenance_summary

    outdir = Path(arguments.outdir)
    release = run_context(arguments, "provenance_summary").labels.get("release", "")
    summary = write_provenance_summary(_listed_products(arguments), outdir / "summary.json", outdir / "summary.html",
                                       run_name=arguments.run_name, release=release)
    log.info("provenance of %d products written to %s", len(summary["products"]), outdir)
    return 0


def _provenance_export(arguments: argparse.Namespace) -> int:
    from skysift.config import default_schema_path, load_schema
    from skysift.provdoc import write_prov_documents

    try:
        config = json.loads(arguments.config_json) if arguments.config_json else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config-json: not valid JSON ({exc})") from None
    paths = write_prov_documents(
        _listed_products(arguments), arguments.outdir, schema=load_schema(arguments.schema or default_schema_path()), config=config,
        metadata_dir=arguments.metadata, run_name=arguments.run_name,
    )
    log.info("PROV documents written: %s", ", ".join(map(str, paths.values())))
    return 0


def _workflow_config(arguments: argparse.Namespace) -> dict | None:
    """The validated workflow configuration of ``--config``, or None."""
    from skysift.config import default_schema_path, load_config

    if arguments.config is None:
        return None
    return load_config(arguments.config, arguments.schema or default_schema_path(), base_dir=arguments.base_dir)


def _release_diff(arguments: argparse.Namespace) -> int:
    from skysift.releases import affected_outputs, diff_releases, read_release

    config = _workflow_config(arguments)
    old = read_release(arguments.old, base_dir=arguments.base_dir, require_files=False)
    new = read_release(arguments.new, base_dir=arguments.base_dir, require_files=False)
    diff = diff_releases(old, new)
    print(f"{arguments.old} -> {arguments.new}")
    for label, pairs in (("unchanged", diff.unchanged), ("added", diff.added), ("withdrawn", diff.removed)):
        print(f"  {label + ':':<10} {len(pairs)} pair(s){': ' + ', '.join(pairs) if pairs else ''}")
    print(f"  changed:   {len(diff.changed)} pair(s)")
    for pair_id, columns in sorted(diff.changed.items()):
        print(f"    {pair_id}: {', '.join(columns)}")
    results = config["results_dir"] if config else "results"
    realbogus = config["realbogus"]["enabled"] if config else True
    outputs = affected_outputs(diff, results, realbogus=realbogus)
    print(f"outputs that rerun ({len(outputs)}):" if outputs else "nothing reruns")
    for output, reason in outputs:
        print(f"  {output}  <- {reason}")
    if diff.removed:
        print(f"withdrawn pairs' products move to {results}/withdrawn/{Path(arguments.new).stem}/ when the run starts")
    return 0


def _release_verify(arguments: argparse.Namespace) -> int:
    from skysift.releases import read_release, stale_products, verify_release

    release = read_release(arguments.path, base_dir=arguments.base_dir)
    problems = verify_release(release)
    if Path(arguments.results).is_dir():
        problems += stale_products(release, arguments.results)
    for problem in problems:
        print(f"{arguments.path}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{arguments.path}: {len(release)} pair(s), every checksum matches"
              f"{' and every product in ' + str(arguments.results) + ' was made from them' if Path(arguments.results).is_dir() else ''}")
    return 1 if problems else 0


def _release_create(arguments: argparse.Namespace) -> int:
    from skysift.releases import create_release, read_release

    path = create_release(arguments.path, arguments.out, base_dir=arguments.base_dir)
    print(f"{path}: {len(read_release(path, base_dir=arguments.base_dir))} pair(s) with their sha256")
    return 0


def _release_withdraw(arguments: argparse.Namespace) -> int:
    from skysift.releases import configured_pair_ids, withdraw_products, withdrawn_pairs

    config = _workflow_config(arguments)
    if config is None:
        raise ConfigError("--config: the workflow configuration is needed (which pairs are current)")
    results = config["results_dir"]
    withdrawn = withdrawn_pairs(results, configured_pair_ids(config, base_dir=arguments.base_dir))
    release = Path(config["release"]).stem if config.get("release") else "no-release"
    for path in withdraw_products(results, withdrawn, release):
        print(f"moved {path}")
    print(f"{len(withdrawn)} withdrawn pair(s){': ' + ', '.join(withdrawn) if withdrawn else ''}")
    return 0


def _archive_create(arguments: argparse.Namespace) -> int:
    from skysift.archive import bundle_run

    bundle, n_products = bundle_run(arguments.bundle, results_dir=arguments.results, report=arguments.report,
                                    overwrite=arguments.overwrite)
    log.info("bundle written to %s (%d products)", bundle, n_products)
    return 0


def _archive_verify(arguments: argparse.Namespace) -> int:
    from skysift.archive import verify_bundle

    report = verify_bundle(arguments.path)
    if report.ok:
        print(f"{arguments.path}: OK, {report.checked} files match the manifest")
        return 0
    for line in report.lines():
        print(f"{arguments.path}: {line}", file=sys.stderr)
    return 1


def register(commands: argparse._SubParsersAction) -> None:
    """Add the configuration, provenance, release and archive subcommands."""
    add_command(
        commands, "batch", _batch, flags=("path", "--out"),
        overrides={"path": {"help": "batch plan (JSON; - reads standard input)"},
                   "out": {"help": "the batch's record (JSON), written when every job succeeded"}},
        help="run many jobs of one stage in one process, redoing only those whose inputs changed",
        description="Run the jobs of a batch plan (skysift.batch: a subcommand, its shared flags, and per job its "
        "own arguments, outputs and key) one after another in this process; a job whose fingerprint (command, "
        "key, content of its inputs) matches its stamp and whose outputs exist is skipped. The workflow's batch "
        "rules (inputs.pairs_per_job > 1) call it.",
    )
    config = add_group(commands, "config", "check a workflow configuration; document its parameters",
                    "Workflow configuration: validation and the generated parameter tables.")
    add_command(
        config, "validate", _config_validate, flags=("path", "--schema", "--base-dir"),
        overrides={"path": {"nargs": "?", "default": "config/config.yaml", "help": "configuration file"}},
        help="validate a configuration against the schema (types, ranges, paths, cross-checks)",
        description="Validate a YAML configuration exactly as the workflow does before any job: one line per "
        "problem naming the key; exit status 2 if invalid.",
    )
    add_command(
        config, "docs", _config_docs, flags=("path",),
        overrides={"path": {"nargs": "?", "default": None, "help": "Markdown file whose tables to rewrite in place"}},
        help="the parameter tables of config/README.md, generated from the stage options classes",
        description="Print the Markdown parameter table of every stage (from the options dataclasses), or "
        "rewrite the tables between '<!-- options: SECTION -->' markers of the Markdown file given.",
    )
    provenance = add_group(commands, "provenance", "inspect and export provenance",
                        "Provenance of products: show one block, summarise a run, export W3C PROV and IVOA.")
    # A run's products can be more than a command line holds: the workflow lists them in a file.
    listed_products = {"products": {"nargs": "*"}}
    add_command(provenance, "show", _provenance_show, flags=("products",),
                help="print the provenance block of products (HDF5, FITS or ECSV)",
                description="Print the provenance block of each product as JSON.")
    add_command(
        provenance, "summary", _provenance_summary, flags=("products", "--outdir", "--run-name"),
        help="summary of every product's provenance (JSON and HTML) for the report",
        description="Collect the provenance blocks of a run's products into OUTDIR/summary.json and summary.html "
        "(the data release is the run's label, SKYSIFT_LABELS).",
        overrides=listed_products,
    )
    add_command(
        provenance, "export", _provenance_export,
        flags=("products", "--outdir", "--metadata", "--schema", "--config-json", "--run-name"),
        help="W3C PROV-JSON/PROV-N and IVOA provenance documents of a run",
        description="Write the run's provenance as W3C PROV (JSON and PROV-N) and IVOA provenance documents.",
        overrides=listed_products,
    )
    release = add_group(commands, "release", "data releases: what reruns, and checksum verification",
                     "Data-release manifests (pairs tables with sha256 of every input).")
    workflow_config = {"config": {"help": "workflow configuration (results_dir, enabled stages, pairs)"}}
    add_command(
        release, "diff", _release_diff, flags=("old", "new", "--config", "--schema", "--base-dir"),
        overrides=workflow_config,
        help="which pairs changed between two releases, and every output that reruns",
        description="Compare two release manifests by checksum, from the manifests alone (files of the old "
        "release may be gone): unchanged, added, withdrawn and changed pairs, and every output of the run "
        "(--config gives its results_dir and stages) that reruns.",
    )
    add_command(
        release, "verify", _release_verify, flags=("path", "--results", "--base-dir"),
        overrides={"path": {"help": "release manifest"}},
        help="recompute every checksum of a release manifest; name stale products",
        description="Recompute the sha256 of every input listed in a release manifest, and compare the input "
        "checksums recorded in each pair's products under --results with it; exit 1 naming each mismatch.",
    )
    add_command(
        release, "create", _release_create, flags=("path", "--out", "--base-dir"),
        overrides={"path": {"help": "a pairs table, or a directory of <pair>/science.fits and reference.fits"},
                   "out": {"help": "the manifest to write (tab-separated)"}},
        help="write a release manifest (every input with its sha256)",
        description="Write a release manifest for a pairs table or a directory of pairs, computing every checksum.",
    )
    add_command(
        release, "withdraw", _release_withdraw, flags=("--config", "--schema", "--base-dir"),
        overrides={"config": {"required": True, **workflow_config["config"]}},
        help="move the products of pairs the configured release no longer lists to RESULTS/withdrawn/",
        description="Move the products of every pair that has products under results_dir but is not in the "
        "configuration's pairs (a release withdrew it) to RESULTS/withdrawn/<release>/<pair>/ (the workflow "
        "does the same when a run starts).",
    )
    archive = add_group(commands, "archive", "archive bundles of a run, and their verification",
                     "Write an archive bundle of a finished run (products, sha256 manifest, PROV, report), or verify one.")
    add_command(
        archive, "create", _archive_create, flags=("--results", "--bundle", "--report", "--overwrite"),
        help="bundle a run's products with a sha256 manifest, PROV documents and report",
        description="Copy every product listed in RESULTS/provenance/summary.json, the provenance documents and "
        "the report into BUNDLE with MANIFEST.sha256 and BUNDLE.json; the bundle appears whole or not at all.",
    )
    add_command(
        archive, "verify", _archive_verify, flags=("path",), overrides={"path": {"help": "bundle directory"}},
        help="check a bundle against its manifest; names missing or altered files",
        description="Recompute every sha256 of a bundle; exit 1 naming each missing, altered or unlisted file.",
    )
