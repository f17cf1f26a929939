"""reports.results_page: cell JSONs → results page, CSV and plots (synthetic cells; no Ray, no torch)."""
from __future__ import annotations

import csv
import io
import json

from reports.results_page import main, markdown, to_csv, write_results


def _cell(method, dataset, psnr, alloc=None, bits="W4A4", status="done"):
    c = {"schema": "intsim.sweep.cell/1", "status": status, "cell": f"imdn_x4_{bits}_{method}_{alloc}_{dataset}",
         "model": "imdn", "scale": 4, "bits": bits, "method": method, "allocation": alloc, "dataset": dataset}
    if status != "done":
        return {**c, "error": "RuntimeError: boom | pipe"}
    score = {"psnr": psnr, "ssim": 0.8, "n": 5, "per_image": []}
    return {**c, "recipe": "r", "recipe_fields": {"seed": 0}, "fp": {"psnr": 32.21, "ssim": 0.9, "n": 5},
            "fake_quant": dict(score), "golden": dict(score), "intsim": dict(score), "golden_equals_intsim": True,
            "code_bits": {"a": 4}, "true_code_bits": [4, 5] if alloc == "released" else [4], "calib_seconds": 10,
            "eval_seconds": 5, "cost": {"accelerator": "edge", "energy_uj": 100.0 + psnr, "latency_ms": 1.0},
            "seeds": {"calibration": 0, "finetune": 0}, "artifact_sha256": method + str(alloc) + bits}


def test_page_says_where_the_full_method_loses_and_lists_failures():
    cells = [_cell("minmax", "Set5", 25.7), _cell("ptq4sr", "Set5", 29.5), _cell("oaq", "Set5", 29.0, "released"),
             _cell("oaq", "Set5", 27.0, "budgeted"), _cell("minmax", "B100", 24.0),
             _cell("oaq", "B100", 26.0, "released"), _cell("sa_ft", "Set5", 0, status="failed")]
    md = markdown(cells, [], [{"command": "intsim sweep s.toml", "seconds": 7200}])
    assert "Made by `intsim sweep s.toml`; 1 sweep run(s), 2.00 h of wall time" in md
    assert "6 cells done, 1 failed. Compute: 0.01 h calibrating, 0.01 h evaluating" in md
    assert "B100-68" in md and "SunHays80 in place of DIV2K" in md
    assert "| full method (dual-region + SA finetuning) [released] | 4/5 | 29.00 / 0.8000 | 26.00 / 0.8000 |" in md
    assert "| FP | 32 | 32.21 / 0.9000 |" in md
    full = "full method (dual-region + SA finetuning)"
    assert f"- Set5: **PTQ4SR-style** 29.50 dB ≥ {full} [released] 29.00 dB" in md
    assert f"- Set5: **PTQ4SR-style** 29.50 dB ≥ {full} [budgeted] 27.00 dB" in md  # each allocation on its own
    assert md.index("[released] 29.00 dB") < md.index("[budgeted] 27.00 dB")
    assert "MinMax** 25.70" not in md  # the full method beats it
    assert "| imdn_x4_W4A4_sa_ft_None_Set5 | RuntimeError: boom / pipe |" in md
    assert "not drawn (matplotlib is not installed)" in md
    assert "| dual-region + sensitivity-aware finetuning | 31.54 | 28.26 | 27.36 | 25.61 |" in md  # orientation


def test_csv_has_a_row_per_cell():
    cells = [_cell("minmax", "Set5", 25.7), _cell("oaq", "Set5", 0, "released", status="failed")]
    rows = list(csv.DictReader(io.StringIO(to_csv(cells))))
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[0]["intsim_psnr"] == "25.7" and rows[0]["true_code_bits"] == "4" and rows[1]["error"]


def test_write_results_from_a_sweep_folder(tmp_path, capsys):
    (tmp_path / "cells").mkdir()
    for c in (_cell("minmax", "Set5", 25.7), _cell("oaq", "Set5", 29.0, "released")):
        (tmp_path / "cells" / f"{c['cell']}.json").write_text(json.dumps(c))
    (tmp_path / "cells" / "broken.json").write_text("{")
    assert main([str(tmp_path), "--page", str(tmp_path / "docs" / "results.md")]) == 0
    page = (tmp_path / "docs" / "results.md").read_text()
    assert "| broken | unreadable cell JSON" in page
    assert "The full method beats every baseline here on every dataset it was run on." in page
    plots = sorted((tmp_path / "plots").glob("*.png"))
    assert [p.name for p in plots] == ["imdn_x4_set5.png"] and plots[0].stat().st_size > 1000
    assert "](../plots/imdn_x4_set5.png)" in page
    assert write_results(tmp_path).read_text().count("](plots/imdn_x4_set5.png)") == 1


def test_not_a_sweep_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no cells/ folder" in capsys.readouterr().err


def test_cells_the_sweep_asked_for_but_never_ran_are_named():
    cells = [_cell("minmax", "Set5", 25.7)]
    md = markdown(cells, [], [], grid=[cells[0]["cell"], "imdn_x4_w4a4_oaq_released_urban100"])
    assert "**1 not computed yet**" in md and "`imdn_x4_w4a4_oaq_released_urban100`" in md


def test_page_is_titled_by_the_sweep_not_the_paper():
    cells = [_cell("minmax", "Set5", 25.7, bits="W8A8")]
    md = markdown(cells, [], [], title="My edge-NPU study")
    assert md.splitlines()[1] == "# My edge-NPU study"
    assert "paper's protocol" not in md and "Quick run" not in md
    assert "For orientation" not in md  # the paper's EDSR ×4 W4A4 numbers compare with no cell here
    assert "For orientation: the paper's EDSR-baseline ×4 W4A4" in markdown([_cell("minmax", "Set5", 25.7)], [], [])


def test_quick_runs_are_labelled_as_such():
    quick = _cell("minmax", "Set5", 25.7)
    quick["recipe_fields"] = {"seed": 0, "limit": 1, "crop": 24}
    md = markdown([quick, _cell("oaq", "Set5", 29.0, "released")], [], [], title="t")
    assert md.splitlines()[1] == "# t (quick run)"
    assert "**Quick run**" in md and "at most 1 image(s) per set" in md and "top-left 24×24 LR crops" in md
    assert "## imdn ×4 W4A4 (quick run)" in md
    assert "Quick run" not in markdown([_cell("minmax", "Set5", 25.7)], [], [], title="t")


def test_calibration_data_of_the_recipe_is_named():
    c = _cell("minmax", "Set5", 25.7)
    c["recipe_fields"] = {"calib_data": "/data/my_photos"}
    md = markdown([c], [], [])
    assert "Calibration data: `/data/my_photos`" in md and "SunHays80" not in md


def test_write_results_takes_the_title_of_the_last_sweep_run(tmp_path):
    (tmp_path / "cells").mkdir()
    c = _cell("minmax", "Set5", 25.7)
    (tmp_path / "cells" / f"{c['cell']}.json").write_text(json.dumps(c))
    assert write_results(tmp_path).read_text().splitlines()[1] == f"# Results of {tmp_path.name}"
    (tmp_path / "runs.json").write_text(json.dumps([{"command": "a", "seconds": 1, "title": "Old"},
                                                    {"command": "b", "seconds": 1, "title": "New"}]))
    assert write_results(tmp_path).read_text().splitlines()[1] == "# New"
    assert write_results(tmp_path, title="Given").read_text().splitlines()[1] == "# Given"
