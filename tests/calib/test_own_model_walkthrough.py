"""docs/own_model.md's walkthrough blocks, run as written on random-weight versions of its two networks:
the ESPCN-like ×3 (ReLU6, bicubic skip) and the RCAN-like ×2 (BatchNorm, channel attention).

The Python blocks run verbatim. The shell blocks run under bash with their variables set to data that
needs no data root (synthetic HR calibration images and LR inputs) and ``RECIPE`` to a fast calibration
(the default recipe takes minutes); ``intsim`` and ``python`` are this interpreter. The RCAN-like net's
Set5 eval block runs (``SUBSET`` = two 48-pixel crops) only where the data root has Set5."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "own_model.md"


def block(marker: str, lang: str) -> str:
    m = re.search(rf"<!-- {marker} -->\s*```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert m, f"docs/own_model.md lost its {marker} block"
    return m.group(1)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("net", ["espcn", "rcan"])
def test_python_walkthrough(workdir, capsys, net):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(block(f"walkthrough-python-{net}", "python"), "docs/own_model.md", "exec"), {"__name__": "walk"})
    finally:
        torch.set_num_threads(n)
        sys.modules.pop(f"{net}_like", None)
    out = capsys.readouterr().out.strip().splitlines()
    if net == "espcn":
        assert out[0].startswith("OK"), out  # verify: golden == intsim
        assert out[1].startswith("(60, 60, 3), ") and out[1].endswith(" uJ on edge_npu"), out
    else:
        ops = eval(out[0])  # the artifact's op kinds: channel attention lowered, BatchNorm folded away
        assert {"conv2d", "mean_pool", "lut", "mul", "add", "pixel_shuffle"} <= set(ops), ops
        assert not any("norm" in o for o in ops), ops
        assert out[1].startswith("OK"), out
        assert out[2].startswith("python, ") and out[2].endswith(" uJ on edge_npu"), out


def _bash(workdir, script: str, **env_extra) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "HOME": str(workdir), **env_extra}
    script = f'PY="{sys.executable}"\nintsim() {{ "$PY" -m intsim_cli "$@"; }}\npython() {{ "$PY" "$@"; }}\n' + script
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=workdir, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]


CLI = {"espcn": ("run", "examples/espcn_like.py:build", "W8A8", 3, "espcn_like"),
       "rcan": ("run_rcan", "examples/rcan_like.py:build", "W4A8", 2, "rcan_like")}


@pytest.mark.parametrize("net", ["espcn", "rcan"])
def test_cli_walkthrough(workdir, net):
    """The CLI block on synthetic data (no data root needed); for the RCAN-like net, then the eval block on
    Set5 (a subset) when the data root has it: a model not in the zoo, evaluated with both engines."""
    from intsim.images import write_png
    from tests.calib.test_own_model import calib_folder

    folder, spec, bits, scale, stem = CLI[net]
    cal = calib_folder(workdir / "cal_hr")
    lr = workdir / "lr"
    lr.mkdir()
    rng = np.random.default_rng(3)
    for k in range(2):
        write_png(lr / f"im{k}.png", np.clip(rng.normal(120, 50, (20, 24, 3)), 0, 255).astype(np.uint8))
    _bash(workdir, block(f"walkthrough-cli-{net}", "sh"), CALIB=str(cal), LR=str(lr),
          RECIPE="--method minmax --n-images 4 --patch 24")
    run = workdir / folder
    cal_json = json.loads((run / "calibrate.json").read_text())
    assert cal_json["model"] == spec and cal_json["bits"] == bits
    ver = json.loads((run / "verify.json").read_text())
    assert ver["ok"] is True and ver["mismatches"] == 0
    assert sorted(p.name for p in (run / "sr").glob("*.png")) == ["im0.png", "im1.png"]
    assert json.loads((run / "cost.json").read_text())["totals"]["energy_pj"]["total"] > 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert stem in html and "bit-exact" in html.lower()
    if net != "rcan":
        return
    from calib.data_root import available, data_root

    if not available("data/Set5/LR_bicubic/X2"):
        pytest.skip(f"data/Set5 not present under the data root {data_root()} (set INTSIM_DATA_ROOT): "
                    "the CLI walkthrough passed, the Set5 eval block did not run")
    _bash(workdir, block("walkthrough-eval-rcan", "sh"), SUBSET="--limit 2 --crop 48",
          INTSIM_DATA_ROOT=str(data_root()))
    fp = json.loads((run / "eval_fp.json").read_text())
    q = json.loads((run / "eval_intsim.json").read_text())
    f, i = fp["datasets"]["Set5"], q["datasets"]["Set5"]
    assert fp["model"] == q["model"] == spec and f["n"] == i["n"] == 2
    assert np.isfinite(f["psnr"]) and np.isfinite(i["psnr"]) and f["psnr"] > 20
    # the intsim run's FP baseline is the fp engine's own result (the same rebuilt, BN-folded float model)
    assert i["baselines"]["fp"]["psnr"] == f["psnr"]
    assert abs(i["psnr"] - f["psnr"]) < 2.0  # W4A8 of rcan_like.trained_like stays near its float model
