"""The run context: provenance and execution plumbing, kept out of science signatures.

A library function that writes a product takes its science parameters (an
options object, arrays, paths) and one optional :class:`RunContext`, which says
which rule made the product, the digest of the configuration it was made
from, extra inputs and labels to record (data release, pair id) and the Dask
client to run on. :meth:`RunContext.provenance` turns it into the product's
provenance block.

This module stays free of numpy, Dask and torch: the CLI builds contexts
before deciding what to import.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from skysift.options import StageOptions, param

if TYPE_CHECKING:
    from skysift.provenance import Provenance

__all__ = ["DaskOptions", "RunContext"]


@dataclass(frozen=True)
class DaskOptions(StageOptions):
    """The Dask cluster of the parallel preprocessing jobs (config section ``dask``)."""

    section: ClassVar[str] = "dask"

    cluster: str = param(
        "local",
        "local: a LocalCluster of the job's cores; none: threads in the job; slurm: a dask-jobqueue "
        "SLURMCluster. Products do not depend on it.",
        choices=("none", "local", "slurm"),
    )
    workers: int | None = param(None, "Workers of a local cluster (null uses the job's cores).", minimum=1)


@dataclass(frozen=True)
class RunContext:
    """Who is making a product, from what configuration, and where it runs.

    Attributes
    ----------
    rule : str
        Snakemake rule (or CLI command) recorded as the product's maker.
    config_digest : str
        sha256 of the configuration sections the job used.
    inputs : tuple of path
        Further input files to checksum into the provenance block (besides the
        ones the function itself reads).
    labels : mapping of str to str
        Further provenance entries (``release``, ``pair_id``...).
    client : dask.distributed.Client or None
        Where parallel work runs; None runs it in this process.
    scheduler : str or None
        Dask's local scheduler when there is no client (``"threads"``,
        ``"sync"``, ``"processes"``); None takes the function's default.
    options : tuple of StageOptions
        The stage options the product was made with; each is recorded whole
        in the provenance block (``extra["options.<section>"]``, JSON), so a
        product names every parameter, declared once, that shaped it.
    """

    rule: str = ""
    config_digest: str = ""
    inputs: tuple[str | os.PathLike[str], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    client: Any = None
    scheduler: str | None = None
    options: tuple[StageOptions, ...] = ()

    def with_default_rule(self, rule: str) -> RunContext:
        """This context, naming ``rule`` when no rule was set."""
        return self if self.rule else dataclasses.replace(self, rule=rule)

    def provenance(
        self,
        *,
        inputs: Iterable[str | os.PathLike[str]] = (),
        seed: int | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Provenance:
        """The provenance block of a product written now under this context."""
        from skysift.provenance import Provenance

        recorded = [*inputs, *(Path(p) for p in self.inputs)]
        declared = {
            f"options.{options.section or type(options).__name__}": json.dumps(options.to_dict(), sort_keys=True)
            for options in self.options
        }
        return Provenance.collect(
            rule=self.rule, inputs=recorded, config_digest=self.config_digest, seed=seed,
            extra={**dict(extra or {}), **declared, **dict(self.labels)},
        )


def resolve_context(context: RunContext | None, rule: str) -> RunContext:
    """The given context (with ``rule`` as default rule name), or a fresh one."""
    return RunContext(rule=rule) if context is None else context.with_default_rule(rule)
