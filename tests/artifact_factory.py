"""Builders of small, *valid* artifacts for every test (docs/artifact.md, docs/arithmetic.md).

* :func:`make_codebook` — a two-region (or uniform) codebook with a consistent
  encoder, following the ``released`` allocation of arithmetic.md §3.3 and the
  encoder of §3.4.
* :func:`make_random_artifact` — a random but valid artifact, deterministic in
  ``seed``, whose graph uses every op of the table in docs/artifact.md at least
  once. Scales are *calibrated*: a float64 forward pass of the real-valued network
  on a random calibration image picks stream fracs (with 2 bits of headroom),
  codebook breakpoints/ranges, and the output affine, so that streams do not
  saturate and the output image is not all 0/255. This is the basis of the
  cross-check "golden == intsim on random artifacts".
* :func:`save_and_reload` — round trip through the archive format.

The float forward pass here is only a range estimator (it fake-quantizes codes
but not streams); it is *not* a reference implementation of the arithmetic.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from intsim import bounds
from intsim.artifact import (
    Artifact,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
    load_artifact,
    save_artifact,
)
from intsim.lut import build_lut
from intsim.ops.bicubic import bicubic_taps, tap_l1_max
from intsim.validate import validate_artifact

__all__ = ["make_codebook", "make_random_artifact", "save_and_reload", "encode_multiplier"]

HEADROOM_BITS = 2  # streams keep ≥ 4× margin over the calibrated max |x|
MAX_FRAC = 28


# --------------------------------------------------------------------------
# small exact helpers


def _round_half_up(x: Fraction | float) -> int:
    """floor(x + 1/2) exactly (§2.1's rounding of multipliers)."""
    return math.floor(Fraction(x) + Fraction(1, 2))


def encode_multiplier(m: float | Fraction, bits: int, max_shift: int = 62) -> tuple[int, int]:
    """§2.1: ``(M, n)`` with ``M = round_half_up(|m|·2^n)`` of at most ``bits`` magnitude bits,
    the largest ``n ≤ max_shift`` (and ``n ≥ 0``); the sign of ``m`` is carried by ``M``."""
    m = Fraction(m)
    if m == 0:
        return 0, 0
    sign, a = (1 if m > 0 else -1), abs(m)
    for n in range(max_shift, -1, -1):
        M = _round_half_up(a * (1 << n))
        if M < (1 << bits):
            return sign * max(M, 1), n
    raise ValueError(f"multiplier {float(m)} does not fit {bits} bits with a shift ≥ 0")


def _pow2_frac(e: int) -> Fraction:
    return Fraction(2) ** e


# --------------------------------------------------------------------------
# codebooks (§3)


def _encoder_stage(center: int, step_stream: Fraction, enc_bits: int) -> EncoderStage:
    """``(C_s, E_s, k_s)`` with ``E_s·2^-k_s ≈ 1/step`` and ``2^(enc_bits−1) ≤ E_s < 2^enc_bits`` when possible (§3.4)."""
    best = None
    for k in range(0, 63):
        E = _round_half_up(_pow2_frac(k) / step_stream)
        if E >= (1 << enc_bits):
            break
        if E >= 1:
            best = (E, k)
    if best is None:  # step far below one stream LSB: the smallest shift, E as is
        best = (_round_half_up(1 / step_stream), 0)
    return EncoderStage(center=int(center), mult=int(best[0]), shift=int(best[1]))


def _segments_for(kind: str, bits: int, lo: float, bp: float, hi: float, unit: Fraction, signed: bool):
    """Integer ``(origin, step, qmin, qmax)`` per segment in units ``u`` (released allocation, §3.3)."""

    def units(x: float) -> int:
        return _round_half_up(Fraction(x) / unit)

    def step(span: float, n: int) -> int:
        return max(1, _round_half_up(Fraction(span) / n / unit))

    half = 1 << (bits - 1)
    if kind == "uniform":
        if signed:
            d = step(hi, max(1, half - 1))
            return [(0, d, -half, half - 1)]
        d = step(hi, (1 << bits) - 1)
        return [(0, d, 0, (1 << bits) - 1)]
    if kind == "signed2r":
        qd = half - 1
        d_dense = step(bp, max(1, qd))
        o_pos = max(units(bp), d_dense * qd)  # tails start at the breakpoint, beyond the dense range
        o_neg = min(-units(bp), -d_dense * qd)
        d_pos = step(hi - bp, half)
        d_neg = step(-lo - bp, half)
        return [(o_neg, d_neg, -half, -1), (0, d_dense, -qd, qd), (o_pos, d_pos, 1, half)]
    if kind == "relu2r":
        nd = (1 << bits) - 1
        d_dense = step(bp, nd)
        o_t = max(units(bp), d_dense * nd)
        d_t = step(hi - bp, half)
        return [(0, d_dense, 0, nd), (o_t, d_t, 1, half)]
    raise ValueError(f"unknown codebook kind {kind!r} (uniform, signed2r, relu2r)")


def make_codebook(kind: str, bits: int, f_in: int, realization: str, *, bp: float = 1.0,
                  lo: float | None = None, hi: float | None = None, unit_e: int | None = None,
                  unit_m: int = 1, grid_bits: int = 12, enc_bits: int = 16, signed: bool = True) -> Codebook:
    """A valid codebook read from a stream of frac ``f_in`` (§3).

    ``kind``: ``'uniform'`` (one segment, origin 0; ``signed`` q ∈ [−2^(b−1), 2^(b−1)−1]
    over ``[−hi, hi]``, else q ∈ [0, 2^b−1] over ``[0, hi]``), ``'signed2r'`` (released,
    signed: tails ``[lo, −bp)``, ``(bp, hi]`` with 2^(b−1) indices each, dense
    ``[−bp, bp]`` with 2^b−1; N = 2^(b+1)−1) or ``'relu2r'`` (released, one-sided:
    dense ``[0, bp]`` with 2^b indices, tail ``(bp, hi]`` with 2^(b−1); N = 3·2^(b−1)).
    ``bits`` ≥ 2 is the nominal ``b``; real bounds default to ``hi = 4·bp``, ``lo = −hi``.

    Unit ``u = unit_m·2^-unit_e``: split realization, ``unit_e = f_in`` unless given;
    grid realization, the largest ``unit_e ≤ f_in`` (or ≤ the given one) for which every
    ``G(s, q)`` fits ``grid_bits`` signed bits (§5.3). Encoder: ``C_s`` is the stream
    integer of the origin, ``E_s·2^-k_s ≈ 1/(d_s·u·2^f_in)`` with ``E_s`` of
    ``enc_bits`` bits; thresholds put the breakpoints in the dense segment
    (``U_0 = C_neg − 1``, ``U_1 = C_pos`` as in the §3.4 example).
    """
    if bits < 2:
        raise ValueError("bits must be ≥ 2")
    hi = 4.0 * bp if hi is None else float(hi)
    lo = -hi if lo is None else float(lo)
    if kind == "signed2r" and not (lo < -bp < 0 < bp < hi):
        raise ValueError(f"signed2r needs lo < −bp < 0 < bp < hi, got lo={lo}, bp={bp}, hi={hi}")
    if kind == "relu2r" and not 0 < bp < hi:
        raise ValueError(f"relu2r needs 0 < bp < hi, got bp={bp}, hi={hi}")
    ue = f_in if unit_e is None else int(unit_e)
    while True:
        unit = Fraction(unit_m) / _pow2_frac(ue)
        segs = _segments_for(kind, bits, lo, bp, hi, unit, signed)
        if realization != "grid":
            break
        gmax = max(max(abs(o + d * qmin), abs(o + d * qmax)) for o, d, qmin, qmax in segs)
        if gmax <= (1 << (grid_bits - 1)) - 1:
            break
        ue -= 1
        if ue < f_in - 64:
            raise ValueError("cannot fit the codebook into grid_bits")
    to_stream = Fraction(unit_m) * _pow2_frac(f_in - ue)  # stream LSBs per grid unit
    centers = [_round_half_up(o * to_stream) for o, _, _, _ in segs]
    encoder = tuple(_encoder_stage(c, d * to_stream, enc_bits) for c, (_, d, _, _) in zip(centers, segs))
    if kind == "signed2r":
        thresholds = (centers[0] - 1, centers[2])
    elif kind == "relu2r":
        thresholds = (centers[1],)
    else:
        thresholds = ()
    return Codebook(
        unit_m=int(unit_m), unit_e=int(ue),
        segments=tuple(Segment(int(o), int(d), int(a), int(b)) for o, d, a, b in segs),
        thresholds=tuple(int(t) for t in thresholds), encoder=encoder,
        grid_bits=int(grid_bits) if realization == "grid" else None,
        allocation="uniform" if kind == "uniform" else "released", bits=int(bits))


def fake_quant(x: np.ndarray, cb: Codebook, f_in: int, stream_bits: int) -> np.ndarray:
    """Float range estimate of encode→decode (§3.4, §3.1); rounding half-up; not bit-exact."""
    lim = 2.0 ** (stream_bits - 1)
    X = np.clip(np.floor(x * 2.0 ** f_in + 0.5), -lim, lim - 1)
    s = np.searchsorted(np.asarray(cb.thresholds, dtype=np.float64), X, side="left") if cb.thresholds else np.zeros(X.shape, int)
    out = np.empty_like(X)
    u = cb.unit_m * 2.0 ** -cb.unit_e
    for i, (seg, enc) in enumerate(zip(cb.segments, cb.encoder)):
        m = s == i
        t = np.floor((X[m] - enc.center) * enc.mult / 2.0 ** enc.shift + 0.5)
        q = np.clip(t, seg.qmin, seg.qmax)
        out[m] = (seg.origin + seg.step * q) * u
    return out


# --------------------------------------------------------------------------
# float range estimators of the ops (HWC, float64)


def _conv_f(x, w, b, stride, padding, dilation, groups):
    H, W, _ = x.shape
    co, kh, kw, cig = w.shape
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((Ho, Wo, co)) + b
    cog = co // groups
    oy, ox = np.arange(Ho), np.arange(Wo)
    for ky in range(kh):
        iy = oy * stride[0] - padding[0] + ky * dilation[0]
        vy = (iy >= 0) & (iy < H)
        for kx in range(kw):
            ix = ox * stride[1] - padding[1] + kx * dilation[1]
            vx = (ix >= 0) & (ix < W)
            patch = x[np.clip(iy, 0, H - 1)][:, np.clip(ix, 0, W - 1)] * (vy[:, None, None] & vx[None, :, None])
            for g in range(groups):
                out[:, :, g * cog:(g + 1) * cog] += patch[:, :, g * cig:(g + 1) * cig] @ w[g * cog:(g + 1) * cog, ky, kx, :].T
    return out


def _conv_t_f(x, w, b, stride, padding, output_padding):
    H, W, _ = x.shape
    co, kh, kw, _ = w.shape
    Ho = (H - 1) * stride[0] - 2 * padding[0] + kh + output_padding[0]
    Wo = (W - 1) * stride[1] - 2 * padding[1] + kw + output_padding[1]
    out = np.zeros((Ho, Wo, co)) + b
    oy, ox = np.arange(Ho), np.arange(Wo)
    for ky in range(kh):
        ny = oy + padding[0] - ky
        iy = ny // stride[0]
        vy = (ny % stride[0] == 0) & (iy >= 0) & (iy < H)
        for kx in range(kw):
            nx = ox + padding[1] - kx
            ix = nx // stride[1]
            vx = (nx % stride[1] == 0) & (ix >= 0) & (ix < W)
            patch = x[np.clip(iy, 0, H - 1)][:, np.clip(ix, 0, W - 1)] * (vy[:, None, None] & vx[None, :, None])
            out += patch @ w[:, ky, kx, :].T
    return out


def _bilinear_axis(n: int, r: int):
    """§6.10 per output index: (i0, i1, weight0, weight1) over 2r."""
    t = 2 * np.arange(n * r) + 1 - r
    i0 = np.where(t < 0, 0, t // (2 * r))
    a = np.where(t < 0, 0, t - 2 * r * i0)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, 2 * r - a, a


def _bilinear_f(x, r):
    H, W, _ = x.shape
    y0, y1, wy0, wy1 = _bilinear_axis(H, r)
    x0, x1, wx0, wx1 = _bilinear_axis(W, r)
    rows = x[y0] * wy0[:, None, None] + x[y1] * wy1[:, None, None]
    return (rows[:, x0] * wx0[None, :, None] + rows[:, x1] * wx1[None, :, None]) / (2 * r) ** 2


def _pixel_shuffle_f(x, r):
    H, W, C = x.shape
    c = C // (r * r)
    return x.reshape(H, W, c, r, r).transpose(0, 3, 1, 4, 2).reshape(H * r, W * r, c)


# --------------------------------------------------------------------------
# the builder


class _Builder:
    """Accumulates tensors/ops/arrays while a float forward pass calibrates scales."""

    BP_PERCENTILE = 75.0  # two-region breakpoint: this percentile of |x| (of x > 0 for relu2r)

    def codebook_units(self) -> tuple[int, int]:
        """(unit_m, grid_bits) of the next codebook: random, to cover many multiplier/grid shapes."""
        return int(self.rng.choice([1, 1, 3, 5])), int(self.rng.integers(9, 13))

    def __init__(self, rng: np.random.Generator, numerics: Numerics, image: np.ndarray):
        self.rng = rng
        self.nx = numerics
        self.tensors: dict[str, TensorSpec] = {}
        self.ops: list[OpSpec] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.val: dict[str, np.ndarray] = {}  # calibration values (real)
        self.mb = numerics.mult_bits
        self.tensors["input"] = TensorSpec("input", "image", int(image.shape[2]))
        self.val["input"] = image.astype(np.float64)

    # ---- helpers
    def frac_for(self, x: np.ndarray) -> int:
        """Largest frac keeping max|x| below 2^(stream_bits−1−HEADROOM)."""
        m = float(np.max(np.abs(x))) if x.size else 0.0
        m = max(m, 2.0 ** -8)
        f = self.nx.stream_bits - 1 - HEADROOM_BITS - math.ceil(math.log2(m))
        return int(min(f, MAX_FRAC))

    def stream(self, name: str, x: np.ndarray, frac: int) -> str:
        self.tensors[name] = TensorSpec(name, "stream", int(x.shape[2]), frac=int(frac))
        self.val[name] = x
        return name

    def op(self, name, kind, inputs, outputs, attrs=None, arrays=None):
        roles = {}
        for role, a in (arrays or {}).items():
            an = f"{name}.{role}"
            self.arrays[an] = a
            roles[role] = an
        self.ops.append(OpSpec(name=name, op=kind, inputs=tuple(inputs), outputs=tuple(outputs),
                               attrs=dict(attrs or {}), arrays=roles))

    def frac(self, t: str) -> int:
        return self.tensors[t].frac

    def mbits(self, want: int) -> int:
        """Bits for a multiplier applied to a full-range stream: within mult_bits and small
        enough that 2^(stream_bits−1)·M stays below 2^53 (§9)."""
        return max(2, min(want, self.mb, 52 - self.nx.stream_bits))

    def mini(self) -> Artifact:
        return Artifact(model={}, numerics=self.nx, inputs=("input",), outputs=(), tensors=self.tensors,
                        ops=self.ops, arrays=self.arrays)

    # ---- ops
    def image_in(self, name: str, src: str) -> str:
        C = self.tensors[src].channels
        a = self.rng.uniform(0.8, 1.2, C) / 255.0
        b = -self.rng.uniform(0.35, 0.6, C)
        x = self.val[src] * a + b
        # m ≈ a·2^e ≈ 2^(e−8) must stay within mult_bits; n = e − f_o ≥ 0
        e_max = self.mb + 7
        f_o = min(self.frac_for(x), e_max)
        e = min(f_o + int(self.rng.integers(0, 9)), e_max)
        m = np.array([_round_half_up(Fraction(v) * _pow2_frac(e)) for v in a], dtype=np.int64)
        o = np.array([_round_half_up(Fraction(v) * _pow2_frac(e)) for v in b], dtype=np.int64)
        out = self.stream(f"{name}.out", self.val[src] * (m / 2.0 ** e) + o / 2.0 ** e, f_o)
        self.op(name, "image_in", [src], [out], {"exp": e}, {"mult": m, "offset": o})
        return out

    def encode(self, name: str, src: str, kind: str, bits: int, signed: bool = True) -> str:
        x = self.val[src]
        f_in = self.frac(src)
        hi = float(np.max(x)) * 1.05
        lo = float(np.min(x)) * 1.05
        amax = max(hi, -lo, 2.0 ** -6)
        if kind == "signed2r":
            bp = float(np.percentile(np.abs(x), self.BP_PERCENTILE)) or amax / 4
            bp = min(bp, amax / 2)
            hi, lo = max(hi, 2 * bp), min(lo, -2 * bp)
            kw = dict(bp=bp, lo=lo, hi=hi)
        elif kind == "relu2r":
            pos = x[x > 0]
            bp = float(np.percentile(pos, self.BP_PERCENTILE)) if pos.size else amax / 4
            bp = min(max(bp, 2.0 ** -6), amax / 2)
            kw = dict(bp=bp, hi=max(hi, 2 * bp))
        else:
            kw = dict(hi=amax if signed else max(hi, 2.0 ** -6), signed=signed)
        unit_m, gb = self.codebook_units()
        cb = make_codebook(kind, bits, f_in, self.nx.realization, unit_m=unit_m, grid_bits=gb,
                           enc_bits=self.mbits(16), **kw)
        if self.nx.realization == "split":
            # The conv multipliers m_w·unit_m·max(d_s, |e_s|) must fit mult_bits (§2.1, §5.3):
            # coarsen the unit so that unit_m·max(d_s, |e_s|) keeps ≤ mult_bits − 10 bits,
            # leaving ≥ 10 bits for the weight mantissas.
            excess = self._grid_mag_bits(cb) - (self.mb - 10)
            if excess > 0:
                cb = make_codebook(kind, bits, f_in, "split", unit_m=unit_m, unit_e=cb.unit_e - excess,
                                   enc_bits=self.mbits(16), **kw)
        out = f"{name}.codes"
        self.tensors[out] = TensorSpec(out, "codes", self.tensors[src].channels, codebook=cb)
        self.val[out] = fake_quant(x, cb, f_in, self.nx.stream_bits)
        self.op(name, "encode", [src], [out])
        return out

    @staticmethod
    def _grid_mag_bits(cb: Codebook) -> int:
        """Magnitude bits of ``unit_m·max(d_s, |e_s|)``, the codebook's factor in M_j (§5.3)."""
        return (cb.unit_m * max(max(s.step, abs(s.origin)) for s in cb.segments)).bit_length()

    def _quant_weight(self, W: np.ndarray, wbits: int, mant_bits: int, per_tensor: bool):
        co = W.shape[0]
        amax = np.max(np.abs(W.reshape(co, -1)), axis=1)
        amax = np.where(amax > 0, amax, 1e-3)
        if per_tensor:
            amax[:] = amax.max()
        s = amax / ((1 << (wbits - 1)) - 1)
        k_w = mant_bits - 1 - math.floor(math.log2(float(s.max())))
        m_w = np.array([max(1, _round_half_up(Fraction(float(v)) * _pow2_frac(k_w))) for v in s], dtype=np.int64)
        if m_w.max() >= (1 << mant_bits):  # rounding reached the next power of two
            k_w -= 1
            m_w = np.array([max(1, _round_half_up(Fraction(float(v)) * _pow2_frac(k_w))) for v in s], dtype=np.int64)
        scale = m_w / 2.0 ** k_w
        lim = (1 << (wbits - 1)) - 1
        w = np.clip(np.floor(W / scale[:, None, None, None] + 0.5), -lim, lim)
        return w, m_w, k_w

    def conv(self, name: str, src: str, co: int, *, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
             dilation=(1, 1), groups=1, transpose=False, output_padding=(0, 0), wbits=8,
             per_tensor=False, gain=1.0, bias_scale=0.1) -> str:
        cin = self.tensors[src].channels
        cb = self.tensors[src].codebook
        ci = cin if transpose else cin // groups
        fan_in = kernel[0] * kernel[1] * ci / (stride[0] * stride[1] if transpose else 1)
        W = self.rng.normal(0.0, gain / math.sqrt(fan_in), (co, kernel[0], kernel[1], ci))
        b = self.rng.normal(0.0, bias_scale, co)
        wdtype = np.int8 if wbits <= 8 else np.int16
        # m_w·unit_m·max(d_s, |e_s|) (split) or m_w·unit_m (grid) within mult_bits (§2.1, §5.3)
        g_bits = self._grid_mag_bits(cb) if self.nx.realization == "split" else cb.unit_m.bit_length()
        mant_bits = max(1, min(int(self.rng.integers(10, 15)), self.mb - g_bits))
        while True:
            w, m_w, k_w = self._quant_weight(W, wbits, mant_bits, per_tensor)
            wq = w * (m_w / 2.0 ** k_w)[:, None, None, None]
            x = self.val[src]
            y = (_conv_t_f(x, wq, 0.0, stride, padding, output_padding) if transpose
                 else _conv_f(x, wq, 0.0, stride, padding, dilation, groups))
            B = np.array([_round_half_up(Fraction(float(v)) * _pow2_frac(k_w + cb.unit_e)) for v in b],
                         dtype=np.int64)
            y = y + B / 2.0 ** (k_w + cb.unit_e)
            f_o = self.frac_for(y)
            # n = k_w + unit_e − f_o must be in [0, 62] (§5.2)
            f_o = max(min(f_o, k_w + cb.unit_e), k_w + cb.unit_e - 62)
            attrs = {"kernel": list(kernel), "stride": list(stride), "padding": list(padding)}
            if transpose:
                attrs["output_padding"] = list(output_padding)
            else:
                attrs.update(dilation=list(dilation), groups=int(groups))
            attrs["w_exp"] = int(k_w)
            out = f"{name}.out"
            self.stream(out, y, f_o)
            saved = (dict(self.arrays), list(self.ops))
            self.op(name, "conv_transpose2d" if transpose else "conv2d", [src], [out], attrs,
                    {"weight": w.astype(wdtype), "w_mant": m_w, "bias": B})
            env, _ = bounds.conv_envelope(self.mini(), self.ops[-1])
            if env < bounds.EXACT_LIMIT // 4 or mant_bits <= 1:
                return out
            # Too close to the 2^53 envelope (§9): coarser weight mantissas and retry.
            self.arrays, self.ops = saved
            mant_bits -= 1

    def relu(self, name, src):
        return self._same(name, "relu", src, np.maximum(self.val[src], 0.0))

    def pad(self, name, src, padding, mode):
        # copies codes (§5.8): the same codebook, values padded as numpy pads them
        out = f"{name}.codes"
        self.tensors[out] = TensorSpec(out, "codes", self.tensors[src].channels, codebook=self.tensors[src].codebook)
        ph, pw = padding
        self.val[out] = np.pad(self.val[src], ((ph, ph), (pw, pw), (0, 0)), mode="edge" if mode == "replicate"
                               else "reflect")
        self.op(name, "pad", [src], [out], {"padding": [ph, pw], "mode": mode})
        return out

    def clamp(self, name, src):
        # bounds at the 5 % / 95 % quantiles of the value, so the clamp acts on both sides (§6.16)
        x, f = self.val[src], self.frac(src)
        lo = math.ceil(float(np.quantile(x, 0.05)) * 2.0 ** f)
        hi = max(lo, math.floor(float(np.quantile(x, 0.95)) * 2.0 ** f))
        return self._same(name, "clamp", src, np.clip(x, lo * 2.0 ** -f, hi * 2.0 ** -f), {"lo": lo, "hi": hi})

    def _same(self, name, kind, src, y, attrs=None, arrays=None, out_name=None):
        out = self.stream(out_name or f"{name}.out", y, self.frac(src))
        self.op(name, kind, [src], [out], attrs, arrays)
        return out

    def leaky(self, name, src):
        alpha = float(self.rng.choice([0.05, 0.1, 0.2]))
        M, k = encode_multiplier(alpha, self.mbits(15))
        x = self.val[src]
        return self._same(name, "leaky_relu", src, np.where(x >= 0, x, x * M / 2.0 ** k), {"mult": M, "shift": k})

    def prelu(self, name, src):
        C = self.tensors[src].channels
        alpha = self.rng.uniform(-0.25, 0.3, C)
        k = self.mbits(15) - 1
        M = np.array([_round_half_up(Fraction(float(v)) * _pow2_frac(k)) for v in alpha], dtype=np.int64)
        x = self.val[src]
        return self._same(name, "prelu", src, np.where(x >= 0, x, x * (M / 2.0 ** k)), {"shift": k}, {"mult": M})

    def add(self, name, a, b):
        y = self.val[a] + self.val[b]
        out = self.stream(f"{name}.out", y, self.frac_for(y))
        self.op(name, "add", [a, b], [out])
        return out

    def split(self, name, src, sizes):
        x, outs, c0 = self.val[src], [], 0
        for i, s in enumerate(sizes):
            outs.append(self.stream(f"{name}.out{i}", x[:, :, c0:c0 + s], self.frac(src)))
            c0 += s
        self.op(name, "split", [src], outs, {"sizes": list(sizes)})
        return outs

    def concat(self, name, srcs, f_o):
        y = np.concatenate([self.val[s] for s in srcs], axis=2)
        out = self.stream(f"{name}.out", y, f_o)
        self.op(name, "concat", srcs, [out])
        return out

    def mean_pool(self, name, src):
        # k ≤ 52 − stream_bits keeps max|X|·(2^k + 1) < 2^53 (§6.11, §9)
        k = min(20, 52 - self.nx.stream_bits)
        return self._same(name, "mean_pool", src, self.val[src].mean(axis=(0, 1), keepdims=True), {"shift": k})

    def std_pool(self, name, src):
        sb = self.nx.stream_bits
        k = min(20, 52 - sb)
        p = 0
        # d bound (2·2^(sb−1) >> p) + 1; need d²·(2^k + 1) < 2^53 (§6.12, §9)
        while (((1 << sb) >> p) + 1) ** 2 * ((1 << k) + 1) >= bounds.EXACT_LIMIT:
            p += 1
        return self._same(name, "std_pool", src, self.val[src].std(axis=(0, 1), keepdims=True),
                          {"shift": k, "pre_shift": p})

    def sigmoid(self, name, src):
        k = int(self.rng.integers(3, 6))
        imin, imax = -8 << k, 8 << k
        f_o = min(15, self.nx.stream_bits - 2, 52 - self.nx.stream_bits)  # V_x·max|lut| < 2^53 in mul
        lut = build_lut("sigmoid", imin, imax, k, f_o)
        y = 1.0 / (1.0 + np.exp(-np.clip(self.val[src], -8, 8)))
        out = self.stream(f"{name}.out", y, f_o)
        self.op(name, "lut", [src], [out], {"fn": "sigmoid", "lut_exp": k, "imin": imin, "imax": imax}, {"lut": lut})
        return out

    def lut(self, name, src, fn):
        # a ±2^r input range with 2^(r+k+1) ≤ 512 entries (k ≥ 0), output within 30 bits and the stream (§6.17)
        x = self.val[src]
        r = max(0, math.ceil(math.log2(max(float(np.abs(x).max()), 1.0))))
        k = max(0, 8 - r)
        imin, imax = -(1 << (r + k)), (1 << (r + k)) - 1
        f_o = max(0, min(self.frac(src), 30 - r, self.nx.stream_bits - 2 - r))
        table = build_lut(fn, imin, imax, k, f_o)
        xc = np.clip(x, imin * 2.0 ** -k, imax * 2.0 ** -k)
        y = {"tanh": np.tanh, "silu": lambda v: v / (1.0 + np.exp(-v)),
             "gelu": lambda v: 0.5 * v * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0)))}[fn](xc)
        out = self.stream(f"{name}.out", y, f_o)
        self.op(name, "lut", [src], [out], {"fn": fn, "lut_exp": k, "imin": imin, "imax": imax}, {"lut": table})
        return out

    def mul(self, name, x, g):
        y = self.val[x] * self.val[g]
        out = self.stream(f"{name}.out", y, self.frac(x))
        self.op(name, "mul", [x, g], [out])
        return out

    def upsample_nearest(self, name, src, r):
        y = np.repeat(np.repeat(self.val[src], r, axis=0), r, axis=1)
        return self._same(name, "upsample_nearest", src, y, {"factor": r})

    def upsample_bilinear(self, name, src, r):
        M, k = (1, 2 * int(math.log2(2 * r))) if (2 * r) & (2 * r - 1) == 0 else encode_multiplier(
            Fraction(1, (2 * r) ** 2), self.mbits(16) - 5)  # (2r)² ≤ 36 < 2^6 more bits in I
        return self._same(name, "upsample_bilinear", src, _bilinear_f(self.val[src], r),
                          {"factor": r, "mult": M, "shift": k})

    def upsample_bicubic(self, name, src, r):
        # T from the §9 envelope ((max Σ|W|)²·2^(sb−1) < 2^53), as the exporter picks it
        T = max(t for t in range(1, 17) if tap_l1_max(r, t) ** 2 << (self.nx.stream_bits - 1) < 1 << 52)
        x = self.val[src]
        iy, wy = bicubic_taps(x.shape[0], r, T)
        ix, wx = bicubic_taps(x.shape[1], r, T)
        rows = sum(x[iy[:, k]] * (wy[:, k, None, None] / 2.0 ** T) for k in range(4))
        y = sum(rows[:, ix[:, k]] * (wx[None, :, k, None] / 2.0 ** T) for k in range(4))
        return self._same(name, "upsample_bicubic", src, y, {"factor": r, "tap_bits": T})

    def pixel_shuffle(self, name, src, r):
        return self._same(name, "pixel_shuffle", src, _pixel_shuffle_f(self.val[src], r), {"factor": r},
                          out_name=f"{name}.out")

    def image_out(self, name, src):
        x = self.val[src]
        C = x.shape[2]
        f_i = self.frac(src)
        m, o = [], []
        lo = x.reshape(-1, C).min(axis=0)
        hi = x.reshape(-1, C).max(axis=0)
        a = 200.0 / np.maximum(hi - lo, 1e-3)
        b = 27.0 - lo * a
        # one exponent for all channels; m of ≤ 16 bits; n = f_i + e ≥ 0 (§6.2)
        e = max(self.mbits(16) - 1 - math.floor(math.log2(float(a.max()))), -f_i)
        for c in range(C):
            m.append(_round_half_up(Fraction(float(a[c])) * _pow2_frac(e)))
            o.append(_round_half_up(Fraction(float(b[c])) * _pow2_frac(e)))
        out = "output"
        self.tensors[out] = TensorSpec(out, "image", C)
        self.op(name, "image_out", [src], [out], {"exp": int(e)},
                {"mult": np.array(m, dtype=np.int64), "offset": np.array(o, dtype=np.int64)})
        return out


def _calibration_image(rng: np.random.Generator, h: int = 8, w: int = 8) -> np.ndarray:
    """A smooth gradient plus noise: both flat and textured regions, uint8 HWC."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy[:, :, None] * 17 + xx[:, :, None] * 11 + np.array([0, 60, 120])) % 256
    noise = rng.integers(-40, 41, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_random_artifact(seed: int, realization: str = "split", rounding: str = "half_up",
                         overflow: str = "saturate", acc_bits: int = 32, stream_bits: int = 24,
                         ops: str = "all", mult_bits: int = 31) -> Artifact:
    """A small random valid artifact, deterministic in ``seed`` (same seed ⇒ identical artifact).

    ``ops='all'``: 3-channel image in, 4–8 channels inside, and every op of the
    artifact.md table at least once (conv2d with 3×3/1×3 kernels, stride 2,
    dilation 2, groups 2, int16 weights, per-tensor and per-channel mantissas)::

        image_in → encode(uniform 8b) → conv2d(int16 w) → relu → encode(relu2r) →
        conv2d(dilation 2) → leaky_relu → encode(signed2r) → conv2d(groups 2) → prelu →
        add(residual) → split → concat(swapped, new frac) → [mean_pool, std_pool] → add →
        encode(uniform) → conv1×1 → relu → encode(relu2r) → conv1×1 → lut(sigmoid) → mul →
        encode(signed2r) → conv2d(stride 2) → [upsample_nearest r, upsample_bilinear r, upsample_bicubic r] → add → add → clamp → lut(silu) →
        encode → pad(replicate) → conv2d(→12) → pixel_shuffle(2) → encode → conv_transpose2d(stride 2) → image_out

    Works for any input size H, W ≥ 1; the output is 4r·⌈H/2⌉ × 4r·⌈W/2⌉ × 3 with r ∈ {2, 3}.
    ``ops='minimal'``: image_in → encode → conv2d → image_out.
    Codebook nominal bits are drawn from 2–4 (8 for the first layer), so the
    split/grid realizations, multi-segment accumulators and saturations are all
    exercised. The returned artifact passes :func:`validate_artifact`.
    """
    rng = np.random.default_rng(seed)
    nx = Numerics(rounding=rounding, realization=realization, overflow=overflow, acc_bits=acc_bits,
                  stream_bits=stream_bits, mult_bits=mult_bits)
    B = _Builder(rng, nx, _calibration_image(rng))
    C = int(rng.choice([4, 6, 8]))
    x = B.image_in("head.image_in", "input")
    c = B.encode("head.enc", x, "uniform", 8)
    if ops == "minimal":
        y = B.conv("head.conv", c, 3, wbits=8)
        B.image_out("tail.image_out", y)
        return _finish(B, seed, ops)
    if ops != "all":
        raise ValueError(f"ops must be 'all' or 'minimal', got {ops!r}")

    def b() -> int:
        return int(rng.integers(2, 5))

    s1 = B.conv("head.conv", c, C, wbits=12)  # int16 weights
    s2 = B.relu("body.relu", s1)
    c2 = B.encode("body.enc1", s2, "relu2r", b())
    s3 = B.conv("body.conv1", c2, C, padding=(2, 2), dilation=(2, 2), per_tensor=True)
    s4 = B.leaky("body.leaky", s3)
    c4 = B.encode("body.enc2", s4, "signed2r", b())
    k2 = [(3, 3), (1, 3), (3, 1)][int(rng.integers(0, 3))]
    s5 = B.conv("body.conv2", c4, C, kernel=k2, padding=(k2[0] // 2, k2[1] // 2), groups=2, wbits=int(rng.integers(4, 9)))
    s6 = B.prelu("body.prelu", s5)
    s7 = B.add("body.add", s6, s1)
    half = C // 2
    pa, pb = B.split("body.split", s7, [half, C - half])
    s8 = B.concat("body.concat", [pb, pa], B.frac(s7) + int(rng.choice([-1, 1])))
    m = B.mean_pool("att.mean", s8)
    sd = B.std_pool("att.std", s8)
    g0 = B.add("att.add", m, sd)
    cg = B.encode("att.enc1", g0, "uniform", int(rng.integers(4, 9)))
    g1 = B.conv("att.conv1", cg, max(2, C // 2), kernel=(1, 1), padding=(0, 0), gain=2.0)
    g2 = B.relu("att.relu", g1)
    cg2 = B.encode("att.enc2", g2, "relu2r", b())
    g3 = B.conv("att.conv2", cg2, C, kernel=(1, 1), padding=(0, 0), gain=2.0)
    g4 = B.sigmoid("att.sigmoid", g3)
    s9 = B.mul("att.mul", s8, g4)
    c9 = B.encode("up.enc0", s9, "signed2r", b())
    s10 = B.conv("up.down", c9, C, stride=(2, 2))
    r = int(rng.choice([2, 3]))
    un = B.upsample_nearest("up.nearest", s10, r)
    ub = B.upsample_bilinear("up.bilinear", s10, r)
    uc = B.upsample_bicubic("up.bicubic", s10, r)
    s11 = B.lut("up.silu", B.clamp("up.clamp", B.add("up.add2", B.add("up.add", un, ub), uc)), "silu")
    c11 = B.encode("up.enc1", s11, "signed2r", b())
    s12 = B.conv("up.conv", B.pad("up.pad", c11, (1, 1), "replicate"), 12, padding=(0, 0))
    s13 = B.pixel_shuffle("up.shuffle", s12, 2)
    c13 = B.encode("up.enc2", s13, "signed2r", b())
    s14 = B.conv("tail.convT", c13, 3, transpose=True, stride=(2, 2), padding=(1, 1), output_padding=(1, 1))
    B.image_out("tail.image_out", s14)
    return _finish(B, seed, ops)


def _finish(B: _Builder, seed: int, ops: str) -> Artifact:
    art = Artifact(
        model={"name": f"random-{seed}", "factory": "tests.artifact_factory", "ops": ops, "seed": int(seed)},
        numerics=B.nx, inputs=("input",), outputs=("output",), tensors=dict(B.tensors), ops=list(B.ops),
        arrays=dict(B.arrays), metadata={"calibration": "float64 forward on an 8×8 random image"})
    validate_artifact(art, f"make_random_artifact(seed={seed})")
    return art


def save_and_reload(art: Artifact, tmp_path: str | Path) -> Artifact:
    """Write ``art`` with :func:`save_artifact` under ``tmp_path`` and load it back."""
    path = Path(tmp_path) / "artifact.intsim"
    save_artifact(art, path)
    return load_artifact(path)
