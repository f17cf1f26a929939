"""Encoder (docs/arithmetic.md §3.4) against an exact Fraction reference.

Random valid codebooks of 1–3 segments are built here with *consistent*
encoders (``C_s`` = stream integer of the origin, ``E_s·2^-k_s ≈ 1/(d_s·u·2^f_in)``),
and the engine's :func:`intsim.encoder.encode` is compared element by element
with a direct rational evaluation of (3.4a)–(3.4c) for every rounding mode, on
inputs at every threshold ±2, at every code value and half-step, and far outside
the codebook's range. Saturation counts and the code histogram are checked too.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim.artifact import Codebook, EncoderStage, Segment
from intsim.encoder import encode
from intsim.rounding import RoundingMode
from tests.exact_reference import round_rational as ref_round

MODES = list(RoundingMode)
X_LIMIT = 1 << 30  # keeps (X − C)·E < 2^53 (the §9 envelope) with E < 2^22




def ref_encode_one(x: int, cb: Codebook, mode: RoundingMode) -> tuple[int, bool]:
    """(flat code, saturated?) of stream integer x, straight from §3.4."""
    S = len(cb.segments)
    s = next((i for i, u in enumerate(cb.thresholds) if x <= u), S - 1)  # (3.4a)
    enc, seg = cb.encoder[s], cb.segments[s]
    t = ref_round(Fraction((x - enc.center) * enc.mult, 2**enc.shift), mode)  # (3.4b)
    q = min(max(t, seg.qmin), seg.qmax)  # (3.4c)
    return cb.bases[s] + q - seg.qmin, q != t


def ref_encode(xs, cb, mode):
    res = [ref_encode_one(int(x), cb, mode) for x in xs]
    codes = [c for c, _ in res]
    hist = [0] * cb.num_codes
    for c in codes:
        hist[c] += 1
    return codes, sum(1 for _, s in res if s), hist


# ---------------------------------------------------------------------------
# codebook construction


@st.composite
def codebooks(draw, min_extra_bits: int = 0):
    """A valid 1–3 segment codebook with a consistent encoder; also returns f_in and g.

    Grid unit u = unit_m·2^-unit_e with unit_e = f_in − a, so one grid unit is
    ``g = unit_m·2^a`` stream units and every grid value is a stream integer.
    """
    S = draw(st.integers(1, 3))
    f_in = draw(st.integers(4, 20))
    a = draw(st.integers(0, 4))
    unit_m = draw(st.integers(1, 7))
    g = unit_m << a
    segs, encs = [], []
    prev_last = None
    for s in range(S):
        d = draw(st.integers(1, 1 << 12))
        count = draw(st.integers(1, 40))
        qmin = draw(st.integers(-40, 40))
        qmax = qmin + count - 1
        if prev_last is None:
            e = draw(st.integers(-(1 << 14), 1 << 14))
        else:
            gap = draw(st.integers(1, 1 << 13))
            e = prev_last + gap - d * qmin  # first grid value strictly above the previous last
        segs.append(Segment(origin=e, step=d, qmin=qmin, qmax=qmax))
        prev_last = e + d * qmax
        D = d * g  # stream units per index step
        k = max(0, math.ceil(math.log2(D))) + draw(st.integers(min_extra_bits, 20))
        E = max(1, (2 * (1 << k) + D) // (2 * D))  # round_half_up(2^k / D)
        E += draw(st.sampled_from([0, 0, 0, 1, -1])) if E > 1 else 0  # the engine must not assume exactness
        encs.append(EncoderStage(center=e * g, mult=E, shift=k))
    thresholds = []
    for s in range(S - 1):
        lo = (segs[s].origin + segs[s].step * segs[s].qmax) * g
        hi = (segs[s + 1].origin + segs[s + 1].step * segs[s + 1].qmin) * g - 1
        thresholds.append(draw(st.sampled_from([lo, hi, (lo + hi) // 2]) | st.integers(lo, hi)))
    cb = Codebook(unit_m=unit_m, unit_e=f_in - a, segments=tuple(segs),
                  thresholds=tuple(thresholds), encoder=tuple(encs))
    return cb, f_in, g


def interesting_inputs(cb: Codebook, g: int) -> list[int]:
    xs = []
    for u in cb.thresholds:
        xs += [u + dx for dx in range(-2, 3)]
    for seg, enc in zip(cb.segments, cb.encoder):
        D = seg.step * g
        xs += [enc.center + dx for dx in range(-2, 3)]
        for q in sorted({seg.qmin - 1, seg.qmin, seg.qmin + 1, seg.qmax - 1, seg.qmax, seg.qmax + 1, 0}):
            v = enc.center + q * D
            # the value, the half-steps (ties of an exact encoder) and their neighbours
            xs += [v, v + 1, v - 1, v + D // 2, v + D // 2 + 1, v + D // 2 - 1, v - D // 2, v - D // 2 - 1]
    lo = cb.encoder[0].center + cb.segments[0].qmin * cb.segments[0].step * g
    hi = cb.encoder[-1].center + cb.segments[-1].qmax * cb.segments[-1].step * g
    xs += [lo - 10**6, hi + 10**6, -X_LIMIT, X_LIMIT, 0]
    return [x for x in xs if -X_LIMIT <= x <= X_LIMIT]


def check_encode(xs, cb, mode, rounding_arg=None):
    X = np.array(xs, dtype=np.int64)
    codes, sats, hist = encode(X, cb, mode.spec_name if rounding_arg is None else rounding_arg)
    exp_codes, exp_sats, exp_hist = ref_encode(xs, cb, mode)
    assert codes.shape == X.shape
    assert codes.dtype == cb.code_dtype
    bad = [(x, int(c), e) for x, c, e in zip(xs, codes.tolist(), exp_codes) if int(c) != e]
    assert not bad, f"mode {mode.spec_name}: (X, got, want) {bad[:5]} codebook {cb}"
    assert sats == exp_sats
    assert isinstance(sats, int)
    assert hist.dtype == np.int64 and hist.shape == (cb.num_codes,)
    assert hist.tolist() == exp_hist
    return codes


# ---------------------------------------------------------------------------
# properties


@settings(max_examples=400, deadline=None)
@given(codebooks(), st.sampled_from(MODES))
def test_interesting_inputs_match_reference(cbf, mode):
    cb, _, g = cbf
    check_encode(interesting_inputs(cb, g), cb, mode)


@settings(max_examples=400, deadline=None)
@given(codebooks(), st.sampled_from(MODES), st.data())
def test_random_inputs_match_reference(cbf, mode, data):
    cb, _, g = cbf
    lo = cb.encoder[0].center + cb.segments[0].qmin * cb.segments[0].step * g
    hi = cb.encoder[-1].center + cb.segments[-1].qmax * cb.segments[-1].step * g
    span = hi - lo + 1
    xs = data.draw(st.lists(st.one_of(
        st.integers(max(-X_LIMIT, lo - span), min(X_LIMIT, hi + span)),
        st.integers(-X_LIMIT, X_LIMIT),
    ), min_size=1, max_size=60))
    check_encode(xs, cb, mode)


@settings(max_examples=400, deadline=None)
@given(codebooks(), st.sampled_from(MODES))
def test_breakpoint_edges(cbf, mode):
    """X = U_s lands in segment s and X = U_s + 1 in segment s + 1 (3.4a)."""
    cb, _, _ = cbf
    bases = list(cb.bases) + [cb.num_codes]
    for s, u in enumerate(cb.thresholds):
        codes, _, _ = encode(np.array([u, u + 1], dtype=np.int64), cb, mode.spec_name)
        assert bases[s] <= int(codes[0]) < bases[s + 1], (s, u, int(codes[0]))
        assert bases[s + 1] <= int(codes[1]) < bases[s + 2], (s, u + 1, int(codes[1]))


@settings(max_examples=100, deadline=None)
@given(codebooks(min_extra_bits=8), st.sampled_from([RoundingMode.HALF_UP, RoundingMode.HALF_AWAY,
                                                    RoundingMode.HALF_EVEN]))
def test_round_trip_code_values(cbf, mode):
    """A consistent encoder (≥ 8 extra shift bits, |q| ≤ 80) maps each code's own
    stream value back to that code, with no saturation; the histogram is all ones."""
    cb, _, g = cbf
    xs = []
    for seg, enc in zip(cb.segments, cb.encoder):
        xs += [enc.center + q * seg.step * g for q in range(seg.qmin, seg.qmax + 1)]
    codes, sats, hist = encode(np.array(xs, dtype=np.int64), cb, mode)
    assert codes.tolist() == list(range(cb.num_codes))
    assert sats == 0
    assert hist.tolist() == [1] * cb.num_codes


@settings(max_examples=50, deadline=None)
@given(codebooks(), st.sampled_from(MODES), st.data())
def test_shape_preserved_and_enum_accepted(cbf, mode, data):
    cb, _, g = cbf
    xs = interesting_inputs(cb, g)
    xs = (xs * 2)[:12] if len(xs) < 12 else xs[:12]
    X = np.array(xs, dtype=np.int64).reshape(2, 3, 2)
    codes, sats, hist = encode(X, cb, mode)  # RoundingMode member, not its name
    assert codes.shape == (2, 3, 2)
    exp, exp_sats, exp_hist = ref_encode(xs, cb, mode)
    assert codes.reshape(-1).tolist() == exp
    assert sats == exp_sats and hist.tolist() == exp_hist


def test_far_outside_saturates_once_each():
    """One segment q ∈ [−3, 3], step 10 stream units: far inputs clamp, each one saturation."""
    cb = Codebook(unit_m=1, unit_e=0, segments=(Segment(0, 10, -3, 3),), thresholds=(),
                  encoder=(EncoderStage(center=0, mult=1 << 10, shift=10 + 4 - 0),))
    # E·2^-k = 2^10/2^14 = 1/16 ≠ 1/10 on purpose: the reference follows the stored encoder.
    xs = [-10**9, -1000, -48, -40, 0, 40, 48, 56, 1000, 10**9]
    for mode in MODES:
        codes = check_encode(xs, cb, mode)
        assert int(codes[0]) == 0 and int(codes[-1]) == 6


@pytest.mark.parametrize("mode", MODES)
def test_empty_input(mode):
    cb = Codebook(unit_m=1, unit_e=0, segments=(Segment(0, 1, 0, 3),), thresholds=(),
                  encoder=(EncoderStage(0, 1, 0),))
    codes, sats, hist = encode(np.zeros((0, 4), dtype=np.int64), cb, mode.spec_name)
    assert codes.shape == (0, 4) and sats == 0 and hist.tolist() == [0, 0, 0, 0]
