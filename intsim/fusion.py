"""Fusion planning: ops the engine runs together with their producer in one pass.

When a run keeps no intermediates, a leaky_relu / prelu feeding only a ``split``, an output
that only an ``encode`` reads, a conv2d whose output only a slope op reads, and a conv2d whose
output only a pixel_shuffle feeding one encode reads are computed with their producer (the same
integers and counters as op by op; docs/arithmetic.md §6.5,
§6.7, §3.4). :func:`fusion_plan` finds the groups once per artifact; :func:`run_fused`
runs one. A concat fused with its encode can also be *staged* (:mod:`intsim.run_plan`): each input
encoded into its code slice as soon as it is made (:func:`stage_part`), joined at the concat's
step (:func:`finish_staged`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intsim import op_dispatch as D
from intsim.artifact import Artifact, OpSpec
from intsim.kernels import elementwise as elementwise_kernels
from intsim.kernels import encode as encode_kernels
from intsim.kernels import resample as resample_kernels
from intsim.ops import no_events, stream_operand, use_kernels
from intsim.ops import conv as conv_ops
from intsim.overflow import OverflowPolicy
from intsim.rounding import MAX_SHIFT

@dataclass(frozen=True)
class Shape:
    """Stands for a fused op's output that was never materialized (only its shape is reported)."""

    shape: tuple


@dataclass(frozen=True)
class Fusion:
    """Ops that :func:`run` executes together with a producer when it keeps no intermediates
    (one pass instead of several; the same integers and counters).

    ``split``: the ``split`` that is a leaky_relu / prelu's only consumer, or None.
    ``encodes``: per output of the last op of the group (the split's, else the producer's),
    the ``encode`` op that is that tensor's only consumer, or None.
    ``slope``: for a ``conv2d`` producer, the leaky_relu / prelu / relu that is its output's only
    consumer (``split`` and ``encodes`` are then that op's): it takes the conv's output rows
    band by band, while they are in cache.
    ``shuffle``: for a ``conv2d`` producer, the pixel_shuffle that is its output's only consumer,
    whose output only ``encodes[0]`` reads: the conv's rows are shuffled and encoded as they come
    (an upsampler's conv output and its shuffled stream are never stored).
    """

    split: OpSpec | None
    encodes: tuple
    slope: OpSpec | None = None
    shuffle: OpSpec | None = None


def fusion_plan(art: Artifact) -> dict[str, Fusion]:
    """``{producer op name: Fusion}`` for every producer with something to fuse: a leaky_relu /
    prelu whose output only a ``split`` reads, and any output (the split's, or an op of
    :data:`intsim.op_dispatch.ENCODE_FUSABLE`'s) that only an ``encode`` reads. Graph outputs are never fused away."""
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
        elif op.op in D.ENCODE_FUSABLE and only(op.outputs[0], "encode") is not None:
            plan[op.name] = Fusion(None, (only(op.outputs[0], "encode"),))
    for op in art.ops:
        if op.op == "conv2d" and len(op.outputs) == 1:
            slope = only(op.outputs[0], "leaky_relu") or only(op.outputs[0], "prelu") or only(op.outputs[0], "relu")
            if slope is not None:  # relu: the slope op with slope 0 (op_dispatch.slope_sink)
                rest = plan.get(slope.name) or Fusion(None, (only(slope.outputs[0], "encode"),))
                plan[op.name] = Fusion(rest.split, rest.encodes, slope)
                continue
            shuffle = only(op.outputs[0], "pixel_shuffle")
            enc = only(shuffle.outputs[0], "encode") if shuffle is not None else None
            if enc is not None:
                plan[op.name] = Fusion(None, (enc,), shuffle=shuffle)
    return plan


def encoder_tables(art: Artifact, encodes: tuple) -> list:
    """Per fused encode op (or None), the :class:`EncoderTable` its producer encodes with (or None)."""
    return [None if e is None else D.encoder_table_memo(art, D.codebook_of(art, e.outputs[0]))
            for e in encodes]


SINK_MIN_SIZE = 1 << 18
"""Output elements from which a conv hands its rows to a relu or pixel shuffle sink. The sinks save memory
(a whole conv output, and a shuffled copy), not time: on EDSR-baseline ×4 they are even at a 128² input and
cost 3.5 % at 16², where their Python set-up is much of an op's cost (docs/speed.md)."""


def sink_pays(hw: tuple, channels: int) -> bool:
    """True if a conv output of ``hw`` × ``channels`` goes through a relu / pixel shuffle sink."""
    return hw[0] * hw[1] * channels >= SINK_MIN_SIZE


def run_conv_slope(art: Artifact, op: OpSpec, fusion: Fusion, xs: list) -> tuple[list, dict, dict]:
    """A conv2d whose output rows go straight into its slope op (and that op's split and encoders)."""
    codes = np.asarray(xs[0])
    sink = call = None
    if codes.ndim == 3:
        call = D.conv_call(art, op)  # resolved once per artifact (raises what the conv would)
        p = call.params
        hw = conv_ops.conv2d_output_hw(codes.shape[:2], p.kernel, p.stride, p.padding, p.dilation)
        if hw is not None and (fusion.slope.op != "relu" or sink_pays(hw, art.tensors[op.outputs[0]].channels)):
            D.same_frac(art, fusion.slope)
            sink = D.slope_sink(art, fusion.slope, fusion.split, encoder_tables(art, fusion.encodes),
                               (*hw, art.tensors[op.outputs[0]].channels))
    [conv_out], events = D.conv2d(art, op, xs, rows_sink=sink, call=call)
    if conv_out is not None and (sink is None or sink.rows_done != conv_out.shape[0]):
        return [conv_out], events, {}  # not handed over (another conv path): the slope op runs on its own
    shape = conv_out.shape if conv_out is not None else (*hw, call.weight.shape[0])  # the rows went to the sink only
    outs, ev = sink.result()
    slope_events = no_events()
    slope_events["stream_overflow"] = int(ev)
    last, extra = take_encoded(outs, fusion.encodes)
    if fusion.split is None:
        extra[fusion.slope.name] = (last, slope_events)
    else:
        extra[fusion.slope.name] = ([Shape(shape)], slope_events)
        extra[fusion.split.name] = (last, no_events())
    return [Shape(shape)], events, extra


def run_conv_shuffle(art: Artifact, op: OpSpec, fusion: Fusion, xs: list) -> tuple[list, dict, dict]:
    """A conv2d whose output rows go straight into its pixel shuffle and that op's encode (§6.8, §3.4):
    the codes are held in the codebook's ``held_code_dtype``. Where the conv path hands no rows over,
    or the encoder table does not apply, the conv's output is returned and the two ops run on their own."""
    codes = np.asarray(xs[0])
    enc_op = fusion.encodes[0]
    table = encoder_tables(art, fusion.encodes)[0]
    sink = call = None
    if codes.ndim == 3 and table is not None:
        call = D.conv_call(art, op)  # resolved once per artifact (raises what the conv would)
        p = call.params
        hw = conv_ops.conv2d_output_hw(codes.shape[:2], p.kernel, p.stride, p.padding, p.dilation)
        r, co = int(fusion.shuffle.attrs["factor"]), art.tensors[op.outputs[0]].channels
        if hw is not None and r >= 1 and co % (r * r) == 0 and sink_pays(hw, co):
            D.same_frac(art, fusion.shuffle)
            sink = resample_kernels.ShuffleEncodeSink((*hw, co), r, table,
                                                      D.codebook_of(art, enc_op.outputs[0]).held_code_dtype)
    [conv_out], events = D.conv2d(art, op, xs, rows_sink=sink, call=call)
    if conv_out is not None and (sink is None or sink.rows_done != conv_out.shape[0]):
        return [conv_out], events, {}  # not handed over (another conv path): the shuffle runs on its own
    enc = sink.result()
    extra = {fusion.shuffle.name: ([Shape(enc.codes.shape)], no_events()),
             enc_op.name: ([enc.codes], D.encode_events(enc.saturations, enc.histogram))}
    return [Shape((*hw, co))], events, extra


def take_encoded(outs: list, encodes: tuple) -> tuple[list, dict]:
    """``outs`` with each :class:`Encoded` replaced by its shape, and ``{encode op name: (outputs,
    events)}`` for those."""
    extra, last = {}, []
    for o, e in zip(outs, encodes):
        if isinstance(o, encode_kernels.Encoded):
            extra[e.name] = ([o.codes], D.encode_events(o.saturations, o.histogram))
            last.append(Shape(o.codes.shape))
        else:
            last.append(o)
    return last, extra


def run_fused(art: Artifact, op: OpSpec, fusion: Fusion, xs: list) -> tuple[list, dict, dict] | None:
    """Run ``op`` with what ``fusion`` names: ``(op's outputs, op's events, {fused op name: (outputs,
    events)})``, with :class:`Shape` for each tensor never materialized; None where the split
    cannot be fused (then every op runs on its own). An encode whose fused kernel does not apply
    (small tensor, 'error' policy, unusual codebook) is left to run on its own."""
    if fusion.slope is not None:
        return run_conv_slope(art, op, fusion, xs)
    if fusion.shuffle is not None:
        return run_conv_shuffle(art, op, fusion, xs)
    tables = encoder_tables(art, fusion.encodes)
    if fusion.split is not None:
        D.same_frac(art, op)
        both = D.slope_fast(art, op, xs, fusion.split, tables)
        if both is None:
            return None
        outs, events = both
        results = [Shape(xs[0].shape)]  # the slope op's output is never materialized
    else:
        outs, events = D.OPS[op.op](art, op, xs, encode=tables[0])
        results = None
    last, extra = take_encoded(outs, fusion.encodes)
    if fusion.split is None:
        return last, events, extra
    extra[fusion.split.name] = (last, no_events())
    return results, events, extra


@dataclass
class StagedConcat:
    """A staged concat's inputs encoded so far (:mod:`intsim.run_plan`): ``table`` the encoder of
    its fused encode, ``shifts`` per input ``(left shift, right shift)`` to the output frac (§6.4),
    ``hw`` the inputs' H×W, ``codes`` the concat's codes [H, W, ΣC] in the codebook's
    ``held_code_dtype`` (each input's channel slice written when it is staged: no join at the end,
    which would hold every part and the joined codes at once), ``starts`` each input's first
    channel, and the summed stream events, saturations and histogram int64[num_codes] of the
    inputs staged so far."""

    table: encode_kernels.EncoderTable
    shifts: tuple
    hw: tuple
    rmode: int
    policy: int
    stream_bits: int
    codes: np.ndarray
    starts: tuple
    events: int = 0
    saturations: int = 0
    histogram: np.ndarray | None = None


def start_staged(art: Artifact, cop: OpSpec, fusion: Fusion, hw: tuple) -> StagedConcat | None:
    """The :class:`StagedConcat` of ``cop`` for inputs of ``hw`` rows×columns, or None where the
    fused concat would not run its encoding kernel (no encoder table, the 'error' policy, a small
    tensor, a shift out of range, a tensor that is no stream): then the concat runs at its own step
    on its inputs, which are kept until then, and raises there what it raises."""
    try:
        table = encoder_tables(art, fusion.encodes)[0]
        f_out = D.stream_frac(art, cop.outputs[0])
        fracs = [D.stream_frac(art, t) for t in cop.inputs]
        numerics = art.numerics
        rmode, policy = numerics.rounding_mode, numerics.overflow_policy
    except ValueError:
        return None
    shifts = tuple((max(f, f_out) - f, max(f, f_out) - f_out) for f in fracs)
    size = hw[0] * hw[1] * sum(art.tensors[t].channels for t in cop.inputs)
    if (table is None or policy is OverflowPolicy.ERROR or not use_kernels(size)
            or not 1 <= numerics.stream_bits <= 63
            or any(not (0 <= sa <= 63 and 0 <= n <= MAX_SHIFT) for sa, n in shifts)):
        return None
    sizes = [art.tensors[t].channels for t in cop.inputs]
    held = art.tensors[fusion.encodes[0].outputs[0]].codebook.held_code_dtype  # uint8 for ≤ 256 codes
    codes = np.empty((hw[0], hw[1], sum(sizes)), dtype=held)
    return StagedConcat(table, shifts, tuple(hw), int(rmode), int(policy), int(numerics.stream_bits), codes,
                        tuple(int(c) for c in np.cumsum([0] + sizes[:-1])))


def stage_part(art: Artifact, cop: OpSpec, fusion: Fusion, k: int, x, staged: dict) -> None:
    """Encode input ``k`` of the staged concat ``cop`` (``x``, just made) into its codes, in
    ``staged[cop.name]`` (started with the first input made; None there: not staged). The same
    integers as the fused concat's pass over that input's channels: every element is requantized
    and encoded on its own (§6.4, §3.4); events, saturations and histogram are sums over elements."""
    if cop.name not in staged:
        a = np.asarray(x)
        staged[cop.name] = start_staged(art, cop, fusion, a.shape[:2]) if a.ndim == 3 else None
    st = staged[cop.name]
    if st is None:
        return
    a = stream_operand(x, f"{cop.name} input {k}")
    if a.shape[:2] != st.hw:
        raise ValueError(f"{cop.name}: input {k} is {a.shape[:2]}, an earlier input is {st.hw} (H×W must match)")
    sa, n = st.shifts[k]
    c0 = st.starts[k]  # the engine checked every stored tensor's channels against the graph
    enc, ev = elementwise_kernels.requantize_encode_bands([(a, sa, None, 0, None, n, 0)], a.shape, st.rmode,
                                                          st.policy, st.stream_bits, st.table)
    st.codes[:, :, c0:c0 + a.shape[2]] = enc.codes  # narrowed in the copy; the part's codes live until here
    st.events += ev
    st.saturations += enc.saturations
    st.histogram = enc.histogram if st.histogram is None else st.histogram + enc.histogram


def finish_staged(cop: OpSpec, fusion: Fusion, st: StagedConcat) -> tuple[list, dict, dict]:
    """The staged concat's step: ``(outputs, events, {encode op name: (outputs, events)})`` as
    :func:`run_fused` returns them for the fused concat (its output never materialized)."""
    codes = st.codes
    events = no_events()
    events["stream_overflow"] = int(st.events)
    extra = {fusion.encodes[0].name: ([codes], D.encode_events(st.saturations, st.histogram))}
    return [Shape(codes.shape)], events, extra
