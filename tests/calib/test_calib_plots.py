"""reports.calib_plots: the histogram and sensitivity figures are produced (tiny model)."""
from __future__ import annotations

import torch

from calib.methods import calibrate_method
from reports.calib_plots import (
    layer_sensitivity,
    plot_activation_histograms,
    plot_layer_sensitivity,
    psnr_eval_fn,
)
from tests.calib._tiny import tiny_images, tiny_model

torch.set_num_threads(1)


def test_plots_are_written(tmp_path):
    net, imgs = tiny_model(), tiny_images(4, 10)
    r = calibrate_method(net, imgs, 4, 4, "dual_region")
    p = plot_activation_histograms(net, r, imgs, tmp_path / "figs" / "hist.png")
    assert p.is_file() and p.stat().st_size > 1000
    sens = layer_sensitivity(net, r, psnr_eval_fn(net, imgs[:2]))
    assert list(sens) == list(r.layers) and all(v > 0 for v in sens.values())
    q = plot_layer_sensitivity(sens, tmp_path / "sens.png", fp=60.0)
    assert q.is_file() and q.stat().st_size > 1000
    assert not list(tmp_path.rglob("*.tmp.png"))
