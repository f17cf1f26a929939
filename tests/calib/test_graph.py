"""fx capture and lowering (calib/graph.py; docs/arithmetic.md)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.graph import UnsupportedOpError, capture
from calib.models.edsr import DIV2K_RGB_MEAN, EDSR, MeanShift


def test_edsr_baseline_x4_lowering():
    g = capture(EDSR(4).eval())
    ops = [n.op for n in g.nodes]
    expected = (["image_in", "conv2d"] + ["conv2d", "relu", "conv2d", "add"] * 16 + ["conv2d", "add"]
                + ["conv2d", "pixel_shuffle"] * 2 + ["conv2d", "image_out"])
    assert ops == expected
    names = [n.name for n in g.nodes]
    assert names[:7] == ["image_in", "head.0", "body.0.body.0", "body.0.body.1", "body.0.body.2", "body.0.add",
                         "body.1.body.0"]
    assert names[-8:] == ["body.16", "add", "tail.0.0", "tail.0.1", "tail.0.2", "tail.0.3", "tail.1", "image_out"]
    assert g.nodes[-1].output == "output"
    # Residual adds read the block input; the long skip reads the head output.
    assert g.node("body.0.add").inputs == ("body.0.body.2.out", "head.0.out")
    assert g.node("add").inputs == ("body.16.out", "head.0.out")
    roles = g.conv_roles()
    assert roles["head.0"] == "head" and roles["tail.1"] == "tail"
    assert roles["tail.0.0"] == roles["tail.0.2"] == "upsampler"
    assert {r for n, r in roles.items() if n.startswith("body")} == {"body"}
    assert all(n.attrs["post_scale"] == 1.0 for n in g.convs())  # res_scale = 1 removed


def test_upsampling_stage_roles_on_the_zoo_graphs():
    """The layer policy's upsampler: seen through pointwise ops and nearest upsampling, extended back over
    a chain of spatial convs that starts at a join; never over a 1×1 fusion conv."""
    from calib.models.carn import CARNM
    from calib.models.rdn import RDNIdealo

    def high(g):
        return {n: r for n, r in g.conv_roles().items() if r != "body"}

    # RDN-idealo: global residual add → UPN1 → ReLU → UPN2 → ReLU → UPN3 → nearest ×2 → SR
    assert high(capture(RDNIdealo(2).eval(), rgb_range=1.0)) == {
        "F_m1": "head", "UPN1": "upsampler", "UPN2": "upsampler", "UPN3": "upsampler", "SR": "tail"}
    # CARN-M: conv → ReLU → pixel shuffle (twice at ×4); the cascade's 1×1 c3 before it stays body
    assert high(capture(CARNM(4).eval())) == {"entry": "head", "upsample.up4.body.0": "upsampler",
                                             "upsample.up4.body.3": "upsampler", "exit": "tail"}


def test_a_plain_conv_stack_has_no_upsampling_net():
    class Plain(nn.Module):  # ESPCN-like: no join, so only the conv that feeds the shuffle is the upsampler
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.c, self.d = nn.Conv2d(8, 12, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.d(F.pixel_shuffle(self.c(F.relu(self.b(F.relu(self.a(x))))), 2))

    assert capture(Plain().eval()).conv_roles() == {"a": "head", "b": "body", "c": "upsampler", "d": "tail"}


def test_mean_shifts_folded_into_image_ops():
    g = capture(EDSR(2, n_resblocks=1, n_feats=8).eval())
    img_in, img_out = g.nodes[0], g.nodes[-1]
    assert img_in.attrs["folded"] == ["sub_mean"] and img_out.attrs["folded"] == ["add_mean"]
    assert img_in.attrs["a"] == pytest.approx([1.0] * 3)
    assert img_in.attrs["b"] == pytest.approx([-255 * m for m in DIV2K_RGB_MEAN], rel=1e-6)
    assert img_out.attrs["b"] == pytest.approx([255 * m for m in DIV2K_RGB_MEAN], rel=1e-6)
    # rgb_range = 1: pixels are divided by 255 on the way in and multiplied on the way out.
    g1 = capture(EDSR(2, n_resblocks=1, n_feats=8, rgb_range=1).eval())
    assert g1.nodes[0].attrs["a"] == pytest.approx([1 / 255] * 3)
    assert g1.nodes[-1].attrs["a"] == pytest.approx([255.0] * 3)
    assert g1.nodes[-1].attrs["b"] == pytest.approx([255 * m for m in DIV2K_RGB_MEAN], rel=1e-6)


def test_captured_graph_runs_like_the_model_and_taps_see_values():
    torch.manual_seed(0)
    net = EDSR(4, n_resblocks=2, n_feats=8).eval()
    g = capture(net)
    x = torch.rand(1, 3, 6, 7) * 255
    seen, conv_in = {}, {}
    with torch.no_grad():
        y = g.run(x, tensor_taps={t: (lambda t: lambda v: seen.__setitem__(t, v.clone()))(t)
                                  for t in g.stream_tensors()},
                  conv_input_taps={"body.0.body.2": lambda v: conv_in.__setitem__("b", v.clone())})
        ref = net(x)
        head = net.head(net.sub_mean(x))
    assert torch.equal(y, ref)
    assert torch.allclose(seen["head.0.out"], head)
    # The conv output is recorded before the in-place ReLU overwrites it.
    assert (seen["body.0.body.0.out"] < 0).any() and (seen["body.0.body.1.out"] >= 0).all()
    assert torch.equal(conv_in["b"], seen["body.0.body.1.out"])


def test_constant_mul_folded_into_conv():
    torch.manual_seed(0)
    net = EDSR(2, n_resblocks=2, n_feats=8, res_scale=0.1).eval()
    g = capture(net)
    assert g.node("body.0.body.2").attrs["post_scale"] == pytest.approx(0.1)
    assert g.node("body.0.body.0").attrs["post_scale"] == 1.0
    assert "mul" not in [n.op for n in g.nodes]
    seen = {}
    x = torch.rand(1, 3, 5, 5) * 255
    with torch.no_grad():
        g.run(x, tensor_taps={"body.0.body.2.out": lambda v: seen.__setitem__("v", v.clone())})
        h = net.head(net.sub_mean(x))
        r = net.body[0].body(h) * 0.1
    assert torch.allclose(seen["v"], r, atol=1e-5)  # the stream carries the scaled value


class _Sig(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return torch.exp(self.conv(x))  # (tanh, silu, gelu lower to lut since issue 21)


class _AddConst(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x) + 1.0


class _MulShared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * 0.5 + y


class _MidMeanShift(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.shift = MeanShift(255)
        self.conv2 = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv2(self.shift(self.conv(x)))


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return F.pixel_shuffle(F.relu(self.drop(self.conv(x) / 2)), 2)


class _ControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else x


@pytest.mark.parametrize("model,what", [
    (_ControlFlow, "cannot trace _ControlFlow with torch.fx"),
    (_Sig, r"function torch\.exp at fx node 'exp'.*test_graph\.py"),
    (_AddConst, "adding a constant"),
    (_MulShared, "no other user"),
    (_MidMeanShift, "MeanShift"),
])
def test_unsupported_ops_are_refused_with_name_and_place(model, what):
    with pytest.raises(UnsupportedOpError, match=what):
        capture(model().eval())


def test_functional_ops_lower():
    g = capture(_Functional().eval())
    assert [n.op for n in g.nodes] == ["image_in", "conv2d", "relu", "pixel_shuffle", "image_out"]
    assert g.node("conv").attrs["post_scale"] == 0.5  # ÷ 2 folded into the conv; Dropout removed
    assert g.node("pixel_shuffle").attrs["factor"] == 2 and g.node("pixel_shuffle").channels == 3


# --------------------------------------------------------------------------- ops beyond EDSR


class _AllOps(nn.Module):
    """Every lowering beyond EDSR's: split/chunk/slice, cat, leaky_relu, prelu, CCA-style std+mean →
    sigmoid gate (mul), a shared conv, nearest upsampling, a transposed conv, forward(x, scale=None)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.LeakyReLU(0.05)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.prelu = nn.PReLU(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.du = nn.Sequential(nn.Conv2d(8, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(2, 8, 1), nn.Sigmoid())
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    @staticmethod
    def _std(f):
        m = f.sum(3, keepdim=True).sum(2, keepdim=True) / (f.size(2) * f.size(3))
        v = (f - m).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / (f.size(2) * f.size(3))
        return v.pow(0.5)

    def forward(self, x, scale=None):
        h = self.act(self.head(x))
        a, b = torch.split(h, (4, 4), dim=1)
        a = self.shared(a)
        b = self.shared(F.leaky_relu(b, 0.1))
        c1, c2 = torch.chunk(torch.cat([a, b], dim=1), 2, dim=1)
        h = self.prelu(torch.cat([c2, c1], 1)) + h[:, 0:8]
        g = self.du(self._std(h) + self.pool(h))
        h = h * g
        h = self.up(h) + F.interpolate(h, scale_factor=2, mode="nearest") if scale is None else h
        return self.tail(h)


def test_all_ops_lower_and_match_float():
    m = _AllOps().eval()
    g = capture(m, rgb_range=1.0)
    ops = [n.op for n in g.nodes]
    for op in ("split", "concat", "leaky_relu", "prelu", "std_pool", "mean_pool", "lut", "mul",
               "conv_transpose2d", "upsample_nearest"):
        assert op in ops, op
    assert sum(1 for n in g.nodes if n.module == "shared") == 2  # one op per call of the shared conv
    assert len({n.call_node for n in g.convs()}) == len(g.convs())
    x = torch.rand(2, 3, 10, 12)
    with torch.no_grad():
        assert torch.allclose(g.run(x), m(x), atol=1e-6)
    assert all(n.is_global for n in g.nodes if n.op in ("std_pool", "mean_pool", "sigmoid"))
    assert not any(n.is_global for n in g.nodes if n.op == "mul")


def test_unsupported_reduction_named():
    class _Var(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.c(x)
            return y * (y - y.mean((2, 3), keepdim=True)).pow(2).mean((2, 3), keepdim=True)

    with pytest.raises(UnsupportedOpError, match="intermediate"):
        capture(_Var().eval())
