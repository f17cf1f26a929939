"""Run the ``intsim`` CLI and SIGKILL it at a chosen, deterministic point (tests/test_durability.py).

::

    python -m tests.kill_points POINT N PATTERN -- <intsim argv...>

The process kills itself with ``SIGKILL`` at the ``N``-th (1-based) occurrence of
``POINT`` whose file name (basename) matches the ``fnmatch`` pattern ``PATTERN``:

``write``
    ``os.fdopen(fd, "wb")`` (the temp file of ``intsim.artifact.atomic_write_bytes``):
    the first ``write`` writes half the bytes, flushes, then dies.
``fsync``
    after ``os.fsync`` of a matching file returns (complete temp file, before the rename).
``replace``
    right after ``os.replace(src, dst)`` with a matching ``dst`` (new file in place).
``golden_file``
    ``intsim.golden_dir._write_file`` (inputs, manifest) or
    ``intsim.golden_stream.TensorFile.write_rows`` (tensors, streamed): part of the file written, then dies.
``golden_swap_before``
    the golden temp folder is complete; dies before the folders are swapped.
``golden_swap_after``
    dies right after the atomic swap, before the old golden is deleted.
``golden_fallback``
    forces the rename-old / rename-new fallback (no ``renameat2``) and dies
    between the two renames (old golden moved aside, new one not yet in place).
``none``
    never kills (the uninterrupted reference run through the same code path).

The exit status is the CLI's; a killed process reports ``-SIGKILL`` to its parent.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import sys

POINTS = ("write", "fsync", "replace", "golden_file", "golden_swap_before", "golden_swap_after",
          "golden_fallback", "none")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Counter:
    def __init__(self, n: int, pattern: str):
        self.n, self.pattern, self.seen = n, pattern, 0

    def hit(self, path) -> bool:
        """True when this is the n-th matching occurrence."""
        if not fnmatch.fnmatch(os.path.basename(os.fsdecode(path)), self.pattern):
            return False
        self.seen += 1
        return self.seen == self.n


def _fd_name(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class _HalfWriter:
    """A file object whose first ``write`` writes half the bytes and then kills the process."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        _die()

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def install(point: str, n: int, pattern: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"unknown kill point {point!r} (one of {', '.join(POINTS)})")
    c = _Counter(n, pattern)
    if point == "write":
        real_fdopen = os.fdopen

        def fdopen(fd, mode="r", *a, **kw):
            f = real_fdopen(fd, mode, *a, **kw)
            if "w" in mode and c.hit(_fd_name(fd)):
                return _HalfWriter(f)
            return f

        os.fdopen = fdopen
    elif point == "fsync":
        real_fsync = os.fsync

        def fsync(fd):
            real_fsync(fd)
            fileno = fd if isinstance(fd, int) else fd.fileno()
            if c.hit(_fd_name(fileno)):
                _die()

        os.fsync = fsync
    elif point == "replace":
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            real_replace(src, dst, *a, **kw)
            if c.hit(dst):
                _die()

        os.replace = replace
    elif point == "golden_file":
        import intsim.golden_dir as gd

        real_write = gd._write_file

        def write_file(path, data):
            if c.hit(path):
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 2])
                _die()
            real_write(path, data)

        gd._write_file = write_file
        import intsim.golden_stream as gs

        real_rows = gs.TensorFile.write_rows

        def write_rows(self, a):  # tensors are streamed band by band: die inside the first band of the file
            if self.rows == 0 and c.hit(self.path):
                self._out().write(b"\x93NUMPY")
                self._out().flush()
                _die()
            real_rows(self, a)

        gs.TensorFile.write_rows = write_rows
    elif point in ("golden_swap_before", "golden_swap_after"):
        import intsim.golden_dir as gd

        real_exchange = gd._exchange_dirs

        def exchange(a, b):
            if point == "golden_swap_before" and c.hit(b):
                _die()
            ok = real_exchange(a, b)
            if not ok:
                raise SystemExit("renameat2(RENAME_EXCHANGE) unsupported here")
            if point == "golden_swap_after" and c.hit(b):
                _die()
            return ok

        gd._exchange_dirs = exchange
    elif point == "golden_fallback":
        import intsim.golden_dir as gd

        gd._exchange_dirs = lambda a, b: False
        real_rename = os.rename

        def rename(src, dst, *a, **kw):
            real_rename(src, dst, *a, **kw)
            if fnmatch.fnmatch(os.path.basename(os.fsdecode(dst)), "*.old") and c.hit(src):
                _die()

        os.rename = rename


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[3] != "--":
        raise SystemExit("usage: python -m tests.kill_points POINT N PATTERN -- <intsim argv...>")
    install(argv[0], int(argv[1]), argv[2])
    from intsim_cli import main as intsim_main

    return intsim_main(argv[4:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
