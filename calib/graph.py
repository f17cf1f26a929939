"""Dataflow capture (torch.fx) and lowering to artifact-level ops.

:func:`capture` symbolically traces a float model and lowers the fx graph to a
list of :class:`LNode` — the ops of an intsim artifact (docs/artifact.md)
*before* quantization: ``image_in``, ``conv2d``, ``conv_transpose2d``, ``relu``,
``leaky_relu``, ``prelu``, ``add``, ``concat``, ``split``, ``pixel_shuffle``,
``upsample_nearest``, ``upsample_bilinear``, ``mean_pool``, ``std_pool``,
``lut`` (:data:`intsim.lut.LUT_FUNCTIONS`), ``clamp``, ``mul``, ``image_out``. Export (calib/export.py) later inserts one
``encode`` op in front of every conv (activation quantizers sit at conv inputs
only; every other op works on the wide stream) and snaps everything to integers.

Modules: :mod:`calib.tracing` (the fx tracer, error places), :mod:`calib.captured`
(:class:`LNode`, :class:`CapturedGraph`), :mod:`calib.lowering` (one method per node kind and op
family), :mod:`calib.lowering_reductions` (sizes, slices, mean / std patterns) and
:mod:`calib.lowering_values` (the symbolic values and recognised torch callables).

Lowering rules (docs/arithmetic.md):

* the model input (a float image in [0, rgb_range]) becomes ``image_in`` with
  the per-channel affine ``v = a·P + b`` of the uint8 pixel P
  (``a = rgb_range/255``); a ``MeanShift`` applied to it is folded into that
  affine (arithmetic.md §6.1); 1-channel (Y) models take a 1-channel image;
* a ``MeanShift`` applied to the value the model returns is folded into
  ``image_out``: pixel = (W·x + bias)·255/rgb_range (§6.2);
* ``nn.Conv2d`` → conv2d, ``nn.ConvTranspose2d`` → conv_transpose2d (§5.5); a
  module called several times (CARN-M's shared blocks) gives one op per call
  (same weights, own activation quantizer each);
* ``nn.ReLU6`` / ``nn.Hardtanh`` / ``F.relu6`` / ``F.hardtanh`` / ``torch.clamp`` / ``torch.clip`` /
  ``x.clamp(min, max)`` with constant bounds → clamp (bounds snapped inwards to the stream grid at
  export, §6.16);
* ``nn.LeakyReLU`` / ``F.leaky_relu`` → leaky_relu, ``nn.PReLU`` → prelu (slopes
  kept real here, fixed-point at export, §6.7); the activations of
  :data:`calib.lowering_values.LUT_MODULES` and ``LUT_FN`` (``nn.Sigmoid`` / ``torch.sigmoid``,
  ``nn.GELU`` / ``F.gelu`` in the exact erf form, …) → lut with ``fn`` = the function's name
  (a table at export, §6.13, §6.17);
* ``torch.cat`` on channels → concat; ``torch.split`` / ``torch.chunk`` /
  ``x[:, a:b]`` on channels → split (§6.4, §6.5);
* ``nn.Upsample`` / ``F.interpolate`` by an integer factor → upsample_nearest,
  upsample_bilinear or upsample_bicubic (align_corners=False; §6.10, §6.18);
* a global mean over H×W (``AdaptiveAvgPool2d(1)``, ``x.mean((2, 3), keepdim=True)``,
  ``x.sum(3, keepdim=True).sum(2, keepdim=True) / (x.size(2)·x.size(3))``) →
  mean_pool; a population std over H×W (``sqrt``/``pow(0.5)`` of the mean of
  ``(x − mean x)²``, or ``x.std((2, 3), unbiased=False, keepdim=True)``) →
  std_pool: the intermediate values are tracked symbolically and only the
  complete pattern lowers (IMDN's contrast-aware channel attention);
* full-size tensor × 1×1 tensor (a per-channel gate) → mul (§6.14);
* multiplication by a constant: by 1 it is removed (EDSR's ``res_scale = 1``);
  by c ≠ 1 it is folded into the conv producing its operand (the conv's real
  weights and bias are scaled by c at export), provided that conv output has
  no other user;
* ``nn.BatchNorm2d`` (eval mode) directly after an ``nn.Conv2d`` is folded into that conv's
  float weights and bias before tracing (:mod:`calib.batchnorm`, arithmetic.md §5.7);
* ``nn.Identity`` / ``nn.Dropout`` are removed;
* forward arguments after the image with a default value (CARN-M's
  ``forward(x, scale=None)``) are fixed at that value by torch.fx
  ``concrete_args`` (override with ``capture(..., concrete_args=...)``);
* anything else raises :class:`UnsupportedOpError` naming the fx node, the op
  and its place in the model (module path and source line).

Leaves of the trace are torch's standard ``torch.nn`` leaves plus any module
whose class is named ``MeanShift`` (so it is folded as one affine, not traced
into ``F.conv2d``), plus ``extra_leaves``.

Tensor names: ``input`` (uint8 image), ``image_in.out``, ``<op>.out`` for every
other op (``<op>.out0``, ``<op>.out1``, … for split), ``output`` (uint8 image).
Op names are module paths for module calls (``body.0.body.0``; ``_1``, ``_2``
for further calls of a shared module) and ``<enclosing module path>.<function>``
for functions (``body.0.add``; ``add`` at top level), made unique with ``_1``, ``_2``.
"""
from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from calib.captured import (  # the captured graph, re-exported: capture() returns it
    CONV_OPS,
    INPUT_TENSOR,
    OUTPUT_TENSOR,
    CapturedGraph,
    LNode,
)
from calib.lowering import lower
from calib.tracing import SUPPORTED, Tracer, UnsupportedOpError, default_concrete_args

__all__ = ["CONV_OPS", "INPUT_TENSOR", "OUTPUT_TENSOR", "SUPPORTED", "CapturedGraph", "LNode", "UnsupportedOpError",
           "capture"]


def capture(model: nn.Module, *, rgb_range: float | None = None, in_channels: int | None = None,
            extra_leaves: tuple[type, ...] = (), concrete_args: dict | None = None) -> CapturedGraph:
    """Trace ``model`` (eval mode, float) and lower it to artifact-level ops.

    ``rgb_range``: the model's input range ([0, rgb_range] ↔ pixels 0..255);
    default ``model.rgb_range`` or 255. ``in_channels``: image channels;
    default ``model.n_colors`` or 3. ``concrete_args``: forward arguments after the
    image fixed for tracing (torch.fx ``concrete_args``); by default every such
    argument with a default value keeps it. Raises :class:`UnsupportedOpError` for
    anything the engine cannot run.
    """
    rgb_range = float(rgb_range if rgb_range is not None else getattr(model, "rgb_range", 255))
    in_channels = int(in_channels if in_channels is not None else getattr(model, "n_colors", 3))
    if rgb_range <= 0:
        raise ValueError(f"rgb_range must be positive, got {rgb_range}")
    concrete = default_concrete_args(model)
    concrete.update(concrete_args or {})
    from calib.batchnorm import fold_batchnorm

    tracer = Tracer(tuple(extra_leaves))
    try:
        model = fold_batchnorm(model, extra_leaves=tuple(extra_leaves), concrete_args=concrete_args)  # §5.7
        graph = tracer.trace(model, concrete_args=concrete or None)
    except UnsupportedOpError:
        raise
    except Exception as e:  # noqa: BLE001 - fx raises TraceError, TypeError, ... for untraceable code
        msg = " ".join(str(e).split())
        raise UnsupportedOpError(f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {msg}); "
                                 f"data-dependent control flow is not supported (fix such forward arguments "
                                 f"with concrete_args)") from None
    for nd in graph.nodes:  # an imported graph's scopes (calib/onnx_import.py) name its functional ops
        node_scope = (getattr(model, "fx_node_scopes", None) or {}).get(nd.name)
        if node_scope and not nd.meta.get("nn_module_stack"):
            nd.meta["nn_module_stack"] = {node_scope: (node_scope, nn.Module)}
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    cg = lower(gm, rgb_range, in_channels)
    n_ph = sum(1 for nd in gm.graph.nodes if nd.op == "placeholder")
    cg.concrete_args = dict(concrete)
    cg.extra_inputs = tuple(concrete.values())[: n_ph - 1]
    return cg
