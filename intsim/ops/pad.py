"""``pad``: reflect / replicate padding of a codes tensor in front of a conv (arithmetic.md §5.8).

A conv with ``padding_mode = reflect | replicate`` is exported as ``encode → pad → conv2d``
with zero conv padding: the pad op copies codes (no arithmetic, no events), so the conv's
accumulators, fast paths and counters are those of §5.1–5.6 on the padded tensor.
"""
from __future__ import annotations

import numpy as np

from intsim.ops import no_events

PAD_MODES = ("reflect", "replicate")


def pad_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of each of the ``n + before + after`` outputs along one axis (§5.8).

    ``j = o − before``; reflect (torch, edge not repeated): ``j < 0 → −j``,
    ``j ≥ n → 2(n − 1) − j``, which needs ``before, after ≤ n − 1``; replicate: ``clamp(j, 0, n − 1)``.
    """
    n, before, after = int(n), int(before), int(after)
    if mode not in PAD_MODES:
        raise ValueError(f"padding mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    if n < 1 or before < 0 or after < 0:
        raise ValueError(f"cannot pad an axis of {n} by ({before}, {after})")
    j = np.arange(-before, n + after, dtype=np.int64)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    if max(before, after) > n - 1:
        raise ValueError(f"reflect padding by {max(before, after)} needs at least {max(before, after) + 1} "
                         f"rows/columns, the tensor has {n} (§5.8)")
    return np.where(j < 0, -j, np.where(j >= n, 2 * (n - 1) - j, j))


def pad(x: np.ndarray, padding, mode: str, *, name: str = "pad") -> tuple[np.ndarray, dict]:
    """``out[y, x, c] = in[src_h(y), src_w(x), c]`` with :func:`pad_index` on both axes (§5.8);
    dtype kept (codes stay codes). ``padding = (ph, pw)``, the same on both sides."""
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"{name}: expected an H×W×C tensor, got shape {a.shape}")
    ph, pw = (int(p) for p in padding)
    try:
        rows = pad_index(a.shape[0], ph, ph, mode)
        cols = pad_index(a.shape[1], pw, pw, mode)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return np.ascontiguousarray(a[rows][:, cols]), no_events()
