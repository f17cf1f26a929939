"""Reflect / replicate conv padding (the ``pad`` op on codes): docs/arithmetic.md §5.8.

* the index rule against numpy's own ``np.pad`` (an independent implementation) for every size;
* encode-free pad → conv on real-size codes, golden == intsim bit for bit in every rounding mode
  and overflow policy, with narrow accumulators so the ordered path and its events run too;
* a net with reflect and replicate convs calibrates, exports (``encode → pad → conv``), runs
  bit-exactly, tiled == untiled, and tracks the float model.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.executor import execute
from intsim import op_dispatch
from intsim.artifact import Artifact, ArtifactError, Numerics, OpSpec, TensorSpec
from intsim.ops.pad import pad, pad_index
from tests.artifact_factory import make_codebook
from tests.op_harness import MODES, POLICIES, validate_one_op, assert_network_bit_exact


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.integers(0, 12), st.integers(0, 12), st.sampled_from(["reflect", "replicate"]))
def test_index_rule_equals_numpy_pad(n, before, after, mode):
    v = np.arange(n) * 7 + 3
    if mode == "reflect" and max(before, after) > n - 1:
        with pytest.raises(ValueError, match="reflect padding"):
            pad_index(n, before, after, mode)
        return
    ref = np.pad(v, (before, after), mode="reflect" if mode == "reflect" else "edge")
    assert np.array_equal(v[pad_index(n, before, after, mode)], ref)


def test_pad_keeps_dtype_and_matches_torch():
    x = np.random.default_rng(0).integers(0, 31, (9, 7, 5)).astype(np.uint8)
    for mode in ("reflect", "replicate"):
        y, ev = pad(x, (2, 3), mode)
        assert y.dtype == np.uint8 and y.shape == (13, 13, 5) and ev["saturations"] == 0
        t = F.pad(torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None], (3, 3, 2, 2), mode=mode)
        assert np.array_equal(y, t[0].permute(1, 2, 0).numpy().astype(np.uint8))


def _pad_conv_artifact(mode: str, padding, rounding: str, overflow: str, acc_bits: int, seed: int) -> Artifact:
    rng = np.random.default_rng(seed)
    cb = make_codebook("signed2r", 4, 16, "split")
    C, Co, k = 8, 6, 3
    w = rng.integers(-128, 128, (Co, k, k, C)).astype(np.int8)
    tensors = {"c": TensorSpec("c", "codes", C, codebook=cb), "cp": TensorSpec("cp", "codes", C, codebook=cb),
               "y": TensorSpec("y", "stream", Co, frac=14)}
    arrays = {"w": w, "m": rng.integers(1, 200, Co).astype(np.int64),
              "b": rng.integers(-(1 << 20), 1 << 20, Co).astype(np.int64)}
    ops = [OpSpec("pad", "pad", ("c",), ("cp",), {"padding": list(padding), "mode": mode}),
           OpSpec("conv", "conv2d", ("cp",), ("y",), {"kernel": [k, k], "stride": [1, 1], "padding": [0, 0],
                                                       "dilation": [1, 1], "groups": 1, "w_exp": 10},
                  {"weight": "w", "w_mant": "m", "bias": "b"})]
    art = Artifact(model={"name": "pad_conv"}, numerics=Numerics(rounding=rounding, overflow=overflow,
                                                                  acc_bits=acc_bits),
                   inputs=("c",), outputs=("y",), tensors=tensors, ops=ops, arrays=arrays)
    validate_one_op(art)
    return art


def _both(art: Artifact, codes: np.ndarray):
    try:
        t = {"c": codes}
        ev_i = {}
        for op in art.ops:
            outs, ev = op_dispatch.OPS[op.op](art, op, [t[x] for x in op.inputs])
            t.update(zip(op.outputs, outs))
            ev_i[op.name] = {k: int(ev[k]) for k in ("acc_overflow", "stream_overflow", "saturations")}
        a = (t["cp"].astype(np.int64), np.asarray(t["y"], np.int64), ev_i)
    except OverflowError:
        a = None
    try:
        g = execute(art, {"c": codes})
        b = (g.tensors["cp"], g.tensors["y"], {n: {k: e[k] for k in ("acc_overflow", "stream_overflow",
                                                                         "saturations")} for n, e in g.events.items()})
    except OverflowError:
        b = None
    return a, b


@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("overflow", POLICIES)
@pytest.mark.parametrize("mode,padding", [("reflect", (1, 1)), ("replicate", (2, 1))])
def test_golden_equals_intsim_real_size(rounding, overflow, mode, padding):
    # 12-bit accumulators: the conv is ordered (§5.4) and overflows (events under saturate / wrap)
    for acc_bits, (H, W) in ((32, (96, 80)), (12, (40, 36))):
        art = _pad_conv_artifact(mode, padding, rounding, overflow, acc_bits, seed=acc_bits)
        n = sum(s.qmax - s.qmin + 1 for s in art.tensors["c"].codebook.segments)
        codes = np.random.default_rng(7).integers(0, n, (H, W, 8)).astype(np.int64)
        a, b = _both(art, codes)
        assert (a is None) == (b is None), (rounding, overflow, acc_bits)
        if a is None:
            assert overflow == "error"
            continue
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert a[2] == b[2]
        assert a[1].shape == (H + 2 * padding[0] - 2, W + 2 * padding[1] - 2, 6)
        if acc_bits == 12 and overflow != "error":
            assert a[2]["conv"]["acc_overflow"] > 0


def test_validate_refusals():
    art = _pad_conv_artifact("reflect", (1, 1), "half_up", "saturate", 32, 0)
    bad = Artifact(art.model, art.numerics, art.inputs, art.outputs, dict(art.tensors),
                   [OpSpec("pad", "pad", ("c",), ("cp",), {"padding": [1, 1], "mode": "circular"}), art.ops[1]],
                   art.arrays)
    with pytest.raises(ArtifactError, match=r"attribute 'mode' must be 'reflect' or 'replicate', got 'circular'"):
        validate_one_op(bad)
    other = make_codebook("uniform", 4, 16, "split")
    t = dict(art.tensors)
    t["cp"] = TensorSpec("cp", "codes", 8, codebook=other)
    bad = Artifact(art.model, art.numerics, art.inputs, art.outputs, t, art.ops, art.arrays)
    with pytest.raises(ArtifactError, match="must have the input's codebook"):
        validate_one_op(bad)


class _PadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.body = nn.Conv2d(8, 8, (3, 5), padding=(1, 2), padding_mode="replicate")
        self.tail = nn.Conv2d(8, 12, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return F.pixel_shuffle(self.tail(F.relu(self.body(F.relu(self.head(x))))), 2)


@pytest.mark.parametrize("rounding,overflow", [("half_up", "saturate"), ("floor", "wrap")])
def test_padded_net_calibrates_exports_runs_bit_exactly_and_tiles(rounding, overflow):
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture
    from calib.quant.fakequant import build_fakequant_model
    from intsim.tiling import run_tiled

    torch.manual_seed(0)
    m = _PadNet().eval()
    g = capture(m, rgb_range=1.0)
    assert [n.attrs["padding_mode"] for n in g.convs()] == ["reflect", "replicate", "reflect"]
    cal = calibrate_minmax(m, [torch.rand(3, 16, 16) for _ in range(3)], 8, 8, graph=g)
    art = export_artifact(m, cal, rounding=rounding, overflow=overflow, model_meta={"name": "padnet", "scale": 2})
    pads = [(op.name, op.attrs) for op in art.ops if op.op == "pad"]
    assert pads == [("head.pad", {"padding": [1, 1], "mode": "reflect"}),
                    ("body.pad", {"padding": [1, 2], "mode": "replicate"}),
                    ("tail.pad", {"padding": [1, 1], "mode": "reflect"})]
    assert all(op.attrs["padding"] == [0, 0] for op in art.ops if op.op == "conv2d")
    img = np.random.default_rng(4).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    tiled = run_tiled(art, img, tile_rows=5)
    assert np.array_equal(tiled.tensors["output"], res.tensors["output"])
    assert tiled.counters["totals"] == res.counters["totals"]
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        ref = (m(x)[0] * 255).clamp(0, 255).round().numpy().transpose(1, 2, 0)
        fq = (build_fakequant_model(m, cal)(x)[0] * 255).clamp(0, 255).round().numpy().transpose(1, 2, 0)
    out = res.tensors["output"].astype(np.float64)
    assert float(np.abs(out - ref).mean()) < 2.0
    assert float(np.abs(out - fq).mean()) < 1.0  # the fake-quant model pads as the artifact does


def test_transposed_conv_with_reflect_refused():
    from calib.graph import UnsupportedOpError, capture

    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular")

        def forward(self, x):
            return self.c(x)

    with pytest.raises(UnsupportedOpError, match=r"Conv2d module at fx node 'c'.*padding_mode 'circular'"):
        capture(T().eval())
