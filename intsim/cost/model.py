"""Cost of running an artifact on an accelerator: cycles, traffic and energy per layer.

``estimate_cost(art, counters_list, accel)`` combines

* the **artifact** (codebooks, weights, numerics): multiplier widths, accumulator count
  and width, rescale multipliers, true storage bits;
* the engine's **event counters** on real images (``intsim.engine.run(...).counters``):
  MACs per code segment (so the outlier fraction of each image feeds the two-region
  costs), and every op's output shape;
* the **accelerator** (:class:`~intsim.cost.accel.AcceleratorConfig`): a SCALE-Sim-like
  analytical model of the systolic array (:mod:`intsim.cost.systolic`), buffers, DRAM
  bandwidth, and an energy table (:mod:`intsim.cost.energy`).

Schemes (``scheme=``): ``"artifact"`` costs the artifact as it is (two-region codes,
``split`` or ``grid`` realization); ``"fp32"``, ``"W8A8"``, ``"W4A4"`` (any ``"W<b>A<b>"``)
cost the *same network* (same graph, shapes and MAC counts) with fp32 or uniform
integer quantization, for the comparison table. A uniform scheme's per-conv bits come
from the scheme, never from the artifact's widths (:mod:`intsim.cost.layer_policy`): with
``uniform_policy="follow"`` (default) the convs the method's layer policy keeps high
(head, upsampler, tail) run at ``max(8, b)`` bits, with ``"all"`` every conv at ``b``.

Modelling decisions (stated once here, repeated in the result's ``"model"`` entry):

* **Conv as GEMM** on the array, SCALE-Sim fold model (see :mod:`intsim.cost.systolic`);
  grouped convs run their groups one after another; a transposed conv is decomposed
  into ``stride²`` sub-pixel convs (``K = ⌈kh/sh⌉·⌈kw/sw⌉·Ci``). A product wider than the
  native multiplier takes ``⌈w/w_native⌉·⌈a/a_native⌉`` passes (cycles × passes).
  fp32 on the integer array: each product is its 24-bit significand product split over
  the native multipliers, ``⌈24/w_native⌉·⌈24/a_native⌉`` passes (so fp32 is never faster
  than int8); its energy is the table's fp32 multiply and add.
* **MAC energy** counts the products the engine counted (padding taps hold no code and
  are skipped); **cycles** count the full GEMM including padding taps (the array still
  spends the slot). Split: each product in segment ``s`` is a ``w_bits × index_bits(s)``
  multiply added into ``P_s``; each product in a segment with a non-zero origin also adds
  ``w`` into the offset accumulator ``Q_s``. Grid: one ``w_bits × grid_bits`` multiply and
  one accumulate per product, plus one LUT decode per code entering the array.
* **Rescale**: per conv output, one ``M_j × acc_j`` multiply per accumulator (widths: the
  largest stored multiplier and the accelerator's accumulator), one add per accumulator
  (the sum with the bias) and one rounding add. Encoders, ``image_in``/``image_out`` count
  as rescale too (requantization); other stream ops are "vector" work.
* **Memory**: layer-by-layer execution as in SCALE-Sim: every tensor leaves the chip
  (written once to DRAM by its producer, read by each consumer), except a tensor whose
  only consumer is a single-input element-wise or re-addressing op (``encode``, ``relu``,
  ``leaky_relu``, ``prelu``, ``sigmoid``, ``pixel_shuffle``, ``split``,
  ``upsample_nearest``, ``image_out``) or a binary ``add``/``mul`` of which it is the
  operand produced last and of the output's size (the residual add of a conv): that op is
  fused into its producer's output pipeline and reads only its other operand. So a
  conv → relu → encode chain writes the *codes* (true code bits) and nothing else,
  conv → pixel_shuffle → encode writes shuffled codes, and conv → add(skip) reads the
  skip and writes the sum. ``concat`` is a view: its producers write into their slices
  of its output (no traffic, no time).
  Tensor widths: images 8 bits, codes ``code_bits = ⌈log2 N⌉`` (artifact) or the
  uniform activation bits, streams ``stream_bits`` (fp32: 32 bits everywhere).
  A conv operand is re-fetched from DRAM once per revisit when the part the schedule
  revisits does not fit the usable part of its buffer (half, when double-buffered); os
  picks the cheaper of its two loop orders. ws/is partial sums (``n_acc ×
  accumulator_bits`` per output, so the split realization's extra accumulators cost
  buffer space) that do not fit the ofmap buffer make the schedule tile the streamed
  dimension (more fill/drain cycles, stationary operand reloaded per tile) rather than
  spill. SRAM energy counts fills, array-edge reads, writes and write-backs.
* **Time**: DRAM transfers overlap compute (double buffering), so a layer (with its fused
  followers) takes ``compute + max(0, dram − compute) + fill``, ``fill`` = the first
  fold's operands at DRAM bandwidth. Vector ops run on ``vector_lanes`` lanes; fused ones
  are hidden in their producer's time.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from intsim.artifact import Artifact, Codebook, OpSpec
from intsim.cost.accel import AcceleratorConfig
from intsim.cost.counters import check_counters
from intsim.cost.energy import EnergyModel
from intsim.cost.layer_policy import UNIFORM_POLICIES, uniform_layer_bits
from intsim.cost.systolic import (
    compute_cycles,
    first_fold_elements,
    map_gemm,
    mapping_efficiency,
    sram_accesses,
)

SCHEMA = "intsim-cost"
VERSION = 1
CATEGORIES = ("mac", "accumulate", "decode", "rescale", "vector", "sram", "dram")
CONV_OPS = ("conv2d", "conv_transpose2d")
FP32_SIGNIFICAND_BITS = 24  # an fp32 product on integer multipliers: the 24×24-bit significand product
# single-input ops a producer's output pipeline can apply on the fly (element-wise maths or
# pure address transforms): a tensor whose only consumer is one of them never leaves the chip
FUSABLE = frozenset({"encode", "pad", "relu", "clamp", "leaky_relu", "prelu", "sigmoid", "lut", "pixel_shuffle",
                     "split", "upsample_nearest", "image_out"})
# binary element-wise ops: the operand produced last (at the output's size) streams in from its
# producer's pipeline; the other operand is read from memory
BINARY_FUSABLE = frozenset({"add", "mul"})
# multi-input view: producers write straight into their slice of the output (no traffic, no cycles)
VIEW_OPS = frozenset({"concat"})
RESCALE_OPS = frozenset({"encode", "image_in", "image_out"})

MODEL_NOTES = [
    "conv = GEMM (M=Ho*Wo, K=kh*kw*Ci/g, N=Co/g) on the PE array, SCALE-Sim fold model, folds back to back",
    "os: folds*(T+R+C-2) cycles; ws/is: folds*(T+2R+C-2); passes multiply T when a product is wider than the native multiplier",
    "fp32 on the integer array: ceil(24/w_native)*ceil(24/a_native) passes (24-bit significand products); energy at the table's fp32 multiply/add",
    "MAC energy from the engine's counted products (padding taps skipped); cycles from the full GEMM (padding included)",
    "split: per product one w x index(s) multiply + one add into P_s, plus one add into Q_s when origin_s != 0",
    "grid: per product one w x grid_bits multiply + one add; one LUT decode per code entering the array",
    "rescale per conv output: one M_j x acc_j multiply and one add per accumulator, one rounding add",
    "layer-by-layer through DRAM; a tensor whose only consumer is encode/relu/clamp/leaky_relu/prelu/sigmoid/lut/pixel_shuffle/split/upsample_nearest/image_out, or the last-produced same-size operand of add/mul, is fused (stays on chip); concat is a view",
    "an operand is re-fetched from DRAM once per revisit when the revisited part does not fit the usable buffer; os takes the cheaper loop order",
    "ws/is partial sums (n_acc x accumulator_bits per output) that do not fit the ofmap buffer: the streamed dimension is tiled (fill/drain per tile), no spill",
    "time per fused group = compute + max(0, dram - compute) + first-fold fill at DRAM bandwidth",
]


# --------------------------------------------------------------------------
# schemes


@dataclass(frozen=True)
class Scheme:
    """``artifact`` | ``fp32`` | ``int`` (uniform ``W<w>A<a>``)."""

    kind: str
    weight_bits: int | None = None
    act_bits: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "int":
            return f"W{self.weight_bits}A{self.act_bits}"
        return self.kind


def parse_scheme(scheme: str | Scheme) -> Scheme:
    """``"artifact"``, ``"fp32"`` or ``"W<b>A<b>"`` (uniform integer, 2–16 bits)."""
    if isinstance(scheme, Scheme):
        return scheme
    s = str(scheme).strip()
    if s.lower() == "artifact":
        return Scheme("artifact")
    if s.lower() == "fp32":
        return Scheme("fp32")
    m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)", s)
    if m:
        w, a = int(m.group(1)), int(m.group(2))
        if not (2 <= w <= 16 and 2 <= a <= 16):
            raise ValueError(f"scheme {scheme!r}: uniform bits must be in 2..16")
        return Scheme("int", w, a)
    raise ValueError(f"unknown scheme {scheme!r}: expected 'artifact', 'fp32' or 'W<bits>A<bits>' (e.g. 'W8A8')")


# --------------------------------------------------------------------------
# small helpers


def range_bits(lo: int, hi: int) -> int:
    """Width of the narrowest integer format holding every value of ``[lo, hi]``:
    unsigned when ``lo ≥ 0``, else two's complement."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return max(1, hi.bit_length())
    return max(hi.bit_length() if hi > 0 else 0, (-lo - 1).bit_length()) + 1


def _signed_bits(max_abs: int) -> int:
    return abs(int(max_abs)).bit_length() + 1


def weight_bits(w: np.ndarray) -> int:
    """True (two's complement) width of an integer weight array."""
    if w.size == 0:
        return 1
    lo, hi = int(w.min()), int(w.max())
    return max(2, range_bits(min(lo, -1), max(hi, 0)))


def grid_bits_needed(cb: Codebook) -> int:
    """Signed bits of the largest ``|G(s,q)|``: the grid LUT width a codebook needs."""
    g = max(max(abs(s.origin + s.step * s.qmin), abs(s.origin + s.step * s.qmax)) for s in cb.segments)
    return _signed_bits(g)


def _valid_pairs_conv(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> int:
    o = np.arange(n_out, dtype=np.int64)[:, None]
    t = np.arange(k, dtype=np.int64)[None, :]
    pos = o * s - p + t * d
    return int(((pos >= 0) & (pos < n_in)).sum())


def _valid_pairs_convT(n_in: int, n_out: int, k: int, s: int, p: int) -> int:
    o = np.arange(n_out, dtype=np.int64)[:, None]
    t = np.arange(k, dtype=np.int64)[None, :]
    num = o + p - t
    ok = (num % s == 0) & (num >= 0) & (num // s < n_in)
    return int(ok.sum())


def _pair(v, default) -> tuple[int, int]:
    if v is None:
        v = default
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    return int(v[0]), int(v[1])


def _py(x: Any) -> Any:
    """Make a tree JSON-serialisable (numpy scalars → Python)."""
    if isinstance(x, dict):
        return {str(k): _py(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_py(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return _py(x.tolist())
    return x


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mean_tree(items: list):
    """Average numeric leaves across same-shaped trees; other leaves: the common value,
    else the list of values."""
    first = items[0]
    if all(isinstance(i, dict) for i in items):
        keys = list(first.keys())
        return {k: _mean_tree([i.get(k) for i in items]) for k in keys}
    if all(_is_num(i) for i in items):
        if all(isinstance(i, int) for i in items) and len(set(items)) == 1:
            return items[0]
        return float(sum(items)) / len(items)
    if all(i == first for i in items):
        return first
    return list(items)


# --------------------------------------------------------------------------
# shapes


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
            kh, kw = _pair(a.get("kernel"), 1)
            sh, sw = _pair(a.get("stride"), 1)
            ph, pw = _pair(a.get("padding"), 0)
            dh, dw = _pair(a.get("dilation"), 1)
            h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        elif op.op == "conv_transpose2d":
            kh, kw = _pair(a.get("kernel"), 1)
            sh, sw = _pair(a.get("stride"), 1)
            ph, pw = _pair(a.get("padding"), 0)
            oh, ow = _pair(a.get("output_padding"), 0)
            h = (h - 1) * sh - 2 * ph + kh + oh
            w = (w - 1) * sw - 2 * pw + kw + ow
        elif op.op in ("pixel_shuffle", "upsample_nearest", "upsample_bilinear", "upsample_bicubic"):
            r = int(a["factor"])
            h, w = h * r, w * r
        elif op.op == "pad":
            ph, pw = _pair(a.get("padding"), 0)
            h, w = h + 2 * ph, w + 2 * pw
        elif op.op in ("mean_pool", "std_pool"):
            h, w = 1, 1
        for t in op.outputs:
            shapes[t] = (h, w, art.tensors[t].channels)
    return shapes


_SAME_HW = frozenset({"image_in", "image_out", "encode", "relu", "clamp", "leaky_relu", "prelu", "sigmoid", "lut",
                      "add", "mul", "concat", "split"})


def _input_hw(art: Artifact, counters: dict) -> tuple[int, int]:
    """The graph input's (H, W) from the out_shape of an op reading it."""
    ops = counters.get("ops", {})
    for op in art.ops:
        if not (any(t in art.inputs for t in op.inputs) and "out_shape" in ops.get(op.name, {})):
            continue
        h, w = (int(x) for x in ops[op.name]["out_shape"][:2])
        a = op.attrs
        if op.op in _SAME_HW:
            return h, w
        if op.op == "conv2d" and _pair(a.get("stride"), 1) == (1, 1):
            (kh, kw), (ph, pw), (dh, dw) = (_pair(a.get("kernel"), 1), _pair(a.get("padding"), 0),
                                            _pair(a.get("dilation"), 1))
            return h - 2 * ph + dh * (kh - 1), w - 2 * pw + dw * (kw - 1)
    raise ValueError("counters do not give the input image size (no usable out_shape of an op reading the "
                     "graph input); pass image_hw=(H, W)")


# --------------------------------------------------------------------------
# per-image costing


class _Ctx:
    def __init__(self, art: Artifact, accel: AcceleratorConfig, scheme: Scheme, realization: str,
                 uniform_policy: str):
        self.art, self.accel, self.scheme, self.realization = art, accel, scheme, realization
        self.uniform_policy = uniform_policy
        self.em: EnergyModel = accel.energy_model()
        self.producer = {t: op for op in art.ops for t in op.outputs}
        self.consumers: dict[str, list[OpSpec]] = {}
        for op in art.ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.graph_io = set(art.inputs) | set(art.outputs)
        self.sb = art.numerics.stream_bits
        self.transients = self._find_transients()
        self.warnings: list[str] = []
        self._cur_counters: dict = {}  # the image being costed (for code histograms)
        # uniform-scheme layer bits and codes-tensor widths
        self.layer_bits: dict[str, tuple[int, int]] = {}
        if scheme.kind == "int":
            self.layer_bits = uniform_layer_bits(art, scheme.weight_bits, scheme.act_bits, uniform_policy)
        self.enc_mult_bits = max(
            (max((e.mult.bit_length() for e in t.codebook.encoder), default=16)
             for t in art.tensors.values() if t.kind == "codes" and t.codebook is not None),
            default=16,
        )

    def _find_transients(self) -> set[str]:
        art = self.art
        probe = infer_shapes(art, (16, 16))  # structure only: which tensors have the output's size
        order = {t: i for i, op in enumerate(art.ops) for t in op.outputs}
        out = set()
        for t, cons in self.consumers.items():
            prod = self.producer.get(t)
            if t in self.graph_io or len(cons) != 1 or prod is None or prod.op in VIEW_OPS:
                continue
            c = cons[0]
            if c.op in FUSABLE:
                out.add(t)
            elif c.op in BINARY_FUSABLE and c.inputs.count(t) == 1:
                latest = max(c.inputs, key=lambda x: order.get(x, -1))
                if t == latest and np.prod(probe[t]) == np.prod(probe[c.outputs[0]]):
                    out.add(t)
        return out

    def transient(self, t: str) -> bool:
        """True when ``t`` never leaves the chip (fused into its producer's output pipeline)."""
        return t in self.transients

    def tensor_bits(self, t: str) -> int:
        spec = self.art.tensors[t]
        if spec.kind == "image":
            return 8
        if self.scheme.kind == "fp32":
            return 32
        if spec.kind == "codes":
            if self.scheme.kind == "int":
                bits = [self.layer_bits[c.name][1] for c in self.consumers.get(t, []) if c.name in self.layer_bits]
                return max(bits) if bits else self.scheme.act_bits
            return spec.codebook.code_bits
        return self.sb


def _acc_terms(art: Artifact, op: OpSpec, realization: str) -> list[dict]:
    """Accumulators of a conv under ``realization`` with their worst case (§5.3, §5.4):
    name, segment, max |M_j| (rescale multiplier) and max_co Σ|w|·a_j."""
    cb = art.tensors[op.inputs[0]].codebook
    w = np.asarray(art.array(op, "weight")).astype(np.int64)
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    mw = int(np.abs(np.asarray(art.array(op, "w_mant")).astype(np.int64)).max()) if w.shape[0] else 0
    base = mw * cb.unit_m
    out = []
    if realization == "grid":
        a = max(max(abs(s.origin + s.step * s.qmin), abs(s.origin + s.step * s.qmax)) for s in cb.segments)
        out.append({"name": "A", "segment": None, "mult_max": base, "worst": l1 * a})
    else:
        for i, s in enumerate(cb.segments):
            a = max(abs(s.qmin), abs(s.qmax))
            out.append({"name": f"P{i}", "segment": i, "mult_max": base * s.step, "worst": l1 * a})
            if s.origin != 0:
                out.append({"name": f"Q{i}", "segment": i, "mult_max": base * abs(s.origin), "worst": l1})
    return out


def _segment_macs(ctx: _Ctx, op: OpSpec, oc: dict, cb: Codebook) -> tuple[list[int], bool]:
    """MACs per segment for split costing; ``approximate`` when derived from a histogram."""
    macs = oc.get("macs")
    if not isinstance(macs, dict) or not macs:
        raise ValueError(f"op {op.name!r}: counters have no 'macs' for this conv")
    S = len(cb.segments)
    if all(str(s) in macs for s in range(S)) and "all" not in macs:
        return [int(macs[str(s)]) for s in range(S)], False
    total = sum(int(v) for v in macs.values())
    # grid counters: split the total by the input codes' histogram (border taps ignored)
    prod = ctx.producer.get(op.inputs[0])
    while prod is not None and prod.op == "pad":  # a pad copies its encoder's codes (§5.8)
        prod = ctx.producer.get(prod.inputs[0])
    hist = None
    if prod is not None:
        hist = ctx._cur_counters.get("ops", {}).get(prod.name, {}).get("code_histogram")
    if hist is None or len(hist) != cb.num_codes or sum(hist) == 0:
        raise ValueError(f"op {op.name!r}: counters give only total MACs and no code histogram of its input; "
                         f"cannot cost the split realization")
    seg_of, _, _ = cb.code_table()
    h = np.asarray(hist, dtype=np.float64)
    frac = np.array([h[seg_of == s].sum() for s in range(S)]) / h.sum()
    parts = np.floor(frac * total).astype(np.int64)
    parts[int(np.argmax(frac))] += total - int(parts.sum())
    return [int(p) for p in parts], True


def _conv_cost(ctx: _Ctx, op: OpSpec, shapes: dict, oc: dict | None) -> dict:
    art, acc, em, sch = ctx.art, ctx.accel, ctx.em, ctx.scheme
    a = op.attrs
    cb = art.tensors[op.inputs[0]].codebook
    Hi, Wi, Ci = shapes[op.inputs[0]]
    Ho, Wo, Co = shapes[op.outputs[0]]
    if oc is not None and "out_shape" in oc and tuple(int(x) for x in oc["out_shape"]) != (Ho, Wo, Co):
        raise ValueError(f"op {op.name!r}: counters out_shape {oc['out_shape']} != shape from the graph "
                         f"{[Ho, Wo, Co]} (counters of another artifact or image?)")
    w = np.asarray(art.array(op, "weight"))
    kh, kw = _pair(a.get("kernel"), 1)
    sh, sw = _pair(a.get("stride"), 1)
    ph, pw = _pair(a.get("padding"), 0)
    dh, dw = _pair(a.get("dilation"), 1)
    transposed = op.op == "conv_transpose2d"
    g = 1 if transposed else int(a.get("groups", 1))
    M = Ho * Wo
    if transposed:
        K = math.ceil(kh / sh) * math.ceil(kw / sw) * Ci
        N = Co
        valid = _valid_pairs_convT(Hi, Ho, kh, sh, ph) * _valid_pairs_convT(Wi, Wo, kw, sw, pw) * Ci * Co
    else:
        K = kh * kw * (Ci // g)
        N = Co // g
        valid = _valid_pairs_conv(Hi, Ho, kh, sh, ph, dh) * _valid_pairs_conv(Wi, Wo, kw, sw, pw, dw) * (Ci // g) * Co
    mp = map_gemm(M, K, N, acc.rows, acc.cols, acc.dataflow)
    macs_geom = g * M * K * N
    outputs = Ho * Wo * Co
    approx = False

    # ---- operand widths, accumulators, MACs per "segment" key
    if oc is not None:
        total = sum(int(v) for v in oc.get("macs", {}).values())
    else:
        total = valid
    if sch.kind == "fp32":
        wb, ab, realization = 32, 32, "fp32"
        seg_keys, seg_macs, seg_ab = ["all"], [total], [32]
        accs = [{"name": "A", "segment": None, "mult_max": 0, "worst": None}]
        req_bits = None
    elif sch.kind == "int":
        wb, ab = ctx.layer_bits[op.name]
        realization = "uniform"
        seg_keys, seg_macs, seg_ab = ["all"], [total], [ab]
        mult_bits = art.numerics.mult_bits
        accs = [{"name": "A", "segment": None, "mult_max": (1 << mult_bits) - 1,
                 "worst": K * (1 << (wb - 1)) * (1 << (ab - 1))}]
        req_bits = _signed_bits(accs[0]["worst"])
    else:
        realization = ctx.realization
        wb = weight_bits(w)
        accs = _acc_terms(art, op, realization)
        req_bits = max(_signed_bits(t["worst"]) for t in accs)
        if realization == "split":
            seg_ab = [range_bits(s.qmin, s.qmax) for s in cb.segments]
            seg_keys = [str(i) for i in range(len(cb.segments))]
            if oc is None:
                raise ValueError(f"op {op.name!r}: the artifact scheme needs engine counters (MACs per segment)")
            seg_macs, approx = _segment_macs(ctx, op, oc, cb)
            ab = max(seg_ab)
        else:
            gbits = cb.grid_bits if cb.grid_bits else grid_bits_needed(cb)
            if cb.grid_bits and grid_bits_needed(cb) > cb.grid_bits:
                ctx.warnings.append(f"op {op.name!r}: codebook grid values need {grid_bits_needed(cb)} bits "
                                    f"> grid_bits {cb.grid_bits}")
            seg_keys, seg_macs, seg_ab, ab = ["all"], [total], [gbits], gbits
            if oc is None:
                raise ValueError(f"op {op.name!r}: the artifact scheme needs engine counters")
    n_acc = len(accs)
    n_offset = sum(1 for t in accs if t["name"].startswith("Q"))
    # fp32 costs its significand products, not 32-bit ones: the exponent path runs alongside
    pw, pa = (FP32_SIGNIFICAND_BITS, FP32_SIGNIFICAND_BITS) if sch.kind == "fp32" else (wb, ab)
    passes = math.ceil(pw / acc.weight_bits) * math.ceil(pa / acc.activation_bits)
    if sch.kind != "fp32" and req_bits is not None and req_bits > acc.accumulator_bits:
        ctx.warnings.append(f"op {op.name!r}: worst-case accumulator needs {req_bits} bits > accelerator "
                            f"accumulator_bits {acc.accumulator_bits} (overflow possible)")

    # ---- partial sums and cycles: ws/is keep n_acc partial sums per output between row folds;
    # when one column fold's block does not fit the usable ofmap buffer, the streamed
    # dimension is tiled (each tile pays the fold's fill/drain again) instead of spilling
    accb = 32 if sch.kind == "fp32" else acc.accumulator_bits
    usable = acc.usable_fraction * 8 * 1024  # bits per KB of buffer
    psum_elem_bits = n_acc * accb
    tiles = 1
    if acc.dataflow in ("ws", "is") and mp.row_folds > 1:
        block = (M * min(N, acc.cols)) if acc.dataflow == "ws" else (min(M, acc.cols) * N)
        tiles = min(mp.T, max(1, math.ceil(block * psum_elem_bits / (acc.ofmap_kb * usable))))
    cyc = g * compute_cycles(mp, passes, tiles)
    util = macs_geom / (cyc * acc.pes) if cyc else 0.0

    # ---- energy: MAC, accumulate, decode, rescale
    e_mac = e_accum = e_decode = e_rescale = 0.0
    for m_s, ab_s in zip(seg_macs, seg_ab):
        if sch.kind == "fp32":
            e_mac += m_s * em.fp_mult()
            e_accum += m_s * em.fp_add()
        elif acc.mac_energy_width == "native":
            e_mac += m_s * passes * em.mult(acc.weight_bits, acc.activation_bits)
            e_accum += m_s * passes * em.add(accb)  # accumulate + (passes−1) shift-adds
        else:
            e_mac += m_s * em.mult(wb, ab_s)
            e_accum += m_s * em.add(accb)
    offset_adds = 0
    if realization == "split":
        for i, s in enumerate(cb.segments):
            if s.origin != 0:
                offset_adds += seg_macs[i]
        e_accum += offset_adds * em.add(accb)
    acc_io = sram_accesses(mp)
    acc_io = {k: g * v for k, v in acc_io.items()}
    if acc.dataflow == "ws":
        acc_io["filter_reads"] *= tiles  # stationary weights reloaded for every tile
    elif acc.dataflow == "is":
        acc_io["ifmap_reads"] *= tiles  # stationary inputs reloaded for every tile
    decodes = 0
    if realization == "grid":
        decodes = acc_io["ifmap_reads"]
        e_decode = decodes * em.lut_read(cb.num_codes, seg_ab[0])
    if sch.kind == "fp32":
        rescale_mults, rescale_adds = 0, 0
        e_accum += outputs * em.fp_add()  # bias
        mbits = 0
    else:
        mbits = max(1, max(int(t["mult_max"]).bit_length() for t in accs))
        rescale_mults = outputs * n_acc
        rescale_adds = outputs * (n_acc + 1)
        e_rescale = rescale_mults * em.mult(mbits, accb) + rescale_adds * em.add(min(mbits + accb, 96))

    # ---- storage (true bits)
    in_bits = ctx.tensor_bits(op.inputs[0])
    bias = np.asarray(art.array(op, "bias")).astype(np.int64)
    bias_w = 32 if sch.kind == "fp32" else (accb if sch.kind == "int" else _signed_bits(int(np.abs(bias).max()) if bias.size else 0))
    weights_bits_total = int(w.size) * wb
    bias_bits_total = Co * bias_w
    params_bits = 0 if sch.kind == "fp32" else Co * n_acc * mbits
    filter_bits = weights_bits_total + bias_bits_total + params_bits
    ifmap_bits = Hi * Wi * Ci * in_bits

    # ---- SRAM and DRAM traffic (bits)
    # DRAM re-fetches: an operand is fetched once when the part the schedule revisits fits the
    # usable buffer, else once per revisit. os may run either loop order (filters or ifmap
    # outermost) and takes the cheaper; ws/is follow SCALE-Sim's order (column folds outer).
    if_cap, f_cap = acc.ifmap_kb * usable, acc.filter_kb * usable
    if acc.dataflow == "os":
        a_if = mp.col_folds if ifmap_bits > if_cap else 1
        b_f = mp.row_folds if filter_bits > f_cap else 1
        if ifmap_bits * a_if + filter_bits <= ifmap_bits + filter_bits * b_f:
            refetch_if, refetch_f, loop_order = a_if, 1, "filters_outer"
        else:
            refetch_if, refetch_f, loop_order = 1, b_f, "ifmap_outer"
    elif acc.dataflow == "ws":
        refetch_if = mp.col_folds if ifmap_bits > if_cap else 1
        refetch_f = tiles if filter_bits / mp.col_folds > f_cap else 1
        loop_order = "filters_outer"
    else:
        refetch_f = mp.col_folds if filter_bits > f_cap else 1
        refetch_if = tiles if ifmap_bits / mp.col_folds > if_cap else 1
        loop_order = "ifmap_outer"
    psum_bits = acc_io["psum_writes"] * psum_elem_bits
    dram_read = ifmap_bits * refetch_if + filter_bits * refetch_f
    dram_write = 0
    out_t = op.outputs[0]
    out_bits = ctx.tensor_bits(out_t)
    wrote_out = not ctx.transient(out_t)
    if wrote_out:
        dram_write += outputs * out_bits
    sram = {
        "ifmap_fill": ifmap_bits * refetch_if,
        "filter_fill": filter_bits * refetch_f,
        "ifmap_reads": acc_io["ifmap_reads"] * in_bits,
        "filter_reads": acc_io["filter_reads"] * (wb if sch.kind != "fp32" else 32),
        "ofmap_writes": (outputs * out_bits * 2) if wrote_out else 0,  # write + write-back read
        "psum": 2 * psum_bits,  # write + read back per row fold
    }
    e_sram = ((sram["ifmap_fill"] + sram["ifmap_reads"]) * em.sram_bit(acc.ifmap_kb)
              + (sram["filter_fill"] + sram["filter_reads"]) * em.sram_bit(acc.filter_kb)
              + (sram["ofmap_writes"] + sram["psum"]) * em.sram_bit(acc.ofmap_kb))
    e_dram = (dram_read + dram_write) * em.dram_bit()
    fi, ff = first_fold_elements(mp)
    fill_bytes = (fi * in_bits + ff * (wb if sch.kind != "fp32" else 32)) / 8.0

    energy = {"mac": e_mac, "accumulate": e_accum, "decode": e_decode, "rescale": e_rescale, "vector": 0.0,
              "sram": e_sram, "dram": e_dram}
    energy["total"] = sum(energy[c] for c in CATEGORIES)
    mult_desc = [{"segment": k, "weight_bits": wb, "act_bits": b} for k, b in zip(seg_keys, seg_ab)]
    return {
        "name": op.name, "op": op.op, "kind": "conv", "realization": realization,
        "out_shape": [Ho, Wo, Co],
        "macs": {k: int(v) for k, v in zip(seg_keys, seg_macs)},
        "macs_total": int(sum(seg_macs)),
        "macs_geometric": int(macs_geom),
        "macs_approximate": approx,
        "gemm": {**mp.to_json(), "groups": g, "transposed": transposed, "tiles": tiles,
                 "loop_order": loop_order},
        "multiplier": {"per_segment": mult_desc, "physical": [wb, ab], "passes": passes,
                       "native": [acc.weight_bits, acc.activation_bits],
                       "fits_native": passes == 1},
        "accumulators": {"count": n_acc, "offset": n_offset, "names": [t["name"] for t in accs],
                         "width_bits": accb, "required_bits": req_bits},
        "rescale": {"mults": int(rescale_mults), "adds": int(rescale_adds), "mult_bits": mbits,
                    "offset_adds": int(offset_adds), "lut_decodes": int(decodes)},
        "storage_bits": {"weights": weights_bits_total, "bias": bias_bits_total, "rescale_params": params_bits,
                         "input": ifmap_bits, "output": outputs * out_bits,
                         "input_elem_bits": in_bits, "output_elem_bits": out_bits},
        "sram_bits": sram,
        "dram_bits": {"read": int(dram_read), "write": int(dram_write),
                      "ifmap_refetch": refetch_if, "filter_refetch": refetch_f},
        "cycles": {"compute": int(cyc), "dram": 0.0, "stall": 0.0, "total": float(cyc)},
        "_fill_bytes": fill_bytes,
        "utilisation": util,
        "mapping_efficiency": mapping_efficiency(mp),
        "energy_pj": energy,
    }


def _vector_prims(ctx: _Ctx, op: OpSpec, shapes: dict) -> tuple[str, int, list[tuple[str, int, int, float]]]:
    """(category, element count, [(prim, width_a, width_b, per-element count)]) of a non-conv op.

    prim: ``add`` (width_a), ``mult`` (width_a × width_b), ``lut`` (entries, bits)."""
    art, sb, a = ctx.art, ctx.sb, op.attrs
    fp = ctx.scheme.kind == "fp32"
    out_e = int(np.prod(shapes[op.outputs[0]]))
    in_e = int(np.prod(shapes[op.inputs[0]]))
    k = op.op
    cat = "rescale" if k in RESCALE_OPS else "vector"
    P: list[tuple[str, int, int, float]] = []
    if k == "image_in":
        mb = max(1, int(np.abs(np.asarray(art.array(op, "mult"))).max()).bit_length())
        P = [("mult", 8, mb, 1), ("add", 8 + mb, 0, 1 if fp else 2)]
    elif k == "image_out":
        mb = max(1, int(np.abs(np.asarray(art.array(op, "mult"))).max()).bit_length())
        P = [("mult", sb, mb, 1), ("add", sb + mb, 0, 1 if fp else 2), ("add", 9, 0, 2)]
    elif k == "encode":
        if fp:
            P = []
        else:
            cb = art.tensors[op.outputs[0]].codebook
            S = 1 if ctx.scheme.kind == "int" else len(cb.segments)
            eb = ctx.enc_mult_bits if ctx.scheme.kind == "int" else max(e.mult.bit_length() for e in cb.encoder)
            ib = ctx.tensor_bits(op.outputs[0])
            P = [("add", sb, 0, (S - 1) + 1), ("mult", sb + 1, eb, 1), ("add", sb + 1 + eb, 0, 1), ("add", ib, 0, 2)]
    elif k == "relu":
        P = [("add", sb, 0, 1)]
    elif k == "clamp":
        P = [("add", sb, 0, 2)]  # two comparisons (§6.16)
    elif k in ("leaky_relu", "prelu"):
        mv = a.get("mult", 1) if k == "leaky_relu" else int(np.abs(np.asarray(art.array(op, "mult"))).max())
        mb = max(1, abs(int(mv)).bit_length())
        P = [("add", sb, 0, 1), ("mult", sb, mb, 1), ("add", sb + mb, 0, 0 if fp else 1)]
    elif k == "add":
        P = [("add", sb + 1, 0, 1 if fp else 2)]
    elif k == "upsample_bilinear":
        wbits = (2 * int(a["factor"])).bit_length()
        mb = max(1, abs(int(a.get("mult", 1))).bit_length())
        P = [("mult", sb, wbits, 4), ("add", sb + 2 * wbits, 0, 3), ("mult", sb + 2 * wbits, mb, 1),
             ("add", sb + 2 * wbits + mb, 0, 0 if fp else 1)]
    elif k == "upsample_bicubic":
        # separable: 4 horizontal then 4 vertical taps per output (T+1-bit signed taps), one rounding (§6.18)
        tb = int(a["tap_bits"]) + 1
        P = [("mult", sb, tb, 8), ("add", sb + 2 * tb, 0, 6), ("add", sb + 2 * tb, 0, 0 if fp else 1)]
    elif k == "mean_pool":
        kb = max(1, int(a["shift"]))
        P = [("mult", sb, kb, 1), ("add", sb + kb, 0, 1)]
        out_e = in_e
    elif k == "std_pool":
        kb = max(1, int(a["shift"]))
        P = [("mult", sb, kb, 2), ("mult", sb, sb, 1), ("add", sb + kb, 0, 2), ("add", sb + 1, 0, 2),
             ("add", 2 * sb + kb, 0, 1)]
        out_e = in_e
    elif k in ("sigmoid", "lut"):
        entries = int(a["imax"]) - int(a["imin"]) + 1
        P = [("add", sb, 0, 2), ("lut", entries, 32 if fp else sb, 1)]
    elif k == "mul":
        P = [("mult", sb, sb, 1), ("add", 2 * sb, 0, 0 if fp else 1)]
    elif k in ("concat", "split", "pixel_shuffle", "upsample_nearest", "pad"):
        P = []  # address transforms: no arithmetic (pad re-reads border codes, §5.8)
    else:
        raise ValueError(f"op {op.name!r}: unknown op {k!r} for the cost model")
    return cat, out_e, P


def _vector_cost(ctx: _Ctx, op: OpSpec, shapes: dict, oc: dict | None) -> dict:
    em, acc = ctx.em, ctx.accel
    oshape = shapes[op.outputs[0]]
    if oc is not None and "out_shape" in oc and tuple(int(x) for x in oc["out_shape"]) != tuple(oshape):
        raise ValueError(f"op {op.name!r}: counters out_shape {oc['out_shape']} != shape from the graph "
                         f"{list(oshape)} (counters of another artifact or image?)")
    cat, elems, prims = _vector_prims(ctx, op, shapes)
    fp = ctx.scheme.kind == "fp32"
    e_compute = 0.0
    n_ops = {"adds": 0.0, "mults": 0.0, "lut_reads": 0.0}
    for prim, wa, wb_, cnt in prims:
        n = elems * cnt
        if prim == "add":
            e_compute += n * (em.fp_add() if fp else em.add(wa))
            n_ops["adds"] += n
        elif prim == "mult":
            e_compute += n * (em.fp_mult() if fp else em.mult(wa, wb_))
            n_ops["mults"] += n
        else:
            e_compute += n * em.lut_read(wa, wb_)
            n_ops["lut_reads"] += n
    fused = any(ctx.transient(t) for t in op.inputs)
    dram_read = dram_write = 0
    sram_rw = 0
    view = op.op in VIEW_OPS
    for t in ([] if view else dict.fromkeys(op.inputs)):
        if not ctx.transient(t):
            b = int(np.prod(shapes[t])) * ctx.tensor_bits(t)
            dram_read += b
            sram_rw += 2 * b  # fill + read
    for t in ([] if view else op.outputs):
        if not ctx.transient(t):
            b = int(np.prod(shapes[t])) * ctx.tensor_bits(t)
            dram_write += b
            sram_rw += 2 * b  # write + write-back read
    e_sram = sram_rw * em.sram_bit(acc.ofmap_kb)
    e_dram = (dram_read + dram_write) * em.dram_bit()
    energy = {c: 0.0 for c in CATEGORIES}
    energy[cat] = e_compute
    energy["sram"], energy["dram"] = e_sram, e_dram
    energy["total"] = sum(energy[c] for c in CATEGORIES)
    cyc = 0 if (fused or view) else math.ceil(elems / acc.lanes) if prims or dram_read or dram_write else 0
    return {
        "name": op.name, "op": op.op, "kind": "vector", "fused": fused, "view": view,
        "out_shape": list(oshape),
        "elements": elems,
        "ops": {k: float(v) for k, v in n_ops.items()},
        "sram_bits": {"total": int(sram_rw)},
        "dram_bits": {"read": int(dram_read), "write": int(dram_write)},
        "cycles": {"compute": int(cyc), "dram": 0.0, "stall": 0.0, "total": float(cyc)},
        "_fill_bytes": 0.0,
        "energy_pj": energy,
    }


def _cost_one_image(ctx: _Ctx, counters: dict | None, in_hw: tuple[int, int] | None) -> tuple[list[dict], dict]:
    art, acc = ctx.art, ctx.accel
    ctx._cur_counters = counters or {}
    if counters is not None:
        ops_c = counters.get("ops", {})
        missing = [op.name for op in art.ops if op.name not in ops_c]
        if missing:
            raise ValueError(f"counters have no entry for op {missing[0]!r} (counters of another artifact?)")
        hw = in_hw if in_hw is not None else _input_hw(art, counters)
    else:
        hw = in_hw
        ops_c = {}
    shapes = infer_shapes(art, hw)
    layers: list[dict] = []
    for op in art.ops:
        oc = ops_c.get(op.name) if counters is not None else None
        if oc is not None and oc.get("op", op.op) != op.op:
            raise ValueError(f"counters entry {op.name!r} is a {oc.get('op')!r} op, the artifact has {op.op!r}")
        if op.op in CONV_OPS:
            layers.append(_conv_cost(ctx, op, shapes, oc))
        else:
            layers.append(_vector_cost(ctx, op, shapes, oc))
    # fused groups: a fused op's DRAM time is hidden in (added to) its root producer's
    by_name = {l["name"]: l for l in layers}
    root: dict[str, str] = {}
    for op in art.ops:
        l = by_name[op.name]
        if l["kind"] == "vector" and l["fused"]:
            src = ctx.producer[next(t for t in op.inputs if ctx.transient(t))].name
            root[op.name] = root.get(src, src)
        else:
            root[op.name] = op.name
    group_bytes: dict[str, float] = {}
    for op in art.ops:
        l = by_name[op.name]
        group_bytes[root[op.name]] = group_bytes.get(root[op.name], 0.0) + (l["dram_bits"]["read"] + l["dram_bits"]["write"]) / 8.0
    bpc = acc.dram_bytes_per_cycle
    for op in art.ops:
        l = by_name[op.name]
        fill = l.pop("_fill_bytes")
        if root[op.name] != op.name:
            continue
        dram_c = group_bytes[op.name] / bpc
        comp = l["cycles"]["compute"]
        stall = max(0.0, dram_c - comp) + (fill / bpc if comp else 0.0)
        l["cycles"].update({"dram": dram_c, "stall": stall, "total": comp + stall})
    # totals
    out_t = art.outputs[0]
    oh, ow, _ = shapes[out_t]
    tot_e = {c: sum(l["energy_pj"][c] for l in layers) for c in CATEGORIES}
    tot_e["total"] = sum(tot_e[c] for c in CATEGORIES)
    cycles = sum(l["cycles"]["total"] for l in layers)
    comp = sum(l["cycles"]["compute"] for l in layers)
    convs = [l for l in layers if l["kind"] == "conv"]
    mpix = oh * ow / 1e6
    lat = cycles / (acc.clock_mhz * 1e6)
    totals = {
        "input_hw": [int(hw[0]), int(hw[1])],
        "output_hw": [int(oh), int(ow)],
        "macs": int(sum(l["macs_total"] for l in convs)),
        "macs_geometric": int(sum(l["macs_geometric"] for l in convs)),
        "cycles": {"compute": int(comp), "stall": float(cycles - comp), "total": float(cycles)},
        "latency_s": lat,
        "utilisation": (sum(l["macs_geometric"] for l in convs) / (cycles * acc.pes)) if cycles else 0.0,
        "energy_pj": tot_e,
        "dram_bits": {"read": int(sum(l["dram_bits"]["read"] for l in layers)),
                      "write": int(sum(l["dram_bits"]["write"] for l in layers))},
        "storage_bits": {
            "weights": int(sum(l["storage_bits"]["weights"] + l["storage_bits"]["bias"]
                               + l["storage_bits"]["rescale_params"] for l in convs)),
            "conv_inputs": int(sum(l["storage_bits"]["input"] for l in convs)),
        },
        "per_output_mpix": {"energy_mj": tot_e["total"] * 1e-9 / mpix, "latency_ms": lat * 1e3 / mpix},
    }
    return layers, totals


# --------------------------------------------------------------------------
# public API


def _as_counters(c) -> dict:
    if hasattr(c, "counters"):
        c = c.counters
    if not isinstance(c, dict) or "ops" not in c:
        raise ValueError("each counters entry must be an engine counters dict ({'ops': ..., 'totals': ...}) "
                         "or a RunResult")
    return c


def estimate_cost(art: Artifact, counters_list: Iterable | None, accel: AcceleratorConfig,
                  scheme: str | Scheme = "artifact", *, image_hw: tuple[int, int] | None = None,
                  uniform_policy: str = "follow") -> dict:
    """Cost of ``art`` on ``accel`` for each image's counters, per layer and in total.

    ``counters_list``: engine counters (or ``RunResult``\\ s), one per image. ``None`` with
    ``image_hw=(H, W)`` gives a geometry-only estimate (MACs from the shapes; only for
    the uniform and fp32 schemes, which need no per-segment counts). With counters the
    input size comes from their ``out_shape`` entries unless ``image_hw`` is given (every
    op's shape is then checked against its counters).
    Returns a JSON-serialisable dict: ``layers`` (per op, mean over images, with
    ``per_image_energy_pj`` / ``per_image_macs``), ``per_image`` totals, ``totals`` (mean),
    ``accelerator``, ``energy_model``, ``model`` notes and ``warnings``.
    """
    sch = parse_scheme(scheme)
    if uniform_policy not in UNIFORM_POLICIES:
        raise ValueError(f"uniform_policy must be one of {', '.join(UNIFORM_POLICIES)}, got {uniform_policy!r}")
    if accel.realization == "artifact":
        realization = art.numerics.realization
    else:
        realization = accel.realization
    if sch.kind != "artifact":
        realization = "fp32" if sch.kind == "fp32" else "uniform"
    ctx = _Ctx(art, accel, sch, realization, uniform_policy)
    if counters_list is None:
        if image_hw is None:
            raise ValueError("give counters (one per image) or image_hw for a geometry-only estimate")
        if sch.kind == "artifact":
            raise ValueError("the artifact scheme needs engine counters (MACs per code segment); "
                             "geometry-only estimates are for 'fp32' and 'W<b>A<b>' schemes")
        runs = [None]
    else:
        runs = [_as_counters(c) for c in counters_list]
        if not runs:
            raise ValueError("counters_list is empty")
    if realization != art.numerics.realization and sch.kind == "artifact":
        ctx.warnings.append(f"artifact realization is {art.numerics.realization!r}, costed as {realization!r}"
                            + (" (MACs per segment estimated from the input code histograms)"
                               if realization == "split" else ""))
    per_image_layers, per_image_totals = [], []
    for c in runs:
        layers, totals = _cost_one_image(ctx, c, image_hw)
        per_image_layers.append(layers)
        per_image_totals.append(totals)
    n_ops = len(art.ops)
    layers_mean = []
    for i in range(n_ops):
        items = [pl[i] for pl in per_image_layers]
        m = _mean_tree(items)
        m["per_image_energy_pj"] = [float(it["energy_pj"]["total"]) for it in items]
        if items[0]["kind"] == "conv":
            m["per_image_macs"] = [dict(it["macs"]) for it in items]
        layers_mean.append(m)
    result = {
        "schema": SCHEMA,
        "version": VERSION,
        "scheme": sch.label,
        "realization": realization,
        "uniform_policy": uniform_policy if sch.kind == "int" else None,
        "model_name": art.model.get("name") if isinstance(art.model, dict) else None,
        "artifact_sha256": art.sha256,
        "images": len(runs),
        "accelerator": accel.to_json(),
        "energy_model": ctx.em.describe(),
        "model": MODEL_NOTES,
        "categories": list(CATEGORIES),
        "layers": layers_mean,
        "per_image": per_image_totals,
        "totals": _mean_tree(per_image_totals),
        "warnings": sorted(set(ctx.warnings)),
    }
    return _py(result)


DEFAULT_SCHEMES = ("artifact", "fp32", "W8A8", "W4A4")


def summary_row(cost: dict) -> dict:
    """One comparison-table row of a cost result (means over its images)."""
    t = cost["totals"]
    convs = [l for l in cost["layers"] if l["kind"] == "conv"]
    act_bits = sorted({l["storage_bits"]["input_elem_bits"] for l in convs})
    return {
        "scheme": cost["scheme"],
        "realization": cost["realization"],
        "accelerator": cost["accelerator"]["name"],
        "conv_input_bits": act_bits,
        "energy_uj": t["energy_pj"]["total"] * 1e-6,
        "energy_split_uj": {c: t["energy_pj"][c] * 1e-6 for c in cost["categories"]},
        "latency_ms": t["latency_s"] * 1e3,
        "energy_mj_per_output_mpix": t["per_output_mpix"]["energy_mj"],
        "latency_ms_per_output_mpix": t["per_output_mpix"]["latency_ms"],
        "utilisation": t["utilisation"],
        "weight_storage_kib": t["storage_bits"]["weights"] / 8 / 1024,
        "dram_mib": (t["dram_bits"]["read"] + t["dram_bits"]["write"]) / 8 / 2 ** 20,
    }


def compare_schemes(art: Artifact, counters_list: Iterable | None, accel: AcceleratorConfig,
                    schemes: Iterable[str] = DEFAULT_SCHEMES, **kw) -> list[dict]:
    """:func:`summary_row` for each scheme on the same network, images and accelerator.

    PSNR is not known here: the caller adds it to each row (e.g. from golden/integer runs)."""
    counters_list = list(counters_list) if counters_list is not None else None
    rows = []
    for s in schemes:
        if counters_list is None and parse_scheme(s).kind == "artifact":
            continue
        rows.append(summary_row(estimate_cost(art, counters_list, accel, s, **kw)))
    return rows


def load_counters(path_or_obj, artifact_sha256: str | None = None) -> list[dict]:
    """Engine counters from ``intsim run --counters FILE`` (``{"artifact_sha256", "images":
    [{"counters": ...}, ...]}``), a list of counters dicts, or one counters dict.

    A record whose ``artifact_sha256`` differs from ``artifact_sha256`` (when both are
    known) is refused: counters of another artifact would be costed wrongly."""
    import os

    from intsim.artifact import read_json

    obj = path_or_obj
    where = "counters"
    if isinstance(path_or_obj, (str, os.PathLike)):
        where = str(path_or_obj)
        obj = read_json(path_or_obj, what="a counters file")
    if isinstance(obj, dict) and "images" in obj:
        sha = obj.get("artifact_sha256")
        if sha and artifact_sha256 and sha != artifact_sha256:
            raise ValueError(f"{where}: counters are of artifact {sha[:12]}…, not of this artifact "
                             f"{artifact_sha256[:12]}…")
        if not isinstance(obj["images"], list):
            raise ValueError(f"{where}: 'images' must be a list of per-image records")
        items = [im.get("counters") if isinstance(im, dict) else None for im in obj["images"]]
    elif isinstance(obj, dict) and "ops" in obj:
        items = [obj]
    elif isinstance(obj, list):
        items = obj
    else:
        raise ValueError(f"{where}: expected an 'intsim run --counters' record, a list of counters or one counters dict")
    for i, c in enumerate(items):
        if not isinstance(c, dict) or not isinstance(c.get("ops"), dict):
            raise ValueError(f"{where}: entry {i} is not an engine counters dict (no 'ops')")
        check_counters(c, where, i)
    if not items:
        raise ValueError(f"{where}: no counters in it")
    return items
