"""Stream → uint8 image in one memory pass (arithmetic.md §6.2).

:func:`image_out_rows` computes, per element, ``I = X·m_c + b_c`` with
``b_c = o_c·2^f_i`` (formed by the op wrapper in numpy, as
:func:`intsim.ops.image.image_out` forms it), ``t = R(I, n)`` (§2) and
``P = clamp(t, 0, 255)``, counting each clamp that changes the value as a
saturation; the numpy op forms
``I``, ``t``, the clamp and a boolean mask as separate full-size arrays. The
int64 arithmetic of :mod:`intsim.wrapping` wraps as numpy's does, so the
two agree on every input. Serial ``nogil`` kernel over bands of rows
(memory-bound: :func:`~intsim.kernels.parallel.stream_bands`) on the thread
pool of :mod:`intsim.kernels.parallel`.
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.kernels import parallel as KP
from intsim.kernels import uindex as _u
from intsim import wrapping
from intsim.rounding import round_shift_scalar


@numba.njit(cache=True, nogil=True)
def image_out_rows(x, m, b, n, rmode, y0, y1, out):
    """Rows ``[y0, y1)``: ``out[y, w, c] = clamp(R(x·m[c] + b[c], n), 0, 255)`` (uint8); returns the saturations.

    ``x`` int64[H, W, C], ``m``, ``b`` int64[C], ``n`` in [0, 62], ``rmode`` a
    :class:`~intsim.rounding.RoundingMode`.
    """
    W = x.shape[1]
    C = x.shape[2]
    sats = 0
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                t = round_shift_scalar(wrapping.add(wrapping.mul(x[y, w, _u(c)], m[_u(c)]), b[_u(c)]), n, rmode)
                p = min(max(t, 0), 255)
                sats += p != t
                out[y, w, _u(c)] = p
    return sats


def image_out_bands(x: np.ndarray, m: np.ndarray, b: np.ndarray, n: int, rmode: int) -> tuple[np.ndarray, int]:
    """``(uint8[H, W, C], saturations)`` of :func:`image_out_rows` over bands of rows of ``x`` int64[H, W, C]."""
    out = np.empty(x.shape, dtype=np.uint8)
    sats = KP.run_bands(lambda lo, hi: image_out_rows(x, m, b, n, rmode, lo, hi, out),
                        KP.stream_bands(x.shape[0], x[0].size))
    return out, int(sum(sats))
