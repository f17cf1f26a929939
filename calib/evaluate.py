"""Evaluate an artifact on the SR benchmarks (Y-PSNR / Y-SSIM, the protocol of the shared README).

:func:`run_eval` runs one of four models on the LR images of Set5 / Set14 / B100-68 /
Urban100, or of a folder of HR images (LR by the project's MATLAB-compatible bicubic), and scores
the uint8 SR output against the HR with :mod:`calib.metrics` (Y of MATLAB ``rgb2ycbcr``,
``scale`` border pixels cropped, SSIM 11×11 σ 1.5):

* ``intsim`` — the integer engine (:func:`intsim.engine.run`);
* ``golden`` — the float64 fake-quant reference (:func:`golden.executor.run_golden`); bit-identical
  to ``intsim`` by construction, and slower;
* ``fakequant`` — the float32 fake-quant model with the *unsnapped* learned quantizer parameters
  (docs/arithmetic.md, the "third model"), rebuilt from the artifact's metadata: the float model is
  reloaded from ``metadata.source`` (zoo name, scale, checkpoint — or a user model's spec and source
  file, :mod:`calib.models.user`, re-imported when its sha256 is the recorded one; its state dict must match the
  recorded ``state_dict_sha256``), traced again, and every conv (per call, so shared modules get
  their own quantizers) fake-quantizes its input with the recorded two-region quantizer and its
  weight with the recorded weight quantizer (``metadata.layers[op].act`` / ``.weight``);
  ``float`` is its deprecated name (``demo`` and ``report`` call the *unquantized* model "float");
* ``fp`` — that unquantized float model itself, reloaded the same way and run as
  :mod:`calib.fp_eval` runs it (its own pre/post-processing on the LR image).

With ``baselines`` the FP model and the bicubic upsampling (:func:`calib.bicubic.bicubic_upsample_rounded`)
are scored on the same images, beside the result.

Inputs: every engine reads the same uint8 image the artifact takes — the LR RGB image, or for a
Y-channel artifact (1 input channel) the Y plane of the model's own preprocessing rounded to
uint8 (FSRCNN: Y of the LR; VDSR: Y of the MATLAB-bicubic-upsampled LR). The fakequant engine turns
it into ``pixel·rgb_range/255`` as the artifact's ``image_in`` does.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

DATASETS = ("Set5", "Set14", "B100", "Urban100")
ENGINES = ("intsim", "golden", "fakequant", "fp")
#: old engine names: "float" meant the fake-quant model, which the demo and the report call "fake_quant"
ENGINE_ALIASES = {"float": "fakequant"}


class RebuildError(ValueError):
    """The float model or its fake-quant form cannot be rebuilt from the artifact's metadata."""


def resolve_engine(name: str) -> tuple[str, str | None]:
    """``(engine, notice)`` for an engine name as users write it; ``notice`` is the one-line deprecation
    notice of an old name, else ``None``. Unknown names raise :class:`ValueError`."""
    if name in ENGINE_ALIASES:
        new = ENGINE_ALIASES[name]
        return new, (f"--engine {name} is deprecated: it is the float32 fake-quant model, now --engine {new} "
                     "(--engine fp is the unquantized float model)")
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    return name, None


# --------------------------------------------------------------------------- inputs


def artifact_input(art, lr: np.ndarray) -> np.ndarray:
    """The uint8 H×W×C image the artifact takes for the LR image ``lr`` (see the module doc)."""
    from calib.models.zoo import _as_rgb_uint8

    c = art.tensors[art.inputs[0]].channels
    if c == 3:
        return _as_rgb_uint8(lr)
    if c != 1:
        raise ValueError(f"artifact input has {c} channels (expected 1 or 3)")
    entry = _zoo_entry(art)
    scale = int(art.model.get("scale", 1))
    if entry is not None and entry.color == "y":
        return entry.y_plane_uint8(lr, scale)[:, :, None]
    from calib.metrics import rgb2y

    return np.clip(np.floor(rgb2y(_as_rgb_uint8(lr)) + 0.5), 0, 255).astype(np.uint8)[:, :, None]


def _zoo_entry(art):
    from calib.models.zoo import MODELS

    name = (art.metadata.get("source") or {}).get("model") or art.model.get("name")
    return MODELS.get(str(name).lower().replace("-", "_")) if name else None


def model_scale(art) -> int:
    """The artifact's ``model.scale``, checked: it picks the benchmark LR and the cropped border."""
    if art.model.get("scale") is None:
        raise RebuildError("the artifact records no model.scale; cannot pick the benchmark LR")
    return _meta(art.model, "scale", "model", "small")


# --------------------------------------------------------------------------- float fake-quant


def _finite(v) -> bool:
    try:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    except OverflowError:  # an integer beyond float range
        return False


_KINDS = {
    "number": (_finite, "a finite number"),
    "positive": (lambda v: _finite(v) and v > 0, "a finite positive number"),
    "small": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 32, "an integer in 1..32"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
}


def _meta(j, key: str, what: str, kind: str, default=None):
    """``j[key]`` of the artifact's metadata (``default`` when absent and given) if it is of ``kind``, else a
    :class:`RebuildError` naming the key: the metadata is free-form to the engine, so the evaluator checks
    what it reads (``1e999``, ``null`` or a string would otherwise fail deep inside torch)."""
    if not isinstance(j, dict):
        raise RebuildError(f"{what} must be an object, got {type(j).__name__}")
    if key not in j and default is not None:
        return default
    ok, text = _KINDS[kind]
    v = j.get(key)
    if isinstance(v, list) and kind == "positive" and v and all(ok(x) for x in v):
        return v  # per-channel weight scales
    if not ok(v):
        raise RebuildError(f"{what}.{key} must be {text}, got {type(v).__name__} {str(v)[:40]}")
    return v


def _act_spec(j: dict, what: str = "metadata.layers[…].act"):
    from calib.quant.two_region import TwoRegionSpec

    l, u, bp = (float(_meta(j, k, what, "number")) for k in ("l", "u", "bp"))
    allocation = _meta(j, "allocation", what, "str", "released")
    counts = j.get("region_counts") if allocation == "budgeted" else None
    if counts is not None and l >= 0:
        counts = None  # one-sided: the recorded counts are the folded ones; the allocation default applies
    if counts is not None and not (isinstance(counts, list) and len(counts) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 1 << 16 for c in counts)):
        raise RebuildError(f"{what}.region_counts must be three non-negative integers")
    return TwoRegionSpec(l, u, bp, _meta(j, "bits", what, "small"), allocation,
                         tuple(counts) if counts is not None else None)


def _weight_spec(j: dict, what: str = "metadata.layers[…].weight"):
    from calib.quant.weight import WeightQuantSpec

    sc = _meta(j, "scale", what, "positive")
    scale = tuple(float(v) for v in sc) if isinstance(sc, list) else (float(sc),)
    per_channel = j.get("per_channel", False)
    channel_dim = j.get("channel_dim", 0)
    full_range = j.get("full_range", False)
    if not isinstance(per_channel, bool) or not isinstance(full_range, bool) or channel_dim not in (0, 1):
        raise RebuildError(f"{what}.per_channel and .full_range must be true or false and .channel_dim 0 or 1")
    return WeightQuantSpec(_meta(j, "bits", what, "small"), scale, per_channel, channel_dim, full_range)


def _artifact_weight(art, op, meta: dict, weight):
    """The conv's fake-quant float32 weight (torch layout): the artifact's integer weights (learned rounding
    included) times the *unsnapped* weight scale of the layer's metadata."""
    import torch

    what = f"metadata.layers[{meta.get('module')!r}]" if isinstance(meta, dict) else "metadata.layers"
    spec = _weight_spec(_meta(meta, "weight", what, "dict"), f"{what}.weight")
    if op is None or "weight" not in op.arrays:
        raise RebuildError(f"the artifact has no weight array for layer {meta.get('module')!r}")
    w_int = torch.from_numpy(art.array(op, "weight").astype(np.int64)).permute(0, 3, 1, 2)  # OHWI → OIHW
    if op.op == "conv_transpose2d":
        w_int = w_int.permute(1, 0, 2, 3)  # export's [Co, Ci, kh, kw] → torch's [Ci, Co, kh, kw]
    if _meta(meta, "post_scale", what, "number", 1.0) < 0:
        w_int = -w_int  # export negates the integers for a negative folded constant
    if tuple(w_int.shape) != tuple(weight.shape):
        raise RebuildError(f"the artifact's weight {list(w_int.shape)} does not match the model's "
                           f"{list(weight.shape)} for layer {meta.get('module')!r}")
    w = weight.detach().double()
    return (w_int.double() * spec.scale_tensor(w)).float()


def _load_local_model(art, src: dict):
    """``(entry, model, scale)`` of a model calibrate builds itself (``calib.cli_calibrate.LOCAL_MODELS``, e.g.
    the embedded tiny_sr once ``reports.demo.register_tiny_sr`` ran), from the recorded checkpoint or the
    model's registered one (``LOCAL_WEIGHTS``), checked against the exported state dict; ``None`` when the
    model is not such a model. The entry carries what :func:`calib.fp_eval.super_resolve` reads (RGB input,
    the network's value range)."""
    from calib.model_build import LOCAL_MODELS, LOCAL_WEIGHTS, build_model
    from calib.export import state_dict_fingerprint
    from calib.models.zoo import ModelEntry

    name = src["model"]
    if name not in LOCAL_MODELS:
        return None
    scale = _meta(src, "scale", "metadata.source", "small") if src.get("scale") is not None else model_scale(art)
    ck = _meta(src, "checkpoint", "metadata.source", "str") if src.get("checkpoint") is not None else None
    candidates = [Path(p) for p in (ck, LOCAL_WEIGHTS.get(name)) if p is not None and Path(p).is_file()]
    if not candidates:
        raise RebuildError(f"no checkpoint for {name} ×{scale} found (recorded {ck!r}); the float model cannot be "
                           "rebuilt")
    want, tried = src.get("state_dict_sha256"), []
    for p in dict.fromkeys(candidates):
        try:
            model, rgb_range, channels = build_model(name, scale, str(p), 0)
        except ValueError as e:
            tried.append(f"{p} ({e})")
            continue
        if want and state_dict_fingerprint(model) != want:
            tried.append(f"{p} (state dict differs from the exported model's)")
            continue
        entry = ModelEntry(name=name, description="built by calibrate", scales=LOCAL_MODELS[name][2],
                           module="edsr", build_fn="build", load_fn="load", rgb_range=rgb_range)
        return entry, model.eval(), scale
    raise RebuildError(f"none of the checkpoints matches the exported float model: {'; '.join(tried)}")


def _load_float_model(art, data_root=None):
    from calib.export import state_dict_fingerprint
    from calib.models.zoo import get_model

    src = art.metadata.get("source")
    if not isinstance(src, dict) or not src.get("model"):
        raise RebuildError("the artifact records no float-model source (metadata.source.model); it was exported "
                           "before sources were recorded — re-export it to evaluate the float and fake-quant models")
    if src.get("kind") is not None:  # your own model (calib/models/user.py): re-imported from its recorded source
        return _load_user_model(src)
    try:
        entry = get_model(_meta(src, "model", "metadata.source", "str"))
    except KeyError as e:
        local = _load_local_model(art, src)
        if local is not None:
            return local
        raise RebuildError(f"the artifact's model {src['model']!r} is not in the model zoo: {e.args[0]}") from None
    scale = _meta(src, "scale", "metadata.source", "small") if src.get("scale") is not None else model_scale(art)
    want = src.get("state_dict_sha256")
    candidates: list[Path] = []
    ck = _meta(src, "checkpoint", "metadata.source", "str") if src.get("checkpoint") is not None else None
    if ck and Path(ck).is_file():
        candidates.append(Path(ck))
    rel = entry.checkpoints.get(scale)
    if rel:
        from calib.data_root import data_root as _dr

        root = Path(data_root) if data_root is not None else _dr()
        if (root / rel).is_file():
            candidates.append(root / rel)
    if not candidates:
        raise RebuildError(f"no checkpoint for {entry.name} ×{scale} found (recorded {ck!r}, default {rel!r} under "
                           f"the data root); the float model cannot be rebuilt")
    tried = []
    for p in candidates:
        if src.get("checkpoint_sha256") and Path(p) == Path(ck or ""):
            from calib.models.zoo import sha256_file

            if sha256_file(p) != src["checkpoint_sha256"]:
                tried.append(f"{p} (file sha256 differs from the recorded one)")
                continue
        model = entry.load(p, scale).eval()
        if want and state_dict_fingerprint(model) != want:
            tried.append(f"{p} (state dict differs from the exported model's)")
            continue
        return entry, model, scale
    raise RebuildError(f"none of the checkpoints matches the exported float model: {'; '.join(tried)}")


def _load_user_model(src: dict):
    """A user model rebuilt from its recorded spec (:func:`calib.models.user.rebuild`: the source file's sha256
    and the checkpoint's are checked) whose state dict must be the exported one's."""
    from calib.export import state_dict_fingerprint
    from calib.models.user import rebuild

    try:
        entry, model, scale = rebuild(src)
    except ValueError as e:  # ModelSpecError, CheckpointError: one line each
        raise RebuildError(" ".join(str(e).split())) from None
    want = src.get("state_dict_sha256")
    if want and state_dict_fingerprint(model) != want:
        raise RebuildError(f"the rebuilt {src.get('model')} ×{scale} has another state dict than the exported model "
                           "(its factory or checkpoint is not the one calibrated)")
    return entry, model, scale


class FloatFakeQuant:
    """The float32 fake-quant model of an artifact (unsnapped learned parameters)."""

    def __init__(self, art, data_root=None):
        import torch
        import torch.fx as fx

        from calib.graph import capture

        entry, model, scale = _load_float_model(art, data_root)
        cap = _meta(art.metadata, "capture", "metadata", "dict", {})
        self.rgb_range = float(_meta(cap, "rgb_range", "metadata.capture", "positive", entry.rgb_range))
        concrete = cap.get("concrete_args") or None
        if concrete is not None and not isinstance(concrete, dict):
            raise RebuildError("metadata.capture.concrete_args must be an object")
        g = capture(model, rgb_range=self.rgb_range, in_channels=_meta(cap, "in_channels", "metadata.capture",
                                                                       "small", entry.in_channels),
                    concrete_args=concrete)
        layers = _meta(art.metadata, "layers", "metadata", "dict", {})
        convs = g.convs()
        missing = [c.name for c in convs if c.name not in layers]
        if missing or len(convs) != len(layers):
            raise RebuildError(f"the re-traced model's convs do not match the artifact's layers (missing "
                               f"{missing[:4]}, {len(convs)} convs vs {len(layers)} layers)")
        self.graph = g
        self.quant = {}
        ops = {op.name: op for op in art.ops}
        for c in convs:
            meta = _meta(layers, c.name, "metadata.layers", "dict")
            mod = g.gm.get_submodule(c.module)
            wq = _artifact_weight(art, ops.get(c.name), meta, mod.weight)
            bias = mod.bias
            if "bias_learned" in meta:
                b = meta["bias_learned"]
                if not (isinstance(b, list) and all(_finite(v) for v in b) and mod.bias is not None
                        and len(b) == mod.bias.numel()):
                    raise RebuildError(f"metadata.layers[{c.name!r}].bias_learned must list one finite number per "
                                       "output channel")
                bias = torch.tensor(b, dtype=torch.float32)
            what = f"metadata.layers[{c.name!r}]"
            self.quant[c.call_node] = (c.op, _act_spec(_meta(meta, "act", what, "dict"), f"{what}.act"), wq, mod, bias)
        quant = self.quant

        class _Interp(fx.Interpreter):
            def call_module(self, target, args, kwargs):
                return super().call_module(target, args, kwargs)

            def run_node(self, n):
                q = quant.get(n.name)
                if q is None:
                    return super().run_node(n)
                import torch.nn.functional as F

                args, _ = self.fetch_args_kwargs_from_env(n)
                op, act, wq, m, bias = q
                x = act.fake_quant(args[0])
                if op == "conv2d":
                    from calib.quant.fakequant import conv2d_padded

                    return conv2d_padded(x, wq, bias, m)
                return F.conv_transpose2d(x, wq, bias, m.stride, m.padding, m.output_padding, m.groups,
                                          m.dilation)

        self._interp = _Interp

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 H×W×C (the artifact's input) → uint8 H×W×C output."""
        import torch

        from calib.metrics import to_uint8

        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))[None].astype(np.float32))
        x = x * (self.rgb_range / 255.0)
        with torch.no_grad():
            y = self._interp(self.graph.gm).run(x, *self.graph.extra_inputs)
        a = y[0].double().numpy().transpose(1, 2, 0) * (255.0 / self.rgb_range)
        return to_uint8(a)


class FloatModel:
    """The unquantized float model the artifact was exported from (the checkpoint whose state dict it
    recorded), run as :func:`calib.fp_eval.super_resolve` runs it: on the LR image, with the model's own
    pre/post-processing, so its scores are :func:`calib.fp_eval.evaluate_fp`'s."""

    def __init__(self, art, data_root=None):
        self.entry, self.model, self.scale = _load_float_model(art, data_root)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        from calib.fp_eval import super_resolve

        return super_resolve(self.entry, self.model, lr, self.scale)


# --------------------------------------------------------------------------- evaluation


def make_runner(art, engine: str, data_root=None):
    """A function uint8 RGB LR image → uint8 SR image (H×W×C, or H×W Y for ``fp`` of a Y model) for ``engine``."""
    if engine == "intsim":
        from intsim.engine import run

        return lambda lr: run(art, artifact_input(art, lr), keep_tensors=False).tensors[art.outputs[0]]
    if engine == "golden":
        from golden.executor import run_golden

        return lambda lr: run_golden(art, artifact_input(art, lr), keep_tensors=False).tensors[art.outputs[0]]
    if engine == "fakequant":
        fq = FloatFakeQuant(art, data_root)
        return lambda lr: fq(artifact_input(art, lr))
    if engine == "fp":
        return FloatModel(art, data_root)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def baseline_runners(art, engine: str, scale: int, data_root=None) -> tuple[dict, dict]:
    """``(runners, unavailable)``: the FP and bicubic baselines as :func:`make_runner` functions, and for a
    baseline that cannot run, why. FP needs the artifact's recorded source and a checkpoint with its state dict;
    without them eval still reports the quantized result, and says why FP is missing."""
    from calib.bicubic import bicubic_upsample_rounded

    runners, unavailable = {}, {}
    if engine == "fp":
        runners["fp"] = None  # the evaluated model is the FP model: its own scores, not a second run
    else:
        try:
            runners["fp"] = make_runner(art, "fp", data_root)
        except (ImportError, OSError, RuntimeError, ValueError) as e:  # torch.load's errors included
            unavailable["fp"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    runners["bicubic"] = lambda lr: bicubic_upsample_rounded(lr, scale)
    return runners, unavailable


def open_datasets(names: list[str], scale: int, data_root=None) -> list:
    """The image sets ``names`` name: a benchmark (Set5, Set14, B100, Urban100, under the data root) or a
    folder — in the benchmark layout (``HR/`` + ``LR_bicubic/``) or of HR images only, whose LR is made with
    the project's MATLAB-compatible bicubic (:func:`calib.datasets.hr_folder`). Every name is checked before
    any folder is listed, so a typo costs nothing; a set named twice is evaluated once."""
    from calib.datasets import BENCHMARKS, BenchmarkFolder, benchmark, benchmark_key, hr_folder

    picked: list[tuple[str, str]] = []
    for name in names:
        try:
            which = ("benchmark", benchmark_key(name))
        except KeyError:
            if not Path(name).is_dir():
                known = ", ".join(v[0] for v in BENCHMARKS.values())
                raise ValueError(f"unknown benchmark {name!r} and no folder of that name; known: {known}, or a "
                                 "folder of HR images") from None
            which = ("folder", str(Path(name).resolve()))
        if which not in picked:
            picked.append(which)
    sets = []
    for kind, key in picked:
        if kind == "benchmark":
            sets.append(benchmark(key, scale, root=data_root))
        elif (Path(key) / "HR").is_dir():
            sets.append(BenchmarkFolder(key, scale))
        else:
            sets.append(hr_folder(key, scale))
    return sets


def _plane(sr: np.ndarray) -> np.ndarray:
    return sr[:, :, 0] if sr.ndim == 3 and sr.shape[2] == 1 else sr


def _eval_set(ds, n: int, crop: int | None, runner, baselines: dict | None, bar) -> dict:
    """Scores of ``runner`` (and of each baseline runner) on the first ``n`` images of ``ds``."""
    from calib.metrics import psnr_y, ssim_y

    scale = ds.scale
    rows = []
    for i in range(n):
        pair = ds[i]
        lr, hr = pair.lr, pair.hr
        if crop is not None:
            lr = lr[:crop, :crop]
            hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
        t0 = time.time()
        sr = _plane(runner(lr))
        dt = time.time() - t0
        p, s = float(psnr_y(sr, hr, scale)), float(ssim_y(sr, hr, scale))
        digest = hashlib.sha256(np.ascontiguousarray(sr, dtype=np.uint8).tobytes()).hexdigest()
        row = {"image": pair.name, "psnr": p, "ssim": s, "lr_shape": list(lr.shape[:2]), "seconds": round(dt, 3),
               "sr_sha256": digest}
        if baselines is not None:
            row["baselines"] = {}
            for k, f in baselines.items():
                b = None if f is None else _plane(f(lr))
                row["baselines"][k] = ({"psnr": p, "ssim": s} if b is None else
                                       {"psnr": float(psnr_y(b, hr, scale)), "ssim": float(ssim_y(b, hr, scale))})
        rows.append(row)
        if bar is not None:
            bar.set_postfix(psnr=f"{p:.2f}")
            bar.update(1)
    return {"psnr": _finite_mean([r["psnr"] for r in rows]), "ssim": _finite_mean([r["ssim"] for r in rows]),
            "n": len(rows),
            "lr_source": "official LR_bicubic" if getattr(ds, "official_lr", False) else "MATLAB-compatible bicubic",
            "images": rows}


def _finite_mean(v: list[float]) -> float | None:
    f = [x for x in v if math.isfinite(x)]
    return float(sum(f) / len(f)) if f else None


def run_eval(artifact_path: str, datasets: list[str], engine: str = "intsim", data_root=None, progress: bool = True,
             limit: int | None = None, crop: int | None = None, baselines: bool = False) -> dict:
    """PSNR/SSIM (Y, shared README protocol) of an artifact on benchmark sets; JSON-able dict.

    ``datasets``: names among Set5, Set14, B100 (the 68-image subset, reported as "B100-68"),
    Urban100, or folders (:func:`open_datasets`). ``engine``: 'intsim', 'golden', 'fakequant' or 'fp'
    (module doc; 'float' is a deprecated alias of 'fakequant'). ``limit``: at most this many
    images per set (in file order). ``crop``: evaluate only the top-left ``crop``×``crop`` LR
    region (and the matching HR region) — for quick tests; ``None`` = full images. ``baselines``: score the
    FP model and bicubic upsampling on the same images too (:func:`baseline_runners`).

    Returns ``{"artifact", "artifact_sha256", "model", "scale", "bits", "realization", "engine",
    "datasets": {display name: {"psnr", "ssim", "n", "lr_source", "images": [{"image", "psnr",
    "ssim", "lr_shape", "seconds", "sr_sha256"}]}}, "seconds"}``; ``sr_sha256`` is the hash of the
    uint8 SR output, so two engines' outputs can be compared bit for bit. With ``baselines`` every set and
    image also has ``"baselines": {"fp": {"psnr", "ssim"}, "bicubic": {...}}``, a set's FP entry being
    ``{"unavailable": reason}`` when the FP model cannot run.
    """
    import warnings

    from intsim.artifact import load_artifact

    engine, notice = resolve_engine(engine)
    if notice:
        warnings.warn(notice, DeprecationWarning, stacklevel=2)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    art = load_artifact(artifact_path)
    try:
        scale = model_scale(art)
    except ValueError as e:
        raise RebuildError(f"{artifact_path}: {e}") from None
    sets = open_datasets(datasets, scale, data_root)  # before any model is built: a typo costs nothing
    try:
        runner = make_runner(art, engine, data_root)
    except ValueError as e:  # metadata the evaluator cannot use (RebuildError, a quantizer spec refused)
        raise RebuildError(f"{artifact_path}: {e}") from None
    base, unavailable = baseline_runners(art, engine, scale, data_root) if baselines else (None, {})
    t_all = time.time()
    out = {"artifact": str(artifact_path), "artifact_sha256": art.sha256, "model": art.model.get("name"),
           "scale": scale, "bits": art.model.get("bits"), "realization": art.numerics.realization,
           "rounding": art.numerics.rounding, "engine": engine, "crop": crop, "limit": limit,
           "protocol": "Y (MATLAB rgb2ycbcr), scale-pixel border cropped, SR rounded to uint8; SSIM 11x11 gaussian "
                       "sigma 1.5", "datasets": {}}
    for ds in sets:
        n = len(ds) if limit is None else min(limit, len(ds))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"{ds.display_name} ×{scale} [{engine}]", unit="img")
        res = _eval_set(ds, n, crop, runner, base, bar)
        if bar is not None:
            bar.close()
        if base is not None:
            res["baselines"] = {k: {m: _finite_mean([r["baselines"][k][m] for r in res["images"]])
                                    for m in ("psnr", "ssim")} for k in base}
            res["baselines"].update({k: {"unavailable": why} for k, why in unavailable.items()})
        # two folders of the same name stay apart under their paths
        key = ds.display_name if ds.display_name not in out["datasets"] else str(ds.folder)
        out["datasets"][key] = res
    out["seconds"] = round(time.time() - t_all, 2)
    return out


def main(argv=None) -> int:  # pragma: no cover - thin wrapper; `intsim eval` is the user-facing command
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Y-PSNR/SSIM of an artifact on SR benchmarks")
    ap.add_argument("artifact")
    ap.add_argument("--datasets", default="Set5")
    ap.add_argument("--engine", default="intsim", choices=ENGINES + tuple(ENGINE_ALIASES))
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    res = run_eval(a.artifact, [d for d in a.datasets.split(",") if d], a.engine, a.data_root, True, a.limit, a.crop)
    text = json.dumps(res, indent=1)
    if a.out:
        from intsim.artifact import atomic_write_bytes

        atomic_write_bytes(a.out, text.encode("utf-8"))
    for k, v in res["datasets"].items():
        print(f"{k}: PSNR {v['psnr']:.3f} dB  SSIM {v['ssim']:.4f}  ({v['n']} images, {res['engine']})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
