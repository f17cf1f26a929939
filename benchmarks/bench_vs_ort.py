"""intsim against ONNX Runtime int8 and fp32 on the same network and image, interleaved in one process.

The honest peer of a bit-exact integer engine is the fastest int8 CPU runtime a
user would pick: ONNX Runtime with a static QDQ model (per-channel int8 weights,
uint8 activations, MinMax calibration, every conv a ``QLinearConv``; built by
:mod:`benchmarks.ort_contenders`). The machine is shared and noisy, so:

* every round runs each contender once, one after the other (A B C A B C …), so a
  busy spell slows them alike; a ratio is formed **per round** and the report gives
  the median of the per-round ratios;
* each run is timed in wall time (``perf_counter``) and in this process's CPU time
  (``process_time``): CPU time is what a contender costs even when another process
  steals the core; with 1 thread both say the same on an idle machine;
* runs with 1 thread and with 2 threads (``INTSIM_THREADS`` for intsim, ``intra_op_num_threads`` for ORT).

Artifacts: the two-region artifacts of the default calibration
(``results/quality/{model}_{scale}_{bits}_default.intsim``, as ``intsim calibrate``
and the quality sweep write them; ``--default-artifacts`` points elsewhere) beside the
MinMax ones :func:`benchmarks.bench_engine.ensure_artifact` builds (IMDN with its
official weights; EDSR-baseline with random weights: no default calibration exists
for it, so its rows are labelled MinMax). Reference line: the one-core rate of a
register-only ``vpdpbusd`` loop (:mod:`benchmarks.vnni_peak`).

Also measured, each in a fresh process: peak RSS (``VmHWM``) of one run at a 512×512
input (Set5 ``baby`` HR cropped), and the engine's fixed per-image cost, its run time on
a 16×16 input minus the arithmetic share scaled from the 128² run (an upper bound on
Python dispatch).

Run: ``python -m benchmarks.bench_vs_ort [--rounds 15] [--models imdn,edsr_baseline]``;
writes ``benchmarks/results/engine.json`` and ``engine.md``. Needs the ``bench`` extra.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_engine import DATA, ROOT, SET5_LR, ensure_artifact, float_model, lr_image

CONTENDERS = ("intsim", "ort_int8", "ort_fp32")


def default_artifact(adir: Path, model: str, scale: int, bits: str) -> Path | None:
    p = adir / f"{model}_{scale}_{bits.lower()}_default.intsim"
    return p if p.is_file() else None


def artifacts(args) -> list[tuple[str, str, Path]]:
    """``(model, label, path)`` per intsim configuration to race."""
    out = []
    for model in args.models.split(","):
        for bits in ("W8A8", "W4A4"):
            p = default_artifact(Path(args.default_artifacts), model, 4, bits)
            if p is not None:
                out.append((model, f"{bits} two-region (default calibration)", p))
            if args.minmax or p is None:
                q = ensure_artifact(Path(args.artifacts), model, 4, bits, "split")
                if q is not None:
                    out.append((model, f"{bits} MinMax (one segment)", q))
    return out


class Runner:
    """One contender's run on one image with a given thread count."""

    def __init__(self, kind: str, img: np.ndarray, art=None, ort_paths=None):
        self.kind, self.img, self.art = kind, img, art
        self._sessions = {}
        self._paths = ort_paths

    def __call__(self, threads: int):
        if self.kind == "intsim":
            from intsim import engine

            os.environ["INTSIM_THREADS"] = str(threads)
            return engine.run(self.art, self.img, keep_tensors=False)
        from benchmarks import ort_contenders as O

        key = threads
        if key not in self._sessions:
            self._sessions[key] = O.session(self._paths.int8 if self.kind == "ort_int8" else self._paths.fp32,
                                            threads)
        return self._sessions[key].run(None, O.ort_input(self.img, self._paths.in_scale))


def race(runners: dict, threads: int, rounds: int) -> dict:
    """Interleaved rounds; per contender the wall and CPU seconds of each round."""
    times = {k: {"wall": [], "cpu": []} for k in runners}
    for r in runners.values():
        r(threads)  # warm-up (numba compile / cache load, ORT session)
    for _ in range(rounds):
        for k, r in runners.items():
            c0, t0 = time.process_time(), time.perf_counter()
            r(threads)
            times[k]["wall"].append(time.perf_counter() - t0)
            times[k]["cpu"].append(time.process_time() - c0)
    return times


def ratios(times: dict, num: str, den: str) -> dict:
    """Median of per-round ratios num/den, wall and CPU."""
    out = {}
    for m in ("wall", "cpu"):
        rs = [a / b for a, b in zip(times[num][m], times[den][m])]
        out[m] = float(statistics.median(rs))
        out[m + "_quartiles"] = [float(np.percentile(rs, 25)), float(np.percentile(rs, 75))]
    return out


CHILD = r"""
import json, os, sys, time
kind, art_path, onnx_path, img_path, in_scale = sys.argv[1:6]
from intsim.images import read_image
img = read_image(img_path, 3).pixels
res = {}
if kind == "intsim":
    from intsim.artifact import load_artifact
    from intsim import engine
    art = load_artifact(art_path)
    crop = int(os.environ.get("BENCH_CROP", "0"))
    if crop:
        img = img[:crop, :crop].copy()
        engine.run(art, img, keep_tensors=False)
        ts = []
        for _ in range(int(os.environ.get("BENCH_REPEATS", "1"))):
            t0 = time.process_time(); engine.run(art, img, keep_tensors=False); ts.append(time.process_time() - t0)
        ts.sort(); res["median_s"] = ts[len(ts) // 2]
    else:
        engine.run(art, img, keep_tensors=False)
else:
    sys.path.insert(0, os.getcwd())
    from benchmarks import ort_contenders as O
    s = O.session(onnx_path, int(os.environ.get("BENCH_THREADS", "1")))
    s.run(None, O.ort_input(img, float(in_scale)))
with open("/proc/self/status") as f:
    res["peak_rss_mb"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print("BENCH_JSON " + json.dumps(res))
"""


def child(kind: str, art: Path | None, onnx: Path | None, img: Path, in_scale: float, env_extra=None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {}))
    p = subprocess.run([sys.executable, "-c", CHILD, kind, str(art or ""), str(onnx or ""), str(img), str(in_scale)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"child {kind} failed (rc {p.returncode}): {p.stderr[-1500:]}")


def bench_model(model: str, configs: list[tuple[str, Path]], args, peak: float | None) -> list[dict]:
    from benchmarks import ort_contenders as O
    from intsim.artifact import load_artifact
    from intsim.images import write_png

    net, in_scale = float_model(model, 4)
    paths = O.ort_models(Path(args.artifacts) / "onnx", model, 4, net, in_scale, SET5_LR / "X4")
    nq, nf = O.qlinearconv_count(paths.int8)
    img = lr_image(4)
    hr = lr_image_hr512()
    big = Path(args.artifacts) / "baby_512.png"
    write_png(big, hr)
    ort_rss = {k: child(k, None, p, big, in_scale)["peak_rss_mb"]
               for k, p in (("ort_int8", paths.int8), ("ort_fp32", paths.fp32))}
    rows = []
    for label, apath in configs:
        art = load_artifact(apath)
        res = Runner("intsim", img, art)(1)
        macs = int(res.counters["totals"]["macs"])
        runners = {"intsim": Runner("intsim", img, art), "ort_int8": Runner("ort_int8", img, ort_paths=paths),
                   "ort_fp32": Runner("ort_fp32", img, ort_paths=paths)}
        row = {"model": model, "config": label, "artifact": apath.name, "macs": macs,
               "ort_int8_qlinearconv": nq, "ort_int8_float_convs": nf,
               "input": f"Set5 baby LR x4 {img.shape[1]}x{img.shape[0]}", "threads": {}}
        for th in args.threads:
            print(f"  {model} {label}: {args.rounds} rounds, {th} thread(s) ...", flush=True)
            t = race(runners, th, args.rounds)
            row["threads"][str(th)] = {
                "median_s": {k: {m: float(statistics.median(v[m])) for m in v} for k, v in t.items()},
                "intsim_over_ort_int8": ratios(t, "intsim", "ort_int8"),
                "intsim_over_ort_fp32": ratios(t, "intsim", "ort_fp32"),
                "ort_int8_over_ort_fp32": ratios(t, "ort_int8", "ort_fp32"),
                "runs": t,
            }
        one = row["threads"].get("1")
        if one and peak:
            row["share_of_vnni_peak_1thread"] = {k: macs / one["median_s"][k]["cpu"] / 1e9 / peak
                                                 for k in ("intsim", "ort_int8")}
        small = child("intsim", apath, None, SET5_LR / "X4" / "babyx4.png", 0,
                      {"BENCH_CROP": "16", "BENCH_REPEATS": "31", "INTSIM_THREADS": "1"})["median_s"]
        t128 = one["median_s"]["intsim"]["cpu"] if one else None
        row["per_image_fixed_cost_s"] = {"run_16x16_s": small, "run_128x128_cpu_s": t128,
                                         "fixed_s": small - (t128 * 256 / (img.shape[0] * img.shape[1])
                                                             if t128 else 0.0)}
        row["peak_rss_512_mb"] = {"intsim": child("intsim", apath, None, big, 0,
                                                  {"INTSIM_THREADS": "1"})["peak_rss_mb"], **ort_rss}
        rows.append(row)
    return rows


def lr_image_hr512() -> np.ndarray:
    from intsim.images import read_image

    return np.ascontiguousarray(read_image(DATA / "data" / "Set5" / "HR" / "baby.png", 3).pixels[:512, :512])


def markdown(result: dict) -> str:
    env = result["environment"]
    L = ["# intsim vs ONNX Runtime (int8 QDQ, fp32)", "",
         f"Machine: {env['cpu']}, {env['cores']} cores (shared), load average at start {env['loadavg_start']}; "
         f"onnxruntime {env['onnxruntime']}, numpy {env['numpy']}. Command: `{env['command']}`.", "",
         f"Input: Set5 baby LR ×4 (128×128 → 512×512). {env['rounds']} interleaved rounds per thread count; each "
         "number is the **median of per-round ratios** (interquartile range in brackets); CPU = `process_time`. "
         "ORT int8: static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on 8 Set5 LR "
         "48×48 patches; every conv runs as `QLinearConv` (counted in ORT's optimized graph).", ""]
    if env.get("vnni_peak_gmacs"):
        L += [f"Reference: register-only `vpdpbusd` loop, 1 thread: **{env['vnni_peak_gmacs']:.0f} GMAC/s** "
              "(benchmarks/vnni_peak.py, best CPU-time rate, measured before and after the race); the share "
              "column is the network's MACs (the engine's count: every tap of every conv, once) / 1-thread CPU "
              "time / that peak.", "",
              "With 2 threads ORT's intra-op pool spins while it waits (its default), which counts as CPU time; "
              "intsim's workers sleep. The 2-thread CPU ratios therefore favour intsim; the 1-thread CPU ratio "
              "is the cleanest comparison on a shared machine.", ""]
    for th in env["threads"]:
        L += [f"## {th} thread(s)", "",
              "| model | intsim artifact | intsim / ORT int8 (wall) | (CPU) | intsim / ORT fp32 (wall) | (CPU) "
              "| ORT int8 / fp32 (wall) | intsim ms | ORT int8 ms | ORT fp32 ms |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            t = r["threads"][str(th)]
            f = lambda d, m: f"{d[m]:.2f} [{d[m + '_quartiles'][0]:.2f}–{d[m + '_quartiles'][1]:.2f}]"  # noqa: E731
            ms = lambda k: f"{t['median_s'][k]['wall'] * 1e3:.0f}"  # noqa: E731
            L.append(f"| {r['model']} ×4 | {r['config']} | {f(t['intsim_over_ort_int8'], 'wall')} | "
                     f"{f(t['intsim_over_ort_int8'], 'cpu')} | {f(t['intsim_over_ort_fp32'], 'wall')} | "
                     f"{f(t['intsim_over_ort_fp32'], 'cpu')} | {t['ort_int8_over_ort_fp32']['wall']:.2f} | "
                     f"{ms('intsim')} | {ms('ort_int8')} | {ms('ort_fp32')} |")
        L.append("")
    L += ["## Per image: fixed cost, peak RSS at 512×512, share of VNNI peak", "",
          "| model | intsim artifact | intsim fixed cost per image (ms) | peak RSS 512² intsim / ORT int8 / ORT fp32 "
          "(MB) | share of VNNI peak intsim / ORT int8 |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        fc = r["per_image_fixed_cost_s"]
        rss = r["peak_rss_512_mb"]
        sh = r.get("share_of_vnni_peak_1thread", {})
        shs = " / ".join(f"{sh[k]:.0%}" for k in ("intsim", "ort_int8")) if sh else "-"
        L.append(f"| {r['model']} ×4 | {r['config']} | {fc['fixed_s'] * 1e3:.1f} (16×16 run {fc['run_16x16_s'] * 1e3:.1f}) "
                 f"| {rss['intsim']:.0f} / {rss['ort_int8']:.0f} / {rss['ort_fp32']:.0f} | {shs} |")
    L += ["", "Fixed cost: median CPU time of 31 runs on a 16×16 crop (1 thread, fresh process) minus 256/16384 of the 128² "
          "run's CPU time: what a run costs beyond its arithmetic (Python dispatch, allocation, small kernels' "
          "call overhead), an upper bound on dispatch.", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    os.environ.setdefault("INTSIM_MALLOC", "keep")  # as the intsim command runs the engine (intsim/allocator.py)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="imdn,edsr_baseline")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-minmax", dest="minmax", action="store_false",
                    help="skip the MinMax artifacts where a default-calibration one exists")
    ap.add_argument("--default-artifacts", default=str(ROOT / "results" / "quality"))
    ap.add_argument("--artifacts", default=str(ROOT / "benchmarks" / "artifacts"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "engine.json"))
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    try:
        import onnxruntime
    except ImportError:
        print("bench_vs_ort: needs the bench extra (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    from benchmarks.vnni_peak import vnni_peak_gmacs
    from intsim.artifact import atomic_write_json

    peak = vnni_peak_gmacs()
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "loadavg_start": [round(v, 2) for v in os.getloadavg()], "numpy": np.__version__,
           "onnxruntime": onnxruntime.__version__, "python": platform.python_version(), "rounds": args.rounds,
           "threads": args.threads, "vnni_peak_gmacs": peak,
           "command": "python -m benchmarks.bench_vs_ort " + " ".join(sys.argv[1:] if argv is None else argv)}
    rows = []
    by_model: dict[str, list] = {}
    for model, label, p in artifacts(args):
        by_model.setdefault(model, []).append((label, p))
    for model, configs in by_model.items():
        rows += bench_model(model, configs, args, peak)
    env["vnni_peak_gmacs_end"] = vnni_peak_gmacs()
    env["vnni_peak_gmacs"] = max(v for v in (peak, env["vnni_peak_gmacs_end"]) if v) if peak else None
    for r in rows:  # shares against the better of the two peak measurements (start, end)
        one = r["threads"].get("1")
        if one and env["vnni_peak_gmacs"]:
            r["share_of_vnni_peak_1thread"] = {k: r["macs"] / one["median_s"][k]["cpu"] / 1e9 / env["vnni_peak_gmacs"]
                                               for k in ("intsim", "ort_int8")}
    env["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"environment": env, "rows": rows}
    out = Path(args.out)
    atomic_write_json(out, result)
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
