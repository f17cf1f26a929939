"""Choose recipe variants on held-out calibration images (never on a test set).

    python -m benchmarks.recipe_selection --model imdn --scale 4 --bits 8 --headroom 1 1.25 1.5 2 3
    python -m benchmarks.recipe_selection --bits 4 --recon '{"iters": 600}' --patch 96

Calibrates once with the default ``recon`` recipe (calib/recipe.py: 256 patches of the seeded
SunHays80 order, two-region init, block reconstruction; ``--recon``, ``--n``, ``--patch`` override
it, as ``intsim calibrate`` would), then widens every learned activation
range (l, u) by each factor h (bp kept; the head's exact uint8 quantizer untouched) and scores
the float fake-quant model by mean Y-PSNR on 96² LR centre crops of the 16 held-out images of
that order (images 64…79, which calibration never sees), plainly and colour/contrast stressed
(calib/quality.py ``HOLDOUT_STRESS``). One JSON line per factor; docs/calibration.md quotes it.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace


def widen(result, h: float):
    """A copy of ``result`` whose non-exact activation ranges (l, u) are ``h`` times wider (bp kept)."""
    out = copy.copy(result)
    out.layers = {}
    for name, lay in result.layers.items():
        a = lay.act
        if a.allocation != "uniform" and h != 1.0:
            a = replace(a, l=a.l * h if a.l < 0 else a.l, u=a.u * h)
        out.layers[name] = replace(lay, act=a)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="imdn")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--headroom", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0, 3.0])
    ap.add_argument("--recon", default="{}", help="JSON of calib.reconstruct.ReconConfig overrides")
    ap.add_argument("--n", type=int, default=None, help="calibration patches (default: the recipe's)")
    ap.add_argument("--patch", type=int, default=None, help="LR patch side (default: the recipe's)")
    ap.add_argument("--wide-weight-bits", type=int, default=None,
                    help="weights at ≥ this many bits keep their full range (default: the recipe's)")
    ap.add_argument("--full-range-weights", action="store_true",
                    help="integer weights in [−2^(b−1), 2^(b−1)−1] instead of ±(2^(b−1)−1)")
    ap.add_argument("--equalize", type=float, default=None, metavar="ALPHA",
                    help="cross-layer equalization strength before calibration (calib/equalize.py; default: the recipe's)")
    ap.add_argument("--state-dir", default=None, help="resumable reconstruction state")
    a = ap.parse_args(argv)
    from calib.calibrate import LayerPolicy
    from calib.cli_calibrate import _equalize, _model_and_images, _resolve_inputs
    from calib.determinism import fixed_threads
    from calib.methods import calibrate_method
    from calib.quality import holdout_pairs, score
    from calib.quant.fakequant import build_fakequant_model
    from calib.cli_calibrate import request_recipe

    rec = request_recipe(a.model, a.scale, f"W{a.bits}A{a.bits}", None, n_images=a.n, patch=a.patch,
                         recon=json.loads(a.recon), wide_weight_bits=a.wide_weight_bits,
                         full_range_weights=a.full_range_weights or None, equalize=a.equalize)
    weights, _, folder, is_lr, _ = _resolve_inputs(a.model, a.scale, None, False, 0, os.devnull, None, "auto",
                                                   a.state_dir)
    net, _, rr, graph, images = _model_and_images(a.model, a.scale, weights, 0, folder, is_lr, rec, [],
                                                  lambda m: None, {})
    plain, _ = holdout_pairs(folder, a.scale, rec.n_images, 0, n_eval=16)
    stressed, _ = holdout_pairs(folder, a.scale, rec.n_images, 0, n_eval=16, stressed=True)
    print(json.dumps({"fp": score(a.model, net, rr, a.scale, plain),
                      "fp_stressed": score(a.model, net, rr, a.scale, stressed)}), flush=True)
    t = time.time()
    _equalize(net, graph, images, rec, lambda m: print(json.dumps({"equalize": m}), flush=True))
    with fixed_threads():
        res = calibrate_method(net, images, a.bits, a.bits, "recon", LayerPolicy(per_channel_weights=True),
                               bp_init=rec.bp_init, batch_size=rec.batch_size, graph=graph,
                               recon_config=rec.recon, wide_range_bits=rec.wide_range_bits,
                               wide_weight_bits=rec.wide_weight_bits, state_dir=a.state_dir,
                               full_range_weights=rec.full_range_weights)
    print(json.dumps({"recipe": rec.describe(), "calib_s": round(time.time() - t)}), flush=True)
    for h in a.headroom:
        fq = build_fakequant_model(net, widen(res, h))
        print(json.dumps({"model": a.model, "bits": a.bits, "recon": a.recon, "n": rec.n_images, "patch": rec.patch,
                          "wide_weight_bits": rec.wide_weight_bits, "full_range_weights": rec.full_range_weights,
                          "headroom": h,
                          "heldout": score(a.model, fq, rr, a.scale, plain),
                          "stressed": score(a.model, fq, rr, a.scale, stressed)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
