"""Export rules of the stream ops added to the spec by issue 21 (docs/arithmetic.md §6.16–§6.18).

Each function turns the real-valued attributes that :mod:`calib.graph` recorded for
one op into the integers of its artifact op; :func:`calib.export.export_artifact`
calls them. Kept apart from :mod:`calib.export` so each op's export rule has one
definition next to the others of its kind.
"""
from __future__ import annotations

import math
from fractions import Fraction

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
