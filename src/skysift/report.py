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

__all__ = ["provenance_summary", "summary_to_html", "write_provenance_summary"]


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
