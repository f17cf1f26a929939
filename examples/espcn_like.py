"""A small ESPCN-like super-resolution network with RCAN-style channel attention (docs/own_model.md).

Every op is one the integer engine runs today: 3×3/5×5 convs, ReLU, a channel-attention gate
(global mean → 1×1 conv → ReLU → 1×1 conv → sigmoid → multiply), pixel shuffle, and a bilinear global
skip. The issue-21 variant with ReLU6 and a bicubic skip needs the ops of its item 4 (clamp, bicubic);
swap them in here once they exist. ``build(scale)`` is the factory ``intsim calibrate --model
examples/espcn_like.py:build`` calls. Inputs: RGB in [0, 1] (rgb_range 1).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ChannelAttention(nn.Module):
    """RCAN's channel attention: x · sigmoid(W2 relu(W1 mean_HW(x)))."""

    def __init__(self, ch: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(ch, ch // reduction, 1)
        self.fc2 = nn.Conv2d(ch // reduction, ch, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class EspcnLike(nn.Module):
    def __init__(self, scale: int, feats: int = 32, mid: int = 16):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, feats, 5, padding=2)
        self.body = nn.Conv2d(feats, mid, 3, padding=1)
        self.att = ChannelAttention(mid)
        self.tail = nn.Conv2d(mid, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        y = F.relu(self.head(x))
        y = self.att(F.relu(self.body(y)))
        return self.shuffle(self.tail(y)) + skip


def build(scale: int) -> nn.Module:
    """The factory: ``EspcnLike(scale)`` with PyTorch's default (random) init."""
    return EspcnLike(scale)
