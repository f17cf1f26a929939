"""Overflow policies (docs/arithmetic.md §4) against a Python-int reference.

Widths 2..48, edges ``±2^(B−1)``, ``±2^(B−1) ± 1``, random int64 values, event
counts (one per out-of-range element, for every policy), and the ``error``
policy's message naming the ``where`` string.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim.overflow import (
    EngineOverflowError,
    OverflowPolicy,
    apply_overflow,
    signed_range,
    wrap_scalar,
)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
WIDTHS = list(range(2, 49))


def ref_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def ref_saturate(v: int, bits: int) -> int:
    lo, hi = ref_range(bits)
    return min(max(v, lo), hi)


def ref_wrap(v: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((v + half) % (1 << bits)) - half  # Python % is the mathematical mod


def ref_events(vals, bits: int) -> int:
    lo, hi = ref_range(bits)
    return sum(1 for v in vals if v < lo or v > hi)


def edges(bits: int) -> list[int]:
    h = 1 << (bits - 1)
    out = []
    for base in (h, -h):
        out += [base - 1, base, base + 1]
    out += [0, 1, -1, 2 * h, -2 * h, 2 * h - 1, -2 * h - 1, 3 * h, -3 * h]
    return out


def check(vals: list[int], bits: int) -> None:
    arr = np.array(vals, dtype=np.int64)
    n_ev = ref_events(vals, bits)
    sat, ev_s = apply_overflow(arr, bits, "saturate", "op/test")
    assert sat.dtype == np.int64 and sat.shape == arr.shape
    assert [int(x) for x in sat.ravel()] == [ref_saturate(v, bits) for v in vals]
    assert ev_s == n_ev
    wr, ev_w = apply_overflow(arr, bits, "wrap", "op/test")
    assert wr.dtype == np.int64 and wr.shape == arr.shape
    assert [int(x) for x in wr.ravel()] == [ref_wrap(v, bits) for v in vals]
    assert ev_w == n_ev
    if n_ev:
        with pytest.raises(EngineOverflowError):
            apply_overflow(arr, bits, "error", "op/test")
    else:
        out, ev_e = apply_overflow(arr, bits, "error", "op/test")
        assert ev_e == 0
        np.testing.assert_array_equal(out, arr)
    for v in vals:
        assert int(wrap_scalar(np.int64(v), np.int64(bits))) == ref_wrap(v, bits), (v, bits)


@pytest.mark.parametrize("bits", WIDTHS)
def test_signed_range(bits):
    assert signed_range(bits) == ref_range(bits)


@pytest.mark.parametrize("bits", WIDTHS)
def test_edges(bits):
    check(edges(bits), bits)


@pytest.mark.parametrize("bits", WIDTHS)
def test_each_edge_alone(bits):
    """Event count 1 exactly for each single out-of-range edge, 0 for each in-range one."""
    lo, hi = ref_range(bits)
    for v in edges(bits):
        arr = np.array([v], dtype=np.int64)
        _, ev = apply_overflow(arr, bits, "saturate", "x")
        assert ev == int(v < lo or v > hi)
    assert ref_saturate(hi + 1, bits) == hi and ref_wrap(hi + 1, bits) == lo
    assert ref_saturate(lo - 1, bits) == lo and ref_wrap(lo - 1, bits) == hi


@pytest.mark.parametrize("bits", [2, 8, 16, 24, 32, 40, 48])
def test_int64_extremes(bits):
    """Full int64 inputs: wrap keeps the low bits even where v + 2^(B−1) wraps in int64."""
    check([INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX], bits)


def test_spec_example_b16():
    v = np.array([40000, -32769, 32767, -32768], dtype=np.int64)
    sat, ev = apply_overflow(v, 16, OverflowPolicy.SATURATE, "ex")
    assert sat.tolist() == [32767, -32768, 32767, -32768] and ev == 2
    wr, ev = apply_overflow(v, 16, OverflowPolicy.WRAP, "ex")
    assert wr.tolist() == [-25536, 32767, 32767, -32768] and ev == 2


def test_error_message_names_where():
    where = "conv2d 'body.3.conv1' -> tensor 'feat_7'"
    v = np.array([[0, 5], [200, -3]], dtype=np.int64)
    with pytest.raises(OverflowError) as exc:  # EngineOverflowError is an OverflowError
        apply_overflow(v, 8, "error", where)
    assert isinstance(exc.value, EngineOverflowError)
    msg = str(exc.value)
    assert where in msg
    assert "200" in msg  # the offending value


def test_in_range_untouched_all_policies():
    v = np.arange(-128, 128, dtype=np.int64).reshape(16, 16)
    for p in ("error", "saturate", "wrap"):
        out, ev = apply_overflow(v, 8, p, "w")
        assert ev == 0
        np.testing.assert_array_equal(out, v)


def test_zero_d_input():
    out, ev = apply_overflow(np.int64(300), 8, "saturate", "w")
    assert int(out) == 127 and ev == 1
    out, ev = apply_overflow(np.int64(300), 8, "wrap", "w")
    assert int(out) == 300 - 256 and ev == 1
    with pytest.raises(EngineOverflowError, match="w"):
        apply_overflow(np.int64(300), 8, "error", "w")


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown overflow policy"):
        apply_overflow(np.array([1]), 8, "clip", "w")


@st.composite
def width_and_values(draw):
    bits = draw(st.sampled_from(WIDTHS))
    h = 1 << (bits - 1)
    near = st.integers(-3 * h - 2, 3 * h + 2)
    edge = st.sampled_from(edges(bits))
    wide = st.integers(INT64_MIN, INT64_MAX)
    vals = draw(st.lists(st.one_of(near, edge, wide), min_size=1, max_size=30))
    return bits, vals


@settings(max_examples=400, deadline=None)
@given(width_and_values())
def test_random_against_reference(bv):
    bits, vals = bv
    check(vals, bits)


@settings(max_examples=100, deadline=None)
@given(width_and_values(), st.sampled_from([(2, 3), (5,), (1, 1, 1)]))
def test_shape_preserved(bv, extra_shape):
    bits, vals = bv
    n = int(np.prod(extra_shape))
    arr = np.resize(np.array(vals, dtype=np.int64), n).reshape(extra_shape)
    flat = [int(x) for x in arr.ravel()]
    for p, ref in (("saturate", ref_saturate), ("wrap", ref_wrap)):
        out, ev = apply_overflow(arr, bits, p, "w")
        assert out.shape == arr.shape
        assert [int(x) for x in out.ravel()] == [ref(v, bits) for v in flat]
        assert ev == ref_events(flat, bits)
