"""``intsim demo``: the whole product on an embedded model, end to end, in one command.

Stages (each with its own progress bar): prepare images → calibrate (two-region codes,
``dual_region`` by default, via ``calib.cli_calibrate.run_calibrate``) → float and fake-quant SR → golden tensors
(torch float64) → intsim (integer engine, with counters) → verify (bit-exactness) →
cost (``intsim.cost`` on the ``edge_npu`` accelerator) → report (``report.html``).

The default model is ``tiny_sr``: a small EDSR-style ×2 network (2 residual blocks,
32 features) the project trains itself (``demo/train_tiny_sr.py``) on scikit-image's
bundled sample images; its weights are committed (``demo/tiny_sr_x2.pt``, a state dict
of tensors, loaded with ``weights_only=True``). Calibration images (a subset of the
training images) and evaluation images (astronaut, chelsea, coffee) are disjoint.
``real=True`` runs the same pipeline on IMDN ×4 with its official checkpoint, calibrated
on ``data/SunHays80`` and evaluated on Set5, from the data root.

The run directory gets ``summary.json`` (:data:`SUMMARY_KEYS` at least), ``report.html``,
the artifact, the golden folder, ``cost.json``, ``cost_compare.json`` and the images.
"""
from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intsim.artifact import atomic_write_json

_REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = _REPO / "demo"
DEMO_WEIGHTS = DEMO_DIR / "tiny_sr_x2.pt"

#: Architecture of the embedded demo model (calib.models.edsr.EDSR keyword arguments).
TINY_SR = {"n_resblocks": 2, "n_feats": 32, "res_scale": 1.0}
TINY_SR_NAME = "tiny_sr"
TINY_SR_SCALE = 2
#: scikit-image bundled samples (inside the wheel, no download).
TRAIN_FILES = ["rocket.jpg", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
               "hubble_deep_field.jpg", "ihc.png", "camera.png", "moon.png", "coins.png",
               "brick.png", "grass.png", "gravel.png", "page.png", "text.png"]
#: Calibration images: a subset of the training images (disjoint from EVAL_FILES).
CALIB_FILES = ["rocket.jpg", "motorcycle_left.png", "retina.jpg", "ihc.png", "hubble_deep_field.jpg", "camera.png"]
EVAL_FILES = ["astronaut.png", "chelsea.png", "coffee.png"]
ACCELERATOR = "edge_npu"
#: The demo's calibration: None = the best measured recipe (calib/recipe.py: block reconstruction with
#: learned rounding on two-region codes), what ``intsim calibrate`` gives without ``--method``.
DEFAULT_METHOD: str | None = None
SUMMARY_KEYS = ("model", "scale", "bits", "code_bits", "images", "psnr_db", "bit_exact", "mismatches", "seconds")


class DemoError(ValueError):
    """Bad demo input (missing data root for --real, missing weights, unsupported model)."""


# --------------------------------------------------------------------------- the embedded model
def register_tiny_sr() -> None:
    """Make ``tiny_sr`` known to ``calibrate`` (``calib.cli_calibrate.LOCAL_MODELS``), with its committed
    weights as the checkpoint used when none is given (``LOCAL_WEIGHTS``)."""
    from calib import cli_calibrate
    from calib.models.edsr import EDSR

    cli_calibrate.LOCAL_MODELS.setdefault(TINY_SR_NAME, (EDSR, dict(TINY_SR), (TINY_SR_SCALE,)))
    cli_calibrate.LOCAL_WEIGHTS.setdefault(TINY_SR_NAME, DEMO_WEIGHTS)


def build_tiny_sr(scale: int = TINY_SR_SCALE):
    from calib.models.edsr import EDSR

    return EDSR(scale, **TINY_SR)


def skimage_data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise DemoError("the demo needs scikit-image (pip install -e '.[demo]' or make setup)") from None
    return Path(skimage.__file__).resolve().parent / "data"


def load_sample(name: str) -> np.ndarray:
    """A bundled scikit-image sample as uint8 H×W×3 (gray replicated, alpha dropped)."""
    from PIL import Image

    p = skimage_data_dir() / name
    if not p.is_file():
        raise DemoError(f"scikit-image sample {name} is not in {p.parent}")
    with Image.open(p) as im:
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def lr_hr_pair(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    from calib.bicubic import bicubic_downsample, modcrop

    hr = modcrop(hr, scale)
    return bicubic_downsample(hr, scale), hr


# --------------------------------------------------------------------------- configuration
@dataclass
class DemoConfig:
    model: str
    scale: int
    weights: str | None  # None: an ONNX model's own
    bits: str
    method: str | None
    calib_dir: Path | None  # None: write the skimage calibration images into the run dir
    n_calib: int | None  # None: the recipe's
    patch: int | None
    eval_pairs: list  # [(name, lr uint8, hr uint8)]
    realization: str = "split"
    notes: list = field(default_factory=list)
    recon: dict | None = None  # reconstruction overrides (quick runs use fewer steps)


def _center_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = a.shape[:2]
    h, w = min(h, H), min(w, W)
    y, x = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(a[y:y + h, x:x + w])


def _tiny_config(quick: bool, bits: str, method: str) -> DemoConfig:
    if not DEMO_WEIGHTS.is_file():
        raise DemoError(f"{DEMO_WEIGHTS}: the demo weights are missing (python demo/train_tiny_sr.py)")
    s = TINY_SR_SCALE
    pairs = []
    for name in EVAL_FILES[:2] if quick else EVAL_FILES:
        hr = load_sample(name)
        if quick:  # a 192×192 HR centre crop (96×96 LR) keeps the quick run fast
            hr = _center_crop(hr, 192, 192)
        lr, hr = lr_hr_pair(hr, s)
        pairs.append((Path(name).stem, lr, hr))
    return DemoConfig(TINY_SR_NAME, s, str(DEMO_WEIGHTS), bits, method, None,
                      n_calib=4 if quick else 16, patch=32 if quick else 48, eval_pairs=pairs,
                      recon={"iters": 100} if quick else None)


def _real_config(quick: bool, bits: str, method: str, data_root: str | None, own: dict | None = None) -> DemoConfig:
    """IMDN ×4 with its checkpoint — or ``own``, your model (``{"model": spec, "weights": file or None,
    "scale": s}``, docs/own_model.md) — calibrated on SunHays80 and run on Set5 from the data root."""
    from calib.data_root import data_root as default_root
    from calib.datasets import benchmark

    root = Path(data_root).expanduser().resolve() if data_root else default_root()
    if not root.is_dir():
        raise DemoError(f"--real needs the data root {root} (data/Set5, data/SunHays80, weights/): "
                        "pass --data-root DIR or set $INTSIM_DATA_ROOT")
    model, scale = (own["model"], int(own["scale"])) if own else ("imdn", 4)
    try:
        from calib.models.zoo import resolve_checkpoint

        ckpt = own["weights"] if own else resolve_checkpoint("imdn", 4, None, root)
        ds = benchmark("Set5", scale, root)
    except (FileNotFoundError, KeyError) as e:
        raise DemoError(str(e).strip("'\"")) from None
    calib_dir = root / "data" / "SunHays80"
    if not calib_dir.is_dir():
        raise DemoError(f"{calib_dir}: calibration images not found under the data root {root}")
    pairs = []
    for i, pair in enumerate(ds):
        if quick and i >= 2:
            break
        lr, hr = pair.lr, pair.hr
        if quick:  # a 64×64 LR centre crop and the matching HR region
            H, W = lr.shape[:2]
            h, w = min(64, H), min(64, W)
            y, x = (H - h) // 2, (W - w) // 2
            lr = np.ascontiguousarray(lr[y:y + h, x:x + w])
            hr = np.ascontiguousarray(hr[y * scale:(y + h) * scale, x * scale:(x + w) * scale])
        pairs.append((pair.name, lr, hr))
    return DemoConfig(model, scale, None if ckpt is None else str(ckpt), bits, method, calib_dir,
                      n_calib=8 if quick else None, patch=32 if quick else None, eval_pairs=pairs,
                      recon={"iters": 60} if quick else None)


# --------------------------------------------------------------------------- helpers
class _Stages:
    """One progress bar per stage, plus the stage timings."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.times: dict[str, float] = {}

    def bar(self, name: str, total: int):
        """A tqdm bar on a terminal; elsewhere (logs, CI) one line per stage when it ends."""
        from tqdm import tqdm

        tty = self.progress and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        b = tqdm(total=total, desc=f"{name:<10s}", unit="step", disable=not tty, file=sys.stderr, leave=True,
                 bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]")
        if self.progress and not tty:
            t0 = time.time()
            close = b.close

            def close_and_log():
                close()
                if getattr(b, "_intsim_logged", False):  # tqdm closes again when garbage-collected
                    return
                b._intsim_logged = True
                print(f"demo: {name} done ({total} step(s), {time.time() - t0:.1f} s)", file=sys.stderr, flush=True)

            b.close = close_and_log
        return b


def _to_input(lr: np.ndarray, rgb_range: float):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().unsqueeze(0)
    return x * (rgb_range / 255.0)


def _to_uint8(out, rgb_range: float) -> np.ndarray:
    a = (out[0] * (255.0 / rgb_range)).clamp(0, 255).round().to(dtype=__import__("torch").uint8)
    return a.numpy().transpose(1, 2, 0)


def _supported_kwargs(fn, **kw) -> dict:
    """The keyword arguments of ``kw`` that ``fn`` accepts (optional features of newer calib versions)."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kw
    return {k: v for k, v in kw.items() if k in params}


def _write_png(path: Path, a: np.ndarray) -> None:
    from intsim.images import write_png

    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, a)


def _body_code_bits(art, bits: str) -> int:
    """Code bits of the nominal-b (body) conv inputs; the max over those (honest storage width)."""
    from calib.cli_calibrate import parse_bits

    _, ba = parse_bits(bits)
    cbs = [t.codebook for t in art.tensors.values() if t.kind == "codes"]
    body = [cb.code_bits for cb in cbs if cb.bits == ba] or [cb.code_bits for cb in cbs]
    return int(max(body)) if body else 0


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else None


# --------------------------------------------------------------------------- the pipeline stages
def _stage_images(out: Path, cfg: DemoConfig, st: _Stages) -> Path:
    """1. The calibration images (skimage samples written as PNGs unless a folder is given) and the
    evaluation LR / HR pairs under ``out/data``; returns the calibration folder."""
    t = time.time()
    bar = st.bar("images", len(cfg.eval_pairs) + (0 if cfg.calib_dir else len(CALIB_FILES)))
    if cfg.calib_dir is None:
        calib_dir = out / "data" / "calib_hr"
        for name in CALIB_FILES:
            p = calib_dir / (Path(name).stem + ".png")
            if not p.is_file():
                _write_png(p, load_sample(name))
            bar.update(1)
    else:
        calib_dir = cfg.calib_dir
    for name, lr, hr in cfg.eval_pairs:
        _write_png(out / "data" / "lr" / f"{name}.png", lr)
        _write_png(out / "data" / "hr" / f"{name}.png", hr)
        bar.update(1)
    bar.close()
    st.times["images"] = time.time() - t
    return calib_dir


def _stage_calibrate(out: Path, cfg: DemoConfig, st: _Stages, calib_dir: Path, progress: bool,
                     own: dict | None):
    """2. Calibrate and export the artifact; returns ``(calibration run, artifact file name, fake-quant
    model)``. A model the exporter cannot take is a :class:`DemoError`."""
    from calib.cli_calibrate import calibrate_run
    from calib.quant.fakequant import build_fakequant_model

    t = time.time()
    bar = st.bar("calibrate", 2)
    name = re.sub(r"\W+", "_", Path(cfg.model).name).strip("_")  # a spec (net.py:build) names no folder
    tag = f"{name}_x{cfg.scale}_{cfg.bits.lower()}"
    art_rel = f"{tag}.intsim"
    state_dir = out / "calib_state"
    try:
        crun = calibrate_run(model=cfg.model, weights=cfg.weights, scale=cfg.scale, bits=cfg.bits,
                             method=cfg.method, calib_data=str(calib_dir), out=str(out / art_rel),
                             realization=cfg.realization, n_images=cfg.n_calib, patch=cfg.patch, seed=0,
                             recon=cfg.recon, state_dir=str(state_dir), progress=progress and sys.stderr.isatty(),
                             **({"rgb_range": own.get("rgb_range")} if own else {}))
    except Exception as e:  # noqa: BLE001 - e.g. an op the exporter cannot take yet
        if isinstance(e, (ValueError, NotImplementedError, KeyError)):
            raise DemoError(f"calibrating {cfg.model} ×{cfg.scale} failed: {' '.join(str(e).split())}") from None
        raise
    fq = build_fakequant_model(crun.net, crun.calibration)
    bar.update(1)
    bar.close()
    st.times["calibrate"] = time.time() - t
    return crun, art_rel, fq


def _stage_float(out: Path, cfg: DemoConfig, st: _Stages, net, fq, rgb_range: float) -> list[dict]:
    """3. Float and fake-quant SR and bicubic per evaluation image: PNGs and PSNR-Y; the per-image records."""
    import torch

    from calib.bicubic import bicubic_upsample_rounded
    from calib.metrics import psnr_y

    t = time.time()
    bar = st.bar("float", len(cfg.eval_pairs))
    per = []
    for name, lr, hr in cfg.eval_pairs:
        with torch.no_grad():
            x = _to_input(lr, rgb_range)
            sr_f = _to_uint8(net(x), rgb_range)
            sr_q = _to_uint8(fq(x), rgb_range) if fq is not None else None
        bic = bicubic_upsample_rounded(lr, cfg.scale)
        files = {"lr": f"data/lr/{name}.png", "bicubic": f"sr/{name}_bicubic.png", "float": f"sr/{name}_float.png",
                 "hr": f"data/hr/{name}.png"}  # the report's SSIM, HR crop and error map
        _write_png(out / files["bicubic"], bic)
        _write_png(out / files["float"], sr_f)
        per.append({"name": name, "lr_size": f"{lr.shape[1]}×{lr.shape[0]}",
                    "psnr_db": {"bicubic": psnr_y(bic, hr, cfg.scale), "float": psnr_y(sr_f, hr, cfg.scale),
                                "fake_quant": psnr_y(sr_q, hr, cfg.scale) if sr_q is not None else None},
                    "files": files})
        bar.update(1)
    bar.close()
    st.times["float"] = time.time() - t
    return per


def _stage_golden(out: Path, cfg: DemoConfig, st: _Stages, art, art_rel: str, per: list[dict]):
    """4. The golden folder (torch float64) of the evaluation images; its PSNR-Y into ``per``."""
    from calib.metrics import psnr_y
    from golden.writer import write_golden
    from intsim.golden_dir import read_golden_dir

    t = time.time()
    bar = st.bar("golden", 1)
    write_golden(str(out / art_rel), [(f"{n}.png", lr) for n, lr, _ in cfg.eval_pairs], str(out / "golden"),
                 progress=False, art=art)
    golden = read_golden_dir(out / "golden")
    for k, (name, lr, hr) in enumerate(cfg.eval_pairs):
        g = golden.tensor(k, art.outputs[0])
        per[k]["psnr_db"]["golden"] = psnr_y(g, hr, cfg.scale)
    bar.update(1)
    bar.close()
    st.times["golden"] = time.time() - t
    return golden


def _stage_intsim(out: Path, cfg: DemoConfig, st: _Stages, art, per: list[dict]) -> list[dict]:
    """5. The integer engine on the evaluation images: PNGs, PSNR-Y into ``per``, ``counters.json``;
    returns the counters."""
    from calib.metrics import psnr_y
    from intsim.engine import run as engine_run

    t = time.time()
    bar = st.bar("intsim", len(cfg.eval_pairs))
    counters = []
    for k, (name, lr, hr) in enumerate(cfg.eval_pairs):
        res = engine_run(art, lr, keep_tensors=False)
        sr_i = np.asarray(res.tensors[art.outputs[0]])
        per[k]["files"]["intsim"] = f"sr/{name}_intsim.png"
        _write_png(out / per[k]["files"]["intsim"], sr_i)
        per[k]["psnr_db"]["intsim"] = psnr_y(sr_i, hr, cfg.scale)
        counters.append(res.counters)
        bar.update(1)
    bar.close()
    atomic_write_json(out / "counters.json",
                {"artifact_sha256": art.sha256,
                 "images": [{"source": f"{n}.png", "output": f"{n}_intsim.png", "counters": c}
                            for (n, _, _), c in zip(cfg.eval_pairs, counters)]})
    st.times["intsim"] = time.time() - t
    return counters


def _stage_verify(out: Path, st: _Stages, art, golden):
    """6. Every tensor and event of the engine against the golden folder; ``verify.json``."""
    from intsim.verification import verify

    t = time.time()
    bar = st.bar("verify", 1)
    rep = verify(art, golden)
    bar.update(1)
    bar.close()
    atomic_write_json(out / "verify.json", rep.to_json())
    st.times["verify"] = time.time() - t
    return rep


def _stage_cost(out: Path, st: _Stages, art, counters: list[dict], accel: str):
    """7. The cost on ``accel`` (``cost.json``) and the scheme comparison (``cost_compare.json``);
    returns ``(accelerator, cost)``."""
    from intsim.cost import compare_schemes, estimate_cost, load_accelerator

    t = time.time()
    bar = st.bar("cost", 2)
    acc = load_accelerator(accel)
    cost = estimate_cost(art, counters, acc)
    atomic_write_json(out / "cost.json", cost)
    bar.update(1)
    comp = compare_schemes(art, counters, acc)
    atomic_write_json(out / "cost_compare.json", comp)
    bar.update(1)
    bar.close()
    st.times["cost"] = time.time() - t
    return acc, cost


def run_demo(out: str | os.PathLike, *, quick: bool = False, real: bool = False, data_root: str | None = None,
             bits: str = "W4A4", method: str = DEFAULT_METHOD, accel: str = ACCELERATOR, progress: bool = True,
             report: bool = True, own: dict | None = None) -> dict:
    """Run the demo into ``out``; return the summary (also written to ``out/summary.json``).

    ``own``: your model instead of tiny_sr / IMDN — ``{"model": spec, "weights": file or None, "scale": s,
    "rgb_range": r or None}`` (docs/own_model.md) — on the real data, as ``real=True``."""
    t_start = time.time()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out}: exists and is not a folder")
    try:
        import torch
    except ImportError:
        raise DemoError("the demo needs torch (pip install torch==2.13.0, or make setup)") from None
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
    register_tiny_sr()
    st = _Stages(progress)

    cfg = (_real_config(quick, bits, method, data_root, own) if real or own
           else _tiny_config(quick, bits, method))
    out.mkdir(parents=True, exist_ok=True)
    calib_dir = _stage_images(out, cfg, st)
    crun, art_rel, fq = _stage_calibrate(out, cfg, st, calib_dir, progress, own)
    cal, fq_note = crun.summary, None

    from intsim.artifact import load_artifact

    art = load_artifact(out / art_rel)
    if art.tensors[art.inputs[0]].channels != 3:
        raise DemoError(f"the demo runs RGB models; {cfg.model} takes a 1-channel (Y) image: evaluate it with "
                        f"intsim eval {out / art_rel} --dataset Set5")
    per = _stage_float(out, cfg, st, crun.net, fq, crun.rgb_range)
    golden = _stage_golden(out, cfg, st, art, art_rel, per)
    counters = _stage_intsim(out, cfg, st, art, per)
    rep = _stage_verify(out, st, art, golden)
    acc, cost = _stage_cost(out, st, art, counters, accel)

    # 8. summary + report ----------------------------------------------------------------------
    psnr = {k: _mean([r["psnr_db"].get(k) for r in per]) for k in ("float", "fake_quant", "golden", "intsim",
                                                                   "bicubic")}
    summary = {
        "model": cfg.model, "scale": int(cfg.scale), "bits": cfg.bits, "code_bits": _body_code_bits(art, cfg.bits),
        "code_bits_per_layer": dict(art.model.get("code_bits", {})),
        "realization": art.numerics.realization,
        "weights": os.path.basename(cfg.weights) if cfg.weights else "inside the ONNX file",
        "images": len(cfg.eval_pairs), "eval_images": [r["name"] for r in per],
        "calib_images": str(calib_dir if cfg.calib_dir else "skimage: " + ", ".join(CALIB_FILES)),
        "quick": bool(quick), "real": bool(real or own),
        "psnr_db": psnr, "bit_exact": bool(rep.ok), "mismatches": int(rep.mismatches),
        "event_mismatches": int(rep.event_mismatches), "verify_line": rep.format(),
        "cost_summary": {"accelerator": acc.name, "energy_uj": cost["totals"]["energy_pj"]["total"] * 1e-6,
                         "latency_ms": cost["totals"]["latency_s"] * 1e3},
        "artifact": art_rel, "artifact_sha256": art.sha256, "golden": "golden", "cost": "cost.json",
        "cost_compare": "cost_compare.json", "counters": "counters.json",
        "method": cal["method"], "recipe": cal["recipe_text"],
        "calibrate": {k: cal.get(k) for k in ("fakequant_vs_fp_psnr_db", "ops", "seconds", "holdout")},
        "quality": _quality(psnr),
        "notes": [n for n in (fq_note,) if n],
        "stage_seconds": {},
        "per_image": per,
        "seconds": 0.0,
    }
    t = time.time()
    if report:
        bar = st.bar("report", 1)
        _write_summary(out, summary, st, t_start)
        from reports.html_report import build_report

        build_report(out)
        bar.update(1)
        bar.close()
        st.times["report"] = time.time() - t
    _write_summary(out, summary, st, t_start)
    return summary


def _quality(psnr: dict) -> dict:
    """The quality verdict shown next to the bit-exactness verdict (Δ to FP and to bicubic, on intsim)."""
    from calib.quality import verdict

    v = verdict(psnr.get("float"), psnr.get("intsim"), psnr.get("bicubic"))
    return {"level": v.level, "ok": v.ok, "text": v.text}


def _write_summary(out: Path, summary: dict, st: _Stages, t_start: float) -> None:
    summary["stage_seconds"] = {k: round(v, 2) for k, v in st.times.items()}
    summary["seconds"] = round(time.time() - t_start, 2)
    atomic_write_json(out / "summary.json", summary)


def result_table(summary: dict) -> str:
    """The short table printed at the end of ``intsim demo``."""
    ps = summary["psnr_db"]

    def f(v):
        return "   —  " if v is None else f"{v:6.2f}"

    lines = [f"{summary['model']} ×{summary['scale']} {summary['bits']} (code bits {summary['code_bits']}), "
             f"{summary['images']} image(s), {summary['seconds']:.1f} s",
             "  Y-PSNR [dB]  bicubic  float  fake-quant  golden  intsim",
             f"               {f(ps.get('bicubic'))} {f(ps.get('float'))}   {f(ps.get('fake_quant'))}   "
             f"{f(ps.get('golden'))} {f(ps.get('intsim'))}",
             f"  {(summary.get('quality') or {}).get('text', 'quality: not measured')}",
             f"  bit-exact: {'yes' if summary['bit_exact'] else 'NO'} ({summary['mismatches']} mismatches); "
             f"cost on {summary['cost_summary']['accelerator']}: {summary['cost_summary']['energy_uj']:.1f} µJ, "
             f"{summary['cost_summary']['latency_ms']:.3f} ms per image"]
    return "\n".join(lines)
