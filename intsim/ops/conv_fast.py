"""The fast forms of a conv (arithmetic.md §5.4, §5.6): the GEMM and int8 paths and the
exact sparse pass over rare segments, siblings of the reference kernel
(:func:`intsim.kernels.conv.conv_kernel`). :mod:`intsim.ops.conv_paths` decides which runs;
every form gives the same outputs, events and MAC counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from intsim.artifact_model import Codebook
from intsim.kernels import gemm as KG
from intsim.kernels import int8dot as KI
from intsim.kernels import parallel as KP
from intsim.numerics import stream_dtype
from intsim.ops.conv_taps import ConvTaps

if TYPE_CHECKING:  # annotations only: conv_paths imports this module
    from intsim.ops.conv_paths import ConvConstants, PlaneMap


SPARSE_FRACTION = 0.05  # split: a non-dominant segment this rare goes through the sparse pass


# The int8 path: a dense non-dominant segment costs one more uint8 plane through the VNNI tile
# (its offset folded into the dominant plane, §5.6), the sparse pass costs per listed element.
INT8_SPARSE_FRACTION = 0.025  # measured: 1.5–3.5 % within 1 % end to end on the default IMDN artifacts (docs/speed.md)


_INT64_MAX = (1 << 63) - 1  # "no such segment": np.iinfo(np.int64).max, without its per-call object


GEMM_CHUNK_BYTES = 2 << 20  # band size of the patch matrix (bounds the extra memory of the GEMM path)


def gemm_split_plan(codebook: Codebook, realization: str, seg_counts, can_sparse: bool = True,
                    fraction: float | None = None):
    """Which accumulators the GEMM forms and which segments go through the sparse pass.

    Returns ``(gemm_accs, sparse_segments)``: ``gemm_accs`` the accumulator names
    formed by GEMM (grid: ``['A']``; split: ``P_s`` and ``Q_s`` of every GEMM
    segment), ``sparse_segments`` the split segments handled by the sparse int64
    pass. split: the most populated segment is a GEMM segment; any other one is
    sparse when it holds at most ``fraction`` (default :data:`SPARSE_FRACTION`) of the input elements.
    """
    fraction = SPARSE_FRACTION if fraction is None else fraction
    if realization == "grid":
        return ["A"], []
    counts = [int(c) for c in seg_counts]
    total = sum(counts)
    top = counts.index(max(counts)) if counts else 0  # np.argmax's first maximum, without a list→array pass
    gemm_segs, sparse = [], []
    for s in range(len(codebook.segments)):
        if s != top and can_sparse and counts[s] <= fraction * total:
            sparse.append(s)
        else:
            gemm_segs.append(s)
    names = []
    for s in gemm_segs:
        names.append(f"P{s}")
        if codebook.segments[s].origin != 0:
            names.append(f"Q{s}")
    return names, sparse


def segment_counts(codes, seg_of, n_segments, uy, ux, pairs: int | None = None):
    """(tap-weighted count per segment, plain count per input row and segment int64[H, S]),
    banded over the thread pool (see :func:`intsim.kernels.gemm.segment_counts`). One segment:
    every element is in it, so the counts follow from the shape (``C·Σuy·Σux`` and ``W·C``;
    ``pairs``: ``Σuy·Σux`` when the caller has it, :attr:`ConvTaps.pairs`)."""
    H, W, Ci = codes.shape
    if n_segments == 1:
        pairs = int(np.sum(uy)) * int(np.sum(ux)) if pairs is None else pairs
        return np.array([Ci * pairs], dtype=np.int64), np.full((H, 1), W * Ci, dtype=np.int64)
    row_counts = np.zeros((H, n_segments), dtype=np.int64)
    if n_segments <= 3:  # flat codes hold one ascending range per segment (§3.2, Codebook.code_table)
        starts = [int(seg_of.searchsorted(s)) for s in (1, 2)]  # the method: no np.searchsorted dispatch
        starts = [v if s < n_segments else _INT64_MAX for s, v in zip((1, 2), starts)]
        parts = KP.run_bands(lambda lo, hi: KG.segment_counts_ranges(codes, starts[0], starts[1], uy, ux, lo, hi,
                                                                     row_counts), KP.bands(H, min_rows=8))
    else:
        parts = KP.run_bands(lambda lo, hi: KG.segment_counts(codes, seg_of, n_segments, uy, ux, lo, hi,
                                                              row_counts), KP.bands(H, min_rows=8))
    if len(parts) == 1:  # one band (a small input): its counts as they are, in a fresh int64 array
        return np.array(parts[0][:n_segments], dtype=np.int64), row_counts
    weighted = np.zeros(n_segments, dtype=np.int64)
    for wgt in parts:
        weighted += wgt[:n_segments]
    return weighted, row_counts


def _sparse_lists(codes, codebook, sparse_segs, seg_of, row_counts, gval=None, threads=None):
    """The elements whose code is in one of ``sparse_segs``, listed row by row for the sparse
    pass (:func:`intsim.kernels.gemm.sparse_taps`): ``(rowptr, pos_x, pos_c, gval)``, or None
    when there are none. ``gval``: the multiplicand per code (default the grid values ``G``);
    ``threads``: as :func:`intsim.kernels.parallel.bands` takes it."""
    sparse = [s for s in sparse_segs if row_counts[:, s].sum() > 0]
    if not sparse:
        return None
    H = codes.shape[0]
    if gval is None:
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
    KP.run_bands(fill, KP.bands(H, min_rows=8, threads=threads))
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
    through the sparse pass with ``gval`` (int64[num_codes], see
    :class:`~intsim.ops.conv_paths.FoldedPlane`; None: the grid values ``G``); ``y_off``/``x_off``:
    input index = ``o·stride + k·dilation + off``.
    """

    planes: list[PlaneMap]
    sparse_segs: list[int]
    y_off: int
    x_off: int
    gval: np.ndarray | None = None
    slots: tuple | None = None
    offsets: np.ndarray | None = None
    factors: np.ndarray | None = None
    """Per plane its :attr:`PlaneMap.offset` and :attr:`PlaneMap.factor` as int64 arrays (None: read
    from ``planes``); :func:`int8_plan` makes them once per accumulator choice."""


def int8_accumulators(codebook: Codebook, planes: dict, seg_counts, can_sparse: bool):
    """``(names, sparse_segs, folded)`` of the int8 path: :func:`gemm_split_plan` with
    :data:`INT8_SPARSE_FRACTION`, then, where the dominant segment ``t`` has a folded plane
    ``F{t}`` (``planes``, :func:`intsim.ops.conv_paths._folded_map`), ``P_t`` replaced by it and
    the folded segments' ``Q_s`` dropped (§5.6, folded offsets); ``folded`` that
    :class:`~intsim.ops.conv_paths.FoldedPlane`, or None."""
    names, sparse = gemm_split_plan(codebook, "split", seg_counts, can_sparse, INT8_SPARSE_FRACTION)
    counts = [int(c) for c in seg_counts]
    top = counts.index(max(counts)) if counts else 0  # np.argmax's first maximum, without a list→array pass
    folded = planes.get(f"F{top}")
    if folded is None or f"P{top}" not in names:
        return names, sparse, None
    drop = {f"Q{s}" for s in folded.folded}
    names = [f"F{top}" if nm == f"P{top}" else nm for nm in names if nm not in drop]
    return names, sparse, folded


def sparse_slots(codebook: Codebook, sparse_segs: list[int], folded) -> tuple | None:
    """The int32 form of the sparse pass (:func:`intsim.kernels.gemm.sparse_row_slots`), or None
    where it does not apply: ``(q per code int64[num_codes], slot per code int64[num_codes],
    d_s per slot int64[n])``. Applies when every sparse segment's multiplicand is ``d_s·q`` (its
    offset folded into the dominant plane, or ``e_s = 0``) with ``|q| ≤ 255``, so its int32 sums
    are exact by the int8 path's rule (§5.6)."""
    if not sparse_segs:
        return None
    seg_of, q_of, _ = codebook.code_table()
    done = set(folded.folded) if folded is not None else set()
    qtab = np.zeros(codebook.num_codes, dtype=np.int64)
    slot = np.zeros(codebook.num_codes, dtype=np.int64)
    for i, s in enumerate(sparse_segs):
        seg = codebook.segments[s]
        if not (s in done or seg.origin == 0) or max(abs(seg.qmin), abs(seg.qmax)) > KI.OFFSET_MAX:
            return None
        in_s = seg_of == s
        qtab[in_s] = q_of[in_s]
        slot[in_s] = i
    return qtab, slot, np.array([codebook.segments[s].step for s in sparse_segs], dtype=np.int64)


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
    # The census enters the choice (int8_accumulators → gemm_split_plan) only through its first
    # maximum and which segments are rare enough to be sparse: the plan is kept per such class.
    counts = [int(c) for c in seg_counts]
    total = sum(counts)
    census = ("census", counts.index(max(counts)) if counts else 0,
              tuple(c <= INT8_SPARSE_FRACTION * total for c in counts), bool(can_sparse), id(codebook),
              taps.y_off, taps.x_off)
    hit = consts.int8_parts.get(census)
    if hit is None or hit[0] is not codebook:
        hit = consts.int8_parts[census] = (codebook, _int8_plan(consts, codebook, seg_counts, can_sparse, taps))
    return hit[1]


def _int8_plan(consts: ConvConstants, codebook: Codebook, seg_counts, can_sparse: bool,
               taps: ConvTaps) -> Int8Plan | str:
    """:func:`int8_plan` for weights the int8 path takes and a strided conv2d, uncached."""
    names, sparse, folded = int8_accumulators(codebook, consts.planes, seg_counts, can_sparse)
    # The names (F{t} among them iff folded) and sparse segments determine every part below.
    key = (tuple(names), tuple(sparse), id(codebook))
    hit = consts.int8_parts.get(key)
    if hit is None or hit[0] is not codebook:
        maps = [consts.planes[nm].map if nm[0] == "F" else consts.planes[nm] for nm in names]
        refused = [m for m in maps if isinstance(m, str)]
        parts = refused[0] if refused else (
            maps, None if folded is None else folded.gval, sparse_slots(codebook, sparse, folded),
            np.array([m.offset for m in maps], dtype=np.int64), np.array([m.factor for m in maps], dtype=np.int64))
        hit = consts.int8_parts[key] = (codebook, parts)
    parts = hit[1]
    if isinstance(parts, str):
        return parts
    maps, gval, slots, offsets, factors = parts
    return Int8Plan(list(maps), list(sparse), taps.y_off, taps.x_off, gval, slots, offsets, factors)


PLANE_CHUNK_BYTES = 1 << 21
"""Bytes of each uint8 offset plane the int8 path builds at once (:func:`run_int8`): the padded input
rows of a chunk of output rows, at least :data:`PLANE_CHUNK_MIN_ROWS` of them (halo rows are built
once per chunk, so a chunk is not much smaller than a conv's receptive field)."""
PLANE_CHUNK_MIN_ROWS = 8

SINK_BUFFER_BYTES = 1 << 21
"""Bytes of int64 output rows the int8 path hands to a fused consumer at once (:func:`run_int8`): a few
rows of a large image, in L2/L3 while the consumer reads them."""


def run_int8(codes, codebook, consts: ConvConstants, bias, plan: Int8Plan, geometry, iy_of, ix_of, nshift, rmode,
              policy, stream_bits, inv_x, row_counts, st_ev, status, status_ox, rows_sink=None):
    """The int8 path (see the module docstring and :mod:`intsim.kernels.int8dot`); returns the
    int64 output stream. ``T = Σ_j f_j·acc_j`` (plus the sparse pass) in grid units, then
    ``I = base·T + B`` as on the GEMM path. ``rows_sink``: called with every few finished output
    rows, ``rows_sink(oy0, oy1, rows)``, by the thread that made them; the output is then never
    stored (each band's rows pass through a buffer of about :data:`SINK_BUFFER_BYTES`) and None
    is returned in its place."""
    w = consts.weight
    co_n, kh, kw, _ = w.shape
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    base = consts.w_mant * np.int64(codebook.unit_m)
    # Every plane's tile is formed and combined in registers; out is written once, by the rescale.
    # The sparse tails' Σ w·G is formed per output row in the same pass (kernels.int8dot.conv_rows).
    if ho == 0 or wo == 0:
        return np.empty((ho, wo, co_n), dtype=np.int64)
    nt = KP.num_threads()  # looked up once for the call's passes
    lists = _sparse_lists(codes, codebook, plan.sparse_segs, consts.seg_of, row_counts, plan.gval, nt)
    empty = np.zeros(0, np.int64)
    qv, slot, steps = np.zeros(0, np.int32), empty, empty
    if lists is None:
        rowptr = pos_x = pos_c = gv = empty
    else:
        rowptr, pos_x, pos_c, gval = lists
        bands = KP.bands(codes.shape[0], min_rows=8, threads=nt)
        if plan.slots is None:
            gv = np.empty(pos_x.shape[0], dtype=np.int64)  # each element's multiplicand, looked up once
            KP.run_bands(lambda lo, hi: KG.sparse_values(codes, rowptr, pos_x, pos_c, gval, lo, hi, gv), bands)
        else:  # the int32 form: each element's q and slot (its segment's step d_s is applied per row)
            gv = empty
            qtab, slottab, steps = plan.slots
            qv = np.empty(pos_x.shape[0], dtype=np.int32)
            slot = np.empty(pos_x.shape[0], dtype=np.int64)
            KP.run_bands(lambda lo, hi: (KG.sparse_values(codes, rowptr, pos_x, pos_c, qtab, lo, hi, qv),
                                         KG.sparse_values(codes, rowptr, pos_x, pos_c, slottab, lo, hi, slot)), bands)
    sparse = (rowptr, pos_x, pos_c, gv, qv, slot, steps, consts.int8.hwio, iy_of,
              inv_x if inv_x is not None else np.zeros((0, 0), np.int64))
    sh, sw, dh, dw = geometry
    cp = consts.int8.cin_pad
    wp = (wo - 1) * sw + (kw - 1) * dw + 1
    wpk, colsum = consts.int8.packed, consts.int8.colsum
    k4n = kh * kw * cp // 4
    tap_key = ("tapoffs", kh, kw, dh, dw, wp, cp)  # the taps' byte offsets in a plane row of this width
    tapoffs = consts.int8_parts.get(tap_key)
    if tapoffs is None:
        tapoffs = consts.int8_parts[tap_key] = np.array(
            [(ky * dh * wp + kx * dw) * cp for ky in range(kh) for kx in range(kw)], dtype=np.int64)
    offsets = plan.offsets if plan.offsets is not None else np.array([m.offset for m in plan.planes], dtype=np.int64)
    factors = plan.factors if plan.factors is not None else np.array([m.factor for m in plan.planes], dtype=np.int64)
    # Planes hold the padded input of a few output rows at a time (a chunk of about PLANE_CHUNK_BYTES
    # per plane, built by the thread that then reads it), not the whole input: at 512×512×384 (IMDN's
    # c.0) a whole plane is 96 MiB, and a chunk stays in cache between being built and being read.
    span = (kh - 1) * dh + 1  # padded rows one output row reads
    row_bytes = wp * cp
    chunk = max(PLANE_CHUNK_MIN_ROWS, PLANE_CHUNK_BYTES // (sh * row_bytes))
    slack = KI.SLACK_PIXELS * sw * cp  # a tile may read past a chunk's last row; those outputs are discarded

    def with_planes(oy0, oy1, consume):
        """``consume(planes, a, b)`` for each chunk ``[a, b)`` of output rows in ``[oy0, oy1)``."""
        rows_max = (min(chunk, oy1 - oy0) - 1) * sh + span
        planes = np.empty((len(plan.planes), rows_max * row_bytes + slack), dtype=np.uint8)
        for a in range(oy0, oy1, chunk):
            b = min(a + chunk, oy1)
            py0, n = a * sh, (b - 1 - a) * sh + span  # the chunk's first padded row, its padded rows
            planes[:, n * row_bytes:n * row_bytes + slack] = 0
            for i, m in enumerate(plan.planes):
                KI.offset_plane(codes, m.lo, m.hi, m.slope, m.add, *m.fill, m.offset, -plan.y_off - py0,
                                -plan.x_off, 0, n, planes[i, :n * row_bytes].reshape(n, wp, cp))
            consume(planes, a, b)

    def rows(planes, buf, oy0, oy1, out_y0, plane_oy):
        KI.conv_rows(buf, oy0, oy1, planes, sw * cp, sh * wp * cp, tapoffs, cp // 4, wpk, k4n, offsets, colsum,
                     factors, base, bias, nshift, rmode, policy, stream_bits, sparse, st_ev, status, status_ox,
                     out_y0, plane_oy)

    if rows_sink is None:
        out = np.empty((ho, wo, co_n), dtype=stream_dtype(stream_bits))
        KP.run_bands(lambda oy0, oy1: with_planes(oy0, oy1, lambda pl, a, b: rows(pl, out, a, b, 0, a)),
                     KP.bands(ho, threads=nt))
        return out
    # Rows the sink takes are needed only until it has: a few at a time through a small buffer per
    # band, not a whole int64 output (at 512×512×64 that is 128 MiB the fused group never reads again).
    step = max(1, SINK_BUFFER_BYTES // (wo * co_n * 8))

    def band(oy0, oy1):
        buf = np.empty((min(step, oy1 - oy0), wo, co_n), dtype=np.int64)

        def chunk_rows(planes, a, b):
            for y0 in range(a, b, step):
                y1 = min(y0 + step, b)
                rows(planes, buf, y0, y1, y0, a)
                rows_sink(y0, y1, buf[:y1 - y0])

        with_planes(oy0, oy1, chunk_rows)

    KP.run_bands(band, KP.bands(ho, threads=nt))
    return None


def run_gemm(codes, codebook, consts: ConvConstants, bias, groups, iy_of, ix_of, nshift, rmode, policy, stream_bits,
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
