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
golden array (and its C array name). Given the artifact, the per-layer test cases of
:mod:`intsim.layer_cases` are added under ``OUT/layers/`` (files: :mod:`intsim.layer_vectors`;
index: ``"layers"``; docs/rtl.md). numpy only (no torch); the golden directory is validated on read.

Manifest names (input source, tensor, op) are free text: they reach the generated code only
through :func:`comment_text` (comments: one line, ``*/`` and ``/*`` broken) and
:func:`c_identifiers` (``[A-Za-z0-9_]``, unique), so no name can add a line of C or a data word.
"""
from __future__ import annotations

import json
import logging
import os
import re

import numpy as np

from intsim.golden_dir import MANIFEST, read_golden_dir, tensor_file_name
from intsim.outputs import Staged, check_output

log = logging.getLogger(__name__)
FORMATS = ("readmemh", "c")
_C_TYPES = {"uint8": "uint8_t", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t"}
_DIM_NAMES = {3: ("H", "W", "C"), 2: ("H", "W"), 1: ("N",), 4: ("N", "H", "W", "C")}
#: Values per line in C headers.
C_PER_LINE = 16
#: Longest tensor part of a vector file name (with the position prefix well under the usual 255 bytes).
STEM_CHARS = 100
_PLAIN = re.compile(r"[ !#-)+->@-\[\]-~]*")  # printable ASCII except the quote, star, question mark, backslash
_BREAK = re.compile(r"(?<=\*)(?=/)|(?<=/)(?=\*)|(?<=\?)(?=\?)")
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")


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


def is_plain(name: str) -> bool:
    """True if ``name`` goes into generated comments as it is: non-empty printable ASCII without
    ``\\ " * ?`` and without leading or trailing spaces."""
    return bool(name) and name == name.strip() and _PLAIN.fullmatch(name) is not None


def comment_text(name: str) -> str:
    """``name`` made safe inside a C block comment and a ``//`` line comment.

    Manifest names (source, tensor, op) are free text anyone can edit, and a newline would start
    a line of code or a data word, ``*/`` would end the comment. Plain names stay as they are;
    any other is written as a JSON string — one line of ASCII (newlines, control and bidi
    characters escaped), never ending in a backslash — with ``*/``, ``/*`` and ``??`` (trigraphs)
    split by a space. index.json keeps the exact names.
    """
    if is_plain(name):
        return name
    return _BREAK.sub(" ", json.dumps(name, ensure_ascii=True).replace("\x7f", "\\u007f"))


def _ident_base(k: int, tensor: str) -> str:
    return _NOT_IDENT.sub("_", f"golden_in{k}_{tensor}")


def c_identifiers(golden) -> dict[tuple[int, str], str]:
    """C array name of every (input, tensor) of ``golden``: ``golden_in<k>_<tensor>`` with characters
    outside ``[A-Za-z0-9_]`` as ``_``, then ``_<n>`` where needed to stay unique also in upper case
    (the dimension macros and include guard are the upper-cased name). Computed over the whole
    golden, so a ``--tensor``/``--input`` selection never renames an array."""
    out: dict[tuple[int, str], str] = {}
    used: set[str] = set()
    for k in range(len(golden)):
        for t in golden.tensor_names(k):
            base = _ident_base(k, t)
            ident, n = base, 1
            while ident.upper() in used:
                ident, n = f"{base}_{n}", n + 1
            used.add(ident.upper())
            out[(k, t)] = ident
    return out


def _header_lines(meta: dict, comment: str) -> list[str]:
    return [f"{comment} {line}" for line in (
        f"intsim golden vector: input {meta['input']} ({comment_text(meta['source'])})",
        f"tensor {comment_text(meta['tensor'])}  produced by op "
        f"{comment_text(meta['op']) if meta['op'] else '(graph input)'}",
        f"shape {'x'.join(map(str, meta['shape']))} ({_layout(tuple(meta['shape']))}), {meta['count']} values",
        f"storage {meta['dtype']}: {meta['bits']}-bit two's complement" if meta["dtype"] != "uint8"
        else "storage uint8: 8-bit unsigned",
        f"artifact sha256 {meta['artifact_sha256']}",
        f"golden sha256 {meta['sha256']}",
    )]


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


def _name_notices(golden, items: list[tuple[int, str]], idents: dict[tuple[int, str], str]) -> list[str]:
    """What the user should know about the exported names (see :func:`export_vectors`)."""
    where = golden.path / MANIFEST
    names = {n for k, t in items for n in (golden.inputs[k].source, t, golden.entry(k, t).op) if n}
    escaped = sorted(n for n in names if not is_plain(n))
    out = []
    if escaped:
        out.append(f"{where}: {len(escaped)} name(s) hold characters unsafe in generated code (e.g. "
                   f"{comment_text(escaped[0])[:60]}): written escaped as JSON strings in comments; "
                   "index.json keeps the exact names")
    suffixed = [idents[(k, t)] for k, t in items if (k, t) in idents and idents[(k, t)] != _ident_base(k, t)]
    if suffixed:
        out.append(f"{where}: {len(suffixed)} tensor name(s) map to the same C identifier as another (e.g. "
                   f"{suffixed[0]}): given a suffix _<n> to stay unique")
    return out


def export_vectors(golden_dir: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "readmemh",
                   *, tensors: list[str] | None = None, inputs: list[int] | None = None,
                   progress: bool = False, notices: list[str] | None = None, artifact=None,
                   layers: list[str] | None = None, accumulators: bool = False,
                   pack_bits: int | None = None) -> dict:
    """Write test vectors of ``golden_dir`` into ``out_dir`` (``fmt``: 'readmemh' or 'c').

    ``tensors`` / ``inputs`` restrict the export (default: everything). Returns the index
    (also written to ``out_dir/index.json``). ``notices`` receives a line when manifest names
    were escaped in comments (:func:`comment_text`) or C identifiers needed a suffix to stay unique;
    without it the lines go to the ``intsim.vectors`` logger (level INFO).

    ``artifact`` (the loaded artifact the golden was made from) adds the per-layer test cases of
    :mod:`intsim.layer_cases` under ``layers/`` and in the index's ``"layers"`` (``layers``: only
    these ops; ``accumulators``: also the expected accumulators; ``pack_bits``: also stream-packed
    code files), see :mod:`intsim.layer_vectors`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    golden = read_golden_dir(golden_dir)
    out = check_output(out_dir, "folder")
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
    cases = []
    if artifact is not None:
        from intsim.layer_cases import layer_cases

        if pack_bits is not None and (pack_bits % 4 or not 8 <= pack_bits <= 64):
            raise ValueError(f"pack width must be a multiple of 4 in [8, 64], got {pack_bits}")
        if pack_bits is not None and fmt != "readmemh":
            raise ValueError("stream-packed code files (--pack-bits) are written with --format readmemh")
        cases = layer_cases(artifact, golden, ops=layers, inputs=ks, accumulators=accumulators)
    elif layers or accumulators or pack_bits:
        raise ValueError("layer cases (--layer, --accumulators, --pack-bits) need the artifact (--artifact)")
    items = [(k, t) for k in ks for t in golden.tensor_names(k) if tensors is None or t in tensors]
    idents = c_identifiers(golden)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        bar = tqdm(total=len(items), desc="export-vectors", unit="tensor", disable=None, file=sys.stderr)
    with Staged() as staged:  # all or nothing: a full disk leaves no file or folder of this export
        for k, t in items:
            e = golden.entry(k, t)
            a = golden.tensor(k, t)
            pos = golden.tensor_names(k).index(t)
            stem = f"{pos:03d}_{tensor_file_name(t)[:STEM_CHARS]}"  # the position keeps cut names distinct
            bits = np.dtype(e.dtype).itemsize * 8
            meta = {"input": k, "source": golden.inputs[k].source, "tensor": t, "op": e.op,
                    "shape": list(e.shape), "dtype": e.dtype, "bits": bits, "count": int(a.size),
                    "sha256": e.sha256, "artifact_sha256": golden.artifact_sha256}
            if fmt == "readmemh":
                text = _readmemh(a, meta)
            else:
                text = _c_header(a, meta, idents[(k, t)])
            path = out / f"in{k}" / (stem + ext)
            staged.write(path, text.encode("utf-8"))
            index["files"].append({**meta, "file": str(path.relative_to(out)),
                                   **({"c_identifier": idents[(k, t)]} if fmt == "c" else {})})
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if cases:
            index["layers"] = _write_cases(staged, out, cases, fmt, artifact, pack_bits)
        staged.write(out / "index.json", json.dumps(index, indent=1).encode("utf-8"))
        staged.commit()
    for line in _name_notices(golden, items, idents if fmt == "c" else {}):
        if notices is None:
            log.info(line)
        else:
            notices.append(line)
    return index


def _write_cases(staged, out, cases, fmt: str, artifact, pack_bits: int | None) -> list[dict]:
    """Stage the files of every layer case (:mod:`intsim.layer_vectors`); return their index entries."""
    from intsim import layer_vectors as LV

    position = {op.name: i for i, op in enumerate(artifact.ops)}
    entries = []
    for case, ident in zip(cases, LV.case_identifiers(cases)):
        stem = LV.case_stem(case, position[case.op])
        where = f"layers/in{case.input}/{stem}"
        codes_at = case.info["output_tensor"] if case.op_type == "encode" else case.info["input_tensor"]
        code_bits = artifact.tensors[codes_at].codebook.code_bits
        if pack_bits is not None and pack_bits < code_bits:
            raise ValueError(f"pack width {pack_bits} is narrower than the {code_bits}-bit codes of {codes_at!r}")
        if fmt == "readmemh":
            for name, text in LV.readmemh_files(case, pack_bits, code_bits).items():
                staged.write(out / where / name, text.encode("utf-8"))
            entry = LV.index_entry(case, where, fmt, None)
        else:
            staged.write(out / (where + ".h"), LV.c_header(case, ident).encode("utf-8"))
            entry = LV.index_entry(case, where + ".h", fmt, ident)
        if pack_bits is not None and fmt == "readmemh":
            entry["packed"] = {"bits": pack_bits, "code_bits": code_bits, "per_word": pack_bits // code_bits,
                               "files": [f"{where}/{n}.packed.hex" for n in LV.PACKABLE[case.op_type]]}
        entries.append(entry)
    return entries
