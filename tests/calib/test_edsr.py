"""EDSR model tree: official EDSR-PyTorch key names/shapes, forward shapes, mean shifts."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from calib.data_root import data_root
from calib.models.edsr import DIV2K_RGB_MEAN, EDSR, MeanShift


def official_keys(scale: int, n_resblocks: int = 16, n_feats: int = 64) -> list[tuple[str, tuple[int, ...]]]:
    """State-dict keys and shapes of EDSR-PyTorch ``edsr_baseline_x{scale}``, written from its source.

    Order is ``state_dict()`` order: sub_mean, add_mean, head, body, tail
    (the order EDSR.__init__ registers them).
    """
    F = n_feats
    keys = [
        ("sub_mean.weight", (3, 3, 1, 1)), ("sub_mean.bias", (3,)),
        ("add_mean.weight", (3, 3, 1, 1)), ("add_mean.bias", (3,)),
        ("head.0.weight", (F, 3, 3, 3)), ("head.0.bias", (F,)),
    ]
    for i in range(n_resblocks):
        keys += [
            (f"body.{i}.body.0.weight", (F, F, 3, 3)), (f"body.{i}.body.0.bias", (F,)),
            (f"body.{i}.body.2.weight", (F, F, 3, 3)), (f"body.{i}.body.2.bias", (F,)),
        ]
    keys += [(f"body.{n_resblocks}.weight", (F, F, 3, 3)), (f"body.{n_resblocks}.bias", (F,))]
    if scale == 3:
        keys += [("tail.0.0.weight", (9 * F, F, 3, 3)), ("tail.0.0.bias", (9 * F,))]
    else:
        keys += [("tail.0.0.weight", (4 * F, F, 3, 3)), ("tail.0.0.bias", (4 * F,))]
        if scale == 4:
            keys += [("tail.0.2.weight", (4 * F, F, 3, 3)), ("tail.0.2.bias", (4 * F,))]
    keys += [("tail.1.weight", (3, F, 3, 3)), ("tail.1.bias", (3,))]
    return keys


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_state_dict_keys_match_edsr_pytorch(scale):
    sd = EDSR(scale).state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == official_keys(scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_strict_load_of_an_official_layout_state_dict(scale):
    # A state dict with exactly the official keys/shapes (values random) loads strictly.
    g = torch.Generator().manual_seed(scale)
    sd = {k: torch.randn(shape, generator=g) for k, shape in official_keys(scale)}
    net = EDSR(scale)
    net.load_state_dict(sd, strict=True)
    assert torch.equal(net.body[3].body[2].weight, sd["body.3.body.2.weight"])


def test_module_names():
    names = dict(EDSR(4).named_modules())
    assert isinstance(names["body.0.body.1"], torch.nn.ReLU)
    assert isinstance(names["tail.0.1"], torch.nn.PixelShuffle) and isinstance(names["tail.0.3"], torch.nn.PixelShuffle)
    assert isinstance(names["sub_mean"], MeanShift) and isinstance(names["add_mean"], MeanShift)
    assert "tail.0.2" not in dict(EDSR(2).named_modules())


def test_parameter_count_edsr_baseline():
    # EDSR paper: the baseline has 1.5 M parameters (×4). By hand: head 64·3·9+64 = 1792; 33 body convs
    # (64·64·9+64) = 1 218 624; two upsampler convs (256·64·9+256) = 295 424; tail 3·64·9+3 = 1731;
    # plus the two frozen MeanShifts (2·12).
    n = sum(p.numel() for p in EDSR(4).parameters())
    assert n == 1792 + 1_218_624 + 295_424 + 1731 + 24


def test_mean_shift_values():
    net = EDSR(2, rgb_range=255)
    assert torch.equal(net.sub_mean.weight[:, :, 0, 0], torch.eye(3))
    assert torch.allclose(net.sub_mean.bias, -255 * torch.tensor(DIV2K_RGB_MEAN))
    assert torch.allclose(net.add_mean.bias, 255 * torch.tensor(DIV2K_RGB_MEAN))
    assert not any(p.requires_grad for p in net.sub_mean.parameters())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_shapes(scale):
    torch.manual_seed(0)
    net = EDSR(scale).eval()
    x = torch.rand(2, 3, 7, 9) * 255
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, 7 * scale, 9 * scale)
    assert torch.isfinite(y).all()


def test_forward_small_configuration():
    net = EDSR(4, n_resblocks=2, n_feats=16, res_scale=0.1).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 5, 6) * 255).shape == (1, 3, 20, 24)
    assert len(net.body) == 3


def test_bad_configuration():
    with pytest.raises(ValueError, match="scale"):
        EDSR(5)
    with pytest.raises(ValueError, match="colour"):
        EDSR(2, n_colors=1)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_checkpoint_if_supplied(scale):
    """Loads the official file when a user supplies it under <data root>/weights (not shipped offline)."""
    hits = sorted(glob.glob(os.path.join(data_root(), "weights", "**", f"edsr_baseline_x{scale}-*.pt"), recursive=True))
    if not hits:
        pytest.skip(f"official edsr_baseline_x{scale} checkpoint not present under {data_root()}/weights "
                    f"(not available offline)")
    sd = torch.load(hits[0], map_location="cpu", weights_only=True)
    EDSR(scale).load_state_dict(sd, strict=True)
