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

from calib.export_conv import export_conv
from calib.export_fixedpoint import (
    ENVELOPE_LIMIT,
    MAX_MANT_BITS,
    ExportError,
    rel_err,
    round_half_away,
    round_half_up,
    stream_frac,
)
from calib.graph import INPUT_TENSOR, OUTPUT_TENSOR, LNode
from intsim.artifact import Artifact, Numerics, OpSpec, TensorSpec
from intsim.rounding import MAX_SHIFT, RoundingMode


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
        m = np.array([round_half_away(x * 2.0 ** e) for x in a], dtype=np.int64)
        o = np.array([round_half_away(x * 2.0 ** e) for x in b], dtype=np.int64)
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
        m = np.array([round_half_away(x * 2.0 ** e) for x in a], dtype=np.int64)
        o = np.array([round_half_away(x * 2.0 ** e) for x in b], dtype=np.int64)
        big = (1 << (numerics.stream_bits - 1)) * int(np.abs(m).max()) + int(np.abs(o).max()) * 2 ** max(f_i, 0)
        if big < ENVELOPE_LIMIT or e <= -f_i:
            break
        e -= 1
    meta = {"a": list(map(float, a)), "b": list(map(float, b)), "folded": node.attrs.get("folded", []),
            "a_rel_err_max": float(np.max(np.abs(m * 2.0 ** -e - a) / np.abs(a))),
            "b_abs_err_max": float(np.max(np.abs(o * 2.0 ** -e - b)))}
    return {"exp": int(e), "mult": m, "offset": o, "meta": meta}


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
    M = [round_half_away(a * 2.0 ** k) for a in al]
    if max(abs(m) for m in M) >= 1 << bits:
        k -= 1
        M = [round_half_away(a * 2.0 ** k) for a in al]
    errs = [rel_err(m * 2.0 ** -k, a) for m, a in zip(M, al)]
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
    return round_half_up(Fraction(1 << k, q)), k


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
