"""Load-time worst cases (arithmetic.md §5.4, §9) against brute force on tiny graphs.

Tiny convs (≤ 4 taps·channels, ≤ 7 codes) are enumerated exhaustively: every
accumulator's true max ``|acc|`` must be ≤ the bound ``W_j`` (and equal to it when
all weights of a channel share a sign), the true max ``|I|`` ≤ the envelope, and
``conv_can_overflow`` must agree with the enumeration.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from intsim import bounds
from intsim.artifact import (
    Artifact,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
)
from intsim.bounds import (
    conv_accumulators,
    conv_can_overflow,
    conv_envelope,
    op_envelopes,
    op_shifts,
    tensor_value_bounds,
    worst_case_bits,
)
from intsim.validate import validate_artifact
from tests.artifact_factory import make_codebook, make_random_artifact

F_IN = 8


def tiny_artifact(weight: np.ndarray, cb: Codebook, realization: str, acc_bits: int = 32,
                  w_mant: np.ndarray | None = None, bias: np.ndarray | None = None,
                  transpose: bool = False, stream_bits: int = 24) -> Artifact:
    """image_in → encode(cb) → conv → image_out with ``weight`` [Co, kh, kw, Ci], Ci, Co ∈ {1, 3}."""
    co, kh, kw, ci = weight.shape
    w_mant = np.ones(co, np.int64) if w_mant is None else w_mant
    bias = np.zeros(co, np.int64) if bias is None else bias
    tensors = {
        "in": TensorSpec("in", "image", ci),
        "x": TensorSpec("x", "stream", ci, frac=F_IN),
        "c": TensorSpec("c", "codes", ci, codebook=cb),
        "y": TensorSpec("y", "stream", co, frac=cb.unit_e),
        "out": TensorSpec("out", "image", co),
    }
    conv_attrs = {"kernel": [kh, kw], "stride": [1, 1], "padding": [0, 0], "w_exp": 0}
    if transpose:
        conv_attrs["output_padding"] = [0, 0]
    else:
        conv_attrs.update(dilation=[1, 1], groups=1)
    ops = [
        OpSpec("img", "image_in", ("in",), ("x",), {"exp": F_IN}, {"mult": "m", "offset": "o"}),
        OpSpec("enc", "encode", ("x",), ("c",)),
        OpSpec("conv", "conv_transpose2d" if transpose else "conv2d", ("c",), ("y",), conv_attrs,
               {"weight": "w", "w_mant": "wm", "bias": "b"}),
        OpSpec("imo", "image_out", ("y",), ("out",), {"exp": 0}, {"mult": "mo", "offset": "oo"}),
    ]
    arrays = {"m": np.ones(ci, np.int64), "o": np.zeros(ci, np.int64), "w": weight, "wm": w_mant, "b": bias,
              "mo": np.ones(co, np.int64), "oo": np.zeros(co, np.int64)}
    art = Artifact(model={}, numerics=Numerics(realization=realization, acc_bits=acc_bits, stream_bits=stream_bits),
                   inputs=("in",), outputs=("out",), tensors=tensors, ops=ops, arrays=arrays)
    validate_artifact(art)
    return art


CODEBOOKS = {
    "signed2r": lambda r: make_codebook("signed2r", 2, F_IN, r, bp=1.0, lo=-2.5, hi=3.0, grid_bits=9),
    "relu2r": lambda r: make_codebook("relu2r", 2, F_IN, r, bp=1.0, hi=3.0, grid_bits=8),
    "uniform": lambda r: make_codebook("uniform", 2, F_IN, r, hi=2.0, grid_bits=7),
    "unsigned": lambda r: make_codebook("uniform", 3, F_IN, r, hi=2.0, signed=False, grid_bits=8),
}


def brute_force(art: Artifact) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Exhaustive max |acc_j| per output channel and max |I| over all code assignments of one output."""
    op = art.ops[2]
    w = art.arrays["w"].astype(np.int64)
    co, kh, kw, ci = w.shape
    cb = art.tensors["c"].codebook
    seg, q, G = cb.code_table()
    taps = kh * kw * ci
    wf = w.reshape(co, taps)
    names = [a.name for a in conv_accumulators(art, op)]
    mults = {a.name: a.multiplier.astype(object) for a in conv_accumulators(art, op)}
    best = {n: np.zeros(co, dtype=object) for n in names}
    best_i = np.zeros(co, dtype=object)
    bias = art.arrays["b"].astype(object)
    for codes in itertools.product(range(cb.num_codes), repeat=taps):
        codes = np.asarray(codes)
        accs = {}
        if art.numerics.realization == "grid":
            accs["A"] = wf @ G[codes]
        else:
            for s in range(len(cb.segments)):
                m = seg[codes] == s
                accs[f"P{s}"] = wf[:, m] @ q[codes][m]
                if cb.segments[s].origin != 0:
                    accs[f"Q{s}"] = wf[:, m].sum(axis=1)
        total = bias.copy()
        for n, v in accs.items():
            best[n] = np.maximum(best[n], np.abs(v).astype(object))
            total = total + mults[n] * v.astype(object)
        best_i = np.maximum(best_i, np.abs(total))
    return best, best_i


def _cases():
    rng = np.random.default_rng(1234)
    shapes = [(1, 1, 2, 1), (3, 1, 1, 3), (1, 2, 2, 1), (1, 1, 3, 1), (3, 1, 2, 1)]
    out = []
    for kind in CODEBOOKS:
        for real in ("split", "grid"):
            for j in range(3):
                shape = shapes[int(rng.integers(0, len(shapes)))]
                w = rng.integers(-127, 128, shape).astype(np.int8)
                if j == 0:  # one channel with same-sign weights: the bound is attained
                    w[0] = np.abs(w[0]).astype(np.int8)
                if j == 1:  # every channel same-sign: can_overflow must be exact
                    w = -np.abs(w).astype(np.int8)
                out.append(pytest.param(kind, real, w, id=f"{kind}-{real}-{j}-{'x'.join(map(str, shape))}"))
    return out


@pytest.mark.parametrize("kind,realization,weight", _cases())
def test_accumulator_bounds_against_brute_force(kind, realization, weight):
    cb = CODEBOOKS[kind](realization)
    w_mant = np.arange(3, 3 + weight.shape[0], dtype=np.int64)
    bias = np.arange(weight.shape[0], dtype=np.int64) * 1000 - 7
    art = tiny_artifact(weight, cb, realization, w_mant=w_mant, bias=bias)
    op = art.ops[2]
    accs = conv_accumulators(art, op)
    best, best_i = brute_force(art)
    w64 = weight.astype(np.int64).reshape(weight.shape[0], -1)
    for acc in accs:
        for co in range(weight.shape[0]):
            assert best[acc.name][co] <= acc.worst[co], (acc.name, co)
            same_sign = np.all(w64[co] >= 0) or np.all(w64[co] <= 0)
            if same_sign:
                assert best[acc.name][co] == acc.worst[co], (acc.name, co)
    env, _ = conv_envelope(art, op)
    assert max(best_i) <= env
    # can_overflow is exact whenever every bound is attained (all channels same sign)
    attained = all(best[a.name][co] == a.worst[co] for a in accs for co in range(weight.shape[0]))
    for acc_bits in range(8, 25):
        art.numerics = Numerics(realization=realization, acc_bits=acc_bits)
        brute_over = any(max(best[a.name]) > (1 << (acc_bits - 1)) - 1 for a in accs)
        if brute_over:
            assert conv_can_overflow(art, op)
        if attained:
            assert conv_can_overflow(art, op) == brute_over


def test_accumulator_layout_and_multipliers_split():
    cb = make_codebook("signed2r", 3, F_IN, "split", bp=1.0, lo=-2.5, hi=3.0, unit_m=3)
    w = np.array([[[[1, -2, 3]]], [[[4, 5, -6]]], [[[0, 0, 0]]]], dtype=np.int8)  # [3,1,1,3]
    wm = np.array([7, 11, 13], np.int64)
    art = tiny_artifact(w, cb, "split", w_mant=wm)
    accs = conv_accumulators(art, art.ops[2])
    assert [a.name for a in accs] == ["P0", "Q0", "P1", "P2", "Q2"]  # the dense segment has origin 0: no Q1
    assert [a.segment for a in accs] == [0, 0, 1, 2, 2]
    s = cb.segments
    l1 = np.array([6, 15, 0])
    for a in accs:
        seg = s[a.segment]
        if a.name.startswith("P"):
            np.testing.assert_array_equal(a.multiplier, wm * 3 * seg.step)  # M_P = m_w·unit_m·d_s
            np.testing.assert_array_equal(a.worst, l1 * max(abs(seg.qmin), abs(seg.qmax)))
        else:
            np.testing.assert_array_equal(a.multiplier, wm * 3 * seg.origin)  # M_Q = m_w·unit_m·e_s
            np.testing.assert_array_equal(a.worst, l1)
        assert a.worst.dtype == np.int64 and a.multiplier.dtype == np.int64
        assert a.bits == worst_case_bits(int(a.worst.max()))


def test_accumulator_grid():
    cb = make_codebook("signed2r", 3, F_IN, "grid", bp=1.0, lo=-2.5, hi=3.0, grid_bits=8)
    w = np.array([[[[1, -2, 3]]]], dtype=np.int8)
    art = tiny_artifact(w, cb, "grid", w_mant=np.array([5], np.int64))
    (a,) = conv_accumulators(art, art.ops[2])
    gmax = int(np.abs(cb.code_table()[2]).max())
    assert (a.name, a.segment) == ("A", None)
    assert a.worst.tolist() == [6 * gmax] and a.multiplier.tolist() == [5 * cb.unit_m]


def test_int16_extreme_weight_abs():
    # |−32768| must not wrap in int16 (the L1 sum is taken in exact integers)
    cb = CODEBOOKS["uniform"]("split")
    w = np.full((1, 1, 2, 1), -32768, dtype=np.int16)
    art = tiny_artifact(w, cb, "split")
    (a,) = conv_accumulators(art, art.ops[2])
    assert a.worst.tolist() == [2 * 32768 * 2]


def test_conv_transpose_sums_all_taps():
    cb = CODEBOOKS["uniform"]("split")
    w = np.array([[[[3]], [[-4]]], [[[5]], [[6]]]], dtype=np.int8).reshape(1, 2, 2, 1)
    art = tiny_artifact(w, cb, "split", transpose=True)
    (a,) = conv_accumulators(art, art.ops[2])
    assert a.worst.tolist() == [(3 + 4 + 5 + 6) * 2]


@pytest.mark.parametrize("acc_bits", [8, 12, 16])
def test_can_overflow_threshold(acc_bits):
    # q ∈ [−1, 1] (a = 1): W = Σ|w| can hit 2^(acc_bits−1) − 1 exactly (§5.4: "≤" cannot overflow)
    cb = Codebook(unit_m=1, unit_e=F_IN, segments=(Segment(0, 1, -1, 1),), thresholds=(),
                  encoder=(EncoderStage(0, 1, 0),))
    lim = (1 << (acc_bits - 1)) - 1
    for W in (lim - 1, lim, lim + 1):
        vals = [127] * (W // 127) + ([W % 127] if W % 127 else [])
        w = np.array(vals, np.int8).reshape(1, 1, len(vals), 1)
        art = tiny_artifact(w, cb, "split", acc_bits=acc_bits)
        (a,) = conv_accumulators(art, art.ops[2])
        assert a.worst_max == W
        assert conv_can_overflow(art, art.ops[2]) == (W > lim)
        assert (a.bits <= acc_bits) == (W <= lim)


def test_accumulator_overruns_name_convs_past_acc_bits():
    # q ∈ [−1, 1]: W = 3·127 = 381 needs 10 signed bits
    cb = Codebook(unit_m=1, unit_e=F_IN, segments=(Segment(0, 1, -1, 1),), thresholds=(),
                  encoder=(EncoderStage(0, 1, 0),))
    w = np.full((1, 1, 3, 1), 127, np.int8)
    assert bounds.accumulator_overruns(tiny_artifact(w, cb, "split", acc_bits=10)) == []
    assert bounds.accumulator_overruns(tiny_artifact(w, cb, "split", acc_bits=9)) == [("conv", 10)]


def test_worst_case_bits_brute():
    assert worst_case_bits(0) == 1
    for v in list(range(0, 600)) + [2**31 - 1, 2**31, 2**52, -5]:
        b = worst_case_bits(v)
        a = abs(v)
        assert -(1 << (b - 1)) <= -a and a <= (1 << (b - 1)) - 1
        if b > 1:
            assert not (a <= (1 << (b - 2)) - 1)
    assert worst_case_bits(127) == 8 and worst_case_bits(128) == 9


def test_tensor_value_bounds_and_envelopes_of_factory():
    for realization in ("split", "grid"):
        art = make_random_artifact(2, realization=realization, stream_bits=20)
        V = tensor_value_bounds(art)
        assert V["input"] == 255 and V["output"] == 255
        sig = next(o for o in art.ops if o.op == "lut")
        assert V[sig.outputs[0]] == int(np.abs(art.arrays[sig.arrays["lut"]]).max())
        assert V["head.conv.out"] == 1 << 19
        cb = art.tensors["body.enc2.codes"].codebook
        _, q, G = cb.code_table()
        expect = int(np.abs(G).max()) if realization == "grid" else int(np.abs(q).max())
        assert V["body.enc2.codes"] == expect
        env = op_envelopes(art)
        assert set(env) == {o.name for o in art.ops}
        assert all(0 <= e < bounds.EXACT_LIMIT for e in env.values())
        ops = {o.name: o for o in art.ops}
        mean = ops["att.mean"]
        assert env["att.mean"] == (1 << 19) * ((1 << mean.attrs["shift"]) + 1)  # size-independent part, N = 1
        mul = ops["att.mul"]
        assert env["att.mul"] == V[mul.inputs[0]] * V[mul.inputs[1]]
        add = ops["body.add"]
        sh = op_shifts(art, add)
        assert env["body.add"] == (1 << 19) * (2 ** sh["align_a"] + 2 ** sh["align_b"])
        im = ops["head.image_in"]
        m, o = art.arrays[im.arrays["mult"]], art.arrays[im.arrays["offset"]]
        assert env["head.image_in"] == int(np.max(255 * np.abs(m) + np.abs(o)))
        leaky = ops["body.leaky"]
        assert env["body.leaky"] == (1 << 19) * abs(leaky.attrs["mult"])


def test_op_shifts_formulas():
    art = make_random_artifact(4)
    ops = {o.name: o for o in art.ops}
    f = {n: t.frac for n, t in art.tensors.items()}
    conv = ops["body.conv1"]
    cb = art.tensors[conv.inputs[0]].codebook
    assert op_shifts(art, conv) == {"n": conv.attrs["w_exp"] + cb.unit_e - f[conv.outputs[0]]}
    im = ops["head.image_in"]
    assert op_shifts(art, im) == {"n": im.attrs["exp"] - f[im.outputs[0]]}
    io = ops["tail.image_out"]
    assert op_shifts(art, io) == {"n": f[io.inputs[0]] + io.attrs["exp"]}
    mul = ops["att.mul"]
    assert op_shifts(art, mul) == {"n": f[mul.inputs[0]] + f[mul.inputs[1]] - f[mul.outputs[0]]}
    cat = ops["body.concat"]
    fo = f[cat.outputs[0]]
    sh = op_shifts(art, cat)
    for i, t in enumerate(cat.inputs):
        Fi = max(f[t], fo)
        assert sh[f"align{i}"] == Fi - f[t] and sh[f"n{i}"] == Fi - fo
    sig = ops["att.sigmoid"]
    k, fi = sig.attrs["lut_exp"], f[sig.inputs[0]]
    assert op_shifts(art, sig) == {"left": max(0, k - fi), "right": max(0, fi - k)}
    assert op_shifts(art, ops["body.relu"]) == {}


def test_encoder_envelope_against_brute_force():
    # stream_bits 10: every stream value X ∈ [−512, 511] can be enumerated
    cb = make_codebook("signed2r", 3, F_IN, "split", bp=0.5, lo=-1.5, hi=1.8)
    w = np.ones((1, 1, 1, 1), np.int8)
    art = tiny_artifact(w, cb, "split", stream_bits=10)
    env = op_envelopes(art)["enc"]
    X = np.arange(-512, 513)  # symmetric bound V = 2^(stream_bits−1), as §9 states
    s = np.searchsorted(np.asarray(cb.thresholds), X, side="left")
    C = np.array([e.center for e in cb.encoder])[s]
    E = np.array([e.mult for e in cb.encoder])[s]
    brute = int(np.max(np.abs((X - C) * E)))
    assert env == brute


def test_envelope_conv_uses_acc_bits_clamp():
    # With small acc_bits the accumulators are bounded by 2^(acc_bits−1) in (5.3) (§9)
    cb = CODEBOOKS["signed2r"]("split")
    w = np.full((1, 1, 3, 1), 127, np.int8)
    big = tiny_artifact(w, cb, "split", acc_bits=32)
    small = tiny_artifact(w, cb, "split", acc_bits=8)
    e_big, _ = conv_envelope(big, big.ops[2])
    e_small, _ = conv_envelope(small, small.ops[2])
    assert e_small < e_big
