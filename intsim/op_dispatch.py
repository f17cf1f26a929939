"""Op type → adapter: how the engine calls each op of :mod:`intsim.ops` (docs/arithmetic.md §6).

An adapter reads one op's attributes, arrays and tensor fracs from the artifact and calls the
stateless op function; it returns ``(outputs, events)``. :data:`OPS` is the registry the
untiled engine (:mod:`intsim.engine`), the fused groups (:mod:`intsim.fusion`) and the banded
executor (:mod:`intsim.tiling`) all dispatch through. Per-artifact constants (a conv's packed
weights, a codebook's encoder table) are derived once and kept in ``art.derived``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from intsim import bounds
from intsim.artifact import Artifact, OpSpec
from intsim.encoder import encode
from intsim.kernels import elementwise as elementwise_kernels
from intsim.kernels import encode as encode_kernels
from intsim.kernels import resample as resample_kernels
from intsim.ops import bicubic as bicubic_ops
from intsim.ops import conv as conv_ops
from intsim.ops import pad as pad_ops
from intsim.ops.conv_params import ConvParams
from intsim.ops import STREAM_DTYPES, elementwise, image, lut, no_events, pooling, resample
from intsim.overflow import OverflowPolicy
from intsim.rounding import RoundingMode

Adapter = Callable[[Artifact, OpSpec, list], tuple[list, dict]]


def stream_frac(art: Artifact, tensor: str) -> int:
    t = art.tensors[tensor]
    if t.kind != "stream":
        raise ValueError(f"tensor {tensor!r} is {t.kind}, a stream was expected")
    return int(t.frac)


def same_frac(art: Artifact, op: OpSpec) -> None:
    # Ops without arithmetic keep the input frac (§6.5–6.9); a differing output frac is a malformed graph.
    f_in = stream_frac(art, op.inputs[0])
    for o in op.outputs:
        if stream_frac(art, o) != f_in:
            raise ValueError(f"op {op.name!r} ({op.op}): output {o!r} frac {stream_frac(art, o)} != input frac {f_in}")


def codebook_of(art: Artifact, tensor: str):
    t = art.tensors[tensor]
    if t.kind != "codes" or t.codebook is None:
        raise ValueError(f"tensor {tensor!r} is {t.kind}, codes with a codebook were expected")
    return t.codebook


def _image_in(art, op, xs):
    x, ev = image.image_in(xs[0], art.array(op, "mult"), art.array(op, "offset"), exp=op.attrs["exp"],
                           f_out=stream_frac(art, op.outputs[0]), numerics=art.numerics, name=op.name)
    return [x], ev


def _image_out(art, op, xs):
    x, ev = image.image_out(xs[0], art.array(op, "mult"), art.array(op, "offset"), exp=op.attrs["exp"],
                            f_in=stream_frac(art, op.inputs[0]), numerics=art.numerics, name=op.name)
    return [x], ev


def codes_fit(codebook) -> bool:
    """True if every code an encoder of ``codebook`` can emit, ``base_s + q − qmin_s`` with ``q`` in
    ``[qmin_s, qmax_s]`` (§3.4), lies in ``[0, N)``: validation guarantees it; an artifact built in
    memory may not. The kernels index tables with codes, so they rely on it."""
    return len(codebook.bases) == len(codebook.segments) and all(
        sg.qmin <= sg.qmax and 0 <= int(b) and int(b) + sg.qmax - sg.qmin < codebook.num_codes
        for b, sg in zip(codebook.bases, codebook.segments))


def encoder_table(codebook, rounding) -> encode_kernels.EncoderTable | None:
    """The codebook's encoder as the fused kernels take it, or None where they do not apply
    (thresholds not one fewer than the segments, or not strictly increasing; codes that would
    not fit, see :func:`codes_fit`): then the numpy encoder (:func:`intsim.encoder.encode`) runs."""
    S = len(codebook.segments)
    th = [int(t) for t in codebook.thresholds]
    if (len(th) != S - 1 or len(codebook.encoder) != S or any(b <= a for a, b in zip(th, th[1:]))
            or not codes_fit(codebook)):
        return None
    enc, segs = codebook.encoder, codebook.segments
    return encode_kernels.EncoderTable.of(
        th, [e.center for e in enc], [e.mult for e in enc], [e.shift for e in enc], [sg.qmin for sg in segs],
        [sg.qmax for sg in segs], list(codebook.bases), codebook.num_codes, int(RoundingMode.parse(rounding)),
        codebook.code_dtype)


def memo(art: Artifact, kind: str, obj, make, *extra):
    """``make()`` computed once per artifact for the object ``obj`` (a codebook, the op list) and
    ``extra`` (hashable settings it depends on), kept in ``art.derived``: per-image dispatch then
    reads it instead of recomputing it. The entry holds ``obj`` itself and is used only while
    it is the same object, so a replaced codebook or op list is never served a stale value."""
    key = (kind, id(obj), *extra)
    hit = art.derived.get(key)
    if hit is not None and hit[0] is obj:
        return hit[1]
    value = make()
    art.derived[key] = (obj, value)
    return value


def codes_fit_memo(art: Artifact, codebook) -> bool:
    return memo(art, "codes_fit", codebook, lambda: codes_fit(codebook))


def encoder_table_memo(art: Artifact, codebook):
    rounding = art.numerics.rounding
    return memo(art, "encoder_table", codebook, lambda: encoder_table(codebook, rounding), rounding)


def encode_fast(x: np.ndarray, codebook, rounding, table=False) -> tuple[np.ndarray, int, np.ndarray] | None:
    """:func:`intsim.encoder.encode` by the fused banded kernel (same results), or None when
    the input or codebook is outside what the kernel handles (then the numpy encoder runs).
    ``table``: the codebook's :func:`encoder_table` when the caller has it (None: it does not apply)."""
    if table is False:
        table = encoder_table(codebook, rounding)
    if x.ndim != 3 or x.dtype not in STREAM_DTYPES or table is None:
        return None
    return tuple(encode_kernels.encode_bands(np.ascontiguousarray(x), table))


def encode_events(sats: int, hist: np.ndarray) -> dict:
    h = np.asarray(hist)
    # tolist() gives the same Python ints as int(v) per element, in C: a 256–4096-bin histogram
    # per encode was ~40 µs of Python per op on a small image.
    counts = h.tolist() if h.dtype.kind in "iu" and h.ndim == 1 else [int(v) for v in hist]
    return {"acc_overflow": 0, "stream_overflow": 0, "saturations": int(sats), "code_histogram": counts}


def _encode(art, op, xs):
    codebook = codebook_of(art, op.outputs[0])
    fast = encode_fast(np.asarray(xs[0]), codebook, art.numerics.rounding, encoder_table_memo(art, codebook))
    codes, sats, hist = fast if fast is not None else encode(xs[0], codebook, art.numerics.rounding)
    return [codes], encode_events(sats, hist)


def _conv_worst(art: Artifact, op: OpSpec) -> dict:
    """``{accumulator name: W_j}`` of the load-time analysis (§5.4): the bounds the GEMM path is gated on."""
    return {b.name: b.worst_max for b in bounds.conv_accumulators(art, op)}


def conv_constants(art: Artifact, op: OpSpec, transposed: bool) -> conv_ops.ConvConstants:
    """The op's :class:`~intsim.ops.conv_paths.ConvConstants`, derived once per artifact (``art.derived``):
    ordered/worst from the load-time analysis (§5.4), the int8 path's packed weights."""
    weight, w_mant = art.array(op, "weight"), art.array(op, "w_mant")
    codebook = codebook_of(art, op.inputs[0])
    key = ("conv", op.name, id(weight), id(w_mant), id(codebook), art.numerics)
    consts = art.derived.get(key)
    if consts is None:
        consts = conv_ops.conv_constants(weight, w_mant, codebook, art.numerics,
                                         groups=ConvParams.of(op.attrs).groups, transposed=transposed,
                                         ordered=bounds.conv_can_overflow(art, op), worst=_conv_worst(art, op),
                                         name=op.name)
        art.derived[key] = consts
    return consts


@dataclass(frozen=True)
class ConvCall:
    """Everything a ``conv2d`` op's call takes that follows from the artifact alone, resolved once
    (:func:`conv_call`): its geometry, input codebook, arrays (weight int[Co, kh, kw, Ci/g], w_mant
    and bias int64[Co]), ``w_exp``, the output frac ``f_out``, the :class:`ConvConstants` and
    whether the codebook's encoders give codes in range (:func:`codes_fit`)."""

    params: ConvParams
    codebook: object
    weight: np.ndarray
    w_mant: np.ndarray
    bias: np.ndarray
    w_exp: int
    f_out: int
    constants: conv_ops.ConvConstants
    codes_fit: bool


def memo_objects(art: Artifact, kind: str, name: str, objs: tuple, make):
    """``make()`` computed once per artifact for the objects ``objs`` (compared by identity; the
    entry holds them, so a replaced array, spec or op is never served a stale value), in ``art.derived``."""
    key = (kind, name, *map(id, objs))
    hit = art.derived.get(key)
    if hit is not None and all(map(operator.is_, hit[0], objs)):
        return hit[1]
    value = make()
    art.derived[key] = (objs, value)
    return value


def conv_call(art: Artifact, op: OpSpec) -> ConvCall:
    """The op's :class:`ConvCall`, kept in ``art.derived`` for the op object (attributes are read-only
    once an artifact is built), its arrays, its input and output tensor specs and the numerics.
    Raises ``ValueError`` where the attributes do not match the weights (nothing is kept then)."""
    objs = (op, art.array(op, "weight"), art.array(op, "w_mant"), art.array(op, "bias"),
            art.tensors[op.inputs[0]], art.tensors[op.outputs[0]], art.numerics)

    def make():
        a, p, w = op.attrs, ConvParams.of(op.attrs), art.array(op, "weight")
        if [int(k) for k in a["kernel"]] != list(w.shape[1:3]):
            raise ValueError(f"op {op.name!r}: attrs kernel {a['kernel']} != weight shape {w.shape}")
        codebook = codebook_of(art, op.inputs[0])
        return ConvCall(p, codebook, w, art.array(op, "w_mant"), art.array(op, "bias"), a["w_exp"],
                        stream_frac(art, op.outputs[0]), conv_constants(art, op, False),
                        codes_fit_memo(art, codebook))

    return memo_objects(art, "conv_call", op.name, objs, make)


def conv2d(art, op, xs, rows_sink=None, call: ConvCall | None = None):
    # call: the op's conv_call when the caller has looked it up already (the fused slope group)
    c = conv_call(art, op) if call is None else call
    p = c.params
    x, ev = conv_ops.conv2d(xs[0], c.codebook, c.weight, c.w_mant, c.bias, w_exp=c.w_exp, f_out=c.f_out,
                            stride=p.stride, padding=p.padding, dilation=p.dilation, groups=p.groups,
                            numerics=art.numerics, name=op.name, constants=c.constants,
                            codes_in_range=c.codes_fit, rows_sink=rows_sink)
    return [x], ev


def _conv_transpose2d(art, op, xs):
    a, p = op.attrs, ConvParams.of(op.attrs)
    if [int(k) for k in a["kernel"]] != list(art.array(op, "weight").shape[1:3]):
        raise ValueError(f"op {op.name!r}: attrs kernel {a['kernel']} != weight shape {art.array(op, 'weight').shape}")
    x, ev = conv_ops.conv_transpose2d(xs[0], codebook_of(art, op.inputs[0]), art.array(op, "weight"),
                                      art.array(op, "w_mant"), art.array(op, "bias"), w_exp=a["w_exp"],
                                      f_out=stream_frac(art, op.outputs[0]), stride=p.stride,
                                      padding=p.padding, output_padding=p.output_padding,
                                      numerics=art.numerics, name=op.name,
                                      constants=conv_constants(art, op, True),
                                      codes_in_range=codes_fit_memo(art, codebook_of(art, op.inputs[0])))
    return [x], ev


def _add(art, op, xs, encode=None):
    x, ev = elementwise.add(xs[0], xs[1], f_a=stream_frac(art, op.inputs[0]), f_b=stream_frac(art, op.inputs[1]),
                            f_out=stream_frac(art, op.outputs[0]), numerics=art.numerics, name=op.name, encode=encode)
    return [x], ev


def _concat(art, op, xs, encode=None):
    x, ev = elementwise.concat(xs, [stream_frac(art, t) for t in op.inputs], f_out=stream_frac(art, op.outputs[0]),
                               numerics=art.numerics, name=op.name, encode=encode)
    return [x], ev


def _split(art, op, xs):
    same_frac(art, op)
    sizes = op.attrs["sizes"]
    if len(sizes) != len(op.outputs):
        raise ValueError(f"op {op.name!r}: {len(sizes)} sizes for {len(op.outputs)} outputs")
    return elementwise.split(xs[0], sizes, name=op.name)


def _relu(art, op, xs):
    same_frac(art, op)
    x, ev = elementwise.relu(xs[0], name=op.name)
    return [x], ev


def slope_sink(art: Artifact, op: OpSpec, split_op: OpSpec | None, encoders: list | None,
                shape: tuple) -> elementwise_kernels.SlopeSink | None:
    """The banded kernel's :class:`~intsim.kernels.elementwise.SlopeSink` for the slope op ``op``
    (leaky_relu / prelu, §6.7; relu as the slope op with slope 0) on a stream of ``shape``, fused with
    ``split_op`` (§6.5) when given and with ``encoders`` (per output, None or an :class:`EncoderTable`;
    None: no encoder); None where the kernel does not apply: the 'error' policy (the numpy op names the
    value), a shift outside [0, 62], slopes or split sizes that do not fit the channels (the numpy ops say what is wrong)."""
    policy = art.numerics.overflow_policy
    C = shape[2]
    if op.op == "relu":  # max(X, 0) (§6.6) is the slope op with slope 0: R(X·0, 0) = 0 below zero, no events
        mult, shift = np.zeros(C, np.int64), 0
    else:
        mult = (np.full(C, int(op.attrs["mult"]), np.int64) if op.op == "leaky_relu"
                else np.asarray(art.array(op, "mult"), dtype=np.int64).reshape(-1))
        shift = int(op.attrs["shift"])
    if policy is OverflowPolicy.ERROR or not 0 <= shift <= 62 or mult.shape != (C,):
        return None
    sizes = None
    if split_op is not None:
        same_frac(art, split_op)
        sizes = [int(v) for v in split_op.attrs["sizes"]]
        if len(sizes) != len(split_op.outputs) or min(sizes, default=0) < 1 or sum(sizes) != C:
            return None
    return elementwise_kernels.SlopeSink(shape, mult, shift,
                                         int(art.numerics.rounding_mode), int(policy),
                                         art.numerics.stream_bits, sizes, encoders)


def slope_fast(art, op, xs, split_op=None, encoders=None):
    """leaky_relu / prelu by the banded kernel (same results) for large int64 tensors, fused with
    ``split_op`` and ``encoders`` as :func:`slope_sink` takes them: ``(outputs, events)``, the
    split's outputs when fused with one; None where the kernel does not apply."""
    a = np.asarray(xs[0])
    if a.ndim != 3 or a.dtype not in STREAM_DTYPES or a.size < 1 << 15:
        return None
    sink = slope_sink(art, op, split_op, encoders, a.shape)
    if sink is None:
        return None
    outs, ev = sink.run(a)
    events = no_events()
    events["stream_overflow"] = ev
    return outs, events


def _pad(art, op, xs):
    x, ev = pad_ops.pad(xs[0], op.attrs["padding"], op.attrs["mode"], name=op.name)
    return [x], ev


def _clamp(art, op, xs):
    same_frac(art, op)
    x, ev = elementwise.clamp(xs[0], lo=op.attrs["lo"], hi=op.attrs["hi"], name=op.name)
    return [x], ev


def _leaky_relu(art, op, xs, encode=None):
    same_frac(art, op)
    fast = slope_fast(art, op, xs, encoders=[encode])
    if fast is not None:
        return fast
    x, ev = elementwise.leaky_relu(xs[0], mult=op.attrs["mult"], shift=op.attrs["shift"],
                                   numerics=art.numerics, name=op.name)
    return [x], ev


def _prelu(art, op, xs, encode=None):
    same_frac(art, op)
    fast = slope_fast(art, op, xs, encoders=[encode])
    if fast is not None:
        return fast
    x, ev = elementwise.prelu(xs[0], art.array(op, "mult"), shift=op.attrs["shift"],
                              numerics=art.numerics, name=op.name)
    return [x], ev


def _mul(art, op, xs, encode=None):
    x, ev = elementwise.mul(xs[0], xs[1], f_x=stream_frac(art, op.inputs[0]), f_g=stream_frac(art, op.inputs[1]),
                            f_out=stream_frac(art, op.outputs[0]), numerics=art.numerics, name=op.name, encode=encode)
    return [x], ev


def _pixel_shuffle(art, op, xs):
    same_frac(art, op)
    a, r = np.asarray(xs[0]), int(op.attrs["factor"])
    if a.ndim == 3 and a.dtype in STREAM_DTYPES and r >= 1 and a.shape[2] % (r * r) == 0 and a.size >= 1 << 16:
        # same mapping as resample.pixel_shuffle (§6.8), a banded copy kernel for large tensors
        return [resample_kernels.pixel_shuffle_bands(a, r)], no_events()
    x, ev = resample.pixel_shuffle(xs[0], op.attrs["factor"], name=op.name)
    return [x], ev


def _upsample_nearest(art, op, xs):
    same_frac(art, op)
    x, ev = resample.upsample_nearest(xs[0], op.attrs["factor"], name=op.name)
    return [x], ev


def _upsample_bilinear(art, op, xs):
    same_frac(art, op)
    a = op.attrs
    x, ev = resample.upsample_bilinear(xs[0], factor=a["factor"], mult=a["mult"], shift=a["shift"],
                                       numerics=art.numerics, name=op.name)
    return [x], ev


def _upsample_bicubic(art, op, xs):
    same_frac(art, op)
    x, ev = bicubic_ops.upsample_bicubic(xs[0], factor=op.attrs["factor"], tap_bits=op.attrs["tap_bits"],
                                         numerics=art.numerics, name=op.name)
    return [x], ev


def _mean_pool(art, op, xs):
    same_frac(art, op)
    x, ev = pooling.mean_pool(xs[0], shift=op.attrs["shift"], numerics=art.numerics, name=op.name)
    return [x], ev


def _std_pool(art, op, xs):
    same_frac(art, op)
    x, ev = pooling.std_pool(xs[0], shift=op.attrs["shift"], pre_shift=op.attrs["pre_shift"],
                             numerics=art.numerics, name=op.name)
    return [x], ev


def _lut(art, op, xs):
    # one index rule and look-up for every function (§6.17); the function is in the table
    a = op.attrs
    x, ev = lut.lut(xs[0], art.array(op, "lut"), lut_exp=a["lut_exp"], imin=a["imin"], imax=a["imax"],
                        f_in=stream_frac(art, op.inputs[0]), numerics=art.numerics, name=op.name)
    return [x], ev


OPS: dict[str, Adapter] = {
    "image_in": _image_in,
    "image_out": _image_out,
    "encode": _encode,
    "conv2d": conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "add": _add,
    "concat": _concat,
    "split": _split,
    "relu": _relu,
    "clamp": _clamp,
    "pad": _pad,
    "leaky_relu": _leaky_relu,
    "prelu": _prelu,
    "pixel_shuffle": _pixel_shuffle,
    "upsample_nearest": _upsample_nearest,
    "upsample_bilinear": _upsample_bilinear,
    "upsample_bicubic": _upsample_bicubic,
    "mean_pool": _mean_pool,
    "std_pool": _std_pool,
    "lut": _lut,
    "mul": _mul,
}
"""Op type → adapter. Every op type of docs/artifact.md has an entry."""


ENCODE_FUSABLE = frozenset({"leaky_relu", "prelu", "add", "mul", "concat"})
"""Op types whose adapters take ``encode=``: their output can be encoded in the same pass."""
