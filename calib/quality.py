"""Is the quantized model any good? Held-out checks and the verdict every report shows.

A bit-exact model worse than bicubic is a defect, so ``calibrate`` ends by
scoring the exported artifact (on the integer engine) against the float model
and bicubic on **held-out calibration images**: images of the calibration
folder that calibration did not use (the calibration order is a seeded
permutation; the first ``n_images`` are used, the next ones are held out). No
benchmark test set is involved.

:func:`verdict` turns (FP, quantized, bicubic) PSNRs into one line used by
``calibrate``, ``demo`` and the HTML report, next to the bit-exactness verdict.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Verdict", "verdict", "holdout_quality", "holdout_pairs", "score", "GOOD_DB", "FAIR_DB"]

#: Δ to FP (dB) at or above which the quantized model is "close to FP"
GOOD_DB = -0.3
#: Δ to FP (dB) at or above which it is "usable"; below: "degraded" (and "bad" below bicubic)
FAIR_DB = -1.0


@dataclass(frozen=True)
class Verdict:
    level: str  # 'good' | 'fair' | 'degraded' | 'bad' | 'unknown'
    text: str

    @property
    def ok(self) -> bool:
        return self.level in ("good", "fair")


def verdict(fp: float | None, quant: float | None, bicubic: float | None) -> Verdict:
    """Quality verdict from mean Y-PSNRs (dB): Δ to FP and Δ to bicubic, stated plainly."""
    if quant is None or not math.isfinite(quant) or fp is None:
        return Verdict("unknown", "quality: not measured")
    d_fp = quant - fp
    parts = [f"{quant:.2f} dB, {d_fp:+.2f} dB vs FP ({fp:.2f})"]
    if bicubic is not None:
        d_b = quant - bicubic
        parts.append(f"{d_b:+.2f} dB vs bicubic ({bicubic:.2f})")
        if d_b < 0:
            return Verdict("bad", "quality BAD: below bicubic — " + ", ".join(parts))
    if d_fp >= GOOD_DB:
        return Verdict("good", "quality good: " + ", ".join(parts))
    if d_fp >= FAIR_DB:
        return Verdict("fair", "quality fair: " + ", ".join(parts))
    return Verdict("degraded", "quality DEGRADED: " + ", ".join(parts))


def _crop_pair(hr: np.ndarray, scale: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred LR crop of at most ``patch``² of the image's bicubic LR, and the matching HR region."""
    from calib.bicubic import bicubic_downsample, modcrop

    hr = modcrop(hr, scale)
    lr = bicubic_downsample(hr, scale)
    h, w = lr.shape[:2]
    ph, pw = min(patch, h), min(patch, w)
    top, left = (h - ph) // 2, (w - pw) // 2
    return (lr[top:top + ph, left:left + pw],
            hr[top * scale:(top + ph) * scale, left * scale:(left + pw) * scale])


def _fp_runner(model_name, net, rgb_range: float, scale: int):
    """``model_name``: a zoo name, or an entry (a user model's, :mod:`calib.models.user`) with its own I/O."""
    import torch

    from calib.models.zoo import MODELS, ModelEntry
    from calib.metrics import to_uint8

    entry = model_name if isinstance(model_name, ModelEntry) else MODELS.get(model_name)
    if entry is not None:
        from calib.fp_eval import super_resolve

        return lambda lr: super_resolve(entry, net, lr, scale)

    def run(lr):
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None].float() * (rgb_range / 255.0)
        with torch.no_grad():
            y = net(x)[0].double().numpy().transpose(1, 2, 0) * (255.0 / rgb_range)
        return to_uint8(y)
    return run


#: the fixed photometric stress (saturation, contrast) of the held-out check's second variant
#: (calib/augment.py): the strongest stress calibration may apply
HOLDOUT_STRESS = (2.0, 1.5)


def holdout_pairs(folder: str | os.PathLike, scale: int, n_used: int, seed: int, *, n_eval: int = 8,
                  patch: int = 96, stressed: bool = False) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], bool]:
    """Held-out (name, LR, HR) crops and whether they are disjoint from the calibration images.

    Held out = images ``n … n+n_eval−1`` of the seeded calibration order
    (:func:`calib.calibrate.load_calibration_images`), ``n`` = the number of
    images patches were drawn from (``n_used`` patches cycle over at most
    :func:`calib.calibrate.calibration_pool` images); if the folder has fewer
    images, the remainder come from used images (``disjoint`` is then False).
    Each image: a centred LR crop of at most ``patch``² and its HR region.
    ``stressed``: the HR image is first saturated and contrast-stretched by
    :data:`HOLDOUT_STRESS` (:func:`calib.augment.stress`), then made LR.
    """
    from calib.datasets import list_images, read_rgb

    from calib.calibrate import calibration_pool

    files = list_images(Path(folder))
    n_used = min(int(n_used), calibration_pool(len(files)))
    order = np.random.default_rng(seed).permutation(len(files))
    picks = [int(order[(n_used + i) % len(files)]) for i in range(min(n_eval, len(files)))]
    pairs = []
    for j in picks:
        hr = read_rgb(files[j])
        if stressed:
            from calib.augment import stress

            hr = stress(hr, *HOLDOUT_STRESS)
        if hr.shape[0] >= 2 * scale and hr.shape[1] >= 2 * scale:
            lr, hr = _crop_pair(hr, scale, patch)
            pairs.append((files[j].name, lr, hr))
    return pairs, n_used + len(picks) <= len(files)


def score(model_name: str, net, rgb_range: float, scale: int, pairs) -> float | None:
    """Mean Y-PSNR of a float (or fake-quant) torch model on (name, LR, HR) pairs."""
    from calib.metrics import psnr_y

    run = _fp_runner(model_name, net, rgb_range, scale)
    v = [psnr_y(run(lr), hr, scale) for _, lr, hr in pairs]
    v = [x for x in v if math.isfinite(x)]
    return float(np.mean(v)) if v else None


def holdout_quality(model_name: str, net, art, folder: str | os.PathLike, scale: int, rgb_range: float,
                    n_used: int, seed: int, *, lr_only: bool, n_eval: int = 8, patch: int = 96) -> dict:
    """Mean Y-PSNR of FP, the artifact on the integer engine, and bicubic on held-out calibration images
    (:func:`holdout_pairs`), plainly and ``stressed`` (the same images saturated and contrast-stretched).
    ``lr_only``: the folder holds LR images (:func:`calib.calibrate.calibration_layout`): nothing to score
    against. An artifact with overflow policy ``error`` that overflows on a held-out image is not measured
    (``overflow`` names the op): the artifact is as asked for, the check reports it rather than failing."""
    from calib.bicubic import bicubic_upsample_rounded
    from calib.evaluate import make_runner
    from intsim.overflow import EngineOverflowError
    from calib.metrics import psnr_y

    if lr_only:
        return {"images": 0, "skipped": "the calibration folder holds LR images: no HR to score against",
                "quantized_psnr_db": None, "verdict": "unknown", "verdict_text": "quality: not measured"}
    fp_run = _fp_runner(model_name, net, rgb_range, scale)
    q_run = make_runner(art, "intsim")

    def measure(pairs) -> dict:
        rows = []
        for name, lr, hr in pairs:
            q = q_run(lr)  # make_runner takes the LR image and forms the artifact's input itself
            q = q[:, :, 0] if q.ndim == 3 and q.shape[2] == 1 else q
            rows.append({"image": name, "fp": psnr_y(fp_run(lr), hr, scale), "quantized": psnr_y(q, hr, scale),
                         "bicubic": psnr_y(bicubic_upsample_rounded(lr, scale), hr, scale)})

        def mean(k):
            v = [r[k] for r in rows if math.isfinite(r[k])]
            return float(np.mean(v)) if v else None

        fp, qu, bi = mean("fp"), mean("quantized"), mean("bicubic")
        v = verdict(fp, qu, bi)
        return {"images": len(rows), "fp_psnr_db": fp, "quantized_psnr_db": qu, "bicubic_psnr_db": bi,
                "verdict": v.level, "verdict_text": v.text, "per_image": rows}

    pairs, disjoint = holdout_pairs(folder, scale, n_used, seed, n_eval=n_eval, patch=patch)
    try:
        out = measure(pairs)
        # the same images, colour-saturated and contrast-stretched: muted calibration data hides range clipping
        # that saturated content (flowers, insects, graphics) exposes
        stressed = measure(holdout_pairs(folder, scale, n_used, seed, n_eval=n_eval, patch=patch, stressed=True)[0])
    except EngineOverflowError as e:
        return {"images": 0, "skipped": "the integer engine stopped on a held-out image", "overflow": str(e),
                "quantized_psnr_db": None, "verdict": "unknown", "verdict_text": "quality: not measured"}
    out.update({"disjoint": bool(disjoint), "patch": int(patch), "stressed": stressed})
    out["stressed"]["stress"] = {"saturation": HOLDOUT_STRESS[0], "contrast": HOLDOUT_STRESS[1]}
    return out
