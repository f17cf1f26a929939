"""The report's plots (:mod:`reports.html_report`): activation histograms with the two-region
breakpoints, and the Y-PSNR gain over bicubic. Each returns a matplotlib figure (:func:`fig_png`
makes the PNG the report embeds); matplotlib is imported lazily (the report works without it,
tables only).
"""
from __future__ import annotations

import io

import numpy as np

#: Histogram panels at most (the quantized conv inputs, graph order, evenly chosen).
MAX_HISTOGRAMS = 8
#: Conv inputs with fewer values per image are not drawn: the 1×1 inputs of channel attention
#: (4–64 values after a global pool) give histograms of a handful of bars that say nothing.
MIN_HISTOGRAM_VALUES = 256
#: The models of the quality tables and plots, reference first.
MODELS = ("bicubic", "float", "fake_quant", "golden", "intsim")


def fig_png(fig) -> bytes:
    from reports.cost_plots import _plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    _plt().close(fig)
    return buf.getvalue()


def signed_db(v) -> str:
    """A signed dB difference, with a real minus sign."""
    return "—" if v is None else f"{v:+.2f} dB".replace("-", "−")


def codebook_values(cb) -> tuple[np.ndarray, list[float]]:
    """(real value of every flat code, breakpoints between consecutive segments) of a Codebook."""
    seg, _idx, grid = cb.code_table()
    unit = float(cb.unit_m) * 2.0 ** (-int(cb.unit_e))
    vals = grid.astype(np.float64) * unit
    bps = []
    for s in range(len(cb.segments) - 1):
        a, b = vals[seg == s], vals[seg == s + 1]
        if a.size and b.size:
            hi_a, lo_b = float(a.max()), float(b.min())
            lo_a, hi_b = float(a.min()), float(b.max())
            # boundary between adjacent regions: where one ends and the next begins
            bps.append((hi_a + lo_b) / 2 if hi_a <= lo_b else (lo_a + hi_b) / 2)
    return vals, bps


def histogram_panels(rf, max_panels: int = MAX_HISTOGRAMS) -> tuple[list[tuple[str, np.ndarray]], str]:
    """([(codes tensor, count per flat code)], source line) of the conv inputs worth drawing.

    Counts come from the run counters' code histograms (every image) or else golden input 0.
    Tensors with fewer than :data:`MIN_HISTOGRAM_VALUES` values per image are skipped; of the
    rest at most ``max_panels``, evenly spread over the graph."""
    art = rf.art
    # encoder outputs: a pad's codes (arithmetic.md §5.8) are a copy of its encoder's, not a panel of their own
    encoded = {op.outputs[0] for op in art.ops if op.op == "encode"}
    codes = [n for n, t in art.tensors.items() if t.kind == "codes" and n in encoded]
    counts: dict[str, np.ndarray] = {}
    per_image: dict[str, int] = {}
    if rf.counters:
        source = f"run counters, {len(rf.counters)} image(s)"
        by_out = {op.outputs[0]: op.name for op in art.ops if op.op == "encode"}
        for c in rf.counters:
            for name in codes:
                oc = c["ops"].get(by_out.get(name), {})
                if "code_histogram" in oc:
                    h = np.asarray(oc["code_histogram"], dtype=np.int64)
                    counts[name] = counts[name] + h if name in counts else h
                    per_image[name] = int(np.prod(oc.get("out_shape") or [0]))
    elif rf.golden is not None:
        source = "golden codes of input 0"
        for name in codes:
            if name in rf.golden.tensor_names(0):
                per_image[name] = int(np.prod(rf.golden.entry(0, name).shape))
                n = art.tensors[name].codebook.num_codes
                counts[name] = np.bincount(np.clip(rf.golden.tensor(0, name).reshape(-1).astype(np.int64), 0, n - 1),
                                           minlength=n)
    else:
        return [], ""
    names = [n for n in codes if n in counts and per_image.get(n, 0) >= MIN_HISTOGRAM_VALUES]
    skipped = sum(1 for n in codes if n in counts) - len(names)
    if len(names) > max_panels:
        pick = np.unique(np.linspace(0, len(names) - 1, max_panels).round().astype(int))
        names = [names[i] for i in pick]
    if skipped:
        source += (f"; {skipped} conv input(s) with fewer than {MIN_HISTOGRAM_VALUES} values per image "
                   f"(1×1 attention inputs) not drawn")
    return [(n, counts[n]) for n in names], source


def activation_histograms(art, panels: list[tuple[str, np.ndarray]]):
    """One figure (None without panels): the histogram of each panel's decoded codes, breakpoints
    dashed, both axes labelled with their unit."""
    if not panels:
        return None
    from reports.cost_plots import _plt

    plt = _plt()
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (name, counts) in zip(axes.ravel(), panels):
        cb = art.tensors[name].codebook
        vals, bps = codebook_values(cb)
        counts = counts[:vals.size]
        seg = cb.code_table()[0]
        colors = np.where(seg == _dense_segment(cb), "#4C72B0", "#C44E52")[:counts.size]
        width = _bar_width(vals)
        ax.bar(vals[:counts.size], counts, width=width, color=list(colors), linewidth=0)
        for bp in bps:
            ax.axvline(bp, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{name}\n{cb.num_codes} codes ({cb.code_bits} bits), {len(cb.segments)} region(s)",
                     fontsize=7)
        ax.set_xlabel("activation value [float-model units]", fontsize=6)
        ax.set_ylabel("values (log scale)", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.set_xlim(float(vals.min()) - width, float(vals.max()) + width)
    fig.suptitle("conv-input activations (codes decoded by their codebook); blue: dense region, red: outlier "
                 "region, dashed: breakpoints", fontsize=8)
    fig.tight_layout()
    return fig


def _dense_segment(cb) -> int:
    """The dense region: the segment whose value range holds 0 (else the one nearest to 0)."""
    seg, _idx, grid = cb.code_table()
    best, best_d = 0, None
    for s in range(len(cb.segments)):
        g = grid[seg == s]
        if not g.size:
            continue
        lo, hi = int(g.min()), int(g.max())
        d = 0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
        if best_d is None or d < best_d:
            best, best_d = s, d
    return best


def _bar_width(vals: np.ndarray) -> float:
    if vals.size < 2:
        return 1.0
    d = np.diff(np.sort(np.unique(vals)))
    return float(d.min()) * 0.9 if d.size else 1.0


def psnr_gain_plot(summary: dict):
    """A figure (None without PSNRs) of bars from zero: each model's mean Y-PSNR minus bicubic's
    (or, without bicubic, the PSNR itself)."""
    from reports.cost_plots import _plt

    ps = summary.get("psnr_db") or {}
    keys = [k for k in MODELS if k != "bicubic" and ps.get(k) is not None]
    if not keys:
        return None
    base = ps.get("bicubic")
    vals = [ps[k] - base if base is not None else ps[k] for k in keys]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(keys) + 1.3))
    y = list(range(len(keys)))[::-1]
    ax.barh(y, vals, color=["#C44E52" if v < 0 else "#4C72B0" for v in vals])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([k.replace("_", "-") for k in keys], fontsize=8)
    span = max(abs(v) for v in vals) or 1.0  # room for the labels; an all-positive axis starts at 0
    ax.set_xlim(min(vals) - 0.6 * span if min(vals) < 0 else 0.0, max(vals) + 0.6 * span if max(vals) > 0 else 0.0)
    for yi, k, v in zip(y, keys, vals):
        text = f" {signed_db(v)} ({ps[k]:.2f} dB) " if base is not None else f" {ps[k]:.2f} dB "
        ax.text(v, yi, text, va="center", ha="left" if v >= 0 else "right", fontsize=7)
    ax.set_xlabel("Y-PSNR gain over bicubic [dB]" if base is not None else "Y-PSNR [dB]")
    ax.set_title((f"bicubic = {base:.2f} dB (0 on this axis); " if base is not None else "")
                 + f"{summary.get('model')} ×{summary.get('scale')} {summary.get('bits')}, "
                 f"{summary.get('images')} image(s)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig
