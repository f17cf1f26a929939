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
