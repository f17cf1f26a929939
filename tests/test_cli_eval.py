"""``intsim eval`` as a new user meets it: benchmark names or a folder of HR images, the result as a table beside
the FP and bicubic baselines (one row per set, or per image with ``-v``), the full JSON with ``--json``, and the
engine names (``fakequant``, ``fp``; ``float`` a deprecated alias). A tiny ×2 artifact and two HR images: no data
root needed; the real-model checks are in tests/calib/test_evaluate.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from intsim.artifact import save_artifact
from intsim_cli import EXIT_BAD_INPUT, EXIT_OK
from intsim.images import write_png
from tests.test_cli import cli, one_line_error


@pytest.fixture(scope="module")
def sr_art(tmp_path_factory):
    """A ×2 artifact of the tiny test network (no zoo source: its FP model cannot be rebuilt) and a folder of
    two HR images, so eval runs on a dataset that needs no data root."""
    pytest.importorskip("torch")
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture
    from tests.calib._tiny import tiny_images, tiny_model

    d = tmp_path_factory.mktemp("sr_art")
    model = tiny_model()
    cal = calibrate_minmax(model, tiny_images(), 8, 8, graph=capture(model, rgb_range=1.0, in_channels=3))
    save_artifact(export_artifact(model, cal, model_meta={"name": "tiny", "scale": 2}), d / "tiny.intsim")
    hr = d / "myhr"
    hr.mkdir()
    rng = np.random.default_rng(1)
    for k in range(2):
        write_png(hr / f"im{k}.png", rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8))
    return d / "tiny.intsim", hr


EVAL_HEADER = ["dataset", "images", "PSNR", "SSIM", "Δ", "FP", "Δ", "bicubic", "engine"]


def test_eval_folder_dataset_prints_a_table(capsys, sr_art):
    """A folder of HR images is a dataset (LR by the project's bicubic); the human output is one table row per
    set with the FP and bicubic baselines beside it; an FP model that cannot be rebuilt is said in the table."""
    art, hr = sr_art
    code, out, err = cli(capsys, "eval", art, "--dataset", hr)
    assert code == EXIT_OK, err
    lines = out.strip().splitlines()
    assert len(lines) < 10, out  # a table, not a dump of every key
    head = next(i for i, ln in enumerate(lines) if ln.split() == EVAL_HEADER)
    row = lines[head + 1].split()
    assert row[0] == "myhr" and row[1] == "2" and row[-1] == "intsim", lines[head + 1]
    psnr, ssim, d_fp, d_bic = float(row[2]), float(row[3]), row[4], float(row[5])
    assert 0 < psnr < 100 and 0 < ssim <= 1 and d_fp == "n/a" and abs(d_bic) < 100
    assert any("FP" in ln and "not in the model zoo" in ln for ln in lines[head + 2:]), out
    code, out, err = cli(capsys, "eval", art, "--dataset", hr, "--no-baselines")
    assert code == EXIT_OK, err
    assert [ln.split()[4:6] for ln in out.splitlines() if ln.startswith("myhr")] == [["—", "—"]]


def test_eval_per_image_rows(capsys, sr_art):
    art, hr = sr_art
    for flag in ("-v", "--per-image"):
        code, out, err = cli(capsys, "eval", art, "--dataset", hr, flag)
        assert code == EXIT_OK, err
        rows = [ln.split() for ln in out.splitlines() if ln.startswith("myhr")]
        assert [r[1] for r in rows] == ["im0", "im1", "mean"], out


def test_eval_json_is_the_full_result(capsys, sr_art):
    art, hr = sr_art
    code, out, err = cli(capsys, "eval", art, "--dataset", hr, "--json")
    assert code == EXIT_OK, err
    res = json.loads(out)
    s = res["datasets"]["myhr"]
    assert res["engine"] == "intsim" and s["n"] == 2 and len(s["images"]) == 2 and "baselines" not in s
    assert s["lr_source"] == "MATLAB-compatible bicubic"
    code, out, err = cli(capsys, "eval", art, "--dataset", hr, "--json", "--baselines")
    assert code == EXIT_OK, err
    s = json.loads(out)["datasets"]["myhr"]
    assert "not in the model zoo" in s["baselines"]["fp"]["unavailable"]
    assert 0 < s["baselines"]["bicubic"]["psnr"] < 100
    assert all(0 < im["baselines"]["bicubic"]["psnr"] < 100 for im in s["images"])


@pytest.mark.parametrize("name", ["DIV2K", "no/such/folder"])
def test_eval_unknown_dataset_lists_known_names(capsys, sr_art, name):
    code, _, err = cli(capsys, "eval", sr_art[0], "--dataset", "Set5", name)
    assert code == EXIT_BAD_INPUT
    one_line_error(err, name, "Set5", "Set14", "B100", "Urban100", "folder of HR images")


def test_eval_engine_names(capsys, sr_art, monkeypatch):
    """``fakequant`` is the float32 fake-quant model, ``fp`` the unquantized one; ``float`` is a deprecated
    alias of fakequant that says so in one notice."""
    art, hr = sr_art
    code, _, err = cli(capsys, "eval", art, "--dataset", hr, "--engine", "fp")
    assert code == EXIT_BAD_INPUT
    one_line_error(err, "not in the model zoo")
    import calib.evaluate as ev

    seen = []

    def fake_run_eval(artifact_path, datasets, engine, **kw):
        seen.append(engine)
        return {"model": "m", "scale": 2, "bits": "W4A4", "engine": engine, "crop": None, "limit": None,
                "datasets": {}}

    monkeypatch.setattr(ev, "run_eval", fake_run_eval)
    code, _, err = cli(capsys, "eval", art, "--engine", "fakequant")
    assert code == EXIT_OK and err == ""
    code, _, err = cli(capsys, "eval", art, "--engine", "float")
    assert code == EXIT_OK and seen == ["fakequant", "fakequant"]
    notice = [ln for ln in err.splitlines() if ln.strip()]
    assert len(notice) == 1 and notice[0].startswith("intsim: notice: ") and "deprecated" in notice[0]
    assert "fakequant" in notice[0] and "fp" in notice[0]
