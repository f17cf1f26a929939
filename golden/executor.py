"""Golden executor: an artifact run as float64 fake-quant in torch (docs/arithmetic.md).

An implementation of the arithmetic specification independent of ``intsim``'s
integer engine: every op evaluates its *real form* on exact float64 dyadic
values (codes are dequantized to reals, weights to ``w·m_w·2^-k_w``, convs are
float64 matrix products, exact by the 2^53 argument of :mod:`golden.ops.conv`), then rounds once and applies the overflow
policy on floats. Only the file format (``intsim.artifact``) is shared.

``stream(art, feeds, emit, keep=…)`` hands each kept tensor to ``emit`` as it is
produced (in bands of rows, :mod:`golden.bands`) and returns the per-op event
counts ``acc_overflow``, ``stream_overflow``, ``saturations`` (§7);
``run_golden(art, image)`` collects every tensor of the graph in memory as
integers (streams ``X`` and codes as int64, images uint8) for small images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from golden.bands import BandRun, Emit
from golden.numerics import F64, GoldenError, GoldenOverflowError, extremes, signed_bounds
from golden.ops import bicubic
from golden.ops import conv as conv_ops
from golden.ops import stream as S
from golden.ops.codes import code_tables, encode
from golden.ops.context import OpContext
from intsim.golden_dir import storage_dtypes

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
    "lut": S.lut,
    "mul": S.mul,
}

ARITY = {"add": 2, "mul": 2}


def _feed(art, name: str, value: np.ndarray, as_image: bool = False) -> np.ndarray:
    """A graph input, validated: HWC uint8 (``as_image``) or int64."""
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
    if as_image:
        return np.ascontiguousarray(a)
    a = a.astype(np.int64)
    if spec.kind == "stream":
        lo, hi = signed_bounds(art.numerics.stream_bits)
        if a.size and (a.min() < lo or a.max() > hi):
            raise GoldenError(f"input {name!r}: values outside the {art.numerics.stream_bits}-bit stream range")
    if spec.kind == "codes":
        n = code_tables(spec.codebook).n
        if a.size and (a.min() < 0 or a.max() >= n):
            raise GoldenError(f"input {name!r}: codes outside [0, {n})")
    return a


_TORCH_INT = {"uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
              "int64": torch.int64}


def to_ints(art, name: str, t: torch.Tensor, dtype: str) -> np.ndarray:
    """float64 → storage integers (``dtype``), asserting every value is an exact integer in range.

    One min/max pass bounds the values (NaN fails it), one conversion, and one comparison back
    proves every value was an integer (a fraction would not survive the round trip)."""
    if t.dtype != F64:
        raise AssertionError(f"golden tensor {name!r} is {t.dtype}, expected float64")
    if t.numel():
        lo, hi = extremes(t)
        info = np.iinfo(dtype)
        if not (lo >= info.min and hi <= info.max):
            what = "image" if art.tensors[name].kind == "image" else "tensor"
            raise AssertionError(f"golden {what} {name!r} holds values [{lo}, {hi}] outside {dtype}")
    a = t.to(_TORCH_INT[dtype])
    if t.numel() and not torch.equal(a.to(F64), t):
        raise AssertionError(f"golden tensor {name!r} holds a non-integer value")
    return a.numpy()


def feed_image(art, name: str, image: np.ndarray) -> np.ndarray:
    """An image for graph input ``name``, validated: contiguous uint8 H×W×C (a 2-D image gets C = 1)."""
    return _feed(art, name, image, as_image=True)


def _run_op(ctx: OpContext, ins: list) -> list:
    op = ctx.op
    fn = OPS.get(op.op)
    if fn is None:
        raise GoldenError(f"op {op.name}: unknown op type {op.op!r}")
    if op.op in ARITY and len(op.inputs) != ARITY[op.op]:
        raise GoldenError(f"op {op.name}: {op.op} takes {ARITY[op.op]} inputs")
    outs = fn(ctx, ins)
    if len(outs) != len(op.outputs):
        raise GoldenError(f"op {op.name}: produced {len(outs)} outputs, graph declares {len(op.outputs)}")
    for name, value in zip(op.outputs, outs):
        spec = ctx.spec(name)
        if value.shape[2] != spec.channels:
            raise GoldenError(f"op {op.name}: output {name!r} has {value.shape[2]} channels, "
                              f"the graph declares {spec.channels}")
    if op.op == "split":  # channel views: each consumer reads or copies them as it needs (a concat part, a
        return list(outs)  # conv's padded copy, an encoder's flattening), so no copy here
    return [v.contiguous() for v in outs]


def _check_graph(art) -> None:
    seen = set(art.inputs)
    for op in art.ops:
        if op.op not in OPS:
            raise GoldenError(f"op {op.name}: unknown op type {op.op!r}")
        for t in op.inputs:
            if t not in seen:
                raise GoldenError(f"op {op.name}: input tensor {t!r} is not available (graph order)")
        for t in op.outputs:
            if t in seen:
                raise GoldenError(f"op {op.name}: tensor {t!r} is produced twice")
            seen.add(t)


def stream(art, feeds: dict[str, np.ndarray], emit: Emit, *, keep=None, force_ordered: bool = False,
           band_rows: int | None = None) -> dict[str, dict[str, int]]:
    """Run ``art`` on ``feeds`` (one HWC array per graph input); return the per-op events.

    Every tensor in ``keep`` (default: all) is handed to ``emit(name, full shape, first row, rows)``
    as storage integers (:func:`intsim.golden_dir.storage_dtypes`), in row order, as it is produced,
    and not kept here. A graph with one image input runs in bands of ``band_rows`` input rows
    (:mod:`golden.bands`; default: whole tensors up to about 16 MiB of float64 per band), any other
    graph on whole tensors. ``force_ordered``: as :func:`execute`.
    """
    missing = [n for n in art.inputs if n not in feeds]
    if missing:
        raise GoldenError(f"no value fed for graph input {missing[0]!r}")
    _check_graph(art)
    keep = set(art.tensors) if keep is None else set(keep)
    dtypes = storage_dtypes(art)
    contexts = {op.name: OpContext(art, op, force_ordered=force_ordered) for op in art.ops}
    conv_ints = lambda name, t: to_ints(art, name, t, dtypes[name])  # noqa: E731
    if len(art.inputs) == 1 and art.tensors[art.inputs[0]].kind == "image":
        image = _feed(art, art.inputs[0], feeds[art.inputs[0]], as_image=True)
        BandRun(art, image, contexts, _run_op, conv_ints, {t: np.dtype(d) for t, d in dtypes.items()}, emit,
                keep, band_rows).run()
    else:
        _run_whole(art, feeds, contexts, conv_ints, emit, keep)
    return {op.name: dict(contexts[op.name].events) for op in art.ops}


def _run_whole(art, feeds, contexts, conv_ints, emit: Emit, keep: set[str]) -> None:
    env: dict[str, torch.Tensor] = {}
    for n in art.inputs:
        env[n] = torch.from_numpy(_feed(art, n, feeds[n]).astype(np.float64))
        if n in keep:
            emit(n, tuple(env[n].shape), 0, conv_ints(n, env[n]))
    last_use = {t: i for i, op in enumerate(art.ops) for t in op.inputs}
    for i, op in enumerate(art.ops):
        for name, value in zip(op.outputs, _run_op(contexts[op.name], [env[t] for t in op.inputs])):
            env[name] = value
            if name in keep:
                emit(name, tuple(value.shape), 0, conv_ints(name, value))
        for t in set(op.inputs):
            if last_use[t] == i:
                del env[t]


class _Collect:
    """An ``emit`` that assembles whole tensors (tests and evaluation: small images)."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {}

    def __call__(self, name, shape, y0, rows):
        self.parts.setdefault(name, []).append(np.array(rows))

    def tensors(self, art) -> dict[str, np.ndarray]:
        out = {}
        for name in [*art.inputs, *(t for op in art.ops for t in op.outputs)]:
            if name in self.parts:
                a = np.concatenate(self.parts[name]) if len(self.parts[name]) > 1 else self.parts[name][0]
                out[name] = a if art.tensors[name].kind == "image" else a.astype(np.int64)
        return out


def execute(art, feeds: dict[str, np.ndarray], *, force_ordered: bool = False,
            keep_tensors: bool = True, band_rows: int | None = None) -> GoldenRun:
    """Run ``art`` on ``feeds`` (one array per graph input, HWC) and return the tensors in memory.

    ``force_ordered`` makes every conv emulate its accumulators in hardware order
    even when §5.4 proves it cannot overflow (the result must not change; tests).
    ``keep_tensors=False`` returns only the graph outputs. ``band_rows``: see :func:`stream`
    (the result does not depend on it). For large images write with :func:`stream` instead.
    """
    sink = _Collect()
    events = stream(art, feeds, sink, keep=None if keep_tensors else set(art.outputs),
                    force_ordered=force_ordered, band_rows=band_rows)
    return GoldenRun(tensors=sink.tensors(art), events=events)


def run_golden(art, image_uint8_HWC: np.ndarray, *, force_ordered: bool = False,
               keep_tensors: bool = True, band_rows: int | None = None) -> GoldenRun:
    """Run an artifact whose single graph input is an image on one uint8 H×W×C image
    (``keep_tensors``, ``band_rows`` as :func:`execute`)."""
    if len(art.inputs) != 1 or art.tensors[art.inputs[0]].kind != "image":
        raise GoldenError("run_golden needs an artifact with exactly one image input; use execute() otherwise")
    return execute(art, {art.inputs[0]: image_uint8_HWC}, force_ordered=force_ordered, keep_tensors=keep_tensors,
                   band_rows=band_rows)


__all__ = ["GoldenRun", "GoldenError", "GoldenOverflowError", "execute", "run_golden", "stream", "EVENT_KEYS",
           "OPS"]
