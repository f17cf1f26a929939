"""A self-contained HTML report of a run directory (``intsim demo`` / ``intsim report``).

A run directory holds ``summary.json`` (see :mod:`reports.demo`), and optionally the
artifact, the golden folder, ``cost.json`` (``intsim.cost.estimate_cost``), ``cost_compare.json``
and SR images, at the relative paths the summary names. :func:`build_report` turns it into
one ``report.html`` with every plot embedded as a base64 PNG (no external files):

* the PSNR table (float / fake-quant / golden / intsim / bicubic, per image and mean),
  verification outcome and code bits;
* activation histograms of the quantized conv inputs (decoded from the golden codes)
  with the two-region breakpoints (segment boundaries) marked;
* per-layer stacked energy bars (:func:`reports.cost_plots.plot_layer_energy`) and the
  scheme comparison table;
* SR image crops (LR nearest-upsampled, bicubic, float, intsim) side by side.

numpy + matplotlib only (no torch); matplotlib is optional: without it the report has
the tables only and says so.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path

import numpy as np

REPORT_NAME = "report.html"
#: Histogram panels at most (the quantized conv inputs, graph order, evenly chosen).
MAX_HISTOGRAMS = 8

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right} th{background:#f4f4f4} td.l,th.l{text-align:left}
.ok{color:#1a7f37;font-weight:bold} .bad{color:#c62828;font-weight:bold} .warn{color:#b26a00;font-weight:bold} .muted{color:#777;font-size:.85em}
img.plot{max-width:100%;border:1px solid #eee;margin:.4em 0} figure{display:inline-block;margin:.3em;
text-align:center} figcaption{font-size:.8em;color:#555} code{background:#f6f6f6;padding:0 .2em}
"""


class ReportError(ValueError):
    """A run directory that cannot be reported (missing or malformed summary)."""


def _esc(x) -> str:
    return html.escape(str(x))


def _fmt(v, nd=2) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return _esc(v)


def _png_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _img_tag(data: bytes, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{_esc(alt)}" src="data:image/png;base64,{_png_b64(data)}">'


def _fig_png(fig) -> bytes:
    from reports.cost_plots import _plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    _plt().close(fig)
    return buf.getvalue()


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def table(headers: list[str], rows: list[list], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r in rows:
        body.append("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_fmt(v)}</td>'
                                     for i, v in enumerate(r)) + "</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


# --------------------------------------------------------------------------- plots
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


def activation_histograms(art, golden, max_panels: int = MAX_HISTOGRAMS, input_index: int = 0) -> bytes | None:
    """One PNG: histograms of decoded conv-input codes (golden input ``input_index``) with breakpoints."""
    names = [n for n, t in art.tensors.items() if t.kind == "codes" and n in golden.tensor_names(input_index)]
    if not names:
        return None
    if len(names) > max_panels:
        pick = np.unique(np.linspace(0, len(names) - 1, max_panels).round().astype(int))
        names = [names[i] for i in pick]
    from reports.cost_plots import _plt

    plt = _plt()
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        cb = art.tensors[name].codebook
        vals, bps = codebook_values(cb)
        codes = golden.tensor(input_index, name).reshape(-1).astype(np.int64)
        x = vals[np.clip(codes, 0, vals.size - 1)]
        counts = np.bincount(np.clip(codes, 0, vals.size - 1), minlength=vals.size)
        seg = cb.code_table()[0]
        colors = np.where(seg == _dense_segment(cb), "#4C72B0", "#C44E52")
        ax.bar(vals, counts, width=_bar_width(vals), color=list(colors), linewidth=0)
        for bp in bps:
            ax.axvline(bp, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{name}\n{cb.num_codes} codes ({cb.code_bits} bits), {len(cb.segments)} region(s)",
                     fontsize=7)
        ax.tick_params(labelsize=6)
        if x.size:
            ax.set_xlim(float(vals.min()) - _bar_width(vals), float(vals.max()) + _bar_width(vals))
    fig.suptitle("conv-input activations (decoded golden codes); blue: dense region, red: outlier region, "
                 "dashed: breakpoints", fontsize=8)
    fig.tight_layout()
    return _fig_png(fig)


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


def psnr_bar_plot(summary: dict) -> bytes:
    from reports.cost_plots import _plt

    plt = _plt()
    ps = summary["psnr_db"]
    keys = [k for k in ("bicubic", "float", "fake_quant", "golden", "intsim") if ps.get(k) is not None]
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    vals = [ps[k] for k in keys]
    ax.bar(keys, vals, color=["#8C8C8C", "#4C72B0", "#8172B2", "#55A868", "#C44E52"][:len(keys)])
    lo = min(vals) - 1.0
    ax.set_ylim(lo, max(vals) + 0.5)
    for i, v in enumerate(vals):
        ax.text(i, v + 0.05, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_ylabel("Y-PSNR [dB]")
    ax.set_title(f"{summary.get('model')} ×{summary.get('scale')} {summary.get('bits')} "
                 f"({summary.get('images')} image(s))", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _fig_png(fig)


def image_strip(run_dir: Path, summary: dict, max_images: int = 3, crop: int = 96) -> list[tuple[str, bytes]]:
    """(caption, PNG) crops of the SR images listed in ``summary["per_image"][i]["files"]``."""
    from PIL import Image

    out = []
    for row in summary.get("per_image", [])[:max_images]:
        files = row.get("files") or {}
        crops = []
        for label, rel in files.items():
            p = run_dir / rel
            if not p.is_file():
                continue
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
            if label == "lr":
                s = int(summary.get("scale", 1))
                a = a.repeat(s, 0).repeat(s, 1)
            h, w = a.shape[:2]
            c = min(crop * 2, h, w)
            y0, x0 = (h - c) // 2, (w - c) // 2
            crops.append((label, a[y0:y0 + c, x0:x0 + c]))
        if not crops:
            continue
        for label, a in crops:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
            out.append((f"{row.get('name')}: {label}", buf.getvalue()))
    return out


# --------------------------------------------------------------------------- report
def load_summary(run_dir: str | os.PathLike) -> tuple[Path, dict]:
    p = Path(run_dir)
    f = p / "summary.json" if p.is_dir() else p
    if not f.is_file():
        raise ReportError(f"{f}: no summary.json (run `intsim demo` or give a run directory)")
    try:
        summary = json.loads(f.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(summary, dict) or "psnr_db" not in summary:
        raise ReportError(f"{f}: not an intsim run summary (no psnr_db)")
    return f.parent, summary


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 histograms: bool = True) -> Path:
    """Write ``report.html`` for a run directory (or a summary.json path); return its path."""
    root, summary = load_summary(run_dir)
    out_path = Path(out) if out is not None else root / REPORT_NAME
    plots = _have_matplotlib()
    parts: list[str] = []
    title = f"intsim report — {summary.get('model')} ×{summary.get('scale')} {summary.get('bits')}"
    parts.append(f"<h1>{_esc(title)}</h1>")
    parts.append(f'<p class="muted">generated {time.strftime("%Y-%m-%d %H:%M:%S")} from '
                 f'<code>{_esc(root)}</code>; {_esc(summary.get("images"))} evaluation image(s), '
                 f'{_fmt(summary.get("seconds"), 1)} s end to end.</p>')

    ok = summary.get("bit_exact")
    verdict = ('<span class="ok">BIT-EXACT</span>' if ok else '<span class="bad">MISMATCH</span>')
    q = summary.get("quality") or {}
    qcls = {"good": "ok", "fair": "warn"}.get(q.get("level"), "bad")
    parts.append("<h2>Verdicts</h2>")
    parts.append(f"<p><b>Bit-exactness</b> — intsim (integer engine) against golden (torch float64 fake-quant): "
                 f"{verdict}, {_esc(summary.get('mismatches'))} differing element(s). "
                 f"{_esc(summary.get('verify_line', ''))}</p>")
    if q:
        parts.append(f'<p><b>Quality</b> — integer engine on the evaluation images: '
                     f'<span class="{qcls}">{_esc(q.get("text", ""))}</span>. Bit-exact only says the hardware '
                     f'model matches its golden; this line says whether the result is worth shipping.</p>')
    ho = (summary.get("calibrate") or {}).get("holdout")
    if ho and ho.get("quantized_psnr_db") is not None:
        parts.append(f'<p class="muted">Held-out calibration images ({_esc(ho.get("images"))}, '
                     f'{"disjoint from" if ho.get("disjoint") else "overlapping"} the calibration patches): '
                     f'{_esc(ho.get("verdict_text", ""))}.</p>')

    parts.append("<h2>Quality</h2>")
    ps = summary["psnr_db"]
    rows = [[k, ps.get(k)] for k in ("bicubic", "float", "fake_quant", "golden", "intsim") if k in ps]
    parts.append(table(["model", "mean Y-PSNR [dB]"], rows))
    per = summary.get("per_image") or []
    if per:
        keys = [k for k in ("bicubic", "float", "fake_quant", "golden", "intsim") if k in per[0].get("psnr_db", {})]
        parts.append(table(["image", "LR size"] + keys,
                           [[r.get("name"), r.get("lr_size")] + [r["psnr_db"].get(k) for k in keys] for r in per],
                           left=2))
    if plots:
        parts.append(_img_tag(psnr_bar_plot(summary), "PSNR bars"))
    parts.append(f"<p>Code bits (honest storage width of the conv-input codes): "
                 f"<b>{_esc(summary.get('code_bits'))}</b>; calibration: {_esc(summary.get('recipe') or summary.get('method', ''))}, "
                 f"realization {_esc(summary.get('realization', ''))}.</p>")

    art = golden = None
    if summary.get("artifact") and (root / summary["artifact"]).is_file():
        from intsim.artifact import load_artifact

        art = load_artifact(root / summary["artifact"])
    if summary.get("golden") and (root / summary["golden"]).is_dir():
        from intsim.golden_dir import read_golden_dir

        golden = read_golden_dir(root / summary["golden"])
    if histograms and plots and art is not None and golden is not None:
        png = activation_histograms(art, golden)
        if png:
            parts.append("<h2>Activation histograms and breakpoints</h2>")
            parts.append(_img_tag(png, "activation histograms"))

    cost_file = root / summary.get("cost", "cost.json")
    if summary.get("cost") and cost_file.is_file():
        cost = json.loads(cost_file.read_text())
        t = cost["totals"]
        parts.append("<h2>Cost on " + _esc(cost["accelerator"]["name"]) + "</h2>")
        parts.append(f"<p>{_esc(cost['scheme'])} ({_esc(cost['realization'])}): "
                     f"{t['energy_pj']['total'] * 1e-6:.2f} µJ and {t['latency_s'] * 1e3:.3f} ms per image, "
                     f"utilisation {t['utilisation']:.2f}.</p>")
        if plots:
            from reports.cost_plots import plot_layer_energy

            parts.append(_img_tag(_fig_png(plot_layer_energy(cost)), "per-layer energy"))
        comp = root / summary.get("cost_compare", "cost_compare.json")
        if comp.is_file():
            crow = json.loads(comp.read_text())
            parts.append(table(["scheme", "realization", "energy [µJ]", "latency [ms]", "weights [KiB]",
                                "DRAM [MiB]", "conv input bits"],
                               [[r["scheme"], r["realization"], r["energy_uj"], r["latency_ms"],
                                 r["weight_storage_kib"], r["dram_mib"], ",".join(map(str, r["conv_input_bits"]))]
                                for r in crow], left=2))
        for w in cost.get("warnings", []):
            parts.append(f'<p class="muted">cost model: {_esc(w)}</p>')

    strip = image_strip(root, summary)
    if strip:
        parts.append("<h2>Images (centre crops)</h2>")
        parts.append("".join(f"<figure>{_img_tag(png, cap, 'img')}<figcaption>{_esc(cap)}</figcaption></figure>"
                             for cap, png in strip))
    if not plots:
        parts.append('<p class="muted">matplotlib is not installed: plots omitted.</p>')
    parts.append("<h2>Run</h2><pre>" + _esc(json.dumps({k: v for k, v in summary.items() if k != "per_image"},
                                                      indent=1)) + "</pre>")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
           f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    from intsim.artifact import atomic_write_bytes

    atomic_write_bytes(out_path, doc.encode("utf-8"))
    return out_path
