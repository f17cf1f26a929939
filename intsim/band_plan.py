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

Within a pass, :func:`band_steps` is the schedule both executors follow: which op
computes which output rows in which step (no arithmetic), so their band order
and hence their per-band outputs and counters agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Protocol, Sequence

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


def pass_streams(ops: Sequence[OpSpec], is_global: Mapping[str, bool]
                 ) -> tuple[dict[str, list[tuple[OpSpec, int]]], list[str]]:
    """The spatial tensors one pass streams: ``(consumers, sources)``.

    ``consumers[t]`` lists the (op, input index) pairs of ``ops`` that read spatial tensor ``t``
    (the line buffer of ``t`` may drop rows none of them reads any more); ``sources`` are the
    consumed tensors no op of the pass produces (materialized by an earlier pass), sorted.
    """
    produced = {t for op in ops for t in op.outputs}
    consumers: dict[str, list[tuple[OpSpec, int]]] = {}
    for op in ops:
        for j, t in enumerate(op.inputs):
            if not is_global[t]:
                consumers.setdefault(t, []).append((op, j))
    return consumers, sorted(t for t in consumers if t not in produced)


class RowMap(Protocol):
    """Row dependency of one (op, spatial input) as an executor holds it."""

    def producible(self, avail: int) -> int:
        """Largest n such that output rows [0, n) read only input rows < ``avail``."""


class NoProgress(ValueError):
    """A pass's schedule stalled: no op could compute a row (the row maps are inconsistent)."""


def band_steps(ops: Sequence[OpSpec], hw: Mapping[str, tuple[int, int]], sources: Sequence[str],
               needs: Mapping[tuple[str, int], RowMap], is_global: Mapping[str, bool],
               band_rows: int) -> Iterator[tuple[OpSpec, int, int, Mapping[str, int]]]:
    """The steps of one pass: yields ``(op, a, n, op_done)``, meaning op computes output rows [a, n).

    ``ops`` stream in this pass (in graph order), ``hw`` holds (height, width) in rows/columns
    of every tensor, ``sources`` are the spatial tensors the pass reads but does not produce
    (materialized earlier), ``needs[(op name, input index)]`` the row map of each spatial input,
    ``band_rows`` input rows per band (≥ 1). Step k makes ceil(h·k/n_steps) rows of every source
    of height h available; each op then computes at most about one band in its own resolution
    (``cap``, also while draining the halo lag), as far as its inputs allow. A yielded step is
    recorded as done: ``op_done`` (op name → output rows scheduled so far, this step included;
    read it, never write it) is what a caller trims its line buffers by. Raises
    :class:`NoProgress` when a step after the last band schedules nothing.
    """
    out_h = {op.name: hw[op.outputs[0]][0] for op in ops}
    done = {t: 0 for op in ops for t in op.outputs}  # rows of each tensor produced in this pass
    op_done = {op.name: 0 for op in ops}
    ref_h = max([1] + [hw[t][0] for t in sources])
    n_steps = max(1, math.ceil(ref_h / band_rows))
    cap = {op.name: max(1, math.ceil(band_rows * out_h[op.name] / ref_h)) for op in ops}
    step = 0
    while any(op_done[op.name] < out_h[op.name] for op in ops):
        step += 1
        avail = {t: min(hw[t][0], math.ceil(hw[t][0] * step / n_steps)) for t in sources}
        progress = False
        for op in ops:
            a = op_done[op.name]
            n = min(out_h[op.name], a + cap[op.name])
            for j, t in enumerate(op.inputs):
                if not is_global[t]:
                    n = min(n, needs[(op.name, j)].producible(avail[t] if t in avail else done[t]))
            if n <= a:
                continue
            op_done[op.name] = n
            for t in op.outputs:
                done[t] = n
            progress = True
            yield op, a, n, op_done
        if not progress and step > n_steps:
            raise NoProgress("made no progress (row maps inconsistent)")
