"""Run an artifact on one image with integer arithmetic only (docs/arithmetic.md).

:func:`run` walks the ops in their stored (topological) order and dispatches
each by its type through :data:`OPS`, a registry of adapters that read the op's
attributes, arrays and tensor fracs and call the stateless op functions of
:mod:`intsim.ops`. Event counters (§7) are collected per op and totalled.

The artifact is assumed validated (``intsim.validate`` on load); the engine
still checks what it needs to run safely (the input image, codes in range,
shifts in [0, 62], shapes) and raises ``ValueError`` with a clear message.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from intsim import allocator, bounds
from intsim.artifact import Artifact, OpSpec
from intsim.encoder import encode
from intsim.kernels import elementwise as elementwise_kernels
from intsim.kernels import encode as encode_kernels
from intsim.kernels import resample as resample_kernels
from intsim.ops import bicubic as bicubic_ops
from intsim.ops import conv as conv_ops
from intsim.ops import pad as pad_ops
from intsim.ops import elementwise, image, no_events, pooling, resample, sigmoid
from intsim.overflow import OverflowPolicy
from intsim.rounding import RoundingMode


@dataclass
class RunResult:
    """What one run produced.

    ``tensors``: graph tensor name → array H×W×C (streams int64, codes the
    codebook's ``code_dtype``, images uint8); every tensor with ``keep_tensors=True``, else only the
    graph outputs. ``counters``: JSON-serialisable event counts (arithmetic.md §7)
    as ``{"ops": {name: {...}}, "totals": {...}}``.
    """

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict = field(default_factory=dict)


# --------------------------------------------------------------------------
# adapters: (artifact, op, input arrays) -> (output arrays, events)

Adapter = Callable[[Artifact, OpSpec, list], tuple[list, dict]]


def _frac(art: Artifact, tensor: str) -> int:
    t = art.tensors[tensor]
    if t.kind != "stream":
        raise ValueError(f"tensor {tensor!r} is {t.kind}, a stream was expected")
    return int(t.frac)


def _same_frac(art: Artifact, op: OpSpec) -> None:
    # Ops without arithmetic keep the input frac (§6.5–6.9); a differing output frac is a malformed graph.
    f_in = _frac(art, op.inputs[0])
    for o in op.outputs:
        if _frac(art, o) != f_in:
            raise ValueError(f"op {op.name!r} ({op.op}): output {o!r} frac {_frac(art, o)} != input frac {f_in}")


def _codebook_of(art: Artifact, tensor: str):
    t = art.tensors[tensor]
    if t.kind != "codes" or t.codebook is None:
        raise ValueError(f"tensor {tensor!r} is {t.kind}, codes with a codebook were expected")
    return t.codebook


def _image_in(art, op, xs):
    x, ev = image.image_in(xs[0], art.array(op, "mult"), art.array(op, "offset"), exp=op.attrs["exp"],
                           f_out=_frac(art, op.outputs[0]), numerics=art.numerics, name=op.name)
    return [x], ev


def _image_out(art, op, xs):
    x, ev = image.image_out(xs[0], art.array(op, "mult"), art.array(op, "offset"), exp=op.attrs["exp"],
                            f_in=_frac(art, op.inputs[0]), numerics=art.numerics, name=op.name)
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


def _memo(art: Artifact, kind: str, obj, make, *extra):
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


def _codes_fit(art: Artifact, codebook) -> bool:
    return _memo(art, "codes_fit", codebook, lambda: codes_fit(codebook))


def _encoder_table(art: Artifact, codebook):
    rounding = art.numerics.rounding
    return _memo(art, "encoder_table", codebook, lambda: encoder_table(codebook, rounding), rounding)


def _encode_fast(x: np.ndarray, codebook, rounding, table=False) -> tuple[np.ndarray, int, np.ndarray] | None:
    """:func:`intsim.encoder.encode` by the fused banded kernel (same results), or None when
    the input or codebook is outside what the kernel handles (then the numpy encoder runs).
    ``table``: the codebook's :func:`encoder_table` when the caller has it (None: it does not apply)."""
    if table is False:
        table = encoder_table(codebook, rounding)
    if x.ndim != 3 or x.dtype != np.int64 or table is None:
        return None
    return tuple(encode_kernels.encode_bands(np.ascontiguousarray(x), table))


def _encode_events(sats: int, hist: np.ndarray) -> dict:
    return {"acc_overflow": 0, "stream_overflow": 0, "saturations": int(sats),
            "code_histogram": [int(v) for v in hist]}


def _encode(art, op, xs):
    codebook = _codebook_of(art, op.outputs[0])
    fast = _encode_fast(np.asarray(xs[0]), codebook, art.numerics.rounding, _encoder_table(art, codebook))
    codes, sats, hist = fast if fast is not None else encode(xs[0], codebook, art.numerics.rounding)
    return [codes], _encode_events(sats, hist)


def _conv_worst(art: Artifact, op: OpSpec) -> dict:
    """``{accumulator name: W_j}`` of the load-time analysis (§5.4): the bounds the GEMM path is gated on."""
    return {b.name: b.worst_max for b in bounds.conv_accumulators(art, op)}


def _conv_constants(art: Artifact, op: OpSpec, transposed: bool) -> conv_ops.ConvConstants:
    """The op's :class:`~intsim.ops.conv.ConvConstants`, derived once per artifact (``art.derived``):
    ordered/worst from the load-time analysis (§5.4), the int8 path's packed weights."""
    weight, w_mant = art.array(op, "weight"), art.array(op, "w_mant")
    codebook = _codebook_of(art, op.inputs[0])
    key = ("conv", op.name, id(weight), id(w_mant), id(codebook), art.numerics)
    consts = art.derived.get(key)
    if consts is None:
        consts = conv_ops.conv_constants(weight, w_mant, codebook, art.numerics,
                                         groups=int(op.attrs.get("groups", 1)), transposed=transposed,
                                         ordered=bounds.conv_can_overflow(art, op), worst=_conv_worst(art, op),
                                         name=op.name)
        art.derived[key] = consts
    return consts


def _conv2d(art, op, xs, rows_sink=None):
    a = op.attrs
    if [int(k) for k in a["kernel"]] != list(art.array(op, "weight").shape[1:3]):
        raise ValueError(f"op {op.name!r}: attrs kernel {a['kernel']} != weight shape {art.array(op, 'weight').shape}")
    x, ev = conv_ops.conv2d(xs[0], _codebook_of(art, op.inputs[0]), art.array(op, "weight"), art.array(op, "w_mant"),
                            art.array(op, "bias"), w_exp=a["w_exp"], f_out=_frac(art, op.outputs[0]),
                            stride=a.get("stride", (1, 1)), padding=a.get("padding", (0, 0)),
                            dilation=a.get("dilation", (1, 1)), groups=a.get("groups", 1),
                            numerics=art.numerics, name=op.name, constants=_conv_constants(art, op, False),
                            codes_in_range=_codes_fit(art, _codebook_of(art, op.inputs[0])), rows_sink=rows_sink)
    return [x], ev


def _conv_transpose2d(art, op, xs):
    a = op.attrs
    if [int(k) for k in a["kernel"]] != list(art.array(op, "weight").shape[1:3]):
        raise ValueError(f"op {op.name!r}: attrs kernel {a['kernel']} != weight shape {art.array(op, 'weight').shape}")
    x, ev = conv_ops.conv_transpose2d(xs[0], _codebook_of(art, op.inputs[0]), art.array(op, "weight"),
                                      art.array(op, "w_mant"), art.array(op, "bias"), w_exp=a["w_exp"],
                                      f_out=_frac(art, op.outputs[0]), stride=a.get("stride", (1, 1)),
                                      padding=a.get("padding", (0, 0)),
                                      output_padding=a.get("output_padding", (0, 0)),
                                      numerics=art.numerics, name=op.name,
                                      constants=_conv_constants(art, op, True),
                                      codes_in_range=_codes_fit(art, _codebook_of(art, op.inputs[0])))
    return [x], ev


def _add(art, op, xs, encode=None):
    x, ev = elementwise.add(xs[0], xs[1], f_a=_frac(art, op.inputs[0]), f_b=_frac(art, op.inputs[1]),
                            f_out=_frac(art, op.outputs[0]), numerics=art.numerics, name=op.name, encode=encode)
    return [x], ev


def _concat(art, op, xs, encode=None):
    x, ev = elementwise.concat(xs, [_frac(art, t) for t in op.inputs], f_out=_frac(art, op.outputs[0]),
                               numerics=art.numerics, name=op.name, encode=encode)
    return [x], ev


def _split(art, op, xs):
    _same_frac(art, op)
    sizes = op.attrs["sizes"]
    if len(sizes) != len(op.outputs):
        raise ValueError(f"op {op.name!r}: {len(sizes)} sizes for {len(op.outputs)} outputs")
    return elementwise.split(xs[0], sizes, name=op.name)


def _relu(art, op, xs):
    _same_frac(art, op)
    x, ev = elementwise.relu(xs[0], name=op.name)
    return [x], ev


def _slope_sink(art: Artifact, op: OpSpec, split_op: OpSpec | None, encoders: list | None,
                shape: tuple) -> elementwise_kernels.SlopeSink | None:
    """The banded kernel's :class:`~intsim.kernels.elementwise.SlopeSink` for the slope op ``op``
    (leaky_relu / prelu, §6.7) on a stream of ``shape``, fused with ``split_op`` (§6.5) when given
    and with ``encoders`` (per output, None or an :class:`EncoderTable`; None: no encoder); None where the kernel
    does not apply: the 'error' policy (the numpy op names the value), a shift outside [0, 62],
    slopes or split sizes that do not fit the channels (the numpy ops say what is wrong)."""
    policy = art.numerics.overflow_policy
    C = shape[2]
    mult = (np.full(C, int(op.attrs["mult"]), np.int64) if op.op == "leaky_relu"
            else np.asarray(art.array(op, "mult"), dtype=np.int64).reshape(-1))
    if policy is OverflowPolicy.ERROR or not 0 <= int(op.attrs["shift"]) <= 62 or mult.shape != (C,):
        return None
    sizes = None
    if split_op is not None:
        _same_frac(art, split_op)
        sizes = [int(v) for v in split_op.attrs["sizes"]]
        if len(sizes) != len(split_op.outputs) or min(sizes, default=0) < 1 or sum(sizes) != C:
            return None
    return elementwise_kernels.SlopeSink(shape, mult, int(op.attrs["shift"]),
                                         int(art.numerics.rounding_mode), int(policy),
                                         art.numerics.stream_bits, sizes, encoders)


def _slope_fast(art, op, xs, split_op=None, encoders=None):
    """leaky_relu / prelu by the banded kernel (same results) for large int64 tensors, fused with
    ``split_op`` and ``encoders`` as :func:`_slope_sink` takes them: ``(outputs, events)``, the
    split's outputs when fused with one; None where the kernel does not apply."""
    a = np.asarray(xs[0])
    if a.ndim != 3 or a.dtype != np.int64 or a.size < 1 << 15:
        return None
    sink = _slope_sink(art, op, split_op, encoders, a.shape)
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
    _same_frac(art, op)
    x, ev = elementwise.clamp(xs[0], lo=op.attrs["lo"], hi=op.attrs["hi"], name=op.name)
    return [x], ev


def _leaky_relu(art, op, xs, encode=None):
    _same_frac(art, op)
    fast = _slope_fast(art, op, xs, encoders=[encode])
    if fast is not None:
        return fast
    x, ev = elementwise.leaky_relu(xs[0], mult=op.attrs["mult"], shift=op.attrs["shift"],
                                   numerics=art.numerics, name=op.name)
    return [x], ev


def _prelu(art, op, xs, encode=None):
    _same_frac(art, op)
    fast = _slope_fast(art, op, xs, encoders=[encode])
    if fast is not None:
        return fast
    x, ev = elementwise.prelu(xs[0], art.array(op, "mult"), shift=op.attrs["shift"],
                              numerics=art.numerics, name=op.name)
    return [x], ev


def _mul(art, op, xs, encode=None):
    x, ev = elementwise.mul(xs[0], xs[1], f_x=_frac(art, op.inputs[0]), f_g=_frac(art, op.inputs[1]),
                            f_out=_frac(art, op.outputs[0]), numerics=art.numerics, name=op.name, encode=encode)
    return [x], ev


def _pixel_shuffle(art, op, xs):
    _same_frac(art, op)
    a, r = np.asarray(xs[0]), int(op.attrs["factor"])
    if a.ndim == 3 and a.dtype == np.int64 and r >= 1 and a.shape[2] % (r * r) == 0 and a.size >= 1 << 16:
        # same mapping as resample.pixel_shuffle (§6.8), a banded copy kernel for large tensors
        return [resample_kernels.pixel_shuffle_bands(a, r)], no_events()
    x, ev = resample.pixel_shuffle(xs[0], op.attrs["factor"], name=op.name)
    return [x], ev


def _upsample_nearest(art, op, xs):
    _same_frac(art, op)
    x, ev = resample.upsample_nearest(xs[0], op.attrs["factor"], name=op.name)
    return [x], ev


def _upsample_bilinear(art, op, xs):
    _same_frac(art, op)
    a = op.attrs
    x, ev = resample.upsample_bilinear(xs[0], factor=a["factor"], mult=a["mult"], shift=a["shift"],
                                       numerics=art.numerics, name=op.name)
    return [x], ev


def _upsample_bicubic(art, op, xs):
    _same_frac(art, op)
    x, ev = bicubic_ops.upsample_bicubic(xs[0], factor=op.attrs["factor"], tap_bits=op.attrs["tap_bits"],
                                         numerics=art.numerics, name=op.name)
    return [x], ev


def _mean_pool(art, op, xs):
    _same_frac(art, op)
    x, ev = pooling.mean_pool(xs[0], shift=op.attrs["shift"], numerics=art.numerics, name=op.name)
    return [x], ev


def _std_pool(art, op, xs):
    _same_frac(art, op)
    x, ev = pooling.std_pool(xs[0], shift=op.attrs["shift"], pre_shift=op.attrs["pre_shift"],
                             numerics=art.numerics, name=op.name)
    return [x], ev


def _lut(art, op, xs):
    # ``sigmoid`` (§6.13) and ``lut`` (§6.17) run the same index rule and look-up; the function is in the table
    a = op.attrs
    x, ev = sigmoid.lut(xs[0], art.array(op, "lut"), lut_exp=a["lut_exp"], imin=a["imin"], imax=a["imax"],
                        f_in=_frac(art, op.inputs[0]), numerics=art.numerics, name=op.name)
    return [x], ev


OPS: dict[str, Adapter] = {
    "image_in": _image_in,
    "image_out": _image_out,
    "encode": _encode,
    "conv2d": _conv2d,
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
    "sigmoid": _lut,
    "lut": _lut,
    "mul": _mul,
}
"""Op type → adapter. Every op type of docs/artifact.md has an entry."""


_TOTAL_KEYS = ("acc_overflow", "stream_overflow", "saturations")


@dataclass(frozen=True)
class _Shape:
    """Stands for a fused op's output that was never materialized (only its shape is reported)."""

    shape: tuple


def _check_image(art: Artifact, image_px: np.ndarray) -> str:
    if len(art.inputs) != 1:
        raise ValueError(f"artifact has {len(art.inputs)} inputs; the engine runs single-image graphs")
    name = art.inputs[0]
    spec = art.tensors[name]
    if spec.kind != "image":
        raise ValueError(f"graph input {name!r} is a {spec.kind} tensor, expected an image")
    a = np.asarray(image_px)
    if a.dtype != np.uint8:
        raise ValueError(f"input image must be uint8, got {a.dtype}")
    if a.ndim == 2 and spec.channels == 1:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"input image must be H×W×C, got shape {a.shape}")
    if a.shape[2] != spec.channels:
        raise ValueError(f"input image has {a.shape[2]} channels, the artifact's input {name!r} needs {spec.channels}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"input image is empty: shape {a.shape}")
    return name


ENCODE_FUSABLE = frozenset({"leaky_relu", "prelu", "add", "mul", "concat"})
"""Op types whose adapters take ``encode=``: their output can be encoded in the same pass."""


@dataclass(frozen=True)
class Fusion:
    """Ops that :func:`run` executes together with a producer when it keeps no intermediates
    (one pass instead of several; the same integers and counters).

    ``split``: the ``split`` that is a leaky_relu / prelu's only consumer, or None.
    ``encodes``: per output of the last op of the group (the split's, else the producer's),
    the ``encode`` op that is that tensor's only consumer, or None.
    ``slope``: for a ``conv2d`` producer, the leaky_relu / prelu that is its output's only
    consumer (``split`` and ``encodes`` are then that op's): it takes the conv's output rows
    band by band, while they are in cache.
    """

    split: OpSpec | None
    encodes: tuple
    slope: OpSpec | None = None


def fusion_plan(art: Artifact) -> dict[str, Fusion]:
    """``{producer op name: Fusion}`` for every producer with something to fuse: a leaky_relu /
    prelu whose output only a ``split`` reads, and any output (the split's, or an op of
    :data:`ENCODE_FUSABLE`'s) that only an ``encode`` reads. Graph outputs are never fused away."""
    consumers: dict[str, list[OpSpec]] = {}
    for op in art.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)

    def only(t: str, kind: str) -> OpSpec | None:
        users = consumers.get(t, [])
        if t in art.outputs or len(users) != 1 or users[0].op != kind or list(users[0].inputs) != [t]:
            return None
        return users[0]

    plan = {}
    for op in art.ops:
        if len(op.outputs) != 1:
            continue
        split = only(op.outputs[0], "split") if op.op in ("leaky_relu", "prelu") else None
        if split is not None:
            plan[op.name] = Fusion(split, tuple(only(t, "encode") for t in split.outputs))
        elif op.op in ENCODE_FUSABLE and only(op.outputs[0], "encode") is not None:
            plan[op.name] = Fusion(None, (only(op.outputs[0], "encode"),))
    for op in art.ops:
        if op.op == "conv2d" and len(op.outputs) == 1:
            slope = only(op.outputs[0], "leaky_relu") or only(op.outputs[0], "prelu")
            if slope is not None:
                rest = plan.get(slope.name, Fusion(None, (None,)))
                plan[op.name] = Fusion(rest.split, rest.encodes, slope)
    return plan


def _encoder_tables(art: Artifact, encodes: tuple) -> list:
    """Per fused encode op (or None), the :class:`EncoderTable` its producer encodes with (or None)."""
    return [None if e is None else _encoder_table(art, _codebook_of(art, e.outputs[0]))
            for e in encodes]


def _run_conv_slope(art: Artifact, op: OpSpec, fusion: Fusion, xs: list) -> tuple[list, dict, dict]:
    """A conv2d whose output rows go straight into its slope op (and that op's split and encoders)."""
    codes = np.asarray(xs[0])
    sink = None
    if codes.ndim == 3:
        a = op.attrs
        hw = conv_ops.conv2d_output_hw(codes.shape[:2], a["kernel"], a.get("stride", (1, 1)),
                                       a.get("padding", (0, 0)), a.get("dilation", (1, 1)))
        if hw is not None:
            _same_frac(art, fusion.slope)
            sink = _slope_sink(art, fusion.slope, fusion.split, _encoder_tables(art, fusion.encodes),
                               (*hw, art.tensors[op.outputs[0]].channels))
    [conv_out], events = _conv2d(art, op, xs, rows_sink=sink)
    if sink is None or sink.rows_done != conv_out.shape[0]:
        return [conv_out], events, {}  # not handed over (another conv path): the slope op runs on its own
    outs, ev = sink.result()
    slope_events = no_events()
    slope_events["stream_overflow"] = int(ev)
    last, extra = _take_encoded(outs, fusion.encodes)
    if fusion.split is None:
        extra[fusion.slope.name] = (last, slope_events)
    else:
        extra[fusion.slope.name] = ([_Shape(conv_out.shape)], slope_events)
        extra[fusion.split.name] = (last, no_events())
    return [_Shape(conv_out.shape)], events, extra


def _take_encoded(outs: list, encodes: tuple) -> tuple[list, dict]:
    """``outs`` with each :class:`Encoded` replaced by its shape, and ``{encode op name: (outputs,
    events)}`` for those."""
    extra, last = {}, []
    for o, e in zip(outs, encodes):
        if isinstance(o, encode_kernels.Encoded):
            extra[e.name] = ([o.codes], _encode_events(o.saturations, o.histogram))
            last.append(_Shape(o.codes.shape))
        else:
            last.append(o)
    return last, extra


def _run_fused(art: Artifact, op: OpSpec, fusion: Fusion, xs: list) -> tuple[list, dict, dict] | None:
    """Run ``op`` with what ``fusion`` names: ``(op's outputs, op's events, {fused op name: (outputs,
    events)})``, with :class:`_Shape` for each tensor never materialized; None where the split
    cannot be fused (then every op runs on its own). An encode whose fused kernel does not apply
    (small tensor, 'error' policy, unusual codebook) is left to run on its own."""
    if fusion.slope is not None:
        return _run_conv_slope(art, op, fusion, xs)
    tables = _encoder_tables(art, fusion.encodes)
    if fusion.split is not None:
        _same_frac(art, op)
        both = _slope_fast(art, op, xs, fusion.split, tables)
        if both is None:
            return None
        outs, events = both
        results = [_Shape(xs[0].shape)]  # the slope op's output is never materialized
    else:
        outs, events = OPS[op.op](art, op, xs, encode=tables[0])
        results = None
    last, extra = _take_encoded(outs, fusion.encodes)
    if fusion.split is None:
        return last, events, extra
    extra[fusion.split.name] = (last, no_events())
    return results, events, extra


def run(art: Artifact, image: np.ndarray, keep_tensors: bool = True,
        op_seconds: dict[str, float] | None = None) -> RunResult:
    """Execute ``art`` on one uint8 H×W×C image (C = the input tensor's channels).

    Returns a :class:`RunResult`. Raises ``ValueError`` for an unusable image or
    a malformed op, :class:`~intsim.overflow.EngineOverflowError` under the
    ``error`` overflow policy. ``op_seconds``: if given, each op's wall time (s) is
    added to it under the op's name (a fused group's time is charged to its producer).
    """
    in_name = _check_image(art, image)
    allocator.tune_allocator_if_requested()  # process-wide: only where INTSIM_MALLOC=keep asks for it
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    env: dict[str, np.ndarray] = {in_name: np.ascontiguousarray(img)}

    # Remaining consumers per tensor, so intermediates can be dropped when not kept.
    uses: dict[str, int] = {}
    for op in art.ops:
        for t in op.inputs:
            uses[t] = uses.get(t, 0) + 1
    outputs = set(art.outputs)

    op_counters: dict[str, dict] = {}
    totals = {"macs": 0, **{k: 0 for k in _TOTAL_KEYS}}
    plan = {} if keep_tensors else _memo(art, "fusion_plan", art.ops, lambda: fusion_plan(art),
                                         tuple(map(id, art.ops)), tuple(art.outputs))
    fused: dict[str, tuple[list, dict]] = {}  # op name → its outputs and events, computed with its producer
    for op in art.ops:
        adapter = OPS.get(op.op)
        if adapter is None:
            raise ValueError(f"op {op.name!r}: unknown op type {op.op!r}")
        t0 = time.perf_counter()
        if op.name in fused:
            results, events = fused.pop(op.name)
        else:
            missing = [t for t in op.inputs if t not in env]
            if missing:
                raise ValueError(f"op {op.name!r}: input tensor {missing[0]!r} not computed yet (ops out of order?)")
            xs = [env[t] for t in op.inputs]
            group = _run_fused(art, op, plan[op.name], xs) if op.name in plan else None
            if group is not None:
                results, events, extra = group  # a tensor never materialized: its counters carry its shape
                fused.update(extra)
            else:
                results, events = adapter(art, op, xs)
        if len(results) != len(op.outputs):
            raise ValueError(f"op {op.name!r}: produced {len(results)} outputs, graph declares {len(op.outputs)}")
        for t, v in zip(op.outputs, results):
            spec = art.tensors[t]
            if v.shape[2] != spec.channels:
                raise ValueError(f"op {op.name!r}: output {t!r} has {v.shape[2]} channels, graph declares {spec.channels}")
            if not isinstance(v, _Shape):
                env[t] = v
        op_counters[op.name] = counter_entry(op.op, events, [[int(d) for d in r.shape] for r in results], totals)
        if op_seconds is not None:
            op_seconds[op.name] = op_seconds.get(op.name, 0.0) + time.perf_counter() - t0
        if not keep_tensors:
            for t in op.inputs:
                uses[t] -= 1
                if uses[t] == 0 and t not in outputs:
                    env.pop(t, None)  # a fused op's output was never stored

    missing = [t for t in art.outputs if t not in env]
    if missing:
        raise ValueError(f"graph output {missing[0]!r} was never computed")
    tensors = env if keep_tensors else {t: env[t] for t in art.outputs}
    return RunResult(tensors=dict(tensors), counters={"ops": op_counters, "totals": totals})


def counter_entry(op_type: str, events: dict, out_shapes: list[list[int]], totals: dict) -> dict:
    """One op's counters entry (``out_shapes``: [H, W, C] per output); adds its events to ``totals``."""
    entry = {"op": op_type}
    if "macs" in events:
        entry["macs"] = events["macs"]
        totals["macs"] += sum(events["macs"].values())
    for k in _TOTAL_KEYS:
        entry[k] = int(events.get(k, 0))
        totals[k] += entry[k]
    for k in ("code_histogram", "ordered"):
        if k in events:
            entry[k] = events[k]
    entry["out_shape"] = out_shapes[0]
    if len(out_shapes) > 1:
        entry["out_shapes"] = out_shapes
    return entry


def run_tiled(art: Artifact, image: np.ndarray, tile_rows: int = 32) -> RunResult:
    """:func:`run` in horizontal bands with bounded memory: the same outputs and counters as
    ``run(art, image, keep_tensors=False)``, bit for bit (see :mod:`intsim.tiling`)."""
    from intsim.tiling import run_tiled as _run_tiled

    return _run_tiled(art, image, tile_rows)
