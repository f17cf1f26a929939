"""run_calibrate: end to end on real images, and its one-line errors for bad input."""
from __future__ import annotations

import pytest
import torch

from calib.cli_calibrate import main, parse_bits, run_calibrate
from calib.data_root import data_root
from intsim.artifact import load_artifact

LR_X4 = data_root() / "data" / "Set5" / "LR_bicubic" / "X4"


def test_parse_bits():
    assert parse_bits("W4A4") == (4, 4) and parse_bits("w8a6") == (8, 6)
    for bad in ("W4", "4/4", "W1A4", "W4A17", ""):
        with pytest.raises(ValueError, match="bits"):
            parse_bits(bad)


@pytest.mark.skipif(not LR_X4.is_dir(), reason=f"Set5 LR X4 images not found at {LR_X4} (set INTSIM_DATA_ROOT)")
def test_run_calibrate_edsr_baseline_random_init(tmp_path):
    out = tmp_path / "sub" / "edsr_w4a4.intsim"
    s = run_calibrate("edsr_baseline", None, 4, "W4A4", "dual_region", str(LR_X4), str(out), "split",
                      n_images=2, patch=16, seed=3, random_init=True)
    art = load_artifact(out)
    assert art.sha256 == s["sha256"]
    assert art.model["name"] == "edsr_baseline" and art.model["scale"] == 4 and art.model["bits"] == "W4A4"
    assert art.model["weights"] == "random-init(seed=3)"
    assert s["code_bits"]["body.0.body.0"] == 5 and s["code_bits"]["head.0"] == 9
    assert sum(op.op == "conv2d" for op in art.ops) == 1 + 33 + 2 + 1
    assert s["fakequant_vs_fp_psnr_db"] > 20


@pytest.mark.skipif(not LR_X4.is_dir(), reason=f"Set5 LR X4 images not found at {LR_X4} (set INTSIM_DATA_ROOT)")
def test_run_calibrate_with_a_checkpoint(tmp_path):
    from calib.models.edsr import EDSR

    torch.manual_seed(5)
    ck = tmp_path / "edsr_baseline_x2.pt"
    # Official checkpoints are plain state dicts; also accept a 'module.' prefix (DataParallel saves).
    torch.save({f"module.{k}": v for k, v in EDSR(2).state_dict().items()}, ck)
    s = run_calibrate("edsr_baseline", str(ck), 2, "W8A8", "minmax", str(LR_X4), str(tmp_path / "a.intsim"),
                      "grid", n_images=1, patch=16)
    assert s["weights"] == str(ck) and load_artifact(tmp_path / "a.intsim").model["weights"] == ck.name
    torch.save(EDSR(4).state_dict(), ck)
    with pytest.raises(ValueError, match="does not (fit|match).*x2|×2"):
        run_calibrate("edsr_baseline", str(ck), 2, "W8A8", "minmax", str(LR_X4), str(tmp_path / "b.intsim"),
                      n_images=1, patch=16)


@pytest.mark.parametrize("kwargs,msg", [
    ({"method": "mse"}, "unknown calibration method 'mse'; valid methods: minmax, percentile, omse, ptq4sr, "
                        "2dquant, dual_region, plain_ft, sa_ft, oaq"),
    ({"method": "minmax", "allocation": "budgeted"}, "applies only to dual-region methods"),
    ({"method": "oaq", "allocation": "bogus"}, "not a two-region allocation"),
    ({"bits": "W4"}, "bits must look like"),
    ({"model": "rcan"}, "unknown model 'rcan'"),
    ({"scale": 5}, "supports scales"),
    ({"weights": "/nonexistent/w.pt", "random_init": False}, "does not exist"),
    ({"calib_data": "/nonexistent/folder"}, "does not exist"),
    ({"realization": "lut"}, "realization"),
    ({"n_images": 0}, "n_images"),
])
def test_bad_input_one_line_value_errors(tmp_path, kwargs, msg):
    # A self-made calibration folder, so each error path is reached without the shared data.
    import numpy as np
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(calib / "a.png")
    args = {"model": "edsr_baseline", "weights": None, "scale": 4, "bits": "W4A4", "method": "minmax",
            "calib_data": str(calib), "out": str(tmp_path / "x.intsim"), "random_init": True}
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg) as ei:
        run_calibrate(**args)
    assert "\n" not in str(ei.value)
    assert not (tmp_path / "x.intsim").exists()


def test_main_reports_errors(capsys, tmp_path):
    assert main(["--out", str(tmp_path / "x.intsim"), "--method", "mse"]) == 2
    assert "unknown calibration method 'mse'" in capsys.readouterr().err


@pytest.mark.skipif(not LR_X4.is_dir(), reason=f"Set5 LR X4 images not found at {LR_X4} (set INTSIM_DATA_ROOT)")
@pytest.mark.slow
@pytest.mark.parametrize("method,alloc", [("minmax", None), ("dual_region", "paper"), ("dual_region", "budgeted")])
def test_run_calibrate_methods_export(tmp_path, method, alloc):
    s = run_calibrate("edsr_baseline", None, 4, "W4A4", method, str(LR_X4), str(tmp_path / "m.intsim"),
                      n_images=2, patch=16, seed=1, allocation=alloc, random_init=True)
    assert s["method"] == method and s["allocation"] == (alloc or "uniform")
    # uniform and budgeted: exactly 2^4 codes; paper: at most 13 (tails may be dropped) -> at most 4 bits
    cb = s["code_bits"]["body.0.body.0"]
    assert cb == 4 if alloc != "paper" else cb <= 4
    assert load_artifact(tmp_path / "m.intsim").sha256 == s["sha256"]


@pytest.mark.slow
@pytest.mark.skipif(not LR_X4.is_dir(), reason=f"Set5 LR X4 images not found at {LR_X4} (set INTSIM_DATA_ROOT)")
def test_run_calibrate_oaq_resume_gives_identical_artifact(tmp_path):
    from calib.finetune import FinetuneInterrupted

    common = dict(model="edsr_baseline", weights=None, scale=4, bits="W4A4", method="oaq", calib_data=str(LR_X4),
                  n_images=4, patch=12, seed=2, random_init=True)
    ref = run_calibrate(out=str(tmp_path / "ref.intsim"), finetune={"epochs": 3}, **common)
    with pytest.raises(FinetuneInterrupted):
        run_calibrate(out=str(tmp_path / "res.intsim"), finetune={"epochs": 3, "stop_after_epochs": 1},
                      state_dir=str(tmp_path / "state"), **common)
    assert not (tmp_path / "res.intsim").exists()
    res = run_calibrate(out=str(tmp_path / "res.intsim"), finetune={"epochs": 3}, state_dir=str(tmp_path / "state"),
                        **common)
    assert res["sha256"] == ref["sha256"]
    import hashlib

    assert hashlib.sha256((tmp_path / "res.intsim").read_bytes()).hexdigest() == \
        hashlib.sha256((tmp_path / "ref.intsim").read_bytes()).hexdigest()


# --------------------------------------------------------------------------- what a new user hits
FSRCNN_X3 = data_root() / "weights" / "fsrcnn" / "fsrcnn_x3.pth"
#: the cheapest calibration that still exports an artifact
QUICK = {"method": "minmax", "n_images": 2, "patch": 16, "holdout": False}


def _calib_folder(parent, name: str = "calib", n: int = 2, size: int = 40):
    """``n`` random RGB images of ``size``² in ``parent/name`` (a name without an 'lr' token: HR when auto)."""
    import numpy as np
    from PIL import Image

    d = parent / name
    d.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            d / f"im{k}.png")
    return d


@pytest.mark.skipif(not FSRCNN_X3.is_file(), reason=f"{FSRCNN_X3} not found (set INTSIM_DATA_ROOT)")
def test_without_weights_the_zoo_checkpoint_is_used_and_said(tmp_path):
    lines: list[str] = []
    s = run_calibrate("fsrcnn", None, 3, "W8A8", calib_data=str(_calib_folder(tmp_path)),
                      out=str(tmp_path / "f.intsim"), log=lines.append, **QUICK)
    assert s["weights"] == str(FSRCNN_X3)
    assert load_artifact(tmp_path / "f.intsim").model["weights"] == FSRCNN_X3.name
    assert [ln for ln in lines if ln.startswith("weights: ")] == [
        f"weights: {FSRCNN_X3} (the fsrcnn ×3 zoo checkpoint under the data root)"]


@pytest.mark.parametrize("model,scale,needle", [
    ("fsrcnn", 3, "weights/fsrcnn/fsrcnn_x3.pth"),  # a zoo checkpoint that is not under the data root
    ("rdn", 2, "no published checkpoint"),  # a zoo model without one
    ("edsr", 2, "no published checkpoint"),  # full EDSR, built here
])
def test_without_weights_or_a_checkpoint_calibrate_refuses(tmp_path, monkeypatch, model, scale, needle):
    monkeypatch.setenv("INTSIM_DATA_ROOT", str(tmp_path / "empty_root"))
    cal = _calib_folder(tmp_path)
    lines: list[str] = []
    with pytest.raises(ValueError, match="--random-init") as ei:
        run_calibrate(model, None, scale, "W8A8", calib_data=str(cal), out=str(tmp_path / "x.intsim"),
                      log=lines.append, **QUICK)
    msg = str(ei.value)
    assert needle in msg and "--weights FILE" in msg and "\n" not in msg
    assert not lines and not (tmp_path / "x.intsim").exists()  # refused before any stage


def test_random_init_is_explicit_and_said(tmp_path):
    cal = _calib_folder(tmp_path)
    lines: list[str] = []
    s = run_calibrate("edsr_baseline", None, 2, "W8A8", calib_data=str(cal), out=str(tmp_path / "r.intsim"),
                      seed=4, random_init=True, log=lines.append, **QUICK)
    assert s["weights"] is None and load_artifact(tmp_path / "r.intsim").model["weights"] == "random-init(seed=4)"
    (said,) = [ln for ln in lines if ln.startswith("weights: ")]
    assert said.startswith("weights: random init (seed 4, --random-init)")
    with pytest.raises(ValueError, match="either --weights or --random-init"):
        run_calibrate("edsr_baseline", str(tmp_path / "w.pt"), 2, "W8A8", calib_data=str(cal),
                      out=str(tmp_path / "b.intsim"), random_init=True, **QUICK)


@pytest.mark.parametrize("folder_name,layout,is_lr,said", [
    ("photos", "auto", False, "2 HR images in {d}, made LR by bicubic ×3 (auto-detected"),
    ("LR_bicubic", "auto", True, "2 LR images in {d}, used as they are (auto-detected: a folder named"),
    ("LR_bicubic", "hr", False, "2 HR images in {d}, made LR by bicubic ×3 (--calib-layout hr)"),
    ("photos", "lr", True, "2 LR images in {d}, used as they are (--calib-layout lr)"),
], ids=["auto-hr", "auto-lowres", "forced-hr", "forced-lowres"])
def test_calibration_layout_is_said_and_can_be_forced(tmp_path, folder_name, layout, is_lr, said):
    from calib.calibrate import calibration_layout

    d = _calib_folder(tmp_path, folder_name)
    got_lr, line = calibration_layout(d, layout, 3)
    assert got_lr is is_lr
    assert line.startswith("calibration images: " + said.format(d=d)), line


def test_calibration_layout_by_file_names_and_bad_layout(tmp_path):
    from calib.calibrate import calibration_layout

    d = _calib_folder(tmp_path, "set", n=1)
    (d / "im0.png").rename(d / "baby_x4.png")
    is_lr, line = calibration_layout(d, "auto", 4)
    assert is_lr and "1 LR image in" in line and "every file is named" in line
    with pytest.raises(ValueError, match="calib_layout must be one of auto, hr, lr"):
        calibration_layout(d, "LR", 4)


def test_calib_layout_reaches_the_calibration(tmp_path):
    """A folder that looks LR by its name is calibrated as HR when told so (and the stage line says it)."""
    from reports.demo import register_tiny_sr

    register_tiny_sr()
    cal = _calib_folder(tmp_path, "LR_pictures")
    runs = {}
    for layout in ("auto", "hr"):
        lines: list[str] = []
        runs[layout] = run_calibrate("tiny_sr", None, 2, "W8A8", calib_data=str(cal), calib_layout=layout,
                                     out=str(tmp_path / f"{layout}.intsim"), log=lines.append, **QUICK)
        assert any(ln.startswith(f"calibration images: 2 {'LR' if layout == 'auto' else 'HR'} images") for ln in lines)
    assert runs["auto"]["sha256"] != runs["hr"]["sha256"]  # other patches, other ranges
    with pytest.raises(ValueError, match="calib_layout"):
        run_calibrate("tiny_sr", None, 2, "W8A8", calib_data=str(cal), calib_layout="x",
                      out=str(tmp_path / "x.intsim"), **QUICK)


def test_overflow_error_warns_about_worst_case_accumulators(tmp_path):
    """Under --overflow error a conv whose worst case needs more than --acc-bits gets one warning line at
    calibration time (not only when `intsim run` meets such an image); the artifact is still written."""
    from reports.demo import register_tiny_sr

    register_tiny_sr()
    cal = _calib_folder(tmp_path)
    lines: list[str] = []
    s = run_calibrate("tiny_sr", None, 2, "W8A8", calib_data=str(cal), out=str(tmp_path / "e.intsim"),
                      overflow="error", acc_bits=16, log=lines.append, **QUICK)
    (warn,) = [ln for ln in lines if ln.startswith("warning:")]
    worst = s["accumulator_overruns"]
    assert worst and all(w["bits"] > 16 for w in worst)
    assert worst == sorted(worst, key=lambda w: -w["bits"])
    assert "16-bit accumulator" in warn and f"{worst[0]['op']} needs {worst[0]['bits']} bits" in warn
    assert (tmp_path / "e.intsim").is_file()
    for overflow, acc in (("saturate", 16), ("error", 48)):  # saturating by design, or wide enough: no warning
        lines.clear()
        s = run_calibrate("tiny_sr", None, 2, "W8A8", calib_data=str(cal), out=str(tmp_path / "s.intsim"),
                          overflow=overflow, acc_bits=acc, log=lines.append, **QUICK)
        assert not [ln for ln in lines if ln.startswith("warning:")]
