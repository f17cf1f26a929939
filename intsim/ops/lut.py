"""The ``lut`` op: look-up-table activations (arithmetic.md §6.17; sigmoid is ``fn = "sigmoid"``, §6.13).

The table is built at export (:func:`intsim.lut.build_lut`); the engine only
computes the index and looks up, whatever the function. Artifacts that still hold the legacy
``sigmoid`` op are read as this op with ``fn = "sigmoid"`` (:func:`intsim.validate_schema.legacy_sigmoid_as_lut`).
"""
from __future__ import annotations

import numpy as np

from intsim.numerics import Numerics
from intsim.lut import lut_index
from intsim.ops import as_stream, no_events
from intsim.overflow import apply_overflow


def lut(x: np.ndarray, table: np.ndarray, *, lut_exp: int, imin: int, imax: int, f_in: int,
        numerics: Numerics = Numerics(), name: str = "lut") -> tuple[np.ndarray, dict]:
    """``X_o = lut[i − imin]``, ``i = clamp(R(X·2^max(0,k−f), max(0,f−k)), imin, imax)`` (§6.13, §6.17).

    x int64[H, W, C] at frac ``f_in``; table int[imax − imin + 1] (output stream
    integers at the output frac); ``lut_exp`` = k_lut (input step 2^-k_lut). Index
    clamps are saturations. The looked-up value is stored through the stream
    policy (§1.5) like every stream output; a valid table never triggers it.
    """
    X = as_stream(x, name)
    t = np.asarray(table, dtype=np.int64).reshape(-1)
    if t.shape[0] != int(imax) - int(imin) + 1:
        raise ValueError(f"{name}: lut has {t.shape[0]} entries, imax − imin + 1 = {int(imax) - int(imin) + 1}")
    i, sats = lut_index(X, int(f_in), int(lut_exp), int(imin), int(imax), numerics.rounding)
    y, ev = apply_overflow(t[i - int(imin)], numerics.stream_bits, numerics.overflow_policy, name)
    events = no_events()
    events["stream_overflow"] = ev
    events["saturations"] = sats
    return y, events
