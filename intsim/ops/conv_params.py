"""A conv op's geometry attributes (docs/artifact.md, arithmetic.md §5.1, §5.5), read in one place.

An artifact stores each attribute as one int or a ``[rows, cols]`` pair and may leave the
optional ones out; :meth:`ConvParams.of` states the defaults once, for the analyses that
need the geometry without running the op (tiling row maps, footprint, cost model).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def attr_pair(v, default: int | None = None) -> tuple[int, int]:
    """An op attribute given as one int or a [rows, cols] pair, as (rows, cols); ``None`` (absent)
    gives ``(default, default)``."""
    if v is None:
        v = default
    if np.ndim(v) == 0:
        return int(v), int(v)
    return int(v[0]), int(v[1])


@dataclass(frozen=True)
class ConvParams:
    """Geometry of a ``conv2d`` / ``conv_transpose2d`` op; every pair is (rows, cols), in elements."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)  # conv2d only (§5.1)
    groups: int = 1  # conv2d only
    output_padding: tuple[int, int] = (0, 0)  # conv_transpose2d only (§5.5)

    @classmethod
    def of(cls, attrs: dict) -> ConvParams:
        """The op's attributes with the defaults above for those it leaves out (``kernel`` is required)."""
        return cls(kernel=attr_pair(attrs["kernel"]), stride=attr_pair(attrs.get("stride"), 1),
                   padding=attr_pair(attrs.get("padding"), 0), dilation=attr_pair(attrs.get("dilation"), 1),
                   groups=int(attrs.get("groups", 1)), output_padding=attr_pair(attrs.get("output_padding"), 0))
