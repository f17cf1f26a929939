"""The int8 dot-product path (intsim/kernels/int8dot.py, arithmetic.md §5.6) against the reference kernel.

Zero mismatches on outputs, events and MAC counts: random geometries (every
tile remainder: widths not a multiple of the tile, channels not a multiple of
16 or 4), every codebook shape (offset planes, indicator accumulators, the
grid realization's split decomposition, sparse tails), maximal codes with
maximal weights, the int32 bound at its edge and row windows (tiling). The
overflow policies (and the position the error names) are checked for every
fast path in tests/intsim/test_fast_paths.py. Skipped where the CPU cannot run
the kernels; ``auto`` then takes the float GEMM paths.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intsim.artifact import Codebook, Numerics, Segment
from intsim.kernels import int8dot as KI
from intsim.ops import conv as C
from intsim.ops import conv_fast
from intsim.overflow import EngineOverflowError
from intsim.rounding import RoundingMode
from tests.artifact_factory import make_codebook
from tests.intsim.test_conv import codebook_3_3, extreme_codes

pytestmark = pytest.mark.skipif(not KI.available(), reason="the CPU lacks AVX-512 VNNI (or INTSIM_INT8DOT=0 / "
                                "NUMBA_CPU_NAME is set): the int8 path cannot run here")

WIDE = Numerics(acc_bits=48, stream_bits=48)  # every op unordered, no stream overflow


def codebook_folding() -> Codebook:
    """codebook_3_3 with the tails' origins at the dense region's edge, ``e_s = ±7·d_dense``, as the
    default calibration's codebooks have them: both ``Q_s`` fold into the dense plane (§5.6)."""
    cb = codebook_3_3()
    neg, dense, pos = cb.segments
    return dataclasses.replace(cb, segments=(dataclasses.replace(neg, origin=-7 * dense.step), dense,
                                             dataclasses.replace(pos, origin=7 * dense.step)))


def codebook_folding_relu() -> Codebook:
    """Two segments, ``q ∈ [0, 255]`` then a tail at ``e = 255·d``: the folded value is the byte's top."""
    cb = make_codebook("relu2r", 8, 16, "split")
    dense, tail = cb.segments
    return dataclasses.replace(cb, segments=(dense, dataclasses.replace(tail, origin=255 * dense.step)))


def _codebooks() -> dict[str, Codebook]:
    return {
        "3_3": codebook_3_3(),  # three segments, tails with origin ≠ 0 (Q accumulators)
        "fold_3_3": codebook_folding(),  # the tails' Q accumulators folded into the dense plane
        "fold_relu_8": codebook_folding_relu(),
        "u8": make_codebook("uniform", 8, 16, "split"),  # q ∈ [−128, 127]: the full byte after the offset
        "u8_unsigned": make_codebook("uniform", 8, 16, "split", signed=False),  # q ∈ [0, 255]
        "signed2r_4": make_codebook("signed2r", 4, 16, "split"),
        "relu2r_8": make_codebook("relu2r", 8, 16, "split"),
        "grid_3_3": make_codebook("signed2r", 4, 16, "grid"),
    }


CODEBOOKS = _codebooks()


def _both(codes, cb, w, geom, num=WIDE, realization="split", rng=None, **kw):
    """(reference, int8) results of one conv2d; asserts the int8 path ran."""
    rng = rng or np.random.default_rng(0)
    co = w.shape[0]
    w_mant = rng.integers(1, 1 << 12, size=co)
    bias = rng.integers(-(1 << 30), 1 << 30, size=co)
    num = Numerics(**{**num.__dict__, "realization": realization})
    args = dict(w_exp=8, f_out=16, numerics=num, **geom, **kw)
    ref = C.conv2d(codes, cb, w, w_mant, bias, path="reference", **args)
    got = C.conv2d(codes, cb, w, w_mant, bias, path="int8", **args)
    return ref, got


def _assert_same(ref, got):
    np.testing.assert_array_equal(got[0], ref[0])
    assert got[1] == ref[1]


def _codes(rng, cb, shape, tail_fraction):
    """Codes of ``cb``: mostly the most populated segment's, ``tail_fraction`` from the others."""
    seg_sizes = [s.count for s in cb.segments]
    dense = int(np.argmax(seg_sizes))
    b = cb.bases[dense]
    codes = rng.integers(b, b + seg_sizes[dense], size=shape)
    tails = rng.random(shape) < tail_fraction
    codes[tails] = rng.integers(0, cb.num_codes, size=int(tails.sum()))
    return codes.astype(np.int64)


@contextlib.contextmanager
def _plane_chunk(rows: int | None):
    """The int8 path builds its offset planes ``rows`` output rows at a time (None: its default)."""
    saved = conv_fast.PLANE_CHUNK_BYTES, conv_fast.PLANE_CHUNK_MIN_ROWS
    if rows is not None:
        conv_fast.PLANE_CHUNK_BYTES, conv_fast.PLANE_CHUNK_MIN_ROWS = 0, rows
    try:
        yield
    finally:
        conv_fast.PLANE_CHUNK_BYTES, conv_fast.PLANE_CHUNK_MIN_ROWS = saved


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), h=st.integers(1, 14), w=st.integers(1, 40), ci=st.integers(1, 37),
       co=st.sampled_from([1, 3, 12, 16, 17, 33, 48, 64, 65, 80]), k=st.sampled_from([1, 2, 3, 5]),
       stride=st.integers(1, 2), dil=st.integers(1, 2), pad=st.integers(0, 2),
       cb_name=st.sampled_from(sorted(CODEBOOKS)), tail=st.sampled_from([0.0, 0.02, 0.5]),
       chunk=st.sampled_from([None, 1, 2, 5]))
def test_random_convs_match_reference(seed, h, w, ci, co, k, stride, dil, pad, cb_name, tail, chunk):
    """The int8 path equals the reference kernel, its offset planes built whole or a few output rows
    at a time (``chunk``: the halo rows of every chunk rebuilt, strides and dilations across chunks)."""
    rng = np.random.default_rng(seed)
    cb = CODEBOOKS[cb_name]
    realization = "grid" if cb_name.startswith("grid") else ("grid" if seed % 3 == 0 else "split")
    if (h + 2 * pad - dil * (k - 1)) < 1 or (w + 2 * pad - dil * (k - 1)) < 1:
        return  # empty output: nothing to compare
    codes = _codes(rng, cb, (h, w, ci), tail)
    wt = rng.integers(-128, 128, size=(co, k, k, ci)).astype(np.int8)
    geom = dict(stride=(stride, 1 + (seed % 2)), padding=(pad, (pad + seed) % 3), dilation=(dil, 1))
    if (w + 2 * geom["padding"][1] - (k - 1)) < 1:
        return
    with _plane_chunk(chunk):
        _assert_same(*_both(codes, cb, wt, geom, realization=realization, rng=rng))


@pytest.mark.parametrize("cb_name", sorted(CODEBOOKS))
def test_maximal_codes_and_weights(cb_name):
    """Every element at a segment's extreme code, weights at −128 and 127: the largest |acc'|."""
    cb = CODEBOOKS[cb_name]
    rng = np.random.default_rng(1)
    ext = np.array(extreme_codes(cb))
    codes = rng.choice(ext, size=(9, 23, 64)).astype(np.int64)
    for wv in (-128, 127):
        w = np.full((70, 3, 3, 64), wv, dtype=np.int8)
        _assert_same(*_both(codes, cb, w, dict(padding=(1, 1)),
                            realization="grid" if cb_name.startswith("grid") else "split"))


def test_int32_bound_edge():
    """255·Σ|w| = the largest value int32 holds is taken (and exact); one more is refused."""
    cb = make_codebook("uniform", 8, 16, "split", signed=False)  # q ∈ [0, 255], offset 0
    top = cb.bases[0] + cb.segments[0].count - 1  # q = 255
    l1 = KI.ACC_LIMIT // 255  # 8421504 = 128·65793
    ci = l1 // 128
    codes = np.full((1, 1, ci), top, dtype=np.int64)
    w = np.full((1, 1, 1, ci), -128, dtype=np.int8)  # acc = −255·128·65793 = −2147483520
    ref, got = _both(codes, cb, w, {})
    _assert_same(ref, got)
    w2 = np.concatenate([w, np.full((1, 1, 1, 1), -1, dtype=np.int8)], axis=3)  # Σ|w| one more
    codes2 = np.full((1, 1, ci + 1), top, dtype=np.int64)
    with pytest.raises(ValueError, match="int8' refused: 255·Σ|w|"):
        C.conv2d(codes2, cb, w2, np.array([1]), np.array([0]), w_exp=8, f_out=16, numerics=WIDE, path="int8")


def test_refusals_name_the_reason():
    cb = codebook_3_3()
    codes = np.zeros((4, 4, 4), dtype=np.int64)
    common = dict(w_exp=8, f_out=16, numerics=WIDE, path="int8")
    with pytest.raises(ValueError, match="groups = 1 only"):
        C.conv2d(codes, cb, np.ones((4, 3, 3, 2), np.int8), np.ones(4), np.zeros(4), groups=2, **common)
    with pytest.raises(ValueError, match="weights do not fit int8"):
        C.conv2d(codes, cb, np.full((4, 3, 3, 4), 200, np.int16), np.ones(4), np.zeros(4), **common)
    with pytest.raises(ValueError, match="not the transposed conv"):
        C.conv_transpose2d(codes, cb, np.ones((4, 3, 3, 4), np.int8), np.ones(4), np.zeros(4), stride=2, **common)
    wide = Codebook(unit_m=1, unit_e=16, segments=(Segment(0, 1, -200, 200),), thresholds=(),
                    encoder=codebook_3_3().encoder[1:2], bits=9)
    with pytest.raises(ValueError, match="span more than a byte"):
        C.conv2d(np.zeros((4, 4, 4), np.int64), wide, np.ones((4, 3, 3, 4), np.int8), np.ones(4), np.zeros(4),
                 **common)
    with pytest.raises(ValueError, match="must accumulate in order"):  # an ordered op never leaves the reference
        C.conv2d(codes, cb, np.full((4, 3, 3, 4), 127, np.int8), np.ones(4), np.zeros(4),
                 **{**common, "numerics": Numerics(acc_bits=8)})


@pytest.mark.parametrize("rounding", RoundingMode.names())
def test_rounding_modes(rounding):
    cb = make_codebook("signed2r", 8, 16, "split")
    rng = np.random.default_rng(4)
    codes = _codes(rng, cb, (5, 13, 20), 0.03)
    w = rng.integers(-128, 128, size=(24, 3, 3, 20)).astype(np.int8)
    _assert_same(*_both(codes, cb, w, dict(padding=(1, 1)), num=Numerics(acc_bits=40, stream_bits=40,
                                                                          rounding=rounding)))


def test_row_windows_match_the_whole_conv():
    """conv_rows (the tiling's op) on the int8 path: every band of output rows equals the untiled rows."""
    cb = make_codebook("signed2r", 4, 16, "split")
    rng = np.random.default_rng(6)
    codes = _codes(rng, cb, (17, 21, 8), 0.05)
    w = rng.integers(-128, 128, size=(20, 3, 3, 8)).astype(np.int8)
    args = dict(w_exp=8, f_out=16, numerics=WIDE, padding=(1, 1), stride=(2, 1))
    whole = C.conv2d(codes, cb, w, np.ones(20, np.int64), np.zeros(20, np.int64), path="reference", **args)
    ho = whole[0].shape[0]
    for y0, y1 in [(0, 3), (3, 7), (7, ho)]:
        lo, hi = max(0, 2 * y0 - 1), min(17, 2 * (y1 - 1) + 2)
        part = C.conv_rows(codes[lo:hi], lo, 17, y0, y1, cb, w, np.ones(20, np.int64), np.zeros(20, np.int64),
                           path="int8", **args)
        np.testing.assert_array_equal(part[0], whole[0][y0:y1])


def test_pack_weights_layout():
    """Packed byte (nb, k4, lane, i) holds w[nb·16 + lane, tap, ci = 4·c4 + i] (0 when padded)."""
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, size=(19, 2, 3, 5)).astype(np.int8)
    packed, colsum = KI.pack_weights(w, 8)
    p = packed.reshape(2, 6 * 2, 16, 4)
    for co in range(19):
        for t in range(6):
            for ci in range(8):
                want = w[co, t // 3, t % 3, ci] if ci < 5 else 0
                assert p[co // 16, t * 2 + ci // 4, co % 16, ci % 4] == want
    assert not p[1, :, 3:, :].any()
    np.testing.assert_array_equal(colsum, w.reshape(19, -1).astype(np.int64).sum(axis=1))


def _force_sparse_fraction(monkeypatch, fraction):
    """Every fast path's sparse threshold (the float GEMM paths' and the int8 path's)."""
    monkeypatch.setattr(conv_fast, "SPARSE_FRACTION", fraction)
    monkeypatch.setattr(conv_fast, "INT8_SPARSE_FRACTION", fraction)


def _asymmetric_tail_codes(rng, cb, shape, neg, pos):
    """Codes of a three-segment ``cb``: fraction ``neg`` in the lower tail, ``pos`` in the upper one."""
    lo, mid, hi = cb.bases
    u = rng.random(shape)
    codes = rng.integers(mid, hi, size=shape)
    codes = np.where(u < neg, rng.integers(lo, mid, size=shape), codes)
    codes = np.where(u > 1 - pos, rng.integers(hi, cb.num_codes, size=shape), codes)
    return codes.astype(np.int64)


@pytest.mark.parametrize("cb_name,sparse_fraction,planes", [
    ("3_3", 0.0, 5), ("3_3", 1.0, 1),  # P, Q of both tails as planes / the tails listed sparse
    ("fold_3_3", 0.0, 3), ("fold_3_3", 0.03, 2), ("fold_3_3", 1.0, 1),  # folded: 3 planes, 2 + sparse, 1 + sparse
])
@pytest.mark.parametrize("rounding", RoundingMode.names())
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_real_size_multi_plane_tiles(monkeypatch, cb_name, sparse_fraction, planes, rounding, overflow, chunk):
    """IMDN's body conv size (128×128×48 → 64, k3) with ~7 % outer codes (1 % below, 6 % above),
    as a default two-region calibration gives: every plane's tile combined in registers (or the
    tails listed sparse; with folded offsets, one tail a plane and the other sparse) equals the
    reference kernel, with a narrow stream so the policies and roundings act."""
    _force_sparse_fraction(monkeypatch, sparse_fraction)
    cb = CODEBOOKS[cb_name]
    rng = np.random.default_rng(24)
    codes = _asymmetric_tail_codes(rng, cb, (128, 128, 48), 0.01, 0.06)
    counts = np.bincount(np.searchsorted(cb.bases, codes.ravel(), side="right") - 1, minlength=3)
    consts = C.conv_constants(np.zeros((64, 3, 3, 48), np.int8), np.ones(64, np.int64), cb, WIDE)
    names, sparse, folded = conv_fast.int8_accumulators(cb, consts.planes, counts, True)
    assert len(names) == planes and (cb_name == "3_3") == ("F1" not in names)
    # folded tails listed sparse go through the int32 form of the sparse pass; unfolded ones (e_s ≠ 0) in int64
    assert (conv_fast.sparse_slots(cb, sparse, folded) is not None) == (cb_name == "fold_3_3" and bool(sparse))
    w = rng.integers(-128, 128, size=(64, 3, 3, 48)).astype(np.int8)
    num = Numerics(acc_bits=40, stream_bits=20, rounding=rounding, overflow=overflow)
    with _plane_chunk(chunk):  # the default builds 128×130×48 planes in one chunk; 7 rows: 19 chunks
        ref, got = _both(codes, cb, w, dict(padding=(1, 1)), num=num, rng=rng)
    _assert_same(ref, got)
    assert ref[1]["stream_overflow"] > 0  # the policy acted somewhere


@pytest.mark.parametrize("cb_name", ["3_3", "fold_3_3"])
def test_real_size_multi_plane_error_policy_names_the_first_column(monkeypatch, cb_name):
    _force_sparse_fraction(monkeypatch, 0.0)
    cb = CODEBOOKS[cb_name]
    rng = np.random.default_rng(25)
    codes = _codes(rng, cb, (64, 64, 48), 0.09)
    w = rng.integers(-128, 128, size=(64, 3, 3, 48)).astype(np.int8)
    num = Numerics(acc_bits=40, stream_bits=20, overflow="error")
    w_mant = rng.integers(1, 1 << 12, size=64)
    msgs = []
    for path in ("reference", "int8"):
        with pytest.raises(EngineOverflowError) as e:
            C.conv2d(codes, cb, w, w_mant, np.zeros(64, np.int64), w_exp=8, f_out=16,
                     numerics=num, padding=(1, 1), path=path)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


@pytest.mark.parametrize("cb_name", sorted(CODEBOOKS))
def test_folded_plane_and_sparse_values_sum_to_the_grid_values(cb_name):
    """§5.6 folded offsets, per code: ``d_t·v_F + gval = G`` in a folded segment (``gval = d_s·q``
    is the sparse pass's multiplicand), ``d_t·v_F = G − e_t`` in the dominant segment, ``v_F = 0``
    elsewhere; and the worked example of arithmetic.md (d_t 698, e 88646, d 3388, q 2)."""
    from intsim.ops.conv_paths import _plane_maps

    cb = CODEBOOKS[cb_name]
    seg_of, q_of, g_of = cb.code_table()
    for t, seg_t in enumerate(cb.segments):
        fp = _plane_maps(cb).get(f"F{t}")
        if fp is None:
            continue
        v = fp.map.table(cb.num_codes) - fp.map.offset
        for k in range(cb.num_codes):
            s = int(seg_of[k])
            if s == t:
                assert seg_t.step * v[k] == g_of[k] - seg_t.origin
            elif s in fp.folded:
                assert seg_t.step * v[k] + fp.gval[k] == g_of[k]
                assert fp.gval[k] == cb.segments[s].step * q_of[k]
            else:
                assert v[k] == 0 and fp.gval[k] == g_of[k]
    # the worked example: IMDB1.c1's input codebook of the W8A8 default artifact
    ex = dataclasses.replace(codebook_3_3(), segments=(Segment(-88646, 4522, -128, -1), Segment(0, 698, -127, 127),
                                                       Segment(88646, 3388, 1, 128)))
    fp = _plane_maps(ex)["F1"]
    k = ex.bases[2] + 2 - 1  # (upper tail, q = 2)
    assert ex.code_table()[2][k] == 95422
    assert fp.map.table(ex.num_codes)[k] - fp.map.offset == 127 and fp.gval[k] == 3388 * 2
    assert 698 * 127 + fp.gval[k] == 95422


def test_folding_needs_a_common_multiple():
    """No fold where ``e_s`` is not a multiple of the dominant step (codebook_3_3: 65536 = 7·9362 + 2)."""
    from intsim.ops.conv_paths import _plane_maps

    assert not any(k.startswith("F") for k in _plane_maps(codebook_3_3()))
    assert "F1" in _plane_maps(codebook_folding())


def _plan_parts(p) -> tuple:
    """An :class:`Int8Plan` (or a refusal) as comparable values: arrays as tuples."""
    if isinstance(p, str):
        return (p,)
    arr = lambda a: None if a is None else tuple(np.asarray(a).ravel().tolist())  # noqa: E731
    slots = None if p.slots is None else tuple(arr(a) for a in p.slots)
    return (tuple(p.planes), tuple(p.sparse_segs), p.y_off, p.x_off, arr(p.gval), slots, arr(p.offsets),
            arr(p.factors))


@pytest.mark.parametrize("cb_name", ["3_3", "fold_3_3", "signed2r_4", "relu2r_8"])
def test_int8_plan_kept_per_census_class_equals_a_fresh_plan(monkeypatch, cb_name):
    """The plan kept per census class (first maximum, which segments are rare enough to be sparse,
    can_sparse) is the plan the census gives, for censuses that differ in any of these, whatever
    was asked before on the same constants, also after the sparse threshold moves."""
    from intsim.ops.conv_taps import conv2d_taps

    cb = CODEBOOKS[cb_name]
    S = len(cb.segments)
    consts = C.conv_constants(np.ones((8, 3, 3, 4), np.int8), np.ones(8, np.int64), cb, WIDE)
    taps = conv2d_taps(16, 16, 3, 3, 1, 1, 1, 1, 1, 1)
    rng = np.random.default_rng(5)
    censuses = [rng.integers(0, 1000, S) for _ in range(40)] + [np.eye(S, dtype=np.int64)[s] * 500 for s in range(S)]
    for fraction in (conv_fast.INT8_SPARSE_FRACTION, 0.3, 0.0):
        monkeypatch.setattr(conv_fast, "INT8_SPARSE_FRACTION", fraction)
        seen = set()
        for counts in censuses:
            for can_sparse in (True, False):
                fresh = _plan_parts(conv_fast._int8_plan(consts, cb, counts, can_sparse, taps))
                assert _plan_parts(conv_fast.int8_plan(consts, cb, counts, can_sparse, taps)) == fresh
                seen.add(fresh)
        assert len(seen) > 1  # the censuses reach more than one plan


@pytest.mark.parametrize("buffer_rows", [1, 3, 64])
@pytest.mark.parametrize("chunk", [None, 1, 4])
def test_rows_sink_gets_every_row_once_through_a_small_buffer(buffer_rows, chunk, monkeypatch):
    """With a rows sink the int8 path stores no output (None in its place): the sink gets every output
    row once, a few at a time (at most the buffer's rows per call), equal to the rows of the stored
    run, and the events are the stored run's (sparse tails on, stride 2, a ragged last buffer)."""
    cb = make_codebook("signed2r", 4, 16, "split")
    rng = np.random.default_rng(8)
    codes = _codes(rng, cb, (23, 19, 8), 0.05)
    w = rng.integers(-128, 128, size=(20, 3, 3, 8)).astype(np.int8)
    args = dict(w_exp=8, f_out=16, numerics=WIDE, padding=(1, 1), stride=(2, 1), path="int8")
    whole, ev = C.conv2d(codes, cb, w, np.ones(20, np.int64), np.zeros(20, np.int64), **args)
    ho, wo, co = whole.shape
    monkeypatch.setattr(conv_fast, "SINK_BUFFER_BYTES", buffer_rows * wo * co * 8)
    got = np.full_like(whole, -1)
    calls = []

    def sink(y0, y1, rows):
        calls.append((y0, y1))
        got[y0:y1] = rows

    with _plane_chunk(chunk):  # planes built a few rows at a time, the sink's buffer cutting across them
        out, ev_sink = C.conv2d(codes, cb, w, np.ones(20, np.int64), np.zeros(20, np.int64), rows_sink=sink, **args)
    assert out is None and ev_sink == ev
    calls.sort()  # bands may run on several threads: disjoint, in any order, together every row
    assert calls[0][0] == 0 and calls[-1][1] == ho and all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
    assert all(0 < y1 - y0 <= buffer_rows for y0, y1 in calls) and len(calls) >= -(-ho // buffer_rows)
    np.testing.assert_array_equal(got, whole)
