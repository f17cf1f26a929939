"""VDSR (Kim et al., CVPR 2016) as in twtygqyy/pytorch-vdsr (``vdsr.py``): 20 3×3 convs without
biases (input 1→64, 18 × 64→64 + ReLU, output 64→1) and a global residual.

One model for every scale. Input: Y channel of the bicubic-*upsampled* LR (MATLAB bicubic, float
path) / 255; output = input + residual, on the same [0, 1] Y scale.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ._loading import load_state_dict_strict, read_torch_checkpoint, strip_prefix, unwrap_state_dict


class ConvReLUBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class VDSR(nn.Module):
    def __init__(self, scale: int | None = None, depth: int = 20):
        super().__init__()
        self.scale = scale  # informational: the network itself is scale-free
        self.residual_layer = nn.Sequential(*[ConvReLUBlock() for _ in range(depth - 2)])
        self.input = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        self.output = nn.Conv2d(64, 1, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        out = self.relu(self.input(x))
        out = self.residual_layer(out)
        out = self.output(out)
        return out + residual


def build(scale: int) -> VDSR:
    return VDSR(scale)


def load(path: str | os.PathLike, scale: int) -> VDSR:
    """``vdsr_state_dict.pth`` (plain state_dict of the twtygqyy model)."""
    sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(path), path), "module.")
    return load_state_dict_strict(build(scale), sd, "VDSR", path).eval()
