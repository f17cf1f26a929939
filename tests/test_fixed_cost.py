"""benchmarks.fixed_cost: the A/B of the engine's fixed cost per image (docs/speed.md)."""
from __future__ import annotations

import numpy as np

from benchmarks import fixed_cost
from intsim.artifact import save_artifact
from intsim.images import write_png
from tests.artifact_factory import make_random_artifact


def test_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert fixed_cost.main([str(tmp_path / "none.intsim"), "--image", str(tmp_path / "none.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.intsim" in err


def test_child_times_a_run_and_subtracts_the_scaled_full_run(tmp_path):
    art_path, img_path = tmp_path / "a.intsim", tmp_path / "x.png"
    save_artifact(make_random_artifact(0), art_path)
    write_png(img_path, np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    r = fixed_cost.child(fixed_cost.ROOT, art_path, img_path)
    assert r["pixels"] == 480 and r["small_s"] > 0 and r["full_s"] > 0
    assert r["fixed_s"] == r["small_s"] - r["full_s"] * 256 / 480
