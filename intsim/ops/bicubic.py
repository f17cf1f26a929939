"""``upsample_bicubic``: bicubic ×r upsampling with fixed-point taps and one rounding (arithmetic.md §6.18).

torch's bicubic (``align_corners=False``, Keys cubic convolution with ``A = −3/4``)
at an integer factor ``r`` reads, for output row ``y``, the four input rows
``clamp(i − 1 + k, 0, H − 1)``, ``k = 0..3``, with ``i = ⌊(2y + 1 − r) / 2r⌋`` and
phase ``t = a / 2r``, ``a = 2y + 1 − r − 2r·i ∈ [0, 2r)``. The real weights
``w_k(t)`` are rationals with denominator ``32r³``; the op uses them as
``T``-bit fixed-point taps by *cumulative* round-half-up,
``W_k = C_k − C_{k−1}``, ``C_k = round_half_up(2^T·Σ_{j≤k} w_j)``, ``C_{−1} = 0``,
so the four taps sum to exactly ``2^T`` (a constant image stays constant) and each
is within one unit of ``w_k·2^T`` (exact when ``32r³`` divides ``2^T``).
Then ``I = Σ_k Σ_l Wy_k·Wx_l·X`` and ``X_o = OVF(R(I, 2T))``: one rounding.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from intsim.numerics import Numerics
from intsim.ops import as_stream, check_shift, no_events, requantize

MAX_TAP_BITS = 16
MAX_FACTOR = 64  # the tap table has 2r phases: a bound keeps loading an artifact cheap (§6.18)
KEYS_A = Fraction(-3, 4)  # torch's cubic convolution coefficient


def keys_weights(a: int, r: int) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """The exact real weights ``w_0..w_3`` of the taps ``i−1..i+2`` at phase ``t = a/2r``."""
    t = Fraction(a, 2 * r)
    A = KEYS_A

    def near(x: Fraction) -> Fraction:  # |x| ≤ 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x: Fraction) -> Fraction:  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return far(t + 1), near(t), near(1 - t), far(2 - t)


@lru_cache(maxsize=256)
def phase_taps(r: int, tap_bits: int) -> np.ndarray:
    """int64[2r, 4]: the fixed-point taps ``W_k`` of each phase ``a`` (cumulative round-half-up, module doc)."""
    out = np.empty((2 * r, 4), dtype=np.int64)
    scale = 1 << tap_bits
    for a in range(2 * r):
        c_prev, acc = 0, Fraction(0)
        for k, w in enumerate(keys_weights(a, r)):
            acc += w
            c = (2 * acc.numerator * scale + acc.denominator) // (2 * acc.denominator)  # ⌊acc·2^T + ½⌋
            out[a, k] = c - c_prev
            c_prev = c
    return out


def bicubic_taps(size: int, r: int, tap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index of an axis of ``size`` inputs: ``(idx int64[n, 4], W int64[n, 4])`` (§6.18)."""
    r, size = int(r), int(size)
    y = np.arange(size * r, dtype=np.int64)
    t = 2 * y + 1 - r
    i = t // (2 * r)  # floor, also for the negative t of the first rows
    a = t - 2 * r * i
    idx = np.clip(i[:, None] - 1 + np.arange(4, dtype=np.int64)[None, :], 0, size - 1)
    return idx, phase_taps(r, int(tap_bits))[a]


def tap_l1_max(r: int, tap_bits: int) -> int:
    """``max_a Σ_k |W_k|``: with it, ``|I| ≤ tap_l1_max² · max|X|`` (the §9 envelope)."""
    return int(np.abs(phase_taps(int(r), int(tap_bits))).sum(axis=1).max())


def _check(r, tap_bits, name: str) -> tuple[int, int]:
    r, T = int(r), int(tap_bits)
    if not 1 <= r <= MAX_FACTOR:
        raise ValueError(f"{name}: factor must be in [1, {MAX_FACTOR}], got {r}")
    if not 1 <= T <= MAX_TAP_BITS:
        raise ValueError(f"{name}: tap_bits must be in [1, {MAX_TAP_BITS}], got {T}")
    return r, T


def bicubic_rows(win: np.ndarray, win_y0: int, in_h: int, a: int, b: int, *, factor: int, tap_bits: int,
                 numerics: Numerics, name: str) -> tuple[np.ndarray, dict]:
    """Output rows ``[a, b)`` from input rows ``win`` (starting at input row ``win_y0`` of ``in_h``).

    The window must hold every input row those outputs read (the tiled executor's row map).
    """
    r, T = _check(factor, tap_bits, name)
    X = as_stream(win, name)
    rows, wy = bicubic_taps(in_h, r, T)
    rows, wy = rows[a:b] - int(win_y0), wy[a:b]
    cols, wx = bicubic_taps(X.shape[1], r, T)
    # horizontal pass per needed input row, exact in int64 (the envelope bounds |I| < 2^53)
    Rx = np.zeros((X.shape[0], cols.shape[0], X.shape[2]), dtype=np.int64)
    for ll in range(4):
        Rx += wx[None, :, ll, None] * X[:, cols[:, ll]]
    I = np.zeros((rows.shape[0], cols.shape[0], X.shape[2]), dtype=np.int64)
    for k in range(4):
        I += wy[:, k, None, None] * Rx[rows[:, k]]
    y, ev = requantize(I, check_shift(2 * T, f"{name} shift 2T"), numerics, name)
    events = no_events()
    events["stream_overflow"] = ev
    return y, events


def upsample_bicubic(x: np.ndarray, *, factor: int, tap_bits: int, numerics: Numerics = Numerics(),
                     name: str = "upsample_bicubic") -> tuple[np.ndarray, dict]:
    """Bicubic ×r upsampling, align_corners = false (§6.18): int64[H·r, W·r, C] and events."""
    X = as_stream(x, name)
    r, _ = _check(factor, tap_bits, name)
    return bicubic_rows(X, 0, X.shape[0], 0, X.shape[0] * r, factor=factor, tap_bits=tap_bits,
                        numerics=numerics, name=name)
