"""Two-region (piecewise-uniform) activation quantizers, real-valued.

A quantizer is described by its learned real parameters — lower bound ``l``,
upper bound ``u``, breakpoint ``bp`` — the nominal bits ``b`` and an
*allocation* (arithmetic.md §3.3) that turns them into 1–3 uniform segments
(origin, step, index range). :class:`TwoRegionSpec` is the frozen description
that export snaps to a dyadic codebook; :class:`TwoRegionQuantizer` is the
trainable ``nn.Module`` (l, u, bp are parameters; straight-through rounding) the
finetuning stage will optimise; :class:`MinMaxObserver` initialises them from
calibration batches (docs/calibration.md).

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

* ``paper`` — the paper's text: 2^(b−1)−1 dense points + 2·(2^(b−2)−1) tail
  points (b = 4: 7 + 3 + 3 = 13 codes, code_bits = b). Signed: dense q ∈
  [−(2^(b−2)−1), 2^(b−2)−1], step ``bp/(2^(b−2)−1)``; each tail 2^(b−2)−1
  indices. One-sided: dense ``[0, bp]`` with 2^(b−1) points, the single tail
  2^(b−1)−2 points (2^b − 2 codes). Needs b ≥ 3.
* ``budgeted`` — exactly 2^b codes split between the regions; the split is the
  spec's ``counts = (neg_tail, dense, pos_tail)`` (chosen by calibration,
  :func:`calib.methods.search_budgeted`, to minimise the calibration MSE).
  Signed tensors need an odd dense count (symmetric dense region, 0 exact).
  Default split when ``counts`` is None: dense 2^(b−1)−1 (signed) / 2^(b−1)
  (one-sided), the rest to the tails (positive tail gets the odd one).

Every allocation is described by its three index counts (negative tail,
dense, positive tail) — :meth:`TwoRegionSpec.region_counts`; steps follow from
l, u, bp: dense ``bp/((D−1)/2)`` (signed) or ``bp/(D−1)`` (one-sided), tails
``extent/T``.

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

ALLOCATIONS = ("released", "paper", "budgeted", "uniform")
_NOT_YET: tuple[str, ...] = ()

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
    #: ``budgeted`` only: (negative tail, dense, positive tail) index counts summing to 2^bits.
    counts: tuple[int, int, int] | None = None

    def __post_init__(self):
        _check_allocation(self.allocation)
        if not (2 <= int(self.bits) <= 16):
            raise ValueError(f"activation bits must be in 2..16, got {self.bits}")
        if self.allocation == "paper" and int(self.bits) < 3:
            raise ValueError("the 'paper' allocation needs at least 3 activation bits")
        if self.counts is not None:
            if self.allocation != "budgeted":
                raise ValueError(f"counts are only meaningful for the 'budgeted' allocation, not {self.allocation!r}")
            c = tuple(int(v) for v in self.counts)
            object.__setattr__(self, "counts", c)
            if len(c) != 3 or min(c) < 0 or sum(c) != 2 ** int(self.bits):
                raise ValueError(f"budgeted counts {c} must be 3 non-negative ints summing to 2^{self.bits}")
            if self.l < 0 and c[1] % 2 == 0:
                raise ValueError(f"budgeted counts {c}: a signed tensor needs an odd dense count")
            if c[1] < (3 if self.l < 0 else 2):
                raise ValueError(f"budgeted counts {c}: dense region too small")
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

    def region_counts(self) -> tuple[int, int, int]:
        """Index counts (negative tail, dense, positive tail) before degenerate tails are dropped."""
        return region_counts(int(self.bits), self.allocation, self.signed, self.counts)

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
        tn, d, tp = self.region_counts()
        bp = self.effective_bp()
        segs: list[RealSegment] = []
        if self.signed:
            dh = (d - 1) // 2
            dstep = bp / dh
            if tn > 0 and -self.l - bp > dstep:
                segs.append(RealSegment(-bp, (-self.l - bp) / tn, -tn, -1, "neg_tail"))
            segs.append(RealSegment(0.0, dstep, -dh, dh, "dense"))
        else:
            dstep = bp / (d - 1)
            segs.append(RealSegment(0.0, dstep, 0, d - 1, "dense"))
        if tp > 0 and self.u - bp > dstep:
            segs.append(RealSegment(bp, (self.u - bp) / tp, 1, tp, "pos_tail"))
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
            "region_counts": list(self.region_counts()) if self.allocation != "uniform" else None,
            "num_codes": self.num_codes, "code_bits": self.code_bits,
            "segments": [s.to_json() for s in self.segments()],
        }


def region_counts(bits: int, allocation: str, signed: bool,
                  counts: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(negative tail, dense, positive tail) index counts of a two-region allocation (§3.3)."""
    b = int(bits)
    half = 2 ** (b - 1)
    if allocation == "released":
        return (half, 2 * half - 1, half) if signed else (0, 2 ** b, half)
    if allocation == "paper":
        t = 2 ** (b - 2) - 1
        return (t, 2 * t + 1, t) if signed else (0, half, half - 2)
    if allocation == "budgeted":
        if counts is not None:
            tn, d, tp = counts
            return (tn, d, tp) if signed else (0, d, tp + tn)
        if signed:
            rest = 2 ** b - (half - 1)
            return (rest // 2, half - 1, rest - rest // 2)
        return (0, half, half)
    raise ValueError(f"allocation {allocation!r} has no region counts")


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
        self.counts = spec.counts
        self.tn, self.d, self.tp = spec.region_counts() if spec.allocation != "uniform" else (0, 0, 0)
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
                             self.bits, self.allocation, self.counts)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, allocation={self.allocation}, signed={self.signed}, "
                f"tails=({self.has_neg}, {self.has_pos})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused forward/backward (:class:`_TwoRegionFn`); equals :meth:`forward_reference` values and gradients."""
        if self.allocation == "uniform":
            return _UniformFn.apply(x, self.l, self.u, self.bits)
        return _TwoRegionFn.apply(x, self.l, self.u, self.bp, self.signed, self.has_neg, self.has_pos,
                                  self.tn, self.d, self.tp)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Plain autograd formulation (straight-through rounding); slower, kept as the reference."""
        b = self.bits
        l, u, bp = self.l.to(x.dtype), self.u.to(x.dtype), self.bp.to(x.dtype)
        if self.allocation == "uniform":
            lo, hi = _uniform_range(l, u)
            step = (hi - lo) / (2 ** b - 1)
            qmin = int(math.floor(float((lo / step).detach()) + 0.5))
            return torch.clamp(round_ste(x / step), qmin, qmin + 2 ** b - 1) * step
        tn, d, tp = self.tn, self.d, self.tp
        if self.signed:
            dh = (d - 1) // 2
            dstep = bp / dh
            out = torch.clamp(round_ste(x / dstep), -dh, dh) * dstep
        else:
            dstep = bp / (d - 1)
            out = torch.clamp(round_ste(x / dstep), 0, d - 1) * dstep
        if self.has_pos:
            pstep = (u - bp) / tp
            pos = bp + torch.clamp(round_ste((x - bp) / pstep), 1, tp) * pstep
            out = torch.where(x > bp, pos, out)
        if self.has_neg:
            nstep = (-l - bp) / tn
            neg = -bp + torch.clamp(round_ste((x + bp) / nstep), -tn, -1) * nstep
            out = torch.where(x < -bp, neg, out)
        return out


def _rq(t: torch.Tensor, lo: int, hi: int):
    """(clamped half-up index, unclamped mask) of ``t``."""
    r = torch.floor(t + 0.5)
    q = torch.clamp(r, lo, hi)
    return q, q == r


class _TwoRegionFn(torch.autograd.Function):
    """Two-region fake quant with the straight-through (LSQ-style) gradients of the reference formulation.

    For a segment value ``o + q·Δ`` with ``r = (x − o)/Δ``: ∂/∂x = 1 if q is not
    clamped, else 0; ∂/∂Δ = q − r (unclamped) or q (clamped); ∂/∂o = 1 − ∂x.
    Δ and o follow from l, u, bp as in :meth:`TwoRegionSpec.segments`.
    """

    @staticmethod
    def forward(ctx, x, l, u, bp, signed, has_neg, has_pos, tn, d, tp):
        dt = x.dtype
        l_, u_, bp_ = l.detach().to(dt), u.detach().to(dt), bp.detach().to(dt)
        dden = (d - 1) // 2 if signed else d - 1
        dstep = bp_ / dden
        q, _ = _rq(x / dstep, -dden if signed else 0, dden)
        out = q * dstep
        if has_pos:
            pstep = (u_ - bp_) / tp
            qp, _ = _rq((x - bp_) / pstep, 1, tp)
            out = torch.where(x > bp_, bp_ + qp * pstep, out)
        if has_neg:
            nstep = (-l_ - bp_) / tn
            qn, _ = _rq((x + bp_) / nstep, -tn, -1)
            out = torch.where(x < -bp_, -bp_ + qn * nstep, out)
        ctx.save_for_backward(x, l, u, bp)
        ctx.cfg = (signed, has_neg, has_pos, tn, d, tp)
        return out

    @staticmethod
    def backward(ctx, g):
        x, l, u, bp = ctx.saved_tensors
        signed, has_neg, has_pos, tn, d, tp = ctx.cfg
        dt = x.dtype
        l_, u_, bp_ = l.detach().to(dt), u.detach().to(dt), bp.detach().to(dt)
        dden = (d - 1) // 2 if signed else d - 1
        dstep = bp_ / dden
        sel_d = torch.ones_like(x, dtype=torch.bool)
        gx = torch.zeros_like(x)
        gl = gu = gbp = None
        acc_l = x.new_zeros(())
        acc_u = x.new_zeros(())
        acc_bp = x.new_zeros(())
        if has_pos:
            sel = x > bp_
            sel_d &= ~sel
            pstep = (u_ - bp_) / tp
            r = (x - bp_) / pstep
            q, unc = _rq(r, 1, tp)
            val = torch.where(unc, q - r, q)
            gs = torch.where(sel, g, torch.zeros((), dtype=dt))
            acc_u = acc_u + (gs * val).sum() / tp
            acc_bp = acc_bp + (gs * (~unc).to(dt)).sum() - (gs * val).sum() / tp
            gx = torch.where(sel & unc, g, gx)
        if has_neg:
            sel = x < -bp_
            sel_d &= ~sel
            nstep = (-l_ - bp_) / tn
            r = (x + bp_) / nstep
            q, unc = _rq(r, -tn, -1)
            val = torch.where(unc, q - r, q)
            gs = torch.where(sel, g, torch.zeros((), dtype=dt))
            s_val = (gs * val).sum()
            acc_l = acc_l - s_val / tn
            acc_bp = acc_bp - s_val / tn - (gs * (~unc).to(dt)).sum()
            gx = torch.where(sel & unc, g, gx)
        r = x / dstep
        q, unc = _rq(r, -dden if signed else 0, dden)
        val = torch.where(unc, q - r, q)
        gs = torch.where(sel_d, g, torch.zeros((), dtype=dt))
        acc_bp = acc_bp + (gs * val).sum() / dden
        gx = torch.where(sel_d & unc, g, gx)
        if ctx.needs_input_grad[1]:
            gl = acc_l.to(l.dtype).reshape(l.shape)
        if ctx.needs_input_grad[2]:
            gu = acc_u.to(u.dtype).reshape(u.shape)
        if ctx.needs_input_grad[3]:
            gbp = acc_bp.to(bp.dtype).reshape(bp.shape)
        return (gx if ctx.needs_input_grad[0] else None), gl, gu, gbp, None, None, None, None, None, None


def _uniform_range(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[min(l, 0), max(u, 0)], or [0, 1] for an all-zero range (as :meth:`TwoRegionSpec.segments`)."""
    lo, hi = torch.clamp(l, max=0.0), torch.clamp(u, min=0.0)
    return lo, torch.where(hi == lo, lo + 1.0, hi)


class _UniformFn(torch.autograd.Function):
    """Uniform fake quant on [min(l,0), max(u,0)] with 2^b codes; STE gradients as the reference."""

    @staticmethod
    def forward(ctx, x, l, u, bits):
        dt = x.dtype
        l_, u_ = l.detach().to(dt), u.detach().to(dt)
        lo, hi = _uniform_range(l_, u_)
        step = (hi - lo) / (2 ** bits - 1)
        qmin = int(math.floor(float(lo / step) + 0.5))
        q, _ = _rq(x / step, qmin, qmin + 2 ** bits - 1)
        ctx.save_for_backward(x, l, u)
        ctx.cfg = (bits, qmin)
        return q * step

    @staticmethod
    def backward(ctx, g):
        x, l, u = ctx.saved_tensors
        bits, qmin = ctx.cfg
        dt = x.dtype
        l_, u_ = l.detach().to(dt), u.detach().to(dt)
        lo, hi = _uniform_range(l_, u_)
        n1 = 2 ** bits - 1
        step = (hi - lo) / n1
        r = x / step
        q, unc = _rq(r, qmin, qmin + n1)
        gstep = (g * torch.where(unc, q - r, q)).sum()
        gx = torch.where(unc, g, torch.zeros((), dtype=dt)) if ctx.needs_input_grad[0] else None
        gl = (gstep * (-1.0 / n1) * (l_ <= 0).to(dt)).to(l.dtype).reshape(l.shape) if ctx.needs_input_grad[1] else None
        gu = (gstep * (1.0 / n1) * (u_ >= 0).to(dt)).to(u.dtype).reshape(u.shape) if ctx.needs_input_grad[2] else None
        return gx, gl, gu, None


class MinMaxObserver:
    """Range and breakpoint initialisation (docs/calibration.md).

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
        self.global_min: float | None = None  # running extremes over all batches (the ``range_mode='max'`` option)
        self.global_max: float | None = None

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
        self.global_min = bmin if self.global_min is None else min(self.global_min, bmin)
        self.global_max = bmax if self.global_max is None else max(self.global_max, bmax)
        self.batches += 1

    def bounds(self, range_mode: str = "ema") -> tuple[float, float]:
        """(l, u): the EMA min/max (``'ema'``, the recipe) or the extremes over all batches (``'max'``)."""
        if self.batches == 0:
            raise RuntimeError("observer saw no data")
        if range_mode == "ema":
            return min(self.min, self.max), self.max
        if range_mode == "max":
            return self.global_min, self.global_max
        raise ValueError(f"range must be 'ema' or 'max', got {range_mode!r}")

    def spec(self, bits: int, allocation: str = "released", range_mode: str = "ema") -> TwoRegionSpec:
        l, u = self.bounds(range_mode)
        return TwoRegionSpec(l, u, self.bp, bits, allocation)

    def state(self) -> dict:
        return {"min_ema": self.min, "max_ema": self.max, "bp_ema": self.bp, "batches": self.batches,
                "min_global": self.global_min, "max_global": self.global_max,
                "momentum": self.momentum, "percentile": self.percentile}
