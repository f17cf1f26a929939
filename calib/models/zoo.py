"""Registry of the supported SR architectures, their official checkpoints and their I/O conventions.

Every entry knows how to build the float model for a scale, load the official checkpoint format
(strictly: a wrong architecture or scale raises :class:`CheckpointError` listing missing and
unexpected keys), where that checkpoint lives under the data root (``weights/...``), and how to
turn a uint8 RGB LR image into the network input and the network output back into uint8:

========== ======= ============ ==============================================================
model      colour  range        input
========== ======= ============ ==============================================================
edsr_baseline RGB  [0, 255]     LR (mean shift inside the model)
imdn       RGB     [0, 1]       LR
carn_m     RGB     [0, 1]       LR (mean shift inside the model; one model, ``forward(x, s)``)
vdsr       Y       [0, 1]       Y of the MATLAB-bicubic-upsampled LR (float path, one final
                                rounding to uint8); out = in + res
fsrcnn     Y       [0, 1]       Y of the LR
rdn        RGB     [0, 255]     LR (EDSR-PyTorch RDN, config B; user-supplied checkpoints)
rdn_idealo RGB     [0, 1]       LR (idealo Keras "psnr-small" ×2, HDF5)
msrresnet  RGB     [0, 1]       LR (BasicSR MSRResNet ×4)
========== ======= ============ ==============================================================

Y is MATLAB ``rgb2ycbcr``'s luma on 0–255, unrounded, for the network input. Y models'
postprocess returns the uint8 Y plane (H×W); :mod:`calib.metrics` compares such a plane with the
HR's uint8 Y plane (see its single-channel policy).

Checksum policy (``intsim calibrate --weights FILE``, :func:`verify_if_official`): a file whose
name is the official checkpoint's file name for a model with a published sha256 (``IMDN_x4.pth``,
``carn_m.pth``, ``edsr_baseline_x2-1bc95232.pt``, ...) claims to be that checkpoint, so it is hashed
and refused on a mismatch (:class:`ChecksumError`, both digests in the message) before it is
unpickled; a corrupt or truncated download never gets calibrated. A file under any other name
(a user's finetuned checkpoint) is not hashed; it is still loaded strictly (``weights_only=True``,
every key and shape checked). ``intsim models --verify`` hashes the checkpoints under the data root.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib.data_root import data_root as _default_data_root

__all__ = [
    "MODELS",
    "ChecksumError",
    "ModelEntry",
    "get_model",
    "list_models",
    "load_model",
    "resolve_checkpoint",
    "sha256_file",
    "verify_if_official",
    "verify_sha256",
]


class ChecksumError(ValueError):
    """A checkpoint whose sha256 is not the published one."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, what: str = "") -> str:
    """Hash ``path`` and compare with ``expected`` (hex, case-insensitive); return the digest.

    Raises :class:`ChecksumError` naming the file, both digests and what to do (``what``: which
    official checkpoint the file was expected to be, for the message).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    got = sha256_file(p)
    if got.lower() != expected.strip().lower():
        raise ChecksumError(
            f"{p}: sha256 {got} does not match the published {expected.strip().lower()}"
            f"{f' of the official {what}' if what else ''}; the file is "
            "corrupt, truncated or a different checkpoint (download it again or pass the right file"
            f"{'; rename a finetuned checkpoint so it does not pose as the official one' if what else ''})")
    return got


def verify_if_official(name: str, path: str | os.PathLike) -> str | None:
    """The checksum policy (module docstring): if ``path``'s file name is an official checkpoint
    name of model ``name`` with a published sha256, verify it (:class:`ChecksumError` on a
    mismatch) and return the digest; otherwise return ``None`` without hashing."""
    entry = get_model(name)
    base = Path(path).name
    for s, rel in entry.checkpoints.items():
        if Path(rel).name == base and s in entry.sha256:
            return verify_sha256(path, entry.sha256[s], f"{entry.name} checkpoint {base}")
    return None


# --------------------------------------------------------------------------- pre/post-processing
def _rgb_in(lr: np.ndarray, rgb_range: float):
    import torch

    lr = _as_rgb_uint8(lr)
    x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().unsqueeze(0)
    return x if rgb_range == 255 else x * (rgb_range / 255.0)


def _rgb_out(out, rgb_range: float) -> np.ndarray:
    from calib.metrics import to_uint8

    a = out.detach().float().cpu()[0].numpy().transpose(1, 2, 0).astype(np.float64)
    if rgb_range != 255:
        a = a * (255.0 / rgb_range)
    return to_uint8(a)


def _y_out(out) -> np.ndarray:
    from calib.metrics import to_uint8

    a = out.detach().float().cpu()[0, 0].numpy().astype(np.float64) * 255.0
    return to_uint8(a)


def _as_rgb_uint8(lr: np.ndarray) -> np.ndarray:
    lr = np.asarray(lr)
    if lr.dtype != np.uint8:
        raise TypeError(f"LR image must be uint8, got {lr.dtype}")
    if lr.ndim == 2:
        lr = np.repeat(lr[:, :, None], 3, axis=2)
    if lr.ndim != 3 or lr.shape[2] != 3:
        raise ValueError(f"LR image must be H×W×3 RGB (or H×W gray), got shape {lr.shape}")
    return lr


def _y_in_lr(lr: np.ndarray, scale: int):
    import torch

    from calib.metrics import rgb2y

    y = rgb2y(_as_rgb_uint8(lr)) / 255.0
    return torch.from_numpy(y.astype(np.float32))[None, None]


def _y_in_upsampled(lr: np.ndarray, scale: int):
    import torch

    from calib.bicubic import bicubic_upsample_rounded
    from calib.metrics import rgb2y

    # MATLAB bicubic ×s, float between the passes, one rounding to uint8 at the end; Y unrounded.
    up = bicubic_upsample_rounded(_as_rgb_uint8(lr), scale)
    y = rgb2y(up) / 255.0
    return torch.from_numpy(y.astype(np.float32))[None, None]


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    scales: tuple[int, ...]
    module: str  # calib.models.<module>
    build_fn: str  # function name in the module: build(scale) -> nn.Module
    load_fn: str  # function name in the module: load(path, scale) -> nn.Module (eval mode)
    checkpoints: dict[int, str] = field(default_factory=dict)  # scale -> path relative to the data root
    sha256: dict[int, str] = field(default_factory=dict)  # scale -> published sha256 (when known)
    color: str = "rgb"  # 'rgb' or 'y'
    rgb_range: float = 1.0  # network value range for 0–255 pixels: 1.0 or 255.0
    upsampled_input: bool = False  # VDSR: the input is the bicubic-upsampled LR
    checkpoint_format: str = "torch state_dict"
    license: str = ""

    # -- construction / loading
    def _fn(self, name: str) -> Callable:
        mod = importlib.import_module(f"calib.models.{self.module}")
        return getattr(mod, name)

    def _check_scale(self, scale: int) -> int:
        scale = int(scale)
        if scale not in self.scales:
            raise ValueError(f"model {self.name!r} supports scales {list(self.scales)}, not ×{scale}")
        return scale

    def build(self, scale: int):
        """The float architecture for ``scale`` with random (PyTorch default) weights."""
        return self._fn(self.build_fn)(self._check_scale(scale))

    def load(self, path: str | os.PathLike, scale: int, verify: bool = False):
        """Load a checkpoint in this model's official format (eval mode).

        ``verify=True`` also checks the published sha256 when one is known for ``scale``.
        """
        scale = self._check_scale(scale)
        if verify and scale in self.sha256:
            verify_sha256(path, self.sha256[scale])
        return self._fn(self.load_fn)(path, scale)

    def default_checkpoint(self, scale: int) -> str | None:
        """Path of the official checkpoint relative to the data root (``None`` if none is known)."""
        return self.checkpoints.get(self._check_scale(scale))

    # -- I/O conventions
    def preprocess(self, lr: np.ndarray, scale: int):
        """uint8 RGB LR (H×W×3; H×W gray is replicated) → network input tensor 1×C×H'×W'."""
        scale = self._check_scale(scale)
        if self.color == "y":
            return _y_in_upsampled(lr, scale) if self.upsampled_input else _y_in_lr(lr, scale)
        return _rgb_in(lr, self.rgb_range)

    def y_plane_uint8(self, lr: np.ndarray, scale: int) -> np.ndarray:
        """Y models: the uint8 H'×W' Y plane of :meth:`preprocess` (the integer artifact's image input)."""
        y = self.preprocess(lr, scale)[0, 0].double().numpy() * 255.0
        return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)

    def postprocess(self, out) -> np.ndarray:
        """Network output tensor → uint8 SR image: H×W×3 RGB, or the H×W Y plane for Y models."""
        if self.color == "y":
            return _y_out(out)
        return _rgb_out(out, self.rgb_range)

    @property
    def in_channels(self) -> int:
        return 1 if self.color == "y" else 3


def _edsr_build(scale: int):
    # lazy: written separately, torch needed only here
    from calib.models.edsr import EDSR

    return EDSR(scale, n_resblocks=16, n_feats=64, res_scale=1.0, rgb_range=255, n_colors=3)


def _edsr_load(path: str | os.PathLike, scale: int):
    """Official EDSR-PyTorch ``edsr_baseline_x{s}-*.pt`` (plain state_dict)."""
    from calib.models._loading import (
        load_state_dict_strict,
        read_torch_checkpoint,
        strip_prefix,
        unwrap_state_dict,
    )

    sd = unwrap_state_dict(read_torch_checkpoint(path), path)
    sd = strip_prefix(strip_prefix(sd, "module."), "model.")
    return load_state_dict_strict(_edsr_build(scale), sd, f"EDSR-baseline ×{scale}", path).eval()


_IMDN_SHA = {2: "740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1",
             3: "11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028",
             4: "e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714"}
_CARN_SHA = "d48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff"
_VDSR_SHA = "b13c37e24c639c90fbd7adb4be9609f66ef72f6423d75eda5d683abfa200af9c"
_FSRCNN_SHA = {2: "1af70e2cbf0d11b942008d6c425e469e9fe275a68f3ac8b6c21e8672d6e67b69",
               3: "f65b55819c1258048bc8c1ca96f9e24bd4339f779951d7f928144c08e3868d75",
               4: "c15150d6787d487f38a68e66be5ec8a964182403af494e6a935fa03eeb56a630"}
_RDN_IDEALO_SHA = "4ea33850fd8e9f2dd39ef53105a69b98b02705570c76993fafdfdcac5c88b48b"
_EDSR_SHA = {2: "1bc9523228fdc3b0a5ddb0d7062001e22b31bbb398ae09cfdefb97e8ee06e171",
             3: "abf2a44e7a137228efa42a4264a23e12603168d43ac7596b1adef40c649b9240",
             4: "6b446fab734f4de74448d2fd1f3f990f5bae726e49dc7eff2ae9cefe444a1723"}

MODELS: dict[str, ModelEntry] = {
    "edsr_baseline": ModelEntry(
        name="edsr_baseline",
        description="EDSR-baseline (Lim et al. 2017; 16 res-blocks, 64 features), EDSR-PyTorch checkpoints",
        scales=(2, 3, 4), module="zoo", build_fn="_edsr_build", load_fn="_edsr_load",
        checkpoints={2: "weights/edsr/edsr_baseline_x2-1bc95232.pt",
                     3: "weights/edsr/edsr_baseline_x3-abf2a44e.pt",
                     4: "weights/edsr/edsr_baseline_x4-6b446fab.pt"},
        sha256=_EDSR_SHA, color="rgb", rgb_range=255.0, license="MIT"),
    "imdn": ModelEntry(
        name="imdn", description="IMDN (Hui et al. 2019), in_nc=3, nf=64, num_modules=6",
        scales=(2, 3, 4), module="imdn", build_fn="build", load_fn="load",
        checkpoints={s: f"weights/imdn/IMDN_x{s}.pth" for s in (2, 3, 4)},
        sha256=_IMDN_SHA, color="rgb", rgb_range=1.0),
    "carn_m": ModelEntry(
        name="carn_m", description="CARN-M (Ahn et al. 2018), multi_scale=True, group=4 (one model)",
        scales=(2, 3, 4), module="carn", build_fn="build", load_fn="load",
        checkpoints={s: "weights/carn/carn_m.pth" for s in (2, 3, 4)},
        sha256={s: _CARN_SHA for s in (2, 3, 4)}, color="rgb", rgb_range=1.0, license="MIT"),
    "vdsr": ModelEntry(
        name="vdsr", description="VDSR (Kim et al. 2016), 20 convs, Y on the bicubic-upsampled LR (one model)",
        scales=(2, 3, 4), module="vdsr", build_fn="build", load_fn="load",
        checkpoints={s: "weights/vdsr/vdsr_state_dict.pth" for s in (2, 3, 4)},
        sha256={s: _VDSR_SHA for s in (2, 3, 4)}, color="y", rgb_range=1.0, upsampled_input=True,
        license="MIT"),
    "fsrcnn": ModelEntry(
        name="fsrcnn", description="FSRCNN(56,12,4) (Dong et al. 2016), Y channel",
        scales=(2, 3, 4), module="fsrcnn", build_fn="build", load_fn="load",
        checkpoints={s: f"weights/fsrcnn/fsrcnn_x{s}.pth" for s in (2, 3, 4)},
        sha256=_FSRCNN_SHA, color="y", rgb_range=1.0),
    "rdn": ModelEntry(
        name="rdn", description="RDN (Zhang et al. 2018), EDSR-PyTorch config B (D16 C8 G64); user-supplied",
        scales=(2, 3, 4), module="rdn", build_fn="build", load_fn="load",
        color="rgb", rgb_range=255.0),
    "rdn_idealo": ModelEntry(
        name="rdn_idealo", description="RDN idealo ISR 'psnr-small' (C=3, D=10, G=G0=64), Keras HDF5",
        scales=(2,), module="rdn", build_fn="build_idealo", load_fn="load_idealo",
        checkpoints={2: "weights/rdn-idealo/psnr-small-x2.h5"},
        sha256={2: _RDN_IDEALO_SHA}, color="rgb", rgb_range=1.0, checkpoint_format="Keras HDF5",
        license="Apache-2.0"),
    "msrresnet": ModelEntry(
        name="msrresnet", description="MSRResNet (BasicSR, 16 blocks, 64 features); user-supplied",
        scales=(4,), module="msrresnet", build_fn="build", load_fn="load",
        checkpoints={4: "weights/msrresnet/001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb.pth"},
        color="rgb", rgb_range=1.0),
}


def get_model(name: str) -> ModelEntry:
    key = name.strip().lower().replace("-", "_")
    if key not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[key]


def resolve_checkpoint(name: str, scale: int, path: str | os.PathLike | None = None,
                       data_root: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else the entry's default checkpoint under the data root (must exist)."""
    entry = get_model(name)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: checkpoint not found")
        return p
    rel = entry.default_checkpoint(scale)
    if rel is None:
        raise FileNotFoundError(f"model {entry.name!r} has no default checkpoint for ×{scale}: pass one "
                                "explicitly (e.g. --weights FILE)")
    root = Path(data_root) if data_root is not None else _default_data_root()
    p = root / rel
    if not p.is_file():
        raise FileNotFoundError(f"{p}: the {entry.name} ×{scale} checkpoint is not under the data root {root} "
                                "(set $INTSIM_DATA_ROOT or pass the checkpoint explicitly)")
    return p


def load_model(name: str, scale: int, path: str | os.PathLike | None = None,
               data_root: str | os.PathLike | None = None, verify: bool = False):
    """Load ``name`` ×``scale`` from ``path`` or its default checkpoint; returns (entry, model)."""
    entry = get_model(name)
    p = resolve_checkpoint(name, scale, path, data_root)
    return entry, entry.load(p, scale, verify=verify)


def list_models(data_root: str | os.PathLike | None = None, verify: bool = False) -> list[dict]:
    """One row per (model, scale): which default checkpoints are present under the data root.

    Keys: model, scale, description, color, checkpoint (relative path or None), path (absolute or
    None), found (bool), sha256 (published, or None), verified (True/False when ``verify`` and a
    published sha256 is known, else None).
    """
    root = Path(data_root) if data_root is not None else _default_data_root()
    rows: list[dict] = []
    for entry in MODELS.values():
        for s in entry.scales:
            rel = entry.checkpoints.get(s)
            full = (root / rel) if rel else None
            found = bool(full is not None and full.is_file())
            expected = entry.sha256.get(s)
            verified = None
            if verify and found and expected:
                verified = sha256_file(full) == expected
            rows.append({"model": entry.name, "scale": s, "description": entry.description,
                         "color": entry.color, "format": entry.checkpoint_format,
                         "checkpoint": rel, "path": str(full) if full is not None else None,
                         "found": found, "sha256": expected, "verified": verified})
    return rows
