"""Process-level memory settings for jobs that churn through large arrays."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from skysift.log import get_logger

_log = get_logger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def retain_freed_memory(*, trim_threshold: int = 1 << 30, arenas: int = 1) -> bool:
    """Have glibc reuse freed large blocks instead of handing them back to the kernel.

    Parameters
    ----------
    trim_threshold : int
        Free memory (bytes) at the top of the heap kept before it is returned.
    arenas : int
        Malloc arenas shared by all threads (one keeps the threads' freed
        blocks in one pool, for the next allocation of any thread).

    Returns
    -------
    bool
        True where the settings were applied (glibc), False elsewhere
        (other C libraries, other systems), where nothing changes.

    Notes
    -----
    By default glibc serves every block over its (dynamic) mmap threshold
    with a fresh ``mmap`` and unmaps it when freed, so each full-size numpy
    temporary costs a page fault and the zeroing of every page it touches,
    again and again. On the 2-core VMs this project is measured on, that
    kernel time was 1.3-2.3 s of a 4-5 s ``skysift diffim`` job at 2048^2
    (95,000 faults); raising the mmap threshold to its maximum (32 MiB),
    keeping freed memory and using one arena halved it and lowered the peak
    RSS (790 -> 675 MiB). The GW training-set kernel spent a third of its time
    in the kernel for the same reason. The peak is what it was; up to
    ``trim_threshold`` of freed memory stays mapped until reused or the
    process exits. The ``skysift`` command applies it at start-up and in its
    Dask workers (:func:`skysift.parallel.get_client`).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
            (_M_TRIM_THRESHOLD, min(int(trim_threshold), 2**31 - 1)),
            (_M_ARENA_MAX, max(1, int(arenas))),
        )
    )
    _log.debug("malloc: retain freed memory (%s)", "applied" if applied else "not applied")
    return applied
