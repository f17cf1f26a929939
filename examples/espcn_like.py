"""A small ESPCN-like super-resolution network with ReLU6 and a bicubic global skip (docs/own_model.md).

ESPCN (Shi et al. 2016) as mobile SR networks write it today: a 5×5 and a 3×3 feature conv with ReLU6
(the clamp op, docs/arithmetic.md §6.16), a 3×3 conv to 3·scale² channels and a pixel shuffle, plus the
bicubic upsampling of the input as a global skip (``F.interpolate(mode='bicubic')``, align_corners=False:
the upsample_bicubic op, §6.18), so the convs learn only the residual. ``build(scale)`` is the factory
``intsim calibrate --model examples/espcn_like.py:build`` calls. Inputs: RGB in [0, 1] (rgb_range 1).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class EspcnLike(nn.Module):
    def __init__(self, scale: int, feats: int = 32, mid: int = 16):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, feats, 5, padding=2)
        self.body = nn.Conv2d(feats, mid, 3, padding=1)
        self.act = nn.ReLU6()
        self.tail = nn.Conv2d(mid, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        y = self.act(self.head(x))
        y = F.relu6(self.body(y))
        return self.shuffle(self.tail(y)) + skip


def build(scale: int) -> nn.Module:
    """The factory: ``EspcnLike(scale)`` with PyTorch's default (random) init."""
    return EspcnLike(scale)
