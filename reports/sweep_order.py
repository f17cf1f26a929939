"""The order in which a sweep computes its cells, so the results page fills its most informative rows first.

A sweep of the whole protocol (sweeps/protocol_all_checkpoints.toml) is days of CPU; it is
stopped and resumed many times, and the page (docs/results.md) is read while it runs. So the
cells that answer the protocol's main question come first: every model × scale at the low bit
widths with the new default, the paper's method and the simplest baseline, on the small sets.

Tiers (lowest first; :func:`priority`):

====  ===================================================================================
tier  cells
====  ===================================================================================
0     bits in :data:`HEADLINE_BITS` (W4A4, W6A6), methods in :data:`HEADLINE_METHODS`
      (``recon`` — the default —, ``oaq`` with released codes, ``minmax``), datasets Set5
      and Set14
1     the same bits and datasets, every other method (and ``oaq`` budgeted)
2     the same bits on B100(-68), every method
3     the same bits on Urban100 (and any other dataset), every method
4–7   tiers 0–3 again for the other bit widths (W8A8, W3A3 …), lowest bits first
====  ===================================================================================

Within a tier: bits (W4A4 before W6A6), then method in :data:`METHOD_RANK`, then the
allocation (``released`` first), then the order of the SWEEP.toml (models as listed —
list the cheap ones first —, then datasets), so each configuration's Set5 and Set14 cells
are adjacent and share its calibration.
"""
from __future__ import annotations

import re

from reports.sweep_cell import Cell, Config

HEADLINE_BITS = ("W4A4", "W6A6")
HEADLINE_METHODS = ("recon", "oaq", "minmax")
HEADLINE_DATASETS = ("Set5", "Set14")
METHOD_RANK = ("recon", "oaq", "minmax", "ptq4sr", "2dquant", "percentile", "omse", "dual_region", "plain_ft",
               "sa_ft")
ALLOCATION_RANK = ("released", None, "paper", "budgeted")


def _bits_rank(bits: str) -> tuple[int, int]:
    if bits in HEADLINE_BITS:
        return (0, HEADLINE_BITS.index(bits))
    m = re.match(r"^W(\d+)A(\d+)$", bits)
    return (1, int(m.group(1)) * 100 + int(m.group(2)) if m else 10**6)


def priority(cell: Cell) -> tuple:
    """Sort key of ``cell`` (smaller first); see the module docstring for the tiers."""
    c = cell.config
    if cell.dataset in HEADLINE_DATASETS:
        sub = 0 if c.method in HEADLINE_METHODS and c.allocation in (None, "released") else 1
    else:
        sub = 2 if cell.dataset == "B100" else 3
    bits = _bits_rank(c.bits)
    method = METHOD_RANK.index(c.method) if c.method in METHOD_RANK else len(METHOD_RANK)
    alloc = ALLOCATION_RANK.index(c.allocation) if c.allocation in ALLOCATION_RANK else len(ALLOCATION_RANK)
    return (4 * bits[0] + sub, bits, method, alloc)


def order_cells(cells) -> list[Cell]:
    """``cells`` in computing order: :func:`priority`, ties kept in the given (SWEEP.toml) order."""
    return sorted(cells, key=priority)


def order_configs(cells) -> list[Config]:
    """The configurations of ``cells``, each at the place of its first cell in :func:`order_cells`."""
    return list(dict.fromkeys(c.config for c in order_cells(cells)))
