"""RDN (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018), two variants.

* :class:`RDN` — the EDSR-PyTorch ``model/rdn.py`` layout (``SFENet1/2``, ``RDBs.i.convs.j.conv.0``,
  ``RDBs.i.LFF``, ``GFF.0/1``, ``UPNet``), config B (D=16, C=8, G=64, G0=64) by default, for
  user-supplied checkpoints. Input RGB on [0, 255] (rgb_range 255, no mean shift), output on [0, 255].
* :class:`RDNIdealo` — idealo image-super-resolution's Keras RDN ("psnr-small": C=3, D=10, G=G0=64,
  upscaling 'ups'), loaded from its HDF5 weights with h5py (kernels HWIO → OIHW). Layout:
  F_m1, F_0, D RDBs (C conv+ReLU with dense concat, LFF 1×1, local residual), GFF_1 1×1 over the
  concat of all RDB outputs, GFF_2 3×3, global residual with F_m1, UPN1 5×5 + ReLU, UPN2 3×3 + ReLU,
  UPN3 3×3 to 3·s², nearest UpSampling2D(s), SR 3×3 to RGB. Input RGB / 255, output × 255.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._checkpoint_io import open_keras_h5, read_dataset
from ._loading import (CheckpointError, load_state_dict_strict, read_torch_checkpoint, strip_prefix,
                       unwrap_state_dict)

RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}


# --------------------------------------------------------------------------- EDSR-PyTorch RDN
class RDB_Conv(nn.Module):  # noqa: N801 - upstream name
    def __init__(self, in_channels: int, grow_rate: int, k_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, grow_rate, k_size, padding=(k_size - 1) // 2, stride=1),
                                  nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    def __init__(self, grow_rate0: int, grow_rate: int, n_conv_layers: int, k_size: int = 3):
        super().__init__()
        self.convs = nn.Sequential(*[RDB_Conv(grow_rate0 + c * grow_rate, grow_rate, k_size)
                                     for c in range(n_conv_layers)])
        self.LFF = nn.Conv2d(grow_rate0 + n_conv_layers * grow_rate, grow_rate0, 1, padding=0, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    def __init__(self, scale: int, config: str = "B", G0: int = 64, k_size: int = 3, n_colors: int = 3):
        super().__init__()
        r = int(scale)
        self.scale = r
        self.D, C, G = RDN_CONFIGS[config]
        pad = (k_size - 1) // 2
        self.SFENet1 = nn.Conv2d(n_colors, G0, k_size, padding=pad, stride=1)
        self.SFENet2 = nn.Conv2d(G0, G0, k_size, padding=pad, stride=1)
        self.RDBs = nn.ModuleList([RDB(G0, G, C, k_size) for _ in range(self.D)])
        self.GFF = nn.Sequential(nn.Conv2d(self.D * G0, G0, 1, padding=0, stride=1),
                                 nn.Conv2d(G0, G0, k_size, padding=pad, stride=1))
        if r in (2, 3):
            self.UPNet = nn.Sequential(nn.Conv2d(G0, G * r * r, k_size, padding=pad, stride=1),
                                       nn.PixelShuffle(r),
                                       nn.Conv2d(G, n_colors, k_size, padding=pad, stride=1))
        elif r == 4:
            self.UPNet = nn.Sequential(nn.Conv2d(G0, G * 4, k_size, padding=pad, stride=1),
                                       nn.PixelShuffle(2),
                                       nn.Conv2d(G, G * 4, k_size, padding=pad, stride=1),
                                       nn.PixelShuffle(2),
                                       nn.Conv2d(G, n_colors, k_size, padding=pad, stride=1))
        else:
            raise ValueError(f"RDN supports scales 2, 3, 4, not {scale}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_1 = self.SFENet1(x)
        x = self.SFENet2(f_1)
        outs = []
        for rdb in self.RDBs:
            x = rdb(x)
            outs.append(x)
        x = self.GFF(torch.cat(outs, 1)) + f_1
        return self.UPNet(x)


def build(scale: int) -> RDN:
    return RDN(scale, config="B")


def load(path: str | os.PathLike, scale: int) -> RDN:
    """An EDSR-PyTorch RDN (config B) checkpoint (state_dict, optional ``module.``/``model.`` prefix)."""
    sd = unwrap_state_dict(read_torch_checkpoint(path), path)
    sd = strip_prefix(strip_prefix(sd, "module."), "model.")
    return load_state_dict_strict(build(scale), sd, f"RDN (EDSR-PyTorch config B) ×{scale}", path).eval()


# --------------------------------------------------------------------------- idealo Keras RDN
class _IdealoRDB(nn.Module):
    def __init__(self, G0: int, G: int, C: int, k: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(G0 + c * G, G, k, padding=k // 2) for c in range(C)])
        self.LFF = nn.Conv2d(G0 + C * G, G0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = torch.cat([h, F.relu(conv(h))], dim=1)
        return self.LFF(h) + x


class RDNIdealo(nn.Module):
    """idealo ISR ``RDN`` with ``upscaling='ups'`` (Keras layer names kept in the module names)."""

    def __init__(self, scale: int, C: int = 3, D: int = 10, G: int = 64, G0: int = 64, c_dim: int = 3,
                 k: int = 3):
        super().__init__()
        self.scale = int(scale)
        self.C, self.D, self.G, self.G0 = C, D, G, G0
        self.F_m1 = nn.Conv2d(c_dim, G0, k, padding=k // 2)
        self.F_0 = nn.Conv2d(G0, G, k, padding=k // 2)
        self.RDBs = nn.ModuleList([_IdealoRDB(G0, G, C, k) for _ in range(D)])
        self.GFF_1 = nn.Conv2d(G0 * D, G0, 1)
        self.GFF_2 = nn.Conv2d(G0, G0, k, padding=k // 2)
        self.UPN1 = nn.Conv2d(G0, 64, 5, padding=2)
        self.UPN2 = nn.Conv2d(64, 32, 3, padding=1)
        self.UPN3 = nn.Conv2d(32, c_dim * self.scale ** 2, 3, padding=1)
        self.SR = nn.Conv2d(c_dim * self.scale ** 2, c_dim, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_m1 = self.F_m1(x)
        h = self.F_0(f_m1)
        outs = []
        for rdb in self.RDBs:
            h = rdb(h)
            outs.append(h)
        h = self.GFF_2(self.GFF_1(torch.cat(outs, dim=1))) + f_m1
        h = F.relu(self.UPN1(h))
        h = F.relu(self.UPN2(h))
        h = self.UPN3(h)
        h = F.interpolate(h, scale_factor=self.scale, mode="nearest")
        return self.SR(h)

    def keras_names(self) -> dict[str, nn.Conv2d]:
        """Keras layer name → conv module."""
        names: dict[str, nn.Conv2d] = {"F_m1": self.F_m1, "F_0": self.F_0, "GFF_1": self.GFF_1,
                                       "GFF_2": self.GFF_2, "UPN1": self.UPN1, "UPN2": self.UPN2,
                                       "UPN3": self.UPN3, "SR": self.SR}
        for d, rdb in enumerate(self.RDBs, start=1):
            for c, conv in enumerate(rdb.convs, start=1):
                names[f"F_{d}_{c}"] = conv
            names[f"LFF_{d}"] = rdb.LFF
        return names


def build_idealo(scale: int) -> RDNIdealo:
    return RDNIdealo(scale, C=3, D=10, G=64, G0=64)


def _check_config_scale(p: Path, raw, scale: int) -> None:
    """Refuse a Keras ``model_config`` whose UpSampling2D factor is not ``scale``.

    The attribute is the file's own JSON, so every level is type-checked: a malformed config is
    refused in one line naming the file, not by a KeyError deep in the lookup.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise CheckpointError(f"{p}: model_config attribute is not JSON text (it is a {type(raw).__name__})")
    try:
        cfg = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{p}: model_config attribute is not JSON ({exc})") from None

    def malformed(why: str) -> CheckpointError:
        return CheckpointError(f"{p}: model_config attribute is not a Keras model config ({why})")

    if not isinstance(cfg, dict):
        raise malformed(f"a JSON {type(cfg).__name__}, not an object")
    inner = cfg.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner  # Keras 2.2 Sequential: a bare list
    if not isinstance(layers, list):
        raise malformed("no config.layers list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
            raise malformed(f"layer {i} has no class_name")
        if layer["class_name"] != "UpSampling2D":
            continue
        size = layer["config"].get("size") if isinstance(layer.get("config"), dict) else None
        size = [size, size] if type(size) is int else size
        if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)):
            raise malformed(f"UpSampling2D layer {i} has no config.size [h, w]")
        if size[0] != int(scale):
            raise CheckpointError(f"{p}: is an idealo RDN for ×{size[0]}, not ×{scale}")


def _idealo_mismatch(p: Path, scale: int, missing: list, unexpected: list, shapes: list) -> CheckpointError:
    parts = [f"{p}: does not fit the idealo RDN psnr-small (C=3, D=10, G=G0=64) ×{scale} architecture"]
    if missing:
        parts.append(f"missing layers ({len(missing)}): {', '.join(sorted(missing)[:12])}")
    if unexpected:
        parts.append(f"unexpected layers ({len(unexpected)}): {', '.join(sorted(unexpected)[:12])}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shapes[:8]))
    return CheckpointError("; ".join(parts))


def load_idealo(path: str | os.PathLike, scale: int) -> RDNIdealo:
    """idealo ``psnr-small`` Keras HDF5 weights → :class:`RDNIdealo` (strict: every conv, every shape).

    Links, external storage and virtual datasets are refused before anything is read
    (:func:`open_keras_h5`), and a dataset is read only once its shape matched the architecture.
    """
    p = Path(path)
    model = build_idealo(scale)
    targets = model.keras_names()
    with open_keras_h5(p) as (f, layers):
        try:
            raw = f.attrs.get("model_config")
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{p}: model_config attribute cannot be read ({exc})") from None
        if raw is not None:
            _check_config_scale(p, raw, scale)
        missing = [n for n in targets if n not in layers]
        unexpected = [n for n in layers if n not in targets]
        shapes, matched = [], []
        for name, conv in targets.items():
            if name not in layers:
                continue
            w, b = layers[name].get("kernel"), layers[name].get("bias")
            if w is None or b is None:
                missing.append(f"{name}/kernel or bias")
                continue
            hwio = tuple(conv.weight.shape[i] for i in (2, 3, 1, 0))
            if w.shape != hwio or b.shape != tuple(conv.bias.shape):
                shapes.append(f"{name}: kernel {w.shape} (HWIO) vs model {tuple(conv.weight.shape)} (OIHW)")
                continue
            matched.append((conv, w, b))
        if missing or unexpected or shapes:
            raise _idealo_mismatch(p, scale, missing, unexpected, shapes)
        with torch.no_grad():
            for conv, w, b in matched:  # HWIO -> OIHW; native float32 whatever the stored float type
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(
                    read_dataset(p, w).transpose(3, 2, 0, 1), dtype=np.float32)))
                conv.bias.copy_(torch.from_numpy(np.ascontiguousarray(read_dataset(p, b), dtype=np.float32)))
    return model.eval()
