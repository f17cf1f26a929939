"""Row-band parallelism for the fast kernels: a thread pool and a BLAS thread limiter.

Why not numba ``prange`` plus a multi-threaded BLAS? Both keep their worker
threads spinning for a while after each parallel region. A GEMM path
alternates numba kernels and BLAS calls many times per layer, so the two pools
fight for the cores; on a shared (busy) machine every barrier also waits for
whichever thread lost its time slice. Measured on the 2-core CI machine under
load, a band loop ``im2col → GEMM → rescale`` ran 5–10× slower with
``prange`` + 2 BLAS threads than with two Python threads each running serial
``nogil`` numba kernels and a single-threaded GEMM on their own bands.

So the fast path splits its work into bands of output rows, runs them on a
small persistent :class:`~concurrent.futures.ThreadPoolExecutor` (dynamic
scheduling: more bands than threads), and holds BLAS at one thread while it
does (:func:`blas_single_thread`). The kernels release the GIL
(``nogil=True``); numpy's matmul releases it too.

Threads: ``numba.get_num_threads()`` (honours ``NUMBA_NUM_THREADS``), or the
``INTSIM_THREADS`` environment variable.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas = None  # (get, set) ctypes functions, False when not found
_blas_depth = 0
_blas_saved = 0
_local = threading.local()  # per thread: inside a band of run_bands


def num_threads() -> int:
    """Worker threads of the fast kernels (``$INTSIM_THREADS`` or numba's thread count)."""
    env = os.environ.get("INTSIM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"INTSIM_THREADS must be a positive integer, got {env!r}")
        return n
    return max(1, int(numba.get_num_threads()))


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="intsim")
            _pool_size = n
        return _pool


def bands(n: int, min_rows: int = 1, per_thread: int = 3) -> list[tuple[int, int]]:
    """Split ``range(n)`` into contiguous ``(lo, hi)`` bands: about ``per_thread`` per thread,
    each at least ``min_rows`` long (one band when single-threaded)."""
    t = num_threads()
    if n <= 0:
        return []
    k = 1 if t == 1 else max(1, min(n // max(1, min_rows), t * per_thread))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k) if edges[i + 1] > edges[i]]


MIN_STREAM_BAND = 1 << 18
"""Elements of the smallest band of a memory-bound pass (:func:`stream_bands`). A round trip
through the pool costs about 60 µs on the 2-core CI machine, as long as such a pass takes over
about 10^5 int64 elements; below a few of those, one band on the calling thread is faster."""


def stream_bands(n_rows: int, row_elements: int) -> list[tuple[int, int]]:
    """Bands for a memory-bound pass (a few operations per element) over ``n_rows`` rows of
    ``row_elements`` elements: one per thread, each at least :data:`MIN_STREAM_BAND` elements,
    so a small tensor is one band, which :func:`run_bands` runs on the calling thread."""
    return bands(n_rows, min_rows=max(1, -(-MIN_STREAM_BAND // max(1, row_elements))), per_thread=1)


def run_bands(fn, band_list) -> list:
    """Call ``fn(lo, hi)`` for every band, in parallel; results in band order. Exceptions propagate
    (the first band's that failed), after every thread has stopped touching the bands.

    The calling thread takes bands too, next to ``num_threads() − 1`` pool workers, all
    pulling the next band from a shared counter: one hand-off to a sleeping worker per
    call instead of one per band, and no thread idles while another has bands left.
    A call from inside a band (a pool worker) runs its bands serially: waiting there on
    the pool could wait on itself.
    """
    n = num_threads()
    if len(band_list) <= 1 or n == 1 or getattr(_local, "in_band", False):
        return [fn(lo, hi) for lo, hi in band_list]
    results: list = [None] * len(band_list)
    errors: list = [None] * len(band_list)
    nxt = iter(range(len(band_list)))
    take = threading.Lock()

    def work():
        _local.in_band = True
        try:
            while True:
                with take:
                    i = next(nxt, None)
                if i is None:
                    return
                try:
                    results[i] = fn(*band_list[i])
                except BaseException as e:  # noqa: BLE001 - re-raised below, in band order
                    errors[i] = e
                    with take:  # no thread starts another band
                        for _ in nxt:
                            pass
        finally:
            _local.in_band = False

    pool = _get_pool(n - 1)
    helpers = [pool.submit(work) for _ in range(min(n - 1, len(band_list) - 1))]
    work()
    for h in helpers:
        h.result()
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


def _find_blas():
    """``(get_num_threads, set_num_threads)`` of the OpenBLAS numpy uses, or ``False``."""
    import numpy as np

    names = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
             ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
             ("openblas_get_num_threads", "openblas_set_num_threads")]
    base = os.path.dirname(np.__file__)
    cands = sorted(glob.glob(os.path.join(base, "..", "numpy.libs", "*openblas*")))
    cands += sorted(glob.glob(os.path.join(base, ".dylibs", "*openblas*")))
    try:  # libraries already mapped into the process (a system numpy)
        with open("/proc/self/maps") as f:
            cands += sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ln.strip().endswith(".so")
                             or "openblas" in ln.lower() and ".so." in ln})
    except OSError:
        pass
    for path in cands:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for g, s in names:
            if hasattr(lib, g) and hasattr(lib, s):
                get, set_ = getattr(lib, g), getattr(lib, s)
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                set_.restype = None
                return get, set_
    return False


def blas_controllable() -> bool:
    """True if the BLAS thread count can be held at one (OpenBLAS found)."""
    global _blas
    with _lock:
        if _blas is None:
            _blas = _find_blas()
        return bool(_blas)


@contextlib.contextmanager
def blas_single_thread():
    """Hold numpy's BLAS at one thread inside the block (re-entrant; restored after).

    Yields True when BLAS is controlled; False when it is not (unknown BLAS):
    callers then let BLAS thread itself and do not add threads of their own.
    """
    global _blas_depth, _blas_saved
    if not blas_controllable():
        yield False
        return
    get, set_ = _blas
    with _lock:
        if _blas_depth == 0:
            _blas_saved = int(get())
            if _blas_saved != 1:
                set_(1)
        _blas_depth += 1
    try:
        yield True
    finally:
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_saved != 1:
                set_(_blas_saved)


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
    keeps its high-water mark until it exits. Opt out with ``INTSIM_MALLOC=system``.
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
