"""The named numeric modes (rounding, overflow), defined once: an int for the kernels, a
lower-case spec name for artifacts and the command line, parsed from that name in one place.

Names only, no arithmetic: golden (which implements the spec independently) reads artifacts whose
``Numerics`` carry these modes, and must not import intsim's rounding or overflow code."""
from __future__ import annotations

import enum


class SpecEnum(enum.IntEnum):
    """An ``IntEnum`` whose members are spelled in docs/arithmetic.md as ``name.lower()``.

    The int value is what numba kernels compare against (``mode == RoundingMode.FLOOR``
    compiles to a constant compare); the spec name is what artifacts and CLI flags carry."""

    @classmethod
    def describe(cls) -> str:
        """What a member is, for error messages (``"rounding mode"``)."""
        raise NotImplementedError

    @property
    def spec_name(self) -> str:
        return self.name.lower()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The spec names in value order: CLI choices and validation derive from this."""
        return tuple(m.spec_name for m in cls)

    @classmethod
    def parse(cls, name):
        """The member named ``name`` (a spec name, or a member, returned as is);
        ``ValueError`` naming the choices otherwise."""
        if isinstance(name, cls):
            return name
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError(
                f"unknown {cls.describe()} {name!r}; expected one of " + ", ".join(cls.names())
            ) from None


class RoundingMode(SpecEnum):
    """Rounding of ``I·2^-n`` to an integer (arithmetic.md §2).

    Adding a mode: a member here, its branch in :func:`intsim.rounding.round_shift_scalar` and
    :func:`intsim.rounding.round_shift`, and golden's ``round_real`` (docs/extending.md)."""

    HALF_UP = 0  # ties toward +inf (TFLite / gemmlowp single rounding)
    HALF_AWAY = 1  # ties away from zero
    HALF_EVEN = 2  # ties to even (ONNX)
    FLOOR = 3  # toward -inf (HLS default)

    @classmethod
    def describe(cls) -> str:
        return "rounding mode"


class OverflowPolicy(SpecEnum):
    """What happens to a value outside its configured width (arithmetic.md §4)."""

    ERROR = 0
    SATURATE = 1
    WRAP = 2

    @classmethod
    def describe(cls) -> str:
        return "overflow policy"
