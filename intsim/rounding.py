"""Rescale with one rounding: ``R(I, n)`` of docs/arithmetic.md §2.

``I`` is an int64 value (or array), ``n`` a right shift in [0, 62]. The modes
are the named numeric variants of §2, listed once in :class:`RoundingMode`; each
is implemented once for numpy arrays and once as a numba scalar for the kernels
(both exercised against an exact ``fractions.Fraction`` reference in
tests/intsim/test_rounding.py). A new mode is a member and its two branches here
(and golden's real form, docs/extending.md): everything else in the engine reads
the enum.
"""
from __future__ import annotations

import numba
import numpy as np

from intsim import wrapping
from intsim.spec_enum import SpecEnum

MAX_SHIFT = 62


class RoundingMode(SpecEnum):
    """Rounding of ``I·2^-n`` to an integer (arithmetic.md §2).

    The int value is what the kernels receive; their fast paths test single members
    (``rmode == RoundingMode.HALF_UP``) and take :func:`round_shift_scalar` otherwise, so a
    new member needs only its branches in :func:`round_shift_scalar` and :func:`round_shift`."""

    HALF_UP = 0  # ties toward +inf (TFLite / gemmlowp single rounding)
    HALF_AWAY = 1  # ties away from zero
    HALF_EVEN = 2  # ties to even (ONNX)
    FLOOR = 3  # toward -inf (HLS default)
    HALF_ZERO = 4  # ties toward zero (HLS AP_RND_ZERO)

    @classmethod
    def describe(cls) -> str:
        return "rounding mode"


@numba.njit(cache=True, inline="always")
def round_shift_scalar(i, n, mode):
    """``R(i, n)`` (arithmetic.md §2) for int64 ``i``, ``0 ≤ n ≤ 62``, ``mode`` a
    :class:`RoundingMode` (numba scalar); the additions of ``half_up`` and ``half_away``
    wrap as in numpy (:mod:`intsim.wrapping`: numba's signed additions must not
    overflow), the only steps of §2 that can leave int64."""
    if n == 0:
        return i
    half = np.int64(1) << (n - 1)
    if mode == RoundingMode.HALF_UP:
        return wrapping.add(i, half) >> n
    if mode == RoundingMode.HALF_AWAY:  # sign(i)·((|i| + h) >> n); |−2^63| wraps as np.abs does
        if i < 0:
            return -(wrapping.add(-i, half) >> n)  # n ≥ 1: the shifted value is below 2^62 in magnitude
        return wrapping.add(i, half) >> n
    if mode == RoundingMode.HALF_EVEN:  # q·2^n ≤ i and 0 ≤ r < 2^n, nothing leaves int64
        q = i >> n
        r = i - (q << n)
        if r > half or (r == half and (q & 1) == 1):
            q += 1
        return q
    if mode == RoundingMode.HALF_ZERO:  # as half_even, a tie goes up only below zero (q < 0)
        q = i >> n
        r = i - (q << n)
        if r > half or (r == half and q < 0):
            q += 1
        return q
    return i >> n  # FLOOR


def round_shift(values, n, mode: "RoundingMode | str") -> np.ndarray:
    """Vectorised ``R(values, n)`` (§2). ``values`` int64; ``n`` scalar or array in [0, 62]."""
    mode = RoundingMode.parse(mode)
    i = np.asarray(values, dtype=np.int64)
    if type(n) is int:  # the usual call: a Python int shift, range-checked without array reductions
        if not 0 <= n <= MAX_SHIFT:
            raise ValueError(f"shift must be in [0, {MAX_SHIFT}]")
        n = np.asarray(n, dtype=np.int64)
    else:
        n = np.asarray(n, dtype=np.int64)
        if np.any(n < 0) or np.any(n > MAX_SHIFT):
            raise ValueError(f"shift must be in [0, {MAX_SHIFT}]")
    if n.ndim == 0 and mode in (RoundingMode.FLOOR, RoundingMode.HALF_UP):
        # one shift for all values (the common case): the formula alone, no masks
        k = int(n)
        if k == 0:
            return i.copy()
        if mode is RoundingMode.FLOOR:
            return i >> np.int64(k)
        return (i + (np.int64(1) << np.int64(k - 1))) >> np.int64(k)
    # For n == 0 every mode is the identity; use shift 1 with a zero half to keep it branch-free.
    nz = n > 0
    half = np.where(nz, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0)
    if mode is RoundingMode.FLOOR:
        out = i >> n
    elif mode is RoundingMode.HALF_UP:
        out = (i + half) >> n
    elif mode is RoundingMode.HALF_AWAY:
        with np.errstate(over="ignore"):  # |INT64_MIN| only arises for n == 0, discarded below
            mag = (np.abs(i) + half) >> n
            out = np.where(i < 0, -mag, mag)
    else:  # HALF_EVEN, HALF_ZERO: q·2^n ≤ i, 0 ≤ r < 2^n, up by one above a tie and on the mode's ties
        q = i >> n
        r = i - (q << n)
        tie_up = (q & 1) == 1 if mode is RoundingMode.HALF_EVEN else q < 0
        up = nz & ((r > half) | ((r == half) & tie_up))
        out = q + up
    return np.where(nz, out, i).astype(np.int64)
