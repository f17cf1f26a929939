"""Per-layer test cases: everything needed to test one conv or encode layer in isolation (docs/rtl.md).

A *layer case* is one (input image, op) pair of a golden directory together with the artifact's
integers for that op, so an RTL bench or firmware test never has to parse ``graph.json`` or ``.npy``:

* conv (``conv2d``/``conv_transpose2d``, §5): input codes, integer weights (OHWI), bias, the weight
  mantissas, every accumulator's multiplier ``M_j[co]`` (§5.3), the rescale shift ``n`` (§5.2),
  rounding and overflow mode, accumulator and stream widths, the input codebook and its per-code
  look-up tables (segment, index ``q``, grid value ``G``), and the expected output stream;
  optionally the expected accumulators (only for an op that cannot overflow, §5.4, where they
  are a property of the op and not of the summation order);
* encode (§3.4): the input stream, thresholds and per-segment encoder stages, and the expected codes.

The requantizer of §5.3 is tested through a conv case: its input is ``Σ_j M_j·acc_j + B`` (from
the exported accumulators and multipliers), its output the expected stream.

Scalars are one fixed word list, :data:`CONFIG_FIELDS` (``config.hex``: word ``i`` is field ``i``,
unused fields 0), which the reference RTL bench reads directly (rtl/tb/config_fields.svh is
generated from it). Arrays keep the row-major order of their shape (docs/rtl.md, "Element order").
numpy only; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intsim.artifact import Artifact, Codebook, Numerics, OpSpec
from intsim.ops.conv import accumulator_layout
from intsim.ops.conv_params import ConvParams
from intsim.ops.opdef import ops_where

CONV_OPS = ops_where(cost="gemm")  # the convolutions, from the op registry
KIND_CONV, KIND_ENCODE = 1, 2
MAX_SEGMENTS = 3  # arithmetic.md §3.1: 1–3 segments
MAX_ACCS = 2 * MAX_SEGMENTS  # split: P_s and Q_s per segment
ACC_KIND = {"P": 0, "Q": 1, "A": 2}

#: Scalar words of a case, in ``config.hex`` order (64-bit two's complement each).
CONFIG_FIELDS: tuple[str, ...] = (
    "kind", "transposed", "H", "W", "Ci", "Ho", "Wo", "Co", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw",
    "oph", "opw", "groups", "realization", "rounding", "overflow", "acc_bits", "stream_bits", "shift",
    "n_acc", "n_seg", "num_codes", "in_bits", "w_bits", "out_bits",
    *[f"seg{s}_{k}" for s in range(MAX_SEGMENTS) for k in ("origin", "step", "qmin", "qmax", "base")],
    *[f"thr{s}" for s in range(MAX_SEGMENTS - 1)],
    *[f"enc{s}_{k}" for s in range(MAX_SEGMENTS) for k in ("center", "mult", "shift")],
    *[f"acc{j}_{k}" for j in range(MAX_ACCS) for k in ("kind", "seg")],
)


@dataclass
class LayerCase:
    """One layer's test case. ``arrays``: name → int64 array (shape kept); ``widths``: name → storage
    bits of its hex file; ``config``: field → int over :data:`CONFIG_FIELDS`; ``info``: names and
    shapes for people (the op, its tensors, the accumulator names)."""

    input: int
    op: str
    op_type: str
    config: dict[str, int]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def config_words(self) -> list[int]:
        return [int(self.config.get(f, 0)) for f in CONFIG_FIELDS]


def _codebook_words(cb: Codebook) -> dict[str, int]:
    out: dict[str, int] = {"n_seg": len(cb.segments), "num_codes": cb.num_codes}
    for s, (seg, base) in enumerate(zip(cb.segments, cb.bases)):
        out |= {f"seg{s}_origin": seg.origin, f"seg{s}_step": seg.step, f"seg{s}_qmin": seg.qmin,
                f"seg{s}_qmax": seg.qmax, f"seg{s}_base": base}
    for s, u in enumerate(cb.thresholds):
        out[f"thr{s}"] = int(u)
    for s, e in enumerate(cb.encoder):
        out |= {f"enc{s}_center": e.center, f"enc{s}_mult": e.mult, f"enc{s}_shift": e.shift}
    return out


def _numerics_words(nx: Numerics) -> dict[str, int]:
    return {"rounding": int(nx.rounding_mode), "overflow": int(nx.overflow_policy),
            "acc_bits": int(nx.acc_bits), "stream_bits": int(nx.stream_bits),
            "realization": 0 if nx.realization == "split" else 1}


def accumulator_multipliers(codebook: Codebook, realization: str, w_mant: np.ndarray) -> np.ndarray:
    """``M_j[co]`` of §5.3 as int64[n_acc, Co]: ``m_w·unit_m·d_s`` (P_s), ``m_w·unit_m·e_s`` (Q_s),
    ``m_w·unit_m`` (A); exact (the loader bounds them by ``mult_bits``, §2.1)."""
    base = [int(m) * int(codebook.unit_m) for m in np.asarray(w_mant).reshape(-1)]
    rows = []
    for kind, seg, _ in accumulator_layout(codebook, realization):
        f = 1 if kind == "A" else codebook.segments[seg].step if kind == "P" else codebook.segments[seg].origin
        rows.append([b * f for b in base])
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(base))


def expected_accumulators(codes: np.ndarray, codebook: Codebook, realization: str, weight: np.ndarray,
                          iy_of: np.ndarray, ix_of: np.ndarray, groups: int) -> np.ndarray:
    """Exact int64 accumulators ``acc_j[oy, ox, co]`` (§5.3) as int64[n_acc, Ho, Wo, Co], without any
    overflow policy: valid as the hardware's accumulators only when the op cannot overflow (§5.4).

    ``iy_of``/``ix_of``: the op's tap tables (input row/column per output and tap, −1 padding)."""
    seg_of, q_of, g_of = codebook.code_table()
    layout = accumulator_layout(codebook, realization)
    w = np.asarray(weight, dtype=np.int64)
    co_n, kh, kw, cig = w.shape
    opg = co_n // groups
    ho, wo = iy_of.shape[0], ix_of.shape[0]
    c = np.asarray(codes, dtype=np.int64)
    out = np.zeros((len(layout), ho, wo, co_n), dtype=np.int64)
    for j, (kind, seg, _) in enumerate(layout):
        if kind == "A":
            plane = g_of[c]
        else:
            inseg = seg_of[c] == seg
            plane = np.where(inseg, q_of[c] if kind == "P" else 1, 0)
        for ky in range(kh):
            for kx in range(kw):
                iy, ix = iy_of[:, ky], ix_of[:, kx]
                ok = (iy[:, None] >= 0) & (ix[None, :] >= 0)
                patch = plane[np.maximum(iy, 0)][:, np.maximum(ix, 0)] * ok[:, :, None]  # [Ho, Wo, Ci]
                for g in range(groups):
                    xs = patch[:, :, g * cig:(g + 1) * cig]
                    out[j, :, :, g * opg:(g + 1) * opg] += xs @ w[g * opg:(g + 1) * opg, ky, kx, :].T
    return out


def _tap_tables(op_type: str, a: dict, h: int, w: int, kh: int, kw: int):
    from intsim.kernels import conv as K

    p = ConvParams.of(a)
    (sh, sw), (ph, pw) = p.stride, p.padding
    if op_type == "conv2d":
        dh, dw = p.dilation
        return K.conv2d_tap_table(h, kh, sh, ph, dh), K.conv2d_tap_table(w, kw, sw, pw, dw)
    oph, opw = p.output_padding
    return (K.conv_transpose2d_tap_table(h, kh, sh, ph, oph), K.conv_transpose2d_tap_table(w, kw, sw, pw, opw))


def conv_case(art: Artifact, op: OpSpec, k: int, codes: np.ndarray, expected: np.ndarray, out_dtype: str,
              *, accumulators: bool = False, ordered: bool = False) -> LayerCase:
    """The case of conv op ``op`` for input ``k``: ``codes`` int[H, W, Ci] its input, ``expected``
    int[Ho, Wo, Co] its output (from the golden). ``accumulators`` adds ``acc`` when the op is not
    ``ordered`` (§5.4: an op that can overflow has no order-free accumulators)."""
    return conv_case_of(ConvLayer(op.name, op.op, dict(op.attrs), art.tensors[op.inputs[0]].codebook, art.numerics,
                                  art.array(op, "weight"), art.array(op, "w_mant"), art.array(op, "bias"),
                                  int(art.tensors[op.outputs[0]].frac), op.inputs[0], op.outputs[0]),
                        k, codes, expected, out_dtype, accumulators=accumulators, ordered=ordered)


@dataclass(frozen=True)
class ConvLayer:
    """A conv layer's integers, from an artifact op or made by hand (synthetic bench layers):
    ``attrs`` as the op's (kernel, stride, padding, dilation, groups, output_padding, w_exp),
    ``weight`` int[Co, kh, kw, Ci/g], ``w_mant``/``bias`` int64[Co], ``f_out`` the output frac."""

    name: str
    op_type: str
    attrs: dict
    codebook: Codebook
    numerics: Numerics
    weight: np.ndarray
    w_mant: np.ndarray
    bias: np.ndarray
    f_out: int
    input_tensor: str = "input"
    output_tensor: str = "output"


def conv_case_of(layer: ConvLayer, k: int, codes: np.ndarray, expected: np.ndarray, out_dtype: str, *,
                 accumulators: bool = False, ordered: bool = False) -> LayerCase:
    """:func:`conv_case` of a :class:`ConvLayer`."""
    cb, w, a, nx = layer.codebook, layer.weight, layer.attrs, layer.numerics
    co_n, kh, kw, _ = w.shape
    h, wi, ci = codes.shape
    ho, wo = expected.shape[:2]
    p = ConvParams.of(a)
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = p.stride, p.padding, p.dilation, p.output_padding
    layout = accumulator_layout(cb, nx.realization)
    shift = int(a["w_exp"]) + int(cb.unit_e) - int(layer.f_out)
    config = {"kind": KIND_CONV, "transposed": int(layer.op_type == "conv_transpose2d"), "H": h, "W": wi,
              "Ci": ci, "Ho": ho, "Wo": wo, "Co": co_n, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "ph": ph, "pw": pw,
              "dh": dh, "dw": dw, "oph": oph, "opw": opw, "groups": p.groups, "shift": shift,
              "n_acc": len(layout), **_numerics_words(nx), **_codebook_words(cb)}
    for j, (kind, seg, _) in enumerate(layout):
        config |= {f"acc{j}_kind": ACC_KIND[kind], f"acc{j}_seg": 0 if seg is None else seg}
    seg_of, q_of, g_of = cb.code_table()
    code_bits = np.dtype(cb.code_dtype).itemsize * 8
    arrays = {"input": np.asarray(codes, dtype=np.int64), "weight": np.asarray(w, dtype=np.int64),
              "w_mant": np.asarray(layer.w_mant, dtype=np.int64), "bias": np.asarray(layer.bias, dtype=np.int64),
              "mult": accumulator_multipliers(cb, nx.realization, layer.w_mant), "lut_seg": seg_of, "lut_q": q_of,
              "lut_grid": g_of, "expected": np.asarray(expected, dtype=np.int64)}
    out_bits = np.dtype(out_dtype).itemsize * 8
    widths = {"input": code_bits, "weight": np.dtype(w.dtype).itemsize * 8, "w_mant": 64, "bias": 64, "mult": 64,
              "lut_seg": 32, "lut_q": 32, "lut_grid": 32, "expected": out_bits}
    config |= {"in_bits": widths["input"], "w_bits": widths["weight"], "out_bits": out_bits}
    if accumulators and not ordered:
        iy_of, ix_of = _tap_tables(layer.op_type, a, h, wi, kh, kw)
        arrays["acc"] = expected_accumulators(codes, cb, nx.realization, w, iy_of, ix_of, config["groups"])
        widths["acc"] = 64
    info = {"input_tensor": layer.input_tensor, "output_tensor": layer.output_tensor, "ordered": bool(ordered),
            "accumulators": [kind if seg is None else f"{kind}{seg}" for kind, seg, _ in layout]}
    return LayerCase(k, layer.name, layer.op_type, config, arrays, widths, info)


def encode_case(art: Artifact, op: OpSpec, k: int, stream: np.ndarray, expected: np.ndarray,
                in_dtype: str) -> LayerCase:
    """The case of encode op ``op`` for input ``k``: ``stream`` int[H, W, C] in, ``expected`` codes out."""
    return encode_case_of(op.name, art.tensors[op.outputs[0]].codebook, art.numerics, k, stream, expected, in_dtype,
                          op.inputs[0], op.outputs[0])


def encode_case_of(name: str, cb: Codebook, numerics: Numerics, k: int, stream: np.ndarray, expected: np.ndarray,
                   in_dtype: str, input_tensor: str = "input", output_tensor: str = "output") -> LayerCase:
    """:func:`encode_case` of a codebook and numerics (synthetic bench layers)."""
    h, w, c = stream.shape
    config = {"kind": KIND_ENCODE, "H": h, "W": w, "Ci": c, "Ho": h, "Wo": w, "Co": c, **_numerics_words(numerics),
              **_codebook_words(cb)}
    seg_of, q_of, g_of = cb.code_table()
    arrays = {"input": np.asarray(stream, dtype=np.int64), "thresholds": np.asarray(cb.thresholds, dtype=np.int64),
              "lut_seg": seg_of, "lut_q": q_of, "lut_grid": g_of, "expected": np.asarray(expected, dtype=np.int64)}
    widths = {"input": np.dtype(in_dtype).itemsize * 8, "thresholds": 64, "lut_seg": 32, "lut_q": 32,
              "lut_grid": 32, "expected": np.dtype(cb.code_dtype).itemsize * 8}
    config |= {"in_bits": widths["input"], "out_bits": widths["expected"]}
    info = {"input_tensor": input_tensor, "output_tensor": output_tensor}
    return LayerCase(k, name, "encode", config, arrays, widths, info)


def config_svh() -> str:
    """rtl/tb/config_fields.svh: the word index of every config field, for the reference bench."""
    lines = ["// Generated from intsim/layer_cases.py CONFIG_FIELDS (tests check it is current); do not edit.",
             f"localparam integer CFG_WORDS = {len(CONFIG_FIELDS)};"]
    lines += [f"localparam integer CFG_{f.upper()} = {i};" for i, f in enumerate(CONFIG_FIELDS)]
    return "\n".join(lines) + "\n"


def layer_cases(art: Artifact, golden, *, ops: list[str] | None = None, inputs: list[int] | None = None,
                accumulators: bool = False) -> list[LayerCase]:
    """Every conv and encode case of ``golden`` (a :class:`~intsim.golden_dir.GoldenSet` of ``art``),
    inputs then graph order; ``ops``/``inputs`` restrict it. Raises ``ValueError`` for an op that is
    not a conv or encode layer of the artifact, or a golden made from another artifact."""
    from intsim import bounds
    from intsim.golden_dir import storage_dtypes

    if golden.artifact_sha256 != art.sha256:
        raise ValueError(f"{golden.path} was made from another artifact (sha256 {golden.artifact_sha256[:16]}…, "
                         f"this artifact {str(art.sha256)[:16]}…)")
    layer_ops = [op for op in art.ops if op.op in CONV_OPS or op.op == "encode"]
    if ops is not None:
        names = {op.name for op in layer_ops}
        bad = [n for n in ops if n not in names]
        if bad:
            raise ValueError(f"op {bad[0]!r} is not a conv or encode layer of the artifact")
        layer_ops = [op for op in layer_ops if op.name in ops]
    dtypes = storage_dtypes(art)
    ordered = {}
    for op in layer_ops:
        if op.op in CONV_OPS:
            ordered[op.name] = bool(bounds.conv_can_overflow(art, op))
    ks = list(range(len(golden))) if inputs is None else list(inputs)
    out = []
    for k in ks:
        for op in layer_ops:
            x, y = golden.tensor(k, op.inputs[0]), golden.tensor(k, op.outputs[0])
            if op.op == "encode":
                out.append(encode_case(art, op, k, x, y, dtypes[op.inputs[0]]))
            else:
                out.append(conv_case(art, op, k, x, y, dtypes[op.outputs[0]], accumulators=accumulators,
                                     ordered=ordered[op.name]))
    return out
