"""Where an artifact loses quality: per conv, what putting its input quantizer or its weights back in float gains.

    python -m benchmarks.layer_attribution results/quality/rdn_idealo_2_w4a4_default.intsim [--images 4] [--patch 64]

Scores the float32 fake-quant model of the artifact (calib.evaluate.FloatFakeQuant: the artifact's integer
weights, its activation quantizers) by mean Y-PSNR on centre crops of **held-out calibration images**
(calib.quality.holdout_pairs: the seeded SunHays80 images calibration did not use; never a test set), then
once per conv with that conv's input quantizer replaced by the identity (``act``) and once with its float
checkpoint weights (``weight``), and for all convs at once. One JSON line per measurement; docs/calibration.md
(ninth round) quotes it. A gain is relative to the artifact as calibrated: learned rounding co-adapts the
weights to the quantized activations, so putting one layer's weights back in float can cost quality.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--images", type=int, default=4, help="held-out images (default 4)")
    ap.add_argument("--patch", type=int, default=64, help="LR centre crop side (default 64)")
    ap.add_argument("--calib-data", default=None, help="calibration folder (default <data root>/data/SunHays80)")
    ap.add_argument("--n-used", type=int, default=256, help="patches calibration drew (default: the recipe's 256)")
    a = ap.parse_args(argv)
    import numpy as np
    import torch

    from calib.data_root import data_root
    from calib.evaluate import FloatFakeQuant, artifact_input, model_scale
    from calib.metrics import psnr_y
    from calib.quality import holdout_pairs
    from intsim.artifact import load_artifact

    torch.set_num_threads(1)
    art = load_artifact(a.artifact)
    scale = model_scale(art)
    ffq = FloatFakeQuant(art)
    folder = a.calib_data or data_root() / "data" / "SunHays80"
    pairs, _ = holdout_pairs(folder, scale, a.n_used, 0, n_eval=a.images, patch=a.patch)
    inputs = [(artifact_input(art, lr), hr) for _, lr, hr in pairs]

    def score() -> float:
        return float(np.mean([psnr_y(ffq(x), hr, scale) for x, hr in inputs]))

    class Identity:
        def fake_quant(self, t):
            return t

    quant = dict(ffq.quant)
    convs = ffq.graph.convs()
    name = {c.call_node: c.name for c in convs}
    float_w = {c.call_node: ffq.graph.gm.get_submodule(c.module).weight.detach() for c in convs}

    def variant(k, v, act: bool, weight: bool):
        return (v[0], Identity() if act else v[1], float_w[k] if weight else v[2], *v[3:])

    base = score()
    print(json.dumps({"artifact": a.artifact, "images": [p[0] for p in pairs], "quantized": base}), flush=True)
    for label, act, weight in (("all activations float", True, False), ("all weights float", False, True),
                               ("nothing quantized", True, True)):
        ffq.quant.update({k: variant(k, v, act, weight) for k, v in quant.items()})
        print(json.dumps({"variant": label, "psnr": score()}), flush=True)
        ffq.quant.update(quant)
    for k, v in quant.items():
        gains = {}
        for what, act, weight in (("act", True, False), ("weight", False, True)):
            ffq.quant[k] = variant(k, v, act, weight)
            gains[what] = round(score() - base, 4)
        ffq.quant[k] = v
        print(json.dumps({"conv": name[k], **gains}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
