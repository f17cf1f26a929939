"""Files of the per-layer test cases (:mod:`intsim.layer_cases`) that ``intsim export-vectors --artifact``
writes (docs/rtl.md). For case ``NNN`` (position of the op in the graph) of input ``k``:

* readmemh: ``layers/in<k>/<NNN>_<op>/config.hex`` — one 64-bit word per :data:`CONFIG_FIELDS` entry,
  each line ``<hex> // <field>``; ``<array>.hex`` per array (``//`` header, one value per line, two's
  complement at the array's width, row-major over its shape); with ``pack_bits`` also
  ``<array>.packed.hex`` for code arrays (``pack_bits // code_bits`` codes per word, element 0 in
  the least significant bits, the last word zero-filled);
* c: ``layers/in<k>/<NNN>_<op>.h`` — ``#define <ID>_<FIELD>`` for every config word and
  ``static const intN_t <id>_<array>[]`` (with ``_LEN`` macros) per array.

Each case is listed in ``index.json`` under ``"layers"``: input, op, op type, tensors, the config as
named integers, and per array its file (or C name), shape, width and sha256 of its int64 values.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

from intsim.layer_cases import CONFIG_FIELDS, LayerCase

_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_C_TYPE = {8: "int8_t", 16: "int16_t", 32: "int32_t", 64: "int64_t"}
#: code arrays that may also be written stream-packed
PACKABLE = {"conv2d": ("input",), "conv_transpose2d": ("input",), "encode": ("expected",)}


def values_sha256(a: np.ndarray) -> str:
    """sha256 of the array's values as little-endian int64, row-major (shape-independent)."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<i8").tobytes()).hexdigest()


def hex_lines(a: np.ndarray, bits: int) -> list[str]:
    """Two's complement hex of ``a`` (row-major) at ``bits`` (a multiple of 4), one string per value."""
    mask, digits = (1 << bits) - 1, bits // 4
    return [format(int(v) & mask, f"0{digits}x") for v in np.asarray(a, dtype=np.int64).reshape(-1)]


def pack_codes(codes: np.ndarray, code_bits: int, word_bits: int) -> list[int]:
    """Codes (row-major) packed ``word_bits // code_bits`` per word, element 0 in the low bits."""
    per = word_bits // code_bits
    flat = [int(v) for v in np.asarray(codes, dtype=np.int64).reshape(-1)]
    words = []
    for i in range(0, len(flat), per):
        w = 0
        for j, v in enumerate(flat[i:i + per]):
            w |= (v & ((1 << code_bits) - 1)) << (j * code_bits)
        words.append(w)
    return words


def case_stem(case: LayerCase, position: int) -> str:
    return f"{position:03d}_{_SAFE.sub('_', case.op)[:100]}"


def _comment(s: str) -> str:
    return _SAFE.sub("_", s)  # op and tensor names in comments: no newline or comment end can pass


def _array_header(case: LayerCase, name: str, a: np.ndarray, bits: int) -> list[str]:
    return [f"// intsim layer case: input {case.input}, op {_comment(case.op)} ({case.op_type}), array {name}",
            f"// shape {'x'.join(map(str, a.shape)) or 'scalar'} row-major, {a.size} values, "
            f"{bits}-bit two's complement",
            f"// load with $readmemh into reg [{bits - 1}:0] mem [0:{max(a.size, 1) - 1}]"]


def readmemh_files(case: LayerCase, pack_bits: int | None, code_bits: int) -> dict[str, str]:
    """``{file name: text}`` of one case in the readmemh form."""
    files = {"config.hex": "\n".join(
        [f"// intsim layer case: input {case.input}, op {_comment(case.op)} ({case.op_type}); "
         "one 64-bit word per field"]
        + [f"{h} // {f}" for h, f in zip(hex_lines(np.array(case.config_words()), 64), CONFIG_FIELDS)]) + "\n"}
    for name, a in case.arrays.items():
        bits = case.widths[name]
        files[f"{name}.hex"] = "\n".join(_array_header(case, name, a, bits) + hex_lines(a, bits)) + "\n"
        if pack_bits and name in PACKABLE.get(case.op_type, ()):
            words = pack_codes(a, code_bits, pack_bits)
            head = [f"// intsim layer case: input {case.input}, op {_comment(case.op)}, array {name} packed: "
                    f"{pack_bits // code_bits} codes of {code_bits} bits per {pack_bits}-bit word, element 0 "
                    f"in the least significant bits, last word zero-filled; {a.size} codes"]
            files[f"{name}.packed.hex"] = "\n".join(head + [format(w, f"0{pack_bits // 4}x") for w in words]) + "\n"
    return files


def _c_literal(v: int, bits: int) -> str:
    if v == -(1 << 63):
        return "INT64_MIN"
    if bits == 32 and v == -(1 << 31):
        return "INT32_MIN"
    return f"{v}LL" if bits == 64 else str(v)


def c_header(case: LayerCase, ident: str) -> str:
    """The case as one C header; ``ident`` a C identifier unique among the exported cases."""
    macro = ident.upper()
    guard = macro + "_H_"
    lines = ["/*", f" * intsim layer case: input {case.input}, op {_comment(case.op)} ({case.op_type})",
             " * arrays row-major over their shapes; see docs/rtl.md", " */",
             f"#ifndef {guard}", f"#define {guard}", "#include <stdint.h>", ""]
    for f, v in zip(CONFIG_FIELDS, case.config_words()):
        lines.append(f"#define {macro}_{f.upper()} ({_c_literal(v, 64)})")
    for name, a in case.arrays.items():
        bits = case.widths[name]
        flat = [int(v) for v in np.asarray(a, dtype=np.int64).reshape(-1)]
        lines += ["", f"#define {macro}_{name.upper()}_LEN {len(flat)}",
                  f"static const {_C_TYPE[bits]} {ident}_{name}[{max(len(flat), 1)}] = {{"]
        for i in range(0, max(len(flat), 1), 16):
            chunk = flat[i:i + 16] or [0]  # an empty array still needs one initializer
            lines.append("  " + ", ".join(_c_literal(v, bits) for v in chunk) + ",")
        lines.append("};")
    lines += ["", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def case_identifiers(cases: list[LayerCase]) -> list[str]:
    """C identifier prefix per case, ``case_in<k>_<op>`` made unique (also in upper case)."""
    used: set[str] = set()
    out = []
    for c in cases:
        base = _NOT_IDENT.sub("_", f"case_in{c.input}_{c.op}")
        ident, n = base, 1
        while ident.upper() in used:
            ident, n = f"{base}_{n}", n + 1
        used.add(ident.upper())
        out.append(ident)
    return out


def index_entry(case: LayerCase, where: str, fmt: str, ident: str | None) -> dict:
    arrays = {}
    for name, a in case.arrays.items():
        arrays[name] = {"shape": list(a.shape), "bits": case.widths[name], "count": int(a.size),
                        "sha256": values_sha256(a),
                        **({"file": f"{where}/{name}.hex"} if fmt == "readmemh" else {"c_name": f"{ident}_{name}"})}
    return {"input": case.input, "op": case.op, "op_type": case.op_type, **case.info,
            "location": where + ("/" if fmt == "readmemh" else ""), "config": dict(zip(CONFIG_FIELDS,
                                                                                        case.config_words())),
            "arrays": arrays}


def parse_hex(text: str, bits: int, signed: bool = True) -> np.ndarray:
    """Values of a ``$readmemh`` file (``//`` comments and blank lines skipped), sign-extended from
    ``bits`` unless ``signed`` is false (uint8 images), as int64 (the inverse of :func:`hex_lines`).
    Raises ``ValueError`` naming the line of a bad word."""
    vals = []
    half = (1 << (bits - 1)) if signed else 1 << 64
    for ln, line in enumerate(text.splitlines(), 1):
        word = line.split("//", 1)[0].strip()
        if not word:
            continue
        try:
            v = int(word, 16)
        except ValueError:
            raise ValueError(f"line {ln}: {word[:20]!r} is not a hex word") from None
        if v >= (1 << bits):
            raise ValueError(f"line {ln}: {word[:20]!r} does not fit {bits} bits")
        vals.append(v - (1 << bits) if v >= half else v)
    return np.array(vals, dtype=np.int64)
