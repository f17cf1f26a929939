"""Symmetric weight quantizers (docs/calibration.md), real-valued.

A b-bit weight quantizer is symmetric with one scale: integer weights
``w_int ∈ [qmin, 2^(b−1)−1]`` where ``qmin`` is ``−(2^(b−1)−1)`` (narrow range, the
paper's methods) or ``−2^(b−1)`` (``full_range``: the whole two's complement code, one more
level for negative weights at no hardware cost), real weight ``w_int · s`` with one scale
per tensor (the paper) or per output channel (option). The clip ``c`` gives the
scale ``s = c / (2^(b−1)−1)``; MinMax uses ``c = max|w|``. The MSE shrink
search of the full method initialises the same clip later.

Export (calib/export.py) snaps ``s`` to the dyadic ``m_w[co]·2^-k_w`` of
arithmetic.md §5.2 and stores ``w_int`` as int8 (b ≤ 8) or int16 (b ≤ 16).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn


def _check_bits(bits: int) -> None:
    if not (2 <= int(bits) <= 16):
        raise ValueError(f"weight bits must be in 2..16, got {bits}")


def _round_half_away(t: torch.Tensor) -> torch.Tensor:
    # Half away from zero keeps the integer weights symmetric under negation.
    return torch.sign(t) * torch.floor(t.abs() + 0.5)


def _round_half_away_ste(t: torch.Tensor) -> torch.Tensor:
    return (_round_half_away(t) - t).detach() + t


@dataclass(frozen=True)
class WeightQuantSpec:
    """Frozen weight quantizer: ``bits`` and ``scale`` (len 1 = per tensor, len C_out = per channel).

    Scales are in the weight's real units per integer step. ``channel_dim`` is
    the output-channel axis of the torch weight (0 for Conv2d).
    """

    bits: int
    scale: tuple[float, ...]
    per_channel: bool = False
    channel_dim: int = 0
    full_range: bool = False  # w_int may be −2^(b−1) (two's complement's extra negative code)

    def __post_init__(self):
        _check_bits(self.bits)
        if any(not (s > 0 and np.isfinite(s)) for s in self.scale):
            raise ValueError("weight scales must be positive and finite")

    @property
    def qmax(self) -> int:
        return 2 ** (int(self.bits) - 1) - 1

    @property
    def qmin(self) -> int:
        return -self.qmax - 1 if self.full_range else -self.qmax

    def scale_tensor(self, w: torch.Tensor) -> torch.Tensor:
        s = torch.tensor(self.scale, dtype=w.dtype, device=w.device)
        if not self.per_channel:
            return s.reshape(())
        shape = [1] * w.dim()
        shape[self.channel_dim] = -1
        return s.reshape(shape)

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """Integer weights (int64 tensor, same shape as ``w``)."""
        q = _round_half_away(w.detach().double() / self.scale_tensor(w.detach().double()))
        return torch.clamp(q, self.qmin, self.qmax).to(torch.int64)

    def fake_quant(self, w: torch.Tensor) -> torch.Tensor:
        return (self.quantize(w).to(w.dtype) * self.scale_tensor(w)).to(w.dtype)

    def to_json(self) -> dict:
        d = {"bits": int(self.bits), "per_channel": self.per_channel,
             "scale": list(self.scale) if self.per_channel else float(self.scale[0])}
        if self.full_range:  # absent = narrow, so artifacts of the paper's methods read as before
            d["full_range"] = True
        return d


def minmax_weight_spec(weight: torch.Tensor, bits: int, per_channel: bool = False, channel_dim: int = 0,
                       full_range: bool = False) -> WeightQuantSpec:
    """MinMax clip: ``s = max|w| / (2^(b−1)−1)`` per tensor or per output channel (``full_range``: the
    smallest scale that keeps every weight in ``[−2^(b−1), 2^(b−1)−1]``, ``max(max w / qmax, −min w / (qmax+1))``).

    An all-zero channel borrows the largest channel scale (any scale represents
    it exactly; a tiny one would only waste mantissa bits at export); an
    all-zero tensor gets scale 1.
    """
    _check_bits(bits)
    w = weight.detach().double()
    qmax = 2 ** (int(bits) - 1) - 1
    wc = w.transpose(0, channel_dim).reshape(w.shape[channel_dim], -1) if per_channel else w.reshape(1, -1)
    # the clip c (= qmax·s) each channel needs; full range: negative weights reach −(qmax+1)·s
    neg = (-wc).clamp(min=0).amax(dim=1) * (qmax / (qmax + 1) if full_range else 1.0)
    amax = torch.maximum(wc.clamp(min=0).amax(dim=1), neg)
    top = float(amax.max())
    scales = [(float(a) if a > 0 else (top if top > 0 else qmax)) / qmax for a in amax]
    return WeightQuantSpec(int(bits), tuple(scales), per_channel, channel_dim, full_range)


class WeightQuantizer(nn.Module):
    """Trainable symmetric weight fake quantizer with a learned clip (per tensor or per channel).

    With :meth:`learn_rounding` it also carries a per-weight rounding offset
    ``v`` (SignRound/AdaRound-style learned rounding): the integer weight is
    ``clamp(round_half_away(w/s + v), qmin, qmax)`` instead of ``round(w/s)``. ``v``
    starts at 0 (= plain rounding) and the reconstruction (calib/reconstruct.py)
    keeps it in [−0.5, 0.5], so each weight only chooses between floor and ceil.
    """

    def __init__(self, spec: WeightQuantSpec):
        super().__init__()
        self.bits = int(spec.bits)
        self.per_channel = spec.per_channel
        self.channel_dim = spec.channel_dim
        self.full_range = spec.full_range
        self.clip = nn.Parameter(torch.tensor(spec.scale, dtype=torch.float64) * spec.qmax)
        self.register_parameter("offset", None)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def qmin(self) -> int:
        return -self.qmax - 1 if self.full_range else -self.qmax

    def spec(self) -> WeightQuantSpec:
        return WeightQuantSpec(self.bits, tuple(float(c) / self.qmax for c in self.clip.detach()),
                               self.per_channel, self.channel_dim, self.full_range)

    def _scale(self, w: torch.Tensor) -> torch.Tensor:
        s = self.clip.double() / self.qmax
        if self.per_channel:
            shape = [1] * w.dim()
            shape[self.channel_dim] = -1
            return s.reshape(shape)
        return s.reshape(())

    def learn_rounding(self, weight: torch.Tensor, w_int: torch.Tensor | None = None) -> None:
        """Add the rounding offset ``v`` (float64, shape of ``weight``): 0, or the offset that reproduces the
        given integer weights ``w_int`` exactly under the current clip."""
        w = weight.detach().double()
        init = torch.zeros_like(w) if w_int is None else w_int.double() - w / self._scale(w)
        self.offset = nn.Parameter(init)

    @torch.no_grad()
    def integer_weights(self, weight: torch.Tensor) -> torch.Tensor:
        """The int64 integer weights this quantizer gives ``weight`` (what export stores)."""
        w = weight.detach().double()
        r = w / self._scale(w)
        if self.offset is not None:
            r = r + self.offset.detach()
        return torch.clamp(_round_half_away(r), self.qmin, self.qmax).to(torch.int64)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # float64 inside, so rounding ties resolve exactly as WeightQuantSpec.quantize (which export uses).
        dtype = w.dtype
        w = w.double()
        s = self._scale(w)
        r = w / s
        if self.offset is not None:
            r = r + self.offset
        return (torch.clamp(_round_half_away_ste(r), self.qmin, self.qmax) * s).to(dtype)


#: shrink factors of the MSE clip search (docs/calibration.md): c = α·max|w|, α ∈ {0.30, 0.31, …, 1.00}.
DEFAULT_SHRINKS = tuple(round(0.30 + 0.01 * i, 2) for i in range(71))


@torch.no_grad()
def mse_weight_spec(weight: torch.Tensor, bits: int, per_channel: bool = False, channel_dim: int = 0,
                    shrinks=DEFAULT_SHRINKS, full_range: bool = False) -> WeightQuantSpec:
    """Symmetric clip ``c = α·max|w|`` with α minimising the quantization MSE (per tensor or per channel).

    The search is exhaustive over ``shrinks`` (ties → the larger α). A channel's
    MSE is its own for per-channel scales; the whole tensor's otherwise.
    """
    base = minmax_weight_spec(weight, bits, per_channel, channel_dim, full_range)
    w = weight.detach().double()
    qmax, qmin = base.qmax, base.qmin
    if per_channel:
        wc = w.transpose(0, channel_dim).reshape(w.shape[channel_dim], -1)
        amax = torch.tensor(base.scale, dtype=torch.float64) * qmax
    else:
        wc = w.reshape(1, -1)
        amax = torch.tensor(base.scale, dtype=torch.float64) * qmax
    best = torch.full((wc.shape[0],), float("inf"), dtype=torch.float64)
    best_c = amax.clone()
    for a in sorted(shrinks, reverse=True):
        c = amax * float(a)
        s = (c / qmax).unsqueeze(1)
        q = torch.clamp(_round_half_away(wc / s), qmin, qmax) * s
        err = ((q - wc) ** 2).mean(dim=1)
        better = err < best
        best = torch.where(better, err, best)
        best_c = torch.where(better, c, best_c)
    return WeightQuantSpec(int(bits), tuple(float(c) / qmax for c in best_c), per_channel, channel_dim, full_range)
