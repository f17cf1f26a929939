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
does (:func:`blas_single_thread`, through threadpoolctl). The kernels release the GIL
(``nogil=True``); numpy's matmul releases it too.

Threads: ``numba.get_num_threads()`` (honours ``NUMBA_NUM_THREADS``), or the
``INTSIM_THREADS`` environment variable.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas = None  # numpy's BLAS pools (a threadpoolctl controller), looked up on first use
_blas_held = False  # a thread holds BLAS at one thread (blas_single_thread)
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


def bands(n: int, min_rows: int = 1, per_thread: int = 3, threads: int | None = None) -> list[tuple[int, int]]:
    """Split ``range(n)`` into contiguous ``(lo, hi)`` bands: about ``per_thread`` per thread,
    each at least ``min_rows`` long (one band when single-threaded). ``threads``: the caller's
    :func:`num_threads` when it splits several passes (None: looked up here)."""
    if n <= 0:
        return []
    if n // max(1, min_rows) <= 1:
        return [(0, n)]  # one band whatever the thread count (the per-image fixed cost: no thread lookup)
    t = num_threads() if threads is None else threads
    if t == 1:
        return [(0, n)]
    k = max(1, min(n // max(1, min_rows), t * per_thread))
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
    if len(band_list) <= 1:
        return [fn(lo, hi) for lo, hi in band_list]
    n = num_threads()
    if n == 1 or getattr(_local, "in_band", False):
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


def _blas_pools():
    """numpy's BLAS libraries as threadpoolctl sees them, looked up once (a lookup scans every
    loaded library, about 0.4 ms: too slow for each conv; numpy loads its BLAS on import)."""
    global _blas
    with _lock:
        if _blas is None:
            _blas = ThreadpoolController().select(user_api="blas")
        return _blas


def blas_controllable() -> bool:
    """True if the BLAS thread count can be held at one (a BLAS threadpoolctl knows was found)."""
    return bool(_blas_pools().lib_controllers)


@contextlib.contextmanager
def blas_single_thread():
    """Hold numpy's BLAS at one thread inside the block (re-entrant; restored after).

    Yields True when BLAS is controlled; False when it is not (unknown BLAS):
    callers then let BLAS thread itself and do not add threads of their own.

    One thread at a time holds the limit, as a threadpoolctl context in that thread: a BLAS
    with one process-wide pool (OpenBLAS on pthreads) takes limits from one thread only, and
    a thread that entered while another held it would otherwise "restore" the held count of
    one on leaving, and leave BLAS at one thread for the rest of the process. Threads that
    enter while it is held rely on the holder; if it leaves first, their next block takes it.
    """
    global _blas_held
    pools = _blas_pools()
    if not pools.lib_controllers:
        yield False
        return
    with _lock:
        hold, _blas_held = not _blas_held, True
    if not hold:
        yield True
        return
    try:
        with pools.limit(limits=1):
            yield True
    finally:
        with _lock:
            _blas_held = False
