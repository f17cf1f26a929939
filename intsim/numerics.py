"""Execution-wide numeric settings of an artifact (docs/arithmetic.md §2, §4, §5.3, §8).

A leaf module: the ops read :class:`Numerics` without importing the artifact's archive layer.
"""
from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def rounding_mode(self) -> RoundingMode:
        """``rounding`` as the enum the ops and kernels take (ValueError if unknown)."""
        return RoundingMode.parse(self.rounding)

    @property
    def overflow_policy(self) -> OverflowPolicy:
        """``overflow`` as the enum the ops and kernels take (ValueError if unknown)."""
        return OverflowPolicy.parse(self.overflow)

    def to_json(self) -> dict:
        return dict(self.__dict__)
