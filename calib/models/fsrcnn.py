"""FSRCNN(d=56, s=12, m=4) (Dong et al., ECCV 2016), laid out as yjn870/FSRCNN-pytorch
(``first_part``, ``mid_part``, ``last_part``) so ``fsrcnn_x{2,3,4}.pth`` load strictly.

Y channel / 255 in, Y / 255 out. PReLU (one slope per channel) after every conv but the last;
the last layer is ``ConvTranspose2d(d, 1, 9, stride=s, padding=4, output_padding=s-1)``.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ._loading import load_state_dict_strict, read_torch_checkpoint, strip_prefix, unwrap_state_dict


class FSRCNN(nn.Module):
    def __init__(self, scale: int, num_channels: int = 1, d: int = 56, s: int = 12, m: int = 4):
        super().__init__()
        self.scale = int(scale)
        self.first_part = nn.Sequential(nn.Conv2d(num_channels, d, kernel_size=5, padding=5 // 2),
                                        nn.PReLU(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, kernel_size=1), nn.PReLU(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, kernel_size=3, padding=3 // 2), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, kernel_size=1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(d, num_channels, kernel_size=9, stride=self.scale,
                                            padding=9 // 2, output_padding=self.scale - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_part(x)
        x = self.mid_part(x)
        return self.last_part(x)


def build(scale: int) -> FSRCNN:
    return FSRCNN(scale)


def load(path: str | os.PathLike, scale: int) -> FSRCNN:
    """``fsrcnn_x{s}.pth`` (plain state_dict of the yjn870 model)."""
    sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(path), path), "module.")
    return load_state_dict_strict(build(scale), sd, f"FSRCNN(56,12,4) ×{scale}", path).eval()
