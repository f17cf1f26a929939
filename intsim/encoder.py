"""Encoder: wide stream → flat codes of a two-region codebook (docs/arithmetic.md §3.4).

Per element ``X`` (stream integer, frac ``f_in``):

    s = min{ s : X ≤ U_s }  (S−1 if none)                       (3.4a)
    t = R((X − C_s)·E_s, k_s)                                    (3.4b)
    q = clamp(t, qmin_s, qmax_s)   (q ≠ t is one saturation)     (3.4c)
    c = base_s + q − qmin_s

The product ``(X − C_s)·E_s`` is formed in int64; the load-time envelope (§9)
keeps it below 2^53.
"""
from __future__ import annotations

import numpy as np

from intsim.artifact import Codebook
from intsim.rounding import RoundingMode, round_shift


def encode(X: np.ndarray, codebook: Codebook, rounding: "RoundingMode | str") -> tuple[np.ndarray, int, np.ndarray]:
    """Encode stream integers ``X`` (int64, any shape) to flat codes (arithmetic.md §3.4).

    Returns ``(codes, saturations, histogram)``: ``codes`` of ``X``'s shape in
    ``[0, N)``, dtype ``codebook.code_dtype`` (int16, int32 if N > 32767); ``saturations`` the number of clamps (3.4c); ``histogram``
    int64[N], the count of each flat code.
    """
    mode = RoundingMode.parse(rounding)
    x = np.asarray(X, dtype=np.int64)
    S = len(codebook.segments)
    if len(codebook.thresholds) != S - 1 or len(codebook.encoder) != S:
        raise ValueError(
            f"codebook has {S} segments but {len(codebook.thresholds)} thresholds and "
            f"{len(codebook.encoder)} encoder stages (need {S - 1} and {S})"
        )
    thresholds = np.asarray(codebook.thresholds, dtype=np.int64)
    # side="left" gives the first s with U_s >= X, i.e. min{s : X <= U_s}; S-1 if none (3.4a).
    seg = np.searchsorted(thresholds, x, side="left").astype(np.int64)
    center = np.array([e.center for e in codebook.encoder], dtype=np.int64)[seg]
    mult = np.array([e.mult for e in codebook.encoder], dtype=np.int64)[seg]
    shift = np.array([e.shift for e in codebook.encoder], dtype=np.int64)[seg]
    t = round_shift((x - center) * mult, shift, mode)  # (3.4b): one rounding
    qmin = np.array([s.qmin for s in codebook.segments], dtype=np.int64)[seg]
    qmax = np.array([s.qmax for s in codebook.segments], dtype=np.int64)[seg]
    q = np.minimum(np.maximum(t, qmin), qmax)  # (3.4c)
    saturations = int(np.count_nonzero(q != t))
    base = np.array(codebook.bases, dtype=np.int64)[seg]
    codes = (base + (q - qmin)).astype(codebook.code_dtype)
    histogram = np.bincount(codes.reshape(-1), minlength=codebook.num_codes).astype(np.int64)
    return codes, saturations, histogram
