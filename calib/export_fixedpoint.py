"""The fixed-point choices export makes everywhere (widths, margins) and exact rounding of
real values to integers (Python ``Fraction``s; no float rounding in any multiplier).
"""
from __future__ import annotations

import math
from fractions import Fraction

#: Encoder multipliers E have (at most) this many bits: E in [2^19, 2^20] by default (§3.4).
ENC_MULT_BITS = 20
#: Cap on weight-scale / image mantissa bits (float32-like precision is plenty).
MAX_MANT_BITS = 24
#: Mantissa bits the split unit choice tries to leave for the weight scale.
TARGET_MANT_BITS = 10
#: Range of the split realization's smallest-step precision T (bits).
MIN_STEP_BITS, MAX_STEP_BITS = 8, 16
#: Grid unit mantissa bits.
GRID_UNIT_M_BITS = 8
#: Every integer intermediate stays below 2^(53 − ENVELOPE_MARGIN_BITS) (§9).
ENVELOPE_MARGIN_BITS = 1
ENVELOPE_LIMIT = 1 << (53 - ENVELOPE_MARGIN_BITS)


class ExportError(ValueError):
    """The model cannot be snapped within the configured numerics; the message names the layer."""


def round_half_away(x: float | Fraction) -> int:
    """Round half away from zero (symmetric, so symmetric codebooks stay symmetric)."""
    if x >= 0:
        return int(math.floor(x + Fraction(1, 2))) if isinstance(x, Fraction) else int(math.floor(x + 0.5))
    return -round_half_away(-x)


def round_half_up(x: Fraction) -> int:
    """Round half up (toward +inf) of an exact rational."""
    return math.floor(x + Fraction(1, 2))


def ceil_log2(x: Fraction) -> int:
    """Smallest c with 2^c ≥ x (x > 0), exact."""
    c = x.numerator.bit_length() - x.denominator.bit_length()
    while Fraction(2) ** c < x:
        c += 1
    while Fraction(2) ** (c - 1) >= x:
        c -= 1
    return c


def pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def stream_frac(absmax: float, stream_bits: int) -> int:
    """Frac of a stream with calibrated ``max|x|`` (module doc; max|x| floored at 2^-8)."""
    m = max(float(absmax), 2.0 ** -8)
    return int(stream_bits - 2 - math.ceil(math.log2(m * 1.25)))


def rel_err(snapped: float, real: float) -> float:
    return abs(snapped - real) / abs(real) if real != 0 else abs(snapped)
