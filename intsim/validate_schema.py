"""The JSON schema of ``graph.json`` (docs/artifact.md): strict parsing into the data model.

:func:`parse_graph` turns ``graph.json`` (already JSON-decoded) plus the archive's arrays into
:class:`~intsim.artifact_model.Artifact` dataclasses, refusing anything that is not exactly the documented
schema (required keys, JSON types — a bool is never an int, a float is never an int —, unknown keys,
unknown ops, missing attributes or array roles, undeclared arrays). The op schema (attributes and
their types, array roles) is the op registry's (:data:`intsim.ops.opdef.OPS`).

The primitive checks here (``_int``, ``_str``, ...) are shared with the semantic checks of
:mod:`intsim.validate`; every refusal is an :class:`~intsim.artifact_model.ArtifactError`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from intsim.artifact_model import (
    FORMAT,
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
from intsim.ops.opdef import OPS

MAX_SHIFT = 62  # §2
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
KNOWN_OPS = tuple(OPS)

TOP_REQUIRED = ("format", "version", "numerics", "inputs", "outputs", "tensors", "ops", "arrays")
TOP_OPTIONAL = ("model", "metadata")
NUMERICS_KEYS = ("rounding", "realization", "overflow", "acc_bits", "stream_bits", "mult_bits")
CODEBOOK_REQUIRED = ("unit_m", "unit_e", "segments", "thresholds", "encoder")
CODEBOOK_OPTIONAL = ("grid_bits", "allocation", "bits")
SEGMENT_KEYS = ("origin", "step", "qmin", "qmax")
ENCODER_KEYS = ("center", "mult", "shift")
OP_REQUIRED = ("name", "op", "inputs", "outputs")
OP_OPTIONAL = ("attrs", "arrays")


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
    if op.op not in OPS:
        raise ArtifactError(f"{lab}: unknown op {op.op!r} (known ops: {', '.join(KNOWN_OPS)})")
    attrs = _obj(op.attrs, f"{lab}: attrs")
    d = OPS[op.op]
    req, opt = d.required_attrs, d.optional_attrs
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
    need = tuple(d.roles)
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


#: the legacy op type read as ``lut`` with ``fn = "sigmoid"`` (docs/artifact.md, "Legacy op types")
LEGACY_SIGMOID = "sigmoid"


def legacy_sigmoid_as_lut(kind: str, attrs: dict, lab: str) -> tuple[str, dict]:
    """The one place the legacy ``sigmoid`` op (§6.13; written by exporters before the generic ``lut``
    op, §6.17) is read: as ``lut`` with ``fn = "sigmoid"`` and the same ``lut_exp``, ``imin``, ``imax``
    and table, which is the same index rule and look-up, so every output bit is the same. Any other
    ``kind`` is returned unchanged. A ``sigmoid`` op never had an ``fn`` attribute: one is refused
    rather than let it pick another function."""
    if kind != LEGACY_SIGMOID:
        return kind, attrs
    if "fn" in attrs:
        raise ArtifactError(f"{lab}: unknown attribute 'fn' (allowed: lut_exp, imin, imax)")  # as before the alias
    return "lut", {"fn": "sigmoid", **attrs}


def _parse_op(i: int, d: Any, where: str) -> OpSpec:
    what = f"{where}: ops[{i}]"
    _obj(d, what)
    _keys(d, OP_REQUIRED, OP_OPTIONAL, what)
    name = _str(d["name"], f"{what}.name")
    kind = _str(d["op"], f"{what}.op")
    lab = f"{where}: op {name!r} ({kind})"
    attrs = dict(_obj(d.get("attrs", {}), f"{lab}: attrs"))
    roles = dict(_obj(d.get("arrays", {}), f"{lab}: arrays"))
    kind, attrs = legacy_sigmoid_as_lut(kind, attrs, lab)
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
