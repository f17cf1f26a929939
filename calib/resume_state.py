"""Resumable calibration state (``--state-dir``): reading a saved (metadata, tensors) pair back,
refusing one that is not what finetuning (:mod:`calib.finetune`) or block reconstruction
(:mod:`calib.reconstruct`) wrote. Both read their state through here.
"""
from __future__ import annotations

from pathlib import Path

import torch

#: a resume state's tensors file (quantizer parameters and Adam moments: a few MiB for the zoo models)
STATE_TENSORS_MAX_BYTES = 1 << 30


def read_state(sd: Path, json_name: str, keys: dict[str, type]) -> tuple[dict, dict] | None:
    """The (metadata, tensors) a resumable run saved in ``sd``, or ``None`` when it holds none yet.

    A state that is not what this code writes (not a JSON object, a key of ``keys`` missing or of another
    type, a tensors file outside the folder, not a dict of tensors) is refused (ValueError naming the file):
    resuming from it would fail deep inside the run or silently train from garbage."""
    from intsim.artifact import open_regular, read_json

    js = sd / json_name
    if not js.exists() and not js.is_symlink():
        return None
    meta = read_json(js, what="a calibration state file")
    fresh = "; use a fresh state directory"
    if not isinstance(meta, dict):
        raise ValueError(f"{js}: must hold a JSON object, got {type(meta).__name__}{fresh}")
    for key, typ in keys.items():
        if key not in meta:
            raise ValueError(f"{js}: missing key {key!r}{fresh}")
        if not isinstance(meta[key], typ) or (isinstance(meta[key], bool) and typ is not bool):
            raise ValueError(f"{js}: {key!r} must be a {typ.__name__}, got {type(meta[key]).__name__}{fresh}")
    name = meta["tensors"]
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{js}: 'tensors' is {name[:80]!r}, not the name of a file in the state folder{fresh}")
    with open_regular(sd / name, STATE_TENSORS_MAX_BYTES, ValueError, "a calibration state tensors file") as f:
        try:
            tensors = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, not a torch file, pickled objects (weights_only refuses them)
            raise ValueError(f"{sd / name}: not a readable state tensors file "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:120]}){fresh}") from None
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in tensors.items()):
        raise ValueError(f"{sd / name}: must hold a dict of named tensors{fresh}")
    return meta, tensors
