"""Plots of cost-model results (``intsim.cost.estimate_cost``); matplotlib is imported lazily.

* :func:`plot_layer_energy` — per-layer stacked energy bars (MAC / accumulate / decode /
  rescale / vector / SRAM / DRAM) of one cost result.
* :func:`pareto_front` and :func:`plot_pareto` — energy (or latency) against PSNR for
  several schemes / accelerators; PSNRs are given by the caller (the cost model knows
  no image quality).

Each plotting function returns the matplotlib ``Figure`` and, given ``path``, saves it
(format from the suffix) and closes it. Uses the non-interactive Agg backend unless
pyplot was already imported with another one.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

CATEGORY_COLORS = {
    "mac": "#4C72B0",
    "accumulate": "#55A868",
    "decode": "#8172B2",
    "rescale": "#C44E52",
    "vector": "#CCB974",
    "sram": "#64B5CD",
    "dram": "#8C8C8C",
}


def _plt():
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    if path is not None:
        import io

        from intsim.artifact import atomic_write_bytes

        ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, bbox_inches="tight", dpi=150)
        atomic_write_bytes(path, buf.getvalue())
        _plt().close(fig)
    return fig


def layer_energy_table(cost: dict, include_vector: bool = False, unit: float = 1e-6) -> tuple[list[str], dict]:
    """(labels, {category: [energy per bar]}) of a cost result, in ``unit``·pJ (default µJ).

    Bars are the conv layers in graph order; with ``include_vector=False`` all other ops
    are summed into one last bar ``"other ops"``."""
    cats = list(cost.get("categories") or CATEGORY_COLORS)
    labels: list[str] = []
    data = {c: [] for c in cats}
    other = {c: 0.0 for c in cats}
    for layer in cost["layers"]:
        e = layer["energy_pj"]
        if layer["kind"] == "conv" or include_vector:
            labels.append(layer["name"])
            for c in cats:
                data[c].append(e.get(c, 0.0) * unit)
        else:
            for c in cats:
                other[c] += e.get(c, 0.0) * unit
    if not include_vector and any(v > 0 for v in other.values()):
        labels.append("other ops")
        for c in cats:
            data[c].append(other[c])
    return labels, data


def plot_layer_energy(cost: dict, path: str | os.PathLike | None = None, *, include_vector: bool = False,
                      title: str | None = None, log: bool = False, ax=None):
    """Stacked bars of each layer's energy by category (µJ per image, mean over images)."""
    plt = _plt()
    labels, data = layer_energy_table(cost, include_vector=include_vector)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(labels) + 2.0), 4.2))
    else:
        fig = ax.figure
    x = list(range(len(labels)))
    bottom = [0.0] * len(labels)
    for c, vals in data.items():
        if not any(v > 0 for v in vals):
            continue
        ax.bar(x, vals, bottom=bottom, color=CATEGORY_COLORS.get(c), label=c, width=0.8)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel("energy per image [µJ]")
    if log:
        ax.set_yscale("log")
    acc = cost.get("accelerator", {}).get("name", "")
    ax.set_title(title or f"{cost.get('model_name') or 'model'} — {cost.get('scheme')} "
                          f"({cost.get('realization')}) on {acc}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def pareto_front(points: Sequence[dict], x: str = "energy", y: str = "psnr") -> list[dict]:
    """The points not dominated by another (lower or equal ``x`` and higher or equal ``y``,
    one strictly), sorted by ``x``. Points are dicts with numeric ``x`` and ``y`` keys."""
    pts = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    front = []
    for p in pts:
        dominated = any(
            (q[x] <= p[x] and q[y] >= p[y]) and (q[x] < p[x] or q[y] > p[y]) for q in pts if q is not p
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: (p[x], -p[y]))


def pareto_points(costs: Iterable[dict], psnrs: Iterable[float], labels: Iterable[str] | None = None) -> list[dict]:
    """Points for :func:`plot_pareto` from cost results and caller-given PSNRs:
    ``energy`` (µJ per image), ``latency`` (ms per image), ``energy_per_mpix`` (mJ),
    ``latency_per_mpix`` (ms), ``psnr``, ``label``."""
    out = []
    costs, psnrs = list(costs), list(psnrs)
    labels = list(labels) if labels is not None else [None] * len(costs)
    if not (len(costs) == len(psnrs) == len(labels)):
        raise ValueError(f"costs, psnrs and labels differ in length: {len(costs)}, {len(psnrs)}, {len(labels)}")
    for c, p, lab in zip(costs, psnrs, labels):
        t = c["totals"]
        out.append({
            "label": lab or f"{c['scheme']} ({c['realization']}) / {c['accelerator']['name']}",
            "psnr": float(p),
            "energy": t["energy_pj"]["total"] * 1e-6,
            "latency": t["latency_s"] * 1e3,
            "energy_per_mpix": t["per_output_mpix"]["energy_mj"],
            "latency_per_mpix": t["per_output_mpix"]["latency_ms"],
        })
    return out


_AXIS_LABELS = {
    "energy": "energy per image [µJ]",
    "latency": "latency per image [ms]",
    "energy_per_mpix": "energy per output megapixel [mJ]",
    "latency_per_mpix": "latency per output megapixel [ms]",
}


def plot_pareto(points: Sequence[dict], path: str | os.PathLike | None = None, *, x: str = "energy",
                title: str | None = None, logx: bool = True, ax=None):
    """Scatter ``x`` (energy or latency, see :func:`pareto_points`) against PSNR, front joined."""
    if x not in _AXIS_LABELS:
        raise ValueError(f"x must be one of {', '.join(_AXIS_LABELS)}, got {x!r}")
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
    else:
        fig = ax.figure
    for p in points:
        ax.scatter([p[x]], [p["psnr"]], s=28)
        ax.annotate(p.get("label", ""), (p[x], p["psnr"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = pareto_front(points, x=x, y="psnr")
    if len(front) > 1:
        ax.plot([p[x] for p in front], [p["psnr"] for p in front], "k--", lw=1, label="Pareto front")
        ax.legend(fontsize=7)
    ax.set_xlabel(_AXIS_LABELS[x])
    ax.set_ylabel("PSNR [dB]")
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return _finish(fig, path)
