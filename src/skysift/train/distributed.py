"""Environment-based distributed set-up that works the same under python, torchrun and srun.

* plain ``python``: one process, no process group;
* ``torchrun``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT`` are set by the launcher;
* ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` give the rank;
  the rendezvous address is the first host of the job's node list and the
  port is derived from the job id, so every task agrees without talking.

The backend is NCCL when the process drives a CUDA device and gloo otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist

from skysift.log import get_logger

__all__ = ["DistributedContext", "cleanup_distributed", "init_distributed", "slurm_first_host"]

log = get_logger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, logs and products."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def slurm_first_host(nodelist: str) -> str:
    """First hostname of a SLURM node list such as ``gpu[01-04,07],login1``.

    Uses ``scontrol show hostnames`` where available and a small parser otherwise.
    """
    try:
        hosts = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
        if hosts:
            return hosts[0]
    except (OSError, subprocess.SubprocessError):
        pass
    first = re.split(r",(?![^\[]*\])", nodelist)[0]
    match = re.fullmatch(r"(.*?)\[(\d+)(?:-\d+)?(?:,.*)?\](.*)", first)
    if match:
        prefix, number, suffix = match.groups()
        return f"{prefix}{number}{suffix}"
    return first


def _environment_ranks() -> tuple[int, int, int]:
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # torchrun
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:  # srun
        rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
        local = int(os.environ.get("SLURM_LOCALID", 0))
        os.environ.setdefault("MASTER_ADDR", slurm_first_host(os.environ.get("SLURM_JOB_NODELIST", "localhost")))
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("LOCAL_RANK", str(local))
        return rank, world, local
    return 0, 1, 0


def init_distributed(device: str = "auto") -> DistributedContext:
    """Initialise the process group from the environment, if there is more than one process.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``auto`` takes the GPU numbered by the local rank when CUDA is available.

    Returns
    -------
    DistributedContext
    """
    rank, world, local = _environment_ranks()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        torch.cuda.set_device(local % torch.cuda.device_count())
        torch_device = torch.device("cuda", local % torch.cuda.device_count())
    else:
        torch_device = torch.device("cpu")
    backend = None
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
        log.info("process group up: rank %d of %d (%s, %s)", rank, world, backend, torch_device)
    elif dist.is_initialized():
        backend = dist.get_backend()
    return DistributedContext(rank=rank, world_size=world, local_rank=local, device=torch_device, backend=backend)


def cleanup_distributed() -> None:
    """Tear the process group down (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
