"""Image conversions: ``image_in`` (uint8 → stream) and ``image_out`` (stream → uint8).

arithmetic.md §6.1–§6.2. Per-channel dyadic affine maps ``a_c = m_c·2^-e``,
``b_c = o_c·2^-e`` fold normalisation (÷255) and mean shifts. ``image_out``
runs as one fused banded pass (:mod:`intsim.kernels.image`) on large tensors
(:func:`intsim.ops.use_kernels`), as numpy otherwise; the same integers.
"""
from __future__ import annotations

import numpy as np

from intsim import ops
from intsim.kernels import image as image_kernels
from intsim.numerics import Numerics
from intsim.ops import as_stream, check_shift, no_events, requantize
from intsim.rounding import round_shift


def _per_channel(v, c: int, what: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.int64).reshape(-1)
    if a.shape != (c,):
        raise ValueError(f"{what}: need {c} per-channel values, got shape {np.shape(v)}")
    return a


def image_in(image: np.ndarray, mult: np.ndarray, offset: np.ndarray, *, exp: int, f_out: int,
             numerics: Numerics = Numerics(), name: str = "image_in") -> tuple[np.ndarray, dict]:
    """uint8 image → stream (arithmetic.md §6.1).

    image uint8[H, W, C]; mult, offset int64[C] (m_c, o_c, units 2^-exp);
    ``f_out`` the output frac. ``I = P·m_c + o_c``, ``n = exp − f_out`` (≥ 0),
    ``X = OVF_stream(R(I, n))``. Returns (int64[H, W, C], events).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.dtype != np.uint8:
        raise ValueError(f"{name}: image must be uint8 H×W×C, got {img.dtype} {img.shape}")
    c = img.shape[2]
    m = _per_channel(mult, c, f"{name} mult")
    o = _per_channel(offset, c, f"{name} offset")
    n = check_shift(int(exp) - int(f_out), f"{name} (n = exp − f_out, §6.1)")
    x, ev = requantize(img.astype(np.int64) * m + o, n, numerics, name)
    events = no_events()
    events["stream_overflow"] = ev
    return x, events


def image_out(x: np.ndarray, mult: np.ndarray, offset: np.ndarray, *, exp: int, f_in: int,
              numerics: Numerics = Numerics(), name: str = "image_out") -> tuple[np.ndarray, dict]:
    """Stream → uint8 image (arithmetic.md §6.2).

    x int64[H, W, C] at frac ``f_in``; mult, offset int64[C] (units 2^-exp).
    ``I = X·m_c + o_c·2^f_in``, ``n = f_in + exp``, ``P = clamp(R(I, n), 0, 255)``;
    each clamp that changes the value is one saturation. Returns (uint8[H, W, C], events).
    """
    X = as_stream(x, name)
    c = X.shape[2]
    m = _per_channel(mult, c, f"{name} mult")
    o = _per_channel(offset, c, f"{name} offset")
    f_in = int(f_in)
    if f_in < 0:
        raise ValueError(f"{name}: negative input frac {f_in}")
    n = check_shift(f_in + int(exp), f"{name} (n = f_in + exp, §6.2)")
    b = o << np.int64(f_in)
    events = no_events()
    if ops.use_kernels(X.size):
        p, events["saturations"] = image_kernels.image_out_bands(X, m, b, n, int(numerics.rounding_mode))
        return p, events
    t = round_shift(X * m + b, n, numerics.rounding_mode)
    p = np.clip(t, 0, 255)
    events["saturations"] = int(np.count_nonzero(p != t))
    return p.astype(np.uint8), events
