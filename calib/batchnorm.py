"""Fold eval-mode ``BatchNorm2d`` into the ``Conv2d`` before it (docs/arithmetic.md §5.7).

A BatchNorm in eval mode is a per-channel affine ``y = (x − μ)·s + β`` with
``s = γ / sqrt(var + eps)``. Applied to the output of a conv it folds exactly
(in real arithmetic) into that conv: ``w'[co] = w[co]·s[co]`` and
``b'[co] = (b[co] − μ[co])·s[co] + β[co]``. The folded parameters are computed in
float64 and stored in the conv's dtype; they are the float weights and bias that
calibration observes and export quantizes, so the artifact has no BatchNorm op.

:func:`fold_batchnorm` returns a folded *copy* (the caller's model is never
changed) in which every folded BatchNorm is replaced by ``nn.Identity``, so the
copy runs eagerly and traces alike. A model without BatchNorm is returned as is.
A BatchNorm that does not directly follow a conv it can fold into is refused
with :class:`~calib.tracing.UnsupportedOpError` naming the fx node and its place.
"""
from __future__ import annotations

import copy

import torch
import torch.fx as fx
import torch.nn as nn

_BN_TYPES = (nn.BatchNorm2d,)


def folded_conv_params(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w', b')`` of ``bn(conv(x))`` in eval mode, computed in float64 (torch layouts, float64)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    mu, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mu)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mu)
    s = gamma / torch.sqrt(var + float(bn.eps))
    return w * s.view(-1, 1, 1, 1), (b - mu) * s + beta


def _refuse(node: fx.Node, gm: fx.GraphModule, why: str):
    from calib.tracing import SUPPORTED, UnsupportedOpError, place

    return UnsupportedOpError(f"cannot export BatchNorm2d module at {place(node, gm)}: {why}. "
                              f"Supported: {SUPPORTED}")


def fold_batchnorm(model: nn.Module, *, extra_leaves: tuple[type, ...] = (),
                   concrete_args: dict | None = None) -> nn.Module:
    """``model`` with every BatchNorm2d folded into its conv (a deep copy), or ``model`` itself if it has none.

    Each BatchNorm2d must be called once, on the output of an ``nn.Conv2d`` (zero or
    other padding mode, any groups) that is called once and whose output has no
    other user, and must track running statistics; anything else raises
    :class:`~calib.tracing.UnsupportedOpError`. ``extra_leaves`` / ``concrete_args`` as for
    :func:`calib.graph.capture`.
    """
    if not any(isinstance(m, _BN_TYPES) for m in model.modules()):
        return model
    from calib.tracing import Tracer, default_concrete_args

    concrete = default_concrete_args(model)
    concrete.update(concrete_args or {})
    tracer = Tracer(tuple(extra_leaves))
    graph = tracer.trace(model, concrete_args=concrete or None)
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    pairs: list[tuple[str, str]] = []
    for n in gm.graph.nodes:
        if n.op != "call_module" or not isinstance(gm.get_submodule(n.target), _BN_TYPES):
            continue
        bn = gm.get_submodule(n.target)
        src = n.args[0] if n.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module" and
                type(gm.get_submodule(src.target)) is nn.Conv2d):
            raise _refuse(n, gm, "a BatchNorm2d folds only into the nn.Conv2d directly before it")
        if len(src.users) != 1:
            raise _refuse(n, gm, f"the conv '{src.target}' before it has other users, so it cannot absorb the "
                                 f"normalisation")
        if calls[n.target] != 1 or calls[src.target] != 1:
            raise _refuse(n, gm, "a BatchNorm2d or conv module called more than once cannot be folded")
        if bn.running_mean is None or bn.running_var is None:
            raise _refuse(n, gm, "track_running_stats=False (no running statistics to fold)")
        if bn.num_features != gm.get_submodule(src.target).out_channels:
            raise _refuse(n, gm, f"{bn.num_features} features after a conv with "
                                 f"{gm.get_submodule(src.target).out_channels} output channels")
        pairs.append((str(src.target), str(n.target)))
    out = copy.deepcopy(model).eval()
    if hasattr(model, "fx_node_scopes"):  # an ONNX import's scopes (calib/onnx_import.py); deepcopy drops them
        out.fx_node_scopes = dict(model.fx_node_scopes)
    for conv_path, bn_path in pairs:
        conv, bn = out.get_submodule(conv_path), out.get_submodule(bn_path)
        w, b = folded_conv_params(conv, bn)
        conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
        conv.bias = nn.Parameter(b.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
        parent_path, _, attr = bn_path.rpartition(".")
        setattr(out.get_submodule(parent_path) if parent_path else out, attr, nn.Identity())
    return out
