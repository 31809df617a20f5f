"""Archive bundles: products, a sha256 manifest, the PROV documents and the report.

A bundle is a directory that an archive can ingest as it is::

    <bundle>/MANIFEST.sha256      "<sha256>  <relative path>" per file (sha256sum format)
    <bundle>/BUNDLE.json          run name, creation time, skysift version and commit, counts
    <bundle>/products/...         the run's products, paths relative to the results directory
    <bundle>/provenance/...       prov.json, prov.provn, ivoa_provenance.json, summary.*
    <bundle>/report.html          the Snakemake report, when present

:func:`verify_bundle` recomputes every checksum and names each missing,
altered or unlisted file. The bundle is assembled in a temporary directory and
renamed into place, so an interrupted run leaves no half-made bundle.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from skysift._version import __version__
from skysift.errors import InputDataError
from skysift.provenance import git_commit, sha256_file

__all__ = ["BundleReport", "create_bundle", "read_manifest", "verify_bundle"]

MANIFEST = "MANIFEST.sha256"


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, destination)


def create_bundle(
    bundle_dir: str | os.PathLike[str],
    *,
    results_dir: str | os.PathLike[str],
    products: Iterable[str | os.PathLike[str]],
    provenance_files: Iterable[str | os.PathLike[str]] = (),
    report: str | os.PathLike[str] | None = None,
    run_name: str = "",
    overwrite: bool = False,
) -> Path:
    """Assemble an archive bundle directory.

    Parameters
    ----------
    bundle_dir : str or path-like
        Destination directory (must not exist unless ``overwrite``).
    results_dir : str or path-like
        Products are stored under ``products/`` relative to this directory.
    products : iterable of path
        Files to archive.
    provenance_files : iterable of path
        PROV and summary documents, stored under ``provenance/``.
    report : path, optional
        The HTML report.
    run_name : str
        Recorded in ``BUNDLE.json``.
    overwrite : bool
        Replace an existing bundle.

    Raises
    ------
    FileNotFoundError
        Naming a missing product, provenance file or report.
    FileExistsError
        If the bundle exists and ``overwrite`` is false.
    """
    bundle = Path(bundle_dir)
    results = Path(results_dir).resolve()
    if bundle.exists() and not overwrite:
        raise FileExistsError(f"{bundle}: bundle exists (use --overwrite to replace it)")
    staging = bundle.parent / f".{bundle.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        for product in sorted(Path(p) for p in products):
            if not product.is_file():
                raise FileNotFoundError(f"{product}: no such product to archive")
            resolved = product.resolve()
            relative = resolved.relative_to(results) if resolved.is_relative_to(results) else Path(product.name)
            _copy(product, staging / "products" / relative)
        for document in provenance_files:
            document = Path(document)
            if not document.is_file():
                raise FileNotFoundError(f"{document}: no such provenance file to archive")
            _copy(document, staging / "provenance" / document.name)
        if report is not None:
            if not Path(report).is_file():
                raise FileNotFoundError(f"{report}: no such report (run `snakemake --report` first)")
            _copy(Path(report), staging / "report.html")
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        lines = [f"{sha256_file(p)}  {p.relative_to(staging).as_posix()}" for p in files]
        (staging / MANIFEST).write_text("\n".join(lines) + "\n")
        (staging / "BUNDLE.json").write_text(
            json.dumps(
                {
                    "run_name": run_name,
                    "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "skysift_version": __version__,
                    "git_commit": git_commit(),
                    "n_files": len(files),
                },
                indent=2,
            )
        )
        if bundle.exists():
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return bundle


def read_manifest(bundle_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Relative path -> sha256 from a bundle's manifest.

    Raises
    ------
    InputDataError
        If the manifest is missing or malformed (the message names the line).
    """
    manifest = Path(bundle_dir) / MANIFEST
    if not manifest.is_file():
        raise InputDataError(f"{manifest}: no manifest; not a skysift bundle")
    entries = {}
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, separator, relative = line.partition("  ")
        if not separator or len(digest) != 64:
            raise InputDataError(f"{manifest}, line {number}: expected '<sha256>  <path>', got {line!r}")
        entries[relative] = digest
    return entries


@dataclass
class BundleReport:
    """Outcome of :func:`verify_bundle`."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unlisted)

    def lines(self) -> list[str]:
        """One line per problem, naming the file."""
        return (
            [f"missing: {p}" for p in self.missing]
            + [f"altered (sha256 differs): {p}" for p in self.altered]
            + [f"not in manifest: {p}" for p in self.unlisted]
        )


def verify_bundle(bundle_dir: str | os.PathLike[str]) -> BundleReport:
    """Check every file of a bundle against its manifest."""
    bundle = Path(bundle_dir)
    listed = read_manifest(bundle)
    report = BundleReport()
    for relative, digest in sorted(listed.items()):
        path = bundle / relative
        report.checked += 1
        if not path.is_file():
            report.missing.append(relative)
        elif sha256_file(path) != digest:
            report.altered.append(relative)
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    report.unlisted = sorted(present - set(listed) - {MANIFEST, "BUNDLE.json"})
    return report


def bundle_run(
    bundle_dir: str | os.PathLike[str],
    *,
    results_dir: str | os.PathLike[str] = "results",
    report: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Bundle a finished run: every product its provenance summary lists, its PROV documents and report.

    Returns the bundle directory and the number of products.

    Raises
    ------
    InputDataError
        If the run has no provenance summary (the workflow has not finished).
    """
    from skysift.errors import InputDataError

    provenance_dir = Path(results_dir) / "provenance"
    summary_path = provenance_dir / "summary.json"
    if not summary_path.is_file():
        raise InputDataError(f"{summary_path}: no provenance summary; run the workflow first")
    summary = json.loads(summary_path.read_text())
    documents = sorted(p for p in provenance_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    report_path = Path(report) if report else Path(results_dir) / "report.html"
    bundle = create_bundle(
        bundle_dir, results_dir=results_dir, products=[e["path"] for e in summary["products"]],
        provenance_files=documents, report=report_path if report_path.is_file() else None,
        run_name=summary.get("run_name", ""), overwrite=overwrite,
    )
    return bundle, len(summary["products"])
