"""The engine: dispatch, tensor plumbing, counters and input checks (arithmetic.md §7).

A small in-memory artifact uses every op type once or more; the engine's
tensors must equal a direct chain of the op functions (each tested against a
Python reference in test_ops.py / test_conv.py / test_encoder.py), and a tiny
graph is checked end to end against pure-Python integer formulas.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from intsim.artifact import (
    Artifact,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
)
from intsim.encoder import encode
from intsim import fusion
from intsim import op_dispatch as dispatch
from intsim.kernels import int8dot
from intsim.engine import RunResult, run
from intsim.op_dispatch import OPS
from intsim.ops import bicubic
from intsim.ops import conv as conv_ops
from intsim.ops import elementwise as ew
from intsim.ops import image as im
from intsim.ops import pooling, resample
from intsim.lut import build_lut
from intsim.ops import pad as pad_ops
from intsim.ops import lut as lut_ops
from intsim.overflow import EngineOverflowError

ALL_OPS = {"image_in", "image_out", "encode", "conv2d", "conv_transpose2d", "add", "concat", "split", "relu", "clamp", "pad",
           "leaky_relu", "prelu", "pixel_shuffle", "upsample_nearest", "upsample_bilinear", "upsample_bicubic", "mean_pool",
           "std_pool", "lut", "mul"}


# --------------------------------------------------------------------------
# an artifact with every op type


def cb_signed() -> Codebook:
    """Three segments on u = 2^-12, read from a frac-12 stream; grid-compatible (|G| ≤ 2560)."""
    return Codebook(
        unit_m=1, unit_e=12,
        segments=(Segment(-1024, 128, -4, -1), Segment(0, 64, -15, 15), Segment(1024, 128, 1, 12)),
        thresholds=(-1025, 1024),
        encoder=(EncoderStage(-1024, 1, 7), EncoderStage(0, 1, 6), EncoderStage(1024, 1, 7)),
        grid_bits=13, allocation="released", bits=4,
    )


def cb_relu() -> Codebook:
    """Post-ReLU: dense [0, 2) and one tail above, u = 2^-12; |G| ≤ 24576 fits 16 grid bits."""
    return Codebook(
        unit_m=1, unit_e=12,
        segments=(Segment(0, 256, 0, 31), Segment(8192, 1024, 1, 16)),
        thresholds=(8192,),
        encoder=(EncoderStage(0, 1, 8), EncoderStage(8192, 1, 10)),
        grid_bits=16, allocation="released", bits=5,
    )


def sigmoid_lut(imin, imax, k, f_o):
    return np.array([math.floor(2**f_o / (1 + math.exp(-i / 2**k)) + 0.5) for i in range(imin, imax + 1)],
                    dtype=np.int32)


def build_artifact(numerics: Numerics = Numerics(), seed: int = 0) -> Artifact:
    rng = np.random.default_rng(seed)
    T = {}

    def stream(name, c, f):
        T[name] = TensorSpec(name, "stream", c, frac=f)

    def codes(name, c, cb):
        T[name] = TensorSpec(name, "codes", c, codebook=cb)

    T["input"] = TensorSpec("input", "image", 3)
    T["output"] = TensorSpec("output", "image", 3)
    stream("x0", 3, 12)
    codes("c0", 3, cb_signed())
    stream("x1", 8, 12)
    stream("x1r", 8, 12)
    codes("c1", 8, cb_relu())
    codes("c1p", 8, cb_relu())
    stream("x2", 8, 12)
    stream("s0", 3, 12)
    stream("s1", 5, 12)
    stream("a0", 3, 11)
    stream("cat", 8, 12)
    stream("lk", 8, 12)
    stream("pr", 8, 12)
    stream("mp", 8, 12)
    stream("sg", 8, 15)
    stream("ml", 8, 12)
    stream("sp", 8, 12)
    stream("m2", 8, 12)
    stream("ps", 2, 12)
    stream("ub", 2, 12)
    stream("ubc", 2, 12)
    stream("ubs", 2, 11)
    codes("c2", 2, cb_signed())
    stream("tc", 3, 12)
    stream("un", 3, 12)
    stream("unc", 3, 12)
    stream("unt", 3, 15)
    stream("out_s", 3, 12)

    arrays = {
        "in.mult": np.full(3, 257, dtype=np.int64),
        "in.offset": np.array([-29491, -28000, -31000], dtype=np.int64),
        "c1.weight": rng.integers(-128, 128, size=(8, 3, 3, 3)).astype(np.int8),
        "c1.w_mant": rng.integers(1, 128, size=8).astype(np.int64),
        "c1.bias": rng.integers(-(1 << 16), 1 << 16, size=8).astype(np.int64),
        "c2.weight": rng.integers(-128, 128, size=(8, 3, 3, 4)).astype(np.int8),
        "c2.w_mant": rng.integers(1, 16, size=8).astype(np.int64),
        "c2.bias": rng.integers(-(1 << 16), 1 << 16, size=8).astype(np.int64),
        "pr.mult": rng.integers(0, 1 << 16, size=8).astype(np.int64),
        "sg.lut": sigmoid_lut(-128, 128, 4, 15),
        "tn.lut": build_lut("tanh", -64, 64, 4, 15),
        "tc.weight": rng.integers(-128, 128, size=(3, 3, 3, 2)).astype(np.int8),
        "tc.w_mant": rng.integers(1, 64, size=3).astype(np.int64),
        "tc.bias": rng.integers(-(1 << 12), 1 << 12, size=3).astype(np.int64),
        "out.mult": np.full(3, 4080, dtype=np.int64),
        "out.offset": np.full(3, 1836, dtype=np.int64),
    }

    def op(name, kind, ins, outs, attrs=None, arr=None):
        return OpSpec(name, kind, tuple(ins), tuple(outs), attrs or {}, arr or {})

    ops = [
        op("in", "image_in", ["input"], ["x0"], {"exp": 16}, {"mult": "in.mult", "offset": "in.offset"}),
        op("enc0", "encode", ["x0"], ["c0"]),
        op("conv1", "conv2d", ["c0"], ["x1"],
           {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "w_exp": 10},
           {"weight": "c1.weight", "w_mant": "c1.w_mant", "bias": "c1.bias"}),
        op("relu1", "relu", ["x1"], ["x1r"]),
        op("enc1", "encode", ["x1r"], ["c1"]),
        op("pad2", "pad", ["c1"], ["c1p"], {"padding": [2, 2], "mode": "replicate"}),
        op("conv2", "conv2d", ["c1p"], ["x2"],
           {"kernel": [3, 3], "stride": [1, 1], "padding": [0, 0], "dilation": [2, 2], "groups": 2, "w_exp": 12},
           {"weight": "c2.weight", "w_mant": "c2.w_mant", "bias": "c2.bias"}),
        op("split", "split", ["x2"], ["s0", "s1"], {"sizes": [3, 5]}),
        op("res", "add", ["s0", "x0"], ["a0"]),
        op("cat", "concat", ["a0", "s1"], ["cat"]),
        op("leaky", "leaky_relu", ["cat"], ["lk"], {"mult": 3277, "shift": 16}),
        op("prelu", "prelu", ["lk"], ["pr"], {"shift": 16}, {"mult": "pr.mult"}),
        op("gap", "mean_pool", ["pr"], ["mp"], {"shift": 16}),
        op("gate", "lut", ["mp"], ["sg"], {"fn": "sigmoid", "lut_exp": 4, "imin": -128, "imax": 128}, {"lut": "sg.lut"}),
        op("scale", "mul", ["pr", "sg"], ["ml"]),
        op("std", "std_pool", ["ml"], ["sp"], {"shift": 16, "pre_shift": 2}),
        op("scale2", "mul", ["ml", "sp"], ["m2"]),
        op("shuffle", "pixel_shuffle", ["m2"], ["ps"], {"factor": 2}),
        op("up_bl", "upsample_bilinear", ["ps"], ["ub"], {"factor": 2, "mult": 1, "shift": 4}),
        op("up_bc", "upsample_bicubic", ["ps"], ["ubc"], {"factor": 2, "tap_bits": 8}),
        op("up_sum", "add", ["ub", "ubc"], ["ubs"]),
        op("enc2", "encode", ["ubs"], ["c2"]),
        op("tconv", "conv_transpose2d", ["c2"], ["tc"],
           {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "output_padding": [1, 1], "w_exp": 10},
           {"weight": "tc.weight", "w_mant": "tc.w_mant", "bias": "tc.bias"}),
        op("up_nn", "upsample_nearest", ["x0"], ["un"], {"factor": 8}),
        op("clip", "clamp", ["un"], ["unc"], {"lo": -(1 << 12), "hi": 1 << 11}),
        op("act", "lut", ["unc"], ["unt"], {"fn": "tanh", "lut_exp": 4, "imin": -64, "imax": 64}, {"lut": "tn.lut"}),
        op("skip", "add", ["tc", "unt"], ["out_s"]),
        op("out", "image_out", ["out_s"], ["output"], {"exp": 4}, {"mult": "out.mult", "offset": "out.offset"}),
    ]
    return Artifact(model={"name": "test"}, numerics=numerics, inputs=("input",), outputs=("output",),
                    tensors=T, ops=ops, arrays=arrays)


def direct_chain(art: Artifact, img: np.ndarray) -> dict:
    """The same graph as explicit op calls (no engine)."""
    n = art.numerics
    A = art.arrays
    t = {"input": img}
    t["x0"], _ = im.image_in(img, A["in.mult"], A["in.offset"], exp=16, f_out=12, numerics=n)
    t["c0"], _, _ = encode(t["x0"], cb_signed(), n.rounding)
    t["x1"], _ = conv_ops.conv2d(t["c0"], cb_signed(), A["c1.weight"], A["c1.w_mant"], A["c1.bias"], w_exp=10,
                                 f_out=12, padding=1, numerics=n)
    t["x1r"], _ = ew.relu(t["x1"])
    t["c1"], _, _ = encode(t["x1r"], cb_relu(), n.rounding)
    t["c1p"], _ = pad_ops.pad(t["c1"], (2, 2), "replicate")
    t["x2"], _ = conv_ops.conv2d(t["c1p"], cb_relu(), A["c2.weight"], A["c2.w_mant"], A["c2.bias"], w_exp=12,
                                 f_out=12, padding=0, dilation=2, groups=2, numerics=n)
    (t["s0"], t["s1"]), _ = ew.split(t["x2"], [3, 5])
    t["a0"], _ = ew.add(t["s0"], t["x0"], f_a=12, f_b=12, f_out=11, numerics=n)
    t["cat"], _ = ew.concat([t["a0"], t["s1"]], [11, 12], f_out=12, numerics=n)
    t["lk"], _ = ew.leaky_relu(t["cat"], mult=3277, shift=16, numerics=n)
    t["pr"], _ = ew.prelu(t["lk"], A["pr.mult"], shift=16, numerics=n)
    t["mp"], _ = pooling.mean_pool(t["pr"], shift=16, numerics=n)
    t["sg"], _ = lut_ops.lut(t["mp"], A["sg.lut"], lut_exp=4, imin=-128, imax=128, f_in=12, numerics=n)
    t["ml"], _ = ew.mul(t["pr"], t["sg"], f_x=12, f_g=15, f_out=12, numerics=n)
    t["sp"], _ = pooling.std_pool(t["ml"], shift=16, pre_shift=2, numerics=n)
    t["m2"], _ = ew.mul(t["ml"], t["sp"], f_x=12, f_g=12, f_out=12, numerics=n)
    t["ps"], _ = resample.pixel_shuffle(t["m2"], 2)
    t["ub"], _ = resample.upsample_bilinear(t["ps"], factor=2, mult=1, shift=4, numerics=n)
    t["ubc"], _ = bicubic.upsample_bicubic(t["ps"], factor=2, tap_bits=8, numerics=n)
    t["ubs"], _ = ew.add(t["ub"], t["ubc"], f_a=12, f_b=12, f_out=11, numerics=n)
    t["c2"], _, _ = encode(t["ubs"], cb_signed(), n.rounding)
    t["tc"], _ = conv_ops.conv_transpose2d(t["c2"], cb_signed(), A["tc.weight"], A["tc.w_mant"], A["tc.bias"],
                                           w_exp=10, f_out=12, stride=2, padding=1, output_padding=1, numerics=n)
    t["un"], _ = resample.upsample_nearest(t["x0"], 8)
    t["unc"], _ = ew.clamp(t["un"], lo=-(1 << 12), hi=1 << 11)
    t["unt"], _ = lut_ops.lut(t["unc"], A["tn.lut"], lut_exp=4, imin=-64, imax=64, f_in=12, numerics=n)
    t["out_s"], _ = ew.add(t["tc"], t["unt"], f_a=12, f_b=15, f_out=12, numerics=n)
    t["output"], _ = im.image_out(t["out_s"], A["out.mult"], A["out.offset"], exp=4, f_in=12, numerics=n)
    return t


def image(seed=1, h=6, w=5, c=3):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c)).astype(np.uint8)


# --------------------------------------------------------------------------


def test_registry_covers_every_op_type():
    assert set(OPS) == ALL_OPS
    assert {o.op for o in build_artifact().ops} == ALL_OPS


@pytest.mark.parametrize("numerics", [
    Numerics(),
    Numerics(realization="grid", rounding="half_even"),
    Numerics(rounding="floor", overflow="wrap", stream_bits=20),
    Numerics(rounding="half_away", acc_bits=13),
])
def test_engine_equals_direct_chain(numerics):
    art = build_artifact(numerics)
    img = image()
    res = run(art, img)
    assert isinstance(res, RunResult)
    ref = direct_chain(art, img)
    assert set(res.tensors) == set(art.tensors)
    for name, spec in art.tensors.items():
        got = res.tensors[name]
        np.testing.assert_array_equal(got, ref[name], err_msg=name)
        want = {"image": np.uint8, "stream": np.int64}.get(spec.kind) or spec.codebook.code_dtype
        assert got.dtype == want, name
        assert got.ndim == 3 and got.shape[2] == spec.channels, name
    assert res.tensors["output"].shape == (48, 40, 3)


def test_counters_shape_and_totals():
    art = build_artifact(Numerics(acc_bits=13))
    img = image()
    res = run(art, img)
    c = res.counters
    json.loads(json.dumps(c))  # JSON-serialisable
    assert list(c["ops"]) == [o.name for o in art.ops]
    for o in art.ops:
        e = c["ops"][o.name]
        assert e["op"] == o.op
        assert e["out_shape"] == list(res.tensors[o.outputs[0]].shape)
        for k in ("acc_overflow", "stream_overflow", "saturations"):
            assert isinstance(e[k], int) and e[k] >= 0
        if o.op in ("conv2d", "conv_transpose2d"):
            assert isinstance(e["ordered"], bool)
            assert set(e["macs"]) == {str(s) for s in range(len(art.tensors[o.inputs[0]].codebook.segments))}
        else:
            assert "macs" not in e and "ordered" not in e
        if o.op == "encode":
            cb = art.tensors[o.outputs[0]].codebook
            assert len(e["code_histogram"]) == cb.num_codes
            assert sum(e["code_histogram"]) == res.tensors[o.outputs[0]].size
            assert e["code_histogram"] == np.bincount(res.tensors[o.outputs[0]].reshape(-1),
                                                      minlength=cb.num_codes).tolist()
    for k in ("acc_overflow", "stream_overflow", "saturations"):
        assert c["totals"][k] == sum(e[k] for e in c["ops"].values())
    assert c["totals"]["macs"] == sum(sum(e.get("macs", {}).values()) for e in c["ops"].values())
    # conv1: 3×3, pad 1 on 6×5: valid taps 16 (rows) × 13 (cols), 3 inputs, 8 outputs
    assert sum(c["ops"]["conv1"]["macs"].values()) == 16 * 13 * 3 * 8
    assert c["ops"]["split"]["out_shapes"] == [[6, 5, 3], [6, 5, 5]]
    assert c["ops"]["conv1"]["ordered"] is True  # W = max Σ|w|·15 > 2^12 − 1 with 13-bit accumulators


def test_grid_counters_use_all():
    res = run(build_artifact(Numerics(realization="grid")), image())
    assert set(res.counters["ops"]["conv1"]["macs"]) == {"all"}


def test_keep_tensors_false():
    art = build_artifact()
    img = image()
    full = run(art, img)
    lean = run(art, img, keep_tensors=False)
    assert set(lean.tensors) == {"output"}
    np.testing.assert_array_equal(lean.tensors["output"], full.tensors["output"])
    assert lean.counters == full.counters


def test_image_checks():
    art = build_artifact()
    with pytest.raises(ValueError, match="uint8"):
        run(art, image().astype(np.float32))
    with pytest.raises(ValueError, match="channels"):
        run(art, image(c=1))
    with pytest.raises(ValueError, match="H×W×C"):
        run(art, image()[None])
    with pytest.raises(ValueError, match="H×W×C|channels"):
        run(art, image()[:, :, 0])


def test_error_policy_names_op():
    # narrow stream: the first conv's output overflows 14 bits
    art = build_artifact(Numerics(overflow="error", stream_bits=14))
    with pytest.raises(EngineOverflowError) as e:
        run(art, image())
    assert any(o.name in str(e.value) for o in art.ops)
    # narrow accumulators: conv1 runs ordered and overflows
    art = build_artifact(Numerics(overflow="error", acc_bits=12))
    with pytest.raises(EngineOverflowError, match="conv1"):
        run(art, image())


def test_unknown_op_type():
    art = build_artifact()
    art.ops[3] = replace(art.ops[3], op="gelu")
    with pytest.raises(ValueError, match="gelu"):
        run(art, image())


# --------------------------------------------------------------------------
# a tiny graph end to end against pure-Python integer formulas


def R(I, n):
    return math.floor(Fraction(I, 1 << n) + Fraction(1, 2))  # half_up


def test_tiny_graph_pure_python():
    cb = cb_signed()
    T = {"input": TensorSpec("input", "image", 1), "x": TensorSpec("x", "stream", 1, frac=12),
         "c": TensorSpec("c", "codes", 1, codebook=cb), "y": TensorSpec("y", "stream", 2, frac=10),
         "output": TensorSpec("output", "image", 2)}
    arrays = {"m": np.array([257]), "o": np.array([-29491]), "w": np.array([[[[3]]], [[[-7]]]], dtype=np.int8),
              "wm": np.array([5, 9]), "b": np.array([100, -3000]), "om": np.array([255, 255]), "oo": np.array([128, 0])}
    ops = [OpSpec("in", "image_in", ("input",), ("x",), {"exp": 16}, {"mult": "m", "offset": "o"}),
           OpSpec("enc", "encode", ("x",), ("c",)),
           OpSpec("conv", "conv2d", ("c",), ("y",), {"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0],
                                                     "dilation": [1, 1], "groups": 1, "w_exp": 4},
                  {"weight": "w", "w_mant": "wm", "bias": "b"}),
           OpSpec("out", "image_out", ("y",), ("output",), {"exp": 0}, {"mult": "om", "offset": "oo"})]
    art = Artifact({}, Numerics(), ("input",), ("output",), T, ops, arrays)
    img = np.arange(0, 256, 17, dtype=np.uint8).reshape(4, 4)  # a 2-D Y image is accepted for 1 channel
    res = run(art, img)
    segs = [(s, q) for s, seg in enumerate(cb.segments) for q in range(seg.qmin, seg.qmax + 1)]
    for (h, w), p in np.ndenumerate(img):
        X = R(int(p) * 257 - 29491, 4)
        s = 0 if X <= -1025 else (1 if X <= 1024 else 2)
        e = cb.encoder[s]
        seg = cb.segments[s]
        q = min(max(R((X - e.center) * e.mult, e.shift), seg.qmin), seg.qmax)
        assert segs[int(res.tensors["c"][h, w, 0])] == (s, q)
        for co, (wv, wm, b) in enumerate(zip((3, -7), (5, 9), (100, -3000))):
            # split: P_s = w·q, Q_s = w when origin ≠ 0; n = 4 + 12 − 10 = 6
            I = wm * seg.step * (wv * q) + wm * seg.origin * wv + b
            Y = R(I, 6)
            assert res.tensors["y"][h, w, co] == Y
            P = min(max(R(Y * 255 + [128, 0][co] * 2**10, 10), 0), 255)
            assert res.tensors["output"][h, w, co] == P


@pytest.mark.parametrize("acc_bits", [12, 16, 20, 32])
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_ordered_decision_matches_bounds(acc_bits, realization):
    """The engine's path (§5.4) comes from intsim.bounds; the array-level helper agrees with it."""
    from intsim import bounds
    from intsim.ops.conv import conv_can_overflow

    art = build_artifact(Numerics(acc_bits=acc_bits, realization=realization))
    res = run(art, image(), keep_tensors=False)
    for o in art.ops:
        if o.op in ("conv2d", "conv_transpose2d"):
            expected = bounds.conv_can_overflow(art, o)
            assert res.counters["ops"][o.name]["ordered"] is expected
            assert conv_can_overflow(art.array(o, "weight"), art.tensors[o.inputs[0]].codebook, realization,
                                     acc_bits) is expected


def spy_conv_slope(monkeypatch) -> list[bool]:
    """Record, per conv → slope group the engine runs, whether the conv handed its rows over."""
    handed_over = []
    conv_slope = fusion.run_conv_slope

    def spy(*args):
        got = conv_slope(*args)
        handed_over.append(bool(got[2]))
        return got

    monkeypatch.setattr(fusion, "run_conv_slope", spy)
    return handed_over


@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_slope_split_fusion_equals_unfused(overflow, rounding, monkeypatch):
    """leaky_relu/prelu → split runs as one pass when intermediates are not kept: the same outputs
    and counters (op order, shapes, stream events) as the op-by-op run, on tensors large enough
    for the fused kernel, with slopes steep enough to overflow the stream."""
    from intsim.fusion import fusion_plan

    base = build_artifact(Numerics(rounding=rounding, overflow=overflow, stream_bits=16))
    T = dict(base.tensors)
    for name, c in (("lk1", 8), ("pr1", 8), ("t0", 3), ("t1", 5)):
        T[name] = TensorSpec(name, "stream", c, frac=12)
    arrays = dict(base.arrays)
    arrays["pr.mult"] = np.array([1 << 20, 3 << 18, 5, 0, -(1 << 19), 1 << 16, 7 << 17, 1], dtype=np.int64)
    by = {o.name: o for o in base.ops}

    def op(name, kind, ins, outs, attrs=None, arr=None):
        return OpSpec(name, kind, tuple(ins), tuple(outs), attrs or {}, arr or {})

    ops = [by["in"], by["enc0"], by["conv1"],
           op("leaky", "leaky_relu", ["x1"], ["lk1"], {"mult": 3277, "shift": 16}),
           op("split", "split", ["lk1"], ["s0", "s1"], {"sizes": [3, 5]}),
           by["res"], by["cat"],
           op("prelu", "prelu", ["cat"], ["pr1"], {"shift": 16}, {"mult": "pr.mult"}),
           op("split2", "split", ["pr1"], ["t0", "t1"], {"sizes": [3, 5]}),
           op("skip", "add", ["t0", "x0"], ["out_s"]), by["out"]]
    art = replace(base, tensors=T, arrays=arrays, ops=ops)
    plan = fusion_plan(art)
    assert {n for n, f in plan.items() if f.split is not None and f.slope is None} == {"leaky", "prelu"}
    assert plan["conv1"].slope.name == "leaky" and plan["conv1"].split.name == "split"
    img = image(seed=3, h=72, w=64)
    full = run(art, img)

    def no_split(*_):
        raise AssertionError("the split ran on its own: the fused pass was not taken")

    monkeypatch.setitem(OPS, "split", no_split)
    handed_over = spy_conv_slope(monkeypatch)  # conv1 → leaky: the conv's rows went into the slope pass
    lean = run(art, img, keep_tensors=False)
    np.testing.assert_array_equal(lean.tensors["output"], full.tensors["output"])
    assert lean.counters == full.counters
    assert list(lean.counters["ops"]) == [o.name for o in ops]
    assert full.counters["ops"]["prelu"]["stream_overflow"] > 0
    # on the int8 path (AVX-512 VNNI hosts) conv1 hands its rows to the slope pass; other paths do not
    assert handed_over == [int8dot.available()]


def encode_fusion_artifact(numerics: Numerics, steep: bool) -> Artifact:
    """A graph in which every kind of producer feeds an encode that is its tensor's only consumer:
    leaky_relu → split (one slice encoded), add, mul, concat and a lone leaky_relu (``steep``:
    with a slope of 256, which overflows the stream)."""
    base = build_artifact(numerics)
    rng = np.random.default_rng(5)
    T = {k: base.tensors[k] for k in ("input", "output", "x0", "c0", "x1")}
    for name, c in (("lk1", 8), ("s0", 3), ("s1", 5), ("e1", 3), ("a1", 3), ("xa", 3), ("mp", 8), ("m1", 8),
                    ("xm", 3), ("cat", 6), ("xc", 3), ("lk2", 8), ("xl", 3), ("out_s", 3)):
        T[name] = TensorSpec(name, "stream", c, frac=12)
    for name, c in (("cE", 5), ("cA", 3), ("cM", 8), ("cC", 6), ("cL", 8)):
        T[name] = TensorSpec(name, "codes", c, codebook=cb_signed())
    arrays = {k: base.arrays[k] for k in ("in.mult", "in.offset", "c1.weight", "c1.w_mant", "c1.bias",
                                          "out.mult", "out.offset")}
    by = {o.name: o for o in base.ops}

    def op(name, kind, ins, outs, attrs=None, arr=None):
        return OpSpec(name, kind, tuple(ins), tuple(outs), attrs or {}, arr or {})

    def conv(name, cin, out, k):
        arrays[f"{name}.weight"] = rng.integers(-128, 128, size=(3, k, k, cin)).astype(np.int8)
        arrays[f"{name}.w_mant"] = rng.integers(1, 64, size=3).astype(np.int64)
        arrays[f"{name}.bias"] = rng.integers(-(1 << 12), 1 << 12, size=3).astype(np.int64)
        return op(name, "conv2d", [f"c{name[-1]}"], [out],
                  {"kernel": [k, k], "stride": [1, 1], "padding": [k // 2] * 2, "dilation": [1, 1], "groups": 1,
                   "w_exp": 10}, {"weight": f"{name}.weight", "w_mant": f"{name}.w_mant", "bias": f"{name}.bias"})

    ops_ = [by["in"], by["enc0"], by["conv1"],
            op("leaky", "leaky_relu", ["x1"], ["lk1"], {"mult": 3277, "shift": 16}),
            op("split", "split", ["lk1"], ["s0", "s1"], {"sizes": [3, 5]}),
            op("encE", "encode", ["s1"], ["cE"]), conv("convE", 5, "e1", 1),
            op("addE", "add", ["s0", "e1"], ["a1"]),
            op("encA", "encode", ["a1"], ["cA"]), conv("convA", 3, "xa", 3),
            op("gap", "mean_pool", ["x1"], ["mp"], {"shift": 16}),
            op("mulE", "mul", ["x1", "mp"], ["m1"]),
            op("encM", "encode", ["m1"], ["cM"]), conv("convM", 8, "xm", 1),
            op("catE", "concat", ["xa", "xm"], ["cat"]),
            op("encC", "encode", ["cat"], ["cC"]), conv("convC", 6, "xc", 1),
            op("leaky2", "leaky_relu", ["x1"], ["lk2"], {"mult": 1 << 20 if steep else 3277, "shift": 12}),
            op("encL", "encode", ["lk2"], ["cL"]), conv("convL", 8, "xl", 1),
            op("sum", "add", ["xc", "xl"], ["out_s"]),
            by["out"]]
    return replace(base, tensors=T, arrays=arrays, ops=ops_)


@pytest.mark.parametrize("overflow", ["saturate", "wrap", "error"])
@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_encode_fusion_equals_unfused(overflow, rounding, monkeypatch):
    """Each producer whose output only an encode reads emits the codes in the same pass when
    intermediates are not kept: the same output and counters (op order, shapes, stream events,
    saturations, histograms) as the op-by-op run. Under 'error' the slope kernels step aside (the
    numpy form names an overflowing value), and an overflow raises either way."""
    from intsim.fusion import fusion_plan

    steep = overflow != "error"
    art = encode_fusion_artifact(Numerics(rounding=rounding, overflow=overflow, stream_bits=24), steep)
    plan = fusion_plan(art)
    assert {n: [e and e.name for e in f.encodes] for n, f in plan.items()} == {
        "leaky": [None, "encE"], "addE": ["encA"], "mulE": ["encM"], "catE": ["encC"], "leaky2": ["encL"]}
    img = image(seed=4, h=96, w=64)
    if overflow == "error":
        steep_art = encode_fusion_artifact(art.numerics, True)
        for keep in (True, False):
            with pytest.raises(EngineOverflowError, match="leaky2"):
                run(steep_art, img, keep_tensors=keep)
    full = run(art, img)
    ran_alone = []
    encode_op = OPS["encode"]

    def spy(art_, op, xs):
        ran_alone.append(op.name)
        return encode_op(art_, op, xs)

    monkeypatch.setitem(OPS, "encode", spy)
    lean = run(art, img, keep_tensors=False)
    np.testing.assert_array_equal(lean.tensors["output"], full.tensors["output"])
    assert lean.counters == full.counters
    # every other encode ran inside its producer (under 'error', not those of the slope ops)
    assert ran_alone == (["enc0", "encE", "encL"] if overflow == "error" else ["enc0"])
    assert full.counters["totals"]["saturations"] > 0
    assert (full.counters["ops"]["leaky2"]["stream_overflow"] > 0) is steep


def test_op_seconds_charges_fused_groups_to_their_producer():
    """``op_seconds`` gets every op's wall time, within the run's; an op run inside its producer's
    pass gets (about) none, and repeated runs add up."""
    art = encode_fusion_artifact(Numerics(), True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    run(art, image(seed=4, h=96, w=64), keep_tensors=False, op_seconds=times)
    wall = time.perf_counter() - t0
    assert set(times) == {o.name for o in art.ops} and min(times.values()) >= 0
    assert sum(times.values()) <= wall
    for fused_op in ("split", "encE", "encA", "encM", "encC", "encL"):
        assert times[fused_op] < times["conv1"]
    once = dict(times)
    run(art, image(seed=4, h=96, w=64), keep_tensors=False, op_seconds=times)
    assert all(times[k] > once[k] for k in ("conv1", "leaky", "catE"))


def test_codes_fit_only_for_codebooks_whose_codes_lie_in_range():
    """The engine skips the conv's range pass over codes only where its encoder cannot emit a code
    outside [0, N); a malformed in-memory codebook (a segment with qmin > qmax) is not trusted."""
    from intsim.op_dispatch import codes_fit, encoder_table

    assert codes_fit(cb_signed()) and codes_fit(cb_relu())
    bad = replace(cb_relu(), segments=(Segment(0, 256, 5, 2), Segment(8192, 1024, 1, 16)))
    assert not codes_fit(bad)
    assert encoder_table(bad, "half_up") is None  # the kernels index tables with codes: numpy encoder instead


@pytest.mark.parametrize("overflow", ["saturate", "wrap", "error"])
def test_conv_rows_go_into_slope_and_encoder(overflow, monkeypatch):
    """conv → leaky_relu → encode (no split): on the int8 path the conv hands each band of output
    rows to the slope pass, which encodes them; the same output and counters as op by op.
    Under 'error' nothing is handed over (the numpy slope names an overflowing value)."""
    from intsim.fusion import fusion_plan

    base = build_artifact(Numerics(overflow=overflow, stream_bits=24))
    ops_ = [replace(o, op="leaky_relu", attrs={"mult": 3277, "shift": 16}) if o.name == "relu1" else o
            for o in base.ops]
    art = replace(base, ops=ops_)
    assert fusion_plan(art)["conv1"].slope.name == "relu1"
    assert fusion_plan(art)["conv1"].encodes[0].name == "enc1"
    img = image(seed=6, h=80, w=72)
    full = run(art, img)
    handed_over = spy_conv_slope(monkeypatch)
    lean = run(art, img, keep_tensors=False)
    np.testing.assert_array_equal(lean.tensors["output"], full.tensors["output"])
    assert lean.counters == full.counters
    assert handed_over == [int8dot.available() and overflow != "error"]


def test_dispatch_memo_follows_a_replaced_codebook_and_rounding():
    """The per-artifact memo of encoder tables (intsim.op_dispatch.memo) is keyed on the codebook object and
    the rounding mode: swapping either gives the table of the new one, never a stale entry."""
    from tests.artifact_factory import make_codebook

    art = Artifact(model={}, numerics=Numerics(), inputs=(), outputs=(), tensors={}, ops=[], arrays={})
    a = make_codebook("signed2r", 4, 16, "split")
    b = make_codebook("uniform", 8, 16, "split")

    def same(t, u):
        return (t.rmode, t.num_codes, len(t.arrays)) == (u.rmode, u.num_codes, len(u.arrays)) and all(
            np.array_equal(x, y) for x, y in zip(t.arrays, u.arrays))

    assert same(dispatch.encoder_table_memo(art, a), dispatch.encoder_table(a, "half_up"))
    assert same(dispatch.encoder_table_memo(art, b), dispatch.encoder_table(b, "half_up"))
    assert not same(dispatch.encoder_table_memo(art, a), dispatch.encoder_table_memo(art, b))
    art.numerics = replace(art.numerics, rounding="floor")
    assert same(dispatch.encoder_table_memo(art, a), dispatch.encoder_table(a, "floor"))
    assert dispatch.codes_fit_memo(art, a) is dispatch.codes_fit(a)
