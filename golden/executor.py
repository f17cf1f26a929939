"""Golden executor: an artifact run as float64 fake-quant in torch (docs/arithmetic.md).

An implementation of the arithmetic specification independent of ``intsim``'s
integer engine: every op evaluates its *real form* on exact float64 dyadic
values (codes are dequantized to reals, weights to ``w·m_w·2^-k_w``, convs are
``torch.nn.functional`` convs), then rounds once and applies the overflow
policy on floats. Only the file format (``intsim.artifact``) is shared.

``run_golden(art, image)`` returns every tensor of the graph as integers
(streams ``X`` and codes as int64, images uint8) and the per-op event counts
``acc_overflow``, ``stream_overflow``, ``saturations`` (§7).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from golden.numerics import F64, GoldenError, GoldenOverflowError, signed_bounds
from golden.ops import bicubic
from golden.ops import conv as conv_ops
from golden.ops import stream as S
from golden.ops.codes import code_tables, encode
from golden.ops.context import OpContext

EVENT_KEYS = ("acc_overflow", "stream_overflow", "saturations")


@dataclass
class GoldenRun:
    """Result of one golden execution: tensors in graph order and events per op."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    events: dict[str, dict[str, int]] = field(default_factory=dict)


def _encode(ctx, ins):
    return [encode(ctx, ins[0])]


OPS: dict[str, Callable] = {
    "image_in": S.image_in,
    "image_out": S.image_out,
    "encode": _encode,
    "conv2d": lambda ctx, ins: [conv_ops.conv(ctx, ins[0], transposed=False)],
    "conv_transpose2d": lambda ctx, ins: [conv_ops.conv(ctx, ins[0], transposed=True)],
    "add": S.add,
    "concat": S.concat,
    "split": S.split,
    "relu": S.relu,
    "clamp": S.clamp,
    "pad": S.pad,
    "leaky_relu": S.leaky_relu,
    "prelu": S.prelu,
    "pixel_shuffle": S.pixel_shuffle,
    "upsample_nearest": S.upsample_nearest,
    "upsample_bilinear": S.upsample_bilinear,
    "upsample_bicubic": bicubic.upsample_bicubic,
    "mean_pool": S.mean_pool,
    "std_pool": S.std_pool,
    "sigmoid": S.lut,
    "lut": S.lut,
    "mul": S.mul,
}

ARITY = {"add": 2, "mul": 2}


def _feed(art, name: str, value: np.ndarray) -> torch.Tensor:
    spec = art.tensors[name]
    a = np.asarray(value)
    if spec.kind == "image":
        if a.dtype != np.uint8:
            raise GoldenError(f"input {name!r}: image must be uint8, got {a.dtype}")
        if a.ndim == 2:
            a = a[:, :, None]
    elif not np.issubdtype(a.dtype, np.integer):
        raise GoldenError(f"input {name!r}: {spec.kind} tensor must hold integers, got {a.dtype}")
    if a.ndim != 3:
        raise GoldenError(f"input {name!r}: expected H×W×C, got shape {list(a.shape)}")
    if a.shape[2] != spec.channels:
        raise GoldenError(f"input {name!r}: has {a.shape[2]} channels, the graph declares {spec.channels}")
    a = a.astype(np.int64)
    if spec.kind == "stream":
        lo, hi = signed_bounds(art.numerics.stream_bits)
        if a.size and (a.min() < lo or a.max() > hi):
            raise GoldenError(f"input {name!r}: values outside the {art.numerics.stream_bits}-bit stream range")
    if spec.kind == "codes":
        n = code_tables(spec.codebook).n
        if a.size and (a.min() < 0 or a.max() >= n):
            raise GoldenError(f"input {name!r}: codes outside [0, {n})")
    return torch.from_numpy(a.astype(np.float64))


def _to_numpy(art, name: str, t: torch.Tensor) -> np.ndarray:
    """float64 → integers, asserting every value is an exact integer of the right range."""
    if t.dtype != F64:
        raise AssertionError(f"golden tensor {name!r} is {t.dtype}, expected float64")
    if t.numel() and not bool(torch.all(torch.isfinite(t) & (t == torch.floor(t)))):
        raise AssertionError(f"golden tensor {name!r} holds a non-integer value")
    kind = art.tensors[name].kind
    if kind == "image":
        if t.numel() and (float(t.min()) < 0 or float(t.max()) > 255):
            raise AssertionError(f"golden image {name!r} leaves [0, 255]")
        return t.numpy().astype(np.uint8)
    out = t.numpy().astype(np.int64)
    if not np.array_equal(out.astype(np.float64), t.numpy()):
        raise AssertionError(f"golden tensor {name!r} does not convert exactly to int64")
    return out


def execute(art, feeds: dict[str, np.ndarray], *, force_ordered: bool = False,
            keep_tensors: bool = True) -> GoldenRun:
    """Run ``art`` on ``feeds`` (one array per graph input, HWC).

    ``force_ordered`` makes every conv emulate its accumulators in hardware order
    even when §5.4 proves it cannot overflow (the result must not change; tests).
    ``keep_tensors=False`` returns only the graph outputs and frees each intermediate
    after its last use (evaluation: float64 tensors of a large image add up to GBs).
    """
    missing = [n for n in art.inputs if n not in feeds]
    if missing:
        raise GoldenError(f"no value fed for graph input {missing[0]!r}")
    env: dict[str, torch.Tensor] = {n: _feed(art, n, feeds[n]) for n in art.inputs}
    events: dict[str, dict[str, int]] = {}
    last_use = {t: i for i, op in enumerate(art.ops) for t in op.inputs}
    for i, op in enumerate(art.ops):
        fn = OPS.get(op.op)
        if fn is None:
            raise GoldenError(f"op {op.name}: unknown op type {op.op!r}")
        for t in op.inputs:
            if t not in env:
                raise GoldenError(f"op {op.name}: input tensor {t!r} is not available (graph order)")
        if op.op in ARITY and len(op.inputs) != ARITY[op.op]:
            raise GoldenError(f"op {op.name}: {op.op} takes {ARITY[op.op]} inputs")
        ctx = OpContext(art, op, force_ordered=force_ordered)
        outs = fn(ctx, [env[t] for t in op.inputs])
        if len(outs) != len(op.outputs):
            raise GoldenError(f"op {op.name}: produced {len(outs)} outputs, graph declares {len(op.outputs)}")
        for name, value in zip(op.outputs, outs):
            spec = ctx.spec(name)
            if value.shape[2] != spec.channels:
                raise GoldenError(f"op {op.name}: output {name!r} has {value.shape[2]} channels, "
                                  f"the graph declares {spec.channels}")
            if name in env:
                raise GoldenError(f"op {op.name}: tensor {name!r} is produced twice")
            env[name] = value.contiguous()
        events[op.name] = dict(ctx.events)
        if not keep_tensors:
            for t in set(op.inputs):
                if last_use[t] == i and t not in art.outputs:
                    del env[t]
    kept = env.items() if keep_tensors else ((n, env[n]) for n in art.outputs)
    tensors = {name: _to_numpy(art, name, t) for name, t in kept}
    return GoldenRun(tensors=tensors, events=events)


def run_golden(art, image_uint8_HWC: np.ndarray, *, force_ordered: bool = False,
               keep_tensors: bool = True) -> GoldenRun:
    """Run an artifact whose single graph input is an image on one uint8 H×W×C image
    (``keep_tensors`` as :func:`execute`)."""
    if len(art.inputs) != 1 or art.tensors[art.inputs[0]].kind != "image":
        raise GoldenError("run_golden needs an artifact with exactly one image input; use execute() otherwise")
    return execute(art, {art.inputs[0]: image_uint8_HWC}, force_ordered=force_ordered, keep_tensors=keep_tensors)


__all__ = ["GoldenRun", "GoldenError", "GoldenOverflowError", "execute", "run_golden", "EVENT_KEYS", "OPS"]
