"""Shared checkpoint-loading helpers: safe reads, unwrapping, strict loads with clear errors.

Only ``torch.load(..., map_location="cpu", weights_only=True)`` is ever used (no pickled code
can run), on the bytes of a regular file of bounded size (:mod:`._checkpoint_io`, which also
opens Keras HDF5 files for the model modules).
"""
from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._checkpoint_io import MAX_CHECKPOINT_BYTES, CheckpointError, read_checkpoint_bytes

__all__ = ["CheckpointError", "load_state_dict_strict", "read_torch_checkpoint", "strip_prefix", "unwrap_state_dict"]


_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "generator")


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_IMAGE_MAGICS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                 (b"BM", "a BMP image"))


def _sniff(head: bytes) -> str | None:
    """What a file starting with ``head`` is when it clearly is not a torch checkpoint (``None``: it may be one)."""
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


def _load_error(p: Path, exc: Exception, head: bytes, protocol: str | None) -> str:
    """One line saying why ``torch.load(p, weights_only=True)`` failed; it never advises a full (unsafe) load.

    ``protocol``: the pickle protocol torch warned about (4 and 5 frame their data, which the
    weights-only unpickler cannot read, so such a file is refused even if it holds only tensors).
    """
    text = " ".join(str(exc).split())
    if protocol is not None and "Unsupported operand" in text:
        return (f"{p}: was saved with pickle protocol {protocol}, which torch.load(weights_only=True) cannot "
                "read; it was refused unread (no code from the file was run): save it again with the default "
                "protocol, torch.save(model.state_dict(), path)")
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        m = (re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
             or re.search(r"unsupported GLOBAL ([\w.]+)", text))
        what = f" (it references {m.group(1)})" if m else ""
        return (f"{p}: holds pickled Python objects{what}, not just tensors; it was refused unread "
                "(torch.load weights_only=True; no code from the file was run): save a plain state_dict, "
                "torch.save(model.state_dict(), path)")
    # a torch zip that fails to read
    if head.startswith(b"PK\x03\x04") or isinstance(exc, (EOFError, OSError)) or "EOF" in text:
        return (f"{p}: is truncated or corrupt, not a complete torch checkpoint "
                f"({type(exc).__name__}: {text.split('. ')[0][:160] or 'unexpected end of file'}); download or save it again")
    return f"{p}: cannot be read as a torch checkpoint ({type(exc).__name__}: {text[:160]})"


def _zip_declared_bytes(data: bytes) -> int:
    """What a torch zip's records declare once inflated (0 if it is no readable zip: torch.load says why).

    torch allocates each record's declared size and inflates into it, so a small deflated file
    could otherwise claim terabytes; torch.save itself writes the records uncompressed.
    """
    if not data.startswith(b"PK\x03\x04"):
        return 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return 0


def read_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Read a ``.pt``/``.pth`` file safely (``weights_only=True``) into a plain dict.

    Refusals are :class:`CheckpointError` with one line naming the file and the problem: not a
    regular file or over the size cap (refused unread), empty, not a checkpoint at all (HDF5,
    image, other), zip records inflating past the cap, truncated/corrupt, pickle protocol 4/5, or
    holding pickled objects (a saved ``nn.Module`` or a custom class: refused by
    ``weights_only=True`` before any of its code can run).
    """
    p = Path(path)
    data = read_checkpoint_bytes(p)  # a regular file of at most the cap, else refused unread
    what = _sniff(data[:16])
    if what is not None:
        raise CheckpointError(f"{p}: {what}")
    declared = _zip_declared_bytes(data)
    if declared > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{p}: its zip records declare {declared} bytes once inflated, over the 1 GiB a "
                              "checkpoint may hold; it was refused unread")
    # torch warns (e.g. about pickle protocols 4/5) before failing: that would be a second stderr line,
    # and what it says goes into the one-line refusal instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            protocols = [m.group(1) for w in caught if (m := re.search(r"pickle protocol (\d+)", str(w.message)))]
            raise CheckpointError(_load_error(p, exc, data[:4], protocols[0] if protocols else None)) from exc
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
