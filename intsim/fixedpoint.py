"""Fixed-point helpers: multiplier encoding, pooling reciprocals, integer square root.

* :func:`encode_multiplier` — a real multiplier ``m > 0`` as ``(M, n)`` with
  ``M ≈ m·2^n`` (docs/arithmetic.md §2.1).
* :func:`reciprocal_multiplier` — ``M_N = round_half_up(2^k / N)`` of the global
  pools (§6.11).
* :func:`isqrt` — exact ``⌊√v⌋`` over int64 arrays (§6.12).

All arithmetic is exact (Python ints / :class:`fractions.Fraction`, or int64
with an exact integer correction); no float result is ever trusted unchecked.
"""
from __future__ import annotations

from fractions import Fraction

import numba
import numpy as np

from intsim.rounding import MAX_SHIFT


def encode_multiplier(m: "float | int | Fraction", bits: int) -> tuple[int, int]:
    """Encode a real multiplier ``m > 0`` as ``(M, n)``, ``M·2^-n ≈ m`` (arithmetic.md §2.1).

    ``M = round_half_up(m·2^n)`` with the largest ``n ≤ 62`` that keeps
    ``M < 2^bits``; then ``2^(bits-1) ≤ M < 2^bits`` unless ``m`` is so small that
    even ``n = 62`` cannot reach ``2^(bits-1)`` (then ``n = 62`` and ``M`` is what
    it is; a zero ``M`` is refused). ``m`` is taken exactly: a float is converted
    to its exact binary value, a :class:`Fraction` is used as is.

    Raises ``ValueError`` if ``m ≤ 0``, ``bits`` is outside 1..62, or ``m`` is so
    large that no ``n ≥ 0`` fits (``round_half_up(m) ≥ 2^bits``).
    """
    if not 1 <= int(bits) <= 62:
        raise ValueError(f"multiplier bits must be in [1, 62], got {bits}")
    bits = int(bits)
    x = Fraction(m)
    if x <= 0:
        raise ValueError(f"multiplier must be > 0, got {m!r}")
    limit = 1 << bits

    def rhu(n: int) -> int:
        # round_half_up(x·2^n) = floor(x·2^n + 1/2), exactly
        v = x * (1 << n)
        return (2 * v.numerator + v.denominator) // (2 * v.denominator)

    # M(n) is non-decreasing in n, so the answer is the largest n with M(n) < 2^bits.
    # Start from the estimate of log2 and step down (at most a couple of steps).
    est = bits - 1 - (x.numerator.bit_length() - x.denominator.bit_length())
    n = min(MAX_SHIFT, est + 1)
    if n < 0:
        n = 0
    while n >= 0 and rhu(n) >= limit:
        n -= 1
    if n < 0:
        raise ValueError(f"multiplier {m!r} is too large for {bits} bits with a non-negative shift")
    # The estimate may undershoot: move up while the next shift still fits.
    while n < MAX_SHIFT and rhu(n + 1) < limit:
        n += 1
    M = rhu(n)
    if M == 0:
        raise ValueError(f"multiplier {m!r} rounds to 0 even at shift {MAX_SHIFT}")
    return M, n


def reciprocal_multiplier(n_pixels: int, shift: int) -> int:
    """``M_N = ⌊(2^(k+1) + N) / (2N)⌋`` = round_half_up(2^k / N) (arithmetic.md §6.11).

    ``n_pixels`` = N ≥ 1 (pixels averaged), ``shift`` = k in [0, 62]. The result is
    an unsigned integer of about ``k − log2 N + 1`` bits.
    """
    n_pixels, shift = int(n_pixels), int(shift)
    if n_pixels < 1:
        raise ValueError(f"pool over {n_pixels} pixels: need at least 1")
    if not 0 <= shift <= MAX_SHIFT:
        raise ValueError(f"pool shift must be in [0, {MAX_SHIFT}], got {shift}")
    return ((1 << (shift + 1)) + n_pixels) // (2 * n_pixels)


@numba.njit(cache=True)
def _isqrt_kernel(v, out):
    # Float estimate, then exact integer correction. Comparisons use division
    # (r > v // r  <=>  r*r > v for r > 0) so nothing can overflow int64 even
    # for v near 2^63.
    for i in range(v.size):
        x = v[i]
        if x < 2:
            out[i] = x
            continue
        r = np.int64(np.sqrt(np.float64(x)))
        if r < 1:
            r = np.int64(1)
        while r > x // r:  # r*r > x
            r -= 1
        while (r + 1) <= x // (r + 1):  # (r+1)^2 <= x
            r += 1
        out[i] = r


def isqrt(v) -> np.ndarray:
    """Exact ``⌊√v⌋`` element-wise for int64 ``v ≥ 0`` (arithmetic.md §6.12 ISQRT).

    Returns int64 of the same shape. Raises ``ValueError`` on a negative input.
    """
    a = np.asarray(v, dtype=np.int64)
    if a.size and int(a.min()) < 0:
        raise ValueError("isqrt of a negative value")
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty_like(flat)
    _isqrt_kernel(flat, out)
    return out.reshape(a.shape)
