"""Human- and machine-readable description of an artifact (``intsim inspect``).

:func:`describe` returns a JSON-serialisable dict (only str/int/bool/None/list/dict):
model, numerics, and per op its tensors, geometry, codebook summary of codes
inputs/outputs (§3), accumulator worst cases and whether ordered accumulation
is needed (§5.4), derived shifts and the exactness-envelope bound (§9);
plus totals. :func:`format_inspect` renders it as a fixed-width table.

The description is derived from a *validated* artifact (``load_artifact``
validates); all bounds come from :mod:`intsim.bounds`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from intsim import bounds
from intsim.artifact import Artifact, Codebook, OpSpec
from intsim.ops.opdef import OPS

INSPECT_FORMAT = "intsim-inspect"
INSPECT_VERSION = 1


def _jsonable(v: Any) -> Any:
    """Copy ``v`` with numpy scalars/arrays and tuples turned into JSON types."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def codebook_summary(cb: Codebook, realization: str) -> dict:
    """Code count, honest storage bits (§1.3), segments (§3.1), allocation (§3.3) and
    the per-code multiplicand bound of the realization (§5.3)."""
    return {
        "num_codes": cb.num_codes,
        "code_bits": cb.code_bits,
        "nominal_bits": cb.bits,
        "allocation": cb.allocation,
        "segments": [{"origin": s.origin, "step": s.step, "qmin": s.qmin, "qmax": s.qmax, "count": s.count}
                     for s in cb.segments],
        "num_segments": len(cb.segments),
        "unit": {"m": cb.unit_m, "e": cb.unit_e},
        "grid_bits": cb.grid_bits,
        "max_abs_index": bounds.codebook_max_abs_index(cb),
        "max_abs_grid": bounds.codebook_max_abs_grid(cb),
        "grid_value_bits": bounds.worst_case_bits(bounds.codebook_max_abs_grid(cb)),
        "realization": realization,
    }


def _tensor_info(art: Artifact, name: str) -> dict:
    t = art.tensors[name]
    d: dict[str, Any] = {"name": name, "kind": t.kind, "channels": t.channels}
    if t.kind == "stream":
        d["frac"] = t.frac
    return d


def _weight_bits(w: np.ndarray) -> int:
    """Signed bits that hold every weight value of the layer (≤ the dtype's width)."""
    if w.size == 0:
        return 1
    lo, hi = int(w.min()), int(w.max())
    # two's complement: [−2^(b−1), 2^(b−1) − 1], so −8 needs 4 bits but +8 needs 5
    hi_bits = hi.bit_length() + 1 if hi > 0 else 1
    lo_bits = (-lo - 1).bit_length() + 1 if lo < 0 else 1
    return max(hi_bits, lo_bits)


def _conv_info(art: Artifact, op: OpSpec) -> dict:
    a = op.attrs
    w = art.array(op, "weight")
    cb = art.tensors[op.inputs[0]].codebook
    accs = bounds.conv_accumulators(art, op)
    limit = (1 << (art.numerics.acc_bits - 1)) - 1
    groups = OPS[op.op].attr(op, "groups")
    co, kh, kw, ci_g = (int(x) for x in w.shape)
    return {
        "kernel": list(a["kernel"]),
        "stride": list(a["stride"]),
        "padding": list(a["padding"]),
        "dilation": list(OPS[op.op].attr(op, "dilation")),
        "output_padding": list(a["output_padding"]) if "output_padding" in a else None,
        "groups": groups,
        "weight": {
            "dtype": str(w.dtype), "shape": [co, kh, kw, ci_g], "params": int(w.size),
            "bits": _weight_bits(w),
            "min": int(w.min()) if w.size else 0, "max": int(w.max()) if w.size else 0,
        },
        "macs_per_output": kh * kw * ci_g,
        "codes": codebook_summary(cb, art.numerics.realization),
        "realization": art.numerics.realization,
        "acc_bits": art.numerics.acc_bits,
        "accumulators": [{
            "name": acc.name, "segment": acc.segment, "a": acc.a,
            "worst": acc.worst_max, "bits": acc.bits, "fits": acc.worst_max <= limit,
            "multiplier_bits": bounds.worst_case_bits(int(np.abs(acc.multiplier).max()) if acc.multiplier.size else 0) - 1,
        } for acc in accs],
        "worst_bits": max((acc.bits for acc in accs), default=1),
        "ordered": bounds.conv_can_overflow(art, op),
    }


def describe(art: Artifact) -> dict:
    """A JSON-serialisable description of ``art`` (see module docstring for the fields).

    Units: ``*_bits`` are signed two's complement widths; ``envelope`` is the op's
    largest integer intermediate (§9; pooling ops: the bound at N = 1);
    ``multiplier_bits`` are magnitude bits of ``max_co |M_j[co]|``.
    """
    env = bounds.op_envelope_details(art)
    ops = []
    n_conv = n_ordered = weights = biases = weight_bits = storage_bits = 0
    for i, op in enumerate(art.ops):
        e, what = env[op.name]
        d: dict[str, Any] = {
            "index": i, "name": op.name, "op": op.op,
            "inputs": [_tensor_info(art, t) for t in op.inputs],
            "outputs": [_tensor_info(art, t) for t in op.outputs],
            "attrs": _jsonable(op.attrs),
            "arrays": {r: {"name": n, "dtype": str(art.arrays[n].dtype), "shape": list(art.arrays[n].shape)}
                       for r, n in op.arrays.items()},
            "shifts": bounds.op_shifts(art, op),
            "envelope": e, "envelope_bits": bounds.worst_case_bits(e), "envelope_what": what,
        }
        if OPS[op.op].cost == "gemm":  # the convolutions
            c = _conv_info(art, op)
            d.update(c)
            n_conv += 1
            n_ordered += int(c["ordered"])
            w = art.array(op, "weight")
            weights += int(w.size)
            biases += int(art.array(op, "bias").size)
            weight_bits += int(w.size) * c["weight"]["bits"]
            storage_bits += int(w.size) * w.dtype.itemsize * 8
        elif op.op == "encode":
            d["codes"] = codebook_summary(art.tensors[op.outputs[0]].codebook, art.numerics.realization)
        ops.append(d)
    return _jsonable({
        "format": INSPECT_FORMAT,
        "version": INSPECT_VERSION,
        "model": art.model,
        "sha256": art.sha256,
        "numerics": art.numerics.to_json(),
        "inputs": [_tensor_info(art, t) for t in art.inputs],
        "outputs": [_tensor_info(art, t) for t in art.outputs],
        "ops": ops,
        "totals": {
            "ops": len(art.ops),
            "tensors": len(art.tensors),
            "conv_ops": n_conv,
            "ordered_convs": n_ordered,
            "weights": weights,
            "biases": biases,
            "params": weights + biases,
            "weight_bits": weight_bits,
            "weight_storage_bits": storage_bits,
            "max_envelope_bits": max((o["envelope_bits"] for o in ops), default=0),
        },
    })


def _chan(d: dict) -> str:
    cin = "+".join(str(t["channels"]) for t in d["inputs"])
    cout = "+".join(str(t["channels"]) for t in d["outputs"])
    return f"{cin}→{cout}"


def _geom(d: dict) -> str:
    if "kernel" in d:
        kh, kw = d["kernel"]
        s = f"{kh}x{kw}"
        if d["stride"] != [1, 1]:
            s += f" s{d['stride'][0]},{d['stride'][1]}" if d["stride"][0] != d["stride"][1] else f" s{d['stride'][0]}"
        if d["dilation"] != [1, 1]:
            s += f" d{d['dilation'][0]}"
        if d["groups"] != 1:
            s += f" g{d['groups']}"
        return s
    a = d["attrs"]
    if "factor" in a:
        return f"x{a['factor']}"
    if "sizes" in a:
        return "/".join(str(x) for x in a["sizes"])
    return ""


def _codes(c: dict | None) -> str:
    if not c:
        return ""
    return f"N={c['num_codes']} {c['code_bits']}b S={c['num_segments']} {c['allocation']}:{c['nominal_bits']}"


def _fracs(d: dict) -> str:
    fi = [t.get("frac") for t in d["inputs"] if t["kind"] == "stream"]
    fo = [t.get("frac") for t in d["outputs"] if t["kind"] == "stream"]
    return f"{','.join(map(str, fi)) or '-'}→{','.join(map(str, fo)) or '-'}"


def format_inspect(desc: dict) -> str:
    """Render :func:`describe`'s dict as a fixed-width text table (one row per op)."""
    nx = desc["numerics"]
    model = desc.get("model") or {}
    lines = []
    head = ", ".join(f"{k}={v}" for k, v in model.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    lines.append(f"model: {head or '-'}")
    if desc.get("sha256"):
        lines.append(f"sha256: {desc['sha256']}")
    lines.append("numerics: " + " ".join(f"{k}={nx[k]}" for k in nx))
    lines.append("inputs: " + ", ".join(f"{t['name']} ({t['kind']} {t['channels']}ch)" for t in desc["inputs"])
                 + "   outputs: " + ", ".join(f"{t['name']} ({t['kind']} {t['channels']}ch)" for t in desc["outputs"]))
    cols = [("#", 3), ("name", max([4] + [len(o["name"]) for o in desc["ops"]])), ("op", 17), ("ch", 9),
            ("geom", 12), ("frac", 9), ("codes (in/out)", 26), ("acc bits", 18), ("ord", 3), ("env", 4)]
    lines.append("  ".join(f"{n:<{w}}" for n, w in cols).rstrip())
    lines.append("  ".join("-" * w for _, w in cols))
    for o in desc["ops"]:
        if "accumulators" in o:
            acc = f"{o['worst_bits']}/{o['acc_bits']} " + ",".join(a["name"] for a in o["accumulators"])
            ordered = "yes" if o["ordered"] else "no"
        else:
            acc, ordered = "", ""
        cells = [str(o["index"]), o["name"], o["op"], _chan(o), _geom(o), _fracs(o), _codes(o.get("codes")),
                 acc, ordered, str(o["envelope_bits"])]
        lines.append("  ".join(f"{c:<{w}}" if len(c) <= w else c[: w - 1] + "…"
                               for c, (_, w) in zip(cells, cols)).rstrip())
    t = desc["totals"]
    lines.append("")
    lines.append(f"totals: {t['ops']} ops, {t['conv_ops']} convs ({t['ordered_convs']} ordered), "
                 f"{t['params']} params ({t['weights']} weights + {t['biases']} biases), "
                 f"weight bits {t['weight_bits']} (stored {t['weight_storage_bits']}), "
                 f"max envelope {t['max_envelope_bits']} bits (limit 54: < 2^53)")
    return "\n".join(lines)
