"""Overflow policies at a configured width: docs/arithmetic.md §4.

``error`` stops execution naming the op, ``saturate`` clamps, ``wrap`` keeps
the low bits (two's complement). Every out-of-range value is one event.
"""
from __future__ import annotations

import numba
import numpy as np

from intsim.spec_enum import OverflowPolicy  # noqa: F401  (re-exported: defined with the other modes)


class EngineOverflowError(OverflowError):
    """An overflow under the ``error`` policy; the message names the op."""


def signed_range(bits: int) -> tuple[int, int]:
    """Inclusive range of a ``bits``-wide two's complement integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@numba.njit(cache=True, inline="always")
def wrap_scalar(v, bits):
    """Two's complement wrap of int64 ``v`` to ``bits`` (1..63) bits."""
    half = np.int64(1) << (bits - 1)
    mask = (np.int64(1) << bits) - 1
    return ((v + half) & mask) - half


def apply_overflow(values, bits: int, policy: "OverflowPolicy | str", where: str) -> tuple[np.ndarray, int]:
    """Apply ``policy`` at ``bits`` to an int64 array; return (values, events).

    Raises :class:`EngineOverflowError` naming ``where`` under ``error``.
    """
    policy = OverflowPolicy.parse(policy)
    v = np.asarray(values, dtype=np.int64)
    lo, hi = signed_range(bits)
    out_of_range = (v < lo) | (v > hi)
    events = int(np.count_nonzero(out_of_range))
    if events == 0:
        return v, 0
    if policy is OverflowPolicy.ERROR:
        idx = np.unravel_index(int(np.argmax(out_of_range)), v.shape) if v.ndim else ()
        raise EngineOverflowError(
            f"{where}: value {int(v[idx])} at index {tuple(int(i) for i in idx)} "
            f"overflows {bits}-bit range [{lo}, {hi}] (overflow policy 'error')"
        )
    if policy is OverflowPolicy.SATURATE:
        return np.clip(v, lo, hi), events
    half = np.int64(1) << (bits - 1)
    mask = (np.int64(1) << bits) - 1
    return ((v + half) & mask) - half, events


#: engine counter keys of the events a run reports (arithmetic.md §7)
EVENT_KEYS = ("saturations", "acc_overflow", "stream_overflow")


def event_summary(counters_list: list[dict]) -> dict:
    """Overflow and saturation events of engine runs, summed over the images.

    ``counters_list``: ``RunResult.counters``, one per image. Returns ``{"images": n, "totals":
    {key: count}, "ops": {op name: {key: count}}}``, ``ops`` holding only ops with events, the
    op with the most events first (counts are values, not bits)."""
    totals = dict.fromkeys(EVENT_KEYS, 0)
    ops: dict[str, dict[str, int]] = {}
    for c in counters_list:
        for name, oc in c["ops"].items():
            counts = {k: int(oc.get(k, 0)) for k in EVENT_KEYS}
            if any(counts.values()):
                mine = ops.setdefault(name, dict.fromkeys(EVENT_KEYS, 0))
                for k, v in counts.items():
                    mine[k] += v
                    totals[k] += v
    worst = sorted(ops, key=lambda n: -sum(ops[n].values()))  # stable: graph order among equals
    return {"images": len(counters_list), "totals": totals, "ops": {n: ops[n] for n in worst}}


def events_notice(summary: dict, policy: str, worst: int = 3) -> str | None:
    """One line for a run's stderr naming the totals and the ``worst`` ops, None without events."""
    t = summary["totals"]
    if not any(t.values()):
        return None
    verb = "wrapped" if OverflowPolicy.parse(policy) is OverflowPolicy.WRAP else "saturated"
    parts = []
    if t["saturations"]:
        parts.append(f"{t['saturations']} values clamped (encoder, output and LUT index saturations)")
    for key, what in (("acc_overflow", "accumulator"), ("stream_overflow", "stream")):
        if t[key]:
            parts.append(f"{t[key]} {what} overflows {verb}")
    short = {"saturations": "clamped", "acc_overflow": "acc", "stream_overflow": "stream"}
    names = list(summary["ops"])
    tops = ["{} ({})".format(n, ", ".join(f"{short[k]} {v}" for k, v in summary["ops"][n].items() if v))
            for n in names[:worst]]
    more = f" and {len(names) - worst} more op(s)" if len(names) > worst else ""
    return (f"{'; '.join(parts)} over {summary['images']} image(s); worst: {', '.join(tops)}{more} "
            "(every op's counts: --counters FILE)")
