"""skysift.memory: glibc malloc settings for array-heavy jobs."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_CHILD = """
import resource, sys
import numpy as np
from skysift.memory import retain_freed_memory

applied = retain_freed_memory() if sys.argv[1] == "retain" else False
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones((1024, 2048)) for _ in range(4)]  # 4 x 16 MiB, as a job's temporaries
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, faults[0], max(faults[1:]))
"""


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_freed_blocks_are_reused_without_new_page_faults():
    def run(mode: str) -> tuple[str, int, int]:
        completed = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
        applied, first, later = completed.stdout.split()
        return applied, int(first), int(later)

    applied, first, later = run("retain")
    assert applied == "True"
    # The first pass faults its pages in; the freed 64 MiB is kept and reused.
    assert first > 100 and later < first / 10
    # glibc's default trims the freed blocks and faults them in again each pass.
    _, default_first, default_later = run("default")
    assert default_later > default_first / 2


def test_elsewhere_it_changes_nothing(monkeypatch):
    from skysift import memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.retain_freed_memory() is False
