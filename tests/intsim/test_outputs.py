"""Output locations (intsim/outputs.py): checked up front, written all or nothing, under the umask;
environment errors are bad input (exit 2, one line naming the path), never "internal error"."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import tempfile

import pytest

from intsim import outputs
from intsim.artifact import atomic_write_bytes
from intsim_cli import EXIT_BAD_INPUT, main
from intsim.outputs import Staged, check_output, env_error_line, temp_folder, umask
from tests.intsim.test_golden_dir import write as write_golden


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def _fail_fsync(monkeypatch, after: int = 0):
    """ENOSPC at every regular file's fsync after the first ``after`` (a disk that fills up)."""
    real, seen = os.fsync, [0]

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            seen[0] += 1
            if seen[0] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


# ---------------------------------------------------------------------- umask


def test_umask_read_leaves_it_unchanged():
    with _umask(0o027):
        assert umask() == 0o027
        assert umask() == 0o027


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                     (0o002, 0o664, 0o775)])
def test_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    """tempfile makes 0600 files and 0700 folders; what is published gets what a plain create would."""
    with _umask(mask):
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        with Staged() as s:
            s.write(tmp_path / "new" / "b.png", b"png")
            s.commit()
        write_golden(tmp_path / "g")
    assert _mode(tmp_path / "a.json") == file_mode
    assert _mode(tmp_path / "new" / "b.png") == file_mode and _mode(tmp_path / "new") == dir_mode
    assert _mode(tmp_path / "g") == dir_mode
    assert {_mode(p) for p in (tmp_path / "g").rglob("*") if p.is_file()} == {file_mode}


# ---------------------------------------------------------------------- all or nothing


def test_staged_failure_changes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"earlier a")
    _fail_fsync(monkeypatch, after=1)  # the first file reaches the disk, the second does not
    with pytest.raises(OSError) as e:
        with Staged() as s:
            s.write(out / "a.png", b"new a")
            s.write(out / "sub" / "b.png", b"new b")
            s.commit()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(out / "sub" / "b.png")
    assert sorted(p.name for p in out.rglob("*")) == ["a.png"] and (out / "a.png").read_bytes() == b"earlier a"


def test_staged_without_commit_leaves_nothing(tmp_path):
    with Staged() as s:
        s.write(tmp_path / "x" / "y" / "f.txt", b"data")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_removes_the_folders_it_made(tmp_path, monkeypatch):
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError, match="No space left") as e:
        atomic_write_bytes(tmp_path / "new" / "deeper" / "c.json", b"{}")
    assert e.value.filename == str(tmp_path / "new" / "deeper" / "c.json")
    assert list(tmp_path.iterdir()) == []


def test_golden_write_failure_names_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    _fail_fsync(monkeypatch, after=3)
    with pytest.raises(OSError) as e:
        write_golden(tmp_path / "new" / "g")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "new" / "g")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- checked before the work


def test_check_output_refusals_name_the_path(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    cases = [(f / "out", "folder", errno.ENOTDIR, "notes.txt is not a folder"),
             (f / "a" / "b.json", "file", errno.ENOTDIR, "notes.txt is not a folder"),
             (tmp_path, "file", errno.EISDIR, "is a folder, not a file"),
             (f, "folder", errno.ENOTDIR, "exists and is not a folder"),
             (f, "whole-folder", errno.ENOTDIR, "exists and is not a folder"),
             (tmp_path / ("n" * 300) / "x", "folder", errno.ENAMETOOLONG, "bytes the file system allows")]
    for path, kind, err, text in cases:
        with pytest.raises(OSError) as e:
            check_output(path, kind)
        assert (e.value.errno, e.value.filename) == (err, str(path)) and text in e.value.strerror, (path, kind)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_check_output_accepts_what_can_be_written(tmp_path):
    (tmp_path / "a").mkdir()
    for path, kind in [(tmp_path / "a", "folder"), (tmp_path / "new" / "deeper", "folder"),
                       (tmp_path / "new" / "f.json", "file"), (tmp_path / "a", "whole-folder")]:
        assert check_output(path, kind) == path
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a"]  # the probe file is gone


def test_check_output_tries_the_folder(tmp_path, monkeypatch):
    """Permission bits do not tell (root writes through them): creating a file is what is tried."""
    def refused(*a, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".intsim-probe.x"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OSError) as e:
        check_output(tmp_path / "out" / "c.json")
    assert e.value.errno == errno.EROFS and e.value.filename == str(tmp_path / "out" / "c.json")


# ---------------------------------------------------------------------- the CLI's mapping


@pytest.mark.parametrize("err,path,line", [
    (errno.ENOSPC, "/x/out.png", "intsim: error: /x/out.png: no space left on device"),
    (errno.EROFS, "/mnt/ro/g", "intsim: error: /mnt/ro/g: read-only file system"),
    (errno.ENOSPC, None, "intsim: error: no space left on device"),
])
def test_environment_errors_are_bad_input(capsys, monkeypatch, err, path, line):
    import intsim.artifact

    def boom(_path):
        raise OSError(err, os.strerror(err), path) if path else OSError(err, os.strerror(err))

    monkeypatch.setattr(intsim.artifact, "load_artifact", boom)
    assert main(["inspect", "whatever.intsim"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.splitlines() == [line]


def test_env_error_line():
    assert env_error_line(OSError(errno.EACCES, "Permission denied", "/a b/c")) == "/a b/c: permission denied"
    assert env_error_line(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"


# ---------------------------------------------------------------------- temp folders of killed writers


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_folder_removes_only_dead_writers_leftovers(tmp_path):
    host = outputs._host_tag()
    dead, live = _dead_pid(), os.getppid()
    keep = [f".g.{live}-{host}.abcdefgh.tmp",  # a running writer (a concurrent job)
            f".g.{dead}-00000000.abcdefgh.tmp",  # another host's (a shared folder): its pids mean nothing here
            ".g.abcdefgh.tmp",  # not named by this scheme
            f".g2.{dead}-{host}.abcdefgh.tmp",  # another target's
            f".g.x.{dead}-{host}.abcdefgh.tmp"]  # the target "g.x"'s
    gone = [f".g.{dead}-{host}.abcdefgh.tmp", f".g.{dead}-{host}.a_c4efgh.tmp"]
    for name in keep + gone:
        (tmp_path / name).mkdir()
        (tmp_path / name / "tensor.npy").write_bytes(b"x" * 100)
    t = temp_folder(tmp_path / "g")
    assert t.name.startswith(f".g.{os.getpid()}-{host}.") and t.name.endswith(".tmp") and _mode(t) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + [t.name])


def test_golden_rerun_removes_a_killed_writers_temp_folder(tmp_path):
    leftover = tmp_path / f".g.{_dead_pid()}-{outputs._host_tag()}.abcdefgh.tmp"
    leftover.mkdir()
    (leftover / "manifest.json").write_text("{}")
    write_golden(tmp_path / "g")
    assert _hidden(tmp_path) == []
