"""conv2d and conv_transpose2d (docs/arithmetic.md §5), real form in float64.

Two paths:

* **real form** (an op that cannot overflow, §5.4): dequantize the codes to
  float64 values (3.1), dequantize the weights ``w·m_w[co]·2^-k_w``, run
  ``torch.nn.functional.conv2d`` / ``conv_transpose2d`` in float64, add the real
  bias ``B·2^-(k_w+unit_e)`` and store by (1.5). Exact because every partial sum
  is an integer multiple of ``2^-(k_w+unit_e)`` below 2^53 of them.
* **ordered** (an op whose worst-case accumulator, computed here from the
  weights and the codebook, exceeds ``acc_bits``): the hardware accumulators of
  the configured realization (§5.3) are emulated in float64 (they hold
  integers below 2^48), adding terms in the order ky, kx, ci with the overflow
  policy after every addition (one ``acc_overflow`` event per out-of-range
  result). Vectorised over output pixels and channels. The real value is then
  ``Σ_j (scale_j)·acc_j + bias`` with each accumulator's real scale.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from golden.numerics import EXACT, F64, GoldenError, pow2
from golden.ops.codes import CodeTables, code_tables, code_values
from golden.ops.context import OpContext


def _pair(ctx: OpContext, key: str, default=None) -> tuple[int, int]:
    v = ctx.op.attrs.get(key, default)
    if v is None:
        raise GoldenError(f"{ctx.where()}: missing attribute {key!r}")
    if isinstance(v, int):
        return int(v), int(v)
    if len(v) != 2:
        raise GoldenError(f"{ctx.where()}: attribute {key!r} must have 2 entries, got {v!r}")
    return int(v[0]), int(v[1])


def accumulators(cb, realization: str) -> list[tuple[str, int | None, int]]:
    """The accumulators of §5.3 as (kind, segment, a_j) with a_j the §5.4 magnitude factor."""
    if realization == "grid":
        tables = code_tables(cb)
        return [("A", None, int(tables.grid.abs().max()))]
    if realization != "split":
        raise GoldenError(f"unknown realization {realization!r}")
    accs: list[tuple[str, int | None, int]] = []
    for s_i, s in enumerate(cb.segments):
        accs.append(("P", s_i, max(abs(int(s.qmin)), abs(int(s.qmax)))))
        if int(s.origin) != 0:
            accs.append(("Q", s_i, 1))
    return accs


def worst_case(weight: np.ndarray, cb, realization: str) -> dict[str, int]:
    """§5.4: ``W_j = max_co Σ_{taps,ci} |w[co,…]| · a_j`` (Python integers)."""
    w = np.asarray(weight).astype(np.int64)
    per_co = [int(v) for v in np.abs(w).reshape(w.shape[0], -1).sum(axis=1)] if w.size else [0]
    wsum = max(per_co) if per_co else 0
    return {f"{k}{'' if s is None else s}": wsum * a for k, s, a in accumulators(cb, realization)}


def can_overflow(weight: np.ndarray, cb, realization: str, acc_bits: int) -> bool:
    limit = 2 ** (acc_bits - 1) - 1
    return any(W > limit for W in worst_case(weight, cb, realization).values())


def _geometry(ctx: OpContext, transposed: bool, H: int, W: int, weight: np.ndarray, ci: int):
    kh, kw = _pair(ctx, "kernel")
    sh, sw = _pair(ctx, "stride", [1, 1])
    ph, pw = _pair(ctx, "padding", [0, 0])
    if weight.ndim != 4 or weight.shape[1:3] != (kh, kw):
        raise GoldenError(f"{ctx.where()}: weight shape {list(weight.shape)} does not match kernel {[kh, kw]}")
    if transposed:
        dh, dw = 1, 1
        oph, opw = _pair(ctx, "output_padding", [0, 0])
        groups = int(ctx.op.attrs.get("groups", 1))
        if groups != 1:
            raise GoldenError(f"{ctx.where()}: conv_transpose2d supports groups = 1 only")
        Ho = (H - 1) * sh - 2 * ph + kh + oph
        Wo = (W - 1) * sw - 2 * pw + kw + opw
        extra = (oph, opw)
    else:
        dh, dw = _pair(ctx, "dilation", [1, 1])
        groups = int(ctx.op.attrs.get("groups", 1))
        Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        extra = (0, 0)
    if ci != groups * weight.shape[3]:
        raise GoldenError(
            f"{ctx.where()}: input has {ci} channels, weight expects groups·Ci/g = {groups}·{weight.shape[3]}"
        )
    if weight.shape[0] % groups:
        raise GoldenError(f"{ctx.where()}: {weight.shape[0]} output channels not divisible by groups {groups}")
    if Ho <= 0 or Wo <= 0:
        raise GoldenError(f"{ctx.where()}: empty output {Ho}×{Wo} for input {H}×{W}")
    return dict(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, groups=groups, Ho=Ho, Wo=Wo,
                extra=extra)


def _tap_codes(codes: torch.Tensor, g: dict, ky: int, kx: int, transposed: bool) -> torch.Tensor:
    """Input codes read by tap (ky, kx) for every output pixel, −1 where padding (§5.1, §5.5)."""
    H, W = codes.shape[0], codes.shape[1]
    oy = torch.arange(g["Ho"])
    ox = torch.arange(g["Wo"])
    if transposed:
        ny = oy + g["ph"] - ky
        nx = ox + g["pw"] - kx
        vy = (torch.remainder(ny, g["sh"]) == 0) & (ny >= 0) & (torch.div(ny, g["sh"], rounding_mode="floor") < H)
        vx = (torch.remainder(nx, g["sw"]) == 0) & (nx >= 0) & (torch.div(nx, g["sw"], rounding_mode="floor") < W)
        iy = torch.div(ny, g["sh"], rounding_mode="floor")
        ix = torch.div(nx, g["sw"], rounding_mode="floor")
    else:
        iy = oy * g["sh"] - g["ph"] + ky * g["dh"]
        ix = ox * g["sw"] - g["pw"] + kx * g["dw"]
        vy = (iy >= 0) & (iy < H)
        vx = (ix >= 0) & (ix < W)
    iy = iy.clamp(0, H - 1)
    ix = ix.clamp(0, W - 1)
    tap = codes[iy][:, ix]  # [Ho, Wo, Ci]
    valid = (vy[:, None] & vx[None, :]).unsqueeze(-1)
    return torch.where(valid, tap, torch.full_like(tap, -1))


def _ordered(ctx: OpContext, codes: torch.Tensor, cb, tables: CodeTables, weight: np.ndarray, g: dict,
             transposed: bool) -> tuple[dict, list]:
    """Emulate the accumulators in order (ky, kx, ci) with the policy after every addition (§5.4).

    Each step adds ``w[co, ky, kx, ci] · term[pixel]`` to every output pixel and
    channel at once (term = q, 1 or G where the tap's code is in the
    accumulator's segment, else 0: no change). The policy check of a step is
    skipped only when a running bound proves no accumulator can be out of range.
    """
    realization = ctx.numerics.realization
    accs = accumulators(cb, realization)
    Co, kh, kw, cig = weight.shape
    Ho, Wo, groups = g["Ho"], g["Wo"], g["groups"]
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
            tap = _tap_codes(codes, g, ky, kx, transposed)  # [Ho, Wo, Ci]
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


def conv(ctx: OpContext, codes: torch.Tensor, transposed: bool) -> torch.Tensor:
    op = ctx.op
    in_spec = ctx.spec(op.inputs[0])
    if in_spec.kind != "codes" or in_spec.codebook is None:
        raise GoldenError(f"{ctx.where()}: input {op.inputs[0]!r} is not a codes tensor")
    cb = in_spec.codebook
    out_name = op.outputs[0]
    f_o = ctx.frac(out_name)
    weight = ctx.array("weight")
    w_mant = ctx.array("w_mant").astype(np.int64)
    bias = ctx.array("bias").astype(np.int64)
    k_w = int(ctx.attr("w_exp"))
    unit_e, unit_m = int(cb.unit_e), int(cb.unit_m)
    H, W, Ci = codes.shape
    g = _geometry(ctx, transposed, H, W, weight, Ci)
    Co = weight.shape[0]
    if w_mant.shape != (Co,) or bias.shape != (Co,):
        raise GoldenError(f"{ctx.where()}: w_mant and bias must have shape [{Co}]")
    n = k_w + unit_e - f_o  # shift of the integer form (§5.2)
    if not 0 <= n <= 62:
        raise GoldenError(f"{ctx.where()}: shift n = k_w + unit_e − f_o = {n} is outside [0, 62]")
    tables = code_tables(cb)
    codes_l = codes.to(torch.int64)
    if codes_l.numel() and (int(codes_l.min()) < 0 or int(codes_l.max()) >= tables.n):
        raise GoldenError(f"{ctx.where()}: input codes outside [0, {tables.n})")
    bias_real = torch.from_numpy(bias.astype(np.float64)) * pow2(-(k_w + unit_e))  # [Co]
    mw = [int(v) for v in w_mant]
    realization = ctx.numerics.realization
    ordered = ctx.force_ordered or can_overflow(
        weight, cb, realization, int(ctx.numerics.acc_bits))

    if not ordered:
        # envelope guard for the float conv: every partial sum below 2^53 units of 2^-(k_w+unit_e)
        max_g = int(tables.grid.abs().max())
        wabs = np.abs(weight.astype(np.int64)).reshape(Co, -1).sum(axis=1)
        for co in range(Co):
            if int(wabs[co]) * abs(mw[co]) * unit_m * max_g + abs(int(bias[co])) >= EXACT:
                raise GoldenError(f"{ctx.where()}: output channel {co} may reach 2^53 (outside the envelope, §9)")
        x = code_values(codes_l, cb, tables).permute(2, 0, 1).unsqueeze(0)  # [1, Ci, H, W]
        wreal = torch.from_numpy(weight.astype(np.int64).astype(np.float64)) * torch.tensor(
            [float(m) for m in mw], dtype=F64).view(Co, 1, 1, 1) * pow2(-k_w)  # [Co, kh, kw, Ci/g]
        if transposed:
            y = F.conv_transpose2d(x, wreal.permute(3, 0, 1, 2).contiguous(), stride=(g["sh"], g["sw"]),
                                   padding=(g["ph"], g["pw"]), output_padding=g["extra"])
        else:
            y = F.conv2d(x, wreal.permute(0, 3, 1, 2).contiguous(), stride=(g["sh"], g["sw"]),
                         padding=(g["ph"], g["pw"]), dilation=(g["dh"], g["dw"]), groups=g["groups"])
        v = y[0].permute(1, 2, 0) + bias_real  # [Ho, Wo, Co]
        if tuple(v.shape[:2]) != (g["Ho"], g["Wo"]):
            raise GoldenError(f"{ctx.where()}: output {tuple(v.shape[:2])} != expected {(g['Ho'], g['Wo'])}")
    else:
        state, accs = _ordered(ctx, codes_l, cb, tables, weight, g, transposed)
        u = float(unit_m) * pow2(-unit_e)
        wscale = torch.tensor([float(m) for m in mw], dtype=F64) * pow2(-k_w)  # real weight scale per co
        v = torch.zeros((g["Ho"], g["Wo"], Co), dtype=F64)
        for kind, s, _ in accs:
            acc = state[(kind, s)]
            if kind == "A":
                step = u  # A = Σ w·G, real Σ (w·m_w·2^-k_w)(G·u)
            elif kind == "P":
                step = float(cb.segments[s].step) * u
            else:
                step = float(cb.segments[s].origin) * u
            v = v + acc * (wscale * step)
        v = v + bias_real
    return ctx.store(v * pow2(f_o), out_name, n)
