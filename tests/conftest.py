"""Test-session set-up shared by every test module.

numba's on-disk cache (``cache=True``) is keyed on each kernel's own source file, but kernels inline
functions of other files (``intsim.rounding.round_shift_scalar`` into the conv, GEMM and element-wise
kernels): after ``intsim/rounding.py`` changes, a kernel whose own file did not would run its stale
compiled code (seen while adding a rounding mode: the conv fast path kept the old branches). So the
cached kernels are dropped whenever any source file of ``intsim`` differs from the last session's.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent / "intsim"
_STAMP = _PKG / "__pycache__" / "numba_sources.sha256"


def sources_digest(pkg: Path = _PKG) -> str:
    """sha256 over the relative paths and bytes of every ``.py`` file under ``pkg``."""
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*.py")):
        h.update(str(p.relative_to(pkg)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def drop_stale_kernel_caches(pkg: Path = _PKG, stamp: Path = _STAMP) -> int:
    """Delete numba's cached kernels under ``pkg`` unless ``stamp`` holds the sources' current digest;
    then write it. Returns the number of cache files deleted."""
    digest = sources_digest(pkg)
    if stamp.is_file() and stamp.read_text() == digest:
        return 0
    gone = 0
    for f in list(pkg.rglob("__pycache__/*.nbi")) + list(pkg.rglob("__pycache__/*.nbc")):
        f.unlink(missing_ok=True)
        gone += 1
    stamp.parent.mkdir(exist_ok=True)
    stamp.write_text(digest)
    return gone


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller ran first
        return
    drop_stale_kernel_caches()
