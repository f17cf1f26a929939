"""Sigmoid look-up table and its index rule: docs/arithmetic.md §6.13.

The table holds ``lut[j] = round_half_up(σ((imin + j)·2^-lut_exp) · 2^out_frac)``.
Every entry is decided *exactly*: σ is evaluated with :mod:`decimal` at
``_START_DIGITS`` (≥ 50) significant digits and the precision is raised until the
value is provably on one side of the rounding boundary.

Ties: for a rational ``x ≠ 0``, ``e^x`` is transcendental (Lindemann), so
``σ(x)·2^out_frac`` is never a half-integer and round-half-up is only ever a
question of which side the value lies on. The one exact tie candidate is
``x = 0`` (σ = 1/2), handled with exact rationals: it is the integer
``2^(out_frac−1)`` for ``out_frac ≥ 1`` and the tie ``1/2 → 1`` for ``out_frac = 0``.

Only numpy and the standard library are used (no torch, no mpmath).
"""
from __future__ import annotations

import decimal
from fractions import Fraction

import numpy as np

from intsim.rounding import MAX_SHIFT, RoundingMode, round_shift

_START_DIGITS = 60  # > 50 digits, as the spec requires ("verified against 50-digit decimal")
_MAX_DIGITS = 2000  # refuse rather than loop forever (never reached in practice)
MAX_OUT_FRAC = 30  # lut[j] ≤ 2^out_frac must fit int32
MAX_LUT_ENTRIES = 1 << 20
_TAIL = 64  # |x| beyond which every entry is 0 or 2^out_frac (see below)


def _sigmoid_scaled_round_half_up(m: int, lut_exp: int, out_frac: int) -> int:
    """``round_half_up(σ(m·2^-lut_exp)·2^out_frac)`` decided exactly (``0 ≤ out_frac ≤ 30``)."""
    if m == 0:
        # σ(0) = 1/2 exactly: the only possible tie. floor(v + 1/2) on exact rationals.
        v = Fraction(1 << out_frac, 2)
        return (2 * v.numerator + v.denominator) // (2 * v.denominator)
    x = Fraction(m) / (Fraction(2) ** lut_exp)
    # Far tails: |x| > 64 gives 2^out_frac·e^-|x| < 2^30·e^-64 < 10^-18, so the entry is
    # 2^out_frac (x > 0) or 0 (x < 0) without evaluating exp (which could overflow).
    if x > _TAIL:
        return 1 << out_frac
    if x < -_TAIL:
        return 0
    # |x| ≤ 64 and x = m·2^-k is a finite decimal: convert exactly.
    digits = _START_DIGITS
    while digits <= _MAX_DIGITS:
        # Enough precision to hold x exactly (a power-of-two denominator 2^k has k decimals).
        exact = decimal.Context(prec=len(str(abs(x.numerator))) + 2 * x.denominator.bit_length() + 8,
                                traps=[decimal.Inexact, decimal.Overflow, decimal.Underflow])
        x_dec = exact.divide(decimal.Decimal(x.numerator), decimal.Decimal(x.denominator))
        ctx = decimal.Context(prec=digits, rounding=decimal.ROUND_HALF_EVEN,
                              traps=[decimal.Overflow, decimal.InvalidOperation, decimal.DivisionByZero])
        # σ(x)·2^f = 2^f / (1 + e^-x). decimal's exp is correctly rounded; the add, divide
        # and the +1/2 below each add at most half an ulp: the total absolute error is
        # below 4·(v + 1)·10^(1−digits), which ``err`` bounds with room to spare.
        e = ctx.exp(-x_dec)
        v = ctx.divide(decimal.Decimal(1 << out_frac), ctx.add(decimal.Decimal(1), e))
        t = ctx.add(v, decimal.Decimal("0.5"))
        err = ctx.multiply(ctx.add(v, decimal.Decimal(1)), decimal.Decimal(1).scaleb(2 - digits))
        fl = int(t.to_integral_value(rounding=decimal.ROUND_FLOOR))
        lo = int(ctx.subtract(t, err).to_integral_value(rounding=decimal.ROUND_FLOOR))
        hi = int(ctx.add(t, err).to_integral_value(rounding=decimal.ROUND_FLOOR))
        if lo == fl == hi:  # the whole uncertainty interval rounds the same way
            return fl
        digits *= 2
    raise ArithmeticError(  # pragma: no cover - needs a value within 10^-2000 of a tie
        f"sigmoid LUT entry for x = {m}·2^-{lut_exp} could not be decided")


def build_sigmoid_lut(imin: int, imax: int, lut_exp: int, out_frac: int) -> np.ndarray:
    """The §6.13 table: ``lut[j] = round_half_up(σ((imin+j)·2^-lut_exp)·2^out_frac)``, int32.

    ``imin ≤ imax``; ``0 ≤ out_frac ≤ 30`` (so every entry, at most ``2^out_frac``,
    fits int32). Each entry is decided exactly (see the module docstring).
    """
    for name, v in (("imin", imin), ("imax", imax), ("lut_exp", lut_exp), ("out_frac", out_frac)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {v!r}")
    imin, imax, lut_exp, out_frac = int(imin), int(imax), int(lut_exp), int(out_frac)
    if imax < imin:
        raise ValueError(f"sigmoid LUT: imax ({imax}) < imin ({imin})")
    if imax - imin + 1 > MAX_LUT_ENTRIES:
        raise ValueError(f"sigmoid LUT: {imax - imin + 1} entries exceed the limit {MAX_LUT_ENTRIES}")
    if not 0 <= out_frac <= MAX_OUT_FRAC:
        raise ValueError(f"sigmoid LUT: out_frac {out_frac} outside [0, {MAX_OUT_FRAC}]")
    if abs(lut_exp) > 256:
        raise ValueError(f"sigmoid LUT: lut_exp {lut_exp} outside [-256, 256]")
    out = np.empty(imax - imin + 1, dtype=np.int32)
    for j, m in enumerate(range(imin, imax + 1)):
        out[j] = _sigmoid_scaled_round_half_up(m, lut_exp, out_frac)
    return out


def lut_index(X, f_in: int, lut_exp: int, imin: int, imax: int,
              rounding: "RoundingMode | str") -> tuple[np.ndarray, int]:
    """The §6.13 index ``i = clamp(R(X·2^max(0, k−f), max(0, f−k)), imin, imax)``.

    Returns ``(i, saturations)``: ``i`` int64 with the shape of ``X`` holds the
    *grid index* in ``[imin, imax]`` (the table position is ``i − imin``);
    ``saturations`` counts the elements whose clamp changed the value.
    Raises ``ValueError`` when the right shift exceeds 62 and ``OverflowError``
    when the left shift would leave int64.
    """
    x = np.asarray(X, dtype=np.int64)
    if imax < imin:
        raise ValueError(f"sigmoid index: imax ({imax}) < imin ({imin})")
    left = max(0, int(lut_exp) - int(f_in))
    right = max(0, int(f_in) - int(lut_exp))
    if right > MAX_SHIFT:
        raise ValueError(f"sigmoid index: shift f_in − lut_exp = {right} exceeds {MAX_SHIFT}")
    if left:
        if left >= 63:
            big = x != 0
        else:
            lim = np.int64(1) << np.int64(63 - left)  # −2^(63−left) ≤ X < 2^(63−left) keeps X·2^left in int64
            big = (x >= lim) | (x < -lim)
        if np.any(big):
            bad = int(x[np.unravel_index(int(np.argmax(big)), x.shape)] if x.ndim else x)
            raise OverflowError(f"sigmoid index: X = {bad} shifted left by {left} leaves int64")
        x = x << np.int64(left)
    t = round_shift(x, right, rounding)
    i = np.clip(t, int(imin), int(imax)).astype(np.int64)
    saturations = int(np.count_nonzero(i != t))
    return i, saturations
