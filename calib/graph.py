"""Dataflow capture (torch.fx) and lowering to artifact-level ops.

:func:`capture` symbolically traces a float model and lowers the fx graph to a
list of :class:`LNode` — the ops of an intsim artifact (docs/artifact.md)
*before* quantization: ``image_in``, ``conv2d``, ``relu``, ``add``,
``pixel_shuffle``, ``image_out``. Export (calib/export.py) later inserts one
``encode`` op in front of every conv and snaps everything to integers.

Lowering rules (design.md §2):

* the model input (a float image in [0, rgb_range]) becomes ``image_in`` with
  the per-channel affine ``v = a·P + b`` of the uint8 pixel P
  (``a = rgb_range/255``); a ``MeanShift`` applied to it is folded into that
  affine (arithmetic.md §6.1);
* a ``MeanShift`` applied to the value the model returns is folded into
  ``image_out``: pixel = (W·x + bias)·255/rgb_range (§6.2);
* multiplication by a constant: by 1 it is removed (EDSR's ``res_scale = 1``);
  by c ≠ 1 it is folded into the conv producing its operand (the conv's real
  weights and bias are scaled by c at export), provided that conv output has
  no other user;
* ``nn.Identity`` / ``nn.Dropout`` are removed;
* anything else raises :class:`UnsupportedOpError` naming the fx node, the op
  and its place in the model (module path and source line).

Leaves of the trace are torch's standard ``torch.nn`` leaves plus any module
whose class is named ``MeanShift`` (so it is folded as one affine, not traced
into ``F.conv2d``), plus ``extra_leaves``.

Tensor names: ``input`` (uint8 image), ``image_in.out``, ``<op>.out`` for every
other op, ``output`` (uint8 image). Op names are module paths for module calls
(``body.0.body.0``) and ``<enclosing module path>.<function>`` for functions
(``body.0.add``; ``add`` at top level), made unique with ``_1``, ``_2``.
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

SUPPORTED = (
    "conv2d (nn.Conv2d, zero padding), add (two tensors), relu, pixel_shuffle, "
    "MeanShift (folded into image_in/image_out), multiplication/division by a constant "
    "(removed if 1, else folded into the producing conv), nn.Identity/nn.Dropout (removed)"
)

_TORCH_DIR = os.path.dirname(torch.__file__)

INPUT_TENSOR = "input"
OUTPUT_TENSOR = "output"


class UnsupportedOpError(ValueError):
    """The model contains an operation the engine cannot run (raised at export/capture time)."""


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


@dataclass
class CapturedGraph:
    """A traced model lowered to :class:`LNode` ops in topological order."""

    gm: fx.GraphModule
    nodes: list[LNode]
    rgb_range: float
    in_channels: int

    def node(self, name: str) -> LNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def producer(self, tensor: str) -> LNode | None:
        for n in self.nodes:
            if n.output == tensor:
                return n
        return None

    def consumers(self, tensor: str) -> list[LNode]:
        return [n for n in self.nodes if tensor in n.inputs]

    def convs(self) -> list[LNode]:
        return [n for n in self.nodes if n.op == "conv2d"]

    def stream_tensors(self) -> dict[str, str]:
        """Stream tensor name → fx node whose value it carries (every op output except ``output``)."""
        return {n.output: n.fx_node for n in self.nodes if n.op != "image_out"}

    def conv_roles(self) -> dict[str, str]:
        """Role of each conv for the layer policy (design.md §7).

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
        by_module = {n.module: conv_input_taps[n.name] for n in self.convs() if n.name in conv_input_taps}
        by_node: dict[str, list[Callable]] = {}
        fx_of = self.stream_tensors()
        for t, cb in (tensor_taps or {}).items():
            by_node.setdefault(fx_of[t], []).append(cb)
        return _TapInterpreter(self.gm, by_module, by_node).run(x)


class _TapInterpreter(fx.Interpreter):
    def __init__(self, gm, module_taps, node_taps):
        super().__init__(gm)
        self.module_taps = module_taps
        self.node_taps = node_taps

    def call_module(self, target, args, kwargs):
        cb = self.module_taps.get(target)
        if cb is not None:
            cb(args[0])
        return super().call_module(target, args, kwargs)

    def run_node(self, n):
        out = super().run_node(n)
        for cb in self.node_taps.get(n.name, ()):
            cb(out)
        return out


# --------------------------------------------------------------------------
# tracing


def is_mean_shift(m: nn.Module) -> bool:
    return type(m).__name__ == "MeanShift"


class _Tracer(fx.Tracer):
    def __init__(self, extra_leaves: tuple[type, ...] = ()):
        super().__init__()
        self.record_stack_traces = True
        self.extra_leaves = extra_leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if is_mean_shift(m) or (self.extra_leaves and isinstance(m, self.extra_leaves)):
            return True
        return super().is_leaf_module(m, qualname)


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


def _scope(node: fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    key, val = list(stack.items())[-1]
    path = val[0] if isinstance(val, tuple) else key
    typ = val[1] if isinstance(val, tuple) else None
    tname = getattr(typ, "__name__", str(typ)) if typ is not None else ""
    return str(path), tname


def _place(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        where = f"module '{node.target}' ({type(mod).__name__})"
    else:
        path, tname = _scope(node)
        where = f"module '{path}' ({tname})" if path else "the model's top-level forward"
    src = ""
    if node.stack_trace:
        # The innermost frame outside torch itself is the model's source line.
        lines = [ln.strip() for ln in node.stack_trace.strip().splitlines() if ln.strip()]
        frames = [(ln, lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else "")
                  for i, ln in enumerate(lines) if ln.startswith("File ")]
        user = [f for f in frames if _TORCH_DIR not in f[0]]
        if user:
            head, code = user[-1]
            src = f"; {head}" + (f": {code}" if code else "")
    return f"fx node '{node.name}' in {where}{src}"


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} module"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__module__', '') or ''}.{getattr(node.target, '__name__', node.target)}".replace("None.", "")
    if node.op == "call_method":
        return f"tensor method .{node.target}()"
    if node.op == "get_attr":
        return f"constant tensor attribute '{node.target}'"
    return f"{node.op} {node.target}"


_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_DIV = {operator.truediv, operator.itruediv, torch.div}
_RELU_FN = {F.relu, torch.relu, torch.relu_}
_PS_FN = {F.pixel_shuffle, torch.pixel_shuffle}


def capture(model: nn.Module, *, rgb_range: float | None = None, in_channels: int | None = None,
            extra_leaves: tuple[type, ...] = ()) -> CapturedGraph:
    """Trace ``model`` (eval mode, float) and lower it to artifact-level ops.

    ``rgb_range``: the model's input range ([0, rgb_range] ↔ pixels 0..255);
    default ``model.rgb_range`` or 255. ``in_channels``: image channels;
    default ``model.n_colors`` or 3. Raises :class:`UnsupportedOpError` for
    anything the engine cannot run.
    """
    rgb_range = float(rgb_range if rgb_range is not None else getattr(model, "rgb_range", 255))
    in_channels = int(in_channels if in_channels is not None else getattr(model, "n_colors", 3))
    if rgb_range <= 0:
        raise ValueError(f"rgb_range must be positive, got {rgb_range}")
    tracer = _Tracer(tuple(extra_leaves))
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises TraceError, TypeError, ... for untraceable code
        msg = " ".join(str(e).split())
        raise UnsupportedOpError(f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {msg}); "
                                 f"data-dependent control flow or extra forward arguments are not supported "
                                 f"yet") from None
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    return _lower(gm, rgb_range, in_channels)


def _lower(gm: fx.GraphModule, rgb_range: float, in_channels: int) -> CapturedGraph:
    nodes: list[LNode] = []
    env: dict[str, Any] = {}
    used_names: set[str] = set()
    called_modules: set[str] = set()
    channels: dict[str, int] = {}
    producers: dict[str, LNode] = {}
    fx_nodes = {n.name: n for n in gm.graph.nodes}

    def unique(base: str) -> str:
        name, k = base, 0
        while name in used_names or name in (INPUT_TENSOR, OUTPUT_TENSOR):
            k += 1
            name = f"{base}_{k}"
        used_names.add(name)
        return name

    def func_name(node: fx.Node, base: str) -> str:
        path, _ = _scope(node)
        return unique(f"{path}.{base}" if path else base)

    def emit(n: LNode) -> None:
        nodes.append(n)
        channels[n.output] = n.channels
        producers[n.output] = n

    def fail(node: fx.Node, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"cannot export {_describe(node, gm)} at {_place(node, gm)}: {why}. Supported: {SUPPORTED}"
        )

    def stream_of(node: fx.Node, arg: Any) -> str:
        """The stream tensor carrying ``arg``; materialises image_in for a virtual image."""
        if not isinstance(arg, fx.Node):
            raise fail(node, f"operand {arg!r} is a constant, not a tensor")
        v = env[arg.name]
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
        if isinstance(v, _AffineStream):
            raise fail(node, f"its operand is the output of MeanShift {', '.join(v.folded)}, which can only be "
                             f"folded into the output conversion (it must be the model's last op)")
        raise fail(node, f"operand {arg} has no lowered value")

    def scalar(x: Any) -> float | None:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return float(x)
        return None

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if any(isinstance(v, _Image) for v in env.values()):
                raise fail(node, "the model must take exactly one image input")
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
                a, b = mean_shift_affine(mod, _place(node, gm))
                src = env[node.args[0].name] if isinstance(node.args[0], fx.Node) else None
                if isinstance(src, _Image) and src.materialized is None:
                    env[node.name] = _Image(a * src.a, a * src.b + b, src.folded + (target,))
                elif isinstance(src, _Stream):
                    env[node.name] = _AffineStream(src.tensor, a, b, (target,), _place(node, gm))
                elif isinstance(src, _AffineStream):
                    env[node.name] = _AffineStream(src.tensor, a * src.a, a * src.b + b, src.folded + (target,),
                                                   src.place)
                else:
                    raise fail(node, "a MeanShift must act on the model input or produce the model output")
                continue
            if target in called_modules:
                raise fail(node, "the module is called more than once (shared weights are not supported yet)")
            called_modules.add(target)
            if type(mod) is nn.Conv2d:
                x = stream_of(node, node.args[0])
                if mod.padding_mode != "zeros":
                    raise fail(node, f"padding_mode {mod.padding_mode!r} (only zero padding is supported)")
                if isinstance(mod.padding, str):
                    raise fail(node, f"string padding {mod.padding!r}; use explicit integers")
                if mod.in_channels != channels[x]:
                    raise fail(node, f"conv expects {mod.in_channels} input channels, the graph gives {channels[x]}")
                name = unique(target)
                emit(LNode(name, "conv2d", (x,), f"{name}.out", node.name, mod.out_channels, module=target,
                           attrs={"kernel": list(mod.kernel_size), "stride": list(mod.stride),
                                  "padding": list(mod.padding), "dilation": list(mod.dilation),
                                  "groups": int(mod.groups), "post_scale": 1.0},
                           place=_place(node, gm)))
                env[node.name] = _Stream(f"{name}.out")
                continue
            if type(mod) is nn.ReLU:
                x = stream_of(node, node.args[0])
                name = unique(target)
                emit(LNode(name, "relu", (x,), f"{name}.out", node.name, channels[x], module=target,
                           place=_place(node, gm)))
                env[node.name] = _Stream(f"{name}.out")
                continue
            if type(mod) is nn.PixelShuffle:
                x = stream_of(node, node.args[0])
                r = int(mod.upscale_factor)
                if channels[x] % (r * r):
                    raise fail(node, f"{channels[x]} channels are not divisible by {r}²")
                name = unique(target)
                emit(LNode(name, "pixel_shuffle", (x,), f"{name}.out", node.name, channels[x] // (r * r),
                           module=target, attrs={"factor": r}, place=_place(node, gm)))
                env[node.name] = _Stream(f"{name}.out")
                continue
            raise fail(node, "no lowering for this module type")

        if node.op in ("call_function", "call_method"):
            t = node.target
            is_fn = node.op == "call_function"
            kind = None
            if (is_fn and t in _ADD) or (not is_fn and t in ("add", "add_")):
                kind = "add"
            elif (is_fn and t in _MUL) or (not is_fn and t in ("mul", "mul_")):
                kind = "mul"
            elif (is_fn and t in _DIV) or (not is_fn and t in ("div", "div_")):
                kind = "div"
            elif (is_fn and t in _RELU_FN) or (not is_fn and t in ("relu", "relu_")):
                kind = "relu"
            elif (is_fn and t in _PS_FN):
                kind = "pixel_shuffle"
            if kind is None:
                raise fail(node, "no lowering for this operation")
            args = list(node.args)
            kwargs = dict(node.kwargs)
            if kind == "add":
                if kwargs.pop("alpha", 1) != 1 or kwargs or len(args) != 2:
                    raise fail(node, "only a plain two-tensor add is supported")
                if any(scalar(a) is not None for a in args):
                    raise fail(node, "adding a constant is not supported")
                xa, xb = stream_of(node, args[0]), stream_of(node, args[1])
                if channels[xa] != channels[xb]:
                    raise fail(node, f"channel mismatch {channels[xa]} vs {channels[xb]}")
                name = func_name(node, "add")
                emit(LNode(name, "add", (xa, xb), f"{name}.out", node.name, channels[xa], place=_place(node, gm)))
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
                        raise fail(node, "only tensor × constant is supported (tensor × tensor needs 'mul' with a 1×1 gate)")
                    c, tnode = (consts[1], args[0]) if consts[1] is not None else (consts[0], args[1])
                x = stream_of(node, tnode)
                if c != 1.0:
                    prod = producers.get(x)
                    if prod is None or prod.op != "conv2d" or len(fx_nodes[prod.fx_node].users) != 1:
                        raise fail(node, f"a constant factor {c} can only be folded into a conv whose output "
                                         f"has no other user")
                    prod.attrs["post_scale"] *= c
                    prod.fx_node = node.name  # the stream tensor now carries the scaled value
                env[node.name] = _Stream(x)
            elif kind == "relu":
                x = stream_of(node, args[0])  # an ``inplace`` flag changes nothing in a dataflow graph
                name = func_name(node, "relu")
                emit(LNode(name, "relu", (x,), f"{name}.out", node.name, channels[x], place=_place(node, gm)))
                env[node.name] = _Stream(f"{name}.out")
            elif kind == "pixel_shuffle":
                r = args[1] if len(args) > 1 else kwargs.get("upscale_factor")
                if not isinstance(r, int):
                    raise fail(node, "the shuffle factor must be a constant integer")
                x = stream_of(node, args[0])
                if channels[x] % (r * r):
                    raise fail(node, f"{channels[x]} channels are not divisible by {r}²")
                name = func_name(node, "pixel_shuffle")
                emit(LNode(name, "pixel_shuffle", (x,), f"{name}.out", node.name, channels[x] // (r * r),
                           attrs={"factor": r}, place=_place(node, gm)))
                env[node.name] = _Stream(f"{name}.out")
            continue

        raise fail(node, "no lowering for this node")

    if not nodes or nodes[-1].op != "image_out":
        raise UnsupportedOpError("the traced model has no output")
    return CapturedGraph(gm, nodes, rgb_range, in_channels)
