"""conv2d / conv_transpose2d against pure-Python references of arithmetic.md §5.

Two independent references, both in Python ints:

* ``ref_conv_integer`` — the integer form literally: per output, the
  accumulators of the realization (§5.3), taps in the order ky, kx, ci with the
  overflow policy after every addition when ordered (§5.4), then
  ``OVF_stream(R(I, n))``.
* ``ref_conv_real`` — the real form (5.2) with exact fractions: Σ value·w·scale +
  bias, rounded once. Where no accumulator overflows, both realizations must
  equal it; this checks the decomposition into P/Q/A accumulators itself.

The transposed conv reference gathers by the literal text of §5.5; its real form
reference scatters (the textbook definition), an independent check of the
gather tables.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from intsim.artifact import Codebook, EncoderStage, Numerics, Segment
from intsim.ops.conv import (
    accumulator_layout,
    conv2d,
    conv_can_overflow,
    conv_transpose2d,
)
from intsim.overflow import EngineOverflowError
from intsim.rounding import RoundingMode
from tests.exact_reference import ref_round_shift as ref_round
from tests.exact_reference import round_rational as _rnd_frac

MODES = RoundingMode.names()  # every mode of §2, a new one included


# --------------------------------------------------------------------------
# Python references




class Policy:
    """§4 at width ``bits`` with an event count; raises OverflowError under 'error'."""

    def __init__(self, bits: int, policy: str):
        self.lo, self.hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        self.bits, self.policy, self.events = bits, policy, 0

    def __call__(self, v: int) -> int:
        if self.lo <= v <= self.hi:
            return v
        self.events += 1
        if self.policy == "error":
            raise OverflowError(v)
        if self.policy == "saturate":
            return self.hi if v > self.hi else self.lo
        return ((v + (1 << (self.bits - 1))) % (1 << self.bits)) - (1 << (self.bits - 1))


def code_info(cb: Codebook):
    """flat code -> (segment, q), built from §3.2 directly."""
    out = []
    for s_i, s in enumerate(cb.segments):
        for q in range(s.qmin, s.qmax + 1):
            out.append((s_i, q))
    return out


def taps_conv2d(H, W, kh, kw, stride, padding, dilation, oy, ox):
    """(ky, kx, iy, ix) of the non-padding taps of output (oy, ox), order ky, kx (§5.1)."""
    for ky in range(kh):
        iy = oy * stride[0] - padding[0] + ky * dilation[0]
        if not 0 <= iy < H:
            continue
        for kx in range(kw):
            ix = ox * stride[1] - padding[1] + kx * dilation[1]
            if 0 <= ix < W:
                yield ky, kx, iy, ix


def taps_transpose(H, W, kh, kw, stride, padding, oy, ox):
    """Gather taps of §5.5: input ((oy + p − ky)/s, …) when exact and inside."""
    for ky in range(kh):
        ny = oy + padding[0] - ky
        if ny < 0 or ny % stride[0] or ny // stride[0] >= H:
            continue
        for kx in range(kw):
            nx = ox + padding[1] - kx
            if nx < 0 or nx % stride[1] or nx // stride[1] >= W:
                continue
            yield ky, kx, ny // stride[0], nx // stride[1]


def out_size(H, W, kh, kw, geom, transposed):
    if transposed:
        s, p, op = geom["stride"], geom["padding"], geom["output_padding"]
        return (H - 1) * s[0] - 2 * p[0] + kh + op[0], (W - 1) * s[1] - 2 * p[1] + kw + op[1]
    s, p, d = geom["stride"], geom["padding"], geom["dilation"]
    return ((H + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1, (W + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1)


def ref_conv_integer(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num: Numerics, transposed, ordered):
    """Integer form (§5.3, §5.4); returns (out, acc_events, stream_events, macs per segment)."""
    H, W, Ci = codes.shape
    Co, kh, kw, cig = w.shape
    groups = geom.get("groups", 1)
    cog = Co // groups
    info = code_info(cb)
    Ho, Wo = out_size(H, W, kh, kw, geom, transposed)
    n = w_exp + cb.unit_e - f_out
    acc_pol = Policy(num.acc_bits, num.overflow)
    st_pol = Policy(num.stream_bits, num.overflow)
    macs = [0] * len(cb.segments)
    out = np.zeros((Ho, Wo, Co), dtype=np.int64)
    for oy in range(Ho):
        for ox in range(Wo):
            if transposed:
                taps = list(taps_transpose(H, W, kh, kw, geom["stride"], geom["padding"], oy, ox))
            else:
                taps = list(taps_conv2d(H, W, kh, kw, geom["stride"], geom["padding"], geom["dilation"], oy, ox))
            for co in range(Co):
                g = co // cog
                accs: dict = {}
                for ky, kx, iy, ix in taps:
                    for cl in range(cig):
                        s, q = info[int(codes[iy, ix, g * cig + cl])]
                        seg = cb.segments[s]
                        wv = int(w[co, ky, kx, cl])
                        macs[s] += 1
                        if num.realization == "grid":
                            terms = [("A", wv * (seg.origin + seg.step * q))]
                        else:
                            terms = [(("P", s), wv * q)]
                            if seg.origin != 0:
                                terms.append((("Q", s), wv))
                        for key, t in terms:
                            v = accs.get(key, 0) + t
                            accs[key] = acc_pol(v) if ordered else v
                base = int(w_mant[co]) * cb.unit_m
                I = int(bias[co])
                for key, a in accs.items():
                    if key == "A":
                        I += base * a
                    elif key[0] == "P":
                        I += base * cb.segments[key[1]].step * a
                    else:
                        I += base * cb.segments[key[1]].origin * a
                out[oy, ox, co] = st_pol(ref_round(I, n, num.rounding))
    return out, acc_pol.events, st_pol.events, macs


def ref_conv_real(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num: Numerics, transposed):
    """Real form (5.2) with exact fractions; the transposed conv by scattering."""
    H, W, Ci = codes.shape
    Co, kh, kw, cig = w.shape
    groups = geom.get("groups", 1)
    cog = Co // groups
    info = code_info(cb)
    Ho, Wo = out_size(H, W, kh, kw, geom, transposed)
    u = Fraction(cb.unit_m, 1 << cb.unit_e)
    val = [(cb.segments[s].origin + cb.segments[s].step * q) * u for s, q in info]
    v = [[[Fraction(int(bias[co]), 1 << (w_exp + cb.unit_e)) for co in range(Co)] for _ in range(Wo)] for _ in range(Ho)]
    if transposed:
        s, p = geom["stride"], geom["padding"]
        for iy in range(H):
            for ix in range(W):
                for ky in range(kh):
                    oy = iy * s[0] - p[0] + ky
                    for kx in range(kw):
                        ox = ix * s[1] - p[1] + kx
                        if not (0 <= oy < Ho and 0 <= ox < Wo):
                            continue
                        for co in range(Co):
                            for ci in range(Ci):
                                v[oy][ox][co] += val[int(codes[iy, ix, ci])] * int(w[co, ky, kx, ci]) * int(w_mant[co]) / (1 << w_exp)
    else:
        for oy in range(Ho):
            for ox in range(Wo):
                for ky, kx, iy, ix in taps_conv2d(H, W, kh, kw, geom["stride"], geom["padding"], geom["dilation"], oy, ox):
                    for co in range(Co):
                        g = co // cog
                        for cl in range(cig):
                            v[oy][ox][co] += val[int(codes[iy, ix, g * cig + cl])] * int(w[co, ky, kx, cl]) * int(w_mant[co]) / (1 << w_exp)
    st = Policy(num.stream_bits, num.overflow)
    out = np.zeros((Ho, Wo, Co), dtype=np.int64)
    for oy in range(Ho):
        for ox in range(Wo):
            for co in range(Co):
                t = v[oy][ox][co] * (1 << f_out)
                out[oy, ox, co] = st(_rnd_frac(t, num.rounding))
    return out




# --------------------------------------------------------------------------
# fixtures


def codebook_3_3() -> Codebook:
    """The released b = 4 signed codebook of arithmetic.md §3.3 (u = 2^-16)."""
    return Codebook(
        unit_m=1, unit_e=16,
        segments=(Segment(-65536, 26214, -8, -1), Segment(0, 9362, -7, 7), Segment(65536, 40960, 1, 8)),
        thresholds=(-65537, 65536),
        encoder=(EncoderStage(-65536, 52429, 31), EncoderStage(0, 57346, 29), EncoderStage(65536, 52429, 31)),
        grid_bits=None, allocation="released", bits=4,
    )


def random_codebook(rng: np.random.Generator, grid: bool) -> Codebook:
    """1–3 ascending segments; small integers for grid, wider for split."""
    S = int(rng.integers(1, 4))
    dmax = 7 if grid else 3000
    d0 = int(rng.integers(1, dmax))
    n0 = int(rng.integers(1, 8))
    segs = [Segment(int(rng.integers(-3, 4)) if S == 1 else 0, d0, -n0 if S != 2 else 0, n0)]
    if S >= 2:  # positive tail above the dense region
        top = segs[0].origin + d0 * n0
        d = int(rng.integers(1, dmax))
        segs.append(Segment(top + int(rng.integers(0, dmax)), d, 1, int(rng.integers(1, 9))))
    if S == 3:  # negative tail below
        bot = segs[0].origin - d0 * n0
        d = int(rng.integers(1, dmax))
        segs.insert(0, Segment(bot - int(rng.integers(0, dmax)), d, -int(rng.integers(1, 9)), -1))
    unit_e = int(rng.integers(4, 17))
    enc = tuple(EncoderStage(0, 1, 0) for _ in segs)  # unused by conv
    return Codebook(unit_m=int(rng.integers(1, 4)), unit_e=unit_e, segments=tuple(segs),
                    thresholds=tuple(range(len(segs) - 1)), encoder=enc, grid_bits=16 if grid else None)


def extreme_codes(cb: Codebook) -> list[int]:
    """Flat codes of every segment's qmin and qmax (the largest |q| / |G|)."""
    out = []
    for b, s in zip(cb.bases, cb.segments):
        out += [b, b + s.count - 1]
    return out


def random_case(rng, realization, transposed, adversarial=False, big=False):
    """A random small conv; ``big`` (3×3 kernel, 6–8 channels per group) makes narrow accumulators overflow."""
    cb = random_codebook(rng, realization == "grid")
    while big and max(max(-s.qmin, s.qmax) for s in cb.segments) < 4:
        cb = random_codebook(rng, realization == "grid")
    groups = 1
    if transposed:
        kh, kw = (3, 3) if big else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        p = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
        op = (int(rng.integers(0, s[0])), int(rng.integers(0, s[1])))
        geom = {"stride": s, "padding": p, "output_padding": op}
    else:
        kh, kw = (3, 3) if big else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        geom = {"stride": (int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                "padding": (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
                "dilation": (int(rng.integers(1, 3)), int(rng.integers(1, 3)))}
        groups = int(rng.choice([1, 1, 2]))
        geom["groups"] = groups
    ci = groups * ((16 if transposed else 8) if big else int(rng.integers(1, 4)))
    co = groups * int(rng.integers(1, 4))
    H, W = int(rng.integers(3, 7)), int(rng.integers(3, 7))
    if not transposed:
        # keep at least one output
        H = max(H, (kh - 1) * geom["dilation"][0] + 1 - 2 * geom["padding"][0])
        W = max(W, (kw - 1) * geom["dilation"][1] + 1 - 2 * geom["padding"][1])
    if adversarial:
        ext = extreme_codes(cb)
        codes = rng.choice(ext, size=(H, W, ci)).astype(np.int64)
        if big:  # mostly the code of largest |q| so that sums grow in one direction
            _, q_of, _ = cb.code_table()
            top = int(np.argmax(np.abs(q_of) if realization == "split" else np.abs(cb.code_table()[2])))
            codes = np.where(rng.random(codes.shape) < 0.9, top, codes).astype(np.int64)
        w = rng.choice([-128, 127], size=(co, kh, kw, ci // groups)).astype(np.int8)
    else:
        codes = rng.integers(0, cb.num_codes, size=(H, W, ci)).astype(np.int64)
        w = rng.integers(-128, 128, size=(co, kh, kw, ci // groups)).astype(np.int8)
    w_mant = rng.integers(1, 64, size=co).astype(np.int64)
    bias = rng.integers(-1 << 20, 1 << 20, size=co).astype(np.int64)
    w_exp = int(rng.integers(0, 10))
    f_out = int(rng.integers(0, w_exp + cb.unit_e + 1))
    return cb, codes, w, w_mant, bias, w_exp, f_out, geom


def run_op(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed, ordered=None, name="op"):
    if transposed:
        return conv_transpose2d(codes, cb, w, w_mant, bias, w_exp=w_exp, f_out=f_out, stride=geom["stride"],
                                padding=geom["padding"], output_padding=geom["output_padding"], numerics=num,
                                name=name, ordered=ordered)
    return conv2d(codes, cb, w, w_mant, bias, w_exp=w_exp, f_out=f_out, stride=geom["stride"],
                  padding=geom["padding"], dilation=geom["dilation"], groups=geom["groups"], numerics=num,
                  name=name, ordered=ordered)


# --------------------------------------------------------------------------
# worked example


@pytest.mark.parametrize("ordered", [False, True])
def test_worked_example_5_3(ordered):
    """arithmetic.md §5.3: split, 1×1 conv, m_w = 3, k_w = 4, f_o = 16 -> X = −70305."""
    cb = codebook_3_3()
    # flat codes: dense q=2 -> 8 + 2 + 7 = 17; tail+ q=3 -> 23 + 3 − 1 = 25; tail− q=−1 -> 0 + (−1 + 8) = 7
    codes = np.array([17, 25, 7], dtype=np.int64).reshape(1, 1, 3)
    w = np.array([5, -2, 1], dtype=np.int8).reshape(1, 1, 1, 3)
    x, ev = conv2d(codes, cb, w, np.array([3]), np.array([0]), w_exp=4, f_out=16, ordered=ordered)
    assert x.tolist() == [[[-70305]]]
    assert ev["macs"] == {"0": 1, "1": 1, "2": 1}
    assert ev["acc_overflow"] == 0 and ev["stream_overflow"] == 0 and ev["ordered"] is ordered
    # the intermediate I of the example
    assert 3 * (9362 * 10 + 40960 * (-6) + 65536 * (-2) + 26214 * (-1) + (-65536) * 1) == -1124886


def test_worked_example_grid_equals_split():
    """The same example in the grid realization gives the same value (§5.3 'both compute (5.2)')."""
    cb = codebook_3_3()
    codes = np.array([17, 25, 7], dtype=np.int64).reshape(1, 1, 3)
    w = np.array([5, -2, 1], dtype=np.int8).reshape(1, 1, 1, 3)
    x, ev = conv2d(codes, cb, w, np.array([3]), np.array([0]), w_exp=4, f_out=16,
                   numerics=Numerics(realization="grid"))
    assert x.tolist() == [[[-70305]]]
    assert ev["macs"] == {"all": 3}


# --------------------------------------------------------------------------
# random cases vs references


@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_random_matches_references(realization, transposed, mode):
    rng = np.random.default_rng([realization == "grid", transposed, MODES.index(mode)])
    for trial in range(4):
        cb, codes, w, w_mant, bias, w_exp, f_out, geom = random_case(rng, realization, transposed,
                                                                     adversarial=trial % 2 == 1)
        num = Numerics(rounding=mode, realization=realization, overflow="saturate", acc_bits=48, stream_bits=40)
        ref, acc_ev, st_ev, macs = ref_conv_integer(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num,
                                                    transposed, ordered=False)
        real = ref_conv_real(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed)
        np.testing.assert_array_equal(ref, real)  # the references agree with each other
        for ordered in (None, False, True):
            x, ev = run_op(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed, ordered)
            np.testing.assert_array_equal(x, ref)
            assert ev["acc_overflow"] == 0
            assert ev["stream_overflow"] == st_ev
        assert ev["ordered"] is True
        if realization == "grid":
            assert ev["macs"] == {"all": sum(macs)}
        else:
            assert ev["macs"] == {str(s): m for s, m in enumerate(macs)}


GEOMETRIES = [
    dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(stride=(1, 1), padding=(2, 2), dilation=(2, 2), groups=1),
    dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2),
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=4),  # depthwise
]


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_geometries_adversarial(geom):
    """Maximal codes and weights with padding, stride 2, dilation 2 and groups."""
    rng = np.random.default_rng(GEOMETRIES.index(geom))
    cb = codebook_3_3()
    g = geom["groups"]
    codes = rng.choice(extreme_codes(cb), size=(6, 5, 4)).astype(np.int64)
    w = rng.choice([-128, 127], size=(4, 3, 3, 4 // g)).astype(np.int8)
    w_mant = np.array([1, 2, 3, 127])
    bias = np.array([0, 5, -7, 1 << 30])
    num = Numerics(acc_bits=48, stream_bits=40)
    ref, _, st_ev, macs = ref_conv_integer(codes, cb, w, w_mant, bias, 8, 16, geom, num, False, ordered=False)
    x, ev = conv2d(codes, cb, w, w_mant, bias, w_exp=8, f_out=16, numerics=num, **geom)
    np.testing.assert_array_equal(x, ref)
    assert ev["macs"] == {str(s): m for s, m in enumerate(macs)}
    assert ev["stream_overflow"] == st_ev


def test_transposed_output_padding_shape():
    """Ho = (H−1)·s − 2p + k + op (§5.5) for stride 2, padding 1, output padding 1."""
    cb = codebook_3_3()
    rng = np.random.default_rng(7)
    codes = rng.integers(0, cb.num_codes, size=(3, 4, 2)).astype(np.int64)
    w = rng.integers(-128, 128, size=(2, 3, 3, 2)).astype(np.int8)
    geom = {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1)}
    num = Numerics()
    x, _ = run_op(codes, cb, w, np.array([1, 1]), np.array([0, 0]), 6, 16, geom, num, True)
    assert x.shape == ((3 - 1) * 2 - 2 + 3 + 1, (4 - 1) * 2 - 2 + 3 + 1, 2)
    ref = ref_conv_real(codes, cb, w, np.array([1, 1]), np.array([0, 0]), 6, 16, geom, num, True)
    np.testing.assert_array_equal(x, ref)


# --------------------------------------------------------------------------
# overflow: ordered path


@pytest.mark.parametrize("policy", ["saturate", "wrap"])
@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("acc_bits", [12, 14, 16])
@pytest.mark.parametrize("transposed", [False, True])
def test_ordered_overflow_matches_reference(policy, realization, acc_bits, transposed):
    rng = np.random.default_rng([acc_bits, transposed, policy == "wrap", realization == "grid"])
    cb, codes, w, w_mant, bias, w_exp, f_out, geom = random_case(rng, realization, transposed, adversarial=True, big=True)
    # enough taps of equal sign to overflow a narrow accumulator
    w = np.where(rng.random(w.shape) < 0.95, np.int8(127), w).astype(np.int8)
    num = Numerics(rounding="half_even", realization=realization, overflow=policy, acc_bits=acc_bits,
                   stream_bits=24)
    ref, acc_ev, st_ev, _ = ref_conv_integer(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num,
                                             transposed, ordered=True)
    x, ev = run_op(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed)
    assert ev["ordered"] is conv_can_overflow(w, cb, realization, acc_bits)
    assert ev["ordered"] and acc_ev > 0  # the case is built to overflow
    np.testing.assert_array_equal(x, ref)
    assert ev["acc_overflow"] == acc_ev
    assert ev["stream_overflow"] == st_ev


def test_ordered_overflow_events_nonzero():
    """A case built to overflow: 3×3×4 taps of q = 8, w = 127 into 12-bit accumulators."""
    cb = codebook_3_3()
    codes = np.full((3, 3, 4), cb.num_codes - 1, dtype=np.int64)  # tail+ q = 8
    codes[1, 1, 0] = 0  # one tail− code (q = −8)
    w = np.full((2, 3, 3, 4), 127, dtype=np.int8)
    w[1, 0, 0, 0] = -128
    for policy in ("saturate", "wrap"):
        num = Numerics(overflow=policy, acc_bits=12, stream_bits=40)
        ref, acc_ev, st_ev, _ = ref_conv_integer(codes, cb, w, np.array([1, 2]), np.array([0, 0]), 0, 0,
                                                 {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1),
                                                  "groups": 1}, num, False, ordered=True)
        x, ev = conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0, padding=(1, 1),
                       numerics=num)
        assert ev["ordered"] and acc_ev > 0
        np.testing.assert_array_equal(x, ref)
        assert ev["acc_overflow"] == acc_ev and ev["stream_overflow"] == st_ev


def test_ordered_error_policy_names_op():
    cb = codebook_3_3()
    codes = np.full((3, 3, 4), cb.num_codes - 1, dtype=np.int64)
    w = np.full((1, 3, 3, 4), 127, dtype=np.int8)
    num = Numerics(overflow="error", acc_bits=12)
    with pytest.raises(EngineOverflowError, match="body.3.conv1.*accumulator"):
        conv2d(codes, cb, w, np.array([1]), np.array([0]), w_exp=0, f_out=0, numerics=num, name="body.3.conv1")


def test_stream_overflow_error_policy_names_op():
    cb = codebook_3_3()
    codes = np.full((2, 2, 1), cb.num_codes - 1, dtype=np.int64)
    w = np.full((1, 1, 1, 1), 127, dtype=np.int8)
    num = Numerics(overflow="error", stream_bits=8)
    with pytest.raises(EngineOverflowError, match="tail.*output stream"):
        conv2d(codes, cb, w, np.array([1]), np.array([0]), w_exp=0, f_out=0, numerics=num, name="tail")


def test_stream_overflow_saturate_wrap():
    """Stream store overflow (§4 at stream_bits) in both policies, counted per element."""
    cb = codebook_3_3()
    rng = np.random.default_rng(3)
    codes = rng.integers(0, cb.num_codes, size=(4, 4, 3)).astype(np.int64)
    w = rng.integers(-128, 128, size=(3, 3, 3, 3)).astype(np.int8)
    geom = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    for policy in ("saturate", "wrap"):
        num = Numerics(overflow=policy, stream_bits=12, rounding="half_away")
        ref, _, st_ev, _ = ref_conv_integer(codes, cb, w, np.array([1, 5, 9]), np.array([0, 0, 0]), 4, 12, geom,
                                            num, False, ordered=False)
        x, ev = conv2d(codes, cb, w, np.array([1, 5, 9]), np.array([0, 0, 0]), w_exp=4, f_out=12, padding=1,
                       numerics=num)
        assert st_ev > 0
        np.testing.assert_array_equal(x, ref)
        assert ev["stream_overflow"] == st_ev


# --------------------------------------------------------------------------
# worst case and argument checks


def test_worst_case_values():
    cb = codebook_3_3()
    w = np.zeros((2, 1, 1, 3), dtype=np.int8)
    w[0] = [[[1, -2, 3]]]
    w[1] = [[[-128, 0, 0]]]
    # accumulators: P_0 (a = 8), Q_0 (1), P_1 (7), P_2 (8), Q_2 (1); max_co Σ|w| = 128 -> W = 1024
    assert accumulator_layout(cb, "split") == [("P", 0, 8), ("Q", 0, 1), ("P", 1, 7), ("P", 2, 8), ("Q", 2, 1)]
    # grid: max |G| = 65536 + 40960·8 = 393216 -> W = 128·393216 = 50331648
    assert accumulator_layout(cb, "grid") == [("A", None, 393216)]
    assert conv_can_overflow(w, cb, "split", 11) is True  # 1024 > 2^10 − 1
    assert conv_can_overflow(w, cb, "split", 12) is False
    assert conv_can_overflow(w, cb, "grid", 27) is False
    assert conv_can_overflow(w, cb, "grid", 26) is True  # 50331648 > 2^25 − 1


def test_bad_arguments():
    cb = codebook_3_3()
    codes = np.zeros((2, 2, 2), dtype=np.int64)
    w = np.zeros((1, 1, 1, 2), dtype=np.int8)
    with pytest.raises(ValueError, match="shift"):
        conv2d(codes, cb, w, np.array([1]), np.array([0]), w_exp=0, f_out=17)
    with pytest.raises(ValueError, match="codes outside"):
        conv2d(codes + cb.num_codes, cb, w, np.array([1]), np.array([0]), w_exp=0, f_out=0)
    with pytest.raises(ValueError, match="channels"):
        conv2d(codes, cb, np.zeros((1, 1, 1, 3), np.int8), np.array([1]), np.array([0]), w_exp=0, f_out=0)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose2d(codes, cb, w, np.array([1]), np.array([0]), w_exp=0, f_out=0, stride=2,
                         output_padding=2)


def test_conv_taps_memoized_per_shape_equal_fresh_tables():
    """The memoized geometry equals tables built afresh, and strided conv2d tables are affine."""
    import numpy as np

    from intsim.kernels import conv as K
    from intsim.kernels import gemm as KG
    from intsim.ops.conv_taps import conv2d_taps, conv_transpose2d_taps

    for h, w, k, s, p, d in [(11, 9, 3, 1, 1, 1), (16, 13, 3, 2, 1, 1), (10, 10, 5, 1, 4, 2), (7, 8, 1, 1, 0, 1)]:
        t = conv2d_taps(h, w, k, k, s, s, p, p, d, d)
        assert t is conv2d_taps(h, w, k, k, s, s, p, p, d, d)
        iy, ix = K.conv2d_tap_table(h, k, s, p, d), K.conv2d_tap_table(w, k, s, p, d)
        np.testing.assert_array_equal(t.iy_of, iy)
        np.testing.assert_array_equal(t.ix_of, ix)
        np.testing.assert_array_equal(t.uy, K.tap_usage(iy, h))
        np.testing.assert_array_equal(t.inv_x, KG.inverse_taps(ix, w))
        o = np.arange(iy.shape[0])[:, None] * s + np.arange(k)[None, :] * d + t.y_off
        np.testing.assert_array_equal(np.where((o >= 0) & (o < h), o, -1), iy)
    tt = conv_transpose2d_taps(6, 5, 4, 4, 2, 2, 1, 1, 0, 0)
    assert tt.y_off is None and tt.x_off is None  # the int8 path refuses the transposed conv
    np.testing.assert_array_equal(tt.iy_of, K.conv_transpose2d_tap_table(6, 4, 2, 1, 0))


@pytest.mark.parametrize("path", ["reference", "gemm32", "gemm64", "int8", "auto"])
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_codes_held_in_one_byte_give_the_same_conv(path, realization):
    """A staged concat holds codes of a codebook of ≤ 256 codes in uint8 (``Codebook.held_code_dtype``):
    every conv path reads them as the same integers as the codebook's int16 codes (outputs and events),
    codes above 127 and up to the last included."""
    from tests.artifact_factory import make_codebook

    rng = np.random.default_rng(11)
    cb = make_codebook("signed2r", 7, 16, realization)  # 255 codes
    assert cb.held_code_dtype == np.uint8 and cb.code_dtype == np.int16
    codes16 = rng.integers(0, cb.num_codes, size=(19, 23, 6)).astype(np.int16)
    codes16[0, 0, 0], codes16[-1, -1, -1] = cb.num_codes - 1, 0
    w = rng.integers(-128, 128, size=(9, 3, 3, 6)).astype(np.int8)
    w_mant, bias = rng.integers(1, 1 << 10, size=9), rng.integers(-(1 << 20), 1 << 20, size=9)
    num = Numerics(realization=realization, overflow="saturate", acc_bits=48, stream_bits=20)
    args = dict(w_exp=8, f_out=12, numerics=num, padding=(1, 1), path=path)
    want = conv2d(codes16, cb, w, w_mant, bias, **args)
    got = conv2d(codes16.astype(np.uint8), cb, w, w_mant, bias, **args)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


def test_held_code_dtype_is_one_byte_only_up_to_256_codes():
    from tests.artifact_factory import make_codebook

    small, big = make_codebook("signed2r", 7, 16, "split"), make_codebook("relu2r", 8, 16, "split")
    assert (small.num_codes, small.held_code_dtype) == (255, np.uint8)
    assert (big.num_codes, big.held_code_dtype, big.code_dtype) == (384, np.int16, np.int16)
