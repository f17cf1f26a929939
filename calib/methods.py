"""Calibration methods (docs/calibration.md): OAQ, its ablations and the baselines on one harness.

:func:`calibrate_method` is the single entry point. Every method produces a
:class:`~calib.calibrate.CalibrationResult` (the interface export consumes)
with one activation quantizer per conv input and one weight quantizer per conv
weight; the layer policy (body at b bits, head/upsampler/tail at 8) applies to
all methods alike.

=============  ===================  =======================  ============================
method         activation init      weight init              finetuning (calib/finetune.py)
=============  ===================  =======================  ============================
minmax         uniform, EMA min/max MinMax                   —
percentile     uniform, 0.1/99.9 %  MinMax                   —
omse           uniform, MSE-optimal MSE shrink search         —
               joint shrink of
               [min, max]
ptq4sr         uniform, histogram   MSE shrink search         clips (bounds + weight
               dual clipping                                  clips), unweighted loss
2dquant        uniform, joint grid  MSE shrink search         distillation: output MSE +
               bound search (DOBI)                            unweighted feature loss
dual_region    two-region           MSE shrink search         —
plain_ft       uniform, EMA min/max MSE shrink search         unweighted (s_k = 1/K)
sa_ft          uniform, EMA min/max MSE shrink search         sensitivity-aware (s_k)
oaq            two-region           MSE shrink search         sensitivity-aware (s_k)
recon          two-region           MSE shrink search         block reconstruction with
                                                              learned weight rounding
                                                              (calib/reconstruct.py)
=============  ===================  =======================  ============================

``recon`` goes beyond the paper (weights are learned, not only clips) and is
the default (calib/recipe.py); ``oaq`` is the paper's method, unchanged.

"two-region": ``l``/``u`` from the EMA (β = 0.9) of per-batch min/max
(``range_mode='ema'``, the recipe; ``'max'``: the extremes over all batches),
``bp`` at the EMA of the per-batch 99th percentile of |x|
(``bp_init='percentile'``, the recipe) or by an MSE search over bp and a
shrink of (l, u) (``bp_init='search'``, :func:`search_bp`); allocation ``released`` (default), ``paper`` or
``budgeted`` (:func:`search_budgeted` picks the split of the 2^b codes and bp
minimising the MSE on calibration activations). The baselines are
"-style" re-implementations on this harness, not the authors' code.

Conv discovery without a captured graph (so IMDN's split/concat/attention need
no export support): every ``nn.Conv2d`` in execution order (forward pre-hooks
on one calibration batch); roles: first = head, last = tail, a conv directly
followed by ``nn.PixelShuffle`` in its parent ``nn.Sequential`` = upsampler,
others = body. With a graph (:func:`calib.graph.capture`) the graph's names and
roles are used instead, and stream ranges come from :func:`calibrate_minmax`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from calib.calibrate import CalibrationResult, LayerCalibration, LayerPolicy, _batches, calibrate_minmax
from calib.quant.two_region import MinMaxObserver, TwoRegionSpec
from calib.quant.weight import minmax_weight_spec, mse_weight_spec

__all__ = ["METHODS", "METHOD_TABLE", "MethodSpec", "calibrate_method", "check_method",
           "search_budgeted", "search_bp", "ActStats", "collect_activation_stats",
           "evaluate_fakequant"]


@dataclass(frozen=True)
class MethodSpec:
    act_init: str  # minmax | percentile | omse | hist_dual | dobi | two_region
    weight_init: str  # minmax | mse
    finetune: str | None  # None | plain | sa | ptq4sr | 2dquant


METHOD_TABLE: dict[str, MethodSpec] = {
    "minmax": MethodSpec("minmax", "minmax", None),
    "percentile": MethodSpec("percentile", "minmax", None),
    "omse": MethodSpec("omse", "mse", None),
    "ptq4sr": MethodSpec("hist_dual", "mse", "ptq4sr"),
    "2dquant": MethodSpec("dobi", "mse", "2dquant"),
    "dual_region": MethodSpec("two_region", "mse", None),
    "plain_ft": MethodSpec("minmax", "mse", "plain"),
    "sa_ft": MethodSpec("minmax", "mse", "sa"),
    "oaq": MethodSpec("two_region", "mse", "sa"),
    "recon": MethodSpec("two_region", "mse", "recon"),
}
METHODS = tuple(METHOD_TABLE)
TWO_REGION_ALLOCATIONS = ("released", "paper", "budgeted")


def check_method(method: str) -> str:
    m = str(method).strip().lower()
    if m not in METHOD_TABLE:
        raise ValueError(f"unknown calibration method {method!r}; valid methods: {', '.join(METHODS)}")
    return m


# --------------------------------------------------------------------------- activation statistics
@dataclass
class ActStats:
    observer: MinMaxObserver
    samples: torch.Tensor  # float32 deterministic subsample of the conv's input values

    @property
    def signed(self) -> bool:
        return self.observer.min < 0


@torch.no_grad()
def collect_activation_stats(model: nn.Module, conv_paths: Sequence[str], batches: Sequence[torch.Tensor], *,
                             momentum: float = 0.9, percentile: float = 99.0,
                             samples_per_batch: int = 4096) -> dict[str, ActStats]:
    """EMA observers and a deterministic (strided) value subsample of every conv input."""
    obs = {p: MinMaxObserver(momentum, percentile) for p in conv_paths}
    # one buffer per conv for every call's samples, allocated up front (doubled if a conv runs more than once per
    # batch): small tensors allocated after each batch's large temporaries kept the freed heap below them
    # resident (measured +1.1 GB RSS on CARN-M ×4, 32 batches)
    samp = {p: torch.empty(max(len(batches), 1) * samples_per_batch) for p in conv_paths}
    used = dict.fromkeys(conv_paths, 0)

    def hook(path):
        def fn(mod, inp):
            x = inp[0]
            obs[path].update(x)
            flat = x.detach().float().flatten()
            part = flat[::max(1, flat.numel() // samples_per_batch)][:samples_per_batch]
            if used[path] + part.numel() > samp[path].numel():
                samp[path] = torch.cat([samp[path], torch.empty_like(samp[path])])
            samp[path][used[path]:used[path] + part.numel()] = part
            used[path] += part.numel()
        return fn

    hooks = [model.get_submodule(p).register_forward_pre_hook(hook(p)) for p in conv_paths]
    try:
        for b in batches:
            model(b)
    finally:
        for h in hooks:
            h.remove()
    return {p: ActStats(obs[p], samp[p][:used[p]].clone()) for p in conv_paths}


def _mse(spec: TwoRegionSpec, v: torch.Tensor) -> float:
    return float(((spec.fake_quant(v) - v) ** 2).mean())


def _quantile(v: torch.Tensor, q: float) -> float:
    return float(torch.quantile(v.double(), q)) if v.numel() <= 16_000_000 else float(np.quantile(v.numpy(), q))


def _uniform(l: float, u: float, bits: int) -> TwoRegionSpec:
    l, u = float(l), float(u)
    return TwoRegionSpec(min(l, u), max(u, l), max(u, l), bits, "uniform")


def init_uniform(kind: str, st: ActStats, bits: int, range_mode: str = "ema") -> TwoRegionSpec:
    o, v = st.observer, st.samples
    lo, hi0 = o.bounds(range_mode)
    lo0 = min(lo, 0.0)
    if kind == "minmax":
        return _uniform(lo0, hi0, bits)
    if kind == "percentile":
        lo = _quantile(v, 0.001) if st.signed else 0.0
        return _uniform(min(lo, 0.0), max(_quantile(v, 0.999), 0.0), bits)
    sub = v[:: max(1, v.numel() // 65536)]
    if kind == "omse":  # one shrink factor on [min, max]
        cands = [_uniform(a * lo0, a * hi0, bits) for a in np.linspace(0.02, 1.0, 50)]
    elif kind == "hist_dual":  # PTQ4SR-style: both clips from the value density (histogram quantiles)
        los = [0.0] if not st.signed else [lo0] + [min(_quantile(v, q), 0.0) for q in (1e-4, 1e-3, 1e-2, 0.05)]
        his = [hi0] + [max(_quantile(v, q), 1e-8) for q in (0.9999, 0.999, 0.995, 0.99, 0.98, 0.95, 0.9)]
        cands = [_uniform(a, b, bits) for a in los for b in his]
    elif kind == "dobi":  # 2DQuant-style: joint grid search of lower and upper bound
        los = [0.0] if not st.signed else [lo0 * a for a in np.linspace(0.05, 1.0, 12)]
        cands = [_uniform(a, hi0 * b, bits) for a in los for b in np.linspace(0.02, 1.0, 25)]
    else:
        raise ValueError(f"unknown activation init {kind!r}")
    return min(cands, key=lambda s: _mse(s, sub))


#: range shrink factors of the two-region error search: (l, u) = α·(observer bounds).
RANGE_SHRINKS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


#: shrinks of the all-batch extremes that :func:`search_bp` also tries with ``wide_ranges``
WIDE_SHRINKS = (0.8, 0.9, 1.0)


def search_bp(st: ActStats, bits: int, allocation: str, counts=None, range_mode: str = "ema",
              wide_ranges: bool = False) -> TwoRegionSpec:
    """Two-region spec minimising the MSE on the samples, jointly over bp and a shrink of (l, u).

    (l, u) = α·(observer bounds for ``range_mode``), α ∈ :data:`RANGE_SHRINKS`
    (clipping the rare extremes pays at low bits: measured +0.9 dB on IMDN ×4
    W4A4 over bp alone); bp among magnitude quantiles, fractions of max|x| and
    the observer's EMA percentile, below α·max.
    """
    o = st.observer
    lo, hi = o.bounds(range_mode)
    v = st.samples[:: max(1, st.samples.numel() // 32768)]
    mag = v.abs()
    ranges = [(a * lo, a * hi) for a in RANGE_SHRINKS]
    if wide_ranges:  # the extremes over all batches too: at ≥ 6 bits clipping costs more than resolution
        glo, ghi = o.bounds("max")
        ranges += [(a * glo, a * ghi) for a in WIDE_SHRINKS]
    cands = {o.bp}
    for q in (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999):
        cands.add(_quantile(mag, q))
    for f in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7):
        cands.add(f * max(-lo, hi, 1e-12))
    specs = [TwoRegionSpec(l, u, float(bp), bits, allocation, counts)
             for l, u in ranges for bp in sorted(cands) if 0 < bp <= max(-l, u)]
    if not specs:  # zero on every calibration sample (a dead ReLU: IMDN ×2/×3's IMDB4.cca.conv_du.1)
        return TwoRegionSpec(lo, hi, o.bp, bits, allocation, counts)  # the spec's all-zero range rule
    return min(specs, key=lambda s: _mse(s, v))


def search_budgeted(st: ActStats, bits: int, range_mode: str = "ema") -> TwoRegionSpec:
    """Budgeted allocation: the split of exactly 2^b codes (and bp) minimising the calibration MSE.

    Dense counts tried: every admissible count (odd for signed tensors) from 3
    (2 one-sided) to 2^b − 1; the tail codes are split between the negative
    and positive tail in proportion to their extents. bp is searched as in
    :func:`search_bp` for every split.
    """
    o = st.observer
    lo, hi = o.bounds(range_mode)
    n = 2 ** int(bits)
    signed = lo < 0
    best, best_err = None, math.inf
    v = st.samples[:: max(1, st.samples.numel() // 32768)]
    step = max(1, (n // 16))  # at most ~16 dense counts per side for large b
    dense = range(3, n, 2 * step) if signed else range(2, n, step)
    for d in dense:
        rest = n - d
        if signed:
            en = max(-lo - o.bp, 0.0)
            ep = max(hi - o.bp, 0.0)
            tn = int(round(rest * en / (en + ep))) if en + ep > 0 else rest // 2
            counts = (tn, d, rest - tn)
        else:
            counts = (0, d, rest)
        spec = search_bp(ActStats(o, v), bits, "budgeted", counts, range_mode)
        err = _mse(spec, v)
        if err < best_err:
            best, best_err = spec, err
    return best


def _image_range(st: ActStats) -> float | None:
    """1.0 or 255.0 if the tensor looks like the model's image input (min ≥ 0, max ≤ that range), else None."""
    o = st.observer
    if o.min is None or o.min < 0:
        return None
    for rr in (1.0, 255.0):
        if o.max <= rr * (1 + 1e-6):
            return rr
    return None


def init_two_region(st: ActStats, bits: int, allocation: str, bp_init: str, range_mode: str = "ema",
                    wide_ranges: bool = False) -> TwoRegionSpec:
    if allocation == "budgeted":
        return search_budgeted(st, bits, range_mode)
    if bp_init == "search":
        return search_bp(st, bits, allocation, range_mode=range_mode, wide_ranges=wide_ranges)
    if bp_init != "percentile":
        raise ValueError(f"bp_init must be 'percentile' or 'search', got {bp_init!r}")
    return st.observer.spec(bits, allocation, range_mode)


# --------------------------------------------------------------------------- entry point
def calibrate_method(model: nn.Module, images: Sequence[torch.Tensor], bits_w: int, bits_a: int, method: str,
                     policy=None, *, allocation: str | None = None, bp_init: str = "percentile",
                     batch_size: int = 2, graph=None, finetune_config=None, state_dir=None,
                     progress: bool = False, log: Callable[[str], None] | None = None,
                     exact_image_input: bool = True, range_mode: str = "ema",
                     recon_config=None, wide_range_bits: int | None = None,
                     wide_weight_bits: int | None = None, full_range_weights: bool = False) -> CalibrationResult:
    """Calibrate ``model`` with ``method`` (see the module table) → :class:`CalibrationResult`.

    ``images``: float C×H×W tensors in the model's input range. ``allocation``
    (dual-region methods only; default the policy's, ``released``).
    ``graph``: a captured graph (export path) — names, roles and stream ranges
    come from it; without one (float fake-quant only, e.g. IMDN until its
    export lands) convs are discovered by hooks and ``stream_absmax`` is empty.
    ``finetune_config``: a :class:`calib.finetune.FinetuneConfig` (defaults to
    the paper recipe) for the finetuning methods; ``recon_config`` a
    :class:`calib.reconstruct.ReconConfig` for ``recon``; ``wide_range_bits``:
    layers with at least this many activation bits also try the all-batch
    extremes in the bp/range search (:func:`search_bp`); ``wide_weight_bits``: layers with at least
    this many weight bits keep every weight in range (MinMax scales, no MSE clip); ``full_range_weights``:
    integer weights use the whole two's complement range ``[−2^(b−1), 2^(b−1)−1]``; ``state_dir`` makes
    the finetuning / reconstruction resumable. ``exact_image_input``: the head conv, when its input
    is the (non-negative) image in [0, 1] or [0, 255] and it has ≥ 8 bits,
    gets the uniform quantizer on [0, rgb_range] that is exact on uint8 pixels
    (all methods alike).
    """
    method = check_method(method)
    spec = METHOD_TABLE[method]
    pol = LayerPolicy.parse(policy)
    two_region = spec.act_init == "two_region"
    if two_region:
        alloc = allocation or (pol.allocation if pol.allocation in TWO_REGION_ALLOCATIONS else "released")
        if alloc not in TWO_REGION_ALLOCATIONS:
            raise ValueError(f"allocation {alloc!r} is not a two-region allocation "
                             f"({', '.join(TWO_REGION_ALLOCATIONS)})")
    else:
        if allocation not in (None, "uniform"):
            raise ValueError(f"method {method!r} uses a uniform quantizer; allocation {allocation!r} applies only "
                             "to dual-region methods (dual_region, oaq)")
        alloc = "uniform"
    pol = replace(pol, allocation=alloc)
    model.eval()
    from calib.batchnorm import fold_batchnorm

    model = fold_batchnorm(model)  # the conv weights observed and quantized are the folded ones (§5.7)
    batches = list(_batches(images, batch_size))
    if not batches:
        raise ValueError("no calibration images were given")
    # the captured graph gives the convs and their roles (one rule, intsim.cost.layer_policy.graph_roles)
    base = calibrate_minmax(model, images, bits_w, bits_a, pol, batch_size=batch_size, graph=graph)
    convs = [(l.name, l.module, l.role) for l in base.layers.values()]
    stream_absmax, g = base.stream_absmax, base.graph
    stats = collect_activation_stats(model, [m for _, m, _ in convs], batches)
    layers: dict[str, LayerCalibration] = {}
    exact_inputs: list[str] = []
    for name, mod_path, role in convs:
        bw, ba = pol.bits(name, role, int(bits_w), int(bits_a))
        st = stats[mod_path]
        if exact_image_input and role == "head" and _image_range(st) is not None and ba >= 8:
            # The head reads the uint8 image: a uniform [0, rgb_range] quantizer with ≥ 256 codes represents
            # every pixel exactly (a two-region/clipped grid of 8 bits does not: measured −0.7 dB on IMDN ×4).
            rr = _image_range(st)
            act = TwoRegionSpec(0.0, rr, rr, ba, "uniform")
            exact_inputs.append(name)
        else:
            wide = wide_range_bits is not None and ba >= wide_range_bits
            act = (init_two_region(st, ba, alloc, bp_init, range_mode, wide) if two_region
                   else init_uniform(spec.act_init, st, ba, range_mode))
        conv = model.get_submodule(mod_path)
        # per-output-channel scales: the torch weight's output-channel axis (1 for a transposed conv)
        no_clip = spec.weight_init != "mse" or (wide_weight_bits is not None and bw >= wide_weight_bits)
        wspec = (minmax_weight_spec if no_clip else mse_weight_spec)(
            conv.weight, bw, per_channel=pol.per_channel_weights,
            channel_dim=1 if isinstance(conv, nn.ConvTranspose2d) else 0, full_range=full_range_weights)
        layers[name] = LayerCalibration(name=name, module=mod_path, role=role, bits_w=bw, bits_a=ba, act=act,
                                        weight=wspec, observer=st.observer.state())
    settings = {"batch_size": batch_size, "momentum": 0.9, "percentile": 99.0, "allocation": alloc,
                "bp_init": bp_init if two_region else None, "act_init": spec.act_init,
                "weight_init": spec.weight_init, "range": range_mode}
    result = CalibrationResult(g, layers, stream_absmax, int(bits_w), int(bits_a), pol, method,
                               sum(b.shape[0] for b in batches), len(batches), settings=settings)
    if spec.finetune == "recon":
        from calib.reconstruct import ReconConfig, reconstruct

        info = reconstruct(model, result, images, recon_config or ReconConfig(), state_dir=state_dir,
                           progress=progress, log=log, frozen_act_layers=exact_inputs)
        result.settings["recon"] = {k: v for k, v in info.items() if k != "seconds"}
        result.settings["recon"]["units"] = [{k: v for k, v in u.items() if k != "seconds"} for u in info["units"]]
        result.runtime = {"seconds": info["seconds"], "unit_seconds": [u["seconds"] for u in info["units"]]}
    elif spec.finetune is not None:
        from calib.finetune import FinetuneConfig, finetune_calibration

        cfg = finetune_config if finetune_config is not None else FinetuneConfig()
        cfg = cfg.for_method(spec.finetune)
        info = finetune_calibration(model, result, images, cfg, state_dir=state_dir, progress=progress, log=log)
        volatile = ("seconds", "resumed_from_epoch")
        result.settings["finetune"] = {k: v for k, v in info.items() if k not in volatile}
        result.runtime = {k: info[k] for k in volatile}  # not part of the artifact (kept deterministic)
    return result


def evaluate_fakequant(model_name: str, scale: int, model: nn.Module, result: CalibrationResult | None,
                       dataset: str = "Set5") -> float:
    """Mean Y-PSNR of the float fake-quant model (unsnapped specs; FP if ``result`` is None) on ``dataset``."""
    from calib.fp_eval import evaluate_fp
    from calib.quant.fakequant import build_fakequant_model

    net = model if result is None else build_fakequant_model(model, result)
    return float(evaluate_fp(model_name, scale, dataset, model=net, with_ssim=False, threads=None)["psnr"])
