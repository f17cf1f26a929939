"""Export: snap a calibrated model to an intsim artifact (docs/artifact.md).

Everything the engine executes becomes an integer or a dyadic number
(docs/arithmetic.md); the learned real parameters and what snapping cost are
recorded in ``metadata``. The numbers (docs/arithmetic.md):

* **stream fracs** (§1.2): ``f = stream_bits − 2 − ceil(log2(1.25·max|x|))``
  per stream tensor, ``max|x|`` over the calibration set (≥ 2 guard bits and
  25 % headroom). ``relu`` and ``pixel_shuffle`` outputs keep their input's
  frac (§6.6, §6.8).
* **codebooks** (§3): the real segments of each conv's
  :class:`~calib.quant.two_region.TwoRegionSpec` are snapped to integers of a
  unit ``u = unit_m·2^-unit_e``. *split*: ``unit_m = 1`` and ``unit_e`` gives
  the smallest step ``T`` bits (8–16; fewer only for a narrow ``mult_bits``,
  see :func:`_split_step_bits`). Tails start at the snapped dense ends (the
  snapped ±bp) so the codebook stays strictly increasing. *grid*:
  ``u`` is the dyadic snap (8-bit mantissa, rounded up) of
  ``max|value| / (2^(grid_bits−1) − 1)``, grown until every ``G`` fits
  ``grid_bits`` signed bits; steps are at least 1.
* **encoders** (§3.4) are derived from the *snapped* segments: thresholds,
  centres and ``(E, k)`` with E of ``min(20, mult_bits, 51 − stream_bits)``
  bits (``2^19 ≤ E ≤ 2^20`` by default) so that every code's
  decoded value, written to the input stream (rounded either way), encodes
  back to that code (checked for every code at export).
* **weights** (§5.2): int8 (b ≤ 8) / int16 integers from the weight
  quantizer; the real scale ``s_w`` (times a folded constant factor) is
  snapped to ``m_w[co]·2^-k_w`` with as many mantissa bits (at most 24) as
  both limits allow, checked exactly: every rescale multiplier
  ``M_j = m_w·unit_m·(d_s | e_s | 1)`` of §5.3 fits ``mult_bits``, and
  ``Σ_j |M_j|·min(W_j, 2^(acc_bits−1)) + |B| < 2^52`` (§9 with one bit of
  margin).
* **conv shift** ``n = k_w + unit_e − f_o`` must lie in [0, 62]: if it would
  be negative the output frac is lowered to ``k_w + unit_e`` (recorded as
  ``out_frac_lowered``); above 62, mantissa bits are given up.
* **bias** ``B = round(b·2^(k_w + unit_e))`` in the rescale domain (§5.2).
* **image_in / image_out** (§6.1–6.2): per-channel affines (mean shifts
  folded) with a 24-bit (or ``mult_bits − 1``) mantissa; shifts ≥ 0 (the
  image_in output frac is lowered if ``a·2^f`` would not fit ``mult_bits``).
* **stream ops**: relu, split, pixel_shuffle, upsampling, leaky_relu/prelu,
  mean_pool/std_pool keep the input frac (as §6 requires); add, concat and mul
  get their own calibrated frac. Slopes (§6.7): ``M·2^-k`` with ≤ 24-bit ``M``
  (:func:`slope_multipliers`). Pool shifts: :func:`pool_shifts`. LUT activations
  (sigmoid, tanh, silu, gelu; :func:`calib.export_ops.export_lut`): range ±R from the
  calibrated input max|x|, 2^13 entries; clamp bounds: :func:`calib.export_ops.clamp_bounds`.
* **conv_transpose2d** (§5.5): as conv2d, weight stored [Co, kh, kw, Ci].
* ``metadata.source`` records the float model (zoo name, scale, checkpoint,
  sha256s) so that :mod:`calib.evaluate` can rebuild the float fake-quant model.

Export refuses what it cannot represent with :class:`ExportError` naming the
layer (e.g. a stream too narrow to separate two segments).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn

from calib.graph import INPUT_TENSOR, OUTPUT_TENSOR, LNode
from calib.quant.two_region import RealSegment, TwoRegionSpec
from intsim.artifact import Artifact, Codebook, EncoderStage, Numerics, OpSpec, Segment, TensorSpec
from intsim.rounding import MAX_SHIFT, RoundingMode, round_shift

#: Encoder multipliers E have (at most) this many bits: E in [2^19, 2^20] by default (§3.4).
ENC_MULT_BITS = 20
#: Cap on weight-scale / image mantissa bits (float32-like precision is plenty).
MAX_MANT_BITS = 24
#: Mantissa bits the split unit choice tries to leave for the weight scale.
TARGET_MANT_BITS = 10
#: Range of the split realization's smallest-step precision T (bits).
MIN_STEP_BITS, MAX_STEP_BITS = 8, 16
#: Grid unit mantissa bits.
GRID_UNIT_M_BITS = 8
#: Every integer intermediate stays below 2^(53 − ENVELOPE_MARGIN_BITS) (§9).
ENVELOPE_MARGIN_BITS = 1
ENVELOPE_LIMIT = 1 << (53 - ENVELOPE_MARGIN_BITS)


class ExportError(ValueError):
    """The model cannot be snapped within the configured numerics; the message names the layer."""


# --------------------------------------------------------------------------
# small exact helpers


def _rha(x: float | Fraction) -> int:
    """Round half away from zero (symmetric, so symmetric codebooks stay symmetric)."""
    if x >= 0:
        return int(math.floor(x + Fraction(1, 2))) if isinstance(x, Fraction) else int(math.floor(x + 0.5))
    return -_rha(-x)


def _rhu(x: Fraction) -> int:
    """Round half up (toward +inf) of an exact rational."""
    return math.floor(x + Fraction(1, 2))


def _ceil_log2(x: Fraction) -> int:
    """Smallest c with 2^c ≥ x (x > 0), exact."""
    c = x.numerator.bit_length() - x.denominator.bit_length()
    while Fraction(2) ** c < x:
        c += 1
    while Fraction(2) ** (c - 1) >= x:
        c -= 1
    return c


def _pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def stream_frac(absmax: float, stream_bits: int) -> int:
    """Frac of a stream with calibrated ``max|x|`` (module doc; max|x| floored at 2^-8)."""
    m = max(float(absmax), 2.0 ** -8)
    return int(stream_bits - 2 - math.ceil(math.log2(m * 1.25)))


def _rel_err(snapped: float, real: float) -> float:
    return abs(snapped - real) / abs(real) if real != 0 else abs(snapped)


# --------------------------------------------------------------------------
# codebooks


def _snap_segments(real: tuple[RealSegment, ...], unit_m: int, unit_e: int) -> tuple[Segment, ...]:
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
    d = max(1, _rha(dn.step / unit))
    out = []
    for s in real:
        if s is dn:
            out.append(Segment(0, d, s.qmin, s.qmax))
        elif s.role == "pos_tail":  # q in [1, qmax], ends at s.hi (= u)
            origin = d * dn.qmax
            out.append(Segment(origin, max(1, _rha((s.hi / unit - origin) / s.qmax)), s.qmin, s.qmax))
        elif s.role == "neg_tail":  # q in [qmin, -1], ends at s.lo (= l)
            origin = d * dn.qmin
            out.append(Segment(origin, max(1, _rha((s.lo / unit - origin) / s.qmin)), s.qmin, s.qmax))
        else:
            raise ExportError(f"unknown segment role {s.role!r}")
    return tuple(out)


def _check_increasing(segs: tuple[Segment, ...], where: str) -> None:
    for a, b in zip(segs[:-1], segs[1:]):
        if not a.origin + a.step * a.qmax < b.origin + b.step * b.qmin:
            raise ExportError(f"{where}: snapped codebook segments overlap ({a} then {b}); the unit is too coarse")


def _max_abs_g(segs) -> int:
    return max(max(abs(s.origin + s.step * s.qmin), abs(s.origin + s.step * s.qmax)) for s in segs)


def _grid_unit(real, grid_bits: int, where: str) -> tuple[int, int, tuple[Segment, ...]]:
    """Grid unit (8-bit mantissa, rounded up) so that every G fits ``grid_bits`` signed bits."""
    ext = max(max(abs(s.lo), abs(s.hi)) for s in real)
    gmax = 2 ** (grid_bits - 1) - 1
    target = ext / gmax
    unit_e = GRID_UNIT_M_BITS - 1 - math.floor(math.log2(target))
    unit_m = max(1, math.ceil(target * 2.0 ** unit_e))
    for _ in range(1 << GRID_UNIT_M_BITS):
        if unit_m >= 1 << GRID_UNIT_M_BITS:
            unit_m, unit_e = (unit_m + 1) // 2, unit_e - 1
        segs = _snap_segments(real, unit_m, unit_e)
        if _max_abs_g(segs) <= gmax:
            _check_increasing(segs, where)
            return unit_m, unit_e, segs
        unit_m += 1
    raise ExportError(f"{where}: no grid unit fits grid_bits={grid_bits}: the codebook needs finer steps than a "
                      f"{grid_bits}-bit grid holds; raise grid_bits (≤ 16), use fewer activation bits or the split "
                      f"realization")


def _boundaries(real: tuple[RealSegment, ...]):
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
    scale = Fraction(unit_m) * _pow2(f_in - unit_e)

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
    floor_mode = RoundingMode.parse(rounding) is RoundingMode.FLOOR
    for s in segs:
        D = s.step * scale
        c0 = V(s.origin) - (D / 2 if floor_mode else 0)
        k = enc_bits - 1 + _ceil_log2(D)
        k = min(max(k, 0), MAX_SHIFT)
        E = _rhu(_pow2(k) / D)
        if E < 1:
            raise ExportError(f"{where}: encoder step {float(D):.3g} stream units is too large for a {MAX_SHIFT}-bit shift")
        stages.append(EncoderStage(_rhu(c0), int(E), int(k)))
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
    scale = Fraction(codebook.unit_m) * _pow2(f_in - codebook.unit_e)
    vals = [int(g) * scale for g in grid]
    problems = []
    for variant, fn in (("floor", math.floor), ("ceil", math.ceil)):
        X = np.array([fn(v) for v in vals], dtype=np.int64)
        codes, _ = encode_stream(codebook, X, rounding)
        bad = np.nonzero(codes != np.arange(len(vals)))[0]
        for c in bad[:5]:
            problems.append(f"code {c} (G={int(grid[c])}, stream {variant} {int(X[c])}) encodes to {int(codes[c])}")
    return problems


# --------------------------------------------------------------------------
# conv


def _acc_bounds(realization: str, segs: tuple[Segment, ...], s_max: int, acc_bits: int) -> list[tuple[str, int, int]]:
    """(accumulator, W_j, bound used by §9 = min(W_j, 2^(acc_bits−1))) per accumulator (§5.4)."""
    cap = 1 << (acc_bits - 1)
    out = []
    if realization == "split":
        for i, s in enumerate(segs):
            w = s_max * max(abs(s.qmin), abs(s.qmax))
            out.append((f"P{i}", w, min(w, cap)))
            if s.origin != 0:
                out.append((f"Q{i}", s_max, min(s_max, cap)))
    else:
        w = s_max * _max_abs_g(segs)
        out.append(("A", w, min(w, cap)))
    return out


def _multipliers(realization: str, segs, unit_m: int, m_w: np.ndarray) -> list[np.ndarray]:
    """Per-accumulator multipliers M_j[co] (§5.3) as Python-int object arrays (exact)."""
    m = [int(v) * unit_m for v in m_w]
    if realization == "grid":
        return [m]
    out = []
    for s in segs:
        out.append([v * s.step for v in m])
        if s.origin != 0:
            out.append([v * s.origin for v in m])
    return out


def _split_step_bits(real, budget: int) -> int:
    """Precision T (bits) of the smallest step in the split realization.

    The largest integer multiplied into the weight mantissa is about
    ``2^T · max(|origin|, step)/min(step)`` (``ratio_bits`` more than T). Of the
    multiplier ``budget``, T gets what is left after TARGET_MANT_BITS mantissa
    bits, within 8..16; a budget too small for that (a narrow ``mult_bits``) is
    shared evenly between T and the mantissa (T ≥ 2).
    """
    dmin = min(s.step for s in real)
    mag = max(max(abs(s.origin), s.step) for s in real)
    ratio_bits = max(0, math.ceil(math.log2(mag / dmin)))
    left = budget - ratio_bits
    if left >= MIN_STEP_BITS + TARGET_MANT_BITS:
        return int(min(MAX_STEP_BITS, left - TARGET_MANT_BITS))
    return int(max(2, (left + 1) // 2))


def _plan_scales(where: str, realization: str, real, gb, s_max: int, s_real: np.ndarray, b_real: np.ndarray,
                 f_out: int, numerics: Numerics) -> dict:
    """Codebook unit, weight mantissas, shift and bias of one conv.

    Every rescale multiplier ``M_j = m_w·unit_m·(d_s|e_s|1)`` must fit
    ``mult_bits`` (it is what the hardware rescale multiplies by, §2, §5.3; the
    loader checks it) and the exact §9 bound must stay below 2^52.
    """
    mult_bits = numerics.mult_bits
    if realization == "grid":
        unit_m, unit_e, segs = _grid_unit(real, gb, where)
        accs = _acc_bounds("grid", segs, s_max, numerics.acc_bits)
        a_bits = max(b for _, _, b in accs).bit_length()
        env_budget = 53 - ENVELOPE_MARGIN_BITS - a_bits - 1
        prod_budget = min(mult_bits, env_budget)
        mant_bits = min(MAX_MANT_BITS, prod_budget - unit_m.bit_length())
    else:
        unit_m = 1
        # Accumulator bounds of split depend only on index ranges and weights.
        proto = tuple(Segment(1 if s.origin else 0, 1, s.qmin, s.qmax) for s in real)
        accs = _acc_bounds("split", proto, s_max, numerics.acc_bits)
        a_bits = max(b for _, _, b in accs).bit_length()
        env_budget = 53 - ENVELOPE_MARGIN_BITS - a_bits - math.ceil(math.log2(len(accs) + 1))
        prod_budget = min(mult_bits, env_budget)
        T = _split_step_bits(real, prod_budget)
        unit_e = T - 1 - math.floor(math.log2(min(s.step for s in real)))
        segs = _snap_segments(real, 1, unit_e)
        _check_increasing(segs, where)
        g_bits = max(max(abs(s.origin), s.step) for s in segs).bit_length()
        mant_bits = min(MAX_MANT_BITS, prod_budget - g_bits)
        accs = _acc_bounds("split", segs, s_max, numerics.acc_bits)
    if mant_bits < 1:
        raise ExportError(
            f"{where}: no bits left for the weight-scale mantissa: the rescale multipliers may have "
            f"{prod_budget} bits (min of mult_bits = {mult_bits} and the §9 envelope 52 − {a_bits}-bit accumulator "
            f"bound), and the codebook's integers already need them; raise mult_bits / acc_bits headroom or use "
            f"fewer activation bits")

    # Weight mantissas, shift, bias; shrink the mantissa until the exact envelope holds.
    f_out_target = f_out
    while True:
        k_w = mant_bits - 1 - math.floor(math.log2(float(s_real.max())))
        m_w = np.maximum(1, np.floor(s_real * 2.0 ** k_w + 0.5)).astype(np.int64)
        if m_w.max() >= 1 << mant_bits:
            k_w -= 1
            m_w = np.maximum(1, np.floor(s_real * 2.0 ** k_w + 0.5)).astype(np.int64)
        n = k_w + unit_e - f_out_target
        f_out = f_out_target
        if n > MAX_SHIFT:
            k_w -= n - MAX_SHIFT
            m_w = np.maximum(1, np.floor(s_real * 2.0 ** k_w + 0.5)).astype(np.int64)
        elif n < 0:
            f_out = k_w + unit_e  # a coarser output grid rather than a negative shift
        n = k_w + unit_e - f_out
        B = np.array([_rha(float(b) * 2.0 ** (k_w + unit_e)) for b in b_real], dtype=object)
        mults = _multipliers(realization, segs, unit_m, m_w)
        worst_m = max(abs(v) for ms in mults for v in ms)
        bound = max(sum(abs(ms[co]) * acc[2] for ms, acc in zip(mults, accs)) + abs(int(B[co]))
                    for co in range(len(m_w)))
        if worst_m < 1 << mult_bits and bound < ENVELOPE_LIMIT:
            break
        mant_bits -= 1
        if mant_bits < 1:
            raise ExportError(f"{where}: cannot meet the exactness envelope (§9) / mult_bits={mult_bits} "
                              f"(bias or accumulators too large); raise mult_bits or lower activation bits")
    if not 0 <= n <= MAX_SHIFT:
        raise ExportError(f"{where}: conv shift n = {n} outside [0, {MAX_SHIFT}]")
    return {"unit_m": unit_m, "unit_e": unit_e, "segs": segs, "accs": accs, "mant_bits": mant_bits, "k_w": k_w,
            "m_w": m_w, "B": B, "n": n, "f_out": f_out, "f_out_target": f_out_target, "worst_m": worst_m,
            "bound": bound}


def export_conv(node: LNode, mod: nn.Conv2d, layer, f_in: int, f_out: int, numerics: Numerics,
                grid_bits: int | None) -> dict:
    """Snap one conv and its input quantizer (§3, §5). Returns codebook, arrays, attrs, f_out and metadata."""
    where = f"layer '{node.name}'"
    realization = numerics.realization
    c = float(node.attrs.get("post_scale", 1.0))
    w = mod.weight.detach().double()
    learned_bias = getattr(layer, "bias", None)
    if learned_bias is not None:
        bias = learned_bias.detach().double()
    else:
        bias = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    wspec = layer.weight
    w_int = layer.integer_weights(w)  # int64 [Co, Ci/g, kh, kw]; transposed conv: [Ci, Co, kh, kw]
    transposed = node.op == "conv_transpose2d"
    if transposed:
        if wspec.per_channel and getattr(wspec, "channel_dim", 0) != 1:
            raise ExportError(f"{where}: per-channel weight scales of a transposed conv must be along its "
                              f"output-channel dim 1 of the torch weight [Ci, Co, kh, kw]")
        w_int = w_int.permute(1, 0, 2, 3)  # → [Co, Ci, kh, kw]
    co = w_int.shape[0]
    s_real = np.array(wspec.scale if wspec.per_channel else wspec.scale * co, dtype=np.float64) * abs(c)
    if c < 0:
        w_int = -w_int
    b_real = bias.numpy() * c
    s_max = int(w_int.abs().reshape(co, -1).sum(dim=1).max())
    act: TwoRegionSpec = layer.act
    real = act.segments()

    gb = None
    if realization == "grid":
        gb = int(grid_bits if grid_bits is not None else min(16, max(6, layer.bits_a + 6)))
        if not 6 <= gb <= 16:
            raise ExportError(f"{where}: grid_bits must be in 6..16 (arithmetic.md §8), got {gb}")
    plan = _plan_scales(where, realization, real, gb, s_max, s_real, b_real, f_out, numerics)
    unit_m, unit_e, segs, accs = plan["unit_m"], plan["unit_e"], plan["segs"], plan["accs"]
    mant_bits, k_w, m_w, B, n, f_out = (plan[k] for k in ("mant_bits", "k_w", "m_w", "B", "n", "f_out"))
    worst_m, bound = plan["worst_m"], plan["bound"]
    f_out_target = plan["f_out_target"]

    enc_bits = min(ENC_MULT_BITS, numerics.mult_bits, 51 - numerics.stream_bits)
    thresholds, stages = build_encoder(segs, _boundaries(real), unit_m, unit_e, f_in, numerics.rounding, where,
                                       enc_bits)
    codebook = Codebook(unit_m=int(unit_m), unit_e=int(unit_e), segments=segs, thresholds=thresholds,
                        encoder=stages, grid_bits=gb, allocation=act.allocation, bits=int(act.bits))
    problems = check_codebook(codebook, f_in, numerics.rounding)
    if problems:
        raise ExportError(f"{where}: encoder disagrees with its codebook: {'; '.join(problems)}")

    unit = unit_m * 2.0 ** -unit_e
    w_dtype = np.int8 if wspec.bits <= 8 else np.int16
    weight = w_int.permute(0, 2, 3, 1).contiguous().numpy().astype(w_dtype)  # OHWI (§5.1, §5.5)
    s_snap = m_w * 2.0 ** -k_w
    meta = {
        "role": layer.role, "module": layer.module, "bits_w": layer.bits_w, "bits_a": layer.bits_a,
        "code_bits": codebook.code_bits, "num_codes": codebook.num_codes,
        "act": act.to_json(), "weight": {**wspec.to_json(), "channel_dim": int(getattr(wspec, "channel_dim", 0))},
        "post_scale": c, "observer": layer.observer, "op": node.op,
        **({"bias_learned": [float(v) for v in bias]} if learned_bias is not None else {}),
        "snap": {
            "unit": unit, "unit_m": int(unit_m), "unit_e": int(unit_e), "grid_bits": gb,
            "step_rel_err": [_rel_err(sg.step * unit, r.step) for sg, r in zip(segs, real)],
            "origin_rel_err": [_rel_err(sg.origin * unit, r.origin) if r.origin else 0.0 for sg, r in zip(segs, real)],
            "weight_mant_bits": int(mant_bits), "w_exp": int(k_w),
            "weight_scale_rel_err_max": float(np.max(np.abs(s_snap - s_real) / s_real)),
            "bias_abs_err_max": float(np.max(np.abs(np.array([float(x) for x in B]) * 2.0 ** -(k_w + unit_e) - b_real)))
            if len(b_real) else 0.0,
            "shift": int(n), "out_frac": int(f_out), "out_frac_lowered": bool(f_out != f_out_target),
            "max_multiplier_bits": int(worst_m).bit_length(),
            "accumulators": [{"acc": a, "worst_case": int(wj), "bound": int(bj),
                              "ordered": wj > (1 << (numerics.acc_bits - 1)) - 1} for a, wj, bj in accs],
            "envelope_bits": int(bound).bit_length(),
        },
    }
    return {"codebook": codebook, "weight": weight, "w_mant": m_w.astype(np.int64),
            "bias": np.array([int(x) for x in B], dtype=np.int64), "w_exp": int(k_w), "f_out": int(f_out),
            "meta": meta}


# --------------------------------------------------------------------------
# image conversions


def _image_exp(a: np.ndarray, mant_bits: int, where: str) -> int:
    """Exponent giving the largest |a_c| a ``mant_bits``-bit mantissa."""
    amax = float(np.max(np.abs(a)))
    if amax == 0:
        raise ExportError(f"{where}: image conversion has an all-zero scale")
    return mant_bits - 1 - math.floor(math.log2(amax))


def export_image_in(node: LNode, f_o: int, numerics: Numerics) -> dict:
    """``v = P·a_c + b_c`` → ``I = P·m_c + o_c``, ``n = e − f_o`` (§6.1).

    ``e ≥ f_o`` is needed (n ≥ 0); if ``a·2^f_o`` would not fit the mantissa
    (narrow ``mult_bits``), the output frac is lowered to ``e`` instead.
    Returns the (possibly lowered) frac as ``f_o``.
    """
    a, b = np.array(node.attrs["a"]), np.array(node.attrs["b"])
    mant = min(MAX_MANT_BITS, numerics.mult_bits - 1)
    e = _image_exp(a, mant, node.name)
    f_o = min(f_o, e)
    e = min(e, f_o + MAX_SHIFT)
    while True:
        m = np.array([_rha(x * 2.0 ** e) for x in a], dtype=np.int64)
        o = np.array([_rha(x * 2.0 ** e) for x in b], dtype=np.int64)
        if 255 * int(np.abs(m).max()) + int(np.abs(o).max()) < ENVELOPE_LIMIT or e == f_o:
            break
        e -= 1
    meta = {"a": list(map(float, a)), "b": list(map(float, b)), "folded": node.attrs.get("folded", []),
            "a_rel_err_max": float(np.max(np.abs(m * 2.0 ** -e - a) / np.abs(a))),
            "b_abs_err_max": float(np.max(np.abs(o * 2.0 ** -e - b)))}
    return {"exp": int(e), "mult": m, "offset": o, "meta": meta, "f_o": int(f_o)}


def export_image_out(node: LNode, f_i: int, numerics: Numerics) -> dict:
    """``v = x·a_c + b_c`` → ``I = X·m_c + o_c·2^f_i``, ``n = f_i + e`` (§6.2)."""
    a, b = np.array(node.attrs["a"]), np.array(node.attrs["b"])
    # |X·m| + |o·2^f_i| < 2^52 with |X| ≤ 2^(stream_bits−1).
    mant = min(MAX_MANT_BITS, numerics.mult_bits - 1, 52 - numerics.stream_bits - 1)
    e = _image_exp(a, mant, node.name)
    e = min(max(e, -f_i), MAX_SHIFT - f_i)
    while True:
        m = np.array([_rha(x * 2.0 ** e) for x in a], dtype=np.int64)
        o = np.array([_rha(x * 2.0 ** e) for x in b], dtype=np.int64)
        big = (1 << (numerics.stream_bits - 1)) * int(np.abs(m).max()) + int(np.abs(o).max()) * 2 ** max(f_i, 0)
        if big < ENVELOPE_LIMIT or e <= -f_i:
            break
        e -= 1
    meta = {"a": list(map(float, a)), "b": list(map(float, b)), "folded": node.attrs.get("folded", []),
            "a_rel_err_max": float(np.max(np.abs(m * 2.0 ** -e - a) / np.abs(a))),
            "b_abs_err_max": float(np.max(np.abs(o * 2.0 ** -e - b)))}
    return {"exp": int(e), "mult": m, "offset": o, "meta": meta}


# --------------------------------------------------------------------------
# stream ops (§6.7, §6.10–6.13)


def slope_multipliers(alphas, numerics: Numerics, where: str) -> tuple[list[int], int, list[float]]:
    """Fixed-point slopes ``α ≈ M·2^-k`` (§6.7) with one shift ``k`` for all channels.

    ``M`` gets at most ``min(24, mult_bits, 52 − stream_bits)`` magnitude bits so that
    ``X·M`` stays inside the exactness envelope; returns (M list, k, relative errors).
    """
    al = [float(a) for a in alphas]
    amax = max(abs(a) for a in al)
    if amax == 0:
        return [0] * len(al), 0, [0.0] * len(al)
    bits = min(MAX_MANT_BITS, numerics.mult_bits, 52 - numerics.stream_bits)
    k = bits - 1 - math.floor(math.log2(amax))
    if k < 0:
        raise ExportError(f"{where}: slope {amax} too large for a {bits}-bit fixed-point multiplier")
    k = min(k, MAX_SHIFT)
    M = [_rha(a * 2.0 ** k) for a in al]
    if max(abs(m) for m in M) >= 1 << bits:
        k -= 1
        M = [_rha(a * 2.0 ** k) for a in al]
    errs = [_rel_err(m * 2.0 ** -k, a) for m, a in zip(M, al)]
    return M, int(k), errs


def pool_shifts(numerics: Numerics) -> dict:
    """Shifts of mean_pool (``k``) and std_pool (``k``, pre-shift ``p``) within the §9 envelope.

    mean_pool: ``2^(stream_bits−1)·(2^k + 1) < 2^52``. std_pool: ``p = stream_bits − 14``
    (deviations keep ~13 bits), then the largest ``k`` with ``d_max²·(2^k + 1) < 2^52``,
    ``d_max = (2^stream_bits >> p) + 1``. The reciprocal ``2^k/N`` of an N-pixel image has
    relative error ≤ N/2^(k+1).
    """
    vin = 1 << (numerics.stream_bits - 1)
    k_mean = 0
    while k_mean < MAX_SHIFT and vin * ((1 << (k_mean + 1)) + 1) < ENVELOPE_LIMIT:
        k_mean += 1
    p = max(0, numerics.stream_bits - 14)
    d = ((2 * vin) >> p) + 1
    k_std = 0
    while k_std < MAX_SHIFT and d * d * ((1 << (k_std + 1)) + 1) < ENVELOPE_LIMIT and \
            vin * ((1 << (k_std + 1)) + 1) < ENVELOPE_LIMIT:
        k_std += 1
    return {"mean_shift": k_mean, "std_shift": k_std, "std_pre_shift": p}


def bilinear_multiplier(factor: int, numerics: Numerics) -> tuple[int, int]:
    """(M, k) of 1/(2r)² (§6.10): exact when 2r is a power of two."""
    q = (2 * factor) ** 2
    if q & (q - 1) == 0:
        return 1, q.bit_length() - 1
    bits = min(20, numerics.mult_bits)
    k = bits - 1 + (q - 1).bit_length()
    return _rhu(Fraction(1 << k, q)), k


# --------------------------------------------------------------------------
# the artifact


def state_dict_fingerprint(model: nn.Module) -> str:
    """sha256 over the float model's state dict (sorted keys; name, dtype, shape, float32 bytes)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if not torch.is_tensor(v):
            continue
        t = v.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        h.update(f"{k}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def model_source(name: str, scale: int, checkpoint: str | None = None) -> dict:
    """``source`` metadata for :func:`export_artifact`: zoo name, scale, checkpoint path and its sha256."""
    import os

    out: dict = {"model": name, "scale": int(scale)}
    if checkpoint is not None:
        from calib.models.zoo import sha256_file

        out["checkpoint"] = os.path.abspath(str(checkpoint))
        out["checkpoint_sha256"] = sha256_file(checkpoint)
    return out


def export_artifact(model: nn.Module, calib_result, *, realization: str = "split", rounding: str = "half_up",
                    overflow: str = "saturate", acc_bits: int = 32, stream_bits: int = 24, mult_bits: int = 31,
                    grid_bits: int | None = None, model_meta: dict | None = None,
                    source: dict | None = None) -> Artifact:
    """Snap ``calib_result`` (a :class:`calib.calibrate.CalibrationResult` of ``model``) to an artifact.

    ``grid_bits`` (grid realization only): per-codebook G width; default
    ``bits_a + 6`` of each layer, clamped to 6..16. Numerics are validated
    against arithmetic.md §8. Raises :class:`ExportError` naming the layer if a
    quantity cannot be represented.

    ``source`` (JSON-able) says where the float model comes from so that the
    float32 fake-quant model can be rebuilt from the artifact alone
    (:mod:`calib.evaluate`): keys ``model`` (zoo name), ``scale``, ``checkpoint``
    (path) and ``checkpoint_sha256`` (see :func:`model_source`). Export always
    adds ``state_dict_sha256`` (:func:`state_dict_fingerprint` of ``model``) and
    defaults ``model``/``scale`` from ``model_meta``. The returned artifact has not been written;
    use :func:`intsim.artifact.save_artifact`.
    """
    if realization not in ("split", "grid"):
        raise ValueError(f"realization must be 'split' or 'grid', got {realization!r}")
    RoundingMode.parse(rounding)
    from intsim.overflow import OverflowPolicy

    OverflowPolicy.parse(overflow)
    if not 8 <= acc_bits <= 48:
        raise ValueError(f"acc_bits must be in 8..48 (arithmetic.md §8), got {acc_bits}")
    if not 8 <= stream_bits <= 40:
        raise ValueError(f"stream_bits must be in 8..40 (arithmetic.md §8), got {stream_bits}")
    if not 8 <= mult_bits <= 31:
        raise ValueError(f"mult_bits must be in 8..31 (arithmetic.md §2.1), got {mult_bits}")
    if grid_bits is not None and not 6 <= grid_bits <= 16:
        raise ValueError(f"grid_bits must be in 6..16 (arithmetic.md §8), got {grid_bits}")
    numerics = Numerics(rounding=RoundingMode.parse(rounding).spec_name, realization=realization,
                        overflow=OverflowPolicy.parse(overflow).spec_name, acc_bits=int(acc_bits),
                        stream_bits=int(stream_bits), mult_bits=int(mult_bits))
    g = calib_result.graph
    tensors: dict[str, TensorSpec] = {INPUT_TENSOR: TensorSpec(INPUT_TENSOR, "image", g.in_channels)}
    fracs: dict[str, int] = {}
    ops: list[OpSpec] = []
    arrays: dict[str, np.ndarray] = {}
    layers_meta: dict = {}
    code_bits: dict[str, int] = {}
    image_meta: dict = {}
    stream_meta: dict = {}
    pools = pool_shifts(numerics)
    taken = {n.name for n in g.nodes} | {t for n in g.nodes for t in n.outputs} | {INPUT_TENSOR}

    def fresh(name: str) -> str:
        base, k = name, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    def add_stream(name: str, channels: int, frac: int) -> None:
        fracs[name] = frac
        tensors[name] = TensorSpec(name, "stream", channels, frac=int(frac))

    def own_frac(t: str) -> int:
        return stream_frac(calib_result.stream_absmax[t], stream_bits)

    for node in g.nodes:
        if node.op == "image_in":
            r = export_image_in(node, own_frac(node.output), numerics)
            add_stream(node.output, node.channels, r["f_o"])
            arrays[f"{node.name}.mult"], arrays[f"{node.name}.offset"] = r["mult"], r["offset"]
            ops.append(OpSpec(node.name, "image_in", node.inputs, (node.output,), {"exp": r["exp"]},
                              {"mult": f"{node.name}.mult", "offset": f"{node.name}.offset"}))
            image_meta[node.name] = r["meta"]
        elif node.op == "image_out":
            r = export_image_out(node, fracs[node.inputs[0]], numerics)
            tensors[node.output] = TensorSpec(node.output, "image", node.channels)
            arrays[f"{node.name}.mult"], arrays[f"{node.name}.offset"] = r["mult"], r["offset"]
            ops.append(OpSpec(node.name, "image_out", node.inputs, (node.output,), {"exp": r["exp"]},
                              {"mult": f"{node.name}.mult", "offset": f"{node.name}.offset"}))
            image_meta[node.name] = r["meta"]
        elif node.op in ("conv2d", "conv_transpose2d"):
            layer = calib_result.layers[node.name]
            mod = g.gm.get_submodule(node.module)
            x = node.inputs[0]
            r = export_conv(node, mod, layer, fracs[x], own_frac(node.output), numerics, grid_bits)
            enc_name, codes = fresh(f"{node.name}.encode"), fresh(f"{node.name}.codes")
            tensors[codes] = TensorSpec(codes, "codes", tensors[x].channels, codebook=r["codebook"])
            ops.append(OpSpec(enc_name, "encode", (x,), (codes,), {}, {}))
            conv_padding = list(node.attrs["padding"])
            if node.attrs.get("padding_mode", "zeros") != "zeros":  # encode → pad → conv without padding (§5.8)
                pad_name, padded = fresh(f"{node.name}.pad"), fresh(f"{node.name}.padded")
                tensors[padded] = TensorSpec(padded, "codes", tensors[x].channels, codebook=r["codebook"])
                ops.append(OpSpec(pad_name, "pad", (codes,), (padded,),
                                  {"padding": conv_padding, "mode": node.attrs["padding_mode"]}, {}))
                codes, conv_padding = padded, [0, 0]
            add_stream(node.output, node.channels, r["f_out"])
            for role in ("weight", "w_mant", "bias"):
                arrays[f"{node.name}.{role}"] = r[role]
            at = node.attrs
            if node.op == "conv2d":
                cattrs = {"kernel": list(at["kernel"]), "stride": list(at["stride"]),
                          "padding": conv_padding, "dilation": list(at["dilation"]),
                          "groups": int(at["groups"]), "w_exp": r["w_exp"]}
            else:
                cattrs = {"kernel": list(at["kernel"]), "stride": list(at["stride"]),
                          "padding": list(at["padding"]), "output_padding": list(at["output_padding"]),
                          "w_exp": r["w_exp"]}
            ops.append(OpSpec(node.name, node.op, (codes,), (node.output,), cattrs,
                              {role: f"{node.name}.{role}" for role in ("weight", "w_mant", "bias")}))
            layers_meta[node.name] = r["meta"]
            code_bits[node.name] = r["codebook"].code_bits
        elif node.op in ("relu", "pixel_shuffle", "upsample_nearest"):
            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # f_o = f_i (§6.6, §6.8, §6.9)
            attrs = {"factor": int(node.attrs["factor"])} if "factor" in node.attrs else {}
            ops.append(OpSpec(node.name, node.op, node.inputs, (node.output,), attrs, {}))
        elif node.op == "clamp":
            from calib.export_ops import ClampBoundsError, clamp_bounds

            f = fracs[node.inputs[0]]
            add_stream(node.output, node.channels, f)  # f_o = f_i (§6.16)
            try:
                lo, hi = clamp_bounds(node.attrs["lo"], node.attrs["hi"], f, numerics)
            except ClampBoundsError as e:
                raise ExportError(f"layer '{node.name}': {e}") from None
            ops.append(OpSpec(node.name, "clamp", node.inputs, (node.output,), {"lo": lo, "hi": hi}, {}))
            stream_meta[node.name] = {"lo": node.attrs["lo"], "hi": node.attrs["hi"], "lo_int": lo, "hi_int": hi}
        elif node.op == "upsample_bilinear":
            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # §6.10
            M, k = bilinear_multiplier(int(node.attrs["factor"]), numerics)
            ops.append(OpSpec(node.name, node.op, node.inputs, (node.output,),
                              {"factor": int(node.attrs["factor"]), "mult": int(M), "shift": int(k)}, {}))
        elif node.op == "upsample_bicubic":
            from calib.export_ops import bicubic_tap_bits

            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # §6.18
            ops.append(OpSpec(node.name, node.op, node.inputs, (node.output,),
                              {"factor": int(node.attrs["factor"]),
                               "tap_bits": bicubic_tap_bits(int(node.attrs["factor"]), numerics)}, {}))
        elif node.op == "split":
            f = fracs[node.inputs[0]]  # §6.5
            for t, c in zip(node.outputs, node.attrs["sizes"]):
                add_stream(t, int(c), f)
            ops.append(OpSpec(node.name, "split", node.inputs, node.outputs,
                              {"sizes": [int(c) for c in node.attrs["sizes"]]}, {}))
        elif node.op in ("add", "concat", "mul"):
            add_stream(node.output, node.channels, own_frac(node.output))  # §6.3, §6.4, §6.14
            ops.append(OpSpec(node.name, node.op, node.inputs, (node.output,), {}, {}))
        elif node.op == "leaky_relu":
            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # §6.7
            M, k, errs = slope_multipliers([node.attrs["slope"]], numerics, f"layer '{node.name}'")
            ops.append(OpSpec(node.name, "leaky_relu", node.inputs, (node.output,), {"mult": M[0], "shift": k}, {}))
            stream_meta[node.name] = {"slope": float(node.attrs["slope"]), "mult": M[0], "shift": k,
                                      "slope_rel_err": errs[0]}
        elif node.op == "prelu":
            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # §6.7
            M, k, errs = slope_multipliers(node.attrs["slope"], numerics, f"layer '{node.name}'")
            arrays[f"{node.name}.mult"] = np.array(M, dtype=np.int64)
            ops.append(OpSpec(node.name, "prelu", node.inputs, (node.output,), {"shift": k},
                              {"mult": f"{node.name}.mult"}))
            stream_meta[node.name] = {"slope": list(map(float, node.attrs["slope"])), "shift": k,
                                      "slope_rel_err_max": float(max(errs))}
        elif node.op == "mean_pool":
            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # f_o = f_i (§6.11)
            ops.append(OpSpec(node.name, "mean_pool", node.inputs, (node.output,), {"shift": pools["mean_shift"]}, {}))
        elif node.op == "std_pool":
            add_stream(node.output, node.channels, fracs[node.inputs[0]])  # f_o = f_i (§6.12)
            ops.append(OpSpec(node.name, "std_pool", node.inputs, (node.output,),
                              {"shift": pools["std_shift"], "pre_shift": pools["std_pre_shift"]}, {}))
        elif node.op == "lut":
            from calib.export_ops import export_lut

            x = node.inputs[0]
            r = export_lut(node.attrs["fn"], calib_result.stream_absmax.get(x, 1.0), fracs[x], numerics)
            add_stream(node.output, node.channels, r["f_o"])
            arrays[f"{node.name}.lut"] = r["lut"]
            ops.append(OpSpec(node.name, "lut", node.inputs, (node.output,),
                              {"fn": node.attrs["fn"], "lut_exp": r["lut_exp"], "imin": r["imin"], "imax": r["imax"]},
                              {"lut": f"{node.name}.lut"}))
            stream_meta[node.name] = r["meta"]
        else:  # capture() only produces the ops above
            raise ExportError(f"op '{node.name}' ({node.op}) has no exporter")

    meta_model = dict(model_meta or {})
    meta_model.setdefault("name", type(model).__name__.lower())
    if getattr(model, "scale", None) is not None:
        meta_model.setdefault("scale", int(model.scale))
    meta_model["bits"] = calib_result.bits
    meta_model["code_bits"] = code_bits
    src = {"model": meta_model.get("name"), "scale": meta_model.get("scale")}
    if "weights" in meta_model:
        src["checkpoint"] = meta_model["weights"]
    src.update(source or {})
    src["state_dict_sha256"] = state_dict_fingerprint(model)
    metadata = {
        "producer": "calib.export",
        "source": src,
        "capture": {"rgb_range": g.rgb_range, "in_channels": g.in_channels,
                    "concrete_args": {k: v for k, v in getattr(g, "concrete_args", {}).items()
                                      if v is None or isinstance(v, (bool, int, float, str))}},
        "rgb_range": g.rgb_range,
        "calibration": calib_result.to_json(),
        "layers": layers_meta,
        "images": image_meta,
        "stream_ops": stream_meta,
        "pooling": pools,
        "streams": {t: {"absmax": float(calib_result.stream_absmax[t]), "frac": int(f)} for t, f in fracs.items()
                    if t in calib_result.stream_absmax},
    }
    art = Artifact(model=meta_model, numerics=numerics, inputs=(INPUT_TENSOR,), outputs=(OUTPUT_TENSOR,),
                   tensors=tensors, ops=ops, arrays=arrays, metadata=metadata)
    try:
        from intsim.validate import validate_artifact
    except ImportError:  # written concurrently; save_artifact validates in any case
        validate_artifact = None
    if validate_artifact is not None:
        validate_artifact(art)
    return art
