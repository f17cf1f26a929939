"""Analytical model of a systolic PE array running one GEMM (SCALE-Sim-like).

A conv is a GEMM ``ofmap[M×N] = ifmap[M×K] · filter[K×N]`` with ``M = Ho·Wo`` output
pixels, ``K = kh·kw·Ci/groups`` the window, ``N = Co/groups`` filters (im2col view).
Following SCALE-Sim (Samajdar et al., ISPASS 2020), each dataflow maps two GEMM
dimensions onto the ``R × C`` array and streams the third in time:

======== ========== ========== ========
dataflow S_r (rows) S_c (cols) T (time)
======== ========== ========== ========
os       M          N          K
ws       K          N          M
is       K          M          N
======== ========== ========== ========

The array is folded ``ceil(S_r/R) · ceil(S_c/C)`` times and folds do not overlap:
each fold streams ``T`` operands, fills and drains the pipeline:

* os: ``T + R + C − 2`` cycles per fold (operands skewed in from two edges, then the
  stationary outputs drain);
* ws / is: ``T + 2R + C − 2`` (``R`` cycles to load the stationary operand, then the
  streamed operand's skew and the partial sums' drain).

These are exactly SCALE-Sim v3's per-fold demand-matrix lengths (its reported
"Total Cycles" is the index of the last cycle, one less than the count here);
``tests/intsim/test_cost_scalesim.py`` checks the agreement layer by layer.

SRAM accesses count the operand words that enter the array from its edges
(as SCALE-Sim's read/write request counts): os reads each ifmap row once per column
fold and each filter column once per row fold; ws/is keep one operand stationary
(read once) and write (and re-read) partial sums once per row fold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Mapping:
    dataflow: str
    rows: int
    cols: int
    M: int
    K: int
    N: int
    Sr: int
    Sc: int
    T: int
    row_folds: int
    col_folds: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    def to_json(self) -> dict:
        return {"dataflow": self.dataflow, "M": self.M, "K": self.K, "N": self.N, "Sr": self.Sr, "Sc": self.Sc,
                "T": self.T, "row_folds": self.row_folds, "col_folds": self.col_folds}


def map_gemm(M: int, K: int, N: int, rows: int, cols: int, dataflow: str) -> Mapping:
    """Spatio-temporal mapping of an ``M×K · K×N`` GEMM on an ``rows × cols`` array."""
    if min(M, K, N) < 1 or min(rows, cols) < 1:
        raise ValueError(f"GEMM and array dimensions must be ≥ 1, got M={M} K={K} N={N} array {rows}x{cols}")
    if dataflow == "os":
        Sr, Sc, T = M, N, K
    elif dataflow == "ws":
        Sr, Sc, T = K, N, M
    elif dataflow == "is":
        Sr, Sc, T = K, M, N
    else:
        raise ValueError(f"unknown dataflow {dataflow!r} (os, ws, is)")
    return Mapping(dataflow, rows, cols, M, K, N, Sr, Sc, T, math.ceil(Sr / rows), math.ceil(Sc / cols))


def fold_cycles(m: Mapping, passes: int = 1) -> int:
    """Cycles of one fold; ``passes`` > 1 when each product needs several multiplier passes."""
    t = m.T * passes
    if m.dataflow == "os":
        return t + m.rows + m.cols - 2
    return t + 2 * m.rows + m.cols - 2


def fold_overhead(m: Mapping) -> int:
    """Fill and drain cycles of one fold (everything but the ``T`` streamed operands)."""
    return fold_cycles(m) - m.T


def compute_cycles(m: Mapping, passes: int = 1, tiles: int = 1) -> int:
    """Cycles to run the whole GEMM (folds run back to back, no overlap).

    ``tiles`` > 1 (ws/is): the streamed dimension ``T`` is cut into ``tiles`` pieces so that
    the partial sums of one column fold fit the ofmap buffer; every piece of every fold
    pays the fill/drain again. ``tiles = 1`` is SCALE-Sim's schedule."""
    return m.folds * (m.T * passes + tiles * fold_overhead(m))


def mapping_efficiency(m: Mapping) -> float:
    """Mean fraction of PEs holding a mapped element over the folds (SCALE-Sim's definition)."""
    used_r = m.Sr / (m.row_folds * m.rows)
    used_c = m.Sc / (m.col_folds * m.cols)
    return used_r * used_c


def sram_accesses(m: Mapping) -> dict:
    """Operand words crossing the array edge (elements, not bits).

    ``ifmap_reads``, ``filter_reads``: operand reads; ``ofmap_writes``: final outputs;
    ``psum_writes``/``psum_reads``: partial-sum traffic between row folds (ws/is only;
    os keeps the sums in the PEs).
    """
    M, K, N = m.M, m.K, m.N
    if m.dataflow == "os":
        return {"ifmap_reads": m.col_folds * M * K, "filter_reads": m.row_folds * K * N,
                "ofmap_writes": M * N, "psum_writes": 0, "psum_reads": 0}
    extra = (m.row_folds - 1) * M * N
    if m.dataflow == "ws":
        return {"ifmap_reads": m.col_folds * K * M, "filter_reads": K * N, "ofmap_writes": M * N,
                "psum_writes": extra, "psum_reads": extra}
    return {"ifmap_reads": K * M, "filter_reads": m.col_folds * K * N, "ofmap_writes": M * N,
            "psum_writes": extra, "psum_reads": extra}


def first_fold_elements(m: Mapping) -> tuple[int, int]:
    """(ifmap, filter) elements the first fold needs before it can start (the pipeline fill)."""
    r, c = min(m.Sr, m.rows), min(m.Sc, m.cols)
    if m.dataflow == "os":
        return r * m.T, c * m.T
    if m.dataflow == "ws":
        return r * m.T, r * c
    return r * c, r * m.T
