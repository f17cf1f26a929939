"""A conv op's geometry attributes (docs/artifact.md, arithmetic.md §5.1, §5.5), read in one place.

An artifact stores each attribute as one int or a ``[rows, cols]`` pair and may leave the
optional ones out; :meth:`ConvParams.of` reads them with the defaults of the op registry
(:data:`intsim.ops.opdef.CONV_GEOMETRY_ATTRS`), for the analyses that need the geometry without
running the op (tiling row maps, footprint, cost model).
"""
from __future__ import annotations

from dataclasses import dataclass

from intsim.ops.opdef import CONV_GEOMETRY_ATTRS, attr_pair, read_attr

__all__ = ["ConvParams", "attr_pair"]


@dataclass(frozen=True)
class ConvParams:
    """Geometry of a ``conv2d`` / ``conv_transpose2d`` op; every pair is (rows, cols), in elements."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]  # conv2d only (§5.1)
    groups: int  # conv2d only
    output_padding: tuple[int, int]  # conv_transpose2d only (§5.5)

    @classmethod
    def of(cls, attrs: dict) -> ConvParams:
        """The op's attributes with the registry's defaults for those it leaves out (``kernel`` is required)."""
        return cls(**{k: read_attr(spec, attrs, k) for k, spec in CONV_GEOMETRY_ATTRS.items()})
