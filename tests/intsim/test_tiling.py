"""Tiled execution (:func:`intsim.tiling.run_tiled`) equals the untiled engine bit for bit.

The tiled run streams horizontal bands with line buffers (halo rows kept, not
recomputed) and splits the graph into passes at global pools; its graph
outputs *and* its counters (MACs, overflow events, saturations, code
histograms) must equal :func:`intsim.engine.run` exactly, for any band height
and any image size:

* random artifacts of the test factory without global pooling (convs with
  stride 2, dilation 2, groups, 1×3/3×1 kernels, transposed conv, pixel
  shuffle, nearest and bilinear upsampling, every element-wise op);
* random artifacts with mean/std pooling (multi-pass plans);
* a small EDSR exported by calib/ (skipped without torch).
"""
from __future__ import annotations

import numpy as np
import pytest

from intsim import engine, tiling
from intsim.artifact import Numerics
from intsim.rounding import RoundingMode
from tests.artifact_factory import (
    _Builder,
    _calibration_image,
    _finish,
    make_random_artifact,
)

MODES = RoundingMode.names()  # every mode of §2, a new one included


def make_pool_free_artifact(seed: int, realization: str = "split", rounding: str = "half_up"):
    """A random valid artifact with every spatial op type of the factory but no global pooling."""
    rng = np.random.default_rng(seed)
    B = _Builder(rng, Numerics(rounding=rounding, realization=realization), _calibration_image(rng, 12, 12))
    C = int(rng.choice([4, 6, 8]))

    def b() -> int:
        return int(rng.integers(2, 5))

    x = B.image_in("head.image_in", "input")
    s1 = B.conv("head.conv", B.encode("head.enc", x, "uniform", 8), C, wbits=12)
    s2 = B.relu("body.relu", s1)
    s3 = B.conv("body.conv1", B.encode("body.enc1", s2, "relu2r", b()), C, padding=(2, 2), dilation=(2, 2))
    s4 = B.leaky("body.leaky", s3)
    k2 = [(1, 3), (3, 1), (3, 3)][seed % 3]
    s5 = B.conv("body.conv2", B.encode("body.enc2", s4, "signed2r", b()), C, kernel=k2,
                padding=(k2[0] // 2, k2[1] // 2), groups=2, wbits=6)
    s6 = B.prelu("body.prelu", s5)
    s7 = B.add("body.add", s6, s1)
    pa, pb = B.split("body.split", s7, [C // 2, C - C // 2])
    s8 = B.concat("body.concat", [pb, pa], B.frac(s7) + 1)
    s9 = B.conv("up.down", B.encode("up.enc0", s8, "signed2r", b()), C, stride=(2, 2))
    r = int(rng.choice([2, 3]))
    s10 = B.add("up.add", B.upsample_nearest("up.nearest", s9, r), B.upsample_bilinear("up.bilinear", s9, r))
    s11 = B.conv("up.conv", B.encode("up.enc1", s10, "signed2r", b()), 12)
    s12 = B.pixel_shuffle("up.shuffle", s11, 2)
    s13 = B.conv("tail.convT", B.encode("up.enc2", s12, "signed2r", b()), 3, transpose=True, stride=(2, 2),
                 padding=(1, 1), output_padding=(1, 1))
    B.image_out("tail.image_out", s13)
    return _finish(B, seed, "pool-free")


def assert_same(got: engine.RunResult, ref: engine.RunResult, what: str) -> None:
    assert got.tensors.keys() == ref.tensors.keys()
    for t in ref.tensors:
        assert got.tensors[t].dtype == ref.tensors[t].dtype, f"{what}: dtype of {t}"
        np.testing.assert_array_equal(got.tensors[t], ref.tensors[t], err_msg=f"{what}: tensor {t}")
    assert got.counters == ref.counters, f"{what}: counters differ"


@pytest.mark.parametrize("seed", range(6))
def test_pool_free_random_artifacts(seed):
    art = make_pool_free_artifact(seed, realization=("split", "grid")[seed % 2], rounding=MODES[seed % len(MODES)])
    plan = tiling.plan(art)
    assert len(plan.pass_ops) == 1 and plan.materialize == {"output"}  # one streaming pass
    rng = np.random.default_rng(seed)
    for H, W in ((int(rng.integers(9, 40)), int(rng.integers(5, 24))), (1, 7), (2, 3)):
        img = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
        ref = engine.run(art, img, keep_tensors=False)
        for tile_rows in (1, 2, 5, 16, 1000):
            assert_same(tiling.run_tiled(art, img, tile_rows=tile_rows), ref, f"seed {seed} {H}x{W} rows {tile_rows}")


@pytest.mark.parametrize("seed", range(4))
def test_random_artifacts_with_pooling(seed):
    """mean/std pooling: the pool inputs are materialized, the pools run between passes."""
    art = make_random_artifact(40 + seed, realization=("split", "grid")[seed % 2], rounding=MODES[seed % len(MODES)])
    plan = tiling.plan(art)
    assert len(plan.pass_ops) == 2
    pooled = {op.inputs[0] for op in art.ops if op.op in tiling.GLOBAL_OPS}
    assert pooled <= plan.materialize
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (int(rng.integers(12, 33)), int(rng.integers(6, 20)), 3)).astype(np.uint8)
    ref = engine.run(art, img, keep_tensors=False)
    for tile_rows in (1, 3, 8):
        assert_same(tiling.run_tiled(art, img, tile_rows=tile_rows), ref, f"seed {seed} rows {tile_rows}")


def test_counters_are_not_double_counted():
    """Halo rows are carried over, never recomputed: MAC totals equal the untiled ones at 1-row bands."""
    art = make_pool_free_artifact(1)
    img = np.random.default_rng(0).integers(0, 256, (23, 11, 3)).astype(np.uint8)
    ref = engine.run(art, img, keep_tensors=False)
    got = tiling.run_tiled(art, img, tile_rows=1)
    assert got.counters["totals"] == ref.counters["totals"] and ref.counters["totals"]["macs"] > 0


def test_bad_arguments():
    art = make_pool_free_artifact(0)
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="tile_rows"):
        tiling.run_tiled(art, img, tile_rows=0)
    with pytest.raises(ValueError, match="uint8"):
        tiling.run_tiled(art, img.astype(np.int16), tile_rows=4)


@pytest.fixture(scope="module")
def small_edsr():
    torch = pytest.importorskip("torch")
    from calib.calibrate import calibrate_minmax, load_calibration_images
    from calib.export import export_artifact
    from calib.graph import capture
    from calib.models.edsr import EDSR
    from tests.intsim.test_fast_paths import SET5_X4

    if not SET5_X4.is_dir():
        pytest.skip(f"Set5 LR images not found under {SET5_X4}")
    torch.manual_seed(0)
    net = EDSR(4, n_resblocks=2, n_feats=16).eval()
    graph = capture(net)
    cal = calibrate_minmax(net, load_calibration_images(SET5_X4, 2, 24, 4, 0), 4, 4, None, graph=graph)
    return {r: export_artifact(net, cal, realization=r) for r in ("split", "grid")}


@pytest.mark.parametrize("realization", ["split", "grid"])
def test_edsr_artifact(small_edsr, realization):
    """An EDSR (2 res-blocks, 16 features, ×4: two pixel-shuffle stages) exported by calib/, on a Set5 crop."""
    from intsim.images import read_image
    from tests.intsim.test_fast_paths import SET5_X4

    art = small_edsr[realization]
    img = np.ascontiguousarray(read_image(SET5_X4 / "birdx4.png", 3).pixels[:37, :29])
    ref = engine.run(art, img, keep_tensors=False)
    for tile_rows in (1, 4, 13):
        assert_same(tiling.run_tiled(art, img, tile_rows=tile_rows), ref, f"EDSR {realization} rows {tile_rows}")
