"""Many small jobs of one stage in one process: the workflow's batch jobs.

A survey release has tens of thousands of pairs, and every job Snakemake plans
costs it time before the first job starts (about 2 ms per job for Snakemake
alone) and, on a cluster, a scheduler slot and a fresh interpreter. With
``inputs.pairs_per_job`` above 1 the workflow runs the per-pair stages
(``diffim``, ``cutouts``, ``score_candidates``) of the pairs table in batch
jobs: one Snakemake job, and one ``skysift batch`` process, per batch of pairs.

A batch *plan* (JSON) names the subcommand and the flags its jobs share, and
per job (one pair) its own arguments, the files it writes and what decides its
products::

    {"command": ["diffim", "--psf-grid", "3", "--rule", "diffim", ...],   # subcommand, shared flags
     "inputs": ["results/models/realbogus/model.pt"],          # optional, hashed once
     "jobs": [{"name": "p000001",
               "args": ["--science", "a.fits", "--reference", "b.fits", "--outdir", "results/diffim/p000001"],
               "key": "<code digest>|<sha256 of the pair's inputs>",
               "inputs": ["results/diffim/p000001/.batch-stamp.json"],   # optional, hashed
               "outputs": ["results/diffim/p000001/difference.fits", ...],
               "stamp": "results/diffim/p000001/.batch-stamp.json",
               "log": "results/logs/diffim/p000001.log"}]}

Snakemake reruns a whole batch when anything of it changes; :func:`run_batch`
then redoes only the jobs whose *fingerprint* changed: the sha256 of the shared
command, the job's key, and the content of the input files named (for a later
stage, the stamps of the earlier one; a model). Paths are not content: moving an
input file reruns nothing, as for single-pair jobs. After a job succeeds its
stamp (the fingerprint) is written atomically; a killed batch leaves the stamps
of the jobs it finished, each job's own outputs are atomic, and the next run
redoes the rest. A failing job does not stop the others: the batch reports
every failure at the end and exits non-zero, and writes no record.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skysift.errors import ConfigError, ProductError, SkysiftError
from skysift.io import atomic_output
from skysift.log import get_logger, progress

__all__ = [
    "BatchJob", "BatchPlan", "BatchResult", "expand_batch_records", "job_fingerprint", "read_batch_plan", "run_batch",
    "write_batch_record",
]

log = get_logger(__name__)


@dataclass(frozen=True)
class BatchJob:
    """One job of a batch: a subcommand's own arguments and what decides its products."""

    name: str
    args: tuple[str, ...]
    key: str
    outputs: tuple[str, ...]
    stamp: str
    inputs: tuple[str, ...] = ()
    log: str | None = None


@dataclass(frozen=True)
class BatchPlan:
    """The shared command of a batch, the files every job reads, and its jobs."""

    command: tuple[str, ...]
    jobs: tuple[BatchJob, ...]
    inputs: tuple[str, ...] = ()


@dataclass
class BatchResult:
    """What :func:`run_batch` did: jobs run, skipped (current) and failed (name -> reason)."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _strings(value: Any, what: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{source}: {what} must be a list of strings")
    return tuple(value)


def read_batch_plan(text: str, *, source: str = "batch plan") -> BatchPlan:
    """Parse a batch plan (JSON text, see the module docstring).

    Raises
    ------
    ConfigError
        If the text is not JSON of that shape, a job has no outputs, or two jobs
        share a name or a stamp.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source}: not a JSON batch plan ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("jobs"), list):
        raise ConfigError(f"{source}: a batch plan is an object with 'command' and 'jobs'")
    command = _strings(document.get("command"), "'command'", source)
    if not command:
        raise ConfigError(f"{source}: 'command' is empty")
    jobs = []
    for index, entry in enumerate(document["jobs"]):
        where = f"{source}: job {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} is not an object")
        missing = {"name", "args", "key", "outputs", "stamp"} - set(entry)
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(sorted(missing))}")
        outputs = _strings(entry["outputs"], "'outputs'", where)
        if not outputs:
            raise ConfigError(f"{where} ({entry['name']}) declares no outputs")
        jobs.append(BatchJob(
            name=str(entry["name"]), args=_strings(entry["args"], "'args'", where), key=str(entry["key"]),
            outputs=outputs, stamp=str(entry["stamp"]), inputs=_strings(entry.get("inputs", []), "'inputs'", where),
            log=entry.get("log"),
        ))
    for attribute in ("name", "stamp"):
        values = [getattr(job, attribute) for job in jobs]
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ConfigError(f"{source}: jobs share a {attribute}: {', '.join(duplicates[:5])}")
    return BatchPlan(command=command, jobs=tuple(jobs), inputs=_strings(document.get("inputs", []), "'inputs'", source))


def _file_digest(path: str, cache: dict[str, str]) -> str:
    if path not in cache:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            raise SkysiftError(f"{path}: input of a batch job is missing (did the earlier stage finish?)") from None
        cache[path] = digest.hexdigest()
    return cache[path]


def job_fingerprint(plan: BatchPlan, job: BatchJob, digests: dict[str, str] | None = None) -> str:
    """sha256 of what decides a job's products: the shared command, the key, the inputs' content.

    Paths in the job's own arguments are left out (a moved input reruns nothing);
    the key carries the content digests of the pair's input files and the code.
    """
    cache = {} if digests is None else digests
    document = {
        "command": plan.command,
        "key": job.key,
        "inputs": [_file_digest(path, cache) for path in (*plan.inputs, *job.inputs)],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _is_current(job: BatchJob, fingerprint: str) -> bool:
    try:
        recorded = json.loads(Path(job.stamp).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == fingerprint and all(os.path.exists(path) for path in job.outputs)


def _write_stamp(job: BatchJob, fingerprint: str, seconds: float) -> None:
    with atomic_output(job.stamp) as temporary:
        temporary.write_text(json.dumps({"job": job.name, "fingerprint": fingerprint, "seconds": round(seconds, 3)}),
                             encoding="utf-8")


def run_batch(plan: BatchPlan, runner: Callable[[Sequence[str]], int]) -> BatchResult:
    """Run the jobs of ``plan`` whose fingerprint changed, one after another, with ``runner``.

    Parameters
    ----------
    plan : BatchPlan
        The batch.
    runner : callable
        Runs one command line (``skysift`` arguments, as :func:`skysift.cli.main`)
        and returns its exit status.

    Returns
    -------
    BatchResult
        Jobs run, skipped as current, and failed with the reason.
    """
    result = BatchResult()
    digests: dict[str, str] = {}
    for job in progress(plan.jobs, desc=f"batch {plan.command[0]}", unit="job"):
        try:
            fingerprint = job_fingerprint(plan, job, digests)
        except SkysiftError as error:
            result.failed[job.name] = str(error)
            continue
        if _is_current(job, fingerprint):
            result.skipped.append(job.name)
            continue
        # A stale stamp must not survive a job killed half-way.
        Path(job.stamp).unlink(missing_ok=True)
        argv = [*(("--log-file", job.log) if job.log else ()), *plan.command, *job.args]
        if job.log:
            Path(job.log).parent.mkdir(parents=True, exist_ok=True)
        log.info("job %s: %s", job.name, " ".join(argv))
        start = time.perf_counter()
        status = runner(argv)
        seconds = time.perf_counter() - start
        gc.collect()  # one job's arrays do not wait for the next job's allocations
        missing = [path for path in job.outputs if not os.path.exists(path)]
        if status != 0 or missing:
            reason = f"exit status {status}" if status != 0 else f"did not write {', '.join(missing)}"
            result.failed[job.name] = reason + (f" (log: {job.log})" if job.log else "")
            continue
        _write_stamp(job, fingerprint, seconds)
        result.ran.append(job.name)
        result.seconds[job.name] = seconds
    return result


def write_batch_record(path: str | os.PathLike[str], plan: BatchPlan, result: BatchResult,
                       extra: Mapping[str, Any] | None = None) -> Path:
    """Write the batch's record (JSON, atomically): the products of every job and what ran."""
    record = {
        "command": plan.command[0],
        "jobs": {job.name: {"outputs": list(job.outputs), "stamp": job.stamp} for job in plan.jobs},
        "ran": result.ran,
        "skipped": result.skipped,
        "seconds": result.seconds,
        **(extra or {}),
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return Path(path)


def expand_batch_records(paths: Sequence[str | os.PathLike[str]], records_dir: str | os.PathLike[str]) -> list[str]:
    """Replace each batch record under ``records_dir`` by the data products of its jobs.

    Figures (``.png`` previews) are left out, as the single-pair rules' product lists leave
    them out; other paths are kept as they are, in order.

    Raises
    ------
    ProductError
        If a record cannot be read.
    """
    # abspath, not resolve: no file-system call for each of a run's (many thousand) other products
    root = os.path.join(os.path.abspath(records_dir), "")
    expanded: list[str] = []
    for path in paths:
        if not os.path.abspath(path).startswith(root):
            expanded.append(os.fspath(path))
            continue
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
            jobs = record["jobs"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ProductError(f"{path}: not a readable batch record ({error})") from None
        for name in sorted(jobs):
            expanded += [output for output in jobs[name]["outputs"] if not output.endswith(".png")]
    return expanded
