"""Cross-layer equalization: exact per-channel rescaling through positively homogeneous activations.

For a conv ``A`` whose output reaches only convs ``C₁…Cₖ``, directly or through one ``relu``,
``leaky_relu`` or ``prelu`` (``f(x·s) = s·f(x)`` for ``s > 0``), dividing ``A``'s output channel
``i`` (weights and bias) by ``sᵢ > 0`` and multiplying input channel ``i`` of every ``Cⱼ`` by ``sᵢ``
leaves the float model's output unchanged (up to float rounding). With per-output-channel weight
scales, ``A``'s own weight quantization does not see ``sᵢ``; what moves is the balance between the
activation ``X`` quantized at ``Cⱼ``'s input (one range for every channel) and ``Cⱼ``'s weights
along their input channels. ``sᵢ = max|Xᵢ|^α / max|Wᵢ|^(1−α)`` (SmoothQuant's migration strength
``α``; ``Wᵢ`` = input channel ``i`` of every consumer), normalised to geometric mean 1. ``α = 0``
leaves the activations and equalizes only the consumers' weights' input channels.

Applied to the float model (in place) before calibration: the artifact holds the equalized integer
weights, and each rescaled producer records its bias (``bias_learned``) so that rebuilding the
fake-quant model from the checkpoint stays exact. Convs whose module runs more than once (CARN-M's
shared blocks), grouped or transposed consumers, and anything else reading ``A``'s output are left
alone. docs/calibration.md "Equalization".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["EqualizedPair", "HOMOGENEOUS_OPS", "equalizable_pairs", "equalize"]

#: activations with f(x·s) = s·f(x) for every s > 0, per channel
HOMOGENEOUS_OPS = ("relu", "leaky_relu", "prelu")


@dataclass(frozen=True)
class EqualizedPair:
    """One rescaled producer: its conv op name, its consumers', and the range of the scales applied."""

    producer: str
    consumers: tuple[str, ...]
    scale_min: float
    scale_max: float


def equalizable_pairs(graph) -> list[tuple]:
    """``[(producer conv, tensor its consumers read, [consumer convs])]`` of a captured graph, in graph
    order: the pairs where the rescaling above is exact."""
    convs = graph.convs()
    calls: dict[str, int] = {}
    for c in convs:
        calls[c.module] = calls.get(c.module, 0) + 1

    def plain(c) -> bool:
        return c.op == "conv2d" and calls[c.module] == 1

    out = []
    for a in convs:
        if not plain(a):
            continue
        tensor, users = a.output, graph.consumers(a.output)
        if len(users) == 1 and users[0].op in HOMOGENEOUS_OPS:
            tensor, users = users[0].output, graph.consumers(users[0].output)
        if users and all(u.op == "conv2d" and plain(u) and u.attrs.get("groups", 1) == 1 and u.name != a.name
                         for u in users):
            out.append((a, tensor, users))
    return out


@torch.no_grad()
def _channel_absmax(graph, tensors: Sequence[str], images: Sequence[torch.Tensor], batch: int = 4) -> dict:
    """max |value| per channel of each named stream tensor over ``images`` (float C×H×W)."""
    peak: dict[str, torch.Tensor] = {}

    def tap(name):
        def f(v):
            m = v.detach().abs().amax(dim=(0, 2, 3)).double()
            peak[name] = m if name not in peak else torch.maximum(peak[name], m)
        return f

    taps = {t: tap(t) for t in tensors}
    same = len({tuple(im.shape) for im in images}) == 1
    step = batch if same else 1  # calibration images of different sizes run one at a time
    for i in range(0, len(images), step):
        graph.run(torch.stack(list(images[i:i + step])), tensor_taps=taps)
    return peak


@torch.no_grad()
def equalize(graph, images: Sequence[torch.Tensor], alpha: float = 0.5, *, max_images: int = 32) -> list[EqualizedPair]:
    """Rescale every :func:`equalizable_pairs` pair of ``graph`` in place (its modules are the model's).

    ``alpha`` ∈ [0, 1]: the migration strength; activation peaks come from the first ``max_images``
    calibration images (one float pass: a pair's ``X`` changes only by that pair's own scales).
    Returns what was rescaled."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"equalization strength must be in [0, 1], got {alpha}")
    pairs = equalizable_pairs(graph)
    if not pairs:
        return []
    peak = _channel_absmax(graph, [t for _, t, _ in pairs], list(images)[:max_images])
    done = []
    for a, tensor, users in pairs:
        ma = graph.gm.get_submodule(a.module)
        mods = [graph.gm.get_submodule(u.module) for u in users]
        w_in = torch.stack([m.weight.detach().double().abs().amax(dim=(0, 2, 3)) for m in mods]).amax(dim=0)
        x = peak[tensor]
        ok = (x > 0) & (w_in > 0)
        s = torch.ones_like(x)
        s[ok] = x[ok] ** float(alpha) / w_in[ok] ** (1.0 - float(alpha))
        s[ok] = s[ok] / torch.exp(torch.log(s[ok]).mean())
        ma.weight.mul_((1.0 / s).to(ma.weight.dtype).reshape(-1, 1, 1, 1))
        if ma.bias is not None:
            ma.bias.mul_((1.0 / s).to(ma.bias.dtype))
        for m in mods:
            m.weight.mul_(s.to(m.weight.dtype).reshape(1, -1, 1, 1))
        done.append(EqualizedPair(a.name, tuple(u.name for u in users), float(s.min()), float(s.max())))
    return done
