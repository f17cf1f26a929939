"""intsim sweep (reports.sweep, reports.sweep_cell): a two-cell sweep end to end through a local Ray
instance, --resume, a failed configuration recorded without stopping the others, and SWEEP.toml refusals."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from calib.data_root import available
from reports.sweep import _running, running_marker

needs_data = pytest.mark.skipif(
    not available("weights/imdn/IMDN_x4.pth") or not available("data/Set5") or not available("data/Set14"),
    reason="needs the shared IMDN x4 checkpoint, Set5 and Set14 (INTSIM_DATA_ROOT)")

QUICK_RECIPE = """
[recipe]
n_images = 2
patch = 24
epochs = 0
limit = 1
crop = 24
"""


def _spec(folder: Path, models: str, extra: str = "") -> Path:
    p = folder / "sweep.toml"
    p.write_text(textwrap.dedent(f"""
        [sweep]
        out = "out"
        models = [{models}]
        bits = ["W8A8"]
        methods = ["minmax"]
        datasets = ["Set5", "Set14"]
        """) + QUICK_RECIPE + extra)
    return p


def _intsim(*args: str) -> subprocess.CompletedProcess:
    # A subprocess, as a user runs it: Ray starts (and stops) its local instance in the command.
    return subprocess.run([sys.executable, "-m", "intsim_cli", *args], capture_output=True, text=True, timeout=900)


@needs_data
def test_two_cell_sweep_on_local_ray_then_resume(tmp_path):
    missing_ckpt = not available("weights/msrresnet/001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb.pth")  # a configuration whose real checkpoint is absent
    models = '"imdn:4"' + (', "msrresnet:4"' if missing_ckpt else "")
    spec = _spec(tmp_path, models, '\n[report]\npage = "page/results.md"\n')
    r = _intsim("sweep", str(spec), "--num-cpus", "2")
    out = tmp_path / "out"
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    done = {k: v for k, v in cells.items() if v["status"] == "done"}
    assert set(done) == {"imdn_x4_w8a8_minmax_set5", "imdn_x4_w8a8_minmax_set14"}, r.stderr
    for c in done.values():
        assert c["golden_equals_intsim"] is True
        assert c["golden"]["psnr"] == c["intsim"]["psnr"] > 15
        assert c["true_code_bits"] == [8] and c["fp"] is None  # crops: no FP reference
        assert c["cost"]["energy_uj"] > 0 and c["calib_seconds"] >= 0
        assert len(c["artifact_sha256"]) == 64 and c["seeds"] == {"calibration": 0, "finetune": 0}
    if missing_ckpt:  # recorded with its error; the other cells still ran
        assert r.returncode == 1
        failed = [v for v in cells.values() if v["status"] == "failed"]
        assert len(failed) == 2 and all("checkpoint is not under the data root" in v["error"] for v in failed)
        assert "failed: msrresnet_x4_w8a8_minmax_set5" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
    assert json.loads((out / "grid.json").read_text()) == sorted(cells)
    page = (tmp_path / "page" / "results.md").read_text()
    assert "| MinMax | 8 |" in page and "SunHays80 in place of DIV2K" in page
    assert (out / "results.csv").read_text().count("\n") == len(cells) + 1

    # Without --resume the finished cells are not thrown away.
    r2 = _intsim("sweep", str(spec))
    assert r2.returncode == 2 and "pass --resume" in r2.stderr

    # --resume: a finished cell is skipped (its JSON untouched), the missing one recomputed,
    # the calibration reused.
    keep = (out / "cells" / "imdn_x4_w8a8_minmax_set5.json").read_bytes()
    calib = (out / "artifacts" / "imdn_x4_w8a8_minmax.calib.json").read_bytes()
    (out / "cells" / "imdn_x4_w8a8_minmax_set14.json").unlink()
    (out / "running" / "imdn_x4_w8a8_minmax_set5").parent.mkdir(exist_ok=True)
    (out / "running" / "imdn_x4_w8a8_minmax_set5").write_text("{}")  # left behind by a killed worker
    r3 = _intsim("sweep", str(spec), "--resume", "--num-cpus", "2")
    assert "done 1, skipped (finished earlier) 1" in r3.stdout, r3.stdout + r3.stderr
    assert (out / "cells" / "imdn_x4_w8a8_minmax_set5.json").read_bytes() == keep
    assert (out / "artifacts" / "imdn_x4_w8a8_minmax.calib.json").read_bytes() == calib
    assert json.loads((out / "cells" / "imdn_x4_w8a8_minmax_set14.json").read_text())["status"] == "done"
    assert len(json.loads((out / "runs.json").read_text())) == 2
    assert list((out / "running").iterdir()) == []  # the stale marker cleared, every task's own removed
    assert re.search(r"done 1, running \d \(\d evaluating, \d calibrating\), queued \d, failed \d", r3.stderr), \
        r3.stderr[-2000:]


def test_running_marker_lives_for_the_task(tmp_path):
    with running_marker(tmp_path, "cell_a"):
        assert _running(tmp_path) == {"cell_a"}
        assert json.loads((tmp_path / "running" / "cell_a").read_text())["pid"] == os.getpid()
    assert _running(tmp_path) == set()
    with pytest.raises(RuntimeError), running_marker(tmp_path, "cell_b"):
        raise RuntimeError("the task failed")
    assert _running(tmp_path) == set()  # removed on failure too


@pytest.mark.parametrize("body, message", [
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4"]\nmethods=["minmax"]\ndatasets=["Set5"]',
     "[sweep] bits: 'W4' must look like W4A4"),
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4A4"]\nmethods=["adaround"]\ndatasets=["Set5"]',
     "[sweep] methods: 'adaround' is not one of"),
    ('[sweep]\nout="o"\nmodels=["imdn"]\nbits=["W4A4"]\nmethods=["minmax"]\ndatasets=["Set5"]',
     "[sweep] models: 'imdn' must be name:scale"),
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4A4"]\nmethods=["minmax"]\ndatasets=["DIV2K"]',
     "[sweep] datasets: 'DIV2K' is not one of"),
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4A4"]\nmethods=["minmax","minmax"]\ndatasets=["Set5"]',
     "[sweep] methods: lists 'minmax' twice"),
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4A4"]\nmethods=["minmax"]\ndatasets=["Set5"]\nepochs=3',
     "[sweep] unknown key 'epochs'"),
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4A4"]\nmethods=["minmax"]\ndatasets=["Set5"]\n[recipe]\ncrop=4',
     "[recipe] crop: must be 0 (whole images) or ≥ 8"),
    ('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W4A4"]\nmethods=["minmax"]\ndatasets=["Set5"]\n[grid]\n',
     "unknown section or top-level key 'grid'"),
    ('[sweep\n', "not valid TOML"),
])
def test_bad_sweep_files_are_refused_in_one_line(tmp_path, body, message):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    r = _intsim("sweep", str(p))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("intsim: error: ") and "bad.toml" in r.stderr
    assert message in r.stderr
    assert not (tmp_path / "o").exists()


def test_grid_expands_dual_region_methods_per_allocation(tmp_path):
    from reports.sweep import load_sweep

    p = tmp_path / "s.toml"
    p.write_text('[sweep]\nout="o"\nmodels=["imdn:4","imdn:2"]\nbits=["W4A4","W8A8"]\n'
                 'methods=["minmax","oaq"]\nallocations=["released","budgeted"]\ndatasets=["Set5","Urban100"]\n')
    s = load_sweep(p)
    assert len(s.configs) == 2 * 2 * (1 + 2) and len(s.cells) == 2 * len(s.configs)
    assert {c.config.allocation for c in s.cells if c.config.method == "minmax"} == {None}
    assert "imdn_x2_w4a4_oaq_budgeted_urban100" in {c.id for c in s.cells}
    assert s.out == tmp_path / "o" and s.recipe.limit is None and s.recipe.crop is None
    assert s.title == "Results of s.toml"  # no title field: the file's name


def test_sweep_title_field(tmp_path):
    from reports.sweep import load_sweep

    p = tmp_path / "s.toml"
    p.write_text('[sweep]\ntitle="W8A8 on my camera"\nout="o"\nmodels=["imdn:4"]\nbits=["W8A8"]\n'
                 'methods=["minmax"]\ndatasets=["Set5"]\n')
    assert load_sweep(p).title == "W8A8 on my camera"
    p.write_text(p.read_text().replace('"W8A8 on my camera"', '""'))
    with pytest.raises(ValueError, match=r"\[sweep\] title"):
        load_sweep(p)


def test_committed_sweeps_share_one_out_folder_and_recipe():
    """Every committed sweep file is a part of the paper's protocol (or a W3A3 probe), run into the same
    folder with the same recipe (so --resume continues any of them and the page covers them all)."""
    from reports.sweep import load_sweep

    root = Path(__file__).resolve().parents[2] / "sweeps"
    full = load_sweep(root / "paper_protocol.toml")
    assert len(full.cells) == 792
    every = load_sweep(root / "protocol_all_checkpoints.toml")  # issue 23: every real checkpoint, the default
    assert len(every.cells) == 13 * 3 * 7 * 4 and every.recipe == full.recipe and every.out == full.out
    parts = [load_sweep(p) for p in sorted(root.glob("*.toml"))
             if p.name not in ("paper_protocol.toml", "protocol_all_checkpoints.toml")]
    assert len(parts) >= 3
    for part in parts + [every]:
        assert part.out.resolve() == full.out.resolve() and part.recipe == full.recipe, part.path
        assert part.title == full.title == "Results: the paper's protocol on the real checkpoints", part.path
        # W3A3 is asked for only where it does not collapse: probes of it are the one addition
        assert {c for c in part.cells if c.config.bits != "W3A3"} <= set(full.cells) | set(every.cells), part.path
        assert part.page.resolve() == full.page.resolve() == (root.parent / "docs" / "results.md").resolve()


def test_unreachable_ray_cluster_is_one_line(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W8A8"]\nmethods=["minmax"]\ndatasets=["Set5"]\n')
    r = _intsim("sweep", str(spec), "--address", "127.0.0.1:1")
    assert r.returncode == 2 and r.stderr.startswith("intsim: error: cannot start or reach Ray at 127.0.0.1:1")


def test_only_that_matches_no_cell_is_one_line(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W8A8"]\nmethods=["minmax"]\ndatasets=["Set5"]\n')
    r = _intsim("sweep", str(spec), "--only", "fsrcnn_*")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stdout == ""
    assert "intsim: error: --only fsrcnn_*: matches no cell of s.toml (cell ids look like imdn_x4_w8a8_minmax_set5)" \
        in r.stderr
    assert not (tmp_path / "o").exists()


def test_default_method_cells_key_on_the_default_recipe_of_their_bits(monkeypatch):
    """A recon cell made under an earlier default recipe (calib/recipe.py) is not reused under --resume."""
    import calib.recipe as cr
    from reports.sweep_cell import Config, Recipe, recipe_digest

    r = Recipe()
    cfg = lambda m, b: Config(model="fsrcnn", scale=4, bits=b, method=m, allocation=None)  # noqa: E731
    assert recipe_digest(cfg("minmax", "W4A4"), r) == r.digest()
    w4, w8 = recipe_digest(cfg("recon", "W4A4"), r), recipe_digest(cfg("recon", "W8A8"), r)
    assert len({w4, w8, r.digest()}) == 3  # W4 reconstructs with the Fisher-weighted loss, W8 without
    monkeypatch.setitem(cr._RECON, "n_images", 512)  # a new default …
    assert recipe_digest(cfg("recon", "W8A8"), r) != w8  # … invalidates the cells made under the old one
    assert recipe_digest(cfg("minmax", "W4A4"), r) == r.digest()


def test_a_calibration_under_an_earlier_layer_policy_is_not_reused(tmp_path):
    from intsim.artifact import save_artifact
    from reports.sweep_cell import Config, earlier_layer_policy
    from tests.intsim.test_cost_compare import uniform_artifact

    cfg = Config(model="fsrcnn", scale=4, bits="W4A4", method="minmax", allocation=None)
    assert not earlier_layer_policy(cfg, tmp_path)  # no artifact: nothing to judge
    (tmp_path / "artifacts").mkdir()
    roles = {"head.conv": "head", "body.conv": "body", "up.conv": "upsampler", "tail.conv": "tail"}
    save_artifact(uniform_artifact(4, {"layers": {n: {"role": r} for n, r in roles.items()}}),
                  tmp_path / "artifacts" / f"{cfg.id}.intsim")
    assert not earlier_layer_policy(cfg, tmp_path)
    roles["up.conv"] = "body"  # recorded by the rule before 2026-12-07
    save_artifact(uniform_artifact(4, {"layers": {n: {"role": r} for n, r in roles.items()}}),
                  tmp_path / "artifacts" / f"{cfg.id}.intsim")
    assert earlier_layer_policy(cfg, tmp_path)
