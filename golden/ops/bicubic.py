"""``upsample_bicubic`` (docs/arithmetic.md §6.18), real form in float64.

The taps are derived here from the spec's words with exact rationals (Keys cubic
convolution, A = −3/4, cumulative round-half-up to ``tap_bits`` bits); nothing is
shared with intsim. ``v = Σ (Wy/2^T)·(Wx/2^T)·x`` is exact in float64 (integers
times powers of two below 2^53 by the load-time envelope), stored once by (1.5).
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

from golden.numerics import F64, GoldenError, pow2
from golden.ops.context import OpContext


def _keys(x: Fraction) -> Fraction:
    """Keys' cubic convolution kernel k(x), A = −3/4 (torch's bicubic)."""
    A = Fraction(-3, 4)
    x = abs(x)
    if x <= 1:
        return (A + 2) * x ** 3 - (A + 3) * x ** 2 + 1
    if x < 2:
        return A * x ** 3 - 5 * A * x ** 2 + 8 * A * x - 4 * A
    return Fraction(0)


@functools.lru_cache(maxsize=16)  # golden calls it once per band; the taps depend only on the sizes
def taps(size: int, r: int, T: int) -> tuple[list[list[int]], list[list[int]]]:
    """Per output index: the four input indices and the fixed-point taps (sum 2^T)."""
    idx, wts = [], []
    for y in range(size * r):
        src = Fraction(2 * y + 1 - r, 2 * r)  # (y + ½)/r − ½, not clamped (cubic)
        i = math.floor(src)
        t = src - i
        real = [_keys(t + 1), _keys(t), _keys(1 - t), _keys(2 - t)]
        cum, prev, row = Fraction(0), 0, []
        for w in real:
            cum += w
            c = math.floor(cum * 2 ** T + Fraction(1, 2))
            row.append(c - prev)
            prev = c
        if prev != 2 ** T:
            raise GoldenError(f"bicubic taps of phase {t} do not sum to 2^{T}")
        idx.append([min(max(i - 1 + k, 0), size - 1) for k in range(4)])
        wts.append(row)
    return idx, wts


def upsample_bicubic(ctx: OpContext, ins):
    (X,) = ins
    f = ctx.frac(ctx.op.inputs[0])
    out = ctx.op.outputs[0]
    if ctx.frac(out) != f:
        raise GoldenError(f"{ctx.where()}: output frac must equal the input frac {f}")
    r, T = int(ctx.attr("factor")), int(ctx.attr("tap_bits"))
    if not 1 <= r <= 64 or not 1 <= T <= 16:
        raise GoldenError(f"{ctx.where()}: factor {r} / tap_bits {T} out of range")
    y0, H = ctx.windows[0] if ctx.windows is not None else (0, X.shape[0])
    a, b = ctx.band if ctx.band is not None else (0, H * r)
    W = X.shape[1]
    iy, wy = (torch.tensor(v)[a:b] for v in taps(H, r, T))  # the band's output rows …
    iy = iy - y0  # … read from its input window
    ix, wx = (torch.tensor(v) for v in taps(W, r, T))
    rows = sum(X[iy[:, k]] * wy[:, k].to(F64).view(-1, 1, 1) for k in range(4))  # Σ_k Wy·X
    S = sum(rows[:, ix[:, k]] * wx[:, k].to(F64).view(1, -1, 1) for k in range(4))  # Σ Wy·Wx·X
    v = S * pow2(-2 * T)  # (Σ wy·wx·x)·2^f with w = W/2^T
    return [ctx.store(v, out, 2 * T)]
