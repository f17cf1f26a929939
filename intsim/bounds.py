"""Load-time worst-case analysis: accumulator widths (arithmetic.md §5.4) and the
exactness envelope (§9).

Everything here is computed with exact Python integers (never int64 arithmetic
that could wrap), so a hostile artifact cannot make the analysis itself
overflow. The functions assume a *structurally* valid artifact (kinds, channel
counts, array shapes already checked by :mod:`intsim.validate`, which calls
them last).

Units: every bound is a magnitude in integer units of the quantity it bounds
(stream LSBs, code indices, grid units, accumulator units, the integer ``I`` of
§1.5); "bits" are signed two's complement widths.

Accumulator layout (shared with the engine, §5.3): split realization, per
segment ``s`` in order, ``P{s}`` then ``Q{s}`` when ``origin_s ≠ 0``; grid
realization, a single ``A``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intsim.artifact_model import Artifact, OpSpec
from intsim.codebook_range import (  # noqa: F401  (validate and inspect read them here)
    codebook_max_abs_grid,
    codebook_max_abs_index,
    codes_value_bound,
    segment_grid_extremes,
)
from intsim.ops.bicubic import MAX_FACTOR as MAX_BICUBIC_FACTOR
from intsim.ops.bicubic import MAX_TAP_BITS, tap_l1_max
from intsim.ops.opdef import ops_where

EXACT_LIMIT = 1 << 53  # §9: every integer intermediate must stay below 2^53
INT64_MAX = (1 << 63) - 1

# Ops whose output frac must equal the input frac (§6.5–6.12): no rescale.
SAME_FRAC_OPS = ops_where(same_frac=True)  # the op registry's same_frac (intsim/ops/opdef.py)


# --------------------------------------------------------------------------
# small helpers


def worst_case_bits(value: int) -> int:
    """Signed two's complement bits needed to hold every integer in ``[−|value|, |value|]``.

    ``worst_case_bits(0) == 1``, ``worst_case_bits(127) == 8``,
    ``worst_case_bits(128) == 9`` (``+128`` needs 9 bits even though ``−128`` fits 8).
    A bound ``W ≤ 2^(B−1) − 1`` is exactly ``worst_case_bits(W) ≤ B`` (§5.4).
    """
    return abs(int(value)).bit_length() + 1


def _sat64(v: int) -> int:
    """Clamp a Python int into int64 (only for reporting arrays; decisions use exact ints)."""
    return max(-INT64_MAX, min(INT64_MAX, v))


def _pyints(a: np.ndarray) -> list[int]:
    return [int(x) for x in np.asarray(a).reshape(-1).tolist()]


def _max_abs(a: np.ndarray) -> int:
    vals = _pyints(a)
    return max((abs(v) for v in vals), default=0)


def _frac(art: Artifact, tensor: str) -> int:
    return art.tensors[tensor].frac


# --------------------------------------------------------------------------
# conv accumulators (§5.3, §5.4)


@dataclass(eq=False)
class AccumulatorBound:
    """One conv accumulator ``j`` of §5.3 and its worst case (§5.4).

    ``name``: ``'P0'``, ``'Q2'``, ``'A'``…; ``segment``: ``s`` for P/Q, ``None`` for A.
    ``multiplier``: int64[Co], ``M_j[co]`` (``m_w·unit_m·d_s``, ``m_w·unit_m·e_s`` or
    ``m_w·unit_m``), saturated to ±(2^63−1) only if the exact product does not fit
    (such an artifact is refused by the envelope anyway).
    ``worst``: int64[Co], ``W_j[co] = Σ_{taps,ci} |w[co,…]| · a_j`` in accumulator units
    (same saturation note). ``a_j`` is the per-term magnitude (max |q|, 1 or max |G|).
    """

    name: str
    segment: int | None
    multiplier: np.ndarray
    worst: np.ndarray
    a: int = 0

    @property
    def worst_max(self) -> int:
        """``W_j = max_co W_j[co]`` (§5.4)."""
        return int(self.worst.max()) if self.worst.size else 0

    @property
    def bits(self) -> int:
        """Signed bits the accumulator needs so that it cannot overflow."""
        return worst_case_bits(self.worst_max)


def _weight_l1(art: Artifact, op: OpSpec) -> list[int]:
    """``Σ_{taps,ci} |w[co,…]|`` per output channel, exact (int16 −32768 handled)."""
    w = np.asarray(art.array(op, "weight")).astype(np.int64)
    if w.shape[0] == 0:
        return []
    # |w| ≤ 2^15 and the element count is an array size, so the int64 sum cannot wrap.
    return _pyints(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1))


def _weight_maxabs(art: Artifact, op: OpSpec) -> list[int]:
    w = np.asarray(art.array(op, "weight")).astype(np.int64)
    if w.shape[0] == 0 or w.size == 0:
        return [0] * w.shape[0]
    return _pyints(np.abs(w.reshape(w.shape[0], -1)).max(axis=1))


def _conv_terms(art: Artifact, op: OpSpec) -> list[tuple[str, int | None, int, list[int], list[int]]]:
    """Exact ``(name, segment, a_j, M_j[co], W_j[co])`` per accumulator, Python ints."""
    cb = art.tensors[op.inputs[0]].codebook
    w_mant = _pyints(art.array(op, "w_mant"))
    l1 = _weight_l1(art, op)
    base = [m * cb.unit_m for m in w_mant]
    out = []
    if art.numerics.realization == "grid":
        a = codebook_max_abs_grid(cb)
        out.append(("A", None, a, base, [x * a for x in l1]))
    else:
        for s_i, seg in enumerate(cb.segments):
            a = max(abs(seg.qmin), abs(seg.qmax))
            out.append((f"P{s_i}", s_i, a, [b * seg.step for b in base], [x * a for x in l1]))
            if seg.origin != 0:
                out.append((f"Q{s_i}", s_i, 1, [b * seg.origin for b in base], list(l1)))
    return out


def conv_multipliers(art: Artifact, op: OpSpec) -> list[tuple[str, list[int]]]:
    """Exact ``(name, [M_j[co] for co])`` per accumulator (§5.3), Python ints.

    split: ``M_{P,s} = m_w·unit_m·d_s``, ``M_{Q,s} = m_w·unit_m·e_s``; grid: ``M_A = m_w·unit_m``.
    """
    return [(name, mult) for name, _, _, mult, _ in _conv_terms(art, op)]


def conv_accumulators(art: Artifact, op: OpSpec) -> list[AccumulatorBound]:
    """The accumulators of a ``conv2d``/``conv_transpose2d`` op with their §5.4 worst cases.

    split: ``P_s`` for each segment, ``Q_s`` when ``e_s ≠ 0``; grid: ``A``. For the
    transposed conv the sum runs over *all* taps, as §5.4 states (an upper bound:
    a given output gathers only the taps whose division is exact).
    """
    out = []
    for name, seg, a, mult, worst in _conv_terms(art, op):
        out.append(AccumulatorBound(
            name=name, segment=seg,
            multiplier=np.array([_sat64(m) for m in mult], dtype=np.int64),
            worst=np.array([_sat64(w) for w in worst], dtype=np.int64), a=a))
    return out


def conv_can_overflow(art: Artifact, op: OpSpec) -> bool:
    """True iff some ``W_j > 2^(acc_bits−1) − 1``: the op must be accumulated in the
    ordered way with the overflow policy after every addition (§5.4)."""
    limit = (1 << (art.numerics.acc_bits - 1)) - 1
    return any(max(worst, default=0) > limit for _, _, _, _, worst in _conv_terms(art, op))


def accumulator_overruns(art: Artifact) -> list[tuple[str, int]]:
    """``(conv op name, signed bits its worst-case accumulator needs)`` for every conv whose §5.4 worst
    case does not fit ``numerics.acc_bits``, widest first. Under overflow ``error`` each is an op that an
    input reaching the worst case stops (a bound, not a prediction: typical images stay far below it)."""
    out = []
    for op in art.ops:
        if op.op in ("conv2d", "conv_transpose2d"):
            bits = max(worst_case_bits(max(worst, default=0)) for *_, worst in _conv_terms(art, op))
            if bits > art.numerics.acc_bits:
                out.append((op.name, bits))
    return sorted(out, key=lambda t: -t[1])


def conv_envelope(art: Artifact, op: OpSpec) -> tuple[int, str]:
    """Largest integer intermediate of a conv (§5.3, §9) and what it is.

    ``I[co] = Σ_j M_j[co]·acc_j + B[co]`` with ``|acc_j| ≤ min(W_j[co], 2^(acc_bits−1))``
    (§9); the accumulators themselves (a running sum in the ordered path can exceed
    the range by one term before the policy acts) and the multipliers are bounded too.
    """
    acc_lim = 1 << (art.numerics.acc_bits - 1)
    bias = _pyints(art.array(op, "bias"))
    wmax = _weight_maxabs(art, op)
    terms = _conv_terms(art, op)
    best, what = 0, "nothing"
    co_n = len(bias)
    for co in range(co_n):
        total = abs(bias[co])
        for name, _, a, mult, worst in terms:
            acc = min(worst[co], acc_lim)
            total += abs(mult[co]) * acc
            run = min(worst[co], acc_lim + wmax[co] * a)
            if run > best:
                best, what = run, f"accumulator {name} of output channel {co}"
            if abs(mult[co]) > best:
                best, what = abs(mult[co]), f"multiplier M_{name}[{co}] = m_w·unit_m·(d_s|e_s|1)"
        if total > best:
            best, what = total, f"I[{co}] = Σ_j M_j·acc_j + B (§5.3)"
    return best, what


# --------------------------------------------------------------------------
# derived shifts (§2: every shift must be in [0, 62])


def op_shifts(art: Artifact, op: OpSpec) -> dict[str, int]:
    """Every right shift ``n`` (and left alignment shift) an op applies, by name.

    Shifts named ``n``: the single rounding of §1.5; ``align*``: exact left shifts
    ``2^(F−f)`` of §6.3/§6.4; ``left``/``right``: the lut index rescale (§6.17);
    attribute shifts under their attribute names. Encoder shifts ``k_s`` live on the
    codebook and are checked with it (§3.4).
    """
    a, kind = op.attrs, op.op
    if kind == "image_in":
        return {"n": a["exp"] - _frac(art, op.outputs[0])}  # §6.1
    if kind == "image_out":
        return {"n": _frac(art, op.inputs[0]) + a["exp"]}  # §6.2
    if kind in ("conv2d", "conv_transpose2d"):
        cb = art.tensors[op.inputs[0]].codebook
        return {"n": a["w_exp"] + cb.unit_e - _frac(art, op.outputs[0])}  # §5.2
    if kind == "add":
        fa, fb, fo = _frac(art, op.inputs[0]), _frac(art, op.inputs[1]), _frac(art, op.outputs[0])
        F = max(fa, fb, fo)
        return {"n": F - fo, "align_a": F - fa, "align_b": F - fb}  # §6.3
    if kind == "concat":
        fo = _frac(art, op.outputs[0])
        out = {}
        for i, t in enumerate(op.inputs):
            fi = _frac(art, t)
            Fi = max(fi, fo)
            out[f"align{i}"] = Fi - fi
            out[f"n{i}"] = Fi - fo  # §6.4
        return out
    if kind == "mul":
        return {"n": _frac(art, op.inputs[0]) + _frac(art, op.inputs[1]) - _frac(art, op.outputs[0])}  # §6.14
    if kind == "lut":
        fi, k = _frac(art, op.inputs[0]), a["lut_exp"]
        return {"left": max(0, k - fi), "right": max(0, fi - k)}  # §6.17
    if kind == "upsample_bicubic":
        return {"n": 2 * a["tap_bits"]}  # §6.18
    if kind in ("leaky_relu", "prelu", "upsample_bilinear", "mean_pool"):
        return {"shift": a["shift"]}
    if kind == "std_pool":
        return {"shift": a["shift"], "pre_shift": a["pre_shift"]}
    return {}


# --------------------------------------------------------------------------
# tensor value bounds and op envelopes (§9)


def tensor_value_bounds(art: Artifact) -> dict[str, int]:
    """Max ``|value|`` of every tensor, in its own integer units (§9).

    images: 255; streams: ``2^(stream_bits−1)``, except outputs of ``lut``:
    ``max |lut|``; codes: the codebook extreme as a weight multiplicand, i.e.
    ``max |q|`` (split) or ``max |G|`` (grid) — see :func:`codes_value_bound`.
    """
    sb = art.numerics.stream_bits
    producer = {t: op for op in art.ops for t in op.outputs}
    out: dict[str, int] = {}
    for name, t in art.tensors.items():
        if t.kind == "image":
            out[name] = 255
        elif t.kind == "codes":
            out[name] = codes_value_bound(t.codebook, art.numerics.realization)
        else:
            op = producer.get(name)
            if op is not None and op.op == "lut":
                out[name] = _max_abs(art.array(op, "lut"))
            else:
                out[name] = 1 << (sb - 1)
    return out


def _encoder_envelope(art: Artifact, op: OpSpec, v_in: int) -> tuple[int, str]:
    """``max |(X − C_s)·E_s|`` over the inputs each segment can receive (§3.4b).

    Segment ``s`` only sees ``X`` in ``(U_{s−1}, U_s]`` (3.4a) intersected with the
    stream's range ``[−V, V]``, so the bound is per segment, not ``(V + |C_s|)·E_s``.
    """
    cb = art.tensors[op.outputs[0]].codebook
    S = len(cb.segments)
    best, what = 0, "nothing"
    for s, enc in enumerate(cb.encoder):
        lo = -v_in if s == 0 else max(-v_in, cb.thresholds[s - 1] + 1)
        hi = v_in if s == S - 1 else min(v_in, cb.thresholds[s])
        if lo > hi:
            continue  # no stream value reaches this segment
        b = max(abs(lo - enc.center), abs(hi - enc.center)) * enc.mult
        if b > best:
            best, what = b, f"(X − C_{s})·E_{s} of segment {s} (§3.4)"
    return best, what


def _op_envelope(art: Artifact, op: OpSpec, V: dict[str, int]) -> tuple[int, str]:
    """Largest integer intermediate of one op and a short description of it (§9)."""
    a, kind = op.attrs, op.op
    vin = V[op.inputs[0]] if op.inputs else 0
    if kind == "image_in":
        m, o = _pyints(art.array(op, "mult")), _pyints(art.array(op, "offset"))
        return max((255 * abs(mc) + abs(oc) for mc, oc in zip(m, o)), default=0), "I = P·m_c + o_c (§6.1)"
    if kind == "image_out":
        m, o = _pyints(art.array(op, "mult")), _pyints(art.array(op, "offset"))
        fi = _frac(art, op.inputs[0])
        return (max((vin * abs(mc) + abs(oc) * (1 << fi) for mc, oc in zip(m, o)), default=0),
                "I = X·m_c + o_c·2^f_i (§6.2)")
    if kind == "encode":
        return _encoder_envelope(art, op, vin)
    if kind in ("conv2d", "conv_transpose2d"):
        return conv_envelope(art, op)
    if kind == "add":
        sh = op_shifts(art, op)
        return (V[op.inputs[0]] << sh["align_a"]) + (V[op.inputs[1]] << sh["align_b"]), "I = X_a·2^(F−f_a) + X_b·2^(F−f_b) (§6.3)"
    if kind == "concat":
        sh = op_shifts(art, op)
        return max(V[t] << sh[f"align{i}"] for i, t in enumerate(op.inputs)), "X_i·2^(F_i−f_i) (§6.4)"
    if kind in ("split", "relu", "clamp", "pad", "pixel_shuffle", "upsample_nearest"):
        return vin, "input value (no arithmetic)"
    if kind == "leaky_relu":
        return vin * abs(a["mult"]), "X·M (§6.7)"
    if kind == "prelu":
        return vin * _max_abs(art.array(op, "mult")), "X·M[c] (§6.7)"
    if kind == "upsample_bilinear":
        r2 = (2 * a["factor"]) ** 2
        return r2 * vin * abs(a["mult"]), "I·M with I = Σ wy·wx·X ≤ (2r)²·|X| (§6.10)"
    if kind == "upsample_bicubic":
        if not 1 <= a["tap_bits"] <= MAX_TAP_BITS or not 1 <= a["factor"] <= MAX_BICUBIC_FACTOR:
            return 1 << 62, f"tap_bits {a['tap_bits']} or factor {a['factor']} out of range (§6.18)"
        l1 = tap_l1_max(a["factor"], a["tap_bits"])
        return l1 * l1 * vin, "I = Σ Wy·Wx·X ≤ (max Σ|W|)²·|X| (§6.18)"
    if kind == "mean_pool":
        # Size-independent part: Σ|X|·M_N ≤ max|X|·(2^k + N)/2 < max|X|·(2^k + N); at load N ≥ 1
        # is all that is known, the run time check of §6.11 covers the real N.
        return vin * ((1 << a["shift"]) + 1), "Σ X·M_N at N = 1 (§6.11; image size checked at run time)"
    if kind == "std_pool":
        k, p = a["shift"], a["pre_shift"]
        mean_b = vin * ((1 << k) + 1)
        dev = 2 * vin  # |X − μ| with |μ| ≤ 2^(stream_bits−1) after its own store
        d = (dev >> p) + 1  # |R(X − μ, p)|, +1 for rounding up
        var_b = d * d * ((1 << k) + 1)
        if mean_b >= var_b:
            return mean_b, "Σ X·M_N at N = 1 (§6.12; image size checked at run time)"
        return var_b, "Σ d²·M_N at N = 1 (§6.12; image size checked at run time)"
    if kind == "lut":
        return vin << op_shifts(art, op)["left"], "X·2^max(0, k_lut−f_i) (§6.13, §6.17)"
    if kind == "mul":
        return V[op.inputs[0]] * V[op.inputs[1]], "I = X·G (§6.14)"
    raise ValueError(f"op {op.name!r}: unknown op {kind!r}")


def op_envelope_details(art: Artifact) -> dict[str, tuple[int, str]]:
    """``op name → (bound, description)``: :func:`op_envelopes` with what each bound is."""
    V = tensor_value_bounds(art)
    return {op.name: _op_envelope(art, op, V) for op in art.ops}


def op_envelopes(art: Artifact) -> dict[str, int]:
    """``op name →`` the largest integer intermediate bound of that op (§9).

    The artifact is exact iff every value is ``< 2^53`` (:data:`EXACT_LIMIT`).
    ``mean_pool``/``std_pool`` depend on the image size ``N = H·W``: the reported
    value is the bound at ``N = 1`` (``max|X|·(2^k + 1)``, resp. ``max d²·(2^k + 1)``),
    the part known at load; the run-time checks of §6.11/§6.12 cover the real ``N``.
    """
    return {name: b for name, (b, _) in op_envelope_details(art).items()}
