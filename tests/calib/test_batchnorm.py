"""BatchNorm2d folded into the preceding conv (calib/batchnorm.py, docs/arithmetic.md §5.7)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from calib.batchnorm import fold_batchnorm, folded_conv_params
from calib.calibrate import calibrate_minmax
from calib.export import export_artifact
from calib.graph import UnsupportedOpError, capture
from calib.methods import calibrate_method
from calib.quant.fakequant import build_fakequant_model
from tests.op_harness import assert_network_bit_exact


def _bn(c: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.05)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return bn


class ConvBNNet(nn.Module):
    """An RCAN-like block with BatchNorm: conv-BN-ReLU, conv-BN (no conv bias), residual, ×2 shuffle tail."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.c1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), _bn(c, 1)
        self.c2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c, 2)
        self.dw, self.bn3 = nn.Conv2d(c, c, 3, padding=1, groups=c), _bn(c, 3)
        self.tail = nn.Conv2d(c, 12, 3, padding=1)
        self.ps = nn.PixelShuffle(2)

    def forward(self, x):
        h = self.head(x)
        r = self.bn2(self.c2(torch.relu(self.bn1(self.c1(h)))))
        h = h + self.bn3(self.dw(r))
        return self.ps(self.tail(h))


def _net() -> ConvBNNet:
    torch.manual_seed(0)
    return ConvBNNet().eval()


def test_folded_params_equal_float_batchnorm_in_eval_mode():
    """w' = w·s, b' = (b − μ)·s + β: conv(x; w', b') equals bn(conv(x)) in float64 to rounding."""
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(5, 7, 3, padding=1).double(), _bn(7, 4).double().eval()
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64)
    w, b = folded_conv_params(conv, bn)
    with torch.no_grad():
        ref = bn(conv(x))
        got = torch.nn.functional.conv2d(x, w, b, padding=1)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))


def test_fold_matches_model_in_eval_mode_and_leaves_the_model_alone():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert folded is not net
    assert all(isinstance(folded.get_submodule(p), nn.Identity) for p in ("bn1", "bn2", "bn3"))
    assert folded.c2.bias is not None
    x = torch.rand(2, 3, 16, 13) * 255
    with torch.no_grad():
        ref, got = net(x), folded(x)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-4 * float(ref.abs().max()))
    for k, v in net.state_dict().items():  # the caller's model is unchanged
        assert torch.equal(v, before[k]), k
    plain = nn.Sequential(nn.Conv2d(3, 3, 1))
    assert fold_batchnorm(plain) is plain  # no BatchNorm: nothing copied


def test_capture_has_no_batchnorm_and_quantizes_the_folded_weights():
    net = _net()
    g = capture(net)
    assert [n.op for n in g.convs()] == ["conv2d"] * 5
    assert "batch" not in " ".join(n.op for n in g.nodes)
    w, b = folded_conv_params(net.c2, net.bn2)
    conv = g.gm.get_submodule("c2")
    assert torch.equal(conv.weight, w.float()) and torch.equal(conv.bias, b.float())


@pytest.mark.parametrize("why,model", [
    ("directly before it", nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))),
    ("running statistics", nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))),
])
def test_unfoldable_batchnorm_refused_naming_the_node(why, model):
    with pytest.raises(UnsupportedOpError, match=rf"BatchNorm2d module at fx node '\w+' in module '[12]' \(BatchNorm2d\).*{why}"):
        capture(model.eval())


class _SharedConvOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_batchnorm_after_a_conv_with_other_users_refused():
    with pytest.raises(UnsupportedOpError, match="conv 'conv' before it has other users"):
        capture(_SharedConvOutput().eval())


@pytest.mark.parametrize("method", ["minmax", "dual_region"])
def test_conv_bn_net_calibrates_exports_and_is_bit_exact(method):
    """calibrate → export → golden == intsim on every tensor; the artifact is close to the float BN model."""

    net = _net()
    imgs = [torch.rand(3, 16, 16) * 255 for _ in range(3)]
    g = capture(net)
    if method == "minmax":
        cal = calibrate_minmax(net, imgs, 8, 8, graph=g)
    else:
        cal = calibrate_method(net, imgs, 8, 8, method, graph=g)
    art = export_artifact(net, cal, model_meta={"name": "convbn", "scale": 2})
    assert not [op for op in art.ops if "bn" in op.name]
    img = np.random.default_rng(0).integers(0, 256, (20, 17, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None]
    with torch.no_grad():
        ref = net(x)[0].clamp(0, 255).round().numpy().transpose(1, 2, 0)
        fq = build_fakequant_model(net, cal)(x)[0].clamp(0, 255).round().numpy().transpose(1, 2, 0)
    err = np.abs(res.tensors["output"].astype(np.float64) - ref)
    # 8-bit: the integer model tracks the float BatchNorm model (the fake-quant one, built with the same fold,
    # even closer); an unfolded conv would be off by the BN affine, tens of levels.
    assert float(err.mean()) < 3.0, float(err.mean())
    assert float(np.abs(res.tensors["output"] - fq).mean()) < 1.5


def test_conv_bn_net_saved_golden_written_and_verified(tmp_path):
    """The whole user path: calibrate → save → golden directory → ``verify`` (every tensor and event)."""
    from golden.writer import write_golden
    from intsim.artifact import load_artifact, save_artifact
    from intsim.golden_dir import read_golden_dir
    from intsim.verification import verify

    net = _net()
    cal = calibrate_minmax(net, [torch.rand(3, 16, 16) * 255 for _ in range(3)], 4, 4, graph=capture(net))
    path = tmp_path / "convbn.intsim"
    save_artifact(export_artifact(net, cal, model_meta={"name": "convbn", "scale": 2}), path)
    rng = np.random.default_rng(5)
    inputs = [(f"im{i}.png", rng.integers(0, 256, (24, 21, 3), dtype=np.uint8)) for i in range(2)]
    write_golden(str(path), inputs, str(tmp_path / "golden"), progress=False)
    art = load_artifact(path)
    report = verify(art, read_golden_dir(tmp_path / "golden"))
    assert report.ok and report.mismatches == 0, report.format()
    assert report.compared_tensors == 2 * len(art.tensors)
