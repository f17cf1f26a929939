"""The encoder as verified pieces (golden/ops/encode_pieces.py) against the Python-int integer form of §3.4.

Every stream integer of a small stream range, and the neighbourhoods of every change point of the
released codebook of arithmetic.md §3.3 over the 24-bit range, in all four rounding modes; and
the refusal when the real form is not constant on a piece."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from golden.numerics import F64
from golden.ops import encode_pieces
from tests.golden.test_executor import MODES, R, enc_art, released_cb, run1, small_cb


def reference(cb, xs, mode):
    """(codes, saturations) by §3.4's integer form with Python ints."""
    codes, sat = [], 0
    for x in xs:
        s = next((i for i, u in enumerate(cb.thresholds) if x <= u), len(cb.segments) - 1)
        e, sg = cb.encoder[s], cb.segments[s]
        t = R((x - e.center) * e.mult, e.shift, mode)
        q = min(max(t, sg.qmin), sg.qmax)
        sat += q != t
        codes.append(cb.bases[s] + q - sg.qmin)
    return codes, sat


def _pieces_of(art):
    """The pieces golden builds for the encode op of ``art`` (None: it evaluates element-wise)."""
    from golden.ops.codes import _pieces
    from golden.ops.context import OpContext

    ctx = OpContext(art, art.ops[0])
    return _pieces(ctx, art.tensors[art.ops[0].outputs[0]].codebook)


@pytest.mark.parametrize("mode", MODES)
def test_every_integer_of_a_12_bit_stream(mode):
    cb = small_cb()
    art = enc_art(cb, f_in=2, rounding=mode, stream_bits=12)
    assert _pieces_of(art) is not None  # the lookup is what runs
    xs = list(range(-2048, 2048))
    res, ev = run1(art, {"x": np.array(xs).reshape(1, -1, 1)})
    codes, sat = reference(cb, xs, mode)
    assert res.tensors["c"].ravel().tolist() == codes
    assert ev["saturations"] == sat


@pytest.mark.parametrize("mode", MODES)
def test_released_codebook_near_every_change_point(mode):
    cb = released_cb()
    art = enc_art(cb, f_in=16, rounding=mode, stream_bits=24)
    pieces = _pieces_of(art)
    if mode != "floor":  # floor leaves a 2-integer saturated piece: buckets too fine, element-wise instead
        assert pieces is not None and pieces.m >= 8  # coarse buckets: the fast path
    points = encode_pieces._candidates(cb, -2**23, 2**23 - 1, mode)
    rng = np.random.default_rng(3)
    xs = sorted({x + d for x in points for d in range(-4, 5)} | set(rng.integers(-2**23, 2**23, 3000).tolist())
                | {-2**23, 2**23 - 1})
    xs = [x for x in xs if -2**23 <= x < 2**23]
    res, ev = run1(art, {"x": np.array(xs).reshape(1, -1, 1)})
    codes, sat = reference(cb, xs, mode)
    assert res.tensors["c"].ravel().tolist() == codes
    assert ev["saturations"] == sat and sat > 0


def test_refuses_when_a_piece_is_not_constant():
    """A real form that changes between two candidate points cannot be proven piecewise: no lookup."""
    cb = released_cb()
    lo, hi = -2**23, 2**23 - 1
    starts = [lo, *encode_pieces._candidates(cb, lo, hi, "half_up")]
    a, b = max(zip(starts, starts[1:]), key=lambda ab: ab[1] - ab[0])  # the longest piece: [a, b)
    mid = (a + b) // 2
    assert a < mid - 1 and mid < b - 1

    def form(P, jump):
        seg = torch.zeros(P.shape, dtype=torch.int64)
        code = (P >= mid).to(F64) if jump else torch.zeros_like(P)
        return seg, torch.full_like(P, -1.0), code

    assert encode_pieces.build(lambda P: form(P, False), cb, lo, hi, "half_up") is not None
    assert encode_pieces.build(lambda P: form(P, True), cb, lo, hi, "half_up") is None


def test_lookup_in_chunks_with_a_partial_last_chunk(monkeypatch):
    """4096 integers in chunks of 1000 (the last one partial): the same codes and counts."""
    monkeypatch.setattr(encode_pieces, "CHUNK", 1000)
    cb = small_cb()
    art = enc_art(cb, f_in=2, rounding="half_up", stream_bits=12)
    xs = list(range(-2048, 2048))
    res, ev = run1(art, {"x": np.array(xs).reshape(1, -1, 1)})
    codes, sat = reference(cb, xs, "half_up")
    assert res.tensors["c"].ravel().tolist() == codes
    assert ev["saturations"] == sat
