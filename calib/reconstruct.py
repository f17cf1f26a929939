"""Block reconstruction with learned weight rounding (the ``recon`` calibration method).

Goes beyond the paper's method (``oaq``, calib/finetune.py), which only tunes
clips: per-weight rounding is learned too, block by block, BRECQ-style, with
SignRound's optimiser. For each *unit* in execution order:

* the **teacher** is the float model's own unit output on the calibration
  patches (float inputs); no ground truth is used;
* the **student** is the fake-quant unit fed the outputs of the already
  reconstructed units before it (QDrop-style: each input element is replaced
  by its float value with probability ``qdrop``);
* trained jointly: every conv's per-weight rounding offset ``v`` ∈ [−0.5, 0.5]
  (hard rounding forward, straight-through backward, signed-gradient steps with
  a linearly decaying step — SignRound), the weight clips, and the two-region
  activation quantizers' ``l``, ``u``, ``bp`` (Adam, step relative to each
  parameter's magnitude);
* loss: MSE between student and teacher unit outputs, optionally (``weighting="fisher"``) weighted per
  output channel by the float model's output sensitivity to it (:func:`_fisher_weights`; the default
  recipe turns it on below 6 weight bits, calib/recipe.py);
* a unit whose loss over all patches ends worse than it started is reverted
  (measured: a few IMDN blocks otherwise end slightly worse).

Units come from the model itself, never from per-model tables: the natural
blocks of :func:`calib.blocks.find_blocks` (residual blocks, IMDB-like
modules, RDBs…) plus every conv outside them as a unit of its own, ordered by
first execution.

The result's layers get the learned specs and integer weights (``w_int``), so
export stores exactly the hard rounding that was trained. Deterministic under
``seed``; resumable per unit with ``state_dir``; a progress bar shows unit,
iteration and loss.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from calib.resume_state import read_state
from calib.quant.fakequant import QuantConv2d, build_fakequant_model, project_quantizers

__all__ = ["ReconConfig", "find_units", "reconstruct", "student_model"]

STATE_JSON = "recon_state.json"
#: patches per forward/backward of the Fisher pass: it holds the whole network's graph, so keep it small
FISHER_BATCH = 2
#: the keys of STATE_JSON and their types (:func:`calib.resume_state.read_state`)
STATE_KEYS = {"fingerprint": str, "units": list, "done": list, "tensors": str}


@dataclass(frozen=True)
class ReconConfig:
    """Reconstruction hyper-parameters (chosen on calibration patches only; see docs/calibration.md)."""

    iters: int = 300  # optimiser steps per unit
    batch_size: int = 4  # patches per step
    lr_round: float = 5e-3  # SignRound step on the rounding offsets (decays linearly to 0)
    lr_quant: float = 1e-3  # Adam lr of clips/l/u/bp, relative to each parameter's magnitude
    qdrop: float = 0.5  # probability of feeding an input element's float value instead of the quantized one
    learn_act: bool = True  # learn the activation quantizers (l, u, bp) with the rounding
    learn_clip: bool = True  # learn the weight clips with the rounding
    learn_bias: bool = False  # learn the conv biases too (exported as float biases, snapped like any bias)
    weighting: str = "none"  # "fisher": weight each unit-output channel's error by its effect on the SR output
    seed: int = 0

    def __post_init__(self):
        if self.weighting not in ("none", "fisher"):
            raise ValueError(f"reconstruction weighting must be 'none' or 'fisher', not {self.weighting!r}")

    def fingerprint(self) -> str:
        d = asdict(self)
        if d["weighting"] == "none":  # states saved before the option stay resumable
            del d["weighting"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- units
def find_units(model: nn.Module, example: torch.Tensor, convs: Sequence[str] | None = None) -> list[str]:
    """Module paths of the reconstruction units, in order of first execution on ``example``.

    The natural blocks (:func:`calib.blocks.find_blocks`) that hold a quantized
    conv, plus each quantized conv in none of them; a unit never nests in
    another. ``convs``: module paths of the quantized convs (default: every
    ``nn.Conv2d``/``nn.ConvTranspose2d``; export folds some, e.g. mean shifts).
    """
    from calib.blocks import find_blocks

    if convs is None:
        convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    convs = list(dict.fromkeys(convs))

    def inside(c, b):
        return c == b or c.startswith(b + ".")

    blocks = [b for b in find_blocks(model) if any(inside(c, b) for c in convs)]
    loose = [c for c in convs if not any(inside(c, b) for b in blocks)]
    return list(dict.fromkeys(_call_log(model, blocks + loose, example)))


def _call_log(model: nn.Module, paths: Sequence[str], example: torch.Tensor) -> list[str]:
    """The module paths among ``paths`` in the order they are called by one forward on ``example``."""
    log: list[str] = []
    hooks = [model.get_submodule(p).register_forward_pre_hook(lambda m, a, p=p: log.append(p)) for p in paths]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return log


# --------------------------------------------------------------------------- capture
class _Stop(Exception):
    pass


@torch.no_grad()
def _capture(model: nn.Module, unit: str, x: torch.Tensor, calls: int, eval_batch: int):
    """Per call of ``unit`` (``calls`` per forward): (positional inputs, keyword inputs, output) over all
    patches of ``x``. Keyword inputs must not be tensors (CARN's upsampler takes ``scale=…``)."""
    mod = model.get_submodule(unit)
    got: list[tuple[tuple, dict, torch.Tensor]] = []

    def hook(m, args, kwargs, out):
        if any(torch.is_tensor(v) for v in kwargs.values()):
            raise ValueError(f"reconstruction unit {unit!r} takes a tensor keyword argument; not supported")
        got.append((tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args), dict(kwargs),
                    out.detach().clone()))
        if len(got) % calls == 0:
            raise _Stop

    h = mod.register_forward_hook(hook, with_kwargs=True)
    per_call: list[list] = [[] for _ in range(calls)]
    try:
        for i in range(0, x.shape[0], eval_batch):
            got.clear()
            try:
                model(x[i:i + eval_batch])
            except _Stop:
                pass
            for j, item in enumerate(got):
                per_call[j].append(item)
    finally:
        h.remove()
    out = []
    for items in per_call:
        args = tuple(torch.cat([it[0][k] for it in items]) if torch.is_tensor(items[0][0][k]) else items[0][0][k]
                     for k in range(len(items[0][0])))
        out.append((args, items[0][1], torch.cat([it[2] for it in items])))
    return out


# --------------------------------------------------------------------------- parameters
def _unit_params(mod: nn.Module, cfg: ReconConfig, frozen_acts: set[int]):
    """(rounding offsets, [(name, parameter)] of clips/l/u/bp) of the quantizers under ``mod``."""
    offsets, others = [], []
    seen: set[int] = set()
    for name, m in mod.named_modules():
        if not isinstance(m, QuantConv2d):
            continue
        for aq, wq in [(m.act_quant, m.weight_quant)] + [(s.act_quant, s.weight_quant) for s in m.site_quants]:
            if id(wq) in seen:
                continue
            seen.add(id(wq))
            offsets.append(wq.offset)
            if cfg.learn_clip:
                others.append((f"{name}.clip", wq.clip))
            if cfg.learn_bias and m.conv.bias is not None and id(m.conv.bias) not in seen:
                seen.add(id(m.conv.bias))
                others.append((f"{name}.bias", m.conv.bias))
            if cfg.learn_act and id(aq) not in frozen_acts:
                if aq.signed:
                    others.append((f"{name}.l", aq.l))
                others.append((f"{name}.u", aq.u))
                if aq.allocation != "uniform":
                    others.append((f"{name}.bp", aq.bp))
    return offsets, others


def _state_of(mod: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in mod.state_dict().items()
            if ".act_quant." in f".{k}" or ".weight_quant." in f".{k}" or ".site_quants." in f".{k}"
            or k.endswith("conv.bias")}


@torch.no_grad()
def _unit_loss(mod: nn.Module, data, eval_batch: int, weights=None) -> float:
    tot, n = 0.0, 0
    for c, (args, kw, target) in enumerate(data):
        w = 1.0 if weights is None else weights[c]
        for i in range(0, target.shape[0], eval_batch):
            a = tuple(t[i:i + eval_batch] if torch.is_tensor(t) else t for t in args)
            tot += float((w * (mod(*a, **kw) - target[i:i + eval_batch]) ** 2).sum())
            n += target[i:i + eval_batch].numel()
    return tot / max(n, 1)


def _fisher_weights(model: nn.Module, units: Sequence[str], calls: Counter, x: torch.Tensor, batch: int,
                    seed: int) -> dict[str, list[torch.Tensor]]:
    """Per unit and call, a (C, 1, 1) weight per output channel: the mean squared sensitivity of the float
    model's SR output to that channel, ``E[(Jᵀr)²]`` with a Rademacher probe ``r`` on the output (a Hutchinson
    estimate of diag(JᵀJ), averaged over patches and pixels), normalised to mean 1 per call. The unit loss
    then counts an error by how much of it reaches the SR output (BRECQ's Fisher-weighted loss, without
    labels: the float model's own output is the target)."""
    acc: dict[str, list] = {u: [None] * calls[u] for u in units}
    seen: dict[str, int] = {}
    leaves: list[tuple[str, int, torch.Tensor]] = []

    def hook(m, args, out, unit):
        i = seen.get(unit, 0)
        seen[unit] = i + 1
        leaves.append((unit, i, out))
        return out.clone()  # the model may modify its output in place (IMDN's LeakyReLU); keep ours intact

    hooks = [model.get_submodule(u).register_forward_hook(lambda m, a, o, u=u: hook(m, a, o, u)) for u in units]
    gen = torch.Generator().manual_seed(int(seed))
    try:
        for b in range(0, x.shape[0], batch):
            seen.clear()
            leaves.clear()
            with torch.enable_grad():
                y = model(x[b:b + batch].clone().requires_grad_(True))  # every output in the graph
                r = torch.randint(0, 2, y.shape, generator=gen).to(y.dtype) * 2 - 1
                grads = torch.autograd.grad((r * y).sum(), [t for _, _, t in leaves], allow_unused=True)
            for (unit, i, _), g in zip(leaves, grads):
                if g is None:
                    continue
                s = (g.detach() ** 2).sum(dim=(0, 2, 3))
                acc[unit][i] = s if acc[unit][i] is None else acc[unit][i] + s
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for u, per_call in acc.items():
        ws = []
        for s in per_call:
            if s is None or not float(s.sum()) > 0:
                raise ValueError(f"fisher weighting: unit {u!r} does not reach the model's output")
            ws.append((s / s.mean()).reshape(-1, 1, 1))
        out[u] = ws
    return out


# --------------------------------------------------------------------------- driver
def student_model(model: nn.Module, result) -> nn.Module:
    """The fake-quant student of ``model`` under ``result``, every weight quantizer with a rounding offset
    (learned ones kept), all parameters frozen (training unfreezes a unit's quantizers)."""
    fq = build_fakequant_model(model, result)
    for p in fq.parameters():
        p.requires_grad_(False)
    for layer in result.layers.values():
        m = fq.get_submodule(layer.module)
        for wq in [m.weight_quant] + [s.weight_quant for s in m.site_quants]:
            if wq.offset is None:
                wq.learn_rounding(m.conv.weight)
            wq.offset.requires_grad_(False)
    return fq


def _train_unit(mod: nn.Module, q_data, fp_data, cfg: ReconConfig, k: int, frozen_acts: set[int], bar, unit: str,
                weights=None):
    offsets, others = _unit_params(mod, cfg, frozen_acts)
    for p in offsets:
        p.requires_grad_(True)
    for _, p in others:
        p.requires_grad_(True)
    opt = (torch.optim.Adam([{"params": [p], "lr": cfg.lr_quant * max(float(p.detach().abs().max()), 1e-8)}
                             for _, p in others]) if others else None)
    n = q_data[0][2].shape[0]
    rng = np.random.default_rng([cfg.seed, k])
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
    bs = min(cfg.batch_size, n)
    try:
        for it in range(cfg.iters):
            idx = torch.from_numpy(rng.choice(n, bs, replace=False))
            loss = 0.0
            for c, ((qa, kw, target), (fa, _, _)) in enumerate(zip(q_data, fp_data)):
                args = []
                for a, f in zip(qa, fa):
                    if torch.is_tensor(a) and a.is_floating_point():
                        a, f = a[idx], f[idx]
                        if cfg.qdrop > 0:
                            keep_fp = torch.rand(a.shape, generator=gen) < cfg.qdrop
                            a = torch.where(keep_fp, f, a)
                    args.append(a)
                w = 1.0 if weights is None else weights[c]
                loss = loss + (w * (mod(*args, **kw) - target[idx]) ** 2).mean()
            for p in offsets:
                p.grad = None
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if not torch.isfinite(loss):
                raise ValueError(f"reconstruction diverged at unit {unit!r}, iteration {it + 1}: loss {float(loss)}")
            step = cfg.lr_round * (1.0 - it / cfg.iters)
            with torch.no_grad():
                for p in offsets:
                    if p.grad is not None:
                        p.sub_(step * torch.sign(p.grad))
            if opt is not None:
                opt.step()
            project_quantizers(mod)
            if bar is not None:
                bar.set_postfix(unit=unit, it=it + 1, loss=f"{float(loss.detach()):.4g}")
                bar.update(1)
    finally:
        for p in offsets:
            p.requires_grad_(False)
        for _, p in others:
            p.requires_grad_(False)


def reconstruct(model: nn.Module, result, images: Sequence[torch.Tensor], cfg: ReconConfig | None = None, *,
                state_dir: str | os.PathLike | None = None, progress: bool = False,
                log: Callable[[str], None] | None = None, frozen_act_layers: Sequence[str] = (),
                eval_batch: int = 8) -> dict:
    """Reconstruct ``result``'s quantizers unit by unit (in place: layer specs and ``w_int``) → summary dict.

    ``images``: equal-size float C×H×W calibration patches (the teacher sees
    them whole: IMDN's channel attention uses whole-patch statistics).
    ``frozen_act_layers``: conv op names whose activation quantizer stays as
    initialised (the exact uint8 image quantizer of the head).
    """
    cfg = cfg or ReconConfig()
    t0 = time.time()
    teacher = model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    imgs = [torch.as_tensor(i).float() for i in images]
    if len({tuple(i.shape) for i in imgs}) != 1:
        raise ValueError("reconstruction needs equal-size calibration patches")
    x = torch.stack(imgs)
    fq = student_model(model, result)
    frozen_acts = {id(fq.get_submodule(result.layers[n].module).act_quant) for n in frozen_act_layers}
    units = find_units(model, x[:1], [l.module for l in result.layers.values()])
    calls = Counter(_call_log(model, units, x[:1]))
    sd = Path(state_dir) if state_dir is not None else None
    fp = cfg.fingerprint()
    done: list[dict] = []
    if sd is not None:
        sd.mkdir(parents=True, exist_ok=True)
        got = read_state(sd, STATE_JSON, STATE_KEYS)
        if got is not None:
            meta, tensors = got
            if meta["fingerprint"] != fp or meta["units"] != units:
                raise ValueError(f"{sd}: reconstruction state was made with a different configuration or model; "
                                 "use a fresh state directory")
            done = meta["done"]
            if len(done) > len(units) or not all(isinstance(d, dict) for d in done):
                raise ValueError(f"{sd / STATE_JSON}: 'done' must list at most {len(units)} unit records; "
                                 "use a fresh state directory")
            try:
                fq.load_state_dict(tensors, strict=False)
            except RuntimeError as e:  # a tensor of another shape
                raise ValueError(f"{sd / meta['tensors']}: does not fit this model ({' '.join(str(e).split())[:160]}); "
                                 "use a fresh state directory") from None
    fisher = (_fisher_weights(teacher, units, calls, x, FISHER_BATCH, cfg.seed) if cfg.weighting == "fisher"
              else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(units) * cfg.iters, initial=len(done) * cfg.iters, desc="reconstruct",
                   dynamic_ncols=True)
    try:
        for k, unit in enumerate(units):
            if k < len(done):
                continue
            tu = time.time()
            q_data = _capture(fq, unit, x, calls[unit], eval_batch)
            fp_data = _capture(teacher, unit, x, calls[unit], eval_batch)
            target = [(qa, kw, t) for (qa, kw, _), (_, _, t) in zip(q_data, fp_data)]
            mod = fq.get_submodule(unit)
            before_state = _state_of(mod)
            w = fisher[unit] if fisher is not None else None
            before = _unit_loss(mod, target, eval_batch, w)
            _train_unit(mod, target, fp_data, cfg, k, frozen_acts, bar, unit, w)
            after = _unit_loss(mod, target, eval_batch, w)
            reverted = not after <= before
            if reverted:
                mod.load_state_dict(before_state, strict=False)
            rec = {"unit": unit, "loss_before": before, "loss_after": after, "reverted": reverted,
                   "seconds": round(time.time() - tu, 2)}
            done.append(rec)
            del q_data, fp_data, target
            if sd is not None:
                _save(sd, fq, fp, units, done)
            if log:
                log(json.dumps(rec))
    finally:
        if bar is not None:
            bar.close()
    for layer, site in _layer_sites(result):
        m = fq.get_submodule(layer.module)
        aq, wq = (m.act_quant, m.weight_quant) if site == 0 or m.num_sites == 1 else (m.site_quants[site - 1].act_quant,
                                                                   m.site_quants[site - 1].weight_quant)
        layer.act = aq.spec()
        layer.weight = wq.spec()
        layer.w_int = wq.integer_weights(m.conv.weight)
        if cfg.learn_bias and m.conv.bias is not None:
            layer.bias = m.conv.bias.detach().clone()
    return {"units": done, "iters": cfg.iters, "batch_size": cfg.batch_size, "lr_round": cfg.lr_round,
            "lr_quant": cfg.lr_quant, "qdrop": cfg.qdrop, "learn_act": cfg.learn_act, "learn_clip": cfg.learn_clip,
            "learn_bias": cfg.learn_bias, "weighting": cfg.weighting,
            "seed": cfg.seed, "patches": len(imgs), "patch_shape": list(imgs[0].shape),
            "seconds": round(time.time() - t0, 2)}


def _layer_sites(result):
    """(layer, call-site index within its module) in graph order (site i = the module's i-th call)."""
    seen: dict[str, int] = {}
    for layer in result.layers.values():
        i = seen.get(layer.module, 0)
        seen[layer.module] = i + 1
        yield layer, i


def _save(sd: Path, fq: nn.Module, fp: str, units: list[str], done: list[dict]) -> None:
    import io

    from intsim.artifact import atomic_write_bytes, atomic_write_json

    buf = io.BytesIO()
    torch.save(_state_of(fq), buf)
    name = f"recon_state_u{len(done)}.pt"
    atomic_write_bytes(sd / name, buf.getvalue())
    atomic_write_json(sd / STATE_JSON, {"fingerprint": fp, "units": units, "done": done, "tensors": name})
    for old in sd.glob("recon_state_u*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)
