"""Resampling ops on streams (arithmetic.md §6.8–§6.10); fracs are unchanged."""
from __future__ import annotations

import numpy as np

from intsim.numerics import Numerics
from intsim.ops import as_stream, check_shift, no_events, requantize


def _factor(r, name: str) -> int:
    r = int(r)
    if r < 1:
        raise ValueError(f"{name}: factor must be >= 1, got {r}")
    return r


def pixel_shuffle(x: np.ndarray, factor: int, *, name: str = "pixel_shuffle") -> tuple[np.ndarray, dict]:
    """``out[h·r+i, w·r+j, c] = in[h, w, c·r² + i·r + j]`` (torch semantics; arithmetic.md §6.8)."""
    X = as_stream(x, name)
    r = _factor(factor, name)
    H, W, C = X.shape
    if C % (r * r):
        raise ValueError(f"{name}: {C} channels not divisible by factor² = {r * r}")
    c = C // (r * r)
    # (H, W, c, i, j) -> (H, i, W, j, c)
    out = X.reshape(H, W, c, r, r).transpose(0, 3, 1, 4, 2).reshape(H * r, W * r, c)
    return np.ascontiguousarray(out), no_events()


def upsample_nearest(x: np.ndarray, factor: int, *, name: str = "upsample_nearest") -> tuple[np.ndarray, dict]:
    """``out[y, x, c] = in[⌊y/r⌋, ⌊x/r⌋, c]`` (arithmetic.md §6.9)."""
    X = as_stream(x, name)
    r = _factor(factor, name)
    return np.repeat(np.repeat(X, r, axis=0), r, axis=1), no_events()


def bilinear_taps(size: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index (``size·r`` of them): ``(i0, i1, w0, w1)`` of arithmetic.md §6.10.

    ``t = 2y + 1 − r``; ``t < 0`` → ``i0 = 0, a = 0``; else ``i0 = ⌊t/2r⌋``,
    ``a = t − 2r·i0``; ``i1 = min(i0 + 1, size − 1)``; weights ``(2r − a, a)``
    (they sum to 2r; the op divides by (2r)² once for both axes).
    """
    y = np.arange(size * r, dtype=np.int64)
    t = 2 * y + 1 - r
    i0 = np.where(t < 0, 0, t // (2 * r))
    a = np.where(t < 0, 0, t - 2 * r * i0)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, 2 * r - a, a


def upsample_bilinear(x: np.ndarray, *, factor: int, mult: int, shift: int, numerics: Numerics = Numerics(),
                      name: str = "upsample_bilinear") -> tuple[np.ndarray, dict]:
    """Bilinear ×r upsampling, align_corners = false (arithmetic.md §6.10).

    ``I = Σ wy·wx·X`` over the 2×2 neighbours (weights sum to (2r)²), then
    ``X_o = OVF(R(I·mult, shift))`` with ``mult·2^-shift`` the op's reciprocal of
    (2r)². Returns (int64[H·r, W·r, C], events).
    """
    X = as_stream(x, name)
    r = _factor(factor, name)
    return upsample_bilinear_rows(X, 0, X.shape[0], 0, X.shape[0] * r, factor=r, mult=mult, shift=shift,
                                  numerics=numerics, name=name)


def upsample_bilinear_rows(win: np.ndarray, win_y0: int, in_h: int, a: int, b: int, *, factor: int, mult: int,
                           shift: int, numerics: Numerics, name: str) -> tuple[np.ndarray, dict]:
    """Output rows ``[a, b)`` of :func:`upsample_bilinear` (§6.10) from ``win``: input rows
    ``win_y0 …`` of an input ``in_h`` rows high (every row the taps of ``[a, b)`` read), all columns.
    The whole op is ``a = 0, b = in_h·r`` on the whole input; tiling calls it per band."""
    r = _factor(factor, name)
    k = check_shift(shift, f"{name} shift")
    X = win.astype(np.int64, copy=False)
    y0, y1, wy0, wy1 = (v[a:b] for v in bilinear_taps(in_h, r))
    x0, x1, wx0, wx1 = bilinear_taps(X.shape[1], r)
    rows0, rows1 = X[y0 - win_y0], X[y1 - win_y0]  # (b − a, W, C)
    wy0, wy1 = wy0[:, None, None], wy1[:, None, None]
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
    I = (wy0 * (wx0 * rows0[:, x0] + wx1 * rows0[:, x1])
         + wy1 * (wx0 * rows1[:, x0] + wx1 * rows1[:, x1]))
    y, ev = requantize(I * np.int64(int(mult)), k, numerics, name)
    events = no_events()
    events["stream_overflow"] = ev
    return y, events
