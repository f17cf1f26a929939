"""Calibration recipes: the one place where calibration defaults live.

The CLI (``intsim calibrate``, ``python -m calib.cli_calibrate``), the Python
API (:func:`calib.cli_calibrate.run_calibrate`) and the demo all resolve their
settings here, so a user who passes only model, weights, scale and bits gets
the best measured recipe (docs/calibration_results.md), and every other method
keeps its own published recipe.

==============  ======================================================================
method          recipe
==============  ======================================================================
recon (default) block reconstruction with learned weight rounding (calib/reconstruct.py)
                on a two-region init with error-searched bp and range (layers with ≥ 6
                activation bits also try the all-batch extremes); per-channel weight scales
                (MSE-clipped below 6 bits, the full range at ≥ 6 bits);
                256 LR patches of 48×48 (4 per image) from the first 64 images of the
                seeded order (calib/calibrate.py calibration_pool); 300 steps per unit,
                batch 4, QDrop 0.5; below 6 weight bits the unit loss is Fisher-weighted
                (each output channel's error counted by its effect on the SR output);
                cross-layer equalization off (``equalize``; measured, docs/calibration.md tenth round)
paper methods   (oaq, dual_region, baselines) the paper's recipe: 100 LR patches of
                96×96, batch 2, bp at the EMA p99, per-tensor weight scales
==============  ======================================================================

Every choice above was made on calibration data (SunHays80 patches and
held-out SunHays80 patches), never on a benchmark test set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from calib.augment import Stress
from calib.reconstruct import ReconConfig

__all__ = ["DEFAULT_METHOD", "Recipe", "resolve_recipe"]

#: the method a user gets without ``--method`` (the best measured, for every bit width)
DEFAULT_METHOD = "recon"


@dataclass(frozen=True)
class Recipe:
    """Resolved calibration settings (what the artifact's metadata records)."""

    method: str
    n_images: int  # LR calibration patches
    patch: int  # LR patch side (pixels)
    batch_size: int  # patches per observer update / finetuning step
    bp_init: str  # 'percentile' | 'search'
    per_channel: bool  # per-output-channel weight scales
    recon: ReconConfig | None = None  # block reconstruction settings (method recon)
    wide_range_bits: int | None = None  # layers with ≥ this many act bits also search the all-batch extremes
    wide_weight_bits: int | None = None  # layers with ≥ this many weight bits keep every weight in range (no clip)
    stress: Stress | None = None  # photometric stress mixed into the calibration patches (calib/augment.py)
    full_range_weights: bool = False  # integer weights in [−2^(b−1), 2^(b−1)−1] (else narrow, ±(2^(b−1)−1))
    fisher_below_bits: int | None = None  # recon: Fisher-weighted unit loss when --bits has fewer weight bits
    equalize: float | None = None  # cross-layer equalization strength α (calib/equalize.py); None = off

    def describe(self) -> str:
        """One line for the user: what this recipe does."""
        w = "per-channel" if self.per_channel else "per-tensor"
        eq = f", cross-layer equalized (α {self.equalize:g})" if self.equalize is not None else ""
        if self.recon is not None:
            r = self.recon
            wide = f", ranges searched up to the extremes at ≥{self.wide_range_bits} bits" if self.wide_range_bits else ""
            st = (f" ({self.stress.fraction:.0%} colour/contrast-stressed)" if self.stress and self.stress.fraction
                  else "")
            ww = f" (unclipped at ≥{self.wide_weight_bits} bits)" if self.wide_weight_bits else ""
            ww += ", full two's complement range" if self.full_range_weights else ""
            return (f"{self.method}: two-region init (bp {self.bp_init}{wide}), {w} weights{ww}{eq}, block reconstruction with "
                    f"learned rounding ({r.iters} steps/unit, batch {r.batch_size}, QDrop {r.qdrop}"
                    f"{', Fisher-weighted loss' if r.weighting == 'fisher' else ''}) on "
                    f"{self.n_images} patches of {self.patch}×{self.patch}{st}")
        return (f"{self.method}: bp {self.bp_init}, {w} weights{eq}, {self.n_images} patches of "
                f"{self.patch}×{self.patch}, batch {self.batch_size}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["recon"] = asdict(self.recon) if self.recon is not None else None
        if d["recon"] is not None and d["recon"]["weighting"] == "none":  # as before the option existed
            del d["recon"]["weighting"]
        d["stress"] = asdict(self.stress) if self.stress is not None else None
        if not self.full_range_weights:  # absent = narrow: artifacts record what they recorded before the option
            del d["full_range_weights"]
        if self.fisher_below_bits is None:
            del d["fisher_below_bits"]
        if self.equalize is None:  # absent = off: artifacts record what they recorded before the option
            del d["equalize"]
        return d


_PAPER = dict(n_images=100, patch=96, batch_size=2, bp_init="percentile", per_channel=False)
_RECON = dict(n_images=256, patch=48, batch_size=2, bp_init="search", per_channel=True, wide_range_bits=6,
              wide_weight_bits=6, fisher_below_bits=6)


def resolve_recipe(method: str | None = None, *, n_images: int | None = None, patch: int | None = None,
                   batch_size: int | None = None, bp_init: str | None = None, per_channel: bool | None = None,
                   recon: ReconConfig | dict | None = None, seed: int = 0, input_upscale: int = 1,
                   stress: float | None = None, wide_weight_bits: int | None = None,
                   full_range_weights: bool | None = None, weight_bits: int | None = None,
                   equalize: float | None = None) -> Recipe:
    """The recipe of ``method`` (default :data:`DEFAULT_METHOD`) with the given overrides (None = default).

    ``input_upscale``: how much larger than the LR patch the network's input is
    (VDSR takes the bicubic-upsampled image: the scale); the default patch of
    ``recon`` shrinks by it, so every model reconstructs on inputs of about 48².
    ``stress``: the fraction of calibration patches that are colour/contrast
    stressed (calib/augment.py; 0 turns it off).
    ``equalize``: cross-layer equalization strength α ∈ [0, 1] before calibration (calib/equalize.py;
    None = the recipe's, off).
    ``weight_bits``: the request's weight width (``--bits``); ``recon`` below the recipe's
    ``fisher_below_bits`` weighs its unit loss by the Fisher channel sensitivity, unless ``recon``
    sets ``weighting`` itself.
    """
    from calib.methods import check_method

    m = check_method(method if method is not None else DEFAULT_METHOD)
    base = dict(_RECON if m == "recon" else _PAPER)
    if m == "recon" and input_upscale > 1:
        base["patch"] = max(8, base["patch"] // int(input_upscale))
    for k, v in (("n_images", n_images), ("patch", patch), ("batch_size", batch_size), ("bp_init", bp_init),
                 ("per_channel", per_channel), ("wide_weight_bits", wide_weight_bits),
                 ("full_range_weights", full_range_weights), ("equalize", equalize)):
        if v is not None:
            base[k] = v
    rc = None
    if m == "recon":
        rc = ReconConfig(seed=int(seed))
        fisher = base.get("fisher_below_bits")
        if weight_bits is not None and fisher is not None and int(weight_bits) < fisher:
            rc = replace(rc, weighting="fisher")
        if isinstance(recon, ReconConfig):
            rc = recon
        elif isinstance(recon, dict):
            rc = replace(rc, **recon)
    if base.get("equalize") is not None and not 0.0 <= float(base["equalize"]) <= 1.0:
        raise ValueError(f"equalization strength must be in [0, 1], got {base['equalize']}")
    frac = base.pop("stress_fraction", 0.0) if stress is None else float(stress)
    return Recipe(method=m, recon=rc, stress=Stress(fraction=frac) if frac else None, **base)
