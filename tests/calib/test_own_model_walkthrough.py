"""docs/own_model.md's two walkthrough blocks, run as written on a random-weight ESPCN-like ×3 net.

The Python block runs verbatim. The shell block runs under bash with its three variables set to data that
needs no data root (synthetic HR calibration images and LR inputs) and ``RECIPE`` to a fast calibration
(the default recipe takes minutes); ``intsim`` and ``python`` are this interpreter."""
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


def test_python_walkthrough(workdir, capsys):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(block("walkthrough-python", "python"), "docs/own_model.md", "exec"), {"__name__": "walk"})
    finally:
        torch.set_num_threads(n)
        sys.modules.pop("espcn_like", None)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("OK"), out  # verify: golden == intsim
    assert out[1].startswith("(60, 60, 3), ") and out[1].endswith(" uJ on edge_npu"), out


def test_cli_walkthrough(workdir):
    from tests.calib.test_own_model import calib_folder
    from intsim.images import write_png

    cal = calib_folder(workdir / "cal_hr")
    lr = workdir / "lr"
    lr.mkdir()
    rng = np.random.default_rng(3)
    for k in range(2):
        write_png(lr / f"im{k}.png", np.clip(rng.normal(120, 50, (20, 24, 3)), 0, 255).astype(np.uint8))
    script = (f'PY="{sys.executable}"\nintsim() {{ "$PY" -m intsim_cli "$@"; }}\npython() {{ "$PY" "$@"; }}\n'
              + block("walkthrough-cli", "sh"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "CALIB": str(cal), "LR": str(lr), "RECIPE": "--method minmax --n-images 4 --patch 24",
           "HOME": str(workdir)}
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=workdir, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = workdir / "run"
    cal_json = json.loads((run / "calibrate.json").read_text())
    assert cal_json["model"] == "examples/espcn_like.py:build" and cal_json["bits"] == "W8A8"
    ver = json.loads((run / "verify.json").read_text())
    assert ver["ok"] is True and ver["mismatches"] == 0
    assert sorted(p.name for p in (run / "sr").glob("*.png")) == ["im0.png", "im1.png"]
    assert json.loads((run / "cost.json").read_text())["totals"]["energy_pj"]["total"] > 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "espcn_like" in html and "bit-exact" in html.lower()
