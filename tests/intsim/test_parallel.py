"""intsim.kernels.parallel.run_bands: order, errors, nesting, the calling thread's share."""
import threading
import time

import pytest

from intsim.kernels import parallel as KP


@pytest.fixture(autouse=True)
def two_threads(monkeypatch):
    monkeypatch.setenv("INTSIM_THREADS", "2")


def test_results_in_band_order_and_every_band_once():
    seen = []
    lock = threading.Lock()

    def fn(lo, hi):
        time.sleep(0.001 * (hi % 3))  # uneven bands: completion order differs from band order
        with lock:
            seen.append((lo, hi))
        return lo * 1000 + hi

    bands = KP.bands(60, per_thread=5)
    assert len(bands) > 2
    assert KP.run_bands(fn, bands) == [lo * 1000 + hi for lo, hi in bands]
    assert sorted(seen) == bands


def test_calling_thread_takes_bands():
    main = threading.get_ident()
    who = KP.run_bands(lambda lo, hi: threading.get_ident(), [(i, i + 1) for i in range(8)])
    assert main in who  # the caller works instead of waiting


def test_first_failing_band_raises_after_all_threads_stopped():
    active, started = [0], []
    lock = threading.Lock()

    def fn(lo, hi):
        with lock:
            active[0] += 1
            started.append(lo)
        try:
            time.sleep(0.01)
            if lo in (3, 5):
                raise ValueError(f"band {lo}")
            return lo
        finally:
            with lock:
                active[0] -= 1

    with pytest.raises(ValueError, match="band 3"):
        KP.run_bands(fn, [(i, i + 1) for i in range(16)])
    assert active[0] == 0  # no band still running when the error surfaced
    assert len(started) < 16  # no new band started after the failure


def test_nested_call_runs_serially_without_deadlock():
    def outer(lo, hi):
        return sum(KP.run_bands(lambda a, b: b - a, [(lo, lo + 1), (lo + 1, hi)]))

    assert KP.run_bands(outer, [(0, 4), (4, 10), (10, 12)]) == [4, 6, 2]


def test_single_thread_runs_in_caller(monkeypatch):
    monkeypatch.setenv("INTSIM_THREADS", "1")
    main = threading.get_ident()
    assert set(KP.run_bands(lambda lo, hi: threading.get_ident(), [(0, 1), (1, 2)])) == {main}


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_intsim_threads_must_be_a_positive_integer(monkeypatch, value):
    from intsim.kernels.parallel import num_threads

    monkeypatch.setenv("INTSIM_THREADS", value)
    with pytest.raises(ValueError, match="INTSIM_THREADS must be a positive integer"):
        num_threads()
    monkeypatch.setenv("INTSIM_THREADS", "3")
    assert num_threads() == 3


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_single_thread_holds_blas_at_one_then_restores():
    """Through threadpoolctl: one thread inside, nested or not; the count before afterwards, however
    two threads' blocks overlap (never left at one thread for the rest of the process)."""
    if not KP.blas_controllable():
        pytest.skip("threadpoolctl finds no BLAS to control")
    before = _blas_threads()
    if before == {1}:
        pytest.skip("BLAS runs one thread already (OPENBLAS_NUM_THREADS=1?)")
    with KP.blas_single_thread() as single, KP.blas_single_thread():
        assert single is True and _blas_threads() == {1}
    assert _blas_threads() == before
    for other_first in (True, False):
        inside, release = threading.Event(), threading.Event()

        def other():
            with KP.blas_single_thread():
                inside.set()
                release.wait(10)

        t = threading.Thread(target=other)
        if other_first:
            t.start()
            inside.wait(10)
        with KP.blas_single_thread():
            if not other_first:
                t.start()
                inside.wait(10)
            assert _blas_threads() == {1}
        release.set()
        t.join()
        assert _blas_threads() == before, other_first


def test_blas_control_is_threadpoolctl_for_any_blas_it_knows(monkeypatch):
    """Any BLAS threadpoolctl controls (MKL, BLIS, FlexiBLAS, OpenBLAS) is held at one thread, not only
    an OpenBLAS found by file name."""
    log = []

    class Limit:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            log.append("restore")

    class Controller:
        lib_controllers = ["mkl"]

        def select(self, **kw):
            log.append(("select", kw))
            return self

        def limit(self, **kw):
            log.append(("limit", kw))
            return Limit()

    monkeypatch.setattr(KP, "ThreadpoolController", Controller)
    monkeypatch.setattr(KP, "_blas", None)
    with KP.blas_single_thread() as single, KP.blas_single_thread():
        assert single is True
    assert log == [("select", {"user_api": "blas"}), ("limit", {"limits": 1}), "restore"]
    monkeypatch.setattr(Controller, "lib_controllers", [])
    monkeypatch.setattr(KP, "_blas", None)
    with KP.blas_single_thread() as single:
        assert single is False  # unknown BLAS: it threads itself, callers add no threads

