"""The captured graph (:func:`calib.graph.capture`): :class:`LNode` ops in topological order
and :class:`CapturedGraph`, which runs the traced model with taps on the tensors calibration
observes. The tensor names of the graph's input and output are fixed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.fx as fx


INPUT_TENSOR = "input"


OUTPUT_TENSOR = "output"


@dataclass
class LNode:
    """One artifact-level op before quantization.

    ``fx_node`` names the fx node whose runtime value *is* this op's output
    tensor (used by calibration to observe it). ``channels`` is the output's
    channel count. ``attrs`` holds real-valued attributes (e.g. the image
    affine ``a``/``b``, conv geometry, ``post_scale``).
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    fx_node: str
    channels: int
    module: str | None = None
    attrs: dict = field(default_factory=dict)
    place: str = ""
    #: conv / conv_transpose2d: the fx node of the module call (its input is the conv input; differs
    #: from ``fx_node`` when a constant factor was folded, and per call for a shared module).
    call_node: str = ""
    #: ``split``: the outputs after ``output`` and the fx nodes (getitem) carrying them ("" if unused).
    extra_outputs: tuple[str, ...] = ()
    extra_fx: tuple[str, ...] = ()
    #: the output is 1×1 spatially (global pooling and what is computed from it).
    is_global: bool = False

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output,) + tuple(self.extra_outputs)


CONV_OPS = ("conv2d", "conv_transpose2d")


@dataclass
class CapturedGraph:
    """A traced model lowered to :class:`LNode` ops in topological order."""

    gm: fx.GraphModule
    nodes: list[LNode]
    rgb_range: float
    in_channels: int
    #: values of the traced forward's arguments after the image (the concrete arguments, e.g. CARN-M's
    #: ``scale``); ``gm(x, *extra_inputs)`` runs the traced model.
    extra_inputs: tuple = ()
    concrete_args: dict = field(default_factory=dict)

    def node(self, name: str) -> LNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def producer(self, tensor: str) -> LNode | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[LNode]:
        return [n for n in self.nodes if tensor in n.inputs]

    def convs(self) -> list[LNode]:
        """Every quantized conv (``conv2d`` and ``conv_transpose2d``), in graph order."""
        return [n for n in self.nodes if n.op in CONV_OPS]

    def stream_tensors(self) -> dict[str, str]:
        """Stream tensor name → fx node whose value it carries (every op output except ``output``)."""
        out = {}
        for n in self.nodes:
            if n.op == "image_out":
                continue
            out[n.output] = n.fx_node
            for t, f in zip(n.extra_outputs, n.extra_fx):
                out[t] = f
        return out

    def conv_roles(self) -> dict[str, str]:
        """Role of each conv for the layer policy: ``head``, ``body``, ``upsampler`` or ``tail``, by the one
        rule of :func:`intsim.cost.layer_policy.graph_roles` (docs/calibration.md "Layer policy")."""
        from intsim.cost.layer_policy import graph_roles

        return graph_roles(self.nodes, CONV_OPS)

    def run(self, x: torch.Tensor, *, conv_input_taps: dict[str, Callable] | None = None,
            tensor_taps: dict[str, Callable] | None = None) -> torch.Tensor:
        """Run the traced float model on ``x``, calling taps on the way.

        ``conv_input_taps[conv op name](input)`` sees each conv's input;
        ``tensor_taps[tensor name](value)`` sees each stream tensor's value as
        soon as it is computed (before any in-place op can change it).
        """
        conv_input_taps = conv_input_taps or {}
        by_call = {n.call_node: conv_input_taps[n.name] for n in self.convs() if n.name in conv_input_taps}
        by_node: dict[str, list[Callable]] = {}
        fx_of = self.stream_tensors()
        for t, cb in (tensor_taps or {}).items():
            if fx_of.get(t):
                by_node.setdefault(fx_of[t], []).append(cb)
        return _TapInterpreter(self.gm, by_call, by_node).run(x, *self.extra_inputs)


class _TapInterpreter(fx.Interpreter):
    """Runs the traced model; ``call_taps[fx node]`` sees a module call's first argument (a conv
    input, per call even for a shared module), ``node_taps[fx node]`` the node's value."""

    def __init__(self, gm, call_taps, node_taps):
        super().__init__(gm)
        self.call_taps = call_taps
        self.node_taps = node_taps

    def run_node(self, n):
        cb = self.call_taps.get(n.name)
        if cb is not None:
            args, _ = self.fetch_args_kwargs_from_env(n)
            cb(args[0])
        out = super().run_node(n)
        for cb in self.node_taps.get(n.name, ()):
            cb(out)
        return out
