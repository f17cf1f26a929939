"""benchmarks.peak_memory: peak RSS of one run per artifact, allocator and checkout (docs/speed.md)."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from benchmarks import peak_memory
from intsim.artifact import load_artifact, save_artifact
from intsim.engine import run
from intsim.images import write_png
from tests.artifact_factory import make_random_artifact


def test_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert peak_memory.main([str(tmp_path / "none.intsim"), "--image", str(tmp_path / "none.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.intsim" in err


def test_two_sides_report_peaks_and_the_same_output_hash(tmp_path):
    """Both 'checkouts' (here the same one) run the artifact in their own process, each allocator, and
    agree on the output's hash; the table has one row per artifact and allocator."""
    art_path, img_path = tmp_path / "a.intsim", tmp_path / "x.png"
    save_artifact(make_random_artifact(0), art_path)
    img = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    write_png(img_path, img)
    out = tmp_path / "pm"
    assert peak_memory.main([str(art_path), "--image", str(img_path), "--before", str(peak_memory.ROOT),
                             "--rounds", "1", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["same_outputs"] and res["sides"] == ["before", "after"]
    assert [r["allocator"] for r in res["rows"]] == list(peak_memory.ALLOCATORS)
    want = run(load_artifact(art_path), img, keep_tensors=False).tensors["output"]
    digest = hashlib.sha256(np.ascontiguousarray(want).tobytes()).hexdigest()
    for row in res["rows"]:
        for side in ("before", "after"):
            (m,) = row[side]
            assert m["peak_mib"] > 0 and m["sha256"] == digest and m["shape"] == [20, 24, 3]
    assert "| a.intsim | keep |" in out.with_suffix(".md").read_text()
