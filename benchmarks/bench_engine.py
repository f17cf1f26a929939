"""Side-by-side speed benchmark of the integer engine (docs/arithmetic.md).

For each configuration (model × scale × bits × realization) on a real input
(Set5 ``baby`` LR ×scale):

* **end to end** — ``intsim`` (:func:`intsim.engine.run`), ``golden`` (the
  torch float64 fake-quant executor), ``torch fp32`` (the float model, eager,
  same input), optionally ``intsim ref`` (``INTSIM_CONV_PATH=reference``);
  timings are the median of repeated runs after warm-up, taken *interleaved*
  in one process (intsim, torch, intsim, torch, …) so that a busy machine
  slows all columns alike;
* **per conv layer** — the intsim conv op (timed inside the end-to-end runs),
  the golden conv op, a torch fp32 conv and a torch int8 quantized conv
  (``torch.ao.nn.quantized.Conv2d``; quantized engine ``onednn``, else ``x86``,
  else ``fbgemm``: the one used is recorded) of the same shape; GMAC/s from
  the engine's MAC counters;
* **peak RSS** of one run of each column, each in a fresh subprocess;
* **compile time**: first call with numba's cache cold (a fresh
  ``NUMBA_CACHE_DIR`` in a subprocess) and warm, and the time to first result
  of a second process with the warm cache.

Prints a table and writes JSON atomically. ``--quick`` keeps it short (one
scale, W4A4 split and W8A8 split, fewer repeats, golden once).

Run: ``python -m benchmarks.bench_engine [--quick] [--out benchmarks/results/bench_engine.json]``.
Artifacts are built once and cached under ``--artifacts``: EDSR-baseline via
``calib.cli_calibrate.run_calibrate`` with random weights (seed 0); IMDN via
``run_calibrate`` with the official ``IMDN_x{s}.pth`` weights (or, if calib/
cannot export IMDN, the stand-in of :mod:`benchmarks.imdn_artifact`). Both are
MinMax-calibrated on 4 Set5 LR patches of 32×32 (speed and memory only: no
PSNR claims); one segment per codebook, so no outer region. Where the default
calibration's two-region artifacts exist (``--default-artifacts``, default
``results/quality/{model}_{scale}_{bits}_default.intsim`` as the quality sweep writes
them), they are benchmarked too, labelled ``default two-region``: that is what real
use runs, with about 1-14 % of each conv's input codes in the outer region. The
race against ONNX Runtime int8 is :mod:`benchmarks.bench_vs_ort`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INTSIM_DATA_ROOT", "/work/shared"))
SET5_LR = DATA / "data" / "Set5" / "LR_bicubic"
IMDN_WEIGHTS = DATA / "weights" / "imdn"


# --------------------------------------------------------------------------
# inputs and artifacts


def lr_image(scale: int, name: str = "baby") -> np.ndarray:
    from intsim.images import read_image

    return read_image(SET5_LR / f"X{scale}" / f"{name}x{scale}.png", 3).pixels


def artifact_path(adir: Path, model: str, scale: int, bits: str, realization: str) -> Path:
    return adir / f"{model}_x{scale}_{bits}_{realization}.intsim"


def ensure_artifact(adir: Path, model: str, scale: int, bits: str, realization: str) -> Path | None:
    """Build (once) and return the artifact path; None if the model cannot be built here."""
    p = artifact_path(adir, model, scale, bits, realization)
    if p.is_file():
        return p
    adir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if model == "edsr_baseline":
        from calib.cli_calibrate import run_calibrate

        run_calibrate(model="edsr_baseline", weights=None, scale=scale, bits=bits, method="minmax",
                      calib_data=str(SET5_LR / f"X{scale}"), out=str(p), realization=realization,
                      rounding="half_up", overflow="saturate", acc_bits=32, stream_bits=24, n_images=4,
                      patch=32, seed=0, random_init=True)
    elif model == "imdn":
        w = IMDN_WEIGHTS / f"IMDN_x{scale}.pth"
        if not w.is_file():
            return None
        try:  # the calib/ exporter (official weights, MinMax calibration on Set5 LR patches)
            from calib.cli_calibrate import run_calibrate

            run_calibrate(model="imdn", weights=str(w), scale=scale, bits=bits, method="minmax",
                          calib_data=str(SET5_LR / f"X{scale}"), out=str(p), realization=realization,
                          rounding="half_up", overflow="saturate", acc_bits=32, stream_bits=24, n_images=4,
                          patch=32, seed=0)
        except Exception as e:  # noqa: BLE001 - an exporter without IMDN: the stand-in builder
            print(f"  calib/ cannot export imdn ({type(e).__name__}: {str(e)[:120]}); "
                  f"using benchmarks.imdn_artifact", flush=True)
            from benchmarks.imdn_artifact import build_imdn_artifact
            from intsim.artifact import save_artifact

            wb, ab = (int(v) for v in bits.upper().lstrip("W").split("A"))
            img = lr_image(scale)
            cy, cx = img.shape[0] // 2, img.shape[1] // 2
            art = build_imdn_artifact(w, scale, img[cy - 24:cy + 24, cx - 24:cx + 24], wbits=wb, abits=ab,
                                      realization=realization)
            save_artifact(art, p)
    else:
        raise ValueError(f"unknown model {model!r}")
    print(f"  built {p.name} in {time.time() - t0:.0f} s", flush=True)
    return p


def float_model(model: str, scale: int):
    """(torch module in eval mode, input scale factor for uint8 → network input)."""
    if model == "edsr_baseline":
        from calib.cli_calibrate import build_model

        net, rgb_range, _ = build_model("edsr_baseline", scale, None, 0)  # the seed run_calibrate used
        return net, rgb_range / 255.0
    from calib.models.imdn import load

    return load(IMDN_WEIGHTS / f"IMDN_x{scale}.pth", scale), 1.0 / 255.0


# --------------------------------------------------------------------------
# timing helpers


def med(xs):
    return float(statistics.median(xs)) if xs else None


class OpTimer:
    """Wraps an op registry (name → callable) and accumulates wall time per op name."""

    def __init__(self, registry: dict, name_of):
        self.registry = registry
        self.name_of = name_of
        self.orig = dict(registry)
        self.times: dict[str, float] = {}

    def __enter__(self):
        for k, f in self.orig.items():
            def wrapped(*args, _f=f):
                t0 = time.perf_counter()
                r = _f(*args)
                name = self.name_of(args)
                self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
                return r
            self.registry[k] = wrapped
        return self

    def __exit__(self, *exc):
        self.registry.clear()
        self.registry.update(self.orig)

    def take(self) -> dict[str, float]:
        t, self.times = self.times, {}
        return t


def quant_engine() -> str:
    import torch

    engines = torch.backends.quantized.supported_engines
    for e in ("onednn", "x86", "fbgemm"):
        if e in engines:
            torch.backends.quantized.engine = e
            return e
    raise RuntimeError(f"no usable quantized engine among {engines}")


def torch_conv_times(shape: dict, repeats: int) -> dict:
    """Median seconds of a torch fp32 conv and a torch int8 quantized conv of ``shape``."""
    import torch
    import torch.nn.functional as F

    H, W, ci, co, k = shape["H"], shape["W"], shape["ci"], shape["co"], shape["k"]
    s, p, d, g = shape["stride"], shape["padding"], shape["dilation"], shape["groups"]
    x = torch.rand(1, ci, H, W)
    w = torch.randn(co, ci // g, k, k) * 0.05
    b = torch.randn(co) * 0.01
    fp = []
    with torch.no_grad():
        F.conv2d(x, w, b, s, p, d, g)
        for _ in range(repeats):
            t0 = time.perf_counter()
            F.conv2d(x, w, b, s, p, d, g)
            fp.append(time.perf_counter() - t0)
    from torch.ao.nn.quantized import Conv2d as QConv2d

    q = QConv2d(ci, co, k, stride=s, padding=p, dilation=d, groups=g)
    q.set_weight_bias(torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8), b)
    q.scale, q.zero_point = 0.05, 64
    xq = torch.quantize_per_tensor(x, 1.0 / 255, 0, torch.quint8)
    i8 = []
    with torch.no_grad():
        q(xq)
        for _ in range(repeats):
            t0 = time.perf_counter()
            q(xq)
            i8.append(time.perf_counter() - t0)
    return {"torch_fp32_s": med(fp), "torch_int8_s": med(i8)}


def conv_shapes(art, img_hw) -> dict[str, dict]:
    """op name → conv geometry on this input (from the engine's shape inference)."""
    from intsim.tiling import infer_heights

    hw = infer_heights(art, *img_hw)
    out = {}
    for op in art.ops:
        if op.op != "conv2d":
            continue
        w = art.array(op, "weight")
        a = op.attrs
        H, W = hw[op.inputs[0]]
        if H == 1 and W == 1:
            continue  # 1×1 attention convs: negligible
        pair = lambda v: int(v[0]) if np.ndim(v) else int(v)  # noqa: E731
        out[op.name] = dict(H=H, W=W, ci=int(w.shape[3]) * int(a.get("groups", 1)), co=int(w.shape[0]),
                            k=int(w.shape[1]), stride=pair(a.get("stride", 1)), padding=pair(a.get("padding", 0)),
                            dilation=pair(a.get("dilation", 1)), groups=int(a.get("groups", 1)))
    return out


# --------------------------------------------------------------------------
# subprocess probes: peak RSS and time to first result


CHILD = r"""
import json, os, resource, sys, time
t_start = time.perf_counter()
mode, art_path, img_path, scale = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
res = {}
if mode in ("intsim", "intsim_ref", "ttfr", "tiled"):
    if mode == "intsim_ref":
        os.environ["INTSIM_CONV_PATH"] = "reference"
    from intsim.artifact import load_artifact
    from intsim import engine
    from intsim.images import read_image
    res["import_s"] = time.perf_counter() - t_start
    art = load_artifact(art_path)
    img = read_image(img_path, 3).pixels
    crop = int(os.environ.get("BENCH_CROP", "0"))
    if crop:
        img = img[:crop, :crop].copy()
    res["load_s"] = time.perf_counter() - t_start - res["import_s"]
    t0 = time.perf_counter()
    if mode == "tiled":
        from intsim.tiling import run_tiled
        run_tiled(art, img, tile_rows=int(os.environ.get("TILE_ROWS", "16")))
    else:
        engine.run(art, img, keep_tensors=False)
    res["first_run_s"] = time.perf_counter() - t0
    res["time_to_first_result_s"] = time.perf_counter() - t_start
    if mode == "ttfr":
        t0 = time.perf_counter()
        engine.run(art, img, keep_tensors=False)
        res["second_run_s"] = time.perf_counter() - t0
elif mode == "golden":
    import torch
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    from intsim.artifact import load_artifact
    from intsim.images import read_image
    from golden.executor import run_golden
    art = load_artifact(art_path)
    img = read_image(img_path, 3).pixels
    t0 = time.perf_counter()
    run_golden(art, img)
    res["first_run_s"] = time.perf_counter() - t0
elif mode == "torch_fp32":
    import torch
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    sys.path.insert(0, os.getcwd())
    from benchmarks.bench_engine import float_model
    from intsim.artifact import load_artifact
    from intsim.images import read_image
    model = load_artifact(art_path).model.get("name", "edsr_baseline")
    net, k = float_model(model, scale)
    img = read_image(img_path, 3).pixels
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() * k
    t0 = time.perf_counter()
    with torch.no_grad():
        net(x)
    res["first_run_s"] = time.perf_counter() - t0
# VmHWM: this process image's own peak (ru_maxrss keeps the parent's pre-exec peak on Linux)
try:
    with open("/proc/self/status") as f:
        res["peak_rss_mb"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH_JSON " + json.dumps(res))
"""


def run_child(mode: str, art: Path, img: Path, scale: int, env_extra: dict | None = None,
              timeout: int = 1800) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, mode, str(art), str(img), str(scale)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            res = json.loads(line[len("BENCH_JSON "):])
            res["process_wall_s"] = wall
            return res
    raise RuntimeError(f"child {mode} failed (rc {p.returncode}): {p.stderr[-2000:]}")


def compile_probe(art: Path, img: Path, scale: int) -> dict:
    """Cold cache (fresh NUMBA_CACHE_DIR), then a second process with that warm cache."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as d:
        cold = run_child("ttfr", art, img, scale, {"NUMBA_CACHE_DIR": d})
        warm = run_child("ttfr", art, img, scale, {"NUMBA_CACHE_DIR": d})
        warm_small = run_child("ttfr", art, img, scale, {"NUMBA_CACHE_DIR": d, "BENCH_CROP": "32"})
    return {
        "cold": cold, "warm": warm, "warm_small_input": warm_small,
        "compile_cold_s": cold["first_run_s"] - cold["second_run_s"],
        "compile_warm_s": warm["first_run_s"] - warm["second_run_s"],
        "second_process_time_to_first_result_s": warm["process_wall_s"],
    }


# --------------------------------------------------------------------------
# one configuration


def bench_config(model: str, scale: int, bits: str, realization: str, art_path: Path, args) -> dict:
    import torch

    import golden.executor as gx
    from intsim import engine
    from intsim.artifact import load_artifact

    torch.set_num_threads(args.threads)
    art = load_artifact(art_path)
    img = lr_image(scale)
    img_path = SET5_LR / f"X{scale}" / f"baby{'x'}{scale}.png"
    net, k = float_model(model, scale)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() * k

    runs = {"intsim": [], "torch_fp32": [], "intsim_ref": []}
    per_op: list[dict[str, float]] = []  # a fused group's time is its producer's (intsim.fusion.fusion_plan)
    counters = None
    with torch.no_grad():
        res = engine.run(art, img, keep_tensors=False)  # warm-up (and compile)
        counters = res.counters
        net(x)
        for _ in range(args.repeats):
            per_op.append({})
            t0 = time.perf_counter()
            engine.run(art, img, keep_tensors=False, op_seconds=per_op[-1])
            runs["intsim"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            net(x)
            runs["torch_fp32"].append(time.perf_counter() - t0)
    if args.ref_repeats:
        os.environ["INTSIM_CONV_PATH"] = "reference"
        try:
            engine.run(art, img, keep_tensors=False)
            for _ in range(args.ref_repeats):
                t0 = time.perf_counter()
                engine.run(art, img, keep_tensors=False)
                runs["intsim_ref"].append(time.perf_counter() - t0)
        finally:
            del os.environ["INTSIM_CONV_PATH"]
    golden_ops: list[dict[str, float]] = []
    runs["golden"] = []
    if args.golden_repeats:
        t_g = OpTimer(gx.OPS, lambda a: a[0].op.name)
        with t_g:
            for _ in range(args.golden_repeats):
                t0 = time.perf_counter()
                gx.run_golden(art, img)
                runs["golden"].append(time.perf_counter() - t0)
                golden_ops.append(t_g.take())

    total_macs = counters["totals"]["macs"]
    e2e = {k: med(v) for k, v in runs.items() if v}
    out = {"model": model, "scale": scale, "bits": bits, "realization": realization, "artifact": art_path.name,
           "artifact_builder": art.model.get("builder", "calib.cli_calibrate.run_calibrate"),
           "input": f"Set5 baby LR x{scale} {img.shape[1]}x{img.shape[0]}", "macs": int(total_macs),
           "e2e_s": e2e, "e2e_runs_s": runs, "e2e_gmacs": {k: total_macs / v / 1e9 for k, v in e2e.items()},
           "ratios": {}}
    if e2e.get("intsim") and e2e.get("torch_fp32"):
        out["ratios"]["intsim_over_torch_fp32"] = e2e["intsim"] / e2e["torch_fp32"]
    if e2e.get("intsim") and e2e.get("golden"):
        out["ratios"]["golden_over_intsim"] = e2e["golden"] / e2e["intsim"]
    if e2e.get("intsim") and e2e.get("intsim_ref"):
        out["ratios"]["reference_over_fast"] = e2e["intsim_ref"] / e2e["intsim"]
    # per op type (intsim)
    by_type: dict[str, float] = {}
    for op in art.ops:
        by_type[op.op] = by_type.get(op.op, 0.0) + med([p.get(op.name, 0.0) for p in per_op])
    out["intsim_time_by_op_type_s"] = by_type
    # per conv layer
    shapes = conv_shapes(art, img.shape[:2])
    cache = _TORCH_LAYER_CACHE
    layers = []
    for name, shp in shapes.items():
        key = tuple(sorted(shp.items()))
        if key not in cache:
            cache[key] = torch_conv_times(shp, args.layer_repeats)
        macs = sum(counters["ops"][name]["macs"].values())
        t_i = med([p.get(name, 0.0) for p in per_op])
        t_g = med([g.get(name, 0.0) for g in golden_ops]) if golden_ops else None
        row = {"layer": name, **shp, "macs": int(macs), "intsim_s": t_i, "golden_s": t_g, **cache[key],
               "path": _conv_path(art, name)}
        for col in ("intsim_s", "golden_s", "torch_fp32_s", "torch_int8_s"):
            if row[col]:
                row[col.replace("_s", "_gmacs")] = macs / row[col] / 1e9
        if row.get("torch_int8_s"):
            row["intsim_over_int8_throughput"] = row["torch_int8_s"] / t_i
        layers.append(row)
    out["layers"] = layers
    conv_t = sum(r["intsim_s"] for r in layers)
    i8_t = sum(r["torch_int8_s"] for r in layers)
    fp_t = sum(r["torch_fp32_s"] for r in layers)
    conv_macs = sum(r["macs"] for r in layers)
    out["conv_layers"] = {"macs": conv_macs, "intsim_s": conv_t, "torch_fp32_s": fp_t, "torch_int8_s": i8_t,
                          "intsim_gmacs": conv_macs / conv_t / 1e9, "torch_fp32_gmacs": conv_macs / fp_t / 1e9,
                          "torch_int8_gmacs": conv_macs / i8_t / 1e9,
                          "intsim_fraction_of_int8_throughput": i8_t / conv_t}
    if args.rss:
        out["peak_rss_mb"] = {}
        for mode in ("intsim", "torch_fp32") + (("golden",) if args.golden_repeats else ()):
            out["peak_rss_mb"][mode] = run_child(mode, art_path, img_path, scale,
                                                 {"BENCH_THREADS": str(args.threads)})["peak_rss_mb"]
    return out


_TORCH_LAYER_CACHE: dict[tuple, dict] = {}  # torch conv timings per shape, shared by the configs


def _conv_path(art, name: str) -> str:
    """The path ``auto`` takes for this conv (from the load-time bounds; the sparse split aside)."""
    from intsim import bounds
    from intsim.ops import conv_fast, conv_paths
    from intsim.ops.conv_taps import conv2d_taps

    op = next(o for o in art.ops if o.name == name)
    worst = {b.name: b.worst_max for b in bounds.conv_accumulators(art, op)}
    cb = art.tensors[op.inputs[0]].codebook
    if art.numerics.realization == "grid":
        gemm = ["A"]
    else:  # the dense segment (most populated in practice): origin 0, most codes
        dense = max(range(len(cb.segments)), key=lambda s: (cb.segments[s].origin == 0, cb.segments[s].count))
        gemm = [f"P{dense}"] + ([f"Q{dense}"] if cb.segments[dense].origin else [])
    path = conv_paths.select_conv_path(worst, gemm, bounds.conv_can_overflow(art, op))
    if path == "reference" or op.op != "conv2d":
        return path
    # the int8 path where it applies (tap tables of a 16×16 input)
    a = op.attrs
    counts = [int(s == dense) for s in range(len(cb.segments))] if art.numerics.realization != "grid" else \
        [s.count for s in cb.segments]
    from intsim.op_dispatch import conv_constants

    consts = conv_constants(art, op, transposed=False)
    taps = conv2d_taps(16, 16, *a["kernel"], *a["stride"], *a["padding"], *a["dilation"])
    plan = conv_fast.int8_plan(consts, cb, counts, True, taps)
    return "int8" if isinstance(plan, conv_fast.Int8Plan) else path


# --------------------------------------------------------------------------
# report


def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def print_report(result: dict) -> None:
    env = result["environment"]
    print(f"\n== intsim engine benchmark  ({env['cpu']}, {env['threads']} threads, load avg at start "
          f"{env['loadavg_start']}, torch {env['torch']}, int8 engine {env['quantized_engine']})")
    print("\nEnd to end (median s; GMAC/s from the engine's MAC count)")
    hdr = (f"{'config':34} {'GMAC':>6} {'intsim':>8} {'torch32':>8} {'golden':>8} {'int-ref':>8} "
           f"{'i/t32':>6} {'g/i':>6} {'ref/i':>6} {'int GMAC/s':>10}")
    print(hdr)
    print("-" * len(hdr))
    for c in result["configs"]:
        e, r = c["e2e_s"], c["ratios"]
        name = f"{c['model']} x{c['scale']} {c['bits']} {c['realization']}"
        print(f"{name:34} {c['macs'] / 1e9:6.1f} {_fmt(e.get('intsim'))!s:>8} {_fmt(e.get('torch_fp32'))!s:>8} "
              f"{_fmt(e.get('golden'), '.2f')!s:>8} {_fmt(e.get('intsim_ref'), '.2f')!s:>8} "
              f"{_fmt(r.get('intsim_over_torch_fp32'), '.2f')!s:>6} {_fmt(r.get('golden_over_intsim'), '.1f')!s:>6} "
              f"{_fmt(r.get('reference_over_fast'), '.1f')!s:>6} {_fmt(c['e2e_gmacs'].get('intsim'), '.1f')!s:>10}")
    print("\nConv layers, summed over the network (GMAC/s; intsim share of torch int8 throughput)")
    hdr = f"{'config':34} {'intsim':>8} {'torch32':>8} {'int8':>8} {'i/int8':>7}"
    print(hdr)
    print("-" * len(hdr))
    for c in result["configs"]:
        cl = c["conv_layers"]
        name = f"{c['model']} x{c['scale']} {c['bits']} {c['realization']}"
        print(f"{name:34} {cl['intsim_gmacs']:8.1f} {cl['torch_fp32_gmacs']:8.1f} {cl['torch_int8_gmacs']:8.1f} "
              f"{cl['intsim_fraction_of_int8_throughput']:7.0%}")
    if result["configs"]:
        c = result["configs"][0]
        print(f"\nPer layer: {c['model']} x{c['scale']} {c['bits']} {c['realization']} (ms; GMAC/s)")
        hdr = (f"{'layer':22} {'shape':22} {'path':9} {'intsim':>8} {'golden':>8} {'torch32':>8} {'int8':>8} "
               f"{'i GMAC/s':>9} {'int8 GMAC/s':>11}")
        print(hdr)
        print("-" * len(hdr))
        seen = set()
        for r in c["layers"]:
            shape = f"{r['H']}x{r['W']} {r['ci']}->{r['co']} k{r['k']}"
            key = (shape, r["path"])
            if key in seen and not r["layer"].startswith(("tail", "head", "upsampler", "fea", "LR", "c.")):
                continue
            seen.add(key)
            ms = lambda v: _fmt(None if v is None else v * 1e3, ".1f")  # noqa: E731
            print(f"{r['layer'][:22]:22} {shape:22} {r['path']:9} {ms(r['intsim_s']):>8} {ms(r['golden_s']):>8} "
                  f"{ms(r['torch_fp32_s']):>8} {ms(r['torch_int8_s']):>8} {_fmt(r.get('intsim_gmacs'), '.1f'):>9} "
                  f"{_fmt(r.get('torch_int8_gmacs'), '.1f'):>11}")
    if any("peak_rss_mb" in c for c in result["configs"]):
        print("\nPeak RSS (MB, one run in a fresh process)")
        for c in result["configs"]:
            if "peak_rss_mb" in c:
                name = f"{c['model']} x{c['scale']} {c['bits']} {c['realization']}"
                print(f"{name:34} " + "  ".join(f"{k} {v:.0f}" for k, v in c["peak_rss_mb"].items()))
    if "compile" in result:
        cp = result["compile"]
        print(f"\nCompile / start-up ({cp['config']}):")
        print(f"  cold numba cache: first run {cp['cold']['first_run_s']:.2f} s (steady {cp['cold']['second_run_s']:.2f} s)"
              f" -> JIT {cp['compile_cold_s']:.2f} s; process time to first result {cp['cold']['process_wall_s']:.2f} s")
        print(f"  warm numba cache: first run {cp['warm']['first_run_s']:.2f} s (steady {cp['warm']['second_run_s']:.2f} s)"
              f" -> cache load {cp['compile_warm_s']:.2f} s; second process time to first result "
              f"{cp['second_process_time_to_first_result_s']:.2f} s (import {cp['warm']['import_s']:.2f} s, "
              f"artifact load {cp['warm']['load_s']:.2f} s)")
        ws = cp["warm_small_input"]
        print(f"  warm numba cache, 32x32 input: second process time to first result {ws['process_wall_s']:.2f} s "
              f"(import {ws['import_s']:.2f} s, artifact load {ws['load_s']:.2f} s, first run {ws['first_run_s']:.2f} s)")
    if "tiling" in result:
        t = result["tiling"]
        print(f"\nTiling ({t['config']}, {t['input']}, tile_rows {t['tile_rows']}): "
              + ", ".join(f"{k}: {v['first_run_s']:.1f} s, peak RSS {v['peak_rss_mb']:.0f} MB"
                          for k, v in t["runs"].items()))


def main(argv=None) -> int:
    # time the engine as the intsim command runs it, freed memory kept (intsim/allocator.py); the
    # children inherit it
    os.environ.setdefault("INTSIM_MALLOC", "keep")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="×4 only, W4A4/W8A8 split, 3 repeats, golden once")
    ap.add_argument("--models", default="edsr_baseline,imdn")
    ap.add_argument("--scales", default="4,2")
    ap.add_argument("--bits", default="W4A4,W8A8")
    ap.add_argument("--realizations", default="split,grid")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layer-repeats", type=int, default=5)
    ap.add_argument("--golden-repeats", type=int, default=1)
    ap.add_argument("--golden-configs", type=int, default=2, help="run golden on the first N configs only")
    ap.add_argument("--ref-repeats", type=int, default=1, help="intsim with the reference conv kernel (first config)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-rss", dest="rss", action="store_false")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--tiling", action="store_true", help="also IMDN/EDSR 512×512 tiled vs untiled (slow)")
    ap.add_argument("--artifacts", default=str(ROOT / "benchmarks" / "artifacts"))
    ap.add_argument("--default-artifacts", default=str(ROOT / "results" / "quality"),
                    help="where the default calibration's artifacts are ({model}_{scale}_{bits}_default.intsim)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_engine.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.scales, args.realizations, args.repeats, args.layer_repeats = "4", "split", 3, 3
        args.golden_repeats, args.golden_configs = 1, 1
    import torch

    from intsim.artifact import atomic_write_json

    torch.set_num_threads(args.threads)
    qe = quant_engine()
    result = {"environment": {
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()], "torch": torch.__version__,
        "numpy": np.__version__, "quantized_engine": qe, "python": platform.python_version(),
        "argv": sys.argv[1:] if argv is None else list(argv)}, "configs": []}
    adir = Path(args.artifacts)
    first = None
    n = 0
    configs = []
    for model in args.models.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            if model == "imdn" and scale != 4 and args.quick:
                continue
            for bits in args.bits.split(","):
                # the default calibration's two-region artifact (about 1-14 % outer codes per layer) beside MinMax
                q = Path(args.default_artifacts) / f"{model}_{scale}_{bits.lower()}_default.intsim"
                if q.is_file():
                    configs.append((model, scale, bits, "default two-region", q))
                for real in args.realizations.split(","):
                    configs.append((model, scale, bits, real, None))
    for model, scale, bits, real, p in configs:
        p = p or ensure_artifact(adir, model, scale, bits, real)
        if p is None:
            print(f"  skip {model}: no weights", flush=True)
            continue
        first = first or (model, scale, bits, real, p)
        sub = argparse.Namespace(**vars(args))
        if n >= args.golden_configs:
            sub.golden_repeats = 0
        if n > 0:
            sub.ref_repeats = 0
            sub.rss = args.rss and not args.quick
        print(f"bench {model} x{scale} {bits} {real} ...", flush=True)
        result["configs"].append(bench_config(model, scale, bits, real, p, sub))
        n += 1
    if args.compile and first:
        model, scale, bits, real, p = first
        cp = compile_probe(p, SET5_LR / f"X{scale}" / f"babyx{scale}.png", scale)
        cp["config"] = f"{model} x{scale} {bits} {real}"
        result["compile"] = cp
    if args.tiling:
        result["tiling"] = tiling_probe(adir)
    result["environment"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    atomic_write_json(out, result)
    print_report(result)
    print(f"\nwrote {out}")
    return 0


def tiling_probe(adir: Path) -> dict:
    """512×512 → ×4 through IMDN (else EDSR-baseline): tiled vs untiled, fresh processes."""
    from intsim.images import write_png

    model = "imdn" if (IMDN_WEIGHTS / "IMDN_x4.pth").is_file() else "edsr_baseline"
    p = ensure_artifact(adir, model, 4, "W4A4", "split")
    from intsim.images import read_image

    hr = read_image(DATA / "data" / "Set5" / "HR" / "baby.png", 3).pixels[:512, :512]
    img_path = adir / "baby_512.png"
    write_png(img_path, hr)
    runs = {}
    for mode in ("tiled", "intsim"):
        runs["tiled (16 rows)" if mode == "tiled" else "untiled"] = run_child(mode, p, img_path, 4,
                                                                              {"TILE_ROWS": "16"}, timeout=3600)
    return {"config": f"{model} x4 W4A4 split", "input": "Set5 baby HR 512x512 as LR", "tile_rows": 16,
            "runs": runs}


if __name__ == "__main__":
    sys.exit(main())
