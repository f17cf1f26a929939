"""calib.finetune: loss weights, resumable deterministic state, progress (fast, on a tiny model)."""
from __future__ import annotations

import json

import pytest
import torch

from calib.finetune import (
    FinetuneConfig,
    FinetuneInterrupted,
    _norm_dist,
    finetune_calibration,
    sensitivity_weights,
)
from calib.methods import calibrate_method
from tests.calib._tiny import tiny_images, tiny_model

torch.set_num_threads(1)  # small tensors; avoids OpenMP spin-waits on a shared machine


def test_sensitivity_weights_and_temperature():
    std = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)
    s1 = sensitivity_weights(std)
    assert abs(float(s1.sum()) - 1) < 1e-12 and s1[2] > s1[1] > s1[0]
    # T = 1 on a [0, 1]-range model is almost uniform; 'auto' is invariant to the value range.
    assert float(s1.max() - s1.min()) < 0.06
    sa, sb = sensitivity_weights(std, "auto"), sensitivity_weights(std * 255, "auto")
    assert torch.allclose(sa, sb) and float(sa.max() - sa.min()) > 0.1
    with pytest.raises(ValueError):
        sensitivity_weights(std, 0.0)


def test_normalized_feature_distance():
    a = torch.randn(2, 3, 4, 4)
    assert float(_norm_dist(a, 3 * a)) < 1e-6  # scale invariant
    assert abs(float(_norm_dist(a, -a)) - 2.0) < 1e-6


def _calib(method="oaq"):
    net = tiny_model(1)
    return net, calibrate_method(net, tiny_images(6, 10, seed=1), 4, 4, "dual_region" if method == "oaq" else method)


def _params(result):
    return {k: (l.act, l.weight) for k, l in result.layers.items()}


@pytest.mark.parametrize("lr_mode", ["absolute", "relative"])
def test_resume_is_bitwise_identical_and_state_is_tensors_only(tmp_path, lr_mode):
    imgs = tiny_images(6, 10, seed=1)
    cfg = FinetuneConfig(epochs=4, seed=3, lr_mode=lr_mode)
    net, ref = _calib()
    finetune_calibration(net, ref, imgs, cfg)
    net, res = _calib()
    with pytest.raises(FinetuneInterrupted):
        finetune_calibration(net, res, imgs, FinetuneConfig(epochs=4, seed=3, stop_after_epochs=2,
                                                            lr_mode=lr_mode), state_dir=tmp_path)
    meta = json.loads((tmp_path / "finetune_state.json").read_text())
    assert meta["epoch"] == 2 and [h["group"] for h in meta["history"]] == ["weight", "bounds"]
    state = torch.load(tmp_path / meta["tensors"], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    net, res = _calib()
    info = finetune_calibration(net, res, imgs, cfg, state_dir=tmp_path)
    assert info["resumed_from_epoch"] == 2
    assert _params(res) == _params(ref)
    assert [h["group"] for h in info["history"]] == ["weight", "bounds", "bp", "weight"]
    assert info["history"][3]["lr"] == pytest.approx(1e-3 * 0.9)  # own-epoch decay of the weight group
    assert info["lr_mode"] == lr_mode


def test_relative_lr_moves_parameters_in_proportion():
    """lr_mode='relative': a parameter's Adam step scales with its initial magnitude (first step ≈ lr·|p0|)."""
    imgs = tiny_images(6, 10, seed=1)
    for mode in ("absolute", "relative"):
        net, res = _calib()
        before = {k: l.weight.scale for k, l in res.layers.items()}
        finetune_calibration(net, res, imgs, FinetuneConfig(epochs=1, seed=0, lr=1e-2, lr_mode=mode,
                                                            max_iters_per_epoch=1, groups=("weight",)))
        rel = [abs(res.layers[k].weight.scale[0] / s[0] - 1) for k, s in before.items()]
        if mode == "relative":
            assert max(rel) <= 1.01e-2 + 1e-9  # one Adam step of at most lr·|clip|: ≤ 1 % of each clip
        else:
            assert max(rel) > 2e-2  # an absolute 1e-2 step is larger than 1 % of the small clips
    with pytest.raises(ValueError, match="lr_mode"):
        net, res = _calib()
        finetune_calibration(net, res, imgs, FinetuneConfig(epochs=1, lr_mode="log"))


def test_deterministic_under_seed_and_state_mismatch(tmp_path):
    imgs = tiny_images(6, 10, seed=1)
    outs = []
    for _ in range(2):
        net, r = _calib()
        finetune_calibration(net, r, imgs, FinetuneConfig(epochs=2, seed=5))
        outs.append(_params(r))
    assert outs[0] == outs[1]
    net, r = _calib()
    finetune_calibration(net, r, imgs, FinetuneConfig(epochs=1, seed=5), state_dir=tmp_path)
    net, r = _calib()
    with pytest.raises(ValueError, match="different configuration"):
        finetune_calibration(net, r, imgs, FinetuneConfig(epochs=2, seed=6), state_dir=tmp_path)


def test_only_quantizer_parameters_change_and_progress(capsys):
    imgs = tiny_images(4, 10, seed=2)
    net, r = _calib()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    info = finetune_calibration(net, r, imgs, FinetuneConfig(epochs=3), progress=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert "finetune[dual_region]" in capsys.readouterr().err
    assert info["blocks"] == ["body.0", "body.1"] and len(info["history"]) == 3
    with pytest.raises(ValueError, match="equal-size"):
        finetune_calibration(net, r, [torch.rand(3, 8, 8), torch.rand(3, 9, 9)], FinetuneConfig(epochs=1))


def test_a_non_finite_loss_stops_before_the_step(monkeypatch):
    """A diverged step is refused before the optimizer step, naming the epoch, iteration and group."""
    import calib.finetune as FT

    imgs = tiny_images(4, 10, seed=2)
    net, r = _calib()
    real = FT.finetune_loss

    def nan_loss(*a, **k):
        loss, lf, lo = real(*a, **k)
        return loss * float("nan"), lf, lo

    monkeypatch.setattr(FT, "finetune_loss", nan_loss)
    with pytest.raises(FT.FinetuneDiverged, match=r"epoch 1, iteration 1 \(parameter group '.+'\): the loss is nan"):
        finetune_calibration(net, r, imgs, FinetuneConfig(epochs=2))
