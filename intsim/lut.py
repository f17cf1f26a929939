"""Look-up-table activations and their index rule: docs/arithmetic.md §6.13 and §6.17.

A ``lut`` op applies a named scalar function ``φ`` (:data:`LUT_FUNCTIONS`: ``sigmoid``,
``tanh``, ``silu``, ``gelu``, ``mish``) through a table built at export:
``lut[j] = round_half_up(φ((imin + j)·2^-lut_exp) · 2^out_frac)``.
Every entry is decided *exactly*: ``φ`` is evaluated with :mod:`decimal` at
``digits + GUARD_DIGITS`` significant digits (``digits`` ≥ 60) and the result is
trusted to ``10^-digits`` (absolute); the precision is doubled until the whole
uncertainty interval rounds the same way. Far tails (:attr:`LutFunction.tail`) are
decided by an exact rule instead (below), so ``exp`` never over- or underflows.

Ties: ``φ(0)`` is exact (½ for sigmoid, 0 otherwise) and handled with rationals.
For rational ``x ≠ 0`` the values of sigmoid, tanh and silu are transcendental
(Lindemann), so ``φ(x)·2^out_frac`` is never a half-integer. So is mish:
``mish(x) = x·P(z)/Q(z)`` with ``z = e^x``, ``P = z² + 2z``, ``Q = z² + 2z + 2``; were
``mish(x)·2^f`` a half-integer ``c`` (≠ 0), ``z`` would be a root of
``(x·2^f − c)·(z² + 2z) − 2c``, a non-zero polynomial with rational coefficients
(its constant term is ``−2c``), but ``e^x`` is transcendental (Lindemann). For gelu no such
theorem is known and a value within ``10^-2000`` of a tie would be refused
(:class:`ArithmeticError`), never rounded by guess.

Tails: for ``|x| > tail`` the function equals an exact asymptote ``A(x)`` (0, ±1 or
``x``) up to a remainder ``0 < t < 2^-62`` (checked in the docstring of each
function below) of known sign ``σ`` (``φ = A − σ·t``). With ``P/2^k = A·2^f + ½``
(``k ≤ 60``: the input grid is at most 60 bits finer than the output grid, see
:func:`build_lut`), ``round_half_up(φ·2^f)`` is ``⌊P/2^k⌋`` except when ``σ = +1``
and ``2^k | P`` (the asymptote is a tie approached from below): then ``P/2^k − 1``.

Only numpy and the standard library are used (no torch, no mpmath).
"""
from __future__ import annotations

import decimal
import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from intsim.rounding import MAX_SHIFT, RoundingMode, round_shift

START_DIGITS = 60  # > 50 digits, as the spec requires ("verified against 50-digit decimal")
GUARD_DIGITS = 40  # working precision beyond ``digits`` (series sums, cancellation in 1 − erf)
MAX_DIGITS = 2000  # refuse rather than loop forever (never reached in practice)
MAX_OUT_FRAC = 30  # lut[j] ≤ 2^out_frac·max|φ| must fit int32 (checked per table)
MAX_LUT_ENTRIES = 1 << 20
MAX_GRID_GAP = 60  # lut_exp − out_frac ≤ 60: the tail rule needs t < 2^-k


def _pi(ctx: decimal.Context) -> decimal.Decimal:
    """π to the precision of ``ctx`` (the series of the :mod:`decimal` documentation's recipe)."""
    return ctx.plus(_pi_at(ctx.prec))


@functools.lru_cache(maxsize=8)
def _pi_at(prec: int) -> decimal.Decimal:
    c = decimal.Context(prec=prec + 5)
    three = decimal.Decimal(3)
    lasts, t, s, n, na, d, da = 0, three, three, 1, 0, 0, 24
    while s != lasts:
        lasts = s
        n, na = n + na, na + 8
        d, da = d + da, da + 32
        t = c.divide(c.multiply(t, n), d)
        s = c.add(s, t)
    return s


def _erf_pos(z: decimal.Decimal, ctx: decimal.Context) -> decimal.Decimal:
    """erf(z) for z ≥ 0: ``2/√π · e^-z² · Σ_n z·(2z²)^n / (2n+1)!!``, all terms positive (no cancellation)."""
    if z == 0:
        return decimal.Decimal(0)
    z2 = ctx.multiply(z, z)
    term, total, n = z, z, 0
    eps = decimal.Decimal(1).scaleb(-ctx.prec - 5)
    while term > ctx.multiply(total, eps):
        n += 1
        term = ctx.divide(ctx.multiply(term, ctx.multiply(2, z2)), 2 * n + 1)
        total = ctx.add(total, term)
    return ctx.multiply(ctx.divide(ctx.multiply(2, ctx.exp(-z2)), ctx.sqrt(_pi(ctx))), total)


def _sigmoid(x, ctx):
    return ctx.divide(1, ctx.add(1, ctx.exp(-x)))


def _tanh(x, ctx):
    # tanh x = 1 − 2/(1 + e^{2x}) for x ≥ 0 (no overflow), odd
    ax = abs(x)
    v = ctx.subtract(1, ctx.divide(2, ctx.add(1, ctx.exp(ctx.multiply(2, ax)))))
    return v if x >= 0 else -v


def _silu(x, ctx):
    return ctx.multiply(x, _sigmoid(x, ctx))


def _gelu(x, ctx):
    # x·Φ(x) = x/2·(1 + erf(x/√2)); erf is odd
    z = ctx.divide(abs(x), ctx.sqrt(decimal.Decimal(2)))
    e = _erf_pos(z, ctx)
    return ctx.multiply(ctx.divide(x, 2), ctx.add(1, e) if x >= 0 else ctx.subtract(1, e))


def _mish(x, ctx):
    # x·tanh(ln(1 + e^x)) = x·(z² + 2z)/(z² + 2z + 2) with z = e^x (module docstring); for x > 0 in u = e^-x,
    # x·(1 + 2u)/(1 + 2u + 2u²): no overflow, and every sum adds positive terms (no cancellation)
    if x > 0:
        u = ctx.exp(-x)
        p = ctx.add(1, ctx.multiply(2, u))
        return ctx.multiply(x, ctx.divide(p, ctx.add(p, ctx.multiply(2, ctx.multiply(u, u)))))
    z = ctx.exp(x)
    p = ctx.multiply(z, ctx.add(z, 2))
    return ctx.multiply(x, ctx.divide(p, ctx.add(p, 2)))


@dataclass(frozen=True)
class LutFunction:
    """One table function: exact-enough evaluation, its far-tail asymptotes, and its value range.

    ``evaluate(x, ctx)``: φ(x) as a :class:`decimal.Decimal` at the precision of ``ctx``.
    ``tail``: for ``|x| > tail``, ``φ(x) = A(x) − σ·t`` with ``0 < t < 2^-62·2^-out_frac``;
    ``upper`` / ``lower`` give ``(A, σ)`` for ``x > tail`` / ``x < −tail`` as functions of the
    rational ``x``. ``bound(R)``: ``max |φ(x)|`` over ``|x| ≤ R`` (sizes the output frac).
    ``torch_name``: the float reference's name (documentation only: intsim never imports torch).
    """

    name: str
    evaluate: Callable
    tail: int
    upper: Callable[[Fraction], tuple[Fraction, int]]
    lower: Callable[[Fraction], tuple[Fraction, int]]
    bound: Callable[[float], float]
    torch_name: str


# Tail remainders (|x| > tail, out_frac ≤ 30): sigmoid e^-|x| < e^-80 < 2^-115;
# tanh 2e^-2|x| < 2^-229; silu |x|·e^-|x| < 80·e^-80 < 2^-108 (decreasing for |x| > 1);
# gelu |x|·Φ(−|x|) < φ_N(|x|) = e^{−x²/2}/√(2π) < e^-72 < 2^-103 at |x| > 12;
# mish: above, x − mish(x) = x·2u²/(1 + 2u + 2u²) < 2x·e^-2x < 2^-223, below, |mish(x)| < |x|·z(z + 2)/2
# < 1.01·|x|·e^-|x| < 2^-107 (as silu, and of the same signs: mish < x, mish < 0 for x < 0).
# Times 2^30 each stays below 2^-62.
LUT_FUNCTIONS: dict[str, LutFunction] = {f.name: f for f in (
    LutFunction("sigmoid", _sigmoid, 80, lambda x: (Fraction(1), 1), lambda x: (Fraction(0), -1),
                lambda R: 1.0, "torch.sigmoid"),
    LutFunction("tanh", _tanh, 80, lambda x: (Fraction(1), 1), lambda x: (Fraction(-1), -1),
                lambda R: 1.0, "torch.tanh"),
    LutFunction("silu", _silu, 80, lambda x: (x, 1), lambda x: (Fraction(0), 1),
                lambda R: max(float(R), 0.2785), "torch.nn.functional.silu"),
    LutFunction("gelu", _gelu, 12, lambda x: (x, 1), lambda x: (Fraction(0), 1),
                lambda R: max(float(R), 0.1700), "torch.nn.functional.gelu (approximate='none')"),
    LutFunction("mish", _mish, 80, lambda x: (x, 1), lambda x: (Fraction(0), 1),
                lambda R: max(float(R), 0.3089), "torch.nn.functional.mish"),
)}


def _rhu_fraction(v: Fraction) -> int:
    return (2 * v.numerator + v.denominator) // (2 * v.denominator)  # floor(v + 1/2)


def _tail_rule(A: Fraction, side: int, out_frac: int) -> int:
    """round_half_up((A − side·t)·2^f) for 0 < t·2^f < 2^-62 (module docstring)."""
    p = A * (Fraction(2) ** out_frac) + Fraction(1, 2)
    fl = p.numerator // p.denominator
    return fl - 1 if side > 0 and p.denominator == 1 else fl


def entry(fn: LutFunction, m: int, lut_exp: int, out_frac: int) -> int:
    """``round_half_up(φ(m·2^-lut_exp)·2^out_frac)`` decided exactly (module docstring)."""
    x = Fraction(m) / (Fraction(2) ** lut_exp)
    if m == 0:
        return _rhu_fraction(Fraction(1, 2) * 2 ** out_frac) if fn.name == "sigmoid" else 0
    if x > fn.tail:
        return _tail_rule(*fn.upper(x), out_frac)
    if x < -fn.tail:
        return _tail_rule(*fn.lower(x), out_frac)
    # x = m·2^-k is a finite decimal: convert exactly.
    exact = decimal.Context(prec=len(str(abs(x.numerator))) + 2 * x.denominator.bit_length() + 8,
                            traps=[decimal.Inexact, decimal.Overflow, decimal.Underflow])
    x_dec = exact.divide(decimal.Decimal(x.numerator), decimal.Decimal(x.denominator))
    digits = START_DIGITS
    while digits <= MAX_DIGITS:
        ctx = decimal.Context(prec=digits + GUARD_DIGITS, rounding=decimal.ROUND_HALF_EVEN, Emin=-10**6,
                              Emax=10**6, traps=[decimal.Overflow, decimal.InvalidOperation, decimal.DivisionByZero])
        # |φ(x)·2^f| < 2^30·80 < 10^11 and the evaluation runs a bounded number of correctly rounded
        # steps at digits + GUARD_DIGITS digits: its absolute error is far below 10^-digits.
        v = ctx.multiply(fn.evaluate(x_dec, ctx), decimal.Decimal(1 << out_frac))
        t = ctx.add(v, decimal.Decimal("0.5"))
        err = decimal.Decimal(1).scaleb(-digits)
        fl = int(t.to_integral_value(rounding=decimal.ROUND_FLOOR))
        lo = int(ctx.subtract(t, err).to_integral_value(rounding=decimal.ROUND_FLOOR))
        hi = int(ctx.add(t, err).to_integral_value(rounding=decimal.ROUND_FLOOR))
        if lo == fl == hi:  # the whole uncertainty interval rounds the same way
            return fl
        digits *= 2
    raise ArithmeticError(  # pragma: no cover - needs a value within 10^-2000 of a tie
        f"{fn.name} LUT entry for x = {m}·2^-{lut_exp} could not be decided")


def lut_function(name: str) -> LutFunction:
    """The :class:`LutFunction` called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return LUT_FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown LUT function {name!r} (known: {', '.join(LUT_FUNCTIONS)})") from None


def build_lut(fn: str, imin: int, imax: int, lut_exp: int, out_frac: int) -> np.ndarray:
    """The §6.17 table ``lut[j] = round_half_up(φ((imin+j)·2^-lut_exp)·2^out_frac)``, int32.

    ``imin ≤ imax``; ``0 ≤ out_frac ≤ 30``; ``lut_exp − out_frac ≤ 60`` (the tail rule);
    every entry must fit int32. Each entry is decided exactly (module docstring).
    """
    f = lut_function(fn)
    for name, v in (("imin", imin), ("imax", imax), ("lut_exp", lut_exp), ("out_frac", out_frac)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {v!r}")
    imin, imax, lut_exp, out_frac = int(imin), int(imax), int(lut_exp), int(out_frac)
    if imax < imin:
        raise ValueError(f"{fn} LUT: imax ({imax}) < imin ({imin})")
    if imax - imin + 1 > MAX_LUT_ENTRIES:
        raise ValueError(f"{fn} LUT: {imax - imin + 1} entries exceed the limit {MAX_LUT_ENTRIES}")
    if not 0 <= out_frac <= MAX_OUT_FRAC:
        raise ValueError(f"{fn} LUT: out_frac {out_frac} outside [0, {MAX_OUT_FRAC}]")
    if abs(lut_exp) > 256 or lut_exp - out_frac > MAX_GRID_GAP:
        raise ValueError(f"{fn} LUT: lut_exp {lut_exp} outside [-256, 256] or more than {MAX_GRID_GAP} above "
                         f"out_frac {out_frac}")
    vals = [entry(f, m, lut_exp, out_frac) for m in range(imin, imax + 1)]
    if vals and (min(vals) < -(1 << 31) or max(vals) >= 1 << 31):
        raise ValueError(f"{fn} LUT: entries [{min(vals)}, {max(vals)}] do not fit int32 (lower out_frac)")
    return np.array(vals, dtype=np.int32)


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
        raise ValueError(f"LUT index: imax ({imax}) < imin ({imin})")
    left = max(0, int(lut_exp) - int(f_in))
    right = max(0, int(f_in) - int(lut_exp))
    if right > MAX_SHIFT:
        raise ValueError(f"LUT index: shift f_in − lut_exp = {right} exceeds {MAX_SHIFT}")
    if left:
        if left >= 63:
            big = x != 0
        else:
            lim = np.int64(1) << np.int64(63 - left)  # −2^(63−left) ≤ X < 2^(63−left) keeps X·2^left in int64
            big = (x >= lim) | (x < -lim)
        if np.any(big):
            bad = int(x[np.unravel_index(int(np.argmax(big)), x.shape)] if x.ndim else x)
            raise OverflowError(f"LUT index: X = {bad} shifted left by {left} leaves int64")
        x = x << np.int64(left)
    t = round_shift(x, right, rounding)
    i = np.clip(t, int(imin), int(imax)).astype(np.int64)
    saturations = int(np.count_nonzero(i != t))
    return i, saturations
