"""Calibration benchmark: wall time of the paper recipe, and the method comparison table (IMDN ×4).

    python benchmarks/bench_calibration.py                 # paper recipe timing: oaq, 100 images, 96×96, batch 2, 10 epochs
    python benchmarks/bench_calibration.py --quick         # 8 images, 32×32 patches, 2 epochs (smoke)
    python benchmarks/bench_calibration.py --compare ...   # Set5 float fake-quant PSNR of every method

Everything runs in float fake-quant (calib.methods, no export). Calibration data:
SunHays80 (the offline stand-in for DIV2K), never a test set; Set5 is only evaluated.
Results are printed as a table and written atomically as JSON (``--out``); with
``--compare`` the JSON is rewritten after every row, so a partial run keeps its rows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# On a shared machine busy OpenMP threads spin-wait for descheduled peers (measured 4× slower convs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from calib.calibrate import load_calibration_images  # noqa: E402
from calib.data_root import data_root  # noqa: E402
from calib.finetune import FinetuneConfig  # noqa: E402
from calib.methods import calibrate_method, evaluate_fakequant  # noqa: E402
from calib.models.zoo import load_model  # noqa: E402
from intsim.artifact import atomic_write_json  # noqa: E402

DEFAULT_COMPARE = ("minmax:W4A4", "percentile:W4A4", "omse:W4A4", "dual_region:W4A4", "oaq:W4A4",
                   "oaq:W6A6", "sa_ft:W4A4", "plain_ft:W4A4", "ptq4sr:W4A4", "2dquant:W4A4",
                   "dual_region:W4A4:budgeted", "oaq:W4A4:budgeted", "oaq:W4A4:released:auto",
                   "dual_region:W4A4:released::search", "dual_region:W4A4:paper", "dual_region:W6A6")


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    atomic_write_json(path, obj)


def _bits(s: str) -> tuple[int, int]:
    from calib.cli_calibrate import parse_bits

    return parse_bits(s)


def run_one(net, images, method: str, bits: str, allocation: str | None, cfg: FinetuneConfig, progress: bool,
            bp_init: str = "percentile", range_mode: str = "ema", per_channel: bool = False):
    from calib.calibrate import LayerPolicy

    bw, ba = _bits(bits)
    t0 = time.time()
    res = calibrate_method(net, images, bw, ba, method, LayerPolicy(per_channel_weights=per_channel),
                           allocation=allocation, batch_size=cfg.batch_size, finetune_config=cfg, progress=progress,
                           bp_init=bp_init, range_mode=range_mode)
    return res, time.time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny recipe (8 images, 32×32, 2 epochs)")
    ap.add_argument("--compare", nargs="*", default=None,
                    help="method:bits[:allocation[:temperature]] rows (default: the full table)")
    ap.add_argument("--n-images", type=int, default=None)
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--iters-per-epoch", type=int, default=None, help="cap batches per epoch (reduced recipe)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="Set5")
    ap.add_argument("--out", default="benchmarks/results/bench_calibration.json")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--range", dest="range_mode", default="ema", choices=("ema", "max"),
                    help="activation bounds of every row: EMA min/max (recipe) or extremes over all batches")
    ap.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales in every row")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    quick = a.quick
    n_images = a.n_images or (8 if quick else 100)
    patch = a.patch or (32 if quick else 96)
    epochs = a.epochs or (2 if quick else 10)
    cfg = FinetuneConfig(epochs=epochs, batch_size=2, seed=a.seed, max_iters_per_epoch=a.iters_per_epoch)
    entry, net = load_model("imdn", 4)
    t = time.time()
    images = load_calibration_images(data_root() / "data" / "SunHays80", n_images, patch, 4, a.seed, rgb_range=1.0)
    t_load = time.time() - t
    recipe = {"model": "imdn", "scale": 4, "calib_data": "SunHays80 (offline stand-in for DIV2K)",
              "n_images": n_images, "patch": patch, "batch_size": 2, "epochs": epochs,
              "iters_per_epoch": min(a.iters_per_epoch or 10 ** 9, (n_images + 1) // 2),
              "range": a.range_mode, "per_channel_weights": a.per_channel,
              "threads": a.threads, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__}
    recipe["iterations"] = recipe["epochs"] * recipe["iters_per_epoch"]
    out: dict = {"recipe": recipe, "load_seconds": round(t_load, 2), "rows": []}
    if a.compare is None:
        res, sec = run_one(net, images, "oaq", "W4A4", None, cfg, a.progress, range_mode=a.range_mode,
                           per_channel=a.per_channel)
        ft = res.settings["finetune"]
        row = {"method": "oaq", "bits": "W4A4", "seconds_total": round(sec + t_load, 1),
               "seconds_finetune": res.runtime["seconds"],
               "seconds_per_iter": round(res.runtime["seconds"] / max(1, recipe["iterations"]), 3),
               "final_loss": ft["history"][-1]["loss"]}
        full_iters = epochs * ((n_images + 1) // 2)
        # a capped run (--iters-per-epoch) is extrapolated to the full recipe's iteration count
        row["seconds_full_recipe_est"] = round(row["seconds_total"] - row["seconds_finetune"]
                                               + row["seconds_per_iter"] * full_iters, 1)
        out["rows"].append(row)
        write_json_atomic(out, a.out)
        print(f"recipe: {json.dumps(recipe)}")
        print(f"{'method':10} {'bits':6} {'total s':>8} {'finetune s':>10} {'s/iter':>7}")
        print(f"{'oaq':10} {'W4A4':6} {row['seconds_total']:8.1f} {row['seconds_finetune']:10.1f} "
              f"{row['seconds_per_iter']:7.3f}")
        est = row["seconds_full_recipe_est"]
        print(f"full recipe ({full_iters} iterations): {est:.0f} s"
              f"{' (extrapolated from ' + str(recipe['iterations']) + ' iterations)' if recipe['iterations'] < full_iters else ''}"
              f"; target under 900 s -> {'met' if est < 900 else 'missed'}")
        return 0
    rows = a.compare or list(DEFAULT_COMPARE)
    fp = evaluate_fakequant("imdn", 4, net, None, a.dataset)
    out["fp_psnr"] = fp
    write_json_atomic(out, a.out)
    print(f"FP {a.dataset} PSNR {fp:.3f}", flush=True)
    for spec in rows:
        parts = spec.split(":")
        method, bits = parts[0], parts[1]
        alloc = parts[2] if len(parts) > 2 and parts[2] else None
        temp = parts[3] if len(parts) > 3 and parts[3] else None
        bp_init = parts[4] if len(parts) > 4 and parts[4] else "percentile"
        c = cfg
        if temp is not None:
            from dataclasses import replace

            c = replace(cfg, temperature="auto" if temp == "auto" else float(temp))
        res, sec = run_one(net, images, method, bits, alloc, c, a.progress, bp_init, a.range_mode, a.per_channel)
        t = time.time()
        ps = evaluate_fakequant("imdn", 4, net, res, a.dataset)
        row = {"row": spec, "method": method, "bits": bits, "allocation": res.settings["allocation"],
               "bp_init": res.settings.get("bp_init"),
               "temperature": c.temperature if "finetune" in res.settings else None,
               "psnr": round(ps, 3), "delta_fp": round(ps - fp, 3), "calib_seconds": round(sec, 1),
               "eval_seconds": round(time.time() - t, 1),
               "code_bits_body": sorted({l.act.code_bits for l in res.layers.values() if l.role == "body"})}
        if "finetune" in res.settings:
            ft = res.settings["finetune"]
            row["s_k"] = [round(s, 4) for s in ft["s_k"]]
            row["loss_first_last"] = [ft["history"][0]["loss"], ft["history"][-1]["loss"]]
        out["rows"].append(row)
        write_json_atomic(out, a.out)
        print(json.dumps(row), flush=True)
    print(f"\n{'row':32} {'PSNR':>7} {'Δ FP':>7} {'calib s':>8}")
    for r in out["rows"]:
        print(f"{r['row']:32} {r['psnr']:7.3f} {r['delta_fp']:7.3f} {r['calib_seconds']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
