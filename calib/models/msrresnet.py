"""MSRResNet (modified SRResNet, no BN) as in BasicSR ``basicsr/archs/srresnet_arch.py``:
``conv_first``, ``body.i.conv1/conv2`` (16 ResidualBlockNoBN), ``upconv1`` (+ ``upconv2`` at ×4),
``conv_hr``, ``conv_last``; LeakyReLU(0.1); global skip = bilinear upsampling of the input.

Input RGB in [0, 1]; BasicSR checkpoints are ``{'params': state_dict}`` (or ``params_ema``).
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

from ._loading import load_state_dict_strict, read_torch_checkpoint, strip_prefix, unwrap_state_dict


class ResidualBlockNoBN(nn.Module):
    def __init__(self, num_feat: int = 64, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class MSRResNet(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4):
        super().__init__()
        self.upscale = self.scale = int(upscale)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        if self.upscale in (2, 3):
            self.upconv1 = nn.Conv2d(num_feat, num_feat * self.upscale * self.upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(self.upscale)
        elif self.upscale == 4:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            raise ValueError(f"MSRResNet supports scales 2, 3, 4, not {upscale}")
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.lrelu(self.conv_first(x))
        out = self.body(feat)
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        else:
            out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return out + base


def build(scale: int) -> MSRResNet:
    return MSRResNet(upscale=scale)


def load(path: str | os.PathLike, scale: int) -> MSRResNet:
    """BasicSR MSRResNet checkpoint (``{'params': ...}`` / ``params_ema`` / plain state_dict)."""
    sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(path), path), "module.")
    return load_state_dict_strict(build(scale), sd, f"MSRResNet ×{scale}", path).eval()
