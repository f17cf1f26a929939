"""Export rules of the stream ops added to the spec by issue 21 (docs/arithmetic.md §6.16–§6.18).

Each function turns the real-valued attributes that :mod:`calib.graph` recorded for
one op into the integers of its artifact op; :func:`calib.export.export_artifact`
calls them. Kept apart from :mod:`calib.export` so each op's export rule has one
definition next to the others of its kind.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from intsim.artifact import Numerics


class ClampBoundsError(ValueError):
    """The clamp interval contains no value of the stream grid."""


def clamp_bounds(lo: float | None, hi: float | None, frac: int, numerics: Numerics) -> tuple[int, int]:
    """Stream-integer bounds ``(L, H)`` of a clamp at frac ``frac`` (§6.16).

    ``L = ⌈lo·2^f⌉`` and ``H = ⌊hi·2^f⌋``, snapped *inwards* so the output never
    leaves the real interval ``[lo, hi]`` (exact when the bounds lie on the grid,
    as ReLU6's 0 and 6 do for every ``f ≥ −1``); a missing bound, or one beyond the
    stream range, is the stream range's end. Raises :class:`ClampBoundsError` when
    no grid value lies in ``[lo, hi]``.
    """
    smin, smax = -(1 << (numerics.stream_bits - 1)), (1 << (numerics.stream_bits - 1)) - 1
    scale = Fraction(2) ** int(frac)
    L = smin if lo is None else max(smin, min(smax, math.ceil(Fraction(lo) * scale)))
    H = smax if hi is None else min(smax, max(smin, math.floor(Fraction(hi) * scale)))
    if L > H:
        raise ClampBoundsError(f"the clamp interval [{lo}, {hi}] holds no value of the stream grid 2^-{frac}")
    return int(L), int(H)


#: LUT activations: at most 2^LUT_BITS entries over the input range ±R (§6.17).
LUT_BITS = 13
#: Bounded functions (sigmoid, tanh) saturate: their range R is capped at 2^SATURATING_RANGE_LOG2.
SATURATING_RANGE_LOG2 = 4


def export_lut(fn: str, absmax_in: float, f_i: int, numerics: Numerics) -> dict:
    """The §6.17 table of ``fn`` for an input stream at frac ``f_i`` with calibrated ``max|x| = absmax_in``.

    Range ``[−R, R)``, ``R = 2^r``, ``r = ⌈log2 max(|x|, 1)⌉`` (at most 2^4 for sigmoid and tanh,
    which are flat beyond: σ(16) = 1 − 1.1·10^-7); input step ``2^-k_lut`` with ``2^LUT_BITS`` entries
    and ``k_lut ≤ f_i`` (finer than the input grid is useless); output frac
    ``f_o = min(30 − b, stream_bits − 2 − b)`` with ``2^b ≥ max|φ|`` over the range, so every entry
    fits int32 and the stream with two guard bits. Inputs beyond the range saturate the index (§7).
    """
    from intsim.lut import build_lut, lut_function

    f = lut_function(fn)
    a = max(float(absmax_in), 1.0)
    r = int(math.ceil(math.log2(a)))
    if f.bound(float("inf")) <= 1.0:
        r = min(r, SATURATING_RANGE_LOG2)
    k_lut = min(LUT_BITS - 1 - r, int(f_i))
    n = r + k_lut
    imin, imax = (-(1 << n), (1 << n) - 1) if n >= 0 else (-1, 0)
    b = max(0, int(math.ceil(math.log2(f.bound(2.0 ** r)))))
    f_o = min(30 - b, numerics.stream_bits - 2 - b)
    lut = build_lut(fn, int(imin), int(imax), int(k_lut), int(f_o))
    return {"lut_exp": int(k_lut), "imin": int(imin), "imax": int(imax), "lut": lut.astype(np.int32),
            "f_o": int(f_o),
            "meta": {"fn": fn, "input_absmax": float(absmax_in), "range": [-(2.0 ** r), 2.0 ** r],
                     "step": 2.0 ** -k_lut, "entries": int(imax - imin + 1), "out_frac": int(f_o)}}


def bicubic_tap_bits(factor: int, numerics: Numerics) -> int:
    """Tap precision ``T`` of an ``upsample_bicubic`` (§6.18): the largest ``T ≤ 16`` whose worst case
    ``(max Σ|W|)²·2^(stream_bits−1)`` stays below 2^52 (§9 with one bit of margin). The taps are exact
    (``32r³ | 2^T``) for r = 2 from T = 8 and r = 4 from T = 11; at the default 24-bit stream T = 14."""
    from intsim.ops.bicubic import MAX_TAP_BITS, tap_l1_max

    best = 0
    for T in range(1, MAX_TAP_BITS + 1):
        if tap_l1_max(factor, T) ** 2 << (numerics.stream_bits - 1) < 1 << 52:
            best = T
    if best == 0:
        raise ValueError(f"bicubic ×{factor}: no tap precision keeps the §9 envelope at stream_bits "
                         f"{numerics.stream_bits}")
    return best
