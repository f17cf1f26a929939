"""`intsim report DIR` on a folder made by hand with the CLI (no summary.json): it finds the parts
by content, shows what is there and says plainly what is missing."""
from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim_cli import EXIT_OK, main
from intsim.engine import run
from intsim.images import write_png
from reports.html_report import ReportError, build_report
from reports.run_folder import PARTS, json_kind
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    return out


def _lr_images(d: Path, n=2, size=16):
    rng = np.random.default_rng(0)
    for k in range(n):
        y, x = np.mgrid[0:size, 0:size]
        img = np.stack([x * 9 + k * 30, y * 7, (x + y) * 4], -1) + rng.integers(0, 12, (size, size, 3))
        write_png(d / "lr" / f"im{k}.png", np.clip(img, 0, 255).astype(np.uint8))
    return sorted((d / "lr").iterdir())


def _read(p):
    from intsim.images import read_image

    return read_image(p, 3).pixels


def _missing(html: str) -> list[str]:
    m = re.search(r'<ul class="missing">(.*?)</ul>', html)
    return [html_lib.unescape(li) for li in re.findall(r"<li>(.*?)</li>", m.group(1))] if m else []


def test_report_of_a_folder_made_by_hand_with_the_cli(tmp_path, capsys, monkeypatch):
    """artifact, golden (engine-written: the `golden` command needs torch), then the CLI's run,
    cost and verify; HR images in hr/. No summary.json, no calibration record, no --compare."""
    d = tmp_path / "run"
    art = make_random_artifact(2)
    art.model.update(scale=6, bits="W4A4")  # the random graph upsamples ×6
    save_artifact(art, d / "model.intsim")
    art = load_artifact(d / "model.intsim")
    lrs = _lr_images(d)
    monkeypatch.chdir(d)  # the CLI is run from the folder, with relative paths, as a user would
    engine_golden(art, d / "golden", [(f"lr/{p.name}", _read(p)) for p in lrs])
    cli(capsys, "run", "model.intsim", "lr", "-o", "sr", "--counters", "counters.json")
    cli(capsys, "cost", "model.intsim", "--counters", "counters.json", "-o", "cost.json")
    (d / "verify.json").write_text(cli(capsys, "verify", "model.intsim", "golden", "--json"))
    for p in lrs:  # an "HR" that differs from the output a little, so PSNR and SSIM are finite
        sr = _read(d / "sr" / p.name).astype(int)
        write_png(d / "hr" / p.name, np.clip(sr + np.random.default_rng(1).integers(-3, 4, sr.shape), 0, 255)
                  .astype(np.uint8))
    assert not (d / "summary.json").exists()
    cli(capsys, "report", ".")
    html = (d / "report.html").read_text()
    assert "no <code>summary.json</code>" in html and "BIT-EXACT" in html
    for found in ("model.intsim", "golden", "counters.json", "cost.json", "verify.json"):
        assert f"<code>{found}</code>" in html
    for section in ("Quality", "Saturation and overflow per layer", "Activation histograms", "Cost on",
                    "Images (the same centre crop of each)"):
        assert section in html
    assert "intsim SSIM" in html and "golden [dB]" in html and "bicubic [dB]" in html
    assert "other ops" not in html
    missing = _missing(html)
    assert [m.split(":")[0] for m in missing] == ["no cost compare", "no calibrate"]
    assert all("make it with `intsim " in m for m in missing)


def test_a_bare_artifact_says_what_each_missing_part_would_add(tmp_path):
    save_artifact(make_random_artifact(2), tmp_path / "m.intsim")
    html = build_report(tmp_path).read_text()
    missing = _missing(html)
    assert [m.split(":")[0] for m in missing] == [f"no {p.replace('_', ' ')}" for p in PARTS if p != "artifact"]
    assert "NOT VERIFIED" in html and "No Y-PSNR measured" in html
    assert "Not shown: no run counters and no golden folder" in html


def test_a_folder_with_nothing_from_intsim_is_refused(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(ReportError, match="no summary.json and nothing intsim writes"):
        build_report(tmp_path)


def test_records_of_another_artifact_are_not_used(tmp_path):
    a, b = make_random_artifact(2), make_random_artifact(3)
    save_artifact(a, tmp_path / "a.intsim")
    sha_a = load_artifact(tmp_path / "a.intsim").sha256
    save_artifact(b, tmp_path / "sub" / "b.intsim")
    counters = run(load_artifact(tmp_path / "sub" / "b.intsim"), np.zeros((8, 8, 3), np.uint8),
                   keep_tensors=False).counters
    (tmp_path / "c.json").write_text(json.dumps(
        {"artifact_sha256": load_artifact(tmp_path / "sub" / "b.intsim").sha256,
         "images": [{"source": "x.png", "output": "x.png", "counters": counters}]}))
    html = build_report(tmp_path).read_text()
    missing = _missing(html)
    assert any(m.startswith("2 candidates for the artifact") for m in missing)
    assert any("counters c.json is of artifact" in m and sha_a[:12] in m for m in missing)
    assert "Saturation and overflow per layer" in html and "From run counters" not in html


def test_json_records_are_told_apart():
    assert json_kind({"totals": {}, "layers": [], "accelerator": {}}) == "cost"
    assert json_kind([{"scheme": "fp32", "energy_uj": 1.0}]) == "cost_compare"
    assert json_kind({"summary": {}, "compare": []}) == "cost_compare"
    assert json_kind({"ok": True, "compared_tensors": 3}) == "verify"
    assert json_kind({"images": [{"counters": {"ops": {}}}]}) == "counters"
    assert json_kind({"method": "minmax", "holdout": None, "recipe_text": "x"}) == "calibrate"
    assert json_kind({"psnr_db": {}}) == "summary"
    assert json_kind({"images": []}) is None and json_kind(3) is None


def test_report_of_the_demo_model_calibrated_by_hand(tmp_path, capsys, monkeypatch):
    """The same with the embedded demo model and every command of the CLI (needs torch)."""
    pytest.importorskip("torch")
    d = tmp_path / "run"
    (d / "cal").mkdir(parents=True)
    from calib.bicubic import bicubic_downsample

    for k in range(3):
        y, x = np.mgrid[0:64, 0:64]
        write_png(d / "cal" / f"c{k}.png", np.stack([(x * 4 + k * 20) % 256, (y * 3) % 256, ((x + y) * 2) % 256],
                                                    -1).astype(np.uint8))
    for k in range(2):
        y, x = np.mgrid[0:48, 0:48]
        hr = np.stack([(x * 5 + y + k * 40) % 256, (y * 5) % 256, (x * y) % 256], -1).astype(np.uint8)
        write_png(d / "hr" / f"im{k}.png", hr)
        write_png(d / "lr" / f"im{k}.png", bicubic_downsample(hr, 2))
    monkeypatch.chdir(d)
    (d / "calibrate.json").write_text(cli(capsys, "calibrate", "--model", "tiny_sr", "--scale", 2, "--bits", "W4A4",
                                          "--method", "minmax", "--calib-data", "cal", "--n-images", 2, "--patch", 16,
                                          "--json", "-o", "model.intsim"))
    cli(capsys, "golden", "model.intsim", "lr", "-o", "golden")
    (d / "verify.json").write_text(cli(capsys, "verify", "model.intsim", "golden", "--json"))
    cli(capsys, "run", "model.intsim", "lr", "-o", "sr", "--counters", "counters.json")
    cli(capsys, "cost", "model.intsim", "--counters", "counters.json", "-o", "cost.json")
    (d / "cost_compare.json").write_text(cli(capsys, "cost", "model.intsim", "--counters", "counters.json",
                                             "--compare", "--json"))
    cli(capsys, "report", d)
    html = (d / "report.html").read_text()
    assert "tiny_sr ×2 W4A4" in html and "BIT-EXACT" in html and not _missing(html)
    assert "Held-out calibration images" in html and "W8A8" in html and "intsim SSIM" in html


def test_a_broken_record_found_in_the_folder_is_skipped_and_said(tmp_path):
    save_artifact(make_random_artifact(2), tmp_path / "m.intsim")
    (tmp_path / "counters.json").write_text(json.dumps(
        {"images": [{"source": "x.png", "output": "x.png", "counters": {"ops": {"conv": {"saturations": "many"}}}}]}))
    (tmp_path / "notes.json").write_text("{not json")
    missing = _missing(build_report(tmp_path).read_text())
    assert any(m.startswith("counters.json skipped: ") and "'saturations'" in m for m in missing)
    assert any(m.startswith("notes.json skipped: ") and "not valid JSON" in m for m in missing)
    assert any(m.startswith("no counters: ") for m in missing)


def test_found_names_are_escaped(tmp_path):
    art = make_random_artifact(2)
    art.model.update(name="<script>alert(1)</script>")
    save_artifact(art, tmp_path / "<b>m.intsim")
    (tmp_path / "<i>x.json").write_text("{")
    html = build_report(tmp_path).read_text()
    assert "<script>" not in html and "<b>m" not in html and "<i>x" not in html
    assert "&lt;b&gt;m.intsim" in html and "&lt;script&gt;" in html
