"""Accelerator cost model: cycles, memory traffic and energy of an artifact on a systolic array.

* :mod:`intsim.cost.accel` — accelerator description files (TOML) → :class:`AcceleratorConfig`
* :mod:`intsim.cost.energy` — energy table (Horowitz ISSCC 2014, 45 nm) and its scaling model
* :mod:`intsim.cost.systolic` — SCALE-Sim-like analytical model of a GEMM on the PE array
* :mod:`intsim.cost.model` — :func:`estimate_cost` from an artifact + engine counters; per op
  :mod:`intsim.cost.conv_cost` and :mod:`intsim.cost.vector_cost` on the shared
  :mod:`intsim.cost.context` (schemes, op classes, bit widths) and :mod:`intsim.cost.shapes`
* ``python -m intsim.cost ARTIFACT --counters FILE --accel NAME`` — the same from the shell

Pure numpy; no torch, no matplotlib (plots live in ``reports/cost_plots.py``).
"""
from intsim.cost._toml import ConfigError
from intsim.cost.accel import (
    AcceleratorConfig,
    accelerator_from_dict,
    load_accelerator,
    packaged_accelerators,
)
from intsim.cost.context import CATEGORIES, Scheme, parse_scheme
from intsim.cost.energy import EnergyModel, EnergyTable, load_energy_table
from intsim.cost.model import (
    DEFAULT_SCHEMES,
    compare_schemes,
    estimate_cost,
    load_counters,
    summary_row,
)
from intsim.cost.shapes import infer_shapes

__all__ = [
    "AcceleratorConfig", "CATEGORIES", "ConfigError", "DEFAULT_SCHEMES", "EnergyModel", "EnergyTable",
    "Scheme", "accelerator_from_dict", "compare_schemes", "estimate_cost", "infer_shapes",
    "load_accelerator", "load_counters", "load_energy_table", "packaged_accelerators", "parse_scheme", "summary_row",
]
