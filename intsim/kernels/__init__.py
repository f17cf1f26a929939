"""Numba kernels of the integer engine (NHWC, int64, ``cache=True``).

Kernels take plain numpy arrays and scalars, never artifact objects; the op
wrappers in :mod:`intsim.ops` turn artifact parameters into kernel inputs.
"""
import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def uindex(i):
    """A non-negative index ``i`` as uint64: numba then emits no negative-index wraparound
    for it, so the innermost (channel) loops vectorize (about 5× on a channel copy)."""
    return np.uint64(i)
