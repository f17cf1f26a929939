"""Run a whole artifact on a large image in horizontal bands, bit-exactly and with bounded memory.

:func:`run_tiled` produces exactly what :func:`intsim.engine.run` produces
(graph outputs and every counter of arithmetic.md §7), but never holds a whole
intermediate tensor unless it has to.

How: row streaming with line buffers
------------------------------------
Every spatial op maps output rows to the input rows it reads (its receptive
field in rows): the identity for element-wise ops, the tap tables of §5.1/§5.5
for convolutions (stride, padding, dilation, transposed), ``y // r`` for pixel
shuffle and nearest upsampling, ``i0(y), i1(y)`` of §6.10 for bilinear
upsampling. The image is fed in bands of ``tile_rows`` rows; after each band
every op, in graph order, computes all the output rows its inputs now allow,
reading input windows that include the halo rows its receptive field needs.
Halo rows are *kept* from the previous band (a line buffer per tensor, trimmed
to the rows some consumer will still read) rather than recomputed, so every
output row of every op is computed exactly once: the outputs are the untiled
ones by construction (every op is a function of the rows it reads), and so are
the counters, which are sums over output elements (MACs of a conv's output
rows, overflow events, encoder saturations and histograms).

Global pooling (``mean_pool``, ``std_pool``)
-------------------------------------------
A global pool needs its whole input, and everything downstream of it needs the
pool's result, so a single streaming pass is impossible. The graph is cut into
*passes*: pass 0 streams the ops that do not depend on any pool; the input of
every pool is **materialized** in full (as a compact integer array) during the
pass that produces it; the pool (and the small 1×1 ops that only read pooled
values) then runs once on the full tensor, exactly as untiled; the next pass
streams the ops that needed it. Tensors that a later pass reads are
materialized too and freed after their last pass. So pooling is computed in
an earlier pass, never refused; the memory bound is then the materialized
tensors (e.g. IMDN: its block outputs and each CCA's input), not the whole
network's intermediates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intsim import allocator
from intsim import op_dispatch as D
from intsim.artifact import Artifact, OpSpec
from intsim.band_plan import (  # noqa: F401  (GLOBAL_OPS, TilePlan: re-exported; the pass cut is shared with golden)
    GLOBAL_OPS, NoProgress, TilePlan, band_steps, pass_streams, plan)
from intsim.kernels import conv as K
from intsim.ops import bicubic as bicubic_ops
from intsim.ops import conv as conv_ops
from intsim.ops import pad as pad_ops
from intsim.ops import no_events
from intsim.ops.conv_params import ConvParams
from intsim.ops.opdef import OPS, ops_with_geometry
from intsim.ops.resample import bilinear_taps, upsample_bilinear_rows
from intsim.run_io import TOTAL_KEYS, RunResult, check_image, counter_entry

# op classes of the row maps, from the op registry (intsim/ops/opdef.py)
ROW_LOCAL_OPS = ops_with_geometry("same")  # output row y reads input row y
CONV_OPS = ops_with_geometry("conv") | ops_with_geometry("conv_transpose")
UPSAMPLE_OPS = frozenset(n for n in ops_with_geometry("upsample") if OPS[n].geometry.extra_taps == 0)  # y // r


# --------------------------------------------------------------------------
# shapes and row maps


def axis_out_size(op: OpSpec, size, ax: int):
    """Output size along axis ``ax`` (0 rows, 1 columns) of ``op`` for an input of ``size`` pixels: the op
    registry's per-axis size function (:meth:`intsim.ops.opdef.OpDef.out_size`).

    ``size`` is an int or an int64 array of candidate sizes (evaluated element-wise); every
    formula is non-decreasing in ``size`` (strides and factors are >= 1). Global pools give 1.
    """
    return OPS[op.op].out_size(op, size, ax)


def infer_heights(art: Artifact, h: int, w: int) -> dict[str, tuple[int, int]]:
    """``tensor → (H, W)`` for an input image of ``h × w`` (globals are 1×1)."""
    hw: dict[str, tuple[int, int]] = {art.inputs[0]: (h, w)}
    for op in art.ops:
        H, W = hw[op.inputs[0]]
        out = (axis_out_size(op, H, 0), axis_out_size(op, W, 1))
        for t in op.outputs:
            hw[t] = out
    return hw


def _row_needs(art: Artifact, op: OpSpec, in_h: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output row ``o``: ``(lo[o], hi[o])``, the input rows ``[lo, hi)`` it reads
    (``lo = in_h, hi = 0`` when it reads none)."""
    o = np.arange(out_h, dtype=np.int64)
    d = OPS[op.op]
    if op.op in ROW_LOCAL_OPS:
        return o.copy(), o + 1
    if op.op in UPSAMPLE_OPS:
        r = d.attr(op, "factor")
        return o // r, o // r + 1
    if op.op == "upsample_bicubic":
        idx, _ = bicubic_ops.bicubic_taps(in_h, d.attr(op, "factor"), d.attr(op, "tap_bits"))
        return idx.min(axis=1), idx.max(axis=1) + 1
    if op.op == "pad":  # one source row per output row (§5.8), not monotonic at the top edge
        ph = d.attr(op, "padding")[0]
        src = pad_ops.pad_index(in_h, ph, ph, d.attr(op, "mode"))
        return src, src + 1
    if op.op == "upsample_bilinear":
        i0, i1, _, _ = bilinear_taps(in_h, d.attr(op, "factor"))
        return np.minimum(i0, i1), np.maximum(i0, i1) + 1
    if op.op in CONV_OPS:
        p = ConvParams.of(op.attrs)
        kh, sh, ph = p.kernel[0], p.stride[0], p.padding[0]
        if op.op == "conv2d":
            table = K.conv2d_tap_table(in_h, kh, sh, ph, p.dilation[0])
        else:
            table = K.conv_transpose2d_tap_table(in_h, kh, sh, ph, p.output_padding[0])
        valid = table >= 0
        lo = np.where(valid, table, in_h).min(axis=1)
        hi = np.where(valid, table + 1, 0).max(axis=1)
        return lo.astype(np.int64), hi.astype(np.int64)
    raise ValueError(f"op {op.name!r}: no row map for op type {op.op!r}")


@dataclass
class _Need:
    """Row dependency of one (op, spatial input): prefix max of ``hi`` and suffix min of ``lo``."""

    lo: np.ndarray
    hi: np.ndarray
    pre_hi: np.ndarray = field(init=False)  # pre_hi[n] = max(hi[:n]), pre_hi[0] = 0
    suf_lo: np.ndarray = field(init=False)  # suf_lo[n] = min(lo[n:]), suf_lo[out_h] = in_h (nothing)
    in_h: int = 0

    def __post_init__(self):
        self.pre_hi = np.concatenate([[0], np.maximum.accumulate(self.hi)]) if self.hi.size else np.zeros(1, np.int64)
        tail = np.minimum.accumulate(self.lo[::-1])[::-1] if self.lo.size else np.zeros(0, np.int64)
        self.suf_lo = np.concatenate([tail, [np.iinfo(np.int64).max]])

    def producible(self, avail: int) -> int:
        """Largest n such that output rows [0, n) read only input rows < avail."""
        return int(np.searchsorted(self.pre_hi, avail, side="right")) - 1

    def window(self, a: int, b: int) -> tuple[int, int]:
        lo = int(self.lo[a:b].min())
        hi = int(self.hi[a:b].max())
        return (lo, hi) if hi > lo else (lo, lo)


# --------------------------------------------------------------------------
# the plan


# --------------------------------------------------------------------------
# compact storage of materialized tensors


def store_dtype(art: Artifact, t: str) -> np.dtype:
    """numpy dtype a materialized tensor is stored in between bands."""
    spec = art.tensors[t]
    if spec.kind == "image":
        return np.dtype(np.uint8)
    if spec.kind == "codes":
        n = spec.codebook.num_codes
        return np.dtype(np.uint8 if n <= 256 else np.int16 if n <= 1 << 15 else np.int32)
    return art.numerics.stream_dtype


def _as_engine(art: Artifact, t: str, a: np.ndarray) -> np.ndarray:
    """A stored slice as the engine holds it: images uint8, streams and codes int64."""
    if art.tensors[t].kind == "image":
        return a
    return a.astype(np.int64)


# --------------------------------------------------------------------------
# the executor


class _Counters:
    """Per-op event sums, in the layout of :func:`intsim.engine.run`."""

    def __init__(self):
        self.ops: dict[str, dict] = {}

    def add(self, op: OpSpec, events: dict):
        e = self.ops.setdefault(op.name, {"op": op.op})
        if "macs" in events:
            m = e.setdefault("macs", {k: 0 for k in events["macs"]})
            for k, v in events["macs"].items():
                m[k] = m.get(k, 0) + int(v)
        for k in TOTAL_KEYS:
            e[k] = e.get(k, 0) + int(events.get(k, 0))
        if "code_histogram" in events:
            h = events["code_histogram"]
            old = e.get("code_histogram")
            e["code_histogram"] = [int(v) for v in h] if old is None else [a + int(b) for a, b in zip(old, h)]
        if "ordered" in events:
            e["ordered"] = events["ordered"]

    def result(self, art: Artifact, hw: dict, channels: dict) -> dict:
        ops: dict[str, dict] = {}
        totals = {"macs": 0, **{k: 0 for k in TOTAL_KEYS}}
        for op in art.ops:
            e = self.ops.get(op.name)
            if e is None:  # an op with an empty output never ran: zero events
                e = {"op": op.op, **{k: 0 for k in TOTAL_KEYS}}
            shapes = [[hw[t][0], hw[t][1], channels[t]] for t in op.outputs]
            ops[op.name] = counter_entry(op.op, e, shapes, totals)
        return {"ops": ops, "totals": totals}


class _Tiled:
    def __init__(self, art: Artifact, image: np.ndarray, tile_rows: int):
        self.art = art
        self.tile_rows = int(tile_rows)
        in_name = check_image(art, image)
        img = np.asarray(image)
        if img.ndim == 2:
            img = img[:, :, None]
        self.in_name = in_name
        self.plan = plan(art)
        self.hw = infer_heights(art, img.shape[0], img.shape[1])
        self.channels = {t: art.tensors[t].channels for t in art.tensors}
        self.full: dict[str, np.ndarray] = {in_name: np.ascontiguousarray(img)}  # materialized (and the image)
        self.glob: dict[str, np.ndarray] = {}  # 1×1 tensors
        self.counters = _Counters()
        self.needs: dict[tuple[str, int], _Need] = {}
        for op in art.ops:
            if self.plan.is_global[op.outputs[0]]:
                continue
            out_h = self.hw[op.outputs[0]][0]
            for j, t in enumerate(op.inputs):
                if not self.plan.is_global[t]:
                    lo, hi = _row_needs(art, op, self.hw[t][0], out_h)
                    self.needs[(op.name, j)] = _Need(lo, hi, in_h=self.hw[t][0])

    # ---- one op on a band of output rows
    def _conv(self, op: OpSpec, win: np.ndarray, win_y0: int, a: int, b: int):
        art = self.art
        at, p = op.attrs, ConvParams.of(op.attrs)
        if [int(k) for k in at["kernel"]] != list(art.array(op, "weight").shape[1:3]):
            raise ValueError(f"op {op.name!r}: attrs kernel {at['kernel']} != weight shape "
                             f"{art.array(op, 'weight').shape}")
        x, ev = conv_ops.conv_rows(
            win, win_y0, self.hw[op.inputs[0]][0], a, b, D.codebook_of(art, op.inputs[0]),
            art.array(op, "weight"), art.array(op, "w_mant"), art.array(op, "bias"), w_exp=at["w_exp"],
            f_out=D.stream_frac(art, op.outputs[0]), transposed=op.op == "conv_transpose2d",
            stride=p.stride, padding=p.padding, dilation=p.dilation, groups=p.groups,
            output_padding=p.output_padding, numerics=art.numerics, name=op.name,
            constants=D.conv_constants(art, op, op.op == "conv_transpose2d"))
        return [x], ev

    def _bilinear(self, op: OpSpec, win: np.ndarray, win_y0: int, a: int, b: int):
        D.same_frac(self.art, op)
        y, ev = upsample_bilinear_rows(win, win_y0, self.hw[op.inputs[0]][0], a, b,
                                       factor=OPS[op.op].attr(op, "factor"), mult=int(op.attrs["mult"]),
                                       shift=int(op.attrs["shift"]), numerics=self.art.numerics, name=op.name)
        return [y], ev

    def _compute(self, op: OpSpec, wins: list, a: int, b: int):
        """Output rows [a, b) of ``op`` from input windows ``(array, y0)`` (globals: (array, None))."""
        if op.op in CONV_OPS:
            (win, y0), = wins[:1]
            return self._conv(op, win, y0, a, b)
        if op.op == "upsample_bilinear":
            return self._bilinear(op, wins[0][0], wins[0][1], a, b)
        if op.op == "upsample_bicubic":
            win, y0 = wins[0]
            D.same_frac(self.art, op)
            y, ev = bicubic_ops.bicubic_rows(win, y0, self.hw[op.inputs[0]][0], a, b, factor=op.attrs["factor"],
                                             tap_bits=op.attrs["tap_bits"], numerics=self.art.numerics, name=op.name)
            return [y], ev
        if op.op == "pad":
            win, y0 = wins[0]
            ph, pw = OPS["pad"].attr(op, "padding")
            rows = pad_ops.pad_index(self.hw[op.inputs[0]][0], ph, ph, op.attrs["mode"])[a:b] - y0
            cols = pad_ops.pad_index(win.shape[1], pw, pw, op.attrs["mode"])
            return [np.ascontiguousarray(win[rows][:, cols])], no_events()
        if op.op in UPSAMPLE_OPS:
            win, y0 = wins[0]
            r = OPS[op.op].attr(op, "factor")
            outs, ev = D.OPS[op.op](self.art, op, [win])
            return [o[a - y0 * r:b - y0 * r] for o in outs], ev
        if op.op in ROW_LOCAL_OPS:
            ins = [w if y0 is None else w[a - y0:b - y0] for w, y0 in wins]
            return D.OPS[op.op](self.art, op, ins)
        raise ValueError(f"op {op.name!r}: op type {op.op!r} cannot be tiled")

    # ---- a pass
    def _trim(self, buf: dict, t: str, cons: list, op_done: dict) -> None:
        """Drop the rows of line buffer ``t`` below the lowest row a consumer still reads."""
        keep = min(int(self.needs[(c.name, j)].suf_lo[op_done[c.name]]) for c, j in cons)
        y0, rows = buf[t]
        if keep > y0:
            keep = min(keep, y0 + rows.shape[0])
            buf[t] = (keep, rows[keep - y0:].copy())  # a copy: a view would pin the whole band

    def _op_rows(self, op: OpSpec, a: int, n: int, buf: dict, consumers: dict) -> None:
        """Output rows [a, n) of ``op``: read input windows, compute, count, store."""
        art, P = self.art, self.plan
        wins = []
        for j, t in enumerate(op.inputs):
            if P.is_global[t]:
                wins.append((self.glob[t], None))
                continue
            lo, hi = self.needs[(op.name, j)].window(a, n)
            if t in self.full:
                wins.append((_as_engine(art, t, self.full[t][lo:hi]), lo))
            else:
                y0, rows = buf[t]
                if hi > lo and (lo < y0 or hi > y0 + rows.shape[0]):
                    raise RuntimeError(f"tiling: rows [{lo}, {hi}) of {t!r} are not in its line buffer "
                                       f"[{y0}, {y0 + rows.shape[0]})")
                wins.append((rows[lo - y0:hi - y0], lo))
        outs, ev = self._compute(op, wins, a, n)
        self.counters.add(op, ev)
        for t, v in zip(op.outputs, outs):
            if v.shape[0] != n - a or v.shape[2] != self.channels[t]:
                raise ValueError(f"op {op.name!r}: produced rows of shape {v.shape}, expected "
                                 f"{n - a} rows × {self.channels[t]} channels")
            if t in P.materialize:
                dst = self.full[t]
                if dst.dtype != v.dtype and v.size:
                    info = np.iinfo(dst.dtype)
                    if int(v.min()) < info.min or int(v.max()) > info.max:  # never for valid values
                        raise ValueError(f"tiling: tensor {t!r} holds values outside {dst.dtype}")
                dst[a:n] = v
            if t in consumers and t not in P.materialize:
                if t in buf:
                    y0, rows = buf[t]
                    buf[t] = (y0, np.concatenate([rows, v]))
                else:
                    buf[t] = (a, v)

    def _run_pass(self, p: int):
        art, P = self.art, self.plan
        for op in P.global_ops[p]:
            ins = [self.glob[t] if P.is_global[t] else _as_engine(art, t, self.full[t]) for t in op.inputs]
            outs, ev = D.OPS[op.op](art, op, ins)
            self.counters.add(op, ev)
            for t, v in zip(op.outputs, outs):
                self.glob[t] = v
        ops = P.pass_ops[p]
        if not ops:
            return
        produced_here = {t for op in ops for t in op.outputs}
        consumers, sources = pass_streams(ops, P.is_global)
        for t in sources:
            if t not in self.full:
                raise RuntimeError(f"tiling: tensor {t!r} needed in pass {p} was not materialized")
        # line buffers of tensors produced and consumed in this pass: (first row, rows)
        buf: dict[str, tuple[int, np.ndarray]] = {}
        for t in produced_here:
            if t in P.materialize:
                self.full[t] = np.empty((*self.hw[t], self.channels[t]), dtype=store_dtype(art, t))
        try:
            for op, a, n, op_done in band_steps(ops, self.hw, sources, self.needs, P.is_global, self.tile_rows):
                self._op_rows(op, a, n, buf, consumers)
                # trim this op's inputs to the rows some consumer will still read (frees the band early)
                for t in op.inputs:
                    if t in buf:
                        self._trim(buf, t, consumers[t], op_done)
        except NoProgress as e:
            raise RuntimeError(f"tiling: pass {p} {e}") from None
        # free materialized tensors no later pass reads
        for t in list(self.full):
            if t in P.last_pass and P.last_pass[t] <= p and t not in self.art.outputs:
                del self.full[t]

    def run(self) -> RunResult:
        allocator.tune_allocator_if_requested()  # process-wide: opt-in (intsim.allocator)
        P = self.plan
        for p in range(len(P.pass_ops)):
            self._run_pass(p)
        tensors = {}
        for t in self.art.outputs:
            if P.is_global[t]:
                tensors[t] = self.glob[t]
            else:
                tensors[t] = _as_engine(self.art, t, self.full[t])
        return RunResult(tensors=tensors, counters=self.counters.result(self.art, self.hw, self.channels))


def run_tiled(art: Artifact, image: np.ndarray, tile_rows: int = 32) -> RunResult:
    """Execute ``art`` on one image in horizontal bands of ``tile_rows`` input rows.

    Returns what ``engine.run(art, image, keep_tensors=False)`` returns: the graph
    outputs and identical counters, bit for bit. Intermediate tensors are held as
    line buffers (a band plus the halo rows the receptive fields need); global
    pools split the run into passes (their inputs are materialized in full, see
    the module docstring). Raises ``ValueError`` for an op type without a row map.
    """
    if int(tile_rows) < 1:
        raise ValueError(f"tile_rows must be >= 1, got {tile_rows}")
    return _Tiled(art, image, tile_rows).run()
