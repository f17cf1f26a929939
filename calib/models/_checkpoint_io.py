"""Opening checkpoint files without trusting them (``intsim calibrate --weights FILE``).

A checkpoint path is stat-ed before anything opens it, and only a regular file of at most
:data:`MAX_CHECKPOINT_BYTES` is read: a FIFO would block the reader forever, ``/dev/zero`` never
ends, a folder is a mistake. The open descriptor is checked again, since the path may have been
replaced in between.

In HDF5 (Keras) files :func:`open_keras_h5` walks the objects itself and refuses, before any data
is read, everything that would make the loader leave the file: soft and external links (never
followed), datasets whose raw data lives in other files (external storage: ``/etc/shadow`` read
as conv weights, or a FIFO that hangs the read) and virtual datasets (mapped from other HDF5
files). Every dataset's dtype and declared size are checked from its metadata, so a small file
cannot make us allocate terabytes; callers compare shapes with the architecture before reading.

Torch-free (h5py is imported only for HDF5 files): the zoo listing uses the sha256 helpers beside it.
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from intsim.artifact import open_regular, read_regular

# The largest supported checkpoint (EDSR-PyTorch RDN config B) is about 90 MB and a checkpoint is
# read into memory whole: a bigger file is the wrong file or a hostile one.
MAX_CHECKPOINT_BYTES = 1 << 30
_CAP_TEXT = "1 GiB"
# Keras nests model_weights/<layer>/<layer>/<weight>:0; far deeper nesting (or a hard-link cycle,
# which HDF5 allows) is no weights file, and the object count bounds the walk's time.
_MAX_DEPTH = 8
_MAX_OBJECTS = 100_000


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the architecture; the message says why."""


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_stat(p: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((what for is_kind, what in _KINDS if is_kind(st.st_mode)), "not a file")
        raise CheckpointError(f"{p}: is not a regular file ({kind}); pass the checkpoint file itself")
    if st.st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{p}: is {st.st_size} bytes, larger than the {_CAP_TEXT} a checkpoint may have "
                              "(the largest supported one is about 90 MB); is it the right file?")


def check_checkpoint_file(path: str | os.PathLike) -> int:
    """Refuse ``path`` unless it is a regular file (symlinks followed) of at most the cap; return its size."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot be read ({exc.strerror})") from None
    _check_stat(p, st)
    return st.st_size


def open_checkpoint(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for binary reading, once it passed :func:`check_checkpoint_file` (whose messages name
    the checkpoint); the open itself is :func:`intsim.artifact.open_regular`'s (non-blocking, re-checked)."""
    check_checkpoint_file(path)  # before opening: opening a device can have effects of its own
    return open_regular(path, MAX_CHECKPOINT_BYTES, CheckpointError, "a checkpoint")


def read_checkpoint_bytes(path: str | os.PathLike) -> bytes:
    """The whole checkpoint file, never more than the cap (a file that grows while read is refused)."""
    check_checkpoint_file(path)
    return read_regular(path, MAX_CHECKPOINT_BYTES, CheckpointError, "a checkpoint")


# --------------------------------------------------------------------------- HDF5 (Keras weights)
def _member(p: Path, group: Any, name: str, where: str) -> Any:
    """``group[name]`` when it is a hard link; soft and external links are refused unfollowed."""
    import h5py

    try:
        link = group.get(name, getlink=True)  # the link itself: resolving it could open another file
    except TypeError:  # a user-defined link class
        link = None
    if isinstance(link, h5py.SoftLink):
        raise CheckpointError(f"{p}: {where} is a soft link (to {link.path}); links are never followed, "
                              "it was refused unread")
    if isinstance(link, h5py.ExternalLink):
        raise CheckpointError(f"{p}: {where} is an external link (to {link.filename}:{link.path}); links are "
                              "never followed, it was refused unread")
    if not isinstance(link, h5py.HardLink):
        raise CheckpointError(f"{p}: {where} is a link of an unknown kind; it was refused unread")
    return group[name]


def _dataset_bytes(p: Path, where: str, ds: Any) -> int:
    """Refuse a dataset whose data is outside the file, not floating point or too big; return its declared bytes."""
    if ds.is_virtual:
        raise CheckpointError(f"{p}: dataset {where} is a virtual dataset (its data is mapped from other files); "
                              "it was refused unread")
    if ds.external:
        files = ", ".join(str(name) for name, _, _ in ds.external[:3])
        raise CheckpointError(f"{p}: dataset {where} keeps its data in another file ({files}: HDF5 external "
                              "storage); it was refused unread")
    if ds.dtype.kind != "f":
        raise CheckpointError(f"{p}: dataset {where} holds {ds.dtype} values, not floating-point weights")
    nbytes = (ds.size or 0) * ds.dtype.itemsize
    if nbytes > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{p}: dataset {where} declares shape {ds.shape} ({nbytes} bytes), over the "
                              f"{_CAP_TEXT} a checkpoint may hold; it was refused unread")
    return nbytes


def _keras_index(p: Path, f: Any) -> dict[str, dict[str, Any]]:
    """Keras layer name → {weight name ('kernel', 'bias') → dataset, unread}, every object checked."""
    import h5py

    top = _member(p, f, "model_weights", "model_weights") if "model_weights" in f else f
    root = top if isinstance(top, h5py.Group) else f
    layers: dict[str, dict[str, Any]] = {}
    total, seen = 0, 0
    stack = [(root, root.name.rstrip("/"), 0)]
    while stack:
        group, prefix, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{p}: {prefix} is nested more than {_MAX_DEPTH} groups deep; not Keras weights")
        for name in group:
            seen += 1
            if seen > _MAX_OBJECTS:
                raise CheckpointError(f"{p}: holds more than {_MAX_OBJECTS} HDF5 objects; not Keras weights")
            where = f"{prefix}/{name}"
            obj = _member(p, group, name, where)
            if isinstance(obj, h5py.Group):
                stack.append((obj, where, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                total += _dataset_bytes(p, where, obj)
                rel = where[len(root.name.rstrip("/")) + 1:].split("/")  # '<layer>/<layer>/kernel:0'
                layers.setdefault(rel[0], {})[rel[-1].split(":")[0]] = obj
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{p}: its datasets declare {total} bytes, over the {_CAP_TEXT} a checkpoint may "
                              "hold; it was refused unread")
    return layers


@contextlib.contextmanager
def open_keras_h5(path: str | os.PathLike) -> Iterator[tuple[Any, dict[str, dict[str, Any]]]]:
    """The open ``h5py.File`` and its checked, unread Keras weights index (:func:`_keras_index`).

    Read a dataset with :func:`read_dataset` only after its shape matched the architecture.
    """
    import h5py

    p = Path(path)
    with open_checkpoint(p) as fobj:
        try:
            f = h5py.File(fobj, "r")  # the checked descriptor, not the path: the path may have changed
        except (OSError, ValueError, RuntimeError, TypeError, KeyError, OverflowError) as exc:
            # ValueError: e.g. a superblock offset h5py cannot fit ("cannot fit 'int' into an offset-sized
            # integer", found by fuzzing)
            raise CheckpointError(f"{p}: not a readable HDF5 file ({type(exc).__name__}: {exc})") from None
        with f:
            try:
                index = _keras_index(p, f)
            except CheckpointError:
                raise
            except (OSError, KeyError, TypeError, RuntimeError, ValueError) as exc:  # h5py on a damaged file
                raise CheckpointError(f"{p}: is a damaged HDF5 file ({type(exc).__name__}: {exc})") from None
            yield f, index


def read_dataset(p: Path, ds: Any):
    """The data of a dataset of :func:`open_keras_h5`'s index (a numpy array), failures as one line."""
    try:
        return ds[()]
    except (OSError, KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{p}: dataset {ds.name} cannot be read ({type(exc).__name__}: {exc})") from None
