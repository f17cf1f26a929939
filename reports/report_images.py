"""The report's image comparison: aligned crops of every image of a run, SSIM, an error map.

For each evaluation image (``summary["per_image"][i]["files"]``: label → path) the LR input is
nearest-upsampled to the HR size, so every crop of one image is the *same* window of the scene:
LR, bicubic, float, fake-quant, golden, intsim, HR, and ``|intsim − HR|`` on the Y channel as a
heat map. SSIM (Wang et al., Y channel, ``scale`` border pixels cropped; :func:`calib.metrics.ssim_y`)
is measured against the HR image when the folder has it. numpy + PIL; matplotlib only colours
the error map (grey without it).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Crop order: input, reference, models (float to integer), target, error.
ORDER = ("lr", "bicubic", "float", "fake_quant", "golden", "intsim", "hr")
#: The labels that are super-resolved outputs (scored against HR).
SR_LABELS = ("bicubic", "float", "fake_quant", "golden", "intsim")
#: Error map gain: |ΔY| × 8, so an error of 1–2 grey levels is visible; 32 levels and more are full scale.
ERROR_GAIN = 8


@dataclass
class ImageRow:
    name: str
    images: dict  # label -> uint8 H×W×3 at the HR size (LR nearest-upsampled)
    psnr: dict  # label -> Y-PSNR [dB] (from the summary)
    ssim: dict = field(default_factory=dict)  # label -> Y-SSIM against HR
    problems: list = field(default_factory=list)


def load_rows(root: Path, summary: dict) -> list[ImageRow]:
    """One :class:`ImageRow` per ``summary["per_image"]`` row, with SSIM when the HR image is listed."""
    from intsim.images import read_image
    from calib.metrics import ssim_y

    scale = int(summary.get("scale", 1))
    rows = []
    for row in summary.get("per_image") or []:
        r = ImageRow(str(row.get("name")), {}, dict(row.get("psnr_db") or {}))
        for label, rel in (row.get("files") or {}).items():
            p = root / rel
            if not p.is_file():
                r.problems.append(f"{label}: {rel} is not in the folder")
                continue
            try:
                a = read_image(p, 3).pixels
            except (OSError, ValueError) as e:
                r.problems.append(f"{label}: {' '.join(str(e).split())[:160]}")
                continue
            r.images[label] = a.repeat(scale, 0).repeat(scale, 1) if label == "lr" else a
        hr = r.images.get("hr")
        for label in SR_LABELS:
            if hr is not None and label in r.images:
                try:
                    r.ssim[label] = ssim_y(r.images[label], hr, scale)
                except ValueError as e:  # another size than HR, or smaller than the SSIM window
                    r.problems.append(f"{label}: no SSIM ({e})")
        rows.append(r)
    return rows


def _window(row: ImageRow, crop: int) -> tuple[int, int, int, tuple[int, int]] | None:
    """(y0, x0, side, reference H×W): the centre square every crop of the row shares; the
    reference is the HR image, else intsim's output, else the first image."""
    ref = next((k for k in ("hr", "intsim", *ORDER, *row.images) if k in row.images), None)
    if ref is None:
        return None
    h, w = row.images[ref].shape[:2]
    side = min(crop, h, w)
    return (h - side) // 2, (w - side) // 2, side, (h, w)


def error_map(sr: np.ndarray, hr: np.ndarray, colour: bool) -> np.ndarray:
    """uint8 RGB heat map of ``|Y(sr) − Y(hr)| × ERROR_GAIN`` (inferno when ``colour``, else grey)."""
    from calib.metrics import to_y

    err = np.clip(np.abs(to_y(sr) - to_y(hr)) * ERROR_GAIN, 0, 255).astype(np.uint8)
    if not colour:
        return np.repeat(err[:, :, None], 3, axis=2)
    from matplotlib import colormaps

    return (colormaps["inferno"](err)[:, :, :3] * 255).round().astype(np.uint8)


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()


def _caption(row: ImageRow, label: str) -> str:
    bits = [label.replace("_", "-")]
    if row.psnr.get(label) is not None:
        bits.append(f"{row.psnr[label]:.2f} dB")
    if label in row.ssim:
        bits.append(f"SSIM {row.ssim[label]:.3f}")
    return " · ".join(bits)


def crops(row: ImageRow, crop: int = 160, colour: bool = True) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the row's images in :data:`ORDER`, the same window of each, then the error map.

    An image of another size than the reference (HR, else intsim) is left out with a problem line:
    a crop of it would show another part of the scene."""
    win = _window(row, crop)
    if win is None:
        return []
    y0, x0, side, ref_shape = win
    out = []
    for label in [k for k in ORDER if k in row.images] + [k for k in row.images if k not in ORDER]:
        a = row.images[label]
        if a.shape[:2] != ref_shape:
            row.problems.append(f"{label}: {a.shape[1]}×{a.shape[0]}, not {ref_shape[1]}×{ref_shape[0]}: not shown")
            continue
        cap = {"lr": "LR (nearest-upsampled)", "hr": "HR (target)"}.get(label) or _caption(row, label)
        out.append((cap, _png(a[y0:y0 + side, x0:x0 + side])))
    sr, hr = row.images.get("intsim"), row.images.get("hr")
    if sr is not None and hr is not None and sr.shape[:2] == hr.shape[:2] == ref_shape:
        emap = error_map(sr[y0:y0 + side, x0:x0 + side], hr[y0:y0 + side, x0:x0 + side], colour)
        out.append((f"|intsim − HR| on Y, ×{ERROR_GAIN} (white/yellow ≥ {256 // ERROR_GAIN} levels)", _png(emap)))
    return out
