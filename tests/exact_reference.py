"""Exact rational reference for rounding (docs/arithmetic.md §2), shared by the tests.

Written from the spec with ``fractions.Fraction`` and no project code, so it
stays an independent oracle for every integer and float implementation.
"""
from __future__ import annotations

import math
from fractions import Fraction

HALF = Fraction(1, 2)


def round_rational(t, mode) -> int:
    """RND(t) of §2 for an exact rational ``t``; ``mode`` is a name or a RoundingMode."""
    name = getattr(mode, "spec_name", mode)
    t = Fraction(t)
    if name == "half_up":
        return math.floor(t + HALF)
    if name == "half_away":
        mag = math.floor(abs(t) + HALF)
        return -mag if t < 0 else mag
    if name == "half_even":
        fl = math.floor(t)
        frac = t - fl
        return fl + 1 if frac > HALF or (frac == HALF and fl % 2 == 1) else fl
    if name == "floor":
        return math.floor(t)
    if name == "half_zero":
        mag = math.ceil(abs(t) - HALF)
        return -mag if t < 0 else mag
    raise ValueError(f"unknown rounding mode {mode!r}")


def ref_round_shift(i: int, n: int, mode) -> int:
    """R(i, n) of §2: ``i·2^-n`` rounded by ``mode``."""
    return round_rational(Fraction(i, 1 << n), mode)
