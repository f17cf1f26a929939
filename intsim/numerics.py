"""Execution-wide numeric settings of an artifact (docs/arithmetic.md §2, §4, §5.3, §8).

A leaf module: the ops read :class:`Numerics` without importing the artifact's archive layer.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from intsim.rounding import RoundingMode
from intsim.spec_enum import OverflowPolicy


# A stream array's dtypes: int64, or the compact int32 of :func:`stream_dtype`. The banded kernels read
# either (numba widens every element to int64 before any arithmetic); the numpy forms take int64.
STREAM_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


def stream_dtype(stream_bits: int) -> np.dtype:
    """The dtype the kernels write stream tensors in (arithmetic.md §1.2), and the engine holds
    intermediates in: int32 below 32 stream bits, else int64. Every stored stream value fits, and
    below 32 bits ``|X|`` and ``X − Y`` of two streams never wrap in int32 either; the kernels widen
    each element to int64 before any arithmetic. Half the bytes of int64 (issue 24: peak memory)."""
    return np.dtype(np.int32 if int(stream_bits) < 32 else np.int64)


@dataclass(frozen=True)
class Numerics:
    """Execution-wide numeric settings (arithmetic.md §2, §4, §5.3, §8)."""

    rounding: str = "half_up"
    realization: str = "split"
    overflow: str = "saturate"
    acc_bits: int = 32
    stream_bits: int = 24
    mult_bits: int = 31

    # Parsed once per instance (the fields are frozen): every op of every image reads these,
    # and a parse is an enum name look-up (~0.3 µs, a few hundred per small image).
    @cached_property
    def rounding_mode(self) -> RoundingMode:
        """``rounding`` as the enum the ops and kernels take (ValueError if unknown)."""
        return RoundingMode.parse(self.rounding)

    @cached_property
    def overflow_policy(self) -> OverflowPolicy:
        """``overflow`` as the enum the ops and kernels take (ValueError if unknown)."""
        return OverflowPolicy.parse(self.overflow)

    @cached_property
    def stream_dtype(self) -> np.dtype:
        """:func:`stream_dtype` of ``stream_bits``."""
        return stream_dtype(self.stream_bits)

    def to_json(self) -> dict:
        # the fields only: __dict__ also holds the parsed enums once read
        return {f.name: getattr(self, f.name) for f in fields(self)}
