"""Global pooling per channel: ``mean_pool`` and ``std_pool`` (arithmetic.md §6.11–§6.12).

Both use the fixed-point reciprocal ``M_N = round_half_up(2^k/N)`` of
:func:`intsim.fixedpoint.reciprocal_multiplier`. Their intermediates grow with
the image size, so the spec's run-time envelope checks are enforced here and a
too-large image is refused with a ``ValueError`` (not a silent wrong answer).

Their full-size passes (``Σ X`` and ``max |X|``; ``d``, ``Σ d²`` and ``max |d|``)
run as one fused banded pass each (:mod:`intsim.kernels.pooling`) on large
tensors (:func:`intsim.ops.use_kernels`), as numpy otherwise; the same integers.
"""
from __future__ import annotations

import numpy as np

from intsim import ops
from intsim.fixedpoint import isqrt, reciprocal_multiplier
from intsim.kernels import pooling as pooling_kernels
from intsim.numerics import Numerics
from intsim.ops import check_shift, no_events, requantize, stream_operand
from intsim.rounding import RoundingMode, round_shift

_EXACT = 1 << 53  # float64 exactness limit shared with the golden real form (§9)


def _sums(X: np.ndarray) -> tuple[np.ndarray, int]:
    """``(Σ_{h,w} X int64[C], max |X|)``, 0 for an empty ``X``; int64 sums wrap as numpy's do."""
    if X.size and ops.use_kernels(X.size):
        return pooling_kernels.channel_sums(X)
    return X.sum(axis=(0, 1), dtype=np.int64), int(np.abs(X).max()) if X.size else 0


def _deviations(X: np.ndarray, mu: np.ndarray, p: int, rounding: str) -> tuple[np.ndarray, int]:
    """``(Σ_{h,w} d² int64[C], max |d|)`` with ``d = R(X − μ, p)`` (§6.12)."""
    if X.size and ops.use_kernels(X.size):
        return pooling_kernels.deviation_sums(X, mu.reshape(-1), p, int(RoundingMode.parse(rounding)))
    d = round_shift(X - mu, p, rounding)
    return (d * d).sum(axis=(0, 1), dtype=np.int64), int(np.abs(d).max())


def _mean(X: np.ndarray, k: int, numerics: Numerics, name: str) -> tuple[np.ndarray, int]:
    H, W, C = X.shape
    N = H * W
    M = reciprocal_multiplier(N, k)
    sums, peak = _sums(X)
    if peak * ((1 << k) + N) >= _EXACT:
        raise ValueError(
            f"{name}: image too large for the pooling envelope: max|X|·(2^k + N) = {peak}·(2^{k} + {N}) "
            f"≥ 2^53 (arithmetic.md §6.11); use a smaller image or an artifact with a smaller pool shift"
        )
    # Σ X·M_N: the check above bounds |Σ X|·M_N below 2^53, so int64 is exact.
    total = sums * np.int64(M)
    return requantize(total.reshape(1, 1, C), k, numerics, name)


def mean_pool(x: np.ndarray, *, shift: int, numerics: Numerics = Numerics(),
              name: str = "mean_pool") -> tuple[np.ndarray, dict]:
    """Global mean per channel → 1×1×C (arithmetic.md §6.11); frac unchanged.

    ``X_o[c] = OVF(R(Σ_{h,w} X·M_N, k))`` with ``N = H·W`` and ``k = shift``.
    Raises ``ValueError`` if ``max|X|·(2^k + N) ≥ 2^53``.
    """
    X = stream_operand(x, name)  # int32 kept: the sums and deviations widen each element
    k = check_shift(shift, f"{name} shift")
    if X.shape[0] * X.shape[1] == 0:
        raise ValueError(f"{name}: empty input {X.shape}")
    y, ev = _mean(X, k, numerics, name)
    events = no_events()
    events["stream_overflow"] = ev
    return y, events


def std_pool(x: np.ndarray, *, shift: int, pre_shift: int, numerics: Numerics = Numerics(),
             name: str = "std_pool") -> tuple[np.ndarray, dict]:
    """Global population standard deviation per channel → 1×1×C (arithmetic.md §6.12).

    ``μ = mean_pool(X)`` (§6.11, its stream policy included); ``d = R(X − μ, p)``
    with ``p = pre_shift``; ``V = R(Σ d²·M_N, k)``; ``X_o = OVF(ISQRT(V)·2^p)``.
    Raises ``ValueError`` if the mean's check fails or ``max d²·(2^k + N) ≥ 2^53``.
    Stream events of μ and of the output are both counted.
    """
    X = stream_operand(x, name)  # int32 kept: the sums and deviations widen each element
    k = check_shift(shift, f"{name} shift")
    p = check_shift(pre_shift, f"{name} pre_shift")
    H, W, C = X.shape
    N = H * W
    if N == 0:
        raise ValueError(f"{name}: empty input {X.shape}")
    mu, ev_mu = _mean(X, k, numerics, f"{name} (mean)")
    squares, peak = _deviations(X, mu, p, numerics.rounding)
    if peak * peak * ((1 << k) + N) >= _EXACT:
        raise ValueError(
            f"{name}: image too large for the pooling envelope: max d²·(2^k + N) = {peak}²·(2^{k} + {N}) "
            f"≥ 2^53 (arithmetic.md §6.12); use a smaller image or an artifact with a larger pre_shift"
        )
    M = reciprocal_multiplier(N, k)
    V = round_shift(squares * np.int64(M), k, numerics.rounding_mode)
    s = isqrt(V) << np.int64(p)
    y, ev = requantize(s.reshape(1, 1, C), 0, numerics, name)
    events = no_events()
    events["stream_overflow"] = ev_mu + ev
    return y, events
