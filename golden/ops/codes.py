"""Codebooks (§3): flat-code tables and the encoder stream → code (§3.4), real form."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from golden.numerics import F64, GoldenError, check_exact, pow2, rnd
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
    return torch.tensor(values, dtype=F64)[s]


def encode(ctx: OpContext, X: torch.Tensor) -> torch.Tensor:
    """§3.4 real form: segment by x ≤ U_s·2^-f, t = RND((x − C_s·2^-f)·E_s·2^(f−k_s)), clamp."""
    op = ctx.op
    f = ctx.frac(op.inputs[0])
    out = ctx.spec(op.outputs[0])
    if out.kind != "codes" or out.codebook is None:
        raise GoldenError(f"{ctx.where()}: output {op.outputs[0]!r} is not a codes tensor")
    cb = out.codebook
    S = len(cb.segments)
    if len(cb.thresholds) != S - 1 or len(cb.encoder) != S:
        raise GoldenError(f"{ctx.where()}: codebook needs {S - 1} thresholds and {S} encoder stages")
    tables = code_tables(cb)
    x = X * pow2(-f)
    s = None  # segment per element: min{s : x ≤ U_s}, S−1 if none
    if S > 1:
        s = torch.zeros(x.shape, dtype=torch.int64)
        for u in cb.thresholds:  # they ascend, so the number exceeded is the segment
            s += x > float(u) * pow2(-f)
    center = _per_segment([float(e.center) * pow2(-f) for e in cb.encoder], s)
    mult = _per_segment([float(e.mult) for e in cb.encoder], s)
    post = _per_segment([pow2(f - int(e.shift)) for e in cb.encoder], s)
    prod = (x - center) * mult  # (X − C_s)·E_s·2^-f, exact inside the envelope
    check_exact(prod, f, ctx.where(op.outputs[0]))
    t = rnd(prod * post, ctx.numerics.rounding)
    qmin = _per_segment([float(sg.qmin) for sg in cb.segments], s)
    qmax = _per_segment([float(sg.qmax) for sg in cb.segments], s)
    q = ctx.saturate_count(t, qmin, qmax)
    base = _per_segment([float(b) for b in tables.bases], s)
    return (q - qmin) + base
