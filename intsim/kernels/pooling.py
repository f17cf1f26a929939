"""Per-channel reductions of the global pools, one memory pass each (arithmetic.md §6.11–§6.12).

:func:`sum_rows` gives ``Σ_{h,w} X`` per channel and ``max |X|`` (the sums of
``mean_pool`` and the value its envelope check reads); :func:`deviation_rows`
gives ``Σ d²`` per channel and ``max |d|`` with ``d = R(X − μ_c, p)`` (the pass
of ``std_pool`` after its mean). The op wrappers in :mod:`intsim.ops.pooling`
keep everything else (multipliers, rounding of the sums, the stream policy,
the envelope checks and their messages).

Equal to the numpy forms bit for bit on every int64 input: the arithmetic of
:mod:`intsim.wrapping` wraps modulo 2^64 as numpy's does (and a
wrapping sum does not depend on the order, so per-band partial sums add up to
the one-pass sum); ``|v|`` of −2^63 is −2^63 in both (``np.abs`` and numba's
``abs`` negate modulo 2^64), and the maxima start from −2^63 as numpy's does.
Serial ``nogil`` kernels over bands of rows (memory-bound:
:func:`~intsim.kernels.parallel.stream_bands`) on the thread pool of
:mod:`intsim.kernels.parallel`.
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.kernels import parallel as KP
from intsim.kernels import uindex as _u
from intsim import wrapping
from intsim.rounding import round_shift_scalar

_INT64_MIN = np.int64(np.iinfo(np.int64).min)


@numba.njit(cache=True, nogil=True)
def sum_rows(x, y0, y1):
    """Rows ``[y0, y1)`` of ``x`` int64[H, W, C]: ``(Σ x per channel int64[C], max |x|)``."""
    W = x.shape[1]
    C = x.shape[2]
    s = np.zeros(C, dtype=np.int64)
    peak = _INT64_MIN
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                v = x[y, w, _u(c)]
                s[_u(c)] = wrapping.add(s[_u(c)], v)
                peak = max(peak, abs(v))
    return s, peak


@numba.njit(cache=True, nogil=True)
def deviation_rows(x, mu, p, rmode, y0, y1):
    """Rows ``[y0, y1)``: ``(Σ d² per channel int64[C], max |d|)``, ``d = R(x[y, w, c] − mu[c], p)`` (§2)."""
    W = x.shape[1]
    C = x.shape[2]
    s = np.zeros(C, dtype=np.int64)
    peak = _INT64_MIN
    for y in range(y0, y1):
        for w in range(W):
            for c in range(C):
                d = round_shift_scalar(wrapping.sub(x[y, w, _u(c)], mu[_u(c)]), p, rmode)
                s[_u(c)] = wrapping.add(s[_u(c)], wrapping.mul(d, d))
                peak = max(peak, abs(d))
    return s, peak


def _combine(results: list) -> tuple[np.ndarray, int]:
    # int64 array sums wrap like the one-pass sum; the peak is the largest band peak
    if len(results) == 1:  # one band (every small tensor): its own fresh array, without np.sum's dispatch
        return results[0][0], int(results[0][1])
    return np.sum([s for s, _ in results], axis=0, dtype=np.int64), int(max(pk for _, pk in results))


def channel_sums(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``(Σ_{h,w} x int64[C], max |x|)`` of ``x`` int64[H, W, C] with H, W, C ≥ 1."""
    return _combine(KP.run_bands(lambda lo, hi: sum_rows(x, lo, hi), KP.stream_bands(x.shape[0], x[0].size)))


def deviation_sums(x: np.ndarray, mu: np.ndarray, p: int, rmode: int) -> tuple[np.ndarray, int]:
    """``(Σ_{h,w} d² int64[C], max |d|)`` with ``d = R(x − mu[c], p)`` for ``x`` int64[H, W, C] (H, W, C ≥ 1),
    ``mu`` int64[C], ``p`` in [0, 62], ``rmode`` a :class:`~intsim.rounding.RoundingMode`."""
    return _combine(KP.run_bands(lambda lo, hi: deviation_rows(x, mu, p, rmode, lo, hi),
                                 KP.stream_bands(x.shape[0], x[0].size)))
