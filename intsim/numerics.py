"""Execution-wide numeric settings of an artifact (docs/arithmetic.md §2, §4, §5.3, §8).

A leaf module: the ops read :class:`Numerics` without importing the artifact's archive layer.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

from intsim.rounding import RoundingMode
from intsim.spec_enum import OverflowPolicy


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

    def to_json(self) -> dict:
        # the fields only: __dict__ also holds the parsed enums once read
        return {f.name: getattr(self, f.name) for f in fields(self)}
