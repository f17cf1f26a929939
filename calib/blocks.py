"""The natural blocks of a super-resolution network: the units whose outputs finetuning
(:mod:`calib.finetune`) compares and block reconstruction (:mod:`calib.reconstruct`) rebuilds.

A module of its own so that the calibration methods, finetuning and reconstruction all read
the same rule without importing one another.
"""
from __future__ import annotations

import re

import torch.nn as nn

_BLOCK_RE = re.compile(r"(Block|Module|IMDB|RDB|RCAB|Group)$")


def find_blocks(model: nn.Module) -> list[str]:
    """Module paths of the model's natural blocks, whose outputs the finetuning loss compares.

    Rule: the outermost submodules whose class name ends with ``Block``,
    ``Module``, ``IMDB``, ``RDB``, ``RCAB`` or ``Group`` (EDSR's ``ResBlock``,
    IMDN's ``IMDModule``, RDN's ``RDB``…), excluding torch's own classes
    (``nn.ModuleList``…) and modules without a conv. Fallback when none match:
    the children of ``body`` if the model has one, else every top-level child
    that contains a conv.
    """
    def has_conv(m):
        return any(isinstance(x, nn.Conv2d) for x in m.modules())

    found: list[str] = []
    for name, m in model.named_modules():
        if not name or type(m).__module__.startswith("torch."):
            continue
        if any(name.startswith(f + ".") for f in found):
            continue
        if _BLOCK_RE.search(type(m).__name__) and has_conv(m):
            found.append(name)
    if found:
        return found
    body = getattr(model, "body", None)
    if isinstance(body, nn.Module):
        return [f"body.{n}" for n, c in body.named_children() if has_conv(c)]
    return [n for n, c in model.named_children() if has_conv(c)]
