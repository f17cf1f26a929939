"""``clamp`` (ReLU6, Hardtanh, torch.clamp): docs/arithmetic.md §6.16, in every layer of the toolchain.

* property tests of the integer op and of the export rule against exact rationals
  (tests/exact_reference.py style: ``fractions.Fraction``, no project arithmetic);
* golden == intsim, bit for bit, on real-size streams in every rounding mode and overflow policy;
* capture lowers every spelling; a model with ReLU6 calibrates, exports and runs bit-exactly.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from calib.export_ops import ClampBoundsError, clamp_bounds
from intsim.artifact import ArtifactError, Numerics
from intsim.ops.elementwise import clamp
from tests.op_harness import MODES, POLICIES, assert_same, one_op, stream_tensor, assert_network_bit_exact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=40),
       st.integers(-(1 << 23), (1 << 23) - 1), st.integers(0, 1 << 20))
def test_clamp_equals_exact_min_max(xs, lo, width):
    hi = min(lo + width, (1 << 23) - 1)
    X = np.array(xs, dtype=np.int64).reshape(1, -1, 1)
    y, ev = clamp(X, lo=lo, hi=hi)
    assert [int(v) for v in y.reshape(-1)] == [min(max(x, lo), hi) for x in xs]
    assert ev == {"acc_overflow": 0, "stream_overflow": 0, "saturations": 0}


@settings(max_examples=300, deadline=None)
@given(st.floats(-100, 100, allow_nan=False), st.floats(0, 50, allow_nan=False), st.integers(-4, 20))
def test_export_bounds_snap_inwards_exactly(lo, width, f):
    hi = lo + width
    nx = Numerics(stream_bits=32)
    try:
        L, H = clamp_bounds(lo, hi, f, nx)
    except ClampBoundsError:
        # no grid point in [lo, hi]: the exact ceil of lo exceeds the exact floor of hi
        assert math.ceil(Fraction(lo) * 2 ** f if f >= 0 else Fraction(lo) / 2 ** -f) > \
            math.floor(Fraction(hi) * 2 ** f if f >= 0 else Fraction(hi) / 2 ** -f)
        return
    s = Fraction(2) ** f
    assert Fraction(L) / s >= Fraction(lo) and Fraction(L - 1) / s < Fraction(lo)  # smallest grid value ≥ lo
    assert Fraction(H) / s <= Fraction(hi) and Fraction(H + 1) / s > Fraction(hi)  # largest grid value ≤ hi


def test_export_bounds_relu6_and_open_ends():
    nx = Numerics(stream_bits=24)
    assert clamp_bounds(0.0, 6.0, 16, nx) == (0, 6 << 16)
    assert clamp_bounds(None, 6.0, 21, nx) == (-(1 << 23), (1 << 23) - 1)  # 6·2^21 is beyond the range
    assert clamp_bounds(0.3, None, 2, nx) == (2, (1 << 23) - 1)  # §6.16 example: ⌈1.2⌉ = 2
    with pytest.raises(ClampBoundsError, match="no value of the stream grid"):
        clamp_bounds(0.3, 0.4, 2, nx)


@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("overflow", POLICIES)
def test_golden_equals_intsim_real_size(rounding, overflow):
    rng = np.random.default_rng(hash((rounding, overflow)) % 2**32)
    X = stream_tensor(rng, (96, 128, 16), 24)
    for lo, hi in ((0, 6 << 16), (-(1 << 20), 1 << 20), (-(1 << 23), (1 << 23) - 1), (77, 77)):
        art = one_op("clamp", 16, 16, 16, attrs={"lo": lo, "hi": hi}, rounding=rounding, overflow=overflow)
        out = assert_same(art, X)
        assert int(out.out.min()) >= lo and int(out.out.max()) <= hi
        assert np.array_equal(out.out, np.clip(X, lo, hi))


def test_validate_refuses_bad_bounds():
    with pytest.raises(ArtifactError, match=r"lo = 5, hi = 4 must satisfy"):
        one_op("clamp", 2, 8, 8, attrs={"lo": 5, "hi": 4})
    with pytest.raises(ArtifactError, match=r"must satisfy .*stream_bits = 16"):
        one_op("clamp", 2, 8, 8, attrs={"lo": 0, "hi": 1 << 15}, stream_bits=16)
    with pytest.raises(ArtifactError, match="frac"):
        one_op("clamp", 2, 8, 9, attrs={"lo": 0, "hi": 4})


class _ClampNet(nn.Module):
    """Every spelling of a clamp, an ESPCN-like ReLU6 net with a ×2 shuffle tail."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU6()
        self.ht = nn.Hardtanh(-2.0, 3.5)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x):
        h = self.act(self.head(x))
        h = self.ht(self.body(h))
        h = F.relu6(h) + torch.clamp(h, -1.0, 1.0) + h.clamp(min=0.25) + torch.clip(h, max=2) + F.hardtanh(h)
        return F.pixel_shuffle(self.tail(h), 2)


def test_capture_lowers_every_spelling():
    from calib.graph import capture

    g = capture(_ClampNet().eval(), rgb_range=1.0)
    got = [(n.name, n.attrs["lo"], n.attrs["hi"]) for n in g.nodes if n.op == "clamp"]
    assert got == [("act", 0.0, 6.0), ("ht", -2.0, 3.5), ("relu6", 0.0, 6.0), ("clamp", -1.0, 1.0),
                   ("clamp_1", 0.25, None), ("clip", None, 2.0), ("hardtanh", -1.0, 1.0)]


class _TensorBound(nn.Module):
    def forward(self, x):
        return torch.clamp(x, min=x.mean((2, 3), keepdim=True))


def test_capture_refuses_a_tensor_bound_naming_the_node():
    from calib.graph import UnsupportedOpError, capture

    with pytest.raises(UnsupportedOpError, match=r"^cannot export function torch.clamp at fx node 'clamp' in the "
                                                 r"model's top-level forward; File .*test_op_clamp.py.*: "
                                                 r"clamp bounds must be constants"):
        capture(_TensorBound().eval(), rgb_range=1.0)


@pytest.mark.parametrize("rounding,overflow", [("half_up", "saturate"), ("half_even", "wrap"), ("floor", "error")])
def test_relu6_net_calibrates_exports_and_is_bit_exact(rounding, overflow):
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture

    torch.manual_seed(0)
    m = _ClampNet().eval()
    g = capture(m, rgb_range=1.0)
    cal = calibrate_minmax(m, [torch.rand(3, 16, 16) for _ in range(3)], 8, 8, graph=g)
    art = export_artifact(m, cal, rounding=rounding, overflow=overflow, model_meta={"name": "clampnet", "scale": 2})
    clamps = {op.name: op.attrs for op in art.ops if op.op == "clamp"}
    assert len(clamps) == 7
    f_act = art.tensors["act.out"].frac
    # ReLU6 is exact on the grid; 6 beyond the stream range of the calibrated frac is the range's end
    assert clamps["act"] == {"lo": 0, "hi": min(6 << f_act, (1 << 23) - 1)}
    img = np.random.default_rng(2).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        ref = (m(x)[0] * 255).clamp(0, 255).round().numpy().transpose(1, 2, 0)
    assert float(np.abs(res.tensors["output"] - ref).mean()) < 2.0
