"""Golden directory format, version 1 (docs/artifact.md, "Golden directory format").

::

    GOLDEN_DIR/manifest.json
    GOLDEN_DIR/inputs/<k>.npy             uint8 H×W×C, the k-th input image
    GOLDEN_DIR/tensors/<k>/<tensor>.npy   the kept tensors of the graph for input k
                                          (.npz: deflated, one member arr_0.npy)

Writing is atomic: everything goes into a temporary folder next to the target,
every file and folder is fsynced, the manifest is written last, and the folder
is renamed into place. A previous golden folder is swapped with the new one
in a single atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), then the old
contents are deleted, so the path always names either the complete old or the
complete new golden. Where the exchange is unsupported (other systems, some
file systems) the fallback is rename-old, rename-new, delete-old; a process
killed between those two renames leaves the old golden at
``.<name>.<random>.old`` next to the (then missing) path, and the next
:func:`intsim.golden_stream.write_golden_dir` to that path moves it back first. A kill can leave
stray ``.<name>.*.tmp`` folders (hidden; never read; safe to delete). Reading validates the manifest and every
file it lists (presence, dtype, shape, sha256 of the raw bytes) and refuses
anything else with a :class:`GoldenError` naming the file. numpy only; nothing
is ever unpickled.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import glob
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intsim.artifact import NPY_HEADER_MAX, array_sha256, open_regular, read_json
from intsim.outputs import fsync_dir

FORMAT = "intsim-golden"
VERSION = 1
MANIFEST = "manifest.json"
NPZ_MEMBER = "arr_0.npy"  # the one member of a compressed tensor file (np.load(f)["arr_0"])
EVENT_KEYS = ("acc_overflow", "stream_overflow", "saturations")
STORAGE_DTYPES = ("uint8", "int8", "int16", "int32", "int64")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class GoldenError(ValueError):
    """A refused golden directory (or a golden set that does not fit); the message names the file."""


# --------------------------------------------------------------------------
# naming and dtypes


def tensor_file_name(tensor: str) -> str:
    """File stem of a tensor: characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    return _SAFE.sub("_", tensor)


def storage_dtype(spec, numerics) -> str:
    """Storage dtype of a tensor (docs/artifact.md): streams int32 when stream_bits ≤ 32
    (else int64), codes int16 (int32 if N > 32767), images uint8."""
    if spec.kind == "image":
        return "uint8"
    if spec.kind == "stream":
        return "int32" if int(numerics.stream_bits) <= 32 else "int64"
    if spec.kind == "codes":
        return str(spec.codebook.code_dtype)
    raise GoldenError(f"unknown tensor kind {spec.kind!r}")


def storage_dtypes(art) -> dict[str, str]:
    """Storage dtype of every tensor of an :class:`~intsim.artifact.Artifact`."""
    return {name: storage_dtype(spec, art.numerics) for name, spec in art.tensors.items()}


GRAPH_INPUT_OP = ""  # manifest "op" of a graph input tensor (no producing op)


def tensor_ops_of(art) -> dict[str, str]:
    """Producing op of every tensor (``""`` for graph inputs), in graph order."""
    out: dict[str, str] = {name: GRAPH_INPUT_OP for name in art.inputs}
    for op in art.ops:
        for t in op.outputs:
            out[t] = op.name
    return out


def _to_storage(a: np.ndarray, dtype: str | None, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise GoldenError(f"{what}: golden tensors must hold integers, got dtype {a.dtype}")
    if dtype is None:
        dtype = str(a.dtype)
    if dtype not in STORAGE_DTYPES:
        raise GoldenError(f"{what}: storage dtype {dtype} not allowed ({', '.join(STORAGE_DTYPES)})")
    info = np.iinfo(dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise GoldenError(f"{what}: values [{int(a.min())}, {int(a.max())}] do not fit storage dtype {dtype}")
    return np.ascontiguousarray(a.astype(dtype))


# --------------------------------------------------------------------------
# writing


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2():
    """glibc's ``renameat2`` through ctypes, or None where unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (both must exist); False where unsupported.

    Linux ``renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)`` through glibc.
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _stranded_old(out_dir: Path) -> list[Path]:
    """Old golden folders a killed fallback swap left next to a missing ``out_dir``."""
    try:
        cands = sorted(out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*.old"))
    except OSError:
        return []
    return [p for p in cands if p.is_dir() and not p.is_symlink() and is_golden_dir(p)]


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Put the complete folder ``tmp`` at ``out_dir`` (which exists) atomically; delete the old one."""
    parent = out_dir.parent
    if _exchange_dirs(tmp, out_dir):
        fsync_dir(parent)
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old golden
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=parent))
    os.rmdir(old)
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)  # put the previous golden back
        raise
    fsync_dir(parent)
    shutil.rmtree(old, ignore_errors=True)


def _foreign_file(root: Path) -> str | None:
    """The first path under a golden folder that a golden does not write itself (manifest.json,
    inputs/<k>.npy, tensors/<k>/<name>.npy), or None: only such a folder may be replaced."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        parts = rel.parts
        for d in dirnames:
            ok = (not parts and d in ("inputs", "tensors")) or (parts == ("tensors",) and d.isdigit())
            if not ok or (Path(dirpath) / d).is_symlink():
                return str(rel / d)
        for f in filenames:
            ok = ((not parts and f == MANIFEST) or (parts == ("inputs",) and f.endswith(".npy"))
                  or (len(parts) == 2 and parts[0] == "tensors" and f.endswith((".npy", ".npz"))))
            if not ok or (Path(dirpath) / f).is_symlink():
                return str(rel / f)
    return None


def is_golden_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding a golden manifest (format ``intsim-golden``)."""
    m = Path(path) / MANIFEST
    try:
        return m.is_file() and read_json(m, GoldenError, "a golden manifest").get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_golden_target(out_dir: str | os.PathLike) -> None:
    """Refuse (:class:`GoldenError`) an ``out_dir`` that is not absent, an empty folder or a previous golden."""
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if out_dir.is_symlink() or not out_dir.is_dir():
            raise GoldenError(f"{out_dir}: exists and is not a folder; refusing to overwrite")
        if any(out_dir.iterdir()) and not is_golden_dir(out_dir):
            raise GoldenError(f"{out_dir}: exists, is not empty and is not a golden directory; refusing to overwrite")
        foreign = _foreign_file(out_dir)
        if foreign is not None:
            raise GoldenError(f"{out_dir}: holds {foreign}, which is not one of the golden's own files; "
                              "refusing to replace the folder")


@dataclass(frozen=True)
class GoldenInput:
    index: int
    source: str
    file: str
    shape: tuple[int, ...]
    dtype: str
    sha256: str


@dataclass(frozen=True)
class GoldenTensor:
    input: int
    tensor: str
    op: str  # "" for a graph input
    file: str
    shape: tuple[int, ...]
    dtype: str
    sha256: str


class GoldenSet:
    """A validated golden directory. Arrays are loaded lazily and re-checked on load."""

    def __init__(self, path: Path, manifest: dict, inputs: list[GoldenInput], entries: list[GoldenTensor],
                 events: dict[int, dict[str, dict[str, int]]]):
        self.path = path
        self.manifest = manifest
        self.artifact_sha256: str = manifest["artifact_sha256"]
        self.producer: str = manifest["producer"]
        self.inputs = inputs
        self.entries = entries
        self.events = events
        self._by_key = {(e.input, e.tensor): e for e in entries}

    def __len__(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        return (f"GoldenSet({str(self.path)!r}, inputs={len(self.inputs)}, tensors={len(self.entries)}, "
                f"producer={self.producer!r})")

    def input_image(self, k: int) -> np.ndarray:
        e = self.inputs[k]
        return _load_checked(self.path, e.file, e.dtype, e.shape, e.sha256, _OTHER_INPUT_HINT)

    def tensor_names(self, k: int) -> list[str]:
        return [e.tensor for e in self.entries if e.input == k]

    def entry(self, k: int, tensor: str) -> GoldenTensor:
        try:
            return self._by_key[(k, tensor)]
        except KeyError:
            raise GoldenError(f"{self.path}: no golden tensor {tensor!r} for input {k}") from None

    def tensor(self, k: int, tensor: str) -> np.ndarray:
        e = self.entry(k, tensor)
        return _load_checked(self.path, e.file, e.dtype, e.shape, e.sha256)

    def events_for(self, k: int) -> dict[str, dict[str, int]]:
        return self.events.get(k, {})


_OTHER_INPUT_HINT = f"{MANIFEST} was written for another input image, or the file changed"


#: one golden array larger than this is refused from its header, unread (a 4K ×4 output is ~100 MiB as int32)
ARRAY_MAX_BYTES = 2 << 30


def _npy_header(f, where: Path, dtype: str, shape: tuple[int, ...], size: int) -> None:
    """Judge a .npy file from its header before its data is read: the dtype and shape the manifest lists,
    within :data:`ARRAY_MAX_BYTES`, and a file size that holds exactly that much data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"unsupported .npy version {version}")
        hshape, _, hdtype = readers[version](f)
    except Exception as e:  # bad magic, truncated or malformed header
        raise GoldenError(f"{where}: not a valid .npy array ({type(e).__name__}: {e})") from None
    if hdtype.hasobject:
        raise GoldenError(f"{where}: holds a pickled/object array, refused (pickle is never loaded)")
    if str(hdtype) != dtype:
        raise GoldenError(f"{where}: dtype is {hdtype}, {MANIFEST} says {dtype}")
    if tuple(hshape) != tuple(shape):
        raise GoldenError(f"{where}: shape is {list(hshape)}, {MANIFEST} says {list(shape)}")
    nbytes = hdtype.itemsize * int(np.prod(hshape, dtype=object))
    if nbytes > ARRAY_MAX_BYTES:
        raise GoldenError(f"{where}: a {dtype} {list(hshape)} array is {nbytes} bytes, more than the "
                          f"{ARRAY_MAX_BYTES >> 20} MiB accepted for one golden array")
    if size != f.tell() + nbytes:
        raise GoldenError(f"{where}: not a valid .npy array (the file holds {size - f.tell()} data bytes, its "
                          f"header declares {nbytes}: truncated or padded)")


def _load_checked(root: Path, rel: str, dtype: str, shape: tuple[int, ...], sha: str,
                  mismatch_hint: str = "data changed or corrupt") -> np.ndarray:
    where = root / rel
    if not _is_file(where):
        raise GoldenError(f"{where}: listed in {MANIFEST} but missing")
    with open_regular(where, ARRAY_MAX_BYTES + NPY_HEADER_MAX, GoldenError, "a golden array") as f:
        if rel.endswith(".npz"):
            a = _load_npz(f, where, dtype, shape)
        else:
            size = os.fstat(f.fileno()).st_size
            _npy_header(f, where, dtype, shape, size)
            f.seek(0)
            try:
                a = np.load(f, allow_pickle=False)
            except Exception as e:  # an I/O error, or the file changed since its header was judged
                raise GoldenError(f"{where}: not a valid .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(a, np.ndarray) or str(a.dtype) != dtype or tuple(a.shape) != tuple(shape):
        raise GoldenError(f"{where}: changed while being read")
    digest = array_sha256(a)
    if digest != sha:
        raise GoldenError(f"{where}: sha256 mismatch ({mismatch_hint}: {digest[:12]}… != {sha[:12]}…)")
    return a


def _load_npz(f, where: Path, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The one array of a compressed tensor file: a zip holding exactly :data:`NPZ_MEMBER`, judged from the
    member's .npy header (dtype, shape, size) before its data is inflated."""
    try:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
            if names != [NPZ_MEMBER]:
                raise GoldenError(f"{where}: a compressed golden tensor holds exactly {NPZ_MEMBER}, found {names[:3]}")
            info = z.getinfo(NPZ_MEMBER)
            with z.open(info) as m:
                _npy_header(m, where, dtype, shape, info.file_size)  # leaves m at the data
                data = m.read(info.file_size - m.tell())
                return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)
    except GoldenError:
        raise
    except Exception as e:  # not a zip, a bad deflate stream, a CRC error, a truncated member
        raise GoldenError(f"{where}: not a valid .npz array ({type(e).__name__}: {e})") from None


def _req(d: dict, key: str, types, what: str):
    if not isinstance(d, dict) or key not in d:
        raise GoldenError(f"{what}: missing key {key!r}")
    v = d[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise GoldenError(f"{what}: {key!r} has the wrong type")
    if not isinstance(v, types):
        raise GoldenError(f"{what}: {key!r} has the wrong type ({type(v).__name__})")
    return v


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False where the OS refuses the name (ENAMETOOLONG: found by fuzzing)."""
    try:
        return p.is_file()
    except OSError:
        return False


def _safe_rel(rel: str, prefix: str, what: str) -> str:
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or ".." in parts or "" in parts or parts[0] != prefix:
        raise GoldenError(f"{what}: unsafe or misplaced file path {rel!r}")
    return rel


def _shape(v, what: str) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
        raise GoldenError(f"{what}: 'shape' must be a list of non-negative integers")
    return tuple(v)


def _sha(v, what: str) -> str:
    if not isinstance(v, str) or not _HEX64.match(v):
        raise GoldenError(f"{what}: 'sha256' must be 64 lowercase hex digits")
    return v


def read_golden_dir(path: str | os.PathLike, *, check_hashes: bool = True) -> GoldenSet:
    """Read and validate a golden directory; raise :class:`GoldenError` on any defect.

    Validates the manifest (JSON, format, version, schema), that every listed
    file exists, and — with ``check_hashes`` (default) — that every file's dtype,
    shape and sha256 match the manifest. Arrays are not kept in memory; they are
    loaded (and checked again) on access.
    """
    root = Path(path)
    if not root.is_dir():
        stranded = [] if root.exists() else _stranded_old(root)
        if stranded:
            raise GoldenError(f"{root}: no such golden directory (an interrupted write left the previous one at "
                              f"{stranded[0]}; the next `intsim golden` to this path moves it back)")
        raise GoldenError(f"{root}: no such golden directory")
    mpath = root / MANIFEST
    if not mpath.exists():
        raise GoldenError(f"{mpath}: missing (not a golden directory)")
    manifest = read_json(mpath, GoldenError, "a golden manifest")
    if not isinstance(manifest, dict):
        raise GoldenError(f"{mpath}: must hold a JSON object")
    if manifest.get("format") != FORMAT:
        raise GoldenError(f"{mpath}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise GoldenError(f"{mpath}: unsupported golden version {manifest.get('version')!r} "
                          f"(this intsim reads version {VERSION})")
    what = str(mpath)
    _sha(_req(manifest, "artifact_sha256", str, what), f"{what}: artifact_sha256")
    _req(manifest, "producer", str, what)

    inputs: list[GoldenInput] = []
    for i, d in enumerate(_req(manifest, "inputs", list, what)):
        w = f"{what}: inputs[{i}]"
        idx = _req(d, "index", int, w)
        if idx != i:
            raise GoldenError(f"{w}: index {idx} out of sequence (expected {i})")
        rel = _safe_rel(_req(d, "file", str, w), "inputs", w)
        dt = _req(d, "dtype", str, w)
        if dt != "uint8":
            raise GoldenError(f"{w}: input images must be uint8, manifest says {dt}")
        inputs.append(GoldenInput(idx, _req(d, "source", str, w), rel, _shape(_req(d, "shape", list, w), w), dt,
                                  _sha(_req(d, "sha256", str, w), w)))

    entries: list[GoldenTensor] = []
    seen: set[tuple[int, str]] = set()
    files: set[str] = {e.file for e in inputs}
    for i, d in enumerate(_req(manifest, "tensors", list, what)):
        w = f"{what}: tensors[{i}]"
        k = _req(d, "input", int, w)
        if not 0 <= k < len(inputs):
            raise GoldenError(f"{w}: input {k} is not a listed input (0..{len(inputs) - 1})")
        name = _req(d, "tensor", str, w)
        if (k, name) in seen:
            raise GoldenError(f"{w}: tensor {name!r} listed twice for input {k}")
        seen.add((k, name))
        op = d.get("op")
        if op is None:
            op = GRAPH_INPUT_OP
        if not isinstance(op, str):
            raise GoldenError(f"{w}: 'op' must be a string")
        rel = _safe_rel(_req(d, "file", str, w), "tensors", w)
        if rel in files:
            raise GoldenError(f"{w}: file {rel!r} is listed twice")
        files.add(rel)
        dt = _req(d, "dtype", str, w)
        if dt not in STORAGE_DTYPES:
            raise GoldenError(f"{w}: dtype {dt} not allowed ({', '.join(STORAGE_DTYPES)})")
        entries.append(GoldenTensor(k, name, op, rel, _shape(_req(d, "shape", list, w), w), dt,
                                    _sha(_req(d, "sha256", str, w), w)))

    events: dict[int, dict[str, dict[str, int]]] = {}
    for i, d in enumerate(_req(manifest, "events", list, what)):
        w = f"{what}: events[{i}]"
        k = _req(d, "input", int, w)
        if not 0 <= k < len(inputs):
            raise GoldenError(f"{w}: input {k} is not a listed input (0..{len(inputs) - 1})")
        op = _req(d, "op", str, w)
        if op in events.setdefault(k, {}):
            raise GoldenError(f"{w}: events of op {op!r} listed twice for input {k}")
        counters = {}
        for key in EVENT_KEYS:
            v = _req(d, key, int, w)
            if v < 0:
                raise GoldenError(f"{w}: {key} must be non-negative")
            counters[key] = v
        events[k][op] = counters

    for e in inputs:
        if not _is_file(root / e.file):
            raise GoldenError(f"{root / e.file}: input {e.index} ({e.source}) is listed in {MANIFEST} but missing")
    for e in entries:
        if not _is_file(root / e.file):
            raise GoldenError(f"{root / e.file}: tensor {e.tensor!r} of input {e.input} is listed in "
                              f"{MANIFEST} but missing")
    if check_hashes:
        for e in inputs:
            _load_checked(root, e.file, e.dtype, e.shape, e.sha256, _OTHER_INPUT_HINT)
        for e in entries:
            _load_checked(root, e.file, e.dtype, e.shape, e.sha256)
    return GoldenSet(root, manifest, inputs, entries, events)

