"""Depthwise conv (groups = C_in, one input channel per group) and its fast path (intsim/kernels/gemm.py).

The fast path forms a depthwise conv's accumulators by direct tap sums over all channels
(:func:`intsim.kernels.gemm.depthwise_rows`) instead of one one-column GEMM per group; by the float
GEMM rule of docs/arithmetic.md §5.6 it must give the reference kernel's integers, events and MACs.

* every path (reference, gemm32, gemm64, auto) equal, for channel multipliers 1 and 2, stride,
  dilation and padding, split and grid;
* golden == intsim, bit for bit, on real-size depthwise convs in every rounding mode and overflow
  policy (16-bit accumulators make the op ordered, so the reference path and its events run too);
* a MobileNet-style depthwise-separable block calibrates, exports and runs bit-exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from golden.executor import execute
from intsim import op_dispatch
from intsim.artifact import Artifact, Numerics, OpSpec, TensorSpec
from intsim.ops.conv import conv2d
from tests.artifact_factory import make_codebook
from tests.op_harness import MODES, POLICIES, validate_one_op, assert_network_bit_exact


def _case(seed: int, C: int, mult: int, realization: str):
    rng = np.random.default_rng(seed)
    cb = make_codebook("signed2r", 4, 16, realization, grid_bits=12)
    n = sum(s.qmax - s.qmin + 1 for s in cb.segments)
    w = rng.integers(-127, 128, (C * mult, 3, 3, 1)).astype(np.int8)
    m = rng.integers(1, 200, C * mult).astype(np.int64)
    b = rng.integers(-(1 << 16), 1 << 16, C * mult).astype(np.int64)
    return cb, n, w, m, b


@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("mult,stride,padding,dilation", [(1, 1, 1, 1), (2, 2, 1, 1), (1, 1, 2, 2), (2, 1, 0, 1)])
def test_every_path_gives_the_reference_integers(realization, mult, stride, padding, dilation, monkeypatch):
    import intsim.kernels.gemm as KG

    calls = []
    real = KG.depthwise_rows
    monkeypatch.setattr(KG, "depthwise_rows", lambda *a: calls.append(1) or real(*a))
    C = 24
    cb, n, w, m, b = _case(1, C, mult, realization)
    codes = np.random.default_rng(2).integers(0, n, (45, 38, C)).astype(np.uint8)
    nx = Numerics(realization=realization, mult_bits=31)
    out = {}
    for path in ("reference", "gemm32", "gemm64", "auto"):
        try:
            out[path] = conv2d(codes, cb, w, m, b, w_exp=10, f_out=12, stride=(stride,) * 2,
                               padding=(padding,) * 2, dilation=(dilation,) * 2, groups=C, numerics=nx, path=path)
        except ValueError as e:  # a fast path not proven exact is refused, never run
            assert "not" in str(e) or "refused" in str(e)
    ref_y, ref_ev = out.pop("reference")
    assert "gemm64" in out and "auto" in out
    assert calls  # the fast paths ran the depthwise kernel (no per-group GEMM)
    for path, (y, ev) in out.items():
        assert np.array_equal(y, ref_y), path
        assert ev == ref_ev, path


def _dw_artifact(rounding: str, overflow: str, acc_bits: int, mult: int) -> Artifact:
    C = 16
    cb, n, w, m, b = _case(3, C, mult, "split")
    tensors = {"c": TensorSpec("c", "codes", C, codebook=cb), "y": TensorSpec("y", "stream", C * mult, frac=12)}
    ops = [OpSpec("dw", "conv2d", ("c",), ("y",), {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
                                                  "dilation": [1, 1], "groups": C, "w_exp": 10},
                  {"weight": "w", "w_mant": "m", "bias": "b"})]
    art = Artifact(model={"name": "dw"}, numerics=Numerics(rounding=rounding, overflow=overflow, acc_bits=acc_bits),
                   inputs=("c",), outputs=("y",), tensors=tensors, ops=ops, arrays={"w": w, "m": m, "b": b})
    validate_one_op(art)
    return art


@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("overflow", POLICIES)
@pytest.mark.parametrize("acc_bits,mult", [(32, 1), (32, 2), (12, 1)])
def test_golden_equals_intsim_real_size(rounding, overflow, acc_bits, mult):
    art = _dw_artifact(rounding, overflow, acc_bits, mult)
    n = sum(s.qmax - s.qmin + 1 for s in art.tensors["c"].codebook.segments)
    H, W = (128, 96) if acc_bits == 32 else (40, 32)
    codes = np.random.default_rng(acc_bits + mult).integers(0, n, (H, W, 16)).astype(np.int64)
    op = art.ops[0]
    try:
        (y,), ev = op_dispatch.OPS["conv2d"](art, op, [codes.astype(np.uint8)])
    except OverflowError:
        y = None
    try:
        g = execute(art, {"c": codes})
    except OverflowError:
        g = None
    assert (y is None) == (g is None)
    if y is None:
        assert overflow == "error"
        return
    assert np.array_equal(np.asarray(y, np.int64), g.tensors["y"])
    assert {k: ev[k] for k in ("acc_overflow", "stream_overflow")} == \
        {k: g.events["dw"][k] for k in ("acc_overflow", "stream_overflow")}
    assert ev["ordered"] == (acc_bits == 12)
    if acc_bits == 12 and overflow != "error":
        assert ev["acc_overflow"] > 0


class _Separable(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.dw2 = nn.Conv2d(16, 32, 3, padding=1, groups=16)  # channel multiplier 2
        self.tail = nn.Conv2d(32, 12, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.head(x))
        h = h + self.pw(F.relu(self.dw(h)))
        return F.pixel_shuffle(self.tail(F.relu(self.dw2(h))), 2)


def test_separable_block_calibrates_exports_and_is_bit_exact():
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture

    torch.manual_seed(0)
    m = _Separable().eval()
    cal = calibrate_minmax(m, [torch.rand(3, 16, 16) for _ in range(3)], 8, 8, graph=capture(m, rgb_range=1.0))
    art = export_artifact(m, cal, model_meta={"name": "separable", "scale": 2})
    assert {op.name: op.attrs["groups"] for op in art.ops if op.op == "conv2d"}["dw2"] == 16
    img = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    assert_network_bit_exact(art, img)
