"""benchmarks.layer_attribution on a real (FSRCNN ×4) artifact: one line per conv, and float beats quantized."""
from __future__ import annotations

import json

import pytest

from calib.data_root import available, data_root


@pytest.mark.skipif(not (available("weights/fsrcnn") and available("data/SunHays80")),
                    reason=f"FSRCNN weights or SunHays80 not under the data root {data_root()}")
def test_layer_attribution_reports_every_conv(tmp_path, capsys):
    from benchmarks.layer_attribution import main
    from calib.cli_calibrate import run_calibrate

    out = tmp_path / "f.intsim"
    run_calibrate("fsrcnn", None, 4, "W4A4", "minmax", str(data_root() / "data/SunHays80"), str(out), "split",
                  n_images=2, patch=16, seed=0, holdout=False)
    capsys.readouterr()
    assert main([str(out), "--images", "1", "--patch", "16"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    head, variants, convs = lines[0], {x["variant"]: x["psnr"] for x in lines[1:4]}, lines[4:]
    assert len(head["images"]) == 1 and [c["conv"] for c in convs][0] == "first_part.0" and len(convs) == 8
    assert variants["nothing quantized"] > head["quantized"]
    assert all(set(c) == {"conv", "act", "weight"} for c in convs)
