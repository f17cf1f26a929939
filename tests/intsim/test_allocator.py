"""intsim.allocator: glibc's allocator is the host's unless asked (the ``intsim`` command asks for its
own process, tests/test_cli.py; ``INTSIM_MALLOC=keep`` asks for every engine run)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from intsim import allocator
from intsim.engine import run, run_tiled
from tests.artifact_factory import make_random_artifact


def test_engine_leaves_the_allocator_alone_unless_asked(monkeypatch):
    """run and run_tiled change glibc's allocator only with INTSIM_MALLOC=keep: a Jupyter kernel, a
    Ray worker or pytest keep theirs."""
    calls = []
    monkeypatch.setattr(allocator, "tune_allocator", lambda: calls.append(1) or True)
    art, img = make_random_artifact(0), np.zeros((12, 12, 3), np.uint8)
    monkeypatch.delenv("INTSIM_MALLOC", raising=False)
    run(art, img, keep_tensors=False)
    run_tiled(art, img, 4)
    assert calls == []
    monkeypatch.setenv("INTSIM_MALLOC", "keep")
    run(art, img, keep_tensors=False)
    run_tiled(art, img, 4)
    assert calls == [1, 1]


def test_intsim_malloc_system_refuses_tuning(monkeypatch):
    monkeypatch.setenv("INTSIM_MALLOC", "system")
    monkeypatch.setattr(allocator, "_alloc_tuned", False)
    assert allocator.tune_allocator() is False
    assert allocator.tune_allocator_if_requested() is False


def test_importing_it_loads_neither_numpy_nor_numba():
    """The command tunes first, before numba and numpy allocate anything."""
    code = "import sys, intsim.allocator; assert not {'numpy', 'numba'} & set(sys.modules), sys.modules.keys()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
