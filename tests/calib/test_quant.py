"""Real-valued quantizers: two-region allocations (arithmetic.md §3.3), observer, weights."""
from __future__ import annotations

import math

import pytest
import torch

from calib.quant.fakequant import QuantConv2d
from calib.quant.two_region import MinMaxObserver, TwoRegionQuantizer, TwoRegionSpec
from calib.quant.weight import WeightQuantizer, minmax_weight_spec


def _values(spec):
    return sorted({round(s.origin + s.step * q, 9) for s in spec.segments() for q in range(s.qmin, s.qmax + 1)})


def test_released_signed_matches_spec_example():
    # arithmetic.md §3.3 example: b = 4, bp = 1, l = -4.2, u = 6.
    spec = TwoRegionSpec(-4.2, 6.0, 1.0, 4)
    neg, dense, pos = spec.segments()
    assert (neg.origin, neg.qmin, neg.qmax) == (-1.0, -8, -1) and neg.step == pytest.approx(0.4)
    assert (dense.origin, dense.qmin, dense.qmax) == (0.0, -7, 7) and dense.step == pytest.approx(1 / 7)
    assert (pos.origin, pos.qmin, pos.qmax) == (1.0, 1, 8) and pos.step == pytest.approx(0.625)
    assert spec.num_codes == 31 and spec.code_bits == 5
    assert neg.lo == pytest.approx(-4.2) and pos.hi == pytest.approx(6.0)


@pytest.mark.parametrize("b", [2, 3, 4, 6, 8])
def test_released_code_counts(b):
    signed = TwoRegionSpec(-10.0, 12.0, 1.0, b)
    one_sided = TwoRegionSpec(0.0, 12.0, 1.0, b)
    assert signed.num_codes == 2 ** (b + 1) - 1 and signed.code_bits == b + 1
    assert one_sided.num_codes == 3 * 2 ** (b - 1) and one_sided.code_bits == b + 1
    assert not one_sided.signed and one_sided.segments()[0].qmin == 0


def test_uniform_allocation():
    spec = TwoRegionSpec(-1.0, 3.0, 0.5, 4, "uniform")
    (seg,) = spec.segments()
    assert seg.origin == 0 and seg.count == 16
    assert seg.lo <= -1.0 + seg.step / 2 and seg.hi >= 3.0 - seg.step / 2


def test_degenerate_tails_dropped():
    # Negative extent -l - bp is below one dense step: no negative tail.
    spec = TwoRegionSpec(-1.01, 5.0, 1.0, 4)
    assert [s.role for s in spec.segments()] == ["dense", "pos_tail"]
    # Breakpoint above u: clamped to the extent, no positive tail.
    spec = TwoRegionSpec(0.0, 2.0, 3.0, 4)
    assert [s.role for s in spec.segments()] == ["dense"]
    # All-zero tensor still gives a usable quantizer.
    assert TwoRegionSpec(0.0, 0.0, 0.0, 4).num_codes == 16


def test_unknown_and_future_allocations():
    with pytest.raises(ValueError, match="at least 3"):
        TwoRegionSpec(-1, 1, 0.5, 2, "paper")
    with pytest.raises(ValueError, match="counts"):
        TwoRegionSpec(-1, 1, 0.5, 4, "released", counts=(4, 7, 5))
    with pytest.raises(ValueError, match="odd dense"):
        TwoRegionSpec(-1, 1, 0.5, 4, "budgeted", counts=(4, 8, 4))
    with pytest.raises(ValueError, match="summing"):
        TwoRegionSpec(-1, 1, 0.5, 4, "budgeted", counts=(4, 7, 4))
    with pytest.raises(ValueError, match="unknown allocation"):
        TwoRegionSpec(-1, 1, 0.5, 4, "bogus")
    with pytest.raises(ValueError):
        TwoRegionSpec(-1, 1, 0.5, 1)


@pytest.mark.parametrize("l,u,bp,b,alloc", [(-4.2, 6.0, 1.0, 4, "released"), (0.0, 9.0, 2.0, 4, "released"),
                                            (-3.0, 1.5, 1.0, 8, "released"), (-1.0, 3.0, 0.5, 4, "uniform"),
                                            (-4.2, 6.0, 1.0, 4, "paper"), (0.0, 9.0, 2.0, 4, "paper"),
                                            (-4.2, 6.0, 1.0, 4, "budgeted"), (0.0, 9.0, 2.0, 3, "budgeted"),
                                            (-4.2, 6.0, 1.0, 4, ("budgeted", (2, 11, 3)))])
def test_fake_quant_values_and_module_agree(l, u, bp, b, alloc):
    counts = None
    if isinstance(alloc, tuple):
        alloc, counts = alloc
    spec = TwoRegionSpec(l, u, bp, b, alloc, counts)
    x = torch.linspace(l - 2, u + 2, 4001, dtype=torch.float64)
    y = spec.fake_quant(x)
    vals = torch.tensor(_values(spec), dtype=torch.float64)
    # Every output is a codebook value ...
    assert torch.min(torch.abs(y[:, None] - vals[None, :]), dim=1).values.max() < 1e-9
    # ... the module (trainable form) computes the same function ...
    with torch.no_grad():
        assert torch.allclose(TwoRegionQuantizer(spec).double()(x), y, atol=1e-9)
    # ... inside [l, u] the error is at most one step (a tail has no q = 0: values just past bp go to
    # bp + step, as in the released code) and at most half a step inside the dense region.
    inside = (x >= min(l, 0)) & (x <= u)
    max_step = max(s.step for s in spec.segments())
    assert (y - x)[inside].abs().max() <= max_step + 1e-9
    dense = [s for s in spec.segments() if s.role in ("dense", "uniform")][0]
    in_dense = (x >= dense.lo) & (x <= dense.hi)
    assert (y - x)[in_dense].abs().max() <= dense.step / 2 + 1e-9


def test_dense_region_is_closed():
    spec = TwoRegionSpec(-4.2, 6.0, 1.0, 4)
    y = spec.fake_quant(torch.tensor([1.0, -1.0, 1.0 + 1e-9, -1.0 - 1e-9], dtype=torch.float64))
    assert y[0] == pytest.approx(1.0) and y[1] == pytest.approx(-1.0)  # dense q = ±7
    assert y[2] == pytest.approx(1.625) and y[3] == pytest.approx(-1.4)  # first tail index (q = ±1)


def test_quantizer_gradients_reach_parameters():
    q = TwoRegionQuantizer(TwoRegionSpec(-4.0, 6.0, 1.0, 4))
    x = torch.linspace(-5, 7, 1000)
    q(x).pow(2).sum().backward()
    for p in (q.l, q.u, q.bp):
        assert p.grad is not None and torch.isfinite(p.grad) and p.grad != 0
    assert q.spec().bits == 4


def test_minmax_observer_ema_and_percentile():
    obs = MinMaxObserver(momentum=0.9, percentile=99.0)
    a = torch.arange(-100, 101, dtype=torch.float32)  # |x| 99th pct (nearest rank) of 201 values
    obs.update(a)
    assert obs.min == -100 and obs.max == 100
    k = math.ceil(0.99 * 201)
    assert obs.bp == float(torch.sort(a.abs()).values[k - 1])
    obs.update(a * 2)
    assert obs.min == pytest.approx(0.9 * -100 + 0.1 * -200)
    assert obs.max == pytest.approx(0.9 * 100 + 0.1 * 200)
    spec = obs.spec(4)
    assert spec.signed and spec.l == pytest.approx(-110)
    relu = MinMaxObserver()
    relu.update(torch.relu(torch.randn(1000)))
    assert not relu.spec(4).signed


def test_minmax_observer_range_modes():
    """'ema' smooths the batch extremes (the recipe); 'max' keeps the extremes over all batches."""
    obs = MinMaxObserver(momentum=0.9)
    for k in (1.0, 3.0, 2.0):
        obs.update(torch.tensor([-k, 0.5, 2 * k]))
    assert obs.bounds("max") == (-3.0, 6.0)
    lo, hi = obs.bounds("ema")
    assert -3.0 < lo < -1.0 and 2.0 < hi < 6.0
    spec = obs.spec(4, "released", "max")
    assert (spec.l, spec.u) == (-3.0, 6.0)
    assert obs.state()["max_global"] == 6.0
    with pytest.raises(ValueError, match="range must be"):
        obs.bounds("p99")
    with pytest.raises(RuntimeError, match="no data"):
        MinMaxObserver().bounds("max")


def test_uniform_quantizer_all_zero_range_is_finite():
    """A conv input that is zero on every calibration batch (l = u = 0) uses [0, 1], as the spec does."""
    spec = TwoRegionSpec(0.0, 0.0, 0.0, 4, "uniform")
    q = TwoRegionQuantizer(spec)
    x = torch.tensor([0.0, 0.2, 0.9, 1.5], requires_grad=True)
    y = q(x)
    assert torch.equal(y.detach(), spec.fake_quant(x.detach()))
    y.sum().backward()
    assert torch.isfinite(q.u.grad) and torch.isfinite(x.grad).all()


def test_weight_specs():
    w = torch.tensor([[1.0, -0.5], [0.25, 0.1]]).reshape(2, 2, 1, 1)
    per_t = minmax_weight_spec(w, 4)
    assert per_t.scale == (1.0 / 7,)
    assert per_t.quantize(w).flatten().tolist() == [7, -4, 2, 1]  # -3.5 rounds away from zero
    per_c = minmax_weight_spec(w, 4, per_channel=True)
    assert per_c.scale == pytest.approx((1 / 7, 0.25 / 7))
    assert per_c.quantize(w).flatten().tolist() == [7, -4, 7, 3]
    assert torch.allclose(WeightQuantizer(per_c)(w), per_c.fake_quant(w))
    zero = minmax_weight_spec(torch.zeros(3, 2, 1, 1), 8, per_channel=True)
    assert all(s > 0 for s in zero.scale)


def test_quant_conv_runs():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    qc = QuantConv2d(conv, TwoRegionSpec(-1.0, 1.0, 0.5, 8), minmax_weight_spec(conv.weight, 8))
    x = torch.rand(1, 3, 5, 5) * 2 - 1
    y = qc(x)
    assert y.shape == (1, 4, 5, 5)
    assert (y - conv(x)).abs().max() < 0.05


@pytest.mark.parametrize("b", [3, 4, 5, 8])
def test_paper_and_budgeted_code_counts(b):
    paper = TwoRegionSpec(-4.0, 6.0, 1.0, b, "paper")
    assert paper.num_codes == 2 ** (b - 1) - 1 + 2 * (2 ** (b - 2) - 1) and paper.code_bits == b
    assert TwoRegionSpec(0.0, 6.0, 1.0, b, "paper").num_codes == 2 ** b - 2
    for l in (-4.0, 0.0):
        bud = TwoRegionSpec(l, 6.0, 1.0, b, "budgeted")
        assert bud.num_codes == 2 ** b and bud.code_bits == b
    assert TwoRegionSpec(-4.0, 6.0, 1.0, 4, "paper").to_json()["region_counts"] == [3, 7, 3]
    # b = 4 paper example: 7 dense + 3 + 3 tail points = 13 codes in 4 bits
    assert TwoRegionSpec(-4.0, 6.0, 1.0, 4, "paper").num_codes == 13


def test_budgeted_counts_roundtrip_through_module():
    spec = TwoRegionSpec(-3.0, 5.0, 0.7, 4, "budgeted", counts=(3, 9, 4))
    m = TwoRegionQuantizer(spec)
    assert m.spec() == spec
    segs = spec.segments()
    assert [s.count for s in segs] == [3, 9, 4]


def test_mse_weight_spec_not_worse_than_minmax():
    from calib.quant.weight import mse_weight_spec

    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3) * torch.linspace(0.1, 2, 8).reshape(8, 1, 1, 1)
    w[0, 0, 0, 0] = 9.0  # an outlier the clip should cut
    for pc in (False, True):
        mm = minmax_weight_spec(w, 4, per_channel=pc)
        ms = mse_weight_spec(w, 4, per_channel=pc)
        e_mm = float(((mm.fake_quant(w) - w) ** 2).mean())
        e_ms = float(((ms.fake_quant(w) - w) ** 2).mean())
        assert e_ms <= e_mm
        assert len(ms.scale) == (8 if pc else 1)
    assert mse_weight_spec(w, 4).scale[0] < minmax_weight_spec(w, 4).scale[0]


@pytest.mark.parametrize("l,u,bp,b,alloc,counts", [
    (-4.2, 6.0, 1.0, 4, "released", None), (0.0, 9.0, 2.0, 4, "released", None), (-3.0, 2.0, 0.5, 4, "paper", None),
    (-3.0, 5.0, 0.7, 4, "budgeted", (3, 9, 4)), (-1.0, 3.0, 0.5, 4, "uniform", None), (0.0, 3.0, 3.0, 4, "uniform", None),
    (-1.0, 0.4, 0.5, 4, "released", None)])
def test_fused_quantizer_matches_reference_values_and_gradients(l, u, bp, b, alloc, counts):
    spec = TwoRegionSpec(l, u, bp, b, alloc, counts)
    torch.manual_seed(1)
    x0 = (torch.rand(5000, dtype=torch.float64) * (u - l + 4) + l - 2)
    g = torch.randn(5000, dtype=torch.float64)
    grads = []
    for fn in ("forward", "forward_reference"):
        m = TwoRegionQuantizer(spec)
        x = x0.clone().requires_grad_(True)
        y = getattr(m, fn)(x)
        (y * g).sum().backward()
        grads.append((y.detach(), x.grad, m.l.grad, m.u.grad, m.bp.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][0], spec.fake_quant(x0))
    for a, r in zip(grads[0][1:], grads[1][1:]):
        if r is None or a is None:
            assert (a is None or float(a.abs().sum()) == 0) and (r is None or float(r.abs().sum()) == 0)
        else:
            assert torch.allclose(a, r, rtol=1e-9, atol=1e-9), (a, r)


def test_full_range_weights_use_the_extra_negative_code():
    from calib.evaluate import _weight_spec
    from calib.quant.weight import mse_weight_spec

    w = torch.tensor([[1.0, -0.5], [0.25, -0.4]]).reshape(2, 2, 1, 1)
    narrow = minmax_weight_spec(w, 4, per_channel=True)
    full = minmax_weight_spec(w, 4, per_channel=True, full_range=True)
    assert (narrow.qmin, full.qmin, full.qmax) == (-7, -8, 7)
    # channel 1: its negative extreme sets the scale, −0.4 = −8·0.05 (0.05 > 0.25 / 7)
    assert full.scale == pytest.approx((1 / 7, max(0.25 / 7, 0.4 / 8)))
    neg = torch.tensor([-1.0, 0.5]).reshape(1, 2, 1, 1)
    s = minmax_weight_spec(neg, 4, full_range=True)
    assert s.scale == pytest.approx((1 / 8,)) and s.quantize(neg).flatten().tolist() == [-8, 4]
    assert minmax_weight_spec(neg, 4).quantize(neg).flatten().tolist() == [-7, 4]  # narrow: unchanged
    q = WeightQuantizer(s)
    assert q.qmin == -8 and torch.equal(q.integer_weights(neg), s.quantize(neg))
    assert q.spec() == s and _weight_spec(s.to_json()) == s  # the flag survives the artifact's metadata
    assert "full_range" not in narrow.to_json()  # narrow specs write what they always wrote
    torch.manual_seed(0)
    x = torch.randn(8, 4, 3, 3)
    for full_range in (False, True):
        spec = mse_weight_spec(x, 4, per_channel=True, full_range=full_range)
        assert spec.full_range is full_range and int(spec.quantize(x).min()) >= spec.qmin
