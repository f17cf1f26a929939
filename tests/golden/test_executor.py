"""Golden executor (torch float64 real forms) against the worked examples of
docs/arithmetic.md and small Python-integer references of the integer forms.

The references here are written from the spec with Python ints and
``fractions.Fraction`` only; nothing is imported from intsim's arithmetic.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.executor import EVENT_KEYS, execute, run_golden
from golden.numerics import GoldenError, GoldenOverflowError, overflow, rnd
from golden.ops.codes import code_tables
from golden.ops.conv import can_overflow, worst_case
from golden.ops.stream import bilinear_taps
from intsim.artifact import (
    Artifact,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
)

MODES = ("half_up", "half_away", "half_even", "floor", "half_zero")

# --------------------------------------------------------------------------
# Python-int reference of the integer forms (written from the spec)


def R(i: int, n: int, mode: str) -> int:
    """arithmetic.md §2 integer form with Python ints."""
    if n == 0:
        return i
    h = 1 << (n - 1)
    if mode == "half_up":
        return (i + h) >> n
    if mode == "half_away":
        s = -1 if i < 0 else 1
        return s * ((abs(i) + h) >> n)
    if mode == "half_even":
        q = i >> n
        r = i - (q << n)
        return q + (1 if (r > h or (r == h and q % 2 == 1)) else 0)
    if mode == "half_zero":
        s = -1 if i < 0 else 1
        return s * ((abs(i) + h - 1) >> n)
    return i >> n


def R_frac(x: Fraction, mode: str) -> int:
    """The meaning column of §2 on an exact rational."""
    fl = math.floor(x)
    r = x - fl
    if mode == "floor":
        return fl
    if mode == "half_up":
        return fl + (1 if r >= Fraction(1, 2) else 0)
    if mode == "half_away":
        a = abs(x)
        m = math.floor(a) + (1 if a - math.floor(a) >= Fraction(1, 2) else 0)
        return -m if x < 0 else m
    if mode == "half_zero":  # nearest; a tie toward zero
        m = math.ceil(abs(x) - Fraction(1, 2))
        return -m if x < 0 else m
    return fl + (1 if (r > Fraction(1, 2) or (r == Fraction(1, 2) and fl % 2 == 1)) else 0)


def OVF(v: int, bits: int, policy: str) -> tuple[int, int]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if lo <= v <= hi:
        return v, 0
    if policy == "saturate":
        return min(max(v, lo), hi), 1
    if policy == "wrap":
        return ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)), 1
    raise OverflowError(v)


# --------------------------------------------------------------------------
# tiny artifacts in memory


def released_cb() -> Codebook:
    """The codebook of arithmetic.md §3.3 / §3.4 (released, b = 4, signed, u = 2^-16)."""
    segs = (Segment(-65536, 26214, -8, -1), Segment(0, 9362, -7, 7), Segment(65536, 40960, 1, 8))
    enc = (EncoderStage(-65536, 81922, 31), EncoderStage(0, 57346, 29), EncoderStage(65536, 52429, 31))
    return Codebook(1, 16, segs, (-65537, 65536), enc, grid_bits=20, allocation="released", bits=4)


def small_cb(unit_m=3, unit_e=5) -> Codebook:
    """A small 3-segment codebook with odd unit and integer grid (for random tests)."""
    segs = (Segment(-20, 3, -4, -1), Segment(0, 1, -5, 5), Segment(12, 5, 1, 3))
    enc = (EncoderStage(-20, 11, 5), EncoderStage(0, 1, 0), EncoderStage(12, 13, 6))
    return Codebook(unit_m, unit_e, segs, (-6, 5), enc, grid_bits=8, allocation="budgeted", bits=4)


def T(name, kind, C, frac=None, cb=None) -> TensorSpec:
    return TensorSpec(name, kind, C, frac=frac, codebook=cb)


def art_of(tensors: list[TensorSpec], ops: list[OpSpec], arrays: dict | None = None, inputs=None, outputs=None,
           **numerics) -> Artifact:
    return Artifact(model={"name": "test"}, numerics=Numerics(**numerics),
                    inputs=tuple(inputs or (tensors[0].name,)), outputs=tuple(outputs or (tensors[-1].name,)),
                    tensors={t.name: t for t in tensors}, ops=ops, arrays=arrays or {})


def one_op(op: str, ins: list[TensorSpec], outs: list[TensorSpec], attrs=None, arrays=None, **numerics) -> Artifact:
    roles = {}
    arrs = {}
    for role, a in (arrays or {}).items():
        roles[role] = f"op.{role}"
        arrs[f"op.{role}"] = np.asarray(a)
    o = OpSpec("op", op, tuple(t.name for t in ins), tuple(t.name for t in outs), attrs or {}, roles)
    return art_of(ins + outs, [o], arrs, inputs=[t.name for t in ins], outputs=[t.name for t in outs], **numerics)


def run1(art, feeds, **kw):
    res = execute(art, feeds, **kw)
    return res, res.events["op"]


# --------------------------------------------------------------------------
# §2 rounding, §4 overflow


@pytest.mark.parametrize("I,expect", [
    (6, (2, 2, 2, 1, 1)), (10, (3, 3, 2, 2, 2)), (-6, (-1, -2, -2, -2, -1)),
    (-10, (-2, -3, -2, -3, -2)), (-7, (-2, -2, -2, -2, -2)), (5, (1, 1, 1, 1, 1)),
])
def test_rounding_table_section2(I, expect):
    t = torch.tensor([I / 4], dtype=torch.float64)
    got = tuple(int(rnd(t, m)[0]) for m in MODES)
    assert got == expect
    assert tuple(R(I, 2, m) for m in MODES) == expect


def test_rounding_sqrt2_example():
    t = torch.tensor([1000 * 1518500250 / 2**31], dtype=torch.float64)
    for m in MODES:
        assert int(rnd(t, m)[0]) == 707 == R(1000 * 1518500250, 31, m)


def test_rounding_real_form_matches_integer_form_near_2_53():
    rng = np.random.default_rng(1)
    cases = []
    for n in (1, 2, 5, 10, 20, 31, 40, 52, 53, 60, 62):
        for _ in range(60):
            mag = int(rng.integers(1, 2**53 - 1))
            cases.append((mag if rng.random() < 0.5 else -mag, n))
        h = 1 << (n - 1)
        for base in (0, 1, 7, (2**53 - 1) >> n):
            for d in (-1, 0, 1):  # ties and their neighbours, incl. at the top of the envelope
                for sgn in (1, -1):
                    i = sgn * ((base << n) + h + d)
                    if abs(i) < 2**53:
                        cases.append((i, n))
    ts = torch.tensor([math.ldexp(float(i), -n) for i, n in cases], dtype=torch.float64)
    for i, n in cases:
        assert math.ldexp(float(i), -n) == Fraction(i, 2**n)  # inputs are exact
    for m in MODES:
        got = rnd(ts, m)
        for k, (i, n) in enumerate(cases):
            assert int(got[k]) == R(i, n, m) == R_frac(Fraction(i, 2**n), m), (i, n, m)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**53) + 1, 2**53 - 1), st.integers(0, 62))
def test_rounding_real_form_property(i, n):
    t = torch.tensor([math.ldexp(float(i), -n)], dtype=torch.float64)
    for m in MODES:
        assert int(rnd(t, m)[0]) == R(i, n, m) == R_frac(Fraction(i, 2**n), m)


def test_overflow_section4():
    v = torch.tensor([40000.0, -32769.0, 5.0], dtype=torch.float64)
    s, e = overflow(v, 16, "saturate", "x")
    assert s.tolist() == [32767, -32768, 5] and e == 2
    w, e = overflow(v, 16, "wrap", "x")
    assert w.tolist() == [-25536, 32767, 5] and e == 2
    with pytest.raises(GoldenOverflowError, match=r"x: value 40000 at index \(0,\)"):
        overflow(v, 16, "error", "x")


# --------------------------------------------------------------------------
# §3 codebooks and the encoder


def test_flat_codes_section3():
    cb = released_cb()
    tab = code_tables(cb)
    assert tab.n == 31 and tab.bases == (0, 8, 23)
    c = [k for k in range(31) if int(tab.seg[k]) == 1 and int(tab.q[k]) == -7]
    assert c == [8]
    assert int(tab.grid[8]) == -7 * 9362


def enc_art(cb, f_in=16, **numerics):
    return one_op("encode", [T("x", "stream", 1, f_in)], [T("c", "codes", 1, cb=cb)], **numerics)


def test_encoder_worked_example_section34():
    art = enc_art(released_cb())
    res, ev = run1(art, {"x": np.array([30000, 400000, 500000]).reshape(1, 3, 1)})
    assert res.tensors["c"].ravel().tolist() == [18, 30, 30]
    assert ev["saturations"] == 1
    assert res.tensors["c"].dtype == np.int64


def test_encoder_thresholds_inclusive():
    art = enc_art(released_cb())
    xs = [-65537, -65536, 0, 65536, 65537]
    res, _ = run1(art, {"x": np.array(xs).reshape(1, 5, 1)})
    tab = code_tables(released_cb())
    segs = [int(tab.seg[c]) for c in res.tensors["c"].ravel()]
    assert segs == [0, 1, 1, 1, 2]


@pytest.mark.parametrize("mode", MODES)
def test_encoder_random_vs_int_reference(mode):
    cb = small_cb()
    f = 2
    rng = np.random.default_rng(5)
    xs = rng.integers(-60, 60, size=200).tolist() + [-6, -7, 5, 6]
    art = enc_art(cb, f_in=f, rounding=mode)
    res, ev = run1(art, {"x": np.array(xs).reshape(1, -1, 1)})
    bases = cb.bases
    sat = 0
    for x, got in zip(xs, res.tensors["c"].ravel().tolist()):
        s = next((i for i, u in enumerate(cb.thresholds) if x <= u), len(cb.segments) - 1)
        e, sg = cb.encoder[s], cb.segments[s]
        t = R((x - e.center) * e.mult, e.shift, mode)
        q = min(max(t, sg.qmin), sg.qmax)
        sat += q != t
        assert got == bases[s] + q - sg.qmin
    assert ev["saturations"] == sat


# --------------------------------------------------------------------------
# §5 convolution


def conv_example_art(realization="split", **numerics):
    cb = released_cb()
    return one_op("conv2d", [T("c", "codes", 3, cb=cb)], [T("y", "stream", 1, 16)],
                  attrs={"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1],
                         "groups": 1, "w_exp": 4},
                  arrays={"weight": np.array([5, -2, 1], np.int8).reshape(1, 1, 1, 3),
                          "w_mant": np.array([3]), "bias": np.array([0])},
                  realization=realization, **numerics)


@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("ordered", [False, True])
def test_conv_worked_example_section53(realization, ordered):
    # codes: dense q=2 -> 8+2+7 = 17; tail+ q=3 -> 23+3-1 = 25; tail- q=-1 -> 0-1+8 = 7
    art = conv_example_art(realization)
    res, ev = run1(art, {"c": np.array([17, 25, 7]).reshape(1, 1, 3)}, force_ordered=ordered)
    assert int(res.tensors["y"][0, 0, 0]) == -70305
    assert R(-1124886, 4, "half_up") == -70305
    assert ev == {"acc_overflow": 0, "stream_overflow": 0, "saturations": 0}


def test_conv_example_other_modes():
    I = -1124886  # −70305.375
    for m in MODES:
        res, _ = run1(conv_example_art(rounding=m), {"c": np.array([17, 25, 7]).reshape(1, 1, 3)})
        assert int(res.tensors["y"][0, 0, 0]) == R(I, 4, m)


def conv_ref(codes, cb, w, m_w, bias, k_w, f_o, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
             transposed=False, output_padding=(0, 0), realization="split", acc_bits=32, policy="saturate",
             mode="half_up", stream_bits=24, ordered=False):
    """Python-int integer form (§5.1–§5.5): accumulators, order ky, kx, ci, (5.3)."""
    H, W, Ci = codes.shape
    Co, kh, kw, cig = w.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    if transposed:
        Ho = (H - 1) * sh - 2 * ph + kh + output_padding[0]
        Wo = (W - 1) * sw - 2 * pw + kw + output_padding[1]
    else:
        Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    table = []
    for s_i, s in enumerate(cb.segments):
        for q in range(s.qmin, s.qmax + 1):
            table.append((s_i, q, s.origin + s.step * q))
    n = k_w + cb.unit_e - f_o
    out = np.zeros((Ho, Wo, Co), dtype=np.int64)
    acc_ev = st_ev = 0
    for oy in range(Ho):
        for ox in range(Wo):
            for co in range(Co):
                grp = co // (Co // groups)
                accs = {}
                for ky in range(kh):
                    for kx in range(kw):
                        if transposed:
                            ny, nx = oy + ph - ky, ox + pw - kx
                            if ny % sh or nx % sw:
                                continue
                            iy, ix = ny // sh, nx // sw
                        else:
                            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                        if not (0 <= iy < H and 0 <= ix < W):
                            continue
                        for ci in range(cig):
                            s_i, q, G = table[int(codes[iy, ix, grp * cig + ci])]
                            wv = int(w[co, ky, kx, ci])
                            terms = [("A", wv * G)] if realization == "grid" else [(("P", s_i), wv * q)] + (
                                [(("Q", s_i), wv)] if cb.segments[s_i].origin else [])
                            for key, term in terms:
                                v = accs.get(key, 0) + term
                                if ordered:
                                    v, e = OVF(v, acc_bits, policy)
                                    acc_ev += e
                                accs[key] = v
                mw = int(m_w[co]) * cb.unit_m
                I = int(bias[co])
                for key, a in accs.items():
                    if key == "A":
                        I += mw * a
                    elif key[0] == "P":
                        I += mw * cb.segments[key[1]].step * a
                    else:
                        I += mw * cb.segments[key[1]].origin * a
                x, e = OVF(R(I, n, mode), stream_bits, policy)
                st_ev += e
                out[oy, ox, co] = x
    return out, acc_ev, st_ev


def conv_art(cb, w, m_w, bias, k_w, f_o, *, transposed=False, attrs=None, **numerics):
    Co = w.shape[0]
    Ci = w.shape[3] * (attrs or {}).get("groups", 1)
    base = {"kernel": list(w.shape[1:3]), "w_exp": k_w}
    base.update(attrs or {})
    return one_op("conv_transpose2d" if transposed else "conv2d", [T("c", "codes", Ci, cb=cb)],
                  [T("y", "stream", Co, f_o)], attrs=base,
                  arrays={"weight": w, "w_mant": np.asarray(m_w, np.int64), "bias": np.asarray(bias, np.int64)},
                  **numerics)


CONV_CASES = [
    dict(H=6, W=7, Ci=4, Co=3, k=(3, 3), attrs={"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}),
    dict(H=7, W=5, Ci=4, Co=6, k=(3, 2), attrs={"stride": [2, 1], "padding": [1, 0], "dilation": [1, 2], "groups": 2}),
    dict(H=5, W=6, Ci=3, Co=3, k=(1, 3), attrs={"stride": [1, 2], "padding": [0, 2], "dilation": [1, 1], "groups": 3}),
]


@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_random_vs_int_reference(case, realization):
    c = CONV_CASES[case]
    rng = np.random.default_rng(10 + case)
    cb = small_cb()
    groups = c["attrs"]["groups"]
    w = rng.integers(-7, 8, size=(c["Co"], *c["k"], c["Ci"] // groups)).astype(np.int8)
    m_w = rng.integers(1, 40, size=c["Co"])
    bias = rng.integers(-500, 500, size=c["Co"])
    codes = rng.integers(0, cb.num_codes, size=(c["H"], c["W"], c["Ci"]))
    mode = MODES[case % 4]
    art = conv_art(cb, w, m_w, bias, 6, 3, attrs=c["attrs"], realization=realization, rounding=mode)
    ref, _, _ = conv_ref(codes, cb, w, m_w, bias, 6, 3, stride=c["attrs"]["stride"], padding=c["attrs"]["padding"],
                         dilation=c["attrs"]["dilation"], groups=groups, realization=realization, mode=mode)
    for ordered in (False, True):
        res, ev = run1(art, {"c": codes}, force_ordered=ordered)
        np.testing.assert_array_equal(res.tensors["y"], ref)
        assert ev["acc_overflow"] == 0


@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("stride,padding,outpad,k", [((2, 2), (1, 1), (1, 1), (3, 3)), ((3, 2), (0, 1), (2, 0), (2, 4))])
def test_conv_transpose_random_vs_int_reference(realization, stride, padding, outpad, k):
    rng = np.random.default_rng(sum(stride) + sum(k))
    cb = small_cb()
    w = rng.integers(-7, 8, size=(3, *k, 4)).astype(np.int8)
    m_w = rng.integers(1, 40, size=3)
    bias = rng.integers(-500, 500, size=3)
    codes = rng.integers(0, cb.num_codes, size=(4, 5, 4))
    attrs = {"stride": list(stride), "padding": list(padding), "output_padding": list(outpad)}
    art = conv_art(cb, w, m_w, bias, 5, 2, transposed=True, attrs=attrs, realization=realization)
    ref, _, _ = conv_ref(codes, cb, w, m_w, bias, 5, 2, stride=stride, padding=padding, transposed=True,
                         output_padding=outpad, realization=realization)
    for ordered in (False, True):
        res, _ = run1(art, {"c": codes}, force_ordered=ordered)
        np.testing.assert_array_equal(res.tensors["y"], ref)


def test_worst_case_section54():
    cb = small_cb()
    w = np.array([[[[3, -4]]], [[[1, 1]]]], np.int8)  # max_co Σ|w| = 7
    assert worst_case(w, cb, "split") == {"P0": 28, "Q0": 7, "P1": 35, "P2": 21, "Q2": 7}
    assert worst_case(w, cb, "grid") == {"A": 7 * 32}  # max |G| = |−20 + 3·(−4)| = 32
    assert not can_overflow(w, cb, "split", 7)  # 35 ≤ 63
    assert can_overflow(w, cb, "split", 6)  # 35 > 31


@pytest.mark.parametrize("policy", ["saturate", "wrap"])
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_ordered_accumulation_overflow_events(policy, realization):
    rng = np.random.default_rng(3)
    cb = small_cb()
    w = rng.integers(-8, 8, size=(4, 3, 3, 5)).astype(np.int8)
    w[0] = 7  # channel 0 pushes every accumulator upward
    m_w = rng.integers(1, 9, size=4)
    bias = rng.integers(-50, 50, size=4)
    codes = rng.integers(0, cb.num_codes, size=(5, 6, 5))
    codes[:, :, 0] = cb.num_codes - 1  # many large positive grid values
    acc_bits = 9
    attrs = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}
    art = conv_art(cb, w, m_w, bias, 4, 2, attrs=attrs, realization=realization, acc_bits=acc_bits,
                   overflow=policy, stream_bits=12)
    assert can_overflow(w, cb, realization, acc_bits)
    ref, acc_ev, st_ev = conv_ref(codes, cb, w, m_w, bias, 4, 2, padding=(1, 1), realization=realization,
                                  acc_bits=acc_bits, policy=policy, stream_bits=12, ordered=True)
    res, ev = run1(art, {"c": codes})
    np.testing.assert_array_equal(res.tensors["y"], ref)
    assert acc_ev > 0
    assert ev["acc_overflow"] == acc_ev
    assert ev["stream_overflow"] == st_ev


@pytest.mark.parametrize("transposed", [False, True])
def test_ordered_accumulation_grouped_and_transposed(transposed):
    rng = np.random.default_rng(13)
    cb = small_cb()
    groups = 1 if transposed else 2
    w = rng.integers(0, 8, size=(4, 3, 3, 6 // groups)).astype(np.int8)  # all ≥ 0: accumulators grow
    m_w, bias = rng.integers(1, 9, size=4), rng.integers(-50, 50, size=4)
    codes = rng.integers(cb.num_codes - 6, cb.num_codes, size=(4, 5, 6))
    codes[1, 2] = 0  # some large negative grid values too
    if transposed:
        attrs = {"stride": [2, 2], "padding": [1, 1], "output_padding": [1, 0]}
        kw = dict(stride=(2, 2), padding=(1, 1), transposed=True, output_padding=(1, 0))
    else:
        attrs = {"stride": [1, 2], "padding": [1, 1], "dilation": [2, 1], "groups": groups}
        kw = dict(stride=(1, 2), padding=(1, 1), dilation=(2, 1), groups=groups)
    for policy in ("saturate", "wrap"):
        art = conv_art(cb, w, m_w, bias, 4, 2, transposed=transposed, attrs=attrs, acc_bits=8, overflow=policy)
        ref, acc_ev, _ = conv_ref(codes, cb, w, m_w, bias, 4, 2, acc_bits=8, policy=policy, ordered=True, **kw)
        res, ev = run1(art, {"c": codes})
        np.testing.assert_array_equal(res.tensors["y"], ref)
        assert acc_ev > 0 and ev["acc_overflow"] == acc_ev


def test_ordered_accumulation_error_policy_names_op():
    cb = small_cb()
    w = np.full((1, 3, 3, 2), 7, np.int8)
    art = conv_art(cb, w, [1], [0], 4, 2, attrs={"padding": [1, 1]}, acc_bits=8, overflow="error")
    codes = np.full((3, 3, 2), cb.num_codes - 1)
    with pytest.raises(GoldenOverflowError, match=r"op op \(conv2d\) accumulator"):
        execute(art, {"c": codes})


# --------------------------------------------------------------------------
# §6 stream ops


def test_image_in_example_section61():
    art = one_op("image_in", [T("img", "image", 1)], [T("x", "stream", 1, 16)], attrs={"exp": 16},
                 arrays={"mult": [65536], "offset": [round(-114.444 * 2**16)]})
    assert round(-114.444 * 2**16) == -7500202
    res = run_golden(art, np.array([[[200]]], np.uint8))
    assert int(res.tensors["x"][0, 0, 0]) == 5606998
    assert res.tensors["img"].dtype == np.uint8


def test_image_in_random_vs_int_reference():
    rng = np.random.default_rng(2)
    m = rng.integers(1, 2**20, size=3)
    o = rng.integers(-2**26, 2**26, size=3)
    e, f_o = 20, 9
    for mode in MODES:
        art = one_op("image_in", [T("img", "image", 3)], [T("x", "stream", 3, f_o)], attrs={"exp": e},
                     arrays={"mult": m, "offset": o}, rounding=mode, stream_bits=24)
        img = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
        res, ev = run1(art, {"img": img})
        n_ev = 0
        for idx in np.ndindex(img.shape):
            x, e_ = OVF(R(int(img[idx]) * int(m[idx[2]]) + int(o[idx[2]]), e - f_o, mode), 24, "saturate")
            n_ev += e_
            assert int(res.tensors["x"][idx]) == x
        assert ev["stream_overflow"] == n_ev


def test_image_out_saturation_section62():
    f_i, e = 8, 4
    m, o = [16], [8]  # v = x + 0.5
    art = one_op("image_out", [T("x", "stream", 1, f_i)], [T("img", "image", 1)], attrs={"exp": e},
                 arrays={"mult": m, "offset": o})
    X = np.array([-1000, 0, 127, 128, 65000, 255 * 256]).reshape(1, -1, 1)
    res, ev = run1(art, {"x": X})
    expect = [min(max(R(int(x) * 16 + 8 * 2**f_i, f_i + e, "half_up"), 0), 255) for x in X.ravel()]
    assert res.tensors["img"].ravel().tolist() == expect
    assert res.tensors["img"].dtype == np.uint8
    assert ev["saturations"] == 2


def test_add_example_section63():
    art = one_op("add", [T("a", "stream", 1, 1), T("b", "stream", 1, 2)], [T("y", "stream", 1, 1)])
    res, _ = run1(art, {"a": np.array([[[3]]]), "b": np.array([[[5]]])})
    assert int(res.tensors["y"][0, 0, 0]) == 6
    assert R(11, 1, "half_up") == 6


@pytest.mark.parametrize("mode", MODES)
def test_add_and_concat_random(mode):
    rng = np.random.default_rng(4)
    a = rng.integers(-2**11, 2**11, size=(3, 4, 2))
    b = rng.integers(-2**11, 2**11, size=(3, 4, 3))
    for fa, fb, fo in [(3, 5, 2), (5, 3, 6), (4, 4, 4), (1, 2, 0)]:
        art = one_op("add", [T("a", "stream", 2, fa), T("b", "stream", 2, fb)], [T("y", "stream", 2, fo)],
                     rounding=mode, stream_bits=12, overflow="wrap")
        res, ev = run1(art, {"a": a, "b": b[:, :, :2]})
        F_ = max(fa, fb, fo)
        n_ev = 0
        for idx in np.ndindex(a.shape):
            I = int(a[idx]) * 2 ** (F_ - fa) + int(b[idx]) * 2 ** (F_ - fb)
            x, e = OVF(R(I, F_ - fo, mode), 12, "wrap")
            n_ev += e
            assert int(res.tensors["y"][idx]) == x
        assert ev["stream_overflow"] == n_ev
        art = one_op("concat", [T("a", "stream", 2, fa), T("b", "stream", 3, fb)], [T("y", "stream", 5, fo)],
                     rounding=mode, stream_bits=12, overflow="saturate")
        res, ev = run1(art, {"a": a, "b": b})
        n_ev = 0
        for idx in np.ndindex(res.tensors["y"].shape):
            c = idx[2]
            X, f = (int(a[idx[0], idx[1], c]), fa) if c < 2 else (int(b[idx[0], idx[1], c - 2]), fb)
            Fi = max(f, fo)
            x, e = OVF(R(X * 2 ** (Fi - f), Fi - fo, mode), 12, "saturate")
            n_ev += e
            assert int(res.tensors["y"][idx]) == x
        assert ev["stream_overflow"] == n_ev
        if (fa, fb, fo) == (5, 3, 6):
            assert n_ev > 0  # the element-wise policy ran


def test_split_relu_shuffle_nearest():
    rng = np.random.default_rng(6)
    X = rng.integers(-100, 100, size=(3, 2, 8))
    art = one_op("split", [T("x", "stream", 8, 4)], [T("a", "stream", 3, 4), T("b", "stream", 5, 4)],
                 attrs={"sizes": [3, 5]})
    res, _ = run1(art, {"x": X})
    np.testing.assert_array_equal(res.tensors["a"], X[:, :, :3])
    np.testing.assert_array_equal(res.tensors["b"], X[:, :, 3:])
    res, _ = run1(one_op("relu", [T("x", "stream", 8, 4)], [T("y", "stream", 8, 4)]), {"x": X})
    np.testing.assert_array_equal(res.tensors["y"], np.maximum(X, 0))
    res, _ = run1(one_op("pixel_shuffle", [T("x", "stream", 8, 4)], [T("y", "stream", 2, 4)],
                         attrs={"factor": 2}), {"x": X})
    y = res.tensors["y"]
    assert y.shape == (6, 4, 2)
    for h, w_, c, i, j in np.ndindex(3, 2, 2, 2, 2):
        assert y[h * 2 + i, w_ * 2 + j, c] == X[h, w_, c * 4 + i * 2 + j]
    res, _ = run1(one_op("upsample_nearest", [T("x", "stream", 8, 4)], [T("y", "stream", 8, 4)],
                         attrs={"factor": 3}), {"x": X})
    y = res.tensors["y"]
    assert y.shape == (9, 6, 8)
    for yy, xx in np.ndindex(9, 6):
        np.testing.assert_array_equal(y[yy, xx], X[yy // 3, xx // 3])


def test_leaky_relu_example_section67():
    art = one_op("leaky_relu", [T("x", "stream", 1, 8)], [T("y", "stream", 1, 8)], attrs={"mult": 3277, "shift": 16})
    res, _ = run1(art, {"x": np.array([-1000, 0, 1000]).reshape(1, 3, 1)})
    assert res.tensors["y"].ravel().tolist() == [-50, 0, 1000]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slopes", [(3277, 70000, 1), (3277, 65536, -5000)])  # 0.05, 1.07, 2^-16; 0.05, 1, −0.08
def test_prelu_random(mode, slopes):
    rng = np.random.default_rng(7)
    M = np.array(slopes)
    X = rng.integers(-2**11, 2**11, size=(4, 4, 3))
    art = one_op("prelu", [T("x", "stream", 3, 3)], [T("y", "stream", 3, 3)], attrs={"shift": 16},
                 arrays={"mult": M}, rounding=mode, stream_bits=12)
    res, ev = run1(art, {"x": X})
    n_ev = 0
    for idx in np.ndindex(X.shape):
        x = int(X[idx])
        exp, e = (x, 0) if x >= 0 else OVF(R(x * int(M[idx[2]]), 16, mode), 12, "saturate")
        n_ev += e
        assert int(res.tensors["y"][idx]) == exp
    assert ev["stream_overflow"] == n_ev


def test_bilinear_weights_section610():
    i0, i1, w0, w1 = bilinear_taps(5, 2)
    assert (i0[0], w0[0], w1[0]) == (0, 4, 0)
    assert (i0[1], i1[1], w0[1], w1[1]) == (0, 1, 3, 1)
    assert (i0[2], i1[2], w0[2], w1[2]) == (0, 1, 1, 3)
    assert (i0[9], i1[9], w0[9], w1[9]) == (4, 4, 3, 1)  # clamped at the border


def test_bilinear_r2_matches_torch_interpolate():
    rng = np.random.default_rng(8)
    X = rng.integers(-2**15, 2**15, size=(5, 7, 3))
    art = one_op("upsample_bilinear", [T("x", "stream", 3, 0)], [T("y", "stream", 3, 0)],
                 attrs={"factor": 2, "mult": 1, "shift": 4}, rounding="floor")
    res, _ = run1(art, {"x": X})
    t = torch.from_numpy(X.astype(np.float64)).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
    ref = torch.floor(ref[0].permute(1, 2, 0)).numpy().astype(np.int64)
    np.testing.assert_array_equal(res.tensors["y"], ref)


@pytest.mark.parametrize("r,M,k", [(3, 7282, 16), (2, 1, 4), (4, 1, 6)])
def test_bilinear_random_vs_int_reference(r, M, k):
    rng = np.random.default_rng(r)
    H, W = 4, 3
    X = rng.integers(-2**12, 2**12, size=(H, W, 2))
    art = one_op("upsample_bilinear", [T("x", "stream", 2, 5)], [T("y", "stream", 2, 5)],
                 attrs={"factor": r, "mult": M, "shift": k})
    res, _ = run1(art, {"x": X})

    def taps(size):
        out = []
        for y in range(size * r):
            t = 2 * y + 1 - r
            i0, a = (0, 0) if t < 0 else (t // (2 * r), t - 2 * r * (t // (2 * r)))
            out.append((i0, min(i0 + 1, size - 1), 2 * r - a, a))
        return out

    ty, tx = taps(H), taps(W)
    for y, x, c in np.ndindex(H * r, W * r, 2):
        i0, i1, a0, a1 = ty[y]
        j0, j1, b0, b1 = tx[x]
        I = sum(int(X[i, j, c]) * wy * wx for i, wy in ((i0, a0), (i1, a1)) for j, wx in ((j0, b0), (j1, b1)))
        assert int(res.tensors["y"][y, x, c]) == OVF(R(I * M, k, "half_up"), 24, "saturate")[0]


def test_mean_pool_example_section611():
    art = one_op("mean_pool", [T("x", "stream", 1, 0)], [T("y", "stream", 1, 0)], attrs={"shift": 16})
    res, _ = run1(art, {"x": np.array([1, 2, 4]).reshape(1, 3, 1)})
    assert (2**17 + 3) // 6 == 21845
    assert res.tensors["y"].shape == (1, 1, 1) and int(res.tensors["y"][0, 0, 0]) == 2


def test_std_pool_example_section612():
    art = one_op("std_pool", [T("x", "stream", 1, 0)], [T("y", "stream", 1, 0)], attrs={"shift": 16, "pre_shift": 0})
    res, _ = run1(art, {"x": np.array([1, 2, 4, 9]).reshape(2, 2, 1)})
    assert int(res.tensors["y"][0, 0, 0]) == 3


@pytest.mark.parametrize("mode", MODES)
def test_pools_random_vs_int_reference(mode):
    rng = np.random.default_rng(9)
    X = rng.integers(-2**14, 2**14, size=(5, 6, 3))
    N = 30
    for k, p in [(16, 0), (20, 3), (12, 7)]:
        art = one_op("std_pool", [T("x", "stream", 3, 4)], [T("y", "stream", 3, 4)],
                     attrs={"shift": k, "pre_shift": p}, rounding=mode)
        res, _ = run1(art, {"x": X})
        artm = one_op("mean_pool", [T("x", "stream", 3, 4)], [T("y", "stream", 3, 4)], attrs={"shift": k},
                      rounding=mode)
        resm, _ = run1(artm, {"x": X})
        MN = (2 ** (k + 1) + N) // (2 * N)
        for c in range(3):
            xs = [int(v) for v in X[:, :, c].ravel()]
            mu = R(sum(xs) * MN, k, mode)
            assert int(resm.tensors["y"][0, 0, c]) == mu
            d = [R(x - mu, p, mode) for x in xs]
            V = R(sum(v * v for v in d) * MN, k, mode)
            assert int(res.tensors["y"][0, 0, c]) == math.isqrt(V) * 2**p


def test_pool_runtime_check():
    art = one_op("mean_pool", [T("x", "stream", 1, 0)], [T("y", "stream", 1, 0)], attrs={"shift": 40},
                 stream_bits=32)
    with pytest.raises(GoldenError, match="image too large"):
        execute(art, {"x": np.full((4, 4, 1), 2**31 - 1)})


def test_isqrt_near_perfect_squares():
    from golden.ops.stream import _isqrt

    vals = []
    for m in (1, 2, 3, 1000, 2**20 + 1, 94906265, 2**26 + 12345):
        vals += [m * m - 1, m * m, m * m + 1]
    V = torch.tensor([float(v) for v in vals], dtype=torch.float64)
    assert [int(v) for v in _isqrt(V)] == [math.isqrt(v) for v in vals]


def sigmoid_lut(k_lut, f_o, imin, imax):
    return np.array([math.floor(1 / (1 + math.exp(-i / 2**k_lut)) * 2**f_o + 0.5) for i in range(imin, imax + 1)],
                    np.int32)


def test_sigmoid_example_section613():
    lut = sigmoid_lut(4, 15, -128, 127)
    assert lut[0 + 128] == 16384 and lut[16 + 128] == 23955
    art = one_op("lut", [T("x", "stream", 1, 8)], [T("y", "stream", 1, 15)],
                 attrs={"fn": "sigmoid", "lut_exp": 4, "imin": -128, "imax": 127}, arrays={"lut": lut})
    X = np.array([0, 256, 7, 8, -9, 10**6, -10**6]).reshape(1, -1, 1)  # 7/256·16 = 0.4375 → 0; 8 → 0.5 → 1
    res, ev = run1(art, {"x": X})
    idx = [0, 16, 0, 1, -1, 127, -128]
    assert res.tensors["y"].ravel().tolist() == [int(lut[i + 128]) for i in idx]
    assert ev["saturations"] == 2


def test_sigmoid_fine_input_grid():
    lut = sigmoid_lut(6, 12, -64, 63)
    art = one_op("lut", [T("x", "stream", 1, 3)], [T("y", "stream", 1, 12)],
                 attrs={"fn": "sigmoid", "lut_exp": 6, "imin": -64, "imax": 63}, arrays={"lut": lut})  # k_lut > f_i
    X = np.arange(-8, 8).reshape(1, -1, 1)
    res, _ = run1(art, {"x": X})
    assert res.tensors["y"].ravel().tolist() == [int(lut[x * 8 + 64]) for x in range(-8, 8)]


def test_mul_section614():
    rng = np.random.default_rng(11)
    X = rng.integers(-2**12, 2**12, size=(3, 3, 2))
    G = rng.integers(-2**10, 2**10, size=(1, 1, 2))
    art = one_op("mul", [T("x", "stream", 2, 6), T("g", "stream", 2, 9)], [T("y", "stream", 2, 7)])
    res, _ = run1(art, {"x": X, "g": G})
    for idx in np.ndindex(X.shape):
        assert int(res.tensors["y"][idx]) == R(int(X[idx]) * int(G[0, 0, idx[2]]), 6 + 9 - 7, "half_up")


@pytest.mark.parametrize("policy", ["saturate", "wrap"])
def test_stream_overflow_counted(policy):
    art = one_op("add", [T("a", "stream", 1, 0), T("b", "stream", 1, 0)], [T("y", "stream", 1, 0)],
                 stream_bits=8, overflow=policy)
    res, ev = run1(art, {"a": np.array([100, 100, -100, 3]).reshape(1, 4, 1),
                         "b": np.array([27, 28, -29, 4]).reshape(1, 4, 1)})
    exp = [OVF(v, 8, policy)[0] for v in (127, 128, -129, 7)]
    assert res.tensors["y"].ravel().tolist() == exp
    assert ev["stream_overflow"] == 2


def test_stream_overflow_error_names_op_and_tensor():
    art = one_op("add", [T("a", "stream", 1, 0), T("b", "stream", 1, 0)], [T("y", "stream", 1, 0)],
                 stream_bits=8, overflow="error")
    with pytest.raises(GoldenOverflowError, match=r"op op \(add\) tensor y"):
        execute(art, {"a": np.array([[[100]]]), "b": np.array([[[100]]])})


# --------------------------------------------------------------------------
# a whole small graph


def small_graph(realization="split") -> Artifact:
    cb = small_cb(unit_m=1, unit_e=2)
    rng = np.random.default_rng(12)
    t = [T("img", "image", 3), T("x0", "stream", 3, 4), T("c0", "codes", 3, cb=cb), T("x1", "stream", 8, 4),
         T("x2", "stream", 8, 4), T("c1", "codes", 8, cb=cb), T("x3", "stream", 12, 4), T("x4", "stream", 3, 4),
         T("out", "image", 3)]
    ops = [
        OpSpec("in", "image_in", ("img",), ("x0",), {"exp": 8}, {"mult": "in.m", "offset": "in.o"}),
        OpSpec("enc0", "encode", ("x0",), ("c0",)),
        OpSpec("conv0", "conv2d", ("c0",), ("x1",), {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
                                                     "dilation": [1, 1], "groups": 1, "w_exp": 4},
               {"weight": "conv0.w", "w_mant": "conv0.m", "bias": "conv0.b"}),
        OpSpec("act", "relu", ("x1",), ("x2",)),
        OpSpec("enc1", "encode", ("x2",), ("c1",)),
        OpSpec("conv1", "conv2d", ("c1",), ("x3",), {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
                                                     "dilation": [1, 1], "groups": 1, "w_exp": 4},
               {"weight": "conv1.w", "w_mant": "conv1.m", "bias": "conv1.b"}),
        OpSpec("shuffle", "pixel_shuffle", ("x3",), ("x4",), {"factor": 2}),
        OpSpec("out", "image_out", ("x4",), ("out",), {"exp": 4}, {"mult": "out.m", "offset": "out.o"}),
    ]
    arrays = {
        "in.m": np.array([16, 16, 16]), "in.o": np.array([-2048, -2048, -2048]),
        "conv0.w": rng.integers(-3, 4, size=(8, 3, 3, 3)).astype(np.int8), "conv0.m": rng.integers(1, 4, size=8),
        "conv0.b": rng.integers(-20, 20, size=8),
        "conv1.w": rng.integers(-3, 4, size=(12, 3, 3, 8)).astype(np.int8), "conv1.m": rng.integers(1, 4, size=12),
        "conv1.b": rng.integers(-20, 20, size=12),
        "out.m": np.array([16, 16, 16]), "out.o": np.array([128, 128, 128]),
    }
    return Artifact(model={"name": "tiny"}, numerics=Numerics(realization=realization), inputs=("img",),
                    outputs=("out",), tensors={x.name: x for x in t}, ops=ops, arrays=arrays)


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_run_golden_small_graph(realization):
    art = small_graph(realization)
    img = np.random.default_rng(0).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    res = run_golden(art, img)
    assert list(res.tensors) == ["img", "x0", "c0", "x1", "x2", "c1", "x3", "x4", "out"]
    assert res.tensors["out"].shape == (10, 12, 3) and res.tensors["out"].dtype == np.uint8
    assert res.tensors["c0"].dtype == np.int64 and res.tensors["x3"].dtype == np.int64
    np.testing.assert_array_equal(res.tensors["img"], img)
    assert set(res.events) == {op.name for op in art.ops}
    assert all(set(v) == set(EVENT_KEYS) for v in res.events.values())
    ordered = run_golden(art, img, force_ordered=True)
    for k in res.tensors:
        np.testing.assert_array_equal(res.tensors[k], ordered.tensors[k])
    assert res.events == ordered.events


def test_keep_tensors_false_returns_the_same_outputs_only():
    art = small_graph("split")
    img = np.random.default_rng(2).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    full, lean = run_golden(art, img), run_golden(art, img, keep_tensors=False)
    assert list(lean.tensors) == ["out"]
    np.testing.assert_array_equal(lean.tensors["out"], full.tensors["out"])
    assert lean.events == full.events


def test_realizations_agree_on_same_codebook():
    img = np.random.default_rng(1).integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    a = run_golden(small_graph("split"), img)
    b = run_golden(small_graph("grid"), img)
    for k in a.tensors:
        np.testing.assert_array_equal(a.tensors[k], b.tensors[k])


def test_refuses_wrong_input():
    art = small_graph()
    with pytest.raises(GoldenError, match="uint8"):
        run_golden(art, np.zeros((4, 4, 3), np.int32))
    with pytest.raises(GoldenError, match="channels"):
        run_golden(art, np.zeros((4, 4, 1), np.uint8))


#: intsim's arithmetic: golden must reach none of it
INTSIM_ARITHMETIC = ("intsim.rounding", "intsim.overflow", "intsim.engine", "intsim.kernels", "intsim.ops",
                     "intsim.encoder", "intsim.fixedpoint", "intsim.lut")


def _is_arithmetic(m: str) -> bool:
    return any(m == a or m.startswith(a + ".") for a in INTSIM_ARITHMETIC)


def test_golden_shares_no_arithmetic_code_with_intsim():
    """golden/ implements the spec independently: no golden module imports an intsim arithmetic module
    (lazy imports included), and running golden imports none beyond what loading an artifact does. Loading
    validates (intsim.artifact -> intsim.validate), and validation reads the op registry and the exactness
    bounds (intsim.ops.opdef, intsim.ops.bicubic's tap bounds), which live in those packages: the loader's
    checks judge the artifact and compute no value golden outputs."""
    import subprocess
    import sys
    from pathlib import Path

    import grimp

    graph = grimp.build_graph("golden", "intsim", cache_dir=None, exclude_type_checking_imports=True)
    direct = sorted((g, m) for g in graph.modules if g.split(".")[0] == "golden"
                    for m in graph.find_modules_directly_imported_by(g) if _is_arithmetic(m))
    assert direct == [], direct

    code = (
        "import sys, numpy as np\n"
        "import intsim.artifact\n"
        "loader = set(sys.modules)\n"
        "import golden.executor, golden.writer\n"
        "from tests.golden.test_executor import small_graph, _is_arithmetic\n"
        "golden.executor.run_golden(small_graph(), np.zeros((3, 3, 3), np.uint8))\n"
        "bad = [m for m in sys.modules if m not in loader and _is_arithmetic(m)]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "clean" in res.stdout, res.stderr


def test_conv_constants_reused_across_runs_and_renewed_with_the_arrays():
    """A conv's weight matrix and an encoder's pieces are derived once per artifact (``art.derived``):
    a second run reuses them (same results), and replacing the weights or the numerics renews them."""
    c = CONV_CASES[0]
    rng = np.random.default_rng(77)
    cb = small_cb()
    w = rng.integers(-7, 8, size=(c["Co"], *c["k"], c["Ci"])).astype(np.int8)
    m_w, bias = rng.integers(1, 40, size=c["Co"]), rng.integers(-500, 500, size=c["Co"])
    codes = rng.integers(0, cb.num_codes, size=(c["H"], c["W"], c["Ci"]))
    kw = dict(stride=c["attrs"]["stride"], padding=c["attrs"]["padding"], dilation=c["attrs"]["dilation"], groups=1,
              realization="split", mode="half_up")
    art = conv_art(cb, w, m_w, bias, 6, 3, attrs=c["attrs"], realization="split")
    first = run1(art, {"c": codes})[0].tensors["y"]
    assert any(k[0] == "golden" for k in art.derived)  # the constants were kept with the artifact
    np.testing.assert_array_equal(run1(art, {"c": codes})[0].tensors["y"], first)
    np.testing.assert_array_equal(first, conv_ref(codes, cb, w, m_w, bias, 6, 3, **kw)[0])
    w2 = -w  # a new weight array: the kept matrix must not be served for it
    art.arrays["op.weight"] = w2
    np.testing.assert_array_equal(run1(art, {"c": codes})[0].tensors["y"], conv_ref(codes, cb, w2, m_w, bias, 6, 3, **kw)[0])
    art.numerics = Numerics(realization="split", rounding="floor")  # new numerics: renewed too
    np.testing.assert_array_equal(run1(art, {"c": codes})[0].tensors["y"],
                                  conv_ref(codes, cb, w2, m_w, bias, 6, 3, **{**kw, "mode": "floor"})[0])
