"""Fake-quant modules: run a float model with its calibrated quantizers.

:class:`QuantConv2d` quantizes the conv's input with a
:class:`~calib.quant.two_region.TwoRegionQuantizer` and its weight with a
:class:`~calib.quant.weight.WeightQuantizer`, then convolves in float. The
result is the float32 fake-quant model with *unsnapped* learned parameters
(design.md §5: the "third model", whose PSNR is reported beside the
golden/integer PSNR) and the model the finetuning stage trains (only the
quantizer parameters require grad).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.quant.two_region import TwoRegionQuantizer, TwoRegionSpec
from calib.quant.weight import WeightQuantizer, WeightQuantSpec


class QuantConv2d(nn.Module):
    """A Conv2d whose input and weight are fake-quantized (float parameters of the conv are frozen)."""

    def __init__(self, conv: nn.Conv2d, act: TwoRegionSpec, weight: WeightQuantSpec):
        super().__init__()
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"QuantConv2d wraps nn.Conv2d, got {type(conv).__name__}")
        self.conv = conv
        for p in self.conv.parameters():
            p.requires_grad_(False)
        self.act_quant = TwoRegionQuantizer(act)
        self.weight_quant = WeightQuantizer(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(self.act_quant(x), self.weight_quant(c.weight), c.bias, c.stride, c.padding, c.dilation,
                        c.groups)


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, new)


def build_fakequant_model(model: nn.Module, calib) -> nn.Module:
    """A deep copy of ``model`` with every calibrated conv replaced by :class:`QuantConv2d`.

    ``calib`` is a :class:`calib.calibrate.CalibrationResult`; module paths are
    preserved, so the copy's state dict extends the original's.
    """
    fq = copy.deepcopy(model).eval()
    for layer in calib.layers.values():
        conv = fq.get_submodule(layer.module)
        _set_submodule(fq, layer.module, QuantConv2d(conv, layer.act, layer.weight))
    return fq
