"""The cost of a vector (non-conv) op on the accelerator's vector lanes (docs/cost.md):
its primitive operations, SRAM/DRAM traffic and fusion with its producer.
"""
from __future__ import annotations

import math

import numpy as np

from intsim.artifact import OpSpec
from intsim.cost.context import CATEGORIES, RESCALE_OPS, VIEW_OPS, CostContext


def _vector_prims(ctx: CostContext, op: OpSpec, shapes: dict) -> tuple[str, int, list[tuple[str, int, int, float]]]:
    """(category, element count, [(prim, width_a, width_b, per-element count)]) of a non-conv op.

    prim: ``add`` (width_a), ``mult`` (width_a × width_b), ``lut`` (entries, bits)."""
    art, sb, a = ctx.art, ctx.sb, op.attrs
    fp = ctx.scheme.kind == "fp32"
    out_e = int(np.prod(shapes[op.outputs[0]]))
    in_e = int(np.prod(shapes[op.inputs[0]]))
    k = op.op
    cat = "rescale" if k in RESCALE_OPS else "vector"
    P: list[tuple[str, int, int, float]] = []
    if k == "image_in":
        mb = max(1, int(np.abs(np.asarray(art.array(op, "mult"))).max()).bit_length())
        P = [("mult", 8, mb, 1), ("add", 8 + mb, 0, 1 if fp else 2)]
    elif k == "image_out":
        mb = max(1, int(np.abs(np.asarray(art.array(op, "mult"))).max()).bit_length())
        P = [("mult", sb, mb, 1), ("add", sb + mb, 0, 1 if fp else 2), ("add", 9, 0, 2)]
    elif k == "encode":
        if fp:
            P = []
        else:
            cb = art.tensors[op.outputs[0]].codebook
            S = 1 if ctx.scheme.kind == "int" else len(cb.segments)
            eb = ctx.enc_mult_bits if ctx.scheme.kind == "int" else max(e.mult.bit_length() for e in cb.encoder)
            ib = ctx.tensor_bits(op.outputs[0])
            P = [("add", sb, 0, (S - 1) + 1), ("mult", sb + 1, eb, 1), ("add", sb + 1 + eb, 0, 1), ("add", ib, 0, 2)]
    elif k == "relu":
        P = [("add", sb, 0, 1)]
    elif k == "clamp":
        P = [("add", sb, 0, 2)]  # two comparisons (§6.16)
    elif k in ("leaky_relu", "prelu"):
        mv = a["mult"] if k == "leaky_relu" else int(np.abs(np.asarray(art.array(op, "mult"))).max())
        mb = max(1, abs(int(mv)).bit_length())
        P = [("add", sb, 0, 1), ("mult", sb, mb, 1), ("add", sb + mb, 0, 0 if fp else 1)]
    elif k == "add":
        P = [("add", sb + 1, 0, 1 if fp else 2)]
    elif k == "upsample_bilinear":
        wbits = (2 * int(a["factor"])).bit_length()
        mb = max(1, abs(int(a["mult"])).bit_length())
        P = [("mult", sb, wbits, 4), ("add", sb + 2 * wbits, 0, 3), ("mult", sb + 2 * wbits, mb, 1),
             ("add", sb + 2 * wbits + mb, 0, 0 if fp else 1)]
    elif k == "upsample_bicubic":
        # separable: 4 horizontal then 4 vertical taps per output (T+1-bit signed taps), one rounding (§6.18)
        tb = int(a["tap_bits"]) + 1
        P = [("mult", sb, tb, 8), ("add", sb + 2 * tb, 0, 6), ("add", sb + 2 * tb, 0, 0 if fp else 1)]
    elif k == "mean_pool":
        kb = max(1, int(a["shift"]))
        P = [("mult", sb, kb, 1), ("add", sb + kb, 0, 1)]
        out_e = in_e
    elif k == "std_pool":
        kb = max(1, int(a["shift"]))
        P = [("mult", sb, kb, 2), ("mult", sb, sb, 1), ("add", sb + kb, 0, 2), ("add", sb + 1, 0, 2),
             ("add", 2 * sb + kb, 0, 1)]
        out_e = in_e
    elif k == "lut":
        entries = int(a["imax"]) - int(a["imin"]) + 1
        P = [("add", sb, 0, 2), ("lut", entries, 32 if fp else sb, 1)]
    elif k == "mul":
        P = [("mult", sb, sb, 1), ("add", 2 * sb, 0, 0 if fp else 1)]
    elif k in ("concat", "split", "pixel_shuffle", "upsample_nearest", "pad"):
        P = []  # address transforms: no arithmetic (pad re-reads border codes, §5.8)
    else:
        raise ValueError(f"op {op.name!r}: unknown op {k!r} for the cost model")
    return cat, out_e, P


def vector_cost(ctx: CostContext, op: OpSpec, shapes: dict, oc: dict | None) -> dict:
    em, acc = ctx.em, ctx.accel
    oshape = shapes[op.outputs[0]]
    if oc is not None and "out_shape" in oc and tuple(int(x) for x in oc["out_shape"]) != tuple(oshape):
        raise ValueError(f"op {op.name!r}: counters out_shape {oc['out_shape']} != shape from the graph "
                         f"{list(oshape)} (counters of another artifact or image?)")
    cat, elems, prims = _vector_prims(ctx, op, shapes)
    fp = ctx.scheme.kind == "fp32"
    e_compute = 0.0
    n_ops = {"adds": 0.0, "mults": 0.0, "lut_reads": 0.0}
    for prim, wa, wb_, cnt in prims:
        n = elems * cnt
        if prim == "add":
            e_compute += n * (em.fp_add() if fp else em.add(wa))
            n_ops["adds"] += n
        elif prim == "mult":
            e_compute += n * (em.fp_mult() if fp else em.mult(wa, wb_))
            n_ops["mults"] += n
        else:
            e_compute += n * em.lut_read(wa, wb_)
            n_ops["lut_reads"] += n
    fused = any(ctx.transient(t) for t in op.inputs)
    dram_read = dram_write = 0
    sram_rw = 0
    view = op.op in VIEW_OPS
    for t in ([] if view else dict.fromkeys(op.inputs)):
        if not ctx.transient(t):
            b = int(np.prod(shapes[t])) * ctx.tensor_bits(t)
            dram_read += b
            sram_rw += 2 * b  # fill + read
    for t in ([] if view else op.outputs):
        if not ctx.transient(t):
            b = int(np.prod(shapes[t])) * ctx.tensor_bits(t)
            dram_write += b
            sram_rw += 2 * b  # write + write-back read
    e_sram = sram_rw * em.sram_bit(acc.ofmap_kb)
    e_dram = (dram_read + dram_write) * em.dram_bit()
    energy = {c: 0.0 for c in CATEGORIES}
    energy[cat] = e_compute
    energy["sram"], energy["dram"] = e_sram, e_dram
    energy["total"] = sum(energy[c] for c in CATEGORIES)
    cyc = 0 if (fused or view) else math.ceil(elems / acc.lanes) if prims or dram_read or dram_write else 0
    return {
        "name": op.name, "op": op.op, "kind": "vector", "fused": fused, "view": view,
        "out_shape": list(oshape),
        "elements": elems,
        "ops": {k: float(v) for k, v in n_ops.items()},
        "sram_bits": {"total": int(sram_rw)},
        "dram_bits": {"read": int(dram_read), "write": int(dram_write)},
        "cycles": {"compute": int(cyc), "dram": 0.0, "stall": 0.0, "total": float(cyc)},
        "_fill_bytes": 0.0,
        "energy_pj": energy,
    }
