"""Kernels of the exactness-guarded GEMM path of the convolution (arithmetic.md §5, docs/arithmetic.md).

The reference :func:`intsim.kernels.conv.conv_kernel` accumulates every
product in int64, one output pixel at a time. When the load-time analysis
(§5.4) proves that an op cannot overflow, the accumulation order is free and
the same integers can be formed by a float GEMM, **exactly**, provided every
partial sum the GEMM may form is an integer of magnitude below 2^24 (float32)
or 2^53 (float64): such integers, and sums of them that stay in that range,
are representable, so no rounding ever happens whatever order BLAS sums in.
Any partial sum of accumulator ``j`` is a sum of a subset of its terms and is
therefore bounded by ``W_j = max_co Σ |w|·a_j`` of §5.4; the caller
(:mod:`intsim.ops.conv`) checks ``W_j`` against the float's limit before it
takes this path.

Pieces (all NHWC, output channel innermost):

* :func:`value_plane` — codes → the GEMM's multiplicand per input element
  through a per-code table (``q`` of one segment and 0 elsewhere, the
  indicator of a segment, or the grid value ``G``);
* :func:`im2col` — the ``[rows·Wo, kh·kw·cig]`` patch matrix of a band of
  output rows, built from the same tap tables as the reference kernel
  (padding taps read as 0);
* :func:`sparse_taps` — the rare tail-segment codes (split realization),
  ``Σ w·G(code)`` accumulated exactly in int64, gathered per output row so
  that rows can run in parallel without races;
* :func:`finish_rows` — the rescale (5.3) as its own pass. Every multiplier
  of (5.3) is ``M_j = base·f_j`` with ``base = m_w·unit_m`` and ``f_j`` =
  ``d_s`` (``P_s``), ``e_s`` (``Q_s``) or 1 (``A``), so
  ``I = Σ_j M_j·acc_j + B = base·Σ_j f_j·acc_j + B``: the kernels carry
  ``T = Σ_j f_j·acc_j`` (grid units) and multiply by ``base`` once.
  Then ``X = OVF_stream(R(I, n))`` with the same scalar rounding
  (:func:`intsim.rounding.round_shift_scalar`) and overflow policy as the
  reference kernel, including its status reporting. (int64 arithmetic is a
  ring: the regrouped sum is the same integer as the reference's.)
* :func:`kn2row_rows` — for narrow outputs and transposed convs: one GEMM of
  the input plane with all taps' weights, then per-output tap sums;
* :func:`depthwise_rows` — depthwise convs (one input channel per group): the
  tap sums directly over all channels at once, not one-column GEMMs per group.

Every kernel is serial and releases the GIL; it works on a band of rows given
by its arguments, and :mod:`intsim.ops.conv` runs bands on the thread pool of
:mod:`intsim.kernels.parallel` (see there why not ``prange``).
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.overflow import OverflowPolicy, wrap_scalar
from intsim.rounding import RoundingMode, round_shift_scalar

STATUS_OK = 0
STATUS_STREAM_OVERFLOW = 2  # same code as intsim.kernels.conv.STATUS_STREAM_OVERFLOW



@numba.njit(cache=True, nogil=True)
def value_plane(codes, table, out, y0, y1):
    """``out[y, x, c] = table[codes[y, x, c]]`` for rows ``[y0, y1)`` (codes int64[H, W, C]; table float[N])."""
    W = codes.shape[1]
    C = codes.shape[2]
    for y in range(y0, y1):
        for x in range(W):
            for c in range(C):
                out[y, x, c] = table[codes[y, x, c]]


@numba.njit(cache=True, nogil=True)
def depthwise_rows(plane, iy_of, ix_of, oy0, oy1, wdw, cog, acc):
    """A depthwise conv's accumulator (one input channel per group) for output rows ``[oy0, oy1)``.

    ``acc[(oy − oy0)·Wo + ox, co] = Σ_{ky,kx} plane[iy_of[oy,ky], ix_of[ox,kx], co // cog]·wdw[ky, kx, co]``
    (padding taps, index −1, add nothing): the tap sums directly, channels innermost, instead of a
    one-column GEMM per group. Exact under the same bound as the GEMM: every partial sum is a sum of a
    subset of the accumulator's terms (module doc).
    """
    kh = iy_of.shape[1]
    kw = ix_of.shape[1]
    wo = ix_of.shape[0]
    co_n = acc.shape[1]
    for r in range(oy1 - oy0):
        oy = oy0 + r
        for ox in range(wo):
            row = r * wo + ox
            for co in range(co_n):
                acc[row, co] = 0
            for ky in range(kh):
                iy = iy_of[oy, ky]
                if iy < 0:
                    continue
                for kx in range(kw):
                    ix = ix_of[ox, kx]
                    if ix < 0:
                        continue
                    if cog == 1:
                        for co in range(co_n):
                            acc[row, co] += plane[iy, ix, co] * wdw[ky, kx, co]
                    else:
                        for co in range(co_n):
                            acc[row, co] += plane[iy, ix, co // cog] * wdw[ky, kx, co]


@numba.njit(cache=True, nogil=True)
def im2col(plane, iy_of, ix_of, oy0, oy1, c0, cig, cols):
    """Patch matrix of output rows ``[oy0, oy1)`` for the channels ``[c0, c0 + cig)``.

    ``cols[(oy − oy0)·Wo + ox, (ky·kw + kx)·cig + cl] = plane[iy_of[oy, ky], ix_of[ox, kx], c0 + cl]``,
    0 for a padding tap (index −1), in the tap order ky, kx, ci of §5.4.
    """
    kh = iy_of.shape[1]
    kw = ix_of.shape[1]
    wo = ix_of.shape[0]
    for r in range(oy1 - oy0):
        oy = oy0 + r
        for ox in range(wo):
            row = r * wo + ox
            for ky in range(kh):
                iy = iy_of[oy, ky]
                for kx in range(kw):
                    ix = ix_of[ox, kx]
                    base = (ky * kw + kx) * cig
                    if iy < 0 or ix < 0:
                        for cl in range(cig):
                            cols[row, base + cl] = 0
                    else:
                        for cl in range(cig):
                            cols[row, base + cl] = plane[iy, ix, c0 + cl]


def inverse_taps(ix_of: np.ndarray, size: int) -> np.ndarray | None:
    """int64[size, k]: the output index whose tap ``k`` reads input ``i`` (−1: none).

    For conv2d (``i = o·s − p + k·d``) and the gather form of the transposed conv
    (``i = (o + p − k)/s``) the map ``o → i`` is injective for each tap, so the
    inverse is well defined; ``None`` if it is not (the caller then does not
    use the sparse pass).
    """
    out_n, k = ix_of.shape
    inv = np.full((size, k), -1, dtype=np.int64)
    o = np.repeat(np.arange(out_n, dtype=np.int64)[:, None], k, axis=1)
    kk = np.repeat(np.arange(k, dtype=np.int64)[None, :], out_n, axis=0)
    valid = ix_of >= 0
    i_v, k_v, o_v = ix_of[valid], kk[valid], o[valid]
    if i_v.size:
        flat = i_v * k + k_v
        if np.unique(flat).size != flat.size:
            return None
        inv.reshape(-1)[flat] = o_v
    return inv


@numba.njit(cache=True, inline="always")
def _u(i):
    # Unsigned indices spare numba's negative-index wraparound code so LLVM vectorizes the channel loops.
    return np.uint64(i)


@numba.njit(cache=True, nogil=True)
def sparse_fill(codes, is_sparse_code, rowptr, y0, y1, pos_x, pos_c):
    """List the elements of rows ``[y0, y1)`` whose code is sparse: entries ``rowptr[y] ..`` of
    ``pos_x`` / ``pos_c`` get their column and channel, in row-major order."""
    W = codes.shape[1]
    C = codes.shape[2]
    for y in range(y0, y1):
        e = rowptr[y]
        for x in range(W):
            for c in range(C):
                if is_sparse_code[codes[y, x, c]]:
                    pos_x[e] = x
                    pos_c[e] = c
                    e += 1


@numba.njit(cache=True, nogil=True)
def sparse_fill_outside(codes, lo, hi, rowptr, y0, y1, pos_x, pos_c):
    """:func:`sparse_fill` where the sparse codes are those outside ``[lo, hi)``: a pixel's
    channels are tested together first (a vectorized count), so the many pixels without a
    sparse code cost no per-element branch."""
    W = codes.shape[1]
    C = codes.shape[2]
    for y in range(y0, y1):
        e = rowptr[y]
        for x in range(W):
            px = codes[y, x]
            n = 0
            for c in range(C):
                k = px[_u(c)]
                n += (k < lo) | (k >= hi)
            if n == 0:
                continue
            for c in range(C):
                k = px[_u(c)]
                if k < lo or k >= hi:
                    pos_x[e] = x
                    pos_c[e] = c
                    e += 1


@numba.njit(cache=True, nogil=True, inline="always")
def sparse_row(codes, rowptr, pos_x, pos_c, gval, wt, iy_of, inv_x, groups, oy, orow):
    """Add ``Σ w·G(code)`` of the listed input elements read by output row ``oy`` to
    ``orow`` int64[Wo, Co] (C-contiguous; see :func:`sparse_taps`). Flat offsets into
    ``wt`` and ``orow`` (no per-tap array views): the channel loop is the only inner work."""
    kh = wt.shape[0]
    kw = wt.shape[1]
    cig = wt.shape[2]
    co_all = wt.shape[3]
    cog = co_all // groups
    co_n = orow.shape[1]
    wflat = wt.reshape(wt.size)
    oflat = orow.reshape(orow.size)
    for ky in range(kh):
        iy = iy_of[oy, ky]
        if iy < 0:
            continue
        for e in range(rowptr[iy], rowptr[iy + 1]):
            ix = pos_x[e]
            ci = pos_c[e]
            gv = np.int64(gval[codes[iy, ix, ci]])
            g = ci // cig
            cl = ci - g * cig
            co0 = g * cog
            for kx in range(kw):
                ox = inv_x[ix, kx]
                if ox < 0:
                    continue
                wb = ((ky * kw + kx) * cig + cl) * co_all + co0
                ob = ox * co_n + co0
                for k in range(cog):
                    oflat[_u(ob + k)] += np.int64(wflat[_u(wb + k)]) * gv


@numba.njit(cache=True, nogil=True)
def sparse_values(codes, rowptr, pos_x, pos_c, gval, y0, y1, gv):
    """``gv[e] = gval[code]`` of each listed element of input rows ``[y0, y1)`` (see
    :func:`sparse_taps`): looked up once, not once per output row that reads it."""
    for iy in range(y0, y1):
        for e in range(rowptr[iy], rowptr[iy + 1]):
            gv[e] = gval[codes[iy, pos_x[e], pos_c[e]]]


@numba.njit(cache=True, nogil=True, inline="always")
def sparse_row_values(rowptr, pos_x, pos_c, gv, wt, iy_of, inv_x, oy, orow):
    """:func:`sparse_row` for groups = 1 with each element's multiplicand ``gv[e]`` listed
    (:func:`sparse_values`): ``orow[ox, co] += Σ w·gv`` over the listed elements output row ``oy``
    reads (the same int64 products and sums, in the same order). The weight row of tap
    ``(ky, kx)`` and channel ``ci`` is at ``((ky·kw + kx)·Ci + ci)·Co``."""
    kh = wt.shape[0]
    kw = wt.shape[1]
    cig = wt.shape[2]
    co_n = wt.shape[3]
    wflat = wt.reshape(wt.size)
    oflat = orow.reshape(orow.size)
    kx_stride = cig * co_n
    for ky in range(kh):
        iy = iy_of[oy, ky]
        if iy < 0:
            continue
        for e in range(rowptr[iy], rowptr[iy + 1]):
            ix = pos_x[e]
            g = gv[e]
            wb0 = (ky * kw * cig + pos_c[e]) * co_n
            for kx in range(kw):
                ox = inv_x[ix, kx]
                if ox >= 0:
                    wb = wb0 + kx * kx_stride
                    ob = ox * co_n
                    for k in range(co_n):
                        oflat[_u(ob + k)] += np.int64(wflat[_u(wb + k)]) * g


@numba.njit(cache=True, nogil=True, inline="always")
def sparse_row_slots(rowptr, pos_x, pos_c, qv, slot, wt, iy_of, inv_x, oy, orow):
    """:func:`sparse_row_values` in int32: ``orow[slot[e], ox, co] += w·qv[e]`` with ``orow``
    int32[n_slots, Wo, Co] (C-contiguous), one slot per sparse segment, whose sums the caller
    scales by the segment's step ``d_s`` in int64. Sixteen lanes per vector instead of eight.
    Exact when ``|qv| ≤ 255`` and ``255·max_co Σ|w| < 2^31`` (the int8 path's int32 rule, §5.6):
    every partial sum of a slot is bounded by ``max|qv|·Σ|w|``."""
    kh = wt.shape[0]
    kw = wt.shape[1]
    cig = wt.shape[2]
    co_n = wt.shape[3]
    wo = orow.shape[1]
    wflat = wt.reshape(wt.size)
    oflat = orow.reshape(orow.size)
    kx_stride = cig * co_n
    for ky in range(kh):
        iy = iy_of[oy, ky]
        if iy < 0:
            continue
        for e in range(rowptr[iy], rowptr[iy + 1]):
            ix = pos_x[e]
            q = np.int32(qv[e])
            wb0 = (ky * kw * cig + pos_c[e]) * co_n
            sb = slot[e] * wo
            for kx in range(kw):
                ox = inv_x[ix, kx]
                if ox >= 0:
                    wb = wb0 + kx * kx_stride
                    ob = (sb + ox) * co_n
                    for k in range(co_n):
                        oflat[_u(ob + k)] += np.int32(wflat[_u(wb + k)]) * q


@numba.njit(cache=True, nogil=True, inline="always")
def sparse_row_listed(rowptr, iy_of, oy):
    """True if output row ``oy`` reads an input row with listed (sparse) elements."""
    for ky in range(iy_of.shape[1]):
        iy = iy_of[oy, ky]
        if iy >= 0 and rowptr[iy + 1] > rowptr[iy]:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def sparse_taps(codes, rowptr, pos_x, pos_c, gval, wt, iy_of, inv_x, groups, oy0, oy1, out):
    """Add ``Σ w·G(code)`` of the listed input elements to output rows ``[oy0, oy1)`` of ``out``.

    The listed elements are those whose code is in a sparse (tail) segment, row by
    row: input row ``iy`` holds entries ``rowptr[iy] .. rowptr[iy+1]`` with column
    ``pos_x`` and channel ``pos_c``; ``gval[c]`` is the grid value ``G = e_s + d_s·q``
    of code ``c``. ``out`` int64[Ho, Wo, Co] (C-contiguous) holds ``T``, the
    conv's partial value in grid units (see :func:`finish_rows`); ``wt``
    int64[kh, kw, cig, Co] (C-contiguous; int64 so the products need no widening). Exact int64 sums in any order (the op is
    unordered, §5.4). Each output row gathers from the input rows its taps read, so
    bands of rows are independent.
    """
    for oy in range(oy0, oy1):
        sparse_row(codes, rowptr, pos_x, pos_c, gval, wt, iy_of, inv_x, groups, oy, out[oy])


@numba.njit(cache=True, nogil=True)
def add_scaled_rows(out, oy0, acc, factor):
    """``out[oy0 + r, ox, co] += factor·acc[r·Wo + ox, co]`` (acc holds exact integers)."""
    wo = out.shape[1]
    co_n = out.shape[2]
    nrows = acc.shape[0] // wo
    for r in range(nrows):
        oy = oy0 + r
        for ox in range(wo):
            row = r * wo + ox
            for co in range(co_n):
                out[oy, ox, co] += factor * np.int64(acc[row, co])


@numba.njit(cache=True, inline="always")
def _rescale_store(tmp, oflat, ob, co_n, nshift, rmode, policy, st_lo, st_hi, stream_bits):
    """``oflat[ob + co] = OVF_stream(R(tmp[co], nshift))`` for ``co < co_n``; returns the events.

    The same arithmetic as the reference kernel's per-element code (§2, §4), in
    separate loops per step so that the common modes (half_up, floor; saturate)
    vectorize; the other modes use :func:`intsim.rounding.round_shift_scalar`.
    """
    if nshift > 0:
        half = np.int64(1) << (nshift - 1)
        if rmode == RoundingMode.HALF_UP:  # half_up
            for co in range(co_n):
                tmp[_u(co)] = (tmp[_u(co)] + half) >> nshift
        elif rmode == RoundingMode.FLOOR:  # floor
            for co in range(co_n):
                tmp[_u(co)] = tmp[_u(co)] >> nshift
        else:
            for co in range(co_n):
                tmp[_u(co)] = round_shift_scalar(tmp[_u(co)], nshift, rmode)
    ev = 0
    if policy == OverflowPolicy.SATURATE:
        for co in range(co_n):
            x = tmp[_u(co)]
            ev += (x > st_hi) | (x < st_lo)
            oflat[_u(ob + co)] = min(max(x, st_lo), st_hi)
    elif policy == OverflowPolicy.ERROR:
        for co in range(co_n):
            x = tmp[_u(co)]
            ev += (x > st_hi) | (x < st_lo)
            oflat[_u(ob + co)] = x
    else:
        for co in range(co_n):
            x = tmp[_u(co)]
            if x > st_hi or x < st_lo:
                ev += 1
                x = wrap_scalar(x, stream_bits)
            oflat[_u(ob + co)] = x
    return ev


@numba.njit(cache=True, nogil=True)
def finish_rows(out, oy0, acc, factor, base, bias, nshift, rmode, policy, stream_bits,
                stream_events, status, status_ox):
    """The rescale (5.3) of output rows ``[oy0, oy0 + acc.shape[0]/Wo)``, in place.

    ``out`` (C-contiguous) holds ``T``, the part of the conv already formed, in
    grid units (sparse taps ``Σ w·G`` and further GEMM accumulators times their
    factor); the GEMM accumulator ``acc`` enters with its factor (``d_s`` for
    ``P_s``, ``e_s`` for ``Q_s``, 1 for ``A``). Then
    ``I = base[co]·(T + factor·acc) + bias[co]`` with ``base = m_w·unit_m``, which is
    ``Σ_j M_j·acc_j + B`` of (5.3) since every ``M_j = base·factor_j`` (int64 ring
    arithmetic: the same integer as the reference kernel's sum, term order aside),
    and ``X = OVF_stream(R(I, nshift))``. Events, status and the first error column
    per row as the reference kernel reports them (under ``error`` the op raises,
    so only the status and the first error's position matter).
    """
    wo = out.shape[1]
    co_n = out.shape[2]
    nrows = acc.shape[0] // wo
    st_hi = (np.int64(1) << (stream_bits - 1)) - 1
    st_lo = -st_hi - 1
    tmp = np.empty(co_n, dtype=np.int64)
    oflat = out.reshape(out.size)
    for r in range(nrows):
        oy = oy0 + r
        ev = 0
        st = 0
        st_ox = -1
        for ox in range(wo):
            row = r * wo + ox
            ob = (oy * wo + ox) * co_n
            for co in range(co_n):
                tmp[_u(co)] = base[_u(co)] * (oflat[_u(ob + co)] + factor * np.int64(acc[row, co])) + bias[_u(co)]
            n_ev = _rescale_store(tmp, oflat, ob, co_n, nshift, rmode, policy, st_lo, st_hi, stream_bits)
            ev += n_ev
            if n_ev and policy == OverflowPolicy.ERROR:
                st = STATUS_STREAM_OVERFLOW
                st_ox = ox
                break  # the wrapper raises; stop working on this row
        stream_events[oy] = ev
        status[oy] = st
        status_ox[oy] = st_ox


@numba.njit(cache=True, nogil=True)
def segment_counts(codes, seg_of, n_segments, uy, ux, y0, y1, row_counts):
    """Per segment, over input rows ``[y0, y1)``: the tap-weighted count (returned) and the
    plain count of every row (``row_counts[y, s]``, written).

    ``weighted[s] = Σ_{y,x} uy[y]·ux[x]·#{ci : seg(code[y,x,ci]) = s}`` is the MAC count
    of arithmetic.md §7 before the factor ``C_out/g``. Integer sums, so the band sums
    equal the matrix form of :func:`intsim.kernels.conv.conv_macs`.
    """
    W = codes.shape[1]
    C = codes.shape[2]
    weighted = np.zeros(n_segments, dtype=np.int64)
    cnt = np.zeros(n_segments, dtype=np.int64)
    for y in range(y0, y1):
        for s in range(n_segments):
            row_counts[y, s] = 0
        for x in range(W):
            cnt[:] = 0
            for c in range(C):
                cnt[seg_of[codes[y, x, c]]] += 1
            wgt = uy[y] * ux[x]
            for s in range(n_segments):
                weighted[s] += wgt * cnt[s]
                row_counts[y, s] += cnt[s]
    return weighted


@numba.njit(cache=True, nogil=True)
def segment_counts_ranges(codes, start1, start2, uy, ux, y0, y1, row_counts):
    """:func:`segment_counts` for at most three segments whose codes are the ranges
    ``[0, start1)``, ``[start1, start2)``, ``[start2, …)`` (flat codes, §3.2): counts by
    comparisons instead of table reads and scattered increments, so the channel loop
    vectorizes. A missing segment has its start past every code."""
    W = codes.shape[1]
    C = codes.shape[2]
    weighted = np.zeros(3, dtype=np.int64)
    for y in range(y0, y1):
        r0 = 0
        r1 = 0
        r2 = 0
        for x in range(W):
            ge1 = 0
            ge2 = 0
            for c in range(C):
                v = codes[y, x, c]
                ge1 += v >= start1
                ge2 += v >= start2
            n0 = C - ge1
            n1 = ge1 - ge2
            wgt = uy[y] * ux[x]
            weighted[0] += wgt * n0
            weighted[1] += wgt * n1
            weighted[2] += wgt * ge2
            r0 += n0
            r1 += n1
            r2 += ge2
        row_counts[y, 0] = r0
        if row_counts.shape[1] > 1:
            row_counts[y, 1] = r1
        if row_counts.shape[1] > 2:
            row_counts[y, 2] = r2
    return weighted


@numba.njit(cache=True, nogil=True)
def kn2row_rows(out, oy0, oy1, Y, iy_lo, in_w, iy_of, ix_of, factor, base, bias, nshift, rmode, policy,
                stream_bits, finish, stream_events, status, status_ox):
    """Tap sums of the kn2row form for output rows ``[oy0, oy1)``, then (``finish``) the rescale (5.3).

    ``Y[(iy − iy_lo)·in_w + ix, (ky·kw + kx)·Co + co]`` is the GEMM of the input value
    plane (rows from ``iy_lo``, width ``in_w``) with every tap's weights at once; its
    entries are exact integers (partial sums of one accumulator). Output ``(oy, ox)``
    takes ``acc = Σ_{taps not padding} Y[…]`` in int64. ``finish`` False:
    ``out += factor·acc``; True: as :func:`finish_rows`.
    """
    wo = out.shape[1]
    co_n = out.shape[2]
    kh = iy_of.shape[1]
    kw = ix_of.shape[1]
    st_hi = (np.int64(1) << (stream_bits - 1)) - 1
    st_lo = -st_hi - 1
    acc = np.zeros(co_n, dtype=np.int64)
    oflat = out.reshape(out.size)
    for oy in range(oy0, oy1):
        ev = 0
        st = 0
        st_ox = -1
        for ox in range(wo):
            acc[:] = 0
            for ky in range(kh):
                iy = iy_of[oy, ky]
                if iy < 0:
                    continue
                for kx in range(kw):
                    ix = ix_of[ox, kx]
                    if ix < 0:
                        continue
                    row = (iy - iy_lo) * in_w + ix
                    tb = (ky * kw + kx) * co_n
                    for co in range(co_n):
                        acc[_u(co)] += np.int64(Y[row, tb + co])
            ob = (oy * wo + ox) * co_n
            if not finish:
                for co in range(co_n):
                    oflat[_u(ob + co)] += factor * acc[_u(co)]
                continue
            for co in range(co_n):
                acc[_u(co)] = base[_u(co)] * (oflat[_u(ob + co)] + factor * acc[_u(co)]) + bias[_u(co)]
            n_ev = _rescale_store(acc, oflat, ob, co_n, nshift, rmode, policy, st_lo, st_hi, stream_bits)
            ev += n_ev
            if n_ev and policy == OverflowPolicy.ERROR:
                st = STATUS_STREAM_OVERFLOW
                st_ox = ox
                break  # the wrapper raises; stop working on this row
        if finish:
            stream_events[oy] = ev
            status[oy] = st
            status_ox[oy] = st_ox
