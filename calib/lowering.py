"""Lowering a traced fx graph to the engine's ops (:class:`~calib.captured.LNode`), node by
node in topological order (docs/arithmetic.md §6 for each op). Anything the engine cannot run
raises :class:`~calib.tracing.UnsupportedOpError` naming the node and the model's source line.
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from calib.captured import CONV_OPS, INPUT_TENSOR, OUTPUT_TENSOR, CapturedGraph, LNode
from calib.lowering_reductions import ReductionRules
from calib.lowering_values import (
    ADD,
    CAT_FN,
    CLAMP_FN,
    CLAMP_METHODS,
    DIV,
    IGNORED_FN,
    INTERP_FN,
    LRELU_FN,
    LUT_FN,
    LUT_METHODS,
    LUT_MODULES,
    MUL,
    PS_FN,
    RELU_FN,
    SPATIAL,
    AffineStream,
    Image,
    Reduce,
    Stream,
    Tuple,
    mean_shift_affine,
)
from calib.tracing import SUPPORTED, UnsupportedOpError, describe, is_mean_shift, place, scope


class _Lowering(ReductionRules):
    """One lowering pass over a traced graph: each fx node in topological order becomes
    :class:`LNode` ops, or a symbolic value in ``env`` (:mod:`calib.lowering_values`) until an op
    consumes it. One method per node kind and op family; the helpers emit and name ops."""

    def __init__(self, gm: fx.GraphModule, rgb_range: float, in_channels: int):
        self.gm = gm
        self.rgb_range = rgb_range
        self.in_channels = in_channels
        self.nodes: list[LNode] = []
        self.env: dict[str, Any] = {}
        self.used_names: set[str] = set()
        self.channels: dict[str, int] = {}
        self.is_global: dict[str, bool] = {}
        self.producers: dict[str, LNode] = {}
        self.fx_nodes = {n.name: n for n in self.gm.graph.nodes}
        self.image_seen = False

    def unique(self, base: str) -> str:
        name, k = base, 0
        while name in self.used_names or name in (INPUT_TENSOR, OUTPUT_TENSOR):
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        return name

    def func_name(self, node: fx.Node, base: str) -> str:
        path, _ = scope(node)
        return self.unique(f"{path}.{base}" if path else base)

    def emit(self, n: LNode) -> None:
        self.nodes.append(n)
        for t in n.outputs:
            self.producers[t] = n
            self.is_global[t] = n.is_global
        self.channels[n.output] = n.channels
        if n.op == "split":
            for t, c in zip(n.extra_outputs, n.attrs["sizes"][1:]):
                self.channels[t] = c

    def fail(self, node: fx.Node, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"cannot export {describe(node, self.gm)} at {place(node, self.gm)}: {why}. Supported: {SUPPORTED}"
        )

    def stream_of(self, node: fx.Node, arg: Any) -> str:
        """The stream tensor carrying ``arg``; materialises image_in / a pending mean."""
        if not isinstance(arg, fx.Node):
            raise self.fail(node, f"operand {arg!r} is a constant, not a tensor")
        v = self.env.get(arg.name)
        if isinstance(v, Stream):
            return v.tensor
        if isinstance(v, Image):
            if v.materialized is None:
                name = self.unique("image_in")
                self.emit(LNode(name, "image_in", (INPUT_TENSOR,), f"{name}.out", arg.name, len(v.a),
                           attrs={"a": [float(x) for x in v.a], "b": [float(x) for x in v.b],
                                  "folded": list(v.folded)},
                           place="model input" + (f" (folded {', '.join(v.folded)})" if v.folded else "")))
                v.materialized = f"{name}.out"
            return v.materialized
        if isinstance(v, Reduce) and v.kind == "mean":
            if v.materialized is None:
                src = self.fx_nodes[v.fx]
                name = self.func_name(src, "mean_pool")
                self.emit(LNode(name, "mean_pool", (v.tensor,), f"{name}.out", v.fx, self.channels[v.tensor],
                           place=place(src, self.gm), is_global=True))
                v.materialized = f"{name}.out"
            return v.materialized
        if isinstance(v, AffineStream):
            raise self.fail(node, f"its operand is the output of MeanShift {', '.join(v.folded)}, which can only be "
                             f"folded into the output conversion (it must be the model's last op)")
        if isinstance(v, Reduce):
            raise self.fail(node, f"its operand is an intermediate '{v.kind}' of a spatial reduction over dims "
                             f"{sorted(v.dims)}; only a global mean or population std over H×W lowers "
                             f"(mean_pool, std_pool)")
        raise self.fail(node, f"operand {arg} is not an image tensor ({type(v).__name__})")

    def scalar(self, x: Any) -> float | None:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return float(x)
        return None

    def ch_dim(self, node: fx.Node, d: Any) -> None:
        if d not in (1, -3):
            raise self.fail(node, f"only the channel dimension (1) is supported, got dim={d!r}")

    def dims_of(self, node: fx.Node, d: Any) -> frozenset:
        ds = d if isinstance(d, (tuple, list)) else (d,)
        out = set()
        for x in ds:
            if not isinstance(x, int):
                raise self.fail(node, f"reduction dims must be constant integers, got {d!r}")
            out.add(x + 4 if x < 0 else x)
        return frozenset(out)

    def simple(self, op: str, node: fx.Node, x: str, base: str, module: str | None = None, attrs: dict | None = None,
               out_channels: int | None = None) -> None:
        name = self.unique(module) if module else self.func_name(node, base)
        self.emit(LNode(name, op, (x,), f"{name}.out", node.name, self.channels[x] if out_channels is None else out_channels,
                   module=module, attrs=attrs or {}, place=place(node, self.gm), is_global=self.is_global[x]))
        self.env[node.name] = Stream(f"{name}.out")

    def emit_split(self, node: fx.Node, x: str, sizes: list[int], base: str = "split") -> list[str]:
        """A split op over channels; returns its output tensors (all sizes > 0)."""
        name = self.func_name(node, base)
        outs = [f"{name}.out{i}" for i in range(len(sizes))]
        fxs = [""] * len(sizes)
        for u in node.users:
            if u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int):
                i = u.args[1] % len(sizes)
                fxs[i] = u.name
        self.emit(LNode(name, "split", (x,), outs[0], fxs[0], sizes[0], attrs={"sizes": list(sizes)},
                   place=place(node, self.gm), extra_outputs=tuple(outs[1:]), extra_fx=tuple(fxs[1:]),
                   is_global=self.is_global[x]))
        return outs

    def conv_node(self, node: fx.Node, mod: nn.Module, target: str, op: str) -> None:
        x = self.stream_of(node, node.args[0])
        if mod.padding_mode not in ("zeros", "reflect", "replicate") or \
                (op == "conv_transpose2d" and mod.padding_mode != "zeros"):
            raise self.fail(node, f"padding_mode {mod.padding_mode!r} (zeros, reflect and replicate lower; §5.8)")
        if isinstance(mod.padding, str):
            raise self.fail(node, f"string padding {mod.padding!r}; use explicit integers")
        if mod.in_channels != self.channels[x]:
            raise self.fail(node, f"conv expects {mod.in_channels} input channels, the graph gives {self.channels[x]}")
        attrs = {"kernel": list(mod.kernel_size), "stride": list(mod.stride), "padding": list(mod.padding),
                 "dilation": list(mod.dilation), "groups": int(mod.groups), "post_scale": 1.0,
                 "padding_mode": str(mod.padding_mode)}
        if op == "conv_transpose2d":
            if mod.groups != 1 or tuple(mod.dilation) != (1, 1):
                raise self.fail(node, "transposed conv needs groups = 1 and dilation 1 (arithmetic.md §5.5)")
            if len(node.args) > 1 or node.kwargs.get("output_size") is not None:
                raise self.fail(node, "an explicit output_size is not supported")
            attrs["output_padding"] = list(mod.output_padding)
        name = self.unique(target)
        self.emit(LNode(name, op, (x,), f"{name}.out", node.name, mod.out_channels, module=target, attrs=attrs,
                   place=place(node, self.gm), call_node=node.name, is_global=self.is_global[x]))
        self.env[node.name] = Stream(f"{name}.out")

    def upsample(self, node: fx.Node, x: str, factor: Any, mode: str, align: Any, base: str,
                 module: str | None = None) -> None:
        if mode not in ("nearest", "bilinear", "bicubic"):
            raise self.fail(node, f"interpolation mode {mode!r} (only 'nearest', 'bilinear' and 'bicubic' lower)")
        if mode in ("bilinear", "bicubic") and align:
            raise self.fail(node, f"{mode} upsampling with align_corners=True (only align_corners=False lowers, "
                             f"§6.10, §6.18)")
        f = factor[0] if isinstance(factor, (tuple, list)) and len(set(factor)) == 1 else factor
        if self.scalar(f) is None or float(f) != int(f) or int(f) < 1:
            raise self.fail(node, f"the upsampling factor must be one constant positive integer, got {factor!r}")
        self.simple("upsample_" + mode, node, x, base, module, {"factor": int(f)})

    def clamp_node(self, node: fx.Node, x: str, lo: float | None, hi: float | None, module: str | None = None,
                   base: str = "clamp") -> None:
        if lo is None and hi is None:
            raise self.fail(node, "a clamp needs a lower or an upper bound")
        if lo is not None and hi is not None and lo > hi:
            raise self.fail(node, f"clamp bounds min {lo} > max {hi}")
        self.simple("clamp", node, x, base, module, {"lo": lo, "hi": hi})

    def pool_mean(self, node: fx.Node, x: str) -> None:
        self.env[node.name] = Reduce("mean", x, SPATIAL, node.name)

    def pool_std(self, node: fx.Node, x: str) -> None:
        name = self.func_name(node, "std_pool")
        self.emit(LNode(name, "std_pool", (x,), f"{name}.out", node.name, self.channels[x], place=place(node, self.gm),
                   is_global=True))
        self.env[node.name] = Stream(f"{name}.out")

    def check_keepdim(self, node: fx.Node, keepdim: Any) -> None:
        if keepdim is not True:
            raise self.fail(node, "spatial reductions must keep their dims (keepdim=True) to stay N×C×1×1")

    def run(self) -> CapturedGraph:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "output":
                self._output(node)
            elif node.op == "call_module":
                self._call_module(node)
            elif node.op in ("call_function", "call_method"):
                self._call_function(node)
            elif node.op == "get_attr":
                raise self.fail(node, "constant tensors (parameters used outside a module call) are not supported")
            else:
                raise self.fail(node, "no lowering for this node")
        if not self.nodes or self.nodes[-1].op != "image_out":
            raise UnsupportedOpError("the traced model has no output")
        return CapturedGraph(self.gm, self.nodes, self.rgb_range, self.in_channels)

    def _placeholder(self, node: fx.Node) -> None:
        if self.image_seen:
            if node.users and not all(u.op == "call_function" and u.target in IGNORED_FN for u in node.users):
                raise self.fail(node, "the model must take exactly one image input (fix other forward arguments "
                                 "with concrete_args)")
            self.env[node.name] = None
            return
        self.image_seen = True
        a = np.full(self.in_channels, self.rgb_range / 255.0)
        self.env[node.name] = Image(a, np.zeros(self.in_channels), ())

    def _output(self, node: fx.Node) -> None:
        arg = node.args[0]
        if not isinstance(arg, fx.Node):
            raise self.fail(node, "the model must return exactly one tensor (no tuples/dicts)")
        v = self.env[arg.name]
        k = 255.0 / self.rgb_range
        if isinstance(v, AffineStream):
            src, a, b, folded = v.tensor, v.a * k, v.b * k, v.folded
        else:
            src = self.stream_of(node, arg)
            c = self.channels[src]
            a, b, folded = np.full(c, k), np.zeros(c), ()
        if self.channels[src] != self.in_channels:
            raise self.fail(node, f"the output has {self.channels[src]} channels, the input image {self.in_channels}")
        self.emit(LNode(self.unique("image_out"), "image_out", (src,), OUTPUT_TENSOR, node.name, len(a),
                   attrs={"a": [float(x) for x in a], "b": [float(x) for x in b], "folded": list(folded)},
                   place="model output" + (f" (folded {', '.join(folded)})" if folded else "")))

    def _call_module(self, node: fx.Node) -> None:
        mod = self.gm.get_submodule(node.target)
        target = str(node.target)
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            self.env[node.name] = self.env[node.args[0].name]
            return
        if is_mean_shift(mod):
            a, b = mean_shift_affine(mod, place(node, self.gm))
            src = self.env[node.args[0].name] if isinstance(node.args[0], fx.Node) else None
            if isinstance(src, Image) and src.materialized is None:
                self.env[node.name] = Image(a * src.a, a * src.b + b, src.folded + (target,))
            elif isinstance(src, Stream):
                self.env[node.name] = AffineStream(src.tensor, a, b, (target,), place(node, self.gm))
            elif isinstance(src, AffineStream):
                self.env[node.name] = AffineStream(src.tensor, a * src.a, a * src.b + b, src.folded + (target,),
                                               src.place)
            else:
                raise self.fail(node, "a MeanShift must act on the model input or produce the model output")
            return
        if type(mod) is nn.Conv2d:
            self.conv_node(node, mod, target, "conv2d")
            return
        if type(mod) is nn.ConvTranspose2d:
            self.conv_node(node, mod, target, "conv_transpose2d")
            return
        if type(mod) is nn.ReLU:
            self.simple("relu", node, self.stream_of(node, node.args[0]), "relu", target)
            return
        if type(mod) is nn.LeakyReLU:
            self.simple("leaky_relu", node, self.stream_of(node, node.args[0]), "leaky_relu", target,
                   {"slope": float(mod.negative_slope)})
            return
        if type(mod) is nn.PReLU:
            x = self.stream_of(node, node.args[0])
            w = [float(v) for v in mod.weight.detach().double().cpu().reshape(-1)]
            if len(w) == 1:
                w = w * self.channels[x]
            if len(w) != self.channels[x]:
                raise self.fail(node, f"{len(w)} PReLU slopes for {self.channels[x]} channels")
            self.simple("prelu", node, x, "prelu", target, {"slope": w})
            return
        if type(mod) in (nn.ReLU6, nn.Hardtanh):
            self.clamp_node(node, self.stream_of(node, node.args[0]), float(mod.min_val), float(mod.max_val), target)
            return
        if type(mod) in LUT_MODULES:
            if getattr(mod, "approximate", "none") != "none":
                raise self.fail(node, f"GELU approximate={mod.approximate!r} (only the exact erf form lowers)")
            fn = LUT_MODULES[type(mod)]
            self.simple("lut", node, self.stream_of(node, node.args[0]), fn, target, {"fn": fn})
            return
        if type(mod) is nn.PixelShuffle:
            x = self.stream_of(node, node.args[0])
            r = int(mod.upscale_factor)
            if self.channels[x] % (r * r):
                raise self.fail(node, f"{self.channels[x]} channels are not divisible by {r}²")
            self.simple("pixel_shuffle", node, x, "pixel_shuffle", target, {"factor": r}, self.channels[x] // (r * r))
            return
        if type(mod) in (nn.Upsample, nn.UpsamplingNearest2d):
            if mod.size is not None:
                raise self.fail(node, "upsampling to a fixed size is not supported (use scale_factor)")
            self.upsample(node, self.stream_of(node, node.args[0]), mod.scale_factor, mod.mode, mod.align_corners,
                     "upsample", target)
            return
        if type(mod) is nn.AdaptiveAvgPool2d:
            o = mod.output_size
            if o not in (1, (1, 1), [1, 1]):
                raise self.fail(node, f"adaptive average pooling to {o!r} (only global pooling to 1×1 lowers)")
            self.pool_mean(node, self.stream_of(node, node.args[0]))
            return
        raise self.fail(node, "no lowering for this module type")

    def _call_function(self, node: fx.Node) -> None:
        t = node.target
        is_fn = node.op == "call_function"
        args = list(node.args)
        kwargs = dict(node.kwargs)
        if is_fn and t in IGNORED_FN:
            return
        a0 = self.env.get(args[0].name) if args and isinstance(args[0], fx.Node) else None
        if self._sizes_and_slices(node, t, is_fn, args, kwargs, a0):
            return
        if self._spatial_reduction(node, t, is_fn, args, kwargs, a0):
            return
        kind = self._op_kind(node, t, is_fn)
        if kind in ("add", "mul", "div"):
            self._arithmetic(kind, node, t, is_fn, args, kwargs, a0)
        else:
            self._stream_op(kind, node, t, is_fn, args, kwargs, a0)

    def _op_kind(self, node: fx.Node, t: Any, is_fn: bool) -> str:
        """The op family of an ordinary call (add, mul, div, relu, …)."""
        kind = None
        if (is_fn and t in ADD) or (not is_fn and t in ("add", "add_")):
            kind = "add"
        elif (is_fn and t in MUL) or (not is_fn and t in ("mul", "mul_")):
            kind = "mul"
        elif (is_fn and t in DIV) or (not is_fn and t in ("div", "div_")):
            kind = "div"
        elif (is_fn and t in RELU_FN) or (not is_fn and t in ("relu", "relu_")):
            kind = "relu"
        elif (is_fn and t in LRELU_FN):
            kind = "leaky_relu"
        elif (is_fn and t in LUT_FN) or (not is_fn and t in LUT_METHODS):
            kind = "lut"
        elif (is_fn and t in CLAMP_FN) or (not is_fn and t in CLAMP_METHODS):
            kind = "clamp"
        elif is_fn and t in PS_FN:
            kind = "pixel_shuffle"
        elif is_fn and t in CAT_FN:
            kind = "concat"
        elif (is_fn and t in (torch.split, torch.chunk)) or (not is_fn and t in ("split", "chunk")):
            kind = "split"
        elif is_fn and t in INTERP_FN:
            kind = "interpolate"
        if kind is None:
            raise self.fail(node, "no lowering for this operation")
        return kind

    def _arithmetic(self, kind: str, node: fx.Node, t: Any, is_fn: bool, args: list, kwargs: dict, a0: Any) -> None:
        """add, mul (a full-size tensor times a 1×1 gate) and a constant factor folded into a conv."""
        if kind == "add":
            if kwargs.pop("alpha", 1) != 1 or kwargs or len(args) != 2:
                raise self.fail(node, "only a plain two-tensor add is supported")
            if any(self.scalar(a) is not None for a in args):
                raise self.fail(node, "adding a constant is not supported")
            xa, xb = self.stream_of(node, args[0]), self.stream_of(node, args[1])
            if self.channels[xa] != self.channels[xb]:
                raise self.fail(node, f"channel mismatch {self.channels[xa]} vs {self.channels[xb]}")
            if self.is_global[xa] != self.is_global[xb]:
                raise self.fail(node, "adding a 1×1 (global) tensor to a full-size one (no broadcasting)")
            name = self.func_name(node, "add")
            self.emit(LNode(name, "add", (xa, xb), f"{name}.out", node.name, self.channels[xa], place=place(node, self.gm),
                       is_global=self.is_global[xa]))
            self.env[node.name] = Stream(f"{name}.out")
        elif kind == "mul" and len(args) == 2 and not kwargs and all(isinstance(a, fx.Node) for a in args):
            a1 = self.env.get(args[1].name)
            if isinstance(a0, Reduce) and a0.kind == "centered" and isinstance(a1, Reduce) and \
                    a1.kind == "centered" and a0.tensor == a1.tensor:
                self.env[node.name] = Reduce("sq", a0.tensor, frozenset(), node.name)
                return
            xa, xb = self.stream_of(node, args[0]), self.stream_of(node, args[1])
            if self.is_global[xa] and not self.is_global[xb]:
                xa, xb = xb, xa
            if self.is_global[xa] or not self.is_global[xb]:
                raise self.fail(node, "tensor × tensor lowers only as a full-size tensor times a 1×1 (global) "
                                 "per-channel gate (mul)")
            if self.channels[xa] != self.channels[xb]:
                raise self.fail(node, f"channel mismatch {self.channels[xa]} vs {self.channels[xb]}")
            name = self.func_name(node, "mul")
            self.emit(LNode(name, "mul", (xa, xb), f"{name}.out", node.name, self.channels[xa], place=place(node, self.gm)))
            self.env[node.name] = Stream(f"{name}.out")
        elif kind in ("mul", "div"):
            if kwargs or len(args) != 2:
                raise self.fail(node, "only tensor × constant is supported")
            consts = [self.scalar(a) for a in args]
            if kind == "div":
                if consts[1] is None or consts[0] is not None:
                    raise self.fail(node, "only tensor ÷ constant is supported")
                if consts[1] == 0:
                    raise self.fail(node, "division by zero")
                c, tnode = 1.0 / consts[1], args[0]
            else:
                if (consts[0] is None) == (consts[1] is None):
                    raise self.fail(node, "only tensor × constant is supported")
                c, tnode = (consts[1], args[0]) if consts[1] is not None else (consts[0], args[1])
            x = self.stream_of(node, tnode)
            if c != 1.0:
                prod = self.producers.get(x)
                if prod is None or prod.op not in CONV_OPS or len(self.fx_nodes[prod.fx_node].users) != 1:
                    raise self.fail(node, f"a constant factor {c} can only be folded into a conv whose output "
                                     f"has no other user")
                prod.attrs["post_scale"] *= c
                prod.fx_node = node.name  # the stream tensor now carries the scaled value
            self.env[node.name] = Stream(x)

    def _stream_op(self, kind: str, node: fx.Node, t: Any, is_fn: bool, args: list, kwargs: dict, a0: Any) -> None:
        """Activations, pixel shuffle, concat / split over channels and upsampling."""
        if kind == "relu":
            self.simple("relu", node, self.stream_of(node, args[0]), "relu")  # ``inplace`` changes nothing here
        elif kind == "leaky_relu":
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            if self.scalar(slope) is None:
                raise self.fail(node, "the negative slope must be a constant")
            self.simple("leaky_relu", node, self.stream_of(node, args[0]), "leaky_relu", attrs={"slope": float(slope)})
        elif kind == "lut":
            fn = LUT_FN[t] if is_fn else LUT_METHODS[t]
            if fn == "gelu" and kwargs.get("approximate", "none") != "none":
                raise self.fail(node, f"GELU approximate={kwargs['approximate']!r} (only the exact erf form lowers)")
            self.simple("lut", node, self.stream_of(node, args[0]), fn, attrs={"fn": fn})
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
                if v is not None and self.scalar(v) is None:
                    raise self.fail(node, f"clamp bounds must be constants, got {v!r}")
            self.clamp_node(node, self.stream_of(node, args[0]), self.scalar(lo) if lo is not None else None,
                       self.scalar(hi) if hi is not None else None, base=str(getattr(t, "__name__", t)).rstrip("_"))
        elif kind == "pixel_shuffle":
            r = args[1] if len(args) > 1 else kwargs.get("upscale_factor")
            if not isinstance(r, int):
                raise self.fail(node, "the shuffle factor must be a constant integer")
            x = self.stream_of(node, args[0])
            if self.channels[x] % (r * r):
                raise self.fail(node, f"{self.channels[x]} channels are not divisible by {r}²")
            self.simple("pixel_shuffle", node, x, "pixel_shuffle", attrs={"factor": r},
                   out_channels=self.channels[x] // (r * r))
        elif kind == "concat":
            seq = args[0] if args else kwargs.get("tensors")
            self.ch_dim(node, args[1] if len(args) > 1 else kwargs.get("dim", 0))
            if not isinstance(seq, (list, tuple)) or not seq:
                raise self.fail(node, "concat needs a constant list of tensors")
            xs = [self.stream_of(node, a) for a in seq]
            if len({self.is_global[x] for x in xs}) != 1:
                raise self.fail(node, "concat mixes 1×1 (global) and full-size tensors")
            if len(xs) == 1:
                self.env[node.name] = Stream(xs[0])
                return
            name = self.func_name(node, "cat")
            self.emit(LNode(name, "concat", tuple(xs), f"{name}.out", node.name, sum(self.channels[x] for x in xs),
                       place=place(node, self.gm), is_global=self.is_global[xs[0]]))
            self.env[node.name] = Stream(f"{name}.out")
        elif kind == "split":
            x = self.stream_of(node, args[0])
            c = self.channels[x]
            is_chunk = t in ("chunk",) or t is torch.chunk
            spec = args[1] if len(args) > 1 else kwargs.get("chunks" if is_chunk else "split_size_or_sections",
                                                           kwargs.get("split_size"))
            self.ch_dim(node, args[2] if len(args) > 2 else kwargs.get("dim", 0))
            if is_chunk:
                if not isinstance(spec, int) or spec < 1:
                    raise self.fail(node, f"chunks must be a constant positive integer, got {spec!r}")
                step = -(-c // spec)
                sizes = [min(step, c - i) for i in range(0, c, step)]
            elif isinstance(spec, int):
                sizes = [min(spec, c - i) for i in range(0, c, spec)]
            elif isinstance(spec, (list, tuple)) and all(isinstance(v, int) for v in spec):
                sizes = list(spec)
            else:
                raise self.fail(node, f"split sizes must be constant integers, got {spec!r}")
            if sum(sizes) != c or any(s <= 0 for s in sizes):
                raise self.fail(node, f"split sizes {sizes} do not partition {c} channels")
            if len(sizes) == 1:
                self.env[node.name] = Tuple([x])
                return
            self.env[node.name] = Tuple(self.emit_split(node, x, sizes))
        elif kind == "interpolate":
            size = args[1] if len(args) > 1 else kwargs.get("size")
            if size is not None:
                raise self.fail(node, "interpolation to a fixed size is not supported (use scale_factor)")
            factor = args[2] if len(args) > 2 else kwargs.get("scale_factor")
            mode = args[3] if len(args) > 3 else kwargs.get("mode", "nearest")
            self.upsample(node, self.stream_of(node, args[0]), factor, mode, kwargs.get("align_corners"), "upsample")


def lower(gm: fx.GraphModule, rgb_range: float, in_channels: int) -> CapturedGraph:
    """``gm``'s nodes as :class:`LNode` ops (:class:`_Lowering`); ``rgb_range``: the model's input
    value of a white pixel (255 or 1), ``in_channels``: the image's channels."""
    return _Lowering(gm, rgb_range, in_channels).run()
