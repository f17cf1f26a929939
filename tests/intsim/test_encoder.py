"""The encoder (arithmetic.md §3.4) against a pure-Python reference, plus §3.2/§3.3 codes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intsim.artifact import Codebook, EncoderStage, Segment
from intsim.encoder import encode
from intsim.rounding import RoundingMode
from tests.exact_reference import ref_round_shift as ref_round

MODES = RoundingMode.names()  # every mode of §2, a new one included




def ref_encode(x: int, cb: Codebook, mode: str) -> tuple[int, bool]:
    """(code, saturated) for one stream integer, literally as (3.4a)–(3.4c)."""
    S = len(cb.segments)
    s = next((i for i, u in enumerate(cb.thresholds) if x <= u), S - 1)
    e = cb.encoder[s]
    t = ref_round((x - e.center) * e.mult, e.shift, mode)
    seg = cb.segments[s]
    q = min(max(t, seg.qmin), seg.qmax)
    base = sum(cb.segments[i].qmax - cb.segments[i].qmin + 1 for i in range(s))
    return base + q - seg.qmin, q != t


def codebook_3_3() -> Codebook:
    """arithmetic.md §3.3/§3.4: released b = 4, signed, bp = 1, u = 2^-16, f_in = 16."""
    return Codebook(
        unit_m=1, unit_e=16,
        segments=(Segment(-65536, 26214, -8, -1), Segment(0, 9362, -7, 7), Segment(65536, 40960, 1, 8)),
        thresholds=(-65537, 65536),
        encoder=(EncoderStage(-65536, 52429, 31), EncoderStage(0, 57346, 29), EncoderStage(65536, 52429, 31)),
        allocation="released", bits=4,
    )


# --------------------------------------------------------------------------
# worked examples


def test_codebook_example_3_3():
    cb = codebook_3_3()
    assert cb.num_codes == 31 and cb.code_bits == 5
    assert cb.bases == (0, 8, 23)
    # the steps of the example
    assert round(2**16 / 7) == 9362 and round((6 - 1) / 8 * 2**16) == 40960 and round((4.2 - 1) / 8 * 2**16) == 26214
    # flat code of (dense, q = −7) is 8
    seg, q, _ = cb.code_table()
    assert int(np.flatnonzero((seg == 1) & (q == -7))[0]) == 8


def test_encoder_example_3_4():
    cb = codebook_3_3()
    assert round(2**29 / 9362) == 57346 and round(2**31 / 40960) == 52429
    codes, sats, hist = encode(np.array([30000, 400000, 500000], dtype=np.int64), cb, "half_up")
    assert codes.tolist() == [18, 30, 30]
    assert sats == 1  # X = 500000: t = 11 clamped to 8
    assert hist.shape == (31,) and hist[18] == 1 and hist[30] == 2 and hist.sum() == 3
    # the intermediate values of the example
    assert ref_round(30000 * 57346, 29, "half_up") == 3
    assert ref_round(334464 * 52429, 31, "half_up") == 8
    assert ref_round((500000 - 65536) * 52429, 31, "half_up") == 11


def test_breakpoint_edges():
    """Thresholds are inclusive upper bounds: X = U_s is in segment s, U_s + 1 in s + 1 (3.4a)."""
    cb = codebook_3_3()
    xs = np.array([-65538, -65537, -65536, 65535, 65536, 65537], dtype=np.int64)
    seg, _, _ = cb.code_table()
    codes, _, _ = encode(xs, cb, "half_up")
    assert seg[codes].tolist() == [0, 0, 1, 1, 1, 2]


def test_any_shape_and_dtype():
    cb = codebook_3_3()
    x = np.arange(-600000, 600000, 997, dtype=np.int32).reshape(1, -1, 1)[:, :1200]
    codes, sats, hist = encode(x, cb, "floor")
    assert codes.shape == x.shape and codes.dtype == cb.code_dtype
    assert hist.sum() == x.size
    ref = [ref_encode(int(v), cb, "floor") for v in x.reshape(-1)]
    assert codes.reshape(-1).tolist() == [c for c, _ in ref]
    assert sats == sum(s for _, s in ref)
    c0, s0, h0 = encode(np.int64(30000), cb, "half_up")
    assert int(c0) == 18 and s0 == 0 and h0.sum() == 1


# --------------------------------------------------------------------------
# property test against the reference


@st.composite
def codebooks(draw):
    S = draw(st.integers(1, 3))
    segs, enc = [], []
    g = draw(st.integers(-1000, 1000))
    for _ in range(S):
        step = draw(st.integers(1, 5000))
        qmin = draw(st.integers(-20, 5))
        qmax = draw(st.integers(qmin, qmin + 30))
        origin = g - step * qmin + draw(st.integers(1, 100))
        segs.append(Segment(origin, step, qmin, qmax))
        g = origin + step * qmax
        enc.append(EncoderStage(draw(st.integers(-(1 << 22), 1 << 22)), draw(st.integers(1, (1 << 20))),
                                draw(st.integers(0, 40))))
    thresholds = sorted(draw(st.lists(st.integers(-(1 << 22), 1 << 22), min_size=S - 1, max_size=S - 1,
                                      unique=True)))
    return Codebook(unit_m=1, unit_e=16, segments=tuple(segs), thresholds=tuple(thresholds), encoder=tuple(enc))


@settings(max_examples=150, deadline=None)
@given(cb=codebooks(), xs=st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=40),
       mode=st.sampled_from(MODES))
def test_matches_reference(cb, xs, mode):
    # add the breakpoint edges: every threshold and its neighbours
    xs = xs + [u + d for u in cb.thresholds for d in (-1, 0, 1)]
    codes, sats, hist = encode(np.array(xs, dtype=np.int64), cb, mode)
    ref = [ref_encode(x, cb, mode) for x in xs]
    assert codes.tolist() == [c for c, _ in ref]
    assert sats == sum(s for _, s in ref)
    assert hist.tolist() == [sum(1 for c, _ in ref if c == k) for k in range(cb.num_codes)]


@pytest.mark.parametrize("mode", MODES)
def test_ties_follow_rounding_mode(mode):
    """One segment, step 4 stream units (E = 1, k = 2): X = 2, 6, −2, −6 are exact ties."""
    cb = Codebook(unit_m=1, unit_e=0, segments=(Segment(0, 1, -10, 10),), thresholds=(),
                  encoder=(EncoderStage(0, 1, 2),))
    xs = [2, 6, -2, -6, -7, 5]
    codes, _, _ = encode(np.array(xs), cb, mode)
    q = (codes - 10).tolist()
    expected = {"half_up": [1, 2, 0, -1, -2, 1], "half_away": [1, 2, -1, -2, -2, 1],
                "half_even": [0, 2, 0, -2, -2, 1], "floor": [0, 1, -1, -2, -2, 1],
                "half_zero": [0, 1, 0, -1, -2, 1]}[mode]
    assert q == expected


def test_bad_codebook_shape():
    cb = Codebook(unit_m=1, unit_e=0, segments=(Segment(0, 1, 0, 3),), thresholds=(5,),
                  encoder=(EncoderStage(0, 1, 0),))
    with pytest.raises(ValueError, match="thresholds"):
        encode(np.zeros(3, dtype=np.int64), cb, "half_up")
