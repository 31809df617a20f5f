"""skysift.parallel: a local Dask cluster, in-process mapping, a thread pool without Dask, errors that name the item."""

from __future__ import annotations

import math

import pytest

import threading
import time

from skysift.parallel import close_client, get_client, map_in_order, parallel_map

# Stdlib functions: the spawned worker processes unpickle them without importing tests/.
SQUARES = [0, 1, 4, 9, 16, 25, 36, 49]


@pytest.fixture(scope="module")
def local_client():
    client = get_client("local", n_workers=2, threads_per_worker=1, memory_limit="1GB")
    yield client
    close_client(client)


def test_local_cluster_maps_in_order(local_client):
    assert len(local_client.scheduler_info()["workers"]) == 2
    assert parallel_map(math.isqrt, SQUARES, client=local_client, desc="roots") == list(range(8))


def test_local_cluster_error_names_the_item(local_client):
    with pytest.raises(ValueError, match=r"roots: raised for item 2 of 4: -1"):
        parallel_map(math.sqrt, [4.0, 9.0, -1.0, 16.0], client=local_client, desc="roots")
    # The client survives a failed map.
    assert parallel_map(math.isqrt, [81], client=local_client) == [9]


def test_none_runs_in_process():
    assert get_client("none") is None
    close_client(None)
    assert parallel_map(math.isqrt, iter(SQUARES), desc="roots") == list(range(8))
    with pytest.raises(ValueError, match=r"item 1 of 2: -4"):
        parallel_map(math.isqrt, [4, -4])
    assert parallel_map(math.isqrt, []) == []


def test_map_in_order_on_threads_keeps_order_and_window():
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_root(value: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        # Later items finish first: the results must still come back in order.
        time.sleep(0.002 * (8 - math.isqrt(value)))
        with lock:
            in_flight -= 1
        return math.isqrt(value)

    assert list(map_in_order(slow_root, SQUARES, workers=3, window=4)) == list(range(8))
    assert 1 < most <= 3
    assert list(map_in_order(math.isqrt, SQUARES, workers=1)) == list(range(8))
    assert list(map_in_order(math.isqrt, SQUARES, workers=2, processes=True)) == list(range(8))
    for processes in (False, True):
        with pytest.raises(ValueError, match="math domain error"):
            list(map_in_order(math.sqrt, [4.0, -1.0, 9.0], workers=2, processes=processes))
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(map_in_order(math.isqrt, SQUARES, workers=0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="cluster must be"):
        get_client("kubernetes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_workers"):
        get_client("local", n_workers=0)


def test_slurm_without_dask_jobqueue_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if absent
    with pytest.raises(ImportError, match="pip install dask-jobqueue"):
        get_client("slurm")
