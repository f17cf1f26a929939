"""The cost of one conv (docs/cost.md): GEMM mapping on the PE array, MACs per
accumulator (§5.3 split / grid), decode, rescale, SRAM and DRAM traffic, cycles and energy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from intsim.artifact import Artifact, Codebook, OpSpec
from intsim.cost.systolic import (
    compute_cycles,
    first_fold_elements,
    map_gemm,
    mapping_efficiency,
    sram_accesses,
)
from intsim.cost.context import (
    CATEGORIES,
    FP32_SIGNIFICAND_BITS,
    CostContext,
    grid_bits_needed,
    range_bits,
    signed_bits,
    valid_pairs_conv,
    valid_pairs_convT,
    weight_bits,
)
from intsim.ops.conv_params import ConvParams


def acc_terms(art: Artifact, op: OpSpec, realization: str) -> list[dict]:
    """Accumulators of a conv under ``realization`` with their worst case (§5.3, §5.4):
    name, segment, max |M_j| (rescale multiplier) and max_co Σ|w|·a_j."""
    cb = art.tensors[op.inputs[0]].codebook
    w = np.asarray(art.array(op, "weight")).astype(np.int64)
    l1 = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    mw = int(np.abs(np.asarray(art.array(op, "w_mant")).astype(np.int64)).max()) if w.shape[0] else 0
    base = mw * cb.unit_m
    out = []
    if realization == "grid":
        a = max(max(abs(s.origin + s.step * s.qmin), abs(s.origin + s.step * s.qmax)) for s in cb.segments)
        out.append({"name": "A", "segment": None, "mult_max": base, "worst": l1 * a})
    else:
        for i, s in enumerate(cb.segments):
            a = max(abs(s.qmin), abs(s.qmax))
            out.append({"name": f"P{i}", "segment": i, "mult_max": base * s.step, "worst": l1 * a})
            if s.origin != 0:
                out.append({"name": f"Q{i}", "segment": i, "mult_max": base * abs(s.origin), "worst": l1})
    return out


def _segment_macs(ctx: CostContext, op: OpSpec, oc: dict, cb: Codebook) -> tuple[list[int], bool]:
    """MACs per segment for split costing; ``approximate`` when derived from a histogram."""
    macs = oc.get("macs")
    if not isinstance(macs, dict) or not macs:
        raise ValueError(f"op {op.name!r}: counters have no 'macs' for this conv")
    S = len(cb.segments)
    if all(str(s) in macs for s in range(S)) and "all" not in macs:
        return [int(macs[str(s)]) for s in range(S)], False
    total = sum(int(v) for v in macs.values())
    # grid counters: split the total by the input codes' histogram (border taps ignored)
    prod = ctx.producer.get(op.inputs[0])
    while prod is not None and prod.op == "pad":  # a pad copies its encoder's codes (§5.8)
        prod = ctx.producer.get(prod.inputs[0])
    hist = None
    if prod is not None:
        hist = ctx._cur_counters.get("ops", {}).get(prod.name, {}).get("code_histogram")
    if hist is None or len(hist) != cb.num_codes or sum(hist) == 0:
        raise ValueError(f"op {op.name!r}: counters give only total MACs and no code histogram of its input; "
                         f"cannot cost the split realization")
    seg_of, _, _ = cb.code_table()
    h = np.asarray(hist, dtype=np.float64)
    frac = np.array([h[seg_of == s].sum() for s in range(S)]) / h.sum()
    parts = np.floor(frac * total).astype(np.int64)
    parts[int(np.argmax(frac))] += total - int(parts.sum())
    return [int(p) for p in parts], True


@dataclass(frozen=True)
class _Gemm:
    """A conv's shapes and its GEMM: ``g`` groups of an M×K by K×N product (docs/cost.md)."""

    in_shape: tuple[int, int, int]  # Hi, Wi, Ci
    out_shape: tuple[int, int, int]  # Ho, Wo, Co
    transposed: bool
    g: int
    M: int
    K: int
    N: int
    valid: int  # MACs whose input tap is inside the image (padding taps excluded)


def _gemm(op: OpSpec, shapes: dict, oc: dict | None) -> _Gemm:
    """The GEMM of conv ``op`` from the graph's shapes; refuses counters of another shape."""
    Hi, Wi, Ci = shapes[op.inputs[0]]
    Ho, Wo, Co = shapes[op.outputs[0]]
    if oc is not None and "out_shape" in oc and tuple(int(x) for x in oc["out_shape"]) != (Ho, Wo, Co):
        raise ValueError(f"op {op.name!r}: counters out_shape {oc['out_shape']} != shape from the graph "
                         f"{[Ho, Wo, Co]} (counters of another artifact or image?)")
    p = ConvParams.of(op.attrs)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p.kernel, p.stride, p.padding, p.dilation
    transposed = op.op == "conv_transpose2d"
    g = 1 if transposed else p.groups
    M = Ho * Wo
    if transposed:
        K = math.ceil(kh / sh) * math.ceil(kw / sw) * Ci
        N = Co
        valid = valid_pairs_convT(Hi, Ho, kh, sh, ph) * valid_pairs_convT(Wi, Wo, kw, sw, pw) * Ci * Co
    else:
        K = kh * kw * (Ci // g)
        N = Co // g
        valid = valid_pairs_conv(Hi, Ho, kh, sh, ph, dh) * valid_pairs_conv(Wi, Wo, kw, sw, pw, dw) * (Ci // g) * Co
    return _Gemm((Hi, Wi, Ci), (Ho, Wo, Co), transposed, g, M, K, N, valid)


@dataclass(frozen=True)
class _Operands:
    """Operand widths (bits), accumulators and MACs per segment key under the costed scheme."""

    wb: int
    ab: int
    realization: str
    seg_keys: list[str]
    seg_macs: list[int]
    seg_ab: list[int]
    accs: list[dict]
    req_bits: int | None
    approx: bool


def _operands(ctx: CostContext, op: OpSpec, cb: Codebook, w: np.ndarray, K: int, total: int,
              oc: dict | None) -> _Operands:
    """fp32: 32-bit operands, one accumulator; ``W<w>A<a>``: the uniform widths; the artifact scheme:
    the weights' true bits and the codebook's accumulators (§5.3) per realization."""
    art, sch = ctx.art, ctx.scheme
    approx = False
    if sch.kind == "fp32":
        wb, ab, realization = 32, 32, "fp32"
        seg_keys, seg_macs, seg_ab = ["all"], [total], [32]
        accs = [{"name": "A", "segment": None, "mult_max": 0, "worst": None}]
        req_bits = None
    elif sch.kind == "int":
        wb, ab = ctx.layer_bits[op.name]
        realization = "uniform"
        seg_keys, seg_macs, seg_ab = ["all"], [total], [ab]
        mult_bits = art.numerics.mult_bits
        accs = [{"name": "A", "segment": None, "mult_max": (1 << mult_bits) - 1,
                 "worst": K * (1 << (wb - 1)) * (1 << (ab - 1))}]
        req_bits = signed_bits(accs[0]["worst"])
    else:
        realization = ctx.realization
        wb = weight_bits(w)
        accs = acc_terms(art, op, realization)
        req_bits = max(signed_bits(t["worst"]) for t in accs)
        if realization == "split":
            seg_ab = [range_bits(s.qmin, s.qmax) for s in cb.segments]
            seg_keys = [str(i) for i in range(len(cb.segments))]
            if oc is None:
                raise ValueError(f"op {op.name!r}: the artifact scheme needs engine counters (MACs per segment)")
            seg_macs, approx = _segment_macs(ctx, op, oc, cb)
            ab = max(seg_ab)
        else:
            gbits = cb.grid_bits if cb.grid_bits else grid_bits_needed(cb)
            if cb.grid_bits and grid_bits_needed(cb) > cb.grid_bits:
                ctx.warnings.append(f"op {op.name!r}: codebook grid values need {grid_bits_needed(cb)} bits "
                                    f"> grid_bits {cb.grid_bits}")
            seg_keys, seg_macs, seg_ab, ab = ["all"], [total], [gbits], gbits
            if oc is None:
                raise ValueError(f"op {op.name!r}: the artifact scheme needs engine counters")
    return _Operands(wb, ab, realization, seg_keys, seg_macs, seg_ab, accs, req_bits, approx)


def _psum_tiles(ctx: CostContext, mp, M: int, N: int, psum_elem_bits: int, usable: float) -> int:
    """ws/is keep the partial sums of every output between row folds; when one column fold's block does
    not fit the usable ofmap buffer, the streamed dimension is tiled (each tile pays the fold's
    fill/drain again) instead of spilling."""
    acc = ctx.accel
    tiles = 1
    if acc.dataflow in ("ws", "is") and mp.row_folds > 1:
        block = (M * min(N, acc.cols)) if acc.dataflow == "ws" else (min(M, acc.cols) * N)
        tiles = min(mp.T, max(1, math.ceil(block * psum_elem_bits / (acc.ofmap_kb * usable))))
    return tiles


@dataclass(frozen=True)
class _Arith:
    """Energies (pJ) of the MACs, accumulation, decode and rescale, and the counts behind them."""

    e_mac: float
    e_accum: float
    e_decode: float
    e_rescale: float
    offset_adds: int
    decodes: int
    rescale_mults: int
    rescale_adds: int
    mbits: int
    acc_io: dict


def _arith_energy(ctx: CostContext, cb: Codebook, mp, od: _Operands, g: int, tiles: int, passes: int,
                  accb: int, outputs: int) -> _Arith:
    """MAC and accumulate energy per segment, split offsets (§5.3), grid decodes, rescale; the SRAM
    operand reads of the mapping (``acc_io``), stationary operands reloaded per tile."""
    acc, em, sch = ctx.accel, ctx.em, ctx.scheme
    e_mac = e_accum = e_decode = e_rescale = 0.0
    for m_s, ab_s in zip(od.seg_macs, od.seg_ab):
        if sch.kind == "fp32":
            e_mac += m_s * em.fp_mult()
            e_accum += m_s * em.fp_add()
        elif acc.mac_energy_width == "native":
            e_mac += m_s * passes * em.mult(acc.weight_bits, acc.activation_bits)
            e_accum += m_s * passes * em.add(accb)  # accumulate + (passes−1) shift-adds
        else:
            e_mac += m_s * em.mult(od.wb, ab_s)
            e_accum += m_s * em.add(accb)
    offset_adds = 0
    if od.realization == "split":
        for i, s in enumerate(cb.segments):
            if s.origin != 0:
                offset_adds += od.seg_macs[i]
        e_accum += offset_adds * em.add(accb)
    acc_io = sram_accesses(mp)
    acc_io = {k: g * v for k, v in acc_io.items()}
    if acc.dataflow == "ws":
        acc_io["filter_reads"] *= tiles  # stationary weights reloaded for every tile
    elif acc.dataflow == "is":
        acc_io["ifmap_reads"] *= tiles  # stationary inputs reloaded for every tile
    decodes = 0
    if od.realization == "grid":
        decodes = acc_io["ifmap_reads"]
        e_decode = decodes * em.lut_read(cb.num_codes, od.seg_ab[0])
    n_acc = len(od.accs)
    if sch.kind == "fp32":
        rescale_mults, rescale_adds = 0, 0
        e_accum += outputs * em.fp_add()  # bias
        mbits = 0
    else:
        mbits = max(1, max(int(t["mult_max"]).bit_length() for t in od.accs))
        rescale_mults = outputs * n_acc
        rescale_adds = outputs * (n_acc + 1)
        e_rescale = rescale_mults * em.mult(mbits, accb) + rescale_adds * em.add(min(mbits + accb, 96))
    return _Arith(e_mac, e_accum, e_decode, e_rescale, offset_adds, decodes, rescale_mults, rescale_adds, mbits,
                  acc_io)


def _refetches(ctx: CostContext, mp, ifmap_bits: int, filter_bits: int, tiles: int,
               usable: float) -> tuple[int, int, str]:
    """DRAM re-fetches ``(ifmap, filter, loop order)``: an operand is fetched once when the part the
    schedule revisits fits the usable buffer, else once per revisit. os may run either loop order
    (filters or ifmap outermost) and takes the cheaper; ws/is follow SCALE-Sim's order (column
    folds outer)."""
    acc = ctx.accel
    if_cap, f_cap = acc.ifmap_kb * usable, acc.filter_kb * usable
    if acc.dataflow == "os":
        a_if = mp.col_folds if ifmap_bits > if_cap else 1
        b_f = mp.row_folds if filter_bits > f_cap else 1
        if ifmap_bits * a_if + filter_bits <= ifmap_bits + filter_bits * b_f:
            return a_if, 1, "filters_outer"
        return 1, b_f, "ifmap_outer"
    if acc.dataflow == "ws":
        refetch_if = mp.col_folds if ifmap_bits > if_cap else 1
        refetch_f = tiles if filter_bits / mp.col_folds > f_cap else 1
        return refetch_if, refetch_f, "filters_outer"
    refetch_f = mp.col_folds if filter_bits > f_cap else 1
    refetch_if = tiles if ifmap_bits / mp.col_folds > if_cap else 1
    return refetch_if, refetch_f, "ifmap_outer"


def conv_cost(ctx: CostContext, op: OpSpec, shapes: dict, oc: dict | None) -> dict:
    """The cost record of one conv (docs/cost.md): MACs, mapping, cycles, storage, traffic, energy (pJ)."""
    art, acc, em, sch = ctx.art, ctx.accel, ctx.em, ctx.scheme
    cb = art.tensors[op.inputs[0]].codebook
    gm = _gemm(op, shapes, oc)
    (Hi, Wi, Ci), (Ho, Wo, Co) = gm.in_shape, gm.out_shape
    w = np.asarray(art.array(op, "weight"))
    g, M = gm.g, gm.M
    mp = map_gemm(M, gm.K, gm.N, acc.rows, acc.cols, acc.dataflow)
    macs_geom = g * M * gm.K * gm.N
    outputs = Ho * Wo * Co

    # ---- operand widths, accumulators, MACs per "segment" key
    total = sum(int(v) for v in oc.get("macs", {}).values()) if oc is not None else gm.valid
    od = _operands(ctx, op, cb, w, gm.K, total, oc)
    wb, ab, accs, req_bits = od.wb, od.ab, od.accs, od.req_bits
    n_acc = len(accs)
    n_offset = sum(1 for t in accs if t["name"].startswith("Q"))
    # fp32 costs its significand products, not 32-bit ones: the exponent path runs alongside
    pw, pa = (FP32_SIGNIFICAND_BITS, FP32_SIGNIFICAND_BITS) if sch.kind == "fp32" else (wb, ab)
    passes = math.ceil(pw / acc.weight_bits) * math.ceil(pa / acc.activation_bits)
    if sch.kind != "fp32" and req_bits is not None and req_bits > acc.accumulator_bits:
        ctx.warnings.append(f"op {op.name!r}: worst-case accumulator needs {req_bits} bits > accelerator "
                            f"accumulator_bits {acc.accumulator_bits} (overflow possible)")

    # ---- partial sums and cycles
    accb = 32 if sch.kind == "fp32" else acc.accumulator_bits
    usable = acc.usable_fraction * 8 * 1024  # bits per KB of buffer
    psum_elem_bits = n_acc * accb
    tiles = _psum_tiles(ctx, mp, M, gm.N, psum_elem_bits, usable)
    cyc = g * compute_cycles(mp, passes, tiles)
    util = macs_geom / (cyc * acc.pes) if cyc else 0.0

    # ---- energy: MAC, accumulate, decode, rescale
    ar = _arith_energy(ctx, cb, mp, od, g, tiles, passes, accb, outputs)
    acc_io, mbits = ar.acc_io, ar.mbits

    # ---- storage (true bits)
    in_bits = ctx.tensor_bits(op.inputs[0])
    bias = np.asarray(art.array(op, "bias")).astype(np.int64)
    bias_w = 32 if sch.kind == "fp32" else (accb if sch.kind == "int" else signed_bits(int(np.abs(bias).max()) if bias.size else 0))
    weights_bits_total = int(w.size) * wb
    bias_bits_total = Co * bias_w
    params_bits = 0 if sch.kind == "fp32" else Co * n_acc * mbits
    filter_bits = weights_bits_total + bias_bits_total + params_bits
    ifmap_bits = Hi * Wi * Ci * in_bits

    # ---- SRAM and DRAM traffic (bits)
    refetch_if, refetch_f, loop_order = _refetches(ctx, mp, ifmap_bits, filter_bits, tiles, usable)
    psum_bits = acc_io["psum_writes"] * psum_elem_bits
    dram_read = ifmap_bits * refetch_if + filter_bits * refetch_f
    dram_write = 0
    out_t = op.outputs[0]
    out_bits = ctx.tensor_bits(out_t)
    wrote_out = not ctx.transient(out_t)
    if wrote_out:
        dram_write += outputs * out_bits
    sram = {
        "ifmap_fill": ifmap_bits * refetch_if,
        "filter_fill": filter_bits * refetch_f,
        "ifmap_reads": acc_io["ifmap_reads"] * in_bits,
        "filter_reads": acc_io["filter_reads"] * (wb if sch.kind != "fp32" else 32),
        "ofmap_writes": (outputs * out_bits * 2) if wrote_out else 0,  # write + write-back read
        "psum": 2 * psum_bits,  # write + read back per row fold
    }
    e_sram = ((sram["ifmap_fill"] + sram["ifmap_reads"]) * em.sram_bit(acc.ifmap_kb)
              + (sram["filter_fill"] + sram["filter_reads"]) * em.sram_bit(acc.filter_kb)
              + (sram["ofmap_writes"] + sram["psum"]) * em.sram_bit(acc.ofmap_kb))
    e_dram = (dram_read + dram_write) * em.dram_bit()
    fi, ff = first_fold_elements(mp)
    fill_bytes = (fi * in_bits + ff * (wb if sch.kind != "fp32" else 32)) / 8.0

    energy = {"mac": ar.e_mac, "accumulate": ar.e_accum, "decode": ar.e_decode, "rescale": ar.e_rescale,
              "vector": 0.0, "sram": e_sram, "dram": e_dram}
    energy["total"] = sum(energy[c] for c in CATEGORIES)
    mult_desc = [{"segment": k, "weight_bits": wb, "act_bits": b} for k, b in zip(od.seg_keys, od.seg_ab)]
    return {
        "name": op.name, "op": op.op, "kind": "conv", "realization": od.realization,
        "out_shape": [Ho, Wo, Co],
        "macs": {k: int(v) for k, v in zip(od.seg_keys, od.seg_macs)},
        "macs_total": int(sum(od.seg_macs)),
        "macs_geometric": int(macs_geom),
        "macs_approximate": od.approx,
        "gemm": {**mp.to_json(), "groups": g, "transposed": gm.transposed, "tiles": tiles,
                 "loop_order": loop_order},
        "multiplier": {"per_segment": mult_desc, "physical": [wb, ab], "passes": passes,
                       "native": [acc.weight_bits, acc.activation_bits],
                       "fits_native": passes == 1},
        "accumulators": {"count": n_acc, "offset": n_offset, "names": [t["name"] for t in accs],
                         "width_bits": accb, "required_bits": req_bits},
        "rescale": {"mults": int(ar.rescale_mults), "adds": int(ar.rescale_adds), "mult_bits": mbits,
                    "offset_adds": int(ar.offset_adds), "lut_decodes": int(ar.decodes)},
        "storage_bits": {"weights": weights_bits_total, "bias": bias_bits_total, "rescale_params": params_bits,
                         "input": ifmap_bits, "output": outputs * out_bits,
                         "input_elem_bits": in_bits, "output_elem_bits": out_bits},
        "sram_bits": sram,
        "dram_bits": {"read": int(dram_read), "write": int(dram_write),
                      "ifmap_refetch": refetch_if, "filter_refetch": refetch_f},
        "cycles": {"compute": int(cyc), "dram": 0.0, "stall": 0.0, "total": float(cyc)},
        "_fill_bytes": fill_bytes,
        "utilisation": util,
        "mapping_efficiency": mapping_efficiency(mp),
        "energy_pj": energy,
    }
