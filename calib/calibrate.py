"""MinMax calibration: observe a float model on real images, fix every quantizer.

:func:`calibrate_minmax` traces the model (calib/graph.py), runs it on
calibration patches through an fx interpreter with taps, and collects

* per conv input: a :class:`~calib.quant.two_region.MinMaxObserver`
  (EMA β = 0.9 of per-batch min/max, breakpoint at the EMA of the per-batch
  99th percentile of |x|) → a :class:`TwoRegionSpec` (docs/calibration.md);
* per conv weight: a MinMax symmetric :class:`WeightQuantSpec`;
* per stream tensor (every op output, arithmetic.md §1.2): the largest |x|
  seen over all batches (a true max, not an EMA: stream fracs must not
  overflow), from which export picks the tensor's frac.

The taps are fx-interpreter hooks rather than ``nn.Module`` forward hooks
because residual adds and other functional ops have no module to hook; conv
inputs are observed at the conv module call exactly as a forward pre-hook
would see them.

:func:`load_calibration_images` reads real images into LR patches,
deterministically under a seed.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from calib.augment import Stress, stress_patches
from calib.bicubic import bicubic_downsample
from calib.datasets import list_images, read_rgb
from calib.graph import CapturedGraph, capture
from calib.quant.two_region import ALLOCATIONS, MinMaxObserver, TwoRegionSpec
from calib.quant.weight import WeightQuantSpec, minmax_weight_spec



@dataclass
class LayerPolicy:
    """Which bits each conv gets (docs/calibration.md "layer policy").

    Convs whose role (see :meth:`CapturedGraph.conv_roles`) is in
    ``high_roles`` get ``max(high_bits, b)`` for weights and activations (the
    method's released code keeps head, upsampler and tail at 8 bits); the
    others get the nominal ``(bits_w, bits_a)``. ``overrides`` maps a conv op
    name to explicit ``(bits_w, bits_a)``. ``allocation`` is the activation
    code allocation (§3.3) of every layer; ``per_channel_weights`` selects
    per-output-channel weight scales.
    """

    high_bits: int = 8
    high_roles: tuple[str, ...] = ("head", "upsampler", "tail")
    allocation: str = "released"
    per_channel_weights: bool = False
    overrides: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self):
        if self.allocation not in ALLOCATIONS:
            TwoRegionSpec(0.0, 1.0, 0.5, 4, self.allocation)  # raises the precise error
        bad = set(self.high_roles) - {"head", "body", "upsampler", "tail"}
        if bad:
            raise ValueError(f"unknown conv roles in policy: {sorted(bad)}")

    def bits(self, name: str, role: str, bits_w: int, bits_a: int) -> tuple[int, int]:
        if name in self.overrides:
            bw, ba = self.overrides[name]
            return int(bw), int(ba)
        if role in self.high_roles:
            return max(self.high_bits, bits_w), max(self.high_bits, bits_a)
        return bits_w, bits_a

    @classmethod
    def parse(cls, policy: "LayerPolicy | str | dict | None") -> "LayerPolicy":
        """``None``/``'oaq'`` → the released-code policy; ``'all'`` → every conv at b bits; a dict → fields."""
        if policy is None or policy == "oaq":
            return cls()
        if policy == "all":
            return cls(high_roles=())
        if isinstance(policy, LayerPolicy):
            return policy
        if isinstance(policy, dict):
            return cls(**policy)
        raise ValueError(f"unknown layer policy {policy!r} (expected 'oaq', 'all', a dict or a LayerPolicy)")

    def to_json(self) -> dict:
        return {"high_bits": self.high_bits, "high_roles": list(self.high_roles), "allocation": self.allocation,
                "per_channel_weights": self.per_channel_weights,
                "overrides": {k: list(v) for k, v in self.overrides.items()}}


@dataclass
class LayerCalibration:
    """Calibrated quantizers of one conv (real values; snapped only at export)."""

    name: str
    module: str
    role: str
    bits_w: int
    bits_a: int
    act: TwoRegionSpec
    weight: WeightQuantSpec
    observer: dict
    #: learned integer weights (int64, the torch weight's layout) from reconstruction (calib/reconstruct.py);
    #: None = ``weight.quantize(module weight)`` (round to nearest)
    w_int: torch.Tensor | None = None
    #: learned float bias (reconstruction with ``learn_bias``); None = the module's own bias
    bias: torch.Tensor | None = None

    def integer_weights(self, weight: torch.Tensor) -> torch.Tensor:
        """int64 integer weights of this conv (torch layout): the learned ones, else rounded to nearest."""
        if self.w_int is None:
            return self.weight.quantize(weight)
        if tuple(self.w_int.shape) != tuple(weight.shape):
            raise ValueError(f"layer {self.name}: learned integer weights have shape {list(self.w_int.shape)}, "
                             f"the conv weight {list(weight.shape)}")
        lo, hi = self.weight.qmin, self.weight.qmax
        if int(self.w_int.min()) < lo or int(self.w_int.max()) > hi:
            raise ValueError(f"layer {self.name}: learned integer weights leave [{lo}, {hi}] ({self.bits_w}-bit)")
        return self.w_int.to(torch.int64)


@dataclass
class CalibrationResult:
    graph: CapturedGraph
    layers: dict[str, LayerCalibration]  # conv op name → calibration, in graph order
    stream_absmax: dict[str, float]  # stream tensor → max |x| over all calibration batches
    bits_w: int
    bits_a: int
    policy: LayerPolicy
    method: str
    n_images: int
    n_batches: int
    settings: dict = field(default_factory=dict)

    @property
    def bits(self) -> str:
        return f"W{self.bits_w}A{self.bits_a}"

    def to_json(self) -> dict:
        return {"method": self.method, "bits": self.bits, "n_images": self.n_images, "n_batches": self.n_batches,
                "policy": self.policy.to_json(), **self.settings}


def _batches(images: Iterable[torch.Tensor], batch_size: int):
    """Group consecutive same-shape images into N×C×H×W batches of at most ``batch_size``."""
    pending: list[torch.Tensor] = []
    for img in images:
        t = torch.as_tensor(img)
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4:
            raise ValueError(f"calibration images must be C×H×W or N×C×H×W, got shape {list(t.shape)}")
        t = t.float()
        if pending and (pending[0].shape[1:] != t.shape[1:] or sum(p.shape[0] for p in pending) >= batch_size):
            yield torch.cat(pending)
            pending = []
        pending.append(t)
    if pending:
        yield torch.cat(pending)


@torch.no_grad()
def calibrate_minmax(model: nn.Module, images: Iterable[torch.Tensor], bits_w: int, bits_a: int,
                     policy: "LayerPolicy | str | dict | None" = None, *, batch_size: int = 1,
                     momentum: float = 0.9, percentile: float = 99.0,
                     graph: CapturedGraph | None = None) -> CalibrationResult:
    """Calibrate MinMax two-region activation and symmetric weight quantizers.

    ``images``: float tensors (C×H×W or N×C×H×W) in the model's input range
    [0, rgb_range]. ``bits_w``/``bits_a``: nominal bits b of body convs
    (2–16); the policy raises head/upsampler/tail to 8. ``batch_size``: images
    per observer update (each update is one EMA step).
    """
    for what, b in (("bits_w", bits_w), ("bits_a", bits_a)):
        if not (2 <= int(b) <= 16):
            raise ValueError(f"{what} must be in 2..16, got {b}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pol = LayerPolicy.parse(policy)
    model.eval()
    g = graph if graph is not None else capture(model)
    convs = g.convs()
    roles = g.conv_roles()
    observers = {c.name: MinMaxObserver(momentum, percentile) for c in convs}
    absmax = {t: 0.0 for t in g.stream_tensors()}

    def tensor_tap(t):
        def cb(v):
            absmax[t] = max(absmax[t], float(v.detach().abs().max()))
        return cb

    conv_taps = {c.name: observers[c.name].update for c in convs}
    tensor_taps = {t: tensor_tap(t) for t in absmax}
    n_images = n_batches = 0
    for batch in _batches(images, batch_size):
        g.run(batch, conv_input_taps=conv_taps, tensor_taps=tensor_taps)
        n_images += batch.shape[0]
        n_batches += 1
    if n_batches == 0:
        raise ValueError("no calibration images were given")

    layers: dict[str, LayerCalibration] = {}
    for c in convs:
        bw, ba = pol.bits(c.name, roles[c.name], int(bits_w), int(bits_a))
        mod = g.gm.get_submodule(c.module)
        layers[c.name] = LayerCalibration(
            name=c.name, module=c.module, role=roles[c.name], bits_w=bw, bits_a=ba,
            act=observers[c.name].spec(ba, pol.allocation),
            weight=minmax_weight_spec(mod.weight, bw, per_channel=pol.per_channel_weights),
            observer=observers[c.name].state(),
        )
    return CalibrationResult(g, layers, absmax, int(bits_w), int(bits_a), pol, "minmax", n_images, n_batches,
                             settings={"batch_size": batch_size, "momentum": momentum, "percentile": percentile})


# --------------------------------------------------------------------------
# calibration data


def _looks_lr(folder: Path, files: list[Path]) -> bool:
    if any(re.search(r"(^|[^a-z])lr([^a-z]|$)", p.lower()) for p in folder.parts):
        return True
    return bool(files) and all(re.search(r"x\d+$", f.stem.lower()) for f in files)


CALIB_LAYOUTS = ("auto", "hr", "lr")


def calibration_layout(folder: str | os.PathLike, layout: str, scale: int) -> tuple[bool, str]:
    """Whether ``folder``'s images are LR (``layout`` ``'lr'``, ``'hr'``, or ``'auto'``: the path
    guess of :func:`load_calibration_images`) and the stage line that says what was found, so a wrong
    guess is visible rather than silent."""
    if layout not in CALIB_LAYOUTS:
        raise ValueError(f"calib_layout must be one of {', '.join(CALIB_LAYOUTS)}, got {layout!r}")
    folder = Path(folder)
    try:
        files = list_images(folder)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    if layout != "auto":
        is_lr, why = layout == "lr", f"--calib-layout {layout}"
    elif _looks_lr(folder, []):
        is_lr, why = True, "auto-detected: a folder named like 'LR…' in the path; --calib-layout hr if they are HR"
    elif _looks_lr(Path(), files):
        is_lr, why = True, "auto-detected: every file is named '…x<s>'; --calib-layout hr if they are HR"
    else:
        is_lr, why = False, "auto-detected; --calib-layout lr if they are already LR"
    n = f"{len(files)} {'LR' if is_lr else 'HR'} image{'s' if len(files) != 1 else ''} in {folder}"
    use = "used as they are" if is_lr or scale == 1 else f"made LR by bicubic ×{scale}"
    return is_lr, f"calibration images: {n}, {use} ({why})"


#: when a folder holds more than twice this many images, the last HOLDOUT_RESERVE of the seeded order are
#: never calibrated on, however many patches are asked for: calibrate's held-out check (calib/quality.py)
#: scores on them, so a recipe with more patches is still judged on unseen images
HOLDOUT_RESERVE = 16


def calibration_pool(n_files: int) -> int:
    """How many images (a prefix of the seeded order) calibration patches are drawn from."""
    return n_files - HOLDOUT_RESERVE if n_files > 2 * HOLDOUT_RESERVE else n_files


def load_calibration_images(folder: str | os.PathLike, n: int, patch: int | None, scale: int, seed: int, *,
                            rgb_range: float = 255, lr: bool | None = None,
                            stress: Stress | None = None) -> list[torch.Tensor]:
    """Read ``n`` LR calibration patches from real images, deterministic under ``seed``.

    Images are read as uint8 RGB (:func:`calib.datasets.read_rgb`: gray is
    replicated, alpha dropped). If the folder holds HR images (``lr=False``;
    auto-detected: a path component named like ``LR…`` or every file named
    ``…x<s>.<ext>`` means LR), each is made LR with the MATLAB-compatible
    bicubic ``imresize(modcrop(HR, s), 1/s)`` (:func:`calib.bicubic.bicubic_downsample`,
    the same as the benchmark LR inputs). From each LR image one
    ``patch``×``patch`` crop is taken at a seeded random position (the whole
    image if ``patch`` is None; the largest fitting square if the image is
    smaller than ``patch``). Images are drawn in a seeded random order, cycling
    over the first :func:`calibration_pool` of them if ``n`` exceeds that (a new
    seeded crop each time round).

    ``stress`` (:class:`calib.augment.Stress`) replaces a seeded fraction of
    the crops by colour-saturated, contrast-stretched copies (same positions).

    Returns float32 tensors 3×p×p with values ``pixel · rgb_range / 255``.
    """
    if n < 1:
        raise ValueError(f"number of calibration images must be >= 1, got {n}")
    if patch is not None and patch < 1:
        raise ValueError(f"patch size must be >= 1, got {patch}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration folder {folder} does not exist")
    try:
        files = list_images(folder)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    is_lr = _looks_lr(folder, files) if lr is None else lr
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    pool = calibration_pool(len(files))
    cache: dict[int, np.ndarray] = {}
    crops: list[np.ndarray] = []
    for i in range(n):
        j = int(order[i % pool])
        if j not in cache:
            arr = read_rgb(files[j])
            if not is_lr and scale > 1:
                if arr.shape[0] < scale or arr.shape[1] < scale:
                    raise ValueError(f"{files[j]}: image {arr.shape[1]}×{arr.shape[0]} is smaller than the scale {scale}")
                arr = bicubic_downsample(arr, scale)
            cache[j] = arr
        arr = cache[j]
        h, w = arr.shape[:2]
        if patch is None:
            crop = arr
        else:
            p = min(patch, h, w)
            top = int(rng.integers(0, h - p + 1))
            left = int(rng.integers(0, w - p + 1))
            crop = arr[top:top + p, left:left + p]
        crops.append(crop)
    if stress is not None:
        crops = stress_patches(crops, stress, seed)
    return [torch.from_numpy(np.ascontiguousarray(c.transpose(2, 0, 1))).float() * (float(rgb_range) / 255.0)
            for c in crops]


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    """PSNR (dB) between two tensors on a ``peak`` scale (inf if identical)."""
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
