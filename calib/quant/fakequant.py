"""Fake-quant modules: run a float model with its calibrated quantizers.

:class:`QuantConv2d` quantizes the conv's input with a
:class:`~calib.quant.two_region.TwoRegionQuantizer` and its weight with a
:class:`~calib.quant.weight.WeightQuantizer`, then convolves in float. It wraps
``nn.Conv2d`` (any ``groups``, e.g. CARN-M's group convs) and
``nn.ConvTranspose2d`` (FSRCNN's last layer; torch weight layout
``[C_in, C_out/groups, kh, kw]``, so per-channel weight scales must be along
``channel_dim = 1``, as export requires). The result is the float32 fake-quant
model with *unsnapped* learned parameters (docs/arithmetic.md: the "third model",
whose PSNR is reported beside the golden/integer PSNR) and the model the
finetuning stage trains (only the quantizer parameters require grad).

Shared modules (a conv called more than once per forward, CARN-M's shared
blocks): capture/export give one op per call site, each with its own
calibrated quantizers (``calib_result.layers`` has one entry per call, in call
order, all naming the same ``module``). :func:`build_fakequant_model` matches
that exactly:

* if every call site has the same activation and weight spec (what
  :func:`calib.methods.calibrate_method` produces: its statistics are per
  module), the call sites *share* one quantizer pair — the snapped encoders of
  the call sites are then identical too, and finetuning trains the one shared
  quantizer and writes it back to every call site;
* otherwise (e.g. :func:`calib.calibrate.calibrate_minmax`, whose observers are
  per call) the wrapper holds one quantizer pair per call site and call ``i``
  of a forward uses pair ``i`` (``act_quant``/``weight_quant`` are call site 0,
  ``site_quants[i-1]`` the others). The call counters are reset at the start
  of every forward of the returned model, so call ``i`` is always the ``i``-th
  call in graph order — the order export uses.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.quant.two_region import TwoRegionQuantizer, TwoRegionSpec
from calib.quant.weight import WeightQuantizer, WeightQuantSpec

_CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def _check_weight_spec(conv: nn.Module, weight: WeightQuantSpec) -> None:
    if isinstance(conv, nn.ConvTranspose2d) and weight.per_channel and weight.channel_dim != 1:
        raise ValueError("per-channel weight scales of a ConvTranspose2d must be along its output-channel dim 1 of "
                         f"the torch weight [C_in, C_out/groups, kh, kw] (channel_dim=1), got channel_dim="
                         f"{weight.channel_dim}")


class _SiteQuant(nn.Module):
    """Quantizer pair of one further call site of a shared conv."""

    def __init__(self, act: TwoRegionSpec, weight: WeightQuantSpec):
        super().__init__()
        self.act_quant = TwoRegionQuantizer(act)
        self.weight_quant = WeightQuantizer(weight)


class QuantConv2d(nn.Module):
    """A Conv2d / ConvTranspose2d whose input and weight are fake-quantized (the conv's float parameters are
    frozen). ``sites``: (act, weight) specs of further call sites of a shared conv (module doc)."""

    def __init__(self, conv: nn.Module, act: TwoRegionSpec, weight: WeightQuantSpec,
                 sites: list[tuple[TwoRegionSpec, WeightQuantSpec]] | None = None):
        super().__init__()
        if type(conv) not in _CONV_TYPES:
            raise TypeError(f"QuantConv2d wraps nn.Conv2d or nn.ConvTranspose2d, got {type(conv).__name__}")
        if conv.padding_mode not in PADDING_MODES:
            raise ValueError(f"QuantConv2d supports padding modes {', '.join(PADDING_MODES)}, got "
                             f"padding_mode={conv.padding_mode!r}")
        for _, w in [(act, weight)] + list(sites or []):
            _check_weight_spec(conv, w)
        self.conv = conv
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        for p in self.conv.parameters():
            p.requires_grad_(False)
        self.act_quant = TwoRegionQuantizer(act)
        self.weight_quant = WeightQuantizer(weight)
        self.site_quants = nn.ModuleList(_SiteQuant(a, w) for a, w in (sites or []))
        self.calls = 0

    @property
    def num_sites(self) -> int:
        return 1 + len(self.site_quants)

    def reset_calls(self) -> None:
        self.calls = 0

    def _quantizers(self):
        i = self.calls % self.num_sites
        self.calls += 1
        if i == 0:
            return self.act_quant, self.weight_quant
        s = self.site_quants[i - 1]
        return s.act_quant, s.weight_quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        aq, wq = self._quantizers()
        xq, w = aq(x), wq(c.weight)
        if self.transposed:
            return F.conv_transpose2d(xq, w, c.bias, c.stride, c.padding, c.output_padding, c.groups, c.dilation)
        return conv2d_padded(xq, w, c.bias, c)


PADDING_MODES = ("zeros", "reflect", "replicate")


def conv2d_padded(x: torch.Tensor, w: torch.Tensor, bias, conv: nn.Conv2d) -> torch.Tensor:
    """``conv`` applied with weight ``w`` and ``bias``, honouring its padding mode as torch does: reflect /
    replicate pad the (already quantized) input, then a conv without padding (arithmetic.md §5.8)."""
    if conv.padding_mode == "zeros":
        return F.conv2d(x, w, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    ph, pw = conv.padding
    return F.conv2d(F.pad(x, (pw, pw, ph, ph), mode=conv.padding_mode), w, bias, conv.stride, 0, conv.dilation,
                    conv.groups)


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, new)


def _same_w_int(a, b) -> bool:
    wa, wb = getattr(a, "w_int", None), getattr(b, "w_int", None)
    return (wa is None and wb is None) or (wa is not None and wb is not None and torch.equal(wa, wb))


@torch.no_grad()
def project_quantizers(module: nn.Module) -> None:
    """Keep every quantizer under ``module`` valid after a step: clip > 0, 0 < bp ≤ u, l ≤ −bp (signed),
    l < u; learned rounding offsets in [−0.5, 0.5]."""
    for m in module.modules():
        if isinstance(m, QuantConv2d):
            for aq, wq in [(m.act_quant, m.weight_quant)] + [(s.act_quant, s.weight_quant) for s in m.site_quants]:
                wq.clip.clamp_(min=1e-8)
                if wq.offset is not None:
                    wq.offset.clamp_(-0.5, 0.5)
                if aq.allocation == "uniform":
                    if aq.signed:
                        aq.l.clamp_(max=-1e-8)
                    aq.u.clamp_(min=float(aq.l) + 1e-8 if not aq.signed else 1e-8)
                else:
                    aq.bp.clamp_(min=1e-8)
                    aq.u.clamp_(min=float(aq.bp))
                    if aq.signed:
                        aq.l.clamp_(max=-float(aq.bp))


def _reset_calls_hook(module: nn.Module, args) -> None:
    # found from ``module`` on each call, so a copy of the model resets its own wrappers
    for m in module.modules():
        if isinstance(m, QuantConv2d) and m.num_sites > 1:
            m.reset_calls()


def build_fakequant_model(model: nn.Module, calib) -> nn.Module:
    """A deep copy of ``model`` with every calibrated conv replaced by :class:`QuantConv2d`.

    ``calib`` is a :class:`calib.calibrate.CalibrationResult`; module paths are
    preserved, so the copy's state dict extends the original's. A module with
    several call sites (layers naming the same ``module``) gets one shared
    quantizer pair if their specs agree, else one pair per call site (module doc).
    """
    from calib.batchnorm import fold_batchnorm

    folded = fold_batchnorm(model)  # a copy already when it folds anything (arithmetic.md §5.7)
    fq = (folded if folded is not model else copy.deepcopy(model)).eval()
    multi_site = False
    by_module: dict[str, list] = {}
    for layer in calib.layers.values():
        by_module.setdefault(layer.module, []).append(layer)
    for path, layers in by_module.items():
        conv = fq.get_submodule(path)
        first = layers[0]
        shared = all(l.act == first.act and l.weight == first.weight and _same_w_int(l, first) for l in layers[1:])
        sites = [] if shared else [(l.act, l.weight) for l in layers[1:]]
        if getattr(first, "bias", None) is not None:  # learned bias (calib/reconstruct.py); conv is the copy's own
            conv.bias = nn.Parameter(first.bias.detach().clone().to(conv.weight.dtype), requires_grad=False)
        qc = QuantConv2d(conv, first.act, first.weight, sites)
        for i, l in enumerate(layers if sites else layers[:1]):
            if getattr(l, "w_int", None) is not None:  # learned rounding (calib/reconstruct.py)
                wq = qc.weight_quant if i == 0 else qc.site_quants[i - 1].weight_quant
                wq.learn_rounding(conv.weight, l.w_int)
        _set_submodule(fq, path, qc)
        multi_site = multi_site or bool(sites)
    if multi_site:  # call i of a forward must use site i: restart the counters every forward
        fq.register_forward_pre_hook(_reset_calls_hook)
    return fq
