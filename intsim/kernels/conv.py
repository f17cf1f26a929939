"""Convolution kernels: accumulate codes × weights, then rescale once (arithmetic.md §5).

Both ``conv2d`` (§5.1) and the gather form of ``conv_transpose2d`` (§5.5) are
reduced to *tap tables*: ``iy_of[oy, ky]`` is the input row read by tap ``ky``
of output row ``oy`` (−1 for padding), likewise ``ix_of[ox, kx]``. One kernel
then serves both ops, both realizations (§5.3) and both accumulation paths
(§5.4):

* the realization is encoded in per-code tables: ``seg_of[c]`` (segment),
  ``val_of[c]`` (the multiplicand: index ``q`` for split, grid value ``G`` for
  grid), and per segment ``pidx[s]`` / ``qidx[s]``, the accumulator receiving
  ``w·val`` and (split, origin ≠ 0) the offset accumulator receiving ``w``
  (−1: none);
* ``ordered=False`` (the op is proven not to overflow): plain int64 sums;
  ``ordered=True``: each accumulator adds its terms in the order ``ky, kx, ci``
  and the overflow policy (§4) is applied after every addition.

The rescale (5.3) ``I = Σ_j M_j[co]·acc_j + B[co]``, ``X = OVF_stream(R(I, n))``
is fused into the kernel so the accumulators never leave the cache.

Status codes written per output row: 0 ok, 1 accumulator overflow and 2 stream
overflow under the ``error`` policy (the Python wrapper raises, naming the op).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from intsim.overflow import OverflowPolicy, wrap_scalar
from intsim.rounding import round_shift_scalar

STATUS_OK = 0
STATUS_ACC_OVERFLOW = 1
STATUS_STREAM_OVERFLOW = 2



def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``⌊(size + 2p − d(k−1) − 1)/s⌋ + 1`` (arithmetic.md §5.1)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose2d_output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> int:
    """``(size − 1)·s − 2p + k + op`` (arithmetic.md §5.5)."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def conv2d_tap_table(size: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """int64[out, kernel]: input index read by tap ``k`` of output ``o``, −1 for padding (§5.1).

    Tap ``k`` of output ``o`` reads ``o·s − p + k·d``.
    """
    out = conv2d_output_size(size, kernel, stride, padding, dilation)
    if out < 1:
        raise ValueError(f"conv output size {out} < 1 (input {size}, kernel {kernel}, stride {stride}, "
                         f"padding {padding}, dilation {dilation})")
    o = np.arange(out, dtype=np.int64)[:, None]
    k = np.arange(kernel, dtype=np.int64)[None, :]
    idx = o * stride - padding + k * dilation
    return np.where((idx >= 0) & (idx < size), idx, -1).astype(np.int64)


def conv_transpose2d_tap_table(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> np.ndarray:
    """int64[out, kernel] for the gather form of the transposed conv (§5.5).

    Tap ``k`` of output ``o`` reads input ``(o + p − k)/s`` when the division is
    exact and the result inside the input; otherwise −1 (padding).
    """
    out = conv_transpose2d_output_size(size, kernel, stride, padding, output_padding)
    if out < 1:
        raise ValueError(f"transposed conv output size {out} < 1 (input {size}, kernel {kernel}, "
                         f"stride {stride}, padding {padding}, output_padding {output_padding})")
    o = np.arange(out, dtype=np.int64)[:, None]
    k = np.arange(kernel, dtype=np.int64)[None, :]
    num = o + padding - k
    # np's floor division / modulo are exact for negatives; num < 0 is excluded anyway.
    ok = (num >= 0) & (num % stride == 0) & (num // stride < size)
    return np.where(ok, num // stride, -1).astype(np.int64)


def tap_usage(table: np.ndarray, size: int) -> np.ndarray:
    """int64[size]: how many (output, tap) pairs read each input index."""
    valid = table[table >= 0]
    return np.bincount(valid, minlength=size).astype(np.int64)


def conv_macs(codes: np.ndarray, seg_of: np.ndarray, n_segments: int, iy_of: np.ndarray, ix_of: np.ndarray,
              out_per_group: int) -> np.ndarray:
    """Products per segment (arithmetic.md §7): int64[n_segments].

    Every non-padding tap of every input channel feeds the ``out_per_group``
    output channels of its group, one product each (zero weights included).
    The tap set is a product of row and column taps, so the count is
    ``out_per_group · Σ_{y,x} uses_y[y]·uses_x[x]·#{ci : seg(code[y,x,ci]) = s}``.
    """
    H, W, _ = codes.shape
    uy = tap_usage(iy_of, H)
    ux = tap_usage(ix_of, W)
    seg = seg_of[codes]
    out = np.zeros(n_segments, dtype=np.int64)
    for s in range(n_segments):
        per_pixel = np.count_nonzero(seg == s, axis=2).astype(np.int64)
        out[s] = int(uy @ per_pixel @ ux) * out_per_group
    return out


@numba.njit(cache=True, inline="always")
def _u(i):
    # Unsigned indices spare numba's negative-index wraparound code, which would
    # otherwise stop LLVM from vectorizing the output-channel loops.
    return np.uint64(i)


@numba.njit(cache=True)
def _apply_policy(acc, ab, n, lo, hi, bits, policy):
    """Apply the overflow policy (§4) to acc[ab:ab+n] right after one addition each; return the events.

    Called only when that addition left some accumulator out of range, so the
    common in-range step stays a vectorizable add. Under ``error`` values are left
    as they are (the caller flags the op and the wrapper raises).
    """
    events = 0
    for k in range(n):
        a = acc[_u(ab + k)]
        if a > hi or a < lo:
            events += 1
            if policy == OverflowPolicy.SATURATE:
                acc[_u(ab + k)] = hi if a > hi else lo
            elif policy != OverflowPolicy.ERROR:
                acc[_u(ab + k)] = wrap_scalar(a, bits)
    return events


@numba.njit(cache=True, inline="always")
def _accumulate(acc, ab, wflat, wb, n, v, ordered, lo, hi, bits, policy):
    """One step of §5.3: ``acc[ab:ab+n] += wflat[wb:wb+n]·v``; return its overflow events.

    Ordered (§5.4): the policy is applied right after this addition. Unordered
    layers are proven unable to overflow, so they just add (no events).
    """
    if not ordered:
        for k in range(n):
            acc[_u(ab + k)] += wflat[_u(wb + k)] * v
        return 0
    hit = False
    for k in range(n):
        a = acc[_u(ab + k)] + wflat[_u(wb + k)] * v
        acc[_u(ab + k)] = a
        hit |= (a > hi) | (a < lo)
    if hit:
        return _apply_policy(acc, ab, n, lo, hi, bits, policy)
    return 0


@numba.njit(cache=True, parallel=True)
def conv_kernel(codes, wt, seg_of, val_of, pidx, qidx, nacc, iy_of, ix_of, groups,
                mult, bias, nshift, rmode, ordered, acc_bits, policy, stream_bits,
                out, acc_events, stream_events, status, status_ox):
    """Fused accumulate + rescale (arithmetic.md §5.3–§5.5).

    codes int64[H, W, Ci] (flat codes); wt int32[kh, kw, Ci/g, Co] (integer
    weights, output channel innermost; int8/int16 in the artifact, so int32 is
    exact); seg_of, val_of int64[N]; pidx, qidx int64[S]; iy_of int64[Ho, kh],
    ix_of int64[Wo, kw]; mult int64[nacc, Co] (M_j[co]); bias int64[Co]; nshift
    in [0, 62]; rmode a RoundingMode value; policy an OverflowPolicy value;
    acc_bits / stream_bits widths in bits. Accumulation is int64 throughout.
    Writes out int64[Ho, Wo, Co] and per output row: acc_events, stream_events,
    status (STATUS_*) and status_ox (the column of the first error).
    """
    kh = wt.shape[0]
    kw = wt.shape[1]
    cig = wt.shape[2]
    co_n = wt.shape[3]
    cog = co_n // groups
    ho = iy_of.shape[0]
    wo = ix_of.shape[0]
    wflat = wt.reshape(kh * kw * cig * co_n)
    acc_hi = (np.int64(1) << (acc_bits - 1)) - 1
    acc_lo = -acc_hi - 1
    st_hi = (np.int64(1) << (stream_bits - 1)) - 1
    st_lo = -st_hi - 1
    for oy in prange(ho):
        # acc[j*co_n + co]: accumulator j of output channel co, one output pixel at a time
        acc = np.zeros(nacc * co_n, dtype=np.int64)
        ev_acc = 0
        ev_st = 0
        st = 0
        st_ox = -1
        for ox in range(wo):
            if st != 0:
                break  # error policy: the wrapper raises; stop working on this row
            acc[:] = 0
            for ky in range(kh):
                iy = iy_of[oy, ky]
                if iy < 0:
                    continue  # padding tap: no term, no step
                for kx in range(kw):
                    ix = ix_of[ox, kx]
                    if ix < 0:
                        continue
                    for g in range(groups):
                        co0 = g * cog
                        for cl in range(cig):
                            c = codes[iy, ix, g * cig + cl]
                            s = seg_of[c]
                            v = val_of[c]
                            wb = ((ky * kw + kx) * cig + cl) * co_n + co0
                            # A zero multiplicand adds 0: skipping it changes no sum and,
                            # since every accumulator is in range after each policy step,
                            # no overflow event either.
                            n_ev = 0
                            if v != 0:
                                n_ev += _accumulate(acc, pidx[s] * co_n + co0, wflat, wb, cog, v, ordered,
                                                    acc_lo, acc_hi, acc_bits, policy)
                            if qidx[s] >= 0:  # offset accumulator Q_s: its term is w·1
                                n_ev += _accumulate(acc, qidx[s] * co_n + co0, wflat, wb, cog, 1, ordered,
                                                    acc_lo, acc_hi, acc_bits, policy)
                            if n_ev > 0:
                                ev_acc += n_ev
                                if policy == OverflowPolicy.ERROR and st == 0:
                                    st = STATUS_ACC_OVERFLOW
                                    st_ox = ox
            # rescale (5.3): one multiply-add per accumulator, one rounding, stream policy
            for co in range(co_n):
                total = bias[co]
                for j in range(nacc):
                    total += mult[j, co] * acc[_u(j * co_n + co)]
                x = round_shift_scalar(total, nshift, rmode)
                if x > st_hi or x < st_lo:
                    ev_st += 1
                    if policy == OverflowPolicy.ERROR:
                        if st == 0:
                            st = STATUS_STREAM_OVERFLOW
                            st_ox = ox
                    elif policy == OverflowPolicy.SATURATE:
                        x = st_hi if x > st_hi else st_lo
                    else:
                        x = wrap_scalar(x, stream_bits)
                out[oy, ox, co] = x
        acc_events[oy] = ev_acc
        stream_events[oy] = ev_st
        status[oy] = st
        status_ox[oy] = st_ox
