"""Output locations: checked before a command works, written all or nothing, with the user's umask.

An environment that cannot hold an output (a read-only or full file system, a path component that
is a file, a name longer than the file system allows) is bad input, not a bug: the CLI refuses such
an :class:`OSError` (errno in :data:`ENV_ERRNOS`) with one line naming the path
(:func:`env_error_line`). Every error raised here names the path the user gave, never a temp file.

* :func:`check_output` judges a location before any work, so a bad path costs nothing;
* :class:`Staged` writes several files all or nothing: each into a temp file beside its target,
  then all renamed at :meth:`Staged.commit`; a failure before that (a full disk) leaves no file
  and no folder of this command behind;
* :func:`write_atomic` is the same for one file (``intsim.artifact.atomic_write_bytes``).

Temp files and folders made by :mod:`tempfile` are private (0600/0700); what is published gets the
mode a plain ``open``/``mkdir`` would have given under the process umask (:func:`publish_mode`).
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

#: errno values that describe the environment (file system, permissions, path shape), not a bug in intsim
ENV_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                        errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOENT,
                        errno.EEXIST})
#: the kinds of output :func:`check_output` judges
KINDS = ("file", "folder", "whole-folder")


def env_error_line(e: OSError) -> str:
    """``PATH: problem`` for an environment error (the problem alone where no path is known)."""
    what = e.strerror or os.strerror(e.errno)
    what = what[:1].lower() + what[1:]
    return f"{os.fsdecode(e.filename)}: {what}" if e.filename is not None else what


def naming(e: OSError, path) -> OSError:
    """``e`` about ``path``: a temp file's name, or none (a failed write or fsync), means nothing to the user."""
    return OSError(e.errno, e.strerror, os.fspath(path)) if e.errno else e


def umask() -> int:
    """The process umask. POSIX has no call that only reads it, so it is set and put back at once; this
    is the only place intsim touches it, and the value in between is the most private one."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def publish_mode(path, folder: bool = False) -> None:
    """Give a temp file (0600) or folder (0700) from :mod:`tempfile` the mode a plain create would have had."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def fsync_dir(path) -> None:
    """Make a rename in folder ``path`` durable (best effort: some file systems cannot fsync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _nearest_existing(p: Path) -> Path:
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    return p


def check_output(path, kind: str = "file") -> Path:
    """Refuse an output location that cannot be written, before any work (an :class:`OSError` naming ``path``).

    ``kind``: ``file`` (replaced by a rename: must not be a folder), ``folder`` (files are written
    into it: must be a folder if it exists) or ``whole-folder`` (a folder put in place by a rename).
    Refused: a target of the wrong kind, a path component that is a file, a name too long for the
    file system, and a nearest existing folder where no file can be created. That last one is
    tried, with a temp file removed at once: permission bits do not tell for root, ACLs or
    read-only mounts. Nothing is left behind.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    p = Path(path)
    if os.path.lexists(p):  # (a name too long to exist is judged below, not stat-ed)
        if kind == "file" and p.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(p))
        if kind != "file" and not p.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(p))
    base = p if kind == "folder" else p.parent
    anc = _nearest_existing(base)
    if not anc.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{anc} is not a folder", str(p))
    try:
        limit = os.pathconf(anc, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    new = p.relative_to(anc).parts if p != anc else ()
    if any(len(os.fsencode(part)) > limit for part in new):
        raise OSError(errno.ENAMETOOLONG, f"a name in it is longer than the {limit} bytes the file system allows",
                      str(p))
    try:
        fd, probe = tempfile.mkstemp(prefix=".intsim-probe.", dir=anc)
    except OSError as e:
        raise naming(e, p) from e
    os.close(fd)
    os.unlink(probe)
    return p


def make_folders(folder) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, parents first (errors name ``folder``)."""
    folder = Path(folder)
    missing, d = [], folder
    while not d.is_dir():
        if os.path.lexists(d):
            what = "exists and is not a folder" if d == folder else f"{d} is not a folder"
            raise NotADirectoryError(errno.ENOTDIR, what, str(folder))
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    made: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:  # made meanwhile by another process: it is not ours to remove
                if not d.is_dir():
                    raise
                continue
            made.append(d)
    except OSError as e:
        remove_folders(made)
        raise naming(e, folder) from e
    return made


def remove_folders(made: list[Path]) -> None:
    """Remove the folders :func:`make_folders` created, deepest first, where they are still empty."""
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:  # not empty: something else writes there now
            pass


def _unlink(p) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new temp file ``.<name>.*.tmp`` beside ``path``, fsynced, with its published mode."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise naming(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(tmp)
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, OSError):
            raise naming(e, path) from e
        raise
    return Path(tmp)


class Staged:
    """Files of one command, written all or nothing.

    :meth:`write` puts each file's bytes in a temp file beside its target (creating missing
    folders); :meth:`commit` renames them all into place (renames need no space, so a full disk
    fails before the first one). Leaving the ``with`` block without a commit removes the temp
    files and the folders this object created.
    """

    def __init__(self):
        self._files: list[tuple[Path, Path]] = []  # (temp, target)
        self._made: list[Path] = []

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc) -> None:
        for tmp, _ in self._files:
            _unlink(tmp)
        remove_folders(self._made)
        self._files, self._made = [], []

    def write(self, path, data: bytes) -> None:
        path = Path(path)
        if path.is_dir():  # found now, so that commit's renames cannot fail on it
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        self._made += make_folders(path.parent)
        self._files.append((write_temp(path, data), path))

    def commit(self) -> None:
        for tmp, path in self._files:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise naming(e, path) from e
        for folder in {path.parent for _, path in self._files}:
            fsync_dir(folder)
        self._files, self._made = [], []


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` by a fsynced temp file and a rename: readers see the old file or the
    new one; on failure nothing of this write remains, not even the folders it created."""
    with Staged() as staged:
        staged.write(path, data)
        staged.commit()


@functools.cache
def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def temp_folder(target) -> Path:
    """A new private folder beside ``target`` to build a whole-folder output in, named
    ``.<name>.<pid>-<host>.<random>.tmp``.

    Such folders that earlier writers of ``target`` left when killed (a golden folder can be
    hundreds of MB) are removed first, but only where the name says they were made on this host by
    a process that is gone: a concurrent writer's folder is never touched, and neither is anything
    named otherwise.
    """
    target = Path(target)
    prefix = f".{target.name}."
    own = re.compile(rf"{re.escape(prefix)}(\d+)-{_host_tag()}\.[a-z0-9_]{{8}}\.tmp")
    try:
        names = os.listdir(target.parent)
    except OSError:
        names = []
    for name in names:
        m = own.fullmatch(name)
        stale = target.parent / name
        if m and not _alive(int(m.group(1))) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-{_host_tag()}.", suffix=".tmp", dir=target.parent))
