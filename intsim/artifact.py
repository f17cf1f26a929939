"""The artifact file: archive reading and atomic writing (docs/artifact.md).

The archive layer (members, dtypes, shapes, hashes, JSON parsing) lives here; the data model
(:class:`Artifact` and its parts) lives in :mod:`intsim.artifact_model` and is re-exported here;
semantic graph checks and the exactness envelope live in ``intsim.validate`` and run on every load
and save. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from intsim.artifact_model import (  # noqa: F401  (the data model, re-exported: importers read it here)
    ALLOWED_DTYPES,
    FORMAT,
    REALIZATIONS,
    VERSION,
    Artifact,
    ArtifactError,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
    array_sha256,
)
from intsim.outputs import write_atomic
from intsim.validate import MAX_ARRAYS, check_graph_counts, parse_graph, validate_artifact

GRAPH_MEMBER = "graph.json"
ARRAY_PREFIX = "arrays/"

# --------------------------------------------------------------------------
# hashing and atomic writes


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, rename
    (:func:`intsim.outputs.write_atomic`: the umask's mode, errors name ``path``, nothing left on failure)."""
    write_atomic(path, data)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented UTF-8 JSON."""
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode("utf-8"))


# --------------------------------------------------------------------------
# capped reads of regular files (every input file goes through these)

#: JSON that intsim writes and reads back (golden manifests, counters, run summaries, calibration state)
JSON_MAX_BYTES = 256 << 20


def _size(n: int) -> str:
    if n < 1 << 20:
        return f"{n} bytes"
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n / (1 << 20):.2f} MiB"


def _check_regular(path: Path, st: os.stat_result, max_bytes: int, error: type[Exception], what: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket")
        raise error(f"{path}: is {kind}, not a regular file; refused unread ({what} must be a regular file)")
    if st.st_size > max_bytes:
        raise error(f"{path}: is {_size(st.st_size)}, more than the {_size(max_bytes)} accepted for {what}")


def open_regular(path: str | os.PathLike, max_bytes: int, error: type[Exception] = ValueError,
                 what: str = "an input file") -> BinaryIO:
    """``path`` opened for binary reading, or ``error`` (one line naming it) unless it is a regular file of at
    most ``max_bytes``. Judged by ``stat`` before the open, so a FIFO (whose open blocks until a writer comes)
    or a device such as /dev/zero (endless) is never opened; the open does not block and the descriptor is
    judged again, so a file swapped in between is caught too. A file may still grow: read at most
    ``max_bytes + 1`` bytes (:func:`read_regular` does)."""
    path = Path(path)
    try:
        _check_regular(path, os.stat(path), max_bytes, error, what)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{path}: cannot read (no such file)") from None
    except OSError as e:  # permission, a name too long, a loop of links, ...
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    f = os.fdopen(fd, "rb")
    try:
        _check_regular(path, os.fstat(fd), max_bytes, error, what)
    except BaseException:
        f.close()
        raise
    return f


def read_regular(path: str | os.PathLike, max_bytes: int, error: type[Exception] = ValueError,
                 what: str = "an input file") -> bytes:
    """The bytes of ``path`` under :func:`open_regular`'s rules."""
    with open_regular(path, max_bytes, error, what) as f:
        try:
            # read(n) reserves n bytes up front: ask for what the file holds, plus one byte to see it grew
            expect = min(os.fstat(f.fileno()).st_size, max_bytes)
            data = f.read(expect + 1)
            if len(data) > expect:  # it grew, or reports no size (/proc): read on in steps, up to the cap
                parts, total = [data], len(data)
                while total <= max_bytes:
                    more = f.read(min(1 << 20, max_bytes + 1 - total))
                    if not more:
                        break
                    parts.append(more)
                    total += len(more)
                data = b"".join(parts)
        except OSError as e:
            raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: grew past the {_size(max_bytes)} accepted for {what} while being read")
    return data


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError, what: str = "a JSON file",
              max_bytes: int = JSON_MAX_BYTES):
    """Parse a JSON file read by :func:`read_regular` with :func:`loads_strict`; every refusal names the file."""
    data = read_regular(path, max_bytes, error, what)
    try:
        return loads_strict(data.decode("utf-8"))
    except RecursionError:  # e.g. [[[[…]]]] 100000 deep (found by fuzzing)
        raise error(f"{path}: nested too deeply to parse") from None
    except ValueError as e:  # not UTF-8, not JSON, a duplicate key, or an integer over Python's 4300-digit limit
        raise error(f"{path}: not valid JSON ({text_error(e)})") from None


def text_error(e: ValueError) -> str:
    """A parser's message without Python's advice to raise the int-string limit (``sys.set_int_max_str_digits``),
    which a user of the command cannot act on."""
    return str(e).split("; use sys.set_int_max_str_digits")[0]


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def read_npy(data: bytes, what: str) -> np.ndarray:
    """Parse .npy bytes without ever unpickling; ``what`` names the source in errors."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise ArtifactError(f"{what}: holds a pickled/object array, refused (pickle is never loaded)") from None
        raise ArtifactError(f"{what}: not a valid .npy array ({e})") from None
    except Exception as e:  # truncated header, bad magic, ...
        raise ArtifactError(f"{what}: not a valid .npy array ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------
# writing


def save_artifact(artifact: Artifact, path: str | os.PathLike) -> str:
    """Validate, then write ``artifact`` atomically; return the file's sha256."""
    validate_artifact(artifact)
    graph = artifact.graph_json()
    buf = io.BytesIO()
    def member(name: str) -> zipfile.ZipInfo:
        # A fixed timestamp makes the same artifact produce the same file bytes (and sha256).
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member(GRAPH_MEMBER), json.dumps(graph, indent=1, sort_keys=False))
        for name, a in artifact.arrays.items():
            z.writestr(member(f"{ARRAY_PREFIX}{name}.npy"), npy_bytes(a))
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# reading


def _member_name_ok(name: str) -> bool:
    return not (name.startswith("/") or "\\" in name or ".." in name.split("/") or name == "")


def load_artifact(path: str | os.PathLike) -> Artifact:
    """Read and fully validate an artifact; raise :class:`ArtifactError` on any defect."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact file")
    data = read_regular(path, ARTIFACT_MAX_BYTES, ArtifactError, "an artifact")
    art = parse_artifact_bytes(data, str(path))
    art.sha256 = hashlib.sha256(data).hexdigest()
    return art


#: an artifact file larger than this is refused unread (zoo models export to tens of MiB)
ARTIFACT_MAX_BYTES = 2 << 30
#: graph.json larger than this (uncompressed) is refused before it is inflated
GRAPH_MAX_BYTES = 16 << 20  # IMDN's is 0.27 MiB; 16 MiB decodes in well under 500 MB
#: header allowance of one .npy member beyond its declared data bytes
NPY_HEADER_MAX = 4096


def _no_duplicate_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def loads_strict(text: str):
    """``json.loads`` that refuses duplicate object keys (ValueError) instead of keeping the last one."""
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


def _check_members(z: zipfile.ZipFile, where: str) -> None:
    """Judge every member from its directory entry before anything is inflated: only stored or deflated
    members (the spec's), and graph.json within :data:`GRAPH_MAX_BYTES`."""
    for info in z.infolist():
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArtifactError(f"{where}: member {info.filename!r} uses compression method {info.compress_type} "
                                "(an artifact's members are stored or deflated)")
        if info.filename == GRAPH_MEMBER and info.file_size > GRAPH_MAX_BYTES:
            raise ArtifactError(f"{where}: {GRAPH_MEMBER} inflates to {info.file_size} bytes "
                                f"(more than the {GRAPH_MAX_BYTES >> 20} MiB cap)")


def _declared_bytes(decl: dict, what: str) -> int:
    dt, shape = decl.get("dtype"), decl.get("shape")
    if dt not in ALLOWED_DTYPES:
        raise ArtifactError(f"{what}: dtype {dt} not allowed (allowed: {', '.join(ALLOWED_DTYPES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                               for d in shape):
        raise ArtifactError(f"{what}: declared shape must be a list of non-negative integers, got {shape!r}")
    return int(np.dtype(dt).itemsize) * int(np.prod(shape, dtype=object))


def parse_artifact_bytes(data: bytes, where: str = "artifact") -> Artifact:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        # NotImplementedError: e.g. "zip file version 13.4" in a corrupt header (found by fuzzing)
        raise ArtifactError(f"{where}: not a readable artifact archive (truncated or corrupt: {e})") from None
    if len(names) > MAX_ARRAYS + 1:
        raise ArtifactError(f"{where}: the archive has {len(names)} members, more than the {MAX_ARRAYS + 1} accepted "
                            "(graph.json and one .npy per array)")
    bad = [n for n in names if not _member_name_ok(n)]
    if bad:
        raise ArtifactError(f"{where}: unsafe member name {bad[0]!r} (absolute, '..' or backslash)")
    if len(set(names)) != len(names):
        raise ArtifactError(f"{where}: duplicate member names")
    _check_members(z, where)

    def read(name: str) -> bytes:
        try:
            return z.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError) as e:
            raise ArtifactError(f"{where}: member {name!r} is corrupt or truncated ({e})") from None
        except Exception as e:  # zlib.error and friends
            raise ArtifactError(f"{where}: member {name!r} is corrupt or truncated ({type(e).__name__}: {e})") from None

    if GRAPH_MEMBER not in names:
        raise ArtifactError(f"{where}: missing {GRAPH_MEMBER}")
    try:
        graph = loads_strict(read(GRAPH_MEMBER).decode("utf-8"))
    except ValueError as e:  # not UTF-8, not JSON, or a duplicate key
        raise ArtifactError(f"{where}: {GRAPH_MEMBER} is not valid JSON ({e})") from None
    except RecursionError:  # e.g. [[[[…]]]] 100000 deep (found by fuzzing)
        raise ArtifactError(f"{where}: {GRAPH_MEMBER} is nested too deeply to parse") from None
    if not isinstance(graph, dict):
        raise ArtifactError(f"{where}: {GRAPH_MEMBER} must hold a JSON object")
    if graph.get("format") != FORMAT:
        raise ArtifactError(f"{where}: format is {graph.get('format')!r}, expected {FORMAT!r}")
    if graph.get("version") != VERSION:
        raise ArtifactError(
            f"{where}: unsupported schema version {graph.get('version')!r} (this intsim reads version {VERSION})"
        )
    check_graph_counts(graph, where)  # before any array is read or any op parsed
    declared = graph.get("arrays")
    if not isinstance(declared, dict):
        raise ArtifactError(f"{where}: 'arrays' must be an object")
    members = {n[len(ARRAY_PREFIX):-4]: n for n in names if n.startswith(ARRAY_PREFIX) and n.endswith(".npy")}
    stray = [n for n in names if n != GRAPH_MEMBER and not (n.startswith(ARRAY_PREFIX) and n.endswith(".npy"))]
    if stray:
        raise ArtifactError(f"{where}: unexpected member {stray[0]!r}")
    missing = sorted(set(declared) - set(members))
    extra = sorted(set(members) - set(declared))
    if missing:
        raise ArtifactError(f"{where}: array {missing[0]!r} is declared in graph.json but missing from the archive")
    if extra:
        raise ArtifactError(f"{where}: array {extra[0]!r} is in the archive but not declared in graph.json")

    arrays: dict[str, np.ndarray] = {}
    for name, decl in declared.items():
        what = f"{where}: array {name!r}"
        if not isinstance(decl, dict) or set(decl) != {"dtype", "shape", "sha256"}:
            raise ArtifactError(f"{what}: declaration must have exactly dtype, shape, sha256")
        size = z.getinfo(members[name]).file_size
        if size > _declared_bytes(decl, what) + NPY_HEADER_MAX:  # judged before inflating (decompression bombs)
            raise ArtifactError(f"{what}: member inflates to {size} bytes, more than its declared "
                                f"{decl['dtype']} {decl['shape']} can need")
        a = read_npy(read(members[name]), what)
        if str(a.dtype) not in ALLOWED_DTYPES:
            raise ArtifactError(f"{what}: dtype {a.dtype} not allowed (allowed: {', '.join(ALLOWED_DTYPES)})")
        if str(a.dtype) != decl["dtype"]:
            raise ArtifactError(f"{what}: dtype is {a.dtype}, graph.json declares {decl['dtype']}")
        if list(a.shape) != decl["shape"]:
            raise ArtifactError(f"{what}: shape is {list(a.shape)}, graph.json declares {decl['shape']}")
        digest = array_sha256(a)
        if digest != decl["sha256"]:
            raise ArtifactError(f"{what}: sha256 mismatch (data changed or corrupt: {digest[:12]}… != {str(decl['sha256'])[:12]}…)")
        arrays[name] = a
    art = artifact_from_json(graph, arrays, where)
    return art


def artifact_from_json(graph: dict, arrays: dict[str, np.ndarray], where: str = "artifact") -> Artifact:
    """Build an :class:`Artifact` from parsed graph.json and arrays, then validate it."""
    art = parse_graph(graph, arrays, where)
    validate_artifact(art, where)
    return art
