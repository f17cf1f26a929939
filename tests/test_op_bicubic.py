"""``upsample_bicubic`` (fixed-point taps, one rounding): docs/arithmetic.md §6.18.

* taps against an exact rational reference of the spec text and against torch's own weights;
* the op against the exact rational reference (``fractions.Fraction`` + tests/exact_reference.py)
  in every rounding mode, and against torch's float bicubic where the taps are exact (r = 2, 4);
* golden == intsim, bit for bit, on real-size streams in every rounding mode and overflow policy;
* an ESPCN-like ×3 net with a bicubic global skip calibrates, exports and runs bit-exactly (tiled too).
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

from intsim.artifact import ArtifactError, Numerics
from intsim.ops.bicubic import bicubic_taps, phase_taps, upsample_bicubic
from tests.exact_reference import round_rational
from tests.op_harness import MODES, POLICIES, assert_same, one_op, stream_tensor, assert_network_bit_exact


def ref_weights(a: int, r: int) -> list[Fraction]:
    """torch's cubic-convolution weights (A = −3/4) of taps i−1..i+2 at t = a/2r, as exact rationals."""
    A, t = Fraction(-3, 4), Fraction(a, 2 * r)

    def k(x):
        x = abs(x)
        return (A + 2) * x ** 3 - (A + 3) * x ** 2 + 1 if x <= 1 else A * (x ** 3 - 5 * x ** 2 + 8 * x - 4)

    return [k(t + 1), k(t), k(1 - t), k(2 - t)]


def ref_taps(a: int, r: int, T: int) -> list[int]:
    c = [math.floor(sum(ref_weights(a, r)[: j + 1]) * 2 ** T + Fraction(1, 2)) for j in range(4)]
    return [c[0]] + [c[j] - c[j - 1] for j in range(1, 4)]


@pytest.mark.parametrize("r", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("T", [4, 8, 11, 14, 16])
def test_taps_are_the_spec_rule(r, T):
    table = phase_taps(r, T)
    for a in range(2 * r):
        w = ref_weights(a, r)
        assert sum(w) == 1
        assert table[a].tolist() == ref_taps(a, r, T)
        assert int(table[a].sum()) == 1 << T
        for k in range(4):
            assert abs(Fraction(int(table[a, k])) - w[k] * 2 ** T) < 1 + 1e-12
        if (1 << T) % (32 * r ** 3) == 0:
            assert [Fraction(int(v)) for v in table[a]] == [x * 2 ** T for x in w]  # exact taps


def test_weights_and_indices_match_torch():
    """A unit impulse upsampled by torch reveals its (float) weights and clamped taps."""
    for r in (2, 3, 4):
        H = 6
        idx, W = bicubic_taps(H, r, 16)
        for src in range(H):
            x = torch.zeros(1, 1, H, 1, dtype=torch.float64)
            x[0, 0, src, 0] = 1.0
            col = F.interpolate(x.expand(1, 1, H, 4), scale_factor=r, mode="bicubic", align_corners=False)[0, 0, :, 0]
            ours = np.array([sum(int(W[y, k]) for k in range(4) if idx[y, k] == src) for y in range(H * r)]) / 2 ** 16
            assert np.abs(col.numpy() - ours).max() < 2 ** -16, (r, src)


def ref_op(X: np.ndarray, r: int, T: int, mode: str, bits: int) -> tuple[list, int]:
    """Exact rational reference of §6.18 (taps by ref_taps, clamped indices), flattened; and #overflows."""
    H, W, C = X.shape

    def axis(n):
        out = []
        for y in range(n * r):
            i = math.floor(Fraction(2 * y + 1 - r, 2 * r))
            a = 2 * y + 1 - r - 2 * r * i
            out.append([(min(max(i - 1 + k, 0), n - 1), w) for k, w in enumerate(ref_taps(a, r, T))])
        return out

    ys, xs = axis(H), axis(W)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    res, ev = [], 0
    for y in ys:
        for x in xs:
            for c in range(C):
                I = sum(wy * wx * int(X[iy, ix, c]) for iy, wy in y for ix, wx in x)
                v = round_rational(Fraction(I, 1 << (2 * T)), mode)
                if not lo <= v <= hi:
                    ev += 1
                    v = min(max(v, lo), hi)
                res.append(v)
    return res, ev


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), st.sampled_from([3, 8, 14]), st.sampled_from(MODES),
       st.integers(0, 2**32 - 1))
def test_op_equals_exact_rational_reference(H, W, r, T, mode, seed):
    X = np.random.default_rng(seed).integers(-(1 << 15), 1 << 15, (H, W, 2))
    nx = Numerics(rounding=mode, overflow="saturate", stream_bits=16)
    y, ev = upsample_bicubic(X, factor=r, tap_bits=T, numerics=nx)
    want, n_ev = ref_op(X, r, T, mode, 16)
    assert y.reshape(-1).tolist() == want
    assert ev["stream_overflow"] == n_ev


@pytest.mark.parametrize("r", [2, 4])
def test_exact_taps_equal_torch_up_to_the_one_rounding(r):
    X = np.random.default_rng(r).integers(-(1 << 20), 1 << 20, (23, 17, 3))
    y, _ = upsample_bicubic(X, factor=r, tap_bits=14, numerics=Numerics(stream_bits=32))
    t = F.interpolate(torch.from_numpy(X.astype(np.float64)).permute(2, 0, 1)[None], scale_factor=r,
                      mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(y - t).max() <= 0.5 + 1e-6


@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("overflow", POLICIES)
@pytest.mark.parametrize("r", [2, 3])
def test_golden_equals_intsim_real_size(rounding, overflow, r):
    rng = np.random.default_rng(r * 100 + MODES.index(rounding) * 10 + POLICIES.index(overflow))
    X = stream_tensor(rng, (96, 80, 8), 24)  # full range: the overshoot of the cubic overflows at edges
    art = one_op("upsample_bicubic", 8, 16, 16, attrs={"factor": r, "tap_bits": 14},
                 rounding=rounding, overflow=overflow)
    out = assert_same(art, X)
    if not out.overflow:
        assert out.out.shape == (96 * r, 80 * r, 8)
        assert overflow == "error" or out.events["stream_overflow"] > 0
    else:
        assert overflow == "error"
    # within the range no event: the same data at a quarter of the amplitude runs under every policy
    out = assert_same(art, X // 4)
    assert not out.overflow and out.events["stream_overflow"] == 0


def test_validate_refuses_too_fine_taps_and_envelope():
    with pytest.raises(ArtifactError, match=r"tap_bits 17 exceeds 16 \(§6.18\)"):
        one_op("upsample_bicubic", 2, 8, 8, attrs={"factor": 2, "tap_bits": 17})
    with pytest.raises(ArtifactError, match=r"factor 65 exceeds 64 \(§6.18\)"):
        one_op("upsample_bicubic", 2, 8, 8, attrs={"factor": 65, "tap_bits": 8})
    with pytest.raises(ArtifactError, match=r"exactness envelope exceeded: I = Σ Wy·Wx·X"):
        one_op("upsample_bicubic", 2, 8, 8, attrs={"factor": 2, "tap_bits": 16}, stream_bits=32)


class _ESPCN(nn.Module):
    """ESPCN-like ×3 with ReLU6 and a bicubic global skip."""

    def __init__(self, scale: int = 3):
        super().__init__()
        self.scale = scale
        self.c1 = nn.Conv2d(3, 16, 5, padding=2)
        self.c2 = nn.Conv2d(16, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.act = nn.ReLU6()

    def forward(self, x):
        h = self.c3(self.act(self.c2(self.act(self.c1(x)))))
        return F.pixel_shuffle(h, self.scale) + F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                                              align_corners=False)


@pytest.mark.parametrize("rounding,overflow", [("half_up", "saturate"), ("half_even", "wrap")])
def test_espcn_with_bicubic_skip_is_bit_exact_and_tiles(rounding, overflow):
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture
    from intsim.tiling import run_tiled

    torch.manual_seed(0)
    m = _ESPCN().eval()
    g = capture(m, rgb_range=1.0)
    cal = calibrate_minmax(m, [torch.rand(3, 16, 16) for _ in range(3)], 8, 8, graph=g)
    art = export_artifact(m, cal, rounding=rounding, overflow=overflow, model_meta={"name": "espcn", "scale": 3})
    bic = [op for op in art.ops if op.op == "upsample_bicubic"]
    assert len(bic) == 1 and bic[0].attrs == {"factor": 3, "tap_bits": 14}
    img = np.random.default_rng(1).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    tiled = run_tiled(art, img, tile_rows=4)
    assert np.array_equal(tiled.tensors["output"], res.tensors["output"])
    assert tiled.counters["totals"] == res.counters["totals"]
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        ref = (m(x)[0] * 255).clamp(0, 255).round().numpy().transpose(1, 2, 0)
    assert res.tensors["output"].shape == (90, 78, 3)
    assert float(np.abs(res.tensors["output"] - ref).mean()) < 1.5


def test_bicubic_align_corners_refused_naming_the_node():
    from calib.graph import UnsupportedOpError, capture

    class M(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=True)

    with pytest.raises(UnsupportedOpError, match=r"fx node 'interpolate'.*bicubic upsampling with align_corners=True"):
        capture(M().eval())
