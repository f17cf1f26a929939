"""Image conversions and stream ops (docs/arithmetic.md §6), real forms in float64.

Tensors are HWC float64 holding integers: a stream holds ``X`` (real value
``X·2^-f``), an image holds ``P``. Each op forms its exact real value ``v`` and,
where the spec stores by (1.5), rounds ``v·2^f_o`` once and applies the stream
overflow policy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from golden.numerics import EXACT, F64, GoldenError, check_exact, extremes, pow2, rnd, rnd_shift, signed_bounds
from golden.ops.context import OpContext


def _shift(ctx: OpContext, n: int, what: str) -> int:
    if not 0 <= n <= 62:
        raise GoldenError(f"{ctx.where()}: shift {what} = {n} is outside [0, 62]")
    return n


def _same_frac(ctx: OpContext) -> int:
    f_i = ctx.frac(ctx.op.inputs[0])
    for o in ctx.op.outputs:
        if ctx.frac(o) != f_i:
            raise GoldenError(f"{ctx.where()}: output {o!r} frac {ctx.frac(o)} must equal the input frac {f_i}")
    return f_i


def _per_channel(ctx: OpContext, role: str, C: int) -> torch.Tensor:
    a = ctx.farray(role)
    if tuple(a.shape) != (C,):
        raise GoldenError(f"{ctx.where()}: array {role!r} has shape {list(a.shape)}, expected [{C}]")
    return a


# -- §6.1 / §6.2 -------------------------------------------------------------

def image_in(ctx: OpContext, ins):
    (P,) = ins
    out = ctx.op.outputs[0]
    f_o = ctx.frac(out)
    e = int(ctx.attr("exp"))
    n = _shift(ctx, e - f_o, "e − f_o")
    C = P.shape[2]
    m = _per_channel(ctx, "mult", C)
    o = _per_channel(ctx, "offset", C)
    v = P * (m * pow2(-e)) + o * pow2(-e)  # real v = P·a_c + b_c
    return [ctx.store(v * pow2(f_o), out, n)]


def image_out(ctx: OpContext, ins):
    (X,) = ins
    f_i = ctx.frac(ctx.op.inputs[0])
    e = int(ctx.attr("exp"))
    n = _shift(ctx, f_i + e, "f_i + e")
    C = X.shape[2]
    m = _per_channel(ctx, "mult", C)
    o = _per_channel(ctx, "offset", C)
    v = (X * pow2(-f_i)) * (m * pow2(-e)) + o * pow2(-e)  # real v = x·a_c + b_c
    check_exact(v, n, ctx.where(ctx.op.outputs[0]))
    return [ctx.saturate_count(rnd(v, ctx.numerics.rounding), 0.0, 255.0)]


# -- §6.3 – §6.7 -------------------------------------------------------------

def add(ctx: OpContext, ins):
    a, b = ins
    if a.shape != b.shape:
        raise GoldenError(f"{ctx.where()}: operand shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    fa, fb = ctx.frac(ctx.op.inputs[0]), ctx.frac(ctx.op.inputs[1])
    out = ctx.op.outputs[0]
    f_o = ctx.frac(out)
    n = _shift(ctx, max(fa, fb, f_o) - f_o, "F − f_o")
    # t = (a·2^-fa + b·2^-fb)·2^f_o in two passes: scaling by a power of two commutes with the one rounding
    # of the sum (no overflow or subnormal at these magnitudes), and b·2^(f_o−fb) is exact, fused or not
    t = torch.mul(a, pow2(f_o - fa)).add_(b, alpha=pow2(f_o - fb))
    return [ctx.store(t, out, n)]


def concat(ctx: OpContext, ins):
    """§6.4: each part stored at the output frac, ``X_o = OVF(RND(X·2^(f_o − f_i)))``, into its channels.

    The store of one part is non-decreasing in ``X`` (a positive power-of-two scale, then a monotone
    rounding), so the extremes of ``X`` give the extremes of the result: the envelope and the overflow
    policy are decided on them, and the element-wise policy runs only when an extreme is out of range.
    With ``f_o ≥ f_i`` the scaled value is an integer (``X`` holds integers) and RND is the identity."""
    out = ctx.op.outputs[0]
    f_o = ctx.frac(out)
    H, W = ins[0].shape[:2]
    y = torch.empty((H, W, sum(X.shape[2] for X in ins)), dtype=F64)
    c0 = 0
    for name, X in zip(ctx.op.inputs, ins):
        f_i = ctx.frac(name)
        if X.shape[:2] != ins[0].shape[:2]:
            raise GoldenError(f"{ctx.where()}: input {name!r} spatial size {tuple(X.shape[:2])} differs")
        n = _shift(ctx, max(f_i, f_o) - f_o, f"F_i − f_o for {name}")
        part = y[:, :, c0:c0 + X.shape[2]]
        c0 += X.shape[2]
        if X.numel() == 0:
            continue
        lo, hi = extremes(X)
        scale = pow2(f_o - f_i)
        check_exact(torch.tensor([lo * scale, hi * scale], dtype=F64), n, ctx.where(out))
        if n == 0:
            torch.mul(X, scale, out=part)
        else:
            part.copy_(rnd(X * scale, ctx.numerics.rounding))
        ends = rnd(torch.tensor([lo * scale, hi * scale], dtype=F64), ctx.numerics.rounding)
        blo, bhi = signed_bounds(ctx.numerics.stream_bits)
        if float(ends[0]) < blo or float(ends[1]) > bhi:  # some element is out of range: the policy, per element
            part.copy_(ctx.ovf_stream(part.clone(), out))
    return [y]


def split(ctx: OpContext, ins):
    (X,) = ins
    _same_frac(ctx)
    sizes = [int(s) for s in ctx.attr("sizes")]
    if sum(sizes) != X.shape[2] or len(sizes) != len(ctx.op.outputs):
        raise GoldenError(f"{ctx.where()}: sizes {sizes} do not split {X.shape[2]} channels into "
                          f"{len(ctx.op.outputs)} outputs")
    return list(torch.split(X, sizes, dim=2))


def relu(ctx: OpContext, ins):
    (X,) = ins
    _same_frac(ctx)
    return [torch.clamp(X, min=0.0)]


def pad(ctx: OpContext, ins):
    """§5.8: reflect / replicate padding of a codes tensor (torch's own padding, on N×C×H×W)."""
    (X,) = ins
    mode = str(ctx.attr("mode"))
    ph, pw = (int(p) for p in ctx.attr("padding"))
    if mode not in ("reflect", "replicate"):
        raise GoldenError(f"{ctx.where()}: padding mode {mode!r}")
    y0, H = ctx.windows[0] if ctx.windows is not None else (0, X.shape[0])
    W = X.shape[1]
    if mode == "reflect" and (ph >= H or pw >= W):
        raise GoldenError(f"{ctx.where()}: reflect padding ({ph}, {pw}) needs a tensor larger than {H}×{W} (§5.8)")
    a, b = ctx.band if ctx.band is not None else (0, H + 2 * ph)
    rows = torch.from_numpy(pad_rows(mode, H, ph)[a:b] - y0)  # the band's output rows, from its input window
    y = F.pad(X[rows].permute(2, 0, 1)[None], (pw, pw, 0, 0), mode=mode) if pw else X[rows][None].permute(0, 3, 1, 2)
    return [y[0].permute(1, 2, 0).contiguous()]


def pad_rows(mode: str, size: int, p: int) -> np.ndarray:
    """§5.8: the input index of each of the ``size + 2p`` padded positions (reflect: mirror without
    repeating the edge; replicate: repeat the edge)."""
    i = np.arange(-p, size + p, dtype=np.int64)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    i = np.abs(i)
    return np.where(i > size - 1, 2 * (size - 1) - i, i)


def clamp(ctx: OpContext, ins):
    """§6.16: x_o = min(max(x, lo·2^-f), hi·2^-f), evaluated on the integers X (same frac)."""
    (X,) = ins
    _same_frac(ctx)
    lo, hi = int(ctx.attr("lo")), int(ctx.attr("hi"))
    if lo > hi:
        raise GoldenError(f"{ctx.where()}: clamp bounds lo {lo} > hi {hi}")
    return [torch.minimum(torch.maximum(X, torch.tensor(float(lo), dtype=F64)), torch.tensor(float(hi), dtype=F64))]


def _slope(ctx: OpContext, X: torch.Tensor, M: torch.Tensor | float, k: int):
    _same_frac(ctx)
    _shift(ctx, k, "k")
    out = ctx.op.outputs[0]
    if ctx.numerics.rounding == "half_up" and k >= 1 and X.numel():
        # ⌊X·M·2^-k + ½⌋ in one addcmul and a floor: X·M is an integer below 2^53 (bounded by max|X|·max|M|,
        # else refused as below), plus 2^(k−1), times 2^-k: every step exact
        mmax = float(M.abs().max()) if torch.is_tensor(M) else abs(M)
        lo, hi = extremes(X)
        if max(-lo, hi) * mmax + pow2(k - 1) < EXACT:
            t = torch.mul(X, M * pow2(-k) if torch.is_tensor(M) else M * pow2(-k)).add_(0.5).floor_()
            if (float(M.max()) if torch.is_tensor(M) else M) * pow2(-k) <= 1.0:
                # slopes a ≤ 1: for X ≥ 0, t = ⌊aX + ½⌋ ≤ ⌊X + ½⌋ = X; for X < 0, aX ≥ X so t ≥ X. Hence
                # max(X, t) is X where X ≥ 0 and t where X < 0: the select below in one pass
                y = torch.maximum(t, X, out=t)
                blo, bhi = signed_bounds(ctx.numerics.stream_bits)
                if (float(M.min()) if torch.is_tensor(M) else M) >= 0 and lo >= blo and hi <= bhi:
                    return [y]  # slopes in [0, 1]: y lies in [min(X, 0), max(X, 0)], in range: no overflow (§4)
                return [ctx.ovf_stream(y, out)]
            return [ctx.ovf_stream(torch.where(X < 0, t, X), out)]
    neg = X < 0
    t = torch.where(neg, X * M * pow2(-k), torch.zeros_like(X))  # (x·α)·2^f
    check_exact(t, k, ctx.where(out))
    y = torch.where(neg, rnd(t, ctx.numerics.rounding), X)
    return [ctx.ovf_stream(y, out)]


def leaky_relu(ctx: OpContext, ins):
    (X,) = ins
    return _slope(ctx, X, float(int(ctx.attr("mult"))), int(ctx.attr("shift")))


def prelu(ctx: OpContext, ins):
    (X,) = ins
    return _slope(ctx, X, _per_channel(ctx, "mult", X.shape[2]), int(ctx.attr("shift")))


# -- §6.8 – §6.10 ------------------------------------------------------------

def _band_rows(ctx: OpContext, y: torch.Tensor, r: int) -> torch.Tensor:
    """The output rows [a, b) of the band from ``y``, computed on input rows from ``y0`` (output ``y0·r``)."""
    if ctx.band is None:
        return y
    a, b = ctx.band
    y0 = ctx.windows[0][0] * r
    return y[a - y0:b - y0]


def pixel_shuffle(ctx: OpContext, ins):
    (X,) = ins
    _same_frac(ctx)
    r = int(ctx.attr("factor"))
    if r < 1 or X.shape[2] % (r * r):
        raise GoldenError(f"{ctx.where()}: {X.shape[2]} channels not divisible by factor² = {r * r}")
    y = F.pixel_shuffle(X.permute(2, 0, 1).unsqueeze(0), r)
    return [_band_rows(ctx, y[0].permute(1, 2, 0), r).contiguous()]


def upsample_nearest(ctx: OpContext, ins):
    (X,) = ins
    _same_frac(ctx)
    r = int(ctx.attr("factor"))
    if r < 1:
        raise GoldenError(f"{ctx.where()}: factor must be ≥ 1")
    return [_band_rows(ctx, X.repeat_interleave(r, dim=0).repeat_interleave(r, dim=1), r)]


def bilinear_taps(size: int, r: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """§6.10 per output index: (i0, i1, weight of i0, weight of i1); weights sum to 2r."""
    i0s, i1s, w0s, w1s = [], [], [], []
    for y in range(size * r):
        t = 2 * y + 1 - r
        if t < 0:
            i0, a = 0, 0
        else:
            i0 = t // (2 * r)
            a = t - 2 * r * i0
        i1 = min(i0 + 1, size - 1)
        i0s.append(i0)
        i1s.append(i1)
        w0s.append(2 * r - a)
        w1s.append(a)
    return i0s, i1s, w0s, w1s


def upsample_bilinear(ctx: OpContext, ins):
    """Real form ``v = (Σ wy·wx·x)·M·2^-k`` with the op's dyadic reciprocal ``M·2^-k`` of (2r)²."""
    (X,) = ins
    f = _same_frac(ctx)
    r = int(ctx.attr("factor"))
    M = int(ctx.attr("mult"))
    k = _shift(ctx, int(ctx.attr("shift")), "k")
    if r < 1:
        raise GoldenError(f"{ctx.where()}: factor must be ≥ 1")
    y0, H = ctx.windows[0] if ctx.windows is not None else (0, X.shape[0])
    a, b = ctx.band if ctx.band is not None else (0, H * r)
    W = X.shape[1]
    i0, i1, w0, w1 = (torch.tensor(v)[a:b] for v in bilinear_taps(H, r))
    rows = X[i0 - y0] * w0.to(F64).view(-1, 1, 1) + X[i1 - y0] * w1.to(F64).view(-1, 1, 1)
    j0, j1, v0, v1 = (torch.tensor(v) for v in bilinear_taps(W, r))
    S = rows[:, j0] * v0.to(F64).view(1, -1, 1) + rows[:, j1] * v1.to(F64).view(1, -1, 1)  # Σ wy·wx·X
    out = ctx.op.outputs[0]
    v = S * pow2(-f) * float(M) * pow2(-k)
    return [ctx.store(v * pow2(f), out, k)]


# -- §6.11 / §6.12 -----------------------------------------------------------

def _recip(N: int, k: int) -> int:
    """M_N = ⌊(2^(k+1) + N) / (2N)⌋ (§6.11), an integer function of the spec."""
    return (2 ** (k + 1) + N) // (2 * N)


#: elements of one float64 chunk of a pool's input (pools read a whole materialized tensor)
POOL_CHUNK = 1 << 22


def _chunks(X):
    """A pool input (a float64 tensor, or a materialized integer numpy array) as float64 row chunks."""
    if torch.is_tensor(X):
        yield X
        return
    rows = max(1, POOL_CHUNK // max(1, X.shape[1] * X.shape[2]))
    for y in range(0, X.shape[0], rows):
        yield torch.from_numpy(X[y:y + rows].astype(np.float64))


def _passes(X):
    """``() -> chunks`` for the passes of a pool: a tensor of at most one chunk is converted once."""
    if torch.is_tensor(X) or X.size > POOL_CHUNK:
        return lambda: _chunks(X)
    whole = list(_chunks(X))
    return lambda: whole


def _mean(ctx: OpContext, chunks, shape, k: int, out: str) -> tuple[torch.Tensor, float]:
    """The stored mean of a pool input (``chunks()``: its float64 row chunks) and ``max|X|``."""
    H, W, C = shape
    N = H * W
    if N == 0:
        raise GoldenError(f"{ctx.where()}: empty input")
    s = torch.zeros(C, dtype=F64)
    m = 0.0
    for c in chunks():
        lo, hi = extremes(c)
        m = max(m, -lo, hi)
        s += c.sum(dim=(0, 1))  # exact: every partial sum is below max|X|·N < 2^53 (checked below)
    if m * (pow2(k) + N) >= EXACT:
        raise GoldenError(f"{ctx.where()}: image too large for the pooling reciprocal "
                          f"(max|X|·(2^k + N) reaches 2^53, arithmetic.md §6.11)")
    t = s.view(1, 1, C) * float(_recip(N, k)) * pow2(-k)  # (Σ x·M_N·2^-k)·2^f
    return ctx.store(t, out, k), m


def mean_pool(ctx: OpContext, ins):
    (X,) = ins
    _same_frac(ctx)
    k = _shift(ctx, int(ctx.attr("shift")), "k")
    return [_mean(ctx, _passes(X), X.shape, k, ctx.op.outputs[0])[0]]


def _isqrt(V: torch.Tensor) -> torch.Tensor:
    """⌊√V⌋ for integer-valued 0 ≤ V < 2^53 (float sqrt, then exact integer correction)."""
    r = torch.floor(torch.sqrt(V))
    r = r - (r * r > V).to(F64)
    r = r + ((r + 1) * (r + 1) <= V).to(F64)
    return r


def std_pool(ctx: OpContext, ins):
    (X,) = ins
    _same_frac(ctx)
    k = _shift(ctx, int(ctx.attr("shift")), "k")
    p = _shift(ctx, int(ctx.attr("pre_shift")), "p")
    out = ctx.op.outputs[0]
    H, W, C = X.shape
    N = H * W
    chunks = _passes(X)
    mu, xmax = _mean(ctx, chunks, X.shape, k, out)  # μ = mean_pool(X), its overflow counted here
    bound = xmax + float(mu.abs().max())  # ≥ |X − μ|, an integer below 2^53 (μ is a stream value)
    ss = torch.zeros(C, dtype=F64)
    m = 0.0
    for c in chunks():  # a second pass over the input: the deviations need the whole-image mean
        d2 = rnd_shift(torch.sub(c, mu), p, ctx.numerics.rounding, bound)  # d = R(X − μ, p), §2
        d2.mul_(d2)
        m = max(m, float(d2.max()))
        ss += d2.sum(dim=(0, 1))
    if m * (pow2(k) + N) >= EXACT:
        raise GoldenError(f"{ctx.where()}: image too large for the variance "
                          f"(max d²·(2^k + N) reaches 2^53, arithmetic.md §6.12)")
    V = rnd(ss.view(1, 1, C) * float(_recip(N, k)) * pow2(-k), ctx.numerics.rounding)
    return [ctx.ovf_stream(_isqrt(V) * pow2(p), out)]


# -- §6.13 / §6.14 -----------------------------------------------------------

def lut(ctx: OpContext, ins):
    """§6.13 / §6.17: index i = clamp(RND(x·2^k_lut), imin, imax), then the table (any function)."""
    (X,) = ins
    f_i = ctx.frac(ctx.op.inputs[0])
    out = ctx.op.outputs[0]
    k_lut = int(ctx.attr("lut_exp"))
    imin, imax = int(ctx.attr("imin")), int(ctx.attr("imax"))
    table = ctx.farray("lut")
    if imax < imin or tuple(table.shape) != (imax - imin + 1,):
        raise GoldenError(f"{ctx.where()}: lut has shape {list(table.shape)}, expected [{imax - imin + 1}]")
    t = X * pow2(-f_i) * pow2(k_lut)  # x·2^k_lut
    check_exact(t, max(0, f_i - k_lut), ctx.where(out))
    i = ctx.saturate_count(rnd(t, ctx.numerics.rounding), float(imin), float(imax))
    y = table[(i - imin).to(torch.int64)]
    return [ctx.ovf_stream(y, out)]


def mul(ctx: OpContext, ins):
    X, G = ins
    if G.shape[0] != 1 or G.shape[1] != 1 or G.shape[2] != X.shape[2]:
        raise GoldenError(f"{ctx.where()}: gain shape {tuple(G.shape)} is not 1×1×{X.shape[2]}")
    fx, fg = ctx.frac(ctx.op.inputs[0]), ctx.frac(ctx.op.inputs[1])
    out = ctx.op.outputs[0]
    f_o = ctx.frac(out)
    n = _shift(ctx, fx + fg - f_o, "f_x + f_g − f_o")
    # t = (X·2^-fx)·(G·2^-fg)·2^f_o in one pass over X: the power-of-two scales move onto the 1×1×C gain
    # (exact) and commute with the product's one rounding
    return [ctx.store(torch.mul(X, G * pow2(f_o - fx - fg)), out, n)]

