"""Golden in bands of rows with exact halos: any image size in bounded memory (docs/golden.md).

The image is fed in bands of ``band_rows`` rows. After each band every op, in
graph order, computes all the output rows its inputs now allow; the input rows it
reads (its receptive field in rows, the *halo*) are kept from earlier bands in a
line buffer per tensor, trimmed to the rows a consumer will still read. Every
output row of every op is computed exactly once, from exactly the rows the
unbanded op reads (padding is decided against the whole tensor's height), so the
tensors are the unbanded ones and so are the event counters, which are sums over
output elements.

Ops that are not local — the global pools of IMDN's channel attention
(``mean_pool``, ``std_pool``) — need their whole input, and everything after them
needs their result. The graph is therefore cut into passes at the pools: the
*band plan* of ``intsim run`` (:func:`intsim.band_plan.plan`, a fact about the graph,
shared as the file format is; none of intsim's arithmetic is). A pool's input is
materialized in full as compact integers during the pass that produces it; the
pool (two passes over it for ``std_pool``: the mean first, then the deviations)
and the 1×1 ops on pooled values run once; the next pass streams the ops that
need them. Tensors a later pass reads are materialized too and dropped after their
last pass.

Row maps (which input rows an output row reads) are golden's own, from
docs/arithmetic.md §5.1, §5.5, §6.8–§6.10.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from golden.numerics import GoldenError
from golden.ops.bicubic import taps as bicubic_taps
from golden.ops.stream import bilinear_taps, pad_rows
from intsim.band_plan import GLOBAL_OPS, NoProgress, band_steps, pass_streams, plan as band_plan

ROW_LOCAL_OPS = frozenset({"image_in", "image_out", "encode", "add", "concat", "split", "relu", "leaky_relu",
                           "prelu", "mul", "lut", "clamp"})
CONV_OPS = frozenset({"conv2d", "conv_transpose2d"})
UPSAMPLE_OPS = frozenset({"pixel_shuffle", "upsample_nearest"})
#: float64 elements of one band of the widest tensor when ``band_rows`` is not given (16 MiB)
BAND_ELEMENTS = 1 << 21

#: emit(tensor, full shape, first row, rows as storage integers): called in row order for kept tensors
Emit = Callable[[str, tuple, int, np.ndarray], None]


def _pair(v, default) -> tuple[int, int]:
    v = default if v is None else v
    if np.ndim(v) == 0:
        return int(v), int(v)
    return int(v[0]), int(v[1])


def _conv_axis(op, axis: int) -> tuple[int, int, int, int, int]:
    """(kernel, stride, padding, dilation, output padding) of a conv along ``axis`` (0 rows, 1 columns)."""
    a = op.attrs
    return (int(a["kernel"][axis]), _pair(a.get("stride"), 1)[axis], _pair(a.get("padding"), 0)[axis],
            _pair(a.get("dilation"), 1)[axis], _pair(a.get("output_padding"), 0)[axis])


def heights(art, h: int, w: int) -> dict[str, tuple[int, int]]:
    """``tensor → (H, W)`` for an ``h × w`` input image (pooled tensors 1×1), by §5.1, §5.5, §6.8–§6.10."""
    hw: dict[str, tuple[int, int]] = {art.inputs[0]: (h, w)}
    for op in art.ops:
        size = list(hw[op.inputs[0]])
        if op.op in GLOBAL_OPS:
            size = [1, 1]
        elif op.op in CONV_OPS:
            for ax in (0, 1):
                k, s, p, d, e = _conv_axis(op, ax)
                if op.op == "conv2d":
                    size[ax] = (size[ax] + 2 * p - d * (k - 1) - 1) // s + 1
                else:
                    size[ax] = (size[ax] - 1) * s - 2 * p + k + e
        elif op.op in UPSAMPLE_OPS or op.op in ("upsample_bilinear", "upsample_bicubic"):
            size = [v * int(op.attrs["factor"]) for v in size]
        elif op.op == "pad":
            size = [v + 2 * int(p) for v, p in zip(size, op.attrs["padding"])]
        for t in op.outputs:
            hw[t] = (size[0], size[1])
    return hw


def row_needs(op, in_h: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output row ``o``: the input rows ``[lo[o], hi[o])`` it reads (``lo = in_h, hi = 0``: none)."""
    o = np.arange(out_h, dtype=np.int64)
    if op.op in ROW_LOCAL_OPS:
        return o.copy(), o + 1
    if op.op in UPSAMPLE_OPS:
        r = int(op.attrs["factor"])
        return o // r, o // r + 1
    if op.op == "upsample_bilinear":
        i0, i1, _, _ = (np.asarray(v, dtype=np.int64) for v in bilinear_taps(in_h, int(op.attrs["factor"])))
        return np.minimum(i0, i1), np.maximum(i0, i1) + 1
    if op.op == "upsample_bicubic":
        idx = np.asarray(bicubic_taps(in_h, int(op.attrs["factor"]), int(op.attrs["tap_bits"]))[0], dtype=np.int64)
        return idx.min(axis=1), idx.max(axis=1) + 1
    if op.op == "pad":
        src = pad_rows(str(op.attrs["mode"]), in_h, int(op.attrs["padding"][0]))
        return src, src + 1
    if op.op in CONV_OPS:
        k, s, p, d, _ = _conv_axis(op, 0)
        t = np.arange(k, dtype=np.int64)[None, :]
        if op.op == "conv2d":
            rows = o[:, None] * s - p + t * d
            valid = (rows >= 0) & (rows < in_h)
        else:  # §5.5: output o reads input (o + p − t)/s where that is an integer in range
            j = o[:, None] + p - t
            rows = j // s
            valid = (j % s == 0) & (rows >= 0) & (rows < in_h)
        lo = np.where(valid, rows, in_h).min(axis=1)
        hi = np.where(valid, rows + 1, 0).max(axis=1)
        return lo, hi
    raise GoldenError(f"op {op.name!r}: no row map for op type {op.op!r}")


class _Need:
    """Row dependency of one (op, spatial input): prefix max of ``hi``, suffix min of ``lo``."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.lo, self.hi = lo, hi
        self.pre_hi = np.concatenate([[0], np.maximum.accumulate(hi)]) if hi.size else np.zeros(1, np.int64)
        tail = np.minimum.accumulate(lo[::-1])[::-1] if lo.size else np.zeros(0, np.int64)
        self.suf_lo = np.concatenate([tail, [np.iinfo(np.int64).max]])

    def producible(self, avail: int) -> int:
        """Largest n such that output rows [0, n) read only input rows < avail."""
        return int(np.searchsorted(self.pre_hi, avail, side="right")) - 1

    def window(self, a: int, b: int) -> tuple[int, int]:
        lo, hi = int(self.lo[a:b].min()), int(self.hi[a:b].max())
        return (lo, hi) if hi > lo else (lo, lo)


def default_band_rows(art, h: int, w: int) -> int:
    """Input rows per band: as many as keep a band of the widest tensor within :data:`BAND_ELEMENTS` float64
    elements. Even a small image runs in bands: one band of whole-image float64 tensors fragments the heap
    (IMDN ×4 on a 128×128 image, measured: 1024 MiB peak RSS as one band, 541 MiB in 32-row bands, the
    same CPU time)."""
    hw = heights(art, h, w)
    per_row = max(hw[t][1] * art.tensors[t].channels * max(1, hw[t][0]) / max(1, h) for t in hw)
    return max(1, min(h, int(BAND_ELEMENTS // max(1.0, per_row))))


class _Lines:
    """The line buffer of one tensor: its bands as produced (first row, rows), oldest first.

    A window inside one band is a view of it; only a window across bands is copied (a conv's halo),
    and a band is dropped when no consumer reads its rows any more (at most one band per tensor stays
    pinned by a partly read band)."""

    def __init__(self):
        self.bands: list[tuple[int, torch.Tensor]] = []

    def append(self, y0: int, rows: torch.Tensor) -> None:
        if self.bands and self.bands[-1][0] + self.bands[-1][1].shape[0] != y0:
            raise GoldenError(f"bands: rows from {y0} do not continue the line buffer")
        self.bands.append((y0, rows))

    def trim(self, keep: int) -> None:
        """Drop every band that ends at or before row ``keep``."""
        while self.bands and self.bands[0][0] + self.bands[0][1].shape[0] <= keep:
            self.bands.pop(0)

    def rows(self, name: str, lo: int, hi: int) -> torch.Tensor:
        """Rows ``[lo, hi)`` (a view when they lie in one band)."""
        first = self.bands[0][0] if self.bands else 0
        last = self.bands[-1][0] + self.bands[-1][1].shape[0] if self.bands else 0
        if hi <= lo:
            return self.bands[0][1][:0] if self.bands else torch.empty(0)
        if lo < first or hi > last:
            raise GoldenError(f"bands: rows [{lo}, {hi}) of {name!r} are not in its line buffer [{first}, {last})")
        parts = [r[max(lo, y0) - y0:min(hi, y0 + r.shape[0]) - y0] for y0, r in self.bands
                 if y0 < hi and y0 + r.shape[0] > lo]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class BandRun:
    """One image through the graph in bands. ``run_op(ctx, ins)`` computes an op on input windows
    (``ctx.band``/``ctx.windows`` set), ``to_ints(name, t)`` converts float64 rows to checked storage
    integers of ``dtypes[name]``, ``emit`` receives the rows of the tensors in ``keep``."""

    def __init__(self, art, image: np.ndarray, contexts: dict, run_op, to_ints, dtypes: dict, emit: Emit,
                 keep: set[str], band_rows: int | None):
        self.art, self.ctx, self.run_op, self.to_ints, self.emit, self.keep = art, contexts, run_op, to_ints, emit, keep
        self.dtypes = dtypes
        h, w = image.shape[:2]
        self.band_rows = int(band_rows) if band_rows else default_band_rows(art, h, w)
        if self.band_rows < 1:
            raise GoldenError(f"band_rows must be ≥ 1, got {band_rows}")
        self.plan = band_plan(art)
        self.hw = heights(art, h, w)
        self.ch = {t: art.tensors[t].channels for t in art.tensors}
        inp = art.inputs[0]
        self.full: dict[str, np.ndarray] = {inp: image}  # materialized tensors (storage integers) and the image
        self.glob: dict[str, torch.Tensor] = {}
        self.needs: dict[tuple[str, int], _Need] = {}
        for op in art.ops:
            if self.plan.is_global[op.outputs[0]]:
                continue
            for j, t in enumerate(op.inputs):
                if not self.plan.is_global[t]:
                    self.needs[(op.name, j)] = _Need(*row_needs(op, self.hw[t][0], self.hw[op.outputs[0]][0]))
        if inp in keep:
            emit(inp, image.shape, 0, image)

    def _shape(self, t: str) -> tuple[int, int, int]:
        return (*self.hw[t], self.ch[t])

    def _window(self, t: str, lo: int, hi: int) -> torch.Tensor:
        return torch.from_numpy(self.full[t][lo:hi].astype(np.float64))

    def _global(self, op) -> None:
        ins = [self.glob[t] if self.plan.is_global[t] else self.full[t] for t in op.inputs]
        ctx = self.ctx[op.name]
        ctx.band, ctx.windows = None, None
        for t, v in zip(op.outputs, self.run_op(ctx, ins)):
            self.glob[t] = v
            if t in self.keep:
                self.emit(t, tuple(v.shape), 0, self.to_ints(t, v))

    def run(self) -> None:
        for p in range(len(self.plan.pass_ops)):
            for op in self.plan.global_ops[p]:
                self._global(op)
            if self.plan.pass_ops[p]:
                self._pass(p)
            for t in list(self.full):  # drop materialized tensors no later pass reads
                if t in self.plan.last_pass and self.plan.last_pass[t] <= p:
                    del self.full[t]

    def _pass(self, p: int) -> None:
        P, ops = self.plan, self.plan.pass_ops[p]
        produced = {t for op in ops for t in op.outputs}
        consumers, sources = pass_streams(ops, P.is_global)
        for t in sources:
            if t not in self.full:
                raise GoldenError(f"bands: tensor {t!r} needed in pass {p} was not materialized")
        for t in produced:
            if t in P.materialize:
                self.full[t] = np.empty(self._shape(t), dtype=self.dtypes[t])
        buf: dict[str, _Lines] = {}  # line buffers
        try:
            for op, a, n, op_done in band_steps(ops, self.hw, sources, self.needs, P.is_global, self.band_rows):
                self._op_rows(op, a, n, buf, consumers)
                for t in op.inputs:  # drop the bands no consumer reads any more
                    if t in buf:
                        buf[t].trim(min(int(self.needs[(c.name, j)].suf_lo[op_done[c.name]])
                                        for c, j in consumers[t]))
        except NoProgress as e:
            raise GoldenError(f"bands: pass {p} {e}") from None

    def _op_rows(self, op, a: int, n: int, buf: dict, consumers: dict) -> None:
        """Output rows [a, n) of ``op``: read input windows, compute, store, emit."""
        P = self.plan
        ins, wins = [], []
        for j, t in enumerate(op.inputs):
            if P.is_global[t]:
                ins.append(self.glob[t])
                wins.append(None)
                continue
            lo, hi = self.needs[(op.name, j)].window(a, n)
            if t in self.full:
                ins.append(self._window(t, lo, hi))
            else:
                ins.append(buf[t].rows(t, lo, hi))
            wins.append((lo, self.hw[t][0]))
        ctx = self.ctx[op.name]
        ctx.band, ctx.windows = (a, n), wins
        for t, v in zip(op.outputs, self.run_op(ctx, ins)):
            if v.shape[0] != n - a:
                raise GoldenError(f"op {op.name}: produced {v.shape[0]} rows of {t!r}, expected {n - a}")
            ints = None
            if t in P.materialize or t in self.keep:
                ints = self.to_ints(t, v)
            if t in P.materialize:
                self.full[t][a:n] = ints
            if t in self.keep:
                self.emit(t, self._shape(t), a, ints)
            if t in consumers and t not in P.materialize:
                buf.setdefault(t, _Lines()).append(a, v)


__all__ = ["BandRun", "heights", "row_needs", "default_band_rows"]
