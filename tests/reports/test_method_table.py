"""reports.method_table: calibrate → export → float/golden/intsim evaluation per row, resumable."""
from __future__ import annotations

import json

import pytest

from calib.data_root import available

pytestmark = pytest.mark.skipif(not available("weights/imdn/IMDN_x4.pth") or not available("data/Set5"),
                                reason="needs the shared IMDN x4 checkpoint and Set5 (INTSIM_DATA_ROOT)")


def test_two_rows_end_to_end_and_resume(tmp_path, capsys):
    from reports.method_table import main

    args = ["--out", str(tmp_path / "rows"), "--rows", "minmax:W8A8", "dual_region:W4A4", "--n-images", "4",
            "--patch", "24", "--limit", "1", "--crop", "16", "--markdown", str(tmp_path / "table.md")]
    assert main(args) == 0
    rows = [json.loads((tmp_path / "rows" / f"{r}.json").read_text()) for r in ("minmax_w8a8", "dual_region_w4a4")]
    for r in rows:
        d = r["datasets"]["Set5"]
        assert d["golden_equals_intsim"] and d["golden"]["psnr"] == d["intsim"]["psnr"]
        assert abs(d["float"]["psnr"] - d["intsim"]["psnr"]) < 1.0  # snapping moves PSNR only a little
    assert rows[1]["allocation"] == "released" and max(rows[1]["code_bits"].values()) > 4
    md = (tmp_path / "table.md").read_text()
    assert "| minmax:W8A8 |" in md and "| dual_region:W4A4 |" in md and "NO" not in md
    capsys.readouterr()
    assert main(args) == 0  # second run: every row is skipped
    assert capsys.readouterr().out.count("done earlier") == 2


def test_bad_row_is_refused(tmp_path, capsys):
    from reports.method_table import main

    assert main(["--out", str(tmp_path), "--rows", "oaq", "--limit", "1", "--crop", "16"]) == 2
    assert "expected method:bits" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
