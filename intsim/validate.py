"""Strict parsing and semantic validation of an artifact (docs/artifact.md, "Loader checks").

:func:`parse_graph` turns ``graph.json`` (already JSON-decoded) plus the archive's
arrays into :class:`~intsim.artifact_model.Artifact` dataclasses, refusing anything
that is not exactly the documented schema (required keys, JSON types — a bool
is never an int, a float is never an int —, unknown keys, unknown ops, missing
attributes or array roles, undeclared arrays).

:func:`validate_artifact` then checks the semantics, in this order, and raises
:class:`~intsim.artifact_model.ArtifactError` on the first defect with a message
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

The checks live in :mod:`intsim.validate_schema` (parsing, op schema),
:mod:`intsim.validate_numerics` (1–3) and :mod:`intsim.validate_ops` (6–8); this module runs them
in order and checks the graph (4–5). Both functions are also used on in-memory artifacts
(``save_artifact`` and the test factory), so every check works on the dataclasses, not on JSON only.
"""
from __future__ import annotations

from intsim.artifact_model import Artifact, ArtifactError, OpSpec
from intsim.ops.opdef import OPS
from intsim.validate_numerics import (
    ACC_BITS,
    FRAC_RANGE,
    GRID_BITS,
    IMAGE_CHANNELS,
    MAX_CODES,
    MAX_SEGMENTS,
    MULT_BITS,
    OVERFLOWS,
    ROUNDINGS,
    STREAM_BITS,
    _V,
    _check_arrays,
    _check_numerics,
    _check_tensors,
    declared_code_bits,
)
from intsim.validate_ops import _check_envelope, _check_op, _check_spatial
from intsim.validate_schema import (
    KNOWN_OPS,
    MAX_ARRAYS,
    MAX_OPS,
    MAX_SHIFT,
    MAX_TENSORS,
    _check_op_schema,
    _obj,
    _str,
    _str_list,
    check_graph_counts,
    parse_graph,
)

__all__ = [  # the public API, read here by callers (artifact loading, tests, calib export)
    "ACC_BITS", "FRAC_RANGE", "GRID_BITS", "IMAGE_CHANNELS", "KNOWN_OPS", "MAX_ARRAYS", "MAX_CODES", "MAX_OPS",
    "MAX_SEGMENTS", "MAX_SHIFT", "MAX_TENSORS", "MULT_BITS", "OVERFLOWS", "ROUNDINGS", "STREAM_BITS",
    "check_graph_counts", "declared_code_bits", "parse_graph", "validate_artifact",
]


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
        kin, kout = OPS[op.op].kinds
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
