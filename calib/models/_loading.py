"""Shared checkpoint-loading helpers: safe reads, unwrapping, strict loads with clear errors.

Only ``torch.load(path, map_location="cpu", weights_only=True)`` is ever used (no
pickled code can run); Keras HDF5 files are read with h5py by the model modules.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the architecture; the message says why."""


_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "generator")


def read_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Read a ``.pt``/``.pth`` file safely (``weights_only=True``) into a plain dict."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and a hint
        raise CheckpointError(
            f"{p}: cannot be read as a torch checkpoint with weights_only=True "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Only plain state_dicts (tensors in dicts) are accepted; pickled model objects are refused."
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: expected a state_dict (a mapping of tensors), got {type(obj).__name__}")
    return dict(obj)


def unwrap_state_dict(obj: Mapping, path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Find the tensor mapping in common wrappers (``{'params': ...}`` of BasicSR, ``{'state_dict': ...}``)."""
    cur: Mapping = obj
    for _ in range(3):
        if cur and all(isinstance(v, torch.Tensor) for v in cur.values()):
            break
        for k in _WRAPPER_KEYS:
            if k in cur and isinstance(cur[k], Mapping):
                cur = cur[k]
                break
        else:
            break
    tensors = {k: v for k, v in cur.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (top-level keys: {sorted(map(str, obj))[:10]})")
    return tensors


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (DataParallel checkpoints)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def _fmt(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    s = ", ".join(keys[:limit])
    if len(keys) > limit:
        s += f", … ({len(keys) - limit} more)"
    return s


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], arch: str,
                           path: str | os.PathLike = "<checkpoint>") -> nn.Module:
    """Strictly load ``sd`` into ``model``; on mismatch raise :class:`CheckpointError` listing
    missing keys, unexpected keys and shape mismatches (so a wrong architecture or scale is obvious)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{path}: does not fit the {arch} architecture"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shapes[:8])
                         + (" …" if len(shapes) > 8 else ""))
        parts.append("is it the right model and scale?")
        raise CheckpointError("; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return model
