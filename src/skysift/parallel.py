"""Run many independent tasks on Dask: in-process, on a local cluster or on SLURM jobs.

Everything the workflow runs in parallel *within* one step (scoring thousands of
cutouts, injecting signals into many light curves) goes through two calls::

    client = get_client("local", n_workers=4)      # or "slurm", or "none"
    results = parallel_map(score_cutout, cutouts, client=client, desc="scoring")
    close_client(client)

``"none"`` returns no client, and :func:`parallel_map` then runs in this process,
so code written this way runs unchanged in a Snakemake job, on a laptop or across
a SLURM cluster. The SLURM cluster comes from `dask-jobqueue
<https://jobqueue.dask.org>`_, an optional dependency imported only when asked
for. Site specifics (partition, account) are arguments, never defaults here.
"""

from __future__ import annotations

import itertools
import os
import reprlib
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

from skysift.log import get_logger, progress

if TYPE_CHECKING:
    from dask.distributed import Client

__all__ = ["close_client", "compute_in_windows", "get_client", "map_in_order", "parallel_map", "usable_cores"]

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")
ClusterKind = Literal["local", "slurm", "none"]

_INSTALL_JOBQUEUE = (
    "the 'slurm' cluster needs dask-jobqueue, which is not installed; install it with "
    "`pip install dask-jobqueue` (.ci/slurm/venv.sh puts it in .venv-slurm)"
)


def _retain_freed_memory_plugin():
    """A Dask worker plugin applying :func:`skysift.memory.retain_freed_memory` in every worker process.

    Workers churn through full-size temporaries as the job's own process does
    (a GW chunk spent a third of its time faulting fresh pages in without it).
    """
    from skysift._dask_plugins import RetainFreedMemory

    return RetainFreedMemory()


def get_client(
    cluster: ClusterKind = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | float | None = "auto",
    queue: str | None = None,
    account: str | None = None,
    cores: int = 1,
    memory: str = "1GB",
    walltime: str = "00:30:00",
    job_extra_directives: Sequence[str] = (),
    n_jobs: int = 1,
    log_directory: str | None = None,
    worker_timeout: float = 120.0,
) -> Client | None:
    """Start a Dask cluster of the requested kind and return a client connected to it.

    Parameters
    ----------
    cluster : {"local", "slurm", "none"}
        ``local``: a :class:`~distributed.LocalCluster` of worker processes on this
        machine. ``slurm``: a ``dask_jobqueue.SLURMCluster`` whose workers run in
        SLURM jobs. ``none``: no cluster and no client; :func:`parallel_map` runs in
        this process and Dask collections keep their default (threaded) scheduler.
    n_workers : int, optional
        ``local``: number of worker processes (Dask's choice from the CPU count if
        omitted).
    threads_per_worker : int
        ``local``: threads in each worker process.
    memory_limit : str, float or None
        ``local``: memory per worker (``"4GB"``, bytes, ``"auto"`` to share the
        machine's memory, None for no limit).
    queue : str, optional
        ``slurm``: partition (``sbatch --partition``); the cluster default if omitted.
    account : str, optional
        ``slurm``: account to charge (``sbatch --account``).
    cores : int
        ``slurm``: CPU cores per job; each job runs one worker with this many threads.
    memory : str
        ``slurm``: memory per job (``sbatch --mem``), e.g. ``"2GB"``.
    walltime : str
        ``slurm``: time limit per job (``sbatch --time``), ``HH:MM:SS``.
    job_extra_directives : sequence of str
        ``slurm``: further ``#SBATCH`` options, e.g. ``["--qos=short"]``.
    n_jobs : int
        ``slurm``: number of SLURM jobs (workers) to start.
    log_directory : str, optional
        ``slurm``: where the jobs write their output (the working directory if omitted).
    worker_timeout : float
        ``slurm``: seconds to wait for the first worker to join before giving up.

    Returns
    -------
    distributed.Client or None
        None for ``cluster="none"``. Close it with :func:`close_client`, which also
        stops the cluster and cancels its SLURM jobs (for ``local``, ``client.close()``
        alone stops the cluster too; for ``slurm`` it leaves the jobs running).

    Raises
    ------
    ValueError
        If ``cluster`` is not one of the kinds above or a count is below 1.
    ImportError
        If ``cluster="slurm"`` and dask-jobqueue is not installed.
    TimeoutError
        If no SLURM worker joins within ``worker_timeout`` seconds (the jobs are
        cancelled first).
    """
    if cluster == "none":
        return None
    if cluster == "local":
        if n_workers is not None and n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        from dask.distributed import Client

        # Client() starts the LocalCluster itself, so client.close() also stops it.
        client = Client(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            processes=True,
            # ":0" is any free port: None means 8787, which a second cluster on the machine
            # (two jobs of one workflow) finds taken, with a warning.
            dashboard_address=":0",
        )
        client.register_plugin(_retain_freed_memory_plugin())
        log.info("Dask local cluster: %d worker processes", len(client.cluster.workers))
        return client
    if cluster == "slurm":
        if n_jobs < 1 or cores < 1:
            raise ValueError(f"n_jobs and cores must be >= 1, got n_jobs={n_jobs}, cores={cores}")
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as exc:
            raise ImportError(_INSTALL_JOBQUEUE) from exc
        from dask.distributed import Client

        slurm = SLURMCluster(
            queue=queue,
            account=account,
            cores=cores,
            processes=1,
            memory=memory,
            walltime=walltime,
            job_extra_directives=list(job_extra_directives),
            log_directory=log_directory,
            python=sys.executable,
            scheduler_options={"dashboard_address": ":0"},
        )
        slurm.scale(jobs=n_jobs)
        client = Client(slurm)
        client.register_plugin(_retain_freed_memory_plugin())  # also on workers that join later
        try:
            client.wait_for_workers(1, timeout=worker_timeout)
        except TimeoutError as exc:
            close_client(client)
            raise TimeoutError(
                f"no Dask worker joined within {worker_timeout:g} s from {n_jobs} SLURM job(s) "
                f"(partition {queue or 'default'}); see `squeue` and the job logs in "
                f"{log_directory or 'the working directory'}"
            ) from exc
        log.info("Dask SLURM cluster: %d job(s) requested, first worker up", n_jobs)
        return client
    raise ValueError(f"cluster must be 'local', 'slurm' or 'none', got {cluster!r}")


def close_client(client: Client | None) -> None:
    """Close a client from :func:`get_client` and stop its cluster (SLURM jobs included).

    Safe to call with None (the ``"none"`` cluster) and more than once.
    """
    if client is None:
        return
    cluster = client.cluster
    client.close()
    if cluster is not None and cluster.status.name != "closed":
        cluster.close()


def parallel_map(
    func: Callable[[T], R], items: Iterable[T], client: Client | None = None, *, desc: str = "tasks"
) -> list[R]:
    """Apply ``func`` to every item, on a Dask cluster if a client is given.

    Parameters
    ----------
    func : callable
        Function of one item. With a client it must be importable by the workers
        (a module-level function, not a lambda defined in ``__main__`` of a script
        the workers cannot see).
    items : iterable
        The inputs; consumed once.
    client : distributed.Client, optional
        Run on this client's cluster (``client.map``); in this process if None.
    desc : str
        Label of the progress bar (shown when standard error is a terminal).

    Returns
    -------
    list
        ``func(item)`` for every item, in the order of ``items``.

    Raises
    ------
    Exception
        The first exception ``func`` raises is re-raised with its original type;
        a note added to it (PEP 678, shown in the traceback) names the item's index
        and value. With a client the remaining tasks are cancelled.
    """
    items = list(items)
    if client is None:
        results = []
        for index, item in enumerate(progress(items, desc=desc, total=len(items))):
            try:
                results.append(func(item))
            except Exception as exc:
                _name_item(exc, desc, index, item, len(items))
                raise
        return results

    from dask.distributed import as_completed

    futures = client.map(func, items, pure=False)
    index_of = {future.key: index for index, future in enumerate(futures)}
    results: list = [None] * len(items)
    try:
        for future in progress(as_completed(futures), desc=desc, total=len(futures)):
            index = index_of[future.key]
            try:
                results[index] = future.result()
            except Exception as exc:
                _name_item(exc, desc, index, items[index], len(items))
                raise
    except BaseException:
        client.cancel(futures)
        raise
    return results


def compute_in_windows(
    tasks: Sequence[object],
    *,
    client: Client | None = None,
    scheduler: str | None = None,
    desc: str = "chunks",
    window: int | None = None,
) -> Iterator[object]:
    """Compute dask delayed ``tasks`` with a bounded number in flight, yielding results in order.

    A new task starts as soon as the oldest result is handed over, so the
    workers keep computing while the caller writes (no barrier per window),
    and only ``window`` results are held at once, so a training set larger
    than memory streams into its writer.

    Parameters
    ----------
    tasks : sequence of dask.delayed
        The chunks to compute.
    client : dask.distributed.Client, optional
        Any cluster; without one the tasks run on a pool of this process's
        threads (``scheduler`` None or ``"threads"``: numpy, scipy and torch
        release the GIL in their kernels) or on dask's ``scheduler``
        (``"sync"``, ``"processes"``), a window at a time.
    scheduler : str, optional
        Dask scheduler name when no client is given (default ``"threads"``).
    desc : str
        Progress-bar label.
    window : int, optional
        Tasks in flight (default twice the cluster's threads, at least 4;
        without a client twice the usable cores).
    """
    import dask

    if client is not None:
        in_flight = window or max(4, 2 * sum(client.nthreads().values()))
        pending: deque = deque()
        queued = iter(tasks)
        for task in itertools.islice(queued, in_flight):
            pending.append(client.compute(task))
        try:
            for _ in progress(range(len(tasks)), desc=desc, unit="chunk"):
                result = pending.popleft().result()
                for task in itertools.islice(queued, 1):
                    pending.append(client.compute(task))
                yield result
        finally:
            client.cancel(list(pending))
        return
    if scheduler not in (None, "threads"):
        size = window or 8
        for start in progress(range(0, len(tasks), size), desc=desc, unit="window"):
            yield from dask.compute(*tasks[start : start + size], scheduler=scheduler)
        return
    from concurrent.futures import ThreadPoolExecutor

    workers = usable_cores()
    in_flight = window or 2 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        queued = iter(tasks)
        submit = lambda task: pool.submit(dask.compute, task, scheduler="sync")  # noqa: E731
        for task in itertools.islice(queued, in_flight):
            pending.append(submit(task))
        try:
            for _ in progress(range(len(tasks)), desc=desc, unit="chunk"):
                (result,) = pending.popleft().result()
                for task in itertools.islice(queued, 1):
                    pending.append(submit(task))
                yield result
        finally:
            for future in pending:
                future.cancel()


def map_in_order(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    processes: bool = False,
    window: int | None = None,
    desc: str = "tasks",
) -> Iterator[R]:
    """Yield ``func(item)`` for every item, in order, computed on a pool of threads or processes.

    The thread path of :func:`compute_in_windows` for plain callables, without
    Dask: its import, and that of ``distributed`` which ``dask.compute`` triggers
    for any named scheduler, cost ~1 s of CPU per process. At most ``window``
    results (default ``2 * workers``) are in flight, and a new item starts as soon
    as the oldest result is handed over. For work whose numeric kernels release
    the GIL (numpy, torch).

    Parameters
    ----------
    func : callable
        Function of one item; with ``processes``, it and the items and results are pickled.
    items : sequence
        The inputs.
    workers : int
        Threads or processes; 1 runs every item in this thread.
    processes : bool
        Forked worker processes (Linux; threads elsewhere): no interpreter lock
        shared between the workers, for work with much Python between its
        numeric kernels. They inherit this process's state (torch's thread
        count included) at the first item.
    window : int, optional
        Items in flight.
    desc : str
        Progress-bar label.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        for item in progress(items, desc=desc, total=len(items)):
            yield func(item)
        return
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

    pool: Executor
    if processes and sys.platform == "linux":
        import multiprocessing

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
    with pool:
        pending: deque = deque()
        queued = iter(items)
        for item in itertools.islice(queued, window or 2 * workers):
            pending.append(pool.submit(func, item))
        try:
            for _ in progress(range(len(items)), desc=desc, unit="task"):
                result = pending.popleft().result()
                for item in itertools.islice(queued, 1):
                    pending.append(pool.submit(func, item))
                yield result
        finally:
            for future in pending:
                future.cancel()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _name_item(exc: BaseException, desc: str, index: int, item: object, total: int) -> None:
    """Add a note to ``exc`` naming the item it was raised for."""
    exc.add_note(f"{desc}: raised for item {index} of {total}: {reprlib.repr(item)}")
