"""Tracing a PyTorch model with torch.fx for capture (:mod:`calib.graph`) and BatchNorm
folding (:mod:`calib.batchnorm`): the tracer, the forward arguments fixed at trace time, and
how an fx node is named in an error (:class:`UnsupportedOpError`, with the model's source line).
"""
from __future__ import annotations

import os

import torch
import torch.fx as fx
import torch.nn as nn

from intsim.lut import LUT_FUNCTIONS

SUPPORTED = (
    "conv2d (nn.Conv2d, zero / reflect / replicate padding; shared modules become one op per call), conv_transpose2d "
    "(nn.ConvTranspose2d), add (two tensors), relu, clamp (ReLU6, Hardtanh, torch.clamp/clip with constant bounds), "
    f"leaky_relu, prelu, {' / '.join(LUT_FUNCTIONS)} (lut), pixel_shuffle, "
    "nearest / bilinear / bicubic (align_corners=False) upsampling by an integer factor, torch.cat / split / chunk / "
    "x[:, a:b] on channels (concat, split), global mean (mean, AdaptiveAvgPool2d(1), sum/(H·W)) and population "
    "std over H×W (mean_pool, std_pool), full-size × 1×1 per-channel gate (mul), "
    "MeanShift (folded into image_in/image_out), BatchNorm2d right after a Conv2d (folded into it), "
    "multiplication/division by a constant "
    "(removed if 1, else folded into the producing conv), nn.Identity/nn.Dropout (removed)"
)


TORCH_DIR = os.path.dirname(torch.__file__)


class UnsupportedOpError(ValueError):
    """The model contains an operation the engine cannot run (raised at export/capture time)."""


def is_mean_shift(m: nn.Module) -> bool:
    return type(m).__name__ == "MeanShift"


class Tracer(fx.Tracer):
    def __init__(self, extra_leaves: tuple[type, ...] = ()):
        super().__init__()
        self.record_stack_traces = True
        self.extra_leaves = extra_leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if is_mean_shift(m) or (self.extra_leaves and isinstance(m, self.extra_leaves)):
            return True
        return super().is_leaf_module(m, qualname)


def scope(node: fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    key, val = list(stack.items())[-1]
    path = val[0] if isinstance(val, tuple) else key
    typ = val[1] if isinstance(val, tuple) else None
    tname = getattr(typ, "__name__", str(typ)) if typ is not None else ""
    return str(path), tname


def place(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        where = f"module '{node.target}' ({type(mod).__name__})"
    else:
        path, tname = scope(node)
        where = f"module '{path}' ({tname})" if path else "the model's top-level forward"
    src = ""
    if node.stack_trace:
        # The innermost frame outside torch itself is the model's source line.
        lines = [ln.strip() for ln in node.stack_trace.strip().splitlines() if ln.strip()]
        frames = [(ln, lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else "")
                  for i, ln in enumerate(lines) if ln.startswith("File ")]
        user = [f for f in frames if TORCH_DIR not in f[0]]
        if user:
            head, code = user[-1]
            src = f"; {head}" + (f": {code}" if code else "")
    return f"fx node '{node.name}' in {where}{src}"


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} module"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__module__', '') or ''}.{getattr(node.target, '__name__', node.target)}".replace("None.", "")
    if node.op == "call_method":
        return f"tensor method .{node.target}()"
    if node.op == "get_attr":
        return f"constant tensor attribute '{node.target}'"
    return f"{node.op} {node.target}"


def default_concrete_args(model: nn.Module) -> dict:
    """Every forward argument after the image that has a default value is fixed at that default.

    A model whose ``forward(x, scale=None)`` branches on ``scale`` (CARN-M) is traced for the
    value it uses by default (e.g. ``self.scale``); pass ``concrete_args`` to fix other values.
    """
    import inspect

    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                p.KEYWORD_ONLY)]
    return {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}
