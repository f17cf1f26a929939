"""Sigmoid look-up table (docs/arithmetic.md §6.13): the ``sigmoid`` case of :mod:`intsim.lut`.

Kept so that existing callers keep their import; the table builder and the index
rule live in :mod:`intsim.lut` (one definition for every LUT function).
"""
from __future__ import annotations

import numpy as np

from intsim.lut import MAX_LUT_ENTRIES, MAX_OUT_FRAC, build_lut, lut_index

__all__ = ["MAX_LUT_ENTRIES", "MAX_OUT_FRAC", "build_sigmoid_lut", "lut_index"]


def build_sigmoid_lut(imin: int, imax: int, lut_exp: int, out_frac: int) -> np.ndarray:
    """The §6.13 table: ``lut[j] = round_half_up(σ((imin+j)·2^-lut_exp)·2^out_frac)``, int32."""
    return build_lut("sigmoid", imin, imax, lut_exp, out_frac)
