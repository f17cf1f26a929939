"""Data-movement kernels for resampling ops (arithmetic.md §6.8): no arithmetic, exact by construction.

:func:`pixel_shuffle_bands` is the same mapping as
:func:`intsim.ops.resample.pixel_shuffle` (torch semantics)
``out[h·r+i, w·r+j, c] = in[h, w, c·r² + i·r + j]``, written as a serial
``nogil`` kernel over bands of input rows on the thread pool of
:mod:`intsim.kernels.parallel` (numpy's transpose-copy of the same view is
several times slower on large tensors). :class:`ShuffleEncodeSink` runs it with its encode on
rows a conv hands over.
"""
from __future__ import annotations

import threading

import numba
import numpy as np

from intsim.kernels import encode as encode_kernels
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


class ShuffleEncodeSink:
    """Pixel shuffle by ``r`` (§6.8) fused with its encode (§3.4), over rows of its input as a
    producer (a conv band) hands them over: ``sink(y0, y1, rows)`` takes input rows ``[y0, y1)``
    (int64 or int32, C-contiguous, width and channels of ``shape``) from any thread, each row once,
    and writes the codes of output rows ``[y0·r, y1·r)``; neither the input nor the shuffled stream
    is ever stored whole (EDSR's ×4 tail: 1 GiB of int32 stream at a 512² input, and as much again
    shuffled). :meth:`result` gives the :class:`~intsim.kernels.encode.Encoded` codes
    (``code_dtype``) with the summed saturations and histogram."""

    def __init__(self, shape: tuple, r: int, table: encode_kernels.EncoderTable, code_dtype):
        H, W, C = shape
        self.row_shape, self.r = (W, C), int(r)
        self.table = table
        self.codes = np.empty((H * r, W * r, C // (r * r)), dtype=code_dtype)
        self.parts: list = []  # per call: (saturations, histogram)
        self.rows_done = 0  # rows taken so far: the producer handed every row over when it equals H
        self.lock = threading.Lock()

    def __call__(self, y0: int, y1: int, rows: np.ndarray) -> None:
        if (rows.shape != (y1 - y0, *self.row_shape) or rows.dtype not in (np.int32, np.int64)
                or not rows.flags.c_contiguous or not 0 <= y0 <= y1 <= self.codes.shape[0] // self.r):
            # the kernels do not check bounds: a wrong shape must never reach them
            raise ValueError(f"pixel shuffle sink: rows {rows.shape} {rows.dtype} for rows [{y0}, {y1}) of width "
                             f"and channels {self.row_shape}")
        n, r = y1 - y0, self.r
        shuffled = np.empty((n * r, self.codes.shape[1], self.codes.shape[2]), dtype=rows.dtype)
        pixel_shuffle_rows(rows, r, 0, n, shuffled)
        hist = np.zeros(self.table.num_codes, dtype=np.int64)
        sats = encode_kernels.encode_rows(shuffled, *self.table.arrays, self.table.rmode, 0, n * r,
                                          self.codes[y0 * r:y1 * r], hist)
        with self.lock:
            self.parts.append((int(sats), hist))
            self.rows_done += n

    def result(self) -> encode_kernels.Encoded:
        hist = np.zeros(self.table.num_codes, dtype=np.int64)
        for _, h in self.parts:
            hist += h
        return encode_kernels.Encoded(self.codes, sum(s for s, _ in self.parts), hist)
