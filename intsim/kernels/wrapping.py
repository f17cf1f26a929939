"""int64 arithmetic in numba kernels that wraps modulo 2^64, as numpy's array arithmetic does.

numba compiles signed ``+``, ``−`` and ``×`` with LLVM's ``nsw`` flag: a signed
overflow is undefined, and LLVM may rewrite what depends on it in ways no
wrap produces (measured: ``abs(x − m)`` with ``x = −2^63``, ``m = 1`` gave
``−(2^63 − 1)``, because ``x − m < 0`` was folded to ``x < m``). Shifts and
negation carry no such flag and wrap. Doing ``+``, ``−``, ``×`` on uint64
(no flag) gives the same bits as the two's complement operation.

Within the load-time envelope (§9) no int64 intermediate overflows, so for a
valid artifact this changes nothing; the stream-op kernels use these forms so
that they equal their numpy ops on *every* int64 input, adversarial ones
included. :func:`round_shift` and :func:`wrap` are §2's ``R(i, n)`` and §4's
``wrap`` exactly as :func:`intsim.rounding.round_shift` and
:func:`intsim.overflow.apply_overflow` compute them on int64 arrays.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def add(a, b):
    """``a + b`` modulo 2^64 (int64)."""
    return np.int64(np.uint64(a) + np.uint64(b))


@numba.njit(cache=True, inline="always")
def sub(a, b):
    """``a − b`` modulo 2^64 (int64)."""
    return np.int64(np.uint64(a) - np.uint64(b))


@numba.njit(cache=True, inline="always")
def mul(a, b):
    """``a · b`` modulo 2^64 (int64): the low 64 bits are the same signed or unsigned."""
    return np.int64(np.uint64(a) * np.uint64(b))


@numba.njit(cache=True, inline="always")
def round_shift(i, n, mode):
    """``R(i, n)`` (arithmetic.md §2) for int64 ``i``, ``0 ≤ n ≤ 62``, ``mode`` a
    :class:`~intsim.rounding.RoundingMode`; the additions of ``half_up`` and ``half_away``
    wrap as in numpy (the only steps of §2 that can leave int64)."""
    if n == 0:
        return i
    half = np.int64(1) << (n - 1)
    if mode == 0:  # half_up
        return add(i, half) >> n
    if mode == 1:  # half_away: sign(i)·((|i| + h) >> n); |−2^63| wraps to −2^63 as np.abs does
        if i < 0:
            return -(add(-i, half) >> n)  # n ≥ 1: the shifted value is below 2^62 in magnitude
        return add(i, half) >> n
    if mode == 2:  # half_even: q·2^n ≤ i and 0 ≤ r < 2^n, nothing leaves int64
        q = i >> n
        r = i - (q << n)
        if r > half or (r == half and (q & 1) == 1):
            q += 1
        return q
    return i >> n  # floor


@numba.njit(cache=True, inline="always")
def wrap(v, bits):
    """Two's complement wrap of int64 ``v`` to ``bits`` (1..63) bits (arithmetic.md §4):
    ``((v + 2^(bits−1)) mod 2^bits) − 2^(bits−1)``."""
    half = np.int64(1) << (bits - 1)
    mask = np.int64((np.uint64(1) << np.uint64(bits)) - np.uint64(1))
    return (add(v, half) & mask) - half
