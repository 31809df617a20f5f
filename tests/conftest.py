"""Shared fixtures: repository paths, real shared data (skipped where absent), provenance."""

from __future__ import annotations

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
