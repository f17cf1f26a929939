"""The named numeric modes, defined once: an int for the kernels, a lower-case spec name for
artifacts and the command line, parsed from that name in one place.

:class:`SpecEnum` is the base; :class:`OverflowPolicy` lives here, :class:`~intsim.rounding.RoundingMode`
beside its arithmetic in :mod:`intsim.rounding`, so that a new rounding mode is one member and its
branches in one file (docs/extending.md). Golden implements both real forms itself and only reads the
names."""
from __future__ import annotations

import enum


class SpecEnum(enum.IntEnum):
    """An ``IntEnum`` whose members are spelled in docs/arithmetic.md as ``name.lower()``.

    The int value is what numba kernels compare against (``rmode == RoundingMode.FLOOR``
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


class OverflowPolicy(SpecEnum):
    """What happens to a value outside its configured width (arithmetic.md §4)."""

    ERROR = 0
    SATURATE = 1
    WRAP = 2

    @classmethod
    def describe(cls) -> str:
        return "overflow policy"
