"""Plots of cost-model results (``intsim.cost.estimate_cost``); matplotlib is imported lazily.

* :func:`plot_layer_energy` — stacked energy bars (MAC / accumulate / decode / rescale /
  vector / SRAM / DRAM) of each conv layer and of each group of vector ops (encode, add,
  concat, pools, mul, split, …) of one cost result; :func:`plot_energy_shares` — the
  categories' totals and shares; :func:`plot_energy_overview` — both side by side.
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


#: Vector ops grouped into one bar each: a per-layer bar would be unreadable for a deep model, and one
#: "other ops" bar hid most of the energy (the DRAM traffic of encodes and residual adds).
OP_GROUPS = {
    "encode": "encode", "add": "add", "concat": "concat", "split": "split", "mul": "mul",
    "mean_pool": "pools", "std_pool": "pools", "image_in": "image in/out", "image_out": "image in/out",
    "relu": "activations", "clamp": "activations", "leaky_relu": "activations", "prelu": "activations", "lut": "lut",
    "pixel_shuffle": "upsample", "upsample_nearest": "upsample", "upsample_bilinear": "upsample", "upsample_bicubic": "upsample",
}


def op_group(op: str) -> str:
    return OP_GROUPS.get(op, op)


def vector_op_groups(cost: dict, unit: float = 1e-6) -> list[dict]:
    """The non-conv ops by :data:`OP_GROUPS`, most energy first: ``group``, ``ops`` (count),
    ``energy`` ({category: energy}, in ``unit``·pJ), ``total`` and ``dram`` (same unit)."""
    cats = list(cost.get("categories") or CATEGORY_COLORS)
    groups: dict[str, dict] = {}
    for layer in cost["layers"]:
        if layer["kind"] == "conv":
            continue
        g = groups.setdefault(op_group(layer["op"]), {"group": op_group(layer["op"]), "ops": 0,
                                                      "energy": dict.fromkeys(cats, 0.0)})
        g["ops"] += 1
        for c in cats:
            g["energy"][c] += layer["energy_pj"].get(c, 0.0) * unit
    for g in groups.values():
        g["total"] = sum(g["energy"].values())
        g["dram"] = g["energy"].get("dram", 0.0)
    return sorted(groups.values(), key=lambda g: -g["total"])


def layer_energy_table(cost: dict, include_vector: bool = False, unit: float = 1e-6) -> tuple[list[str], dict]:
    """(labels, {category: [energy per bar]}) of a cost result, in ``unit``·pJ (default µJ).

    Bars are the conv layers in graph order, then (``include_vector=False``) one bar per
    group of :func:`vector_op_groups` that spends any energy, labelled ``"group ×count"``;
    with ``include_vector=True`` every layer is its own bar."""
    cats = list(cost.get("categories") or CATEGORY_COLORS)
    labels: list[str] = []
    data = {c: [] for c in cats}
    for layer in cost["layers"]:
        if layer["kind"] == "conv" or include_vector:
            labels.append(layer["name"])
            for c in cats:
                data[c].append(layer["energy_pj"].get(c, 0.0) * unit)
    if not include_vector:
        for g in vector_op_groups(cost, unit):
            if g["total"] > 0:
                labels.append(f"{g['group']} ×{g['ops']}")
                for c in cats:
                    data[c].append(g["energy"][c])
    return labels, data


def energy_shares(cost: dict) -> list[tuple[str, float, float]]:
    """(category, µJ per image, fraction of the total) of a cost result, largest first."""
    e = cost["totals"]["energy_pj"]
    total = e.get("total") or sum(v for k, v in e.items() if k != "total")
    rows = [(c, v * 1e-6, v / total if total else 0.0) for c, v in e.items() if c != "total"]
    return sorted(rows, key=lambda r: -r[1])


def plot_layer_energy(cost: dict, path: str | os.PathLike | None = None, *, include_vector: bool = False,
                      title: str | None = None, log: bool = False, ax=None):
    """Stacked bars from zero of each conv layer's (and vector-op group's, see :func:`layer_energy_table`)
    energy by category (µJ per image, mean over images)."""
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
    else:  # autoscaling can lift the axis off zero; a stacked bar must be read from 0
        ax.set_ylim(bottom=0.0)
    acc = cost.get("accelerator", {}).get("name", "")
    ax.set_title(title or f"{cost.get('model_name') or 'model'} — {cost.get('scheme')} "
                          f"({cost.get('realization')}) on {acc}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def plot_energy_shares(cost: dict, path: str | os.PathLike | None = None, *, ax=None):
    """Horizontal bars from zero: each energy category's µJ per image and share of the total."""
    plt = _plt()
    rows = [r for r in energy_shares(cost) if r[1] > 0]
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.0, 0.35 * len(rows) + 1.2))
    else:
        fig = ax.figure
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r[1] for r in rows], color=[CATEGORY_COLORS.get(r[0], "0.5") for r in rows])
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xlim(0, max((r[1] for r in rows), default=1.0) * 1.35)
    for yi, (_, v, frac) in zip(y, rows):
        ax.text(v, yi, f" {v:.1f} µJ ({100 * frac:.0f} %)" if v >= 1 else f" {v:.3g} µJ ({100 * frac:.0f} %)",
                va="center", fontsize=7)
    ax.set_xlabel("energy per image [µJ]")
    ax.set_title("where the energy goes (all ops)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig, path)


def plot_energy_overview(cost: dict, path: str | os.PathLike | None = None):
    """:func:`plot_layer_energy` (conv layers and vector-op groups) beside :func:`plot_energy_shares`."""
    plt = _plt()
    n = len(layer_energy_table(cost)[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(6.0, 0.28 * n + 2.0) + 4.5, 4.2),
                                      gridspec_kw={"width_ratios": [max(6.0, 0.28 * n + 2.0), 4.5]})
    plot_layer_energy(cost, ax=left)
    plot_energy_shares(cost, ax=right)
    fig.tight_layout()
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
