"""Write a golden directory as its tensors are produced (docs/artifact.md, "Golden directory format").

:class:`GoldenStreamWriter` is the writing half of :mod:`intsim.golden_dir`: the
golden executor hands it each input image, then each tensor *in row bands* as it
computes them (a band of rows of an H×W×C tensor is contiguous in the file), then
each input's event counters. Nothing of an input is kept in memory after it was
written, so a golden of any number of inputs and any image size costs the memory
of one band. Files go to a hidden temporary folder next to the target; the
manifest is written last and the folder is published atomically (as
:func:`write_golden_dir`, which is built on this class).

Storage: each tensor is a ``.npy`` file, or with ``compress=True`` a ``.npz``
(zip, deflate) holding one member ``arr_0.npy``. The manifest's meaning does not
change: ``dtype``, ``shape`` and ``sha256`` describe the raw C-order
little-endian array, whatever file holds it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from intsim import golden_dir as _gd
from intsim.artifact import array_sha256
from intsim.golden_dir import (
    EVENT_KEYS, FORMAT, GRAPH_INPUT_OP, MANIFEST, NPZ_MEMBER, STORAGE_DTYPES, VERSION, GoldenError, _HEX64,
    _replace_dir, _stranded_old, check_golden_target, tensor_file_name,
)
from intsim.golden_selection import selection_items
from intsim.outputs import fsync_dir, make_folders, naming, publish_mode, remove_folders, temp_folder

#: deflate level of ``compress=True``: zlib's default. IMDN ×4 W4A4 on Set5 baby, conv-io tensors as a
#: fraction of the uncompressed all-tensor golden: level 1 0.249 (2.5 s CPU), 6 0.243 (12.6 s), 9 0.241 (59 s)
DEFLATE_LEVEL = 6


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy (version 1.0) header of a C-order array of ``dtype`` and ``shape``."""
    d = np.lib.format.header_data_from_array_1_0(np.empty(0, dtype=dtype))
    d["shape"] = tuple(int(s) for s in shape)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue()


class TensorFile:
    """One tensor being written band by band: rows in order, checked against the storage dtype."""

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...], what: str, compress: bool):
        self.path, self.dtype, self.shape, self.what = path, np.dtype(dtype), tuple(shape), what
        self.rows = 0
        self._sha = hashlib.sha256()
        self._raw = open(path, "wb")
        self._zip = self._member = None
        if compress:
            self._zip = zipfile.ZipFile(self._raw, "w", compression=zipfile.ZIP_DEFLATED,
                                        compresslevel=DEFLATE_LEVEL)
            self._member = self._zip.open(NPZ_MEMBER, "w", force_zip64=True)
        self._out().write(npy_header(self.dtype, self.shape))

    def _out(self):
        return self._member if self._member is not None else self._raw

    def write_rows(self, a: np.ndarray) -> None:
        """Append the next rows (an array of ``shape[1:]`` rows, any integer dtype)."""
        a = np.asarray(a)
        if a.dtype.kind not in "iu":
            raise GoldenError(f"{self.what}: golden tensors must hold integers, got dtype {a.dtype}")
        if tuple(a.shape[1:]) != self.shape[1:] or self.rows + a.shape[0] > self.shape[0]:
            raise GoldenError(f"{self.what}: rows of shape {list(a.shape)} do not continue a {list(self.shape)} "
                              f"tensor at row {self.rows}")
        if a.dtype != self.dtype and a.size:
            info = np.iinfo(self.dtype)
            lo, hi = int(a.min()), int(a.max())
            if lo < info.min or hi > info.max:
                raise GoldenError(f"{self.what}: values [{lo}, {hi}] do not fit storage dtype {self.dtype}")
        b = np.ascontiguousarray(a, dtype=self.dtype.newbyteorder("<")).tobytes()
        self._sha.update(b)
        self._out().write(b)
        self.rows += a.shape[0]

    def close(self) -> str:
        """Finish the file (it must hold every row); return the sha256 of the raw array bytes."""
        if self.rows != self.shape[0]:
            raise GoldenError(f"{self.what}: {self.rows} of {self.shape[0]} rows written")
        self.abort(flush=True)
        return self._sha.hexdigest()

    def abort(self, flush: bool = False) -> None:
        if self._member is not None:
            self._member.close()
            self._zip.close()
            self._member = self._zip = None
        if not self._raw.closed:
            if flush:
                self._raw.flush()
                os.fsync(self._raw.fileno())
            self._raw.close()


class GoldenStreamWriter:
    """Stream a golden directory: ``add_input``, then ``open_tensor``/``write_rows``/``close`` (or
    ``write_tensor``) and ``set_events`` per input, then :meth:`finish`. A ``with`` block aborts (deletes
    the temporary folder) on an exception; the target is only replaced by :meth:`finish`.

    ``tensor_ops`` maps every tensor to its producing op (``""``/None: a graph input), in graph order:
    the manifest lists each input's tensors in that order. ``dtypes`` maps tensor → storage dtype.
    ``selection`` (items as :mod:`intsim.golden_selection` reads them, e.g. ``["conv-io"]``) is recorded in
    the manifest as ``tensors_kept``.
    ``graph_order=False`` lists each input's tensors in the order they were finished instead.
    """

    def __init__(self, out_dir, artifact_sha256: str, producer: str, tensor_ops: Mapping[str, str | None], *,
                 dtypes: Mapping[str, str] | None = None, compress: bool = False, selection: str | None = None,
                 graph_order: bool = True):
        self.out_dir = Path(out_dir)
        if not isinstance(artifact_sha256, str) or not _HEX64.match(artifact_sha256):
            raise GoldenError(f"artifact_sha256 must be 64 lowercase hex digits, got {artifact_sha256!r}")
        self.sha, self.producer, self.tensor_ops = artifact_sha256, str(producer), dict(tensor_ops)
        self.dtypes, self.compress, self.selection = dtypes, bool(compress), selection
        self._rank = {t: i for i, t in enumerate(self.tensor_ops)}
        self._inputs: list[dict] = []
        self._tensors: dict[int, list[dict]] = {}
        self._events: dict[int, list[dict]] = {}
        self._stems: dict[int, set[str]] = {}
        self._open: dict[tuple[int, str], tuple[TensorFile, dict]] = {}
        self.graph_order = graph_order
        self.tmp: Path | None = None
        if not self.out_dir.exists() and not self.out_dir.is_symlink():
            stranded = _stranded_old(self.out_dir)
            if len(stranded) == 1:  # a killed fallback swap: put the previous golden back first
                os.rename(stranded[0], self.out_dir)
        check_golden_target(self.out_dir)
        self._made = make_folders(self.out_dir.parent)
        try:
            self.tmp = temp_folder(self.out_dir)
            (self.tmp / "inputs").mkdir()
            (self.tmp / "tensors").mkdir()
        except OSError as e:
            remove_folders(self._made)
            raise naming(e, self.out_dir) from e

    def __enter__(self) -> GoldenStreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            if isinstance(exc, OSError):  # a full disk, a read-only folder: name the golden, not a temp file
                raise naming(exc, self.out_dir) from exc

    # -- inputs and tensors ---------------------------------------------
    def add_input(self, source: str, image: np.ndarray) -> int:
        """Record the next input image (uint8 H×W×C); return its index ``k``."""
        k = len(self._inputs)
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3:
            raise GoldenError(f"input {k} ({source}): must be a uint8 H×W×C array, got {img.dtype} {list(img.shape)}")
        rel = f"inputs/{k}.npy"
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(img), allow_pickle=False)
        _gd._write_file(self.tmp / rel, buf.getvalue())
        self._inputs.append({"index": k, "source": str(source), "file": rel, "shape": list(img.shape),
                             "dtype": "uint8", "sha256": array_sha256(img)})
        (self.tmp / "tensors" / str(k)).mkdir()
        self._tensors[k], self._stems[k] = [], set()
        return k

    def open_tensor(self, k: int, name: str, shape: tuple[int, ...], dtype: str | None = None) -> TensorFile:
        """Start tensor ``name`` of input ``k`` (its full ``shape``); write it with ``write_rows``."""
        if k not in self._tensors:
            raise GoldenError(f"input {k} was not added")
        if name not in self.tensor_ops:
            raise GoldenError(f"input {k}: tensor {name!r} has no entry in tensor_ops")
        if (k, name) in self._open or any(e["tensor"] == name for e in self._tensors[k]):
            raise GoldenError(f"input {k}: tensor {name!r} written twice")
        dt = dtype or (self.dtypes or {}).get(name)
        if dt is None:
            raise GoldenError(f"input {k}: tensor {name!r} has no storage dtype")
        if dt not in STORAGE_DTYPES:
            raise GoldenError(f"input {k} tensor {name!r}: storage dtype {dt} not allowed ({', '.join(STORAGE_DTYPES)})")
        stem = base = tensor_file_name(name)
        i = 1
        while stem.lower() in self._stems[k]:  # distinct tensors whose names sanitize alike (or differ in case)
            stem, i = f"{base}-{i}", i + 1
        self._stems[k].add(stem.lower())
        rel = f"tensors/{k}/{stem}.{'npz' if self.compress else 'npy'}"
        f = TensorFile(self.tmp / rel, dt, tuple(int(s) for s in shape), f"input {k} tensor {name!r}", self.compress)
        op_name = self.tensor_ops[name] if self.tensor_ops[name] is not None else GRAPH_INPUT_OP
        entry = {"input": k, "tensor": name, "op": op_name, "file": rel, "dtype": str(np.dtype(dt)),
                 "shape": list(f.shape), "sha256": None}
        self._open[(k, name)] = (f, entry)
        return f

    def close_tensor(self, k: int, name: str) -> None:
        f, entry = self._open.pop((k, name))
        entry["sha256"] = f.close()
        self._tensors[k].append(entry)

    def write_tensor(self, k: int, name: str, arr: np.ndarray) -> None:
        """A whole tensor at once (storage dtype from ``dtypes``, else the array's own)."""
        a = np.asarray(arr)
        if a.dtype.kind not in "iu":
            raise GoldenError(f"input {k} tensor {name!r}: golden tensors must hold integers, got dtype {a.dtype}")
        dt = (self.dtypes or {}).get(name) or str(a.dtype)
        f = self.open_tensor(k, name, a.shape if a.ndim else (1,), dt)
        f.write_rows(a.reshape(f.shape))
        self.close_tensor(k, name)

    def set_events(self, k: int, events: Mapping[str, Mapping[str, int]]) -> None:
        """The per-op counters of input ``k`` (only ``acc_overflow``, ``stream_overflow``, ``saturations``)."""
        out = []
        for op_name, counters in events.items():
            entry = {"input": k, "op": op_name}
            for key in EVENT_KEYS:
                v = counters.get(key, 0)
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise GoldenError(f"input {k} op {op_name!r}: counter {key} must be a non-negative integer")
                entry[key] = int(v)
            out.append(entry)
        self._events[k] = out

    # -- publishing -------------------------------------------------------
    def finish(self) -> Path:
        """Write the manifest and publish the folder atomically; return its path."""
        try:
            if self._open:
                k, name = next(iter(self._open))
                raise GoldenError(f"input {k}: tensor {name!r} was not finished")
            if set(self._events) != set(range(len(self._inputs))):
                raise GoldenError("need one events entry per input")
            for k in range(len(self._inputs)):
                fsync_dir(self.tmp / "tensors" / str(k))
            fsync_dir(self.tmp / "inputs")
            fsync_dir(self.tmp / "tensors")
            if self.graph_order:
                for k in self._tensors:
                    self._tensors[k].sort(key=lambda e: self._rank[e["tensor"]])
            tensors = [e for k in range(len(self._inputs)) for e in self._tensors[k]]
            manifest = {"format": FORMAT, "version": VERSION, "artifact_sha256": self.sha,
                        "producer": self.producer, "inputs": self._inputs, "tensors": tensors,
                        "events": [e for k in range(len(self._inputs)) for e in self._events[k]]}
            if self.selection is not None:  # verify demands every tensor it implies (intsim/golden_selection.py)
                manifest["tensors_kept"] = selection_items(self.selection)
            _gd._write_file(self.tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
            publish_mode(self.tmp, folder=True)
            fsync_dir(self.tmp)
            if self.out_dir.exists():
                _replace_dir(self.tmp, self.out_dir)
            else:
                os.rename(self.tmp, self.out_dir)
            fsync_dir(self.out_dir.parent)
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError):  # a full disk, a read-only folder: name the golden, not a temp file
                raise naming(e, self.out_dir) from e
            raise
        return self.out_dir

    def abort(self) -> None:
        """Drop everything written so far (the target is untouched)."""
        for f, _ in self._open.values():
            f.abort()
        self._open.clear()
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None
        remove_folders(self._made)


def write_golden_dir(out_dir, artifact_sha256: str, inputs: list[tuple[str, np.ndarray]],
                     tensors: list[Mapping[str, np.ndarray]], events: list[Mapping[str, Mapping[str, int]]],
                     producer: str, tensor_ops: Mapping[str, str | None], *,
                     dtypes: Mapping[str, str] | None = None) -> Path:
    """Write a golden directory whose tensors are all in memory, atomically; return its path.

    ``inputs[k] = (source name, uint8 H×W×C image)``; ``tensors[k]`` maps tensor name → integer array
    for input k (listed in the mapping's order, which should be graph order); ``events[k]`` maps op
    name → counters (only ``acc_overflow``, ``stream_overflow``, ``saturations`` are stored);
    ``tensor_ops`` maps each tensor to its producing op (``""``/None for graph inputs); ``dtypes`` maps
    tensor → storage dtype (default: each array's own). Only an empty folder or a previous golden is
    replaced (:func:`intsim.golden_dir.check_golden_target`). One writer: :class:`GoldenStreamWriter`.
    """
    if not (len(inputs) == len(tensors) == len(events)):
        raise GoldenError(f"need one tensors and one events entry per input: {len(inputs)} inputs, "
                          f"{len(tensors)} tensor sets, {len(events)} event sets")
    with GoldenStreamWriter(out_dir, artifact_sha256, producer, tensor_ops, dtypes=dtypes,
                            graph_order=False) as w:
        for (source, image), ts, ev in zip(inputs, tensors, events):
            k = w.add_input(source, image)
            for name, arr in ts.items():
                w.write_tensor(k, name, arr)
            w.set_events(k, ev)
        return w.finish()
