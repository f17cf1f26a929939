"""What every op's cost reads (the model of :mod:`intsim.cost.model`): the numeric scheme, the
op classes (fusable / view / rescale), operand bit widths, and :class:`CostContext`, the
artifact, accelerator and energy model of one estimate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from intsim.artifact import Artifact, Codebook, OpSpec
from intsim.cost.accel import AcceleratorConfig
from intsim.cost.energy import EnergyModel
from intsim.cost.layer_policy import uniform_layer_bits
from intsim.cost.shapes import infer_shapes
from intsim.ops.opdef import ops_where


CATEGORIES = ("mac", "accumulate", "decode", "rescale", "vector", "sram", "dram")


# op classes of the cost model: the op registry's cost classes (intsim/ops/opdef.py)
CONV_OPS = tuple(sorted(ops_where(cost="gemm")))  # a GEMM on the PE array


FP32_SIGNIFICAND_BITS = 24  # an fp32 product on integer multipliers: the 24×24-bit significand product


# single-input ops a producer's output pipeline can apply on the fly (element-wise maths or
# pure address transforms): a tensor whose only consumer is one of them never leaves the chip
FUSABLE = ops_where(cost="fusable")


# binary element-wise ops: the operand produced last (at the output's size) streams in from its
# producer's pipeline; the other operand is read from memory
BINARY_FUSABLE = ops_where(cost="binary_fusable")


# multi-input view: producers write straight into their slice of the output (no traffic, no cycles)
VIEW_OPS = ops_where(cost="view")


RESCALE_OPS = ops_where(rescale=True)  # vector work counted as "rescale"


@dataclass(frozen=True)
class Scheme:
    """``artifact`` | ``fp32`` | ``int`` (uniform ``W<w>A<a>``)."""

    kind: str
    weight_bits: int | None = None
    act_bits: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "int":
            return f"W{self.weight_bits}A{self.act_bits}"
        return self.kind


def parse_scheme(scheme: str | Scheme) -> Scheme:
    """``"artifact"``, ``"fp32"`` or ``"W<b>A<b>"`` (uniform integer, 2–16 bits)."""
    if isinstance(scheme, Scheme):
        return scheme
    s = str(scheme).strip()
    if s.lower() == "artifact":
        return Scheme("artifact")
    if s.lower() == "fp32":
        return Scheme("fp32")
    m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)", s)
    if m:
        w, a = int(m.group(1)), int(m.group(2))
        if not (2 <= w <= 16 and 2 <= a <= 16):
            raise ValueError(f"scheme {scheme!r}: uniform bits must be in 2..16")
        return Scheme("int", w, a)
    raise ValueError(f"unknown scheme {scheme!r}: expected 'artifact', 'fp32' or 'W<bits>A<bits>' (e.g. 'W8A8')")


def range_bits(lo: int, hi: int) -> int:
    """Width of the narrowest integer format holding every value of ``[lo, hi]``:
    unsigned when ``lo ≥ 0``, else two's complement."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return max(1, hi.bit_length())
    return max(hi.bit_length() if hi > 0 else 0, (-lo - 1).bit_length()) + 1


def signed_bits(max_abs: int) -> int:
    return abs(int(max_abs)).bit_length() + 1


def weight_bits(w: np.ndarray) -> int:
    """True (two's complement) width of an integer weight array."""
    if w.size == 0:
        return 1
    lo, hi = int(w.min()), int(w.max())
    return max(2, range_bits(min(lo, -1), max(hi, 0)))


def grid_bits_needed(cb: Codebook) -> int:
    """Signed bits of the largest ``|G(s,q)|``: the grid LUT width a codebook needs."""
    g = max(max(abs(s.origin + s.step * s.qmin), abs(s.origin + s.step * s.qmax)) for s in cb.segments)
    return signed_bits(g)


def valid_pairs_conv(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> int:
    o = np.arange(n_out, dtype=np.int64)[:, None]
    t = np.arange(k, dtype=np.int64)[None, :]
    pos = o * s - p + t * d
    return int(((pos >= 0) & (pos < n_in)).sum())


def valid_pairs_convT(n_in: int, n_out: int, k: int, s: int, p: int) -> int:
    o = np.arange(n_out, dtype=np.int64)[:, None]
    t = np.arange(k, dtype=np.int64)[None, :]
    num = o + p - t
    ok = (num % s == 0) & (num >= 0) & (num // s < n_in)
    return int(ok.sum())


def plain_json(x: Any) -> Any:
    """Make a tree JSON-serialisable (numpy scalars → Python)."""
    if isinstance(x, dict):
        return {str(k): plain_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_json(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return plain_json(x.tolist())
    return x


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mean_tree(items: list):
    """Average numeric leaves across same-shaped trees; other leaves: the common value,
    else the list of values."""
    first = items[0]
    if all(isinstance(i, dict) for i in items):
        keys = list(first.keys())
        return {k: mean_tree([i.get(k) for i in items]) for k in keys}
    if all(is_number(i) for i in items):
        if all(isinstance(i, int) for i in items) and len(set(items)) == 1:
            return items[0]
        return float(sum(items)) / len(items)
    if all(i == first for i in items):
        return first
    return list(items)


class CostContext:
    def __init__(self, art: Artifact, accel: AcceleratorConfig, scheme: Scheme, realization: str,
                 uniform_policy: str):
        self.art, self.accel, self.scheme, self.realization = art, accel, scheme, realization
        self.uniform_policy = uniform_policy
        self.em: EnergyModel = accel.energy_model()
        self.producer = {t: op for op in art.ops for t in op.outputs}
        self.consumers: dict[str, list[OpSpec]] = {}
        for op in art.ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.graph_io = set(art.inputs) | set(art.outputs)
        self.sb = art.numerics.stream_bits
        self.transients = self._find_transients()
        self.warnings: list[str] = []
        self._cur_counters: dict = {}  # the image being costed (for code histograms)
        # uniform-scheme layer bits and codes-tensor widths
        self.layer_bits: dict[str, tuple[int, int]] = {}
        if scheme.kind == "int":
            self.layer_bits = uniform_layer_bits(art, scheme.weight_bits, scheme.act_bits, uniform_policy)
        self.enc_mult_bits = max(
            (max((e.mult.bit_length() for e in t.codebook.encoder), default=16)
             for t in art.tensors.values() if t.kind == "codes" and t.codebook is not None),
            default=16,
        )

    def _find_transients(self) -> set[str]:
        art = self.art
        probe = infer_shapes(art, (16, 16))  # structure only: which tensors have the output's size
        order = {t: i for i, op in enumerate(art.ops) for t in op.outputs}
        out = set()
        for t, cons in self.consumers.items():
            prod = self.producer.get(t)
            if t in self.graph_io or len(cons) != 1 or prod is None or prod.op in VIEW_OPS:
                continue
            c = cons[0]
            if c.op in FUSABLE:
                out.add(t)
            elif c.op in BINARY_FUSABLE and c.inputs.count(t) == 1:
                latest = max(c.inputs, key=lambda x: order.get(x, -1))
                if t == latest and np.prod(probe[t]) == np.prod(probe[c.outputs[0]]):
                    out.add(t)
        return out

    def transient(self, t: str) -> bool:
        """True when ``t`` never leaves the chip (fused into its producer's output pipeline)."""
        return t in self.transients

    def tensor_bits(self, t: str) -> int:
        spec = self.art.tensors[t]
        if spec.kind == "image":
            return 8
        if self.scheme.kind == "fp32":
            return 32
        if spec.kind == "codes":
            if self.scheme.kind == "int":
                bits = [self.layer_bits[c.name][1] for c in self.consumers.get(t, []) if c.name in self.layer_bits]
                return max(bits) if bits else self.scheme.act_bits
            return spec.codebook.code_bits
        return self.sb
