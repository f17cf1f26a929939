"""Compare a simulator's dumps with a golden directory: ``intsim compare GOLDEN_DIR DUMP_DIR`` (docs/rtl.md).

A dump is one tensor of one input, written by an RTL (or any) simulation either

* as ``$readmemh`` hex in the exported layout (:mod:`intsim.vectors`: one value per line, two's
  complement at the tensor's storage width, row-major HWC, ``//`` comments skipped), or
* as a ``.npy`` integer array of the tensor's shape.

Dumps are found by file name — ``DUMP_DIR/in<k>/<NNN>_<tensor>.hex`` (the name ``export-vectors``
gives the golden's file), or ``in<k>/<tensor>.hex``/``.npy`` with the tensor name as in
:func:`~intsim.golden_dir.tensor_file_name` — or listed in an index file (``--index``, or
``DUMP_DIR/dumps.json``)::

    {"dumps": [{"input": 0, "tensor": "body.0.conv1.out", "file": "conv1.hex",
                "region": {"y": [0, 2], "x": [0, 8], "c": [0, 64, 4]}}]}

``region`` (optional) says the dump holds only ``golden[y0:y1, x0:x1, c0:c1:cstep]`` of an H×W×C tensor
(a bench that computes a few output rows or sampled channels), in that slice's row-major order; indices
are always reported in the full tensor's coordinates. Tensors without a dump are not compared, so a
subset of the layers can be checked; ``ops`` restricts the comparison to the tensors of these ops, each
of which must then have a dump. numpy only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intsim.artifact import read_json, read_npy, read_regular
from intsim.golden_dir import GoldenError, read_golden_dir, tensor_file_name
from intsim.layer_vectors import parse_hex

INDEX_NAME = "dumps.json"
DUMP_MAX_BYTES = 4 << 30
STEM_CHARS = 100  # as intsim.vectors.STEM_CHARS


class DumpError(ValueError):
    """A dump folder, index or file that cannot be read (bad input: exit 2); the message names the file."""


@dataclass
class Dump:
    input: int
    tensor: str
    path: Path
    region: tuple[slice, slice, slice] | None = None
    bits: int | None = None


@dataclass
class CompareReport:
    """Outcome of :func:`compare_dumps`: ``tensors`` one entry per compared dump in (input, graph) order,
    ``{input, op, tensor, file, compared, mismatches, first}``; ``first`` the first mismatch overall as
    ``{input, op, tensor, index, expected, got}`` (or with ``reason`` instead of values)."""

    ok: bool = True
    mismatches: int = 0
    compared_tensors: int = 0
    mismatched_tensors: int = 0
    first: dict | None = None
    tensors: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"ok": self.ok, "mismatches": self.mismatches, "compared_tensors": self.compared_tensors,
                "mismatched_tensors": self.mismatched_tensors, "first": self.first, "tensors": self.tensors}

    def format(self) -> str:
        """One line (``OK …`` or the first mismatch), then one line per mismatching tensor."""
        if self.ok:
            return f"OK: {self.compared_tensors} dumped tensor(s) identical to the golden"
        f = self.first
        head = f"MISMATCH input {f['input']} op {f['op'] or '(graph input)'} tensor {f['tensor']}"
        if f.get("index") is None:
            line = f"{head}: {f['reason']}"
        else:
            line = f"{head} index {tuple(f['index'])}: expected {f['expected']}, got {f['got']}"
        rows = [f"  input {t['input']} {t['tensor']}: {t['mismatches']} of {t['compared']} element(s) differ"
                for t in self.tensors if t["mismatches"]]
        return "\n".join([line, *rows, f"{self.mismatches} differing element(s) in {self.mismatched_tensors} of "
                                       f"{self.compared_tensors} tensor(s)"])


def _region(r, shape: tuple[int, ...], where: str) -> tuple[slice, slice, slice] | None:
    if r is None:
        return None
    if len(shape) != 3 or not isinstance(r, dict) or set(r) - {"y", "x", "c"}:
        raise DumpError(f"{where}: region must be {{'y': [a, b], 'x': [a, b], 'c': [a, b(, step)]}} of an H×W×C "
                        "tensor")
    out = []
    for axis, n in zip(("y", "x", "c"), shape):
        v = r.get(axis, [0, n])
        ok = (isinstance(v, list) and len(v) in (2, 3) and all(isinstance(i, int) and not isinstance(i, bool)
                                                                for i in v))
        if not ok or not 0 <= v[0] < v[1] <= n or (len(v) == 3 and v[2] < 1):
            raise DumpError(f"{where}: region {axis} {v!r} is not [start, stop(, step)] inside 0..{n}")
        out.append(slice(v[0], v[1], v[2] if len(v) == 3 else 1))
    return tuple(out)


def _from_index(path: Path, base: Path, golden) -> list[Dump]:
    doc = read_json(path, DumpError, "a dump index")
    items = doc.get("dumps") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise DumpError(f"{path}: a dump index is {{\"dumps\": [{{\"input\", \"tensor\", \"file\"}}, ...]}}")
    out = []
    for i, e in enumerate(items):
        where = f"{path}: dumps[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not isinstance(e.get("tensor"), str) \
                or not isinstance(e.get("input"), int) or isinstance(e.get("input"), bool) \
                or set(e) - {"input", "tensor", "file", "region", "bits"}:
            raise DumpError(f"{where}: needs input (int), tensor and file (strings); optional region, bits")
        k, t = e["input"], e["tensor"]
        if not 0 <= k < len(golden) or t not in golden.tensor_names(k):
            raise DumpError(f"{where}: input {k} tensor {t!r} is not in the golden")
        bits = e.get("bits")
        if bits is not None and (not isinstance(bits, int) or bits % 4 or not 4 <= bits <= 64):
            raise DumpError(f"{where}: bits must be a multiple of 4 in 4..64")
        out.append(Dump(k, t, base / e["file"], _region(e.get("region"), golden.entry(k, t).shape, where), bits))
    return out


def _by_name(base: Path, golden) -> list[Dump]:
    out = []
    for k in range(len(golden)):
        folder = base / f"in{k}"
        for pos, t in enumerate(golden.tensor_names(k)):
            stem = tensor_file_name(t)
            names = [f"{pos:03d}_{stem[:STEM_CHARS]}.hex", f"{pos:03d}_{stem[:STEM_CHARS]}.npy",
                     f"{stem}.hex", f"{stem}.npy"]
            found = [folder / n for n in names if (folder / n).is_file()]
            if len(found) > 1:
                raise DumpError(f"{folder}: {found[0].name} and {found[1].name} both dump tensor {t!r}")
            if found:
                out.append(Dump(k, t, found[0]))
    return out


def _load(d: Dump, dtype: np.dtype) -> np.ndarray:
    data = read_regular(d.path, DUMP_MAX_BYTES, DumpError, "a dump")
    if d.path.suffix == ".npy":
        try:
            a = read_npy(data, str(d.path))
        except ValueError as e:
            raise DumpError(str(e)) from None
        if a.dtype.kind not in "iub":
            raise DumpError(f"{d.path}: dtype {a.dtype} is not an integer dtype")
        return a.astype(np.int64)
    bits = d.bits or dtype.itemsize * 8
    try:
        return parse_hex(data.decode("ascii"), bits, signed=dtype.kind != "u")
    except UnicodeDecodeError:
        raise DumpError(f"{d.path}: not a text hex file") from None
    except ValueError as e:
        raise DumpError(f"{d.path}: {e}") from None


def _compare_one(expected: np.ndarray, got: np.ndarray, d: Dump) -> tuple[int, dict | None, int]:
    """(differing elements, first difference in full-tensor coordinates, elements compared)."""
    if d.region is not None:
        expected = expected[d.region]
    if d.path.suffix == ".npy" and got.shape != expected.shape:
        return int(max(expected.size, 1)), {"index": None, "reason": f"{d.path.name}: shape {list(got.shape)}, "
                                            f"expected {list(expected.shape)}"}, int(expected.size)
    got = got.reshape(-1)
    if got.size != expected.size:
        return int(max(expected.size, 1)), {"index": None, "reason": f"{d.path.name}: {got.size} values, expected "
                                            f"{expected.size}"}, int(expected.size)
    exp = expected.reshape(-1).astype(np.int64)
    diff = exp != got
    n = int(np.count_nonzero(diff))
    if not n:
        return 0, None, int(exp.size)
    i = int(np.flatnonzero(diff)[0])
    idx = [int(v) for v in np.unravel_index(i, expected.shape)]
    if d.region is not None:  # back to the full tensor's coordinates
        idx = [r.start + v * r.step for r, v in zip(d.region, idx)]
    return n, {"index": idx, "expected": int(exp[i]), "got": int(got[i])}, int(exp.size)


def compare_dumps(golden_dir: str | os.PathLike, dump_dir: str | os.PathLike, *, index: str | None = None,
                  ops: list[str] | None = None, inputs: list[int] | None = None) -> CompareReport:
    """Compare every dump found in ``dump_dir`` with ``golden_dir`` exactly (see the module docstring).

    Raises :class:`DumpError` / :class:`~intsim.golden_dir.GoldenError` (bad input) when the folders or
    the index cannot be read, a dump cannot be parsed, no dump matches a golden tensor, or an op of
    ``ops`` is unknown or has no dump."""
    golden = read_golden_dir(golden_dir)
    base = Path(dump_dir)
    if not base.is_dir():
        raise DumpError(f"{dump_dir}: not a folder")
    ipath = Path(index) if index is not None else base / INDEX_NAME
    dumps = _from_index(ipath, base, golden) if index is not None or ipath.is_file() else _by_name(base, golden)
    if inputs is not None:
        for k in inputs:
            if not 0 <= k < len(golden):
                raise DumpError(f"input {k} is not in {golden_dir} (it has {len(golden)} input(s))")
        dumps = [d for d in dumps if d.input in inputs]
    if ops is not None:
        known = {golden.entry(k, t).op for k in range(len(golden)) for t in golden.tensor_names(k)}
        for o in ops:
            if o not in known:
                raise GoldenError(f"op {o!r} produces no tensor of {golden_dir}")
            if not any(golden.entry(d.input, d.tensor).op == o for d in dumps):
                raise DumpError(f"{dump_dir}: no dump of a tensor of op {o!r}")
        dumps = [d for d in dumps if golden.entry(d.input, d.tensor).op in ops]
    if not dumps:
        raise DumpError(f"{dump_dir}: no dump matches a tensor of {golden_dir} (expected in<k>/<NNN>_<tensor>.hex "
                        f"or .npy, or an index {INDEX_NAME})")
    seen: set[tuple[int, str]] = set()
    for d in dumps:
        if (d.input, d.tensor) in seen:
            raise DumpError(f"{dump_dir}: two dumps of input {d.input} tensor {d.tensor!r}")
        seen.add((d.input, d.tensor))
    order = {(k, t): (k, i) for k in range(len(golden)) for i, t in enumerate(golden.tensor_names(k))}
    rep = CompareReport()
    for d in sorted(dumps, key=lambda d: order[(d.input, d.tensor)]):
        e = golden.entry(d.input, d.tensor)
        expected = golden.tensor(d.input, d.tensor)
        got = _load(d, np.dtype(e.dtype))
        n, first, compared = _compare_one(expected, got, d)
        rep.compared_tensors += 1
        rep.tensors.append({"input": d.input, "op": e.op, "tensor": d.tensor, "file": str(d.path),
                            "compared": compared, "mismatches": n, "first": first})
        if n:
            rep.mismatches += n
            rep.mismatched_tensors += 1
            if rep.first is None:
                rep.first = {"input": d.input, "op": e.op, "tensor": d.tensor, **first}
    rep.ok = rep.mismatches == 0
    return rep
