"""A two-region codebook in integers (docs/arithmetic.md §3): snapping the calibrated real
segments to a grid unit, building the encoder (§3.4) and checking it against the real
boundaries.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from calib.export_fixedpoint import (
    ENC_MULT_BITS,
    GRID_UNIT_M_BITS,
    ExportError,
    ceil_log2,
    pow2,
    round_half_away,
    round_half_up,
)
from calib.quant.two_region import RealSegment
from intsim.artifact import Codebook, EncoderStage, Segment
from intsim.rounding import MAX_SHIFT, RoundingMode, round_shift


def snap_segments(real: tuple[RealSegment, ...], unit_m: int, unit_e: int) -> tuple[Segment, ...]:
    """Snap real segments to integers of the unit.

    The dense (or uniform) segment keeps origin 0 and gets ``d = round(Δ/u) ≥ 1``.
    A tail's origin is *defined* as the snapped dense end (``d·qmax`` above,
    ``d·qmin`` below, i.e. the snapped ±bp), and its step is re-derived so the
    tail still ends at the real bound (u or l): snapping origin and step
    independently could make a tail overlap the dense region (§3.1 needs
    strictly increasing values).
    """
    unit = unit_m * 2.0 ** -unit_e
    dense = [s for s in real if s.role in ("dense", "uniform")]
    if len(dense) != 1:
        raise ExportError(f"a codebook needs exactly one dense/uniform segment, got roles {[s.role for s in real]}")
    dn = dense[0]
    d = max(1, round_half_away(dn.step / unit))
    out = []
    for s in real:
        if s is dn:
            out.append(Segment(0, d, s.qmin, s.qmax))
        elif s.role == "pos_tail":  # q in [1, qmax], ends at s.hi (= u)
            origin = d * dn.qmax
            out.append(Segment(origin, max(1, round_half_away((s.hi / unit - origin) / s.qmax)), s.qmin, s.qmax))
        elif s.role == "neg_tail":  # q in [qmin, -1], ends at s.lo (= l)
            origin = d * dn.qmin
            out.append(Segment(origin, max(1, round_half_away((s.lo / unit - origin) / s.qmin)), s.qmin, s.qmax))
        else:
            raise ExportError(f"unknown segment role {s.role!r}")
    return tuple(out)


def check_increasing(segs: tuple[Segment, ...], where: str) -> None:
    for a, b in zip(segs[:-1], segs[1:]):
        if not a.origin + a.step * a.qmax < b.origin + b.step * b.qmin:
            raise ExportError(f"{where}: snapped codebook segments overlap ({a} then {b}); the unit is too coarse")


def max_abs_g(segs) -> int:
    return max(max(abs(s.origin + s.step * s.qmin), abs(s.origin + s.step * s.qmax)) for s in segs)


def grid_unit(real, grid_bits: int, where: str) -> tuple[int, int, tuple[Segment, ...]]:
    """Grid unit (8-bit mantissa, rounded up) so that every G fits ``grid_bits`` signed bits."""
    ext = max(max(abs(s.lo), abs(s.hi)) for s in real)
    gmax = 2 ** (grid_bits - 1) - 1
    target = ext / gmax
    unit_e = GRID_UNIT_M_BITS - 1 - math.floor(math.log2(target))
    unit_m = max(1, math.ceil(target * 2.0 ** unit_e))
    for _ in range(1 << GRID_UNIT_M_BITS):
        if unit_m >= 1 << GRID_UNIT_M_BITS:
            unit_m, unit_e = (unit_m + 1) // 2, unit_e - 1
        segs = snap_segments(real, unit_m, unit_e)
        if max_abs_g(segs) <= gmax:
            check_increasing(segs, where)
            return unit_m, unit_e, segs
        unit_m += 1
    raise ExportError(f"{where}: no grid unit fits grid_bits={grid_bits}: the codebook needs finer steps than a "
                      f"{grid_bits}-bit grid holds; raise grid_bits (≤ 16), use fewer activation bits or the split "
                      f"realization")


def boundaries(real: tuple[RealSegment, ...]):
    """Per adjacent pair: (lower-segment-is-negative-tail) — the closed dense region of §3.3."""
    return [a.role == "neg_tail" for a in real[:-1]]


def build_encoder(segs: tuple[Segment, ...], neg_tail_below: list[bool], unit_m: int, unit_e: int, f_in: int,
                  rounding: str, where: str, enc_bits: int = ENC_MULT_BITS
                  ) -> tuple[tuple[int, ...], tuple[EncoderStage, ...]]:
    """Thresholds and encoder stages from the snapped codebook (§3.4).

    A value's stream integer at ``f_in`` is ``V = G·unit_m·2^(f_in − unit_e)``.
    Boundaries sit at the snapped breakpoints (dense region closed): above a
    dense/one-sided segment at ``floor(V(origin of the next tail))``; below a
    negative tail's end at ``ceil(V(its origin)) − 1``. Each threshold is then
    clamped so that both roundings of every boundary code's value stay in their
    own segment. Centre ``C = round(V(origin))`` (for ``floor`` rounding moved
    down half a step, so the floor encoder still rounds to nearest); ``E =
    round(2^k / D)`` with D the step in stream units and k chosen so E has
    ``enc_bits`` bits (export uses min(ENC_MULT_BITS, mult_bits, 51 − stream_bits):
    E within mult_bits, ``(X − C)·E`` below 2^52).
    """
    scale = Fraction(unit_m) * pow2(f_in - unit_e)

    def V(g: int) -> Fraction:
        return g * scale

    thresholds = []
    for i, (lo, hi) in enumerate(zip(segs[:-1], segs[1:])):
        if neg_tail_below[i]:
            u = math.ceil(V(lo.origin)) - 1
        else:
            u = math.floor(V(hi.origin))
        top = math.ceil(V(lo.origin + lo.step * lo.qmax))
        bottom = math.floor(V(hi.origin + hi.step * hi.qmin)) - 1
        if top > bottom:
            raise ExportError(f"{where}: segments {i} and {i + 1} are closer than two stream units at frac {f_in}; "
                              f"raise stream_bits")
        thresholds.append(min(max(u, top), bottom))
    stages = []
    # The mode's direction: R(1, 2) + R(−1, 2) is −1 for floor (¼ and −¼ go down), +1 for a mode that
    # rounds toward +inf, 0 for the modes to nearest. A directed mode's centre moves half a step against
    # it, so that the encoder still picks the nearest grid point.
    direction = int(round_shift(np.array([1, -1], dtype=np.int64), 2, RoundingMode.parse(rounding)).sum())
    for s in segs:
        D = s.step * scale
        c0 = V(s.origin) + direction * D / 2
        k = enc_bits - 1 + ceil_log2(D)
        k = min(max(k, 0), MAX_SHIFT)
        E = round_half_up(pow2(k) / D)
        if E < 1:
            raise ExportError(f"{where}: encoder step {float(D):.3g} stream units is too large for a {MAX_SHIFT}-bit shift")
        stages.append(EncoderStage(round_half_up(c0), int(E), int(k)))
    return tuple(int(t) for t in thresholds), tuple(stages)


def encode_stream(codebook: Codebook, X: np.ndarray, rounding: str) -> tuple[np.ndarray, int]:
    """Reference encoder (§3.4, integer form): stream integers → flat codes, and the saturation count."""
    X = np.asarray(X, dtype=np.int64)
    seg = np.zeros(X.shape, dtype=np.int64)
    for u in codebook.thresholds:
        seg += (X > u).astype(np.int64)
    codes = np.zeros(X.shape, dtype=np.int64)
    sats = 0
    for s_i, (s, st, base) in enumerate(zip(codebook.segments, codebook.encoder, codebook.bases)):
        m = seg == s_i
        if not m.any():
            continue
        t = round_shift((X[m] - st.center) * st.mult, st.shift, rounding)
        q = np.clip(t, s.qmin, s.qmax)
        sats += int(np.count_nonzero(q != t))
        codes[m] = base + q - s.qmin
    return codes, sats


def check_codebook(codebook: Codebook, f_in: int, rounding: str) -> list[str]:
    """Encoding each code's decoded value (its stream integer, rounded down and up) must return that code.

    Returns a list of mismatch descriptions (empty when consistent).
    """
    _, _, grid = codebook.code_table()
    scale = Fraction(codebook.unit_m) * pow2(f_in - codebook.unit_e)
    vals = [int(g) * scale for g in grid]
    problems = []
    for variant, fn in (("floor", math.floor), ("ceil", math.ceil)):
        X = np.array([fn(v) for v in vals], dtype=np.int64)
        codes, _ = encode_stream(codebook, X, rounding)
        bad = np.nonzero(codes != np.arange(len(vals)))[0]
        for c in bad[:5]:
            problems.append(f"code {c} (G={int(grid[c])}, stream {variant} {int(X[c])}) encodes to {int(codes[c])}")
    return problems
