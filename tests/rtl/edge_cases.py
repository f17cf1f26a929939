"""Synthetic layers for the RTL bench (docs/rtl.md): every rounding mode × saturate/wrap, with exact
ties, maximal accumulators and encoder breakpoint edges. Expected outputs come from intsim's reference
kernels (intsim.encoder.encode, intsim.ops.conv.conv2d on the ordered reference path); each builder
also returns how many edge events its layer holds, so a test can insist that they are really there."""
from __future__ import annotations

import numpy as np

from intsim.artifact import Numerics
from intsim.encoder import encode
from intsim.layer_cases import ConvLayer, LayerCase, conv_case_of, encode_case_of
from intsim.ops.conv import conv2d
from rtl.bench import cosim
from tests.artifact_factory import make_codebook

MODES = cosim.RTL_ROUNDINGS
POLICIES = ("saturate", "wrap")
STREAM_BITS = 16


def _ties(center: int, mult: int, shift: int, span: int) -> np.ndarray:
    """Stream values X in [center − span, center + span] where (X − C)·E is exactly half-way (§2)."""
    x = np.arange(center - span, center + span + 1, dtype=np.int64)
    r = ((x - center) * mult) & ((1 << shift) - 1)
    return x[r == (1 << (shift - 1))]


def encoder_edges(mode: str, realization: str = "split", pow2: bool = False) -> tuple[LayerCase, dict]:
    """An encode layer over a 3-segment codebook fed threshold edges (U−2..U+2), exact rounding ties on
    both sides of every centre, the stream extremes and values that saturate every segment.

    ``pow2``: b = 2 with bp = 1, tails to ±5, so every step is a power of two in stream units and
    (X − C)·E has exact ties inside the segments; otherwise b = 3, whose odd multipliers put the
    ties only at |X − C| = 2^(k−1), far outside (they still saturate there)."""
    if pow2:
        cb = make_codebook("signed2r", 2, 12, realization, bp=1.0, hi=5.0, lo=-5.0, enc_bits=12)
    else:
        cb = make_codebook("signed2r", 3, 12, realization, bp=1.0, enc_bits=12)
    lo, hi = -(1 << (STREAM_BITS - 1)), (1 << (STREAM_BITS - 1)) - 1
    xs = [lo, lo + 1, -1, 0, 1, hi - 1, hi]
    for u in cb.thresholds:
        xs += list(range(u - 2, u + 3))
    n_ties = 0
    for st, seg in zip(cb.encoder, cb.segments):
        span = 1 << 14
        t = _ties(st.center, st.mult, st.shift, span)
        pick = np.concatenate([t[t < st.center][-6:], t[t > st.center][:6]]) if t.size else t
        n_ties += int(pick.size)
        xs += [int(v) for v in pick]
        xs += [st.center, st.center - 1, st.center + 1]
    x = np.clip(np.array(xs, dtype=np.int64), lo, hi)
    stream = x.reshape(1, -1, 1)
    codes, sats, _ = encode(stream, cb, mode)
    nx = Numerics(rounding=mode, realization=realization, stream_bits=STREAM_BITS)
    case = encode_case_of(f"enc_edges_{mode}_{realization}{'_pow2' if pow2 else ''}", cb, nx, 0, stream, codes,
                          "int32")
    return case, {"ties": n_ties, "saturations": sats, "at_thresholds": len(cb.thresholds) * 5,
                  "events": {"acc_overflow": 0, "stream_overflow": 0, "saturations": sats}}


def _conv_layer(name, cb, nx, weight, bias, n, w_mant=None) -> ConvLayer:
    f_out = 4
    w_mant = np.ones(weight.shape[0], dtype=np.int64) if w_mant is None else w_mant
    return ConvLayer(name, "conv2d", {"kernel": list(weight.shape[1:3]), "padding": [1, 1],
                                      "w_exp": n + f_out - cb.unit_e}, cb, nx, weight, w_mant, bias, f_out)


def _run_ref(layer: ConvLayer, codes: np.ndarray):
    return conv2d(codes, layer.codebook, layer.weight, layer.w_mant, layer.bias, w_exp=layer.attrs["w_exp"],
                  f_out=layer.f_out, padding=(1, 1), numerics=layer.numerics, name=layer.name, ordered=True,
                  path="reference")


def _codes(cb, rng, h=3, w=4, ci=6) -> np.ndarray:
    """Random codes with every segment's extreme codes planted (the largest |q| and |G|)."""
    c = rng.integers(0, cb.num_codes, (h, w, ci)).astype(np.int16)
    ends = [b for b in cb.bases] + [b + s.count - 1 for b, s in zip(cb.bases, cb.segments)]
    for i, e in enumerate(ends):
        c[i % h, (i // h) % w, i % ci] = e
    return c


def conv_ties(mode: str, policy: str, realization: str, seed: int = 0) -> tuple[LayerCase, dict]:
    """A 3×3 conv with exact ties of both signs and stream overflows. Channels 0–7: one ±1 weight each,
    mantissa 2^n, bias (co − 4)·2^n + 2^(n−1), so I = 2^n·T + B of (5.3) is half-way at every pixel;
    channels 8–15: one shared random int8 kernel, mantissa 1, biases co − 8, and the shift n puts the
    largest |I|·2^-n at 2^(stream_bits−1) or above, so the stream policy acts."""
    rng = np.random.default_rng(seed)
    cb = make_codebook("signed2r", 3, 12, realization, bp=1.0, grid_bits=10)
    codes = _codes(cb, rng)
    ci = codes.shape[2]
    k = rng.integers(-128, 128, (3, 3, ci))
    probe_w = np.repeat(k[None], 8, axis=0).astype(np.int8)
    wide = Numerics(rounding=mode, realization=realization, overflow=policy, acc_bits=48, stream_bits=40)
    imax = int(np.abs(_run_ref(_conv_layer("probe", cb, wide, probe_w, np.zeros(8, np.int64), 0), codes)[0]).max())
    n = max(1, imax.bit_length() - STREAM_BITS)
    weight = np.zeros((16, 3, 3, ci), dtype=np.int8)
    for co in range(8):
        weight[co, 1, 1, co % ci] = 1 if co % 2 else -1
    weight[8:] = probe_w
    w_mant = np.array([1 << n] * 8 + [1] * 8, dtype=np.int64)
    bias = np.array([(co - 4) * (1 << n) + (1 << (n - 1)) for co in range(8)] + list(range(-8, 0)), dtype=np.int64)
    nx = Numerics(rounding=mode, realization=realization, overflow=policy, acc_bits=48, stream_bits=STREAM_BITS)
    layer = _conv_layer(f"conv_ties_{mode}_{policy}_{realization}", cb, nx, weight, bias, n, w_mant)
    out, ev = _run_ref(layer, codes)
    i = _run_ref(_conv_layer("i", cb, wide, weight, bias, 0, w_mant), codes)[0]  # the integers I themselves
    tie = (i & ((1 << n) - 1)) == (1 << (n - 1))
    case = conv_case_of(layer, 0, codes, out, "int32")
    return case, {"ties": int(tie.sum()), "negative_ties": int((tie & (i < 0)).sum()),
                  "stream_overflow": ev["stream_overflow"], "events": _events(ev)}


def conv_max_acc(mode: str, policy: str, realization: str, seed: int = 1) -> tuple[LayerCase, dict]:
    """A 3×3 conv with extreme int8 weights (+127 and −128 kernels) on codes at the largest |q| / |G|, with
    an accumulator width a few bits short of the worst case: accumulators run into their range ends and
    the ordered policy acts after every addition (§5.4)."""
    rng = np.random.default_rng(seed)
    cb = make_codebook("signed2r", 3, 12, realization, bp=1.0, grid_bits=10)
    codes = _codes(cb, rng)
    top = [b + s.count - 1 for b, s in zip(cb.bases, cb.segments)]
    codes[1:, 1:, :] = np.array(top, dtype=np.int16)[rng.integers(0, len(top), codes[1:, 1:, :].shape)]
    ci = codes.shape[2]
    weight = np.stack([np.full((3, 3, ci), 127), np.full((3, 3, ci), -128), rng.integers(-128, 128, (3, 3, ci)),
                       np.where(rng.random((3, 3, ci)) < 0.5, 127, -128)]).astype(np.int8)
    nx = Numerics(rounding=mode, realization=realization, overflow=policy, acc_bits=12, stream_bits=24)
    bias = np.array([0, 5, -5, 3], dtype=np.int64)
    layer = _conv_layer(f"conv_maxacc_{mode}_{policy}_{realization}", cb, nx, weight, bias, 6)
    out, ev = _run_ref(layer, codes)
    case = conv_case_of(layer, 0, codes, out, "int32")
    return case, {"acc_overflow": ev["acc_overflow"], "events": _events(ev)}


def _events(ev: dict) -> dict:
    return {"acc_overflow": int(ev["acc_overflow"]), "stream_overflow": int(ev["stream_overflow"]),
            "saturations": int(ev.get("saturations", 0))}


def all_cases() -> list[tuple[LayerCase, dict]]:
    """Every synthetic layer: encoder edges per mode and realization, conv ties and maximal accumulators
    per mode × policy × realization."""
    out = []
    for mode in MODES:
        for real in ("split", "grid"):
            out.append(encoder_edges(mode, real))
            out.append(encoder_edges(mode, real, pow2=True))
            for policy in POLICIES:
                out.append(conv_ties(mode, policy, real))
                out.append(conv_max_acc(mode, policy, real))
    return out
