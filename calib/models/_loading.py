"""Shared checkpoint-loading helpers: safe reads, unwrapping, strict loads with clear errors.

Only ``torch.load(path, map_location="cpu", weights_only=True)`` is ever used (no
pickled code can run); Keras HDF5 files are read with h5py by the model modules.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the architecture; the message says why."""


_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "generator")


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_IMAGE_MAGICS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                 (b"BM", "a BMP image"))


def _sniff(p: Path) -> str | None:
    """What ``p`` is when it clearly is not a torch checkpoint (``None``: it may be one)."""
    with open(p, "rb") as f:
        head = f.read(16)
    if not head:
        return "is empty (0 bytes), not a torch checkpoint"
    if head.startswith(_HDF5_MAGIC):
        return "is an HDF5 (Keras) file, not a torch checkpoint (only rdn_idealo takes HDF5 weights)"
    for magic, what in _IMAGE_MAGICS:
        if head.startswith(magic):
            return f"is {what}, not a torch checkpoint"
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        return ("is not a torch checkpoint (neither a torch.save zip archive nor a legacy pickle; "
                f"starts with {head[:8]!r})")
    return None


def _load_error(p: Path, exc: Exception) -> str:
    """One line saying why ``torch.load(p, weights_only=True)`` failed; it never advises a full (unsafe) load."""
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        m = (re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
             or re.search(r"unsupported GLOBAL ([\w.]+)", text))
        what = f" (it references {m.group(1)})" if m else ""
        return (f"{p}: holds pickled Python objects{what}, not just tensors; it was refused unread "
                "(torch.load weights_only=True; no code from the file was run): save a plain state_dict, "
                "torch.save(model.state_dict(), path)")
    with open(p, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip or isinstance(exc, (EOFError, OSError)) or "EOF" in text:  # a torch zip that fails to read
        return (f"{p}: is truncated or corrupt, not a complete torch checkpoint "
                f"({type(exc).__name__}: {text.split('. ')[0][:160] or 'unexpected end of file'}); download or save it again")
    return f"{p}: cannot be read as a torch checkpoint ({type(exc).__name__}: {text[:160]})"


def read_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Read a ``.pt``/``.pth`` file safely (``weights_only=True``) into a plain dict.

    Refusals are :class:`CheckpointError` with one line naming the file and the problem: empty,
    not a checkpoint at all (HDF5, image, other), truncated/corrupt, or holding pickled objects
    (a saved ``nn.Module`` or a custom class: refused by ``weights_only=True`` before any of its
    code can run).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    what = _sniff(p)
    if what is not None:
        raise CheckpointError(f"{p}: {what}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(_load_error(p, exc)) from exc
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
    return {(k.removeprefix(prefix)): v for k, v in sd.items()}


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
