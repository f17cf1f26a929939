"""Kernels of the exactness-guarded GEMM path of the convolution (arithmetic.md §5, design.md §8).

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
* :func:`sparse_taps` — the rare tail-segment codes (split realization)
  scattered straight into the int64 ``I`` of (5.3), gathered per output row
  so that rows can run in parallel without races;
* :func:`finish_rows` — the rescale (5.3) as its own pass:
  ``I = partial + M_j·acc_j + B``, ``X = OVF_stream(R(I, n))`` with the
  same scalar rounding (:func:`intsim.rounding.round_shift_scalar`) and
  overflow policy as the reference kernel, including its status reporting.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from intsim.overflow import wrap_scalar
from intsim.rounding import round_shift_scalar

STATUS_OK = 0
STATUS_STREAM_OVERFLOW = 2  # same code as intsim.kernels.conv.STATUS_STREAM_OVERFLOW

_POLICY_ERROR = 0
_POLICY_SATURATE = 1


@numba.njit(cache=True, parallel=True)
def value_plane(codes, table, out):
    """``out[y, x, c] = table[codes[y, x, c]]`` (codes int64[H, W, C]; table float[N])."""
    H, W, C = codes.shape
    for y in prange(H):
        for x in range(W):
            for c in range(C):
                out[y, x, c] = table[codes[y, x, c]]


@numba.njit(cache=True, parallel=True)
def im2col(plane, iy_of, ix_of, oy0, oy1, c0, cig, cols):
    """Patch matrix of output rows ``[oy0, oy1)`` for the channels ``[c0, c0 + cig)``.

    ``cols[(oy − oy0)·Wo + ox, (ky·kw + kx)·cig + cl] = plane[iy_of[oy, ky], ix_of[ox, kx], c0 + cl]``,
    0 for a padding tap (index −1), in the tap order ky, kx, ci of §5.4.
    """
    kh = iy_of.shape[1]
    kw = ix_of.shape[1]
    wo = ix_of.shape[0]
    for r in prange(oy1 - oy0):
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


@numba.njit(cache=True, parallel=True)
def sparse_taps(codes, rowptr, pos_x, pos_c, coef, wt, iy_of, inv_x, groups, out):
    """Add the contribution of the listed input elements to ``I`` (5.3), exactly in int64.

    The listed elements are those whose code is in a sparse (tail) segment, row by
    row: input row ``iy`` holds entries ``rowptr[iy] .. rowptr[iy+1]`` with column
    ``pos_x`` and channel ``pos_c``. ``coef[c, co]`` is the integer each weight of
    code ``c`` is multiplied by: ``M_{P,s}[co]·q + M_{Q,s}[co]`` (the products of
    the code's segment accumulators with their multipliers, so ``I`` receives
    ``Σ_j M_j·acc_j`` of those segments; exact integer arithmetic in any order).
    ``wt`` int[kh, kw, cig, Co]; ``out`` int64[Ho, Wo, Co] is added to.
    Parallel over output rows; each row gathers the input rows its taps read.
    """
    kh = wt.shape[0]
    kw = wt.shape[1]
    cig = wt.shape[2]
    co_n = wt.shape[3]
    cog = co_n // groups
    ho = iy_of.shape[0]
    for oy in prange(ho):
        for ky in range(kh):
            iy = iy_of[oy, ky]
            if iy < 0:
                continue
            for e in range(rowptr[iy], rowptr[iy + 1]):
                ix = pos_x[e]
                ci = pos_c[e]
                c = codes[iy, ix, ci]
                g = ci // cig
                cl = ci - g * cig
                co0 = g * cog
                for kx in range(kw):
                    ox = inv_x[ix, kx]
                    if ox < 0:
                        continue
                    for k in range(cog):
                        co = co0 + k
                        out[oy, ox, co] += np.int64(wt[ky, kx, cl, co]) * coef[c, co]


@numba.njit(cache=True, parallel=True)
def add_scaled_rows(out, oy0, acc, mult):
    """``out[oy0 + r, ox, co] += mult[co]·acc[r·Wo + ox, co]`` (acc holds exact integers)."""
    wo = out.shape[1]
    co_n = out.shape[2]
    nrows = acc.shape[0] // wo
    for r in prange(nrows):
        oy = oy0 + r
        for ox in range(wo):
            row = r * wo + ox
            for co in range(co_n):
                out[oy, ox, co] += mult[co] * np.int64(acc[row, co])


@numba.njit(cache=True, parallel=True)
def finish_rows(out, oy0, acc, mult, bias, nshift, rmode, policy, stream_bits,
                stream_events, status, status_ox):
    """The rescale (5.3) of output rows ``[oy0, oy0 + acc.shape[0]/Wo)``, in place.

    ``I = out + mult[co]·acc + bias[co]`` (``out`` holds the int64 contributions
    already formed: sparse taps and further accumulators), then
    ``X = OVF_stream(R(I, nshift))``. Events, status and the first error column
    per row exactly as the reference kernel reports them.
    """
    wo = out.shape[1]
    co_n = out.shape[2]
    nrows = acc.shape[0] // wo
    st_hi = (np.int64(1) << (stream_bits - 1)) - 1
    st_lo = -st_hi - 1
    for r in prange(nrows):
        oy = oy0 + r
        ev = 0
        st = 0
        st_ox = -1
        for ox in range(wo):
            if st != 0:
                break  # error policy: the wrapper raises; stop working on this row
            row = r * wo + ox
            for co in range(co_n):
                total = out[oy, ox, co] + bias[co] + mult[co] * np.int64(acc[row, co])
                x = round_shift_scalar(total, nshift, rmode)
                if x > st_hi or x < st_lo:
                    ev += 1
                    if policy == _POLICY_ERROR:
                        if st == 0:
                            st = STATUS_STREAM_OVERFLOW
                            st_ox = ox
                    elif policy == _POLICY_SATURATE:
                        x = st_hi if x > st_hi else st_lo
                    else:
                        x = wrap_scalar(x, stream_bits)
                out[oy, ox, co] = x
        stream_events[oy] = ev
        status[oy] = st
        status_ox[oy] = st_ox


@numba.njit(cache=True, parallel=True)
def segment_counts(codes, seg_of, n_segments, uy, ux):
    """Per segment: (products feeding one output channel, elements of the input).

    ``weighted[s] = Σ_{y,x} uy[y]·ux[x]·#{ci : seg(code[y,x,ci]) = s}`` (the MAC count
    of arithmetic.md §7 before the factor ``C_out/g``) and ``plain[s]`` the number
    of input elements in segment ``s``. Integer sums, so equal to the matrix form
    of :func:`intsim.kernels.conv.conv_macs`.
    """
    H, W, C = codes.shape
    part_w = np.zeros((H, n_segments), dtype=np.int64)
    part_p = np.zeros((H, n_segments), dtype=np.int64)
    for y in prange(H):
        cnt = np.zeros(n_segments, dtype=np.int64)
        for x in range(W):
            cnt[:] = 0
            for c in range(C):
                cnt[seg_of[codes[y, x, c]]] += 1
            wgt = uy[y] * ux[x]
            for s in range(n_segments):
                part_w[y, s] += wgt * cnt[s]
                part_p[y, s] += cnt[s]
    weighted = np.zeros(n_segments, dtype=np.int64)
    plain = np.zeros(n_segments, dtype=np.int64)
    for y in range(H):
        for s in range(n_segments):
            weighted[s] += part_w[y, s]
            plain[s] += part_p[y, s]
    return weighted, plain
