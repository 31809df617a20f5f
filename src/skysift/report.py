"""Provenance summaries for the Snakemake report.

Collects the provenance block of every product a run made into one JSON
document and an HTML table: what made each file, from which inputs (sha256),
with which code, configuration and software.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skysift.io import atomic_output, read_provenance
from skysift.provenance import git_commit, package_versions, sha256_file

__all__ = ["metrics_table_html", "provenance_summary", "summary_to_html", "write_metrics_table", "write_provenance_summary"]


def provenance_summary(
    products: Iterable[str | os.PathLike[str]], *, run_name: str = "", release: str = ""
) -> dict[str, Any]:
    """Gather checksums and provenance blocks of ``products``.

    Returns
    -------
    dict
        ``run_name``, ``software`` (versions now), and ``products``: one
        entry per file with ``path``, ``sha256``, ``size_bytes`` and its
        ``provenance`` block.
    """
    entries = []
    for product in sorted(Path(p) for p in products):
        entries.append(
            {
                "path": str(product),
                "sha256": sha256_file(product),
                "size_bytes": product.stat().st_size,
                "provenance": read_provenance(product).to_dict(),
            }
        )
    return {
        "run_name": run_name,
        "release": release,
        "git_commit": git_commit(),
        "software": package_versions(),
        "products": entries,
    }


def summary_to_html(summary: dict[str, Any]) -> str:
    """Render a :func:`provenance_summary` as a standalone HTML table."""
    escape = html.escape
    rows = []
    for entry in summary["products"]:
        block = entry["provenance"]
        inputs = "<br>".join(f"{escape(p)}<br><code>{escape(d[:16])}…</code>" for p, d in block["inputs"].items()) or "(generated)"
        rows.append(
            "<tr>"
            f"<td>{escape(entry['path'])}</td><td><code>{escape(entry['sha256'][:16])}…</code></td>"
            f"<td>{escape(block['rule'])}</td><td>{escape(block['created_utc'])}</td>"
            f"<td><code>{escape(block['git_commit'][:12])}</code></td><td><code>{escape(block['config_hash'][:12])}</code></td>"
            f"<td>{'' if block['seed'] is None else block['seed']}</td><td>{inputs}</td>"
            "</tr>"
        )
    software = ", ".join(f"{escape(k)} {escape(v)}" for k, v in sorted(summary["software"].items()))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>skysift provenance</title>"
        "<style>table{border-collapse:collapse;font-family:sans-serif;font-size:12px}"
        "td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top}</style></head><body>"
        f"<h3>Provenance of run {escape(summary['run_name'])}</h3>"
        f"<p>Data release: {escape(summary.get('release') or '(none: simulated inputs)')}; "
        f"skysift commit: <code>{escape(summary.get('git_commit', ''))}</code></p><p>Software: {software}</p>"
        "<table><tr><th>product</th><th>sha256</th><th>rule</th><th>created (UTC)</th>"
        "<th>git commit</th><th>config hash</th><th>seed</th><th>inputs (sha256)</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def write_provenance_summary(
    products: Iterable[str | os.PathLike[str]],
    json_path: str | os.PathLike[str],
    html_path: str | os.PathLike[str],
    *,
    run_name: str = "",
    release: str = "",
) -> dict[str, Any]:
    """Write the summary as JSON and HTML (both atomically) and return it."""
    summary = provenance_summary(products, run_name=run_name, release=release)
    with atomic_output(json_path) as temporary:
        temporary.write_text(json.dumps(summary, indent=2, sort_keys=True))
    with atomic_output(html_path) as temporary:
        temporary.write_text(summary_to_html(summary))
    return summary


_METRIC_COLUMNS = ("n", "accuracy", "fpr", "fnr", "precision", "recall", "roc_auc", "tpr_at_fpr_0.01", "tpr0", "tpr10")


def metrics_table_html(metrics_files: Iterable[str | os.PathLike[str]]) -> str:
    """One row per model: the held-out metrics written by ``skysift evaluate``."""
    rows = []
    for path in sorted(Path(p) for p in metrics_files):
        metrics = json.loads(path.read_text())
        cells = "".join(
            f"<td>{metrics[c]:.4g}</td>" if isinstance(metrics.get(c), (int, float)) else "<td>-</td>"
            for c in _METRIC_COLUMNS
        )
        rows.append(f"<tr><td>{html.escape(str(metrics.get('task', path.parent.parent.name)))}</td>"
                    f"<td>{html.escape(str(metrics.get('split', '')))}</td>{cells}</tr>")
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ("task", "split", *_METRIC_COLUMNS))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>skysift model metrics</title>"
        "<style>table{border-collapse:collapse;font-family:sans-serif;font-size:13px}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}</style></head><body>"
        "<h3>Held-out metrics per model</h3><p>FPR, FNR, precision and recall at a score threshold of 0.5; "
        "TPR at FPR 1%; TPR0/TPR10 (lens finding, Bologna challenge): TPR before the first and with fewer "
        "than ten false positives.</p>"
        f"<table><tr>{header}</tr>{''.join(rows)}</table></body></html>"
    )


def write_metrics_table(metrics_files: Iterable[str | os.PathLike[str]], html_path: str | os.PathLike[str]) -> Path:
    """Write :func:`metrics_table_html` atomically."""
    with atomic_output(html_path) as temporary:
        temporary.write_text(metrics_table_html(metrics_files))
    return Path(html_path)
