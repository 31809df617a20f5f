"""Data releases: input manifests with checksums, their differences, and what must rerun.

A release manifest is a pairs table (see :func:`skysift.config.read_pairs_table`)
whose every input carries its sha256: ``pair_id``, ``science``, ``reference``,
optional masks, noise maps and weight maps, and ``science_sha256``,
``reference_sha256`` (and the optional inputs' checksums). The configuration
selects one (``release: config/releases/dr2.tsv``).
Before any job, the workflow checks every input against the manifest
(:func:`check_inputs`, with a :class:`DigestCache` so that a release of
thousands of files re-verifies in seconds) and stops at the first mismatch.
Each pair's jobs carry the content digests of its inputs as a parameter and
take the files by content, not by path or modification time, so moving from
one release to the next reruns exactly the jobs whose inputs changed or were
added (and the aggregates downstream of them); unchanged pairs are left alone
even if their files were copied to new places. Pairs a release withdraws are
reported, and their products moved aside (:func:`withdraw_products`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skysift.config import CHECKSUM_COLUMNS, PAIRS_TABLE_COLUMNS, read_pairs_table
from skysift.errors import ConfigError, InputDataError
from skysift.provenance import sha256_file

__all__ = [
    "DIFFIM_OUTPUTS",
    "DigestCache",
    "ReleaseDiff",
    "affected_outputs",
    "check_inputs",
    "configured_pair_ids",
    "create_release",
    "diff_releases",
    "export_run_labels",
    "pair_fingerprint",
    "read_release",
    "release_labels",
    "simulated_pair_ids",
    "stale_products",
    "verify_release",
    "withdraw_products",
    "withdrawn_pairs",
    "write_release",
]

#: Per-pair products of the image-differencing stage (what a changed pair reruns).
DIFFIM_OUTPUTS = (
    "difference.fits", "scorr.fits", "fpsf.fits", "fpsf_err.fits", "aligned_reference.fits", "candidates.ecsv",
    "preview.png",
)
#: Per-pair products of the real/bogus stage, relative to the results directory.
REALBOGUS_OUTPUTS = ("cutouts/{pair}/cutouts.h5", "realbogus/candidates/{pair}.h5", "realbogus/candidates/{pair}.ecsv")
#: Run-level products that aggregate every pair.
AGGREGATE_OUTPUTS = (
    "provenance/products.txt", "provenance/summary.json", "provenance/summary.html", "provenance/prov.json",
    "provenance/prov.provn", "provenance/ivoa_provenance.json",
)
_INPUT_COLUMNS = PAIRS_TABLE_COLUMNS[1:]
#: Inputs every fingerprint lists; the noise and weight maps are appended only
#: when a pair has one, so that pairs without them keep their fingerprint (and
#: their products) from before those columns existed.
_FINGERPRINT_BASE = 4


class DigestCache:
    """sha256 of files, remembered by absolute path, size, inode, mtime and ctime.

    Every write to a file changes its ctime, which no user tool can set back
    (``touch``, ``cp -p`` and ``rsync -a`` restore mtime only), so a cached
    digest is reused only for a file nobody has written since: re-verifying a
    10,000-file release costs one ``stat`` per file. Within one object a file
    is looked at once: a run's view of its inputs is fixed when it verifies
    them, and the per-pair fingerprints that follow cost a dictionary lookup
    (no ``stat``, and no second hash under ``rehash``).

    Parameters
    ----------
    path : path-like, optional
        JSON file the cache lives in (None: in memory only).
    rehash : bool
        Ignore the cache and hash every file again.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, rehash: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.rehash = rehash
        self._entries: dict[str, list[Any]] = {}
        self._taken: dict[str, str] = {}  # path as given -> digest, this object's lifetime
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}  # a damaged cache only costs hashing again

    def digest(self, file: str | os.PathLike[str]) -> str:
        """The sha256 of ``file`` (from the cache when its stat is unchanged).

        Raises
        ------
        InputDataError
            If the file is missing or unreadable.
        """
        taken = self._taken.get(os.fspath(file))
        if taken is not None:
            return taken
        # Absolute, not resolved: the workflow's paths are resolved already (`read_pairs_table`),
        # and resolving costs an lstat per path component; stat follows links either way.
        resolved = Path(os.path.abspath(file))
        try:
            stat = resolved.stat()
        except OSError as exc:
            raise InputDataError(f"{file}: cannot read it ({exc.strerror or exc})") from None
        key = [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]
        cached = self._entries.get(str(resolved))
        if not self.rehash and cached is not None and cached[:4] == key:
            value = str(cached[4])
        else:
            try:
                value = sha256_file(resolved)
            except OSError as exc:
                raise InputDataError(f"{file}: cannot read it ({exc.strerror or exc})") from None
            self._entries[str(resolved)] = [*key, value]
            self._dirty = True
        self._taken[os.fspath(file)] = value
        return value

    def save(self) -> None:
        """Write the cache (atomically) if it changed."""
        if self.path is None or not self._dirty:
            return
        from skysift.io import atomic_output

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.path) as temporary:
            temporary.write_text(json.dumps(self._entries))
        self._dirty = False


def read_release(
    path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] = ".", require_files: bool = True
) -> dict[str, dict[str, Any]]:
    """Read a release manifest: pair id -> paths and checksums.

    With ``require_files`` False the files need not exist (comparing with an
    old release whose replaced files are gone).

    Raises
    ------
    ConfigError
        If the table is malformed, a file is missing, or an input lacks its sha256.
    """
    rows = read_pairs_table(path, base_dir=base_dir, require_files=require_files)
    release = {}
    for row in rows:
        for column in _INPUT_COLUMNS:
            if row[column] is not None and row[f"{column}_sha256"] is None:
                raise ConfigError(f"{path}: pair {row['pair_id']!r} has a {column} without {column}_sha256 (a release lists every checksum)")
        release[row["pair_id"]] = row
    return release


def pair_fingerprint(row: Mapping[str, Any], cache: DigestCache | None = None) -> str:
    """The content digests of one pair's inputs, as one string (a workflow parameter).

    With a ``cache`` the files' actual digests are used (a pairs table need not
    list checksums); without, the row's own checksum columns. Noise and weight
    maps count only when the pair has one, so that pairs without them keep
    their fingerprint from before those columns existed.
    """
    if cache is not None:
        digests = [cache.digest(row[c]) if row.get(c) else "-" for c in _INPUT_COLUMNS]
    else:
        digests = [row.get(column) or "-" for column in CHECKSUM_COLUMNS]
    if all(value == "-" for value in digests[_FINGERPRINT_BASE:]):
        digests = digests[:_FINGERPRINT_BASE]
    return ":".join(digests)


def check_inputs(rows: Iterable[Mapping[str, Any]], cache: DigestCache, *, source: str) -> list[str]:
    """Compare every input's digest with the checksum its row declares.

    Returns one line per mismatch naming the file, the expected and the found
    digest (empty when every declared checksum holds; rows without checksums
    are only hashed, for their fingerprints).
    """
    problems = []
    for row in rows:
        for column in _INPUT_COLUMNS:
            if not row.get(column):
                continue
            found = cache.digest(row[column])
            expected = row.get(f"{column}_sha256")
            if expected and found != expected:
                problems.append(
                    f"{source}: pair {row['pair_id']!r} {column} {row[column]}: expected sha256 {expected}, found {found}"
                )
    cache.save()
    return problems


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
    """Every output that reruns after moving between releases, each with the reason.

    Per-pair products of every added or changed pair (differencing, and with
    ``realbogus`` its cutouts and scored candidates), and the run-level
    aggregates (provenance summary and PROV documents) when any pair was added,
    changed or withdrawn.
    """
    results = Path(results_dir).as_posix()
    per_pair = [f"diffim/{{pair}}/{name}" for name in DIFFIM_OUTPUTS]
    if realbogus:
        per_pair += list(REALBOGUS_OUTPUTS)
    reasons = {pair_id: f"new pair {pair_id}" for pair_id in diff.added}
    reasons.update({p: f"{', '.join(c)} of {p} changed (sha256)" for p, c in diff.changed.items()})
    outputs = []
    for pair_id in sorted(reasons):
        outputs += [(f"{results}/{template.format(pair=pair_id)}", reasons[pair_id]) for template in per_pair]
    if diff.added or diff.changed or diff.removed:
        outputs += [(f"{results}/{name}", "aggregates every product of the run") for name in AGGREGATE_OUTPUTS]
    return outputs


def pair_products(results_dir: str | os.PathLike[str], pair_id: str) -> list[Path]:
    """The per-pair products of ``pair_id`` present under a results directory."""
    results = Path(results_dir)
    found = [results / "diffim" / pair_id] if (results / "diffim" / pair_id).exists() else []
    for template in REALBOGUS_OUTPUTS:
        path = results / template.format(pair=pair_id)
        if path.exists():
            found.append(path.parent if path.name == "cutouts.h5" else path)
    return found


def withdrawn_pairs(results_dir: str | os.PathLike[str], current: Iterable[str]) -> list[str]:
    """Pairs with products under ``results_dir`` that the current run no longer lists."""
    results = Path(results_dir)
    candidates = {p.name for p in (results / "diffim").glob("*") if p.is_dir()}
    candidates |= {p.name for p in (results / "cutouts").glob("*") if p.is_dir()}
    candidates |= {p.stem for p in (results / "realbogus" / "candidates").glob("*.h5")}
    return sorted(candidates - set(current))


def withdraw_products(results_dir: str | os.PathLike[str], pair_ids: Iterable[str], release: str) -> list[Path]:
    """Move the products of withdrawn pairs to ``RESULTS/withdrawn/<release>/<pair>/`` (never left looking current).

    Returns the new locations. A pair withdrawn twice from the same release
    keeps its first copy's name with a numeric suffix.
    """
    results = Path(results_dir)
    moved = []
    for pair_id in pair_ids:
        target_dir = results / "withdrawn" / (release or "no-release") / pair_id
        for source in pair_products(results, pair_id):
            relative = source.relative_to(results)
            target = target_dir / relative
            suffix = 1
            while target.exists():
                target = target_dir.with_name(f"{pair_id}.{suffix}") / relative
                suffix += 1
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(target))
            moved.append(target)
    return moved


def stale_products(
    release: Mapping[str, Mapping[str, Any]], results_dir: str | os.PathLike[str]
) -> list[str]:
    """Products whose recorded input checksums differ from the manifest's, one line each.

    The difference image of each pair records the sha256 of the files it was
    made from; a product made from other files than the release lists is stale.
    """
    from skysift.errors import ProductError
    from skysift.io import read_provenance

    problems = []
    for pair_id, row in sorted(release.items()):
        product = Path(results_dir) / "diffim" / pair_id / "difference.fits"
        if not product.is_file():
            continue
        try:
            recorded = set(read_provenance(product).inputs.values())
        except (ProductError, InputDataError, ValueError, KeyError) as exc:
            problems.append(f"{product}: no readable provenance ({exc})")
            continue
        expected = {row[f"{c}_sha256"] for c in _INPUT_COLUMNS if row.get(c)}
        missing = sorted(expected - recorded)
        if missing:
            problems.append(f"{product}: stale, not made from the release's inputs of pair {pair_id!r} "
                            f"(sha256 {', '.join(m[:16] + '...' for m in missing)} not among its inputs)")
    return problems


def create_release(
    source: str | os.PathLike[str], out_path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] = "."
) -> Path:
    """Write a release manifest for a pairs table, or for a directory of ``<pair>/science.fits`` + ``reference.fits``.

    Checksums are computed for every input (masks ``science_mask.fits`` and
    ``reference_mask.fits`` too, where a directory holds them).

    Raises
    ------
    InputDataError
        If the directory holds no pair, or the table cannot be read.
    """
    source = Path(source)
    pairs: dict[str, dict[str, str | os.PathLike[str] | None]] = {}
    if source.is_dir():
        for directory in sorted(p for p in source.iterdir() if p.is_dir()):
            if (directory / "science.fits").is_file() and (directory / "reference.fits").is_file():
                pairs[directory.name] = {
                    column: str(directory / f"{column}.fits") if (directory / f"{column}.fits").is_file() else None
                    for column in _INPUT_COLUMNS
                }
        if not pairs:
            raise InputDataError(f"{source}: no <pair>/science.fits + reference.fits under this directory")
    else:
        base = Path(base_dir).resolve()
        for row in read_pairs_table(source, base_dir=base_dir):
            # Written relative to base_dir, so that the manifest names no one machine's folders.
            pairs[row["pair_id"]] = {column: os.path.relpath(row[column], base) if row[column] else None
                                     for column in _INPUT_COLUMNS}
    return write_release(pairs, out_path, base_dir=base_dir)


def simulated_pair_ids(n_pairs: int) -> list[str]:
    """Identifiers of the ``n_pairs`` pairs the demo simulates: ``sim00``, ``sim01``, ..."""
    return [f"sim{index:02d}" for index in range(n_pairs)]


def configured_pair_ids(config: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".") -> list[str]:
    """The pairs a validated workflow configuration differences (simulated, pairs table, release)."""
    pair_ids = simulated_pair_ids(config["simulate"]["pairs"]["n_pairs"])
    if config.get("inputs", {}).get("pairs_table"):
        pair_ids += [row["pair_id"] for row in read_pairs_table(config["inputs"]["pairs_table"], base_dir=base_dir,
                                                                 require_files=False)]
    if config.get("release"):
        pair_ids += list(read_release(config["release"], base_dir=base_dir, require_files=False))
    return pair_ids


#: Environment variable of a run's provenance labels (``key=value,...``), read by the CLI.
LABELS_VARIABLE = "SKYSIFT_LABELS"


def release_labels(release: str | os.PathLike[str] | None) -> dict[str, str]:
    """Provenance labels of a run on a release: its name (the manifest's stem) and the manifest's sha256."""
    if not release:
        return {}
    return {"release": Path(release).stem, "release_sha256": sha256_file(release)}


def export_run_labels(labels: Mapping[str, str]) -> None:
    """Put a run's labels where every job's ``skysift`` command reads them (``SKYSIFT_LABELS``).

    Jobs inherit the environment of the Snakemake process (and SLURM jobs that
    of ``sbatch``); the labels are not part of any command line, so changing
    release reruns no job whose inputs are unchanged.
    """
    for key, value in labels.items():
        if any(ch in f"{key}{value}" for ch in ",="):
            raise ConfigError(f"provenance label {key}={value}: ',' and '=' are reserved")
    os.environ[LABELS_VARIABLE] = ",".join(f"{key}={value}" for key, value in labels.items())
