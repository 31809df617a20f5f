"""Shared fixtures: repository paths, real shared data (skipped where absent), provenance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skysift.provenance import Provenance

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def shared_data() -> Path:
    """The real public data beside the checkout; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def provenance(tmp_path_factory: pytest.TempPathFactory) -> Provenance:
    source = tmp_path_factory.mktemp("inputs") / "input.txt"
    source.write_text("input bytes\n")
    return Provenance.collect(rule="test_rule", inputs=[source], config={"a": 1}, seed=7)


def _planned_jobs(output: str) -> dict[str, int]:
    """Job counts of a `snakemake -n` run, from its "Job stats" table ("total" left out)."""
    table = output[output.index("Job stats:"):].splitlines()[3:]
    counts = {}
    for line in table:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture
def planned_jobs():
    """:func:`_planned_jobs`: rule -> number of jobs a dry run plans."""
    return _planned_jobs
