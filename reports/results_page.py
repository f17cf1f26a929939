"""Cell JSONs of a sweep → the results page (markdown), a CSV and plots. Generated, never hand-edited.

    python -m reports.results_page SWEEP_OUT [--page docs/results.md]

Reads ``SWEEP_OUT/cells/*.json`` (:mod:`reports.sweep`), writes
``SWEEP_OUT/results.md``, ``SWEEP_OUT/results.csv`` and ``SWEEP_OUT/plots/*.png``
(plots need matplotlib; without it the page says so), and the page also to
``--page``. Tables follow the paper's layout: one table per model × scale ×
bits, a row per method (dual-region methods once per allocation), PSNR / SSIM
per dataset from the integer engine (which equals golden bit for bit, checked
per image), plus the true code bits, the fake-quant PSNR and the calibration
time. Where the full method (``oaq``, either allocation) does not beat a baseline
on a dataset the page lists it. The paper's EDSR-baseline numbers (shared
README) are shown for orientation only: EDSR checkpoints are not available
offline, so no row here is EDSR.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from intsim.artifact import atomic_write_bytes, read_json
from reports.results_missing import missing_section
from reports.sweep_golden import coverage_text

METHOD_ORDER = ("minmax", "percentile", "omse", "ptq4sr", "2dquant", "dual_region", "plain_ft", "sa_ft", "oaq",
                "recon")
METHOD_NAMES = {"minmax": "MinMax", "percentile": "Percentile", "omse": "OMSE", "ptq4sr": "PTQ4SR-style",
                "2dquant": "2DQuant-style", "dual_region": "dual-region only", "plain_ft": "plain finetuning",
                "sa_ft": "sensitivity-aware finetuning only", "oaq": "full method (dual-region + SA finetuning)",
                "recon": "default: learned rounding (recon)"}
DATASET_NAMES = {"Set5": "Set5", "Set14": "Set14", "B100": "B100-68", "Urban100": "Urban100"}
FULL = "oaq"
PAPER_EDSR_W4A4 = {  # arXiv 2511.00682 via ../shared/README.md: EDSR-baseline ×4 W4A4, PSNR dB
    "FP": (32.10, 28.58, 27.56, 26.04), "MinMax": (26.83, 25.04, 24.57, 23.12),
    "Percentile": (24.03, 23.95, 24.42, 21.62), "PTQ4SR": (30.51, 27.62, 26.88, 24.92),
    "AdaBM": (31.02, 27.87, 26.91, 25.11), "dual-region + sensitivity-aware finetuning": (31.54, 28.26, 27.36, 25.61)}
CSV_FIELDS = ("cell", "status", "model", "scale", "bits", "method", "allocation", "dataset", "true_code_bits",
              "fp_psnr", "fp_ssim", "fake_quant_psnr", "fake_quant_ssim", "golden_psnr", "golden_ssim",
              "intsim_psnr", "intsim_ssim", "golden_equals_intsim", "n_images", "calib_seconds", "eval_seconds",
              "energy_uj", "latency_ms", "accelerator", "artifact_sha256", "error")


def load_cells(out: Path) -> list[dict]:
    """Every readable cell JSON under ``out/cells`` (unreadable ones are reported as failed)."""
    cells = []
    for p in sorted((Path(out) / "cells").glob("*.json")):
        try:
            cells.append(read_json(p, what="a sweep cell record"))
        except (OSError, ValueError) as e:
            cells.append({"cell": p.stem, "status": "failed", "error": f"unreadable cell JSON: {e}"})
    return cells


def _row_key(c: dict) -> tuple:
    m = c.get("method", "")
    return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m, c.get("allocation") or "")


def _label(c: dict) -> str:
    name = METHOD_NAMES.get(c["method"], c["method"])
    return f"{name} [{c['allocation']}]" if c.get("allocation") else name


def _fmt(v, digits=2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def to_csv(cells: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for c in cells:
        def g(k, f, c=c):  # a field of an engine's scores, None where the cell has none
            return (c.get(k) or {}).get(f)

        w.writerow({
            "cell": c.get("cell"), "status": c.get("status"), "model": c.get("model"), "scale": c.get("scale"),
            "bits": c.get("bits"), "method": c.get("method"), "allocation": c.get("allocation"),
            "dataset": c.get("dataset"), "true_code_bits": "/".join(map(str, c.get("true_code_bits", []))),
            "fp_psnr": g("fp", "psnr"), "fp_ssim": g("fp", "ssim"),
            "fake_quant_psnr": g("fake_quant", "psnr"), "fake_quant_ssim": g("fake_quant", "ssim"),
            "golden_psnr": g("golden", "psnr"), "golden_ssim": g("golden", "ssim"),
            "intsim_psnr": g("intsim", "psnr"), "intsim_ssim": g("intsim", "ssim"),
            "golden_equals_intsim": c.get("golden_equals_intsim"), "n_images": g("intsim", "n"),
            "calib_seconds": c.get("calib_seconds"), "eval_seconds": c.get("eval_seconds"),
            "energy_uj": g("cost", "energy_uj"), "latency_ms": g("cost", "latency_ms"),
            "accelerator": g("cost", "accelerator"), "artifact_sha256": c.get("artifact_sha256"),
            "error": c.get("error")})
    return buf.getvalue()


def _groups(done: list[dict]) -> dict:
    groups: dict = {}
    for c in done:
        groups.setdefault((c["model"], c["scale"], c["bits"]), []).append(c)
    return groups


def _losses(cells: list[dict], datasets: list[str]) -> list[str]:
    """Lines naming each baseline at least as good as the full method on a dataset, for every
    allocation of the full method that was run (released codes spend about b+1 bits per
    activation; budgeted ones the same b bits as the baselines)."""
    lines = []
    fulls = sorted({c.get("allocation") for c in cells if c["method"] == FULL}, key=lambda a: (a != "released", str(a)))
    for alloc in fulls:
        for d in datasets:
            by = {(c["method"], c.get("allocation")): c for c in cells if c["dataset"] == d}
            full = by.get((FULL, alloc))
            if full is None:
                continue
            for (m, _), c in sorted(by.items(), key=lambda kv: _row_key(kv[1])):
                if m == FULL:
                    continue
                if c["intsim"]["psnr"] >= full["intsim"]["psnr"]:
                    lines.append(f"- {DATASET_NAMES.get(d, d)}: **{_label(c)}** {c['intsim']['psnr']:.2f} dB ≥ "
                                 f"{_label(full)} {full['intsim']['psnr']:.2f} dB")
    return lines


def _golden_counts(c: dict) -> tuple[int, int]:
    """(images golden checked, images of the cell); a cell from before golden plans checked all."""
    n = (c.get("intsim") or {}).get("n", 0)
    plan = c.get("golden_plan")
    return (n, n) if plan is None or plan["mode"] == "all" else (len(plan["images"]), n)


def _golden_column(cells: list[dict]) -> str:
    """``golden = intsim`` of a table row (its cells on every dataset): yes / **NO**, and on how many of
    the images when golden's budget left some out."""
    if any(c.get("golden_equals_intsim") is False for c in cells):
        return "**NO**"
    checked, n = (sum(x) for x in zip(*map(_golden_counts, cells)))
    if checked == n:
        return "yes"
    return f"yes on {checked}/{n} images" if checked else f"not checked (0/{n} images)"


def _golden_section(done: list[dict]) -> list[str]:
    """Cells where golden checked fewer than every image, with the budget's reason."""
    partial = [c for c in done if (c.get("golden_plan") or {}).get("mode", "all") != "all"]
    if not partial:
        return []
    L = ["## Golden checked on part of the images", "",
         "Golden (float64) runs on every image its cost estimate fits in the sweep's `[golden]` budget "
         "(reports/sweep_golden.py: conv GMAC and golden's memory estimate per image, GMAC per cell); "
         f"{len(partial)} cell(s) checked fewer:", "", "| cell | golden checked | golden = intsim |", "|---|---|---|"]
    for c in sorted(partial, key=lambda c: str(c.get("cell"))):
        same = c.get("golden_equals_intsim")
        L.append(f"| {c.get('cell')} | {coverage_text(c['golden_plan'])} | "
                 f"{'–' if same is None else 'yes' if same else '**NO**'} |")
    return L + [""]


def _quick(c: dict) -> str | None:
    """What makes a cell a quick run (its recipe's ``limit``/``crop``), or None for whole sets."""
    r = c.get("recipe_fields") or {}
    parts = ([f"at most {r['limit']} image(s) per set"] if r.get("limit") else []) + \
        ([f"top-left {r['crop']}×{r['crop']} LR crops"] if r.get("crop") else [])
    return ", ".join(parts) or None


def _calib_data(done: list[dict]) -> str:
    """The calibration images of the cells' recipes (the default: SunHays80, standing in for DIV2K)."""
    folders = sorted({(c.get("recipe_fields") or {}).get("calib_data") or "" for c in done})
    if folders in ([], [""]):
        return "**SunHays80 in place of DIV2K** (DIV2K is not available offline)"
    return ", ".join(f"`{f}`" if f else "SunHays80 (the default)" for f in folders)


def _heading(done: list[dict], title: str) -> list[str]:
    """The title, marked (and explained) where cells are quick runs: few images or LR crops score
    differently from whole sets, so such a page must not pass for a full result."""
    quick = sorted({q for q in map(_quick, done) if q})
    L = [f"# {title}" + (" (quick run)" if quick else ""), ""]
    if quick:
        L += [f"**Quick run** ({'; '.join(quick)}): a check that the pipeline runs, not a result: scores of a few "
              "images or crops are not comparable with whole benchmark sets (the paper's or any other), and "
              "such cells have no FP reference.", ""]
    return L


def markdown(cells: list[dict], plots: list[str], runs: list[dict], grid: list[str] | None = None,
             title: str = "Sweep results", live: str | None = None) -> str:
    """The page; ``grid``: the cell ids the sweeps asked for (``grid.json``), to name those not computed;
    ``title``: the sweep's (its ``title`` field or file name); ``live``: a note that a sweep is still
    running (the page is being rewritten as cells land)."""
    done = [c for c in cells if c.get("status") == "done"]
    failed = [c for c in cells if c.get("status") != "done"]
    missing = sorted(set(grid or []) - {c.get("cell") for c in cells})
    recipes = sorted({json.dumps(c.get("recipe_fields", {}), sort_keys=True) for c in done})
    L = ["<!-- generated by python -m reports.results_page (intsim sweep); do not edit -->", *_heading(done, title)]
    if runs:
        cmds = sorted({r["command"] for r in runs})
        L += [f"Made by `{cmds[0]}`" + (f" (and {len(cmds) - 1} other command lines)" if len(cmds) > 1 else "")
              + f"; {len(runs)} sweep run(s), {sum(r['seconds'] for r in runs) / 3600:.2f} h of wall time in all.", ""]
    calib_s = sum(c.get("calib_seconds", 0) for c in {c['artifact_sha256']: c for c in done}.values())
    if live:
        L += [f"**In progress** — {live}.", ""]
    eval_s = sum(c.get("eval_seconds", 0) for c in done)
    not_run = f", **{len(missing)} not computed yet** (listed at the end)" if missing else ""
    L += [f"{len(done)} cells done, {len(failed)} failed{not_run}. Compute: {calib_s / 3600:.2f} h calibrating, "
          f"{eval_s / 3600:.2f} h evaluating (four executors per cell).", "",
          f"Calibration data: {_calib_data(done)}; B100 is "
          "**B100-68** (the 68-image colour subset). PSNR/SSIM: Y channel of MATLAB rgb2ycbcr, `scale` border "
          "pixels cropped, SR rounded to uint8. Every quantized number below is the integer engine's "
          "(intsim); golden (float64 fake-quant) equals it bit for bit on every image golden checked unless the "
          "`golden = intsim` column says otherwise, and golden checked every image unless that column says on how "
          "many (its cost budget, listed below). FP = the float model; FQ = float32 fake-quant with the "
          "learned (unsnapped) parameters. Code bits: the true storage bits of the conv input codes "
          "(body/head/tail); `released` codes use a b-bit dense region plus (b−1)-bit tails (about b+1 bits), "
          "`budgeted` fits both regions into b bits.", ""]
    for r in recipes:
        L += [f"Recipe: `{r}`", ""]
    for (model, scale, bits), group in sorted(_groups(done).items()):
        datasets = [d for d in DATASET_NAMES if any(c["dataset"] == d for c in group)]
        L += [f"## {model} ×{scale} {bits}" + (" (quick run)" if any(map(_quick, group)) else ""), ""]
        head = "| method | code bits |" + "".join(f" {DATASET_NAMES[d]} PSNR / SSIM |" for d in datasets)
        L += [head + " FQ PSNR (first set) | golden = intsim | calib s |", "|" + "---|" * (len(datasets) + 5)]
        fp = {d: next((c["fp"] for c in group if c["dataset"] == d and c.get("fp")), None) for d in datasets}
        if any(fp.values()):
            L.append("| FP | 32 |" + "".join(f" {_fmt((fp[d] or {}).get('psnr'))} / "
                                             f"{_fmt((fp[d] or {}).get('ssim'), 4)} |" for d in datasets)
                     + " – | – | – |")
        rows: dict = {}
        for c in group:
            rows.setdefault((c["method"], c.get("allocation")), {})[c["dataset"]] = c
        for key, per_ds in sorted(rows.items(), key=lambda kv: _row_key(next(iter(kv[1].values())))):
            any_c = next(iter(per_ds.values()))
            cells_txt = "".join(f" {_fmt(per_ds[d]['intsim']['psnr'])} / {_fmt(per_ds[d]['intsim']['ssim'], 4)} |"
                                if d in per_ds else " – |" for d in datasets)
            first = per_ds[next(d for d in datasets if d in per_ds)]
            L.append(f"| {_label(any_c)} | {'/'.join(map(str, any_c['true_code_bits']))} |{cells_txt} "
                     f"{_fmt(first['fake_quant']['psnr'])} | {_golden_column(list(per_ds.values()))} | "
                     f"{any_c['calib_seconds']:.0f} |")
        losses = _losses(group, datasets)
        if not any(c["method"] == FULL for c in group):
            L += ["", "The full method was not run in this group.", ""]
        else:
            L += ["", "Where the full method does not beat a baseline:" if losses
                  else "The full method beats every baseline here on every dataset it was run on.", *losses, ""]
    if any(c["scale"] == 4 and c["bits"] == "W4A4" for c in done):  # the paper's setting: nothing else compares
        L += ["## For orientation: the paper's EDSR-baseline ×4 W4A4 (not reproduced here)", "",
              "EDSR checkpoints are not available offline, so these numbers (arXiv 2511.00682, PSNR dB, DIV2K "
              "calibration, full B100) are not comparable cell for cell with the tables above.", "",
              "| method | Set5 | Set14 | B100 | Urban100 |", "|---|---|---|---|---|"]
        L += [f"| {k} | " + " | ".join(f"{x:.2f}" for x in v) + " |" for k, v in PAPER_EDSR_W4A4.items()]
        L.append("")
    if failed:
        L += ["## Failed cells", "", "| cell | error |", "|---|---|"]
        L += [f"| {c.get('cell')} | {str(c.get('error', '?')).replace('|', '/')} |" for c in failed]
        L.append("")
    L += _golden_section(done)
    L += missing_section(missing, live is not None)
    if plots:
        L += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    else:
        L += ["Plots: not drawn (matplotlib is not installed).", ""]
    return "\n".join(L)


def draw_plots(cells: list[dict], folder: Path) -> list[Path]:
    """PSNR vs bits per method, and PSNR vs energy (Pareto front marked), per model × scale × dataset."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    done = [c for c in cells if c.get("status") == "done"]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    keys = sorted({(c["model"], c["scale"], c["dataset"]) for c in done})
    for model, scale, d in keys:
        sel = [c for c in done if (c["model"], c["scale"], c["dataset"]) == (model, scale, d)]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        series: dict = {}
        for c in sel:
            series.setdefault(_label(c), []).append((int(c["bits"][1:].split("A")[0]), c["intsim"]["psnr"]))
        for lab, pts in sorted(series.items()):
            pts.sort()
            a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lab)
        fp = next((c["fp"]["psnr"] for c in sel if c.get("fp")), None)
        if fp is not None:
            a1.axhline(fp, color="k", ls="--", lw=0.8, label="FP")
        a1.set_xlabel("weight/activation bits b (WbAb)")
        a1.set_ylabel("Y-PSNR (dB), intsim")
        a1.set_title(f"{model} ×{scale} {DATASET_NAMES.get(d, d)}: PSNR vs bits")
        a1.legend(fontsize=6)
        pts = sorted(((c["cost"]["energy_uj"], c["intsim"]["psnr"], f"{_label(c)} {c['bits']}") for c in sel))
        a2.scatter([p[0] for p in pts], [p[1] for p in pts], s=14)
        front, best = [], -1e9
        for e, q, lab in pts:  # lowest energy first: a point is on the front if it beats every cheaper one
            if q > best:
                front.append((e, q, lab))
                best = q
        a2.plot([p[0] for p in front], [p[1] for p in front], color="C3", lw=1, label="Pareto front")
        for e, q, lab in front:
            a2.annotate(lab, (e, q), fontsize=5)
        a2.set_xlabel(f"energy per image (µJ, cost model, {sel[0]['cost']['accelerator']}; first image of the set)")
        a2.set_ylabel("Y-PSNR (dB)")
        a2.set_title("quality vs energy")
        a2.legend(fontsize=6)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = folder / f"{model}_x{scale}_{d.lower()}.png"
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def write_results(out: str | Path, page: str | Path | None = None, title: str | None = None, draw: bool = True,
                  live: str | None = None) -> Path:
    """Regenerate ``out/results.md``, ``out/results.csv`` and ``out/plots`` (and ``page``) from the cells,
    each file written atomically (a reader never sees half a page). ``title``: default the title of the
    last sweep run into ``out`` (``runs.json``), else the folder's name. ``draw``: redraw the plots (False:
    the page shows the plots already drawn; a running sweep redraws them now and then); ``live``: the
    note of a running sweep (:func:`markdown`)."""
    out = Path(out)
    cells = sorted(load_cells(out), key=lambda c: str(c.get("cell")))
    runs_path, grid_path = out / "runs.json", out / "grid.json"
    runs = json.loads(runs_path.read_text()) if runs_path.is_file() else []
    grid = json.loads(grid_path.read_text()) if grid_path.is_file() else []
    if title is None:
        title = next((r["title"] for r in reversed(runs) if r.get("title")), f"Results of {out.resolve().name}")
    plots = draw_plots(cells, out / "plots") if draw else sorted((out / "plots").glob("*.png"))
    atomic_write_bytes(out / "results.csv", to_csv(cells).encode())
    md_local = markdown(cells, [str(p.relative_to(out)) for p in plots], runs, grid, title, live)
    atomic_write_bytes(out / "results.md", md_local.encode())
    if page is not None:
        page = Path(page)
        rel = [_relpath(p, page.parent) for p in plots]
        atomic_write_bytes(page, markdown(cells, rel, runs, grid, title, live).encode())
    return out / "results.md"


def _relpath(p: Path, base: Path) -> str:
    return os.path.relpath(p.resolve(), base.resolve())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the sweep's out folder (holds cells/)")
    ap.add_argument("--page", default=None, help="also write the page here (e.g. docs/results.md)")
    ap.add_argument("--title", default=None, help="the page's title (default: the last sweep run's)")
    a = ap.parse_args(argv)
    if not (Path(a.out) / "cells").is_dir():
        print(f"error: {a.out}: no cells/ folder (not a sweep output)", file=sys.stderr)
        return 2
    print(write_results(a.out, a.page, a.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
