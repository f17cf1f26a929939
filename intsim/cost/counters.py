"""The shape of an engine counters entry (``intsim run --counters``), checked when a counters file is read.

The cost model does arithmetic on every count, so a file from another tool (or edited by hand) with a
string, a float, ``null`` or a 400-digit number where a count belongs is refused here with one line
naming the file, the entry and the key, instead of failing deep inside the model. Keys the engine does
not write are ignored (older and newer counters stay readable).
"""
from __future__ import annotations

#: counts are int64 in the engine; a larger number cannot come from a run (and would overflow floats)
_COUNT_MAX = (1 << 63) - 1
_EVENT_KEYS = ("acc_overflow", "stream_overflow", "saturations")


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _COUNT_MAX


def _counts(v) -> bool:
    return isinstance(v, list) and all(_is_count(x) for x in v)


_COUNT = "a non-negative integer"
_COUNTS = "a list of non-negative integers"
#: what the engine writes under each key of an op's entry (arithmetic.md §7)
_OP_KEYS = {
    "op": (lambda v: isinstance(v, str), "a string"),
    **{k: (_is_count, _COUNT) for k in _EVENT_KEYS},
    "macs": (lambda v: isinstance(v, dict) and all(_is_count(x) for x in v.values()),
             "an object mapping segments to non-negative integers"),
    "code_histogram": (_counts, _COUNTS),
    "out_shape": (_counts, _COUNTS),
    "out_shapes": (lambda v: isinstance(v, list) and all(_counts(s) for s in v), "a list of shapes"),
    "ordered": (lambda v: isinstance(v, bool), "true or false"),
}


def _op_problem(oc) -> str | None:
    """Why one op's entry is not an engine counters entry (``None``: it is)."""
    if not isinstance(oc, dict):
        return f"must be an object, got {type(oc).__name__}"
    for key, (ok, what) in _OP_KEYS.items():
        if key in oc and not ok(oc[key]):
            text = repr(oc[key])
            return f"{key!r} must be {what}, got {type(oc[key]).__name__} {text if len(text) <= 40 else text[:40] + '…'}"
    return None


def check_counters(c: dict, where: str, i: int) -> None:
    """Refuse (ValueError naming ``where``) entry ``i`` of a counters file whose counts are not counts."""
    for name, oc in c["ops"].items():
        problem = _op_problem(oc)
        if problem:
            raise ValueError(f"{where}: entry {i}, op {name!r}: {problem}")
    totals = c.get("totals", {})
    if not isinstance(totals, dict) or not all(_is_count(v) for v in totals.values()):
        raise ValueError(f"{where}: entry {i}: 'totals' must map names to non-negative integer counts")
