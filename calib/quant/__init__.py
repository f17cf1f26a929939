"""Fake-quant descriptions used by calibration and export.

* :mod:`calib.quant.two_region` — piecewise-uniform (two-region) activation
  quantizers (arithmetic.md §3.3 allocations) and the MinMax observer;
* :mod:`calib.quant.weight` — symmetric weight quantizers;
* :mod:`calib.quant.fakequant` — ``nn.Module`` wrappers (``QuantConv2d``) that
  run a float model with these quantizers (the "third model" of docs/arithmetic.md,
  and the starting point of finetuning).

Everything here is real-valued (float). Snapping to the dyadic/integer forms
the engine executes happens only in :mod:`calib.export`.
"""
from calib.quant.two_region import (  # noqa: F401
    ALLOCATIONS,
    MinMaxObserver,
    RealSegment,
    TwoRegionQuantizer,
    TwoRegionSpec,
    fake_quant_segments,
)
from calib.quant.weight import WeightQuantizer, WeightQuantSpec, minmax_weight_spec, mse_weight_spec  # noqa: F401
from calib.quant.fakequant import QuantConv2d, build_fakequant_model  # noqa: F401,E402
