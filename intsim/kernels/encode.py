"""Fused encoder kernel: stream → flat codes, saturations and histogram in one pass (arithmetic.md §3.4).

The same arithmetic as :func:`intsim.encoder.encode` (the numpy reference),
element by element:

    s = min{ s : X ≤ U_s }  (S−1 if none)          (3.4a, a linear scan: S ≤ 3)
    t = R((X − C_s)·E_s, k_s)                       (3.4b, round_shift_scalar)
    q = clamp(t, qmin_s, qmax_s)                    (3.4c, q ≠ t is one saturation)
    c = base_s + q − qmin_s

Serial and ``nogil`` over a band of rows; :func:`encode_bands` runs the bands
on the thread pool of :mod:`intsim.kernels.parallel` and sums the per-band
histograms and saturation counts (integer sums: identical to one pass).
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.kernels import parallel as KP
from intsim.rounding import round_shift_scalar


@numba.njit(cache=True, inline="always")
def _u(i):
    # unsigned indices: no negative-index wraparound code, so the loops vectorize
    return np.uint64(i)


@numba.njit(cache=True, nogil=True)
def encode_rows(x, thresholds, center, mult, shift, qmin, qmax, base, rmode, y0, y1, codes, hist):
    """Encode rows ``[y0, y1)`` of ``x`` int64[H, W, C] (C-contiguous) into ``codes``; add to ``hist``;
    return the saturations. ``s`` is the number of thresholds below ``X`` (thresholds strictly
    increasing), which is ``min{s : X ≤ U_s}`` (``S−1`` if none) of (3.4a)."""
    n = x.shape[1] * x.shape[2]
    xf = x.reshape(x.size)
    cf = codes.reshape(codes.size)
    nth = thresholds.shape[0]
    sats = 0
    for y in range(y0, y1):
        b0 = y * n
        for i in range(n):
            v = xf[_u(b0 + i)]
            s = 0
            for k in range(nth):
                s += v > thresholds[k]
            t = round_shift_scalar((v - center[s]) * mult[s], shift[s], rmode)
            lo = qmin[s]
            q = min(max(t, lo), qmax[s])
            sats += q != t
            cf[_u(b0 + i)] = base[s] + q - lo
    for i in range(y0 * n, y1 * n):  # histogram in its own pass (no dependency in the loop above)
        hist[cf[_u(i)]] += 1
    return sats


def encode_bands(x: np.ndarray, thresholds, center, mult, shift, qmin, qmax, base, num_codes: int,
                 rmode: int) -> tuple[np.ndarray, int, np.ndarray]:
    """``(codes int64, saturations, histogram int64[num_codes])`` of ``x`` int64[H, W, C].

    The parameter arrays are int64 per segment (thresholds: S−1 of them, strictly
    increasing), as :func:`intsim.encoder.encode` reads them from the codebook.
    """
    H = x.shape[0]
    codes = np.empty(x.shape, dtype=np.int64)
    args = [np.ascontiguousarray(a, dtype=np.int64) for a in (thresholds, center, mult, shift, qmin, qmax, base)]

    def band(lo, hi):
        hist = np.zeros(num_codes, dtype=np.int64)
        sats = encode_rows(x, *args, int(rmode), lo, hi, codes, hist)
        return sats, hist

    parts = KP.run_bands(band, KP.bands(H, min_rows=4))
    hist = np.zeros(num_codes, dtype=np.int64)
    sats = 0
    for s, h in parts:
        sats += int(s)
        hist += h
    return codes, sats, hist
