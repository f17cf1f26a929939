"""Fast exact kernels against the reference kernel: zero mismatches (docs/arithmetic.md §5).

Every fast path must reproduce :func:`intsim.kernels.conv.conv_kernel` (the
reference, itself checked against pure-Python references in test_conv.py) on
every output value, every event count and every MAC count:

* the float32/float64 GEMM paths of the convolution (split: dense segment by
  GEMM, tails by the sparse int64 pass; grid: one GEMM of G), in both the
  im2col and the kn2row forms, with groups, stride, dilation, transposed
  convs, all rounding modes, saturate/wrap/error policies;
* adversarial inputs: maximal codes with maximal weights, all-outlier inputs,
  every segment forced through the sparse pass or through GEMM;
* real inputs: Set5 LR crops through random artifacts, engine counters
  compared between ``INTSIM_CONV_PATH=reference`` and ``auto``;
* the exactness gate: float32 only while every GEMM accumulator's worst case
  is below 2^24, float64 below 2^53, never for an ordered op;
* the fused encoder and pixel-shuffle kernels the engine uses against
  :func:`intsim.encoder.encode` and :func:`intsim.ops.resample.pixel_shuffle`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from intsim import bounds, engine, op_dispatch
from intsim.artifact import Codebook, EncoderStage, Numerics, Segment
from intsim.encoder import encode
from intsim.kernels import int8dot as KI
from intsim.kernels.encode import _count_codes
from intsim.kernels import parallel as KP
from intsim.kernels.resample import pixel_shuffle_bands
from intsim.ops import conv as C
from intsim.ops import conv_fast, conv_paths
from intsim.ops.resample import pixel_shuffle
from intsim.overflow import EngineOverflowError
from tests.artifact_factory import make_codebook, make_random_artifact
from tests.intsim.test_conv import MODES, codebook_3_3, extreme_codes, random_case

SET5_X4 = Path(os.environ.get("INTSIM_DATA_ROOT", "/work/shared")) / "data" / "Set5" / "LR_bicubic" / "X4"
FAST = ("gemm32", "gemm64", "int8", "auto")


def _ref_and_fast(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed, paths=FAST, **kw):
    """Run the reference and every allowed fast path; assert identical outputs and events."""
    ref = run_op(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed, path="reference", **kw)
    ran = []
    for p in paths:
        try:
            got = run_op(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed, path=p, **kw)
        except ValueError as e:  # a forced path that is not proven exact is refused, never run
            assert "refused" in str(e)
            continue
        np.testing.assert_array_equal(got[0], ref[0], err_msg=f"path {p}")
        assert got[1] == ref[1], f"path {p}: events {got[1]} != {ref[1]}"
        ran.append(p)
    return ref, ran


def run_op(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed, ordered=None, name="op", path=None):
    """test_conv's helper with a ``path`` argument."""
    if transposed:
        return C.conv_transpose2d(codes, cb, w, w_mant, bias, w_exp=w_exp, f_out=f_out, stride=geom["stride"],
                                  padding=geom["padding"], output_padding=geom["output_padding"], numerics=num,
                                  name=name, ordered=ordered, path=path)
    return C.conv2d(codes, cb, w, w_mant, bias, w_exp=w_exp, f_out=f_out, stride=geom["stride"],
                    padding=geom["padding"], dilation=geom["dilation"], groups=geom["groups"], numerics=num,
                    name=name, ordered=ordered, path=path)



@pytest.fixture
def spy_dtype(monkeypatch):
    """Records the float dtype of every GEMM-path call (None entries: reference path)."""
    seen = []
    orig = conv_paths.run_gemm

    def wrapped(*args, **kwargs):
        seen.append(np.dtype(args[11]))  # the dtype argument of _run_gemm
        return orig(*args, **kwargs)

    monkeypatch.setattr(conv_paths, "run_gemm", wrapped)
    return seen


# --------------------------------------------------------------------------
# random and adversarial convs


@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_random_cases_all_paths(realization, transposed, mode):
    rng = np.random.default_rng([7, realization == "grid", transposed, MODES.index(mode)])
    n_fast = 0
    for trial in range(12):
        cb, codes, w, w_mant, bias, w_exp, f_out, geom = random_case(rng, realization, transposed,
                                                                     adversarial=trial % 3 == 1)
        num = Numerics(rounding=mode, realization=realization, overflow=("saturate", "wrap")[trial % 2],
                       acc_bits=48, stream_bits=(40, 16)[trial % 2])
        _, ran = _ref_and_fast(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed)
        n_fast += "gemm64" in ran
    assert n_fast >= 8  # the float64 path actually ran on most cases


@pytest.mark.parametrize("sparse_fraction", [0.0, 1.0])
@pytest.mark.parametrize("kn2row_max", [0, 1024])
def test_forced_sparse_and_gemm_segments(monkeypatch, sparse_fraction, kn2row_max):
    """Every non-dominant segment through the sparse pass (1.0) or through its own GEMM (0.0),
    in the im2col (kn2row_max 0) and kn2row forms."""
    monkeypatch.setattr(conv_fast, "SPARSE_FRACTION", sparse_fraction)
    monkeypatch.setattr(C, "KN2ROW_MAX_CO", kn2row_max)
    rng = np.random.default_rng([11, int(sparse_fraction), kn2row_max])
    for trial in range(16):
        realization = "split"
        transposed = trial % 4 == 3
        cb, codes, w, w_mant, bias, w_exp, f_out, geom = random_case(rng, realization, transposed,
                                                                     adversarial=trial % 2 == 0)
        num = Numerics(rounding=MODES[trial % 4], realization=realization, acc_bits=48, stream_bits=40)
        _ref_and_fast(codes, cb, w, w_mant, bias, w_exp, f_out, geom, num, transposed)


GEOMS = [
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(stride=(1, 1), padding=(2, 2), dilation=(2, 2), groups=1),
    dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2),
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=8),  # depthwise
]


@pytest.mark.parametrize("geom", GEOMS)
@pytest.mark.parametrize("realization", ["split", "grid"])
@pytest.mark.parametrize("co", [8, 32])  # kn2row (≤ 16 outputs, stride 1) and im2col
def test_maximal_codes_and_weights(geom, realization, co):
    """Maximal |q| / |G| codes with weights ±127/−128: the worst cases of §5.4 are reached."""
    rng = np.random.default_rng([GEOMS.index(geom), realization == "grid", co])
    cb = codebook_3_3()
    g = geom["groups"]
    codes = rng.choice(extreme_codes(cb), size=(9, 11, 8)).astype(np.int64)
    w = rng.choice([-128, 127], size=(co, 3, 3, 8 // g)).astype(np.int8)
    w_mant = rng.integers(1, 128, size=co)
    bias = rng.integers(-(1 << 30), 1 << 30, size=co)
    for mode in MODES:
        num = Numerics(rounding=mode, realization=realization, acc_bits=48, stream_bits=40)
        _, ran = _ref_and_fast(codes, cb, w, w_mant, bias, 8, 16, geom, num, False)
        assert "gemm64" in ran


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_all_outlier_inputs(realization, spy_dtype):
    """Every code in a tail segment (no dense code at all), conv and transposed conv."""
    cb = codebook_3_3()
    rng = np.random.default_rng(5)
    tails = [c for c in range(cb.num_codes) if not 8 <= c < 23]
    codes = rng.choice(tails, size=(10, 12, 16)).astype(np.int64)
    w = rng.integers(-8, 8, size=(24, 3, 3, 16)).astype(np.int8)
    w_mant = rng.integers(1, 64, size=24)
    bias = rng.integers(-(1 << 20), 1 << 20, size=24)
    num = Numerics(realization=realization, acc_bits=40, stream_bits=40)
    geom = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    _, ran = _ref_and_fast(codes, cb, w, w_mant, bias, 6, 16, geom, num, False)
    assert ran and all(dt in (np.float32, np.float64) for dt in spy_dtype)
    tgeom = dict(stride=(2, 2), padding=(1, 1), output_padding=(1, 1))
    _ref_and_fast(codes, cb, w[:, :, :, :16], w_mant, bias, 6, 16, tgeom, num, True)


@pytest.mark.parametrize("policy", ["saturate", "wrap", "error"])
def test_stream_overflow_policies(policy):
    """Stream overflow events (and the error message's row and column) equal the reference's.
    29 columns and 40 channels: the int8 path's pixel tiles and channel vectors both have remainders."""
    cb = codebook_3_3()
    rng = np.random.default_rng(3)
    codes = rng.integers(0, cb.num_codes, size=(6, 29, 5)).astype(np.int64)
    w = rng.integers(-128, 128, size=(40, 3, 3, 5)).astype(np.int8)
    geom = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    num = Numerics(overflow=policy, stream_bits=12, rounding="half_away")
    args = (codes, cb, w, np.arange(1, 41), np.zeros(40, np.int64), 4, 12, geom, num, False)
    fast = ["gemm32", "gemm64"] + (["int8"] if KI.available() else [])
    if policy != "error":
        ref, ran = _ref_and_fast(*args)
        assert ref[1]["stream_overflow"] > 0 and set(fast) <= set(ran)
        return
    msgs = []
    for p in ["reference"] + fast:
        with pytest.raises(EngineOverflowError) as e:
            run_op(*args, path=p, name="body.0.conv")
        msgs.append(str(e.value))
    assert len(set(msgs)) == 1 and "output stream" in msgs[0]


# --------------------------------------------------------------------------
# the exactness gate


def test_gate_float32_only_below_2_24():
    worst = {"P0": 10, "P1": (1 << 24) - 1, "Q2": 5}
    assert conv_paths.select_conv_path(worst, ["P1"], ordered=False) == "gemm32"
    worst["P1"] = 1 << 24
    assert conv_paths.select_conv_path(worst, ["P1"], ordered=False) == "gemm64"
    with pytest.raises(ValueError, match="refused"):
        conv_paths.select_conv_path(worst, ["P1"], ordered=False, requested="gemm32")
    assert conv_paths.select_conv_path(worst, ["P0"], ordered=False) == "gemm32"  # only GEMM accumulators count
    worst["P1"] = (1 << 53) - 1
    assert conv_paths.select_conv_path(worst, ["P1"], ordered=False) == "gemm64"
    worst["P1"] = 1 << 53
    assert conv_paths.select_conv_path(worst, ["P1"], ordered=False) == "reference"
    with pytest.raises(ValueError, match="refused"):
        conv_paths.select_conv_path(worst, ["P1"], ordered=False, requested="gemm64")
    # an op that can overflow is ordered: reference only, whatever the bound
    assert conv_paths.select_conv_path({"A": 1}, ["A"], ordered=True) == "reference"
    with pytest.raises(ValueError, match="order"):
        conv_paths.select_conv_path({"A": 1}, ["A"], ordered=True, requested="gemm32")
    with pytest.raises(ValueError, match="unknown"):
        conv_paths.requested_path("fast")


def _uniform_cb(qmax: int) -> Codebook:
    return Codebook(unit_m=1, unit_e=8, segments=(Segment(0, 1, -qmax, qmax),), thresholds=(),
                    encoder=(EncoderStage(0, 1, 0),), grid_bits=None)


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_float32_not_taken_beyond_2_24(spy_dtype, realization):
    """A conv whose worst case is just below / at 2^24: float32 below, float64 at the limit, both exact;
    then a bound at 2^53 goes to the reference kernel."""
    rng = np.random.default_rng(1)
    qmax = 1 << 10
    cb = _uniform_cb(qmax)
    num = Numerics(realization=realization, acc_bits=48, stream_bits=40)
    geom = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    codes = np.where(rng.random((6, 6, 4)) < 0.5, 0, 2 * qmax).astype(np.int64)  # q = ±qmax
    # Σ|w| per output channel = 2^14 − 1 (below) or 2^14 (at 2^24 with a = 2^10)
    for l1, want in (((1 << 14) - 1, np.float32), (1 << 14, np.float64)):
        w = np.zeros((2, 3, 3, 4), dtype=np.int16)
        flat = w.reshape(2, -1)
        flat[:, :] = l1 // 36
        flat[:, 0] += l1 - 36 * (l1 // 36)
        flat[1] *= -1
        assert max(C.accumulator_worst(w, cb, realization).values()) == l1 * qmax
        spy_dtype.clear()
        _ref_and_fast(codes, cb, w, np.array([3, 5]), np.array([0, 7]), 4, 0, geom, num, False, paths=("auto",))
        assert spy_dtype == [np.dtype(want)]
    # at 2^53 the float64 path is refused and auto runs the reference kernel (grid: a = max|G| ≈ 2^40)
    big = Codebook(unit_m=1, unit_e=8, segments=(Segment(1 << 40, 1, 0, 3),), thresholds=(),
                   encoder=(EncoderStage(0, 1, 0),), grid_bits=None)
    w = np.full((1, 1, 1, 1), 1 << 13, dtype=np.int16)
    codes = np.zeros((2, 2, 1), dtype=np.int64)
    assert max(C.accumulator_worst(w, big, "grid").values()) >= 1 << 53
    spy_dtype.clear()
    run_op(codes, big, w, np.array([1]), np.array([0]), 0, 0, dict(stride=(1, 1), padding=(0, 0),
           dilation=(1, 1), groups=1), Numerics(realization="grid", acc_bits=48, stream_bits=40), False,
           ordered=False, path="auto")
    assert spy_dtype == []


def test_ordered_op_stays_on_reference(spy_dtype):
    cb = codebook_3_3()
    codes = np.full((3, 3, 4), cb.num_codes - 1, dtype=np.int64)
    w = np.full((2, 3, 3, 4), 127, dtype=np.int8)
    num = Numerics(overflow="saturate", acc_bits=12, stream_bits=40)
    x, ev = C.conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0, padding=1, numerics=num,
                     path="auto")
    assert ev["ordered"] and ev["acc_overflow"] > 0 and spy_dtype == []
    with pytest.raises(ValueError, match="order"):
        C.conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0, padding=1, numerics=num,
                 path="gemm64")


def test_env_var_selects_reference(monkeypatch, spy_dtype):
    cb = codebook_3_3()
    codes = np.full((3, 3, 2), 10, dtype=np.int64)
    w = np.ones((2, 3, 3, 2), dtype=np.int8)
    int8_calls = []
    orig = conv_paths.run_int8
    monkeypatch.setattr(conv_paths, "run_int8", lambda *a, **k: int8_calls.append(1) or orig(*a, **k))
    monkeypatch.setenv("INTSIM_CONV_PATH", "reference")
    a = C.conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0, padding=1)
    assert spy_dtype == [] and int8_calls == []
    monkeypatch.setenv("INTSIM_CONV_PATH", "auto")  # int8 where the CPU has it, else float32
    b = C.conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0, padding=1)
    assert (int8_calls, spy_dtype) == (([1], []) if KI.available() else ([], [np.float32]))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    monkeypatch.setenv("INTSIM_CONV_PATH", "gemm32")
    c = C.conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0, padding=1)
    assert spy_dtype[-1] == np.float32
    np.testing.assert_array_equal(a[0], c[0])
    monkeypatch.setenv("INTSIM_CONV_PATH", "bogus")
    with pytest.raises(ValueError, match="INTSIM_CONV_PATH"):
        C.conv2d(codes, cb, w, np.array([1, 2]), np.array([0, 0]), w_exp=0, f_out=0)


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_worst_cases_equal_bounds_module(realization):
    """The gate's W_j (bare arrays) equal intsim.bounds' per-accumulator worst cases (the engine passes those)."""
    art = make_random_artifact(3, realization=realization)
    n = 0
    for op in art.ops:
        if op.op not in ("conv2d", "conv_transpose2d"):
            continue
        cb = art.tensors[op.inputs[0]].codebook
        mine = C.accumulator_worst(art.array(op, "weight"), cb, realization)
        theirs = {b.name: b.worst_max for b in bounds.conv_accumulators(art, op)}
        assert mine == theirs
        n += 1
    assert n >= 8


# --------------------------------------------------------------------------
# real inputs: Set5 LR crops through whole random artifacts, and a two-layer real-data conv


def _set5_crops(size: int, n: int):
    if not SET5_X4.is_dir():
        pytest.skip(f"Set5 LR images not found under {SET5_X4} (set INTSIM_DATA_ROOT)")
    from intsim.images import read_image

    out = []
    for p in sorted(SET5_X4.glob("*.png"))[:n]:
        px = read_image(p, 3).pixels
        y0, x0 = (px.shape[0] - size) // 2, (px.shape[1] - size) // 2
        out.append((p.stem, np.ascontiguousarray(px[y0:y0 + size, x0:x0 + size])))
    return out


def _run_with_path(monkeypatch, art, img, path):
    monkeypatch.setenv("INTSIM_CONV_PATH", path)
    return engine.run(art, img, keep_tensors=True)


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_set5_crops_random_artifacts(monkeypatch, realization):
    """Whole graphs (every op type) on real LR crops: every tensor and every counter identical."""
    for i, (name, img) in enumerate(_set5_crops(24, 3)):
        art = make_random_artifact(20 + i, realization=realization, rounding=MODES[i % len(MODES)])
        ref = _run_with_path(monkeypatch, art, img, "reference")
        fast = _run_with_path(monkeypatch, art, img, "auto")
        assert ref.tensors.keys() == fast.tensors.keys()
        for t in ref.tensors:
            np.testing.assert_array_equal(fast.tensors[t], ref.tensors[t], err_msg=f"{name}: tensor {t}")
        assert fast.counters == ref.counters


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_set5_real_codes_64_channels(realization):
    """A real 64-channel activation: a Set5 crop lifted to 64 channels by a fixed random 1×1 mix,
    encoded with a two-region codebook (≈ 1–3 % outliers), then 3×3 convs with 4- and 8-bit weights."""
    (name, img), = _set5_crops(40, 1)
    rng = np.random.default_rng(0)
    x = img.astype(np.float64) / 255.0 - 0.45
    mix = rng.normal(0, 1, (3, 64))
    feat = x @ mix
    f_in = 16
    X = np.floor(feat * (1 << f_in) + 0.5).astype(np.int64)
    bp = float(np.percentile(np.abs(feat), 98))
    cb = make_codebook("signed2r", 4, f_in, realization, bp=bp, lo=float(feat.min()) * 1.02,
                       hi=float(feat.max()) * 1.02)
    codes, _, hist = encode(X, cb, "half_up")
    seg = cb.code_table()[0][codes]
    assert 0.003 < np.mean(seg != 1) < 0.2  # real outliers, a minority
    for wbits in (4, 8):
        lim = (1 << (wbits - 1)) - 1
        w = np.clip(np.round(rng.normal(0, lim / 2.5, (64, 3, 3, 64))), -lim, lim).astype(np.int8)
        for mode in MODES:
            num = Numerics(rounding=mode, realization=realization, acc_bits=32, stream_bits=24)
            geom = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
            ordered = C.conv_can_overflow(w, cb, realization, num.acc_bits)
            f_out = 8 + cb.unit_e - 12
            _, ran = _ref_and_fast(codes, cb, w, rng.integers(100, 200, 64), rng.integers(-1000, 1000, 64), 8,
                                   f_out, geom, num, False)
            assert ran or ordered


# --------------------------------------------------------------------------
# the other fused kernels the engine uses


@pytest.mark.parametrize("mode", MODES)
def test_fused_encoder_equals_reference(mode):
    """Every rounding mode (half_up / floor take the branch-free loops) and 3, 2 and 1 segments
    (each segment count compiles its own loop)."""
    rng = np.random.default_rng(MODES.index(mode))
    seen_segments = set()
    for kind, signed in (("signed2r", True), ("relu2r", False), ("uniform", True), ("uniform", False)):
        cb = make_codebook(kind, 4, 12, "split", bp=1.0, signed=signed)
        seen_segments.add(len(cb.segments))
        th = list(cb.thresholds)
        edges = np.array([t + d for t in th for d in (-1, 0, 1)] + [e.center + d for e in cb.encoder
                                                                  for d in (-1, 0, 1)], dtype=np.int64)
        X = rng.integers(-(1 << 16), 1 << 16, size=(13, 17, 5)).astype(np.int64)
        X.reshape(-1)[:edges.size] = edges  # threshold and centre edges
        X[0, 0, :2] = [-(1 << 23), (1 << 23) - 1]  # saturating extremes
        ref = encode(X, cb, mode)
        got = op_dispatch.encode_fast(X, cb, mode)
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1] and ref[1] > 0
        np.testing.assert_array_equal(got[2], ref[2])
    assert seen_segments == {1, 2, 3}


@pytest.mark.parametrize("chunk", [5, 8, 1 << 30])
def test_code_counter_equals_bincount(chunk):
    """The encoder's histogram pass over any sub-range, with passes split every ``chunk`` codes
    (its int32 sub-counters are emptied between passes), equals ``np.bincount``."""
    rng = np.random.default_rng(chunk)
    for K, dtype in ((16, np.int16), (256, np.int16), (40000, np.int32)):
        codes = rng.integers(0, K, 1000).astype(dtype)
        codes[100:300] = K - 1  # a long run of one code
        for i0, i1 in ((0, 1000), (3, 997), (10, 17), (5, 5)):
            hist = np.ones(K, dtype=np.int64)  # the pass adds to what is there
            _count_codes(codes, i0, i1, hist, chunk)
            np.testing.assert_array_equal(hist, 1 + np.bincount(codes[i0:i1], minlength=K))


def test_pixel_shuffle_kernel():
    rng = np.random.default_rng(2)
    for r in (1, 2, 3, 4):
        x = rng.integers(-(1 << 40), 1 << 40, size=(9, 7, 3 * r * r)).astype(np.int64)
        np.testing.assert_array_equal(pixel_shuffle_bands(x, r), pixel_shuffle(x, r)[0])


def test_threads_do_not_change_results(monkeypatch):
    cb = codebook_3_3()
    rng = np.random.default_rng(9)
    codes = rng.integers(0, cb.num_codes, size=(33, 21, 16)).astype(np.int64)
    w = rng.integers(-8, 8, size=(48, 3, 3, 16)).astype(np.int8)
    args = dict(w_exp=6, f_out=16, padding=1, numerics=Numerics(acc_bits=32, stream_bits=24))
    w_mant = rng.integers(1, 9, 48)
    outs = []
    for t in ("1", "3"):
        monkeypatch.setenv("INTSIM_THREADS", t)
        assert KP.num_threads() == int(t)
        outs.append(C.conv2d(codes, cb, w, w_mant, np.zeros(48, np.int64), **args))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", ["saturate", "wrap"])
def test_slope_kernel_equals_reference(mode, policy):
    """leaky_relu / prelu kernel (engine fast path) against intsim.ops.elementwise, with stream overflow."""
    from intsim.kernels.elementwise import slope_bands
    from intsim.ops import elementwise as ew
    from intsim.overflow import OverflowPolicy
    from intsim.rounding import RoundingMode

    rng = np.random.default_rng([MODES.index(mode), policy == "wrap"])
    num = Numerics(rounding=mode, overflow=policy, stream_bits=12)
    X = rng.integers(-(1 << 11), 1 << 11, size=(17, 9, 6)).astype(np.int64)
    X[0, 0, :3] = [-1, -(1 << 11), 0]
    args = (int(RoundingMode.parse(mode)), int(OverflowPolicy.parse(policy)), num.stream_bits)
    M = 3277
    ref = ew.leaky_relu(X, mult=M, shift=16, numerics=num)
    got = slope_bands(X, np.full(6, M, np.int64), 16, *args)
    np.testing.assert_array_equal(got[0][0], ref[0])
    assert got[1] == ref[1]["stream_overflow"]
    Mc = rng.integers(-40000, 40000, size=6)  # negative and > 1 slopes: overflow events
    ref = ew.prelu(X, Mc, shift=14, numerics=num)
    got = slope_bands(X, Mc, 14, *args)
    np.testing.assert_array_equal(got[0][0], ref[0])
    assert got[1] == ref[1]["stream_overflow"] and ref[1]["stream_overflow"] > 0
    fused = slope_bands(X, Mc, 14, *args, sizes=[1, 3, 2])  # fused with a split: the same integers, sliced
    for part, want in zip(fused[0], ew.split(ref[0], [1, 3, 2])[0]):
        assert part.flags.c_contiguous
        np.testing.assert_array_equal(part, want)
    assert fused[1] == ref[1]["stream_overflow"]
    # shift 0 (R(I, 0) = I in every mode: the branch-free loop under saturate): relu as slope 0, and
    # integer slopes that overflow the stream
    got = slope_bands(X, np.zeros(6, np.int64), 0, *args)
    np.testing.assert_array_equal(got[0][0], ew.relu(X)[0])
    assert got[1] == 0
    Mi = rng.integers(-3, 4, size=6)
    ref = ew.prelu(X, Mi, shift=0, numerics=num)
    got = slope_bands(X, Mi, 0, *args)
    np.testing.assert_array_equal(got[0][0], ref[0])
    assert got[1] == ref[1]["stream_overflow"] and (policy == "wrap" or ref[1]["stream_overflow"] > 0)


@pytest.mark.parametrize("kind", ["uniform", "relu2r", "signed2r"])
def test_segment_census_matches_conv_macs(kind):
    """The census behind the MAC counters (banded kernel, or the shape shortcut for one segment)
    equals the matrix form of intsim.kernels.conv.conv_macs, and counts every row's elements."""
    from intsim.kernels import conv as K
    cb = make_codebook(kind, 4, 16, "split")
    rng = np.random.default_rng(8)
    codes = rng.integers(0, cb.num_codes, size=(11, 9, 5)).astype(np.int64)
    seg_of = cb.code_table()[0]
    S = len(cb.segments)
    for k, s, p, d in [(3, 1, 1, 1), (5, 2, 0, 1), (3, 1, 2, 2)]:
        iy_of = K.conv2d_tap_table(11, k, s, p, d)
        ix_of = K.conv2d_tap_table(9, k, s, p, d)
        weighted, rows = conv_fast.segment_counts(codes, seg_of, S, K.tap_usage(iy_of, 11), K.tap_usage(ix_of, 9))
        np.testing.assert_array_equal(weighted, K.conv_macs(codes, seg_of, S, iy_of, ix_of, 1))
        np.testing.assert_array_equal(rows, np.stack([np.count_nonzero(seg_of[codes] == g, axis=(1, 2))
                                                      for g in range(S)], axis=1))


@pytest.mark.parametrize("seed", range(4))
def test_sparse_listing_by_range_equals_the_table_form(seed):
    """The sparse pass lists the same elements, in the same order, whether the codes outside one dense
    range are found by the per-pixel range test or by the per-code table (any code set)."""
    from intsim.kernels import gemm as KG

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 31, size=(9, 21, 37)).astype(np.int16)
    codes[rng.random(codes.shape) < 0.9] = 12  # mostly dense, some pixels without any sparse code
    lo, hi = 8, 23
    is_sparse = (np.arange(31) < lo) | (np.arange(31) >= hi)
    counts = is_sparse[codes].reshape(codes.shape[0], -1).sum(axis=1)
    rowptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    got = [np.empty(int(rowptr[-1]), np.int64) for _ in range(4)]
    KG.sparse_fill_outside(codes, lo, hi, rowptr, 0, codes.shape[0], got[0], got[1])
    KG.sparse_fill(codes, is_sparse, rowptr, 0, codes.shape[0], got[2], got[3])
    np.testing.assert_array_equal(got[0], got[2])
    np.testing.assert_array_equal(got[1], got[3])
    ys = np.repeat(np.arange(codes.shape[0]), counts)
    assert is_sparse[codes[ys, got[0], got[1]]].all() and got[0].size == is_sparse[codes].sum()
