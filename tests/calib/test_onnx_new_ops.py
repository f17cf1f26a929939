"""ONNX import of the issue-21 ops (calib/onnx_import.py, calib/onnx_constants.py): Clip (ReLU6, Hardtanh,
clamp), BatchNormalization, Tanh, Sigmoid, SiLU (Mul(x, Sigmoid(x))), Pad (reflect / edge) before a Conv,
Resize cubic, depthwise Conv.

Each tiny net is exported as docs/own_model.md says (``dynamo=False``, opset 17, dynamic H and W) and must
rebuild to the same float function (zero tolerance), capture to the same graph, and calibrate to the same
integer arrays (sha256 for sha256) and graph as the torch model itself. Cubic resizes other than torch's
bicubic are refused in one line naming the node.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.calib.test_onnx_import import _graph_key, _integer_part

onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _export(net: nn.Module, path, *, fold: bool = True):
    torch.onnx.export(net.eval(), (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      do_constant_folding=fold, input_names=["lr"], output_names=["sr"],
                      dynamic_axes={"lr": {2: "h", 3: "w"}, "sr": {2: "H", 3: "W"}})
    return path


class ClampNet(nn.Module):
    """ReLU6 and Hardtanh modules, a functional clamp, and a depthwise conv (group = channels)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU6()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.ht = nn.Hardtanh(-0.5, 0.75)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        y = self.ht(self.dw(self.act(self.head(x) * 4)))
        return self.up(torch.clamp(self.tail(y), -0.25, 1.5))


class BnNet(nn.Module):
    """Conv → BatchNorm → ReLU twice (statistics as after training, not the identity defaults)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.act = nn.ReLU()
        self.up = nn.PixelShuffle(2)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                n = bn.num_features
                bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.rand(n, generator=g) - 0.5)

    def forward(self, x):
        return self.up(self.bn2(self.body(self.act(self.bn1(self.head(x))))))


class LutNet(nn.Module):
    """Tanh (module and function) and Sigmoid (module and function)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.tanh = nn.Tanh()
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.sig = nn.Sigmoid()
        self.tail = nn.Conv2d(16, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        y = self.tanh(self.head(x))
        z = self.mid(y)
        return self.up(self.tail(torch.cat([self.sig(z), torch.tanh(z) + torch.sigmoid(y)], 1)))


class SiluNet(nn.Module):
    """SiLU as a module and as a function (the exporter writes both as ``Mul(x, Sigmoid(x))``), and a
    sigmoid whose input is also read elsewhere (stays a sigmoid)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.SiLU()
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(16, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        y = self.act(self.head(x))
        z = self.mid(y)
        return self.up(self.tail(torch.cat([F.silu(z), torch.sigmoid(z)], 1)))


class PadNet(nn.Module):
    """Reflect and replicate conv padding (``Pad`` + ``Conv`` in ONNX), one of them depthwise."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 5, padding=2, padding_mode="reflect")
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="replicate")
        self.tail = nn.Conv2d(8, 12, 3, padding=(1, 2), dilation=(1, 2), padding_mode="reflect")
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.tail(F.relu(self.dw(F.relu(self.head(x))))))


class BicubicNet(nn.Module):
    """A bicubic global skip (F.interpolate, align_corners=False) beside a pixel-shuffle branch."""

    def __init__(self, scale: int = 3):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.up(self.tail(F.relu(self.head(x)))) + skip


def _rcan_like() -> nn.Module:
    """docs/own_model.md's RCAN-like ×2 (BatchNorm in residual blocks, channel attention: functional ops in
    nested modules, whose names come from the ONNX scopes through the BatchNorm fold)."""
    import sys
    from pathlib import Path

    ex = str(Path(__file__).resolve().parents[2] / "examples")
    sys.path.insert(0, ex)
    try:
        import rcan_like
    finally:
        sys.path.remove(ex)
        sys.modules.pop("rcan_like", None)
    return rcan_like.trained_like(2, seed=3)


NETS = {"clamp_depthwise": (ClampNet, 2, True), "batchnorm": (BnNet, 2, False), "tanh_sigmoid": (LutNet, 2, True),
        "reflect_replicate_pad": (PadNet, 2, True), "bicubic_skip": (BicubicNet, 3, True),
        "rcan_like": (_rcan_like, 2, False), "silu": (SiluNet, 2, True)}


def _net(name: str) -> nn.Module:
    torch.manual_seed(11)
    return NETS[name][0]().eval()


def _arrays_sha(art) -> str:
    return hashlib.sha256(json.dumps({n: v["sha256"] for n, v in art.graph_json()["arrays"].items()},
                                     sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(NETS))
def test_onnx_op_imports_to_the_torch_path(name, tmp_path):
    """Same float function, same captured graph, same integer artifact (arrays by sha256) as the torch model.
    BatchNorm is exported with ``do_constant_folding=False``: the exporter's own conv+BN fusion rounds in
    float32, ours (calib/batchnorm.py) in float64, so only then are the folded weights the torch path's."""
    import calib
    from calib.graph import capture
    from calib.onnx_import import load_onnx

    net = _net(name)
    _, scale, fold = NETS[name]
    p = _export(net, tmp_path / f"{name}.onnx", fold=fold)
    ops = {n.op_type for n in onnx.load(str(p)).graph.node}
    want_ops = {"clamp_depthwise": {"Clip"}, "batchnorm": {"BatchNormalization"}, "tanh_sigmoid": {"Tanh", "Sigmoid"},
                "reflect_replicate_pad": {"Pad"}, "bicubic_skip": {"Resize"},
                "rcan_like": {"BatchNormalization", "Sigmoid", "GlobalAveragePool"}, "silu": {"Sigmoid", "Mul"}}[name]
    assert want_ops <= ops, ops  # the exported graph does contain the op under test
    gm = load_onnx(p)
    x = torch.rand(2, 3, 11, 13)  # another size than exported
    with torch.no_grad():
        assert torch.equal(gm(x), net(x))
    assert _graph_key(capture(gm, rgb_range=1.0, in_channels=3)) == _graph_key(capture(net, rgb_range=1.0,
                                                                                       in_channels=3))
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (12 * scale, 12 * scale, 3), dtype=np.uint8) for _ in range(2)]
    kw = dict(scale=scale, bits="W8A8", method="minmax", n_images=2, patch=8, holdout=False)
    a = calib.quantize(net, imgs, **kw)
    b = calib.quantize(str(p), imgs, **kw)
    assert _integer_part(a) == _integer_part(b)
    assert _arrays_sha(a) == _arrays_sha(b) and len(a.arrays) >= 4


def test_exporter_fused_batchnorm_imports_as_a_plain_conv(tmp_path):
    """With the default ``do_constant_folding=True`` the exporter fuses conv+BN itself (no BatchNormalization
    node): the import is a plain conv, the same graph, the same float function up to the exporter's float32
    rounding of the fused weights (≤ 1 ulp of a weight; docs/own_model.md)."""
    from calib.graph import capture
    from calib.onnx_import import load_onnx

    net = _net("batchnorm")
    p = _export(net, tmp_path / "bn_fused.onnx", fold=True)
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(p)).graph.node}
    gm = load_onnx(p)
    x = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=1e-5, atol=1e-5)  # float32 fusion, not an exactness claim
    assert [n.op for n in capture(gm, rgb_range=1.0, in_channels=3).nodes] == \
        [n.op for n in capture(net, rgb_range=1.0, in_channels=3).nodes]


def _with_resize_attr(src, dst, **attrs):
    from onnx import helper

    m = onnx.load(str(src))
    for node in m.graph.node:
        if node.op_type == "Resize":
            for k, v in attrs.items():
                for old in [a for a in node.attribute if a.name == k]:
                    node.attribute.remove(old)
                node.attribute.append(helper.make_attribute(k, v))
    onnx.save(m, str(dst))
    return dst


@pytest.mark.parametrize("attrs, needle", [
    ({"cubic_coeff_a": -0.5}, "cubic_coeff_a -0.5"),
    ({"exclude_outside": 1}, "exclude_outside 1"),
    ({"coordinate_transformation_mode": "align_corners"}, "coordinate_transformation_mode 'align_corners'"),
    ({"coordinate_transformation_mode": "asymmetric"}, "coordinate_transformation_mode 'asymmetric'"),
])
def test_other_cubic_resizes_are_refused_naming_the_node(tmp_path, attrs, needle):
    from calib.onnx_import import OnnxImportError, load_onnx

    src = _export(_net("bicubic_skip"), tmp_path / "bicubic.onnx")
    bad = _with_resize_attr(src, tmp_path / "bad.onnx", **attrs)
    with pytest.raises(OnnxImportError) as e:
        load_onnx(bad)
    msg = str(e.value)
    assert "\n" not in msg and "ONNX node '/Resize' (op Resize)" in msg and needle in msg, msg


class _SymmetricPad(nn.Module):
    def forward(self, x):
        return F.pad(x, (1, 1, 1, 1), mode="reflect") + 1


def test_a_pad_that_feeds_no_conv_is_refused(tmp_path):
    from calib.onnx_import import OnnxImportError, load_onnx

    msg = r"ONNX node '/Add' \(op Add\).*a Pad's output; a Pad may only feed a Conv"
    with pytest.raises(OnnxImportError, match=msg) as e:
        load_onnx(_export(_SymmetricPad(), tmp_path / "pad.onnx"))
    assert "\n" not in str(e.value)
