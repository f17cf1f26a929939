"""benchmarks.recipe_selection end to end on FSRCNN ×4 (tiny budget): the equalized recipe is calibrated and scored."""
from __future__ import annotations

import json
import math

import pytest

from calib.data_root import available, data_root


@pytest.mark.skipif(not (available("weights/fsrcnn") and available("data/SunHays80")),
                    reason=f"FSRCNN weights or SunHays80 not under the data root {data_root()}")
def test_recipe_selection_with_equalization(capsys):
    from benchmarks.recipe_selection import main

    assert main(["--model", "fsrcnn", "--scale", "4", "--bits", "4", "--n", "4", "--patch", "16",
                 "--recon", '{"iters": 2}', "--headroom", "1", "--equalize", "1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[1]["equalize"].startswith("equalized 6 conv pair(s)")
    assert "cross-layer equalized (α 1)" in lines[2]["recipe"]
    assert lines[3]["headroom"] == 1.0 and math.isfinite(lines[3]["heldout"]) and math.isfinite(lines[3]["stressed"])
