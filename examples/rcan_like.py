"""A small RCAN-like super-resolution network: residual channel-attention blocks with BatchNorm
(docs/own_model.md).

RCAN (Zhang et al. 2018) stacks residual channel-attention blocks (RCAB): conv → ReLU → conv, scaled by
channel attention (global mean over H×W → 1×1 conv → ReLU → 1×1 conv → sigmoid → per-channel gate), plus
the block's input. This version puts a ``BatchNorm2d`` after each block conv, as many mobile variants
trained with BN do; the capture folds each into its conv (calib/batchnorm.py, docs/arithmetic.md §5.7),
so the integer artifact has no BatchNorm op. ``build(scale)`` is the factory ``intsim calibrate --model
examples/rcan_like.py:build`` calls; ``trained_like(scale, seed)`` gives random weights with BatchNorm
statistics that are not the identity (a stand-in for a trained checkpoint). Inputs: RGB in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    """RCAN's channel attention: x · sigmoid(W2 relu(W1 mean_HW(x)))."""

    def __init__(self, ch: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(ch, ch // reduction, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(ch // reduction, ch, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class RCAB(nn.Module):
    """Residual channel-attention block: x + CA(BN(conv(ReLU(BN(conv(x))))))."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.att = ChannelAttention(ch)

    def forward(self, x):
        return x + self.att(self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))


class RcanLike(nn.Module):
    def __init__(self, scale: int, feats: int = 16, blocks: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, feats, 3, padding=1)
        self.body = nn.Sequential(*[RCAB(feats) for _ in range(blocks)])
        self.body_tail = nn.Conv2d(feats, feats, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(feats, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        h = self.head(x)
        return self.up(h + self.body_tail(self.body(h)))


def build(scale: int) -> nn.Module:
    """The factory: ``RcanLike(scale)`` with PyTorch's default (random) init."""
    return RcanLike(scale)


def trained_like(scale: int, seed: int = 0) -> nn.Module:
    """``build(scale)`` with seeded random weights that stand in for a trained checkpoint: BatchNorm
    statistics (mean, var, γ, β) away from their identity defaults, so that folding them changes the convs
    as a trained checkpoint's would, and a head and upsampler that carry the image through (the head
    copies R, G, B into its first three channels, the upsampler conv copies each into its scale² sub-pixel
    channels: nearest-neighbour upsampling) with the random parts scaled down. Its output is then an
    image, so PSNRs are meaningful: the walkthrough's Set5 numbers are this net's, not a trained RCAN's."""
    torch.manual_seed(seed)
    net = build(scale)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        up = net.up[0]
        for conv, gain in ((net.head, 0.1), (net.body_tail, 0.1), (up, 0.05)):
            conv.weight.mul_(gain)
            conv.bias.mul_(gain)
        for c in range(3):
            net.head.weight[c, c, 1, 1] += 1.0
            up.weight[c * scale * scale:(c + 1) * scale * scale, c, 1, 1] += 1.0  # pixel shuffle: c·s² + i·s + j
    return net.eval()
