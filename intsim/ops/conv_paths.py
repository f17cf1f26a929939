"""How a conv call is executed: the path policy and the per-artifact constants (arithmetic.md §5.4, §5.6).

Execution paths (docs/arithmetic.md), chosen per call by :func:`select_conv_path`:

* ``reference`` — :func:`intsim.kernels.conv.conv_kernel`, the straightforward
  int64 kernel; the only path for an op that can overflow (ordered, §5.4).
* ``gemm32`` / ``gemm64`` — an op that cannot overflow may sum in any order, so
  its accumulators are formed by a float32 / float64 BLAS GEMM over im2col
  patch matrices (:mod:`intsim.kernels.gemm`). Exact by proof: every partial
  sum of accumulator ``j`` is bounded by its worst case ``W_j`` of §5.4, and the
  path is taken only when every GEMM-formed ``W_j < 2^24`` (float32) or
  ``< 2^53`` (float64), where float sums of integers are exact in any order.
  split: the most populated segment (normally the dense one) by GEMM of its
  index plane (and indicator plane when its origin ≠ 0); rare segments (the
  outlier tails, ≤ :data:`SPARSE_FRACTION` of the input elements) by an exact
  int64 sparse pass over just their positions; grid: one GEMM of the grid
  values G. The rescale (5.3) is a separate pass with the same rounding and
  overflow policy as the reference kernel. A depthwise conv (one input channel
  per group) forms the same accumulators by direct tap sums over all channels
  (:func:`intsim.kernels.gemm.depthwise_rows`), not one-column GEMMs per group.
* ``int8`` — on CPUs with AVX-512 VNNI (:func:`intsim.kernels.int8dot.available`):
  the same accumulators (grid: its split decomposition, "grid as split" of §5.6) formed by an
  implicit GEMM of offset uint8 planes with int8 weights in int32
  (:mod:`intsim.kernels.int8dot`), when every plane fits a byte after its
  offset, the weights fit int8 and ``255·Σ|w| < 2^31`` (§5.6); conv2d with
  groups 1 only. The sparse pass and the rescale as above, fused per tile. The tails'
  offset accumulators ``Q_s`` fold into the dominant plane where ``e_s = c_s·d_t``
  (§5.6, folded offsets: every two-region codebook), so a dense tail costs one plane,
  and a tail is sparse up to :data:`~intsim.ops.conv_fast.INT8_SPARSE_FRACTION`.

``auto`` (default) takes int8 if it applies, else gemm32 if exact, else gemm64
if exact, else the reference. The environment variable ``INTSIM_CONV_PATH``
(``auto``, ``reference``, ``gemm32``, ``gemm64``, ``int8``) or the ``path``
argument overrides it; forcing a fast path that is not proven exact or does
not apply (or an ordered op onto a fast path) raises ``ValueError``. Outputs, events and MAC counts are identical on
every path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from intsim.artifact_model import Codebook, Numerics
from intsim.kernels import conv as K
from intsim.kernels import int8dot as KI
from intsim.ops.conv_accumulators import accumulator_layout, accumulator_worst, conv_can_overflow
from intsim.ops.conv_fast import Int8Plan, gemm_split_plan, int8_plan, run_gemm, run_int8, segment_counts
from intsim.ops.conv_taps import ConvTaps
from intsim.overflow import EngineOverflowError
from intsim.rounding import MAX_SHIFT


PATH_ENV = "INTSIM_CONV_PATH"


PATHS = ("auto", "reference", "gemm32", "gemm64", "int8")


F32_EXACT = 1 << 24  # float32 sums of integers are exact while every partial sum stays below 2^24


F64_EXACT = 1 << 53  # float64: below 2^53


KN2ROW_MAX_CO = 16  # stride-1 convs with at most this many output channels use the kn2row form


def requested_path(path: str | None = None) -> str:
    """The requested path: ``path`` if given, else ``$INTSIM_CONV_PATH``, else ``auto``."""
    p = path if path is not None else os.environ.get(PATH_ENV, "auto")
    p = str(p).strip().lower() or "auto"
    if p not in PATHS:
        raise ValueError(f"conv path {p!r} unknown (expected one of {', '.join(PATHS)}; from "
                         f"{'the path argument' if path is not None else '$' + PATH_ENV})")
    return p


def select_conv_path(worst: dict[str, int], gemm_accs: list[str], ordered: bool, requested: str = "auto") -> str:
    """``'reference'``, ``'gemm32'`` or ``'gemm64'`` for one conv call (docs/arithmetic.md).

    ``worst``: ``W_j`` per accumulator name (§5.4, e.g. from
    :func:`intsim.bounds.conv_accumulators`); ``gemm_accs``: the accumulators the
    GEMM would form. A GEMM path is taken only for an unordered op and only if
    every GEMM accumulator's ``W_j`` is below the float's exact-integer limit
    (2^24 for float32, 2^53 for float64). Forcing a path that is not proven
    exact raises ``ValueError``.
    """
    requested = requested_path(requested)
    if requested == "reference":
        return "reference"
    bound = max((int(worst[n]) for n in gemm_accs), default=0)
    if requested == "auto":
        if ordered:
            return "reference"
        if bound < F32_EXACT:
            return "gemm32"
        return "gemm64" if bound < F64_EXACT else "reference"
    if ordered:
        raise ValueError(f"conv path {requested!r} refused: the op can overflow its accumulators, so it must "
                         f"accumulate in order with the overflow policy (arithmetic.md §5.4); only 'reference' does")
    if requested == "int8":
        return "int8"  # the caller checks that the int8 path applies (int8_plan)
    limit = F32_EXACT if requested == "gemm32" else F64_EXACT
    if bound >= limit:
        raise ValueError(f"conv path {requested!r} refused: worst-case partial sum {bound} of the GEMM "
                         f"accumulators is not below 2^{limit.bit_length() - 1}, float sums would not be exact")
    return requested


def _plan(codebook: Codebook, realization: str, w_mant: np.ndarray):
    """Per-code tables, per-segment accumulator indices and multipliers M_j[co] (§5.3).

    Returns (seg_of, val_of, pidx, qidx, mult[nacc, Co]); multipliers are exact int64
    products of the stored mantissas (bounded by the load-time envelope, §9).
    """
    seg_of, q_of, g_of = codebook.code_table()
    layout = accumulator_layout(codebook, realization)
    S = len(codebook.segments)
    pidx = np.full(S, -1, dtype=np.int64)
    qidx = np.full(S, -1, dtype=np.int64)
    base = np.asarray(w_mant, dtype=np.int64) * np.int64(codebook.unit_m)  # m_w[co]·unit_m
    mult = np.zeros((len(layout), base.shape[0]), dtype=np.int64)
    for j, (kind, seg, _) in enumerate(layout):
        if kind == "A":
            pidx[:] = j
            mult[j] = base
        elif kind == "P":
            pidx[seg] = j
            mult[j] = base * np.int64(codebook.segments[seg].step)  # M_{P,s} = m_w·unit_m·d_s
        else:
            qidx[seg] = j
            mult[j] = base * np.int64(codebook.segments[seg].origin)  # M_{Q,s} = m_w·unit_m·e_s
    if realization == "grid":
        if codebook.grid_bits is not None:
            lim = 1 << (codebook.grid_bits - 1)
            if np.any(g_of < -lim) or np.any(g_of >= lim):
                raise ValueError(f"grid values do not fit grid_bits={codebook.grid_bits} (§5.3)")
        val_of = g_of
    else:
        val_of = q_of
    return seg_of.astype(np.int64), val_of.astype(np.int64), pidx, qidx, mult


@dataclass(frozen=True)
class Int8Weights:
    """The int8 path's weight operand (§5.6): ``packed`` int8 weights (layout of
    :func:`intsim.kernels.int8dot.pack_weights`), ``colsum`` ``Σ w`` per output channel
    (int64[Co]), input channels padded to ``cin_pad`` (a multiple of 4); ``hwio`` the weights
    as int8[kh, kw, Ci, Co], the sparse tails' operand (a quarter of the int64 copy's bytes:
    the tail taps stream these rows from cache; the products are formed in int64 as before)."""

    packed: np.ndarray
    colsum: np.ndarray
    cin_pad: int
    hwio: np.ndarray


@dataclass(frozen=True)
class ConvConstants:
    """What a conv derives from its weights, codebook and numerics alone, so it is computed
    once per op and reused for every image (the engine keeps one per artifact op).

    ``weight_hwio`` the weights as int64[kh, kw, Ci/g, Co] (the sparse pass's operand);
    ``seg_of``/``val_of`` int64[num_codes], ``pidx``/``qidx`` int64[S], ``mult``
    int64[n_acc, Co]: the per-code tables and multipliers of :func:`_plan` (§5.3);
    ``ordered`` and ``worst`` (``{accumulator: W_j}``) the §5.4 analysis; ``int8``
    the packed weights, or why the weights rule the int8 path out (§5.6);
    ``planes`` per split accumulator name its :class:`PlaneMap`, or why its
    multiplicands do not fit a byte, and ``F{t}`` the :class:`FoldedPlane` of segment ``t``
    where other segments' offsets fold into it.
    """

    weight: np.ndarray
    weight_hwio: np.ndarray
    w_mant: np.ndarray
    seg_of: np.ndarray
    val_of: np.ndarray
    pidx: np.ndarray
    qidx: np.ndarray
    mult: np.ndarray
    ordered: bool
    worst: dict
    int8: Int8Weights | str
    planes: dict
    int8_parts: dict = field(default_factory=dict, compare=False, repr=False)
    """Per int8 accumulator choice (the names and sparse segments the input's census picked, and the
    codebook), the parts of :class:`~intsim.ops.conv_fast.Int8Plan` that follow from that choice
    alone (plane maps, folded multiplicands, int32 sparse slots, plane offsets and factors): filled by
    :func:`~intsim.ops.conv_fast.int8_plan` on first use, so an image only makes the choice; per
    class of input census (``"census"`` keys) the whole plan that choice gives; and per
    plane row width the taps' offsets (``run_int8``). The kernels only read these arrays."""


def _int8_weights(w: np.ndarray, groups: int, transposed: bool) -> Int8Weights | str:
    if not KI.available():
        return "this CPU lacks AVX-512 VNNI (or numba does not compile for the host CPU)"
    if transposed:
        return "the int8 path runs conv2d only, not the transposed conv"
    if groups != 1:
        return "the int8 path runs groups = 1 only"
    if w.size and (int(w.min()) < -128 or int(w.max()) > 127):
        return "weights do not fit int8"
    l1 = int(np.abs(w.reshape(w.shape[0], -1).astype(np.int64)).sum(axis=1).max()) if w.size else 0
    if KI.OFFSET_MAX * l1 > KI.ACC_LIMIT:
        return f"255·Σ|w| = {KI.OFFSET_MAX * l1} does not fit int32"
    cin_pad = -(-w.shape[3] // 4) * 4
    packed, colsum = KI.pack_weights(w, cin_pad)
    return Int8Weights(packed, colsum, cin_pad, np.ascontiguousarray(np.transpose(w, (1, 2, 3, 0)), dtype=np.int8))


@dataclass(frozen=True)
class PlaneMap:
    """One GEMM accumulator's plane on the int8 path (§5.6): code ``k`` holds ``v + o``, which is
    ``slope·k + add`` for ``lo ≤ k < hi`` (its segment's codes), ``below`` for ``k < lo`` and
    ``above`` for ``k ≥ hi`` (both ``o`` unless the plane carries folded offsets, :func:`_folded_map`);
    ``factor`` is ``f_j`` (``d_s`` for ``P_s``, ``e_s`` for ``Q_s``)."""

    lo: int
    hi: int
    slope: int
    add: int
    offset: int
    factor: int
    below: int | None = None  # None: the offset
    above: int | None = None

    @property
    def fill(self) -> tuple[int, int]:
        """``(below, above)``: ``v + o`` of the codes below / above the segment."""
        return (self.offset if self.below is None else self.below,
                self.offset if self.above is None else self.above)

    def table(self, num_codes: int) -> np.ndarray:
        """``v + o`` of every flat code, int64[num_codes] (the definition the kernel implements)."""
        k = np.arange(num_codes, dtype=np.int64)
        below, above = self.fill
        return np.where(k < self.lo, below, np.where(k >= self.hi, above, self.slope * k + self.add))


@dataclass(frozen=True)
class FoldedPlane:
    """``P_t`` with the offset accumulators of other segments folded in (§5.6, folded offsets):
    ``map`` the plane (``v = q`` in segment ``t``, ``c_s = e_s / d_t`` in each folded segment
    ``s``, 0 elsewhere), ``folded`` those segments, ``gval`` int64[num_codes] the sparse pass's
    multiplicand per code: ``G − e_s`` in a folded segment (its ``e_s`` part is in the plane),
    ``G`` elsewhere."""

    map: PlaneMap
    folded: tuple[int, ...]
    gval: np.ndarray


def _folded_map(codebook: Codebook, t: int) -> FoldedPlane | None:
    """The :class:`FoldedPlane` of segment ``t``, or None when no ``Q_s`` folds into it.

    ``Q_s`` (``e_s ≠ 0``, ``s ≠ t``) folds when ``e_s = c_s·d_t`` for an integer ``c_s``:
    ``e_s·Σ_{taps in s} w = d_t·Σ_{taps in s} w·c_s``. Flat codes are ascending by segment, so
    the segments below ``t`` share one plane value and those above another: a side folds
    when all its segments have ``e_s ≠ 0`` and the same ``c_s``, and the plane's values fit a
    byte after the offset (§5.6, offset bytes)."""
    segs = codebook.segments
    seg_t = segs[t]
    if seg_t.step == 0:
        return None
    sides = []
    for side in (range(0, t), range(t + 1, len(segs))):
        cs = {segs[s].origin // seg_t.step if segs[s].origin % seg_t.step == 0 else None for s in side}
        ok = len(side) > 0 and None not in cs and len(cs) == 1 and all(segs[s].origin != 0 for s in side)
        sides.append((cs.pop() if ok else 0, list(side) if ok else []))
    folded = sides[0][1] + sides[1][1]
    if not folded:
        return None
    qmax_t = seg_t.qmin + seg_t.count - 1
    if max(abs(sides[0][0]), abs(sides[1][0])) > max(abs(seg_t.qmin), abs(qmax_t)):
        return None  # keep P_t's bound on |v| (the rescale's int64 envelope, kernels.int8dot.conv_rows)
    o = -min(seg_t.qmin, sides[0][0], sides[1][0], 0)
    if max(qmax_t, sides[0][0], sides[1][0], 0) + o > KI.OFFSET_MAX:
        return None
    lo = codebook.bases[t]
    m = PlaneMap(lo, lo + seg_t.count, 1, seg_t.qmin - lo + o, o, int(seg_t.step),
                 below=sides[0][0] + o, above=sides[1][0] + o)
    seg_of, q_of, g_of = codebook.code_table()
    in_t = seg_of == t
    fold_of = np.zeros(codebook.num_codes, dtype=np.int64)
    gval = np.asarray(g_of, dtype=np.int64).copy()
    for s in folded:
        fold_of[seg_of == s] = segs[s].origin // seg_t.step
        gval[seg_of == s] -= segs[s].origin
    if not np.array_equal(m.table(codebook.num_codes), np.where(in_t, q_of, fold_of) + o):
        raise AssertionError(f"folded plane of segment {t} disagrees with the code table")  # a bug, not bad input
    return FoldedPlane(m, tuple(folded), gval)


def _plane_maps(codebook: Codebook) -> dict:
    """``{name: PlaneMap}`` per split accumulator (§5.6), or why its multiplicands span more than a byte.

    ``P_s``: ``v = q = k − base_s + qmin_s`` in segment ``s``, 0 elsewhere; ``Q_s``: the
    segment's indicator. ``o = −min(V ∪ {0})``; the map is checked against ``code_table``.
    ``F{t}``: the :class:`FoldedPlane` of segment ``t`` (:func:`_folded_map`), where one exists.
    """
    seg_of, q_of, _ = codebook.code_table()
    out = {}
    for s, seg in enumerate(codebook.segments):
        in_seg = seg_of == s
        lo, hi = codebook.bases[s], codebook.bases[s] + seg.count
        for nm, v, f in ((f"P{s}", np.where(in_seg, q_of, 0), seg.step),
                         (f"Q{s}", in_seg.astype(np.int64), seg.origin)):
            o = -min(int(v.min()), 0)
            if max(int(v.max()), 0) + o > KI.OFFSET_MAX:
                out[nm] = f"the multiplicands of {nm} span more than a byte"
                continue
            m = (PlaneMap(lo, hi, 1, seg.qmin - lo + o, o, int(f)) if nm[0] == "P"
                 else PlaneMap(lo, hi, 0, 1 + o, o, int(f)))
            if not np.array_equal(m.table(codebook.num_codes), v + o):
                raise AssertionError(f"plane map of {nm} disagrees with the code table")  # a bug, not bad input
            out[nm] = m
        folded = _folded_map(codebook, s)
        if folded is not None:
            out[f"F{s}"] = folded
    return out


def conv_constants(weight: np.ndarray, w_mant: np.ndarray, codebook: Codebook, numerics: Numerics, *,
                   groups: int = 1, transposed: bool = False, ordered: bool | None = None,
                   worst: dict | None = None, name: str = "conv2d") -> ConvConstants:
    """The :class:`ConvConstants` of a conv with ``weight`` int[Co, kh, kw, Ci/g] (OHWI) and
    ``w_mant`` int64[Co] on inputs of ``codebook``. ``ordered``/``worst``: the load-time
    analysis (:mod:`intsim.bounds`) when the caller has it, else computed here (same numbers)."""
    w = np.asarray(weight)
    if w.ndim != 4:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci/g], got shape {w.shape}")
    co_n = w.shape[0]
    if np.shape(w_mant) != (co_n,):
        raise ValueError(f"{name}: w_mant must have shape ({co_n},), got {np.shape(w_mant)}")
    if w.size and (int(w.min()) < -(1 << 31) or int(w.max()) >= 1 << 31):
        raise ValueError(f"{name}: weights must fit 32 bits (artifacts store int8/int16)")
    realization = numerics.realization
    seg_of, val_of, pidx, qidx, mult = _plan(codebook, realization, w_mant)
    if ordered is None:
        ordered = conv_can_overflow(w, codebook, realization, numerics.acc_bits)
    if worst is None:
        worst = accumulator_worst(w, codebook, realization)
    w_hwio = np.ascontiguousarray(np.transpose(w, (1, 2, 3, 0)), dtype=np.int64)
    return ConvConstants(w, w_hwio, np.asarray(w_mant, dtype=np.int64), seg_of, val_of, pidx, qidx, mult,
                         bool(ordered), dict(worst), _int8_weights(w, int(groups), transposed), _plane_maps(codebook))


def run_conv(codes, codebook, consts: ConvConstants, bias, groups, taps: ConvTaps, w_exp, f_out, numerics: Numerics,
         name: str, path: str | None = None, kn2row: bool = False,
         geometry: tuple[int, int, int, int] | None = None, rows_sink=None):
    w = consts.weight
    co_n = w.shape[0]
    if np.shape(bias) != (co_n,):
        raise ValueError(f"{name}: bias must have shape ({co_n},), got {np.shape(bias)}")
    nshift = int(w_exp) + int(codebook.unit_e) - int(f_out)
    if not 0 <= nshift <= MAX_SHIFT:
        raise ValueError(f"{name}: rescale shift n = w_exp + unit_e − f_out = {nshift} outside [0, {MAX_SHIFT}] (§5.2)")
    realization = numerics.realization
    seg_of, val_of, pidx, qidx, mult = consts.seg_of, consts.val_of, consts.pidx, consts.qidx, consts.mult
    ordered = consts.ordered
    requested = requested_path(path)
    S = len(codebook.segments)
    # MAC counts (§7) and the per-segment population of the input in one pass.
    iy_of, ix_of, inv_x = taps.iy_of, taps.ix_of, taps.inv_x
    macs_w, row_counts = segment_counts(codes, seg_of, S, taps.uy, taps.ux, taps.pairs)
    seg_counts = row_counts.sum(axis=0)
    macs_seg = macs_w * np.int64(co_n // int(groups))
    chosen = "reference"
    # An unordered op under 'auto' or 'int8' takes the int8 path wherever it applies, whatever the
    # GEMM bound (select_conv_path cannot refuse it then): its plan is tried first, and the GEMM
    # accumulators are chosen only when another path runs.
    if not ordered and requested in ("auto", "int8"):
        plan = int8_plan(consts, codebook, seg_counts, inv_x is not None, taps)
        if isinstance(plan, Int8Plan):
            chosen = "int8"
        elif requested == "int8":
            raise ValueError(f"{name}: conv path 'int8' refused: {plan}")
    if chosen != "int8" and requested != "reference" and (not ordered or requested != "auto"):
        gemm_accs, sparse_segs = gemm_split_plan(codebook, realization, seg_counts, can_sparse=inv_x is not None)
        chosen = select_conv_path(consts.worst, gemm_accs, bool(ordered), requested)
    policy = numerics.overflow_policy
    rmode = int(numerics.rounding_mode)
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    tallies = np.zeros((4, ho), dtype=np.int64)  # one allocation, four C-contiguous rows the kernels fill
    acc_ev, st_ev, status, status_ox = tallies
    if chosen == "reference":
        wt = np.ascontiguousarray(np.transpose(w.astype(np.int32), (1, 2, 3, 0)))
        out = np.empty((ho, wo, co_n), dtype=numerics.stream_dtype)
        K.conv_kernel(codes, wt, seg_of, val_of, pidx, qidx, mult.shape[0], iy_of, ix_of, int(groups),
                      mult, np.asarray(bias, dtype=np.int64), nshift, rmode,
                      bool(ordered), int(numerics.acc_bits), int(policy), int(numerics.stream_bits),
                      out, acc_ev, st_ev, status, status_ox)
    elif chosen == "int8":
        out = run_int8(codes, codebook, consts, np.asarray(bias, dtype=np.int64), plan, geometry, iy_of, ix_of,
                        nshift, rmode, int(policy), int(numerics.stream_bits), inv_x, row_counts, st_ev,
                        status, status_ox, rows_sink)
    else:
        out = run_gemm(codes, codebook, consts, np.asarray(bias, dtype=np.int64), int(groups), iy_of, ix_of,
                        nshift, rmode, int(policy), int(numerics.stream_bits),
                        np.float32 if chosen == "gemm32" else np.float64, gemm_accs, sparse_segs,
                        seg_of, val_of, inv_x, row_counts, st_ev, status, status_ox, kn2row)
    # one reduction for the three row sums read here (statuses are ≥ 0: a positive sum is a flagged row)
    acc_total, st_total, status_total = tallies[:3].sum(axis=1).tolist()
    if status_total:
        bad = np.flatnonzero(status)
        oy = int(bad[0])
        what = "accumulator" if status[oy] == K.STATUS_ACC_OVERFLOW else "output stream"
        bits = numerics.acc_bits if status[oy] == K.STATUS_ACC_OVERFLOW else numerics.stream_bits
        raise EngineOverflowError(
            f"{name}: {what} overflows {bits} bits at output row {oy}, column {int(status_ox[oy])} "
            f"(overflow policy 'error', arithmetic.md §4)"
        )
    if realization == "grid":
        macs = {"all": int(macs_seg.sum())}
    else:
        macs = dict(zip(map(str, range(S)), macs_seg.tolist()))  # Python ints, as int() per element
    events = {
        "macs": macs,
        "acc_overflow": acc_total,
        "stream_overflow": st_total,
        "saturations": 0,
        "ordered": bool(ordered),
    }
    return out, events
