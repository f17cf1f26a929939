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
included. :func:`wrap` is §4's ``wrap`` exactly as :func:`intsim.overflow.apply_overflow`
computes it on int64 arrays; §2's ``R(i, n)`` in this form is
:func:`intsim.rounding.round_shift_scalar`, built on :func:`add`.
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
def wrap(v, bits):
    """Two's complement wrap of int64 ``v`` to ``bits`` (1..63) bits (arithmetic.md §4):
    ``((v + 2^(bits−1)) mod 2^bits) − 2^(bits−1)``."""
    half = np.int64(1) << (bits - 1)
    mask = np.int64((np.uint64(1) << np.uint64(bits)) - np.uint64(1))
    return (add(v, half) & mask) - half
