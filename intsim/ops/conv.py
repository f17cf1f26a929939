"""``conv2d`` and ``conv_transpose2d`` over codes (arithmetic.md §5).

The wrappers check shapes, build the per-code tables and per-accumulator
multipliers of the realization (§5.3), decide the accumulation path (§5.4),
run :func:`intsim.kernels.conv.conv_kernel` and raise
:class:`~intsim.overflow.EngineOverflowError` for the ``error`` policy.

Accumulator layout (the same as :mod:`intsim.bounds`): split, per segment ``s``
in order, ``P_s`` then ``Q_s`` when ``origin_s ≠ 0``; grid, a single ``A``.
The engine takes the ordered/unordered decision from
:func:`intsim.bounds.conv_can_overflow` (the load-time analysis);
:func:`conv_can_overflow` here is the same test on bare arrays, for direct calls.
"""
from __future__ import annotations

import numpy as np

from intsim.artifact import Codebook, Numerics
from intsim.bounds import codebook_max_abs_grid
from intsim.kernels import conv as K
from intsim.overflow import EngineOverflowError, OverflowPolicy
from intsim.rounding import MAX_SHIFT, RoundingMode


def _pair(v, what: str) -> tuple[int, int]:
    if np.ndim(v) == 0:
        return int(v), int(v)
    v = [int(x) for x in v]
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair, got {v}")
    return v[0], v[1]


def _check_codes(codes: np.ndarray, codebook: Codebook, name: str) -> np.ndarray:
    c = np.ascontiguousarray(codes, dtype=np.int64)
    if c.ndim != 3:
        raise ValueError(f"{name}: codes must be H×W×C, got shape {c.shape}")
    if c.size and (int(c.min()) < 0 or int(c.max()) >= codebook.num_codes):
        raise ValueError(f"{name}: codes outside [0, {codebook.num_codes})")
    return c


def accumulator_layout(codebook: Codebook, realization: str) -> list[tuple[str, int | None, int]]:
    """``(kind, segment, a_j)`` per accumulator (§5.3; ``a_j`` of §5.4).

    kind "P" (Σ w·q, a = max|q| of the segment), "Q" (Σ w, a = 1) or "A" (Σ w·G,
    a = max|G| of the codebook, segment None).
    """
    if realization == "split":
        out: list[tuple[str, int | None, int]] = []
        for s_i, s in enumerate(codebook.segments):
            out.append(("P", s_i, max(abs(s.qmin), abs(s.qmax))))
            if s.origin != 0:
                out.append(("Q", s_i, 1))
        return out
    if realization == "grid":
        return [("A", None, codebook_max_abs_grid(codebook))]
    raise ValueError(f"unknown realization {realization!r} (expected 'split' or 'grid')")


def conv_can_overflow(weight: np.ndarray, codebook: Codebook, realization: str, acc_bits: int) -> bool:
    """True iff some ``W_j = max_co Σ_{taps,ci} |w[co,…]|·a_j > 2^(acc_bits−1) − 1`` (§5.4).

    ``weight`` int [Co, kh, kw, Ci/g] (OHWI). Exact Python-int comparison; equal to
    :func:`intsim.bounds.conv_can_overflow` for the op holding these arrays.
    """
    w = np.asarray(weight).astype(np.int64)
    # |w| ≤ 2^15 (int8/int16 weights) and the element count is an array size: no int64 wrap.
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    limit = (1 << (int(acc_bits) - 1)) - 1
    return any(l1 * a > limit for _, _, a in accumulator_layout(codebook, realization))


def _plan(codebook: Codebook, realization: str, w_mant: np.ndarray):
    """Per-code tables, per-segment accumulator indices and multipliers M_j[co] (§5.3).

    Returns (seg_of, val_of, pidx, qidx, mult[nacc, Co]); multipliers are exact int64
    products of the stored mantissas (bounded by the load-time envelope, §9).
    """
    seg_of, q_of, g_of = codebook.code_table()
    layout = accumulator_layout(codebook, realization)
    S = len(codebook.segments)
    pidx = np.full(S, -1, dtype=np.int64)
    qidx = np.full(S, -1, dtype=np.int64)
    base = np.asarray(w_mant, dtype=np.int64) * np.int64(codebook.unit_m)  # m_w[co]·unit_m
    mult = np.zeros((len(layout), base.shape[0]), dtype=np.int64)
    for j, (kind, seg, _) in enumerate(layout):
        if kind == "A":
            pidx[:] = j
            mult[j] = base
        elif kind == "P":
            pidx[seg] = j
            mult[j] = base * np.int64(codebook.segments[seg].step)  # M_{P,s} = m_w·unit_m·d_s
        else:
            qidx[seg] = j
            mult[j] = base * np.int64(codebook.segments[seg].origin)  # M_{Q,s} = m_w·unit_m·e_s
    if realization == "grid":
        if codebook.grid_bits is not None:
            lim = 1 << (codebook.grid_bits - 1)
            if np.any(g_of < -lim) or np.any(g_of >= lim):
                raise ValueError(f"grid values do not fit grid_bits={codebook.grid_bits} (§5.3)")
        val_of = g_of
    else:
        val_of = q_of
    return seg_of.astype(np.int64), val_of.astype(np.int64), pidx, qidx, mult


def _run(codes, codebook, weight_ohwi, w_mant, bias, groups, iy_of, ix_of, w_exp, f_out, numerics: Numerics,
         name: str, ordered: bool | None):
    co_n = weight_ohwi.shape[0]
    if np.shape(w_mant) != (co_n,) or np.shape(bias) != (co_n,):
        raise ValueError(f"{name}: w_mant and bias must have shape ({co_n},), got {np.shape(w_mant)}, {np.shape(bias)}")
    nshift = int(w_exp) + int(codebook.unit_e) - int(f_out)
    if not 0 <= nshift <= MAX_SHIFT:
        raise ValueError(f"{name}: rescale shift n = w_exp + unit_e − f_out = {nshift} outside [0, {MAX_SHIFT}] (§5.2)")
    realization = numerics.realization
    seg_of, val_of, pidx, qidx, mult = _plan(codebook, realization, w_mant)
    if ordered is None:
        ordered = conv_can_overflow(weight_ohwi, codebook, realization, numerics.acc_bits)
    w = np.asarray(weight_ohwi)
    if w.size and (int(w.min()) < -(1 << 31) or int(w.max()) >= 1 << 31):
        raise ValueError(f"{name}: weights must fit 32 bits (artifacts store int8/int16)")
    wt = np.ascontiguousarray(np.transpose(w.astype(np.int32), (1, 2, 3, 0)))
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    out = np.empty((ho, wo, co_n), dtype=np.int64)
    acc_ev = np.zeros(ho, dtype=np.int64)
    st_ev = np.zeros(ho, dtype=np.int64)
    status = np.zeros(ho, dtype=np.int64)
    status_ox = np.zeros(ho, dtype=np.int64)
    policy = OverflowPolicy.parse(numerics.overflow)
    K.conv_kernel(codes, wt, seg_of, val_of, pidx, qidx, mult.shape[0], iy_of, ix_of, int(groups),
                  mult, np.asarray(bias, dtype=np.int64), nshift, int(RoundingMode.parse(numerics.rounding)),
                  bool(ordered), int(numerics.acc_bits), int(policy), int(numerics.stream_bits),
                  out, acc_ev, st_ev, status, status_ox)
    bad = np.flatnonzero(status)
    if bad.size:
        oy = int(bad[0])
        what = "accumulator" if status[oy] == K.STATUS_ACC_OVERFLOW else "output stream"
        bits = numerics.acc_bits if status[oy] == K.STATUS_ACC_OVERFLOW else numerics.stream_bits
        raise EngineOverflowError(
            f"{name}: {what} overflows {bits} bits at output row {oy}, column {int(status_ox[oy])} "
            f"(overflow policy 'error', arithmetic.md §4)"
        )
    S = len(codebook.segments)
    macs_seg = K.conv_macs(codes, seg_of, S, iy_of, ix_of, co_n // int(groups))
    if realization == "grid":
        macs = {"all": int(macs_seg.sum())}
    else:
        macs = {str(s): int(macs_seg[s]) for s in range(S)}
    events = {
        "macs": macs,
        "acc_overflow": int(acc_ev.sum()),
        "stream_overflow": int(st_ev.sum()),
        "saturations": 0,
        "ordered": bool(ordered),
    }
    return out, events


def conv2d(codes: np.ndarray, codebook: Codebook, weight: np.ndarray, w_mant: np.ndarray, bias: np.ndarray, *,
           w_exp: int, f_out: int, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
           numerics: Numerics = Numerics(), name: str = "conv2d",
           ordered: bool | None = None) -> tuple[np.ndarray, dict]:
    """2-D convolution of codes (arithmetic.md §5.1–§5.4).

    codes int64[H, W, Ci] (flat codes of ``codebook``); weight int[Co, kh, kw, Ci/g]
    (OHWI); w_mant int64[Co] (m_w); bias int64[Co] (units 2^-(w_exp+unit_e));
    ``w_exp`` = k_w; ``f_out`` the output stream frac. ``ordered``: None decides
    by the worst case of §5.4; True/False forces a path (tests; forcing False on
    an op that can overflow gives int64 sums without the policy).
    Returns (int64[Ho, Wo, Co] stream, events with macs, acc_overflow,
    stream_overflow, saturations, ordered).
    """
    c = _check_codes(codes, codebook, name)
    w = np.asarray(weight)
    groups = int(groups)
    if w.ndim != 4:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci/g], got shape {w.shape}")
    co_n, kh, kw, cig = w.shape
    if groups < 1 or co_n % groups or cig * groups != c.shape[2]:
        raise ValueError(f"{name}: channels inconsistent: input {c.shape[2]}, weight {w.shape}, groups {groups}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{name}: stride/dilation must be >= 1 and padding >= 0")
    iy_of = K.conv2d_tap_table(c.shape[0], kh, sh, ph, dh)
    ix_of = K.conv2d_tap_table(c.shape[1], kw, sw, pw, dw)
    return _run(c, codebook, w, w_mant, bias, groups, iy_of, ix_of, w_exp, f_out, numerics, name, ordered)


def conv_transpose2d(codes: np.ndarray, codebook: Codebook, weight: np.ndarray, w_mant: np.ndarray,
                     bias: np.ndarray, *, w_exp: int, f_out: int, stride=(1, 1), padding=(0, 0),
                     output_padding=(0, 0), numerics: Numerics = Numerics(), name: str = "conv_transpose2d",
                     ordered: bool | None = None) -> tuple[np.ndarray, dict]:
    """Transposed convolution, gather form (arithmetic.md §5.5; groups 1, dilation 1).

    weight int[Co, kh, kw, Ci] (torch's [Ci, Co, kh, kw] transposed, not
    flipped); other arguments and the result as :func:`conv2d`.
    """
    c = _check_codes(codes, codebook, name)
    w = np.asarray(weight)
    if w.ndim != 4 or w.shape[3] != c.shape[2]:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci={c.shape[2]}], got shape {w.shape}")
    _, kh, kw, _ = w.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
    if min(sh, sw) < 1 or min(ph, pw, oph, opw) < 0:
        raise ValueError(f"{name}: stride must be >= 1, padding and output_padding >= 0")
    if oph >= sh or opw >= sw:
        raise ValueError(f"{name}: output_padding {(oph, opw)} must be smaller than stride {(sh, sw)}")
    iy_of = K.conv_transpose2d_tap_table(c.shape[0], kh, sh, ph, oph)
    ix_of = K.conv_transpose2d_tap_table(c.shape[1], kw, sw, pw, opw)
    return _run(c, codebook, w, w_mant, bias, 1, iy_of, ix_of, w_exp, f_out, numerics, name, ordered)
