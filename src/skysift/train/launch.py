"""Start a skysift command on several processes: srun inside SLURM, torchrun elsewhere.

Multi-GPU rules call ``skysift launch --nproc N -- train ...``. Inside a SLURM
allocation with at least N tasks (``SLURM_NTASKS``), the command is started by
``srun`` and each task finds its rank in ``SLURM_PROCID``; elsewhere it is
started by ``torchrun --standalone``, which sets ``RANK``/``WORLD_SIZE``. Either
way :func:`skysift.train.distributed.init_distributed` does the rest.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence

__all__ = ["launch_command"]


def launch_command(nproc: int, command_args: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the argv that runs ``skysift <command_args>`` on ``nproc`` processes.

    Parameters
    ----------
    nproc : int
        Number of processes (one per GPU on GPU nodes).
    command_args : sequence of str
        The skysift subcommand and its arguments (a leading ``--`` is dropped).
    environ : mapping, optional
        Environment to inspect (defaults to ``os.environ``).

    Raises
    ------
    ValueError
        If ``nproc`` < 1 or no command is given.
    """
    environ = os.environ if environ is None else environ
    args = list(command_args)
    if args and args[0] == "--":
        args = args[1:]
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    if not args:
        raise ValueError("no skysift command given after --")
    python = [sys.executable, "-m", "skysift", *args]
    if nproc == 1:
        return python
    slurm_tasks = int(environ.get("SLURM_NTASKS", "0") or 0)
    if "SLURM_JOB_ID" in environ and slurm_tasks >= nproc and shutil.which("srun"):
        return ["srun", f"--ntasks={nproc}", "--kill-on-bad-exit=1", *python]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun") or "torchrun"
    return [torchrun, "--standalone", f"--nproc-per-node={nproc}", "-m", "skysift", *args]
