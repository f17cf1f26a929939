"""A conv in integers (docs/arithmetic.md §5): weight mantissas, per-accumulator multipliers
(§5.3), the scale plan that keeps every accumulator and the exactness envelope in range
(§5.4, §9), and the conv op's arrays.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from calib.export_codebook import (
    boundaries,
    build_encoder,
    check_codebook,
    check_increasing,
    grid_unit,
    max_abs_g,
    snap_segments,
)
from calib.export_fixedpoint import (
    ENC_MULT_BITS,
    ENVELOPE_LIMIT,
    ENVELOPE_MARGIN_BITS,
    MAX_MANT_BITS,
    MAX_STEP_BITS,
    MIN_STEP_BITS,
    TARGET_MANT_BITS,
    ExportError,
    rel_err,
    round_half_away,
)
from calib.graph import LNode
from calib.quant.two_region import TwoRegionSpec
from intsim.artifact import Codebook, Numerics, Segment
from intsim.rounding import MAX_SHIFT


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
        w = s_max * max_abs_g(segs)
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
        unit_m, unit_e, segs = grid_unit(real, gb, where)
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
        segs = snap_segments(real, 1, unit_e)
        check_increasing(segs, where)
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
        B = np.array([round_half_away(float(b) * 2.0 ** (k_w + unit_e)) for b in b_real], dtype=object)
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
    thresholds, stages = build_encoder(segs, boundaries(real), unit_m, unit_e, f_in, numerics.rounding, where,
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
            "step_rel_err": [rel_err(sg.step * unit, r.step) for sg, r in zip(segs, real)],
            "origin_rel_err": [rel_err(sg.origin * unit, r.origin) if r.origin else 0.0 for sg, r in zip(segs, real)],
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
