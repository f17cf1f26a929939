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
  (:data:`intsim.lut.LUT_FUNCTIONS`; :func:`calib.export_ops.export_lut`): range ±R from the
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
from calib.export_ops import ClampBoundsError, bicubic_tap_bits, clamp_bounds, export_lut
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
from intsim.overflow import OverflowPolicy
from intsim.rounding import MAX_SHIFT, RoundingMode
from intsim.validate import validate_artifact


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


def _export_numerics(realization: str, rounding: str, overflow: str, acc_bits: int, stream_bits: int,
                     mult_bits: int, grid_bits: int | None) -> Numerics:
    """The artifact's numerics, each argument checked against arithmetic.md §2.1 and §8 (ValueError)."""
    if realization not in ("split", "grid"):
        raise ValueError(f"realization must be 'split' or 'grid', got {realization!r}")
    RoundingMode.parse(rounding)
    OverflowPolicy.parse(overflow)
    if not 8 <= acc_bits <= 48:
        raise ValueError(f"acc_bits must be in 8..48 (arithmetic.md §8), got {acc_bits}")
    if not 8 <= stream_bits <= 40:
        raise ValueError(f"stream_bits must be in 8..40 (arithmetic.md §8), got {stream_bits}")
    if not 8 <= mult_bits <= 31:
        raise ValueError(f"mult_bits must be in 8..31 (arithmetic.md §2.1), got {mult_bits}")
    if grid_bits is not None and not 6 <= grid_bits <= 16:
        raise ValueError(f"grid_bits must be in 6..16 (arithmetic.md §8), got {grid_bits}")
    return Numerics(rounding=RoundingMode.parse(rounding).spec_name, realization=realization,
                    overflow=OverflowPolicy.parse(overflow).spec_name, acc_bits=int(acc_bits),
                    stream_bits=int(stream_bits), mult_bits=int(mult_bits))


class _GraphExport:
    """The artifact graph as export builds it from the captured graph, node by node (in order): tensors
    and their fracs, ops, arrays, and the per-layer / image / stream-op metadata."""

    def __init__(self, calib_result, numerics: Numerics, grid_bits: int | None):
        self.cr, self.numerics, self.grid_bits = calib_result, numerics, grid_bits
        g = calib_result.graph
        self.g = g
        self.tensors: dict[str, TensorSpec] = {INPUT_TENSOR: TensorSpec(INPUT_TENSOR, "image", g.in_channels)}
        self.fracs: dict[str, int] = {}
        self.ops: list[OpSpec] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.layers_meta: dict = {}
        self.code_bits: dict[str, int] = {}
        self.image_meta: dict = {}
        self.stream_meta: dict = {}
        self.pools = pool_shifts(numerics)
        self.taken = {n.name for n in g.nodes} | {t for n in g.nodes for t in n.outputs} | {INPUT_TENSOR}

    def fresh(self, name: str) -> str:
        """``name``, or ``name_1``, ``name_2``… if a node, tensor or earlier fresh name has it."""
        base, k = name, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def add_stream(self, name: str, channels: int, frac: int) -> None:
        self.fracs[name] = frac
        self.tensors[name] = TensorSpec(name, "stream", channels, frac=int(frac))

    def own_frac(self, t: str) -> int:
        """The frac of stream ``t`` from its own calibrated range."""
        return stream_frac(self.cr.stream_absmax[t], self.numerics.stream_bits)

    def op(self, node: LNode, kind: str, attrs: dict, roles: dict | None = None, inputs=None, outputs=None) -> None:
        self.ops.append(OpSpec(node.name, kind, node.inputs if inputs is None else inputs,
                               (node.output,) if outputs is None else outputs, attrs, roles or {}))

    def image(self, node: LNode) -> None:
        """image_in / image_out: per-channel multiplier and offset (§6.1, §6.2)."""
        if node.op == "image_in":
            r = export_image_in(node, self.own_frac(node.output), self.numerics)
            self.add_stream(node.output, node.channels, r["f_o"])
        else:
            r = export_image_out(node, self.fracs[node.inputs[0]], self.numerics)
            self.tensors[node.output] = TensorSpec(node.output, "image", node.channels)
        self.arrays[f"{node.name}.mult"], self.arrays[f"{node.name}.offset"] = r["mult"], r["offset"]
        self.op(node, node.op, {"exp": r["exp"]}, {"mult": f"{node.name}.mult", "offset": f"{node.name}.offset"})
        self.image_meta[node.name] = r["meta"]

    def conv(self, node: LNode) -> None:
        """encode → [pad] → conv2d / conv_transpose2d (§5; a non-zero padding mode pads codes, §5.8)."""
        layer = self.cr.layers[node.name]
        mod = self.g.gm.get_submodule(node.module)
        x = node.inputs[0]
        r = export_conv(node, mod, layer, self.fracs[x], self.own_frac(node.output), self.numerics, self.grid_bits)
        enc_name, codes = self.fresh(f"{node.name}.encode"), self.fresh(f"{node.name}.codes")
        self.tensors[codes] = TensorSpec(codes, "codes", self.tensors[x].channels, codebook=r["codebook"])
        self.ops.append(OpSpec(enc_name, "encode", (x,), (codes,), {}, {}))
        conv_padding = list(node.attrs["padding"])
        if node.attrs.get("padding_mode", "zeros") != "zeros":  # encode → pad → conv without padding (§5.8)
            pad_name, padded = self.fresh(f"{node.name}.pad"), self.fresh(f"{node.name}.padded")
            self.tensors[padded] = TensorSpec(padded, "codes", self.tensors[x].channels, codebook=r["codebook"])
            self.ops.append(OpSpec(pad_name, "pad", (codes,), (padded,),
                                   {"padding": conv_padding, "mode": node.attrs["padding_mode"]}, {}))
            codes, conv_padding = padded, [0, 0]
        self.add_stream(node.output, node.channels, r["f_out"])
        for role in ("weight", "w_mant", "bias"):
            self.arrays[f"{node.name}.{role}"] = r[role]
        at = node.attrs
        if node.op == "conv2d":
            cattrs = {"kernel": list(at["kernel"]), "stride": list(at["stride"]),
                      "padding": conv_padding, "dilation": list(at["dilation"]),
                      "groups": int(at["groups"]), "w_exp": r["w_exp"]}
        else:
            cattrs = {"kernel": list(at["kernel"]), "stride": list(at["stride"]),
                      "padding": list(at["padding"]), "output_padding": list(at["output_padding"]),
                      "w_exp": r["w_exp"]}
        self.op(node, node.op, cattrs, {role: f"{node.name}.{role}" for role in ("weight", "w_mant", "bias")},
                inputs=(codes,))
        self.layers_meta[node.name] = r["meta"]
        self.code_bits[node.name] = r["codebook"].code_bits

    def clamp(self, node: LNode) -> None:
        """clamp: the real bounds snapped inwards onto the stream grid (§6.16)."""
        f = self.fracs[node.inputs[0]]
        self.add_stream(node.output, node.channels, f)  # f_o = f_i (§6.16)
        try:
            lo, hi = clamp_bounds(node.attrs["lo"], node.attrs["hi"], f, self.numerics)
        except ClampBoundsError as e:
            raise ExportError(f"layer '{node.name}': {e}") from None
        self.op(node, "clamp", {"lo": lo, "hi": hi})
        self.stream_meta[node.name] = {"lo": node.attrs["lo"], "hi": node.attrs["hi"], "lo_int": lo, "hi_int": hi}

    def slope(self, node: LNode) -> None:
        """leaky_relu (one slope) / prelu (one per channel): fixed-point slopes (§6.7)."""
        self.add_stream(node.output, node.channels, self.fracs[node.inputs[0]])  # §6.7
        if node.op == "leaky_relu":
            M, k, errs = slope_multipliers([node.attrs["slope"]], self.numerics, f"layer '{node.name}'")
            self.op(node, "leaky_relu", {"mult": M[0], "shift": k})
            self.stream_meta[node.name] = {"slope": float(node.attrs["slope"]), "mult": M[0], "shift": k,
                                           "slope_rel_err": errs[0]}
            return
        M, k, errs = slope_multipliers(node.attrs["slope"], self.numerics, f"layer '{node.name}'")
        self.arrays[f"{node.name}.mult"] = np.array(M, dtype=np.int64)
        self.op(node, "prelu", {"shift": k}, {"mult": f"{node.name}.mult"})
        self.stream_meta[node.name] = {"slope": list(map(float, node.attrs["slope"])), "shift": k,
                                       "slope_rel_err_max": float(max(errs))}

    def lut(self, node: LNode) -> None:
        """lut: the function's table over the calibrated input range (§6.17)."""
        x = node.inputs[0]
        r = export_lut(node.attrs["fn"], self.cr.stream_absmax.get(x, 1.0), self.fracs[x], self.numerics)
        self.add_stream(node.output, node.channels, r["f_o"])
        self.arrays[f"{node.name}.lut"] = r["lut"]
        self.op(node, "lut", {"fn": node.attrs["fn"], "lut_exp": r["lut_exp"], "imin": r["imin"], "imax": r["imax"]},
                {"lut": f"{node.name}.lut"})
        self.stream_meta[node.name] = r["meta"]

    def keep_frac(self, node: LNode) -> None:
        """Ops whose output keeps the input frac and whose attributes come from the node or the numerics."""
        f = self.fracs[node.inputs[0]]
        if node.op == "split":
            for t, c in zip(node.outputs, node.attrs["sizes"]):  # §6.5
                self.add_stream(t, int(c), f)
            self.op(node, "split", {"sizes": [int(c) for c in node.attrs["sizes"]]}, outputs=node.outputs)
            return
        self.add_stream(node.output, node.channels, f)  # f_o = f_i (§6.6, §6.8–§6.12, §6.18)
        if node.op in ("relu", "pixel_shuffle", "upsample_nearest"):
            attrs = {"factor": int(node.attrs["factor"])} if "factor" in node.attrs else {}
        elif node.op == "upsample_bilinear":
            M, k = bilinear_multiplier(int(node.attrs["factor"]), self.numerics)
            attrs = {"factor": int(node.attrs["factor"]), "mult": int(M), "shift": int(k)}
        elif node.op == "upsample_bicubic":
            attrs = {"factor": int(node.attrs["factor"]),
                     "tap_bits": bicubic_tap_bits(int(node.attrs["factor"]), self.numerics)}
        elif node.op == "mean_pool":
            attrs = {"shift": self.pools["mean_shift"]}
        else:  # std_pool
            attrs = {"shift": self.pools["std_shift"], "pre_shift": self.pools["std_pre_shift"]}
        self.op(node, node.op, attrs)

    def add(self, node: LNode) -> None:
        """Export one captured node (in graph order)."""
        if node.op in ("image_in", "image_out"):
            self.image(node)
        elif node.op in ("conv2d", "conv_transpose2d"):
            self.conv(node)
        elif node.op == "clamp":
            self.clamp(node)
        elif node.op in ("relu", "pixel_shuffle", "upsample_nearest", "upsample_bilinear", "upsample_bicubic",
                         "split", "mean_pool", "std_pool"):
            self.keep_frac(node)
        elif node.op in ("add", "concat", "mul"):
            self.add_stream(node.output, node.channels, self.own_frac(node.output))  # §6.3, §6.4, §6.14
            self.op(node, node.op, {})
        elif node.op in ("leaky_relu", "prelu"):
            self.slope(node)
        elif node.op == "lut":
            self.lut(node)
        else:  # capture() only produces the ops above
            raise ExportError(f"op '{node.name}' ({node.op}) has no exporter")


def _export_metadata(model: nn.Module, calib_result, ex: _GraphExport, model_meta: dict | None,
                     source: dict | None) -> tuple[dict, dict]:
    """The artifact's ``model`` and ``metadata`` objects (docs/artifact.md): name, scale, bits, code bits;
    the float model's source; capture, calibration and the per-layer / per-op export records."""
    g = ex.g
    meta_model = dict(model_meta or {})
    meta_model.setdefault("name", type(model).__name__.lower())
    if getattr(model, "scale", None) is not None:
        meta_model.setdefault("scale", int(model.scale))
    meta_model["bits"] = calib_result.bits
    meta_model["code_bits"] = ex.code_bits
    src = {"model": meta_model.get("name"), "scale": meta_model.get("scale")}
    if "weights" in meta_model:
        src["checkpoint"] = meta_model["weights"]
    src.update(source or {})
    src.setdefault("state_dict_sha256", state_dict_fingerprint(model))
    metadata = {
        "producer": "calib.export",
        "source": src,
        "capture": {"rgb_range": g.rgb_range, "in_channels": g.in_channels,
                    "concrete_args": {k: v for k, v in getattr(g, "concrete_args", {}).items()
                                      if v is None or isinstance(v, (bool, int, float, str))}},
        "rgb_range": g.rgb_range,
        "calibration": calib_result.to_json(),
        "layers": ex.layers_meta,
        "images": ex.image_meta,
        "stream_ops": ex.stream_meta,
        "pooling": ex.pools,
        "streams": {t: {"absmax": float(calib_result.stream_absmax[t]), "frac": int(f)} for t, f in ex.fracs.items()
                    if t in calib_result.stream_absmax},
    }
    return meta_model, metadata


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
    adds ``state_dict_sha256`` (:func:`state_dict_fingerprint` of ``model``, unless ``source`` gives the
    checkpoint's own: cross-layer equalization changes ``model`` in float-exact ways whose effect the
    artifact's integer weights and recorded biases carry) and
    defaults ``model``/``scale`` from ``model_meta``. The returned artifact has not been written;
    use :func:`intsim.artifact.save_artifact`.
    """
    numerics = _export_numerics(realization, rounding, overflow, acc_bits, stream_bits, mult_bits, grid_bits)
    ex = _GraphExport(calib_result, numerics, grid_bits)
    for node in calib_result.graph.nodes:
        ex.add(node)
    meta_model, metadata = _export_metadata(model, calib_result, ex, model_meta, source)
    art = Artifact(model=meta_model, numerics=numerics, inputs=(INPUT_TENSOR,), outputs=(OUTPUT_TENSOR,),
                   tensors=ex.tensors, ops=ex.ops, arrays=ex.arrays, metadata=metadata)
    validate_artifact(art)
    return art
