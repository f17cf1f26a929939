"""Golden in bands (:mod:`golden.bands`) equals golden on whole tensors and the integer engine, bit for bit.

Every tensor and every per-op event counter, for any band height: random artifacts with every
spatial op (stride 2, dilation 2, groups, 1×3/3×1 kernels, transposed conv, pixel shuffle, nearest
and bilinear upsampling), random artifacts with global pools (multi-pass plans), the ordered
accumulator path, and the real IMDN ×4 W4A4 artifact on a Set5 crop (skipped without it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from golden import bands  # noqa: E402
from golden.executor import run_golden, stream  # noqa: E402
from intsim import engine  # noqa: E402
from intsim.band_plan import plan  # noqa: E402
from tests.artifact_factory import make_random_artifact  # noqa: E402
from tests.intsim.test_tiling import MODES, make_pool_free_artifact  # noqa: E402

EVENT_KEYS = ("acc_overflow", "stream_overflow", "saturations")
# the calibrated IMDN ×4 W4A4 artifact the quality runs write (untracked: results/quality/*.intsim)
IMDN = Path(os.environ.get("INTSIM_IMDN_ARTIFACT",
                           Path(__file__).resolve().parents[2] / "results" / "quality" / "imdn_4_w4a4_default.intsim"))


def engine_reference(art, img):
    ref = engine.run(art, img, keep_tensors=True)
    events = {op: {k: int(v.get(k, 0)) for k in EVENT_KEYS} for op, v in ref.counters["ops"].items()}
    return ref.tensors, events


def assert_same(got, tensors, events, what):
    assert set(got.tensors) == set(tensors), what
    for t, a in tensors.items():
        np.testing.assert_array_equal(got.tensors[t], a, err_msg=f"{what}: tensor {t}")
    assert got.events == events, f"{what}: events differ"


@pytest.mark.parametrize("seed", range(len(MODES)))  # every rounding mode once
def test_pool_free_random_artifacts(seed):
    art = make_pool_free_artifact(seed, realization=("split", "grid")[seed % 2], rounding=MODES[seed])
    rng = np.random.default_rng(seed)
    for H, W in ((int(rng.integers(9, 30)), int(rng.integers(5, 20))), (1, 7), (2, 3)):
        img = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
        tensors, events = engine_reference(art, img)
        for rows in (1, 2, 5, 1000):
            assert_same(run_golden(art, img, band_rows=rows), tensors, events, f"seed {seed} {H}x{W} rows {rows}")


@pytest.mark.parametrize("seed", range(3))
def test_random_artifacts_with_pooling(seed):
    """Pools need the whole image: their inputs are materialized, the pools run between passes."""
    art = make_random_artifact(40 + seed, realization=("split", "grid")[seed % 2], rounding=MODES[seed % len(MODES)])
    assert len(plan(art).pass_ops) == 2
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (int(rng.integers(12, 30)), int(rng.integers(6, 18)), 3)).astype(np.uint8)
    tensors, events = engine_reference(art, img)
    for rows in (1, 3, 1000):
        assert_same(run_golden(art, img, band_rows=rows), tensors, events, f"seed {seed} rows {rows}")


def test_ordered_path_in_bands():
    """The ordered accumulators (forced) give the same tensors and events in 1-row bands."""
    art = make_pool_free_artifact(2)
    img = np.random.default_rng(5).integers(0, 256, (13, 9, 3)).astype(np.uint8)
    tensors, events = engine_reference(art, img)
    assert_same(run_golden(art, img, band_rows=1, force_ordered=True), tensors, events, "ordered rows 1")


def test_row_maps_and_heights_cover_every_op():
    art = make_pool_free_artifact(0)
    hw = bands.heights(art, 17, 11)
    img = np.zeros((17, 11, 3), np.uint8)
    got = run_golden(art, img, band_rows=4)
    for t, a in got.tensors.items():
        assert a.shape[:2] == hw[t], t
    for op in art.ops:
        lo, hi = bands.row_needs(op, hw[op.inputs[0]][0], hw[op.outputs[0]][0])
        assert lo.shape == hi.shape == (hw[op.outputs[0]][0],)


def test_stream_emits_rows_in_order_once():
    """Each kept tensor arrives in row order, every row exactly once; others never arrive."""
    art = make_random_artifact(41)
    img = np.random.default_rng(1).integers(0, 256, (19, 10, 3)).astype(np.uint8)
    seen: dict[str, int] = {}
    keep = {art.outputs[0], next(t for op in art.ops if op.op == "conv2d" for t in op.outputs)}

    def emit(name, shape, y0, rows):
        assert name in keep and y0 == seen.get(name, 0) and rows.shape[1:] == tuple(shape[1:])
        seen[name] = y0 + rows.shape[0]

    stream(art, {art.inputs[0]: img}, emit, keep=keep, band_rows=2)
    hw = bands.heights(art, 19, 10)
    assert seen == {t: hw[t][0] for t in keep}


def test_bad_band_rows():
    art = make_pool_free_artifact(0)
    from golden.numerics import GoldenError

    with pytest.raises(GoldenError, match="band_rows"):
        run_golden(art, np.zeros((4, 4, 3), np.uint8), band_rows=-1)


@pytest.mark.skipif(not IMDN.is_file(), reason=f"the calibrated IMDN artifact is not at {IMDN}")
def test_real_imdn_crop_in_bands():
    """IMDN ×4 W4A4 (channel attention: global pools in every block) on a Set5 crop, 7-row bands."""
    from intsim.artifact import load_artifact
    from intsim.images import read_image
    from tests.intsim.test_fast_paths import SET5_X4

    if not SET5_X4.is_dir():
        pytest.skip(f"Set5 LR images not found under {SET5_X4}")
    art = load_artifact(IMDN)
    img = np.ascontiguousarray(read_image(SET5_X4 / "babyx4.png", 3).pixels[:30, :24])
    tensors, events = engine_reference(art, img)
    assert_same(run_golden(art, img, band_rows=7), tensors, events, "IMDN rows 7")
