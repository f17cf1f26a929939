"""calib.evaluate.run_eval on a small real artifact (IMDN ×4 W8A8, Set5, cropped for speed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.calibrate import calibrate_minmax, load_calibration_images
from calib.data_root import available, data_root
from calib.evaluate import FloatFakeQuant, RebuildError, artifact_input, resolve_engine, run_eval
from calib.export import export_artifact, model_source
from calib.graph import capture
from calib.models.zoo import get_model
from intsim.artifact import load_artifact, save_artifact

pytestmark = pytest.mark.skipif(
    not (available("weights/imdn/IMDN_x4.pth") and available("data/SunHays80") and available("data/Set5")),
    reason=f"IMDN ×4 weights, SunHays80 or Set5 not present under the data root {data_root()}")


@pytest.fixture(scope="module")
def imdn_art(tmp_path_factory):
    entry = get_model("imdn")
    path = data_root() / entry.default_checkpoint(4)
    model = entry.load(path, 4)
    g = capture(model, rgb_range=entry.rgb_range, in_channels=entry.in_channels)
    imgs = load_calibration_images(data_root() / "data/SunHays80", 2, 32, 4, 0, rgb_range=entry.rgb_range)
    cal = calibrate_minmax(model, imgs, 8, 8, graph=g)
    art = export_artifact(model, cal, realization="split", model_meta={"name": "imdn", "scale": 4},
                          source=model_source("imdn", 4, path))
    out = tmp_path_factory.mktemp("eval") / "imdn_w8a8.intsim"
    save_artifact(art, out)
    return out, model, g


def test_run_eval_engines_agree(imdn_art):
    path, model, g = imdn_art
    kw = dict(datasets=["Set5"], data_root=None, progress=False, limit=2, crop=20)
    r_int = run_eval(str(path), engine="intsim", **kw)
    r_gold = run_eval(str(path), engine="golden", **kw)
    r_flt = run_eval(str(path), engine="fakequant", **kw)
    json.dumps(r_int), json.dumps(r_flt)  # JSON-able
    s_int, s_gold, s_flt = (r["datasets"]["Set5"] for r in (r_int, r_gold, r_flt))
    assert s_int["n"] == 2 and [x["image"] for x in s_int["images"]] == ["baby", "bird"]
    # golden and intsim are the same integers, hence the same scores
    assert [x["psnr"] for x in s_int["images"]] == [x["psnr"] for x in s_gold["images"]]
    assert [x["ssim"] for x in s_int["images"]] == [x["ssim"] for x in s_gold["images"]]
    assert 20.0 < s_int["psnr"] < 45.0 and 0.5 < s_int["ssim"] <= 1.0
    # W8A8: hardware-exact and unsnapped fake-quant within a few tenths of a dB
    assert abs(s_flt["psnr"] - s_int["psnr"]) < 0.5
    assert r_int["scale"] == 4 and r_int["engine"] == "intsim" and r_int["bits"] == "W8A8"


def test_float_fakequant_close_to_float_model(imdn_art):
    path, model, g = imdn_art
    art = load_artifact(path)
    fq = FloatFakeQuant(art)
    from calib.datasets import read_rgb

    lr = read_rgb(data_root() / "data/Set5/LR_bicubic/X4/headx4.png")[20:36, 20:36]
    img = artifact_input(art, lr)
    out = fq(img).astype(np.float64)
    with torch.no_grad():
        ref = model(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32)) / 255.0)
    ref = np.clip(np.floor(ref[0].numpy().transpose(1, 2, 0) * 255.0 + 0.5), 0, 255)
    mse = float(np.mean((out - ref) ** 2))
    assert mse > 0  # it does quantize
    assert 10 * np.log10(255 ** 2 / mse) > 30.0


def test_float_engine_refuses_unrebuildable_artifact(tmp_path):
    entry = get_model("imdn")
    torch.manual_seed(0)
    model = entry.build(4).eval()  # random weights: no checkpoint has this state dict
    g = capture(model, rgb_range=entry.rgb_range, in_channels=entry.in_channels)
    cal = calibrate_minmax(model, [torch.rand(3, 12, 12)], 8, 8, graph=g)
    art = export_artifact(model, cal, model_meta={"name": "imdn", "scale": 4})
    p = tmp_path / "rand.intsim"
    save_artifact(art, p)
    for engine in ("fakequant", "fp"):
        with pytest.raises(RebuildError, match="state dict differs"):
            run_eval(str(p), ["Set5"], engine=engine, progress=False, limit=1, crop=8)
    art.metadata.pop("source")
    p2 = tmp_path / "nosrc.intsim"
    save_artifact(art, p2)
    with pytest.raises(RebuildError, match="no float-model source"):
        FloatFakeQuant(load_artifact(p2))


def test_run_eval_rejects_bad_engine(imdn_art):
    with pytest.raises(ValueError, match="unknown engine"):
        run_eval(str(imdn_art[0]), ["Set5"], engine="fp64", progress=False)


def test_float_is_a_deprecated_alias_of_fakequant(imdn_art):
    engine, notice = resolve_engine("float")
    assert engine == "fakequant" and "deprecated" in notice
    assert resolve_engine("fp") == ("fp", None) and resolve_engine("fakequant") == ("fakequant", None)
    with pytest.warns(DeprecationWarning, match="fakequant"):
        r = run_eval(str(imdn_art[0]), ["Set5"], engine="float", progress=False, limit=1, crop=12)
    assert r["engine"] == "fakequant"


def test_fp_engine_is_the_float_model(imdn_art):
    """``--engine fp``: the unquantized model the artifact came from, run as calib.fp_eval runs it."""
    from calib.datasets import benchmark
    from calib.fp_eval import super_resolve
    from calib.metrics import psnr_y

    path, model, _ = imdn_art
    r = run_eval(str(path), ["Set5"], engine="fp", progress=False, limit=2, crop=20)
    s = r["datasets"]["Set5"]
    assert r["engine"] == "fp" and s["n"] == 2
    entry = get_model("imdn")
    for row, pair in zip(s["images"], benchmark("Set5", 4)):
        lr = pair.lr[:20, :20]
        assert row["psnr"] == psnr_y(super_resolve(entry, model, lr, 4), pair.hr[:80, :80], 4)


def test_baselines_beside_the_result(imdn_art):
    path = str(imdn_art[0])
    kw = dict(progress=False, limit=2, crop=20)
    r = run_eval(path, ["Set5"], engine="intsim", baselines=True, **kw)
    fp = run_eval(path, ["Set5"], engine="fp", baselines=True, **kw)["datasets"]["Set5"]
    s = r["datasets"]["Set5"]
    assert s["baselines"]["fp"] == {"psnr": fp["psnr"], "ssim": fp["ssim"]}
    assert fp["baselines"]["fp"] == {"psnr": fp["psnr"], "ssim": fp["ssim"]}  # fp against itself: Δ 0
    assert s["baselines"]["bicubic"] == fp["baselines"]["bicubic"]
    assert s["baselines"]["bicubic"]["psnr"] < s["psnr"] < fp["psnr"] + 0.5
    assert [im["baselines"]["fp"]["psnr"] for im in s["images"]] == [im["psnr"] for im in fp["images"]]


def test_dataset_folders(imdn_art):
    """A folder is a dataset: in the benchmark layout (HR/ + LR_bicubic/) it scores as the named benchmark, an HR
    folder gets its LR from the project's MATLAB-compatible bicubic."""
    path = str(imdn_art[0])
    kw = dict(engine="intsim", progress=False, limit=2, crop=16)
    named = run_eval(path, ["Set5"], **kw)["datasets"]["Set5"]
    layout = run_eval(path, [str(data_root() / "data/Set5")], **kw)["datasets"]["Set5"]
    assert [i["sr_sha256"] for i in layout["images"]] == [i["sr_sha256"] for i in named["images"]]
    hr = run_eval(path, [str(data_root() / "data/Set5/HR")], **kw)["datasets"]["HR"]
    assert hr["lr_source"] == "MATLAB-compatible bicubic" and [i["image"] for i in hr["images"]] == ["baby", "bird"]
    with pytest.raises(ValueError, match="unknown benchmark 'DIV2K' and no folder.*Urban100.*folder of HR images"):
        run_eval(path, ["Set5", "DIV2K"], **kw)


def test_imdn_full_image_lean_run_equals_golden(imdn_art):
    """A whole Set5 LR image through real IMDN: the lean run (intermediates dropped, so every
    leaky_relu → split pair runs fused, and each conv's rows go to its slope op) gives golden's output
    and the op-by-op run's counters."""
    from golden.executor import run_golden
    from intsim.engine import run
    from intsim.fusion import fusion_plan
    from intsim.images import read_image

    path, _, _ = imdn_art
    art = load_artifact(path)
    plan = fusion_plan(art)
    assert sum(f.split is not None and f.slope is None for f in plan.values()) == 18  # 6 blocks × 3 splits
    assert sum(f.slope is not None and f.slope.op != "relu" for f in plan.values()) == 19  # their convs, c.0 → c.1
    assert sum(f.slope is not None and f.slope.op == "relu" for f in plan.values()) == 6  # each CCA's conv → relu
    img = artifact_input(art, read_image(data_root() / "data/Set5/LR_bicubic/X4/babyx4.png", 3).pixels)
    lean, full = run(art, img, keep_tensors=False), run(art, img)
    out = art.outputs[0]
    np.testing.assert_array_equal(lean.tensors[out], full.tensors[out])
    assert lean.counters == full.counters
    np.testing.assert_array_equal(lean.tensors[out], run_golden(art, img, keep_tensors=False).tensors[out])
