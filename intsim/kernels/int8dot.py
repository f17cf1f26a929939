"""Kernels of the int8 dot-product path of the convolution (arithmetic.md §5.6: offset bytes, int32 rule).

An unordered conv (§5.4) may form its accumulators in any exact way. On x86
CPUs with AVX-512 VNNI one instruction, ``vpdpbusd``, adds 64 products of
unsigned and signed bytes into 16 int32 lanes, several times the throughput of
a float32 FMA. This path uses it as an implicit GEMM: no patch matrix, the
micro-kernel reads each tap's channel vector straight from a padded plane.

Operands, per GEMM accumulator ``j`` (``P_s``: ``q`` of segment ``s`` and 0
elsewhere; ``Q_s``: the segment's indicator):

* the **plane** holds ``v + o`` as uint8, where ``v`` is the multiplicand of
  the element's code and ``o = −min(V ∪ {0})`` the accumulator's offset; a
  padding tap holds ``o`` (its ``v`` is 0). Requires ``max(V ∪ {0}) + o ≤ 255``;
* the **weights** are int8 (``−128 … 127``), packed as
  ``[Co/16][K/4][16 lanes][4 bytes]`` with ``K`` running over taps ``ky, kx``
  and channels (padded to a multiple of 4 with zero weights);
* the kernel returns ``acc' = Σ (v + o)·w`` in int32 and the caller forms
  ``acc = acc' − o·Σ w`` in int64 (``Σ w`` over every tap of the output
  channel, padding included, since a padding tap's ``v + o`` is ``o``).

Exactness: ``|acc'| ≤ 255·max_co Σ|w|``; if that is below 2^31 the int32
result is the exact integer (int32 wraps as a ring, so even a partial sum out
of range would not matter once the final sum is in range). The correction is
an int64 product of small numbers.

:func:`available` says whether the host can run it (the CPU has AVX-512 VNNI
and numba compiles for the host); otherwise the conv falls back to the float
GEMM path. The micro-kernel is emitted as LLVM IR (:func:`_make_tile`): an
``MR × 16·NRB`` int32 tile kept in vector registers while ``K`` is swept.
"""
from __future__ import annotations

import functools
import os

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from intsim.kernels.gemm import (
    STATUS_OK,
    STATUS_STREAM_OVERFLOW,
    _rescale_store,
    _u,
)
from intsim.kernels.gemm import sparse_row_listed as gemm_sparse_row_listed
from intsim.kernels.gemm import sparse_row_slots as gemm_sparse_row_slots
from intsim.kernels.gemm import sparse_row_values as gemm_sparse_row_values
from intsim.overflow import OverflowPolicy
from intsim.rounding import RoundingMode

LANES = 16  # int32 lanes of a 512-bit vector: output channels per vector
MR_WIDE = 6  # output pixels per tile when Co > 16 (6 × 4 accumulators + 4 weight vectors ≤ 32 registers)
MR_NARROW = 16  # output pixels per tile when Co ≤ 16 (one vector of channels)
SLACK_PIXELS = MR_NARROW  # a tile may read past the last row's end: the plane carries this many pixels of slack
OFFSET_MAX = 255  # v + o must fit an unsigned byte
ACC_LIMIT = (1 << 31) - 1

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_V16 = ir.VectorType(_I32, LANES)
_V64B = ir.VectorType(ir.IntType(8), 64)
_VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"
_REQUIRED = ("avx512f", "avx512bw", "avx512vnni")


@functools.cache
def available() -> bool:
    """True if this process can run the kernels: the host CPU has AVX-512 VNNI and numba
    compiles for the host CPU (``$NUMBA_CPU_NAME`` unset or ``host``).
    ``INTSIM_INT8DOT=0`` turns the path off."""
    if os.environ.get("INTSIM_INT8DOT", "1").strip() == "0":
        return False
    if (numba.config.CPU_NAME or "host") != "host":
        return False
    try:
        from llvmlite import binding
        feats = binding.get_host_cpu_features()
    except Exception:  # noqa: BLE001 - no feature query on this platform: treat as unsupported
        return False
    return all(feats.get(f, False) for f in _REQUIRED)


def _make_tile(MR: int, NRB: int):
    """An intrinsic ``tile(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)``.

    ``c[r·16·NRB + 16·j + lane] = Σ_{t, c4, i} a[a_off + r·pix_stride + tapoffs[t] + 4·c4 + i]
    · b[b_off + j·k4n·64 + (t·c4n + c4)·64 + 4·lane + i]`` for ``r < MR``, ``j < NRB``
    (a uint8, b int8, c int32; sums wrap in int32).
    """
    @intrinsic
    def tile(typingctx, a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c):
        sig = types.void(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)

        def codegen(context, builder, signature, args):
            a_v, a_off_v, ps_v, taps_v, c4n_v, b_v, b_off_v, k4n_v, c_v = args
            A = context.make_array(signature.args[0])(context, builder, a_v)
            T = context.make_array(signature.args[3])(context, builder, taps_v)
            B = context.make_array(signature.args[5])(context, builder, b_v)
            C = context.make_array(signature.args[8])(context, builder, c_v)
            mod = builder.module
            try:
                dot = mod.get_global(_VPDPBUSD)
            except KeyError:
                dot = ir.Function(mod, ir.FunctionType(_V16, [_V16, _V64B, _V64B]), _VPDPBUSD)
            ntaps = cgutils.unpack_tuple(builder, T.shape, 1)[0]
            # accumulators live in allocas that LLVM promotes to registers
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(_V16, None)) for _ in range(NRB)]
                    for _ in range(MR)]
            abase = builder.gep(A.data, [a_off_v])
            bbase = builder.gep(B.data, [b_off_v])
            jstride = builder.mul(k4n_v, ir.Constant(_I64, 64))
            with cgutils.for_range(builder, ntaps) as tl:
                t = tl.index
                arow = builder.gep(abase, [builder.load(builder.gep(T.data, [t]))])
                kb = builder.mul(t, c4n_v)
                with cgutils.for_range(builder, c4n_v) as cl:
                    c4 = cl.index
                    boff = builder.mul(builder.add(kb, c4), ir.Constant(_I64, 64))
                    bvs = []
                    for j in range(NRB):
                        off = builder.add(builder.mul(ir.Constant(_I64, j), jstride), boff)
                        bvs.append(builder.load(builder.bitcast(builder.gep(bbase, [off]), _V64B.as_pointer()),
                                                align=1))
                    aoff = builder.mul(c4, ir.Constant(_I64, 4))
                    for r in range(MR):
                        off = builder.add(builder.mul(ir.Constant(_I64, r), ps_v), aoff)
                        a32 = builder.load(builder.bitcast(builder.gep(arow, [off]), _I32.as_pointer()), align=1)
                        av = builder.insert_element(ir.Constant(_V16, None), a32, ir.Constant(_I32, 0))
                        av = builder.shuffle_vector(av, ir.Constant(_V16, None), ir.Constant(_V16, [0] * LANES))
                        avb = builder.bitcast(av, _V64B)
                        for j in range(NRB):
                            builder.store(builder.call(dot, [builder.load(accs[r][j]), avb, bvs[j]]), accs[r][j])
            for r in range(MR):
                for j in range(NRB):
                    p = builder.gep(C.data, [ir.Constant(_I64, (r * NRB + j) * LANES)])
                    builder.store(builder.load(accs[r][j]), builder.bitcast(p, _V16.as_pointer()), align=1)
            return context.get_dummy_value()

        return sig, codegen

    return tile


# Wide tiles (Co > 16): 6 pixels × 4, 3, 2 or 1 vectors of 16 channels; narrow (Co ≤ 16): 16 pixels × 1.
_tile_6x4 = _make_tile(MR_WIDE, 4)
_tile_6x3 = _make_tile(MR_WIDE, 3)
_tile_6x2 = _make_tile(MR_WIDE, 2)
_tile_6x1 = _make_tile(MR_WIDE, 1)
_tile_16x1 = _make_tile(MR_NARROW, 1)


def pack_weights(w: np.ndarray, cin_pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed int8 weights, ``Σ w`` per output channel int64[Co]) of ``w`` int[Co, kh, kw, Ci] (OHWI).

    Packed layout ``[ceil(Co/16)][kh·kw·cin_pad/4][16][4]`` (zero for padded
    channels and lanes), the ``b`` operand of the tiles. Weights must be in
    ``[−128, 127]``.
    """
    co_n, kh, kw, ci = w.shape
    nb = -(-co_n // LANES)
    wp = np.zeros((nb * LANES, kh * kw, cin_pad), dtype=np.int8)
    wp[:co_n, :, :ci] = w.reshape(co_n, kh * kw, ci)
    k4n = kh * kw * cin_pad // 4
    packed = np.ascontiguousarray(wp.reshape(nb, LANES, k4n, 4).transpose(0, 2, 1, 3)).reshape(-1)
    colsum = w.reshape(co_n, -1).astype(np.int64).sum(axis=1)
    return packed, colsum


@numba.njit(cache=True, nogil=True)
def offset_plane(codes, lo, hi, slope, add, below, above, pad_value, top, left, y0, y1, plane):
    """Rows ``[y0, y1)`` of the padded uint8 plane ``plane[Hp, Wp, Cp]`` (a view of a flat buffer).

    ``plane[py, px, c] = v + o`` of the code ``k = codes[py − top, px − left, c]`` inside the
    input, where ``v + o = slope·k + add`` for ``lo ≤ k < hi`` (the accumulator's segment),
    ``below`` for ``k < lo`` and ``above`` for ``k ≥ hi`` (``o``, i.e. ``v = 0``, unless the
    plane carries folded offsets of the segments there, §5.6); ``o`` (``pad_value``) at
    padding positions, 0 in padded channels ``c ≥ C`` (their weights are 0). Every table
    of §5.6 has this form (``P_s``: ``q + o`` is the code plus a constant; ``Q_s``: the
    indicator), and the selects vectorize where a table gather would not.
    """
    H = codes.shape[0]
    W = codes.shape[1]
    C = codes.shape[2]
    Wp = plane.shape[1]
    Cp = plane.shape[2]
    for py in range(y0, y1):
        iy = py - top
        for px in range(Wp):
            ix = px - left
            if 0 <= iy < H and 0 <= ix < W:
                for c in range(C):
                    k = np.int64(codes[iy, ix, c])
                    # two plain selects (k < lo wins, as in the definition): they vectorize where one
                    # nested select ran about 1.4x slower (docs/speed.md, one-plane regression)
                    v = above if k >= hi else slope * k + add
                    plane[py, px, c] = np.uint8(below if k < lo else v)
            else:
                for c in range(C):
                    plane[py, px, c] = pad_value
            for c in range(C, Cp):
                plane[py, px, c] = 0


@numba.njit(cache=True, inline="always")
def _tile(nrb, mr, a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c):
    if mr == MR_NARROW:
        _tile_16x1(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)
    elif nrb == 4:
        _tile_6x4(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)
    elif nrb == 3:
        _tile_6x3(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)
    elif nrb == 2:
        _tile_6x2(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)
    else:
        _tile_6x1(a, a_off, pix_stride, tapoffs, c4n, b, b_off, k4n, c)


@numba.njit(cache=True, nogil=True, inline="always")
def _tail_row(sparse, oy, trow, trow32):
    """``trow`` int64[Wo, Co] = the sparse tail elements' ``Σ w·G`` of output row ``oy`` (see
    :func:`conv_rows`); ``trow32`` int32[n_slots, Wo, Co] the int32 form's scratch."""
    rowptr, pos_x, pos_c, gv, qv, slot, steps, wt, iy_of, inv_x = sparse
    n_slots = steps.shape[0]
    tflat = trow.reshape(trow.size)
    if n_slots == 0:
        trow[:, :] = 0
        gemm_sparse_row_values(rowptr, pos_x, pos_c, gv, wt, iy_of, inv_x, oy, trow)
        return
    trow32[:, :, :] = 0
    gemm_sparse_row_slots(rowptr, pos_x, pos_c, qv, slot, wt, iy_of, inv_x, oy, trow32)
    t32flat = trow32.reshape(trow32.size)
    row_n = trow.size
    d0 = steps[0]
    for i in range(row_n):
        tflat[_u(i)] = d0 * np.int64(t32flat[_u(i)])
    for sl in range(1, n_slots):
        d = steps[sl]
        b = sl * row_n
        for i in range(row_n):
            tflat[_u(i)] += d * np.int64(t32flat[_u(b + i)])


@numba.njit(cache=True, nogil=True)
def _store_two_planes(scratch, ldc, npix, nco, orow, wo, ox0, co_n, c0, f1, corr, mul, add, base, tflat, row_sparse,
                      nshift, st_lo, st_hi, oflat):
    """The fused epilogue (half_up / floor, saturate) of a tile with two planes: one vector loop per
    pixel, the same integers in the same grouping as the general loop of :func:`conv_rows`;
    returns the stream events.
    Called, not inlined: inlined into :func:`conv_rows` it made the one-plane tiles about 1.15x
    slower (docs/speed.md, one-plane regression); one call per tile costs less than that."""
    ev = 0
    for r in range(npix):
        ob = (orow * wo + ox0 + r) * co_n + c0
        sb = r * ldc
        if row_sparse:
            tb = (ox0 + r) * co_n + c0
            for k in range(nco):
                ts = f1 * (np.int64(scratch[1, _u(sb + k)]) - corr[1, _u(c0 + k)]) + tflat[_u(tb + k)]
                t = (mul[_u(c0 + k)] * np.int64(scratch[0, _u(sb + k)]) + add[_u(c0 + k)]
                     + base[_u(c0 + k)] * ts) >> nshift
                x = min(max(t, st_lo), st_hi)
                ev += x != t
                oflat[_u(ob + k)] = x
        else:
            for k in range(nco):
                ts = f1 * (np.int64(scratch[1, _u(sb + k)]) - corr[1, _u(c0 + k)])
                t = (mul[_u(c0 + k)] * np.int64(scratch[0, _u(sb + k)]) + add[_u(c0 + k)]
                     + base[_u(c0 + k)] * ts) >> nshift
                x = min(max(t, st_lo), st_hi)
                ev += x != t
                oflat[_u(ob + k)] = x
    return ev


@numba.njit(cache=True, inline="always")
def _rescale_constants(offsets, colsum, factors, base, bias, n_planes, co_n, nshift, rmode, policy):
    """Per output channel, once per call of :func:`conv_rows`: ``corr[p, co] = offsets[p]·colsum[co]``,
    ``mul = base·factors[0]``, ``add = bias − mul·corr[0]`` (plus the rounding half when ``fused``: half_up /
    floor with saturate, ``(I + half) >> n`` in one loop). Returns ``(corr, mul, add, fused)``."""
    corr = np.empty((n_planes, co_n), dtype=np.int64)
    mul = np.empty(co_n, dtype=np.int64)
    add = np.empty(co_n, dtype=np.int64)
    fused = policy == OverflowPolicy.SATURATE and (rmode == RoundingMode.HALF_UP or rmode == RoundingMode.FLOOR)
    half = (np.int64(1) << (nshift - 1)) if (nshift > 0 and rmode == RoundingMode.HALF_UP) else np.int64(0)
    for co in range(co_n):
        for p in range(n_planes):
            corr[p, co] = np.int64(offsets[p]) * colsum[co]
        mul[co] = base[co] * factors[0]
        add[co] = bias[co] - mul[co] * corr[0, co] + (half if fused else 0)
    return corr, mul, add, fused


@numba.njit(cache=True, inline="always")
def _store_fused_one_plane(oflat, scratch0, mul, add, base, tflat, row_sparse, row_off, ox0, npix, co_n, c0, nco,
                           ldc, nshift, st_lo, st_hi):
    """The common case of one tile (one accumulator plane, half_up / floor with saturate) in one vector
    loop per pixel, no temporaries: the same integers as the general loop of :func:`conv_rows`
    (``I = M·acc'_0 + add + base·tail``, then the shift and the saturation); returns the events."""
    ev = 0
    for r in range(npix):
        ob = row_off + (ox0 + r) * co_n + c0
        sb = r * ldc
        if row_sparse:
            tb = (ox0 + r) * co_n + c0
            for k in range(nco):
                t = (mul[_u(c0 + k)] * np.int64(scratch0[_u(sb + k)]) + add[_u(c0 + k)]
                     + base[_u(c0 + k)] * tflat[_u(tb + k)]) >> nshift
                x = min(max(t, st_lo), st_hi)
                ev += x != t
                oflat[_u(ob + k)] = x
        else:
            for k in range(nco):
                t = (mul[_u(c0 + k)] * np.int64(scratch0[_u(sb + k)]) + add[_u(c0 + k)]) >> nshift
                x = min(max(t, st_lo), st_hi)
                ev += x != t
                oflat[_u(ob + k)] = x
    return ev


@numba.njit(cache=True, nogil=True)
def conv_rows(out, oy0, oy1, planes, pix_stride, row_stride, tapoffs, c4n, wpk, k4n, offsets, colsum,
              factors, base, bias, nshift, rmode, policy, stream_bits, sparse, stream_events, status, status_ox,
              out_y0=0, plane_oy=0):
    """Output rows ``[oy0, oy1)``: every GEMM accumulator tile by tile, then the rescale (5.3).

    ``planes`` uint8[P, size + slack], one flat plane per GEMM accumulator (see
    :func:`offset_plane`); output ``(oy, ox)`` reads tap ``t`` of plane ``p`` at byte
    ``(oy − plane_oy)·row_stride + ox·pix_stride + tapoffs[t]`` (``plane_oy``: the first output row
    whose inputs the planes hold; 0 when they hold the whole padded input);
    ``acc_p = acc'_p − offsets[p]·colsum[co]``.
    For each tile of output pixels × channels all ``P`` int32 tiles are formed one after the
    other (they stay in cache) and combined in registers:
    ``I = base·(T + factors[0]·acc_0) + bias`` with ``T = Σ_{p≥1} factors[p]·acc_p`` plus the
    sparse tail elements' ``Σ w·G`` of the row (``sparse``: ``(rowptr, pos_x, pos_c, gv, qv, slot,
    steps, wt, iy_of, inv_x)``; an empty ``rowptr`` when there are none), formed per output row
    in a row-sized scratch that stays in cache: with ``steps`` empty by
    :func:`intsim.kernels.gemm.sparse_row_values` (``gv`` int64 per element), else by
    :func:`intsim.kernels.gemm.sparse_row_slots` (``qv``, ``slot`` per element) into int32 sums
    per slot, then ``Σ_slot steps[slot]·sum`` in int64. Then ``X = OVF_stream(R(I, nshift))`` with the events,
    status and first error column per row as :func:`intsim.kernels.gemm.finish_rows`
    reports them. ``out`` is written once (no partial sums in memory); output row ``oy`` goes to
    ``out[oy − out_y0]`` (0: the whole output; else a buffer of a few rows a consumer takes at once).

    The products are formed as ``M·acc'_0 + (bias − M·offsets[0]·colsum) + base·T`` with
    ``M = base·factors[0]``: the same integer, and no int64 step overflows (numba's signed
    arithmetic must not): within the envelope (§9) ``|M|·W_j < 2^53``, ``|base·T| < 2^53`` and
    ``|bias| < 2^53``, while ``|acc'| ≤ 2·a_j·Σ|w|`` and ``offset ≤ a_j``, so every term is
    below 2^54 and the sum, with a rounding half of at most 2^61, stays below 2^63.
    """
    wo = out.shape[1]
    co_n = out.shape[2]
    n_planes = planes.shape[0]
    nb = (co_n + LANES - 1) // LANES
    mr = MR_NARROW if nb == 1 else MR_WIDE
    st_hi = (np.int64(1) << (stream_bits - 1)) - 1
    st_lo = -st_hi - 1
    scratch = np.empty((n_planes, MR_NARROW * 4 * LANES), dtype=np.int32)
    tmp = np.empty(4 * LANES, dtype=np.int64)
    tsum = np.empty(4 * LANES, dtype=np.int64)
    has_sparse = sparse[0].shape[0] > 0
    trow = np.empty((wo if has_sparse else 0, co_n), dtype=np.int64)
    tflat = trow.reshape(trow.size)
    trow32 = np.empty((sparse[6].shape[0] if has_sparse else 0, wo, co_n), dtype=np.int32)
    # half_up / floor with saturate: (I + half) >> n in one loop, the rounding half folded into add
    corr, mul, add, fused = _rescale_constants(offsets, colsum, factors, base, bias, n_planes, co_n, nshift, rmode,
                                               policy)
    oflat = out.reshape(out.size)
    for oy in range(oy0, oy1):
        orow = oy - out_y0  # the row of out this output row is stored in
        ev = 0
        st = 0
        st_ox = -1
        row_sparse = has_sparse and gemm_sparse_row_listed(sparse[0], sparse[8], oy)
        if row_sparse:
            _tail_row(sparse, oy, trow, trow32)
        for ox0 in range(0, wo, mr):
            npix = min(mr, wo - ox0)
            a_off = (oy - plane_oy) * row_stride + ox0 * pix_stride
            for j0 in range(0, nb, 4):
                nrb = min(4, nb - j0)
                for p in range(n_planes):
                    _tile(nrb, mr, planes[p], a_off, pix_stride, tapoffs, c4n, wpk, j0 * k4n * 64, k4n, scratch[p])
                c0 = j0 * LANES
                nco = min(nrb * LANES, co_n - c0)
                ldc = nrb * LANES
                if fused and n_planes == 2:  # the dominant plane (offsets folded in) and one more
                    ev += _store_two_planes(scratch, ldc, npix, nco, orow, wo, ox0, co_n, c0, np.int64(factors[1]),
                                            corr, mul, add, base, tflat, row_sparse, nshift, st_lo, st_hi, oflat)
                    continue
                if fused and n_planes == 1:
                    ev += _store_fused_one_plane(oflat, scratch[0], mul, add, base, tflat, row_sparse, orow * wo * co_n,
                                                 ox0, npix, co_n, c0, nco, ldc, nshift, st_lo, st_hi)
                    continue
                for r in range(npix):
                    ob = (orow * wo + ox0 + r) * co_n + c0
                    sb = r * ldc
                    for k in range(nco):
                        tmp[_u(k)] = mul[_u(c0 + k)] * np.int64(scratch[0, _u(sb + k)]) + add[_u(c0 + k)]
                    if n_planes > 1 or row_sparse:
                        for k in range(nco):
                            tsum[_u(k)] = 0
                        for p in range(1, n_planes):
                            f = np.int64(factors[p])
                            for k in range(nco):
                                tsum[_u(k)] += f * (np.int64(scratch[p, _u(sb + k)]) - corr[p, _u(c0 + k)])
                        if row_sparse:
                            tb = (ox0 + r) * co_n + c0
                            for k in range(nco):
                                tsum[_u(k)] += tflat[_u(tb + k)]
                        for k in range(nco):
                            tmp[_u(k)] += base[_u(c0 + k)] * tsum[_u(k)]
                    if fused:
                        for k in range(nco):
                            t = tmp[_u(k)] >> nshift
                            x = min(max(t, st_lo), st_hi)
                            ev += x != t
                            oflat[_u(ob + k)] = x
                        continue
                    n_ev = _rescale_store(tmp, oflat, ob, nco, nshift, rmode, policy, st_lo, st_hi, stream_bits)
                    ev += n_ev
                    if n_ev and policy == OverflowPolicy.ERROR and (st_ox < 0 or ox0 + r < st_ox):
                        st = STATUS_STREAM_OVERFLOW
                        st_ox = ox0 + r
            if st != STATUS_OK:
                break  # the wrapper raises; stop working on this row
        stream_events[oy] = ev
        status[oy] = st
        status_ox[oy] = st_ox
