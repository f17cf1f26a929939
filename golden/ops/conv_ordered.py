"""Ordered accumulation of a convolution (docs/arithmetic.md §5.3, §5.4), real form in float64.

Used for an op whose worst-case accumulator exceeds ``acc_bits`` (or with
``force_ordered``): the hardware accumulators of the configured realization are
emulated in float64 (integers below 2^48), adding terms in the order ky, kx, ci
with the overflow policy after every addition. Each step adds
``w[co, ky, kx, ci] · term[pixel]`` to every output pixel and channel of the band at
once (term = q, 1 or G where the tap's code is in the accumulator's segment, else 0:
no change). The policy check of a step is skipped only when a running bound proves
no accumulator can be out of range.
"""
from __future__ import annotations

import numpy as np
import torch

from golden.numerics import F64, pow2
from golden.ops.context import OpContext


def ordered_band(ctx: OpContext, taps: list[torch.Tensor], cb, tables, weight: np.ndarray, w_mant: np.ndarray,
                 bias: np.ndarray, g: dict, k_w: int) -> torch.Tensor:
    """The real value ``v`` of the band's outputs from its tap codes (``taps[ky·kw + kx]``: ``[rows, Wo, Ci]``,
    −1 where padding)."""
    from golden.ops.conv import accumulators

    unit_e, unit_m = int(cb.unit_e), int(cb.unit_m)
    state, accs = _accumulate(ctx, taps, cb, tables, weight, g, accumulators(cb, ctx.numerics.realization))
    u = float(unit_m) * pow2(-unit_e)
    wscale = torch.tensor([float(int(m)) for m in w_mant], dtype=F64) * pow2(-k_w)  # real weight scale per co
    rows, Wo = taps[0].shape[0], taps[0].shape[1]
    v = torch.zeros((rows, Wo, weight.shape[0]), dtype=F64)
    for kind, s, _ in accs:
        acc = state[(kind, s)]
        if kind == "A":
            step = u  # A = Σ w·G, real Σ (w·m_w·2^-k_w)(G·u)
        elif kind == "P":
            step = float(cb.segments[s].step) * u
        else:
            step = float(cb.segments[s].origin) * u
        v = v + acc * (wscale * step)
    return v + torch.from_numpy(bias.astype(np.float64)) * pow2(-(k_w + unit_e))


def _accumulate(ctx: OpContext, taps: list[torch.Tensor], cb, tables, weight: np.ndarray, g: dict,
                accs: list) -> tuple[dict, list]:
    """Emulate the accumulators in order (ky, kx, ci) with the policy after every addition (§5.4).

    Each step adds ``w[co, ky, kx, ci] · term[pixel]`` to every output pixel and
    channel at once (term = q, 1 or G where the tap's code is in the
    accumulator's segment, else 0: no change). The policy check of a step is
    skipped only when a running bound proves no accumulator can be out of range.
    """
    realization = ctx.numerics.realization
    Co, kh, kw, cig = weight.shape
    Ho, Wo, groups = taps[0].shape[0], taps[0].shape[1], g["groups"]
    limit = pow2(int(ctx.numerics.acc_bits) - 1) - 1.0
    wf = torch.from_numpy(weight.astype(np.int64).astype(np.float64))
    state = {(k, s): torch.zeros((Ho, Wo, Co), dtype=F64) for k, s, _ in accs}
    bound = {key: 0.0 for key in state}  # ≥ max |accumulator| over all pixels and channels
    seg_t = tables.seg
    q_f = tables.q.to(F64)
    G_f = tables.grid.to(F64)
    co_per_group = Co // groups
    group_of_co = torch.arange(Co) // co_per_group

    def add(key, term: torch.Tensor, wv: torch.Tensor, wmax: float, what: str):
        tmax = float(term.abs().max())
        if tmax == 0.0:
            return  # no tap of this accumulator at this step (or only zero terms): nothing changes
        acc = state[key]
        acc.addcmul_(term, wv)  # acc += term · w, broadcast over pixels and channels
        bound[key] += tmax * wmax
        if bound[key] > limit:
            acc = ctx.ovf_acc(acc, what)
            state[key] = acc
            bound[key] = float(acc.abs().max())

    for ky in range(kh):
        for kx in range(kw):
            tap = taps[ky * kw + kx]  # [rows, Wo, Ci]
            for ci in range(cig):
                if groups == 1:
                    c = tap[:, :, ci:ci + 1]  # [Ho, Wo, 1], broadcast over Co
                else:
                    c = tap[:, :, group_of_co * cig + ci]  # [Ho, Wo, Co]
                valid = c >= 0
                cc = c.clamp(min=0)
                wv = wf[:, ky, kx, ci].contiguous()  # [Co]
                wmax = float(wv.abs().max())
                if wmax == 0.0:
                    continue
                if realization == "grid":
                    add(("A", None), torch.where(valid, G_f[cc], 0.0), wv, wmax, "A")
                    continue
                seg = torch.where(valid, seg_t[cc], torch.full_like(cc, -1))
                q = q_f[cc]
                for s_i, s in enumerate(cb.segments):
                    m = seg == s_i
                    add(("P", s_i), torch.where(m, q, 0.0), wv, wmax, f"P{s_i}")
                    if int(s.origin) != 0:
                        add(("Q", s_i), m.to(F64), wv, wmax, f"Q{s_i}")
    return state, accs


