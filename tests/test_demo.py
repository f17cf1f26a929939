"""`intsim demo --quick` end to end on the embedded model, with no data root (clean-clone conditions)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    empty_root = tmp / "no_data_root"
    empty_root.mkdir()
    env = dict(os.environ, INTSIM_DATA_ROOT=str(empty_root))
    out = tmp / "run"
    r = subprocess.run([sys.executable, "-m", "intsim_cli", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp, timeout=900)
    return r, out


def test_demo_quick_is_bit_exact(demo_run):
    r, out = demo_run
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    for key in ("model", "scale", "bits", "code_bits", "images", "psnr_db", "bit_exact", "mismatches", "seconds"):
        assert key in s, key
    assert s["model"] == "tiny_sr" and s["scale"] == 2 and s["bits"] == "W4A4"
    assert isinstance(s["code_bits"], int) and s["code_bits"] >= 4
    assert s["bit_exact"] is True and s["mismatches"] == 0
    ps = s["psnr_db"]
    assert ps["intsim"] == ps["golden"]
    for k in ("float", "fake_quant", "golden", "intsim"):
        assert isinstance(ps[k], float) and 15 < ps[k] < 60, (k, ps[k])
    assert s["images"] >= 1 and s["seconds"] > 0


def test_demo_outputs(demo_run):
    r, out = demo_run
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / s["artifact"]).is_file() and (out / "golden" / "manifest.json").is_file()
    assert (out / "cost.json").is_file()
    for row in s["per_image"]:
        for rel in row["files"].values():
            assert (out / rel).is_file(), rel
    # the short result table at the end, and a progress bar per stage on stderr
    assert "bit-exact: yes" in r.stdout and "intsim" in r.stdout
    for stage in ("calibrate", "golden", "intsim", "verify", "cost"):
        assert stage in r.stderr


def test_report_rebuild_and_verify_cli(demo_run, tmp_path):
    r, out = demo_run
    assert r.returncode == 0
    from intsim_cli import main

    s = json.loads((out / "summary.json").read_text())
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file()
    assert main(["verify", str(out / s["artifact"]), str(out / "golden")]) == 0
