from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import blob_task  # noqa: E402


@pytest.fixture(scope="session")
def blob_product(tmp_path_factory):
    return blob_task.make_blob_product(tmp_path_factory.mktemp("data") / "blobs.h5")
