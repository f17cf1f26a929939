"""Per-op semantic checks of an artifact (docs/artifact.md, "Loader checks" 6–8).

Per op: tensor kinds (the op registry's, :data:`intsim.ops.opdef.OPS`), channel counts, array
dtypes/shapes, fracs, shifts in [0, 62], multipliers within ``mult_bits`` (§2.1); then the spatial
1×1-ness an op needs (``mul``'s gate, §6.14) and the exactness envelope (§9, via :mod:`intsim.bounds`).
Each check reports through the context of :mod:`intsim.validate_numerics`.
"""
from __future__ import annotations

import numpy as np

from intsim import bounds
from intsim.artifact_model import OpSpec
from intsim.ops.opdef import OPS
from intsim.validate_numerics import _V
from intsim.validate_schema import INT64_MAX, MAX_SHIFT

# ---- per-op semantics


def _array(v: _V, op: OpSpec, role: str, shape: tuple[int, ...] | None, ndim: int | None = None) -> np.ndarray:
    a = v.art.arrays[op.arrays[role]]
    lab = f"op {op.name!r} ({op.op}): array {role!r} ({op.arrays[role]!r})"
    dtypes = OPS[op.op].roles[role]
    if str(a.dtype) not in dtypes:
        v.fail(f"{lab}: dtype {a.dtype}, must be {' or '.join(dtypes)}")
    if ndim is not None and a.ndim != ndim:
        v.fail(f"{lab}: shape {list(a.shape)} must have {ndim} dimensions")
    if shape is not None and tuple(a.shape) != tuple(shape):
        v.fail(f"{lab}: shape {list(a.shape)}, expected {list(shape)}")
    return a


def _check_mults(v: _V, op: OpSpec, what: str, values, lo: int | None = None) -> None:
    """Stored multipliers: magnitude at most mult_bits bits (§2, §2.1)."""
    vals = [int(x) for x in np.asarray(values).reshape(-1).tolist()]
    for i, m in enumerate(vals):
        if abs(m) > v.mult_max or (lo is not None and m < lo):
            rng = f"[{lo}, {v.mult_max}]" if lo is not None else f"|M| ≤ {v.mult_max}"
            v.fail(f"op {op.name!r} ({op.op}): {what}[{i}] = {m} is outside {rng} "
                   f"(mult_bits = {v.nx.mult_bits}, §2.1)")


def _check_kinds(v: _V, op: OpSpec) -> None:
    """Each input and output tensor has the kind the op registry states (image, stream, codes)."""
    art, lab = v.art, f"op {op.name!r} ({op.op})"
    kin, kout = OPS[op.op].kinds
    for side, names, kinds in (("input", op.inputs, kin), ("output", op.outputs, kout)):
        for i, t in enumerate(names):
            want = kinds[min(i, len(kinds) - 1)].rstrip("*")
            have = art.tensors[t].kind
            if have != want:
                v.fail(f"{lab}: {side} {i} tensor {t!r} must be {want}, is {have}")


def _check_conv(v: _V, op: OpSpec, cin: list[int], cout: list[int]) -> None:
    """conv2d / conv_transpose2d: weight shape against kernel and channels, groups (§5.1, §5.5), the
    multipliers m_w and the per-accumulator M of (5.3) within mult_bits (§2.1)."""
    art, lab, a, kind, d = v.art, f"op {op.name!r} ({op.op})", op.attrs, op.op, OPS[op.op]
    w = _array(v, op, "weight", None, ndim=4)
    co, kh, kw, ci_g = (int(x) for x in w.shape)
    if [kh, kw] != list(a["kernel"]):
        v.fail(f"{lab}: attribute kernel {list(a['kernel'])} does not match weight shape {list(w.shape)} "
               f"([Co, kh, kw, Ci/g])")
    if co != cout[0]:
        v.fail(f"{lab}: weight has {co} output channels (shape {list(w.shape)}), output tensor "
               f"{op.outputs[0]!r} has {cout[0]}")
    if kind == "conv2d":
        g = a["groups"]
        if co % g:
            v.fail(f"{lab}: output channels {co} are not divisible by groups = {g} (§5.1)")
        if cin[0] != g * ci_g:
            v.fail(f"{lab}: input tensor {op.inputs[0]!r} has {cin[0]} channels, but groups·weight.shape[3] "
                   f"= {g}·{ci_g} = {g * ci_g} (§5.1)")
    else:
        if d.attr(op, "groups") != 1:
            v.fail(f"{lab}: groups must be 1 (§5.5), got {a['groups']}")
        if d.attr(op, "dilation") != (1, 1):
            v.fail(f"{lab}: dilation must be [1, 1] (§5.5), got {list(a['dilation'])}")
        if cin[0] != ci_g:
            v.fail(f"{lab}: input tensor {op.inputs[0]!r} has {cin[0]} channels, weight.shape[3] = {ci_g} (§5.5)")
        for ax, (opad, s) in enumerate(zip(a["output_padding"], a["stride"])):
            if opad >= s:
                v.fail(f"{lab}: output_padding[{ax}] = {opad} must be smaller than stride[{ax}] = {s} (§5.5)")
    mw = _array(v, op, "w_mant", (co,))
    _array(v, op, "bias", (co,))
    _check_mults(v, op, "w_mant", mw)
    # The per-accumulator multipliers of (5.3) are what the rescale multiplies by:
    # each must be a mult_bits multiplier too (§2), formed exactly from m_w, unit_m, d_s/e_s.
    for name, mults in bounds.conv_multipliers(art, op):
        for c, m in enumerate(mults):
            if abs(m) > v.mult_max:
                what = {"P": "m_w·unit_m·d_s", "Q": "m_w·unit_m·e_s", "A": "m_w·unit_m"}[name[0]]
                v.fail(f"{lab}: multiplier M_{name}[{c}] = {what} = {m} exceeds mult_bits = "
                       f"{v.nx.mult_bits} (|M| ≤ {v.mult_max}, §2.1, §5.3)")


def _check_lut(v: _V, op: OpSpec) -> None:
    """lut: index range and a table of imax − imin + 1 stream values (§6.17)."""
    lab, a = f"op {op.name!r} ({op.op})", op.attrs
    if a["imin"] > a["imax"]:
        v.fail(f"{lab}: imin {a['imin']} > imax {a['imax']} (§6.13)")
    n = a["imax"] - a["imin"] + 1
    if n > INT64_MAX:
        v.fail(f"{lab}: LUT index range too large")
    lut = _array(v, op, "lut", (n,))
    lo, hi = -(1 << (v.nx.stream_bits - 1)), (1 << (v.nx.stream_bits - 1)) - 1
    if lut.size and (int(lut.min()) < lo or int(lut.max()) > hi):
        # The output is a stream (§1.2): its values must be stream_bits-bit integers.
        v.fail(f"{lab}: lut values [{int(lut.min())}, {int(lut.max())}] do not fit stream_bits = "
               f"{v.nx.stream_bits} (§1.2, §6.13)")


def _check_fracs_and_shifts(v: _V, op: OpSpec) -> None:
    """Ops without a rescale keep the input frac; every shift, derived ones included, in [0, 62]."""
    art, lab, kind = v.art, f"op {op.name!r} ({op.op})", op.op
    # fracs: ops without a rescale keep the input frac (§6.5–6.12)
    if OPS[kind].same_frac:
        fi = v.tin(op).frac
        for t in op.outputs:
            if art.tensors[t].frac != fi:
                v.fail(f"{lab}: output tensor {t!r} frac {art.tensors[t].frac} must equal the input frac {fi} "
                       f"(this op does not rescale)")
    # every shift in [0, 62] (§2), derived ones included (§5.2, §6.x)
    for name, n in bounds.op_shifts(art, op).items():
        if not 0 <= n <= MAX_SHIFT:
            v.fail(f"{lab}: shift {name} = {n} is outside [0, {MAX_SHIFT}] ({_SHIFT_WHY.get((kind, name), '§2')})")


def _check_op(v: _V, op: OpSpec) -> None:
    """Per-op semantics: kinds, channel counts, arrays, attribute ranges, fracs and shifts."""
    art, lab = v.art, f"op {op.name!r} ({op.op})"
    _check_kinds(v, op)
    a = op.attrs
    cin = [art.tensors[t].channels for t in op.inputs]
    cout = [art.tensors[t].channels for t in op.outputs]

    def same_channels():
        if len(set(cin + cout)) != 1:
            v.fail(f"{lab}: channel counts differ (inputs {cin}, outputs {cout}); this op keeps channels")

    kind = op.op
    if OPS[kind].keeps_channels:  # checked first: the ops below read cin[0] as the channel count
        same_channels()
    if kind in ("image_in", "image_out"):
        m = _array(v, op, "mult", (cin[0],))
        _array(v, op, "offset", (cin[0],))
        _check_mults(v, op, "mult", m)
        if kind == "image_out" and v.tin(op).frac < 0:
            # I = X·m_c + o_c·2^f_i is an integer only for f_i ≥ 0 (§6.2).
            v.fail(f"{lab}: input frac {v.tin(op).frac} must be ≥ 0 (o_c·2^f_i must be an integer, §6.2)")
    elif kind == "pad":
        if art.tensors[op.inputs[0]].codebook != art.tensors[op.outputs[0]].codebook:
            v.fail(f"{lab}: output tensor {op.outputs[0]!r} must have the input's codebook (a pad copies codes, §5.8)")
    elif kind in ("conv2d", "conv_transpose2d"):
        _check_conv(v, op, cin, cout)
    elif kind == "concat":
        if sum(cin) != cout[0]:
            v.fail(f"{lab}: output has {cout[0]} channels, inputs sum to {sum(cin)} ({cin})")
    elif kind == "split":
        sizes = list(a["sizes"])
        if len(sizes) != len(op.outputs):
            v.fail(f"{lab}: {len(sizes)} sizes for {len(op.outputs)} outputs")
        if sum(sizes) != cin[0]:
            v.fail(f"{lab}: sizes {sizes} sum to {sum(sizes)}, input has {cin[0]} channels")
        for i, (s, c) in enumerate(zip(sizes, cout)):
            if s != c:
                v.fail(f"{lab}: output {i} tensor {op.outputs[i]!r} has {c} channels, sizes[{i}] = {s}")
    elif kind == "clamp":
        lo, hi = -(1 << (v.nx.stream_bits - 1)), (1 << (v.nx.stream_bits - 1)) - 1
        if not lo <= a["lo"] <= a["hi"] <= hi:
            v.fail(f"{lab}: bounds lo = {a['lo']}, hi = {a['hi']} must satisfy {lo} ≤ lo ≤ hi ≤ {hi} "
                   f"(stream_bits = {v.nx.stream_bits}, §6.16)")
    elif kind == "leaky_relu":
        _check_mults(v, op, "attribute mult", [a["mult"]])
    elif kind == "prelu":
        m = _array(v, op, "mult", (cin[0],))
        _check_mults(v, op, "mult", m)
    elif kind == "pixel_shuffle":
        r = a["factor"]
        if cin[0] != cout[0] * r * r:
            v.fail(f"{lab}: input channels {cin[0]} must be output channels {cout[0]} · factor² ({r}²) (§6.8)")
    elif kind == "upsample_bicubic":
        if a["tap_bits"] > bounds.MAX_TAP_BITS:
            v.fail(f"{lab}: tap_bits {a['tap_bits']} exceeds {bounds.MAX_TAP_BITS} (§6.18)")
        if a["factor"] > bounds.MAX_BICUBIC_FACTOR:
            v.fail(f"{lab}: factor {a['factor']} exceeds {bounds.MAX_BICUBIC_FACTOR} (§6.18)")
    elif kind == "upsample_bilinear":
        _check_mults(v, op, "attribute mult", [a["mult"]], lo=1)
    elif kind == "lut":
        _check_lut(v, op)
    elif kind == "mul":
        if not cin[0] == cin[1] == cout[0]:
            v.fail(f"{lab}: channel counts differ: x {cin[0]}, g {cin[1]}, output {cout[0]} (§6.14)")
    _check_fracs_and_shifts(v, op)


_SHIFT_WHY = {
    ("image_in", "n"): "n = exp − f_o, §6.1",
    ("image_out", "n"): "n = f_i + exp, §6.2",
    ("conv2d", "n"): "n = w_exp + unit_e − f_o, §5.2",
    ("conv_transpose2d", "n"): "n = w_exp + unit_e − f_o, §5.2",
    ("add", "n"): "n = F − f_o, §6.3",
    ("add", "align_a"): "F − f_a, §6.3",
    ("add", "align_b"): "F − f_b, §6.3",
    ("mul", "n"): "n = f_x + f_g − f_o, §6.14",
    ("upsample_bicubic", "n"): "n = 2·tap_bits, §6.18",
    ("lut", "left"): "k_lut − f_i, §6.17",
    ("lut", "right"): "f_i − k_lut, §6.17",
}


def _conv_out_1x1(op: OpSpec) -> int:
    """Output height and width (min of both) of a conv applied to a 1×1 input (§5.1, §5.5)."""
    out = [OPS[op.op].out_size(op, 1, ax) for ax in range(2)]
    return min(out) if min(out) < 1 else max(out)


def _check_spatial(v: _V) -> None:
    """Propagate "is 1×1" (global) through the graph; mul's gate must be 1×1 (§6.14).

    Only the 1×1 class is known statically; other spatial sizes depend on the image
    and are checked by the engine at run time.
    """
    art = v.art
    glob: dict[str, bool] = {t: False for t in art.inputs}
    for op in art.ops:
        lab = f"op {op.name!r} ({op.op})"
        g_in = [glob[t] for t in op.inputs]
        kind = op.op
        geometry = OPS[kind].geometry.kind
        if geometry == "global":
            res = True
        elif geometry in ("conv", "conv_transpose"):
            res = False
            if g_in[0]:
                size = _conv_out_1x1(op)
                if size < 1:
                    v.fail(f"{lab}: applied to the 1×1 tensor {op.inputs[0]!r} it has an empty output")
                res = size == 1
        elif geometry == "upsample":
            res = g_in[0] and op.attrs["factor"] == 1
        elif kind == "pad":
            if g_in[0] and op.attrs["mode"] == "reflect" and max(op.attrs["padding"]) > 0:
                v.fail(f"{lab}: reflect padding of the 1×1 tensor {op.inputs[0]!r} (needs padding < size, §5.8)")
            res = g_in[0] and max(op.attrs["padding"]) == 0
        elif kind == "mul":
            if not g_in[1]:
                v.fail(f"{lab}: second input {op.inputs[1]!r} must be a 1×1 (global) tensor, e.g. derived from "
                       f"mean_pool/std_pool (§6.14)")
            res = g_in[0]
        elif kind in ("add", "concat"):
            if len(set(g_in)) != 1:
                v.fail(f"{lab}: mixes 1×1 (global) and full-size inputs {list(op.inputs)}; no broadcasting (§6.3, §6.4)")
            res = g_in[0]
        else:  # elementwise, encode, image_in/out, split
            res = g_in[0]
        for t in op.outputs:
            glob[t] = res


def _check_envelope(v: _V) -> None:
    """§9: every integer intermediate (worst case over all inputs) below 2^53."""
    details = bounds.op_envelope_details(v.art)
    kinds = {op.name: op.op for op in v.art.ops}
    for name, (b, what) in details.items():
        if b >= bounds.EXACT_LIMIT:
            v.fail(f"op {name!r} ({kinds[name]}): exactness envelope exceeded: {what} can reach "
                   f"{b} ({b.bit_length()} bits) ≥ 2^53 (§9)")
