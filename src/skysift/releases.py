"""Data releases: input manifests with checksums, their differences, and what must rerun.

A release manifest is a pairs table (see :func:`skysift.config.read_pairs_table`)
whose every input carries its sha256: ``pair_id``, ``science``, ``reference``,
optional masks, noise maps and weight maps, and ``science_sha256``,
``reference_sha256`` (and the optional inputs' checksums). The configuration selects one (``release: config/releases/dr2.tsv``).
The workflow passes each pair's checksums to its jobs as a parameter, so moving
from one release to the next reruns exactly the jobs whose inputs changed or
were added, and the aggregates downstream of them; unchanged pairs are left
alone even if their files were copied to new places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skysift.config import CHECKSUM_COLUMNS, PAIRS_TABLE_COLUMNS, read_pairs_table
from skysift.errors import ConfigError, InputDataError
from skysift.provenance import sha256_file

__all__ = [
    "DIFFIM_OUTPUTS",
    "ReleaseDiff",
    "affected_outputs",
    "check_release_files",
    "diff_releases",
    "pair_fingerprint",
    "read_release",
    "verify_release",
    "write_release",
]

#: Per-pair products of the image-differencing stage (what a changed pair reruns).
DIFFIM_OUTPUTS = ("difference.fits", "scorr.fits", "fpsf.fits", "fpsf_err.fits", "candidates.ecsv", "preview.png")
_INPUT_COLUMNS = PAIRS_TABLE_COLUMNS[1:]
#: Inputs every fingerprint lists; the noise and weight maps are appended only
#: when a pair has one, so that pairs without them keep their fingerprint (and
#: their products) from before those columns existed.
_FINGERPRINT_BASE = 4


def read_release(path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] = ".") -> dict[str, dict[str, Any]]:
    """Read a release manifest: pair id -> paths and checksums.

    Raises
    ------
    ConfigError
        If the table is malformed, a file is missing, or an input lacks its sha256.
    """
    rows = read_pairs_table(path, base_dir=base_dir)
    release = {}
    for row in rows:
        for column in _INPUT_COLUMNS:
            if row[column] is not None and row[f"{column}_sha256"] is None:
                raise ConfigError(f"{path}: pair {row['pair_id']!r} has a {column} without {column}_sha256 (a release lists every checksum)")
        release[row["pair_id"]] = row
    return release


def pair_fingerprint(row: dict[str, Any]) -> str:
    """The checksums of one pair's inputs, as one string (a workflow parameter)."""
    checksums = [row.get(column) or "-" for column in CHECKSUM_COLUMNS]
    if all(value == "-" for value in checksums[_FINGERPRINT_BASE:]):
        checksums = checksums[:_FINGERPRINT_BASE]
    return ":".join(checksums)


def verify_release(release: dict[str, dict[str, Any]]) -> list[str]:
    """Recompute every checksum; return one line per mismatch (empty when all agree)."""
    problems = []
    for pair_id, row in sorted(release.items()):
        for column in _INPUT_COLUMNS:
            if row[column] is None:
                continue
            actual = sha256_file(row[column])
            if actual != row[f"{column}_sha256"]:
                problems.append(f"{pair_id}: {column} {row[column]} has sha256 {actual[:16]}..., manifest says {row[f'{column}_sha256'][:16]}...")
    return problems


def write_release(
    pairs: dict[str, dict[str, str | os.PathLike[str] | None]],
    path: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] = ".",
) -> Path:
    """Write a release manifest for ``pair_id -> {science, reference[, masks]}``, computing checksums.

    Paths are written as given; relative ones are resolved against ``base_dir`` to checksum them.
    """
    base = Path(base_dir)
    from skysift.io import atomic_output

    header = ("pair_id", *_INPUT_COLUMNS, *CHECKSUM_COLUMNS)
    lines = ["\t".join(header)]
    for pair_id, inputs in sorted(pairs.items()):
        values = [pair_id]
        values += [str(inputs.get(column) or "") for column in _INPUT_COLUMNS]
        values += [sha256_file(base / inputs[column]) if inputs.get(column) else "" for column in _INPUT_COLUMNS]
        lines.append("\t".join(values))
    with atomic_output(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
    return Path(path)


@dataclass
class ReleaseDiff:
    """Pair-level differences between two releases."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)

    @property
    def affected(self) -> list[str]:
        """Pairs whose jobs rerun: added and changed."""
        return sorted([*self.added, *self.changed])


def diff_releases(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> ReleaseDiff:
    """Compare two releases by checksum (a moved but identical file is unchanged)."""
    diff = ReleaseDiff()
    for pair_id in sorted(set(old) | set(new)):
        if pair_id not in old:
            diff.added.append(pair_id)
        elif pair_id not in new:
            diff.removed.append(pair_id)
        else:
            changed = [c for c in _INPUT_COLUMNS if old[pair_id][f"{c}_sha256"] != new[pair_id][f"{c}_sha256"]]
            if changed:
                diff.changed[pair_id] = changed
            else:
                diff.unchanged.append(pair_id)
    return diff


def affected_outputs(
    diff: ReleaseDiff, results_dir: str | os.PathLike[str] = "results", *, realbogus: bool = True
) -> list[tuple[str, str]]:
    """Outputs that rerun after moving between releases, each with the reason.

    Per-pair products of every added or changed pair (differencing, and with
    ``realbogus`` its cutouts and scored candidates), and the run-level
    aggregates (provenance summary and PROV documents) when anything changed.
    """
    results = Path(results_dir).as_posix()
    per_pair = [f"diffim/{{pair}}/{name}" for name in DIFFIM_OUTPUTS]
    if realbogus:
        per_pair += ["cutouts/{pair}/cutouts.h5", "realbogus/candidates/{pair}.h5", "realbogus/candidates/{pair}.ecsv"]
    reasons = {pair_id: f"new pair {pair_id}" for pair_id in diff.added}
    reasons.update({p: f"{', '.join(c)} of {p} changed (sha256)" for p, c in diff.changed.items()})
    outputs = []
    for pair_id in sorted(reasons):
        outputs += [(f"{results}/{template.format(pair=pair_id)}", reasons[pair_id]) for template in per_pair]
    if diff.added or diff.changed or diff.removed:
        reason = "aggregates every product of the run"
        for name in ("summary.json", "summary.html", "prov.json", "prov.provn", "ivoa_provenance.json"):
            outputs.append((f"{results}/provenance/{name}", reason))
    return outputs


def check_release_files(path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] = ".") -> None:
    """Read a release and verify its checksums, raising on the first mismatch."""
    problems = verify_release(read_release(path, base_dir=base_dir))
    if problems:
        raise InputDataError(f"{path}: " + "; ".join(problems))
