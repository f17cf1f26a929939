"""Fixed-point helpers (docs/arithmetic.md §2.1, §6.11, §6.12) against exact references.

* ``isqrt`` vs :func:`math.isqrt` (perfect squares, ``k²−1``, ``k²+2k``, random,
  up to 2^53 and up to 2^62, plus the int64 maximum);
* ``reciprocal_multiplier`` vs round-half-up of the Fraction ``2^k/N``;
* ``encode_multiplier`` vs a Fraction search of §2.1 (``M`` within ``bits``,
  ``n`` maximal, round-half-up).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim.fixedpoint import encode_multiplier, isqrt, reciprocal_multiplier

INT64_MAX = (1 << 63) - 1


def rhu(x: Fraction) -> int:
    """round_half_up of a rational: floor(x + 1/2)."""
    return math.floor(x + Fraction(1, 2))


# ---------------------------------------------------------------------------
# isqrt

def square_edges(k: int) -> list[int]:
    """k², k²−1, k²+1, k²+2k (= (k+1)²−1) — all that fit in [0, 2^63−1]."""
    cands = [k * k, k * k - 1, k * k + 1, k * k + 2 * k]
    return [c for c in cands if 0 <= c <= INT64_MAX]


def check_isqrt(vals: list[int]) -> None:
    arr = np.array(vals, dtype=np.int64)
    got = isqrt(arr)
    assert got.dtype == np.int64 and got.shape == arr.shape
    exp = [math.isqrt(v) for v in vals]
    bad = [(v, int(g), e) for v, g, e in zip(vals, got.tolist(), exp) if int(g) != e]
    assert not bad, f"isqrt mismatches (v, got, want): {bad[:5]}"


def test_isqrt_small_exhaustive():
    check_isqrt(list(range(0, 100_001)))


@pytest.mark.parametrize("top_bits", [53, 62])
def test_isqrt_square_edges_around_powers(top_bits):
    """Squares and neighbours for k near 2^j (j ≤ top_bits/2) and near √(2^top_bits)."""
    vals = []
    for j in range(0, top_bits // 2 + 1):
        for k in ((1 << j) - 1, 1 << j, (1 << j) + 1):
            if k >= 0:
                vals += square_edges(k)
    kt = math.isqrt(1 << top_bits)
    for k in range(kt - 50, kt + 3):
        vals += square_edges(k)
    for e in range(top_bits + 1):
        vals += [(1 << e) - 1, 1 << e, (1 << e) + 1]
    vals = [v for v in vals if 0 <= v <= max(1 << top_bits, 0)]
    check_isqrt(vals)


def test_isqrt_float_trouble_spots():
    """Values where float64 sqrt rounds up across an integer: (k+1)²−1 for large k."""
    vals = []
    for k in (94906265, 94906266, 2**26 + 1, 2**31 - 1, 3037000499, 3037000498, 2**30 + 12345):
        vals += square_edges(k)
    vals += [2**53 - 1, 2**53, 2**53 + 1, 2**62 - 1, 2**62, 2**62 + 1, INT64_MAX - 1, INT64_MAX]
    check_isqrt(vals)


def test_isqrt_shape_and_zero_d():
    a = np.array([[0, 1, 2], [3, 4, 15]], dtype=np.int64)
    got = isqrt(a)
    assert got.shape == (2, 3)
    assert got.tolist() == [[0, 1, 1], [1, 2, 3]]
    assert int(isqrt(np.int64(10))) == 3
    assert isqrt(np.zeros((0,), dtype=np.int64)).shape == (0,)


def test_isqrt_negative_refused():
    with pytest.raises(ValueError):
        isqrt(np.array([4, -1], dtype=np.int64))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.integers(0, 1 << 53),
    st.integers(0, 1 << 62),
    st.integers(0, 1 << 31).flatmap(lambda k: st.sampled_from(square_edges(k) or [0])),
    st.integers(1, 3037000499).map(lambda k: k * k - 1),
    st.integers(0, 3037000498).map(lambda k: k * k + 2 * k),
), min_size=1, max_size=50))
def test_isqrt_random(vals):
    check_isqrt(vals)


# ---------------------------------------------------------------------------
# reciprocal_multiplier (§6.11)

def test_reciprocal_spec_examples():
    assert reciprocal_multiplier(3, 16) == 21845
    assert reciprocal_multiplier(4, 16) == 16384
    assert reciprocal_multiplier(1, 0) == 1
    assert reciprocal_multiplier(1, 62) == 1 << 62


def test_reciprocal_exhaustive_small():
    for k in range(0, 21):
        for n in range(1, 300):
            assert reciprocal_multiplier(n, k) == rhu(Fraction(1 << k, n)), (n, k)


def test_reciprocal_ties():
    """2^k/N exactly half-way: N = 2^(k+1)/odd — e.g. 2^3/16 = 0.5 → 1; 2^4/32 → 1; 3·… ties."""
    for k in range(0, 30):
        for j in range(1, 6):
            n = 1 << (k + j)  # 2^k / 2^(k+j) = 2^-j: a tie only for j = 1 (0.5 → 1)
            assert reciprocal_multiplier(n, k) == rhu(Fraction(1 << k, n))
    assert reciprocal_multiplier(2, 0) == 1  # 0.5 rounds up
    assert reciprocal_multiplier(4, 1) == 1  # 0.5 rounds up
    assert reciprocal_multiplier(4, 2) == 1
    assert reciprocal_multiplier(8, 2) == 1  # 0.5
    assert reciprocal_multiplier(6, 3) == 1  # 8/6 = 1.333
    assert reciprocal_multiplier(16, 3) == 1  # 0.5


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 1 << 26), st.integers(0, 62))
def test_reciprocal_random(n, k):
    got = reciprocal_multiplier(n, k)
    assert isinstance(got, int)
    assert got == rhu(Fraction(1 << k, n))


def test_reciprocal_rejects_bad_args():
    with pytest.raises(ValueError):
        reciprocal_multiplier(0, 16)
    with pytest.raises(ValueError):
        reciprocal_multiplier(4, 63)
    with pytest.raises(ValueError):
        reciprocal_multiplier(4, -1)


# ---------------------------------------------------------------------------
# encode_multiplier (§2.1)

def ref_encode(m: Fraction, bits: int) -> tuple[int, int]:
    """Largest n ≤ 62 with round_half_up(m·2^n) < 2^bits (linear search, exact)."""
    for n in range(62, -1, -1):
        M = rhu(m * (1 << n))
        if M < (1 << bits):
            return M, n
    raise ValueError("no n ≥ 0")


def encodable(m: Fraction, bits: int) -> bool:
    """m admits an encoding with 2^(bits−1) ≤ M < 2^bits and 0 ≤ n ≤ 62."""
    try:
        M, n = ref_encode(m, bits)
    except ValueError:
        return False
    return (1 << (bits - 1)) <= M


def test_encode_spec_example():
    assert encode_multiplier(0.1, 16) == (52429, 19)
    M, n = encode_multiplier(0.1, 16)
    assert abs(Fraction(M, 1 << n) - Fraction("0.1000003815")) < Fraction(1, 10**10)


def test_encode_exact_powers_and_boundaries():
    for bits in (8, 16, 24, 31):
        # m = 1: M = 2^(bits−1), n = bits − 1
        assert encode_multiplier(1.0, bits) == (1 << (bits - 1), bits - 1)
        # just below 2^bits·2^-n rounding up to 2^bits forces one shift less
        m = Fraction((1 << bits) - 1, 1) + Fraction(1, 2)  # rounds (half up) to 2^bits at n = 0
        assert ref_encode(m / 2**10, bits) == encode_multiplier(m / 2**10, bits)
        assert encode_multiplier(m / 2**10, bits)[0] == 1 << (bits - 1)


@settings(max_examples=500, deadline=None)
@given(st.integers(8, 31), st.floats(min_value=2.0**-40, max_value=2.0**8, allow_nan=False,
                                      allow_infinity=False, exclude_min=False))
def test_encode_float_random(bits, m):
    mf = Fraction(m)
    if not encodable(mf, bits):
        return  # m ≥ ~2^bits: no n ≥ 0; tested separately
    M, n = encode_multiplier(m, bits)
    assert (M, n) == ref_encode(mf, bits), (m, bits)
    assert (1 << (bits - 1)) <= M < (1 << bits)
    assert 0 <= n <= 62
    assert M == rhu(mf * (1 << n))
    if n < 62:
        assert rhu(mf * (1 << (n + 1))) >= (1 << bits)  # n is maximal


@settings(max_examples=300, deadline=None)
@given(st.integers(8, 31), st.integers(1, (1 << 31) - 1), st.integers(-30, 40))
def test_encode_near_ties(bits, M0, e):
    """m = (M0 + 1/2)·2^-e and neighbours: ties in m·2^n are decided upward."""
    for delta in (Fraction(1, 2), Fraction(1, 2) - Fraction(1, 2**20), Fraction(1, 2) + Fraction(1, 2**20)):
        m = (M0 + delta) / Fraction(2) ** e
        assert float(m) == m  # < 52 significant bits: exact as a float
        if not encodable(m, bits):
            continue
        assert encode_multiplier(float(m), bits) == ref_encode(m, bits), (float(m), bits)


def test_encode_rejects_nonpositive():
    for m in (0.0, -0.1, -1):
        with pytest.raises(ValueError):
            encode_multiplier(m, 16)


def test_encode_rejects_too_large():
    with pytest.raises(ValueError):
        encode_multiplier(float(1 << 16), 16)  # round(m) = 2^16 ≥ 2^16 at n = 0
