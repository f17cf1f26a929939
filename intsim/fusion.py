"""Fusion planning: ops the engine runs together with their producer in one pass.

When a run keeps no intermediates, a leaky_relu / prelu feeding only a ``split``, an output
that only an ``encode`` reads, and a conv2d whose output only a slope op reads are computed
with their producer (the same integers and counters as op by op; docs/arithmetic.md §6.5,
§6.7, §3.4). :func:`fusion_plan` finds the groups once per artifact; :func:`run_fused`
runs one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intsim import op_dispatch as D
from intsim.artifact import Artifact, OpSpec
from intsim.kernels import encode as encode_kernels
from intsim.ops import conv as conv_ops
from intsim.ops import no_events

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
            slope = only(op.outputs[0], "leaky_relu") or only(op.outputs[0], "prelu")
            if slope is not None:
                rest = plan.get(slope.name, Fusion(None, (None,)))
                plan[op.name] = Fusion(rest.split, rest.encodes, slope)
    return plan


def encoder_tables(art: Artifact, encodes: tuple) -> list:
    """Per fused encode op (or None), the :class:`EncoderTable` its producer encodes with (or None)."""
    return [None if e is None else D.encoder_table_memo(art, D.codebook_of(art, e.outputs[0]))
            for e in encodes]


def run_conv_slope(art: Artifact, op: OpSpec, fusion: Fusion, xs: list) -> tuple[list, dict, dict]:
    """A conv2d whose output rows go straight into its slope op (and that op's split and encoders)."""
    codes = np.asarray(xs[0])
    sink = call = None
    if codes.ndim == 3:
        call = D.conv_call(art, op)  # resolved once per artifact (raises what the conv would)
        p = call.params
        hw = conv_ops.conv2d_output_hw(codes.shape[:2], p.kernel, p.stride, p.padding, p.dilation)
        if hw is not None:
            D.same_frac(art, fusion.slope)
            sink = D.slope_sink(art, fusion.slope, fusion.split, encoder_tables(art, fusion.encodes),
                               (*hw, art.tensors[op.outputs[0]].channels))
    [conv_out], events = D.conv2d(art, op, xs, rows_sink=sink, call=call)
    if sink is None or sink.rows_done != conv_out.shape[0]:
        return [conv_out], events, {}  # not handed over (another conv path): the slope op runs on its own
    outs, ev = sink.result()
    slope_events = no_events()
    slope_events["stream_overflow"] = int(ev)
    last, extra = take_encoded(outs, fusion.encodes)
    if fusion.split is None:
        extra[fusion.slope.name] = (last, slope_events)
    else:
        extra[fusion.slope.name] = ([Shape(conv_out.shape)], slope_events)
        extra[fusion.split.name] = (last, no_events())
    return [Shape(conv_out.shape)], events, extra


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
