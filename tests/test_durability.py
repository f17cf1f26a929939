"""Durability (issue 7): outputs are replaced atomically, and an interrupted calibration resumes.

Each case runs the real CLI in a subprocess through ``tests/kill_points.py``, which
SIGKILLs the process at a deterministic point (the n-th temp-file write, fsync,
rename, golden tensor file, folder swap), then checks that the destination holds
either the complete old output, byte for byte, or the complete new one (equal to an
uninterrupted run's). Stray hidden temp files/folders (``.<name>.*.tmp``) may remain
after a kill; they are never read and a later run works regardless. A later ``golden`` run
removes the temp folders of killed writers of its target (large); other strays stay.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image

from intsim.artifact import load_artifact
from intsim_cli import main as intsim_main
from intsim.golden_dir import GoldenError, read_golden_dir

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180
KILLED = -signal.SIGKILL
CAL = ("calibrate", "--model", "tiny_sr", "--scale", "2", "--bits", "W4A4", "--n-images", "2", "--patch", "16",
       "--seed", "0")


def _cli(point: str, n: int, pattern: str, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "tests.kill_points", point, str(n), pattern, "--", *map(str, argv)]
    return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _ok(point: str, n: int, pattern: str, *argv) -> None:
    r = _cli(point, n, pattern, *argv)
    assert r.returncode == 0, r.stderr[-3000:]


def _killed(point: str, n: int, pattern: str, *argv) -> None:
    r = _cli(point, n, pattern, *argv)
    assert r.returncode == KILLED, f"exit {r.returncode}, expected SIGKILL\n{r.stderr[-3000:]}"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _strays(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("durability")
    rng = np.random.default_rng(0)
    calib, lr = root / "calib", root / "lr"
    calib.mkdir()
    lr.mkdir()
    x = np.linspace(0, 255, 48)
    for i in range(2):
        img = (np.stack([np.add.outer(x, x) / 2] * 3, -1) + rng.integers(0, 40, (48, 48, 3))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(calib / f"c{i}.png")
        Image.fromarray(img[i:i + 12, :12].astype(np.uint8)).save(lr / f"l{i}.png")
    cal = (*CAL, "--calib-data", calib)
    # "new": the output every killed command would produce; "old": what the destination held before.
    _ok("none", 1, "-", *cal, "--method", "minmax", "-o", root / "new.intsim")
    _ok("none", 1, "-", *cal, "--method", "oaq", "--epochs", "3", "-o", root / "old.intsim")
    return {"root": root, "cal": cal, "lr": lr, "new": root / "new.intsim", "old": root / "old.intsim",
            "inputs": (lr / "l0.png", lr / "l1.png")}


# --------------------------------------------------------------------------
# intsim calibrate: the artifact file


@pytest.mark.parametrize("point,expect", [("write", "old"), ("fsync", "old"), ("replace", "new")])
def test_calibrate_killed_leaves_old_or_complete_new_artifact(env, tmp_path, point, expect):
    dest = tmp_path / "m.intsim"
    shutil.copyfile(env["old"], dest)
    _killed(point, 1, "*m.intsim*", *env["cal"], "--method", "minmax", "-o", dest)
    assert dest.read_bytes() == env[expect].read_bytes()
    assert load_artifact(dest).sha256 == load_artifact(env[expect]).sha256
    strays = _strays(tmp_path, "m.intsim")
    assert all(s.endswith(".tmp") for s in strays) and len(strays) == (expect == "old")


def test_interrupted_calibration_resumes_to_the_same_artifact(env, tmp_path):
    state, out = tmp_path / "state", tmp_path / "res.intsim"
    args = (*env["cal"], "--method", "oaq", "--epochs", "3", "--state-dir", state, "-o", out)
    # SIGKILL right after epoch 1's state is renamed into place.
    _killed("replace", 1, "finetune_state.json", *args)
    assert json.loads((state / "finetune_state.json").read_text())["epoch"] == 1
    assert not out.exists()
    # The rerun must resume (only epochs 2 and 3 save state: a 3rd save would kill it) and match
    # the uninterrupted run with the same seed byte for byte.
    _ok("replace", 3, "finetune_state.json", *args)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(env["old"].read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# intsim golden: the golden folder


@pytest.fixture(scope="module")
def goldens(env):
    old = env["root"] / "golden_old"
    _ok("none", 1, "-", "golden", env["old"], *env["inputs"], "-o", old)
    return {"old": old, "old_files": _snapshot(old)}


def _golden(env, dest: Path, point: str, n: int = 1, pattern: str = "*") -> None:
    _killed(point, n, pattern, "golden", env["new"], *env["inputs"], "-o", dest)


def _assert_new_golden(env, dest: Path, capsys) -> None:
    g = read_golden_dir(dest)
    assert g.artifact_sha256 == load_artifact(env["new"]).sha256
    assert intsim_main(["verify", str(env["new"]), str(dest)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("point,n,pattern", [("golden_file", 3, "*.npy"), ("golden_file", 1, "manifest.json"),
                                             ("golden_swap_before", 1, "*")])
def test_golden_killed_before_swap_leaves_old_golden(env, goldens, tmp_path, point, n, pattern):
    dest = tmp_path / "g"
    shutil.copytree(goldens["old"], dest)
    _golden(env, dest, point, n, pattern)
    assert _snapshot(dest) == goldens["old_files"]
    read_golden_dir(dest)
    assert all(s.endswith(".tmp") for s in _strays(tmp_path, "g"))


def test_golden_killed_after_swap_has_new_golden_and_rerun_works(env, goldens, tmp_path, capsys):
    dest = tmp_path / "g"
    shutil.copytree(goldens["old"], dest)
    _golden(env, dest, "golden_swap_after")
    _assert_new_golden(env, dest, capsys)
    strays = _strays(tmp_path, "g")
    assert len(strays) == 1 and strays[0].endswith(".tmp")  # the old golden, not yet deleted
    _ok("none", 1, "-", "golden", env["old"], *env["inputs"], "-o", dest)
    assert _snapshot(dest) == goldens["old_files"]
    assert _strays(tmp_path, "g") == []  # the later run removed the killed run's folder (its process is gone)


def test_golden_fallback_swap_killed_is_recovered_by_next_writer(env, goldens, tmp_path):
    # Without renameat2 the swap is rename-old, rename-new: a kill in between leaves the
    # old golden aside at .g.*.old; the reader says so and the next writer moves it back first.
    dest = tmp_path / "g"
    shutil.copytree(goldens["old"], dest)
    _golden(env, dest, "golden_fallback")
    assert not dest.exists()
    stranded = [s for s in _strays(tmp_path, "g") if s.endswith(".old")]
    assert len(stranded) == 1 and _snapshot(tmp_path / stranded[0]) == goldens["old_files"]
    with pytest.raises(GoldenError, match="interrupted write"):
        read_golden_dir(dest)
    _golden(env, dest, "golden_swap_before")  # the next writer, killed before its own swap
    assert _snapshot(dest) == goldens["old_files"]
    assert not [s for s in _strays(tmp_path, "g") if s.endswith(".old")]


# --------------------------------------------------------------------------
# intsim run: the output images


@pytest.fixture(scope="module")
def pngs(env):
    out = {}
    for which in ("old", "new"):
        d = env["root"] / f"run_{which}"
        _ok("none", 1, "-", "run", env[which], *env["inputs"], "-o", d)
        out[which] = _snapshot(d)
    assert out["old"].keys() == {"l0.png", "l1.png"} and out["old"] != out["new"]
    return out


# All PNGs are written to temp files first and renamed only then: until the first rename both are old.
@pytest.mark.parametrize("point,n,expect", [("write", 1, ("old", "old")), ("write", 2, ("old", "old")),
                                            ("fsync", 2, ("old", "old")), ("replace", 1, ("new", "old")),
                                            ("replace", 2, ("new", "new"))])
def test_run_killed_leaves_each_png_old_or_new(env, pngs, tmp_path, point, n, expect):
    dest = tmp_path / "out"
    dest.mkdir()
    for name, data in pngs["old"].items():
        (dest / name).write_bytes(data)
    _killed(point, n, "*.png*", "run", env["new"], *env["inputs"], "-o", dest)
    for name, which in zip(("l0.png", "l1.png"), expect):
        assert (dest / name).read_bytes() == pngs[which][name], (name, which)
    if point == "write":
        strays = [p.name for p in dest.iterdir() if p.name.startswith(".")]
        assert len(strays) == n and all(s.endswith(".tmp") for s in strays)
        _ok("none", 1, "-", "run", env["new"], *env["inputs"], "-o", dest)  # a later run still works
        assert {k: (dest / k).read_bytes() for k in pngs["new"]} == pngs["new"]
        assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == strays
