"""Stateless integer ops (docs/arithmetic.md §5–§6).

Each op takes numpy int64 arrays (images: uint8) in HWC layout plus explicit
parameters and returns ``(outputs, events)``: ``outputs`` an array (or a list
for multi-output ops) and ``events`` a dict of JSON-serialisable counters
(``acc_overflow``, ``stream_overflow``, ``saturations`` and op-specific ones).
"""
from __future__ import annotations

import numpy as np

from intsim.numerics import STREAM_DTYPES, Numerics  # noqa: F401  (STREAM_DTYPES: the ops read it here)
from intsim.overflow import apply_overflow
from intsim.rounding import MAX_SHIFT, round_shift

KERNEL_MIN_SIZE = 1 << 14
"""Elements from which the stream ops run their fused banded kernels (:mod:`intsim.kernels`): from
about there on they beat the numpy forms (measured at 2^14 int64 elements: about even for split and
mean_pool, 2× for add); below it a call's fixed costs dominate. Both forms compute the same
integers; tests move this threshold to compare them."""


def use_kernels(size: int) -> bool:
    """True if an op on ``size`` elements runs its fused kernel rather than its numpy form."""
    return size >= KERNEL_MIN_SIZE


def no_events() -> dict:
    """The three event counters every op reports (arithmetic.md §7), all zero."""
    return {"acc_overflow": 0, "stream_overflow": 0, "saturations": 0}


def check_shift(n: int, what: str) -> int:
    """A rescale shift must lie in [0, 62] (arithmetic.md §2)."""
    n = int(n)
    if not 0 <= n <= MAX_SHIFT:
        raise ValueError(f"{what}: shift {n} outside [0, {MAX_SHIFT}]")
    return n


def requantize(I: np.ndarray, n: int, numerics: Numerics, where: str) -> tuple[np.ndarray, int]:
    """``X = OVF_stream(R(I, n))`` (arithmetic.md §1.5); returns (X, stream events), ``X`` in
    ``numerics.stream_dtype`` (int32 below 32 stream bits, as the kernels write it).

    ``I`` int64; ``n`` in [0, 62]; the rounding mode, ``stream_bits`` and the
    overflow policy come from ``numerics``. ``where`` names the op and tensor in an
    :class:`~intsim.overflow.EngineOverflowError`.
    """
    # the parsed enums Numerics keeps (the same errors as parsing the names here)
    x = round_shift(I, check_shift(n, where), numerics.rounding_mode)
    x, ev = apply_overflow(x, numerics.stream_bits, numerics.overflow_policy, where)
    return x.astype(numerics.stream_dtype, copy=False), ev  # stored as the kernels store it


def stream_operand(x: np.ndarray, what: str) -> np.ndarray:
    """An H×W×C stream operand as the banded kernels read it: int64, or a compact int32 as it is (no copy)."""
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"{what}: expected an H×W×C stream, got shape {a.shape}")
    if not issubclass(a.dtype.type, np.integer):  # np.issubdtype(·, np.integer) without its dispatch
        raise ValueError(f"{what}: stream must hold integers, got {a.dtype}")
    return a if a.dtype in STREAM_DTYPES else a.astype(np.int64)


def as_stream(x: np.ndarray, what: str) -> np.ndarray:
    """An H×W×C int64 view of a stream operand (the numpy forms compute in int64)."""
    return stream_operand(x, what).astype(np.int64, copy=False)
