"""Fake-quant insertion (calib.quant.fakequant): transposed and group convs, shared (re-used) modules."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.calibrate import calibrate_minmax
from calib.graph import capture
from calib.quant.fakequant import QuantConv2d, build_fakequant_model
from calib.quant.two_region import TwoRegionSpec
from calib.quant.weight import minmax_weight_spec


def test_quant_conv_transpose_per_channel_dim1():
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(4, 3, 9, stride=3, padding=4, output_padding=2)
    act = TwoRegionSpec(-1.0, 2.0, 0.5, 4)
    w = minmax_weight_spec(ct.weight, 8, per_channel=True, channel_dim=1)
    assert len(w.scale) == 3  # one scale per output channel (dim 1 of [C_in, C_out, kh, kw])
    x = torch.randn(1, 4, 5, 5)
    y = QuantConv2d(ct, act, w)(x)
    ref = F.conv_transpose2d(act.fake_quant(x), w.fake_quant(ct.weight), ct.bias, 3, 4, 2)
    assert y.shape == (1, 3, 15, 15)
    assert torch.allclose(y, ref, atol=1e-5)
    with pytest.raises(ValueError, match="channel_dim=1"):
        QuantConv2d(ct, act, minmax_weight_spec(ct.weight, 8, per_channel=True, channel_dim=0))


def test_quant_group_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    act, w = TwoRegionSpec(0.0, 1.0, 0.6, 4), minmax_weight_spec(conv.weight, 4)
    x = torch.rand(2, 8, 6, 6)
    ref = F.conv2d(act.fake_quant(x), w.fake_quant(conv.weight), conv.bias, 1, 1, 1, 4)
    assert torch.allclose(QuantConv2d(conv, act, w)(x), ref, atol=1e-5)
    with pytest.raises(TypeError):
        QuantConv2d(nn.Linear(2, 2), act, w)


class _Shared(nn.Module):
    """A conv applied twice (CARN-M style), then a transposed conv."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)

    def forward(self, x):
        h = torch.relu(self.head(x))
        h = self.shared(h) + h
        h = self.shared(torch.relu(h)) + h  # second call sees a different range
        return self.up(h)


def _manual(net, cal, x):
    """Reference: each call site fake-quantized with its own recorded specs, in call order."""
    L = list(cal.layers.values())
    assert [l.module for l in L] == ["head", "shared", "shared", "up"]

    def qc(layer, m, v):
        return F.conv2d(layer.act.fake_quant(v), layer.weight.fake_quant(m.weight), m.bias, m.stride, m.padding,
                        m.dilation, m.groups)

    h = torch.relu(qc(L[0], net.head, x))
    h = qc(L[1], net.shared, h) + h
    h = qc(L[2], net.shared, torch.relu(h)) + h
    u = net.up
    return F.conv_transpose2d(L[3].act.fake_quant(h), L[3].weight.fake_quant(u.weight), u.bias, u.stride, u.padding,
                              u.output_padding)


def test_shared_module_one_quantizer_per_call_site():
    torch.manual_seed(2)
    net = _Shared().eval()
    g = capture(net, rgb_range=1.0, in_channels=3)
    imgs = [torch.rand(3, 8, 8) for _ in range(3)]
    cal = calibrate_minmax(net, imgs, 4, 4, graph=g)  # observers per call: the two sites differ
    sites = [l for l in cal.layers.values() if l.module == "shared"]
    assert len(sites) == 2 and sites[0].act != sites[1].act
    fq = build_fakequant_model(net, cal)
    assert isinstance(fq.shared, QuantConv2d) and fq.shared.num_sites == 2
    assert isinstance(fq.up, QuantConv2d) and fq.up.transposed
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        y1 = fq(x)
        fq.shared(torch.relu(fq.head(x)))  # a stray call shifts the shared conv's call counter by one
        y2 = fq(x)  # … and the next forward restarts it
    assert torch.equal(y1, y2)
    assert torch.allclose(y1, _manual(net, cal, x), atol=1e-5)


def test_shared_module_identical_specs_share_one_quantizer():
    from calib.methods import calibrate_method

    torch.manual_seed(3)
    net = _Shared().eval()
    g = capture(net, rgb_range=1.0, in_channels=3)
    cal = calibrate_method(net, [torch.rand(3, 8, 8) for _ in range(2)], 4, 4, "dual_region", graph=g)
    sites = [l for l in cal.layers.values() if l.module == "shared"]
    assert sites[0].act == sites[1].act  # calibrate_method's statistics are per module
    fq = build_fakequant_model(net, cal)
    assert fq.shared.num_sites == 1  # documented: one shared quantizer, the same spec export snaps per call
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(fq(x), _manual(net, cal, x), atol=1e-5)


def test_degenerate_uniform_range_matches_export_segments():
    """A conv input that is zero on all calibration data (IMDN ×2: IMDB4.cca.conv_du.2) gets l = u = 0.

    The quantizer used to divide 0 by a zero step (NaN → "cannot convert float NaN to integer" in
    ``intsim calibrate --method minmax``); it must quantize with the segments export snaps.
    """
    conv = nn.Conv2d(4, 4, 1)
    for bits in (4, 8):
        spec = TwoRegionSpec(0.0, 0.0, 0.0, bits, "uniform")
        qc = QuantConv2d(conv, spec, minmax_weight_spec(conv.weight, 8))
        x = torch.cat([torch.zeros(1, 4, 3, 3), torch.rand(1, 4, 3, 3) * 2], dim=2)
        with torch.no_grad():
            got = qc.act_quant(x)
        assert torch.isfinite(got).all()
        assert torch.allclose(got, spec.fake_quant(x))
        assert qc.act_quant.spec().segments() == spec.segments()


class _Dead(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 3, 3, padding=1)
        with torch.no_grad():
            self.a.bias.fill_(-100.0)  # ReLU never fires: b's input is all zero

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) + x


@pytest.mark.parametrize("method", ["minmax", "dual_region"])
def test_dead_conv_input_fakequant_and_export(method):
    from calib.export import export_artifact
    from calib.methods import calibrate_method
    from golden.executor import run_golden
    from intsim.engine import run

    torch.manual_seed(4)
    net = _Dead().eval()
    g = capture(net, rgb_range=1.0, in_channels=3)
    cal = calibrate_method(net, [torch.rand(3, 8, 8) for _ in range(2)], 4, 4, method, graph=g)
    assert cal.layers["b"].act.u == 0.0
    fq = build_fakequant_model(net, cal)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        y = fq(x)
    assert torch.isfinite(y).all()
    art = export_artifact(net, cal)
    img = (x[0].numpy().transpose(1, 2, 0) * 255).round().astype("uint8")
    assert np.array_equal(run(art, img).tensors[art.outputs[0]], run_golden(art, img).tensors[art.outputs[0]])
