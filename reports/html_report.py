"""A self-contained HTML report of a run folder (``intsim demo`` / ``intsim report``).

A run folder made by ``intsim demo`` holds ``summary.json`` (see :mod:`reports.demo`) naming the
artifact, the golden folder, the counters, ``cost.json``, ``cost_compare.json`` and the images.
A folder made by hand with the CLI (calibrate, golden, verify, run, cost) has no summary: its
parts are found by content (:mod:`reports.run_folder`) and the report says plainly which parts
are missing and what each would add. :func:`build_report` writes one ``report.html`` with every
plot embedded as a base64 PNG (no external files):

* verdicts: bit-exactness next to the quality of the integer engine, with Δ to FP and Δ to
  bicubic (red when the quantized model is below bicubic);
* Y-PSNR and SSIM per model and image, and the PSNR gain over bicubic as bars from zero;
* saturation and overflow counts per layer (run counters, else the golden's events);
* activation histograms of the quantized conv inputs with the two-region breakpoints, from the
  run counters' code histograms (all images) or the golden codes;
* stacked energy bars of the conv layers and of the vector-op groups (encode, add, concat,
  pools, mul, split, …) beside the energy categories' shares (DRAM traffic explicit), the
  vector-op table and the scheme comparison;
* per image, the same crop of LR, bicubic, float, intsim, HR and an error map.

numpy + matplotlib only (no torch); matplotlib is optional: without it the report has
the tables only and says so.
"""
from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path

import numpy as np

from reports.report_plots import MODELS, activation_histograms, fig_png, histogram_panels, psnr_gain_plot, signed_db
from reports.run_folder import ReportError, RunFolder, open_run_folder

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1180px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right} th{background:#f4f4f4} td.l,th.l{text-align:left}
.ok{color:#1a7f37;font-weight:bold} .bad{color:#c62828;font-weight:bold} .warn{color:#b26a00;font-weight:bold} .muted{color:#777;font-size:.85em}
table.verdict{font-size:1.05em} table.verdict td,table.verdict th{text-align:center;padding:.4em 1em}
table.verdict td.bad{background:#fdecea;border:2px solid #c62828} table.verdict td.warn{background:#fff4e0}
ul.missing li{color:#8a4b00}
img.plot{max-width:100%;border:1px solid #eee;margin:.4em 0} figure{display:inline-block;margin:.25em;
text-align:center;vertical-align:top;width:160px} figcaption{font-size:.72em;color:#555}
img.img{width:160px;height:160px;image-rendering:pixelated}
div.imgrow{margin:.6em 0;padding:.3em 0;border-top:1px solid #eee} div.imgrow b{display:block}
code{background:#f6f6f6;padding:0 .2em}
"""


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


# --------------------------------------------------------------------------- report
def _psnr_problem(ps) -> str | None:
    if not isinstance(ps, dict):
        return f"must be an object of PSNRs, got {type(ps).__name__}"
    bad = [k for k, v in ps.items() if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    return f"{bad[0]!r} must be a number or null, got {ps[bad[0]]!r}"[:160] if bad else None


def _summary_problem(summary) -> str | None:
    """Why ``summary`` is not what ``intsim demo`` writes, in the fields the report reads (``None``: it is)."""
    if not isinstance(summary, dict) or "psnr_db" not in summary:
        return "not an intsim run summary (no psnr_db)"
    problem = _psnr_problem(summary["psnr_db"])
    if problem:
        return f"psnr_db: {problem}"
    for key in ("artifact", "golden", "cost", "cost_compare"):
        if summary.get(key) is not None and not isinstance(summary[key], str):
            return f"{key} must be a path relative to the run folder, got {summary[key]!r}"[:160]
    scale = summary.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 32:
        return f"scale must be an integer in 1..32, got {scale!r}"[:160]
    for key in ("quality", "calibrate"):
        if not isinstance(summary.get(key) or {}, dict):
            return f"{key} must be an object"
    if not isinstance((summary.get("calibrate") or {}).get("holdout") or {}, dict):
        return "calibrate.holdout must be an object"
    per = summary.get("per_image") or []
    if not isinstance(per, list):
        return "per_image must be a list"
    for i, row in enumerate(per):
        if not isinstance(row, dict):
            return f"per_image[{i}] must be an object"
        problem = _psnr_problem(row.get("psnr_db"))
        if problem:
            return f"per_image[{i}].psnr_db: {problem}"
        files = row.get("files") or {}
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            return f"per_image[{i}].files must map labels to paths"
    return None


def load_summary(run_dir: str | os.PathLike) -> tuple[Path, dict]:
    from intsim.artifact import read_json

    p = Path(run_dir)
    f = p / "summary.json" if p.is_dir() else p
    if not f.exists():
        raise ReportError(f"{f}: no summary.json (run `intsim demo` or give a run directory)")
    summary = read_json(f, ReportError, "a run summary")
    problem = _summary_problem(summary)
    if problem:
        raise ReportError(f"{f}: {problem}")
    return f.parent, summary


def _quality(ps: dict) -> tuple[str, str, float | None, float | None, str | None]:
    """(level, text, Δ to FP, Δ to bicubic, model) of the quantized model's mean Y-PSNR.

    The quantized model is intsim (else golden, the same when bit-exact). The level and text are
    :func:`calib.quality.verdict`'s; without a float PSNR only Δ to bicubic is known, and below
    bicubic is still "bad"."""
    from calib.quality import verdict

    model = next((k for k in ("intsim", "golden") if ps.get(k) is not None), None)
    q, fp, bic = ps.get(model), ps.get("float"), ps.get("bicubic")
    d_fp = q - fp if q is not None and fp is not None else None
    d_bic = q - bic if q is not None and bic is not None else None
    if fp is not None:
        v = verdict(fp, q, bic)
        return v.level, v.text, d_fp, d_bic, model
    if d_bic is not None:
        level = "bad" if d_bic < 0 else "unknown"
        text = (f"quality {'BAD: below bicubic' if d_bic < 0 else 'vs FP not measured'} — {q:.2f} dB, "
                f"{d_bic:+.2f} dB vs bicubic ({bic:.2f}); no float output in this folder")
        return level, text, None, d_bic, model
    return "unknown", "quality: not measured (no HR images or PSNRs in this folder)", None, None, model


_LEVEL_CLASS = {"good": "ok", "fair": "warn", "unknown": "muted"}


def verdict_section(rf: RunFolder) -> str:
    s = rf.summary
    ok = s.get("bit_exact")
    bit = ('<span class="warn">NOT VERIFIED</span>' if ok is None else
           '<span class="ok">BIT-EXACT</span>' if ok else '<span class="bad">MISMATCH</span>')
    ps = s.get("psnr_db") or {}
    level, text, d_fp, d_bic, model = _quality(ps)
    if (s.get("quality") or {}).get("text"):  # what the run itself concluded (same verdict, same numbers)
        level, text = s["quality"].get("level", level), s["quality"]["text"]
    qcls = _LEVEL_CLASS.get(level, "bad")
    below = d_bic is not None and d_bic < 0
    q = ps.get(model)
    cells = [("bit-exactness", bit, ""),
             (f"{model or 'quantized'} Y-PSNR", "—" if q is None else f"{_fmt(q)} dB", ""),
             ("Δ to FP", _esc(signed_db(d_fp)), "warn" if d_fp is not None and level in ("degraded", "bad") else ""),
             ("Δ to bicubic", _esc(signed_db(d_bic)) + (" — below bicubic" if below else ""),
              "bad" if below else ""),
             ("quality", f'<span class="{qcls}">{_esc(level.upper() if level != "unknown" else "not measured")}</span>',
              "bad" if level == "bad" else "")]
    out = ["<h2>Verdicts</h2>", '<table class="verdict"><tr>' + "".join(f"<th>{_esc(h)}</th>" for h, _, _ in cells)
           + "</tr><tr>" + "".join(f'<td class="{c}">{v}</td>' for _, v, c in cells) + "</tr></table>"]
    detail = (f"{_esc(s.get('mismatches'))} differing element(s). {_esc(s.get('verify_line', ''))}" if ok is not None
              else "no verify record in this folder (see below).")
    out.append(f"<p><b>Bit-exactness</b> — intsim (integer engine) against golden (torch float64 fake-quant): "
               f"{bit}, {detail}</p>")
    out.append(f'<p><b>Quality</b> — integer engine on the evaluation images: '
               f'<span class="{qcls}">{_esc(text)}</span>. Bit-exact only says the hardware model matches its '
               f"golden; this line says whether the result is worth shipping.</p>")
    ho = (s.get("calibrate") or {}).get("holdout")
    if isinstance(ho, dict) and ho.get("quantized_psnr_db") is not None:
        hcls = "bad" if ho.get("verdict") == "bad" else "muted"
        out.append(f'<p class="{hcls}">Held-out calibration images ({_esc(ho.get("images"))}, '
                   f'{"disjoint from" if ho.get("disjoint") else "overlapping"} the calibration patches): '
                   f'{_esc(ho.get("verdict_text", ""))}.</p>')
    return "".join(out)


def contents_section(rf: RunFolder) -> str:
    """What the folder holds and, plainly, what it does not (and what that costs the report)."""
    found = ", ".join(f"{part.replace('_', ' ')} <code>{_esc(rel)}</code>" for part, rel in rf.found.items())
    origin = ("<code>summary.json</code> (written by <code>intsim demo</code>)" if rf.from_summary else
              "no <code>summary.json</code>: the parts below were found by their content")
    out = ["<h2>What this folder holds</h2>", f"<p>{origin}. Found: {found or 'nothing else'}.</p>"]
    if rf.missing:
        out.append('<p>Missing or not used:</p><ul class="missing">'
                   + "".join(f"<li>{_esc(m)}</li>" for m in rf.missing) + "</ul>")
    return "".join(out)


def quality_section(rf: RunFolder, rows, plots: bool) -> str:
    s = rf.summary
    ps = s.get("psnr_db") or {}
    per = s.get("per_image") or []
    keys = [k for k in MODELS if k in ps or any(k in (r.get("psnr_db") or {}) for r in per)]
    ssim_keys = [k for k in MODELS if any(k in r.ssim for r in rows)]
    out = ["<h2>Quality</h2>"]
    if not keys:
        return "".join(out + ['<p class="muted">No Y-PSNR measured: the folder has no HR images to compare with.</p>'])
    mean_ssim = {k: float(np.mean([r.ssim[k] for r in rows if k in r.ssim])) for k in ssim_keys}
    out.append(table(["model", "mean Y-PSNR [dB]", "Δ to bicubic [dB]", "mean Y-SSIM"],
                     [[k.replace("_", "-"), ps.get(k), signed_db(ps[k] - ps["bicubic"]) if ps.get(k) is not None
                       and ps.get("bicubic") is not None and k != "bicubic" else None,
                       _fmt(mean_ssim[k], 4) if k in mean_ssim else None] for k in keys]))
    ssim_by_name = {r.name: r.ssim for r in rows}
    head = ["image", "LR size"] + [f"{k.replace('_', '-')} [dB]" for k in keys] + [f"{k.replace('_', '-')} SSIM"
                                                                                   for k in ssim_keys]
    out.append(table(head, [[r.get("name"), r.get("lr_size")] + [(r.get("psnr_db") or {}).get(k) for k in keys]
                            + [_fmt(ssim_by_name.get(str(r.get("name")), {}).get(k), 4) for k in ssim_keys]
                            for r in per], left=2))
    if not ssim_keys:
        out.append('<p class="muted">SSIM: not measured (the HR images are not listed in this folder).</p>')
    fig = psnr_gain_plot(s) if plots else None
    if fig is not None:
        out.append(_img_tag(fig_png(fig), "PSNR bars"))
    out.append(f"<p>Code bits (honest storage width of the conv-input codes): "
               f"<b>{_esc(s.get('code_bits', '—'))}</b>; "
               f"calibration: {_esc(s.get('recipe') or s.get('method') or '—')}, "
               f"realization {_esc(s.get('realization', '—'))}.</p>")
    return "".join(out)


_EVENTS = ("saturations", "acc_overflow", "stream_overflow")


def event_rows(rf: RunFolder) -> tuple[list[list], int, str]:
    """(rows with events: [op, type, values, saturations, %, acc overflows, stream overflows],
    number of ops, source) summed over the images, in graph order."""
    sums: dict[str, dict] = {}
    if rf.counters:
        source = f"run counters, {len(rf.counters)} image(s)"
        for c in rf.counters:
            for name, oc in c["ops"].items():
                e = sums.setdefault(name, {"op": oc.get("op", ""), "values": 0, **dict.fromkeys(_EVENTS, 0)})
                e["values"] += int(np.prod(oc.get("out_shape") or [0]))
                for k in _EVENTS:
                    e[k] += int(oc.get(k, 0))
    elif rf.golden is not None:
        source = f"golden events, {len(rf.golden)} input(s) (no run counters in this folder)"
        ops = {op.name: op for op in rf.art.ops} if rf.art is not None else {}
        for k in range(len(rf.golden)):
            shapes = {e.op: e.shape for e in rf.golden.entries if e.input == k}
            for name, ev in rf.golden.events_for(k).items():
                e = sums.setdefault(name, {"op": getattr(ops.get(name), "op", ""), "values": 0,
                                           **dict.fromkeys(_EVENTS, 0)})
                e["values"] += int(np.prod(shapes.get(name) or [0]))
                for key in _EVENTS:
                    e[key] += int(ev.get(key, 0))
    else:
        return [], 0, ""
    order = [op.name for op in rf.art.ops] if rf.art is not None else list(sums)
    rows = []
    for name in [n for n in order if n in sums] + [n for n in sums if n not in order]:
        e = sums[name]
        if any(e[k] for k in _EVENTS):
            pct = 100.0 * e["saturations"] / e["values"] if e["values"] else None
            rows.append([name, e["op"], e["values"], e["saturations"], pct, e["acc_overflow"], e["stream_overflow"]])
    return rows, len(sums), source


def events_section(rf: RunFolder) -> str:
    rows, n_ops, source = event_rows(rf)
    out = ["<h2>Saturation and overflow per layer</h2>"]
    if not source:
        return "".join(out + ['<p class="muted">Not shown: no run counters and no golden folder in this folder.</p>'])
    out.append(f'<p class="muted">From {_esc(source)}. Saturations: values clipped to the code range (encode), '
               f"to the stream width (conv, vector ops) or to 0…255 (image out); overflows: accumulator or stream "
               f"results that did not fit (the artifact's overflow policy decides what happened to them).</p>")
    if not rows:
        return "".join(out + [f'<p class="ok">No saturation or overflow in any of the {n_ops} ops.</p>'])
    body = []
    for name, op, values, sat, pct, acc, stream in rows:
        cells = [(_esc(name), "l"), (_esc(op), "l"), (f"{values:,}", ""), (f"{sat:,}", ""),
                 ("—" if pct is None else f"{pct:.2f} %", "warn" if pct is not None and pct >= 1.0 else ""),
                 (f"{acc:,}", "bad" if acc else ""), (f"{stream:,}", "bad" if stream else "")]
        body.append("<tr>" + "".join(f'<td class="{c}">{v}</td>' for v, c in cells) + "</tr>")
    head = "".join(f'<th class="{"l" if i < 2 else ""}">{h}</th>' for i, h in enumerate(
        ["op", "type", "output values", "saturations", "saturated", "acc overflows", "stream overflows"]))
    out.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")
    out.append(f'<p class="muted">{n_ops - len(rows)} of the {n_ops} ops had no events.</p>')
    return "".join(out)


def histogram_section(rf: RunFolder, plots: bool) -> str:
    if rf.art is None or not plots:
        return ""
    panels, source = histogram_panels(rf)
    fig = activation_histograms(rf.art, panels)
    if fig is None:
        return ""
    return ("<h2>Activation histograms and breakpoints</h2>"
            f'<p class="muted">From {_esc(source)}. x: the activation value each code stands for, in the float '
            f"model's units; y: how many values took that code (log scale).</p>"
            + _img_tag(fig_png(fig), "activation histograms"))


def cost_section(rf: RunFolder, plots: bool) -> str:
    from reports.cost_plots import energy_shares, vector_op_groups

    cost = rf.cost
    if cost is None:
        return ""
    t = cost["totals"]
    total = t["energy_pj"]["total"] * 1e-6
    out = ["<h2>Cost on " + _esc(cost["accelerator"]["name"]) + "</h2>",
           f"<p>{_esc(cost['scheme'])} ({_esc(cost['realization'])}): {total:.2f} µJ and "
           f"{t['latency_s'] * 1e3:.3f} ms per image, utilisation {t['utilisation']:.2f}. "
           + ", ".join(f"{_esc(c)} {100 * f:.0f} %" for c, _, f in energy_shares(cost) if f >= 0.005) + ".</p>"]
    if plots:
        from reports.cost_plots import plot_energy_overview

        out.append(_img_tag(fig_png(plot_energy_overview(cost)), "per-layer energy"))
    convs = [l for l in cost["layers"] if l["kind"] == "conv"]
    conv_e = sum(l["energy_pj"].get("total", 0.0) for l in convs) * 1e-6
    conv_dram = sum(l["energy_pj"].get("dram", 0.0) for l in convs) * 1e-6
    rows = [["conv layers", len(convs), conv_e, f"{100 * conv_e / total:.1f} %" if total else "—", conv_dram]]
    rows += [[g["group"], g["ops"], g["total"], f"{100 * g['total'] / total:.1f} %" if total else "—", g["dram"]]
             for g in vector_op_groups(cost)]
    out.append("<p>Energy by op group (µJ per image; DRAM is the traffic of each group's inputs and outputs):</p>")
    out.append(table(["op group", "ops", "energy [µJ]", "share", "of which DRAM [µJ]"], rows))
    if rf.cost_compare:
        out.append(table(["scheme", "realization", "energy [µJ]", "latency [ms]", "weights [KiB]", "DRAM [MiB]",
                          "conv input bits"],
                         [[r["scheme"], r["realization"], r["energy_uj"], r["latency_ms"], r["weight_storage_kib"],
                           r["dram_mib"], ",".join(map(str, r["conv_input_bits"]))] for r in rf.cost_compare], left=2))
    for w in cost.get("warnings", []):
        out.append(f'<p class="muted">cost model: {_esc(w)}</p>')
    return "".join(out)


def images_section(rows, plots: bool, max_images: int = 3) -> str:
    from reports.report_images import crops

    out = []
    for r in rows[:max_images]:
        figs = crops(r, colour=plots)
        if not figs:
            continue
        out.append(f'<div class="imgrow"><b>{_esc(r.name)}</b>'
                   + "".join(f"<figure>{_img_tag(png, f'{r.name}: {cap}', 'img')}<figcaption>{_esc(cap)}</figcaption>"
                             f"</figure>" for cap, png in figs) + "</div>")
        if r.problems:
            out.append('<p class="muted">' + _esc("; ".join(r.problems)) + "</p>")
    if not out:
        return ""
    return ("<h2>Images (the same centre crop of each)</h2>"
            '<p class="muted">LR is nearest-upsampled to the output size, so every crop of a row shows the same '
            "part of the scene.</p>" + "".join(out))


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 histograms: bool = True) -> Path:
    """Write ``report.html`` for a run folder (or a summary.json path); return its path.

    Plots are drawn with matplotlib's mathtext off (scoped to this call): names from the folder's
    files are labels, and a ``$`` in one must print as ``$``, not be parsed (and fail) as a formula."""
    if not _have_matplotlib():
        return _build_report(run_dir, out, histograms)
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        return _build_report(run_dir, out, histograms)


def _build_report(run_dir, out, histograms: bool) -> Path:
    from intsim.artifact import atomic_write_bytes
    from reports.report_images import load_rows

    p = Path(run_dir).absolute()
    if p.is_dir() and not (p / "summary.json").exists():
        rf = open_run_folder(p, None)
    else:
        root, summary = load_summary(p)
        rf = open_run_folder(root, summary)
    s = rf.summary
    out_path = Path(out) if out is not None else rf.root / REPORT_NAME
    plots = _have_matplotlib()
    rows = load_rows(rf.root, s)
    title = f"intsim report — {s.get('model')} ×{s.get('scale')} {s.get('bits')}"
    parts = [f"<h1>{_esc(title)}</h1>",
             f'<p class="muted">generated {time.strftime("%Y-%m-%d %H:%M:%S")} from <code>{_esc(rf.root)}</code>; '
             f'{_esc(s.get("images"))} evaluation image(s)'
             + (f', {_fmt(s.get("seconds"), 1)} s end to end' if s.get("seconds") is not None else "") + ".</p>",
             verdict_section(rf), contents_section(rf), quality_section(rf, rows, plots), events_section(rf),
             histogram_section(rf, plots and histograms), cost_section(rf, plots), images_section(rows, plots)]
    if not plots:
        parts.append('<p class="muted">matplotlib is not installed: plots omitted.</p>')
    parts.append("<h2>Run</h2><pre>" + _esc(json.dumps({k: v for k, v in s.items() if k != "per_image"},
                                                      indent=1)) + "</pre>")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
           f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_bytes(out_path, doc.encode("utf-8"))
    return out_path
