"""CARN-M (Ahn et al., "Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual
Network", ECCV 2018), laid out as the official code (nmhkahn/CARN-pytorch, carn/model/carn_m.py and
ops.py) so ``carn_m.pth`` loads strictly.

One multi-scale model (``multi_scale=True``, ``group=4``): ``forward(x, scale)`` picks the ×2/×3/×4
upsampler. Input RGB in [0, 1]; ``sub_mean``/``add_mean`` (mean 0.4488, 0.4371, 0.4040) are 1×1
convs stored in the checkpoint.
"""
from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from ._loading import load_state_dict_strict, read_torch_checkpoint, strip_prefix, unwrap_state_dict

RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    def __init__(self, mean_rgb, sub: bool):
        super().__init__()
        sign = -1 if sub else 1
        self.shifter = nn.Conv2d(3, 3, 1, 1, 0)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(torch.tensor([m * sign for m in mean_rgb]))
        for p in self.shifter.parameters():
            p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ksize: int = 3, stride: int = 1, pad: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, ksize, stride, pad),
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, group: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class _UpsampleBlock(nn.Module):
    def __init__(self, n_channels: int, scale: int, group: int = 1):
        super().__init__()
        modules: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range(int(math.log(scale, 2))):
                modules += [nn.Conv2d(n_channels, 4 * n_channels, 3, 1, 1, groups=group), nn.ReLU(inplace=True),
                            nn.PixelShuffle(2)]
        elif scale == 3:
            modules += [nn.Conv2d(n_channels, 9 * n_channels, 3, 1, 1, groups=group), nn.ReLU(inplace=True),
                        nn.PixelShuffle(3)]
        else:
            raise ValueError(f"CARN upsampler supports scales 2, 3, 4, 8, not {scale}")
        self.body = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    def __init__(self, n_channels: int, scale: int | None, multi_scale: bool, group: int = 1):
        super().__init__()
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = _UpsampleBlock(n_channels, scale=2, group=group)
            self.up3 = _UpsampleBlock(n_channels, scale=3, group=group)
            self.up4 = _UpsampleBlock(n_channels, scale=4, group=group)
        else:
            self.up = _UpsampleBlock(n_channels, scale=scale, group=group)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        if not self.multi_scale:
            return self.up(x)
        if scale == 2:
            return self.up2(x)
        if scale == 3:
            return self.up3(x)
        if scale == 4:
            return self.up4(x)
        raise ValueError(f"CARN-M multi-scale model supports scales 2, 3, 4, not {scale}")


class Block(nn.Module):
    """CARN-M cascading block: one shared efficient residual block applied three times."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64, group: int = 1):
        super().__init__()
        self.b1 = EResidualBlock(64, 64, group=group)
        self.c1 = BasicBlock(64 * 2, 64, 1, 1, 0)
        self.c2 = BasicBlock(64 * 3, 64, 1, 1, 0)
        self.c3 = BasicBlock(64 * 4, 64, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0 = o0 = x
        b1 = self.b1(o0)
        c1 = torch.cat([c0, b1], dim=1)
        o1 = self.c1(c1)
        b2 = self.b1(o1)
        c2 = torch.cat([c1, b2], dim=1)
        o2 = self.c2(c2)
        b3 = self.b1(o2)
        c3 = torch.cat([c2, b3], dim=1)
        return self.c3(c3)


class CARNM(nn.Module):
    def __init__(self, scale: int | None = None, multi_scale: bool = True, group: int = 4):
        super().__init__()
        self.scale = scale
        self.multi_scale = multi_scale
        self.sub_mean = MeanShift(RGB_MEAN, sub=True)
        self.add_mean = MeanShift(RGB_MEAN, sub=False)
        self.entry = nn.Conv2d(3, 64, 3, 1, 1)
        self.b1 = Block(64, 64, group=group)
        self.b2 = Block(64, 64, group=group)
        self.b3 = Block(64, 64, group=group)
        self.c1 = BasicBlock(64 * 2, 64, 1, 1, 0)
        self.c2 = BasicBlock(64 * 3, 64, 1, 1, 0)
        self.c3 = BasicBlock(64 * 4, 64, 1, 1, 0)
        self.upsample = UpsampleBlock(64, scale=scale, multi_scale=multi_scale, group=group)
        self.exit = nn.Conv2d(64, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is None:
            scale = self.scale
        if scale is None:
            raise ValueError("CARN-M multi-scale forward needs a scale (forward(x, scale))")
        x = self.sub_mean(x)
        x = self.entry(x)
        c0 = o0 = x
        b1 = self.b1(o0)
        c1 = torch.cat([c0, b1], dim=1)
        o1 = self.c1(c1)
        b2 = self.b2(o1)
        c2 = torch.cat([c1, b2], dim=1)
        o2 = self.c2(c2)
        b3 = self.b3(o2)
        c3 = torch.cat([c2, b3], dim=1)
        o3 = self.c3(c3)
        out = self.upsample(o3, scale=scale)
        out = self.exit(out)
        return self.add_mean(out)


def build(scale: int) -> CARNM:
    return CARNM(scale=scale, multi_scale=True, group=4)


def load(path: str | os.PathLike, scale: int) -> CARNM:
    """Official ``carn_m.pth`` (plain state_dict). The returned model defaults to ``scale``."""
    sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(path), path), "module.")
    return load_state_dict_strict(build(scale), sd, "CARN-M (multi_scale, group=4)", path).eval()
