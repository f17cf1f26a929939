"""``calibrate`` command: float checkpoint → calibrated, snapped artifact.

:func:`run_calibrate` is the library entry point the project CLI calls;
``python -m calib.cli_calibrate --help`` runs it stand-alone. Bad input raises
``ValueError`` with a one-line message.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from calib.calibrate import CALIB_LAYOUTS, calibration_layout, load_calibration_images, psnr
from calib.data_root import data_root
from calib.determinism import fixed_threads
from calib.export import export_artifact, model_source
from calib.graph import capture
from calib.model_build import (  # noqa: F401  (re-exported: the CLI's and the API's model building)
    LOCAL_MODELS,
    LOCAL_WEIGHTS,
    _zoo_entry,
    build_entry,
    build_model,
    known_models,
    resolve_weights,
)
from calib.models.user import UserModelEntry
from intsim.artifact import REALIZATIONS, Numerics
from intsim.overflow import OverflowPolicy
from intsim.rounding import RoundingMode

from calib.methods import METHODS, check_method  # noqa: E402  (minmax, percentile, omse, ptq4sr, 2dquant, ...)

PLANNED_METHODS: tuple[str, ...] = ()
#: Calibration patches on which the fake-quant model is compared with the float model for the summary.
SUMMARY_EVAL_PATCHES = 8


def parse_bits(bits: str) -> tuple[int, int]:
    """``'W4A4'`` → (4, 4); W and A in 2..16."""
    m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)", str(bits).strip())
    if not m:
        raise ValueError(f"bits must look like 'W4A4' (weights W, activations A), got {bits!r}")
    bw, ba = int(m.group(1)), int(m.group(2))
    for what, b in (("weight", bw), ("activation", ba)):
        if not 2 <= b <= 16:
            raise ValueError(f"{what} bits must be in 2..16, got {b} in {bits!r}")
    return bw, ba


def _layer_policy(policy, rec, policy_file, budget, net, graph, images, rgb_range, folder, is_lr, scale, seed, model,
                  candidate_bits, accel, say):
    """The layer policy of this run (recipe weight granularity, a TOML policy or a budget's allocation) and
    the mixed-precision plan (None without a budget)."""
    from dataclasses import replace

    if rec.per_channel:
        policy = replace(policy, per_channel_weights=True)
    if policy_file is not None:
        from calib.mixed_precision import read_policy

        policy = replace(policy, overrides={**policy.overrides,
                                            **read_policy(policy_file, [c.name for c in graph.convs()])})
        say(f"policy {policy_file}: {len(policy.overrides)} layer(s) with explicit bits")
        return policy, None
    if budget is None:
        return policy, None
    from calib.mixed_precision import plan

    say(f"mixed precision: measuring per-layer sensitivity and cost ({budget})")
    with fixed_threads():
        mixed = plan(net, graph, images, rgb_range, budget, candidate_bits=candidate_bits, accel=accel,
                     policy=policy, holdout=None if is_lr else (folder, scale, rec.n_images, seed),
                     model_name=model, log=say)
    return replace(policy, overrides={**policy.overrides, **{k: (b, b) for k, b in mixed["bits"].items()}}), mixed


def request_recipe(model, scale: int, bits: str, method: str | None = None, **recipe_settings):
    """The recipe ``calibrate`` resolves for this request (:func:`calib.recipe.resolve_recipe`): the
    method's, with the patch shrunk for a model that takes the upsampled image, and the choices that
    depend on the weight width of ``bits``. ``recipe_settings``: resolve_recipe's overrides."""
    from calib.recipe import resolve_recipe

    entry = _zoo_entry(model)
    return resolve_recipe(method, input_upscale=scale if entry is not None and entry.upsampled_input else 1,
                          weight_bits=parse_bits(bits)[0], **recipe_settings)


def _equalize(net, graph, images, rec, say) -> tuple[list, dict]:
    """Cross-layer equalization of the float model in place when the recipe asks for it (calib/equalize.py).
    Returns the rescaled pairs and what the artifact's source must record instead of the rescaled model's
    fingerprint: the checkpoint's own, which a rebuild loads."""
    if rec.equalize is None:
        return [], {}
    from calib.equalize import equalize
    from calib.export import state_dict_fingerprint

    fingerprint = state_dict_fingerprint(net)
    with fixed_threads():
        pairs = equalize(graph, images, rec.equalize)
    say(f"equalized {len(pairs)} conv pair(s) through ReLU-like activations (α {rec.equalize:g})")
    return pairs, ({"state_dict_sha256": fingerprint} if pairs else {})


def _record_equalized_biases(calib, graph, pairs) -> None:
    """An equalized producer's bias is no longer the checkpoint's: the artifact records it
    (``bias_learned``) so the fake-quant model rebuilt from the checkpoint stays exact."""
    for p in pairs:
        layer = calib.layers.get(p.producer)
        if layer is not None and layer.bias is None:
            bias = graph.gm.get_submodule(graph.node(p.producer).module).bias
            if bias is not None:
                layer.bias = bias.detach().clone()


def _checked_request(model: str, scale: int, bits: str, out: str | None, realization: str, policy_file, budget,
                     method: str | None, **recipe_settings):
    """The settings checked before anything is read: ``(weight bits, activation bits, resolved recipe)``."""
    if out is None:
        raise ValueError("an output artifact path is required")
    bw, ba = parse_bits(bits)
    if policy_file is not None and budget is not None:
        raise ValueError("give either a policy file or a budget, not both")
    if budget is not None:
        from calib.mixed_precision import parse_budget

        parse_budget(budget)  # refuse a malformed budget before any work
    rec = request_recipe(model, scale, bits, method, **recipe_settings)
    if realization not in ("split", "grid"):
        raise ValueError(f"realization must be 'split' or 'grid', got {realization!r}")
    if rec.n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {rec.n_images}")
    if rec.patch < 1:
        raise ValueError(f"patch must be >= 1, got {rec.patch}")
    return bw, ba, rec


def _resolve_inputs(model: str, scale: int, weights: str | None, random_init: bool, seed: int, out: str,
                    calib_data: str | None, calib_layout: str, state_dir: str | None):
    """Everything calibration reads, checked before any work: ``(weights, its stage line, calibration
    folder, whether it holds LR images, its stage line)``."""
    weights, weights_line = resolve_weights(model, scale, weights, random_init, seed)
    if weights is not None and Path(weights).exists() and Path(out).resolve() == Path(weights).resolve():
        raise ValueError(f"output {out} is the weights file itself; refusing to overwrite an input")
    folder = Path(calib_data) if calib_data else data_root() / "data" / "SunHays80"
    if not folder.is_dir():
        raise ValueError(f"calibration data folder {folder} does not exist (set INTSIM_DATA_ROOT or pass calib_data)")
    is_lr, layout_line = calibration_layout(folder, calib_layout, scale)
    if state_dir is not None:
        from calib.finetune import check_state_dir

        check_state_dir(Path(state_dir))  # a state that cannot be resumed is refused before any work
    return weights, weights_line, folder, is_lr, layout_line


def _finetune_config(finetune, seed: int, batch_size: int):
    """``finetune`` (None, a dict of :class:`calib.finetune.FinetuneConfig` fields, or one) → the config."""
    from calib.finetune import FinetuneConfig

    if finetune is None:
        return FinetuneConfig(seed=seed, batch_size=batch_size)
    if isinstance(finetune, dict):
        return FinetuneConfig(**{"seed": seed, "batch_size": batch_size, **finetune})
    return finetune


def _model_and_images(model, scale: int, weights: str | None, seed: int, folder: Path, is_lr: bool, rec,
                      stage_lines: list[str], say, io: dict):
    """The float model (eval), its entry, its input range, its captured graph and the calibration inputs; the
    stage lines are said once the model is built (a checkpoint it refuses stays the only line of output).
    ``io``: a user model's ``rgb_range`` / ``in_channels`` (:func:`build_entry`)."""
    net, entry, rgb_range, in_channels = build_entry(model, scale, weights, seed, **io)
    for line in stage_lines:
        say(line)
    if isinstance(entry, UserModelEntry):
        say(f"model: {entry.spec} ({entry.kind}), rgb_range {entry.rgb_range:g}, {in_channels} channel(s)")
    graph = capture(net, rgb_range=rgb_range, in_channels=in_channels)  # refuses unsupported ops by name
    images = load_calibration_images(folder, rec.n_images, rec.patch, scale, seed, rgb_range=rgb_range, lr=is_lr,
                                     stress=rec.stress)
    return net, entry, rgb_range, graph, to_model_inputs(entry if entry is not None else model, scale, images,
                                                         rgb_range)


def _accumulator_overruns(art, say) -> list[dict]:
    """Convs whose worst-case accumulator does not fit ``acc_bits`` (:func:`intsim.bounds.accumulator_overruns`,
    widest first); under overflow ``error`` one warning line says so now, not when ``intsim run`` first
    meets such an input."""
    from intsim.bounds import accumulator_overruns

    found = accumulator_overruns(art)
    if found and art.numerics.overflow == "error":
        named = ", ".join(f"{name} needs {b} bits" for name, b in found[:3]) + (", …" if len(found) > 3 else "")
        say(f"warning: under --overflow error, {len(found)} conv(s) can exceed the {art.numerics.acc_bits}-bit "
            f"accumulator in the worst case ({named}); `intsim run` stops on an input that gets there "
            f"(--acc-bits {found[0][1]} or --overflow saturate avoids it)")
    return [{"op": name, "bits": b} for name, b in found]


@torch.no_grad()
def _fakequant_psnr(net, calib, images, rgb_range: float) -> float | None:
    """The float32 fake-quant model (unsnapped) against the float model on a few calibration patches (dB)."""
    from calib.quant.fakequant import build_fakequant_model

    fq = build_fakequant_model(net, calib)
    k = 255.0 / rgb_range
    ps = [psnr((net(x) * k).clamp(0, 255).round(), (fq(x) * k).clamp(0, 255).round())
          for x in (img.unsqueeze(0) for img in images[:SUMMARY_EVAL_PATCHES])]
    finite = [p for p in ps if math.isfinite(p)]
    return (sum(finite) / len(finite)) if finite else None


def to_model_inputs(model, scale: int, images: list[torch.Tensor], rgb_range: float) -> list[torch.Tensor]:
    """Calibration patches (RGB, ``pixel·rgb_range/255``) → the network's own inputs.

    RGB models take them as they are. Y-channel zoo models (VDSR, FSRCNN) take
    what the artifact's ``image_in`` sees (:func:`calib.evaluate.artifact_input`):
    the uint8-rounded Y plane of the model's preprocessing (FSRCNN: Y of the LR
    patch; VDSR: Y of its MATLAB-bicubic upsampling), times ``rgb_range/255``.
    """
    from calib.models.zoo import ModelEntry

    entry = model if isinstance(model, ModelEntry) else _zoo_entry(model)  # an entry (zoo or user) or a name
    if entry is None or entry.color != "y":
        return images
    import numpy as np

    out = []
    for img in images:
        rgb = np.clip(np.floor(img.double().numpy().transpose(1, 2, 0) * (255.0 / rgb_range) + 0.5), 0, 255)
        y = torch.from_numpy(entry.y_plane_uint8(rgb.astype(np.uint8), scale)).double()[None]  # 1×H'×W'
        out.append((y * (rgb_range / 255.0)).float())
    return out


def _weights_label(model, label: str, seed: int) -> str:
    """``model.weights`` of an artifact calibrated without a checkpoint file."""
    if isinstance(model, UserModelEntry):
        return "the module's own (in memory)"
    if label.lower().endswith(".onnx"):
        return os.path.basename(label)
    return f"random-init(seed={seed})"


def _source(entry, label: str, scale: int, weights: str | None, seed: int) -> dict:
    """The artifact's ``metadata.source``: a user model's spec and source hash, else the zoo name and checkpoint."""
    if isinstance(entry, UserModelEntry):
        return entry.source_record(scale, weights, seed)
    return model_source(label, scale, weights)


@dataclass
class CalibrationRun:
    """What :func:`calibrate_run` made: the float model, its calibration, the exported artifact, the summary."""

    net: torch.nn.Module
    rgb_range: float  # the model's input range (1.0 or 255.0)
    calibration: object  # calib.calibrate.CalibrationResult
    artifact: object  # intsim.artifact.Artifact
    summary: dict


def run_calibrate(*args, **kwargs) -> dict:
    """:func:`calibrate_run` → its JSON-able summary (the library entry point the CLI calls)."""
    return calibrate_run(*args, **kwargs).summary


def calibrate_run(model: str, weights: str | None, scale: int, bits: str, method: str | None = None,
                  calib_data: str | None = None, out: str | None = None, realization: str = "split",
                  rounding: str = "half_up", overflow: str = "saturate", acc_bits: int = 32, stream_bits: int = 24,
                  n_images: int | None = None, patch: int | None = None, seed: int = 0,
                  *, mult_bits: int = 31, grid_bits: int | None = None, policy=None, batch_size: int | None = None,
                  allocation: str | None = None, bp_init: str | None = None, finetune=None, recon=None,
                  state_dir: str | None = None, progress: bool = False, range_mode: str = "ema",
                  per_channel: bool | None = None, log=None, holdout: bool = True, policy_file: str | None = None,
                  budget: str | None = None, candidate_bits=None, accel: str = "edge_npu",
                  stress: float | None = None, equalize: float | None = None, random_init: bool = False,
                  calib_layout: str = "auto", rgb_range: float | None = None,
                  in_channels: int | None = None) -> CalibrationRun:
    """Calibrate ``model`` and write its artifact to ``out`` (atomically).

    Settings left as None come from the method's recipe (calib/recipe.py, the one
    place defaults live): ``method`` None = the best measured method
    (:data:`calib.recipe.DEFAULT_METHOD`), with its patches, batch, bp init and
    weight granularity; the paper's methods (``oaq`` …) keep the paper recipe.
    ``weights`` None: the model's checkpoint under the data root (:func:`resolve_weights`;
    refused when there is none), or random weights with ``random_init=True``.
    ``calib_data``: a folder of HR (downsampled by ``scale``) or LR images
    (``calib_layout`` ``'hr'``, ``'lr'`` or ``'auto'``: guessed from the path,
    :func:`calib.calibrate.calibration_layout`);
    default ``<data root>/data/SunHays80`` (the offline stand-in for DIV2K).
    ``finetune``: a :class:`calib.finetune.FinetuneConfig` or dict of its fields
    (finetuning methods); ``recon``: a :class:`calib.reconstruct.ReconConfig`
    or dict (method ``recon``). ``state_dir``: resumable finetuning /
    reconstruction state. ``log``: a callable for stage lines. ``holdout``:
    score the artifact on held-out calibration images (:mod:`calib.quality`).
    ``stress``: fraction of colour/contrast-stressed calibration patches
    (:mod:`calib.augment`; None = the recipe's, 0 = none). ``equalize``: cross-layer equalization
    strength α ∈ [0, 1] (:mod:`calib.equalize`; None = the recipe's).
    ``policy_file``: per-layer bits (TOML, :func:`calib.mixed_precision.read_policy`);
    ``budget``: choose per-layer bits among ``candidate_bits`` (default 3/4/6/8)
    under ``energy=…|latency=…|storage=…`` on ``accel`` (:mod:`calib.mixed_precision`);
    the summary's ``mixed_precision`` then holds the allocation and the
    calibration-data Pareto front.

    Y-channel zoo models (VDSR, FSRCNN) calibrate on their own 1-channel input
    (:func:`to_model_inputs`). The artifact's ``metadata.source`` records the
    zoo name, scale and checkpoint (path and sha256, :func:`calib.export.model_source`)
    so :mod:`calib.evaluate` can rebuild the float fake-quant model.

    Your own model: ``model`` a spec (``path/to/net.py:factory``, ``package.module:Class`` or
    ``model.onnx``, :mod:`calib.models.user`) with ``rgb_range`` (default 1.0) and ``in_channels``
    (default: the first conv's); the source records the spec and the source file's sha256.
    """
    from intsim.artifact import save_artifact

    t0 = time.time()
    say = log or (lambda msg: None)
    bw, ba, rec = _checked_request(model, int(scale), bits, out, realization, policy_file, budget, method,
                                   n_images=n_images, patch=patch, batch_size=batch_size, bp_init=bp_init,
                                   per_channel=per_channel, recon=recon, seed=int(seed), stress=stress,
                                   equalize=equalize)
    method = rec.method
    weights, weights_line, folder, is_lr, layout_line = _resolve_inputs(
        model, int(scale), weights, random_init, int(seed), out, calib_data, calib_layout, state_dir)
    label = model.spec if isinstance(model, UserModelEntry) else str(model)
    net, entry, rgb_range, graph, images = _model_and_images(
        model, int(scale), weights, int(seed), folder, is_lr, rec,
        [f"calibrate {label} ×{scale} W{bw}A{ba}", weights_line, layout_line, f"recipe {rec.describe()}"], say,
        {"rgb_range": rgb_range, "in_channels": in_channels})
    from calib.calibrate import LayerPolicy
    from calib.methods import calibrate_method

    equalized, equalized_source = _equalize(net, graph, images, rec, say)
    ft_cfg = _finetune_config(finetune, int(seed), rec.batch_size)
    policy, mixed = _layer_policy(LayerPolicy.parse(policy), rec, policy_file, budget, net, graph, images,
                                  rgb_range, folder, is_lr, int(scale), int(seed), entry or label, candidate_bits,
                                  accel, say)
    with fixed_threads():  # the artifact must not depend on the machine's thread count
        calib = calibrate_method(net, images, bw, ba, method, policy, allocation=allocation, bp_init=rec.bp_init,
                                 batch_size=rec.batch_size, graph=graph, finetune_config=ft_cfg,
                                 state_dir=state_dir, progress=progress, range_mode=range_mode,
                                 recon_config=rec.recon, wide_range_bits=rec.wide_range_bits,
                                 wide_weight_bits=rec.wide_weight_bits,
                                 full_range_weights=rec.full_range_weights)
    calib.settings["recipe"] = rec.to_json()
    _record_equalized_biases(calib, graph, equalized)
    if mixed is not None:
        calib.settings["mixed_precision"] = {k: mixed[k] for k in ("budget", "metric", "limit", "cost", "bits")}
    meta = {"name": label, "scale": int(scale), "method": method, "allocation": calib.settings["allocation"],
            "weights": os.path.basename(weights) if weights else _weights_label(model, label, int(seed)),
            "calib_data": folder.name + (" (offline stand-in for DIV2K)" if folder.name == "SunHays80" else ""),
            "n_images": rec.n_images, "patch": rec.patch, "seed": int(seed)}
    say("export")
    art = export_artifact(net, calib, realization=realization, rounding=rounding, overflow=overflow,
                          acc_bits=acc_bits, stream_bits=stream_bits, mult_bits=mult_bits, grid_bits=grid_bits,
                          model_meta=meta, source={**_source(entry, label, int(scale), weights, int(seed)),
                                                   **equalized_source})
    digest = save_artifact(art, out)
    overruns = _accumulator_overruns(art, say)
    if mixed is not None:
        from calib.mixed_precision import write_front

        mixed["front_files"] = write_front(mixed, out)

    fq_psnr = _fakequant_psnr(net, calib, images, rgb_range)
    quality = None
    if holdout:
        from calib.quality import holdout_quality

        say("held-out check (integer engine)")
        quality = holdout_quality(entry or label, net, art, folder, int(scale), rgb_range, rec.n_images, int(seed),
                                  lr_only=is_lr)
    summary = {
        "out": str(out), "sha256": digest, "model": label, "scale": int(scale), "bits": f"W{bw}A{ba}",
        "method": method, "recipe": rec.to_json(), "recipe_text": rec.describe(),
        "allocation": calib.settings["allocation"], "realization": realization, "rounding": art.numerics.rounding,
        "overflow": art.numerics.overflow, "acc_bits": acc_bits, "accumulator_overruns": overruns,
        "stream_bits": stream_bits, "mult_bits": mult_bits, "weights": weights, "calib_data": str(folder),
        "calib_is_lr": is_lr, "n_images": rec.n_images, "patch": rec.patch, "seed": int(seed), "ops": len(art.ops),
        "code_bits": dict(art.model["code_bits"]), "fakequant_vs_fp_psnr_db": fq_psnr, "holdout": quality,
        "policy_overrides": {k: list(v) for k, v in policy.overrides.items()},
        "mixed_precision": mixed,
        "calibration_seconds": getattr(calib, "runtime", {}).get("seconds"),
        "seconds": round(time.time() - t0, 2),
    }
    return CalibrationRun(net, rgb_range, calib, art, summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calib.cli_calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="edsr_baseline", help=f"one of {', '.join(known_models())}")
    ap.add_argument("--weights", default=None,
                    help="float checkpoint (default: the model's checkpoint under the data root)")
    ap.add_argument("--random-init", action="store_true", help="random weights (tests only) instead of a checkpoint")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--bits", default="W4A4")
    ap.add_argument("--method", default=None, help=f"one of {', '.join(METHODS)} (default: the best measured, recon)")
    ap.add_argument("--allocation", default=None, choices=("released", "paper", "budgeted"),
                    help="two-region code allocation of dual_region/oaq (default released)")
    ap.add_argument("--bp-init", default=None, choices=("percentile", "search"))
    ap.add_argument("--epochs", type=int, default=10, help="finetuning epochs (finetuning methods)")
    ap.add_argument("--state-dir", default=None, help="resumable finetuning state folder")
    ap.add_argument("--progress", action="store_true", help="tqdm progress bar")
    ap.add_argument("--calib-data", default=None)
    ap.add_argument("--calib-layout", default="auto", choices=CALIB_LAYOUTS,
                    help="calibration images are HR (made LR by bicubic), LR, or guessed from the path")
    ap.add_argument("--out", required=True)
    ap.add_argument("--realization", default=Numerics.realization, choices=REALIZATIONS)
    ap.add_argument("--rounding", default=Numerics.rounding, choices=RoundingMode.names())
    ap.add_argument("--overflow", default=Numerics.overflow, choices=OverflowPolicy.names())
    ap.add_argument("--acc-bits", type=int, default=32)
    ap.add_argument("--stream-bits", type=int, default=24)
    ap.add_argument("--mult-bits", type=int, default=31)
    ap.add_argument("--grid-bits", type=int, default=None)
    ap.add_argument("--n-images", type=int, default=None)
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--range", dest="range_mode", default="ema", choices=("ema", "max"),
                    help="activation bounds: EMA of batch min/max (the recipe) or the extremes over all batches")
    ap.add_argument("--per-channel", action="store_true", default=None, help="per-output-channel weight scales")
    a = ap.parse_args(argv)
    try:
        summary = run_calibrate(a.model, a.weights, a.scale, a.bits, a.method, a.calib_data, a.out, a.realization,
                                a.rounding, a.overflow, a.acc_bits, a.stream_bits, a.n_images, a.patch, a.seed,
                                mult_bits=a.mult_bits, grid_bits=a.grid_bits, allocation=a.allocation,
                                bp_init=a.bp_init, finetune={"epochs": a.epochs}, state_dir=a.state_dir,
                                progress=a.progress, range_mode=a.range_mode, per_channel=a.per_channel,
                                random_init=a.random_init, calib_layout=a.calib_layout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
