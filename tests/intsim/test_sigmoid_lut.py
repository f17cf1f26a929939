"""The sigmoid case of the ``lut`` table (``fn = "sigmoid"``) and the index rule (docs/arithmetic.md §6.13, §6.17).

Entries are checked against an evaluation independent of ``decimal``: rigorous
rational bounds on ``e^-x`` (Taylor series with a remainder bound after argument
halving, then repeated squaring, all in :class:`fractions.Fraction` with outward
truncation), which decide ``round_half_up(σ(x)·2^f)`` exactly. ``mpmath`` (if
installed) gives a second cross-check.

Symmetry: ``σ(−x) = 1 − σ(x)``, so with ``S = 2^f`` and ``y = σ(x)·S``,
``lut(−x) = round_half_up(S − y) = S − round_half_up(y)`` *unless* ``y`` is a
half-integer (round-half-up is not odd-symmetric on ties: ``⌊S − y + ½⌋ = S − ⌈y − ½⌉``).
For ``x ≠ 0`` on the dyadic grid, ``e^x`` is transcendental so ``y`` is never a
half-integer and ``lut[i] + lut[−i] = 2^f`` holds exactly. At ``x = 0``,
``y = 2^(f−1)``: an integer for ``f ≥ 1`` (``2·lut = 2^f``), and the tie ``½ → 1``
for ``f = 0``, where the identity fails (``1 + 1 ≠ 1``).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim.rounding import RoundingMode
from intsim.lut import build_lut, lut_index
from tests.exact_reference import ref_round_shift as ref_round

MODES = list(RoundingMode)


def build_sigmoid_lut(imin: int, imax: int, lut_exp: int, out_frac: int) -> np.ndarray:
    """The §6.13 table: ``lut[j] = round_half_up(σ((imin+j)·2^-lut_exp)·2^out_frac)``, int32."""
    return build_lut("sigmoid", imin, imax, lut_exp, out_frac)


# ---------------------------------------------------------------------------
# independent exact reference


def _trunc_down(v: Fraction, p: int) -> Fraction:
    return Fraction(math.floor(v * (1 << p)), 1 << p)


def _trunc_up(v: Fraction, p: int) -> Fraction:
    return Fraction(math.ceil(v * (1 << p)), 1 << p)


def exp_bounds(y: Fraction, p: int) -> tuple[Fraction, Fraction]:
    """Rationals lo ≤ e^y ≤ hi, about 2^-p relative apart (after squarings)."""
    if y == 0:
        return Fraction(1), Fraction(1)
    r = 0
    while abs(y) / (1 << r) > Fraction(1, 2):
        r += 1
    z = y / (1 << r)  # |z| ≤ 1/2
    s, term, i = Fraction(0), Fraction(1), 0
    while True:
        s += term
        i += 1
        term = term * z / i
        # |remainder after this point| ≤ 2·|term| for |z| ≤ 1/2 (geometric tail, ratio ≤ 1/2)
        if abs(term) < Fraction(1, 1 << (p + 8)):
            break
    rem = 2 * abs(term)
    lo, hi = _trunc_down(s - rem, p + 8), _trunc_up(s + rem, p + 8)
    for _ in range(r):
        lo, hi = _trunc_down(lo * lo, p + 8), _trunc_up(hi * hi, p + 8)
    return lo, hi


def ref_entry(m: int, lut_exp: int, out_frac: int) -> int:
    """round_half_up(σ(m·2^-lut_exp)·2^out_frac), decided with rigorous bounds."""
    x = Fraction(m) / Fraction(2) ** lut_exp
    S = 1 << out_frac
    if x > 200:  # e^-x < 2^-288: the entry is S (S·e^-x ≪ 1/2)
        return S
    if x < -200:
        return 0
    p = 128
    while True:
        elo, ehi = exp_bounds(-x, p)  # bounds on e^-x
        vlo, vhi = Fraction(S) / (1 + ehi), Fraction(S) / (1 + elo)
        a, b = math.floor(vlo + Fraction(1, 2)), math.floor(vhi + Fraction(1, 2))
        if a == b:
            return a
        p *= 2
        assert p < 1 << 14, "undecidable within 2^-16384 (would be a tie)"


def ref_table(imin, imax, lut_exp, out_frac):
    return [ref_entry(m, lut_exp, out_frac) for m in range(imin, imax + 1)]


# ---------------------------------------------------------------------------
# table contents


def test_spec_example():
    lut = build_sigmoid_lut(-128, 127, 4, 15)
    assert lut.dtype == np.int32 and lut.shape == (256,)
    assert int(lut[0 + 128]) == 16384  # σ(0)·2^15
    assert int(lut[16 + 128]) == 23955  # σ(1) = 0.7310585786… · 32768 = 23955.4…


def test_reference_self_check():
    """The reference itself on known values (σ(1)·2^15 = 23955.44…, σ(0) = 1/2)."""
    assert ref_entry(16, 4, 15) == 23955
    assert ref_entry(0, 4, 15) == 16384
    assert ref_entry(0, 0, 0) == 1  # tie ½ → 1
    lo, hi = exp_bounds(Fraction(1), 128)
    assert lo <= Fraction(2718281828459045, 10**15) + Fraction(1, 10**15) and hi >= Fraction(2718281828459045, 10**15)


@pytest.mark.parametrize("imin,imax,lut_exp,out_frac", [
    (-128, 127, 4, 15),
    (-64, 64, 3, 8),
    (-5, 5, 0, 0),
    (-40, 40, -2, 12),       # step 4: coarse grid
    (-300, 300, 2, 20),      # reaches |x| = 75 (the far-tail shortcut)
    (-1024, 1023, 7, 30),    # finest output grid that fits int32
    (1000, 1100, 6, 24),     # a window not containing 0
])
def test_entries_match_exact_reference(imin, imax, lut_exp, out_frac):
    lut = build_sigmoid_lut(imin, imax, lut_exp, out_frac)
    assert lut.dtype == np.int32 and lut.shape == (imax - imin + 1,)
    exp = ref_table(imin, imax, lut_exp, out_frac)
    bad = [(imin + j, int(g), e) for j, (g, e) in enumerate(zip(lut.tolist(), exp)) if g != e]
    assert not bad, f"(i, got, want): {bad[:5]}"


@settings(max_examples=300, deadline=None)
@given(st.integers(-3, 14), st.integers(0, 30), st.data())
def test_random_single_entries(lut_exp, out_frac, data):
    lim = 80 * (1 << max(lut_exp, 0))
    m = data.draw(st.integers(-lim, lim) | st.integers(-16, 16))
    got = build_sigmoid_lut(m, m, lut_exp, out_frac)
    assert got.shape == (1,)
    assert int(got[0]) == ref_entry(m, lut_exp, out_frac), (m, lut_exp, out_frac)


def test_mpmath_cross_check():
    mpmath = pytest.importorskip("mpmath")
    old = mpmath.mp.dps
    mpmath.mp.dps = 80
    try:
        for lut_exp, out_frac in ((4, 15), (8, 30), (0, 3), (5, 0)):
            imin, imax = -(1 << (lut_exp + 3)), (1 << (lut_exp + 3))
            lut = build_sigmoid_lut(imin, imax, lut_exp, out_frac)
            for j, m in enumerate(range(imin, imax + 1)):
                x = mpmath.mpf(m) / mpmath.mpf(2) ** lut_exp
                y = mpmath.mpf(1 << out_frac) / (1 + mpmath.exp(-x))
                want = int(mpmath.floor(y + mpmath.mpf("0.5")))
                assert int(lut[j]) == want, (m, lut_exp, out_frac)
    finally:
        mpmath.mp.dps = old


@pytest.mark.parametrize("lut_exp,out_frac", [(4, 15), (2, 0), (0, 1), (6, 30), (-1, 7)])
def test_monotone_and_bounded(lut_exp, out_frac):
    lut = build_sigmoid_lut(-700, 700, lut_exp, out_frac).astype(np.int64)
    assert np.all(np.diff(lut) >= 0)
    assert lut.min() >= 0 and lut.max() <= (1 << out_frac)


@pytest.mark.parametrize("lut_exp,out_frac", [(4, 15), (3, 8), (0, 0), (0, 1), (5, 30), (-2, 4), (7, 0)])
def test_symmetry(lut_exp, out_frac):
    """lut[i] + lut[−i] = 2^f for every i ≠ 0; at i = 0 only when f ≥ 1 (see module docstring)."""
    n = 400
    lut = build_sigmoid_lut(-n, n, lut_exp, out_frac).astype(np.int64)
    S = 1 << out_frac
    pos, neg = lut[n + 1:], lut[:n][::-1]  # lut at i and −i for i = 1..n
    np.testing.assert_array_equal(pos + neg, np.full(n, S))
    if out_frac >= 1:
        assert 2 * int(lut[n]) == S
    else:
        assert int(lut[n]) == 1 and 2 * int(lut[n]) != S  # the tie ½ → 1 breaks the identity


def test_argument_checks():
    with pytest.raises(ValueError):
        build_sigmoid_lut(5, 4, 4, 15)
    with pytest.raises(ValueError):
        build_sigmoid_lut(-4, 4, 4, 31)  # 2^31 does not fit int32
    with pytest.raises(ValueError):
        build_sigmoid_lut(-4, 4, 4, -1)
    with pytest.raises(TypeError):
        build_sigmoid_lut(-4.0, 4, 4, 15)
    lut = build_sigmoid_lut(-4, 4, 0, 30)
    assert int(lut.max()) <= np.iinfo(np.int32).max


# ---------------------------------------------------------------------------
# index rule




def ref_index(xs, f_in, lut_exp, imin, imax, mode):
    out, sats = [], 0
    for x in xs:
        t = ref_round(x * (1 << max(0, lut_exp - f_in)), max(0, f_in - lut_exp), mode)
        i = min(max(t, imin), imax)
        sats += i != t
        out.append(i)
    return out, sats


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 30), st.integers(-2, 30), st.integers(-300, 300), st.integers(0, 600),
       st.sampled_from(MODES), st.data())
def test_index_matches_reference(f_in, lut_exp, imin, width, mode, data):
    imax = imin + width
    lim = 1 << 39  # a 40-bit stream at most (§8)
    shift_left = max(0, lut_exp - f_in)
    if shift_left:
        lim = min(lim, (1 << (62 - shift_left)))
    # the stream value of each clamp edge, its neighbours and its half-steps
    scale_pts = []
    for edge in (imin, imax, 0):
        if f_in >= lut_exp:
            base = edge << (f_in - lut_exp)
            h = (1 << (f_in - lut_exp - 1)) if f_in > lut_exp else 0
            scale_pts += [base, base - 1, base + 1, base + h, base - h, base + h - 1, base - h + 1]
        else:
            scale_pts += [edge, edge - 1, edge + 1]
    xs = data.draw(st.lists(st.one_of(st.integers(-lim, lim), st.sampled_from(scale_pts)),
                            min_size=1, max_size=40))
    xs = [x for x in xs if -lim <= x <= lim] or [0]
    got, sats = lut_index(np.array(xs, dtype=np.int64), f_in, lut_exp, imin, imax, mode)
    exp, exp_sats = ref_index(xs, f_in, lut_exp, imin, imax, mode)
    assert got.dtype == np.int64 and got.shape == (len(xs),)
    assert got.tolist() == exp
    assert sats == exp_sats
    assert all(imin <= i <= imax for i in got.tolist())


def test_index_spec_example_and_lookup():
    """k_lut = 4, f_in = 16: x = 1.0 (X = 65536) → i = 16 → 23955; far inputs clamp."""
    imin, imax = -128, 127
    lut = build_sigmoid_lut(imin, imax, 4, 15)
    X = np.array([65536, 0, -(1 << 30), 1 << 30, 4095, 4096, -4096, -4097], dtype=np.int64)
    i, sats = lut_index(X, 16, 4, imin, imax, "half_up")
    assert i.tolist() == [16, 0, -128, 127, 1, 1, -1, -1]
    assert sats == 2
    out = lut[i - imin]
    assert int(out[0]) == 23955 and int(out[1]) == 16384


def test_index_saturation_counts_per_side():
    X = np.arange(-20, 21, dtype=np.int64)  # f_in = lut_exp: i = X
    i, sats = lut_index(X, 5, 5, -3, 7, "floor")
    assert i.tolist() == [min(max(x, -3), 7) for x in range(-20, 21)]
    assert sats == (20 - 3) + (20 - 7)
    i, sats = lut_index(X.reshape(41, 1), 5, 5, -100, 100, "half_even")
    assert i.shape == (41, 1) and sats == 0


def test_index_left_shift_overflow_refused():
    with pytest.raises(OverflowError):
        lut_index(np.array([1 << 40], dtype=np.int64), 0, 30, -10, 10, "half_up")
    # the largest value that fits is accepted
    ok = np.array([(1 << 33) - 1, -(1 << 33)], dtype=np.int64)
    i, sats = lut_index(ok, 0, 30, -10, 10, "half_up")
    assert i.tolist() == [10, -10] and sats == 2


def test_index_shift_too_large_refused():
    with pytest.raises(ValueError):
        lut_index(np.array([1], dtype=np.int64), 70, 4, -10, 10, "half_up")
