"""Tensor shapes of an artifact for a given input size (H, W, C per tensor), as the cost
model needs them without running the engine.
"""
from __future__ import annotations

from intsim.artifact import Artifact
from intsim.ops.opdef import OPS


def infer_shapes(art: Artifact, in_hw: tuple[int, int]) -> dict[str, tuple[int, int, int]]:
    """(H, W, C) of every tensor for an input image of ``in_hw`` (arithmetic.md §5, §6): the op
    registry's per-axis size function of each op (:meth:`intsim.ops.opdef.OpDef.out_size`)."""
    H, W = int(in_hw[0]), int(in_hw[1])
    shapes: dict[str, tuple[int, int, int]] = {}
    for t in art.inputs:
        shapes[t] = (H, W, art.tensors[t].channels)
    for op in art.ops:
        h, w = shapes[op.inputs[0]][:2]
        d = OPS[op.op]
        h, w = d.out_size(op, h, 0), d.out_size(op, w, 1)
        for t in op.outputs:
            shapes[t] = (h, w, art.tensors[t].channels)
    return shapes


def input_hw(art: Artifact, counters: dict) -> tuple[int, int]:
    """The graph input's (H, W) from the out_shape of an op reading it."""
    ops = counters.get("ops", {})
    for op in art.ops:
        if not (any(t in art.inputs for t in op.inputs) and "out_shape" in ops.get(op.name, {})):
            continue
        h, w = (int(x) for x in ops[op.name]["out_shape"][:2])
        d = OPS[op.op]
        if d.geometry.kind == "same":
            return h, w
        if op.op == "conv2d" and d.attr(op, "stride") == (1, 1):  # stride 1: the size function inverts exactly
            return d.min_input(op, h, 0), d.min_input(op, w, 1)
    raise ValueError("counters do not give the input image size (no usable out_shape of an op reading the "
                     "graph input); pass image_hw=(H, W)")
