"""Image input policy (intsim/images.py) and the graph's size facts (intsim/footprint.py)."""
from __future__ import annotations

import pytest

from intsim import footprint as F
from intsim_cli import main
from intsim.engine import run
from intsim.images import ImageError, read_image, write_png
from tests.artifact_factory import make_random_artifact
from tests.robustness.cases_images import _png16, _png_raw, _special_artifact_bytes
from tests.robustness.harness import valid_artifact, valid_pixels


@pytest.fixture(scope="module")
def art():
    return make_random_artifact(0)


def _load(tmp_path, kind):
    from intsim.artifact import load_artifact

    p = tmp_path / f"{kind}.intsim"
    p.write_bytes(_special_artifact_bytes(kind))
    return load_artifact(p)


def test_receptive_field_of_unpadded_convs(tmp_path):
    a = _load(tmp_path, "valid")  # two 3×3 convs
    assert F.receptive_field(a) == F.ReceptiveField(5, 5)
    assert F.min_input_size(a) == (5, 5)
    assert F.size_problem(a, 5, 5) is None
    assert "needs at least 5×5" in F.size_problem(a, 4, 9)


def test_receptive_field_counts_dilation_stride_and_upsampling(art):
    rf = F.receptive_field(art)
    assert rf.rows is not None and rf.rows >= 9  # 3×3, dilation-2 3×3, 3×3, stride-2 3×3 ... at least
    assert F.min_input_size(art) == (1, 1)  # the factory's graph runs on any size
    for h, w in [(1, 1), (2, 3), (13, 11)]:
        assert F.size_problem(art, h, w) is None


def test_size_mismatch_names_nearest_size(tmp_path):
    a = _load(tmp_path, "unet")
    msg = F.size_problem(a, 13, 10)
    assert "combines tensors of 10×13 and 10×14" in msg and "nearest larger size that runs is 10×14" in msg
    assert F.size_problem(a, 14, 10) is None


def test_memory_estimates_bound_measured_peaks(art):
    import tracemalloc

    from intsim.tiling import run_tiled

    img = valid_pixels(48, 40)
    # compile (or load) every kernel the runs below take outside the measurement: the fused run holds
    # compact int32 streams (intsim.run_plan), whose kernels are their own compilations
    run(art, img)
    run(art, img, keep_tensors=False)
    run_tiled(art, img, 4)
    tracemalloc.start()
    run(art, img, keep_tensors=False)
    peak_untiled = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    run_tiled(art, img, 4)
    peak_tiled = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert F.untiled_peak_bytes(art, 48, 40) >= 0.8 * peak_untiled
    assert F.tiled_peak_bytes(art, 48, 40, 4) >= 0.8 * peak_tiled
    assert F.tiled_peak_bytes(art, 48, 40, 1) < F.untiled_peak_bytes(art, 48, 40)


def test_verify_estimate_bounds_measured_peak(tmp_path):
    """verify's budget (footprint.verify_peak_bytes) covers a real verify: the engine keeping every tensor,
    the golden read one array at a time and compared."""
    import tracemalloc

    from intsim.artifact import load_artifact
    from intsim.golden_dir import read_golden_dir
    from intsim.verification import verify
    from tests.intsim.test_verify import engine_golden

    art = load_artifact(valid_artifact(tmp_path))
    img = valid_pixels(48, 40)
    engine_golden(art, tmp_path / "g", [("big.png", img)])
    golden = read_golden_dir(tmp_path / "g", check_hashes=False)
    verify(art, golden)  # kernels compiled outside the measurement
    tracemalloc.start()
    assert verify(art, golden).ok
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    est = F.verify_peak_bytes(art, 48, 40)
    assert 0.8 * peak <= est <= 4 * peak, (est, peak)  # an upper bound, not a wild one


def test_auto_tiling_is_bit_exact(tmp_path, capsys):
    a = valid_artifact(tmp_path)
    write_png(tmp_path / "big.png", valid_pixels(64, 64))
    assert main(["run", str(a), str(tmp_path / "big.png"), "-o", str(tmp_path / "u"), "--counters",
                 str(tmp_path / "u.json")]) == 0
    assert main(["run", str(a), str(tmp_path / "big.png"), "-o", str(tmp_path / "t"), "--max-memory", "4",
                 "--counters", str(tmp_path / "t.json")]) == 0
    assert "running in bands of" in capsys.readouterr().err
    assert (tmp_path / "u" / "big.png").read_bytes() == (tmp_path / "t" / "big.png").read_bytes()
    assert (tmp_path / "u.json").read_text() == (tmp_path / "t.json").read_text()


def test_16bit_rgb_png_is_refused_not_truncated(tmp_path):
    p = tmp_path / "deep.png"
    p.write_bytes(_png16(5, 4, 3))
    with pytest.raises(ImageError, match="16-bit"):
        read_image(p, 3)


def test_decompression_bomb_is_an_image_error(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_raw(20000, 20000, 8, 2, b""))
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(p, 3)


def test_decode_budget_checked_from_header(tmp_path):
    p = tmp_path / "a.png"
    write_png(p, valid_pixels(32, 32))
    with pytest.raises(ImageError, match="just to decode"):
        read_image(p, 3, max_bytes=1000)
    assert read_image(p, 3, max_bytes=32 * 32 * 3).pixels.shape == (32, 32, 3)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (2, 2)])
def test_tiny_images_run(art, tmp_path, h, w, capsys):
    a = valid_artifact(tmp_path)
    write_png(tmp_path / "t.png", valid_pixels(h, w))
    assert main(["run", str(a), str(tmp_path / "t.png"), "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "depends on zero padding" in err
    oh, ow = F.tensor_shapes(art, h, w)[art.outputs[0]]
    out = read_image(tmp_path / "o" / "t.png", art.tensors[art.outputs[0]].channels).pixels
    assert out.shape[:2] == (oh, ow) and (oh, ow) != (h, w)  # the upscaled image, written whole
    assert (out == run(art, valid_pixels(h, w), keep_tensors=False).tensors[art.outputs[0]]).all()


def test_eval_modcrops_hr_to_the_scale(tmp_path):
    """`eval` policy for an HR size that is not a multiple of the scale: crop (MATLAB modcrop)."""
    from calib.datasets import HRFolder

    write_png(tmp_path / "odd.png", valid_pixels(38, 29))
    pair = HRFolder(tmp_path, 4)[0]
    assert pair.hr.shape == (36, 28, 3) and pair.lr.shape == (9, 7, 3)


def _brute_min_size(a, limit: int) -> tuple[int, int]:
    """The definition, searched: smallest n per axis on which every spatial tensor is non-empty."""
    glob = F._global_tensors(a)
    best = [None, None]
    for n in range(1, limit + 1):
        hw = F.tensor_shapes(a, n, n)
        for ax in range(2):
            if best[ax] is None and all(v[ax] >= 1 for t, v in hw.items() if t not in glob):
                best[ax] = n
    return tuple(best)


def _brute_fitting(a, h: int, w: int, reach: int) -> tuple[int, int] | None:
    fh = next((y for y in range(h, h + reach) if all(F.size_problem(a, y, x) is None
                                                      for x in [F.smallest_fitting_size(a, 1, w)[1]])), None)
    fw = next((x for x in range(w, w + reach) if F.size_problem(a, fh, x) is None), None) if fh else None
    return None if fh is None or fw is None else (fh, fw)


@pytest.mark.parametrize("kind", ["valid", "unet", "random0", "random3", "dilated"])
def test_min_input_size_is_the_searched_minimum(tmp_path, kind):
    from intsim.artifact import parse_artifact_bytes
    from tests.robustness.cases_artifacts import relu_chain_bytes

    if kind.startswith("random"):
        a = make_random_artifact(int(kind[-1]))
    elif kind == "dilated":  # head.conv 3×3 with its column taps 7 apart: 15 columns, then tail.conv's 2
        a = parse_artifact_bytes(relu_chain_bytes("valid", 3, 7))
    else:
        a = _load(tmp_path, kind)
    assert F.min_input_size(a) == _brute_min_size(a, 64)
    for h, w in [(1, 1), (5, 5), (13, 10), (17, 30)]:
        assert F.smallest_fitting_size(a, h, w) == _brute_fitting(a, h, w, 64), (h, w)


def test_size_facts_are_direct_on_a_3000_relu_net():
    """Issue 18: a 3000-relu artifact took 64 s to be refused by the size search and said "needs at least
    4096×1" for a net needing 6003 columns (the search stopped at 4096)."""
    import time

    from intsim.artifact import parse_artifact_bytes
    from tests.robustness.cases_artifacts import relu_chain_bytes

    a = parse_artifact_bytes(relu_chain_bytes("valid", 3000, 3000))
    t0 = time.perf_counter()
    msg = F.size_problem(a, 12, 10)
    assert time.perf_counter() - t0 < 5
    assert F.min_input_size(a) == (5, 6003)
    assert "needs at least 6003×5 pixels" in msg
    assert F.size_problem(a, 5, 6003) is None and F.size_problem(a, 5, 6002) is not None
    u = parse_artifact_bytes(relu_chain_bytes("unet", 3000))
    t0 = time.perf_counter()
    assert "nearest larger size that runs is 10×14" in F.size_problem(u, 13, 10)
    assert time.perf_counter() - t0 < 5


def test_graph_counts_are_capped_before_parsing():
    from intsim.artifact import ArtifactError, parse_artifact_bytes
    from intsim.validate import MAX_OPS
    from tests.robustness.cases_artifacts import relu_chain_bytes

    parse_artifact_bytes(relu_chain_bytes("valid", MAX_OPS - 6))  # 6 ops of its own: exactly at the cap
    with pytest.raises(ArtifactError, match=f"lists {MAX_OPS + 1} ops, more than the {MAX_OPS} accepted"):
        parse_artifact_bytes(relu_chain_bytes("valid", MAX_OPS - 5))
