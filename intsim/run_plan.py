"""The engine's schedule for one artifact and input shape, resolved once (issue 24, op plan).

:func:`run_plan` turns the artifact's op list into a :class:`RunPlan`: per op its adapter
(:data:`intsim.op_dispatch.OPS`), its fused group (:func:`intsim.fusion.fusion_plan`, only when
no intermediates are kept), the channels each output must have, and the tensors whose last
consumer it is (released after it when intermediates are not kept). Everything in it follows from
the op list, the graph outputs, the input shape and the mode, none of it from the pixels; the
plan is kept in ``art.derived`` (per artifact, no process-wide state), so :func:`intsim.engine.run`
only walks it. Data-dependent choices (a conv's path and its sparse or dense tails, which follow
the input's code census) stay in the per-image call.

Staged concats (issue 24, peak memory): a ``concat`` fused with the ``encode`` that is its only
reader (:func:`intsim.fusion.fusion_plan`) needs its int64 inputs only to encode them. Each input is
requantized and encoded into its own code slice right after the op that makes it
(:func:`intsim.fusion.stage_part`), and dropped after its last *other* reader, so a concat of
inputs made far apart (IMDN's final concat of its six block outputs) holds codes, not int64
streams, in between. The integers and counters are the fused concat's (element-wise arithmetic;
counts are sums over elements).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intsim import fusion
from intsim import op_dispatch as D
from intsim.artifact import Artifact, OpSpec


@dataclass(frozen=True)
class Step:
    """One op of the schedule. ``group``: the :class:`~intsim.fusion.Fusion` it runs with its
    consumers, or None; ``out_channels``: per output, the channels the graph declares;
    ``release``: tensors to drop after this op when intermediates are not kept (their last
    reader is this op and they are no graph output). ``stage``: per output of this op that a
    staged concat reads, ``(concat op, its Fusion, input index)``; ``early``: ``(tensor, concat op
    name)`` to drop after this op once that concat is staged (this op is the tensor's last reader
    other than the concat). ``store``: per output, the dtype it is held in (None: as the op made
    it): streams int64, except that when intermediates are not kept a stream that is no graph output is
    held compact (:func:`intsim.numerics.stream_dtype`: int32 below 32 stream bits) until its last
    reader; the kernels read int32 streams as they are (numba widens each element). Codes as made
    (a staged concat's may be uint8), graph outputs in their codebook's dtype (:func:`held_dtype`)."""

    op: OpSpec
    adapter: D.Adapter
    group: fusion.Fusion | None
    out_channels: tuple[int, ...]
    release: tuple[str, ...]
    stage: tuple = ()
    early: tuple[tuple[str, str], ...] = ()
    store: tuple = ()


@dataclass(frozen=True)
class RunPlan:
    """The resolved schedule of one artifact for one input shape ``in_shape`` (H, W, C) and mode
    (``fuse``: ops run in fused groups, intermediates dropped; else every tensor is made)."""

    in_shape: tuple[int, ...]
    fuse: bool
    steps: tuple[Step, ...]


def build_run_plan(art: Artifact, in_shape: tuple[int, ...], fuse: bool) -> RunPlan:
    """The :class:`RunPlan` of ``art`` (uncached; :func:`run_plan` caches it). Raises ``ValueError``
    for an op type without an adapter."""
    groups = fusion.fusion_plan(art) if fuse else {}
    last_reader: dict[str, int] = {}
    for i, op in enumerate(art.ops):
        for t in op.inputs:
            last_reader[t] = i
    outputs = set(art.outputs)
    stage, early = staged_concats(art, groups, outputs)
    steps = []
    for i, op in enumerate(art.ops):
        adapter = D.OPS.get(op.op)
        if adapter is None:
            raise ValueError(f"op {op.name!r}: unknown op type {op.op!r}")
        release = tuple(dict.fromkeys(t for t in op.inputs if last_reader[t] == i and t not in outputs))
        store = tuple(held_dtype(art, t, fuse, t in outputs) for t in op.outputs)
        steps.append(Step(op, adapter, groups.get(op.name), tuple(art.tensors[t].channels for t in op.outputs),
                          release, tuple(stage.get(i, ())), tuple(early.get(i, ())), store))
    return RunPlan(tuple(int(d) for d in in_shape), bool(fuse), tuple(steps))


def held_dtype(art: Artifact, t: str, fuse: bool, is_output: bool) -> np.dtype | None:
    """The dtype tensor ``t`` is held in (None: as its op made it). A stream: compact
    (:func:`intsim.numerics.stream_dtype`) in a fused run unless it is a graph output, else int64.
    Codes: as made, which may be the compact ``held_code_dtype`` of a staged concat, except that a
    graph output gets the codebook's ``code_dtype``."""
    spec = art.tensors[t]
    if spec.kind == "stream":
        return art.numerics.stream_dtype if fuse and not is_output else np.dtype(np.int64)
    if spec.kind == "codes" and is_output:
        return spec.codebook.code_dtype
    return None


def staged_concats(art: Artifact, groups: dict, outputs: set) -> tuple[dict, dict]:
    """Where the staged concats (module docstring) take and drop their inputs: ``({producer step:
    [(concat op, Fusion, input index)]}, {step: [(tensor, concat op name)]})``. A concat is staged
    when it is fused with its encode alone and its inputs are distinct tensors made by earlier ops."""
    producer = {t: i for i, op in enumerate(art.ops) for t in op.outputs}
    stage: dict[int, list] = {}
    early: dict[int, list] = {}
    for j, op in enumerate(art.ops):
        g = groups.get(op.name)
        if (op.op != "concat" or g is None or g.split is not None or g.slope is not None or g.encodes[0] is None
                or len(set(op.inputs)) != len(op.inputs) or any(producer.get(t, j) >= j for t in op.inputs)):
            continue
        for k, t in enumerate(op.inputs):
            stage.setdefault(producer[t], []).append((op, g, k))
            # the tensor's last reader other than this concat (its producer when there is none)
            drop = max([producer[t]] + [i for i, o in enumerate(art.ops) if i != j and t in o.inputs])
            if drop < j and t not in outputs:
                early.setdefault(drop, []).append((t, op.name))
    return stage, early


def run_plan(art: Artifact, in_shape: tuple[int, ...], fuse: bool) -> RunPlan:
    """:func:`build_run_plan`, kept in ``art.derived`` per input shape and mode: a second image of the
    same shape reuses it. The entry is tied to the op list object and its ops' identities and
    to the graph outputs, so a replaced or edited op list gets a new plan."""
    ops = art.ops
    return D.memo(art, "run_plan", ops, lambda: build_run_plan(art, in_shape, fuse),
                  tuple(int(d) for d in in_shape), bool(fuse), tuple(map(id, ops)), tuple(art.outputs))
