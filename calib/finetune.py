"""Sensitivity-aware finetuning of quantizer parameters (docs/calibration.md).

Only quantizer parameters train (activation ``l``, ``u``, ``bp``; weight
clips); the float model is the frozen teacher. Loss per batch::

    L = Σ_k s_k · mean_n ‖F_t^k/‖F_t^k‖ − F_q^k/‖F_q^k‖‖₂  +  λ · L1(teacher out, student out)

over the outputs F^k of the model's natural blocks (:func:`calib.blocks.find_blocks`),
each sample's feature map flattened and L2-normalised; λ = 5.
``s_k = softmax_k(σ_k / T)`` with σ_k the mean standard deviation of block k's
teacher output over the calibration batches (``weighting='sa'``); ``T`` is
``temperature`` (1.0 = the recipe; ``'auto'`` = the mean of σ_k, which makes
the weights invariant to the model's value range). ``weighting='uniform'``
uses s_k = 1/K (the "plain finetuning" ablation and the baselines).

Parameter groups rotate by epoch — weight clips, bounds (l, u), breakpoints
(bp; absent for uniform quantizers, then two groups rotate) — each with its
own Adam (lr 1e-3) whose lr decays ×0.9 per epoch *of that group*.
Paper recipe: 100 calibration images, 96×96 LR patches, batch 2, 10 epochs
(500 iterations). Batches per epoch are a seeded permutation of the images
(``seed``, epoch), so a run is deterministic under its seed.

Resumable: with ``state_dir``, after every epoch the quantizer parameters and
optimizer moments are written (tensors only, ``torch.save`` then atomic
rename) with a JSON sidecar (epoch, per-group epoch counts, losses, config
fingerprint); a later call with the same configuration continues from the
last completed epoch and ends in exactly the same parameters (hence the same
artifact). States are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from calib.quant.fakequant import QuantConv2d, build_fakequant_model, project_quantizers
from calib.resume_state import read_state
from intsim.artifact import atomic_write_bytes, atomic_write_json

__all__ = ["FinetuneConfig", "FinetuneInterrupted", "finetune_calibration", "sensitivity_weights",
           "block_feature_std", "finetune_loss", "step_loss"]

STATE_JSON = "finetune_state.json"
#: the keys of STATE_JSON and their types (:func:`read_state`)
STATE_KEYS = {"fingerprint": str, "epoch": int, "own_epochs": list, "history": list, "tensors": str}


class FinetuneInterrupted(RuntimeError):
    """Raised when ``stop_after_epochs`` ends a run early (its state is saved; call again to continue)."""


class FinetuneDiverged(ValueError):
    """A finetuning step met a non-finite loss or gradient: stopped before it reached the parameters."""


def _check_finite(loss: torch.Tensor, params, epoch: int, it: int, group: str) -> None:
    """Refuse to step on a non-finite loss or gradient (NaN quantizer parameters would otherwise
    surface much later, as an unexportable artifact)."""
    where = f"finetuning diverged at epoch {epoch + 1}, iteration {it + 1} (parameter group {group!r})"
    if not torch.isfinite(loss).all():
        raise FinetuneDiverged(f"{where}: the loss is {float(loss.detach())}")
    for name, p in params:
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise FinetuneDiverged(f"{where}: non-finite gradient for {name}")


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 2
    lr: float = 1e-3
    lr_decay: float = 0.9
    lam: float = 5.0
    weighting: str = "sa"  # 'sa' | 'uniform'
    temperature: float | str = 1.0  # float or 'auto'
    output_loss: str = "l1"  # 'l1' | 'mse' (2DQuant-style distillation)
    groups: tuple[str, ...] = ("weight", "bounds", "bp")
    seed: int = 0
    #: stop (raising FinetuneInterrupted) after this many epochs *in this call*; None = run to the end.
    stop_after_epochs: int | None = None
    max_iters_per_epoch: int | None = None  # reduced recipes: cap batches per epoch
    #: 'absolute': Adam lr as given (the recipe); 'relative': each parameter tensor's lr is scaled by its
    #: largest initial magnitude (IMDN's [0, 1]-scale clips and bounds are ~0.01–1, where the recipe's
    #: absolute 1e-3 step, set for [0, 255]-scale models, is large).
    lr_mode: str = "absolute"

    def for_method(self, kind: str) -> "FinetuneConfig":
        """The configuration a finetuning method uses (``sa`` keeps this one)."""
        if kind == "sa":
            return replace(self, weighting="sa")
        if kind in ("plain", "ptq4sr"):
            return replace(self, weighting="uniform")
        if kind == "2dquant":
            return replace(self, weighting="uniform", output_loss="mse")
        raise ValueError(f"unknown finetuning kind {kind!r}")

    def fingerprint(self) -> str:
        d = asdict(self)
        d.pop("stop_after_epochs")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- features and weights
class _Taps:
    def __init__(self, model: nn.Module, blocks: Sequence[str]):
        self.feats: dict[str, torch.Tensor] = {}
        self.hooks = [model.get_submodule(b).register_forward_hook(self._hook(b)) for b in blocks]

    def _hook(self, name):
        def fn(mod, inp, out):
            self.feats[name] = out
        return fn

    def remove(self):
        for h in self.hooks:
            h.remove()


@torch.no_grad()
def block_feature_std(teacher: nn.Module, blocks: Sequence[str], batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """σ_k: mean over batches of the standard deviation of block k's teacher output."""
    taps = _Taps(teacher, blocks)
    acc = torch.zeros(len(blocks), dtype=torch.float64)
    try:
        for b in batches:
            teacher(b)
            acc += torch.tensor([float(taps.feats[k].float().std()) for k in blocks], dtype=torch.float64)
    finally:
        taps.remove()
    return acc / max(1, len(batches))


def sensitivity_weights(std: torch.Tensor, temperature: float | str = 1.0) -> torch.Tensor:
    """s_k = softmax(σ_k / T); ``T='auto'`` uses T = mean σ_k."""
    t = float(std.mean()) if temperature == "auto" else float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be > 0 or 'auto', got {temperature!r}")
    return torch.softmax(std.double() / t, dim=0)


def _norm_dist(ft: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
    ft = ft.flatten(1)
    fq = fq.flatten(1)
    ft = ft / (ft.norm(dim=1, keepdim=True) + 1e-12)
    fq = fq / (fq.norm(dim=1, keepdim=True) + 1e-12)
    return (ft - fq).norm(dim=1).mean()


def finetune_loss(feats_t: dict, feats_q: dict, out_t: torch.Tensor, out_q: torch.Tensor, weights: torch.Tensor,
                  blocks: Sequence[str], lam: float, output_loss: str = "l1") -> tuple[torch.Tensor, float, float]:
    """(total, feature term, output term) of the loss in the module docstring."""
    feat = sum(float(weights[i]) * _norm_dist(feats_t[k], feats_q[k]) for i, k in enumerate(blocks))
    diff = out_t - out_q
    outl = diff.abs().mean() if output_loss == "l1" else (diff ** 2).mean()
    return feat + lam * outl, float(feat.detach()), float(outl.detach())


def step_loss(teacher: nn.Module, fq: nn.Module, taps_t: "_Taps", taps_q: "_Taps", x: torch.Tensor,
              weights: torch.Tensor, blocks: Sequence[str], cfg: "FinetuneConfig") -> tuple[torch.Tensor, float, float]:
    """One finetuning step's forward on the batch ``x``: the teacher (no grad) and the student, both tapped
    at ``blocks`` → :func:`finetune_loss` (its graph kept for ``backward``)."""
    with torch.no_grad():
        out_t = teacher(x)
    feats_t = dict(taps_t.feats)
    out_q = fq(x)
    return finetune_loss(feats_t, taps_q.feats, out_t, out_q, weights, blocks, cfg.lam, cfg.output_loss)


# --------------------------------------------------------------------------- parameters
def _param_groups(fq: nn.Module, wanted: Sequence[str]) -> list[tuple[str, list[tuple[str, nn.Parameter]]]]:
    groups: dict[str, list] = {g: [] for g in wanted}
    for name, m in fq.named_modules():
        if isinstance(m, QuantConv2d):
            if "weight" in groups:
                groups["weight"].append((f"{name}.weight_quant.clip", m.weight_quant.clip))
            aq = m.act_quant
            if "bounds" in groups:
                if aq.signed:
                    groups["bounds"].append((f"{name}.act_quant.l", aq.l))
                groups["bounds"].append((f"{name}.act_quant.u", aq.u))
            if "bp" in groups and aq.allocation != "uniform":
                groups["bp"].append((f"{name}.act_quant.bp", aq.bp))
    return [(g, groups[g]) for g in wanted if groups[g]]


def _opt_params(opt: torch.optim.Optimizer) -> list:
    return [p for pg in opt.param_groups for p in pg["params"]]


def _atomic_save_tensors(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _save_state(state_dir: Path, epoch: int, fq: nn.Module, opts: list, names: list, meta: dict) -> None:
    tensors = {f"param.{n}": p.detach().clone() for n, p in fq.named_parameters() if ".act_quant." in n
               or ".weight_quant." in n}
    for gi, opt in enumerate(opts):
        for pi, p in enumerate(_opt_params(opt)):
            st = opt.state.get(p)
            if st:
                for k in ("step", "exp_avg", "exp_avg_sq"):
                    tensors[f"opt{gi}.{pi}.{k}"] = torch.as_tensor(st[k]).detach().clone()
    fname = f"finetune_state_e{epoch}.pt"
    _atomic_save_tensors(tensors, state_dir / fname)
    atomic_write_json(state_dir / STATE_JSON, {**meta, "epoch": epoch, "tensors": fname})
    for old in state_dir.glob("finetune_state_e*.pt"):
        if old.name != fname:
            old.unlink(missing_ok=True)


def check_state_dir(sd: Path) -> None:
    """Refuse, before any work, a ``--state-dir`` whose saved state could not be resumed (:func:`read_state`);
    whether it fits this run's configuration and model is judged when it is resumed."""
    from calib import reconstruct

    if sd.is_dir():
        read_state(sd, reconstruct.STATE_JSON, reconstruct.STATE_KEYS)
        read_state(sd, STATE_JSON, STATE_KEYS)


def _load_state(state_dir: Path, fq: nn.Module, opts: list, fp: str, epochs: int) -> dict | None:
    """The saved metadata, after restoring its parameters and optimizer moments into ``fq`` and ``opts``."""
    js = state_dir / STATE_JSON
    got = read_state(state_dir, STATE_JSON, STATE_KEYS)
    if got is None:
        return None
    meta, tensors = got
    if meta["fingerprint"] != fp:
        raise ValueError(f"{state_dir}: finetuning state was made with a different configuration "
                         f"({meta['fingerprint'][:80]} != {fp}); use a fresh state directory")
    own = meta["own_epochs"]
    if not 0 <= meta["epoch"] <= epochs or len(own) != len(opts) or not all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in own):
        raise ValueError(f"{js}: 'epoch' or 'own_epochs' does not fit this run ({epochs} epochs, {len(opts)} "
                         "parameter groups); use a fresh state directory")
    params = dict(fq.named_parameters())
    try:
        with torch.no_grad():
            for k, v in tensors.items():
                if k.startswith("param."):
                    params[k[len("param."):]].copy_(v)
        for gi, opt in enumerate(opts):
            for pi, p in enumerate(_opt_params(opt)):
                key = f"opt{gi}.{pi}.step"
                if key in tensors:
                    opt.state[p] = {"step": tensors[key].clone(), "exp_avg": tensors[f"opt{gi}.{pi}.exp_avg"].clone(),
                                    "exp_avg_sq": tensors[f"opt{gi}.{pi}.exp_avg_sq"].clone()}
    except (KeyError, RuntimeError) as e:  # a parameter this model lacks, or a tensor of another shape
        raise ValueError(f"{state_dir / meta['tensors']}: does not fit this model "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); use a fresh state directory") from None
    return meta


# --------------------------------------------------------------------------- driver
def finetune_calibration(model: nn.Module, result, images: Sequence[torch.Tensor], cfg: FinetuneConfig, *,
                         state_dir: str | os.PathLike | None = None, progress: bool = False,
                         log: Callable[[str], None] | None = None, blocks: Sequence[str] | None = None) -> dict:
    """Finetune the quantizers of ``result`` (in place: its layer specs are replaced) → summary dict."""
    from calib.calibrate import _batches
    from calib.blocks import find_blocks

    t0 = time.time()
    teacher = model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    fq = build_fakequant_model(model, result)
    blocks = list(blocks) if blocks is not None else find_blocks(model)
    if not blocks:
        raise ValueError("finetuning found no blocks whose outputs the loss could compare")
    imgs = [torch.as_tensor(i).float() for i in images]
    shapes = {tuple(i.shape) for i in imgs}
    if len(shapes) != 1:
        raise ValueError(f"finetuning needs equal-size calibration patches, got shapes {sorted(shapes)[:3]}")
    all_batches = list(_batches(imgs, cfg.batch_size))
    std = block_feature_std(teacher, blocks, all_batches)
    weights = (sensitivity_weights(std, cfg.temperature) if cfg.weighting == "sa"
               else torch.full((len(blocks),), 1.0 / len(blocks), dtype=torch.float64))
    if cfg.weighting not in ("sa", "uniform"):
        raise ValueError(f"weighting must be 'sa' or 'uniform', got {cfg.weighting!r}")
    groups = _param_groups(fq, cfg.groups)
    for p in fq.parameters():
        p.requires_grad_(False)
    if cfg.lr_mode not in ("absolute", "relative"):
        raise ValueError(f"lr_mode must be 'absolute' or 'relative', got {cfg.lr_mode!r}")

    def param_group(p: torch.Tensor) -> dict:
        scale = 1.0 if cfg.lr_mode == "absolute" else max(float(p.detach().abs().max()), 1e-8)
        return {"params": [p], "lr": cfg.lr * scale, "lr_scale": scale}

    opts = [torch.optim.Adam([param_group(p) for _, p in ps]) for _, ps in groups]
    own = [0] * len(groups)
    history: list[dict] = []
    start = 0
    sd = Path(state_dir) if state_dir is not None else None
    fp = cfg.fingerprint()
    if sd is not None:
        sd.mkdir(parents=True, exist_ok=True)
        meta = _load_state(sd, fq, opts, fp, cfg.epochs)
        if meta is not None:
            start, own, history = meta["epoch"], list(meta["own_epochs"]), list(meta["history"])
    taps_t, taps_q = _Taps(teacher, blocks), _Taps(fq, blocks)
    n_iter = min(len(all_batches), cfg.max_iters_per_epoch or len(all_batches))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs * n_iter, initial=start * n_iter, desc=f"finetune[{result.method}]",
                   dynamic_ncols=True)
    done_now = 0
    try:
        for epoch in range(start, cfg.epochs):
            gi = epoch % len(groups)
            gname, params = groups[gi]
            for _, p in params:
                p.requires_grad_(True)
            opt = opts[gi]
            for pg in opt.param_groups:
                pg["lr"] = cfg.lr * pg["lr_scale"] * cfg.lr_decay ** own[gi]
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(imgs))
            sums = [0.0, 0.0, 0.0]
            for it in range(n_iter):
                idx = order[it * cfg.batch_size:(it + 1) * cfg.batch_size]
                if len(idx) == 0:
                    break
                x = torch.stack([imgs[i] for i in idx])
                loss, lf, lo = step_loss(teacher, fq, taps_t, taps_q, x, weights, blocks, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _check_finite(loss, params, epoch, it, gname)
                opt.step()
                project_quantizers(fq)
                sums[0] += float(loss.detach())
                sums[1] += lf
                sums[2] += lo
                if bar is not None:
                    bar.set_postfix(epoch=epoch + 1, group=gname, loss=f"{float(loss.detach()):.4g}", feat=f"{lf:.4g}",
                                    out=f"{lo:.4g}")
                    bar.update(1)
            for _, p in params:
                p.requires_grad_(False)
            own[gi] += 1
            rec = {"epoch": epoch + 1, "group": gname, "lr": cfg.lr * cfg.lr_decay ** (own[gi] - 1),
                   "loss": sums[0] / n_iter, "feat": sums[1] / n_iter, "out": sums[2] / n_iter}
            history.append(rec)
            if log:
                log(json.dumps(rec))
            if sd is not None:
                _save_state(sd, epoch + 1, fq, opts, [], {"fingerprint": fp, "own_epochs": own,
                                                          "history": history})
            done_now += 1
            if cfg.stop_after_epochs is not None and done_now >= cfg.stop_after_epochs and epoch + 1 < cfg.epochs:
                raise FinetuneInterrupted(f"stopped after epoch {epoch + 1} of {cfg.epochs} (state in {sd})")
    finally:
        taps_t.remove()
        taps_q.remove()
        if bar is not None:
            bar.close()
    # write the trained values back into the result (what export snaps)
    for layer in result.layers.values():
        m = fq.get_submodule(layer.module)
        layer.act = m.act_quant.spec()
        layer.weight = m.weight_quant.spec()
    return {"epochs": cfg.epochs, "iters_per_epoch": n_iter, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "lambda": cfg.lam, "lr_mode": cfg.lr_mode, "weighting": cfg.weighting, "temperature": cfg.temperature,
            "output_loss": cfg.output_loss, "blocks": blocks, "block_std": [float(s) for s in std],
            "s_k": [float(w) for w in weights], "history": history, "resumed_from_epoch": start,
            "seconds": round(time.time() - t0, 2)}
