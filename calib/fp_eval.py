"""Full-precision evaluation of a zoo model on a benchmark (the protocol of the shared README).

LR = the benchmark's LR (official files for Set5, MATLAB bicubic otherwise); the model runs in
float32 under ``torch.no_grad``; its output is rounded to uint8 (RGB models) or to the uint8 Y
plane (Y models: VDSR, FSRCNN); PSNR/SSIM on Y with ``scale`` border pixels cropped.
"""
from __future__ import annotations

import os

import numpy as np

from calib.datasets import benchmark
from calib.models.zoo import ModelEntry, get_model, resolve_checkpoint
from calib.metrics import psnr_y, ssim_y

__all__ = ["evaluate_fp", "super_resolve"]

DEFAULT_THREADS = 2


def super_resolve(entry: ModelEntry, model, lr: np.ndarray, scale: int) -> np.ndarray:
    """Run ``model`` on one uint8 RGB LR image; uint8 SR (H×W×3, or H×W Y for Y models)."""
    import torch

    with torch.no_grad():
        x = entry.preprocess(lr, scale)
        out = model(x)
    return entry.postprocess(out)


def evaluate_fp(model_name: str, scale: int, dataset: str = "Set5", checkpoint: str | os.PathLike | None = None,
                data_root: str | os.PathLike | None = None, model=None, threads: int | None = DEFAULT_THREADS,
                with_ssim: bool = True) -> dict:
    """Y-PSNR / Y-SSIM of the float model on ``dataset``.

    ``checkpoint`` defaults to the model's official file under the data root; ``model`` may be
    passed instead (an already-loaded network following the entry's I/O convention).
    Returns ``{"model", "scale", "dataset", "checkpoint", "psnr", "ssim", "per_image": [{name, psnr,
    ssim}, ...]}`` with means over images.
    """
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    entry = get_model(model_name)
    scale = int(scale)
    ckpt = None
    if model is None:
        ckpt = resolve_checkpoint(entry.name, scale, checkpoint, data_root)
        model = entry.load(ckpt, scale)
    model.eval()
    ds = benchmark(dataset, scale, root=data_root)
    per_image = []
    for pair in ds:
        sr = super_resolve(entry, model, pair.lr, scale)
        row = {"name": pair.name, "psnr": psnr_y(sr, pair.hr, scale)}
        if with_ssim:
            row["ssim"] = ssim_y(sr, pair.hr, scale)
        per_image.append(row)
    res = {
        "model": entry.name,
        "scale": scale,
        "dataset": ds.display_name,
        "checkpoint": str(ckpt) if ckpt is not None else None,
        "psnr": float(np.mean([r["psnr"] for r in per_image])),
        "ssim": float(np.mean([r["ssim"] for r in per_image])) if with_ssim else None,
        "per_image": per_image,
    }
    return res


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience CLI
    import argparse
    import json

    ap = argparse.ArgumentParser(description="FP Y-PSNR/SSIM of a zoo model on a benchmark")
    ap.add_argument("model")
    ap.add_argument("scale", type=int)
    ap.add_argument("--dataset", default="Set5")
    ap.add_argument("--checkpoint")
    ap.add_argument("--data-root")
    a = ap.parse_args(argv)
    r = evaluate_fp(a.model, a.scale, a.dataset, a.checkpoint, a.data_root)
    print(json.dumps(r, indent=1, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
