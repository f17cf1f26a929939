"""One definition per op type of the integer engine: :class:`OpDef` and the registry :data:`OPS`.

Every engine-side fact about an op type that is not its arithmetic lives here, stated once
(docs/artifact.md op table, docs/arithmetic.md §5–§6):

* tensor kinds of its inputs and outputs (a trailing ``*`` means "one or more of this kind");
* its attribute schema: each attribute's type and whether an artifact must state it, and the
  value analyses read when an in-memory op leaves it out (:meth:`OpDef.attr`);
* its array roles and their allowed dtypes;
* ``same_frac``: the output keeps the input frac (no rescale, §6.5–§6.12);
* ``keeps_channels``: every input and output has the same channel count;
* its spatial geometry (:class:`Geometry`): output size per axis, the inverse (smallest input
  size for a given output size) and how it grows the receptive field;
* its cost class in :mod:`intsim.cost` and whether its vector work is a rescale.

Consumers: :mod:`intsim.validate` (schema, kinds, roles), :mod:`intsim.tiling`,
:mod:`intsim.footprint`, :mod:`intsim.cost` (shapes, classes), :mod:`intsim.bounds` (same-frac ops).
The arithmetic of each op is in its kernel (:mod:`intsim.op_dispatch`); golden keeps its own.

Attribute types (checked by :mod:`intsim.validate`): ``int`` any int64; ``shift`` int in [0, 62];
``pos`` int ≥ 1; ``pair+`` two ints ≥ 1; ``pair0`` two ints ≥ 0; ``sizes`` non-empty list of ints
≥ 1; ``pad_mode`` ``reflect`` | ``replicate``; ``lut_fn`` a name of :data:`intsim.lut.LUT_FUNCTIONS`.

This module imports no engine, validation or artifact code: it is a table plus pure functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intsim.kernels.conv import conv2d_output_size, conv_transpose2d_output_size

PAIR_TYPES = ("pair+", "pair0")
COST_CLASSES = ("gemm", "fusable", "binary_fusable", "view", "vector")


def attr_pair(v, default: int | None = None) -> tuple[int, int]:
    """An op attribute given as one int or a [rows, cols] pair, as (rows, cols); ``None`` (absent)
    gives ``(default, default)``."""
    if v is None:
        v = default
    if np.ndim(v) == 0:
        return int(v), int(v)
    return int(v[0]), int(v[1])


_NO_DEFAULT = object()


@dataclass(frozen=True)
class AttrSpec:
    """One attribute of an op type: its type (see the module docstring), whether an artifact must
    state it, and the value :meth:`OpDef.attr` reads when an op leaves it out (none: a KeyError).

    The default of a *required* attribute is only ever read for in-memory ops that were not
    validated (analyses of a hand-built graph); a loaded artifact always states it."""

    type: str
    required: bool = True
    default: Any = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


def read_attr(spec: AttrSpec, attrs: dict, key: str):
    """Attribute ``key`` of ``attrs`` typed by ``spec``, its default when absent (or ``None``); the one
    place the engine reads an attribute with a default."""
    v = attrs.get(key)
    if v is None:
        if not spec.has_default:
            raise KeyError(key)
        v = spec.default
    if spec.type in PAIR_TYPES:
        return attr_pair(v)
    if spec.type == "pos":
        return int(v)
    return v


# ---------------------------------------------------------------------------
# geometry: one per-axis size function per op, and its inverse and receptive field


@dataclass(frozen=True)
class Geometry:
    """How an op maps the spatial size of its first input to its output's, per axis (0 rows,
    1 columns). The base class keeps the size (element-wise and channel ops).

    ``size`` may be an int or an int64 array of candidate sizes (evaluated element-wise); every
    formula is non-decreasing in ``size``."""

    kind: str = "same"

    def out_size(self, d: OpDef, attrs: dict, size, ax: int):
        """Output size along ``ax`` for an input of ``size`` pixels."""
        return size

    def min_input(self, d: OpDef, attrs: dict, m: int, ax: int) -> int:
        """Smallest input size along ``ax`` whose output has at least ``m`` pixels (may be ≤ 0)."""
        return m

    def receptive(self, d: OpDef, attrs: dict, ext, jump, ax: int):
        """``(extent, jump)`` of the output, in graph-input pixels, from its input's (exact fractions)."""
        return ext, jump


@dataclass(frozen=True)
class ConvGeometry(Geometry):
    """conv2d (§5.1): ``⌊(x + 2p − d(k−1) − 1)/s⌋ + 1``."""

    kind: str = "conv"

    def _kspd(self, d, attrs, ax):
        return (d.attr(attrs, "kernel")[ax], d.attr(attrs, "stride")[ax], d.attr(attrs, "padding")[ax],
                d.attr(attrs, "dilation")[ax])

    def out_size(self, d, attrs, size, ax):
        k, s, p, dil = self._kspd(d, attrs, ax)
        return conv2d_output_size(size, k, s, p, dil)

    def min_input(self, d, attrs, m, ax):
        k, s, p, dil = self._kspd(d, attrs, ax)
        return (m - 1) * s + dil * (k - 1) + 1 - 2 * p  # ⌊(x + 2p − d(k−1) − 1)/s⌋ + 1 ≥ m

    def receptive(self, d, attrs, ext, jump, ax):
        k, s, _, dil = self._kspd(d, attrs, ax)
        return ext + (k - 1) * dil * jump, jump * s


@dataclass(frozen=True)
class ConvTransposeGeometry(Geometry):
    """conv_transpose2d (§5.5): ``(x − 1)·s − 2p + k + op``."""

    kind: str = "conv_transpose"

    def _kspq(self, d, attrs, ax):
        return (d.attr(attrs, "kernel")[ax], d.attr(attrs, "stride")[ax], d.attr(attrs, "padding")[ax],
                d.attr(attrs, "output_padding")[ax])

    def out_size(self, d, attrs, size, ax):
        k, s, p, q = self._kspq(d, attrs, ax)
        return conv_transpose2d_output_size(size, k, s, p, q)

    def min_input(self, d, attrs, m, ax):
        k, s, p, q = self._kspq(d, attrs, ax)
        return 1 - ((k + q - 2 * p - m) // s)  # x ≥ 1 + ⌈(m + 2p − k − op)/s⌉

    def receptive(self, d, attrs, ext, jump, ax):
        k, s = d.attr(attrs, "kernel")[ax], d.attr(attrs, "stride")[ax]
        return ext + (math.ceil(k / s) - 1) * jump, jump / s


@dataclass(frozen=True)
class UpsampleGeometry(Geometry):
    """Upsampling by ``factor`` (§6.8–§6.10, §6.18); each output reads ``1 + extra_taps`` input
    pixels per axis (nearest and pixel shuffle one, bilinear two, bicubic four)."""

    kind: str = "upsample"
    extra_taps: int = 0

    def out_size(self, d, attrs, size, ax):
        return size * d.attr(attrs, "factor")

    def min_input(self, d, attrs, m, ax):
        return -(-m // d.attr(attrs, "factor"))

    def receptive(self, d, attrs, ext, jump, ax):
        return ext + self.extra_taps * jump, jump / d.attr(attrs, "factor")


@dataclass(frozen=True)
class PadGeometry(Geometry):
    """pad (§5.8): ``x + 2p``; every output pixel reads one input pixel."""

    kind: str = "pad"

    def out_size(self, d, attrs, size, ax):
        return size + 2 * d.attr(attrs, "padding")[ax]

    def min_input(self, d, attrs, m, ax):
        return m - 2 * d.attr(attrs, "padding")[ax]  # x + 2p ≥ m


@dataclass(frozen=True)
class GlobalGeometry(Geometry):
    """Global pools (§6.11, §6.12): a 1×1 output whatever the input size."""

    kind: str = "global"

    def out_size(self, d, attrs, size, ax):
        return size * 0 + 1


SAME = Geometry()
GLOBAL = GlobalGeometry()


# ---------------------------------------------------------------------------
# the op definition


@dataclass(frozen=True)
class OpDef:
    """Everything the engine's analyses know about one op type (see the module docstring)."""

    name: str
    inputs: tuple[str, ...]  # tensor kinds; "stream*": one or more streams
    outputs: tuple[str, ...]
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # array role → allowed dtypes
    same_frac: bool = False  # output frac must equal the input frac (no rescale, §6.5–§6.12)
    keeps_channels: bool = True  # inputs and outputs have one channel count (else an op-specific rule)
    geometry: Geometry = SAME
    cost: str = "vector"  # one of COST_CLASSES (intsim.cost.context)
    rescale: bool = False  # its vector work is a rescale (cost category "rescale", not "vector")

    @property
    def kinds(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(input kinds, output kinds)``."""
        return self.inputs, self.outputs

    @property
    def required_attrs(self) -> dict[str, str]:
        """Attributes an artifact must state: name → type."""
        return {k: s.type for k, s in self.attrs.items() if s.required}

    @property
    def optional_attrs(self) -> dict[str, str]:
        """Attributes an artifact may leave out: name → type."""
        return {k: s.type for k, s in self.attrs.items() if not s.required}

    @property
    def is_global(self) -> bool:
        """A global pool: its output is 1×1 and needs the whole input."""
        return self.geometry.kind == "global"

    def attr(self, op_or_attrs, key: str):
        """Attribute ``key`` of an op (an ``OpSpec`` or its attrs dict) with the schema's default when
        absent. Pairs come back as ``(rows, cols)`` ints, ``pos`` attributes as an int, others as stored."""
        return read_attr(self.attrs[key], getattr(op_or_attrs, "attrs", op_or_attrs), key)

    def out_size(self, op_or_attrs, size, ax: int):
        """Output size along ``ax`` for a first input of ``size`` pixels (int or int64 array)."""
        return self.geometry.out_size(self, getattr(op_or_attrs, "attrs", op_or_attrs), size, ax)

    def min_input(self, op_or_attrs, m: int, ax: int) -> int:
        """Smallest first-input size along ``ax`` giving an output of at least ``m`` pixels."""
        return self.geometry.min_input(self, getattr(op_or_attrs, "attrs", op_or_attrs), m, ax)

    def receptive(self, op_or_attrs, ext, jump, ax: int):
        """The output's ``(extent, jump)`` along ``ax`` from the input's (see :mod:`intsim.footprint`)."""
        return self.geometry.receptive(self, getattr(op_or_attrs, "attrs", op_or_attrs), ext, jump, ax)


# ---------------------------------------------------------------------------
# the registry

# conv geometry: stated once for both convolutions (defaults are what an in-memory op that leaves
# an attribute out means; ``intsim.ops.conv_params.ConvParams.of`` reads them from here)
CONV_GEOMETRY_ATTRS: dict[str, AttrSpec] = {
    "kernel": AttrSpec("pair+"),
    "stride": AttrSpec("pair+", default=(1, 1)),
    "padding": AttrSpec("pair0", default=(0, 0)),
    "dilation": AttrSpec("pair+", default=(1, 1)),
    "groups": AttrSpec("pos", default=1),
    "output_padding": AttrSpec("pair0", default=(0, 0)),
}
_G = CONV_GEOMETRY_ATTRS
_CONV_WEIGHTS = {"weight": ("int8", "int16"), "w_mant": ("int64",), "bias": ("int64",)}
_IMAGE_ROLES = {"mult": ("int64",), "offset": ("int64",)}
_LUT_ATTRS = {"lut_exp": AttrSpec("int"), "imin": AttrSpec("int"), "imax": AttrSpec("int")}
_S = ("stream",)


def _def(name, inputs, outputs, **kw) -> tuple[str, OpDef]:
    return name, OpDef(name, tuple(inputs), tuple(outputs), **kw)


OPS: dict[str, OpDef] = dict([
    _def("image_in", ("image",), _S, attrs={"exp": AttrSpec("int")}, roles=_IMAGE_ROLES, rescale=True),
    _def("image_out", _S, ("image",), attrs={"exp": AttrSpec("int")}, roles=_IMAGE_ROLES, cost="fusable",
         rescale=True),
    _def("encode", _S, ("codes",), cost="fusable", rescale=True),
    _def("conv2d", ("codes",), _S,
         attrs={k: _G[k] for k in ("kernel", "stride", "padding", "dilation", "groups")} | {"w_exp": AttrSpec("int")},
         roles=_CONV_WEIGHTS, geometry=ConvGeometry(), cost="gemm", keeps_channels=False),
    # conv_transpose2d is groups = 1, dilation 1 (§5.5); an exporter may state that explicitly,
    # any other value is refused
    _def("conv_transpose2d", ("codes",), _S,
         attrs={k: _G[k] for k in ("kernel", "stride", "padding", "output_padding")} | {"w_exp": AttrSpec("int")}
         | {"groups": AttrSpec("pos", False, 1), "dilation": AttrSpec("pair+", False, (1, 1))},
         roles=_CONV_WEIGHTS, geometry=ConvTransposeGeometry(), cost="gemm", keeps_channels=False),
    _def("add", ("stream", "stream"), _S, cost="binary_fusable"),
    _def("concat", ("stream*",), _S, cost="view", keeps_channels=False),
    _def("split", _S, ("stream*",), attrs={"sizes": AttrSpec("sizes")}, same_frac=True, cost="fusable",
         keeps_channels=False),
    _def("relu", _S, _S, same_frac=True, cost="fusable"),
    _def("clamp", _S, _S, attrs={"lo": AttrSpec("int"), "hi": AttrSpec("int")}, same_frac=True, cost="fusable"),
    _def("pad", ("codes",), ("codes",), attrs={"padding": AttrSpec("pair0", default=(0, 0)),
                                               "mode": AttrSpec("pad_mode")},
         geometry=PadGeometry(), cost="fusable"),
    _def("leaky_relu", _S, _S, attrs={"mult": AttrSpec("int"), "shift": AttrSpec("shift")}, same_frac=True,
         cost="fusable"),
    _def("prelu", _S, _S, attrs={"shift": AttrSpec("shift")}, roles={"mult": ("int64",)}, same_frac=True,
         cost="fusable"),
    _def("pixel_shuffle", _S, _S, attrs={"factor": AttrSpec("pos")}, same_frac=True,
         geometry=UpsampleGeometry(), cost="fusable", keeps_channels=False),
    _def("upsample_nearest", _S, _S, attrs={"factor": AttrSpec("pos")}, same_frac=True,
         geometry=UpsampleGeometry(), cost="fusable"),
    _def("upsample_bilinear", _S, _S, attrs={"factor": AttrSpec("pos"), "mult": AttrSpec("int"),
                                             "shift": AttrSpec("shift")},
         same_frac=True, geometry=UpsampleGeometry(extra_taps=1)),
    _def("upsample_bicubic", _S, _S, attrs={"factor": AttrSpec("pos"), "tap_bits": AttrSpec("pos")},
         same_frac=True, geometry=UpsampleGeometry(extra_taps=3)),
    _def("mean_pool", _S, _S, attrs={"shift": AttrSpec("shift")}, same_frac=True, geometry=GLOBAL),
    _def("std_pool", _S, _S, attrs={"shift": AttrSpec("shift"), "pre_shift": AttrSpec("shift")}, same_frac=True,
         geometry=GLOBAL),
    _def("lut", _S, _S, attrs={"fn": AttrSpec("lut_fn")} | _LUT_ATTRS, roles={"lut": ("int32",)}, cost="fusable"),
    _def("mul", ("stream", "stream"), _S, cost="binary_fusable", keeps_channels=False),  # its own rule (§6.14)
])
"""Op type → its definition; every op type of docs/artifact.md, in the order of its table."""


def ops_where(**facts) -> frozenset[str]:
    """Names of the op types whose definitions have all the given field values, e.g.
    ``ops_where(cost="gemm")`` or ``ops_where(same_frac=True)``."""
    return frozenset(n for n, d in OPS.items() if all(getattr(d, k) == v for k, v in facts.items()))


def ops_with_geometry(kind: str) -> frozenset[str]:
    """Names of the op types whose geometry is ``kind`` (``same``, ``conv``, ``upsample``, ...)."""
    return frozenset(n for n, d in OPS.items() if d.geometry.kind == kind)
