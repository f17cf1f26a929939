"""Fused element-wise kernels the engine uses for large tensors (arithmetic.md §1.5, §2, §4, §6.3–§6.7, §6.14).

Each is a serial ``nogil`` kernel over a band of rows, run on the thread pool of
:mod:`intsim.kernels.parallel`, and computes the same integers as the numpy op
it replaces in one memory pass (the numpy ops build the intermediates ``I``,
the rounded values and boolean masks as separate full-size arrays).
:func:`requantize_bands` and :func:`split_bands` are memory-bound passes, banded
by :func:`~intsim.kernels.parallel.stream_bands`.

* :func:`requantize_rows` is the store ``X = OVF_stream(R(I, n))`` of (1.5) for
  ``I = (a << s_a)·g[c] + (b << s_b)``: ``add`` (§6.3), one input of ``concat``
  (§6.4, written into its channel slice of the output) and ``mul`` (§6.14).
  Rounding (§2) and the policy ``saturate`` or ``wrap`` (§4), one event per
  out-of-range value, with the int64 arithmetic of
  :mod:`intsim.wrapping` (it wraps as numpy's does). Under
  ``error`` the ops run it with ``saturate`` to count: no event means no value
  was changed; otherwise they run their numpy form, whose message names the value.
* :func:`copy_channels_rows` is ``split`` (§6.5): a channel slice copied.
* :func:`slope_rows` is ``leaky_relu`` / ``prelu`` (§6.7): ``X ≥ 0 → X``, else
  ``OVF_stream(R(X·M_c, k))``; the engine keeps the numpy op under ``error``. It
  reads a channel window, so the engine fuses a slope op with the ``split`` that
  is its output's only consumer (one pass, the split's slices written directly).
* :func:`slope_encode_rows` and :func:`requantize_encode_rows` are those two with
  the encoder (§3.4) of the stream's only consumer fused: a few rows go through
  an L2-sized scratch and come out as codes (:mod:`intsim.kernels.encode`).

:func:`requantize_rows` equals the numpy forms on every int64 input, also
outside the load-time envelope (§9); its left shifts must be in [0, 63] (numpy
defines larger ones as 0; the ops keep those on numpy).
"""
from __future__ import annotations

import itertools
import threading

import numba
import numpy as np

from intsim.kernels import parallel as KP
from intsim.kernels import uindex as _u
from intsim import wrapping
from intsim.kernels.encode import Encoded, encode_scratch, encoded_bands, scratch_rows
from intsim.numerics import STREAM_DTYPES, stream_dtype
from intsim.overflow import OverflowPolicy, wrap_scalar
from intsim.rounding import RoundingMode, round_shift_scalar



def channel_starts(sizes: list[int]) -> list[int]:
    """First channel of each of the consecutive slices of the given sizes (§6.5)."""
    # in Python: a numpy cumsum of a few sizes costs ~10 µs per fused slope call (the engine's fixed cost)
    return list(itertools.accumulate([0, *(int(v) for v in sizes[:-1])]))


@numba.njit(cache=True, nogil=True)
def slope_rows(x, mult, shift, rmode, policy, stream_bits, y0, y1, out, c0, dy):
    """Rows ``[y0, y1)`` of the channels ``[c0, c0 + C_out)`` of ``x``: ``out[y − dy, w, c] = v`` where
    ``v = x[y, w, c0 + c] ≥ 0``, else ``OVF(R(v·mult[c0 + c], shift))``; returns the events.
    ``out`` int64[·, W, C_out] (``c0 = 0`` and ``C_out = C``: the whole op; a channel
    window: the op fused with the ``split`` that consumes it; ``dy > 0``: rows of a scratch)."""
    W = x.shape[1]
    C = out.shape[2]
    hi = (np.int64(1) << (stream_bits - 1)) - 1
    lo = -hi - 1
    ev = 0
    branch_free = shift == 0 or rmode == RoundingMode.HALF_UP or rmode == RoundingMode.FLOOR
    if branch_free and policy == OverflowPolicy.SATURATE:
        # half_up or floor with saturate, or any mode at shift 0 (R(I, 0) = I exactly: relu's slope op, §6.6):
        # branch-free per element (vectorizes); same arithmetic
        h = (np.int64(1) << (shift - 1)) if rmode == RoundingMode.HALF_UP and shift > 0 else np.int64(0)
        for y in range(y0, y1):
            for w in range(W):
                for c in range(C):
                    v = x[y, w, _u(c0 + c)]
                    t = (min(v, 0) * mult[_u(c0 + c)] + h) >> shift  # v ≥ 0 keeps v: no product formed for it
                    s = min(max(t, lo), hi)
                    neg = v < 0
                    ev += neg & (s != t)
                    out[y - dy, w, _u(c)] = s if neg else v
        return ev
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                v = x[y, w, c0 + c]
                if v < 0:
                    v = round_shift_scalar(v * mult[c0 + c], shift, rmode)
                    if v > hi or v < lo:
                        ev += 1
                        if policy == OverflowPolicy.SATURATE:
                            v = hi if v > hi else lo
                        else:
                            v = wrap_scalar(v, stream_bits)
                out[y - dy, w, c] = v
    return ev


@numba.njit(cache=True, nogil=True)
def slope_encode_rows(x, mult, shift, rmode, policy, stream_bits, y0, y1, c0, scratch, table, codes, hist,
                      plain, plain_c0, n_plain):
    """:func:`slope_rows` of rows ``[y0, y1)``, channels ``[c0, c0 + C_out)``, encoded (§3.4) a few
    rows at a time through ``scratch`` int64[R, W, C_out] into ``codes``; returns
    ``(events, saturations)`` and adds to ``hist`` (:func:`intsim.kernels.encode.encode_scratch`).

    The first ``n_plain`` outputs of the tuple ``plain`` (int64, channels from ``plain_c0[i]``; the
    tuple is never empty, numba cannot type one) get the same rows of their slices, in the
    same pass, so each row of ``x`` is read once while it is in cache."""
    R = scratch.shape[0]
    ev = 0
    sats = 0
    for y in range(y0, y1, R):
        r = min(R, y1 - y)
        for i in range(n_plain):
            ev += slope_rows(x, mult, shift, rmode, policy, stream_bits, y, y + r, plain[i], plain_c0[i], 0)
        ev += slope_rows(x, mult, shift, rmode, policy, stream_bits, y, y + r, scratch, c0, y)
        sats += encode_scratch(scratch, r, table, rmode, codes, y, hist)
    return ev, sats


class SlopeSink:
    """The slope op (§6.7), optionally fused with a ``split`` (§6.5) and encoders (§3.4), over
    rows of its input as they arrive: ``sink(y0, y1, rows)`` takes rows ``[y0, y1)`` (int64,
    C-contiguous) from any thread, each row once; :meth:`result` then gives what
    :func:`slope_bands` returns. A producer (a conv band) can hand its rows over while they
    are still in cache.

    ``sizes``: the split's slice sizes (None: one output); ``encoders``: per output, None or
    an :class:`~intsim.kernels.encode.EncoderTable` whose rounding is ``rmode``.
    """

    def __init__(self, shape: tuple, mult: np.ndarray, shift: int, rmode: int, policy: int, stream_bits: int,
                 sizes: list[int] | None = None, encoders: list | None = None):
        H, W, C = shape
        self.row_shape = (W, C)
        self.m = np.ascontiguousarray(mult, dtype=np.int64)
        self.args = (int(shift), int(rmode), int(policy), int(stream_bits))
        sizes = [C] if sizes is None else [int(v) for v in sizes]
        encoders = [None] * len(sizes) if encoders is None else list(encoders)
        self.starts = channel_starts(sizes)
        self.plain = [(c0, np.empty((H, W, n), dtype=stream_dtype(stream_bits)))
                      for c0, n, e in zip(self.starts, sizes, encoders) if e is None]
        self.coded = [(c0, n, e, np.empty((H, W, n), dtype=e.code_dtype))
                      for c0, n, e in zip(self.starts, sizes, encoders) if e is not None]
        self.plain_c0 = np.array([c0 for c0, _ in self.plain], dtype=np.int64)
        self.parts: list = []  # per call: (events, [(saturations, histogram) per coded output])
        self.rows_done = 0  # rows taken so far: the producer handed every row over when it equals H
        self.lock = threading.Lock()

    def __call__(self, y0: int, y1: int, rows: np.ndarray) -> None:
        if (rows.shape != (y1 - y0, *self.row_shape) or rows.dtype not in STREAM_DTYPES
                or not rows.flags.c_contiguous):
            # the kernels do not check bounds: a wrong shape must never reach them
            raise ValueError(f"slope sink: rows {rows.shape} {rows.dtype} for rows [{y0}, {y1}) of width and "
                             f"channels {self.row_shape}")
        r, m, args = y1 - y0, self.m, self.args
        if not self.coded:
            ev = sum(slope_rows(rows, m, *args, 0, r, o, c0, -y0) for c0, o in self.plain)
            parts = []
        else:
            # the kernel's tuple is never empty (see slope_encode_rows)
            plain_t = tuple(o[y0:y1] for _, o in self.plain) or (rows,)
            ev, parts = 0, []
            for k, (c0, n, table, codes) in enumerate(self.coded):
                hist = np.zeros(table.num_codes, dtype=np.int64)
                W = self.row_shape[0]
                scratch = np.empty((scratch_rows(W, n), W, n), dtype=np.int64)
                e, sats = slope_encode_rows(rows, m, *args, 0, r, c0, scratch, table.arrays, codes[y0:y1], hist,
                                            plain_t, self.plain_c0, len(self.plain) if k == 0 else 0)
                ev += e
                parts.append((int(sats), hist))
        with self.lock:
            self.parts.append((int(ev), parts))
            self.rows_done += r

    def run(self, x: np.ndarray) -> tuple[list, int]:
        """Take every row of ``x`` (int64 H×W×C) in bands on the thread pool; :meth:`result`."""
        # a compact int32 stream is read as it is (numba widens each element)
        xc = np.ascontiguousarray(x, dtype=x.dtype if x.dtype in STREAM_DTYPES else np.int64)
        KP.run_bands(lambda lo, hi: self(lo, hi, xc[lo:hi]), KP.bands(xc.shape[0], min_rows=4))
        return self.result()

    def result(self) -> tuple[list, int]:
        """``(outputs, stream events)``: int64 arrays, or :class:`~intsim.kernels.encode.Encoded` for
        the encoded outputs, in channel order."""
        out = dict(self.plain)
        for k, (c0, _, table, codes) in enumerate(self.coded):
            if len(self.parts) == 1:  # one band: its histogram (a fresh array of its call) is the sum
                hist = self.parts[0][1][k][1]
            else:
                hist = np.zeros(table.num_codes, dtype=np.int64)
                for _, parts in self.parts:
                    hist += parts[k][1]
            out[c0] = Encoded(codes, sum(parts[k][0] for _, parts in self.parts), hist)
        return [out[c0] for c0 in self.starts], sum(ev for ev, _ in self.parts)


def slope_bands(x: np.ndarray, mult: np.ndarray, shift: int, rmode: int, policy: int, stream_bits: int,
                sizes: list[int] | None = None, encoders: list | None = None) -> tuple[list, int]:
    """``([out int64[H, W, C]], stream events)`` of the slope op on int64 ``x`` (saturate or wrap
    policy); with ``sizes``, the op fused with a ``split`` (§6.5): one contiguous output per
    consecutive channel slice of those sizes, in one pass over ``x`` (same integers).

    ``encoders``: per output, None or an :class:`~intsim.kernels.encode.EncoderTable` whose
    rounding is ``rmode``: that output is encoded in the same pass and comes back as an
    :class:`~intsim.kernels.encode.Encoded` (its int64 stream is never stored)."""
    return SlopeSink(np.shape(x), mult, shift, rmode, policy, stream_bits, sizes, encoders).run(x)


@numba.njit(cache=True, inline="always")
def _intermediate(a, sa, b, sb, g, y, w, c):
    """``I = (a << sa)·g[c] + (b << sb)`` at ``(y, w, c)``, wrapping as numpy does (None terms left out)."""
    i = a[y, w, _u(c)] << sa
    if g is not None:
        i = wrapping.mul(i, g[_u(c)])
    if b is not None:
        i = wrapping.add(i, b[y, w, _u(c)] << sb)
    return i


@numba.njit(cache=True, nogil=True)
def requantize_rows(a, sa, b, sb, g, n, rmode, policy, stream_bits, y0, y1, out, c0, dy):
    """Rows ``[y0, y1)``: ``out[y − dy, w, c0 + c] = OVF(R(I, n))``, ``I = (a[y, w, c] << sa)·g[c] + (b[y, w, c] << sb)``.

    ``a``, ``b`` int64[H, W, C] (any strides), ``g`` int64[C]; ``b`` or ``g`` None
    leaves its term out (numba compiles each combination without the branch).
    ``sa``, ``sb`` in [0, 63]; ``n`` in [0, 62]; ``rmode`` a
    :class:`~intsim.rounding.RoundingMode`; ``policy`` saturate (1) or wrap (2)
    at ``stream_bits`` (1..63). Returns the stream events.
    """
    W = a.shape[1]
    C = a.shape[2]
    hi = (np.int64(1) << (stream_bits - 1)) - 1
    lo = -hi - 1
    ev = 0
    if policy == OverflowPolicy.SATURATE and (rmode == RoundingMode.HALF_UP or rmode == RoundingMode.FLOOR):
        # half_up / floor with saturate: R(i, n) = (i + h) >> n with h the half (0 for floor, and
        # for n = 0), the same wrapping add; no per-element branch on the mode, so the loop vectorizes
        h = (np.int64(1) << (n - 1)) if (rmode == RoundingMode.HALF_UP and n > 0) else np.int64(0)
        for y in range(y0, y1):
            for w in range(W):
                for c in range(C):
                    t = wrapping.add(_intermediate(a, sa, b, sb, g, y, w, c), h) >> n
                    v = min(max(t, lo), hi)
                    ev += v != t
                    out[y - dy, w, _u(c0 + c)] = v
        return ev
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                t = round_shift_scalar(_intermediate(a, sa, b, sb, g, y, w, c), n, rmode)
                v = min(max(t, lo), hi) if policy == OverflowPolicy.SATURATE else wrapping.wrap(t, stream_bits)
                ev += v != t
                out[y - dy, w, _u(c0 + c)] = v
    return ev


def requantize_bands(parts: list, out: np.ndarray, rmode: int, policy: int, stream_bits: int) -> int:
    """Fill ``out`` int64[H, W, C] by :func:`requantize_rows` over bands of rows; returns the events.

    ``parts``: ``(a, sa, b, sb, g, n, c0)`` tuples, each writing channels
    ``[c0, c0 + a.shape[2])`` (one for ``add`` and ``mul``, one per input for ``concat``).
    """
    def band(lo, hi):
        return sum(requantize_rows(a, sa, b, sb, g, n, rmode, policy, stream_bits, lo, hi, out, c0, 0)
                   for a, sa, b, sb, g, n, c0 in parts)

    return int(sum(KP.run_bands(band, KP.stream_bands(out.shape[0], out.shape[1] * out.shape[2]))))


@numba.njit(cache=True, nogil=True)
def requantize_encode_rows(parts, rmode, policy, stream_bits, y0, y1, scratch, table, codes, hist):
    """:func:`requantize_rows` of every part (a tuple of ``(a, sa, b, sb, g, n, c0)`` of one type)
    for rows ``[y0, y1)``, encoded (§3.4) a few rows at a time through ``scratch`` int64[R, W, C]
    into ``codes``; returns ``(events, saturations)`` and adds to ``hist``."""
    R = scratch.shape[0]
    ev = 0
    sats = 0
    for y in range(y0, y1, R):
        r = min(R, y1 - y)
        for p in parts:
            a, sa, b, sb, g, n, c0 = p
            ev += requantize_rows(a, sa, b, sb, g, n, rmode, policy, stream_bits, y, y + r, scratch, c0, y)
        sats += encode_scratch(scratch, r, table, rmode, codes, y, hist)
    return ev, sats


def requantize_encode_bands(parts: list, shape: tuple, rmode: int, policy: int, stream_bits: int,
                            table) -> tuple:
    """:func:`requantize_bands` into a stream of ``shape`` that is encoded in the same pass by
    ``table`` (an :class:`~intsim.kernels.encode.EncoderTable` whose rounding is ``rmode``):
    ``(Encoded, stream events)``; the int64 stream is never stored."""
    H, W, C = shape
    # one tuple type for every part (numba iterates it): C-contiguous operands of one dtype (compact
    # int32 streams as they are when every operand is one, else int64), int shifts
    ops = [x for a, _, b, _, _, _, _ in parts for x in (a, b) if x is not None]
    dt = np.int32 if all(np.asarray(x).dtype == np.int32 for x in ops) else np.int64
    typed = tuple((np.ascontiguousarray(a, dtype=dt), int(sa),
                   None if b is None else np.ascontiguousarray(b, dtype=dt), int(sb),
                   None if g is None else np.ascontiguousarray(g, dtype=np.int64), int(n), int(c0))
                  for a, sa, b, sb, g, n, c0 in parts)

    def band(lo, hi, codes, hist):
        scratch = np.empty((scratch_rows(W, C), W, C), dtype=np.int64)
        return requantize_encode_rows(typed, rmode, policy, stream_bits, lo, hi, scratch, table.arrays, codes, hist)

    return encoded_bands(shape, table, band, KP.stream_bands(H, W * C))


@numba.njit(cache=True, nogil=True)
def copy_channels_rows(x, c0, y0, y1, out):
    """Rows ``[y0, y1)``: ``out[y, w, c] = x[y, w, c0 + c]`` (no arithmetic)."""
    W = out.shape[1]
    C = out.shape[2]
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                out[y, w, _u(c)] = x[y, w, _u(c0 + c)]


def split_bands(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Contiguous copies of the consecutive channel slices of ``x`` [H, W, ΣC] of the given sizes (§6.5)."""
    H, W = x.shape[:2]
    starts = channel_starts(sizes)
    outs = [np.empty((H, W, s), dtype=x.dtype) for s in sizes]

    def band(lo, hi):
        for c0, o in zip(starts, outs):
            copy_channels_rows(x, c0, lo, hi, o)

    KP.run_bands(band, KP.stream_bands(H, x.shape[1] * x.shape[2]))
    return outs
