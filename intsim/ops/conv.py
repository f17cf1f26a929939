"""``conv2d`` and ``conv_transpose2d`` over codes (arithmetic.md §5).

The wrappers check shapes, build the per-code tables and per-accumulator
multipliers of the realization (§5.3), decide the accumulation path (§5.4),
run :func:`intsim.kernels.conv.conv_kernel` and raise
:class:`~intsim.overflow.EngineOverflowError` for the ``error`` policy.

Accumulator layout (the same as :mod:`intsim.bounds`): split, per segment ``s``
in order, ``P_s`` then ``Q_s`` when ``origin_s ≠ 0``; grid, a single ``A``.
The engine takes the ordered/unordered decision from
:func:`intsim.bounds.conv_can_overflow` (the load-time analysis);
:func:`conv_can_overflow` here is the same test on bare arrays, for direct calls.

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
  groups 1 only. The sparse pass and the rescale as above, fused per tile.

``auto`` (default) takes int8 if it applies, else gemm32 if exact, else gemm64
if exact, else the reference. The environment variable ``INTSIM_CONV_PATH``
(``auto``, ``reference``, ``gemm32``, ``gemm64``, ``int8``) or the ``path``
argument overrides it; forcing a fast path that is not proven exact or does
not apply (or an ordered op onto a fast path) raises ``ValueError``. Outputs, events and MAC counts are identical on
every path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from intsim.artifact import Codebook, Numerics
from intsim.codebook_range import codebook_max_abs_grid
from intsim.kernels import conv as K
from intsim.kernels import gemm as KG
from intsim.kernels import int8dot as KI
from intsim.kernels import parallel as KP
from intsim.ops.conv_taps import ConvTaps, conv2d_taps, conv_taps, conv_transpose2d_taps
from intsim.overflow import EngineOverflowError
from intsim.rounding import MAX_SHIFT


def _pair(v, what: str) -> tuple[int, int]:
    if np.ndim(v) == 0:
        return int(v), int(v)
    v = [int(x) for x in v]
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair, got {v}")
    return v[0], v[1]


_CODE_DTYPES = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


def _check_codes(codes: np.ndarray, codebook: Codebook, name: str, in_range: bool = False) -> np.ndarray:
    # Codes stay in their (narrow) signed dtype: the kernels index with them, a copy to int64 costs a pass.
    # in_range: the caller's own encoder made them (§3.4 gives codes in [0, N) by construction), so the
    # range pass is skipped: on a large input it is a full read of the codes from memory.
    c = np.asarray(codes)
    if c.dtype not in _CODE_DTYPES:
        c = c.astype(np.int64)
    c = np.ascontiguousarray(c)
    if c.ndim != 3:
        raise ValueError(f"{name}: codes must be H×W×C, got shape {c.shape}")
    if not in_range and c.size and (int(c.min()) < 0 or int(c.max()) >= codebook.num_codes):
        raise ValueError(f"{name}: codes outside [0, {codebook.num_codes})")
    return c


def accumulator_layout(codebook: Codebook, realization: str) -> list[tuple[str, int | None, int]]:
    """``(kind, segment, a_j)`` per accumulator (§5.3; ``a_j`` of §5.4).

    kind "P" (Σ w·q, a = max|q| of the segment), "Q" (Σ w, a = 1) or "A" (Σ w·G,
    a = max|G| of the codebook, segment None).
    """
    if realization == "split":
        out: list[tuple[str, int | None, int]] = []
        for s_i, s in enumerate(codebook.segments):
            out.append(("P", s_i, max(abs(s.qmin), abs(s.qmax))))
            if s.origin != 0:
                out.append(("Q", s_i, 1))
        return out
    if realization == "grid":
        return [("A", None, codebook_max_abs_grid(codebook))]
    raise ValueError(f"unknown realization {realization!r} (expected 'split' or 'grid')")


def conv_can_overflow(weight: np.ndarray, codebook: Codebook, realization: str, acc_bits: int) -> bool:
    """True iff some ``W_j = max_co Σ_{taps,ci} |w[co,…]|·a_j > 2^(acc_bits−1) − 1`` (§5.4).

    ``weight`` int [Co, kh, kw, Ci/g] (OHWI). Exact Python-int comparison; equal to
    :func:`intsim.bounds.conv_can_overflow` for the op holding these arrays.
    """
    w = np.asarray(weight).astype(np.int64)
    # |w| ≤ 2^15 (int8/int16 weights) and the element count is an array size: no int64 wrap.
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    limit = (1 << (int(acc_bits) - 1)) - 1
    return any(l1 * a > limit for _, _, a in accumulator_layout(codebook, realization))


def accumulator_names(codebook: Codebook, realization: str) -> list[str]:
    """Names of the accumulators in layout order, as :mod:`intsim.bounds` names them ('P0', 'Q2', 'A')."""
    return [kind if seg is None else f"{kind}{seg}" for kind, seg, _ in accumulator_layout(codebook, realization)]


def accumulator_worst(weight: np.ndarray, codebook: Codebook, realization: str) -> dict[str, int]:
    """``{name: W_j}`` with ``W_j = max_co Σ_{taps,ci} |w[co,…]|·a_j`` (§5.4), exact Python ints.

    The same numbers as ``AccumulatorBound.worst_max`` of
    :func:`intsim.bounds.conv_accumulators` for the op holding these arrays.
    """
    w = np.asarray(weight).astype(np.int64)
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    layout = accumulator_layout(codebook, realization)
    return {n: l1 * a for n, (_, _, a) in zip(accumulator_names(codebook, realization), layout)}


# --------------------------------------------------------------------------
# path selection (docs/arithmetic.md)

PATH_ENV = "INTSIM_CONV_PATH"
PATHS = ("auto", "reference", "gemm32", "gemm64", "int8")
F32_EXACT = 1 << 24  # float32 sums of integers are exact while every partial sum stays below 2^24
F64_EXACT = 1 << 53  # float64: below 2^53
SPARSE_FRACTION = 0.05  # split: a non-dominant segment this rare goes through the sparse pass
GEMM_CHUNK_BYTES = 2 << 20  # band size of the patch matrix (bounds the extra memory of the GEMM path)
KN2ROW_MAX_CO = 16  # stride-1 convs with at most this many output channels use the kn2row form


def requested_path(path: str | None = None) -> str:
    """The requested path: ``path`` if given, else ``$INTSIM_CONV_PATH``, else ``auto``."""
    p = path if path is not None else os.environ.get(PATH_ENV, "auto")
    p = str(p).strip().lower() or "auto"
    if p not in PATHS:
        raise ValueError(f"conv path {p!r} unknown (expected one of {', '.join(PATHS)}; from "
                         f"{'the path argument' if path is not None else '$' + PATH_ENV})")
    return p


def gemm_split_plan(codebook: Codebook, realization: str, seg_counts, can_sparse: bool = True):
    """Which accumulators the GEMM forms and which segments go through the sparse pass.

    Returns ``(gemm_accs, sparse_segments)``: ``gemm_accs`` the accumulator names
    formed by GEMM (grid: ``['A']``; split: ``P_s`` and ``Q_s`` of every GEMM
    segment), ``sparse_segments`` the split segments handled by the sparse int64
    pass. split: the most populated segment is a GEMM segment; any other one is
    sparse when it holds at most :data:`SPARSE_FRACTION` of the input elements.
    """
    if realization == "grid":
        return ["A"], []
    counts = [int(c) for c in seg_counts]
    total = sum(counts)
    top = int(np.argmax(counts)) if counts else 0
    gemm_segs, sparse = [], []
    for s in range(len(codebook.segments)):
        if s != top and can_sparse and counts[s] <= SPARSE_FRACTION * total:
            sparse.append(s)
        else:
            gemm_segs.append(s)
    names = []
    for s in gemm_segs:
        names.append(f"P{s}")
        if codebook.segments[s].origin != 0:
            names.append(f"Q{s}")
    return names, sparse


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
    multiplicands do not fit a byte.
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
    ``slope·k + add`` for ``lo ≤ k < hi`` (its segment's codes) and ``o`` otherwise; ``factor``
    is ``f_j`` (``d_s`` for ``P_s``, ``e_s`` for ``Q_s``)."""

    lo: int
    hi: int
    slope: int
    add: int
    offset: int
    factor: int

    def table(self, num_codes: int) -> np.ndarray:
        """``v + o`` of every flat code, int64[num_codes] (the definition the kernel implements)."""
        k = np.arange(num_codes, dtype=np.int64)
        return np.where((k >= self.lo) & (k < self.hi), self.slope * k + self.add, self.offset)


def _plane_maps(codebook: Codebook) -> dict:
    """``{name: PlaneMap}`` per split accumulator (§5.6), or why its multiplicands span more than a byte.

    ``P_s``: ``v = q = k − base_s + qmin_s`` in segment ``s``, 0 elsewhere; ``Q_s``: the
    segment's indicator. ``o = −min(V ∪ {0})``; the map is checked against ``code_table``.
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


def _run(codes, codebook, consts: ConvConstants, bias, groups, taps: ConvTaps, w_exp, f_out, numerics: Numerics,
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
    macs_w, row_counts = segment_counts(codes, seg_of, S, taps.uy, taps.ux)
    seg_counts = row_counts.sum(axis=0)
    macs_seg = macs_w * np.int64(co_n // int(groups))
    chosen = "reference"
    if requested != "reference" and (not ordered or requested != "auto"):
        gemm_accs, sparse_segs = gemm_split_plan(codebook, realization, seg_counts, can_sparse=inv_x is not None)
        chosen = select_conv_path(consts.worst, gemm_accs, bool(ordered), requested)
        if not ordered and requested in ("auto", "int8"):
            plan = int8_plan(consts, codebook, seg_counts, inv_x is not None, taps)
            if isinstance(plan, Int8Plan):
                chosen = "int8"
            elif requested == "int8":
                raise ValueError(f"{name}: conv path 'int8' refused: {plan}")
    policy = numerics.overflow_policy
    rmode = int(numerics.rounding_mode)
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    acc_ev = np.zeros(ho, dtype=np.int64)
    st_ev = np.zeros(ho, dtype=np.int64)
    status = np.zeros(ho, dtype=np.int64)
    status_ox = np.zeros(ho, dtype=np.int64)
    if chosen == "reference":
        wt = np.ascontiguousarray(np.transpose(w.astype(np.int32), (1, 2, 3, 0)))
        out = np.empty((ho, wo, co_n), dtype=np.int64)
        K.conv_kernel(codes, wt, seg_of, val_of, pidx, qidx, mult.shape[0], iy_of, ix_of, int(groups),
                      mult, np.asarray(bias, dtype=np.int64), nshift, rmode,
                      bool(ordered), int(numerics.acc_bits), int(policy), int(numerics.stream_bits),
                      out, acc_ev, st_ev, status, status_ox)
    elif chosen == "int8":
        out = _run_int8(codes, codebook, consts, np.asarray(bias, dtype=np.int64), plan, geometry, iy_of, ix_of,
                        nshift, rmode, int(policy), int(numerics.stream_bits), inv_x, row_counts, st_ev,
                        status, status_ox, rows_sink)
    else:
        out = _run_gemm(codes, codebook, consts, np.asarray(bias, dtype=np.int64), int(groups), iy_of, ix_of,
                        nshift, rmode, int(policy), int(numerics.stream_bits),
                        np.float32 if chosen == "gemm32" else np.float64, gemm_accs, sparse_segs,
                        seg_of, val_of, inv_x, row_counts, st_ev, status, status_ox, kn2row)
    bad = np.flatnonzero(status)
    if bad.size:
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
        macs = {str(s): int(macs_seg[s]) for s in range(S)}
    events = {
        "macs": macs,
        "acc_overflow": int(acc_ev.sum()),
        "stream_overflow": int(st_ev.sum()),
        "saturations": 0,
        "ordered": bool(ordered),
    }
    return out, events


def segment_counts(codes, seg_of, n_segments, uy, ux):
    """(tap-weighted count per segment, plain count per input row and segment int64[H, S]),
    banded over the thread pool (see :func:`intsim.kernels.gemm.segment_counts`). One segment:
    every element is in it, so the counts follow from the shape (``C·Σuy·Σux`` and ``W·C``)."""
    H, W, Ci = codes.shape
    if n_segments == 1:
        return (np.array([Ci * int(np.sum(uy)) * int(np.sum(ux))], dtype=np.int64),
                np.full((H, 1), W * Ci, dtype=np.int64))
    row_counts = np.zeros((H, n_segments), dtype=np.int64)
    if n_segments <= 3:  # flat codes hold one ascending range per segment (§3.2, Codebook.code_table)
        starts = [int(np.searchsorted(seg_of, s)) for s in (1, 2)]
        starts = [v if s < n_segments else np.iinfo(np.int64).max for s, v in zip((1, 2), starts)]
        parts = KP.run_bands(lambda lo, hi: KG.segment_counts_ranges(codes, starts[0], starts[1], uy, ux, lo, hi,
                                                                     row_counts), KP.bands(H, min_rows=8))
    else:
        parts = KP.run_bands(lambda lo, hi: KG.segment_counts(codes, seg_of, n_segments, uy, ux, lo, hi,
                                                              row_counts), KP.bands(H, min_rows=8))
    weighted = np.zeros(n_segments, dtype=np.int64)
    for wgt in parts:
        weighted += wgt[:n_segments]
    return weighted, row_counts


def _sparse_lists(codes, codebook, sparse_segs, seg_of, row_counts):
    """The elements whose code is in one of ``sparse_segs``, listed row by row for the sparse
    pass (:func:`intsim.kernels.gemm.sparse_taps`): ``(rowptr, pos_x, pos_c, gval)``, or None
    when there are none."""
    sparse = [s for s in sparse_segs if row_counts[:, s].sum() > 0]
    if not sparse:
        return None
    H = codes.shape[0]
    gval = np.ascontiguousarray(codebook.code_table()[2], dtype=np.int64)
    is_sparse = np.zeros(len(codebook.segments), dtype=bool)
    is_sparse[sparse] = True
    rowptr = np.zeros(H + 1, dtype=np.int64)
    np.cumsum(row_counts[:, sparse].sum(axis=1), out=rowptr[1:])
    pos_x = np.empty(int(rowptr[-1]), dtype=np.int64)
    pos_c = np.empty(int(rowptr[-1]), dtype=np.int64)
    is_sparse_code = is_sparse[seg_of]
    dense = np.flatnonzero(~is_sparse_code)
    if dense.size and dense[-1] - dense[0] + 1 == dense.size:  # the other codes are one range (the usual case)
        d_lo, d_hi = int(dense[0]), int(dense[-1]) + 1
        fill = lambda lo, hi: KG.sparse_fill_outside(codes, d_lo, d_hi, rowptr, lo, hi, pos_x, pos_c)  # noqa: E731
    else:
        fill = lambda lo, hi: KG.sparse_fill(codes, is_sparse_code, rowptr, lo, hi, pos_x, pos_c)  # noqa: E731
    KP.run_bands(fill, KP.bands(H, min_rows=8))
    return rowptr, pos_x, pos_c, gval


def _sparse_pass(codes, codebook, wt, groups, sparse_segs, seg_of, row_counts, iy_of, inv_x, out):
    """The GEMM path's sparse pass: a function ``(oy0, oy1)`` adding ``Σ w·G`` of the
    elements whose code is in one of ``sparse_segs`` to output rows ``[oy0, oy1)`` of ``out``
    (exact int64, any order: the op is unordered, §5.4). Lists the elements once, here."""
    lists = _sparse_lists(codes, codebook, sparse_segs, seg_of, row_counts)
    if lists is None:
        return lambda oy0, oy1: None
    rowptr, pos_x, pos_c, gval = lists
    return lambda oy0, oy1: KG.sparse_taps(codes, rowptr, pos_x, pos_c, gval, wt, iy_of, inv_x, groups, oy0, oy1,
                                           out)


@dataclass(frozen=True)
class Int8Plan:
    """What the int8 path runs (arithmetic.md §5.6): ``planes`` the :class:`PlaneMap` of each
    GEMM accumulator (split names, also for the grid realization); ``sparse_segs`` go
    through the sparse pass; ``y_off``/``x_off``: input index = ``o·stride + k·dilation + off``.
    """

    planes: list[PlaneMap]
    sparse_segs: list[int]
    y_off: int
    x_off: int


def int8_plan(consts: ConvConstants, codebook: Codebook, seg_counts, can_sparse: bool,
              taps: ConvTaps) -> Int8Plan | str:
    """The int8 path's plan for one conv call, or why it does not apply (§5.6).

    ``taps``: the call's :class:`~intsim.ops.conv_taps.ConvTaps`. Conditions: the weights' (``consts.int8``: the host runs the
    kernels, groups 1, weights in ``[−128, 127]``, ``255·max_co Σ|w| < 2^31``), tap
    tables of a strided conv, and every GEMM accumulator's multiplicands span at most
    255 after the offset.
    """
    if isinstance(consts.int8, str):
        return consts.int8
    if taps.y_off is None or taps.x_off is None:
        return "the int8 path runs conv2d only (tap tables of a strided convolution), not the transposed conv"
    names, sparse = gemm_split_plan(codebook, "split", seg_counts, can_sparse)
    maps = [consts.planes[nm] for nm in names]
    refused = [m for m in maps if isinstance(m, str)]
    return refused[0] if refused else Int8Plan(maps, sparse, taps.y_off, taps.x_off)


def _run_int8(codes, codebook, consts: ConvConstants, bias, plan: Int8Plan, geometry, iy_of, ix_of, nshift, rmode,
              policy, stream_bits, inv_x, row_counts, st_ev, status, status_ox, rows_sink=None):
    """The int8 path (see the module docstring and :mod:`intsim.kernels.int8dot`); returns the
    int64 output stream. ``T = Σ_j f_j·acc_j`` (plus the sparse pass) in grid units, then
    ``I = base·T + B`` as on the GEMM path. ``rows_sink``: called with each band's finished
    output rows, ``rows_sink(oy0, oy1, out[oy0:oy1])``, by the thread that made them."""
    w = consts.weight
    co_n, kh, kw, _ = w.shape
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    base = consts.w_mant * np.int64(codebook.unit_m)
    # Every plane's tile is formed and combined in registers; out is written once, by the rescale.
    # The sparse tails' Σ w·G is formed per output row in the same pass (kernels.int8dot.conv_rows).
    out = np.empty((ho, wo, co_n), dtype=np.int64)
    if ho == 0 or wo == 0:
        return out
    lists = _sparse_lists(codes, codebook, plan.sparse_segs, consts.seg_of, row_counts)
    if lists is None:
        lists = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    sparse = (codes, lists[0], lists[1], lists[2], lists[3], consts.int8.hwio, iy_of,
              inv_x if inv_x is not None else np.zeros((0, 0), np.int64), 1)
    sh, sw, dh, dw = geometry
    cp = consts.int8.cin_pad
    hp = (ho - 1) * sh + (kh - 1) * dh + 1
    wp = (wo - 1) * sw + (kw - 1) * dw + 1
    wpk, colsum = consts.int8.packed, consts.int8.colsum
    k4n = kh * kw * cp // 4
    tapoffs = np.array([(ky * dh * wp + kx * dw) * cp for ky in range(kh) for kx in range(kw)], dtype=np.int64)
    size = hp * wp * cp
    planes = np.empty((len(plan.planes), size + KI.SLACK_PIXELS * sw * cp), dtype=np.uint8)
    planes[:, size:] = 0  # a tile may read past the last row; those outputs are discarded
    for i, m in enumerate(plan.planes):
        plane = planes[i, :size].reshape(hp, wp, cp)
        KP.run_bands(lambda lo, hi, m=m, plane=plane:
                     KI.offset_plane(codes, m.lo, m.hi, m.slope, m.add, m.offset, -plan.y_off, -plan.x_off, lo, hi,
                                     plane),
                     KP.bands(hp, min_rows=8))
    offsets = np.array([m.offset for m in plan.planes], dtype=np.int64)
    factors = np.array([m.factor for m in plan.planes], dtype=np.int64)

    def band(oy0, oy1):
        KI.conv_rows(out, oy0, oy1, planes, sw * cp, sh * wp * cp, tapoffs, cp // 4, wpk, k4n, offsets, colsum,
                     factors, base, bias, nshift, rmode, policy, stream_bits, sparse, st_ev, status, status_ox)
        if rows_sink is not None:
            rows_sink(oy0, oy1, out[oy0:oy1])

    KP.run_bands(band, KP.bands(ho))
    return out


def _run_gemm(codes, codebook, consts: ConvConstants, bias, groups, iy_of, ix_of, nshift, rmode, policy, stream_bits,
              dtype, gemm_accs, sparse_segs, seg_of, val_of, inv_x, row_counts, st_ev, status, status_ox,
              kn2row=False):
    """The GEMM path (see the module docstring); returns the int64 output stream.

    Every multiplier of (5.3) is ``M_j = base·f_j`` (``base = m_w·unit_m``; ``f_j`` = ``d_s``
    for ``P_s``, ``e_s`` for ``Q_s``, 1 for ``A``), so the kernels form
    ``T = Σ_j f_j·acc_j`` in grid units and rescale ``I = base·T + B`` once.
    """
    H, W, _ = codes.shape
    w, w_mant = consts.weight, consts.w_mant
    co_n, kh, kw, cig = w.shape
    cog = co_n // groups
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    base = np.asarray(w_mant, dtype=np.int64) * np.int64(codebook.unit_m)
    out = np.zeros((ho, wo, co_n), dtype=np.int64)  # T, then X in place
    sparse_taps = _sparse_pass(codes, codebook, consts.weight_hwio, groups, sparse_segs, seg_of, row_counts, iy_of,
                               inv_x, out)
    # --- GEMM accumulators: value planes (banded over input rows) and their factors f_j
    planes, factors = [], []
    for nm in gemm_accs:
        if nm == "A":
            table, f = val_of, 1  # grid values G
        elif nm[0] == "P":
            s = int(nm[1:])
            table, f = np.where(seg_of == s, val_of, 0), codebook.segments[s].step  # q in segment s, else 0
        else:
            s = int(nm[1:])
            table, f = (seg_of == s).astype(np.int64), codebook.segments[s].origin  # the segment's indicator
        plane = np.empty(codes.shape, dtype=dtype)
        tab = table.astype(dtype)
        KP.run_bands(lambda lo, hi, plane=plane, tab=tab: KG.value_plane(codes, tab, plane, lo, hi),
                     KP.bands(H, min_rows=8))
        planes.append(plane)
        factors.append(int(f))
    itemsize = np.dtype(dtype).itemsize
    nthreads = KP.num_threads()
    if kn2row and groups == 1:
        # kn2row: one GEMM of the input plane with all taps' weights, Y[iy·W+ix, tap·Co+co], then tap sums.
        ntap = kh * kw
        wall = np.ascontiguousarray(np.transpose(w, (3, 1, 2, 0)).reshape(cig, ntap * co_n).astype(dtype))
        in_per_out = max(1, -(-H // ho))
        rows = max(1, min(ho, GEMM_CHUNK_BYTES // max(1, in_per_out * W * ntap * co_n * itemsize)))
        if nthreads > 1:
            rows = max(1, min(rows, -(-ho // (3 * nthreads))))

        def band(oy0, oy1):
            sparse_taps(oy0, oy1)
            need = iy_of[oy0:oy1]
            need = need[need >= 0]
            iy_lo, iy_hi = (int(need.min()), int(need.max()) + 1) if need.size else (0, 0)
            Y = np.empty(((iy_hi - iy_lo) * W, ntap * co_n), dtype=dtype)
            for k in range(len(planes) - 1, -1, -1):  # the first accumulator last: fused with the rescale
                if Y.shape[0]:
                    np.matmul(planes[k][iy_lo:iy_hi].reshape(-1, cig), wall, out=Y)
                KG.kn2row_rows(out, oy0, oy1, Y, iy_lo, W, iy_of, ix_of, factors[k], base, bias, nshift, rmode,
                               policy, stream_bits, k == 0, st_ev, status, status_ox)
    elif groups > 1 and cig == 1:
        # depthwise (one input channel per group): direct tap sums over all channels (§5.6: exact, any order)
        wdw = np.ascontiguousarray(np.transpose(w[:, :, :, 0], (1, 2, 0)).astype(dtype))  # [kh, kw, Co]
        rows = max(1, min(ho, GEMM_CHUNK_BYTES // max(1, wo * co_n * itemsize)))
        if nthreads > 1:
            rows = max(1, min(rows, -(-ho // (3 * nthreads))))

        def band(oy0, oy1):
            sparse_taps(oy0, oy1)
            acc = np.empty(((oy1 - oy0) * wo, co_n), dtype=dtype)
            for k in range(len(planes) - 1, -1, -1):  # the first accumulator last: fused with the rescale
                KG.depthwise_rows(planes[k], iy_of, ix_of, oy0, oy1, wdw, cog, acc)
                if k:
                    KG.add_scaled_rows(out, oy0, acc, factors[k])
                else:
                    KG.finish_rows(out, oy0, acc, factors[0], base, bias, nshift, rmode, policy, stream_bits,
                                   st_ev, status, status_ox)
    else:
        kdim = kh * kw * cig
        wmats = [np.ascontiguousarray(np.transpose(w[g * cog:(g + 1) * cog], (1, 2, 3, 0)).reshape(kdim, cog)
                                      .astype(dtype)) for g in range(groups)]
        rows = max(1, min(ho, GEMM_CHUNK_BYTES // max(1, wo * kdim * itemsize)))
        if nthreads > 1:  # enough bands for every thread (dynamic scheduling)
            rows = max(1, min(rows, -(-ho // (3 * nthreads))))

        def band(oy0, oy1):
            sparse_taps(oy0, oy1)
            m = (oy1 - oy0) * wo
            cols = np.empty((m, kdim), dtype=dtype)
            acc = np.empty((m, co_n), dtype=dtype)
            for k in range(len(planes) - 1, -1, -1):  # the first accumulator last: fused with the rescale
                for g in range(groups):
                    KG.im2col(planes[k], iy_of, ix_of, oy0, oy1, g * cig, cig, cols)
                    if groups == 1:
                        np.matmul(cols, wmats[0], out=acc)
                    else:
                        acc[:, g * cog:(g + 1) * cog] = cols @ wmats[g]
                if k:
                    KG.add_scaled_rows(out, oy0, acc, factors[k])
                else:
                    KG.finish_rows(out, oy0, acc, factors[0], base, bias, nshift, rmode, policy, stream_bits,
                                   st_ev, status, status_ox)

    band_list = [(lo, min(ho, lo + rows)) for lo in range(0, ho, rows)]
    with KP.blas_single_thread() as single:
        if single:
            KP.run_bands(band, band_list)
        else:  # BLAS threads itself: run the bands one after the other
            for lo, hi in band_list:
                band(lo, hi)
    return out


def conv2d_output_hw(hw: tuple, kernel, stride, padding, dilation) -> tuple[int, int] | None:
    """``(Ho, Wo)`` of a conv2d (§5.1) on an ``hw`` input, or None for a geometry :func:`conv2d`
    refuses (it then says why)."""
    try:
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        dh, dw = _pair(dilation, "dilation")
    except ValueError:
        return None
    if min(sh, sw, dh, dw, kh, kw) < 1 or min(ph, pw) < 0:
        return None
    ho, wo = K.conv2d_output_size(hw[0], kh, sh, ph, dh), K.conv2d_output_size(hw[1], kw, sw, pw, dw)
    return (ho, wo) if ho >= 0 and wo >= 0 else None


def conv2d(codes: np.ndarray, codebook: Codebook, weight: np.ndarray, w_mant: np.ndarray, bias: np.ndarray, *,
           w_exp: int, f_out: int, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
           numerics: Numerics = Numerics(), name: str = "conv2d",
           ordered: bool | None = None, path: str | None = None,
           worst: dict | None = None, constants: ConvConstants | None = None,
           codes_in_range: bool = False, rows_sink=None) -> tuple[np.ndarray, dict]:
    """2-D convolution of codes (arithmetic.md §5.1–§5.4).

    codes int16/int32/int64[H, W, Ci] (flat codes of ``codebook``); weight int[Co, kh, kw, Ci/g]
    (OHWI); w_mant int64[Co] (m_w); bias int64[Co] (units 2^-(w_exp+unit_e));
    ``w_exp`` = k_w; ``f_out`` the output stream frac. ``ordered``: None decides
    by the worst case of §5.4; True/False forces a path (tests; forcing False on
    an op that can overflow gives int64 sums without the policy). ``path``:
    ``auto``/``reference``/``gemm32``/``gemm64``/``int8`` (None: ``$INTSIM_CONV_PATH``,
    default auto; see the module docstring). ``worst``: ``{accumulator name: W_j}``
    from :func:`intsim.bounds.conv_accumulators` (None: computed here, same numbers).
    ``constants``: :func:`conv_constants` of these weights, codebook and numerics
    (then ``ordered`` and ``worst`` are taken from it); None computes them.
    ``codes_in_range``: the codes are the output of an encoder of ``codebook`` (the engine's),
    so they lie in ``[0, N)`` and are not range-checked; otherwise a code outside is refused.
    ``rows_sink``: on the int8 path, called with each band of finished output rows as
    ``rows_sink(oy0, oy1, rows)`` from the thread that made them (a consumer fused with
    the conv reads them while they are in cache); the other paths do not call it.
    Returns (int64[Ho, Wo, Co] stream, events with macs, acc_overflow,
    stream_overflow, saturations, ordered).
    """
    c = _check_codes(codes, codebook, name, codes_in_range)
    w = np.asarray(weight)
    groups = int(groups)
    if w.ndim != 4:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci/g], got shape {w.shape}")
    co_n, kh, kw, cig = w.shape
    if groups < 1 or co_n % groups or cig * groups != c.shape[2]:
        raise ValueError(f"{name}: channels inconsistent: input {c.shape[2]}, weight {w.shape}, groups {groups}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{name}: stride/dilation must be >= 1 and padding >= 0")
    taps = conv2d_taps(c.shape[0], c.shape[1], kh, kw, sh, sw, ph, pw, dh, dw)
    # kn2row (one GEMM over all taps, then tap sums) for narrow stride-1 outputs, where the
    # im2col GEMM would have too few columns to run well.
    kn2row = groups == 1 and (sh, sw) == (1, 1) and co_n <= KN2ROW_MAX_CO
    if constants is None:
        constants = conv_constants(w, w_mant, codebook, numerics, groups=groups, ordered=ordered, worst=worst,
                                   name=name)
    return _run(c, codebook, constants, bias, groups, taps, w_exp, f_out, numerics, name, path, kn2row,
                (sh, sw, dh, dw), rows_sink)


def conv_transpose2d(codes: np.ndarray, codebook: Codebook, weight: np.ndarray, w_mant: np.ndarray,
                     bias: np.ndarray, *, w_exp: int, f_out: int, stride=(1, 1), padding=(0, 0),
                     output_padding=(0, 0), numerics: Numerics = Numerics(), name: str = "conv_transpose2d",
                     ordered: bool | None = None, path: str | None = None,
                     worst: dict | None = None, constants: ConvConstants | None = None,
                     codes_in_range: bool = False) -> tuple[np.ndarray, dict]:
    """Transposed convolution, gather form (arithmetic.md §5.5; groups 1, dilation 1).

    weight int[Co, kh, kw, Ci] (torch's [Ci, Co, kh, kw] transposed, not
    flipped); other arguments and the result as :func:`conv2d`.
    """
    c = _check_codes(codes, codebook, name, codes_in_range)
    w = np.asarray(weight)
    if w.ndim != 4 or w.shape[3] != c.shape[2]:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci={c.shape[2]}], got shape {w.shape}")
    _, kh, kw, _ = w.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
    if min(sh, sw) < 1 or min(ph, pw, oph, opw) < 0:
        raise ValueError(f"{name}: stride must be >= 1, padding and output_padding >= 0")
    if oph >= sh or opw >= sw:
        raise ValueError(f"{name}: output_padding {(oph, opw)} must be smaller than stride {(sh, sw)}")
    taps = conv_transpose2d_taps(c.shape[0], c.shape[1], kh, kw, sh, sw, ph, pw, oph, opw)
    # kn2row: the gather form's patch matrix is mostly padding taps; kn2row multiplies each input once.
    if constants is None:
        constants = conv_constants(w, w_mant, codebook, numerics, transposed=True, ordered=ordered, worst=worst,
                                   name=name)
    return _run(c, codebook, constants, bias, 1, taps, w_exp, f_out, numerics, name, path, True)


def conv_rows(codes_win: np.ndarray, win_y0: int, in_h: int, out_y0: int, out_y1: int, codebook: Codebook,
              weight: np.ndarray, w_mant: np.ndarray, bias: np.ndarray, *, w_exp: int, f_out: int,
              transposed: bool = False, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
              output_padding=(0, 0), numerics: Numerics = Numerics(), name: str = "conv2d",
              ordered: bool | None = None, path: str | None = None,
              worst: dict | None = None, constants: ConvConstants | None = None) -> tuple[np.ndarray, dict]:
    """Output rows ``[out_y0, out_y1)`` of :func:`conv2d` (or :func:`conv_transpose2d`) of an input
    of height ``in_h``, given only the input rows ``[win_y0, win_y0 + codes_win.shape[0])`` (full width).

    The window must hold every row those outputs read. The result and the events
    (MACs of those output rows, their overflow events) are exactly the untiled
    op's restricted to these rows: the same tap tables, sliced. Used by
    :mod:`intsim.tiling`.
    """
    c = _check_codes(codes_win, codebook, name)
    w = np.asarray(weight)
    if w.ndim != 4:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci/g], got shape {w.shape}")
    co_n, kh, kw, _ = w.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if transposed:
        oph, opw = _pair(output_padding, "output_padding")
        iy_full = K.conv_transpose2d_tap_table(int(in_h), kh, sh, ph, oph)
        ix_of = K.conv_transpose2d_tap_table(c.shape[1], kw, sw, pw, opw)
        groups, kn2row, geometry = 1, True, None
    else:
        dh, dw = _pair(dilation, "dilation")
        iy_full = K.conv2d_tap_table(int(in_h), kh, sh, ph, dh)
        ix_of = K.conv2d_tap_table(c.shape[1], kw, sw, pw, dw)
        kn2row = int(groups) == 1 and (sh, sw) == (1, 1) and co_n <= KN2ROW_MAX_CO
        geometry = (sh, sw, dh, dw)
    if not 0 <= out_y0 <= out_y1 <= iy_full.shape[0]:
        raise ValueError(f"{name}: output rows [{out_y0}, {out_y1}) outside [0, {iy_full.shape[0]})")
    iy = iy_full[out_y0:out_y1]
    valid = iy >= 0
    if valid.any() and (int(iy[valid].min()) < win_y0 or int(iy[valid].max()) >= win_y0 + c.shape[0]):
        raise ValueError(f"{name}: input window rows [{win_y0}, {win_y0 + c.shape[0]}) do not cover the rows "
                         f"output rows [{out_y0}, {out_y1}) read")
    iy_of = np.where(valid, iy - int(win_y0), -1).astype(np.int64)
    if constants is None:
        constants = conv_constants(w, w_mant, codebook, numerics, groups=int(groups), transposed=transposed,
                                   ordered=ordered, worst=worst, name=name)
    return _run(c, codebook, constants, bias, int(groups), conv_taps(iy_of, ix_of, c.shape[:2], geometry), w_exp,
                f_out, numerics, name, path, kn2row, geometry)
