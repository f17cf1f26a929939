"""calib.memory_estimate: the live-tensor counter, the estimate's growth with the recipe, and the estimate as an
upper bound of what a real (tiny) calibration holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.memory_estimate import ALLOCATOR_FACTOR, BASE_BYTES, LiveBytes, estimate_calibration_memory, live_peak
from calib.models.user import object_entry
from tests.calib._tiny import tiny_model

MIB = 2 ** 20


def test_live_bytes_counts_tensors_alive_at_once():
    net = torch.nn.Sequential(*[torch.nn.Conv2d(8, 8, 3, padding=1) for _ in range(5)])
    x = torch.rand(2, 8, 32, 32)
    one = x.numel() * 4
    with torch.no_grad(), LiveBytes() as m:
        y = net(x)
    assert m.peak == 2 * one  # a chain frees each input once the next output exists
    assert m.now == one  # y is alive
    del y
    for p in net.parameters():
        p.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    _, peak = live_peak(lambda: net(xg).sum().backward())
    assert peak >= 5 * one  # autograd keeps every conv's input (4 made inside) and the output until backward


def _tiny_estimate(**kw):
    entry = object_entry(tiny_model(), rgb_range=1.0, in_channels=3)
    return estimate_calibration_memory(entry, None, 2, "W4A4", "recon", recon={"iters": 2}, **kw)


def test_estimate_grows_with_patches_and_patch_size():
    small = _tiny_estimate(n_images=8, patch=12)
    more = _tiny_estimate(n_images=128, patch=12)
    larger = _tiny_estimate(n_images=8, patch=24)
    assert small.base == more.base == BASE_BYTES
    assert more.total > small.total and larger.total > small.total
    assert more.phases["method"] > 3 * small.phases["method"]  # the captures hold every patch
    assert larger.data > small.data and larger.phases["method"] > 2 * small.phases["method"]  # 4× the pixels
    assert "MiB (process 512 MiB" in small.describe()


def _write_calibration_images(folder, n=8, size=40):
    from intsim.images import write_png

    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        img = np.clip(rng.normal(128, 50, (size, size, 3)).cumsum(1) / np.arange(1, size + 1)[None, :, None], 0, 255)
        write_png(folder / f"img{k}.png", img.astype(np.uint8))


@pytest.mark.parametrize("method", ["recon", "oaq", "minmax"])
def test_estimate_bounds_what_a_real_calibration_holds(tmp_path, method):
    """The estimate's tensor part (less the process base and the allocator factor) is at least the largest
    sum of tensors a real calibration of the tiny model had alive at once, and not far above it."""
    from calib.cli_calibrate import calibrate_run

    _write_calibration_images(tmp_path / "calib")
    entry = object_entry(tiny_model(), rgb_range=1.0, in_channels=3)
    kw = dict(n_images=24, patch=16, recon={"iters": 2}, finetune={"epochs": 1, "max_iters_per_epoch": 2})
    est = estimate_calibration_memory(entry, None, 2, "W4A4", method, **kw)
    with LiveBytes() as m:
        calibrate_run(entry, None, 2, "W4A4", method, str(tmp_path / "calib"), str(tmp_path / "a.intsim"),
                      calib_layout="hr", **kw)
    assert m.peak <= (est.total - BASE_BYTES) / ALLOCATOR_FACTOR, (m.peak, est)
    # the held-out check's integer engine holds numpy arrays, which LiveBytes does not see: the torch phases only
    torch_part = est.model + est.data + max(est.phases["observe"], est.phases["method"])
    assert m.peak <= torch_part <= 6 * m.peak + MIB, (m.peak, est)
