"""The encoder of §3.4 as a verified lookup: a piecewise-constant function of the stream integer.

The encoder maps a stream integer ``X`` to (code, saturated). As a function of ``X`` it is
piecewise constant with few pieces (one per code, plus where the clamp starts or stops
saturating), so one tensor pass can look it up instead of evaluating the real form
element-wise (a dozen float64 passes and per-segment gathers).

**Why the lookup is the real form's value.** Let ``seg(X)`` be the segment (the number of
thresholds below ``X``, non-decreasing in ``X``), ``t(X) = RND((X − C_s)·E_s·2^-k_s)`` the
unclamped index and ``state(X) = −1, 0, +1`` as ``t < qmin_s``, in range, ``t > qmax_s``. With
every ``E_s ≥ 0`` (checked), within one segment ``t`` is non-decreasing (every rounding mode of §2
is), so ``state`` and the code ``clamp(t) + base_s − qmin_s`` are too. Hence on an integer interval
``[a, b]`` with the same ``seg``, ``state`` and code at ``a`` and at ``b``, all three are constant.
:func:`build` cuts the stream range at candidate change points (computed with Python
rationals from the encoder constants), evaluates golden's element-wise real form
(:func:`golden.ops.codes.real_form`) at both ends of every piece and refuses (returns None: the
caller evaluates element-wise) unless every piece passes that check. So the candidates only
need to be good guesses; a wrong one cannot change a result.

**Lookup in two gathers.** With every piece at least ``2^m`` integers long, an aligned bucket
of ``2^m`` integers holds at most one piece start after its first integer, so
``piece(X) = first[j] + (X ≥ start[j])`` for ``j = ⌊(X − lo)·2^-m⌋`` (in int32: ``X`` holds integers),
evaluated as one gather, one add and a floor (:meth:`EncoderPieces.lookup`), then the code gathered.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch

from golden.numerics import F64

#: most buckets of a lookup table (float64 entries: 2 MiB)
MAX_BUCKETS = 1 << 18
#: elements per chunk of a lookup (scratch: 20 bytes per element)
CHUNK = 1 << 18


@dataclass(frozen=True)
class EncoderPieces:
    """The encoder on the stream integers ``[lo, hi]`` as pieces (see the module docstring)."""

    lo: int  # first integer of the domain
    hi: int  # last integer of the domain
    m: int  # bucket width 2^m integers
    base: torch.Tensor  # float64[buckets]: first[j] + 1 − start[j]·2^-(m+1) (see lookup)
    code: torch.Tensor  # float64[pieces]: flat code of each piece
    sat: torch.Tensor  # float64[pieces]: 1 where the piece is saturated (clamped), else 0
    any_sat: bool  # some piece is saturated
    starts: tuple[int, ...]  # first integer of each piece (ascending; starts[0] = lo)

    def saturates(self, x_lo: int, x_hi: int) -> bool:
        """True when a saturated piece meets ``[x_lo, x_hi]`` (a sub-range of ``[lo, hi]``)."""
        if not self.any_sat:
            return False
        p0, p1 = bisect.bisect_right(self.starts, x_lo) - 1, bisect.bisect_right(self.starts, x_hi) - 1
        return bool(self.sat[p0:p1 + 1].any())

    def lookup(self, X: torch.Tensor, x_lo: int | None = None, x_hi: int | None = None) -> tuple[torch.Tensor, int]:
        """(flat codes as float64, saturated element count) of stream integers ``X`` within ``[lo, hi]``.

        ``x_lo``, ``x_hi``: the extremes of ``X`` when known; the saturation count (one more gather and
        sum) is skipped when no saturated piece meets them (the count is then 0).

        ``piece = first[j] + [X ≥ start[j]]`` (``start[j]``: the piece start inside bucket ``j``, else the
        next bucket's first integer) is ``⌊base[j] + X·2^-(m+1)⌋ = ⌊first[j] + 1 + (X − start[j])·2^-(m+1)⌋``:
        ``X − start[j]`` lies in ``[−2^m, 2^m − 2]``, so the fraction is in ``[−½, ½)``. Exact: ``X·2^-(m+1)``
        and ``base[j]`` are multiples of 2^-(m+1) below 2^53·2^-(m+1), and so is their sum.

        Runs in chunks of :data:`CHUNK` elements on three scratch tensors: a band of a wide tensor (IMDN's
        384-channel concat: 16 MiB of float64) would otherwise take fresh pages for every temporary, and
        the page faults cost more than the arithmetic."""
        x = X.reshape(-1)
        count_sat = self.any_sat if x_lo is None or x_hi is None else self.saturates(int(x_lo), int(x_hi))
        out = torch.empty(x.shape, dtype=F64)
        c = min(CHUNK, x.numel())
        f, j, g = torch.empty(c, dtype=F64), torch.empty(c, dtype=torch.int32), torch.empty(c, dtype=F64)
        sat = 0
        for a in range(0, x.numel(), c):
            xs = x[a:a + c]
            n = xs.numel()
            fs, js, gs = f[:n], j[:n], g[:n]
            # j = ⌊(X − lo)·2^-m⌋: the sum is exact (multiples of 2^-m below 2^31) and not negative, so the
            # conversion's truncation is the floor; so is the piece's (its value is at least ½)
            js.copy_(torch.mul(xs, math.ldexp(1.0, -self.m), out=fs).add_(-self.lo * math.ldexp(1.0, -self.m)))
            torch.index_select(self.base, 0, js, out=gs)
            # the piece of each element: base[j] + X·2^-(m+1) in one pass (the product is exact, so is the sum)
            js.copy_(torch.add(gs, xs, alpha=math.ldexp(1.0, -(self.m + 1)), out=fs))
            if count_sat:
                sat += int(torch.index_select(self.sat, 0, js, out=gs).sum())  # an exact integer sum
            torch.index_select(self.code, 0, js, out=out[a:a + n])
        return out.view(X.shape), sat


def _floor_div(a: int, b: int, k: int) -> int:
    """``⌊a·2^k / b⌋`` for integers (``b > 0``), exactly."""
    return (a << k) // b if k >= 0 else a // (b << -k)


def _candidates(cb, lo: int, hi: int, mode: str) -> list[int] | None:
    """Integers at or just after every point where ``seg``, ``state`` or the code may change under rounding
    ``mode`` (None: an ``E_s < 0``). Only guesses: :func:`build` proves the pieces they cut."""
    cand = {int(u) + 1 for u in cb.thresholds}  # the segment changes from u to u + 1
    for e, sg in zip(cb.encoder, cb.segments):
        E, k, C = int(e.mult), int(e.shift), int(e.center)
        if E < 0:
            return None
        if E == 0:
            continue
        for q in range(int(sg.qmin), int(sg.qmax) + 2):
            # t = (X − C)·E·2^-k reaches q at X* = C + q·2^k/E (floor), q − ½ at C + (2q − 1)·2^(k−1)/E
            # (the half modes); the first integer with RND(t) ≥ q is ⌈X*⌉ or, on a tie, the next one
            x = C + (_floor_div(q, E, k) if mode == "floor" else _floor_div(2 * q - 1, 2 * E, k))
            cand.update((x, x + 1, x + 2))
    return sorted(x for x in cand if lo < x <= hi)


def build(real_form, cb, lo: int, hi: int, mode: str) -> EncoderPieces | None:
    """The verified pieces of the encoder on ``[lo, hi]``, or None where they are not proven or too fine.

    ``real_form(X) -> (seg, t, code)`` is golden's element-wise real form on a float64 tensor of
    stream integers (segment, unclamped rounded index, flat code) under rounding ``mode``."""
    if not (-2**31 <= lo <= hi < 2**31 and hi - lo < 2**31):  # int32 bucket indices
        return None
    cuts = _candidates(cb, lo, hi, mode)
    if cuts is None:
        return None
    starts = [lo, *cuts]
    ends = [c - 1 for c in cuts] + [hi]
    pts = torch.tensor(starts + ends, dtype=F64)
    seg, t, code = real_form(pts)
    qmin = torch.tensor([float(s.qmin) for s in cb.segments], dtype=F64).index_select(0, seg)
    qmax = torch.tensor([float(s.qmax) for s in cb.segments], dtype=F64).index_select(0, seg)
    state = (t > qmax).to(torch.int64) - (t < qmin).to(torch.int64)
    n = len(starts)
    same = (seg[:n] == seg[n:]) & (state[:n] == state[n:]) & (code[:n] == code[n:])
    if not bool(same.all()):
        return None
    key = list(zip(code[:n].tolist(), (state[:n] != 0).tolist()))
    keep = [0] + [i for i in range(1, n) if key[i] != key[i - 1]]  # merge neighbours of equal (code, saturated)
    starts = [starts[i] for i in keep]
    code = torch.tensor([key[i][0] for i in keep], dtype=F64)
    sat = torch.tensor([float(key[i][1]) for i in keep], dtype=F64)
    gap = min((b - a for a, b in zip(starts, starts[1:])), default=hi - lo + 1)
    m = min(gap.bit_length() - 1, 62)
    buckets = (hi - lo) // (1 << m) + 1
    if buckets > MAX_BUCKETS:
        return None
    b0 = torch.arange(buckets, dtype=torch.int64) * (1 << m) + lo  # each bucket's first integer
    s = torch.tensor(starts[1:], dtype=torch.int64)
    first = torch.searchsorted(s, b0, right=True)  # pieces started at or before the bucket's first integer
    inside = b0 + (1 << m)  # the piece start inside the bucket, else the next bucket's first integer
    if s.numel():
        j = torch.div(s - lo, 1 << m, rounding_mode="floor")
        off = (s - lo) % (1 << m) != 0  # a start on a bucket's first integer is counted by ``first``
        inside[j[off]] = s[off]
    base = (first + 1).to(F64) - inside.to(F64) * math.ldexp(1.0, -(m + 1))  # exact: see lookup
    return EncoderPieces(lo, hi, m, base, code, sat, bool(sat.any()), tuple(starts))
