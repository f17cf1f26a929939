"""``R(I, n)`` (docs/arithmetic.md §2) against an exact ``fractions.Fraction`` reference.

Both implementations are covered: the vectorised :func:`intsim.rounding.round_shift`
and the numba scalar :func:`intsim.rounding.round_shift_scalar`.

Precondition (documented contract of the integer forms, not a limitation of the
reference): for ``n ≥ 1`` the ``half_up`` form evaluates ``I + 2^(n−1)`` and the
``half_away`` form ``|I| + 2^(n−1)`` in int64, so the inputs must satisfy
``|I| + 2^(n−1) ≤ 2^63 − 1``. Within the exactness envelope (§9) every ``I`` is
below 2^53, far inside this. ``floor`` and ``half_even`` never leave int64 and are
also tested over the *whole* int64 range (including −2^63 and 2^63 − 1).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from intsim.rounding import MAX_SHIFT, RoundingMode, round_shift, round_shift_scalar
from tests.exact_reference import ref_round_shift as ref_round

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MODES = list(RoundingMode)
ALL_MODE_SPECS = [m.spec_name for m in MODES]




def in_precondition(i: int, n: int) -> bool:
    """``|I| + 2^(n−1) ≤ 2^63 − 1`` for n ≥ 1 (see the module docstring)."""
    return n == 0 or abs(i) + (1 << (n - 1)) <= INT64_MAX


def check_both(i: int, n: int, mode: RoundingMode) -> None:
    expected = ref_round(i, n, mode)
    got_vec = round_shift(np.array([i], dtype=np.int64), n, mode)
    assert got_vec.dtype == np.int64
    assert int(got_vec[0]) == expected, (i, n, mode)
    got_scalar = round_shift_scalar(np.int64(i), np.int64(n), int(mode))
    assert int(got_scalar) == expected, (i, n, mode, "scalar")


shifts = st.integers(0, MAX_SHIFT)
modes = st.sampled_from(MODES)


@st.composite
def bounded_i_and_n(draw):
    n = draw(shifts)
    half = (1 << (n - 1)) if n else 0
    lim = INT64_MAX - half
    i = draw(st.one_of(
        st.integers(-lim, lim),
        st.integers(-(1 << 20), 1 << 20),
        st.sampled_from([-lim, -lim + 1, -1, 0, 1, lim - 1, lim]),
    ))
    return i, n


@st.composite
def ties_and_near_ties(draw):
    """``I = k·2^n + s·2^(n−1) + d`` with ``s ∈ {−1, +1}``, ``d ∈ {−1, 0, 1}``, n ≥ 1."""
    n = draw(st.integers(1, MAX_SHIFT))
    kmax = (INT64_MAX >> n)
    k = draw(st.one_of(st.integers(-kmax, kmax), st.integers(-4, 4),
                       st.sampled_from([-kmax, -kmax + 1, kmax - 1, kmax])))
    s = draw(st.sampled_from([-1, 1]))
    d = draw(st.sampled_from([-1, 0, 1]))
    i = k * (1 << n) + s * (1 << (n - 1)) + d
    assume(in_precondition(i, n))
    return i, n


@st.composite
def multiplier_products(draw):
    """The general rescale ``round(x·M·2^-n) = R(x·M, n)``: x int32, M of 8–31 bits."""
    x = draw(st.one_of(st.integers(-(1 << 31), (1 << 31) - 1),
                       st.integers(-1000, 1000),
                       st.sampled_from([-(1 << 31), -1, 0, 1, (1 << 31) - 1])))
    bits = draw(st.integers(8, 31))
    m = draw(st.integers(1 << (bits - 1), (1 << bits) - 1))
    n = draw(shifts)
    return x, m, n


# ---------------------------------------------------------------------------
# fixed examples (§2 table; the same numbers are asserted in tests/docs)

@pytest.mark.parametrize("mode", MODES)
def test_n_zero_is_identity(mode):
    for i in (INT64_MIN, -7, -1, 0, 1, 7, INT64_MAX):
        assert int(round_shift(np.int64(i), 0, mode)) == i
        assert int(round_shift_scalar(np.int64(i), np.int64(0), int(mode))) == i


@pytest.mark.parametrize("mode", MODES)
def test_small_exhaustive(mode):
    """Every I in [−300, 300] at every shift 0..12: vector and scalar vs Fraction."""
    values = np.arange(-300, 301, dtype=np.int64)
    for n in range(13):
        exp = np.array([ref_round(int(i), n, mode) for i in values], dtype=np.int64)
        np.testing.assert_array_equal(round_shift(values, n, mode), exp)
        got_s = [int(round_shift_scalar(np.int64(i), np.int64(n), int(mode))) for i in values[::7]]
        assert got_s == list(exp[::7])


def test_mode_names_accepted():
    v = np.array([6, 10, -6, -10], dtype=np.int64)
    for m in MODES:
        np.testing.assert_array_equal(round_shift(v, 2, m.spec_name), round_shift(v, 2, m))
        np.testing.assert_array_equal(round_shift(v, 2, m.spec_name.upper()), round_shift(v, 2, m))
    with pytest.raises(ValueError, match="unknown rounding mode"):
        round_shift(v, 2, "nearest")


@pytest.mark.parametrize("n", [-1, 63, 64])
def test_shift_out_of_range_rejected(n):
    with pytest.raises(ValueError):
        round_shift(np.array([1], dtype=np.int64), n, "half_up")
    with pytest.raises(ValueError):
        round_shift(np.array([1, 2], dtype=np.int64), np.array([0, n]), "floor")


@pytest.mark.parametrize("mode", ["floor", "half_even", "half_zero"])
def test_full_int64_range_floor_and_half_even(mode):
    m = RoundingMode.parse(mode)
    edge = [INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX]
    for i in edge:
        for n in range(MAX_SHIFT + 1):
            check_both(i, n, m)


# ---------------------------------------------------------------------------
# properties

@settings(max_examples=600, deadline=None)
@given(bounded_i_and_n(), modes)
def test_matches_fraction_reference(i_n, mode):
    i, n = i_n
    check_both(i, n, mode)


@settings(max_examples=600, deadline=None)
@given(ties_and_near_ties(), modes)
def test_ties_and_near_ties(i_n, mode):
    i, n = i_n
    check_both(i, n, mode)


@settings(max_examples=400, deadline=None)
@given(multiplier_products(), modes)
def test_general_rescale_x_times_m(xmn, mode):
    x, m, n = xmn
    i = x * m  # |x·M| < 2^62: always within the precondition
    assert in_precondition(i, n)
    check_both(i, n, mode)
    if mode is RoundingMode.HALF_UP:  # round(x·M·2^-n), ties up, straight from the definition
        assert int(round_shift(np.array([x], dtype=np.int64) * m, n, mode)[0]) == \
            math.floor(Fraction(x) * m / 2**n + Fraction(1, 2))


@settings(max_examples=400, deadline=None)
@given(st.integers(INT64_MIN, INT64_MAX), shifts,
       st.sampled_from([RoundingMode.FLOOR, RoundingMode.HALF_EVEN, RoundingMode.HALF_ZERO]))
def test_floor_half_even_any_int64(i, n, mode):
    check_both(i, n, mode)


@settings(max_examples=200, deadline=None)
@given(st.lists(bounded_i_and_n(), min_size=1, max_size=40), modes)
def test_vectorised_and_scalar_agree_with_per_element_shifts(pairs, mode):
    """Arrays with a per-element shift array (and a scalar shift) vs the numba scalar."""
    iv = np.array([p[0] for p in pairs], dtype=np.int64)
    nv = np.array([p[1] for p in pairs], dtype=np.int64)
    got = round_shift(iv, nv, mode)
    assert got.shape == iv.shape and got.dtype == np.int64
    scalar = np.array([round_shift_scalar(i, n, int(mode)) for i, n in zip(iv, nv)], dtype=np.int64)
    ref = np.array([ref_round(int(i), int(n), mode) for i, n in zip(iv, nv)], dtype=np.int64)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(scalar, ref)
    # one scalar shift for the whole array (the common case), on a 2-D shape
    n0 = int(nv.min())
    iv2 = iv.reshape(1, -1)
    got2 = round_shift(iv2, n0, mode)
    assert got2.shape == iv2.shape
    np.testing.assert_array_equal(got2[0], [ref_round(int(i), n0, mode) for i in iv])


@settings(max_examples=300, deadline=None)
@given(bounded_i_and_n())
def test_mode_relations(i_n):
    """Cross-mode sanity: floor ≤ every mode ≤ floor + 1; half modes differ only on ties."""
    i, n = i_n
    res = {m: int(round_shift(np.array([i]), n, m)[0]) for m in MODES}
    fl = res[RoundingMode.FLOOR]
    for m in MODES:
        assert fl <= res[m] <= fl + 1
    tie = n >= 1 and (i % (1 << n)) == (1 << (n - 1))
    if not tie:
        assert res[RoundingMode.HALF_UP] == res[RoundingMode.HALF_AWAY] == res[RoundingMode.HALF_EVEN] == \
            res[RoundingMode.HALF_ZERO]
    else:  # a tie goes to whichever neighbour is nearer zero
        assert res[RoundingMode.HALF_ZERO] == (fl + 1 if i < 0 else fl)


def test_half_zero_ties_toward_zero():
    # §2's worked rows (n = 2) and ties at the largest shift, both signs
    got = round_shift(np.array([6, 10, -6, -10, -7, 5, 2, -2], dtype=np.int64), 2, "half_zero")
    assert got.tolist() == [1, 2, -1, -2, -2, 1, 0, 0]
    for i, n, want in ((1 << 61, 62, 0), (-(1 << 61), 62, 0), (3 << 61, 62, 1), (-(3 << 61), 62, -1),
                       (7 << 60, 61, 3), (-(7 << 60), 61, -3), (INT64_MIN, 62, -2)):
        assert int(round_shift_scalar(np.int64(i), np.int64(n), int(RoundingMode.HALF_ZERO))) == want


def test_numerics_keeps_its_parsed_modes_and_serialises_its_fields_only():
    """Numerics parses rounding / overflow once; to_json, equality and hashing still see the fields
    alone (the parsed enums sit in the instance dict); an unknown name raises at every read."""
    from intsim.numerics import Numerics
    from intsim.spec_enum import OverflowPolicy

    n = Numerics(rounding="half_even", overflow="wrap")
    assert n.rounding_mode is RoundingMode.HALF_EVEN and n.overflow_policy is OverflowPolicy.WRAP
    assert n.to_json() == {"rounding": "half_even", "realization": "split", "overflow": "wrap", "acc_bits": 32,
                           "stream_bits": 24, "mult_bits": 31}
    fresh = Numerics(rounding="half_even", overflow="wrap")
    assert Numerics(**n.to_json()) == n == fresh and hash(n) == hash(fresh)
    bad = Numerics(rounding="nearest")
    for _ in range(2):
        with pytest.raises(ValueError, match="unknown rounding mode"):
            bad.rounding_mode
