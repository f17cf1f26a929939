"""EDSR (Lim et al. 2017) with the exact module tree of EDSR-PyTorch.

Module and state-dict key names follow ``src/model/edsr.py`` and
``src/model/common.py`` of the official repository (sanghyun-son/EDSR-PyTorch),
so the official ``edsr_baseline_x{2,3,4}`` checkpoints load with
``load_state_dict(strict=True)``:

* ``sub_mean`` / ``add_mean``: :class:`MeanShift`, a frozen 1×1 conv 3→3;
* ``head.0``: 3×3 conv n_colors → n_feats;
* ``body.{i}.body.0`` conv, ``body.{i}.body.1`` ReLU, ``body.{i}.body.2`` conv
  (i < n_resblocks); ``body.{n_resblocks}``: the 3×3 conv closing the body;
* ``tail.0``: :class:`Upsampler` (×2/×3: conv to r²·n_feats + PixelShuffle(r);
  ×4: two such stages, ``tail.0.0`` .. ``tail.0.3``); ``tail.1``: 3×3 conv to
  n_colors.

Forward input: float tensor N×n_colors×H×W in [0, rgb_range]; output in the
same range (not clamped). The mean shifts are folded into the artifact's
``image_in`` / ``image_out`` at export (docs/arithmetic.md §6.1–6.2).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

#: DIV2K RGB mean used by EDSR-PyTorch (on a [0, 1] scale).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """EDSR-PyTorch ``common.default_conv``: 'same' padding, stride 1."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Per-channel affine ``y_c = x_c / std_c + sign·rgb_range·mean_c / std_c`` as a frozen 1×1 conv.

    Identical to EDSR-PyTorch ``common.MeanShift`` (weight ``eye(3)/std``,
    bias ``sign·rgb_range·mean/std``; parameters are buffers-in-spirit with
    ``requires_grad=False`` but stay *parameters* so the state-dict keys match).
    ``calib.graph`` treats any module whose class is named ``MeanShift`` as a
    leaf and folds it into the image conversion ops.
    """

    def __init__(self, rgb_range: float, rgb_mean=DIV2K_RGB_MEAN, rgb_std=(1.0, 1.0, 1.0), sign: int = -1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std, dtype=torch.float32)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32) / std
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """conv → ReLU → conv, scaled by ``res_scale``, plus the identity (EDSR-PyTorch ``common.ResBlock``)."""

    def __init__(self, conv, n_feats: int, kernel_size: int, bias: bool = True, act: nn.Module | None = None,
                 res_scale: float = 1.0):
        super().__init__()
        act = nn.ReLU(True) if act is None else act
        self.body = nn.Sequential(conv(n_feats, n_feats, kernel_size, bias=bias), act,
                                  conv(n_feats, n_feats, kernel_size, bias=bias))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler (EDSR-PyTorch ``common.Upsampler`` without BN/activation).

    Scale 2^k: k stages of (conv n_feats → 4·n_feats, PixelShuffle(2)); scale 3:
    one stage (conv → 9·n_feats, PixelShuffle(3)).
    """

    def __init__(self, conv, scale: int, n_feats: int, bias: bool = True):
        m: list[nn.Module] = []
        if scale >= 1 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                m.append(conv(n_feats, 4 * n_feats, 3, bias))
                m.append(nn.PixelShuffle(2))
        elif scale == 3:
            m.append(conv(n_feats, 9 * n_feats, 3, bias))
            m.append(nn.PixelShuffle(3))
        else:
            raise ValueError(f"EDSR upsampler supports scales 2^k and 3, not {scale}")
        super().__init__(*m)


class EDSR(nn.Module):
    """EDSR; the defaults are EDSR-baseline (16 res-blocks, 64 features, res_scale 1).

    ``scale`` ∈ {1, 2, 3, 4, 8, ...} (2^k or 3). Random (PyTorch default)
    initialisation unless a state dict is loaded.
    """

    def __init__(self, scale: int, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0,
                 rgb_range: float = 255, n_colors: int = 3, conv=default_conv):
        super().__init__()
        if n_colors != 3:
            # MeanShift is 3-channel in EDSR-PyTorch; a Y-only EDSR would need its own normalisation.
            raise ValueError(f"EDSR is defined for 3 colour channels, got n_colors={n_colors}")
        kernel_size = 3
        self.scale = int(scale)
        self.rgb_range = rgb_range
        self.n_colors = n_colors
        # Registration order = EDSR-PyTorch's, so state_dict() keys come out in the same order.
        self.sub_mean = MeanShift(rgb_range)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(conv(n_colors, n_feats, kernel_size))
        m_body: list[nn.Module] = [
            ResBlock(conv, n_feats, kernel_size, act=nn.ReLU(True), res_scale=res_scale) for _ in range(n_resblocks)
        ]
        m_body.append(conv(n_feats, n_feats, kernel_size))
        self.body = nn.Sequential(*m_body)
        self.tail = nn.Sequential(Upsampler(conv, self.scale, n_feats), conv(n_feats, n_colors, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub_mean(x)
        x = self.head(x)
        res = self.body(x)
        res += x
        x = self.tail(res)
        x = self.add_mean(x)
        return x
