"""calib.equalize: which conv pairs rescale exactly, that the float model is unchanged, and that an
equalized artifact rebuilds exactly from its checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.equalize import equalizable_pairs, equalize
from calib.graph import capture


class Net(nn.Module):
    """a →ReLU→ b →LeakyReLU→ (c, d) → add → e →PReLU→ f; c and d feed an add (not rescalable)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.c, self.d = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.e, self.f = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)
        self.act = nn.PReLU(8)
        with torch.no_grad():  # uneven channel ranges, as real checkpoints have
            for m in (self.a, self.b, self.c, self.d, self.e, self.f):
                m.weight.mul_(torch.rand(m.out_channels, 1, 1, 1, generator=g) * 4 + 0.1)
                m.weight.mul_(torch.rand(1, m.in_channels, 1, 1, generator=g) * 4 + 0.1)

    def forward(self, x):
        h = F.leaky_relu(self.b(F.relu(self.a(x))), 0.2)
        return self.f(self.act(self.e(self.c(h) + self.d(h))))


def test_pairs_are_the_exact_ones():
    g = capture(Net().eval(), rgb_range=1.0)
    assert [(a.name, [u.name for u in us]) for a, _, us in equalizable_pairs(g)] == [
        ("a", ["b"]), ("b", ["c", "d"]), ("e", ["f"])]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_equalized_model_computes_the_same_function(alpha):
    net = Net().eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        ref = net(x)
    w_a = net.a.weight.detach().clone()
    g = capture(net, rgb_range=1.0)
    pairs = equalize(g, list(torch.rand(4, 3, 12, 12)), alpha)
    assert [p.producer for p in pairs] == ["a", "b", "e"] and all(p.scale_min > 0 for p in pairs)
    assert not torch.equal(net.a.weight, w_a)  # the model's own modules were rescaled, not a copy
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)
    if alpha == 0.0:  # weights only: every input channel of f (a consumer only) has the same peak
        peak = net.f.weight.detach().abs().amax(dim=(0, 2, 3))
        torch.testing.assert_close(peak, peak.mean().expand_as(peak), rtol=1e-5, atol=0)


def test_images_of_different_sizes_are_measured_one_at_a_time():
    net = Net().eval()
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        ref = net(x)
    pairs = equalize(capture(net, rgb_range=1.0), [torch.rand(3, 8, 8), torch.rand(3, 12, 6)], 1.0)
    assert len(pairs) == 3
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)


def test_strength_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        equalize(capture(Net().eval(), rgb_range=1.0), [torch.rand(3, 8, 8)], 1.5)


def test_equalized_artifact_rebuilds_from_its_checkpoint(tmp_path):
    """The rescaled producers' biases are recorded: the float fake-quant model rebuilt from the real FSRCNN ×4
    checkpoint (conv → PReLU → conv pairs) agrees with the integer engine as closely as a W8A8 model does."""
    from calib.cli_calibrate import run_calibrate
    from calib.data_root import available, data_root
    from calib.datasets import read_rgb
    from calib.evaluate import FloatFakeQuant, artifact_input, make_runner
    from intsim.artifact import load_artifact

    if not (available("weights/fsrcnn") and available("data/SunHays80") and available("data/Set5")):
        pytest.skip(f"FSRCNN weights, SunHays80 or Set5 not under the data root {data_root()}")
    s = run_calibrate("fsrcnn", None, 4, "W8A8", "minmax", str(data_root() / "data/SunHays80"),
                      str(tmp_path / "e.intsim"), "split", n_images=2, patch=16, seed=3, equalize=0.5, holdout=False)
    art = load_artifact(tmp_path / "e.intsim")
    layers = art.metadata["layers"]
    assert art.metadata["calibration"]["recipe"]["equalize"] == 0.5 and s["method"] == "minmax"
    recorded = [n for n, m in layers.items() if "bias_learned" in m]
    assert recorded and layers[recorded[0]]["role"] == "head"  # the head conv feeds PReLU → conv
    lr = read_rgb(data_root() / "data/Set5/LR_bicubic/X4/headx4.png")[20:44, 20:44]
    a = FloatFakeQuant(art)(artifact_input(art, lr)).astype(np.float64)
    b = make_runner(art, "intsim")(lr).astype(np.float64)
    b = b[..., :1] if a.shape[-1] == 1 and b.ndim == 3 else b
    assert a.shape == b.shape
    assert 10 * np.log10(255.0 ** 2 / max(float(np.mean((a - b) ** 2)), 1e-12)) > 40.0
