"""glibc's allocator for the engine's large tensors: keep freed memory in the process.

A process-wide setting, so it is opt-in: the ``intsim`` command turns it on for its own
process (``intsim_cli.console``); a library caller (a Jupyter kernel, a Ray worker, pytest)
keeps its allocator unless it calls :func:`tune_allocator` or sets ``INTSIM_MALLOC=keep``.
It imports neither numpy nor numba, so the command tunes first, before any large allocation.
"""
from __future__ import annotations

import ctypes
import os

_alloc_tuned = False


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc only; once per process). Returns True if applied.

    glibc serves allocations above 32 MiB with fresh ``mmap`` pages and gives them
    back with ``munmap`` on free. On virtual machines where touching a page the
    guest gave back is expensive (a Firecracker VM like the CI machine: 128 MiB of
    fresh pages cost about 0.5 s, reused ones 17 ms), the engine's large per-op
    tensors then spend more time in page faults than in arithmetic. With
    ``M_MMAP_MAX = 0`` and a high trim threshold, big blocks come from the heap
    and are reused by the next op. Peak memory is unchanged; the process simply
    keeps its high-water mark until it exits.

    ``INTSIM_MALLOC=system`` refuses it, also in the ``intsim`` command.
    """
    global _alloc_tuned
    if _alloc_tuned:
        return True
    if os.environ.get("INTSIM_MALLOC", "").strip().lower() == "system":
        return False
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok = (mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1) and ok
    _alloc_tuned = ok
    return ok


def tune_allocator_if_requested() -> bool:
    """:func:`tune_allocator` where ``INTSIM_MALLOC=keep`` asks for it (the engine's runs call this);
    else the host's allocator is left as it is (a Jupyter kernel, a Ray worker, pytest)."""
    if os.environ.get("INTSIM_MALLOC", "").strip().lower() != "keep":
        return False
    return tune_allocator()
