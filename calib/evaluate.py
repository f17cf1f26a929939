"""Evaluate an artifact on the SR benchmarks (Y-PSNR / Y-SSIM, the protocol of the shared README).

:func:`run_eval` runs one of three models on the LR images of Set5 / Set14 / B100-68 /
Urban100 and scores the uint8 SR output against the HR with :mod:`reports.metrics`
(Y of MATLAB ``rgb2ycbcr``, ``scale`` border pixels cropped, SSIM 11×11 σ 1.5):

* ``intsim`` — the integer engine (:func:`intsim.engine.run`);
* ``golden`` — the float64 fake-quant reference (:func:`golden.executor.run_golden`); bit-identical
  to ``intsim`` by construction, and slower;
* ``float`` — the float32 fake-quant model with the *unsnapped* learned quantizer parameters
  (docs/arithmetic.md, the "third model"), rebuilt from the artifact's metadata: the float model is
  reloaded from ``metadata.source`` (zoo name, scale, checkpoint; its state dict must match the
  recorded ``state_dict_sha256``), traced again, and every conv (per call, so shared modules get
  their own quantizers) fake-quantizes its input with the recorded two-region quantizer and its
  weight with the recorded weight quantizer (``metadata.layers[op].act`` / ``.weight``).

Inputs: every engine reads the same uint8 image the artifact takes — the LR RGB image, or for a
Y-channel artifact (1 input channel) the Y plane of the model's own preprocessing rounded to
uint8 (FSRCNN: Y of the LR; VDSR: Y of the MATLAB-bicubic-upsampled LR). The float engine turns
it into ``pixel·rgb_range/255`` as the artifact's ``image_in`` does.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

DATASETS = ("Set5", "Set14", "B100", "Urban100")
ENGINES = ("intsim", "golden", "float")


class RebuildError(ValueError):
    """The float fake-quant model cannot be rebuilt from the artifact's metadata."""


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
    from reports.metrics import rgb2y

    return np.clip(np.floor(rgb2y(_as_rgb_uint8(lr)) + 0.5), 0, 255).astype(np.uint8)[:, :, None]


def _zoo_entry(art):
    from calib.models.zoo import MODELS

    name = (art.metadata.get("source") or {}).get("model") or art.model.get("name")
    return MODELS.get(str(name).lower().replace("-", "_")) if name else None


# --------------------------------------------------------------------------- float fake-quant


def _act_spec(j: dict):
    from calib.quant.two_region import TwoRegionSpec

    counts = j.get("region_counts") if j.get("allocation") == "budgeted" else None
    if counts is not None and j.get("l", 0.0) >= 0:
        counts = None  # one-sided: the recorded counts are the folded ones; the allocation default applies
    return TwoRegionSpec(float(j["l"]), float(j["u"]), float(j["bp"]), int(j["bits"]), j.get("allocation", "released"),
                         tuple(counts) if counts is not None else None)


def _weight_spec(j: dict):
    from calib.quant.weight import WeightQuantSpec

    sc = j["scale"]
    scale = tuple(float(v) for v in sc) if isinstance(sc, (list, tuple)) else (float(sc),)
    return WeightQuantSpec(int(j["bits"]), scale, bool(j.get("per_channel", False)), int(j.get("channel_dim", 0)))


def _artifact_weight(art, op, meta: dict, weight):
    """The conv's fake-quant float32 weight (torch layout): the artifact's integer weights (learned rounding
    included) times the *unsnapped* weight scale of the layer's metadata."""
    import torch

    spec = _weight_spec(meta["weight"])
    if op is None or "weight" not in op.arrays:
        raise RebuildError(f"the artifact has no weight array for layer {meta.get('module')!r}")
    w_int = torch.from_numpy(art.array(op, "weight").astype(np.int64)).permute(0, 3, 1, 2)  # OHWI → OIHW
    if op.op == "conv_transpose2d":
        w_int = w_int.permute(1, 0, 2, 3)  # export's [Co, Ci, kh, kw] → torch's [Ci, Co, kh, kw]
    if float(meta.get("post_scale", 1.0)) < 0:
        w_int = -w_int  # export negates the integers for a negative folded constant
    if tuple(w_int.shape) != tuple(weight.shape):
        raise RebuildError(f"the artifact's weight {list(w_int.shape)} does not match the model's "
                           f"{list(weight.shape)} for layer {meta.get('module')!r}")
    w = weight.detach().double()
    return (w_int.double() * spec.scale_tensor(w)).float()


def _load_float_model(art, data_root=None):
    from calib.export import state_dict_fingerprint
    from calib.models.zoo import get_model

    src = art.metadata.get("source")
    if not isinstance(src, dict) or not src.get("model"):
        raise RebuildError("the artifact records no float-model source (metadata.source.model); it was exported "
                           "before sources were recorded — re-export it to evaluate the float fake-quant model")
    try:
        entry = get_model(src["model"])
    except KeyError as e:
        raise RebuildError(f"the artifact's model {src['model']!r} is not in the model zoo: {e}") from None
    scale = int(src.get("scale") or art.model.get("scale"))
    want = src.get("state_dict_sha256")
    candidates: list[Path] = []
    ck = src.get("checkpoint")
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
                           f"the data root); the float fake-quant model cannot be rebuilt")
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


class FloatFakeQuant:
    """The float32 fake-quant model of an artifact (unsnapped learned parameters)."""

    def __init__(self, art, data_root=None):
        import torch
        import torch.fx as fx

        from calib.graph import capture

        entry, model, scale = _load_float_model(art, data_root)
        cap = art.metadata.get("capture", {})
        self.rgb_range = float(cap.get("rgb_range", entry.rgb_range))
        g = capture(model, rgb_range=self.rgb_range, in_channels=int(cap.get("in_channels", entry.in_channels)),
                    concrete_args=cap.get("concrete_args") or None)
        layers = art.metadata.get("layers", {})
        convs = g.convs()
        missing = [c.name for c in convs if c.name not in layers]
        if missing or len(convs) != len(layers):
            raise RebuildError(f"the re-traced model's convs do not match the artifact's layers (missing "
                               f"{missing[:4]}, {len(convs)} convs vs {len(layers)} layers)")
        self.graph = g
        self.quant = {}
        ops = {op.name: op for op in art.ops}
        for c in convs:
            meta = layers[c.name]
            mod = g.gm.get_submodule(c.module)
            wq = _artifact_weight(art, ops.get(c.name), meta, mod.weight)
            bias = (torch.tensor(meta["bias_learned"], dtype=torch.float32) if "bias_learned" in meta
                    else mod.bias)
            self.quant[c.call_node] = (c.op, _act_spec(meta["act"]), wq, mod, bias)
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
                    return F.conv2d(x, wq, bias, m.stride, m.padding, m.dilation, m.groups)
                return F.conv_transpose2d(x, wq, bias, m.stride, m.padding, m.output_padding, m.groups,
                                          m.dilation)

        self._interp = _Interp

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 H×W×C (the artifact's input) → uint8 H×W×C output."""
        import torch

        from reports.metrics import to_uint8

        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))[None].astype(np.float32))
        x = x * (self.rgb_range / 255.0)
        with torch.no_grad():
            y = self._interp(self.graph.gm).run(x, *self.graph.extra_inputs)
        a = y[0].double().numpy().transpose(1, 2, 0) * (255.0 / self.rgb_range)
        return to_uint8(a)


# --------------------------------------------------------------------------- evaluation


def make_runner(art, engine: str, data_root=None):
    """A function uint8 artifact input → uint8 H×W×C output for ``engine``."""
    if engine == "intsim":
        from intsim.engine import run

        return lambda img: run(art, img, keep_tensors=False).tensors[art.outputs[0]]
    if engine == "golden":
        from golden.executor import run_golden

        return lambda img: run_golden(art, img, keep_tensors=False).tensors[art.outputs[0]]
    if engine == "float":
        return FloatFakeQuant(art, data_root)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def _finite_mean(v: list[float]) -> float | None:
    f = [x for x in v if math.isfinite(x)]
    return float(sum(f) / len(f)) if f else None


def run_eval(artifact_path: str, datasets: list[str], engine: str = "intsim", data_root=None, progress: bool = True,
             limit: int | None = None, crop: int | None = None) -> dict:
    """PSNR/SSIM (Y, shared README protocol) of an artifact on benchmark sets; JSON-able dict.

    ``datasets``: names among Set5, Set14, B100 (the 68-image subset, reported as "B100-68"),
    Urban100. ``engine``: 'intsim', 'golden' or 'float' (module doc). ``limit``: at most this many
    images per set (in file order). ``crop``: evaluate only the top-left ``crop``×``crop`` LR
    region (and the matching HR region) — for quick tests; ``None`` = full images.

    Returns ``{"artifact", "artifact_sha256", "model", "scale", "bits", "realization", "engine",
    "datasets": {display name: {"psnr", "ssim", "n", "lr_source", "images": [{"image", "psnr",
    "ssim", "lr_shape", "seconds", "sr_sha256"}]}}, "seconds"}``; ``sr_sha256`` is the hash of the
    uint8 SR output, so two engines' outputs can be compared bit for bit.
    """
    from calib.datasets import benchmark
    from intsim.artifact import load_artifact
    from reports.metrics import psnr_y, ssim_y

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    art = load_artifact(artifact_path)
    scale = art.model.get("scale")
    if scale is None:
        raise ValueError(f"{artifact_path}: the artifact records no model.scale; cannot pick the benchmark LR")
    scale = int(scale)
    runner = make_runner(art, engine, data_root)
    t_all = time.time()
    out = {"artifact": str(artifact_path), "artifact_sha256": art.sha256, "model": art.model.get("name"),
           "scale": scale, "bits": art.model.get("bits"), "realization": art.numerics.realization,
           "rounding": art.numerics.rounding, "engine": engine, "crop": crop, "limit": limit,
           "protocol": "Y (MATLAB rgb2ycbcr), scale-pixel border cropped, SR rounded to uint8; SSIM 11x11 gaussian "
                       "sigma 1.5", "datasets": {}}
    for ds_name in datasets:
        ds = benchmark(ds_name, scale, root=data_root)
        n = len(ds) if limit is None else min(limit, len(ds))
        rows = []
        it = range(n)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"{ds.display_name} ×{scale} [{engine}]", unit="img")
        for i in it:
            pair = ds[i]
            lr, hr = pair.lr, pair.hr
            if crop is not None:
                lr = lr[:crop, :crop]
                hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
            t0 = time.time()
            img = artifact_input(art, lr)
            sr = runner(img)
            sr = sr[:, :, 0] if sr.ndim == 3 and sr.shape[2] == 1 else sr
            dt = time.time() - t0
            p, s = psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)
            digest = hashlib.sha256(np.ascontiguousarray(sr, dtype=np.uint8).tobytes()).hexdigest()
            rows.append({"image": pair.name, "psnr": float(p), "ssim": float(s), "lr_shape": list(lr.shape[:2]),
                         "seconds": round(dt, 3), "sr_sha256": digest})
            if bar is not None:
                bar.set_postfix(psnr=f"{p:.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        out["datasets"][ds.display_name] = {
            "psnr": _finite_mean([r["psnr"] for r in rows]), "ssim": _finite_mean([r["ssim"] for r in rows]),
            "n": len(rows), "lr_source": "official LR_bicubic" if ds.official_lr else "MATLAB-compatible bicubic",
            "images": rows}
    out["seconds"] = round(time.time() - t_all, 2)
    return out


def main(argv=None) -> int:  # pragma: no cover - thin wrapper; `intsim eval` is the user-facing command
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Y-PSNR/SSIM of an artifact on SR benchmarks")
    ap.add_argument("artifact")
    ap.add_argument("--datasets", default="Set5")
    ap.add_argument("--engine", default="intsim", choices=ENGINES)
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
