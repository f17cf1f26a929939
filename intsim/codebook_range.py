"""The value range of a codebook's codes (docs/arithmetic.md §3.1, §5.3), exact Python ints.

Facts of the codebook alone, read by the load-time bounds (:mod:`intsim.bounds`) and by the
conv op's path choice (:mod:`intsim.ops.conv`) without either importing the other.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: no import of the data model at run time
    from intsim.artifact_model import Codebook


def segment_grid_extremes(seg) -> tuple[int, int]:
    """``(G(s, qmin), G(s, qmax))`` of a segment, exact Python ints (§3.1)."""
    return seg.origin + seg.step * seg.qmin, seg.origin + seg.step * seg.qmax


def codebook_max_abs_grid(cb: Codebook) -> int:
    """``max |G(s,q)|`` over the codebook (§3.1), grid units ``u``; G is monotone in q."""
    return max(max(abs(g) for g in segment_grid_extremes(s)) for s in cb.segments)


def codebook_max_abs_index(cb: Codebook) -> int:
    """``max |q|`` over the codebook's segments (§5.4 ``a_j`` of ``P_s``)."""
    return max(max(abs(s.qmin), abs(s.qmax)) for s in cb.segments)


def codes_value_bound(cb: Codebook, realization: str) -> int:
    """What one code contributes as a multiplicand of a weight (§5.3):
    ``max |q|`` for split (the narrow multiplier ``w·q``), ``max |G|`` for grid (``w·G``)."""
    return codebook_max_abs_grid(cb) if realization == "grid" else codebook_max_abs_index(cb)
