"""What the lowering (:mod:`calib.lowering`) knows about an fx value that is not (yet) an
engine stream: the image before ``image_in``, a MeanShift waiting to fold, shapes and sizes,
split results and the steps of a spatial mean / std pattern; and the torch callables each
lowering rule recognises.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.tracing import UnsupportedOpError


def mean_shift_affine(m: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(diag, bias) of a MeanShift: a 1×1 conv C→C with a diagonal weight (own weight or one Conv2d child)."""
    conv = m if isinstance(m, nn.Conv2d) else None
    if conv is None:
        kids = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
        conv = kids[0] if len(kids) == 1 else None
    if conv is None:
        raise UnsupportedOpError(f"{where}: MeanShift module must be (or hold exactly one) nn.Conv2d to be folded")
    w = conv.weight.detach().double().cpu().numpy()
    if w.shape[2:] != (1, 1) or w.shape[0] != w.shape[1] or conv.groups != 1:
        raise UnsupportedOpError(f"{where}: MeanShift must be a 1×1 conv C→C, got weight {list(w.shape)}")
    w2 = w[:, :, 0, 0]
    if np.any(w2 - np.diag(np.diag(w2))):
        raise UnsupportedOpError(f"{where}: MeanShift weight is not diagonal; only per-channel affines fold into image ops")
    b = conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    return np.diag(w2).copy(), b


@dataclass
class Stream:
    tensor: str


@dataclass
class Image:
    """Virtual: affine of the input pixels, v = a·P + b (not yet an op)."""

    a: np.ndarray
    b: np.ndarray
    folded: tuple[str, ...]
    materialized: str | None = None


@dataclass
class AffineStream:
    """Virtual: affine of a stream tensor, v = a·x + b (a MeanShift awaiting image_out)."""

    tensor: str
    a: np.ndarray
    b: np.ndarray
    folded: tuple[str, ...]
    place: str


ADD = {operator.add, operator.iadd, torch.add}
SUB = {operator.sub, operator.isub, torch.sub}
MUL = {operator.mul, operator.imul, torch.mul}
DIV = {operator.truediv, operator.itruediv, torch.div}
POW = {operator.pow, torch.pow}
RELU_FN = {F.relu, torch.relu, torch.relu_}
LRELU_FN = {F.leaky_relu, F.leaky_relu_}


# LUT activations (arithmetic.md §6.17): callable → the table function's name (intsim.lut.LUT_FUNCTIONS)
LUT_FN = {torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.sigmoid_: "sigmoid", torch.tanh: "tanh",
           F.tanh: "tanh", torch.tanh_: "tanh", F.silu: "silu", F.gelu: "gelu", F.mish: "mish"}


LUT_METHODS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}
LUT_MODULES = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu", nn.GELU: "gelu", nn.Mish: "mish"}
CLAMP_FN = {torch.clamp, torch.clip, torch.clamp_, F.hardtanh, F.relu6, torch._C._nn.hardtanh_}
CLAMP_METHODS = ("clamp", "clamp_", "clip", "clip_")
PS_FN = {F.pixel_shuffle, torch.pixel_shuffle}
CAT_FN = {torch.cat, torch.concat, torch.concatenate}
SPLIT_FN = {torch.split, torch.chunk, torch.tensor_split}
MEAN_FN = {torch.mean}
STD_FN = {torch.std}
SQRT_FN = {torch.sqrt}
INTERP_FN = {F.interpolate}
AAP_FN = {F.adaptive_avg_pool2d}


def _assert_fn_names() -> set:
    out = set()
    try:
        from torch.fx._symbolic_trace import _assert_is_none
        out.add(_assert_is_none)
    except ImportError:  # pragma: no cover
        pass
    return out


IGNORED_FN = _assert_fn_names()


@dataclass
class Shape:
    tensor: str


@dataclass
class Size:
    tensor: str
    dims: frozenset


@dataclass
class Tuple:
    items: list


@dataclass
class Reduce:
    """``kind`` 'sum' (Σ over ``dims`` of x), 'centered' (x − mean x), 'sq' ((x − mean x)²),
    'sqsum' (Σ (x − mean x)²), 'var' (mean (x − mean x)²), 'mean' (mean x, not yet an op)."""

    kind: str
    tensor: str
    dims: frozenset
    fx: str
    materialized: str | None = None


SPATIAL = frozenset({2, 3})
