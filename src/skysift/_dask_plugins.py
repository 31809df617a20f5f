"""Dask plugins (a module of their own: importing it imports distributed)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class RetainFreedMemory(WorkerPlugin):
    """Run :func:`skysift.memory.retain_freed_memory` in each worker process as it starts."""

    name = "skysift-retain-freed-memory"

    def setup(self, worker) -> None:
        from skysift.memory import retain_freed_memory

        retain_freed_memory()
