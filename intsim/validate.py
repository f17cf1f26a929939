"""Strict parsing and semantic validation of an artifact (docs/artifact.md, "Loader checks").

:func:`parse_graph` turns ``graph.json`` (already JSON-decoded) plus the archive's
arrays into :class:`~intsim.artifact.Artifact` dataclasses, refusing anything
that is not exactly the documented schema (required keys, JSON types — a bool
is never an int, a float is never an int —, unknown keys, unknown ops, missing
attributes or array roles, undeclared arrays).

:func:`validate_artifact` then checks the semantics, in this order, and raises
:class:`~intsim.artifact.ArtifactError` on the first defect with a message
prefixed by ``where`` that names the op / tensor / array and the problem:

1. numerics (§2, §4, §5.3, §8),
2. arrays (allowed dtypes, safe names),
3. tensors and codebooks (§1.2–§1.4, §3),
4. op schema (known op, arity, attributes, array roles),
5. graph connectivity (inputs, single producers, topological order, cycles, outputs),
6. per op: tensor kinds, channel counts, array dtypes/shapes, fracs, shifts in
   [0, 62], multipliers within ``mult_bits`` (§2.1),
7. spatial 1×1-ness where an op needs it (``mul``'s gate, §6.14),
8. the exactness envelope (§9, via :mod:`intsim.bounds`).

Both functions are also used on in-memory artifacts (``save_artifact`` and the
test factory), so every check works on the dataclasses, not on JSON only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from intsim import bounds
from intsim.artifact import (
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
)

ROUNDINGS = ("half_up", "half_away", "half_even", "floor")  # §2
OVERFLOWS = ("error", "saturate", "wrap")  # §4
ACC_BITS = (8, 48)  # §8
STREAM_BITS = (8, 40)  # §8
MULT_BITS = (8, 31)  # §2.1
GRID_BITS = (6, 16)  # §8
MAX_SHIFT = 62  # §2
MAX_SEGMENTS = 3  # §3.1
# Not in the spec: a sanity cap so that per-code tables (engine, golden, inspect)
# cannot be made to allocate unbounded memory. 2^24 codes is far beyond any
# quantizer (a 16-bit uniform quantizer has 2^16).
MAX_CODES = 1 << 24
# Not in the spec: a sanity bound on fracs (2^±128 is exact in float64 for golden);
# every shift derived from fracs is checked against [0, 62] separately.
FRAC_RANGE = (-128, 128)
IMAGE_CHANNELS = (1, 3)  # §1.4
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

TOP_REQUIRED = ("format", "version", "numerics", "inputs", "outputs", "tensors", "ops", "arrays")
TOP_OPTIONAL = ("model", "metadata")
NUMERICS_KEYS = ("rounding", "realization", "overflow", "acc_bits", "stream_bits", "mult_bits")
CODEBOOK_REQUIRED = ("unit_m", "unit_e", "segments", "thresholds", "encoder")
CODEBOOK_OPTIONAL = ("grid_bits", "allocation", "bits")
SEGMENT_KEYS = ("origin", "step", "qmin", "qmax")
ENCODER_KEYS = ("center", "mult", "shift")
OP_REQUIRED = ("name", "op", "inputs", "outputs")
OP_OPTIONAL = ("attrs", "arrays")

# Attribute types: "int" any int64; "shift" int in [0, 62]; "pos" int ≥ 1;
# "pair+" two ints ≥ 1; "pair0" two ints ≥ 0; "sizes" non-empty list of ints ≥ 1.
_CONV_ATTRS = {"kernel": "pair+", "stride": "pair+", "padding": "pair0", "dilation": "pair+",
               "groups": "pos", "w_exp": "int"}
OP_ATTRS: dict[str, dict[str, str]] = {
    "image_in": {"exp": "int"},
    "image_out": {"exp": "int"},
    "encode": {},
    "conv2d": _CONV_ATTRS,
    "conv_transpose2d": {"kernel": "pair+", "stride": "pair+", "padding": "pair0",
                         "output_padding": "pair0", "w_exp": "int"},
    "add": {},
    "concat": {},
    "split": {"sizes": "sizes"},
    "relu": {},
    "clamp": {"lo": "int", "hi": "int"},
    "pad": {"padding": "pair0", "mode": "pad_mode"},
    "leaky_relu": {"mult": "int", "shift": "shift"},
    "prelu": {"shift": "shift"},
    "pixel_shuffle": {"factor": "pos"},
    "upsample_nearest": {"factor": "pos"},
    "upsample_bilinear": {"factor": "pos", "mult": "int", "shift": "shift"},
    "upsample_bicubic": {"factor": "pos", "tap_bits": "pos"},
    "mean_pool": {"shift": "shift"},
    "std_pool": {"shift": "shift", "pre_shift": "shift"},
    "sigmoid": {"lut_exp": "int", "imin": "int", "imax": "int"},
    "lut": {"fn": "lut_fn", "lut_exp": "int", "imin": "int", "imax": "int"},
    "mul": {},
}
# Optional attributes: conv_transpose2d is groups = 1, dilation 1 (§5.5); an exporter
# may state that explicitly, any other value is refused.
OP_OPTIONAL_ATTRS: dict[str, dict[str, str]] = {
    "conv_transpose2d": {"groups": "pos", "dilation": "pair+"},
}
OP_ROLES: dict[str, tuple[str, ...]] = {
    "image_in": ("mult", "offset"),
    "image_out": ("mult", "offset"),
    "conv2d": ("weight", "w_mant", "bias"),
    "conv_transpose2d": ("weight", "w_mant", "bias"),
    "prelu": ("mult",),
    "sigmoid": ("lut",),
    "lut": ("lut",),
}
ROLE_DTYPES = {"mult": ("int64",), "offset": ("int64",), "weight": ("int8", "int16"),
               "w_mant": ("int64",), "bias": ("int64",), "lut": ("int32",)}
KNOWN_OPS = tuple(OP_ATTRS)

# (input kinds, output kinds); a trailing "*" means "one or more of this kind".
OP_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "image_in": (("image",), ("stream",)),
    "image_out": (("stream",), ("image",)),
    "encode": (("stream",), ("codes",)),
    "conv2d": (("codes",), ("stream",)),
    "conv_transpose2d": (("codes",), ("stream",)),
    "add": (("stream", "stream"), ("stream",)),
    "concat": (("stream*",), ("stream",)),
    "split": (("stream",), ("stream*",)),
    "mul": (("stream", "stream"), ("stream",)),
    "pad": (("codes",), ("codes",)),
}
for _k in ("relu", "clamp", "leaky_relu", "prelu", "pixel_shuffle", "upsample_nearest", "upsample_bilinear",
           "upsample_bicubic",
           "mean_pool", "std_pool", "sigmoid", "lut"):
    OP_KINDS[_k] = (("stream",), ("stream",))


# --------------------------------------------------------------------------
# primitive checks (shared by parse and validate)


def _tn(v: Any) -> str:
    """JSON-ish type name for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _is_int(v: Any) -> bool:
    # bool is a subclass of int in Python but never a valid integer field; numpy
    # scalars are refused too (they would not serialise to JSON).
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v: Any, what: str, lo: int | None = None, hi: int | None = None) -> int:
    if not _is_int(v):
        raise ArtifactError(f"{what} must be an integer, got {_tn(v)} {v!r}")
    lo = INT64_MIN if lo is None else lo
    hi = INT64_MAX if hi is None else hi
    if not lo <= v <= hi:
        raise ArtifactError(f"{what} = {v} is out of range [{lo}, {hi}]")
    return v


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise ArtifactError(f"{what} must be a string, got {_tn(v)} {v!r}")
    return v


def _obj(v: Any, what: str) -> dict:
    if not isinstance(v, dict):
        raise ArtifactError(f"{what} must be a JSON object, got {_tn(v)}")
    for k in v:
        if not isinstance(k, str):
            raise ArtifactError(f"{what} has a non-string key {k!r}")
    return v


def _list(v: Any, what: str) -> list:
    if not isinstance(v, (list, tuple)):
        raise ArtifactError(f"{what} must be a list, got {_tn(v)}")
    return list(v)


def _keys(d: dict, required, optional, what: str) -> None:
    missing = [k for k in required if k not in d]
    if missing:
        raise ArtifactError(f"{what}: missing required key {missing[0]!r}")
    unknown = sorted(k for k in d if k not in required and k not in optional)
    if unknown:
        raise ArtifactError(f"{what}: unknown key {unknown[0]!r} (allowed: {', '.join(list(required) + list(optional))})")


def _str_list(v: Any, what: str) -> tuple[str, ...]:
    return tuple(_str(x, f"{what}[{i}]") for i, x in enumerate(_list(v, what)))


def _check_attr(v: Any, typ: str, what: str) -> None:
    if typ == "int":
        _int(v, what)
    elif typ == "shift":
        _int(v, what, 0, MAX_SHIFT)
    elif typ == "pos":
        _int(v, what, 1)
    elif typ in ("pair+", "pair0"):
        items = _list(v, what)
        if len(items) != 2:
            raise ArtifactError(f"{what} must be a list of 2 integers, got {len(items)} items")
        for i, x in enumerate(items):
            _int(x, f"{what}[{i}]", 1 if typ == "pair+" else 0)
    elif typ == "pad_mode":
        if v not in ("reflect", "replicate"):
            raise ArtifactError(f"{what} must be 'reflect' or 'replicate', got {v!r} (§5.8)")
    elif typ == "lut_fn":
        from intsim.lut import LUT_FUNCTIONS

        if not isinstance(v, str) or v not in LUT_FUNCTIONS:
            raise ArtifactError(f"{what} must be one of {', '.join(map(repr, LUT_FUNCTIONS))}, got {v!r} (§6.17)")
    elif typ == "sizes":
        items = _list(v, what)
        if not items:
            raise ArtifactError(f"{what} must be a non-empty list")
        for i, x in enumerate(items):
            _int(x, f"{what}[{i}]", 1)
    else:  # pragma: no cover - table typo
        raise AssertionError(typ)


def _check_op_schema(art_arrays: dict, op: OpSpec, where: str) -> None:
    """Known op, attribute names/types, array roles present and naming existing arrays."""
    lab = f"{where}: op {op.name!r} ({op.op})"
    if op.op not in OP_ATTRS:
        raise ArtifactError(f"{lab}: unknown op {op.op!r} (known ops: {', '.join(KNOWN_OPS)})")
    attrs = _obj(op.attrs, f"{lab}: attrs")
    req, opt = OP_ATTRS[op.op], OP_OPTIONAL_ATTRS.get(op.op, {})
    for k in req:
        if k not in attrs:
            raise ArtifactError(f"{lab}: missing required attribute {k!r}")
    for k in attrs:
        if k not in req and k not in opt:
            allowed = ", ".join(list(req) + list(opt)) or "none"
            raise ArtifactError(f"{lab}: unknown attribute {k!r} (allowed: {allowed})")
    for k, v in attrs.items():
        _check_attr(v, req.get(k) or opt[k], f"{lab}: attribute {k!r}")
    roles = _obj(op.arrays, f"{lab}: arrays")
    need = OP_ROLES.get(op.op, ())
    for r in need:
        if r not in roles:
            raise ArtifactError(f"{lab}: missing array role {r!r}")
    for r, name in roles.items():
        if r not in need:
            raise ArtifactError(f"{lab}: unknown array role {r!r} (allowed: {', '.join(need) or 'none'})")
        _str(name, f"{lab}: array role {r!r}")
        if name not in art_arrays:
            raise ArtifactError(f"{lab}: array role {r!r} names array {name!r}, which does not exist")


# --------------------------------------------------------------------------
# parse_graph: JSON -> dataclasses


def _parse_numerics(d: Any, where: str) -> Numerics:
    what = f"{where}: numerics"
    _obj(d, what)
    _keys(d, NUMERICS_KEYS, (), what)
    for k in ("rounding", "realization", "overflow"):
        _str(d[k], f"{what}.{k}")
    for k in ("acc_bits", "stream_bits", "mult_bits"):
        _int(d[k], f"{what}.{k}")
    return Numerics(**{k: d[k] for k in NUMERICS_KEYS})


def _parse_codebook(d: Any, what: str) -> Codebook:
    _obj(d, what)
    _keys(d, CODEBOOK_REQUIRED, CODEBOOK_OPTIONAL, what)
    segs = []
    for i, s in enumerate(_list(d["segments"], f"{what}.segments")):
        sw = f"{what}.segments[{i}]"
        _obj(s, sw)
        _keys(s, SEGMENT_KEYS, (), sw)
        segs.append(Segment(**{k: _int(s[k], f"{sw}.{k}") for k in SEGMENT_KEYS}))
    encs = []
    for i, e in enumerate(_list(d["encoder"], f"{what}.encoder")):
        ew = f"{what}.encoder[{i}]"
        _obj(e, ew)
        _keys(e, ENCODER_KEYS, (), ew)
        encs.append(EncoderStage(**{k: _int(e[k], f"{ew}.{k}") for k in ENCODER_KEYS}))
    thr = tuple(_int(x, f"{what}.thresholds[{i}]") for i, x in enumerate(_list(d["thresholds"], f"{what}.thresholds")))
    grid_bits = d.get("grid_bits")
    if grid_bits is not None:
        _int(grid_bits, f"{what}.grid_bits")
    kw = {}
    if "allocation" in d:
        kw["allocation"] = _str(d["allocation"], f"{what}.allocation")
    if "bits" in d:
        kw["bits"] = _int(d["bits"], f"{what}.bits")
    return Codebook(unit_m=_int(d["unit_m"], f"{what}.unit_m"), unit_e=_int(d["unit_e"], f"{what}.unit_e"),
                    segments=tuple(segs), thresholds=thr, encoder=tuple(encs), grid_bits=grid_bits, **kw)


def _parse_tensor(name: str, d: Any, where: str) -> TensorSpec:
    what = f"{where}: tensor {name!r}"
    _obj(d, what)
    if "kind" not in d:
        raise ArtifactError(f"{what}: missing required key 'kind'")
    kind = _str(d["kind"], f"{what}.kind")
    if kind == "image":
        _keys(d, ("kind", "channels"), (), what)
        return TensorSpec(name, kind, _int(d["channels"], f"{what}.channels"))
    if kind == "stream":
        _keys(d, ("kind", "channels", "frac"), (), what)
        return TensorSpec(name, kind, _int(d["channels"], f"{what}.channels"), frac=_int(d["frac"], f"{what}.frac"))
    if kind == "codes":
        _keys(d, ("kind", "channels", "codebook"), (), what)
        return TensorSpec(name, kind, _int(d["channels"], f"{what}.channels"),
                          codebook=_parse_codebook(d["codebook"], f"{what}.codebook"))
    raise ArtifactError(f"{what}: unknown kind {kind!r} (expected image, stream or codes)")


def _parse_op(i: int, d: Any, where: str) -> OpSpec:
    what = f"{where}: ops[{i}]"
    _obj(d, what)
    _keys(d, OP_REQUIRED, OP_OPTIONAL, what)
    name = _str(d["name"], f"{what}.name")
    kind = _str(d["op"], f"{what}.op")
    lab = f"{where}: op {name!r} ({kind})"
    attrs = dict(_obj(d.get("attrs", {}), f"{lab}: attrs"))
    roles = dict(_obj(d.get("arrays", {}), f"{lab}: arrays"))
    return OpSpec(name=name, op=kind, inputs=_str_list(d["inputs"], f"{lab}: inputs"),
                  outputs=_str_list(d["outputs"], f"{lab}: outputs"), attrs=attrs, arrays=roles)


#: Caps on a graph's size, checked before anything else is parsed or validated: a crafted graph.json
#: with a million ops would otherwise cost minutes and gigabytes before any check could refuse it.
#: The largest real networks here have about 200 ops (IMDN: 182 ops, 201 tensors, 148 arrays).
MAX_OPS = 10_000
MAX_TENSORS = 20_000
MAX_ARRAYS = 40_000


def check_graph_counts(graph: Any, where: str) -> None:
    """Refuse a decoded graph.json whose op, tensor or array count exceeds :data:`MAX_OPS`,
    :data:`MAX_TENSORS` or :data:`MAX_ARRAYS` (O(1): only the container lengths are read)."""
    if not isinstance(graph, dict):
        return
    for key, cap in (("ops", MAX_OPS), ("tensors", MAX_TENSORS), ("arrays", MAX_ARRAYS)):
        v = graph.get(key)
        if isinstance(v, (list, dict)) and len(v) > cap:
            raise ArtifactError(f"{where}: graph.json lists {len(v)} {key}, more than the {cap} accepted "
                                f"(the largest networks here have a few hundred)")


def parse_graph(graph: dict, arrays: dict[str, np.ndarray], where: str) -> Artifact:
    """Strictly convert decoded ``graph.json`` and its arrays into an :class:`Artifact`.

    Checks the JSON schema only (keys, types, known ops, attributes, roles, array
    declarations against ``arrays``: same names, dtypes and shapes; hashes are the
    archive layer's job). Semantics are :func:`validate_artifact`'s. Raises
    :class:`ArtifactError` prefixed with ``where``.
    """
    _obj(graph, f"{where}: graph.json")
    check_graph_counts(graph, where)
    _keys(graph, TOP_REQUIRED, TOP_OPTIONAL, f"{where}: graph.json")
    if graph["format"] != FORMAT:
        raise ArtifactError(f"{where}: format is {graph['format']!r}, expected {FORMAT!r}")
    if not _is_int(graph["version"]) or graph["version"] != VERSION:
        raise ArtifactError(f"{where}: unsupported schema version {graph['version']!r} (this intsim reads version {VERSION})")
    numerics = _parse_numerics(graph["numerics"], where)
    inputs = _str_list(graph["inputs"], f"{where}: inputs")
    outputs = _str_list(graph["outputs"], f"{where}: outputs")
    tensors_d = _obj(graph["tensors"], f"{where}: tensors")
    tensors = {n: _parse_tensor(n, t, where) for n, t in tensors_d.items()}
    ops = [_parse_op(i, o, where) for i, o in enumerate(_list(graph["ops"], f"{where}: ops"))]
    model = _obj(graph.get("model", {}), f"{where}: model")
    metadata = _obj(graph.get("metadata", {}), f"{where}: metadata")

    decl = _obj(graph["arrays"], f"{where}: arrays")
    if not isinstance(arrays, dict):
        raise ArtifactError(f"{where}: arrays must be a dict of name -> numpy array")
    for name in decl:
        if name not in arrays:
            raise ArtifactError(f"{where}: array {name!r} is declared in graph.json but missing from the archive")
    for name in arrays:
        if name not in decl:
            raise ArtifactError(f"{where}: array {name!r} is in the archive but not declared in graph.json")
    for name, dd in decl.items():
        what = f"{where}: array {name!r}"
        _obj(dd, what)
        _keys(dd, ("dtype", "shape", "sha256"), (), what)
        a = arrays[name]
        if not isinstance(a, np.ndarray):
            raise ArtifactError(f"{what}: is a {type(a).__name__}, not a numpy array")
        if _str(dd["dtype"], f"{what}.dtype") != str(a.dtype):
            raise ArtifactError(f"{what}: dtype is {a.dtype}, graph.json declares {dd['dtype']}")
        shape = [_int(x, f"{what}.shape[{i}]", 0) for i, x in enumerate(_list(dd["shape"], f"{what}.shape"))]
        if shape != list(a.shape):
            raise ArtifactError(f"{what}: shape is {list(a.shape)}, graph.json declares {shape}")
        _str(dd["sha256"], f"{what}.sha256")

    art = Artifact(model=dict(model), numerics=numerics, inputs=inputs, outputs=outputs, tensors=tensors,
                   ops=ops, arrays=dict(arrays), metadata=dict(metadata))
    for op in ops:
        _check_op_schema(art.arrays, op, where)
    return art


# --------------------------------------------------------------------------
# validate_artifact: semantics


class _V:
    """Validation context: the artifact, the message prefix and derived facts."""

    def __init__(self, art: Artifact, where: str):
        self.art = art
        self.where = where
        self.nx = art.numerics
        self.mult_max = 0  # set by _check_numerics once mult_bits is known to be valid

    def fail(self, msg: str):
        raise ArtifactError(f"{self.where}: {msg}")

    def tin(self, op: OpSpec, i: int = 0) -> TensorSpec:
        """The spec of the op's ``i``-th input tensor."""
        return self.art.tensors[op.inputs[i]]


def _check_numerics(v: _V) -> None:
    n = v.nx
    if not isinstance(n, Numerics):
        v.fail(f"numerics must be a Numerics, got {type(n).__name__}")
    w = f"{v.where}: numerics"
    if _str(n.rounding, f"{w}.rounding") not in ROUNDINGS:
        v.fail(f"numerics.rounding {n.rounding!r} is not one of {', '.join(ROUNDINGS)} (§2)")
    if _str(n.realization, f"{w}.realization") not in REALIZATIONS:
        v.fail(f"numerics.realization {n.realization!r} is not one of {', '.join(REALIZATIONS)} (§5.3)")
    if _str(n.overflow, f"{w}.overflow") not in OVERFLOWS:
        v.fail(f"numerics.overflow {n.overflow!r} is not one of {', '.join(OVERFLOWS)} (§4)")
    _int(n.acc_bits, f"{w}.acc_bits (§8)", *ACC_BITS)
    _int(n.stream_bits, f"{w}.stream_bits (§8)", *STREAM_BITS)
    _int(n.mult_bits, f"{w}.mult_bits (§2.1)", *MULT_BITS)
    v.mult_max = (1 << n.mult_bits) - 1


def _array_name_ok(name: str) -> bool:
    # The name becomes the archive member arrays/<name>.npy: same rules as members.
    return bool(name) and not (name.startswith("/") or "\\" in name or ".." in name.split("/"))


def _check_arrays(v: _V) -> None:
    if not isinstance(v.art.arrays, dict):
        v.fail("arrays must be a dict of name -> numpy array")
    for name, a in v.art.arrays.items():
        if not isinstance(name, str) or not _array_name_ok(name):
            v.fail(f"array name {name!r} is not a safe member name (empty, absolute, '..' or backslash)")
        if not isinstance(a, np.ndarray):
            v.fail(f"array {name!r} is a {type(a).__name__}, not a numpy array")
        if str(a.dtype) not in ALLOWED_DTYPES:
            v.fail(f"array {name!r}: dtype {a.dtype} not allowed (allowed: {', '.join(ALLOWED_DTYPES)})")


def _check_codebook(v: _V, cb: Codebook, tname: str) -> None:
    """§3: segments, flat codes, thresholds, encoder, grid fit."""
    w = f"{v.where}: tensor {tname!r} codebook"
    if not isinstance(cb, Codebook):
        v.fail(f"tensor {tname!r}: codes tensor needs a Codebook, got {type(cb).__name__}")
    _int(cb.unit_m, f"{w}.unit_m (u = unit_m·2^-unit_e, §3.1)", 1, v.mult_max)
    _int(cb.unit_e, f"{w}.unit_e")
    segs = _list(cb.segments, f"{w}.segments")
    if not 1 <= len(segs) <= MAX_SEGMENTS:
        v.fail(f"tensor {tname!r} codebook: {len(segs)} segments, must be 1 to {MAX_SEGMENTS} (§3.1)")
    ncodes = 0
    prev_hi = None
    for i, s in enumerate(segs):
        sw = f"{w}.segments[{i}]"
        if not isinstance(s, Segment):
            v.fail(f"tensor {tname!r} codebook segment {i} must be a Segment, got {type(s).__name__}")
        for k in SEGMENT_KEYS:
            _int(getattr(s, k), f"{sw}.{k}")
        if s.step < 1:
            v.fail(f"tensor {tname!r} codebook segment {i}: step {s.step} must be ≥ 1 (§3.1)")
        if s.qmin > s.qmax:
            v.fail(f"tensor {tname!r} codebook segment {i}: empty index range qmin {s.qmin} > qmax {s.qmax} (§3.1)")
        for q in (s.qmin, s.qmax):
            if abs(s.step * q) > INT64_MAX or abs(s.origin + s.step * q) > INT64_MAX:
                v.fail(f"tensor {tname!r} codebook segment {i}: grid value G at q = {q} does not fit int64")
        lo, hi = bounds.segment_grid_extremes(s)
        if prev_hi is not None and not prev_hi < lo:
            v.fail(f"tensor {tname!r} codebook segments {i - 1} and {i} are not strictly increasing: "
                   f"G({i - 1}, qmax) = {prev_hi} ≥ G({i}, qmin) = {lo} (§3.1)")
        prev_hi = hi
        ncodes += s.qmax - s.qmin + 1
    if ncodes > MAX_CODES:
        v.fail(f"tensor {tname!r} codebook: {ncodes} codes exceed the limit of {MAX_CODES}")
    thr = _list(cb.thresholds, f"{w}.thresholds")
    if len(thr) != len(segs) - 1:
        v.fail(f"tensor {tname!r} codebook: {len(thr)} thresholds for {len(segs)} segments, need {len(segs) - 1} (§3.4)")
    for i, t in enumerate(thr):
        _int(t, f"{w}.thresholds[{i}]")
        if i and not thr[i - 1] < t:
            v.fail(f"tensor {tname!r} codebook: thresholds not strictly ascending ({thr[i - 1]} then {t}) (§3.4)")
    enc = _list(cb.encoder, f"{w}.encoder")
    if len(enc) != len(segs):
        v.fail(f"tensor {tname!r} codebook: {len(enc)} encoder stages for {len(segs)} segments (§3.4)")
    for i, e in enumerate(enc):
        ew = f"{w}.encoder[{i}]"
        if not isinstance(e, EncoderStage):
            v.fail(f"tensor {tname!r} codebook encoder stage {i} must be an EncoderStage, got {type(e).__name__}")
        _int(e.center, f"{ew}.center")
        _int(e.mult, f"{ew}.mult (E_s ≥ 1 within mult_bits = {v.nx.mult_bits}, §3.4/§2.1)", 1, v.mult_max)
        _int(e.shift, f"{ew}.shift (k_s, §3.4)", 0, MAX_SHIFT)
    gb = cb.grid_bits
    if gb is not None:
        _int(gb, f"{w}.grid_bits (§8)", *GRID_BITS)
    _str(cb.allocation, f"{w}.allocation")  # descriptive (§3.3), type only
    _int(cb.bits, f"{w}.bits", 1)
    width = declared_code_bits(cb.allocation, cb.bits)
    if ncodes > 1 << width:
        v.fail(f"tensor {tname!r} codebook: {ncodes} codes need {(ncodes - 1).bit_length()} bits, more than the "
               f"{width} its declaration allows (bits = {cb.bits}, allocation {cb.allocation!r}, §3.3)")
    if v.nx.realization == "grid":
        if gb is None:
            v.fail(f"tensor {tname!r} codebook: grid_bits is required when numerics.realization is 'grid' (§5.3)")
        glo, ghi = -(1 << (gb - 1)), (1 << (gb - 1)) - 1
        for i, s in enumerate(segs):
            for q, g in zip((s.qmin, s.qmax), bounds.segment_grid_extremes(s)):
                if not glo <= g <= ghi:
                    v.fail(f"tensor {tname!r} codebook segment {i}: grid value G({i}, {q}) = {g} does not fit "
                           f"grid_bits = {gb} (range [{glo}, {ghi}], §5.3)")


def declared_code_bits(allocation: str, bits: int) -> int:
    """Storage width (bits) a codebook declares (§3.3): the released two-region code spends one
    more bit than the nominal ``bits`` (dense b bits plus a region flag); every other allocation,
    uniform included, fits in ``bits``."""
    return bits + 1 if allocation == "released" else bits


def _check_tensors(v: _V) -> None:
    art = v.art
    if not isinstance(art.tensors, dict):
        v.fail("tensors must be a dict")
    for name, t in art.tensors.items():
        if not isinstance(name, str) or not name:
            v.fail(f"tensor name {name!r} must be a non-empty string")
        if not isinstance(t, TensorSpec):
            v.fail(f"tensor {name!r} must be a TensorSpec, got {type(t).__name__}")
        if t.name != name:
            v.fail(f"tensor {name!r}: its spec is named {t.name!r}")
        w = f"{v.where}: tensor {name!r}"
        _int(t.channels, f"{w}.channels", 1)
        if t.kind == "image":
            if t.channels not in IMAGE_CHANNELS:
                v.fail(f"tensor {name!r}: image with {t.channels} channels, must be 3 (RGB) or 1 (Y) (§1.4)")
        elif t.kind == "stream":
            _int(t.frac, f"{w}.frac (§1.2)", *FRAC_RANGE)
        elif t.kind == "codes":
            _check_codebook(v, t.codebook, name)
        else:
            v.fail(f"tensor {name!r}: unknown kind {t.kind!r} (expected image, stream or codes)")
        if t.kind != "stream" and t.frac is not None:
            v.fail(f"tensor {name!r}: only streams have a frac ({t.kind} has frac {t.frac!r})")
        if t.kind != "codes" and t.codebook is not None:
            v.fail(f"tensor {name!r}: only codes tensors have a codebook")


def _check_ops_schema(v: _V) -> None:
    art = v.art
    if not isinstance(art.ops, (list, tuple)):
        v.fail("ops must be a list")
    seen: set[str] = set()
    for i, op in enumerate(art.ops):
        if not isinstance(op, OpSpec):
            v.fail(f"ops[{i}] must be an OpSpec, got {type(op).__name__}")
        _str(op.name, f"{v.where}: ops[{i}].name")
        _str(op.op, f"{v.where}: ops[{i}].op")
        if not op.name:
            v.fail(f"ops[{i}] has an empty name")
        if op.name in seen:
            v.fail(f"op name {op.name!r} is used twice")
        seen.add(op.name)
        _check_op_schema(art.arrays, op, v.where)
        lab = f"op {op.name!r} ({op.op})"
        ins = _str_list(op.inputs, f"{v.where}: {lab}: inputs")
        outs = _str_list(op.outputs, f"{v.where}: {lab}: outputs")
        kin, kout = OP_KINDS[op.op]
        for side, names, kinds in (("inputs", ins, kin), ("outputs", outs, kout)):
            if kinds[-1].endswith("*"):
                if len(names) < len(kinds):
                    v.fail(f"{lab}: needs at least {len(kinds)} {side}, has {len(names)}")
            elif len(names) != len(kinds):
                v.fail(f"{lab}: needs exactly {len(kinds)} {side}, has {len(names)}")
        if len(set(outs)) != len(outs):
            v.fail(f"{lab}: lists an output tensor twice")


def _find_cycle(art: Artifact) -> list[str] | None:
    """A cycle of op names (first == last) in the producer/consumer graph, or None."""
    producer: dict[str, str] = {}
    for op in art.ops:
        for t in op.outputs:
            producer.setdefault(t, op.name)
    succ: dict[str, list[str]] = {op.name: [] for op in art.ops}
    for op in art.ops:
        for t in op.inputs:
            if t in producer:
                succ[producer[t]].append(op.name)
    state: dict[str, int] = {}
    for root in succ:
        if state.get(root):
            continue
        stack = [(root, iter(succ[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
                path.append(nxt)
    return None


def _check_connectivity(v: _V) -> None:
    art = v.art
    ins = _str_list(art.inputs, f"{v.where}: inputs")
    outs = _str_list(art.outputs, f"{v.where}: outputs")
    if not ins:
        v.fail("the graph has no inputs")
    if not outs:
        v.fail("the graph has no outputs")
    if len(set(ins)) != len(ins):
        v.fail("a graph input is listed twice")
    if len(set(outs)) != len(outs):
        v.fail("a graph output is listed twice")
    for t in ins:
        if t not in art.tensors:
            v.fail(f"graph input {t!r} is not a declared tensor")
        if art.tensors[t].kind != "image":
            v.fail(f"graph input {t!r} must be an image tensor, is {art.tensors[t].kind}")
    producer: dict[str, str] = {}
    later = {}
    for op in art.ops:
        for t in op.outputs:
            later.setdefault(t, op.name)
    available = set(ins)
    for op in art.ops:
        lab = f"op {op.name!r} ({op.op})"
        for t in op.inputs:
            if t not in art.tensors:
                v.fail(f"{lab}: input tensor {t!r} is not declared in 'tensors'")
            if t not in available:
                if t not in later:
                    v.fail(f"{lab}: input tensor {t!r} is neither a graph input nor produced by any op")
                cyc = _find_cycle(art)
                if cyc:
                    v.fail(f"{lab}: input tensor {t!r} is produced later by op {later[t]!r}; the graph has a cycle "
                           f"({' -> '.join(repr(c) for c in cyc)})")
                v.fail(f"{lab}: input tensor {t!r} is consumed before it is produced (by op {later[t]!r}): "
                       f"ops must be in topological order")
        for t in op.outputs:
            if t not in art.tensors:
                v.fail(f"{lab}: output tensor {t!r} is not declared in 'tensors'")
            if t in ins:
                v.fail(f"{lab}: output tensor {t!r} is a graph input; it may not be produced by an op")
            if t in producer:
                v.fail(f"tensor {t!r} is produced twice: by op {producer[t]!r} and by op {op.name!r}")
            producer[t] = op.name
            available.add(t)
    for t in outs:
        if t not in art.tensors:
            v.fail(f"graph output {t!r} is not a declared tensor")
        if t not in available:
            v.fail(f"graph output {t!r} is not produced by any op")
    for t in art.tensors:
        if t not in available:
            v.fail(f"tensor {t!r} is declared but is neither a graph input nor produced by any op")


# ---- per-op semantics


def _array(v: _V, op: OpSpec, role: str, shape: tuple[int, ...] | None, ndim: int | None = None) -> np.ndarray:
    a = v.art.arrays[op.arrays[role]]
    lab = f"op {op.name!r} ({op.op}): array {role!r} ({op.arrays[role]!r})"
    if str(a.dtype) not in ROLE_DTYPES[role]:
        v.fail(f"{lab}: dtype {a.dtype}, must be {' or '.join(ROLE_DTYPES[role])}")
    if ndim is not None and a.ndim != ndim:
        v.fail(f"{lab}: shape {list(a.shape)} must have {ndim} dimensions")
    if shape is not None and tuple(a.shape) != tuple(shape):
        v.fail(f"{lab}: shape {list(a.shape)}, expected {list(shape)}")
    return a


def _check_mults(v: _V, op: OpSpec, what: str, values, lo: int | None = None) -> None:
    """Stored multipliers: magnitude at most mult_bits bits (§2, §2.1)."""
    vals = [int(x) for x in np.asarray(values).reshape(-1).tolist()]
    for i, m in enumerate(vals):
        if abs(m) > v.mult_max or (lo is not None and m < lo):
            rng = f"[{lo}, {v.mult_max}]" if lo is not None else f"|M| ≤ {v.mult_max}"
            v.fail(f"op {op.name!r} ({op.op}): {what}[{i}] = {m} is outside {rng} "
                   f"(mult_bits = {v.nx.mult_bits}, §2.1)")


def _check_op(v: _V, op: OpSpec) -> None:
    art, lab = v.art, f"op {op.name!r} ({op.op})"
    kin, kout = OP_KINDS[op.op]
    for side, names, kinds in (("input", op.inputs, kin), ("output", op.outputs, kout)):
        for i, t in enumerate(names):
            want = kinds[min(i, len(kinds) - 1)].rstrip("*")
            have = art.tensors[t].kind
            if have != want:
                v.fail(f"{lab}: {side} {i} tensor {t!r} must be {want}, is {have}")
    a = op.attrs
    cin = [art.tensors[t].channels for t in op.inputs]
    cout = [art.tensors[t].channels for t in op.outputs]

    def same_channels():
        if len(set(cin + cout)) != 1:
            v.fail(f"{lab}: channel counts differ (inputs {cin}, outputs {cout}); this op keeps channels")

    kind = op.op
    if kind in ("image_in", "image_out"):
        same_channels()
        m = _array(v, op, "mult", (cin[0],))
        _array(v, op, "offset", (cin[0],))
        _check_mults(v, op, "mult", m)
        if kind == "image_out" and v.tin(op).frac < 0:
            # I = X·m_c + o_c·2^f_i is an integer only for f_i ≥ 0 (§6.2).
            v.fail(f"{lab}: input frac {v.tin(op).frac} must be ≥ 0 (o_c·2^f_i must be an integer, §6.2)")
    elif kind == "encode":
        same_channels()
    elif kind == "pad":
        same_channels()
        if art.tensors[op.inputs[0]].codebook != art.tensors[op.outputs[0]].codebook:
            v.fail(f"{lab}: output tensor {op.outputs[0]!r} must have the input's codebook (a pad copies codes, §5.8)")
    elif kind in ("conv2d", "conv_transpose2d"):
        w = _array(v, op, "weight", None, ndim=4)
        co, kh, kw, ci_g = (int(x) for x in w.shape)
        if [kh, kw] != list(a["kernel"]):
            v.fail(f"{lab}: attribute kernel {list(a['kernel'])} does not match weight shape {list(w.shape)} "
                   f"([Co, kh, kw, Ci/g])")
        if co != cout[0]:
            v.fail(f"{lab}: weight has {co} output channels (shape {list(w.shape)}), output tensor "
                   f"{op.outputs[0]!r} has {cout[0]}")
        if kind == "conv2d":
            g = a["groups"]
            if co % g:
                v.fail(f"{lab}: output channels {co} are not divisible by groups = {g} (§5.1)")
            if cin[0] != g * ci_g:
                v.fail(f"{lab}: input tensor {op.inputs[0]!r} has {cin[0]} channels, but groups·weight.shape[3] "
                       f"= {g}·{ci_g} = {g * ci_g} (§5.1)")
        else:
            if a.get("groups", 1) != 1:
                v.fail(f"{lab}: groups must be 1 (§5.5), got {a['groups']}")
            if list(a.get("dilation", [1, 1])) != [1, 1]:
                v.fail(f"{lab}: dilation must be [1, 1] (§5.5), got {list(a['dilation'])}")
            if cin[0] != ci_g:
                v.fail(f"{lab}: input tensor {op.inputs[0]!r} has {cin[0]} channels, weight.shape[3] = {ci_g} (§5.5)")
            for d, (opad, s) in enumerate(zip(a["output_padding"], a["stride"])):
                if opad >= s:
                    v.fail(f"{lab}: output_padding[{d}] = {opad} must be smaller than stride[{d}] = {s} (§5.5)")
        mw = _array(v, op, "w_mant", (co,))
        _array(v, op, "bias", (co,))
        _check_mults(v, op, "w_mant", mw)
        # The per-accumulator multipliers of (5.3) are what the rescale multiplies by:
        # each must be a mult_bits multiplier too (§2), formed exactly from m_w, unit_m, d_s/e_s.
        for name, mults in bounds.conv_multipliers(art, op):
            for c, m in enumerate(mults):
                if abs(m) > v.mult_max:
                    what = {"P": "m_w·unit_m·d_s", "Q": "m_w·unit_m·e_s", "A": "m_w·unit_m"}[name[0]]
                    v.fail(f"{lab}: multiplier M_{name}[{c}] = {what} = {m} exceeds mult_bits = "
                           f"{v.nx.mult_bits} (|M| ≤ {v.mult_max}, §2.1, §5.3)")
    elif kind == "add":
        same_channels()
    elif kind == "concat":
        if sum(cin) != cout[0]:
            v.fail(f"{lab}: output has {cout[0]} channels, inputs sum to {sum(cin)} ({cin})")
    elif kind == "split":
        sizes = list(a["sizes"])
        if len(sizes) != len(op.outputs):
            v.fail(f"{lab}: {len(sizes)} sizes for {len(op.outputs)} outputs")
        if sum(sizes) != cin[0]:
            v.fail(f"{lab}: sizes {sizes} sum to {sum(sizes)}, input has {cin[0]} channels")
        for i, (s, c) in enumerate(zip(sizes, cout)):
            if s != c:
                v.fail(f"{lab}: output {i} tensor {op.outputs[i]!r} has {c} channels, sizes[{i}] = {s}")
    elif kind in ("relu", "upsample_nearest", "mean_pool", "std_pool"):
        same_channels()
    elif kind == "clamp":
        same_channels()
        lo, hi = -(1 << (v.nx.stream_bits - 1)), (1 << (v.nx.stream_bits - 1)) - 1
        if not lo <= a["lo"] <= a["hi"] <= hi:
            v.fail(f"{lab}: bounds lo = {a['lo']}, hi = {a['hi']} must satisfy {lo} ≤ lo ≤ hi ≤ {hi} "
                   f"(stream_bits = {v.nx.stream_bits}, §6.16)")
    elif kind == "leaky_relu":
        same_channels()
        _check_mults(v, op, "attribute mult", [a["mult"]])
    elif kind == "prelu":
        same_channels()
        m = _array(v, op, "mult", (cin[0],))
        _check_mults(v, op, "mult", m)
    elif kind == "pixel_shuffle":
        r = a["factor"]
        if cin[0] != cout[0] * r * r:
            v.fail(f"{lab}: input channels {cin[0]} must be output channels {cout[0]} · factor² ({r}²) (§6.8)")
    elif kind == "upsample_bicubic":
        same_channels()
        if a["tap_bits"] > bounds.MAX_TAP_BITS:
            v.fail(f"{lab}: tap_bits {a['tap_bits']} exceeds {bounds.MAX_TAP_BITS} (§6.18)")
        if a["factor"] > bounds.MAX_BICUBIC_FACTOR:
            v.fail(f"{lab}: factor {a['factor']} exceeds {bounds.MAX_BICUBIC_FACTOR} (§6.18)")
    elif kind == "upsample_bilinear":
        same_channels()
        _check_mults(v, op, "attribute mult", [a["mult"]], lo=1)
    elif kind in ("sigmoid", "lut"):
        same_channels()
        if a["imin"] > a["imax"]:
            v.fail(f"{lab}: imin {a['imin']} > imax {a['imax']} (§6.13)")
        n = a["imax"] - a["imin"] + 1
        if n > INT64_MAX:
            v.fail(f"{lab}: LUT index range too large")
        lut = _array(v, op, "lut", (n,))
        lo, hi = -(1 << (v.nx.stream_bits - 1)), (1 << (v.nx.stream_bits - 1)) - 1
        if lut.size and (int(lut.min()) < lo or int(lut.max()) > hi):
            # The output is a stream (§1.2): its values must be stream_bits-bit integers.
            v.fail(f"{lab}: lut values [{int(lut.min())}, {int(lut.max())}] do not fit stream_bits = "
                   f"{v.nx.stream_bits} (§1.2, §6.13)")
    elif kind == "mul":
        if not cin[0] == cin[1] == cout[0]:
            v.fail(f"{lab}: channel counts differ: x {cin[0]}, g {cin[1]}, output {cout[0]} (§6.14)")

    # fracs: ops without a rescale keep the input frac (§6.5–6.12)
    if kind in bounds.SAME_FRAC_OPS:
        fi = v.tin(op).frac
        for t in op.outputs:
            if art.tensors[t].frac != fi:
                v.fail(f"{lab}: output tensor {t!r} frac {art.tensors[t].frac} must equal the input frac {fi} "
                       f"(this op does not rescale)")
    # every shift in [0, 62] (§2), derived ones included (§5.2, §6.x)
    for name, n in bounds.op_shifts(art, op).items():
        if not 0 <= n <= MAX_SHIFT:
            v.fail(f"{lab}: shift {name} = {n} is outside [0, {MAX_SHIFT}] ({_SHIFT_WHY.get((kind, name), '§2')})")


_SHIFT_WHY = {
    ("image_in", "n"): "n = exp − f_o, §6.1",
    ("image_out", "n"): "n = f_i + exp, §6.2",
    ("conv2d", "n"): "n = w_exp + unit_e − f_o, §5.2",
    ("conv_transpose2d", "n"): "n = w_exp + unit_e − f_o, §5.2",
    ("add", "n"): "n = F − f_o, §6.3",
    ("add", "align_a"): "F − f_a, §6.3",
    ("add", "align_b"): "F − f_b, §6.3",
    ("mul", "n"): "n = f_x + f_g − f_o, §6.14",
    ("upsample_bicubic", "n"): "n = 2·tap_bits, §6.18",
    ("sigmoid", "left"): "k_lut − f_i, §6.13",
    ("sigmoid", "right"): "f_i − k_lut, §6.13",
    ("lut", "left"): "k_lut − f_i, §6.17",
    ("lut", "right"): "f_i − k_lut, §6.17",
}


def _conv_out_1x1(a: dict, transpose: bool) -> int:
    """Output height and width (min of both) of a conv applied to a 1×1 input (§5.1, §5.5)."""
    out = []
    for d in range(2):
        k, s, p = a["kernel"][d], a["stride"][d], a["padding"][d]
        if transpose:
            out.append(k - 2 * p + a["output_padding"][d])
        else:
            out.append((1 + 2 * p - a["dilation"][d] * (k - 1) - 1) // s + 1)
    return min(out) if min(out) < 1 else max(out)


def _check_spatial(v: _V) -> None:
    """Propagate "is 1×1" (global) through the graph; mul's gate must be 1×1 (§6.14).

    Only the 1×1 class is known statically; other spatial sizes depend on the image
    and are checked by the engine at run time.
    """
    art = v.art
    glob: dict[str, bool] = {t: False for t in art.inputs}
    for op in art.ops:
        lab = f"op {op.name!r} ({op.op})"
        g_in = [glob[t] for t in op.inputs]
        kind = op.op
        if kind in ("mean_pool", "std_pool"):
            res = True
        elif kind in ("conv2d", "conv_transpose2d"):
            res = False
            if g_in[0]:
                size = _conv_out_1x1(op.attrs, kind == "conv_transpose2d")
                if size < 1:
                    v.fail(f"{lab}: applied to the 1×1 tensor {op.inputs[0]!r} it has an empty output")
                res = size == 1
        elif kind in ("pixel_shuffle", "upsample_nearest", "upsample_bilinear", "upsample_bicubic"):
            res = g_in[0] and op.attrs["factor"] == 1
        elif kind == "pad":
            if g_in[0] and op.attrs["mode"] == "reflect" and max(op.attrs["padding"]) > 0:
                v.fail(f"{lab}: reflect padding of the 1×1 tensor {op.inputs[0]!r} (needs padding < size, §5.8)")
            res = g_in[0] and max(op.attrs["padding"]) == 0
        elif kind == "mul":
            if not g_in[1]:
                v.fail(f"{lab}: second input {op.inputs[1]!r} must be a 1×1 (global) tensor, e.g. derived from "
                       f"mean_pool/std_pool (§6.14)")
            res = g_in[0]
        elif kind in ("add", "concat"):
            if len(set(g_in)) != 1:
                v.fail(f"{lab}: mixes 1×1 (global) and full-size inputs {list(op.inputs)}; no broadcasting (§6.3, §6.4)")
            res = g_in[0]
        else:  # elementwise, encode, image_in/out, split
            res = g_in[0]
        for t in op.outputs:
            glob[t] = res


def _check_envelope(v: _V) -> None:
    """§9: every integer intermediate (worst case over all inputs) below 2^53."""
    details = bounds.op_envelope_details(v.art)
    kinds = {op.name: op.op for op in v.art.ops}
    for name, (b, what) in details.items():
        if b >= bounds.EXACT_LIMIT:
            v.fail(f"op {name!r} ({kinds[name]}): exactness envelope exceeded: {what} can reach "
                   f"{b} ({b.bit_length()} bits) ≥ 2^53 (§9)")


def validate_artifact(art: Artifact, where: str = "artifact") -> None:
    """Run every loader check of docs/artifact.md on an in-memory artifact.

    Raises :class:`ArtifactError` (message prefixed with ``where``) on the first
    defect; returns None if the artifact is valid.
    """
    if not isinstance(art, Artifact):
        raise ArtifactError(f"{where}: not an Artifact ({type(art).__name__})")
    v = _V(art, where)
    _check_numerics(v)
    _obj(art.model, f"{where}: model")
    _obj(art.metadata, f"{where}: metadata")
    _check_arrays(v)
    _check_tensors(v)
    _check_ops_schema(v)
    _check_connectivity(v)
    for op in art.ops:
        _check_op(v, op)
    _check_spatial(v)
    _check_envelope(v)
