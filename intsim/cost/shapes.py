"""Tensor shapes of an artifact for a given input size (H, W, C per tensor), as the cost
model needs them without running the engine.
"""
from __future__ import annotations

from intsim.artifact import Artifact
from intsim.ops.conv_params import ConvParams, attr_pair


def infer_shapes(art: Artifact, in_hw: tuple[int, int]) -> dict[str, tuple[int, int, int]]:
    """(H, W, C) of every tensor for an input image of ``in_hw`` (arithmetic.md §5, §6)."""
    H, W = int(in_hw[0]), int(in_hw[1])
    shapes: dict[str, tuple[int, int, int]] = {}
    for t in art.inputs:
        shapes[t] = (H, W, art.tensors[t].channels)
    for op in art.ops:
        ins = [shapes[t] for t in op.inputs]
        a = op.attrs
        h, w = ins[0][0], ins[0][1]
        if op.op == "conv2d":
            p = ConvParams.of(a)
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p.kernel, p.stride, p.padding, p.dilation
            h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        elif op.op == "conv_transpose2d":
            p = ConvParams.of(a)
            (kh, kw), (sh, sw), (ph, pw), (oh, ow) = p.kernel, p.stride, p.padding, p.output_padding
            h = (h - 1) * sh - 2 * ph + kh + oh
            w = (w - 1) * sw - 2 * pw + kw + ow
        elif op.op in ("pixel_shuffle", "upsample_nearest", "upsample_bilinear", "upsample_bicubic"):
            r = int(a["factor"])
            h, w = h * r, w * r
        elif op.op == "pad":
            ph, pw = attr_pair(a.get("padding"), 0)
            h, w = h + 2 * ph, w + 2 * pw
        elif op.op in ("mean_pool", "std_pool"):
            h, w = 1, 1
        for t in op.outputs:
            shapes[t] = (h, w, art.tensors[t].channels)
    return shapes


_SAME_HW = frozenset({"image_in", "image_out", "encode", "relu", "clamp", "leaky_relu", "prelu", "sigmoid", "lut",
                      "add", "mul", "concat", "split"})


def input_hw(art: Artifact, counters: dict) -> tuple[int, int]:
    """The graph input's (H, W) from the out_shape of an op reading it."""
    ops = counters.get("ops", {})
    for op in art.ops:
        if not (any(t in art.inputs for t in op.inputs) and "out_shape" in ops.get(op.name, {})):
            continue
        h, w = (int(x) for x in ops[op.name]["out_shape"][:2])
        a = op.attrs
        if op.op in _SAME_HW:
            return h, w
        if op.op == "conv2d" and ConvParams.of(a).stride == (1, 1):
            p = ConvParams.of(a)
            (kh, kw), (ph, pw), (dh, dw) = p.kernel, p.padding, p.dilation
            return h - 2 * ph + dh * (kh - 1), w - 2 * pw + dw * (kw - 1)
    raise ValueError("counters do not give the input image size (no usable out_shape of an op reading the "
                     "graph input); pass image_hw=(H, W)")
