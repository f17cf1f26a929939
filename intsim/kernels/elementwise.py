"""Fused element-wise kernels the engine uses for large tensors (arithmetic.md §6.7).

:func:`slope_bands` is ``leaky_relu`` / ``prelu``: ``X ≥ 0 → X``, else
``OVF_stream(R(X·M_c, k))`` with one stream event per out-of-range value, the
same arithmetic as :func:`intsim.ops.elementwise.leaky_relu` /
:func:`~intsim.ops.elementwise.prelu` (which build boolean masks and gathered
copies in numpy). Serial ``nogil`` kernel over bands of rows on the thread pool
of :mod:`intsim.kernels.parallel`. Only the ``saturate`` and ``wrap`` policies:
under ``error`` the engine keeps the numpy op, whose message names the value.
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.kernels import parallel as KP
from intsim.overflow import wrap_scalar
from intsim.rounding import round_shift_scalar

_POLICY_SATURATE = 1


@numba.njit(cache=True, nogil=True)
def slope_rows(x, mult, shift, rmode, policy, stream_bits, y0, y1, out):
    """Rows ``[y0, y1)``: ``out = x`` where ``x ≥ 0``, else ``OVF(R(x·mult[c], shift))``; returns the events."""
    W = x.shape[1]
    C = x.shape[2]
    hi = (np.int64(1) << (stream_bits - 1)) - 1
    lo = -hi - 1
    ev = 0
    if shift > 0 and (rmode == 0 or rmode == 3) and policy == _POLICY_SATURATE:
        # half_up or floor with saturate: branch-free per element (vectorizes); same arithmetic
        h = (np.int64(1) << (shift - 1)) if rmode == 0 else np.int64(0)
        for y in range(y0, y1):
            for w in range(W):
                for c in range(C):
                    v = x[y, w, c]
                    t = (min(v, 0) * mult[c] + h) >> shift  # v ≥ 0 keeps v: no product formed for it
                    s = min(max(t, lo), hi)
                    neg = v < 0
                    ev += neg & (s != t)
                    out[y, w, c] = s if neg else v
        return ev
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                v = x[y, w, c]
                if v < 0:
                    v = round_shift_scalar(v * mult[c], shift, rmode)
                    if v > hi or v < lo:
                        ev += 1
                        if policy == _POLICY_SATURATE:
                            v = hi if v > hi else lo
                        else:
                            v = wrap_scalar(v, stream_bits)
                out[y, w, c] = v
    return ev


def slope_bands(x: np.ndarray, mult: np.ndarray, shift: int, rmode: int, policy: int,
                stream_bits: int) -> tuple[np.ndarray, int]:
    """``(out int64[H, W, C], stream events)`` of the slope op on int64 ``x`` (saturate or wrap policy)."""
    xc = np.ascontiguousarray(x, dtype=np.int64)
    m = np.ascontiguousarray(mult, dtype=np.int64)
    out = np.empty_like(xc)
    evs = KP.run_bands(lambda a, b: slope_rows(xc, m, int(shift), int(rmode), int(policy), int(stream_bits),
                                               a, b, out), KP.bands(xc.shape[0], min_rows=4))
    return out, int(sum(evs))
