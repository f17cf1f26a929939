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
                      n_images=2, patch=16, seed=3)
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
    ({"weights": "/nonexistent/w.pt"}, "does not exist"),
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
            "calib_data": str(calib), "out": str(tmp_path / "x.intsim")}
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
                      n_images=2, patch=16, seed=1, allocation=alloc)
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
                  n_images=4, patch=12, seed=2)
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
