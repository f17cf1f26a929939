"""A tiny SR network (head, two residual blocks, pixel-shuffle upsampler) for fast calibration tests."""
from __future__ import annotations

import torch
import torch.nn as nn


class TinyBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.c2(self.act(self.c1(x))) + x


class TinySR(nn.Module):
    def __init__(self, c: int = 8, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(TinyBlock(c), TinyBlock(c))
        self.upsampler = nn.Sequential(nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.upsampler(self.body(h) + h))


def tiny_model(seed: int = 0) -> TinySR:
    torch.manual_seed(seed)
    return TinySR().eval()


def tiny_images(n: int = 6, size: int = 12, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(n)]
