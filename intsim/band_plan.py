"""The band plan: how a graph is cut into passes at its global ops (docs/golden.md, intsim/tiling.py).

A pure function of the graph (which ops are global pools, which tensors each op
reads), used by both banded executors: ``intsim run`` (:mod:`intsim.tiling`) and
golden (:mod:`golden.bands`). Like the artifact format it is a fact both share;
neither executor's arithmetic is here, and this module imports nothing else of
intsim but the artifact types.

Pass 0 streams the ops that depend on no pool; the input of every pool is
*materialized* (held whole) during the pass that produces it; the pool and the
1×1 ops that read only pooled values run once at the start of the next pass,
which streams the ops that needed them. Tensors a later pass reads are
materialized too (``last_pass``: the last pass that reads them); graph outputs
are kept to the end.
"""
from __future__ import annotations

from dataclasses import dataclass

from intsim.artifact import Artifact, OpSpec

GLOBAL_OPS = frozenset({"mean_pool", "std_pool"})


@dataclass
class TilePlan:
    """Passes of a tiled run: which ops stream in which pass, which tensors are materialized."""

    level: dict[str, int]  # spatial tensors: the pass that produces them; globals: the pass that may read them
    is_global: dict[str, bool]
    pass_ops: list[list[OpSpec]]  # streaming (spatial) ops per pass
    global_ops: list[list[OpSpec]]  # pools and 1×1 ops run once at the start of each pass
    materialize: set[str]
    last_pass: dict[str, int]  # materialized tensor → the last pass that reads it


def plan(art: Artifact) -> TilePlan:
    """Cut the graph into passes at global pools (see the module docstring)."""
    if len(art.inputs) != 1:
        raise ValueError(f"tiling runs single-image graphs; this artifact has {len(art.inputs)} inputs")
    level: dict[str, int] = {art.inputs[0]: 0}
    is_global: dict[str, bool] = {art.inputs[0]: False}
    op_level: dict[str, int] = {}
    for op in art.ops:
        for t in op.inputs:
            if t not in level:
                raise ValueError(f"op {op.name!r}: input {t!r} is not computed before it (ops out of order?)")
        if op.op in GLOBAL_OPS:
            if is_global[op.inputs[0]]:
                lv, glob = level[op.inputs[0]], True  # pooling a 1×1 tensor: a global op like any other
            else:
                lv, glob = level[op.inputs[0]] + 1, True
        elif all(is_global[t] for t in op.inputs):
            lv, glob = max(level[t] for t in op.inputs), True
        else:
            lv, glob = max(level[t] for t in op.inputs), False
        op_level[op.name] = lv
        for t in op.outputs:
            level[t], is_global[t] = lv, glob
    n_pass = 1 + max(level.values())
    pass_ops: list[list[OpSpec]] = [[] for _ in range(n_pass)]
    global_ops: list[list[OpSpec]] = [[] for _ in range(n_pass)]
    for op in art.ops:
        if is_global[op.outputs[0]]:
            global_ops[op_level[op.name]].append(op)
        else:
            pass_ops[op_level[op.name]].append(op)
    materialize: set[str] = set()
    last_pass: dict[str, int] = {}
    for op in art.ops:
        lv = op_level[op.name]
        for t in op.inputs:
            if is_global[t]:
                continue
            if op.op in GLOBAL_OPS or lv > level[t]:
                materialize.add(t)
                last_pass[t] = max(last_pass.get(t, 0), lv)
    for t in art.outputs:
        if not is_global[t]:
            materialize.add(t)
            last_pass[t] = n_pass  # kept to the end
    return TilePlan(level=level, is_global=is_global, pass_ops=pass_ops, global_ops=global_ops,
                    materialize=materialize, last_pass=last_pass)
