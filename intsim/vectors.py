"""Export golden tensors as test vectors for hardware test benches and firmware tests (docs/arithmetic.md).

``export_vectors(golden_dir, out_dir, fmt)`` writes, for every input ``k`` and every
stored tensor of a golden directory (graph order):

* ``readmemh``: ``OUT/in<k>/<NN>_<tensor>.hex`` — Verilog ``$readmemh`` files: one
  value per line, two's complement hexadecimal at the tensor's storage width
  (uint8 images: 2 digits, int16 codes: 4, int32 stream: 8, int64: 16), elements in
  row-major order of the stored shape (H×W×C: ``index = (y·W + x)·C + c``), preceded by
  a ``//`` comment header giving the tensor, its producing op, shape, dtype, width and
  layout (``$readmemh`` skips ``//`` comments).
* ``c``: ``OUT/in<k>/<NN>_<tensor>.h`` — a C header with ``#define <ID>_H/_W/_C/_LEN``
  dimension macros and ``static const <int type> <id>[<ID>_LEN]`` in the same order.

``OUT/index.json`` lists every file with its tensor, op, shape, dtype and sha256 of the
golden array. numpy only (no torch); the golden directory is validated on read.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from intsim.artifact import atomic_write_bytes
from intsim.golden_dir import read_golden_dir, tensor_file_name

FORMATS = ("readmemh", "c")
_C_TYPES = {"uint8": "uint8_t", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t"}
_DIM_NAMES = {3: ("H", "W", "C"), 2: ("H", "W"), 1: ("N",), 4: ("N", "H", "W", "C")}
#: Values per line in C headers.
C_PER_LINE = 16


def hex_words(a: np.ndarray, bits: int) -> list[str]:
    """Two's complement hex strings of ``a`` (flattened row-major) at ``bits`` (multiple of 4)."""
    digits = bits // 4
    flat = np.ascontiguousarray(a).reshape(-1).astype(np.int64)
    mask = (1 << bits) - 1
    return [format(int(v) & mask, f"0{digits}x") for v in flat]


def _layout(shape: tuple[int, ...]) -> str:
    names = _DIM_NAMES.get(len(shape))
    if names is None:
        return "row-major over the stored shape"
    if len(shape) == 3:
        return "HWC row-major: index = (y*W + x)*C + c"
    return f"{''.join(names)} row-major"


def _ident(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if not s or s[0].isdigit():
        s = "t_" + s
    return s


def _header_lines(meta: dict, comment: str) -> list[str]:
    return [f"{comment} {line}" for line in (
        f"intsim golden vector: input {meta['input']} ({meta['source']})",
        f"tensor {meta['tensor']}  produced by op {meta['op'] or '(graph input)'}",
        f"shape {'x'.join(map(str, meta['shape']))} ({_layout(tuple(meta['shape']))}), {meta['count']} values",
        f"storage {meta['dtype']}: {meta['bits']}-bit two's complement" if meta["dtype"] != "uint8"
        else "storage uint8: 8-bit unsigned",
        f"artifact sha256 {meta['artifact_sha256']}",
        f"golden sha256 {meta['sha256']}",
    )]


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _readmemh(a: np.ndarray, meta: dict) -> str:
    lines = _header_lines(meta, "//")
    lines.append("// one value per line; load with $readmemh(\"<file>\", mem) into "
                 f"reg [{meta['bits'] - 1}:0] mem [0:{meta['count'] - 1}]")
    lines.extend(hex_words(a, meta["bits"]))
    return "\n".join(lines) + "\n"


def _c_header(a: np.ndarray, meta: dict, ident: str) -> str:
    guard = ident.upper() + "_H_"
    macro = ident.upper()
    ctype = _C_TYPES[meta["dtype"]]
    lines = ["/*"] + [" * " + ln[2:] for ln in _header_lines(meta, "*")] + [" */",
                                                                           f"#ifndef {guard}", f"#define {guard}",
                                                                           "#include <stdint.h>", ""]
    shape = tuple(meta["shape"])
    for name, n in zip(_DIM_NAMES.get(len(shape), tuple(f"D{i}" for i in range(len(shape)))), shape):
        lines.append(f"#define {macro}_{name} {n}")
    lines.append(f"#define {macro}_LEN {meta['count']}")
    lines.append("")
    flat = np.ascontiguousarray(a).reshape(-1).astype(np.int64)
    lines.append(f"static const {ctype} {ident}[{macro}_LEN] = {{")
    suffix = "LL" if meta["dtype"] == "int64" else ""
    for i in range(0, flat.size, C_PER_LINE):
        chunk = flat[i:i + C_PER_LINE]
        vals = []
        for v in chunk:
            v = int(v)
            if meta["dtype"] == "int64" and v == -(1 << 63):
                vals.append("INT64_MIN")
            elif meta["dtype"] == "int32" and v == -(1 << 31):
                vals.append("INT32_MIN")
            else:
                vals.append(f"{v}{suffix}")
        lines.append("  " + ", ".join(vals) + ",")
    lines.append("};")
    lines.append("")
    lines.append(f"#endif /* {guard} */")
    return "\n".join(lines) + "\n"


def export_vectors(golden_dir: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "readmemh",
                   *, tensors: list[str] | None = None, inputs: list[int] | None = None,
                   progress: bool = False) -> dict:
    """Write test vectors of ``golden_dir`` into ``out_dir`` (``fmt``: 'readmemh' or 'c').

    ``tensors`` / ``inputs`` restrict the export (default: everything). Returns the index
    (also written to ``out_dir/index.json``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    golden = read_golden_dir(golden_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    ks = list(range(len(golden))) if inputs is None else list(inputs)
    for k in ks:
        if not 0 <= k < len(golden):
            raise ValueError(f"input {k} is not in {golden_dir} (it has {len(golden)} input(s))")
    if tensors is not None:
        known = {t for k in ks for t in golden.tensor_names(k)}
        missing = [t for t in tensors if t not in known]
        if missing:
            raise ValueError(f"tensor {missing[0]!r} is not in {golden_dir}")
    ext = ".hex" if fmt == "readmemh" else ".h"
    index = {"format": fmt, "golden": str(golden_dir), "artifact_sha256": golden.artifact_sha256,
             "layout": "row-major over the stored shape; H×W×C tensors: index = (y*W + x)*C + c",
             "encoding": "two's complement hex at the storage width, one value per line" if fmt == "readmemh"
             else "C const arrays with dimension macros", "files": []}
    items = [(k, t) for k in ks for t in golden.tensor_names(k) if tensors is None or t in tensors]
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        bar = tqdm(total=len(items), desc="export-vectors", unit="tensor", disable=None, file=sys.stderr)
    for n, (k, t) in enumerate(items):
        e = golden.entry(k, t)
        a = golden.tensor(k, t)
        sub = out / f"in{k}"
        sub.mkdir(parents=True, exist_ok=True)
        pos = golden.tensor_names(k).index(t)
        stem = f"{pos:03d}_{tensor_file_name(t)}"
        bits = np.dtype(e.dtype).itemsize * 8
        meta = {"input": k, "source": golden.inputs[k].source, "tensor": t, "op": e.op, "shape": list(e.shape),
                "dtype": e.dtype, "bits": bits, "count": int(a.size), "sha256": e.sha256,
                "artifact_sha256": golden.artifact_sha256}
        if fmt == "readmemh":
            text = _readmemh(a, meta)
        else:
            text = _c_header(a, meta, _ident(f"golden_in{k}_{t}"))
        path = sub / (stem + ext)
        _write_text(path, text)
        index["files"].append({**meta, "file": str(path.relative_to(out))})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "index.json", json.dumps(index, indent=1))
    return index
