"""calib.reconstruct: units, learned rounding, revert guard, determinism, resume, export (tiny model)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.export import export_artifact
from calib.graph import capture
from calib.methods import calibrate_method
from calib.quant.fakequant import build_fakequant_model
from calib.reconstruct import ReconConfig, find_units, reconstruct
from tests.calib._tiny import tiny_images, tiny_model

torch.set_num_threads(1)

CFG = ReconConfig(iters=25, batch_size=2, seed=5)


def _calib(net, method="dual_region", **kw):
    return calibrate_method(net, tiny_images(6, 10, seed=1), 4, 4, method, graph=capture(net, rgb_range=1.0), **kw)


def test_units_are_blocks_and_loose_convs_in_execution_order():
    net = tiny_model()
    assert find_units(net, torch.rand(1, 3, 8, 8)) == ["head", "body.0", "body.1", "upsampler.0", "tail"]


def test_rounding_is_learned_and_only_chooses_floor_or_ceil():
    net = tiny_model()
    res = _calib(net)
    info = reconstruct(net, res, tiny_images(6, 10, seed=1), CFG)
    assert [u["unit"] for u in info["units"]] == ["head", "body.0", "body.1", "upsampler.0", "tail"]
    changed = 0
    for layer in res.layers.values():
        w = net.get_submodule(layer.module).weight.detach().double()
        r = w / layer.weight.scale_tensor(w)
        q = layer.w_int.double()
        assert layer.w_int.dtype == torch.int64 and int(layer.w_int.abs().max()) <= layer.weight.qmax
        lo = torch.clamp(torch.floor(r), -layer.weight.qmax, layer.weight.qmax)
        hi = torch.clamp(torch.ceil(r), -layer.weight.qmax, layer.weight.qmax)
        assert bool(((q == lo) | (q == hi)).all()), layer.name
        changed += int((layer.w_int != layer.weight.quantize(w)).sum())
    assert changed > 0  # some weights were rounded away from nearest


def test_no_unit_ends_worse_than_it_started():
    net = tiny_model()
    res = _calib(net)
    # a huge rounding step makes training worse on purpose: the guard must revert those units
    info = reconstruct(net, res, tiny_images(6, 10, seed=1), ReconConfig(iters=5, lr_round=0.5, lr_quant=0.5))
    for u in info["units"]:
        if u["reverted"]:
            assert u["loss_after"] > u["loss_before"]
        else:
            assert u["loss_after"] <= u["loss_before"]
    assert any(u["reverted"] for u in info["units"])


def test_reconstruction_lowers_the_output_error():
    net = tiny_model()
    imgs = tiny_images(6, 10, seed=1)
    base = _calib(net)
    rec = _calib(net)
    reconstruct(net, rec, imgs, ReconConfig(iters=60, batch_size=2))
    x = torch.stack(imgs)
    with torch.no_grad():
        y = net(x)
        e_base = float(((build_fakequant_model(net, base)(x) - y) ** 2).mean())
        e_rec = float(((build_fakequant_model(net, rec)(x) - y) ** 2).mean())
    assert e_rec < e_base


def _result_state(res):
    return {k: (l.act, l.weight, l.w_int.tolist()) for k, l in res.layers.items()}


def test_deterministic_and_resumable(tmp_path):
    imgs = tiny_images(6, 10, seed=1)
    net = tiny_model()
    ref = _calib(net)
    reconstruct(net, ref, imgs, CFG)
    again = _calib(net)
    reconstruct(net, again, imgs, CFG)
    assert _result_state(ref) == _result_state(again)

    class Stop(Exception):
        pass

    def stop_after_two(line):
        if len(json.loads((tmp_path / "recon_state.json").read_text())["done"]) == 2:
            raise Stop

    res = _calib(net)
    with pytest.raises(Stop):
        reconstruct(net, res, imgs, CFG, state_dir=tmp_path, log=stop_after_two)
    res = _calib(net)
    info = reconstruct(net, res, imgs, CFG, state_dir=tmp_path)
    assert len(info["units"]) == 5
    assert _result_state(res) == _result_state(ref)
    with pytest.raises(ValueError, match="different configuration"):
        reconstruct(net, _calib(net), imgs, ReconConfig(iters=3), state_dir=tmp_path)


def test_method_recon_exports_the_learned_integers_bit_exactly():
    from golden.executor import run_golden
    from intsim.engine import run

    net = tiny_model()
    g = capture(net, rgb_range=1.0)
    res = calibrate_method(net, tiny_images(6, 10, seed=1), 4, 4, "recon", graph=g, recon_config=CFG)
    assert res.method == "recon" and res.settings["recon"]["iters"] == CFG.iters
    art = export_artifact(net, res, model_meta={"name": "tiny", "scale": 2})
    for op in art.ops:
        if op.op == "conv2d":
            layer = res.layers[op.name]
            w = torch.from_numpy(art.array(op, "weight").astype(np.int64)).permute(0, 3, 1, 2)
            assert torch.equal(w, layer.w_int), op.name
    img = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    res_i, gold = run(art, img), run_golden(art, img)
    for t, ref in gold.tensors.items():
        assert np.array_equal(np.asarray(res_i.tensors[t], np.int64), np.asarray(ref, np.int64)), t


def test_fakequant_model_uses_the_learned_integers():
    net = tiny_model()
    res = _calib(net)
    reconstruct(net, res, tiny_images(6, 10, seed=1), CFG)
    fq = build_fakequant_model(net, res)
    for layer in res.layers.values():
        m = fq.get_submodule(layer.module)
        assert torch.equal(m.weight_quant.integer_weights(m.conv.weight), layer.w_int)


def test_learned_biases_are_exported_and_rebuilt():
    from golden.executor import run_golden
    from intsim.engine import run

    net = tiny_model()
    g = capture(net, rgb_range=1.0)
    cfg = ReconConfig(iters=25, batch_size=2, seed=5, learn_bias=True)
    res = calibrate_method(net, tiny_images(6, 10, seed=1), 4, 4, "recon", graph=g, recon_config=cfg)
    moved = [n for n, l in res.layers.items()
             if l.bias is not None and not torch.equal(l.bias, net.get_submodule(l.module).bias.detach())]
    assert moved
    art = export_artifact(net, res, model_meta={"name": "tiny", "scale": 2})
    meta = art.metadata["layers"][moved[0]]
    assert meta["bias_learned"] == pytest.approx(res.layers[moved[0]].bias.tolist())
    fq = build_fakequant_model(net, res)
    assert torch.equal(fq.get_submodule(res.layers[moved[0]].module).conv.bias.detach(), res.layers[moved[0]].bias)
    img = np.random.default_rng(2).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    res_i, gold = run(art, img), run_golden(art, img)
    for t, ref in gold.tensors.items():
        assert np.array_equal(np.asarray(res_i.tensors[t], np.int64), np.asarray(ref, np.int64)), t


class _ScaledBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, gain=1.0):
        return self.conv(x) * gain


class _KwargNet(torch.nn.Module):
    """A unit called with a keyword argument (as CARN's upsampler takes ``scale=…``)."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.block = _ScaledBlock()

    def forward(self, x):
        return self.block(self.head(x), gain=0.5)


def test_units_called_with_keyword_arguments():
    torch.manual_seed(0)
    net = _KwargNet().eval()
    res = calibrate_method(net, tiny_images(4, 8), 8, 8, "dual_region")
    info = reconstruct(net, res, tiny_images(4, 8), ReconConfig(iters=3, batch_size=2))
    assert [u["unit"] for u in info["units"]] == ["head", "block"]


class _Scaled(torch.nn.Module):
    """A unit (``a``) followed by a fixed per-channel scale k and an in-place ReLU: the SR output's
    sensitivity to channel c of the unit output is exactly k_c² wherever the ReLU passes (r² = 1)."""

    def __init__(self, k):
        super().__init__()
        self.a = torch.nn.Conv2d(3, len(k), 1)
        with torch.no_grad():  # positive weights and bias on positive inputs: the ReLU passes everything
            self.a.weight.copy_(torch.rand(self.a.weight.shape) + 0.1)
            self.a.bias.fill_(0.1)
        self.register_buffer("k", torch.tensor(k).reshape(1, -1, 1, 1))

    def forward(self, x):
        return torch.relu_(self.a(x)) * self.k


def test_fisher_weights_are_the_output_sensitivity_per_channel():
    from collections import Counter

    from calib.reconstruct import _fisher_weights

    k = [1.0, 2.0, 0.0, 3.0]
    w = _fisher_weights(_Scaled(k), ["a"], Counter({"a": 1}), torch.rand(5, 3, 6, 6), 2, seed=3)
    expect = torch.tensor(k) ** 2
    assert torch.allclose(w["a"][0].flatten(), expect / expect.mean(), rtol=1e-6)


def test_fisher_weighting_reconstructs_and_is_recorded():
    net = tiny_model()
    res = _calib(net)
    info = reconstruct(net, res, tiny_images(6, 10, seed=1), ReconConfig(iters=20, batch_size=2, weighting="fisher"))
    assert info["weighting"] == "fisher"
    assert all(u["reverted"] or u["loss_after"] <= u["loss_before"] for u in info["units"])
    assert any(u["loss_after"] < u["loss_before"] for u in info["units"])
    with pytest.raises(ValueError, match="weighting"):
        reconstruct(net, _calib(net), tiny_images(6, 10, seed=1), ReconConfig(iters=2, weighting="hessian"))
