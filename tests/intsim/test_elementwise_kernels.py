"""The fused stream-op kernels against the numpy forms of the same ops: zero mismatches.

``add``, ``concat``, ``mul`` (arithmetic.md §1.5, §2, §4, §6.3, §6.4, §6.14),
``split`` (§6.5), ``mean_pool`` / ``std_pool`` (§6.11, §6.12) and ``image_out``
(§6.2) each run twice: with their numpy forms (``intsim.ops.KERNEL_MIN_SIZE``
above any size; those forms are checked against pure-Python references in
test_ops.py) and with their banded kernels (``KERNEL_MIN_SIZE = 0``; three
threads and bands of at least 16 elements, so that a tensor of a few rows
already spans several bands). Outputs, dtypes, shapes and every event counter
must be identical; an op that raises must raise the same exception with the
same message both ways (the ``error`` policy's message names the first value
that overflows; the pooling envelope checks name their bound). The kernels'
wrapping int64 arithmetic (:mod:`intsim.wrapping`) is checked against
numpy over the whole int64 range.

Inputs are adversarial on purpose: values at and beyond the stream range
``±2^(stream_bits−1)``, int64 extremes (where both forms wrap modulo 2^64),
alignment and rescale shifts up to and past the limits (62 for ``R``, 63 for
the kernels' left shifts, beyond which the numpy form runs), ``stream_bits``
from 1 to 63, odd channel counts, row counts that are not multiples of the
bands, 1×1×C gates and every rounding mode and overflow policy.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim import engine, ops
from intsim.artifact import Numerics
from intsim.kernels import elementwise as elementwise_kernels
from intsim.kernels import image as image_kernels
from intsim.kernels import parallel as KP
from intsim.kernels import pooling as pooling_kernels
from intsim import wrapping
from intsim.ops.elementwise import add, concat, mul, split
from intsim.ops.image import image_out
from intsim.ops.pooling import mean_pool, std_pool
from intsim.overflow import apply_overflow
from intsim.rounding import RoundingMode, round_shift, round_shift_scalar
from tests.artifact_factory import make_random_artifact

# numpy's wrap at 63 bits forms 2^63 − 1 from a wrapped scalar, with a warning (the value is right)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar subtract:RuntimeWarning")

MODES = RoundingMode.names()  # every mode of §2, a new one included
POLICIES = ("saturate", "wrap", "error")
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
ENTRY_POINTS = ((elementwise_kernels, "requantize_bands"), (elementwise_kernels, "split_bands"),
                (pooling_kernels, "channel_sums"), (pooling_kernels, "deviation_sums"),
                (image_kernels, "image_out_bands"))


@contextlib.contextmanager
def kernels(on: bool):
    """Ops run their kernels (``on``) or their numpy forms inside the block; yields a list that
    records the name of every kernel entry point called."""
    calls: list[str] = []
    saved = [(mod, name, getattr(mod, name)) for mod, name in ENTRY_POINTS]

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapped

    old_min, old_band, old_threads = ops.KERNEL_MIN_SIZE, KP.MIN_STREAM_BAND, os.environ.get("INTSIM_THREADS")
    ops.KERNEL_MIN_SIZE = 0 if on else 1 << 62
    KP.MIN_STREAM_BAND = 16
    os.environ["INTSIM_THREADS"] = "3"
    for mod, name, fn in saved:
        setattr(mod, name, spy(name, fn))
    try:
        yield calls
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
        ops.KERNEL_MIN_SIZE, KP.MIN_STREAM_BAND = old_min, old_band
        if old_threads is None:
            del os.environ["INTSIM_THREADS"]
        else:
            os.environ["INTSIM_THREADS"] = old_threads


def _outcome(on: bool, fn, *args, **kwargs):
    """``(result or the exception raised, kernel entry points called)``."""
    with kernels(on) as calls:
        try:
            return fn(*args, **kwargs), calls
        except (ValueError, OverflowError) as e:  # EngineOverflowError is an OverflowError
            return e, calls


def assert_same(fn, *args, **kwargs):
    """Run ``fn`` both ways; assert identical results (or exceptions). Returns (numpy result, kernels called)."""
    ref, ref_calls = _outcome(False, fn, *args, **kwargs)
    got, calls = _outcome(True, fn, *args, **kwargs)
    assert not ref_calls, ref_calls
    if isinstance(ref, Exception):
        assert type(got) is type(ref) and str(got) == str(ref), (ref, got)
        return ref, calls
    assert not isinstance(got, Exception), f"kernel path raised {got!r}, numpy path returned"
    refs, gots = (ref[0], got[0]) if isinstance(ref[0], list) else ([ref[0]], [got[0]])
    assert len(gots) == len(refs)
    for r, g in zip(refs, gots):
        assert g.dtype == r.dtype and g.shape == r.shape, (g.dtype, g.shape, r.dtype, r.shape)
        np.testing.assert_array_equal(g, r)
    assert got[1] == ref[1]
    return ref, calls


# --------------------------------------------------------------------------
# strategies

bits_st = st.one_of(st.sampled_from([1, 2, 8, 12, 16, 24, 32, 40, 48, 62, 63]), st.integers(1, 63))
numerics_st = st.builds(lambda mode, policy, bits: Numerics(rounding=mode, overflow=policy, stream_bits=bits),
                        st.sampled_from(MODES), st.sampled_from(POLICIES), bits_st)
frac_st = st.one_of(st.integers(0, 24), st.integers(0, 70))


@st.composite
def hw_st(draw, max_h=30, max_w=9):
    return draw(st.integers(1, max_h)), draw(st.integers(1, max_w))


@st.composite
def stream_st(draw, shape, bits):
    """int64 values of the ``bits`` stream range, with edges of that range and of int64 sprinkled in."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lim = 1 << (bits - 1)
    x = rng.integers(-lim, lim, size=shape, dtype=np.int64)
    if x.size:
        edges = [-lim, -lim + 1, -1, 0, 1, lim - 2, lim - 1]
        if draw(st.booleans()):  # beyond the stream range (not a valid stream, still the same integers)
            edges += [lim, -lim - 1, INT64_MIN, INT64_MAX, INT64_MIN + 1]
        k = draw(st.integers(0, min(x.size, 12)))
        flat = x.reshape(-1)
        flat[rng.integers(0, x.size, size=k)] = rng.choice(np.array(edges, dtype=np.int64), size=k)
    return x


# --------------------------------------------------------------------------
# the kernels' int64 arithmetic (numba's signed +, −, × are undefined on overflow)

int64_st = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-(1 << 20), 1 << 20),
                     st.sampled_from([INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX]))


@settings(max_examples=500, deadline=None)
@given(a=int64_st, b=int64_st, n=st.integers(0, 62), mode=st.sampled_from(MODES), bits=st.integers(1, 63))
def test_wrapping_arithmetic_equals_numpy(a, b, n, mode, bits):
    """add, sub, mul, R(·, n) (§2, intsim.rounding.round_shift_scalar) and the §4 wrap of intsim.wrapping against numpy's int64
    arrays over the whole int64 range (numpy wraps modulo 2^64)."""
    x, y = np.array([a], dtype=np.int64), np.array([b], dtype=np.int64)
    with np.errstate(over="ignore"):
        assert wrapping.add(np.int64(a), np.int64(b)) == (x + y)[0]
        assert wrapping.sub(np.int64(a), np.int64(b)) == (x - y)[0]
        assert wrapping.mul(np.int64(a), np.int64(b)) == (x * y)[0]
        rmode = int(RoundingMode.parse(mode))
        assert round_shift_scalar(np.int64(a), np.int64(n), rmode) == round_shift(x, n, mode)[0]
        assert wrapping.wrap(np.int64(a), np.int64(bits)) == apply_overflow(x, bits, "wrap", "t")[0][0]


# --------------------------------------------------------------------------
# requantizing ops


@settings(max_examples=200, deadline=None)
@given(data=st.data(), num=numerics_st, f_a=frac_st, f_b=frac_st, f_out=frac_st)
def test_add(data, num, f_a, f_b, f_out):
    h, w = data.draw(hw_st())
    c = data.draw(st.integers(1, 9))
    a = data.draw(stream_st((h, w, c), num.stream_bits))
    b = data.draw(stream_st((h, w, c), num.stream_bits))
    assert_same(add, a, b, f_a=f_a, f_b=f_b, f_out=f_out, numerics=num, name="blk.add")


@settings(max_examples=200, deadline=None)
@given(data=st.data(), num=numerics_st, f_out=frac_st)
def test_concat(data, num, f_out):
    h, w = data.draw(hw_st())
    k = data.draw(st.integers(1, 5))
    xs = [data.draw(stream_st((h, w, data.draw(st.integers(1, 7))), num.stream_bits)) for _ in range(k)]
    fracs = [data.draw(frac_st) for _ in range(k)]
    bad = data.draw(st.sampled_from([None] * 5 + ["hw", "ndim", "int32"]))
    if bad is not None:  # a malformed later input: the same error, in the numpy form's order
        i = data.draw(st.integers(0, k - 1))
        xs[i] = {"hw": xs[i][:, :1] if w > 1 else np.concatenate([xs[i], xs[i]], axis=1),
                 "ndim": xs[i][:, :, 0], "int32": xs[i].astype(np.int32)}[bad]
    assert_same(concat, xs, fracs, f_out=f_out, numerics=num, name="blk.concat")


@settings(max_examples=200, deadline=None)
@given(data=st.data(), num=numerics_st, f_x=frac_st, f_g=frac_st, n=st.integers(-2, 64))
def test_mul(data, num, f_x, f_g, n):
    h, w = data.draw(hw_st())
    c = data.draw(st.integers(1, 9))
    x = data.draw(stream_st((h, w, c), num.stream_bits))
    gate_bits = data.draw(st.sampled_from([2, 16, 24, 40, 63]))
    g = data.draw(stream_st((1, 1, c), gate_bits))
    if data.draw(st.integers(0, 9)) == 0:
        g = g[:, :, :-1] if c > 1 else np.concatenate([g, g], axis=2)  # wrong gate shape
    assert_same(mul, x, g, f_x=f_x, f_g=f_g, f_out=f_x + f_g - n, numerics=num, name="cca.mul")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_split(data):
    h, w = data.draw(hw_st())
    sizes = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=5))
    x = data.draw(stream_st((h, w, sum(sizes)), 48))
    if data.draw(st.integers(0, 9)) == 0:
        sizes = sizes + [1]  # do not sum to the channels
    elif data.draw(st.booleans()):
        x = np.ascontiguousarray(np.concatenate([x, x], axis=2))[:, :, ::2]  # a strided view
    ref, calls = assert_same(split, x, sizes, name="blk.split")
    if not isinstance(ref, Exception):
        assert calls == ["split_bands"]


# --------------------------------------------------------------------------
# pools and image_out


@settings(max_examples=200, deadline=None)
@given(data=st.data(), num=numerics_st, k=st.one_of(st.integers(0, 20), st.integers(0, 62)),
       p=st.one_of(st.integers(0, 8), st.integers(0, 62)))
def test_pools(data, num, k, p):
    h, w = data.draw(hw_st())
    c = data.draw(st.integers(1, 9))
    x = data.draw(stream_st((h, w, c), data.draw(st.sampled_from([1, 4, 8, 12, 20, 30, 63]))))
    ref, calls = assert_same(mean_pool, x, shift=k, numerics=num, name="cca.mean")
    assert calls[:1] == ["channel_sums"]
    ref, calls = assert_same(std_pool, x, shift=k, pre_shift=p, numerics=num, name="cca.std")
    if not isinstance(ref, Exception):
        assert calls == ["channel_sums", "deviation_sums"]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), mode=st.sampled_from(MODES), exp=st.integers(-8, 40), f_in=st.integers(-1, 40))
def test_image_out(data, mode, exp, f_in):
    h, w = data.draw(hw_st())
    c = data.draw(st.integers(1, 4))
    x = data.draw(stream_st((h, w, c), data.draw(st.sampled_from([8, 16, 24, 40, 63]))))
    m = data.draw(stream_st((c,), data.draw(st.sampled_from([2, 12, 20, 32]))))
    o = data.draw(stream_st((c,), data.draw(st.sampled_from([2, 20, 40]))))
    assert_same(image_out, x, m, o, exp=exp, f_in=f_in, numerics=Numerics(rounding=mode), name="tail.out")


# --------------------------------------------------------------------------
# targeted cases


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", POLICIES)
def test_overflow_at_the_range_edges(mode, policy):
    """Every value one step inside, at and beyond the stream range, at several widths: events, the
    saturated or wrapped values, and (error policy) the message naming the first value, all equal."""
    for bits in (8, 24, 48, 63):
        lim = 1 << (bits - 1)
        edge = np.array([-lim - 1, -lim, -lim + 1, -1, 0, 1, lim - 1, lim, lim + 1], dtype=np.int64)
        a = np.resize(edge, (11, 5, 3))
        b = np.resize(edge[::-1], (11, 5, 3))
        num = Numerics(rounding=mode, overflow=policy, stream_bits=bits)
        ref, calls = assert_same(add, a, b, f_a=3, f_b=2, f_out=3, numerics=num)
        assert calls == ["requantize_bands"]
        if policy == "error":
            assert "overflows" in str(ref)
        else:
            assert ref[1]["stream_overflow"] > 0
        assert_same(concat, [a, b, a[:, :, :1]], [0, 2, 5], f_out=1, numerics=num)
        assert_same(mul, a, np.array([[[3, -1, 1 << 20]]]), f_x=0, f_g=1, f_out=0, numerics=num)


def test_error_policy_without_overflow_runs_the_kernel():
    """Under 'error' with no out-of-range value the kernel's result is returned (no numpy rerun)."""
    a = np.arange(-60, 60, dtype=np.int64).reshape(4, 5, 6)
    num = Numerics(overflow="error")
    ref, calls = assert_same(add, a, a, f_a=1, f_b=1, f_out=1, numerics=num)
    assert calls == ["requantize_bands"] and ref[1]["stream_overflow"] == 0
    ref, calls = assert_same(concat, [a, a], [1, 3], f_out=2, numerics=num)
    assert calls == ["requantize_bands"]


def test_large_shifts():
    """Alignment shifts 63 (the kernel's last) and 64+ (numpy's defined 0, kept on numpy); R by 62."""
    x = np.resize(np.array([INT64_MIN, -3, -1, 0, 1, 5, INT64_MAX], dtype=np.int64), (9, 4, 5))
    for mode in MODES:
        for policy in ("saturate", "wrap"):
            num = Numerics(rounding=mode, overflow=policy, stream_bits=63)
            for f_a, f_b, f_out in ((0, 63, 63), (0, 64, 64), (0, 63, 1), (0, 62, 0), (70, 0, 0)):
                _, calls = assert_same(add, x, x[::-1], f_a=f_a, f_b=f_b, f_out=f_out, numerics=num)
                F = max(f_a, f_b, f_out)
                assert bool(calls) == (F - min(f_a, f_b) <= 63 and F - f_out <= 62)
            _, calls = assert_same(mul, x, np.array([[[1, -1, 3, INT64_MAX, 1 << 62]]]), f_x=40, f_g=22, f_out=0,
                                   numerics=num)
            assert calls == ["requantize_bands"]


def test_pool_extremes_and_envelope_messages():
    """max |X| with −2^63 present (|−2^63| wraps to −2^63 in both forms) and both envelope errors."""
    x = np.zeros((6, 7, 3), dtype=np.int64)
    x[2, 3, 1] = INT64_MIN
    assert_same(mean_pool, x, shift=4)
    x[:] = INT64_MIN
    assert_same(mean_pool, x, shift=4)
    assert_same(std_pool, x, shift=4, pre_shift=0)
    # found by test_pools: Σ X wraps, μ saturates to 1 at 2 bits and X − μ wraps −2^63 to 2^63 − 1, whose
    # |d| fails the check (numba's signed subtraction would be undefined there: LLVM folded d < 0 to X < μ)
    x = np.array([INT64_MIN, -1, 0, 0, -1, -1, -1, -1, 0, -1, -1, -1, 0, 0, 0, -1, -1, 0, -1, 0]).reshape(10, 2, 1)
    ref, _ = assert_same(std_pool, x, shift=4, pre_shift=0, numerics=Numerics(stream_bits=2))
    assert f"max d²·(2^k + N) = {INT64_MAX}²" in str(ref)
    # negative values decide max |·| (a signed max would be 0 and pass): max|X| = 4 fails the mean's
    # check from k = 51; μ = R(−8/45) = 0, so d ∈ {−4, 0} and d² = 16 fails the deviation check from k = 49
    x = np.zeros((9, 5, 2), dtype=np.int64)
    x[0, :2, 1] = -4
    for k in (48, 49, 50, 51):
        ref, _ = assert_same(mean_pool, x, shift=k)
        assert ("max|X|·(2^k + N) = 4·" in str(ref)) == (k >= 51)
        ref, _ = assert_same(std_pool, x, shift=k, pre_shift=0)
        assert ("max d²·(2^k + N) = 4²" in str(ref)) == (k in (49, 50))
    big = np.full((64, 64, 1), 1 << 22, dtype=np.int64)
    ref, _ = assert_same(mean_pool, big, shift=31)
    assert "too large" in str(ref)
    big[1:] = 0
    ref, _ = assert_same(std_pool, big, shift=16, pre_shift=0)
    assert "too large" in str(ref)


def test_default_threshold_takes_the_kernels(monkeypatch):
    """At the default KERNEL_MIN_SIZE a 128×128×64 tensor takes the kernels, a 1×1×64 one numpy."""
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 23), 1 << 23, size=(128, 128, 64))
    calls: list[str] = []
    for mod, name in ENTRY_POINTS:
        fn = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _n=name, _f=fn, **k: calls.append(_n) or _f(*a, **k))
    add(x, x, f_a=1, f_b=2, f_out=1)
    mean_pool(x, shift=16)
    split(x, [16, 48])
    assert calls == ["requantize_bands", "channel_sums", "split_bands"]
    calls.clear()
    add(x[:1, :1], x[:1, :1], f_a=1, f_b=2, f_out=1)
    mean_pool(x[:1, :1], shift=16)
    assert calls == []


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("policy", POLICIES)
def test_engine_runs_equal(seed, policy):
    """Whole random graphs (every op type) with the kernels and with the numpy forms: every tensor
    and every counter identical (or the same error under the 'error' policy)."""
    for i, mode in enumerate(MODES):
        art = make_random_artifact(40 + 4 * seed + i, rounding=mode, overflow=policy,
                                   stream_bits=(12, 24)[(seed + i) % 2])
        img = np.random.default_rng(seed * 10 + i).integers(0, 256, size=(13, 9, 3), dtype=np.uint8)
        ref, _ = _outcome(False, engine.run, art, img)
        got, calls = _outcome(True, engine.run, art, img)
        if isinstance(ref, Exception):
            assert type(got) is type(ref) and str(got) == str(ref)
            continue
        assert set(calls) >= {"requantize_bands", "split_bands", "channel_sums", "image_out_bands"}
        assert got.tensors.keys() == ref.tensors.keys()
        for t in ref.tensors:
            assert got.tensors[t].dtype == ref.tensors[t].dtype
            np.testing.assert_array_equal(got.tensors[t], ref.tensors[t], err_msg=f"tensor {t}")
        assert got.counters == ref.counters
