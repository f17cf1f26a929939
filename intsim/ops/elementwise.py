"""Element-wise and channel ops on streams (arithmetic.md §6.3–§6.7, §6.14).

All take H×W×C streams (int64, or compact int32: :data:`intsim.numerics.STREAM_DTYPES`) with
their fracs and return ``(outputs, events)``; every stored result goes through
``OVF_stream(R(I, n))`` (§1.5), in ``numerics.stream_dtype`` (:func:`intsim.numerics.stream_dtype`),
except where the spec says there is no arithmetic (split, relu).

``add``, ``concat``, ``mul`` and ``split`` validate their operands, then run the
fused banded kernels of :mod:`intsim.kernels.elementwise` on large tensors
(:func:`intsim.ops.use_kernels`) and the numpy forms below otherwise; both
compute the same integers and events. ``leaky_relu`` / ``prelu`` have their
kernel in the engine's adapters.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from intsim import ops
from intsim.kernels import elementwise as elementwise_kernels
from intsim.kernels.encode import Encoded, EncoderTable
from intsim.numerics import Numerics
from intsim.ops import STREAM_DTYPES, as_stream, check_shift, no_events, requantize, stream_operand
from intsim.overflow import OverflowPolicy
from intsim.rounding import MAX_SHIFT


def _shift_left(x: np.ndarray, s: int) -> np.ndarray:
    # Alignment shifts are exact; the load-time envelope (§9) keeps them inside int64.
    return x << np.int64(s) if s else x


def _requantize_fast(parts: list, shape: tuple, numerics: Numerics,
                     encode: EncoderTable | None = None) -> tuple[np.ndarray | Encoded, int] | None:
    """``OVF_stream(R(I, n))`` (§1.5) of every part by :func:`intsim.kernels.elementwise.requantize_bands`:
    ``(X int64[shape], events)``; or None where the numpy form runs instead: a small tensor, a shift the
    kernel does not take, or an overflow under the ``error`` policy (the numpy form then raises, naming
    the value). ``parts``: ``(a, sa, b, sb, g, n, c0)`` with validated int64 operands. ``encode``:
    ``X`` encoded in the same pass (§3.4) and returned as :class:`Encoded` instead."""
    if (not ops.use_kernels(math.prod(shape)) or not 1 <= numerics.stream_bits <= 63
            or any(not (0 <= sa <= 63 and 0 <= sb <= 63 and 0 <= n <= MAX_SHIFT) for _, sa, _, sb, _, n, _ in parts)):
        return None
    rmode = numerics.rounding_mode  # parsed in the numpy form's order: the same errors
    policy = numerics.overflow_policy
    # 'error' counts as saturate: with no event no value was changed, so the output is the numpy one
    run = OverflowPolicy.SATURATE if policy is OverflowPolicy.ERROR else policy
    if encode is not None:
        out, ev = elementwise_kernels.requantize_encode_bands(parts, shape, int(rmode), int(run),
                                                              numerics.stream_bits, encode)
    else:
        out = np.empty(shape, dtype=numerics.stream_dtype)
        ev = elementwise_kernels.requantize_bands(parts, out, int(rmode), int(run), numerics.stream_bits)
    if ev and policy is OverflowPolicy.ERROR:
        return None
    return out, ev


def _stream_events(ev: int) -> dict:
    events = no_events()
    events["stream_overflow"] = ev
    return events


def add(xa: np.ndarray, xb: np.ndarray, *, f_a: int, f_b: int, f_out: int,
        numerics: Numerics = Numerics(), name: str = "add",
        encode: EncoderTable | None = None) -> tuple[np.ndarray | Encoded, dict]:
    """``x_a + x_b`` (arithmetic.md §6.3).

    ``F = max(f_a, f_b, f_out)``, ``I = X_a·2^(F−f_a) + X_b·2^(F−f_b)``,
    ``n = F − f_out``. Shapes must match. Returns (X[H, W, C] in ``numerics.stream_dtype``, events);
    with ``encode``,
    where the fused kernel runs, the result encoded in the same pass (:class:`Encoded`).
    """
    a = stream_operand(xa, f"{name} input 0")
    b = stream_operand(xb, f"{name} input 1")
    if a.shape != b.shape:
        raise ValueError(f"{name}: operand shapes differ: {a.shape} vs {b.shape}")
    F = max(int(f_a), int(f_b), int(f_out))
    fast = _requantize_fast([(a, F - int(f_a), b, F - int(f_b), None, F - int(f_out), 0)], a.shape, numerics, encode)
    if fast is not None:
        return fast[0], _stream_events(fast[1])
    a, b = a.astype(np.int64, copy=False), b.astype(np.int64, copy=False)
    I = _shift_left(a, F - int(f_a)) + _shift_left(b, F - int(f_b))
    x, ev = requantize(I, F - int(f_out), numerics, name)
    return x, _stream_events(ev)


def _concat_fast(xs: list, fracs: list[int], f_out: int, numerics: Numerics,
                 encode: EncoderTable | None) -> tuple[np.ndarray | Encoded, int] | None:
    """:func:`concat` by the fused kernel, each input written into its channel slice of one output
    (no per-input arrays, no copy to join them); None unless every input is a valid stream (then
    the numpy form runs and raises what it raises, in its order: per input, its checks, then its store)."""
    a = [np.asarray(x) for x in xs]
    # issubclass of the scalar type is np.issubdtype(·, np.integer), without its per-input dispatch
    if not all(x.ndim == 3 and issubclass(x.dtype.type, np.integer) and x.shape[:2] == a[0].shape[:2] for x in a):
        return None
    a = [x if x.dtype in STREAM_DTYPES else x.astype(np.int64) for x in a]
    c0 = [0, *itertools.accumulate(x.shape[2] for x in a)]  # each input's first output channel, then the total
    parts = [(x, max(int(f), f_out) - int(f), None, 0, None, max(int(f), f_out) - f_out, c0[i])
             for i, (x, f) in enumerate(zip(a, fracs))]
    return _requantize_fast(parts, (*a[0].shape[:2], c0[-1]), numerics, encode)


def concat(xs: list[np.ndarray], fracs: list[int], *, f_out: int, numerics: Numerics = Numerics(),
           name: str = "concat", encode: EncoderTable | None = None) -> tuple[np.ndarray | Encoded, dict]:
    """Channel concatenation, each input re-expressed at ``f_out`` (arithmetic.md §6.4).

    ``X_i' = OVF(R(X_i·2^(F_i − f_i), F_i − f_out))``, ``F_i = max(f_i, f_out)``.
    Returns (X[H, W, ΣC_i] in ``numerics.stream_dtype``, events); ``encode`` as for :func:`add`.
    """
    if len(xs) != len(fracs) or not xs:
        raise ValueError(f"{name}: need one frac per input and at least one input")
    fast = _concat_fast(xs, fracs, int(f_out), numerics, encode)
    if fast is not None:
        return fast[0], _stream_events(fast[1])
    parts, events = [], no_events()
    hw = as_stream(xs[0], f"{name} input 0").shape[:2]
    for i, (x, f) in enumerate(zip(xs, fracs)):
        a = as_stream(x, f"{name} input {i}")
        if a.shape[:2] != hw:
            raise ValueError(f"{name}: input {i} is {a.shape[:2]}, input 0 is {hw} (H×W must match)")
        F = max(int(f), int(f_out))
        y, ev = requantize(_shift_left(a, F - int(f)), F - int(f_out), numerics, f"{name} input {i}")
        events["stream_overflow"] += ev
        parts.append(y)
    return np.concatenate(parts, axis=2), events


def split(x: np.ndarray, sizes: list[int], *, name: str = "split") -> tuple[list[np.ndarray], dict]:
    """Channel slices of the given sizes; fracs unchanged, no arithmetic (arithmetic.md §6.5).

    Each slice is a contiguous copy: a view would keep the whole input alive for as long as any
    slice lives (the engine's memory estimate, :mod:`intsim.footprint`, counts tensors apart).
    """
    a = as_stream(x, name)
    sizes = [int(s) for s in sizes]
    if any(s < 1 for s in sizes) or sum(sizes) != a.shape[2]:
        raise ValueError(f"{name}: sizes {sizes} must be positive and sum to the {a.shape[2]} input channels")
    if ops.use_kernels(a.size):
        return elementwise_kernels.split_bands(a, sizes), no_events()
    cuts = np.cumsum(sizes)[:-1]
    return [np.ascontiguousarray(p) for p in np.split(a, cuts, axis=2)], no_events()


def relu(x: np.ndarray, *, name: str = "relu") -> tuple[np.ndarray, dict]:
    """``max(X, 0)``, frac unchanged (arithmetic.md §6.6); a compact int32 stream stays int32."""
    return np.maximum(stream_operand(x, name), 0), no_events()


def clamp(x: np.ndarray, *, lo: int, hi: int, name: str = "clamp") -> tuple[np.ndarray, dict]:
    """``min(max(X, lo), hi)`` with stream-integer bounds at the input frac; frac unchanged (arithmetic.md §6.16).

    Only moves values towards ``[lo, hi]`` (within the stream range): no rounding, no events.
    """
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"{name}: lo {lo} > hi {hi}")
    return np.clip(as_stream(x, name), lo, hi), no_events()


def _slope(X: np.ndarray, M: np.ndarray, k: int, numerics: Numerics, name: str) -> tuple[np.ndarray, dict]:
    # Negative inputs only are rescaled: X >= 0 -> X, else OVF(R(X·M, k)) (§6.7).
    k = check_shift(k, f"{name} shift")
    neg = X < 0
    y, ev = requantize(X[neg] * np.broadcast_to(M, X.shape)[neg], k, numerics, name)
    out = X.astype(numerics.stream_dtype)  # a copy: the kernel form's output dtype
    out[neg] = y
    events = no_events()
    events["stream_overflow"] = ev
    return out, events


def leaky_relu(x: np.ndarray, *, mult: int, shift: int, numerics: Numerics = Numerics(),
               name: str = "leaky_relu") -> tuple[np.ndarray, dict]:
    """Leaky ReLU with slope ``α = mult·2^-shift`` (arithmetic.md §6.7); frac unchanged."""
    X = as_stream(x, name)
    return _slope(X, np.int64(int(mult)), shift, numerics, name)


def prelu(x: np.ndarray, mult: np.ndarray, *, shift: int, numerics: Numerics = Numerics(),
          name: str = "prelu") -> tuple[np.ndarray, dict]:
    """PReLU with per-channel slopes ``α_c = mult[c]·2^-shift`` (arithmetic.md §6.7); frac unchanged."""
    X = as_stream(x, name)
    M = np.asarray(mult, dtype=np.int64).reshape(-1)
    if M.shape != (X.shape[2],):
        raise ValueError(f"{name}: need {X.shape[2]} slopes, got {M.shape[0]}")
    return _slope(X, M, shift, numerics, name)


def mul(x: np.ndarray, g: np.ndarray, *, f_x: int, f_g: int, f_out: int, numerics: Numerics = Numerics(),
        name: str = "mul", encode: EncoderTable | None = None) -> tuple[np.ndarray | Encoded, dict]:
    """Channel-wise product ``x[h,w,c]·g[c]`` with g 1×1×C (arithmetic.md §6.14).

    ``I = X·G``, ``n = f_x + f_g − f_out`` (≥ 0). Returns (X[H, W, C] in ``numerics.stream_dtype``,
    events); ``encode``
    as for :func:`add`.
    """
    X = stream_operand(x, f"{name} input 0")
    G = as_stream(g, f"{name} input 1")
    if G.shape != (1, 1, X.shape[2]):
        raise ValueError(f"{name}: gate must be 1×1×{X.shape[2]}, got {G.shape}")
    n = check_shift(int(f_x) + int(f_g) - int(f_out), f"{name} (n = f_x + f_g − f_out, §6.14)")
    fast = _requantize_fast([(X, 0, None, 0, G.reshape(-1), n, 0)], X.shape, numerics, encode)
    if fast is not None:
        return fast[0], _stream_events(fast[1])
    X = X.astype(np.int64, copy=False)
    y, ev = requantize(X * G, n, numerics, name)
    return y, _stream_events(ev)
