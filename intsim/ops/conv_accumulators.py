"""A conv's accumulators (arithmetic.md §5.3, §5.4) on bare arrays: their layout per
realization and their worst cases, shared by the op (:mod:`intsim.ops.conv`) and its path
policy (:mod:`intsim.ops.conv_paths`). The engine takes the same facts from
:mod:`intsim.bounds` (the load-time analysis).
"""
from __future__ import annotations


import numpy as np

from intsim.artifact_model import Codebook
from intsim.codebook_range import codebook_max_abs_grid


def accumulator_layout(codebook: Codebook, realization: str) -> list[tuple[str, int | None, int]]:
    """``(kind, segment, a_j)`` per accumulator (§5.3; ``a_j`` of §5.4).

    kind "P" (Σ w·q, a = max|q| of the segment), "Q" (Σ w, a = 1) or "A" (Σ w·G,
    a = max|G| of the codebook, segment None).
    """
    if realization == "split":
        out: list[tuple[str, int | None, int]] = []
        for s_i, s in enumerate(codebook.segments):
            out.append(("P", s_i, max(abs(s.qmin), abs(s.qmax))))
            if s.origin != 0:
                out.append(("Q", s_i, 1))
        return out
    if realization == "grid":
        return [("A", None, codebook_max_abs_grid(codebook))]
    raise ValueError(f"unknown realization {realization!r} (expected 'split' or 'grid')")


def conv_can_overflow(weight: np.ndarray, codebook: Codebook, realization: str, acc_bits: int) -> bool:
    """True iff some ``W_j = max_co Σ_{taps,ci} |w[co,…]|·a_j > 2^(acc_bits−1) − 1`` (§5.4).

    ``weight`` int [Co, kh, kw, Ci/g] (OHWI). Exact Python-int comparison; equal to
    :func:`intsim.bounds.conv_can_overflow` for the op holding these arrays.
    """
    w = np.asarray(weight).astype(np.int64)
    # |w| ≤ 2^15 (int8/int16 weights) and the element count is an array size: no int64 wrap.
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    limit = (1 << (int(acc_bits) - 1)) - 1
    return any(l1 * a > limit for _, _, a in accumulator_layout(codebook, realization))


def accumulator_names(codebook: Codebook, realization: str) -> list[str]:
    """Names of the accumulators in layout order, as :mod:`intsim.bounds` names them ('P0', 'Q2', 'A')."""
    return [kind if seg is None else f"{kind}{seg}" for kind, seg, _ in accumulator_layout(codebook, realization)]


def accumulator_worst(weight: np.ndarray, codebook: Codebook, realization: str) -> dict[str, int]:
    """``{name: W_j}`` with ``W_j = max_co Σ_{taps,ci} |w[co,…]|·a_j`` (§5.4), exact Python ints.

    The same numbers as ``AccumulatorBound.worst_max`` of
    :func:`intsim.bounds.conv_accumulators` for the op holding these arrays.
    """
    w = np.asarray(weight).astype(np.int64)
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    layout = accumulator_layout(codebook, realization)
    return {n: l1 * a for n, (_, _, a) in zip(accumulator_names(codebook, realization), layout)}
