"""Batch jobs (skysift.batch, `skysift batch`): plans, fingerprints, skipping and failures."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from skysift.batch import expand_batch_records, job_fingerprint, read_batch_plan, run_batch, write_batch_record
from skysift.cli import main
from skysift.errors import ConfigError, ProductError


def _plan(tmp_path: Path, names=("a", "b"), *, key="k1", command=("echo", "--flag", "1"), inputs=()) -> dict:
    jobs = []
    for name in names:
        (tmp_path / name).mkdir(exist_ok=True)
        jobs.append({"name": name, "args": ["--out", str(tmp_path / name / "out.txt")], "key": f"{key}|{name}",
                     "outputs": [str(tmp_path / name / "out.txt")], "stamp": str(tmp_path / name / ".stamp.json"),
                     "inputs": [str(path) for path in inputs]})
    return {"command": list(command), "jobs": jobs}


class Recorder:
    """A runner that writes each job's --out file (or fails for the names it is told)."""

    def __init__(self, fail=()):
        self.calls: list[list[str]] = []
        self.fail = set(fail)

    def __call__(self, argv):
        self.calls.append(list(argv))
        out = Path(argv[argv.index("--out") + 1])
        if out.parent.name in self.fail:
            return 2
        out.write_text(" ".join(argv))
        return 0


def test_plan_round_trip_and_bad_plans(tmp_path):
    plan = read_batch_plan(json.dumps(_plan(tmp_path)))
    assert plan.command == ("echo", "--flag", "1") and [job.name for job in plan.jobs] == ["a", "b"]
    with pytest.raises(ConfigError, match="not a JSON batch plan"):
        read_batch_plan("{", source="plan.json")
    with pytest.raises(ConfigError, match="lacks key"):
        document = _plan(tmp_path)
        del document["jobs"][0]["key"]
        read_batch_plan(json.dumps(document))
    with pytest.raises(ConfigError, match="share a name: a"):
        read_batch_plan(json.dumps(_plan(tmp_path, names=("a", "a"))))
    with pytest.raises(ConfigError, match="declares no outputs"):
        document = _plan(tmp_path)
        document["jobs"][1]["outputs"] = []
        read_batch_plan(json.dumps(document))
    with pytest.raises(ConfigError, match="'command' is empty"):
        read_batch_plan(json.dumps(_plan(tmp_path, command=())))


def test_runs_each_job_once_then_skips_current_ones(tmp_path):
    plan = read_batch_plan(json.dumps(_plan(tmp_path)))
    runner = Recorder()
    first = run_batch(plan, runner)
    assert first.ran == ["a", "b"] and not first.skipped and not first.failed
    # the subcommand and the shared flags, then the job's own arguments
    assert runner.calls[0] == ["echo", "--flag", "1", "--out", str(tmp_path / "a" / "out.txt")]
    second = run_batch(plan, runner)
    assert second.skipped == ["a", "b"] and not second.ran and len(runner.calls) == 2
    # a missing output reruns its job, even with a matching stamp
    (tmp_path / "b" / "out.txt").unlink()
    third = run_batch(plan, runner)
    assert third.ran == ["b"] and third.skipped == ["a"]


def test_a_changed_key_command_or_input_content_reruns_only_its_jobs(tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights 1")
    runner = Recorder()
    run_batch(read_batch_plan(json.dumps(_plan(tmp_path, inputs=[source]))), runner)
    changed_key = _plan(tmp_path, inputs=[source])
    changed_key["jobs"][1]["key"] = "k2|b"
    assert run_batch(read_batch_plan(json.dumps(changed_key)), runner).ran == ["b"]
    source.write_bytes(b"weights 2")  # same path, new content
    assert run_batch(read_batch_plan(json.dumps(changed_key)), runner).ran == ["a", "b"]
    new_flags = read_batch_plan(json.dumps(_plan(tmp_path, command=("echo", "--flag", "2"), inputs=[source])))
    assert run_batch(new_flags, runner).ran == ["a", "b"]
    # paths in a job's own arguments are not content: a moved input reruns nothing
    moved = _plan(tmp_path, command=("echo", "--flag", "2"), inputs=[source])
    moved["jobs"][0]["args"] += ["--science", "/elsewhere/science.fits"]
    assert run_batch(read_batch_plan(json.dumps(moved)), runner).skipped == ["a", "b"]


def test_fingerprint_needs_its_inputs(tmp_path):
    plan = read_batch_plan(json.dumps(_plan(tmp_path, inputs=[tmp_path / "missing.json"])))
    result = run_batch(plan, Recorder())
    assert set(result.failed) == {"a", "b"} and "missing.json: input of a batch job is missing" in result.failed["a"]
    with pytest.raises(Exception, match="missing"):
        job_fingerprint(plan, plan.jobs[0])


def test_a_failing_job_does_not_stop_the_others_and_leaves_no_stamp(tmp_path):
    plan = read_batch_plan(json.dumps(_plan(tmp_path, names=("a", "b", "c"))))
    (tmp_path / "b" / ".stamp.json").write_text(json.dumps({"fingerprint": "stale"}))
    result = run_batch(plan, Recorder(fail={"b"}))
    assert result.ran == ["a", "c"] and result.failed == {"b": "exit status 2"}
    assert not (tmp_path / "b" / ".stamp.json").exists()  # the stale stamp went before the job ran
    for name in ("a", "c"):
        (tmp_path / name / "out.txt").unlink()
    silent = run_batch(read_batch_plan(json.dumps(_plan(tmp_path, names=("a", "b", "c"), key="k9"))),
                       lambda argv: 0)  # exits 0 but writes nothing
    assert set(silent.failed) == {"a", "b", "c"} and "did not write" in silent.failed["a"]


def test_records_expand_to_their_products(tmp_path):
    plan = read_batch_plan(json.dumps(_plan(tmp_path)))
    result = run_batch(plan, Recorder())
    record = write_batch_record(tmp_path / "batches" / "x" / "b0.json", plan, result)
    other = tmp_path / "other.h5"
    listed = expand_batch_records([other, record], tmp_path / "batches")
    assert listed == [str(other), str(tmp_path / "a" / "out.txt"), str(tmp_path / "b" / "out.txt")]
    (tmp_path / "batches" / "x" / "bad.json").write_text("[]")
    with pytest.raises(ProductError, match="bad.json: not a readable batch record"):
        expand_batch_records([tmp_path / "batches" / "x" / "bad.json"], tmp_path / "batches")


def test_cli_batch_runs_skysift_commands_and_fails_naming_the_job(tmp_path, monkeypatch, capsys):
    # Two real `skysift config validate`-free commands: `release create` of a directory of pairs.
    for pair in ("p1", "p2"):
        (tmp_path / "data" / pair).mkdir(parents=True)
        for image in ("science", "reference"):
            (tmp_path / "data" / pair / f"{image}.fits").write_bytes(b"x" * 10)
    jobs = [{"name": pair, "args": ["data", "--out", f"out/{pair}.tsv"], "key": "k", "outputs": [f"out/{pair}.tsv"],
             "stamp": f"out/.{pair}.stamp", "log": f"logs/{pair}.log"} for pair in ("p1", "p2")]
    plan = {"command": ["release", "create", "--base-dir", "."], "jobs": jobs}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(plan)))
    assert main(["batch", "-", "--out", "record.json"]) == 0
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["ran"] == ["p1", "p2"] and (tmp_path / "out" / "p1.tsv").is_file()
    assert (tmp_path / "logs" / "p1.log").is_file()  # each job logs to its own file
    # a job that fails: the batch exits 2 naming it, writes no record, keeps the other's products
    jobs[1]["args"] = ["missing-dir", "--out", "out/p2.tsv"]
    jobs[1]["key"] = "changed"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "record.json").unlink()
    capsys.readouterr()
    assert main(["batch", "plan.json", "--out", "record.json"]) == 2
    error = capsys.readouterr().err
    assert "1 of 2 jobs failed (p2: exit status 2 (log: logs/p2.log))" in error
    assert not (tmp_path / "record.json").exists() and (tmp_path / "out" / "p1.tsv").is_file()
    assert main(["batch", "nowhere.json", "--out", "record.json"]) == 2
    assert "nowhere.json" in capsys.readouterr().err
