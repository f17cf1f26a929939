"""Choose reconstruction hyper-parameters on held-out calibration images (never on a test set).

    python -m benchmarks.recon_selection --bits 4 '{}' '{"iters": 600}' '{"qdrop": 0.0}' ...

Each argument is a JSON object of :class:`calib.reconstruct.ReconConfig` fields plus ``n``
(patches, default 64), ``patch`` (LR side, default 48), ``range`` and ``overrides`` (layer
policy). Every configuration calibrates IMDN ×4 on the first ``n`` images of the seeded
SunHays80 order (two-region init with bp search, per-channel weights, then
reconstruction) and is scored by the float fake-quant model's mean Y-PSNR on 96² LR centre
crops of the images ``64…79`` of that order, which calibration never sees. One JSON line
per configuration; the table in docs/calibration.md was made with it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HELD_OUT = slice(64, 80)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("configs", nargs="*", default=["{}"])
    a = ap.parse_args(argv)
    from calib.bicubic import bicubic_upsample_rounded
    from calib.calibrate import LayerPolicy, load_calibration_images
    from calib.cli_calibrate import build_model
    from calib.data_root import data_root
    from calib.datasets import list_images, read_rgb
    from calib.determinism import fixed_threads
    from calib.graph import capture
    from calib.methods import calibrate_method
    from calib.models.zoo import resolve_checkpoint
    from calib.quality import _crop_pair, score
    from calib.quant.fakequant import build_fakequant_model
    from calib.reconstruct import ReconConfig, reconstruct
    from calib.metrics import psnr_y

    folder = data_root() / "data" / "SunHays80"
    files = list_images(Path(folder))
    order = np.random.default_rng(0).permutation(len(files))
    pairs = [(files[int(j)].name, *_crop_pair(read_rgb(files[int(j)]), 4, 96)) for j in order[HELD_OUT]]
    net, rr, ch = build_model("imdn", 4, str(resolve_checkpoint("imdn", 4, None, None)), 0)
    g = capture(net, rgb_range=rr, in_channels=ch)
    bic = float(np.mean([psnr_y(bicubic_upsample_rounded(lr, 4), hr, 4) for _, lr, hr in pairs]))
    print(json.dumps({"fp": score("imdn", net, rr, 4, pairs), "bicubic": bic}), flush=True)
    for spec in a.configs:
        kw = json.loads(spec)
        n, patch = kw.pop("n", 64), kw.pop("patch", 48)
        ov, rng = kw.pop("overrides", {}), kw.pop("range", "ema")
        imgs = load_calibration_images(folder, n, patch, 4, 0, rgb_range=rr)
        t = time.time()
        with fixed_threads():
            res = calibrate_method(net, imgs, a.bits, a.bits, "dual_region",
                                   LayerPolicy(per_channel_weights=True, overrides={k: tuple(v) for k, v in ov.items()}),
                                   bp_init="search", graph=g, range_mode=rng)
            p0 = score("imdn", build_fakequant_model(net, res), rr, 4, pairs)
            head = [l.name for l in res.layers.values() if l.role == "head"]
            reconstruct(net, res, imgs, ReconConfig(**kw), frozen_act_layers=head)
        p1 = score("imdn", build_fakequant_model(net, res), rr, 4, pairs)
        print(json.dumps({"bits": a.bits, "cfg": spec, "init": p0, "recon": p1, "s": round(time.time() - t)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
