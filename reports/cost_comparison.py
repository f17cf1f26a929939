"""Quality vs accelerator cost of one network under several quantization schemes.

Calibrates the network as uniform W8A8, uniform W4A4 and two-region W4A4 in
both realizations (split, grid), measures Set5 Y-PSNR with the integer engine
and costs each artifact from the engine's event counters on the same images;
FP32 is costed from the W8A8 artifact's shapes with the checkpoint's FP PSNR.
Prints a markdown table and writes JSON (atomically) and a Pareto plot.

    python -m reports.cost_comparison --model imdn --scale 4 --accel edge_npu -o out/cost_cmp
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# (label, method, bits, realization, allocation)
SCHEMES = [
    ("uniform W8A8", "minmax", "W8A8", "split", None),
    ("uniform W4A4", "minmax", "W4A4", "split", None),
    ("two-region W4A4 split", "dual_region", "W4A4", "split", "released"),
    ("two-region W4A4 grid", "dual_region", "W4A4", "grid", "released"),
]


def compare(model: str, scale: int, accel_name: str, out_dir: Path, n_images: int, patch: int, seed: int) -> list[dict]:
    from calib.cli_calibrate import run_calibrate
    from calib.data_root import require
    from calib.datasets import benchmark
    from calib.evaluate import artifact_input, run_eval
    from calib.fp_eval import evaluate_fp
    from calib.models.zoo import resolve_checkpoint
    from intsim.artifact import atomic_write_json, load_artifact
    from intsim.cost import estimate_cost, load_accelerator
    from intsim.cost.model import summary_row
    from intsim.engine import run

    accel = load_accelerator(accel_name)
    calib_dir = str(require("data/SunHays80"))
    rows = []
    weights = str(resolve_checkpoint(model, scale))  # the real checkpoint under the data root
    fp_psnr = evaluate_fp(model, scale, "Set5")["psnr"]
    for label, method, bits, realization, allocation in SCHEMES:
        t0 = time.time()
        path = out_dir / f"{model}_x{scale}_{label.replace(' ', '_')}.intsim"
        kw = {"allocation": allocation} if allocation else {}
        run_calibrate(model=model, weights=weights, scale=scale, bits=bits, method=method, calib_data=calib_dir,
                      out=str(path), realization=realization, n_images=n_images, patch=patch, seed=seed,
                      progress=False, **kw)
        art = load_artifact(path)
        psnr_db = run_eval(str(path), ["Set5"], engine="intsim", progress=False)["datasets"]["Set5"]["psnr"]
        counters = [run(art, artifact_input(art, pair.lr), keep_tensors=False).counters
                    for pair in benchmark("Set5", scale)]
        cost = estimate_cost(art, counters, accel, "artifact")
        rows.append({**summary_row(cost), "scheme": label, "psnr_db": psnr_db, "seconds": time.time() - t0})
        if label == "uniform W8A8":
            fp = estimate_cost(art, counters, accel, "fp32")
            rows.append({**summary_row(fp), "scheme": "FP32", "psnr_db": fp_psnr, "seconds": 0.0})
        print(f"{label}: {psnr_db:.2f} dB", file=sys.stderr)
    atomic_write_json(out_dir / "cost_comparison.json",
                      {"model": model, "scale": scale, "accelerator": accel.name, "dataset": "Set5",
                       "calibration": f"SunHays80 (stand-in for DIV2K), {n_images} patches of {patch}px, seed {seed}",
                       "rows": rows})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| scheme | Set5 PSNR (dB) | energy/image (µJ) | latency (ms) | weights (KiB) | DRAM (MiB) | conv input bits |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scheme']} | {r['psnr_db']:.2f} | {r['energy_uj']:.1f} | {r['latency_ms']:.3f} | "
                     f"{r['weight_storage_kib']:.1f} | {r['dram_mib']:.2f} | {r['conv_input_bits']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--accel", default="edge_npu")
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", default="cost_comparison")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = compare(a.model, a.scale, a.accel, out, a.n_images, a.patch, a.seed)
    print(markdown(rows))
    try:
        from reports.cost_plots import plot_pareto

        plot_pareto([{"label": r["scheme"], "psnr": r["psnr_db"], "energy": r["energy_uj"],
                      "latency": r["latency_ms"]} for r in rows], out / "pareto.png",
                    title="Set5 PSNR vs energy per image")
    except Exception as e:  # the table is the deliverable; the plot is a convenience
        print(f"pareto plot skipped: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
