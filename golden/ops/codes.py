"""Codebooks (§3): flat-code tables and the encoder stream → code (§3.4), real form."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from golden.numerics import EXACT, F64, GoldenError, check_exact, extremes, pow2, rnd, signed_bounds
from golden.ops import encode_pieces
from golden.ops.context import OpContext


@dataclass(frozen=True)
class CodeTables:
    """Per flat code c ∈ [0, N): segment, index q and grid value G = e_s + d_s·q (§3.1, §3.2)."""

    seg: torch.Tensor  # int64[N]
    q: torch.Tensor  # int64[N]
    grid: torch.Tensor  # int64[N]
    bases: tuple[int, ...]

    @property
    def n(self) -> int:
        return int(self.seg.numel())


def code_tables(cb) -> CodeTables:
    seg, q, grid, bases = [], [], [], []
    base = 0
    for s_i, s in enumerate(cb.segments):
        if s.qmax < s.qmin:
            raise GoldenError(f"codebook segment {s_i} has an empty index range [{s.qmin}, {s.qmax}]")
        bases.append(base)
        for qq in range(int(s.qmin), int(s.qmax) + 1):
            seg.append(s_i)
            q.append(qq)
            grid.append(int(s.origin) + int(s.step) * qq)
        base += int(s.qmax) - int(s.qmin) + 1
    t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return CodeTables(t(seg), t(q), t(grid), tuple(bases))


def code_values(codes: torch.Tensor, cb, tables: CodeTables | None = None) -> torch.Tensor:
    """Dequantize flat codes to real float64 values (e_s + d_s q)·unit_m·2^-unit_e (3.1)."""
    tables = tables or code_tables(cb)
    c = codes.to(torch.int64)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= tables.n):
        raise GoldenError(f"flat code out of range [0, {tables.n})")
    g = tables.grid[c].to(F64)
    return g * float(cb.unit_m) * pow2(-int(cb.unit_e))


def _per_segment(values: list[float], s: torch.Tensor | None) -> float | torch.Tensor:
    """One float64 value per element: the value of its segment ``s``.

    A plain float when every segment shares the value (always for S = 1), so the
    common uniform codebook costs no gather over the whole tensor.
    """
    if s is None or all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values, dtype=F64).index_select(0, s.reshape(-1)).view(s.shape)


def encode(ctx: OpContext, X: torch.Tensor) -> torch.Tensor:
    """§3.4 real form: segment by x ≤ U_s·2^-f, t = RND((x − C_s·2^-f)·E_s·2^(f−k_s)), clamp.

    Evaluated on the stream integers ``X = x·2^f`` (the same reals, scaled by a power of two):
    the segment is the number of thresholds with ``X > U_s``, and
    ``t = (X − C_s)·(E_s·2^-k_s)``, where ``(X − C_s)·E_s`` is an integer below 2^53 (checked),
    so the one multiplication is exact.

    The encoder is a function of one integer, piecewise constant: where its pieces are proven over
    the whole stream range (:mod:`golden.ops.encode_pieces`, once per op) it is looked up in two
    gathers. Otherwise, when the tensor spans fewer distinct integers
    ``[min X, max X]`` than it has elements, that function is evaluated once per integer of the span
    and looked up (one gather); the saturation count is the histogram of ``X`` weighted by the
    saturated integers. The values and counts are those of the element-wise evaluation.
    """
    op = ctx.op
    out = ctx.spec(op.outputs[0])
    if out.kind != "codes" or out.codebook is None:
        raise GoldenError(f"{ctx.where()}: output {op.outputs[0]!r} is not a codes tensor")
    cb = out.codebook
    S = len(cb.segments)
    if len(cb.thresholds) != S - 1 or len(cb.encoder) != S:
        raise GoldenError(f"{ctx.where()}: codebook needs {S - 1} thresholds and {S} encoder stages")
    ctx.frac(op.inputs[0])  # the input must be a stream with a frac
    if X.numel() == 0:
        return X.clone()
    lo, hi = extremes(X)
    pieces = _pieces(ctx, cb)
    if pieces is not None and lo >= pieces.lo and hi <= pieces.hi:
        codes, sat = pieces.lookup(X, int(lo), int(hi))
        ctx.events["saturations"] += sat
        return codes
    reach = max(max(abs(lo - float(e.center)), abs(hi - float(e.center))) for e in cb.encoder)
    exact = reach * max(abs(float(e.mult)) for e in cb.encoder) < EXACT  # every (X − C_s)·E_s below 2^53
    if exact and hi - lo + 1 < X.numel():
        span = torch.arange(lo, hi + 1, dtype=F64)
        codes, sat = _encode_values(ctx, cb, span, lo, hi)
        idx = (X - lo).to(torch.int64).reshape(-1)
        if sat.any():
            ctx.events["saturations"] += int(torch.dot(torch.bincount(idx, minlength=span.numel()).to(F64),
                                                       sat.to(F64)))
        return codes.index_select(0, idx).view(X.shape)
    codes, sat = _encode_values(ctx, cb, X, lo, hi)
    ctx.events["saturations"] += int(torch.count_nonzero(sat))
    return codes


def _segments(cb, X: torch.Tensor) -> torch.Tensor | None:
    """Segment per element: min{s : x ≤ U_s}, S−1 if none (None for S = 1). The thresholds ascend, so the
    number exceeded is the segment."""
    if len(cb.segments) == 1:
        return None
    s = torch.gt(X, float(cb.thresholds[0])).to(torch.int64)
    for u in cb.thresholds[1:]:
        s += torch.gt(X, float(u))
    return s


def real_form(ctx: OpContext, cb, tables, X: torch.Tensor, lo: float, hi: float):
    """§3.4 element-wise on stream integers ``X`` (all within [lo, hi]): (segment or None, unclamped
    ``t = RND((X − C_s)·E_s·2^-k_s)``, clamped index ``q``), all float64 but the int64 segment."""
    s = _segments(cb, X)
    center = _per_segment([float(e.center) for e in cb.encoder], s)
    mult = [float(e.mult) for e in cb.encoder]
    reach = max(max(abs(lo - float(e.center)), abs(hi - float(e.center))) for e in cb.encoder)
    if reach * max(abs(m) for m in mult) >= EXACT:  # a cheap bound failed: the exact check, per element
        check_exact((X - center) * _per_segment(mult, s), 0, ctx.where(ctx.op.outputs[0]))
    scale = _per_segment([float(e.mult) * pow2(-int(e.shift)) for e in cb.encoder], s)
    t = rnd((X - center) * scale, ctx.numerics.rounding)
    qmin = _per_segment([float(sg.qmin) for sg in cb.segments], s)
    qmax = _per_segment([float(sg.qmax) for sg in cb.segments], s)
    if torch.is_tensor(qmin) or torch.is_tensor(qmax):
        q = torch.minimum(torch.maximum(t, torch.as_tensor(qmin, dtype=F64)), torch.as_tensor(qmax, dtype=F64))
    else:
        q = torch.clamp(t, qmin, qmax)
    return s, t, q


def _flat(cb, tables, q: torch.Tensor, s) -> torch.Tensor:
    """Flat codes ``base_s + q − qmin_s`` of the clamped indices ``q`` (consumed)."""
    return q.add_(_per_segment([float(b - sg.qmin) for b, sg in zip(tables.bases, cb.segments)], s))


def _tables(ctx: OpContext, cb) -> CodeTables:
    if "tables" not in ctx.const:  # per op, once per artifact
        ctx.const["tables"] = code_tables(cb)
    return ctx.const["tables"]


def _pieces(ctx: OpContext, cb):
    """The encoder as verified pieces over the whole stream range (:mod:`golden.ops.encode_pieces`), once per
    op and artifact; None where the real form is not exact over that range or the pieces are not proven."""
    if "pieces" not in ctx.const:
        tables = _tables(ctx, cb)
        lo, hi = (int(v) for v in signed_bounds(int(ctx.numerics.stream_bits)))
        reach = max(max(abs(lo - int(e.center)), abs(hi - int(e.center))) for e in cb.encoder)
        pieces = None
        if reach * max(abs(int(e.mult)) for e in cb.encoder) < EXACT:

            def form(P):
                s, t, q = real_form(ctx, cb, tables, P, float(lo), float(hi))
                seg = s if s is not None else torch.zeros(P.shape, dtype=torch.int64)
                return seg, t, _flat(cb, tables, q.clone(), s)

            pieces = encode_pieces.build(form, cb, lo, hi, ctx.numerics.rounding)
        ctx.const["pieces"] = pieces
    return ctx.const["pieces"]


def _encode_values(ctx: OpContext, cb, X: torch.Tensor, lo: float, hi: float):
    """(flat codes, saturated mask) of the stream integers ``X`` (all within [lo, hi])."""
    tables = _tables(ctx, cb)
    fused = _encode_half_up(ctx, cb, tables, X, _segments(cb, X), lo, hi)
    if fused is not None:
        return fused
    s, t, q = real_form(ctx, cb, tables, X, lo, hi)
    sat = q != t
    return _flat(cb, tables, q, s), sat


def _encode_half_up(ctx: OpContext, cb, tables, X: torch.Tensor, s, lo: float, hi: float):
    """The encoder in few passes for ``half_up``: ``code = ⌊(X − C_s)·M_s + (½ + off_s)⌋`` clamped to segment
    ``s``'s codes, with ``M_s = E_s·2^-k_s`` and ``off_s = base_s − qmin_s``; None where not provably exact.

    ``RND(t) + off = ⌊t + ½⌋ + off = ⌊t + ½ + off⌋`` (``off`` an integer) for ``t = (X − C)·M``. With
    ``k ≥ 1``, ``t`` and ``½ + off`` are integers times ``2^-k``, and while
    ``max|X − C|·E + 2^(k−1) + |off|·2^k < 2^53`` the product and the sum are exact: this is the
    element-wise real form's value."""
    if ctx.numerics.rounding != "half_up":
        return None
    for e, sg, b in zip(cb.encoder, cb.segments, tables.bases):
        k, E, C = int(e.shift), abs(int(e.mult)), float(e.center)
        reach = max(abs(lo - C), abs(hi - C))
        if k < 1 or reach * E + pow2(k - 1) + abs(b - int(sg.qmin)) * pow2(k) >= EXACT:
            return None
    C = _per_segment([float(e.center) for e in cb.encoder], s)
    M = _per_segment([float(e.mult) * pow2(-int(e.shift)) for e in cb.encoder], s)
    A = _per_segment([0.5 + float(b - sg.qmin) for sg, b in zip(cb.segments, tables.bases)], s)
    D = X - C
    if torch.is_tensor(M):
        t = torch.addcmul(torch.as_tensor(A, dtype=F64), D, M) if torch.is_tensor(A) else D.mul_(M).add_(A)
    else:
        t = D.mul_(M).add_(A)
    t = t.floor_()
    lo_c = _per_segment([float(b) for b in tables.bases], s)
    hi_c = _per_segment([float(b + int(sg.qmax) - int(sg.qmin)) for b, sg in zip(tables.bases, cb.segments)], s)
    if torch.is_tensor(lo_c) or torch.is_tensor(hi_c):
        q = torch.minimum(torch.maximum(t, torch.as_tensor(lo_c, dtype=F64)), torch.as_tensor(hi_c, dtype=F64))
    else:
        q = torch.clamp(t, lo_c, hi_c)
    return q, q != t
