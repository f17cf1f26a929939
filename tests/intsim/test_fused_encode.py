"""A stream encoded by its producer in the same pass equals the stream stored, then encoded.

The producers that take an encoder (:data:`intsim.op_dispatch.ENCODE_FUSABLE`: the
slope ops, alone or fused with a ``split``; ``add``, ``mul`` and ``concat``)
compute a few rows into a scratch and encode them (:mod:`intsim.kernels.encode`).
Each is run here both ways, on every rounding mode and overflow policy, with 1, 2
and 3 segment codebooks and a scratch of a few rows (so bands hold several
scratch passes and a remainder), on values that overflow the stream: codes,
saturations, histograms and the producer's stream events must be identical to
the op's int64 output encoded by the numpy reference (:func:`intsim.encoder.encode`).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim import op_dispatch, ops
from intsim.artifact import Numerics
from intsim.encoder import encode
from intsim.kernels import elementwise as elementwise_kernels
from intsim.kernels import encode as encode_kernels
from intsim.kernels import parallel as KP
from intsim.kernels.encode import Encoded
from intsim.ops.elementwise import add, concat, mul
from intsim.rounding import RoundingMode
from tests.artifact_factory import make_codebook

MODES = RoundingMode.names()  # every mode of §2, a new one included
CODEBOOKS = {  # 3, 2 and 1 segments, read from streams of frac 12
    "signed2r": make_codebook("signed2r", 4, 12, "split", bp=1.0),
    "relu2r": make_codebook("relu2r", 4, 12, "split", bp=1.0, signed=False),
    "uniform8": make_codebook("uniform", 8, 12, "split", bp=1.0),
}


@pytest.fixture(autouse=True)
def small_bands(monkeypatch):
    """Kernels on every size, three threads, bands of few elements and a scratch of 2–3 rows."""
    monkeypatch.setattr(ops, "KERNEL_MIN_SIZE", 0)
    monkeypatch.setattr(KP, "MIN_STREAM_BAND", 16)
    monkeypatch.setitem(os.environ, "INTSIM_THREADS", "3")
    monkeypatch.setattr(encode_kernels, "SCRATCH_BYTES", 8 * 7 * 5 * 2 + 8)


def assert_encoded_equals(got: Encoded, stream: np.ndarray, codebook, mode: str):
    codes, sats, hist = encode(stream, codebook, mode)
    assert got.codes.dtype == codes.dtype and got.codes.shape == codes.shape
    np.testing.assert_array_equal(got.codes, codes)
    assert got.saturations == sats
    np.testing.assert_array_equal(got.histogram, hist)


def table(cb, mode):
    t = op_dispatch.encoder_table(cb, mode)
    assert t is not None
    return t


def streams(rng, shape, lim):
    x = rng.integers(-lim, lim, size=shape, dtype=np.int64)
    edges = np.array([-lim, lim - 1, 0, -1], dtype=np.int64)
    x.reshape(-1)[:4] = edges[:min(4, x.size)]
    return x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", ["saturate", "wrap"])
@pytest.mark.parametrize("cb_name", sorted(CODEBOOKS))
def test_slope_split_encode_equals_stored_then_encoded(mode, policy, cb_name):
    cb = CODEBOOKS[cb_name]
    rng = np.random.default_rng(len(mode) * 7 + len(policy) + len(cb_name))
    bits = 20
    x = streams(rng, (11, 7, 9), 1 << (bits - 1))
    mult = rng.integers(-(1 << 18), 1 << 18, size=9).astype(np.int64)  # steep: overflows the stream
    rmode, pol = int(RoundingMode.parse(mode)), 1 if policy == "saturate" else 2
    plain, ev = elementwise_kernels.slope_bands(x, mult, 14, rmode, pol, bits, [2, 5, 2])
    assert ev > 0
    for which in ([None, table(cb, mode), None], [table(cb, mode), None, table(cb, mode)]):
        got, got_ev = elementwise_kernels.slope_bands(x, mult, 14, rmode, pol, bits, [2, 5, 2], which)
        assert got_ev == ev
        for g, p, t in zip(got, plain, which):
            if t is None:
                np.testing.assert_array_equal(g, p)
            else:
                assert isinstance(g, Encoded)
                assert_encoded_equals(g, p, cb, mode)
    whole, ev_whole = elementwise_kernels.slope_bands(x, mult, 14, rmode, pol, bits, None, [table(cb, mode)])
    assert ev_whole == ev
    assert_encoded_equals(whole[0], np.concatenate(plain, axis=2), cb, mode)


numerics_st = st.builds(lambda mode, policy: Numerics(rounding=mode, overflow=policy, stream_bits=20),
                        st.sampled_from(MODES), st.sampled_from(["saturate", "wrap", "error"]))


def _check_op(fn, args: tuple, kwargs: dict, cb, num: Numerics):
    """``fn`` with ``encode=`` against ``fn`` without, then the numpy encoder."""
    try:
        plain, ev = fn(*args, numerics=num, **kwargs)
    except OverflowError:  # 'error' policy: the fused call raises the same
        with pytest.raises(OverflowError):
            fn(*args, numerics=num, encode=table(cb, num.rounding), **kwargs)
        return
    got, got_ev = fn(*args, numerics=num, encode=table(cb, num.rounding), **kwargs)
    assert isinstance(got, Encoded)  # kernels on every size: the fused pass always runs
    assert got_ev == ev
    assert_encoded_equals(got, plain, cb, num.rounding)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), num=numerics_st, cb_name=st.sampled_from(sorted(CODEBOOKS)))
def test_add_mul_concat_encode_equal_stored_then_encoded(data, num, cb_name):
    cb = CODEBOOKS[cb_name]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    h, w, c = data.draw(st.integers(1, 13)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 6))
    lim = 1 << 19
    a, b = streams(rng, (h, w, c), lim), streams(rng, (h, w, c), lim)
    f = [data.draw(st.integers(10, 14)) for _ in range(3)]
    _check_op(add, (a, b), dict(f_a=f[0], f_b=f[1], f_out=12), cb, num)
    g = rng.integers(-(1 << 14), 1 << 14, size=(1, 1, c)).astype(np.int64)
    _check_op(mul, (a, g), dict(f_x=12, f_g=14, f_out=12), cb, num)
    xs = [streams(rng, (h, w, data.draw(st.integers(1, 4))), lim) for _ in range(data.draw(st.integers(1, 4)))]
    _check_op(concat, (xs, [data.draw(st.integers(9, 15)) for _ in xs]), dict(f_out=12), cb, num)
