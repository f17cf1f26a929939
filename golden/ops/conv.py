"""conv2d and conv_transpose2d (docs/arithmetic.md §5), real form in float64.

Two paths, both on a band of output rows ``[a, b)`` (the whole output when not banded):

* **real form as a GEMM** (an op that cannot overflow, §5.4). In integer units the
  real form (5.2) is ``v = (m_w·unit_m·Σ w·G + B)·2^-(k_w+unit_e)``: ``w`` the integer
  weights, ``G`` the grid value of each tap's code (0 for padding). The sum ``Σ w·G``
  is one float64 matrix product: the taps of every output pixel are gathered into
  a row (im2col over a zero-padded, for a transposed conv zero-inserted, copy of
  the input rows the band reads), times the weights as a ``[taps·Ci, Co]`` matrix
  (``torch.matmul``, one ``bmm`` per group). **Exactness (the 2^53 argument):** every
  product and every partial sum, in whatever order and blocking the BLAS library
  adds them (FMA included), is an integer of magnitude at most
  ``W_co = Σ_{taps,ci} |w[co]|·max|G|``; float64 holds every integer below 2^53
  exactly, so each addition is exact and the sum is the same integer as any
  ordered sum. The op is refused unless ``W_co·|m_w|·unit_m + |B| < 2^53`` for
  every channel, which also makes ``I = Σ w·G·m_w·unit_m + B`` exact. Then
  ``v·2^f_o = I·2^-n`` is rounded once (1.5).
* **ordered** (an op whose worst-case accumulator, computed here from the
  weights and the codebook, exceeds ``acc_bits``, or ``force_ordered``): the
  hardware accumulators of the configured realization (§5.3) are emulated in
  float64 (they hold integers below 2^48), adding terms in the order ky, kx, ci
  with the overflow policy after every addition (one ``acc_overflow`` event per
  out-of-range result), vectorised over output pixels and channels
  (:mod:`golden.ops.conv_ordered`). The real value is ``Σ_j scale_j·acc_j + bias``.

Banding: output row ``o`` reads input rows ``o·s − p + ky·d`` (§5.1), for a
transposed conv ``(o + p − ky)/s`` where that is an integer (§5.5); the caller
passes a window of input rows that covers them, with the input's full height, so
padding is decided against the whole image and a band equals the same rows of the
unbanded output.
"""
from __future__ import annotations

import numpy as np
import torch

from golden.numerics import EXACT, F64, GoldenError, extremes, pow2, rnd_shift
from golden.ops.codes import code_tables
from golden.ops.context import OpContext
from golden.ops.conv_ordered import ordered_band

#: float64 bytes of one im2col block; output rows are processed in blocks of at most this size
COLS_BYTES = 48 << 20
#: fewest input channels for the shifted-view GEMM (below, one im2col product is faster than per-tap ones)
SHIFTED_MIN_CI = 16


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


def axis_taps(a: int, b: int, size: int, k: int, s: int, p: int, d: int, transposed: bool):
    """One axis of output indices ``[a, b)``: ``(src, offsets, step)``.

    ``src[i]`` (an int64 numpy array: index arithmetic on a few hundred entries) is the input index at
    position ``i`` of the padded (transposed: zero-inserted) input axis the band reads, −1 for padding or
    an inserted zero; tap ``t`` of output ``a + j`` reads position ``offsets[t] + j·step``.
    """
    if not transposed:
        r = np.arange(a * s - p, a * s - p + (b - 1 - a) * s + (k - 1) * d + 1, dtype=np.int64)
        return np.where((r >= 0) & (r < size), r, -1), [t * d for t in range(k)], s
    j = np.arange(a + p - (k - 1), b + p, dtype=np.int64)  # (o + p − t) for every o in [a, b) and tap t
    n = j // s
    ok = (j % s == 0) & (n >= 0) & (n < size)
    return np.where(ok, n, -1), [k - 1 - t for t in range(k)], 1


def _run(src: np.ndarray, valid: np.ndarray) -> tuple[int, int, int] | None:
    """``(first position, first source, length)`` when the valid entries of ``src`` are one run of consecutive
    sources at consecutive positions (plain zero padding), else None (zero insertion, scattered rows)."""
    pos = np.flatnonzero(valid)
    if pos.size == 0:
        return None
    p0, n = int(pos[0]), int(pos.size)
    if int(pos[-1]) - p0 + 1 != n or int(src[p0 + n - 1]) - int(src[p0]) + 1 != n:
        return None
    return p0, int(src[p0]), n


def padded(x: torch.Tensor, y0: int, rows: np.ndarray, cols: np.ndarray, fill: float,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` (input rows from ``y0``) gathered at input rows ``rows`` and columns ``cols``; −1 → ``fill``.

    A row outside the window is one no tap of the band reads (between the taps of a dilated kernel:
    the window holds every row some tap reads, :func:`golden.bands.row_needs`); it is filled too.
    Plain padding is one fill and one block copy; zero insertion (transposed) a gather. ``dtype``: the
    result's (default ``x``'s; ``x`` holds integers, so converting float64 to an integer type is exact)."""
    dtype = x.dtype if dtype is None else dtype
    ri = rows - y0
    rv = (rows >= 0) & (ri >= 0) & (ri < x.shape[0])
    cv = cols >= 0
    shape = (rows.size, cols.size, x.shape[2])
    if x.shape[0] == 0 or not rv.any() or not cv.any():  # taps read no input: all padding
        return torch.full(shape, fill, dtype=dtype)
    rr, rc = _run(ri, rv), _run(cols, cv)
    if rr is not None and rc is not None:
        P = torch.full(shape, fill, dtype=dtype)
        block = x[rr[1]:rr[1] + rr[2], rc[1]:rc[1] + rc[2]]
        P[rr[0]:rr[0] + rr[2], rc[0]:rc[0] + rc[2]] = block
        return P
    P = x.index_select(0, torch.from_numpy(np.where(rv, ri, 0))).index_select(
        1, torch.from_numpy(np.where(cv, cols, 0))).to(dtype)
    if not (rv.all() and cv.all()):
        P = P.masked_fill_(torch.from_numpy(~(rv[:, None] & cv[None, :]))[:, :, None], fill)
    return P


def tap_views(P: torch.Tensor, ry, rx, nb: int, Wo: int) -> list[torch.Tensor]:
    """Per tap (ky, kx), in that order: the ``[nb, Wo, Ci]`` view of ``P`` it reads."""
    (_, oy, sy), (_, ox, sx) = ry, rx
    return [P[y:y + (nb - 1) * sy + 1:sy, x:x + (Wo - 1) * sx + 1:sx] for y in oy for x in ox]


def _from_encoder(ctx: OpContext) -> bool:
    """True when the conv's input codes are produced by an ``encode`` op of the graph."""
    if "from_encoder" not in ctx.cache:
        name = ctx.op.inputs[0]
        ctx.cache["from_encoder"] = any(op.op == "encode" and name in op.outputs for op in ctx.art.ops)
    return ctx.cache["from_encoder"]


def conv(ctx: OpContext, codes: torch.Tensor, transposed: bool) -> torch.Tensor:
    op = ctx.op
    in_spec = ctx.spec(op.inputs[0])
    if in_spec.kind != "codes" or in_spec.codebook is None:
        raise GoldenError(f"{ctx.where()}: input {op.inputs[0]!r} is not a codes tensor")
    cb = in_spec.codebook
    out_name = op.outputs[0]
    f_o = ctx.frac(out_name)
    weight = ctx.array("weight")
    k_w = int(ctx.attr("w_exp"))
    unit_e, unit_m = int(cb.unit_e), int(cb.unit_m)
    H_win, W, Ci = codes.shape
    y0, H = ctx.windows[0] if ctx.windows is not None else (0, H_win)  # the window's first row, full height
    if ctx.cache.get("geometry", (None,))[0] != (H, W, Ci):  # per op, once for all bands of one input
        ctx.cache["geometry"] = ((H, W, Ci), _geometry(ctx, transposed, H, W, weight, Ci))
    g = ctx.cache["geometry"][1]
    a, b = ctx.band if ctx.band is not None else (0, g["Ho"])  # output rows of this call
    Co = weight.shape[0]
    if "wb" not in ctx.const:
        ctx.const["wb"] = (ctx.array("w_mant").astype(np.int64), ctx.array("bias").astype(np.int64))
    w_mant, bias = ctx.const["wb"]
    if w_mant.shape != (Co,) or bias.shape != (Co,):
        raise GoldenError(f"{ctx.where()}: w_mant and bias must have shape [{Co}]")
    n = k_w + unit_e - f_o  # shift of the integer form (§5.2)
    if not 0 <= n <= 62:
        raise GoldenError(f"{ctx.where()}: shift n = k_w + unit_e − f_o = {n} is outside [0, 62]")
    if "tables" not in ctx.const:  # per op, once per artifact
        ctx.const["tables"] = code_tables(cb)
    tables = ctx.const["tables"]
    if codes.numel() and not _from_encoder(ctx):  # an encoder's codes are in range by its clamp (§3.4)
        lo, hi = extremes(codes)
        if lo < 0 or hi >= tables.n:
            raise GoldenError(f"{ctx.where()}: input codes outside [0, {tables.n})")
    if ctx.cache.get("rx", (None,))[0] != W:
        ctx.cache["rx"] = (W, axis_taps(0, g["Wo"], W, g["kw"], g["sw"], g["pw"], g["dw"], transposed))
    rx = ctx.cache["rx"][1]
    if "ordered" not in ctx.const:  # per op, once per artifact
        ctx.const["ordered"] = ctx.force_ordered or can_overflow(weight, cb, ctx.numerics.realization,
                                                                 int(ctx.numerics.acc_bits))
    ordered = ctx.const["ordered"]
    if ordered:
        ry = axis_taps(a, b, H, g["kh"], g["sh"], g["ph"], g["dh"], transposed)
        P = padded(codes, y0, ry[0], rx[0], -1, dtype=torch.int64)
        v = ordered_band(ctx, tap_views(P, ry, rx, b - a, g["Wo"]), cb, tables, weight, w_mant, bias, g, k_w)
        return ctx.store(v * pow2(f_o), out_name, n)
    consts = _gemm_constants(ctx, weight, w_mant, bias, tables, unit_m, g["groups"])
    if "grid0" not in ctx.const:
        ctx.const["grid0"] = torch.cat([tables.grid.to(F64), torch.zeros(1, dtype=F64)])
    grid0 = ctx.const["grid0"]

    def G(rows, cols):  # grid values of the padded input: codes padded with code N (grid0[N] = 0)
        P = padded(codes, y0, rows, cols, tables.n, dtype=torch.int32)  # int32 indices: half the traffic
        return grid0.index_select(0, P.reshape(-1)).view(P.shape)
    shifted = g["groups"] == 1 and rx[2] == 1 and (transposed or g["sh"] == 1) and Ci >= SHIFTED_MIN_CI
    Wp = rx[0].size
    per_row = 8 * (Wp * (Ci + Co) if shifted else g["Wo"] * g["kh"] * g["kw"] * Ci)
    step = max(1, COLS_BYTES // max(1, per_row))  # output rows per block
    outs = []
    for c0 in range(a, b, step):
        c1 = min(b, c0 + step)
        by = axis_taps(c0, c1, H, g["kh"], g["sh"], g["ph"], g["dh"], transposed)
        acc = (_shifted_gemm if shifted else _im2col_gemm)(G, by, rx, c1 - c0, g, consts[0])
        y = _epilogue(acc, consts, n, ctx.numerics.rounding, Co)
        outs.append(ctx.ovf_stream(y, out_name))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


def _epilogue(acc: torch.Tensor, consts, n: int, mode: str, Co: int) -> torch.Tensor:
    """``R(I, n)`` with ``I = acc·m_w·unit_m + B`` per channel (unpacking channel pairs first).

    For ``half_up`` with ``bound + 2^(n−1) < 2^53`` it is one ``addcmul`` and one ``floor``:
    ``acc·(m_w·unit_m·2^-n) + (B + 2^(n−1))·2^-n``; both terms are exact (integers below 2^53 times a
    power of two) and so is their sum, ``(I + 2^(n−1))·2^-n``, a multiple of 2^-n below 2^53·2^-n.
    Otherwise :func:`rnd_shift` of ``I``."""
    mats, scale, B, bound, S = consts
    fast = mode == "half_up" and n > 0 and bound + pow2(n - 1) < EXACT
    if S is None:
        if not fast:
            return rnd_shift(acc.mul_(scale).add_(B), n, mode, bound)
        y = torch.empty(acc.shape, dtype=F64)  # contiguous HWC, whatever the layout of acc
        return torch.addcmul((B + pow2(n - 1)) * pow2(-n), acc, scale * pow2(-n), out=y).floor_()
    hi = torch.add(acc, pow2(S - 1)).mul_(pow2(-S)).floor_()  # pairs A + B·2^S (pack_shift): B, then A
    lo = torch.addcmul(acc, hi, torch.tensor(-pow2(S), dtype=F64))
    halves = []
    for part, sl in ((lo, slice(0, None, 2)), (hi, slice(1, None, 2))):
        k = part.shape[-1]
        sc, b = scale[sl][:k], B[sl][:k]
        if fast:
            halves.append(torch.addcmul((b + pow2(n - 1)) * pow2(-n), part, sc * pow2(-n)).floor_())
        else:
            halves.append(rnd_shift(part * sc + b, n, mode, bound))
    if halves[1].shape[-1] < halves[0].shape[-1]:  # odd Co: the last pair's B is a padding channel
        halves[1] = torch.cat([halves[1], torch.zeros_like(halves[1][..., :1])], dim=-1)
    return torch.stack(halves, dim=-1).flatten(-2)[..., :Co]


def _im2col_gemm(G, by, rx, rows: int, g: dict, mats) -> torch.Tensor:
    """``Σ w·G`` of ``rows`` output rows, ``[rows, Wo, Co]``: the taps of every output gathered into one row
    (``[taps·Ci]``) and one matrix product (one ``bmm`` per group). ``G(rows, cols)``: the padded grid
    values."""
    P = G(by[0], rx[0])
    cols = torch.stack(tap_views(P, by, rx, rows, g["Wo"]), dim=2)  # [rows, Wo, T, Ci]
    T, Ci = cols.shape[2], cols.shape[3]
    M = rows * g["Wo"]
    if g["groups"] == 1:
        acc = torch.matmul(cols.reshape(M, T * Ci), mats.transpose(1, 2).reshape(T * Ci, -1))
    else:
        gr, cig = g["groups"], Ci // g["groups"]
        acc = torch.bmm(cols.reshape(M, T, gr, cig).permute(2, 0, 1, 3).reshape(gr, M, T * cig), mats)
        acc = acc.permute(1, 0, 2).reshape(M, -1)
    return acc.view(rows, g["Wo"], -1)


def _shifted_gemm(G, by, rx, rows: int, g: dict, mats) -> torch.Tensor:
    """``Σ w·G`` for unit steps (stride 1, or a transposed conv's zero-inserted input) without im2col.

    The padded input ``P = [rows_p, Wp, Ci]`` (one spare zero row) is read as a ``[rows_p·Wp, Ci]`` matrix:
    output position ``m = y·Wp + x`` reads tap ``(ky, kx)`` at row ``m + oy[ky]·Wp + ox[kx]``, so each tap is
    one shifted view and one ``addmm`` of its ``[Co, Ci]`` weights with the view transposed (no copy: the
    BLAS reads it as a transposed operand) into ``[Co, rows·Wp]`` (this orientation keeps the long pixel
    axis innermost, the fastest for the BLAS); the last ``Wp − Wo`` columns of each output row read across
    a row end and are dropped. Returns an ``[rows, Wo, Co]`` view."""
    src = np.append(by[0], -1)  # the spare row: the shifted views of the last taps end in it
    P = G(src, rx[0])
    Wp, Ci = P.shape[1], P.shape[2]
    flat = P.view(-1, Ci)
    M = rows * Wp
    acc = None
    for t, (oy, ox) in enumerate((oy, ox) for oy in by[1] for ox in rx[1]):
        off = oy * Wp + ox
        if acc is None:
            acc = torch.mm(mats[t], flat[off:off + M].t())
        else:
            acc.addmm_(mats[t], flat[off:off + M].t())
    return acc.view(-1, rows, Wp)[:, :, :g["Wo"]].permute(1, 2, 0)


def pack_shift(wsum_max: int) -> int | None:
    """The shift ``S`` that packs two output channels into one float64 GEMM column, or None.

    A column of weights ``w_a + w_b·2^S`` gives ``Σ G·(w_a + w_b·2^S) = A + B·2^S`` for the two channels'
    sums ``A``, ``B``. With ``|A|, |B| ≤ W`` (``W = max_co Σ|w|·max|G|``, §5.4) and ``W < 2^(S−1)``, every
    partial sum is an integer of magnitude at most ``W·(1 + 2^S)``; below 2^53 the product is exact (the
    same 2^53 argument), and ``B = ⌊(A + B·2^S + 2^(S−1))·2^-S⌋``, ``A = (A + B·2^S) − B·2^S`` are exact too.
    Half the multiply-adds of the unpacked GEMM."""
    S = int(wsum_max).bit_length() + 1  # W < 2^(S−1)
    if wsum_max * (1 + 2 ** S) + 2 ** (S - 1) >= EXACT:
        return None
    return S


def _gemm_constants(ctx: OpContext, weight: np.ndarray, w_mant: np.ndarray, bias: np.ndarray, tables, unit_m: int,
                    groups: int):
    """The weight matrix, per-channel scale ``m_w·unit_m``, bias ``B``, the bound on ``|I|`` and the packing
    shift (:func:`pack_shift`, None: not packed); refuses an op outside the envelope (see the module
    docstring). Kept in the op's constants (``ctx.const``): computed once per artifact."""
    if ctx.const.get("gemm") is not None:
        return ctx.const["gemm"]
    Co = weight.shape[0]
    max_g = int(tables.grid.abs().max())
    w = weight.astype(np.int64)
    wabs = np.abs(w).reshape(Co, -1).sum(axis=1)
    bound = 0
    for co in range(Co):
        b_co = int(wabs[co]) * abs(int(w_mant[co])) * unit_m * max_g + abs(int(bias[co]))
        if b_co >= EXACT:
            raise GoldenError(f"{ctx.where()}: output channel {co} may reach 2^53 (outside the envelope, §9)")
        bound = max(bound, b_co)
    wf = torch.from_numpy(w.astype(np.float64))  # [Co, kh, kw, Ci/g]
    cog = Co // groups
    S = pack_shift(int(wabs.max()) * max_g) if groups == 1 and Co > 1 else None
    if groups == 1:  # [taps, Ci, Co]: tap t = ky·kw + kx; as [taps·Ci, Co] rows in the im2col's (ky, kx, ci) order
        mats = wf.reshape(Co, -1, weight.shape[3]).permute(1, 2, 0).contiguous()
        if S is not None:
            if Co % 2:
                mats = torch.cat([mats, torch.zeros_like(mats[..., :1])], dim=-1)
            mats = mats[..., 0::2] + mats[..., 1::2] * pow2(S)  # exact: integers below 2^53
        mats = mats.transpose(1, 2).contiguous()  # [taps, Co (packed: ⌈Co/2⌉), Ci]
    else:
        mats = wf.reshape(groups, cog, -1).transpose(1, 2).contiguous()  # [g, taps·Ci/g, Co/g]
    scale = torch.tensor([float(int(m) * unit_m) for m in w_mant], dtype=F64)
    B = torch.from_numpy(bias.astype(np.float64))
    ctx.const["gemm"] = (mats, scale, B, float(bound), S)
    return ctx.const["gemm"]
