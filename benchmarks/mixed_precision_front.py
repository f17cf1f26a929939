"""Mixed-precision Pareto front: PSNR (integer engine, benchmark set) against estimated energy.

    python -m benchmarks.mixed_precision_front [--model imdn --scale 4] [--out results/mixed_precision]
        [--fractions 0 0.1 0.2 0.4 0.6 1.0] [--datasets Set5]

1. :func:`calib.mixed_precision.measure` on the default recipe's calibration patches
   (SunHays80 — never a test set): per-layer sensitivity and energy at 3/4/6/8 bits.
2. Allocations: uniform W3A3/W4A4/W6A6/W8A8 and the MILP optimum at budgets spread from the
   cheapest allocation to W8A8 (:func:`calib.mixed_precision.budget_sweep`).
3. Each allocation is calibrated with the default recipe (block reconstruction) and exported;
   its energy is the cost model's estimate for the exported artifact on calibration patches
   (``edge_npu``), its PSNR the integer engine's on the benchmark set.

Points are written to ``<out>/points/<label>.json`` as they land (a rerun resumes), then
``<out>/front.json``, ``front.md`` and ``front.png`` are regenerated.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from intsim.artifact import atomic_write_bytes, atomic_write_json


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def _energy(art, images_u8, accel) -> float:
    from intsim.cost import estimate_cost
    from intsim.engine import run

    counters = [run(art, img, keep_tensors=False).counters for img in images_u8]
    return float(estimate_cost(art, counters, accel)["totals"]["energy_pj"]["total"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="imdn")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--out", default="results/mixed_precision")
    ap.add_argument("--fractions", type=float, nargs="*", default=[0.1, 0.3, 0.6])
    ap.add_argument("--uniform", type=int, nargs="*", default=[4, 8], help="uniform WbAb points to include")
    ap.add_argument("--datasets", default="Set5")
    ap.add_argument("--accel", default="edge_npu")
    ap.add_argument("--reuse", default="results/quality",
                    help="take uniform points from reports.quality_table rows here (same default recipe)")
    ap.add_argument("--report-only", action="store_true", help="regenerate front.* from the points present")
    a = ap.parse_args(argv)
    out = Path(a.out)
    datasets = [d.strip() for d in a.datasets.split(",")]
    if a.report_only:
        pts = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
        write_front(pts, out, datasets[0], " ".join(sys.argv[1:] if argv is None else argv))
        return 0
    from calib.calibrate import LayerPolicy, load_calibration_images
    from calib.cli_calibrate import build_model, calibrate_run, to_model_inputs
    from calib.data_root import data_root
    from calib.determinism import fixed_threads
    from calib.evaluate import run_eval
    from calib.graph import capture
    from calib.mixed_precision import LayerTable, budget_sweep, measure
    from calib.mixed_precision import _to_u8
    from calib.models.zoo import resolve_checkpoint
    from calib.recipe import resolve_recipe
    from intsim.cost import load_accelerator

    (out / "points").mkdir(parents=True, exist_ok=True)
    weights = str(resolve_checkpoint(a.model, a.scale, None, None))
    folder = data_root() / "data" / "SunHays80"
    rec = resolve_recipe()
    net, rr, ch = build_model(a.model, a.scale, weights, 0)
    g = capture(net, rgb_range=rr, in_channels=ch)
    imgs = to_model_inputs(a.model, a.scale, load_calibration_images(folder, rec.n_images, rec.patch, a.scale, 0,
                                                                      rgb_range=rr), rr)
    acc = load_accelerator(a.accel)
    tpath = out / "table.json"
    if tpath.is_file():
        d = json.loads(tpath.read_text())
        table = LayerTable(d["layers"], tuple(d["bits"]), np.array(d["sensitivity"]),
                           {k: np.array(v) for k, v in d["cost"].items()},
                           {k: np.array(v) for k, v in d["fixed_cost"].items()})
    else:
        t0 = time.time()
        with fixed_threads():
            table = measure(net, g, imgs, rr, accel=acc)
        atomic_write_json(tpath, {**table.to_json(), "seconds": round(time.time() - t0, 1)})
    allocs = [(f"mixed {al['relative_budget']:.3f}xW8A8", al["bits"]) for al in
              budget_sweep(table, "energy", a.fractions)]
    allocs += [(f"W{b}A{b}", {n: b for n in table.layers}) for b in a.uniform]
    u8 = [_to_u8(i, rr) for i in imgs[:2]]
    for label, bits in allocs:
        p = out / "points" / f"{_slug(label)}.json"
        if p.is_file():
            print(f"{label}: done earlier", flush=True)
            continue
        t0 = time.time()
        reuse = Path(a.reuse) / f"{a.model}_{a.scale}_{label.lower()}_default.json" if a.reuse else None
        hist = {str(b): sum(1 for v in bits.values() if v == b) for b in table.bits}
        if reuse is not None and reuse.is_file():  # a uniform point that reports.quality_table already made
            from intsim.artifact import load_artifact

            row = json.loads(reuse.read_text())
            art = load_artifact(reuse.with_suffix(".intsim"))
            point = {"label": label, "bits": bits, "energy_pj": _energy(art, u8, acc),
                     "psnr": {k: v["intsim"]["psnr"] for k, v in row["datasets"].items()},
                     "holdout": row["holdout"], "calib_seconds": row["calib_seconds"], "histogram": hist,
                     "from": str(reuse)}
        else:
            art_path = out / f"{_slug(label)}.intsim"
            pol = LayerPolicy(overrides={n: (b, b) for n, b in bits.items()})
            run = calibrate_run(a.model, weights, a.scale, "W4A4", None, None, str(art_path), policy=pol)
            ev = run_eval(str(art_path), datasets, engine="intsim", progress=False)
            point = {"label": label, "bits": bits, "energy_pj": _energy(run.artifact, u8, acc),
                     "psnr": {k: v["psnr"] for k, v in ev["datasets"].items()},
                     "holdout": run.summary["holdout"], "calib_seconds": round(time.time() - t0, 1),
                     "histogram": hist}
            del run
        atomic_write_json(p, point)
        print(f"{label}: {point['psnr']} dB, {point['energy_pj'] * 1e-6:.1f} µJ", flush=True)
    pts = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    write_front(pts, out, datasets[0], " ".join(sys.argv[1:] if argv is None else argv))
    return 0


def write_front(pts: list[dict], out: Path, ds: str, args: str) -> None:
    from reports.cost_plots import pareto_front, plot_pareto

    w4 = next((p for p in pts if p["label"] == "W4A4"), None)
    w8 = next((p for p in pts if p["label"] == "W8A8"), None)
    plot_pts = [{"label": p["label"], "energy": p["energy_pj"] * 1e-6, "psnr": p["psnr"][ds]} for p in pts]
    front = pareto_front(plot_pts, x="energy", y="psnr")
    plot_pareto(plot_pts, out / "front.png", logx=False,
                title=f"{ds} Y-PSNR (intsim) vs estimated energy (edge_npu, calibration patches)")
    lines = [f"<!-- generated by python -m benchmarks.mixed_precision_front {args}; do not edit -->", "",
             f"| allocation | #3/#4/#6/#8-bit body convs | energy (µJ / calib patch) | × W4A4 | {ds} intsim | "
             "held-out Δ FP | on front |", "|---|---|---|---|---|---|---|"]
    for p in sorted(pts, key=lambda p: p["energy_pj"]):
        h = p["histogram"]
        ho = p.get("holdout") or {}
        hd = (ho["quantized_psnr_db"] - ho["fp_psnr_db"]) if ho.get("quantized_psnr_db") is not None else None
        on = any(f["label"] == p["label"] for f in front)
        rel = f"{p['energy_pj'] / w4['energy_pj']:.3f}" if w4 else "—"
        lines.append(f"| {p['label']} | {h.get('3', 0)}/{h.get('4', 0)}/{h.get('6', 0)}/{h.get('8', 0)} | "
                     f"{p['energy_pj'] * 1e-6:.1f} | {rel} | {p['psnr'][ds]:.2f} | "
                     f"{'—' if hd is None else f'{hd:+.2f}'} | {'yes' if on else ''} |")
    summary = {"points": pts, "front": [f["label"] for f in front]}
    if w4:
        cands = [p for p in pts if p["energy_pj"] <= 1.25 * w4["energy_pj"]]
        best = max(cands, key=lambda p: p["psnr"][ds])
        summary["best_within_1.25x_w4a4"] = {"label": best["label"], "psnr": best["psnr"][ds],
                                             "gain_over_w4a4_db": best["psnr"][ds] - w4["psnr"][ds],
                                             "energy_vs_w4a4": best["energy_pj"] / w4["energy_pj"]}
        lines += ["", f"Best PSNR at ≤ 1.25× uniform W4A4's energy: **{best['label']}**, "
                      f"{best['psnr'][ds]:.2f} dB ({best['psnr'][ds] - w4['psnr'][ds]:+.2f} dB over W4A4, "
                      f"{best['energy_pj'] / w4['energy_pj']:.3f}× its energy)."]
    summary["fp_reference"] = "see docs/calibration_results.md"
    atomic_write_json(out / "front.json", summary)
    atomic_write_bytes(out / "front.md", ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
