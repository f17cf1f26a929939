"""Stream ops (arithmetic.md §6) and fixed-point helpers against pure-Python references.

Each reference is the spec formula evaluated element by element in Python ints
(or exact fractions for the real forms); the worked examples of the spec are
reproduced exactly.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim.artifact import Numerics
from intsim.fixedpoint import encode_multiplier, isqrt, reciprocal_multiplier
from intsim.ops.elementwise import add, concat, leaky_relu, mul, prelu, relu, split
from intsim.ops.image import image_in, image_out
from intsim.ops.pooling import mean_pool, std_pool
from intsim.ops.resample import (
    bilinear_taps,
    pixel_shuffle,
    upsample_bilinear,
    upsample_nearest,
)
from intsim.ops.lut import lut
from intsim.overflow import EngineOverflowError
from intsim.rounding import RoundingMode
from tests.exact_reference import round_rational as rnd

MODES = RoundingMode.names()  # every mode of §2, a new one included




def R(I: int, n: int, mode: str) -> int:
    return rnd(Fraction(I, 1 << n), mode)


def ovf(v: int, bits: int, policy: str) -> tuple[int, int]:
    """§4: (value, events)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if lo <= v <= hi:
        return v, 0
    if policy == "error":
        raise OverflowError
    if policy == "saturate":
        return (hi if v > hi else lo), 1
    return ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)), 1


def store(vals, bits, policy):
    """Apply ovf to a nested list; return (array, events)."""
    flat = np.asarray(vals, dtype=object)
    out, ev = [], 0
    for v in flat.reshape(-1):
        y, e = ovf(int(v), bits, policy)
        out.append(y)
        ev += e
    return np.array(out, dtype=np.int64).reshape(flat.shape), ev


def rand_stream(rng, shape, bits=24):
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape).astype(np.int64)


# --------------------------------------------------------------------------
# fixed point


def test_encode_multiplier_examples():
    assert encode_multiplier(0.1, 16) == (52429, 19)  # §2.1
    assert encode_multiplier(2**-0.5, 31) == (1518500250, 31)  # §2: M = round(2^31/√2)
    assert R(1000 * 1518500250, 31, "half_up") == 707
    assert encode_multiplier(0.05, 12) == (3277, 16)  # the slope of §6.7
    assert encode_multiplier(Fraction(1, 3), 8) == (171, 9)
    assert encode_multiplier(1, 8) == (128, 7)


@settings(max_examples=300, deadline=None)
@given(num=st.integers(1, 1 << 40), den=st.integers(1, 1 << 40), bits=st.integers(8, 31))
def test_encode_multiplier_property(num, den, bits):
    m = Fraction(num, den)
    if math.floor(m + Fraction(1, 2)) >= 2**bits:  # would need a negative shift (§2: n in [0, 62])
        with pytest.raises(ValueError, match="too large"):
            encode_multiplier(m, bits)
        return
    M, n = encode_multiplier(m, bits)
    assert M == math.floor(m * 2**n + Fraction(1, 2))
    assert M < 2**bits
    assert 0 <= n <= 62
    if n < 62:  # n is the largest shift that keeps M < 2^bits
        assert math.floor(m * 2 ** (n + 1) + Fraction(1, 2)) >= 2**bits
        assert M >= 2 ** (bits - 1)


def test_encode_multiplier_errors():
    for bad in (0, -0.5):
        with pytest.raises(ValueError):
            encode_multiplier(bad, 16)
    with pytest.raises(ValueError, match="too large"):
        encode_multiplier(70000, 16)


def test_reciprocal_multiplier():
    assert reciprocal_multiplier(3, 16) == 21845  # §6.11
    assert reciprocal_multiplier(4, 16) == 16384  # §6.12
    for N in range(1, 300):
        for k in (0, 1, 5, 16, 30, 62):
            assert reciprocal_multiplier(N, k) == math.floor(Fraction(2**k, N) + Fraction(1, 2))


@settings(max_examples=200, deadline=None)
@given(vals=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=30))
def test_isqrt_property(vals):
    extra = []
    for v in vals[:5]:
        s = math.isqrt(v)
        extra += [x for x in (s * s - 1, s * s, s * s + 1, (s + 1) ** 2 - 1) if 0 <= x < 2**63]
    vals = vals + extra + [0, 1, 2, 3, 2**62, 2**63 - 1, 3037000499**2, 3037000499**2 - 1]
    r = isqrt(np.array(vals, dtype=np.int64))
    assert r.tolist() == [math.isqrt(v) for v in vals]


def test_isqrt_shape_and_negative():
    assert isqrt(np.array([[10, 16]])).tolist() == [[3, 4]]
    with pytest.raises(ValueError):
        isqrt(np.array([-1]))


# --------------------------------------------------------------------------
# image_in / image_out


def test_image_in_example_6_1():
    """EDSR rgb_range 255, mean 0.4488: P = 200 → X = 5606998 (85.556)."""
    assert round(-114.444 * 2**16) == -7500202
    img = np.full((1, 1, 1), 200, dtype=np.uint8)
    x, ev = image_in(img, np.array([65536]), np.array([-7500202]), exp=16, f_out=16)
    assert x.tolist() == [[[5606998]]] and ev["stream_overflow"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_image_in_random(mode):
    rng = np.random.default_rng(MODES.index(mode))
    img = rng.integers(0, 256, size=(3, 4, 3)).astype(np.uint8)
    m = rng.integers(1 << 18, 1 << 20, size=3)
    o = rng.integers(-(1 << 27), 1 << 27, size=3)
    for policy, bits in (("saturate", 24), ("wrap", 16)):
        num = Numerics(rounding=mode, overflow=policy, stream_bits=bits)
        x, ev = image_in(img, m, o, exp=20, f_out=10, numerics=num)
        ref, rev = store([[[R(int(img[h, w, c]) * int(m[c]) + int(o[c]), 10, mode) for c in range(3)]
                           for w in range(4)] for h in range(3)], bits, policy)
        np.testing.assert_array_equal(x, ref)
        assert ev["stream_overflow"] == rev
    assert rev > 0  # the 16-bit case overflows


@pytest.mark.parametrize("mode", MODES)
def test_image_out_random(mode):
    rng = np.random.default_rng(10 + MODES.index(mode))
    X = rng.integers(-(1 << 20), 1 << 20, size=(4, 3, 3)).astype(np.int64)
    m = rng.integers(1, 1 << 10, size=3)
    o = rng.integers(-(1 << 12), 1 << 12, size=3)
    f_in, e = 12, 4
    p, ev = image_out(X, m, o, exp=e, f_in=f_in, numerics=Numerics(rounding=mode))
    ref, sats = [], 0
    for v, c in zip(X.reshape(-1), np.tile(np.arange(3), 12)):
        t = R(int(v) * int(m[c]) + int(o[c]) * 2**f_in, f_in + e, mode)
        ref.append(min(max(t, 0), 255))
        sats += ref[-1] != t
    assert p.dtype == np.uint8
    assert p.reshape(-1).tolist() == ref
    assert ev["saturations"] == sats and sats > 0


def test_image_out_real_form():
    """P = clamp(RND(x·a + b), 0, 255) with x = X·2^-f (§6.2 real form), inverse of the §6.1 example."""
    X = np.array([[[5606998]]])
    p, _ = image_out(X, np.array([65536]), np.array([7500202]), exp=16, f_in=16)
    assert p.tolist() == [[[200]]]


# --------------------------------------------------------------------------
# add / concat / split / relu


def test_add_example_6_3():
    x, _ = add(np.array([[[3]]]), np.array([[[5]]]), f_a=1, f_b=2, f_out=1)
    assert x.tolist() == [[[6]]]


@pytest.mark.parametrize("mode", MODES)
def test_add_random(mode):
    rng = np.random.default_rng(20 + MODES.index(mode))
    for f_a, f_b, f_o in ((3, 7, 5), (10, 2, 12), (4, 4, 0), (0, 9, 9)):
        a, b = rand_stream(rng, (3, 2, 2)), rand_stream(rng, (3, 2, 2))
        num = Numerics(rounding=mode, overflow="wrap")
        x, ev = add(a, b, f_a=f_a, f_b=f_b, f_out=f_o, numerics=num)
        F = max(f_a, f_b, f_o)
        ref, rev = store([R(int(p) * 2 ** (F - f_a) + int(q) * 2 ** (F - f_b), F - f_o, mode)
                          for p, q in zip(a.reshape(-1), b.reshape(-1))], 24, "wrap")
        assert x.reshape(-1).tolist() == ref.tolist()
        assert ev["stream_overflow"] == rev


def test_add_error_policy():
    a = np.full((1, 1, 1), (1 << 23) - 1)
    with pytest.raises(EngineOverflowError, match="res.add"):
        add(a, a, f_a=0, f_b=0, f_out=0, numerics=Numerics(overflow="error"), name="res.add")


def test_concat_random():
    rng = np.random.default_rng(30)
    xs = [rand_stream(rng, (2, 3, c)) for c in (1, 2, 3)]
    fracs = [4, 10, 7]
    for mode in MODES:
        y, ev = concat(xs, fracs, f_out=7, numerics=Numerics(rounding=mode, overflow="saturate"))
        ref, rev = [], 0
        for x, f in zip(xs, fracs):
            F = max(f, 7)
            r, e = store([[[R(int(v) * 2 ** (F - f), F - 7, mode) for v in px] for px in row] for row in x], 24,
                         "saturate")
            ref.append(r)
            rev += e
        np.testing.assert_array_equal(y, np.concatenate(ref, axis=2))
        assert ev["stream_overflow"] == rev and rev > 0  # f 4 -> 7 overflows large values


def test_split_relu():
    x = np.arange(-12, 12).reshape(2, 2, 6)
    parts, ev = split(x, [1, 2, 3])
    assert [p.shape for p in parts] == [(2, 2, 1), (2, 2, 2), (2, 2, 3)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=2), x)
    with pytest.raises(ValueError):
        split(x, [1, 2])
    y, ev = relu(x)
    assert y.tolist() == np.maximum(x, 0).tolist() and ev == {"acc_overflow": 0, "stream_overflow": 0,
                                                              "saturations": 0}


# --------------------------------------------------------------------------
# leaky_relu / prelu / mul


def test_leaky_example_6_7():
    x, _ = leaky_relu(np.array([[[-1000, 1000, 0]]]), mult=3277, shift=16)
    assert x.tolist() == [[[-50, 1000, 0]]]


@pytest.mark.parametrize("mode", MODES)
def test_leaky_prelu_random(mode):
    rng = np.random.default_rng(40 + MODES.index(mode))
    X = rand_stream(rng, (3, 3, 4))
    num = Numerics(rounding=mode, overflow="saturate")
    y, ev = leaky_relu(X, mult=13107, shift=16, numerics=num)
    assert y.reshape(-1).tolist() == [v if v >= 0 else R(int(v) * 13107, 16, mode) for v in X.reshape(-1).tolist()]
    M = np.array([3, 70000, 1, 65536])  # slope 70000/2^16 > 1 can overflow
    y, ev = prelu(X, M, shift=16, numerics=num)
    ref, rev = store([[[v if v >= 0 else R(v * int(M[c]), 16, mode) for c, v in enumerate(px)] for px in row]
                      for row in X.tolist()], 24, "saturate")
    np.testing.assert_array_equal(y, ref)
    assert ev["stream_overflow"] == rev


@pytest.mark.parametrize("mode", MODES)
def test_mul_random(mode):
    rng = np.random.default_rng(50 + MODES.index(mode))
    X = rand_stream(rng, (2, 3, 4), 20)
    G = rng.integers(0, 1 << 15, size=(1, 1, 4))
    y, ev = mul(X, G, f_x=12, f_g=15, f_out=10, numerics=Numerics(rounding=mode, overflow="wrap"))
    ref, rev = store([[[R(v * int(G[0, 0, c]), 17, mode) for c, v in enumerate(px)] for px in row]
                      for row in X.tolist()], 24, "wrap")
    np.testing.assert_array_equal(y, ref)
    assert ev["stream_overflow"] == rev
    with pytest.raises(ValueError, match="shift"):
        mul(X, G, f_x=1, f_g=1, f_out=3)
    with pytest.raises(ValueError, match="gate"):
        mul(X, G[:, :, :2], f_x=1, f_g=1, f_out=0)


# --------------------------------------------------------------------------
# resampling


def test_pixel_shuffle_torch_semantics():
    rng = np.random.default_rng(60)
    for r in (2, 3):
        x = rand_stream(rng, (2, 3, 2 * r * r))
        y, _ = pixel_shuffle(x, r)
        assert y.shape == (2 * r, 3 * r, 2)
        for h in range(2):
            for w in range(3):
                for c in range(2):
                    for i in range(r):
                        for j in range(r):
                            assert y[h * r + i, w * r + j, c] == x[h, w, c * r * r + i * r + j]


def test_upsample_nearest():
    x = np.arange(6).reshape(1, 2, 3)
    y, _ = upsample_nearest(x, 3)
    assert y.shape == (3, 6, 3)
    for yy in range(3):
        for xx in range(6):
            assert y[yy, xx].tolist() == x[yy // 3, xx // 3].tolist()


def test_bilinear_taps_example_6_10():
    i0, i1, w0, w1 = bilinear_taps(5, 2)
    # y = 0: t = −1 -> i0 = 0, a = 0; y = 1: t = 1 -> i0 = 0, a = 1 (weights 3, 1); y = 2: t = 3 -> i0 = 0, a = 3
    assert (i0[0], w0[0], w1[0]) == (0, 4, 0)
    assert (i0[1], i1[1], w0[1], w1[1]) == (0, 1, 3, 1)
    assert (i0[2], i1[2], w0[2], w1[2]) == (0, 1, 1, 3)
    assert i1[-1] == 4  # clamped at the border


def ref_bilinear(X, r, M, k, mode, bits=24, policy="saturate"):
    H, W, C = X.shape

    def taps(y, size):
        t = 2 * y + 1 - r
        if t < 0:
            i0, a = 0, 0
        else:
            i0 = t // (2 * r)
            a = t - 2 * r * i0
        return [(i0, 2 * r - a), (min(i0 + 1, size - 1), a)]

    out = []
    for y in range(H * r):
        row = []
        for x in range(W * r):
            px = []
            for c in range(C):
                I = sum(wy * wx * int(X[iy, ix, c]) for iy, wy in taps(y, H) for ix, wx in taps(x, W))
                px.append(R(I * M, k, mode))
            row.append(px)
        out.append(row)
    return store(out, bits, policy)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_upsample_bilinear(r):
    rng = np.random.default_rng(70 + r)
    X = rand_stream(rng, (3, 4, 2))
    M, k = (1, 2 * int(math.log2(2 * r))) if r != 3 else encode_multiplier(Fraction(1, 36), 16)
    for mode in MODES:
        y, ev = upsample_bilinear(X, factor=r, mult=M, shift=k, numerics=Numerics(rounding=mode))
        ref, rev = ref_bilinear(X, r, M, k, mode)
        np.testing.assert_array_equal(y, ref)
        assert ev["stream_overflow"] == rev


def test_upsample_bilinear_matches_torch_formula():
    """For power-of-two 2r the result is RND of the align_corners=False bilinear value (real form)."""
    X = np.array([[[0], [16]], [[32], [64]]])
    y, _ = upsample_bilinear(X, factor=2, mult=1, shift=4)
    # torch: rows/cols at source coords (−0.25→0 clamp, 0.25, 0.75, 1.25→1 clamp)
    src = [0.0, 0.25, 0.75, 1.0]
    for yy in range(4):
        for xx in range(4):
            fy, fx = src[yy], src[xx]
            v = (1 - fy) * ((1 - fx) * 0 + fx * 16) + fy * ((1 - fx) * 32 + fx * 64)
            assert y[yy, xx, 0] == math.floor(v + 0.5)


# --------------------------------------------------------------------------
# pooling


def test_mean_pool_example_6_11():
    x = np.array([1, 2, 4]).reshape(1, 3, 1)
    y, _ = mean_pool(x, shift=16)
    assert y.tolist() == [[[2]]]
    assert R(152915, 16, "half_up") == 2


def test_std_pool_example_6_12():
    x = np.array([1, 2, 4, 9]).reshape(2, 2, 1)
    y, _ = std_pool(x, shift=16, pre_shift=0)
    assert y.tolist() == [[[3]]]
    assert R(622592, 16, "half_up") == 10


def ref_mean(X, k, mode, bits=24, policy="saturate"):
    H, W, C = X.shape
    N = H * W
    M = (2 ** (k + 1) + N) // (2 * N)
    return store([[[R(sum(int(v) for v in X[:, :, c].reshape(-1)) * M, k, mode) for c in range(C)]]], bits, policy)


@pytest.mark.parametrize("mode", MODES)
def test_pools_random(mode):
    rng = np.random.default_rng(80 + MODES.index(mode))
    for shape, k, p in (((5, 7, 3), 12, 2), ((4, 4, 2), 12, 3), ((1, 9, 1), 16, 1), ((3, 3, 2), 8, 0)):
        X = rand_stream(rng, shape, 18)
        num = Numerics(rounding=mode)
        y, ev = mean_pool(X, shift=k, numerics=num)
        ref, _ = ref_mean(X, k, mode)
        np.testing.assert_array_equal(y, ref)
        s, ev = std_pool(X, shift=k, pre_shift=p, numerics=num)
        N = shape[0] * shape[1]
        M = (2 ** (k + 1) + N) // (2 * N)
        exp = []
        for c in range(shape[2]):
            mu = int(ref[0, 0, c])
            d = [R(int(v) - mu, p, mode) for v in X[:, :, c].reshape(-1)]
            V = R(sum(e * e for e in d) * M, k, mode)
            exp.append(math.isqrt(V) * 2**p)
        assert s.reshape(-1).tolist() == exp


def test_mean_pool_rounding_overflow():
    """M_N·N > 2^k: the mean of maximal values rounds above the stream range (§6.11 OVF)."""
    X = np.full((1, 3, 1), (1 << 23) - 1)
    y, ev = mean_pool(X, shift=17)
    assert reciprocal_multiplier(3, 17) * 3 > 2**17
    assert y.tolist() == [[[(1 << 23) - 1]]] and ev["stream_overflow"] == 1


def test_pool_envelope_errors():
    big = np.full((64, 64, 1), 1 << 22)
    with pytest.raises(ValueError, match="too large"):
        mean_pool(big, shift=31)
    mean_pool(big, shift=30)  # 2^22·(2^30 + 4096) < 2^53
    x = np.zeros((64, 64, 1), dtype=np.int64)
    x[0, 0, 0] = 1 << 22
    with pytest.raises(ValueError, match="too large"):
        std_pool(x, shift=16, pre_shift=0)
    std_pool(x, shift=16, pre_shift=8)  # a larger pre_shift brings d² inside the envelope


# --------------------------------------------------------------------------
# lut (the sigmoid table of §6.13)


def test_sigmoid_example_6_13():
    """k_lut = 4, f_o = 15: σ(0) → 16384, σ(1) → 23955."""
    assert math.floor(1 / (1 + math.exp(-1)) * 2**15 + 0.5) == 23955
    imin, imax = -16, 16
    table = np.arange(imax - imin + 1, dtype=np.int32) * 1000
    table[0 - imin], table[16 - imin] = 16384, 23955
    x = np.array([[[0, 16, 1 << 10]]])  # f_in = 4: x = 0, 1, 64 (clamped to imax)
    y, ev = lut(x, table, lut_exp=4, imin=imin, imax=imax, f_in=4)
    assert y.tolist() == [[[16384, 23955, 23955]]] and ev["saturations"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_sigmoid_index_random(mode):
    rng = np.random.default_rng(90 + MODES.index(mode))
    imin, imax = -40, 37
    table = rng.integers(0, 1 << 15, size=imax - imin + 1).astype(np.int32)
    for f_in, k in ((10, 4), (2, 4), (4, 4)):
        X = rng.integers(-(1 << (f_in + 3)), 1 << (f_in + 3), size=(3, 5, 2))
        y, ev = lut(X, table, lut_exp=k, imin=imin, imax=imax, f_in=f_in, numerics=Numerics(rounding=mode))
        ref, sats = [], 0
        for v in X.reshape(-1).tolist():
            t = R(v * 2 ** max(0, k - f_in), max(0, f_in - k), mode)
            i = min(max(t, imin), imax)
            sats += i != t
            ref.append(int(table[i - imin]))
        assert y.reshape(-1).tolist() == ref
        assert ev["saturations"] == sats
