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
    run(art, img)  # compile (or load) every kernel the runs below take outside the measurement
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
