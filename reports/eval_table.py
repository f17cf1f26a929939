"""The human form of ``intsim eval``'s result (:func:`calib.evaluate.run_eval`): a table with one row per set —
or, ``per_image``, one row per image and the set's mean — the quantized PSNR/SSIM beside the FP and bicubic
baselines. ``--json`` prints the full result instead; this module only reads it, so it needs no torch.
"""
from __future__ import annotations

import math

__all__ = ["format_eval"]

BASELINES = ("fp", "bicubic")


def _num(v, fmt: str) -> str:
    if v is None:
        return "—"  # no finite value: every image reproduced its HR exactly
    return "inf" if math.isinf(v) else format(v, fmt)


def _delta(psnr, base: dict | None, key: str) -> str:
    """``psnr`` minus the baseline's: "—" when baselines were not run, "n/a" when this one could not run."""
    if base is None:
        return "—"
    b = base.get(key)
    if b is None or "unavailable" in b:
        return "n/a"
    if psnr is None or b.get("psnr") is None or math.isinf(psnr) or math.isinf(b["psnr"]):
        return "—"
    return f"{psnr - b['psnr']:+.3f}"


def _rows(res: dict, per_image: bool) -> list[tuple[str, str, dict]]:
    """(dataset, second column, scores with optional baselines) per table row."""
    rows = []
    for name, s in res.get("datasets", {}).items():
        if per_image:
            rows += [(name, im["image"], im) for im in s.get("images", [])]
            rows.append((name, "mean", s))
        else:
            rows.append((name, str(s.get("n", len(s.get("images", [])))), s))
    return rows


def _notes(res: dict) -> list[str]:
    notes = []
    for key, label in (("fp", "FP (the unquantized float model)"), ("bicubic", "bicubic")):
        why = {s["baselines"][key]["unavailable"] for s in res.get("datasets", {}).values()
               if "unavailable" in s.get("baselines", {}).get(key, {})}
        notes += [f"note: {label} baseline n/a: {w}" for w in sorted(why)]
    if res.get("limit") is not None or res.get("crop") is not None:
        parts = ([f"the first {res['limit']} image(s) per set"] if res.get("limit") is not None else []) + (
            [f"the top-left {res['crop']}×{res['crop']} LR crop of each"] if res.get("crop") is not None else [])
        notes.append(f"note: {' and '.join(parts)} only — a quick check, not a benchmark result")
    return notes


def format_eval(res: dict, per_image: bool = False) -> str:
    """The table (module doc) of one :func:`calib.evaluate.run_eval` result."""
    scale = res.get("scale")
    title = " ".join(str(x) for x in (res.get("model"), f"×{scale}" if scale else None, res.get("bits")) if x)
    lines = [f"{title}: Y-PSNR (dB) / Y-SSIM, {scale or 'scale'}-pixel border cropped; "
             "Δ = this engine's PSNR − the baseline's"]
    rows = _rows(res, per_image)
    w0 = max([7] + [len(r[0]) for r in rows])
    second = "image" if per_image else "images"
    w1 = max([len(second)] + [len(r[1]) for r in rows])
    align = "<" if per_image else ">"  # names read from the left, counts from the right
    lines.append(f"{'dataset':<{w0}}  {second:{align}{w1}}  {'PSNR':>7}  {'SSIM':>7}  {'Δ FP':>7}  {'Δ bicubic':>9}  engine")
    for name, col, s in rows:
        d_fp, d_bic = (_delta(s.get("psnr"), s.get("baselines"), k) for k in BASELINES)
        lines.append(f"{name:<{w0}}  {col:{align}{w1}}  {_num(s.get('psnr'), '.3f'):>7}  {_num(s.get('ssim'), '.4f'):>7}  "
                     f"{d_fp:>7}  {d_bic:>9}  {res.get('engine', '')}")
    return "\n".join(lines + _notes(res))
