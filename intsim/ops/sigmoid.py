"""``sigmoid`` by look-up table (arithmetic.md §6.13).

The table is built at export (:func:`intsim.sigmoid_lut.build_sigmoid_lut`);
the engine only computes the index and looks up.
"""
from __future__ import annotations

import numpy as np

from intsim.artifact import Numerics
from intsim.ops import as_stream, no_events
from intsim.overflow import apply_overflow
from intsim.sigmoid_lut import lut_index


def sigmoid(x: np.ndarray, lut: np.ndarray, *, lut_exp: int, imin: int, imax: int, f_in: int,
            numerics: Numerics = Numerics(), name: str = "sigmoid") -> tuple[np.ndarray, dict]:
    """``X_o = lut[i − imin]``, ``i = clamp(R(X·2^max(0,k−f), max(0,f−k)), imin, imax)`` (§6.13).

    x int64[H, W, C] at frac ``f_in``; lut int[imax − imin + 1] (output stream
    integers at the output frac); ``lut_exp`` = k_lut (input step 2^-k_lut). Index
    clamps are saturations. The looked-up value is stored through the stream
    policy (§1.5) like every stream output; a valid table never triggers it.
    """
    X = as_stream(x, name)
    table = np.asarray(lut, dtype=np.int64).reshape(-1)
    if table.shape[0] != int(imax) - int(imin) + 1:
        raise ValueError(f"{name}: lut has {table.shape[0]} entries, imax − imin + 1 = {int(imax) - int(imin) + 1}")
    i, sats = lut_index(X, int(f_in), int(lut_exp), int(imin), int(imax), numerics.rounding)
    y, ev = apply_overflow(table[i - int(imin)], numerics.stream_bits, numerics.overflow, name)
    events = no_events()
    events["stream_overflow"] = ev
    events["saturations"] = sats
    return y, events
