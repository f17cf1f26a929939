"""Calibration plots: per-layer activation histograms (l, bp, u marked) and per-layer sensitivity.

* :func:`plot_activation_histograms` — one panel per conv input: histogram of
  calibration activations (log counts) with the quantizer's ``l``, ``bp`` (±bp
  for signed tensors) and ``u`` drawn as vertical lines; one PNG.
* :func:`layer_sensitivity` — quality when *only one* layer is quantized (all
  others float), as in the paper's figure 4; :func:`plot_layer_sensitivity`
  draws it as bars (with the FP level if given).

PNG files are written atomically (temporary file + rename). matplotlib runs
with the non-interactive Agg backend.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = ["plot_activation_histograms", "layer_sensitivity", "plot_layer_sensitivity", "psnr_eval_fn"]


def _save(fig, path: str | os.PathLike) -> Path:
    import io

    from intsim.artifact import atomic_write_bytes

    p = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(p, buf.getvalue())
    return p


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_activation_histograms(model: nn.Module, result, images: Sequence[torch.Tensor], out_path, *,
                               layers: Sequence[str] | None = None, bins: int = 120, batch_size: int = 2,
                               cols: int = 4) -> Path:
    """Histograms of every (or the listed) conv's input over ``images`` with l, bp, u of ``result`` marked."""
    from calib.calibrate import _batches
    from calib.methods import collect_activation_stats

    names = list(layers) if layers is not None else list(result.layers)
    mods = [result.layers[n].module for n in names]
    stats = collect_activation_stats(model, mods, list(_batches(images, batch_size)), samples_per_batch=20000)
    plt = _plt()
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, n, m in zip(axes.flat, names, mods):
        layer = result.layers[n]
        v = stats[m].samples.numpy()
        ax.hist(v, bins=bins, log=True, color="0.55")
        a = layer.act
        marks = [(min(a.l, 0.0) if a.signed else 0.0, "l", "tab:blue"), (a.u, "u", "tab:red")]
        if a.allocation != "uniform":
            bp = a.effective_bp()
            marks.append((bp, "bp", "tab:green"))
            if a.signed:
                marks.append((-bp, "-bp", "tab:green"))
        for x, lab, c in marks:
            ax.axvline(x, color=c, lw=1, ls="--", label=lab)
        ax.set_title(f"{n} ({layer.role}, A{layer.bits_a}, {a.code_bits}b codes)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"conv input activations, {result.method} {result.bits}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    p = _save(fig, out_path)
    plt.close(fig)
    return p


def layer_sensitivity(model: nn.Module, result, eval_fn: Callable[[nn.Module], float],
                      layers: Sequence[str] | None = None) -> dict[str, float]:
    """``{layer: eval_fn(model with only that layer fake-quantized)}`` (e.g. Set5 PSNR)."""
    from calib.quant.fakequant import build_fakequant_model

    out: dict[str, float] = {}
    for n in (list(layers) if layers is not None else list(result.layers)):
        one = copy.copy(result)
        one.layers = {n: result.layers[n]}
        out[n] = float(eval_fn(build_fakequant_model(model, one)))
    return out


def plot_layer_sensitivity(sens: dict[str, float], out_path, *, fp: float | None = None,
                           title: str = "quality with only one layer quantized") -> Path:
    plt = _plt()
    names = list(sens)
    vals = np.array([sens[n] for n in names], dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(names) + 2), 3.2))
    ax.bar(range(len(names)), vals, color="tab:blue")
    if fp is not None:
        ax.axhline(fp, color="k", ls="--", lw=1, label=f"FP {fp:.2f}")
        ax.legend(fontsize=8)
    lo = float(np.nanmin(vals)) if len(vals) else 0.0
    hi = max(float(np.nanmax(vals)) if len(vals) else 1.0, fp or -math.inf)
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9) - 0.05, hi + 0.05 * (hi - lo + 1e-9) + 0.05)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    p = _save(fig, out_path)
    plt.close(fig)
    return p


def psnr_eval_fn(reference: nn.Module, inputs: Sequence[torch.Tensor], peak: float = 1.0):
    """An ``eval_fn`` for :func:`layer_sensitivity`: PSNR (dB) of a model's output against ``reference``'s."""
    from calib.calibrate import psnr

    with torch.no_grad():
        refs = [reference(x.unsqueeze(0)) for x in inputs]

    def fn(m: nn.Module) -> float:
        with torch.no_grad():
            vals = [psnr(m(x.unsqueeze(0)), r, peak) for x, r in zip(inputs, refs)]
        finite = [v for v in vals if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.inf
    return fn
