"""Two-region (piecewise-uniform) activation quantizers, real-valued.

A quantizer is described by its learned real parameters — lower bound ``l``,
upper bound ``u``, breakpoint ``bp`` — the nominal bits ``b`` and an
*allocation* (arithmetic.md §3.3) that turns them into 1–3 uniform segments
(origin, step, index range). :class:`TwoRegionSpec` is the frozen description
that export snaps to a dyadic codebook; :class:`TwoRegionQuantizer` is the
trainable ``nn.Module`` (l, u, bp are parameters; straight-through rounding) the
finetuning stage will optimise; :class:`MinMaxObserver` initialises them from
calibration batches (design.md §7).

Allocations implemented (§3.3):

* ``released`` — the method's released code. Signed tensor (``l < 0``):
  negative tail ``[l, −bp)`` origin −bp, q ∈ [−2^(b−1), −1], step
  ``(−bp − l)/2^(b−1)``; dense ``[−bp, bp]`` origin 0,
  q ∈ [−(2^(b−1)−1), 2^(b−1)−1], step ``bp/(2^(b−1)−1)``; positive tail
  ``(bp, u]`` origin bp, q ∈ [1, 2^(b−1)], step ``(u − bp)/2^(b−1)``.
  One-sided (``l ≥ 0``, e.g. post-ReLU): dense ``[0, bp]`` q ∈ [0, 2^b−1],
  step ``bp/(2^b−1)``; tail as the positive tail above.
* ``uniform`` — one segment with origin 0 and ``2^b`` codes covering
  ``[min(l, 0), max(u, 0)]`` (an asymmetric uniform quantizer whose zero point
  is expressed by the index range).

``paper`` and ``budgeted`` (§3.3) are not implemented yet and are refused.

Region selection (identical in the exported encoder, §3.4): the dense region is
closed, ``−bp ≤ x ≤ bp``; ``x > bp`` goes to the positive tail, ``x < −bp`` to
the negative tail. Indices round half up (the default rounding mode, §2) and are
clamped to the segment's index range.

Degenerate tails: a tail whose extent (``u − bp`` or ``−l − bp``) is not larger
than one dense step is dropped (values beyond ±bp then clamp to the dense
region's end, an error of at most one dense step). This keeps every codebook
strictly increasing and avoids a tail step far below the dense step, which
would waste the multiplier budget at export. Dropped tails lower the code
count; ``code_bits`` is always reported from the actual count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

ALLOCATIONS = ("released", "uniform")
_NOT_YET = ("paper", "budgeted")

#: the breakpoint is kept at least max(|l|, |u|) / 2^BP_FLOOR_LOG2, so a tensor
#: that is almost always zero (99th percentile 0) still gets a usable dense step.
BP_FLOOR_LOG2 = 8


def round_half_up(t: torch.Tensor) -> torch.Tensor:
    """floor(t + 0.5): the default rounding mode of arithmetic.md §2 (real form)."""
    return torch.floor(t + 0.5)


def round_ste(t: torch.Tensor) -> torch.Tensor:
    """Half-up rounding with a straight-through gradient."""
    return (round_half_up(t) - t).detach() + t


@dataclass(frozen=True)
class RealSegment:
    """One uniform region in real units: value(q) = origin + step·q, q ∈ [qmin, qmax]."""

    origin: float
    step: float
    qmin: int
    qmax: int
    role: str  # "neg_tail" | "dense" | "pos_tail" | "uniform"

    @property
    def count(self) -> int:
        return self.qmax - self.qmin + 1

    @property
    def lo(self) -> float:
        return self.origin + self.step * self.qmin

    @property
    def hi(self) -> float:
        return self.origin + self.step * self.qmax

    def to_json(self) -> dict:
        return {"role": self.role, "origin": self.origin, "step": self.step, "qmin": self.qmin, "qmax": self.qmax}


@dataclass(frozen=True)
class Boundary:
    """Segment boundary: a value goes to the lower segment iff x ≤ value (inclusive) or x < value."""

    value: float
    lower_inclusive: bool


def _check_allocation(allocation: str) -> None:
    if allocation in _NOT_YET:
        raise NotImplementedError(f"allocation {allocation!r} is not implemented yet (implemented: {', '.join(ALLOCATIONS)})")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; expected one of {', '.join(ALLOCATIONS)}")


@dataclass(frozen=True)
class TwoRegionSpec:
    """Frozen real description of a two-region activation quantizer.

    ``l``, ``u``, ``bp`` are in the tensor's real units (for EDSR: pixel units
    of the [0, rgb_range] scale). ``bits`` is the nominal b (2–16). The tensor
    is *one-sided* iff ``l ≥ 0``; then ``l`` is treated as 0.
    """

    l: float
    u: float
    bp: float
    bits: int
    allocation: str = "released"

    def __post_init__(self):
        _check_allocation(self.allocation)
        if not (2 <= int(self.bits) <= 16):
            raise ValueError(f"activation bits must be in 2..16, got {self.bits}")
        for k in ("l", "u", "bp"):
            v = getattr(self, k)
            if not math.isfinite(v):
                raise ValueError(f"quantizer parameter {k} is not finite ({v})")
        if self.l > self.u:
            raise ValueError(f"quantizer lower bound {self.l} exceeds upper bound {self.u}")

    @property
    def signed(self) -> bool:
        return self.l < 0

    @property
    def absmax(self) -> float:
        return max(-self.l, self.u, 0.0)

    def effective_bp(self) -> float:
        """bp clamped into [absmax/2^BP_FLOOR_LOG2, side extent]; 1.0 for an all-zero range."""
        amax = self.absmax
        if amax == 0.0:
            return 1.0
        side = max(-self.l, self.u) if self.signed else self.u
        return min(max(self.bp, amax / 2.0 ** BP_FLOOR_LOG2), side)

    def segments(self) -> tuple[RealSegment, ...]:
        """The 1–3 real segments in ascending order of value (§3.1, §3.3)."""
        b = int(self.bits)
        if self.allocation == "uniform":
            lo, hi = min(self.l, 0.0), max(self.u, 0.0)
            if hi == lo:
                hi = 1.0
            step = (hi - lo) / (2 ** b - 1)
            qmin = int(math.floor(lo / step + 0.5))
            return (RealSegment(0.0, step, qmin, qmin + 2 ** b - 1, "uniform"),)
        half = 2 ** (b - 1)
        bp = self.effective_bp()
        segs: list[RealSegment] = []
        if self.signed:
            dstep = bp / (half - 1)
            if -self.l - bp > dstep:
                segs.append(RealSegment(-bp, (-self.l - bp) / half, -half, -1, "neg_tail"))
            segs.append(RealSegment(0.0, dstep, -(half - 1), half - 1, "dense"))
        else:
            dstep = bp / (2 ** b - 1)
            segs.append(RealSegment(0.0, dstep, 0, 2 ** b - 1, "dense"))
        if self.u - bp > dstep:
            segs.append(RealSegment(bp, (self.u - bp) / half, 1, half, "pos_tail"))
        return tuple(segs)

    def boundaries(self) -> tuple[Boundary, ...]:
        return segment_boundaries(self.segments())

    @property
    def num_codes(self) -> int:
        return sum(s.count for s in self.segments())

    @property
    def code_bits(self) -> int:
        """Honest storage width ceil(log2 N) (§1.3)."""
        return max(1, math.ceil(math.log2(self.num_codes)))

    def fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        """Quantize–dequantize ``x`` (no gradient); equals :class:`TwoRegionQuantizer` built from this spec."""
        return fake_quant_segments(x, self.segments())

    def to_json(self) -> dict:
        return {
            "l": float(self.l), "u": float(self.u), "bp": float(self.bp), "bp_effective": float(self.effective_bp()),
            "bits": int(self.bits), "allocation": self.allocation, "signed": self.signed,
            "num_codes": self.num_codes, "code_bits": self.code_bits,
            "segments": [s.to_json() for s in self.segments()],
        }


def segment_boundaries(segs) -> tuple[Boundary, ...]:
    """Boundaries between consecutive segments.

    A positive tail starts at its origin (= bp): the lower segment keeps
    ``x ≤ origin``. A negative tail ends at its origin (= −bp): it keeps
    ``x < origin``. This is the closed dense region ``[−bp, bp]`` of §3.3.
    """
    out = []
    for lower, upper in zip(segs[:-1], segs[1:]):
        if lower.role == "neg_tail":
            out.append(Boundary(lower.origin, lower_inclusive=False))
        else:
            out.append(Boundary(upper.origin, lower_inclusive=True))
    return tuple(out)


def fake_quant_segments(x: torch.Tensor, segs) -> torch.Tensor:
    """Quantize–dequantize ``x`` with fixed real segments (half-up index rounding, clamped)."""
    bounds = segment_boundaries(segs)
    seg_idx = torch.zeros_like(x, dtype=torch.long)
    for b in bounds:
        above = x > b.value if b.lower_inclusive else x >= b.value
        seg_idx = seg_idx + above.long()
    out = torch.zeros_like(x)
    for i, s in enumerate(segs):
        q = torch.clamp(round_half_up((x - s.origin) / s.step), s.qmin, s.qmax)
        out = torch.where(seg_idx == i, s.origin + s.step * q, out)
    return out


class TwoRegionQuantizer(nn.Module):
    """Trainable two-region fake quantizer: parameters ``l``, ``u``, ``bp`` (real units).

    The segment *structure* (signed/one-sided, which tails exist) is fixed at
    construction from the initial spec; the values are recomputed from the
    parameters on every forward so gradients reach l, u and bp through the
    steps and origins (straight-through rounding, zero gradient w.r.t. x
    outside the clamped range).
    """

    def __init__(self, spec: TwoRegionSpec):
        super().__init__()
        self.bits = int(spec.bits)
        self.allocation = spec.allocation
        self.signed = spec.signed
        roles = {s.role for s in spec.segments()}
        self.has_neg = "neg_tail" in roles
        self.has_pos = "pos_tail" in roles
        l = spec.l if spec.signed else 0.0
        # float64 parameters: spec() → module → spec() round-trips exactly (export snaps from these).
        self.l = nn.Parameter(torch.tensor(float(l), dtype=torch.float64))
        self.u = nn.Parameter(torch.tensor(float(spec.u), dtype=torch.float64))
        self.bp = nn.Parameter(torch.tensor(float(spec.effective_bp()), dtype=torch.float64))

    @classmethod
    def from_spec(cls, spec: TwoRegionSpec) -> "TwoRegionQuantizer":
        return cls(spec)

    def spec(self) -> TwoRegionSpec:
        """Current parameter values as a frozen spec (for export)."""
        return TwoRegionSpec(float(self.l.detach()), float(self.u.detach()), float(self.bp.detach()),
                             self.bits, self.allocation)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, allocation={self.allocation}, signed={self.signed}, "
                f"tails=({self.has_neg}, {self.has_pos})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bits
        l, u, bp = self.l.to(x.dtype), self.u.to(x.dtype), self.bp.to(x.dtype)
        if self.allocation == "uniform":
            lo, hi = torch.clamp(l, max=0.0), torch.clamp(u, min=0.0)
            step = (hi - lo) / (2 ** b - 1)
            qmin = int(math.floor(float((lo / step).detach()) + 0.5))
            return torch.clamp(round_ste(x / step), qmin, qmin + 2 ** b - 1) * step
        half = 2 ** (b - 1)
        if self.signed:
            dstep = bp / (half - 1)
            out = torch.clamp(round_ste(x / dstep), -(half - 1), half - 1) * dstep
        else:
            dstep = bp / (2 ** b - 1)
            out = torch.clamp(round_ste(x / dstep), 0, 2 ** b - 1) * dstep
        if self.has_pos:
            pstep = (u - bp) / half
            pos = bp + torch.clamp(round_ste((x - bp) / pstep), 1, half) * pstep
            out = torch.where(x > bp, pos, out)
        if self.has_neg:
            nstep = (-l - bp) / half
            neg = -bp + torch.clamp(round_ste((x + bp) / nstep), -half, -1) * nstep
            out = torch.where(x < -bp, neg, out)
        return out


class MinMaxObserver:
    """Range and breakpoint initialisation (design.md §7).

    Per batch: min, max and the ``percentile``-th percentile of |x| (for a
    one-sided tensor |x| = x). Each is smoothed by an exponential moving
    average ``v ← β·v + (1−β)·batch_value`` (β = ``momentum`` = 0.9; the first
    batch initialises). Percentiles use the nearest-rank definition on at most
    ``max_samples`` elements (a deterministic stride subsample beyond that).
    """

    def __init__(self, momentum: float = 0.9, percentile: float = 99.0, max_samples: int = 1 << 22):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.momentum = momentum
        self.percentile = percentile
        self.max_samples = max_samples
        self.min: float | None = None
        self.max: float | None = None
        self.bp: float | None = None
        self.batches = 0

    def _ema(self, old: float | None, new: float) -> float:
        return new if old is None else self.momentum * old + (1.0 - self.momentum) * new

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        a = x.detach().float().flatten()
        if a.numel() == 0:
            return
        bmin, bmax = float(a.min()), float(a.max())
        mag = a.abs()
        if mag.numel() > self.max_samples:
            mag = mag[:: math.ceil(mag.numel() / self.max_samples)]
        k = min(mag.numel(), max(1, math.ceil(self.percentile / 100.0 * mag.numel())))
        bbp = float(torch.kthvalue(mag, k).values)
        self.min = self._ema(self.min, bmin)
        self.max = self._ema(self.max, bmax)
        self.bp = self._ema(self.bp, bbp)
        self.batches += 1

    def spec(self, bits: int, allocation: str = "released") -> TwoRegionSpec:
        if self.batches == 0:
            raise RuntimeError("observer saw no data")
        return TwoRegionSpec(min(self.min, self.max), self.max, self.bp, bits, allocation)

    def state(self) -> dict:
        return {"min_ema": self.min, "max_ema": self.max, "bp_ema": self.bp, "batches": self.batches,
                "momentum": self.momentum, "percentile": self.percentile}
