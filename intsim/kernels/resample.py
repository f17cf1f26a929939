"""Data-movement kernels for resampling ops (arithmetic.md §6.8): no arithmetic, exact by construction.

:func:`pixel_shuffle_bands` is the same mapping as
:func:`intsim.ops.resample.pixel_shuffle` (torch semantics)
``out[h·r+i, w·r+j, c] = in[h, w, c·r² + i·r + j]``, written as a serial
``nogil`` kernel over bands of input rows on the thread pool of
:mod:`intsim.kernels.parallel` (numpy's transpose-copy of the same view is
several times slower on large tensors).
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.kernels import parallel as KP


@numba.njit(cache=True, nogil=True)
def pixel_shuffle_rows(x, r, h0, h1, out):
    """``out[h·r+i, w·r+j, c] = x[h, w, c·r² + i·r + j]`` for input rows ``[h0, h1)``."""
    W = x.shape[1]
    c_out = out.shape[2]
    rr = r * r
    for h in range(h0, h1):
        for i in range(r):
            oy = h * r + i
            for w in range(W):
                for j in range(r):
                    ox = w * r + j
                    src = i * r + j
                    for c in range(c_out):
                        out[oy, ox, c] = x[h, w, c * rr + src]


def pixel_shuffle_bands(x: np.ndarray, r: int) -> np.ndarray:
    """Pixel shuffle of an int64 H×W×C array (C divisible by r²), banded over the thread pool."""
    H, W, C = x.shape
    out = np.empty((H * r, W * r, C // (r * r)), dtype=x.dtype)
    xc = np.ascontiguousarray(x)
    KP.run_bands(lambda lo, hi: pixel_shuffle_rows(xc, r, lo, hi, out), KP.bands(H, min_rows=4))
    return out
