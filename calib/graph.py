"""Dataflow capture (torch.fx) and lowering to artifact-level ops.

:func:`capture` symbolically traces a float model and lowers the fx graph to a
list of :class:`LNode` — the ops of an intsim artifact (docs/artifact.md)
*before* quantization: ``image_in``, ``conv2d``, ``conv_transpose2d``, ``relu``,
``leaky_relu``, ``prelu``, ``add``, ``concat``, ``split``, ``pixel_shuffle``,
``upsample_nearest``, ``upsample_bilinear``, ``mean_pool``, ``std_pool``,
``lut`` (sigmoid, tanh, silu, gelu), ``clamp``, ``mul``, ``image_out``. Export (calib/export.py) later inserts one
``encode`` op in front of every conv (activation quantizers sit at conv inputs
only; every other op works on the wide stream) and snaps everything to integers.

Lowering rules (docs/arithmetic.md):

* the model input (a float image in [0, rgb_range]) becomes ``image_in`` with
  the per-channel affine ``v = a·P + b`` of the uint8 pixel P
  (``a = rgb_range/255``); a ``MeanShift`` applied to it is folded into that
  affine (arithmetic.md §6.1); 1-channel (Y) models take a 1-channel image;
* a ``MeanShift`` applied to the value the model returns is folded into
  ``image_out``: pixel = (W·x + bias)·255/rgb_range (§6.2);
* ``nn.Conv2d`` → conv2d, ``nn.ConvTranspose2d`` → conv_transpose2d (§5.5); a
  module called several times (CARN-M's shared blocks) gives one op per call
  (same weights, own activation quantizer each);
* ``nn.ReLU6`` / ``nn.Hardtanh`` / ``F.relu6`` / ``F.hardtanh`` / ``torch.clamp`` / ``torch.clip`` /
  ``x.clamp(min, max)`` with constant bounds → clamp (bounds snapped inwards to the stream grid at
  export, §6.16);
* ``nn.LeakyReLU`` / ``F.leaky_relu`` → leaky_relu, ``nn.PReLU`` → prelu (slopes
  kept real here, fixed-point at export, §6.7); ``nn.Sigmoid`` / ``torch.sigmoid``,
  ``nn.Tanh`` / ``torch.tanh``, ``nn.SiLU`` / ``F.silu``, ``nn.GELU`` / ``F.gelu`` (exact erf form)
  → lut with ``fn`` = the function's name (a table at export, §6.13, §6.17);
* ``torch.cat`` on channels → concat; ``torch.split`` / ``torch.chunk`` /
  ``x[:, a:b]`` on channels → split (§6.4, §6.5);
* ``nn.Upsample`` / ``F.interpolate`` by an integer factor → upsample_nearest,
  upsample_bilinear or upsample_bicubic (align_corners=False; §6.10, §6.18);
* a global mean over H×W (``AdaptiveAvgPool2d(1)``, ``x.mean((2, 3), keepdim=True)``,
  ``x.sum(3, keepdim=True).sum(2, keepdim=True) / (x.size(2)·x.size(3))``) →
  mean_pool; a population std over H×W (``sqrt``/``pow(0.5)`` of the mean of
  ``(x − mean x)²``, or ``x.std((2, 3), unbiased=False, keepdim=True)``) →
  std_pool: the intermediate values are tracked symbolically and only the
  complete pattern lowers (IMDN's contrast-aware channel attention);
* full-size tensor × 1×1 tensor (a per-channel gate) → mul (§6.14);
* multiplication by a constant: by 1 it is removed (EDSR's ``res_scale = 1``);
  by c ≠ 1 it is folded into the conv producing its operand (the conv's real
  weights and bias are scaled by c at export), provided that conv output has
  no other user;
* ``nn.BatchNorm2d`` (eval mode) directly after an ``nn.Conv2d`` is folded into that conv's
  float weights and bias before tracing (:mod:`calib.batchnorm`, arithmetic.md §5.7);
* ``nn.Identity`` / ``nn.Dropout`` are removed;
* forward arguments after the image with a default value (CARN-M's
  ``forward(x, scale=None)``) are fixed at that value by torch.fx
  ``concrete_args`` (override with ``capture(..., concrete_args=...)``);
* anything else raises :class:`UnsupportedOpError` naming the fx node, the op
  and its place in the model (module path and source line).

Leaves of the trace are torch's standard ``torch.nn`` leaves plus any module
whose class is named ``MeanShift`` (so it is folded as one affine, not traced
into ``F.conv2d``), plus ``extra_leaves``.

Tensor names: ``input`` (uint8 image), ``image_in.out``, ``<op>.out`` for every
other op (``<op>.out0``, ``<op>.out1``, … for split), ``output`` (uint8 image).
Op names are module paths for module calls (``body.0.body.0``; ``_1``, ``_2``
for further calls of a shared module) and ``<enclosing module path>.<function>``
for functions (``body.0.add``; ``add`` at top level), made unique with ``_1``, ``_2``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from calib.tracing import (
    SUPPORTED,
    Tracer,
    UnsupportedOpError,
    default_concrete_args,
    describe,
    is_mean_shift,
    place,
    scope,
)


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
        """Role of each conv for the layer policy (docs/calibration.md).

        ``head`` = first conv, ``tail`` = last conv, ``upsampler`` = a conv
        whose output feeds only ``pixel_shuffle``, ``body`` = the rest.
        """
        convs = self.convs()
        roles: dict[str, str] = {}
        for i, c in enumerate(convs):
            users = self.consumers(c.output)
            if i == 0:
                roles[c.name] = "head"
            elif i == len(convs) - 1:
                roles[c.name] = "tail"
            elif users and all(u.op == "pixel_shuffle" for u in users):
                roles[c.name] = "upsampler"
            else:
                roles[c.name] = "body"
        return roles

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


# --------------------------------------------------------------------------
# tracing


def mean_shift_affine(m: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(diag, bias) of a MeanShift: a 1×1 conv C→C with a diagonal weight (own weight or one Conv2d child)."""
    conv = m if isinstance(m, nn.Conv2d) else None
    if conv is None:
        kids = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
        conv = kids[0] if len(kids) == 1 else None
    if conv is None:
        raise UnsupportedOpError(f"{where}: MeanShift module must be (or hold exactly one) nn.Conv2d to be folded")
    w = conv.weight.detach().double().cpu().numpy()
    if w.shape[2:] != (1, 1) or w.shape[0] != w.shape[1] or conv.groups != 1:
        raise UnsupportedOpError(f"{where}: MeanShift must be a 1×1 conv C→C, got weight {list(w.shape)}")
    w2 = w[:, :, 0, 0]
    if np.any(w2 - np.diag(np.diag(w2))):
        raise UnsupportedOpError(f"{where}: MeanShift weight is not diagonal; only per-channel affines fold into image ops")
    b = conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    return np.diag(w2).copy(), b


# --------------------------------------------------------------------------
# lowering


@dataclass
class _Stream:
    tensor: str


@dataclass
class _Image:
    """Virtual: affine of the input pixels, v = a·P + b (not yet an op)."""

    a: np.ndarray
    b: np.ndarray
    folded: tuple[str, ...]
    materialized: str | None = None


@dataclass
class _AffineStream:
    """Virtual: affine of a stream tensor, v = a·x + b (a MeanShift awaiting image_out)."""

    tensor: str
    a: np.ndarray
    b: np.ndarray
    folded: tuple[str, ...]
    place: str


_ADD = {operator.add, operator.iadd, torch.add}
_SUB = {operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul}
_DIV = {operator.truediv, operator.itruediv, torch.div}
_POW = {operator.pow, torch.pow}
_RELU_FN = {F.relu, torch.relu, torch.relu_}
_LRELU_FN = {F.leaky_relu, F.leaky_relu_}
# LUT activations (arithmetic.md §6.17): callable → the table function's name (intsim.lut.LUT_FUNCTIONS)
_LUT_FN = {torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.sigmoid_: "sigmoid", torch.tanh: "tanh",
           F.tanh: "tanh", torch.tanh_: "tanh", F.silu: "silu", F.gelu: "gelu"}
_LUT_METHODS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}
_LUT_MODULES = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu", nn.GELU: "gelu"}
_CLAMP_FN = {torch.clamp, torch.clip, torch.clamp_, F.hardtanh, F.relu6, torch._C._nn.hardtanh_}
_CLAMP_METHODS = ("clamp", "clamp_", "clip", "clip_")
_PS_FN = {F.pixel_shuffle, torch.pixel_shuffle}
_CAT_FN = {torch.cat, torch.concat, torch.concatenate}
_SPLIT_FN = {torch.split, torch.chunk, torch.tensor_split}
_MEAN_FN = {torch.mean}
_STD_FN = {torch.std}
_SQRT_FN = {torch.sqrt}
_INTERP_FN = {F.interpolate}
_AAP_FN = {F.adaptive_avg_pool2d}


def _assert_fn_names() -> set:
    out = set()
    try:
        from torch.fx._symbolic_trace import _assert_is_none
        out.add(_assert_is_none)
    except ImportError:  # pragma: no cover
        pass
    return out


_IGNORED_FN = _assert_fn_names()


def capture(model: nn.Module, *, rgb_range: float | None = None, in_channels: int | None = None,
            extra_leaves: tuple[type, ...] = (), concrete_args: dict | None = None) -> CapturedGraph:
    """Trace ``model`` (eval mode, float) and lower it to artifact-level ops.

    ``rgb_range``: the model's input range ([0, rgb_range] ↔ pixels 0..255);
    default ``model.rgb_range`` or 255. ``in_channels``: image channels;
    default ``model.n_colors`` or 3. ``concrete_args``: forward arguments after the
    image fixed for tracing (torch.fx ``concrete_args``); by default every such
    argument with a default value keeps it. Raises :class:`UnsupportedOpError` for
    anything the engine cannot run.
    """
    rgb_range = float(rgb_range if rgb_range is not None else getattr(model, "rgb_range", 255))
    in_channels = int(in_channels if in_channels is not None else getattr(model, "n_colors", 3))
    if rgb_range <= 0:
        raise ValueError(f"rgb_range must be positive, got {rgb_range}")
    concrete = default_concrete_args(model)
    concrete.update(concrete_args or {})
    from calib.batchnorm import fold_batchnorm

    tracer = Tracer(tuple(extra_leaves))
    try:
        model = fold_batchnorm(model, extra_leaves=tuple(extra_leaves), concrete_args=concrete_args)  # §5.7
        graph = tracer.trace(model, concrete_args=concrete or None)
    except UnsupportedOpError:
        raise
    except Exception as e:  # noqa: BLE001 - fx raises TraceError, TypeError, ... for untraceable code
        msg = " ".join(str(e).split())
        raise UnsupportedOpError(f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {msg}); "
                                 f"data-dependent control flow is not supported (fix such forward arguments "
                                 f"with concrete_args)") from None
    for nd in graph.nodes:  # an imported graph's scopes (calib/onnx_import.py) name its functional ops
        node_scope = (getattr(model, "fx_node_scopes", None) or {}).get(nd.name)
        if node_scope and not nd.meta.get("nn_module_stack"):
            nd.meta["nn_module_stack"] = {node_scope: (node_scope, nn.Module)}
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    cg = _lower(gm, rgb_range, in_channels)
    n_ph = sum(1 for nd in gm.graph.nodes if nd.op == "placeholder")
    cg.concrete_args = dict(concrete)
    cg.extra_inputs = tuple(concrete.values())[: n_ph - 1]
    return cg


# virtual values of the pooling patterns (mean = Σ_spatial x / (H·W), std = sqrt(mean((x − mean)²)))


@dataclass
class _Shape:
    tensor: str


@dataclass
class _Size:
    tensor: str
    dims: frozenset


@dataclass
class _Tuple:
    items: list


@dataclass
class _Reduce:
    """``kind`` 'sum' (Σ over ``dims`` of x), 'centered' (x − mean x), 'sq' ((x − mean x)²),
    'sqsum' (Σ (x − mean x)²), 'var' (mean (x − mean x)²), 'mean' (mean x, not yet an op)."""

    kind: str
    tensor: str
    dims: frozenset
    fx: str
    materialized: str | None = None


_SPATIAL = frozenset({2, 3})


def _lower(gm: fx.GraphModule, rgb_range: float, in_channels: int) -> CapturedGraph:
    nodes: list[LNode] = []
    env: dict[str, Any] = {}
    used_names: set[str] = set()
    channels: dict[str, int] = {}
    is_global: dict[str, bool] = {}
    producers: dict[str, LNode] = {}
    fx_nodes = {n.name: n for n in gm.graph.nodes}
    image_seen = False

    def unique(base: str) -> str:
        name, k = base, 0
        while name in used_names or name in (INPUT_TENSOR, OUTPUT_TENSOR):
            k += 1
            name = f"{base}_{k}"
        used_names.add(name)
        return name

    def func_name(node: fx.Node, base: str) -> str:
        path, _ = scope(node)
        return unique(f"{path}.{base}" if path else base)

    def emit(n: LNode) -> None:
        nodes.append(n)
        for t in n.outputs:
            producers[t] = n
            is_global[t] = n.is_global
        channels[n.output] = n.channels
        if n.op == "split":
            for t, c in zip(n.extra_outputs, n.attrs["sizes"][1:]):
                channels[t] = c

    def fail(node: fx.Node, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"cannot export {describe(node, gm)} at {place(node, gm)}: {why}. Supported: {SUPPORTED}"
        )

    def stream_of(node: fx.Node, arg: Any) -> str:
        """The stream tensor carrying ``arg``; materialises image_in / a pending mean."""
        if not isinstance(arg, fx.Node):
            raise fail(node, f"operand {arg!r} is a constant, not a tensor")
        v = env.get(arg.name)
        if isinstance(v, _Stream):
            return v.tensor
        if isinstance(v, _Image):
            if v.materialized is None:
                name = unique("image_in")
                emit(LNode(name, "image_in", (INPUT_TENSOR,), f"{name}.out", arg.name, len(v.a),
                           attrs={"a": [float(x) for x in v.a], "b": [float(x) for x in v.b],
                                  "folded": list(v.folded)},
                           place="model input" + (f" (folded {', '.join(v.folded)})" if v.folded else "")))
                v.materialized = f"{name}.out"
            return v.materialized
        if isinstance(v, _Reduce) and v.kind == "mean":
            if v.materialized is None:
                src = fx_nodes[v.fx]
                name = func_name(src, "mean_pool")
                emit(LNode(name, "mean_pool", (v.tensor,), f"{name}.out", v.fx, channels[v.tensor],
                           place=place(src, gm), is_global=True))
                v.materialized = f"{name}.out"
            return v.materialized
        if isinstance(v, _AffineStream):
            raise fail(node, f"its operand is the output of MeanShift {', '.join(v.folded)}, which can only be "
                             f"folded into the output conversion (it must be the model's last op)")
        if isinstance(v, _Reduce):
            raise fail(node, f"its operand is an intermediate '{v.kind}' of a spatial reduction over dims "
                             f"{sorted(v.dims)}; only a global mean or population std over H×W lowers "
                             f"(mean_pool, std_pool)")
        raise fail(node, f"operand {arg} is not an image tensor ({type(v).__name__})")

    def scalar(x: Any) -> float | None:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return float(x)
        return None

    def ch_dim(node: fx.Node, d: Any) -> None:
        if d not in (1, -3):
            raise fail(node, f"only the channel dimension (1) is supported, got dim={d!r}")

    def dims_of(node: fx.Node, d: Any) -> frozenset:
        ds = d if isinstance(d, (tuple, list)) else (d,)
        out = set()
        for x in ds:
            if not isinstance(x, int):
                raise fail(node, f"reduction dims must be constant integers, got {d!r}")
            out.add(x + 4 if x < 0 else x)
        return frozenset(out)

    def simple(op: str, node: fx.Node, x: str, base: str, module: str | None = None, attrs: dict | None = None,
               out_channels: int | None = None) -> None:
        name = unique(module) if module else func_name(node, base)
        emit(LNode(name, op, (x,), f"{name}.out", node.name, channels[x] if out_channels is None else out_channels,
                   module=module, attrs=attrs or {}, place=place(node, gm), is_global=is_global[x]))
        env[node.name] = _Stream(f"{name}.out")

    def emit_split(node: fx.Node, x: str, sizes: list[int], base: str = "split") -> list[str]:
        """A split op over channels; returns its output tensors (all sizes > 0)."""
        name = func_name(node, base)
        outs = [f"{name}.out{i}" for i in range(len(sizes))]
        fxs = [""] * len(sizes)
        for u in node.users:
            if u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int):
                i = u.args[1] % len(sizes)
                fxs[i] = u.name
        emit(LNode(name, "split", (x,), outs[0], fxs[0], sizes[0], attrs={"sizes": list(sizes)},
                   place=place(node, gm), extra_outputs=tuple(outs[1:]), extra_fx=tuple(fxs[1:]),
                   is_global=is_global[x]))
        return outs

    def conv_node(node: fx.Node, mod: nn.Module, target: str, op: str) -> None:
        x = stream_of(node, node.args[0])
        if mod.padding_mode not in ("zeros", "reflect", "replicate") or \
                (op == "conv_transpose2d" and mod.padding_mode != "zeros"):
            raise fail(node, f"padding_mode {mod.padding_mode!r} (zeros, reflect and replicate lower; §5.8)")
        if isinstance(mod.padding, str):
            raise fail(node, f"string padding {mod.padding!r}; use explicit integers")
        if mod.in_channels != channels[x]:
            raise fail(node, f"conv expects {mod.in_channels} input channels, the graph gives {channels[x]}")
        attrs = {"kernel": list(mod.kernel_size), "stride": list(mod.stride), "padding": list(mod.padding),
                 "dilation": list(mod.dilation), "groups": int(mod.groups), "post_scale": 1.0,
                 "padding_mode": str(mod.padding_mode)}
        if op == "conv_transpose2d":
            if mod.groups != 1 or tuple(mod.dilation) != (1, 1):
                raise fail(node, "transposed conv needs groups = 1 and dilation 1 (arithmetic.md §5.5)")
            if len(node.args) > 1 or node.kwargs.get("output_size") is not None:
                raise fail(node, "an explicit output_size is not supported")
            attrs["output_padding"] = list(mod.output_padding)
        name = unique(target)
        emit(LNode(name, op, (x,), f"{name}.out", node.name, mod.out_channels, module=target, attrs=attrs,
                   place=place(node, gm), call_node=node.name, is_global=is_global[x]))
        env[node.name] = _Stream(f"{name}.out")

    def upsample(node: fx.Node, x: str, factor: Any, mode: str, align: Any, base: str,
                 module: str | None = None) -> None:
        if mode not in ("nearest", "bilinear", "bicubic"):
            raise fail(node, f"interpolation mode {mode!r} (only 'nearest', 'bilinear' and 'bicubic' lower)")
        if mode in ("bilinear", "bicubic") and align:
            raise fail(node, f"{mode} upsampling with align_corners=True (only align_corners=False lowers, "
                             f"§6.10, §6.18)")
        f = factor[0] if isinstance(factor, (tuple, list)) and len(set(factor)) == 1 else factor
        if scalar(f) is None or float(f) != int(f) or int(f) < 1:
            raise fail(node, f"the upsampling factor must be one constant positive integer, got {factor!r}")
        simple("upsample_" + mode, node, x, base, module, {"factor": int(f)})

    def clamp_node(node: fx.Node, x: str, lo: float | None, hi: float | None, module: str | None = None,
                   base: str = "clamp") -> None:
        if lo is None and hi is None:
            raise fail(node, "a clamp needs a lower or an upper bound")
        if lo is not None and hi is not None and lo > hi:
            raise fail(node, f"clamp bounds min {lo} > max {hi}")
        simple("clamp", node, x, base, module, {"lo": lo, "hi": hi})

    def pool_mean(node: fx.Node, x: str) -> None:
        env[node.name] = _Reduce("mean", x, _SPATIAL, node.name)

    def pool_std(node: fx.Node, x: str) -> None:
        name = func_name(node, "std_pool")
        emit(LNode(name, "std_pool", (x,), f"{name}.out", node.name, channels[x], place=place(node, gm),
                   is_global=True))
        env[node.name] = _Stream(f"{name}.out")

    def check_keepdim(node: fx.Node, keepdim: Any) -> None:
        if keepdim is not True:
            raise fail(node, "spatial reductions must keep their dims (keepdim=True) to stay N×C×1×1")

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if image_seen:
                if node.users and not all(u.op == "call_function" and u.target in _IGNORED_FN for u in node.users):
                    raise fail(node, "the model must take exactly one image input (fix other forward arguments "
                                     "with concrete_args)")
                env[node.name] = None
                continue
            image_seen = True
            a = np.full(in_channels, rgb_range / 255.0)
            env[node.name] = _Image(a, np.zeros(in_channels), ())
            continue

        if node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node):
                raise fail(node, "the model must return exactly one tensor (no tuples/dicts)")
            v = env[arg.name]
            k = 255.0 / rgb_range
            if isinstance(v, _AffineStream):
                src, a, b, folded = v.tensor, v.a * k, v.b * k, v.folded
            else:
                src = stream_of(node, arg)
                c = channels[src]
                a, b, folded = np.full(c, k), np.zeros(c), ()
            if channels[src] != in_channels:
                raise fail(node, f"the output has {channels[src]} channels, the input image {in_channels}")
            emit(LNode(unique("image_out"), "image_out", (src,), OUTPUT_TENSOR, node.name, len(a),
                       attrs={"a": [float(x) for x in a], "b": [float(x) for x in b], "folded": list(folded)},
                       place="model output" + (f" (folded {', '.join(folded)})" if folded else "")))
            continue

        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            target = str(node.target)
            if isinstance(mod, (nn.Identity, nn.Dropout)):
                env[node.name] = env[node.args[0].name]
                continue
            if is_mean_shift(mod):
                a, b = mean_shift_affine(mod, place(node, gm))
                src = env[node.args[0].name] if isinstance(node.args[0], fx.Node) else None
                if isinstance(src, _Image) and src.materialized is None:
                    env[node.name] = _Image(a * src.a, a * src.b + b, src.folded + (target,))
                elif isinstance(src, _Stream):
                    env[node.name] = _AffineStream(src.tensor, a, b, (target,), place(node, gm))
                elif isinstance(src, _AffineStream):
                    env[node.name] = _AffineStream(src.tensor, a * src.a, a * src.b + b, src.folded + (target,),
                                                   src.place)
                else:
                    raise fail(node, "a MeanShift must act on the model input or produce the model output")
                continue
            if type(mod) is nn.Conv2d:
                conv_node(node, mod, target, "conv2d")
                continue
            if type(mod) is nn.ConvTranspose2d:
                conv_node(node, mod, target, "conv_transpose2d")
                continue
            if type(mod) is nn.ReLU:
                simple("relu", node, stream_of(node, node.args[0]), "relu", target)
                continue
            if type(mod) is nn.LeakyReLU:
                simple("leaky_relu", node, stream_of(node, node.args[0]), "leaky_relu", target,
                       {"slope": float(mod.negative_slope)})
                continue
            if type(mod) is nn.PReLU:
                x = stream_of(node, node.args[0])
                w = [float(v) for v in mod.weight.detach().double().cpu().reshape(-1)]
                if len(w) == 1:
                    w = w * channels[x]
                if len(w) != channels[x]:
                    raise fail(node, f"{len(w)} PReLU slopes for {channels[x]} channels")
                simple("prelu", node, x, "prelu", target, {"slope": w})
                continue
            if type(mod) in (nn.ReLU6, nn.Hardtanh):
                clamp_node(node, stream_of(node, node.args[0]), float(mod.min_val), float(mod.max_val), target)
                continue
            if type(mod) in _LUT_MODULES:
                if getattr(mod, "approximate", "none") != "none":
                    raise fail(node, f"GELU approximate={mod.approximate!r} (only the exact erf form lowers)")
                fn = _LUT_MODULES[type(mod)]
                simple("lut", node, stream_of(node, node.args[0]), fn, target, {"fn": fn})
                continue
            if type(mod) is nn.PixelShuffle:
                x = stream_of(node, node.args[0])
                r = int(mod.upscale_factor)
                if channels[x] % (r * r):
                    raise fail(node, f"{channels[x]} channels are not divisible by {r}²")
                simple("pixel_shuffle", node, x, "pixel_shuffle", target, {"factor": r}, channels[x] // (r * r))
                continue
            if type(mod) in (nn.Upsample, nn.UpsamplingNearest2d):
                if mod.size is not None:
                    raise fail(node, "upsampling to a fixed size is not supported (use scale_factor)")
                upsample(node, stream_of(node, node.args[0]), mod.scale_factor, mod.mode, mod.align_corners,
                         "upsample", target)
                continue
            if type(mod) is nn.AdaptiveAvgPool2d:
                o = mod.output_size
                if o not in (1, (1, 1), [1, 1]):
                    raise fail(node, f"adaptive average pooling to {o!r} (only global pooling to 1×1 lowers)")
                pool_mean(node, stream_of(node, node.args[0]))
                continue
            raise fail(node, "no lowering for this module type")

        if node.op in ("call_function", "call_method"):
            t = node.target
            is_fn = node.op == "call_function"
            args = list(node.args)
            kwargs = dict(node.kwargs)
            if is_fn and t in _IGNORED_FN:
                continue
            # --- shapes and sizes (for mean = sum / (H·W))
            if (is_fn and t is getattr and len(args) == 2 and args[1] == "shape") or \
                    (not is_fn and t == "size" and len(args) == 1 and not kwargs):
                env[node.name] = _Shape(stream_of(node, args[0]))
                continue
            if not is_fn and t == "size":
                d = args[1] if len(args) > 1 else kwargs.get("dim")
                env[node.name] = _Size(stream_of(node, args[0]), dims_of(node, d))
                continue
            a0 = env.get(args[0].name) if args and isinstance(args[0], fx.Node) else None
            if is_fn and t is operator.getitem:
                idx = args[1]
                if isinstance(a0, _Shape):
                    env[node.name] = _Size(a0.tensor, dims_of(node, idx))
                    continue
                if isinstance(a0, _Tuple):
                    if not isinstance(idx, int):
                        raise fail(node, f"only constant integer indices into a split result, got {idx!r}")
                    env[node.name] = _Stream(a0.items[idx])
                    continue
                x = stream_of(node, args[0])
                idx = idx if isinstance(idx, tuple) else (idx,)
                if len(idx) < 2 or not (isinstance(idx[0], slice) and idx[0] == slice(None)) or \
                        any(not (isinstance(i, slice) and i == slice(None)) and i is not Ellipsis for i in idx[2:]) \
                        or not isinstance(idx[1], slice) or idx[1].step not in (None, 1):
                    raise fail(node, f"only channel slicing x[:, a:b] lowers (to split), got index {args[1]!r}")
                c = channels[x]
                lo, hi, _ = idx[1].indices(c)
                if hi <= lo:
                    raise fail(node, "empty channel slice")
                if lo == 0 and hi == c:
                    env[node.name] = _Stream(x)
                    continue
                sizes = [s for s in (lo, hi - lo, c - hi) if s > 0]
                outs = emit_split(node, x, sizes, "slice")
                env[node.name] = _Stream(outs[0] if lo == 0 else outs[1])
                prod = producers[env[node.name].tensor]
                # the slice node itself carries this output's value (for calibration taps)
                i = prod.outputs.index(env[node.name].tensor)
                if i == 0:
                    prod.fx_node = node.name
                else:
                    fxs = list(prod.extra_fx)
                    fxs[i - 1] = node.name
                    prod.extra_fx = tuple(fxs)
                continue
            if isinstance(a0, (_Size, _Shape)) or any(isinstance(env.get(x.name), (_Size, _Shape))
                                                     for x in args[1:2] if isinstance(x, fx.Node)):
                a1 = env.get(args[1].name) if len(args) > 1 and isinstance(args[1], fx.Node) else None
                if is_fn and t in _MUL and isinstance(a0, _Size) and isinstance(a1, _Size) and a0.tensor == a1.tensor:
                    env[node.name] = _Size(a0.tensor, a0.dims | a1.dims)
                    continue
                if is_fn and t in _DIV and isinstance(a0, _Reduce) and isinstance(a1, _Size):
                    pass  # handled below
                else:
                    raise fail(node, "arithmetic on tensor sizes lowers only as H·W in a global mean")
            # --- spatial reductions (mean / std patterns)
            if (not is_fn and t == "sum") or (is_fn and t is torch.sum):
                d = args[1] if len(args) > 1 else kwargs.get("dim")
                check_keepdim(node, args[2] if len(args) > 2 else kwargs.get("keepdim", False))
                dims = dims_of(node, d)
                if not dims <= _SPATIAL:
                    raise fail(node, f"only sums over the spatial dims (2, 3) lower, got {sorted(dims)}")
                if isinstance(a0, _Reduce) and a0.kind in ("sum", "sq", "sqsum") and a0.kind != "mean":
                    kind = "sqsum" if a0.kind in ("sq", "sqsum") else "sum"
                    if a0.kind in ("sum", "sqsum") and dims & a0.dims:
                        raise fail(node, "summing a dim twice")
                    env[node.name] = _Reduce(kind, a0.tensor, (a0.dims if a0.kind != "sq" else frozenset()) | dims,
                                             node.name)
                else:
                    env[node.name] = _Reduce("sum", stream_of(node, args[0]), dims, node.name)
                continue
            if (not is_fn and t == "mean") or (is_fn and t in _MEAN_FN):
                d = args[1] if len(args) > 1 else kwargs.get("dim")
                check_keepdim(node, args[2] if len(args) > 2 else kwargs.get("keepdim", False))
                if dims_of(node, d) != _SPATIAL:
                    raise fail(node, "only a mean over both spatial dims (2, 3) lowers (mean_pool)")
                if isinstance(a0, _Reduce) and a0.kind == "sq":
                    env[node.name] = _Reduce("var", a0.tensor, _SPATIAL, node.name)
                else:
                    pool_mean(node, stream_of(node, args[0]))
                continue
            if (not is_fn and t == "std") or (is_fn and t in _STD_FN):
                d = args[1] if len(args) > 1 else kwargs.get("dim")
                unbiased = kwargs.get("unbiased", None)
                corr = kwargs.get("correction", None)
                if not ((unbiased is False) or corr == 0):
                    raise fail(node, "only the population std (unbiased=False / correction=0) lowers (std_pool)")
                check_keepdim(node, kwargs.get("keepdim", False))
                if dims_of(node, d) != _SPATIAL:
                    raise fail(node, "only a std over both spatial dims (2, 3) lowers (std_pool)")
                pool_std(node, stream_of(node, args[0]))
                continue
            if is_fn and t in _AAP_FN:
                o = args[1] if len(args) > 1 else kwargs.get("output_size")
                if o not in (1, (1, 1), [1, 1]):
                    raise fail(node, f"adaptive average pooling to {o!r} (only global pooling to 1×1 lowers)")
                pool_mean(node, stream_of(node, args[0]))
                continue
            if (is_fn and t in _POW) or (not is_fn and t in ("pow", "pow_")) or \
                    (is_fn and t in _SQRT_FN) or (not is_fn and t in ("sqrt", "sqrt_")):
                e = 0.5 if (t in _SQRT_FN or t in ("sqrt", "sqrt_")) else scalar(args[1] if len(args) > 1
                                                                                else kwargs.get("exponent"))
                if isinstance(a0, _Reduce) and a0.kind == "centered" and e == 2:
                    env[node.name] = _Reduce("sq", a0.tensor, frozenset(), node.name)
                    continue
                if isinstance(a0, _Reduce) and a0.kind == "var" and e == 0.5:
                    pool_std(node, a0.tensor)
                    continue
                raise fail(node, "powers lower only inside a population std over H×W "
                                 "(sqrt(mean((x − mean x)²)) → std_pool)")
            if (is_fn and t in _SUB) or (not is_fn and t in ("sub", "sub_")):
                a1 = env.get(args[1].name) if len(args) > 1 and isinstance(args[1], fx.Node) else None
                if isinstance(a1, _Reduce) and a1.kind == "mean" and isinstance(a0, _Stream) and \
                        a0.tensor == a1.tensor and not kwargs:
                    env[node.name] = _Reduce("centered", a0.tensor, frozenset(), node.name)
                    continue
                raise fail(node, "subtraction lowers only as x − mean(x) inside a std")
            if (is_fn and t in _DIV) or (not is_fn and t in ("div", "div_")):
                a1 = env.get(args[1].name) if len(args) > 1 and isinstance(args[1], fx.Node) else None
                if isinstance(a0, _Reduce) and a0.kind in ("sum", "sqsum"):
                    ok = isinstance(a1, _Size) and a1.tensor == a0.tensor and a1.dims == _SPATIAL
                    if a0.dims != _SPATIAL or not ok:
                        raise fail(node, "a spatial sum lowers only divided by H·W of the same tensor (a mean)")
                    if a0.kind == "sum":
                        pool_mean(node, a0.tensor)
                    else:
                        env[node.name] = _Reduce("var", a0.tensor, _SPATIAL, node.name)
                    continue
            if isinstance(a0, _Reduce) and a0.kind != "mean":
                raise fail(node, f"the intermediate '{a0.kind}' of a spatial reduction is used by another "
                                 f"operation; only mean_pool / std_pool patterns lower")
            # --- ordinary ops
            kind = None
            if (is_fn and t in _ADD) or (not is_fn and t in ("add", "add_")):
                kind = "add"
            elif (is_fn and t in _MUL) or (not is_fn and t in ("mul", "mul_")):
                kind = "mul"
            elif (is_fn and t in _DIV) or (not is_fn and t in ("div", "div_")):
                kind = "div"
            elif (is_fn and t in _RELU_FN) or (not is_fn and t in ("relu", "relu_")):
                kind = "relu"
            elif (is_fn and t in _LRELU_FN):
                kind = "leaky_relu"
            elif (is_fn and t in _LUT_FN) or (not is_fn and t in _LUT_METHODS):
                kind = "lut"
            elif (is_fn and t in _CLAMP_FN) or (not is_fn and t in _CLAMP_METHODS):
                kind = "clamp"
            elif is_fn and t in _PS_FN:
                kind = "pixel_shuffle"
            elif is_fn and t in _CAT_FN:
                kind = "concat"
            elif (is_fn and t in (torch.split, torch.chunk)) or (not is_fn and t in ("split", "chunk")):
                kind = "split"
            elif is_fn and t in _INTERP_FN:
                kind = "interpolate"
            if kind is None:
                raise fail(node, "no lowering for this operation")
            if kind == "add":
                if kwargs.pop("alpha", 1) != 1 or kwargs or len(args) != 2:
                    raise fail(node, "only a plain two-tensor add is supported")
                if any(scalar(a) is not None for a in args):
                    raise fail(node, "adding a constant is not supported")
                xa, xb = stream_of(node, args[0]), stream_of(node, args[1])
                if channels[xa] != channels[xb]:
                    raise fail(node, f"channel mismatch {channels[xa]} vs {channels[xb]}")
                if is_global[xa] != is_global[xb]:
                    raise fail(node, "adding a 1×1 (global) tensor to a full-size one (no broadcasting)")
                name = func_name(node, "add")
                emit(LNode(name, "add", (xa, xb), f"{name}.out", node.name, channels[xa], place=place(node, gm),
                           is_global=is_global[xa]))
                env[node.name] = _Stream(f"{name}.out")
            elif kind == "mul" and len(args) == 2 and not kwargs and all(isinstance(a, fx.Node) for a in args):
                a1 = env.get(args[1].name)
                if isinstance(a0, _Reduce) and a0.kind == "centered" and isinstance(a1, _Reduce) and \
                        a1.kind == "centered" and a0.tensor == a1.tensor:
                    env[node.name] = _Reduce("sq", a0.tensor, frozenset(), node.name)
                    continue
                xa, xb = stream_of(node, args[0]), stream_of(node, args[1])
                if is_global[xa] and not is_global[xb]:
                    xa, xb = xb, xa
                if is_global[xa] or not is_global[xb]:
                    raise fail(node, "tensor × tensor lowers only as a full-size tensor times a 1×1 (global) "
                                     "per-channel gate (mul)")
                if channels[xa] != channels[xb]:
                    raise fail(node, f"channel mismatch {channels[xa]} vs {channels[xb]}")
                name = func_name(node, "mul")
                emit(LNode(name, "mul", (xa, xb), f"{name}.out", node.name, channels[xa], place=place(node, gm)))
                env[node.name] = _Stream(f"{name}.out")
            elif kind in ("mul", "div"):
                if kwargs or len(args) != 2:
                    raise fail(node, "only tensor × constant is supported")
                consts = [scalar(a) for a in args]
                if kind == "div":
                    if consts[1] is None or consts[0] is not None:
                        raise fail(node, "only tensor ÷ constant is supported")
                    if consts[1] == 0:
                        raise fail(node, "division by zero")
                    c, tnode = 1.0 / consts[1], args[0]
                else:
                    if (consts[0] is None) == (consts[1] is None):
                        raise fail(node, "only tensor × constant is supported")
                    c, tnode = (consts[1], args[0]) if consts[1] is not None else (consts[0], args[1])
                x = stream_of(node, tnode)
                if c != 1.0:
                    prod = producers.get(x)
                    if prod is None or prod.op not in CONV_OPS or len(fx_nodes[prod.fx_node].users) != 1:
                        raise fail(node, f"a constant factor {c} can only be folded into a conv whose output "
                                         f"has no other user")
                    prod.attrs["post_scale"] *= c
                    prod.fx_node = node.name  # the stream tensor now carries the scaled value
                env[node.name] = _Stream(x)
            elif kind == "relu":
                simple("relu", node, stream_of(node, args[0]), "relu")  # ``inplace`` changes nothing here
            elif kind == "leaky_relu":
                slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
                if scalar(slope) is None:
                    raise fail(node, "the negative slope must be a constant")
                simple("leaky_relu", node, stream_of(node, args[0]), "leaky_relu", attrs={"slope": float(slope)})
            elif kind == "lut":
                fn = _LUT_FN[t] if is_fn else _LUT_METHODS[t]
                if fn == "gelu" and kwargs.get("approximate", "none") != "none":
                    raise fail(node, f"GELU approximate={kwargs['approximate']!r} (only the exact erf form lowers)")
                simple("lut", node, stream_of(node, args[0]), fn, attrs={"fn": fn})
            elif kind == "clamp":
                if is_fn and t is F.relu6:
                    lo, hi = 0.0, 6.0
                elif is_fn and t in (F.hardtanh, torch._C._nn.hardtanh_):
                    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
                    hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
                else:
                    lo = args[1] if len(args) > 1 else kwargs.get("min")
                    hi = args[2] if len(args) > 2 else kwargs.get("max")
                for v in (lo, hi):
                    if v is not None and scalar(v) is None:
                        raise fail(node, f"clamp bounds must be constants, got {v!r}")
                clamp_node(node, stream_of(node, args[0]), scalar(lo) if lo is not None else None,
                           scalar(hi) if hi is not None else None, base=str(getattr(t, "__name__", t)).rstrip("_"))
            elif kind == "pixel_shuffle":
                r = args[1] if len(args) > 1 else kwargs.get("upscale_factor")
                if not isinstance(r, int):
                    raise fail(node, "the shuffle factor must be a constant integer")
                x = stream_of(node, args[0])
                if channels[x] % (r * r):
                    raise fail(node, f"{channels[x]} channels are not divisible by {r}²")
                simple("pixel_shuffle", node, x, "pixel_shuffle", attrs={"factor": r},
                       out_channels=channels[x] // (r * r))
            elif kind == "concat":
                seq = args[0] if args else kwargs.get("tensors")
                ch_dim(node, args[1] if len(args) > 1 else kwargs.get("dim", 0))
                if not isinstance(seq, (list, tuple)) or not seq:
                    raise fail(node, "concat needs a constant list of tensors")
                xs = [stream_of(node, a) for a in seq]
                if len({is_global[x] for x in xs}) != 1:
                    raise fail(node, "concat mixes 1×1 (global) and full-size tensors")
                if len(xs) == 1:
                    env[node.name] = _Stream(xs[0])
                    continue
                name = func_name(node, "cat")
                emit(LNode(name, "concat", tuple(xs), f"{name}.out", node.name, sum(channels[x] for x in xs),
                           place=place(node, gm), is_global=is_global[xs[0]]))
                env[node.name] = _Stream(f"{name}.out")
            elif kind == "split":
                x = stream_of(node, args[0])
                c = channels[x]
                is_chunk = t in ("chunk",) or t is torch.chunk
                spec = args[1] if len(args) > 1 else kwargs.get("chunks" if is_chunk else "split_size_or_sections",
                                                               kwargs.get("split_size"))
                ch_dim(node, args[2] if len(args) > 2 else kwargs.get("dim", 0))
                if is_chunk:
                    if not isinstance(spec, int) or spec < 1:
                        raise fail(node, f"chunks must be a constant positive integer, got {spec!r}")
                    step = -(-c // spec)
                    sizes = [min(step, c - i) for i in range(0, c, step)]
                elif isinstance(spec, int):
                    sizes = [min(spec, c - i) for i in range(0, c, spec)]
                elif isinstance(spec, (list, tuple)) and all(isinstance(v, int) for v in spec):
                    sizes = list(spec)
                else:
                    raise fail(node, f"split sizes must be constant integers, got {spec!r}")
                if sum(sizes) != c or any(s <= 0 for s in sizes):
                    raise fail(node, f"split sizes {sizes} do not partition {c} channels")
                if len(sizes) == 1:
                    env[node.name] = _Tuple([x])
                    continue
                env[node.name] = _Tuple(emit_split(node, x, sizes))
            elif kind == "interpolate":
                size = args[1] if len(args) > 1 else kwargs.get("size")
                if size is not None:
                    raise fail(node, "interpolation to a fixed size is not supported (use scale_factor)")
                factor = args[2] if len(args) > 2 else kwargs.get("scale_factor")
                mode = args[3] if len(args) > 3 else kwargs.get("mode", "nearest")
                upsample(node, stream_of(node, args[0]), factor, mode, kwargs.get("align_corners"), "upsample")
            continue

        if node.op == "get_attr":
            raise fail(node, "constant tensors (parameters used outside a module call) are not supported")
        raise fail(node, "no lowering for this node")

    if not nodes or nodes[-1].op != "image_out":
        raise UnsupportedOpError("the traced model has no output")
    return CapturedGraph(gm, nodes, rgb_range, in_channels)
