"""ONNX in: a float ONNX super-resolution graph → a torch.fx module that :func:`calib.graph.capture` lowers.

``intsim calibrate --model model.onnx`` and ``calib.quantize("model.onnx", …)`` read the graph with the
``onnx`` package and rebuild it from standard torch modules and functions — ``nn.Conv2d`` with the
ONNX initializers as weights, ``nn.LeakyReLU``, ``torch.cat``, ``x[:, a:b]``, ``x.sum(3, keepdim=True)``,
``x.size(2)`` … — the same vocabulary a PyTorch model traces to, so the capture, calibration and export
that follow are the torch path's, unchanged.

Why not ``onnx2torch``: its package imports ``torchvision`` (for NMS and RoIAlign converters), whose
PyPI wheel is built against the CUDA torch and fails to import beside the project's CPU torch
(``operator torchvision::nms does not exist``), and installing it pulls a CUDA torch; it also maps
every ONNX node to its own ``OnnxXxx`` modules, which would need a second translation to the
capture's vocabulary anyway. Reading the graph directly needs only ``onnx`` (a wheel of its own) and
keeps the modules named after the exporter's scopes: ``torch.onnx.export`` names a conv node
``/IMDB1/c1/Conv``, which becomes module ``IMDB1.c1`` — the torch model's own path, so op names and
per-layer metadata of the two paths agree (docs/own_model.md).

Supported ONNX ops: Conv, ConvTranspose (symmetric pads, NOTSET auto_pad, any group — a depthwise conv is
``group`` = channels), Pad (reflect / edge / zero constant, symmetric on H and W, feeding a Conv without pads:
``padding_mode`` reflect / replicate / zeros), BatchNormalization (inference; an ``nn.BatchNorm2d``, folded
into the conv before it by the capture, calib/batchnorm.py), Relu, LeakyRelu, PRelu, Sigmoid, Tanh, Clip
(constant bounds: ReLU6, Hardtanh, clamp), SiLU (``Mul(x, Sigmoid(x))``), Add, Sub, Mul, Div, Pow (constant
exponent), Sqrt, Concat, Split, Slice (one axis, step 1), ReduceSum / ReduceMean (constant axes),
GlobalAveragePool, DepthToSpace (CRD = pixel shuffle), Resize (integer scale; nearest/asymmetric/floor,
linear/half_pixel = bilinear, or cubic/half_pixel with ``cubic_coeff_a`` −0.75 and ``exclude_outside`` 0 =
torch's bicubic, align_corners=False), Shape + Gather (``x.size(d)``), Cast of sizes, Identity, Dropout,
Constant, and constant subgraphs (calib/onnx_constants.py: the exporter's pad-width chains). The graph's
spatial dims must be dynamic when the model divides by H·W (export with ``dynamic_axes``): with constant sizes
a global mean is a division by a number the capture cannot tell from any other constant. Anything else is
refused with one line naming the ONNX node and its op (:class:`OnnxImportError`); ops outside the capture's
set are then refused by the capture itself, naming the fx node.
"""
from __future__ import annotations

import operator
import os
import re
from pathlib import Path

import numpy as np

from calib.onnx_constants import FOLDABLE, fold_constant

__all__ = ["OnnxImportError", "load_onnx", "SUPPORTED_ONNX_OPS"]

SUPPORTED_ONNX_OPS = ("Conv", "ConvTranspose", "Pad", "BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Sigmoid",
                      "Tanh", "Clip", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Concat", "Split", "Slice",
                      "ReduceSum", "ReduceMean", "GlobalAveragePool", "DepthToSpace", "Resize", "Shape", "Gather",
                      "Cast", "Identity", "Dropout", "Constant", "ConstantOfShape", "Reshape", "Transpose",
                      "Unsqueeze", "Squeeze")
#: cap on the .onnx file read (bytes): a model file, not a data set
MAX_ONNX_BYTES = 2 << 30


class OnnxImportError(ValueError):
    """An ONNX graph (or node) the importer cannot rebuild; the message names the node and its op."""


class _Padded:
    """The value of an ONNX ``Pad`` node: its input, torch's ``padding_mode`` and the (H, W) widths; only a
    Conv may consume it (it becomes that conv's padding, as ``torch.onnx.export`` split it off)."""

    def __init__(self, of, mode: str, hw: tuple[int, int]):
        self.of, self.mode, self.hw = of, mode, hw


class _SigmoidOf:
    """A Sigmoid whose only reader is ``Mul(x, Sigmoid(x))``: not emitted; the Mul becomes one SiLU."""

    def __init__(self, of):
        self.of = of


class _Shape:
    """The value of an ONNX ``Shape`` node: the fx node of the tensor whose sizes it gives."""

    def __init__(self, of):
        self.of = of


def _scope_parts(node_name: str) -> list[str]:
    """The exporter's scope of a node: ``/IMDB1/cca/conv_du/conv_du.0/Conv`` → ``[IMDB1, cca, conv_du, 0]``
    (a Sequential child is spelled ``parent.child`` after its parent's own level); [] without a scope."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2 or not node_name.startswith("/"):
        return []
    out: list[str] = []
    for p in parts[:-1]:
        head, dot, tail = p.rpartition(".")
        out.append(tail if dot and out and head.replace(".", "_") == out[-1] else p)
    return [re.sub(r"[^\w]", "_", p) or "_" for p in out]


def _module_path(node_name: str, op_type: str, taken: set[str]) -> str:
    """``/IMDB1/c1/Conv`` → ``IMDB1.c1`` (the exporter's scope = the torch module path); otherwise the
    op's name. Unique among the modules made so far."""
    base = ".".join(_scope_parts(node_name)) or re.sub(r"\W", "_", op_type.lower())
    name, k = base, 0
    while name in taken or any(t.startswith(name + ".") or name.startswith(t + ".") for t in taken):
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


class _Builder:
    """Walks the ONNX nodes in order and emits the fx graph (one method per concern, see :func:`load_onnx`)."""

    def __init__(self, model, path: Path):
        import torch.fx as fx
        from onnx import numpy_helper

        self.path = path
        self.graph = fx.Graph()
        self.modules: dict = {}
        self.taken: set[str] = set()
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.env: dict = {}
        self.numpy_helper = numpy_helper
        #: fx node name → the ONNX node's scope (module path), for the capture's op names (:func:`load_onnx`)
        self.scopes: dict[str, str] = {}
        self.keys: dict[str, tuple] = {}  # module path → what makes a later call the same module (add_module)
        self.scope_nodes: dict[str, int] = {}  # scope → its number of (non-Constant) nodes
        self.containers: set[str] = set()  # scopes with scopes below them
        self.readers: dict[str, list] = {o.name: [None] for o in model.graph.output}  # value → its consumer nodes
        for n in model.graph.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
            parts = _scope_parts(n.name)
            if n.op_type != "Constant" and parts:
                self.scope_nodes[".".join(parts)] = self.scope_nodes.get(".".join(parts), 0) + 1
            self.containers.update(".".join(parts[:i]) for i in range(1, len(parts)))

    # -- helpers
    def fail(self, node, why: str) -> OnnxImportError:
        return OnnxImportError(f"cannot import ONNX node {node.name or node.output[0]!r} (op {node.op_type}) of "
                               f"{self.path.name}: {why}. Supported ONNX ops: {', '.join(SUPPORTED_ONNX_OPS)}")

    def attrs(self, node) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def const(self, node, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"its {what} ({name!r}) must be a constant")
        return self.consts[name]

    def value(self, node, name: str):
        if name in self.env:
            if isinstance(self.env[name], _Padded):
                raise self.fail(node, f"operand {name!r} is a Pad's output; a Pad may only feed a Conv (its padding)")
            return self.env[name]
        if name in self.consts:
            c = self.consts[name]
            if c.size == 1:
                return c.reshape(()).item()
            raise self.fail(node, f"operand {name!r} is a constant tensor of shape {list(c.shape)}; only scalar "
                                  "constants are supported")
        raise self.fail(node, f"operand {name!r} is not produced by an earlier node")

    def add_module(self, node, module, *args, key=None):
        """Call ``module`` (made for ``node``) on ``args``. The exporter names a module's second call
        ``/blk/act_1/…``: when ``blk.act`` exists with the same key (type, settings, initializer names),
        that module is called again, as the torch model shares it (one op per call either way)."""
        key = (type(module).__name__, repr(module), key)
        scope = ".".join(_scope_parts(node.name))
        base = re.sub(r"_\d+$", "", scope)
        if base and base != scope and self.keys.get(base) == key:
            return self.graph.call_module(base, tuple(args))
        path = _module_path(node.name, node.op_type, self.taken)
        self.modules[path] = module
        self.keys[path] = key
        return self.graph.call_module(path, tuple(args))

    def tensor(self, arr: np.ndarray):
        import torch

        return torch.nn.Parameter(torch.from_numpy(np.array(arr, dtype=np.float32)), requires_grad=False)

    # -- ops
    def conv(self, node, a: dict, transpose: bool):
        import torch.nn as nn

        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise self.fail(node, "auto_pad must be NOTSET (explicit pads)")
        w = self.const(node, node.input[1], "weight")
        if w.ndim != 4:
            raise self.fail(node, f"only 2-d convolutions, got a weight of shape {list(w.shape)}")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise self.fail(node, f"asymmetric pads {pads} (torch pads both sides equally)")
        x, mode = self.env.get(node.input[0]), "zeros"
        if isinstance(x, _Padded):  # Pad → Conv: torch's conv with padding_mode (reflect / replicate / zeros)
            if any(pads) or transpose:
                raise self.fail(node, f"a padded input and pads {pads} of its own (one padding per conv)")
            pads, mode, x = list(x.hw) * 2, x.mode, x.of
        else:
            x = self.value(node, node.input[0])
        g = int(a.get("group", 1))
        k = tuple(w.shape[2:])
        stride, dil = tuple(a.get("strides", [1, 1])), tuple(a.get("dilations", [1, 1]))
        bias = len(node.input) > 2 and node.input[2] != ""
        if transpose:
            cin, cout = w.shape[0], w.shape[1] * g
            m = nn.ConvTranspose2d(cin, cout, k, stride, tuple(pads[:2]), tuple(a.get("output_padding", [0, 0])),
                                   g, bias, dil)
        else:
            cin, cout = w.shape[1] * g, w.shape[0]
            m = nn.Conv2d(cin, cout, k, stride, tuple(pads[:2]), dil, g, bias, padding_mode=mode)
        m.weight = self.tensor(w)
        if bias:
            m.bias = self.tensor(self.const(node, node.input[2], "bias"))
        return self.add_module(node, m, x, key=tuple(node.input[1:]))

    def pad(self, node, a: dict):
        """``Pad`` (opset ≥ 11: pads as an input) → :class:`_Padded`, the padding of the Conv it feeds."""
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if len(node.input) > 3 and node.input[3]:
            raise self.fail(node, "a Pad with explicit axes")
        pads = [int(v) for v in self.const(node, node.input[1], "pads").reshape(-1)]
        if len(node.input) > 2 and node.input[2] and float(self.const(node, node.input[2], "value").reshape(-1)[0]):
            raise self.fail(node, "a constant pad with a value other than 0")
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or pads[2:4] != pads[6:8] or min(pads) < 0:
            raise self.fail(node, f"pads {pads}: only the same width before and after on H and W (as a torch "
                                  "conv pads)")
        torch_mode = {"reflect": "reflect", "edge": "replicate", "constant": "zeros"}.get(mode)
        if torch_mode is None:
            raise self.fail(node, f"pad mode {mode!r} (reflect, edge and constant 0 import)")
        return _Padded(self.value(node, node.input[0]), torch_mode, (pads[2], pads[3]))

    def batchnorm(self, node, a: dict):
        """``BatchNormalization`` (inference) → ``nn.BatchNorm2d`` with the graph's statistics; the capture
        folds it into the conv before it (arithmetic.md §5.7), as for the torch model."""
        import torch
        import torch.nn as nn

        if int(a.get("training_mode", 0)) or len(node.output) > 1 and any(node.output[1:]):
            raise self.fail(node, "a BatchNormalization in training mode")
        gamma, beta, mu, var = (self.const(node, n, w) for n, w in zip(node.input[1:5],
                                                                        ("scale", "bias", "mean", "var")))
        # eps is stored as float32; its shortest decimal (1e-05) is the value the torch module was built with
        m = nn.BatchNorm2d(gamma.size, eps=float(str(np.float32(a.get("epsilon", 1e-5)))))
        m.weight, m.bias = self.tensor(gamma), self.tensor(beta)
        m.running_mean = torch.from_numpy(np.array(mu, dtype=np.float32))
        m.running_var = torch.from_numpy(np.array(var, dtype=np.float32))
        return self.add_module(node, m.eval(), self.value(node, node.input[0]), key=tuple(node.input[1:]))

    def clip(self, node, a: dict):
        """``Clip`` with constant bounds → ``nn.Hardtanh`` (a leaf module: ReLU6, Hardtanh), else a function:
        ``F.relu6`` for bounds (0, 6), ``torch.clamp`` otherwise (only the op's name depends on the guess)."""
        import torch
        import torch.nn as nn

        bounds = []
        for k, name in ((1, "min"), (2, "max")):
            if len(node.input) > k and node.input[k]:
                v = self.const(node, node.input[k], f"{name} bound")
                # stored as float32 (ReLU6's 6, Hardtanh's -0.5 are exact); the shortest decimal is the written one
                bounds.append(float(str(np.float32(v.reshape(-1)[0]))))
            else:
                bounds.append(a.get(name))
        x = self.value(node, node.input[0])
        if self.is_leaf_call(node) and None not in bounds:
            return self.add_module(node, nn.Hardtanh(bounds[0], bounds[1]), x)
        if bounds == [0.0, 6.0]:  # F.relu6 in a forward: named ``relu6`` as the capture names the torch call
            import torch.nn.functional as F

            return self.graph.call_function(F.relu6, (x,))
        return self.graph.call_function(torch.clamp, (x, bounds[0], bounds[1]))

    def activation(self, node, a: dict):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        x = self.value(node, node.input[0])
        if node.op_type == "Sigmoid" and self.is_silu_half(node):
            return _SigmoidOf(x)
        if node.op_type != "PRelu" and not self.is_leaf_call(node):
            # F.relu(x) inside a module's forward: the capture names it after that module (``att.relu``)
            if node.op_type == "LeakyRelu":
                return self.graph.call_function(F.leaky_relu, (x, float(str(np.float32(a.get("alpha", 0.01))))))
            fn = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}[node.op_type]
            return self.graph.call_function(fn, (x,))
        if node.op_type == "LeakyRelu":
            # ONNX keeps the slope as float32; its shortest decimal (0.05, not 0.0500000007…) is the value the
            # torch model was written with, so the export snaps the same number either way
            m = nn.LeakyReLU(float(str(np.float32(a.get("alpha", 0.01)))))
        elif node.op_type == "PRelu":
            slope = self.const(node, node.input[1], "slope").reshape(-1)
            m = nn.PReLU(slope.size)
            m.weight = self.tensor(slope)
        else:
            m = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}[node.op_type]()
        return self.add_module(node, m, x, key=tuple(node.input[1:]))

    def is_leaf_call(self, node) -> bool:
        """Whether ``node`` is the call of a leaf module (``nn.ReLU`` at ``blk.act``: the only node of its scope,
        no scope below it) rather than a function called in a container's forward (``F.relu`` in ``att``)."""
        scope = ".".join(_scope_parts(node.name))
        return bool(scope) and self.scope_nodes.get(scope, 0) == 1 and scope not in self.containers

    def binary(self, node):
        x, y = (self.value(node, n) for n in node.input[:2])
        if node.op_type == "Pow":
            if not isinstance(y, (int, float)):
                raise self.fail(node, "the exponent must be a scalar constant")
            return self.graph.call_method("pow", (x, float(y)))
        if node.op_type == "Mul":
            silu = self.silu(node, x, y)
            if silu is not None:
                return silu
        fn = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": operator.truediv}[node.op_type]
        return self.graph.call_function(fn, (x, y))

    def is_silu_half(self, node) -> bool:
        """Whether the Sigmoid ``node`` is half of ``Mul(v, Sigmoid(v))`` — how the exporter writes ``nn.SiLU`` /
        ``F.silu`` (opset < 22 has no SiLU op) — with nothing else reading the sigmoid."""
        readers = self.readers.get(node.output[0], [])
        return (len(readers) == 1 and readers[0] is not None and readers[0].op_type == "Mul"
                and sorted(readers[0].input) == sorted([node.input[0], node.output[0]]))

    def silu(self, node, x, y):
        """The Mul of :meth:`is_silu_half` as one SiLU (the lut op, §6.17): an ``nn.SiLU`` where the scope
        holds just these two nodes (a leaf module), ``F.silu`` otherwise; None if not that Mul."""
        import torch.nn as nn
        import torch.nn.functional as F

        for v, s in ((x, y), (y, x)):
            if isinstance(s, _SigmoidOf) and s.of is v:
                scope = ".".join(_scope_parts(node.name))
                if scope and self.scope_nodes.get(scope, 0) == 2 and scope not in self.containers:
                    return self.add_module(node, nn.SiLU(), v)
                return self.graph.call_function(F.silu, (v,))
        return None

    def reduce(self, node, a: dict):
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, node.input[1], "axes").reshape(-1).tolist()
        if axes is None:
            raise self.fail(node, "a reduction over all axes (no axes given)")
        keep = bool(a.get("keepdims", 1))
        axes = [int(d) for d in axes]
        method = "sum" if node.op_type == "ReduceSum" else "mean"
        return self.graph.call_method(method, (self.value(node, node.input[0]),
                                               axes[0] if len(axes) == 1 else tuple(axes)), {"keepdim": keep})

    def split(self, node, a: dict):
        import torch

        axis = int(a.get("axis", 0))
        if len(node.input) > 1 and node.input[1]:
            sizes = self.const(node, node.input[1], "split sizes").reshape(-1).tolist()
        elif "split" in a:
            sizes = list(a["split"])
        else:
            raise self.fail(node, "an equal split without explicit sizes")
        parts = self.graph.call_function(torch.split, (self.value(node, node.input[0]), [int(s) for s in sizes]),
                                         {"dim": axis})
        self.scope(node, parts)
        for i, out in enumerate(node.output):
            self.env[out] = self.graph.call_function(operator.getitem, (parts, i))
            self.scope(node, self.env[out])
        return None

    def slice(self, node, a: dict):
        starts = self.const(node, node.input[1], "starts").reshape(-1).tolist()
        ends = self.const(node, node.input[2], "ends").reshape(-1).tolist()
        axes = (self.const(node, node.input[3], "axes").reshape(-1).tolist()
                if len(node.input) > 3 and node.input[3] else list(range(len(starts))))
        steps = (self.const(node, node.input[4], "steps").reshape(-1).tolist()
                 if len(node.input) > 4 and node.input[4] else [1] * len(starts))
        if len(axes) != 1 or steps != [1]:
            raise self.fail(node, f"only a step-1 slice of one axis, got axes {axes} steps {steps}")
        big = 1 << 62  # ONNX writes "to the end" as INT64_MAX
        idx = [slice(None)] * (int(axes[0]) % 4) + [slice(int(starts[0]), None if ends[0] >= big else int(ends[0]))]
        return self.graph.call_function(operator.getitem, (self.value(node, node.input[0]), tuple(idx)))

    def resize(self, node, a: dict):
        import torch.nn.functional as F

        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        scales = self.const(node, node.input[2], "scales").reshape(-1) if len(node.input) > 2 and node.input[2] else []
        if len(scales) != 4 or list(scales[:2]) != [1, 1] or scales[2] != scales[3] or scales[2] != int(scales[2]):
            raise self.fail(node, f"only a resize by one integer factor of H and W (scales {list(scales)})")
        nearest = a.get("nearest_mode", b"round_prefer_floor")
        nearest = nearest.decode() if isinstance(nearest, bytes) else nearest
        if mode == "nearest" and ctm == "asymmetric" and nearest == "floor":
            kw = {"mode": "nearest"}
        elif mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel"):
            kw = {"mode": "bilinear", "align_corners": False}
        elif mode == "cubic" and ctm in ("half_pixel", "pytorch_half_pixel"):
            # torch's bicubic (align_corners=False) is Keys' kernel with a = -0.75, taps outside the image
            # clamped to the edge — ONNX's exclude_outside=0; anything else is another function (§6.18)
            coeff = float(a.get("cubic_coeff_a", -0.75))
            if coeff != -0.75 or int(a.get("exclude_outside", 0)):
                raise self.fail(node, f"cubic resize with cubic_coeff_a {coeff} and exclude_outside "
                                      f"{int(a.get('exclude_outside', 0))} (only torch's bicubic: -0.75 and 0)")
            kw = {"mode": "bicubic", "align_corners": False}
        else:
            raise self.fail(node, f"resize mode {mode!r} with coordinate_transformation_mode {ctm!r} (nearest: "
                                  "asymmetric/floor; linear or cubic: half_pixel)")
        return self.graph.call_function(F.interpolate, (self.value(node, node.input[0]),),
                                        {"scale_factor": float(scales[2]), **kw})

    def gather(self, node, a: dict):
        src = self.env.get(node.input[0])
        if not isinstance(src, _Shape):
            raise self.fail(node, "Gather only of a Shape (x.size(d)); other gathers are not supported")
        idx = self.const(node, node.input[1], "index")
        if idx.size != 1 or idx.ndim != 0 or int(a.get("axis", 0)) != 0:
            raise self.fail(node, "Gather of one constant scalar index of a shape")
        return self.graph.call_method("size", (src.of, int(idx.reshape(()).item())))

    def node(self, node):
        import torch
        import torch.nn as nn

        op, a = node.op_type, self.attrs(node)
        if op == "Constant":
            if "value" not in a:
                raise self.fail(node, "only tensor constants ('value')")
            self.consts[node.output[0]] = self.numpy_helper.to_array(a["value"])
            return
        if op in FOLDABLE and all(not n or (n in self.consts and n not in self.env) for n in node.input):
            self.consts[node.output[0]] = fold_constant(op, a, [self.consts[n] if n else None for n in node.input])
            return
        if op in ("Conv", "ConvTranspose"):
            out = self.conv(node, a, op == "ConvTranspose")
        elif op in ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh"):
            out = self.activation(node, a)
        elif op == "Clip":
            out = self.clip(node, a)
        elif op == "Pad":
            out = self.pad(node, a)
        elif op == "BatchNormalization":
            out = self.batchnorm(node, a)
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            out = self.binary(node)
        elif op == "Sqrt":
            out = self.graph.call_function(torch.sqrt, (self.value(node, node.input[0]),))
        elif op == "Concat":
            out = self.graph.call_function(torch.cat, ([self.value(node, n) for n in node.input],),
                                           {"dim": int(a["axis"])})
        elif op == "Split":
            return self.split(node, a)
        elif op == "Slice":
            out = self.slice(node, a)
        elif op in ("ReduceSum", "ReduceMean"):
            out = self.reduce(node, a)
        elif op == "GlobalAveragePool":
            out = self.add_module(node, nn.AdaptiveAvgPool2d(1), self.value(node, node.input[0]))
        elif op == "DepthToSpace":
            mode = a.get("mode", b"DCR")
            if (mode.decode() if isinstance(mode, bytes) else mode) != "CRD":
                raise self.fail(node, "DepthToSpace in DCR mode (torch's pixel_shuffle is CRD)")
            out = self.add_module(node, nn.PixelShuffle(int(a["blocksize"])), self.value(node, node.input[0]))
        elif op == "Resize":
            out = self.resize(node, a)
        elif op == "Shape":
            if "start" in a or "end" in a:
                raise self.fail(node, "Shape with start/end")
            self.env[node.output[0]] = _Shape(self.value(node, node.input[0]))
            return
        elif op == "Gather":
            out = self.gather(node, a)
        elif op in ("Cast", "Identity", "Dropout"):
            out = self.value(node, node.input[0])  # casts of sizes to float; identity; inference dropout
        else:
            raise self.fail(node, "no such op in the importer")
        self.env[node.output[0]] = out
        self.scope(node, out)

    def scope(self, node, out) -> None:
        """Remember the ONNX scope of a functional fx node (modules carry theirs in their path)."""
        import torch.fx as fx

        path = ".".join(_scope_parts(node.name))
        if path and isinstance(out, fx.Node) and out.op in ("call_function", "call_method"):
            self.scopes[out.name] = path


def load_onnx(path: str | os.PathLike):
    """The ONNX file ``path`` as a ``torch.fx.GraphModule`` (eval mode) of standard torch ops (module doc).
    Raises :class:`OnnxImportError` (one line) for a file that is not a readable ONNX model, a graph with
    more than one image input or output, or a node outside the supported set."""
    import torch.fx as fx

    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise OnnxImportError("reading ONNX models needs the onnx package (pip install onnx)") from None
    if not path.is_file():
        raise OnnxImportError(f"{path}: no such ONNX file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise OnnxImportError(f"{path}: larger than {MAX_ONNX_BYTES >> 20} MiB")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise OnnxImportError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})") from None
    b = _Builder(model, path)
    inputs = [i for i in model.graph.input if i.name not in b.consts]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise OnnxImportError(f"{path}: the graph must have one image input and one output, has "
                              f"{len(inputs)} input(s) and {len(model.graph.output)} output(s)")
    b.env[inputs[0].name] = b.graph.placeholder("x")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise b.fail(node, f"custom domain {node.domain!r}")
        b.node(node)
    out = model.graph.output[0].name
    if out not in b.env or isinstance(b.env[out], (_Shape, _Padded)):
        raise OnnxImportError(f"{path}: the graph output {out!r} is not an image tensor")
    b.graph.output(b.env[out])
    gm = fx.GraphModule(b.modules, b.graph, class_name=re.sub(r"\W", "_", path.stem) or "OnnxModel")
    # the capture names a functional op after its enclosing module (``IMDB1.split``); a flat fx module has
    # none, so it reads the ONNX scopes from here (calib.graph.capture, ``fx_node_scopes``)
    gm.fx_node_scopes = dict(b.scopes)
    return gm.eval()
