"""Photometric stress for calibration patches: saturated, high-contrast content.

Why: calibration sets of natural outdoor photographs (SunHays80) are muted
compared with what SR models meet (saturated flowers and insects, graphics,
text). Activation ranges and learned rounding fitted on muted patches clip on
saturated images: on such content the outer region of a two-region code is the
part that matters, and it can only cover values the calibration saw. Mixing
colour-saturated, contrast-stretched copies of the calibration patches into the
set exposes calibration to that content without any extra data.

:func:`stress` is also how the held-out check builds its "stressed" variant, so
a recipe's robustness to such content is measured on held-out calibration
images, never on a benchmark test set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Stress", "stress", "stress_patches"]

# ITU-R BT.601 luma weights: the grey point saturation pivots around
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Stress:
    """Which patches get stressed and how strongly.

    ``fraction`` of the patches (chosen by a seeded generator) get a colour
    saturation factor drawn uniformly from ``saturation`` and then a contrast
    factor drawn from ``contrast`` (about the patch mean); results are rounded
    and clipped to uint8, so a stressed patch is still a real 8-bit image.
    """

    fraction: float = 0.5
    saturation: tuple[float, float] = (1.0, 2.0)
    contrast: tuple[float, float] = (1.0, 1.5)

    def __post_init__(self):
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"stress fraction must be in [0, 1], got {self.fraction}")
        for name in ("saturation", "contrast"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"stress {name} range must satisfy 0 < lo <= hi, got {(lo, hi)}")


def stress(img: np.ndarray, saturation: float, contrast: float) -> np.ndarray:
    """uint8 H×W×3 RGB → uint8: saturation about each pixel's luma, then contrast about the image mean."""
    x = img.astype(np.float64)
    if x.ndim == 3 and x.shape[2] == 3:
        grey = (x @ _LUMA)[..., None]
        x = grey + saturation * (x - grey)
    m = x.mean()
    x = m + contrast * (x - m)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def stress_patches(patches: list[np.ndarray], spec: Stress, seed: int) -> list[np.ndarray]:
    """Stress a seeded ``spec.fraction`` of uint8 patches; the rest are returned unchanged.

    The generator is separate from the one that placed the crops, so turning
    stress on changes no crop position (clean A/B comparisons).
    """
    rng = np.random.default_rng([int(seed), 0x5EED])
    out = []
    for p in patches:
        pick, s, c = rng.random(), rng.uniform(*spec.saturation), rng.uniform(*spec.contrast)
        out.append(stress(p, s, c) if pick < spec.fraction else p)
    return out
