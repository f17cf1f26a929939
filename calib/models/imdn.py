"""IMDN (Hui et al., "Lightweight Image Super-Resolution with Information Multi-distillation
Network", ACM MM 2019), laid out as the official code (Zheng222/IMDN, model/architecture.py and
model/block.py) so the released ``IMDN_x{2,3,4}.pth`` state_dicts load strictly.

Input RGB in [0, 1] (no mean shift); output RGB in [0, 1].
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ._loading import load_state_dict_strict, read_torch_checkpoint, strip_prefix, unwrap_state_dict

LRELU_SLOPE = 0.05


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    padding = int((kernel_size - 1) / 2) * dilation
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=padding, bias=True,
                     dilation=dilation, groups=groups)


def mean_channels(f: torch.Tensor) -> torch.Tensor:
    spatial_sum = f.sum(3, keepdim=True).sum(2, keepdim=True)
    return spatial_sum / (f.size(2) * f.size(3))


class _Sqrt(torch.autograd.Function):
    """``v.pow(0.5)`` (the same values) with the gradient 0 instead of inf·0 = NaN where ``v = 0``.

    A fake-quantized feature map can be exactly constant over a patch (few levels at 3 bits),
    so its variance is exactly 0 and sqrt's derivative is infinite there; finetuning then
    turned every quantizer parameter into NaN. 0 is the subgradient the clamp of a std to
    its minimum would give; nothing changes where ``v > 0``.
    """

    @staticmethod
    def forward(ctx, v):
        r = v.pow(0.5)
        ctx.save_for_backward(r)
        return r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return torch.where(r > 0, g * 0.5 / torch.where(r > 0, r, torch.ones_like(r)), torch.zeros_like(r))


def stdv_channels(f: torch.Tensor) -> torch.Tensor:
    f_mean = mean_channels(f)
    f_variance = (f - f_mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / (f.size(2) * f.size(3))
    return _Sqrt.apply(f_variance)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: x · sigmoid(conv(relu(conv(std(x) + mean(x)))))."""

    def __init__(self, channel: int, reduction: int = 16):
        super().__init__()
        self.contrast = stdv_channels
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.contrast(x) + self.avg_pool(x)
        y = self.conv_du(y)
        return x * y


class IMDModule(nn.Module):
    """Information multi-distillation block (split 16/48 three times, c4, CCA, c5 1×1, residual)."""

    def __init__(self, in_channels: int, distillation_rate: float = 0.25):
        super().__init__()
        self.distilled_channels = int(in_channels * distillation_rate)
        self.remaining_channels = int(in_channels - self.distilled_channels)
        self.c1 = conv_layer(in_channels, in_channels, 3)
        self.c2 = conv_layer(self.remaining_channels, in_channels, 3)
        self.c3 = conv_layer(self.remaining_channels, in_channels, 3)
        self.c4 = conv_layer(self.remaining_channels, self.distilled_channels, 3)
        self.act = nn.LeakyReLU(LRELU_SLOPE, inplace=True)
        self.c5 = conv_layer(self.distilled_channels * 4, in_channels, 1)
        self.cca = CCALayer(self.distilled_channels * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled_channels, self.remaining_channels)
        out_c1 = self.act(self.c1(x))
        distilled_c1, remaining_c1 = torch.split(out_c1, split, dim=1)
        out_c2 = self.act(self.c2(remaining_c1))
        distilled_c2, remaining_c2 = torch.split(out_c2, split, dim=1)
        out_c3 = self.act(self.c3(remaining_c2))
        distilled_c3, remaining_c3 = torch.split(out_c3, split, dim=1)
        out_c4 = self.c4(remaining_c3)
        out = torch.cat([distilled_c1, distilled_c2, distilled_c3, out_c4], dim=1)
        return self.c5(self.cca(out)) + x


class IMDN(nn.Module):
    def __init__(self, in_nc: int = 3, nf: int = 64, num_modules: int = 6, out_nc: int = 3, upscale: int = 4):
        super().__init__()
        self.scale = int(upscale)
        self.num_modules = num_modules
        self.fea_conv = conv_layer(in_nc, nf, kernel_size=3)
        for i in range(1, num_modules + 1):
            setattr(self, f"IMDB{i}", IMDModule(in_channels=nf))
        # B.conv_block(nf * num_modules, nf, kernel_size=1, act_type='lrelu') -> Sequential(conv, lrelu)
        self.c = nn.Sequential(nn.Conv2d(nf * num_modules, nf, 1, 1, 0, bias=True),
                               nn.LeakyReLU(LRELU_SLOPE, inplace=True))
        self.LR_conv = conv_layer(nf, nf, kernel_size=3)
        # B.pixelshuffle_block -> Sequential(conv 3×3 to out_nc·s², PixelShuffle(s))
        self.upsampler = nn.Sequential(conv_layer(nf, out_nc * self.scale ** 2, 3),
                                       nn.PixelShuffle(self.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_fea = self.fea_conv(x)
        outs = []
        h = out_fea
        for i in range(1, self.num_modules + 1):
            h = getattr(self, f"IMDB{i}")(h)
            outs.append(h)
        out_b = self.c(torch.cat(outs, dim=1))
        out_lr = self.LR_conv(out_b) + out_fea
        return self.upsampler(out_lr)


def build(scale: int) -> IMDN:
    return IMDN(in_nc=3, nf=64, num_modules=6, out_nc=3, upscale=scale)


def load(path: str | os.PathLike, scale: int) -> IMDN:
    """Official ``IMDN_x{s}.pth`` (state_dict, keys prefixed ``module.``)."""
    sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(path), path), "module.")
    return load_state_dict_strict(build(scale), sd, f"IMDN ×{scale}", path).eval()
