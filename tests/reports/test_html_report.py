"""reports.html_report: report.html from a run directory (torch-free)."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim.cost import compare_schemes, estimate_cost, load_accelerator
from intsim.engine import run
from intsim.images import write_png
from reports.html_report import ReportError, build_report, load_summary
from reports.report_plots import codebook_values
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden


def _run_dir(tmp_path, with_extras=True):
    save_artifact(make_random_artifact(2), tmp_path / "m.intsim")
    art = load_artifact(tmp_path / "m.intsim")
    rng = np.random.default_rng(0)
    inputs = [(f"i{k}.png", rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)) for k in range(2)]
    per = []
    if with_extras:
        engine_golden(art, tmp_path / "golden", inputs)
        counters = [run(art, px, keep_tensors=False).counters for _, px in inputs]
        acc = load_accelerator("edge_npu")
        (tmp_path / "cost.json").write_text(json.dumps(estimate_cost(art, counters, acc)))
        (tmp_path / "cost_compare.json").write_text(json.dumps(compare_schemes(art, counters, acc)))
        for k, (name, px) in enumerate(inputs):
            write_png(tmp_path / "sr" / f"{k}.png", px)
            per.append({"name": name, "lr_size": "8×8", "files": {"intsim": f"sr/{k}.png"},
                        "psnr_db": {"float": 30.0, "fake_quant": 29.5, "golden": 29.4, "intsim": 29.4}})
    summary = {"model": "random", "scale": 2, "bits": "W4A4", "code_bits": 5, "images": 2,
               "psnr_db": {"float": 30.0, "fake_quant": 29.5, "golden": 29.4, "intsim": 29.4, "bicubic": 28.0},
               "bit_exact": True, "mismatches": 0, "seconds": 1.5, "per_image": per}
    if with_extras:
        summary.update(artifact="m.intsim", golden="golden", cost="cost.json", cost_compare="cost_compare.json")
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    return tmp_path


def _pngs(html):
    return re.findall(r'alt="([^"]*)" src="data:image/png;base64,([^"]+)"', html)


def test_full_report(tmp_path):
    pytest.importorskip("matplotlib")
    d = _run_dir(tmp_path)
    p = build_report(d)
    assert p == d / "report.html"
    html = p.read_text()
    assert html.startswith("<!DOCTYPE html>") and "BIT-EXACT" in html
    for section in ("Quality", "Activation histograms", "Cost on", "Images"):
        assert section in html
    alts = [a for a, _ in _pngs(html)]
    assert {"PSNR bars", "activation histograms", "per-layer energy"} <= set(alts)
    for _, b64 in _pngs(html):
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src=\"http" not in html and "<script" not in html  # self-contained


def test_minimal_summary_and_output_path(tmp_path):
    d = _run_dir(tmp_path, with_extras=False)
    out = build_report(d / "summary.json", tmp_path / "elsewhere" / "r.html")
    html = out.read_text()
    assert "Quality" in html and "Cost on" not in html


def test_mismatch_is_flagged(tmp_path):
    d = _run_dir(tmp_path, with_extras=False)
    s = json.loads((d / "summary.json").read_text())
    s.update(bit_exact=False, mismatches=7)
    (d / "summary.json").write_text(json.dumps(s))
    assert "MISMATCH" in build_report(d).read_text()


def test_bad_run_dirs(tmp_path):
    with pytest.raises(ReportError, match="summary.json"):
        load_summary(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(ReportError, match="psnr_db"):
        load_summary(tmp_path)


def test_codebook_breakpoints():
    art = make_random_artifact(2)
    for t in art.tensors.values():
        if t.kind == "codes":
            vals, bps = codebook_values(t.codebook)
            assert vals.size == t.codebook.num_codes
            assert len(bps) == len(t.codebook.segments) - 1
            assert all(vals.min() <= b <= vals.max() for b in bps)


def test_readme_table_rewrites_marked_section(tmp_path):
    from reports.readme_table import BEGIN, END, main

    (tmp_path / "run").mkdir()
    d = _run_dir(tmp_path / "run", with_extras=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\ntail\n")
    assert main([str(d), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "\nold\n" not in text and text.endswith(f"{END}\ntail\n")
    assert "| random | ×2 |" in text and "29.40" in text and "yes (0)" in text
    readme.write_text("no markers")
    assert main([str(d), "--readme", str(readme)]) == 2


def test_summary_fields_are_escaped_and_quality_verdict_shown(tmp_path):
    from calib.quality import verdict

    _run_dir(tmp_path, with_extras=False)
    s = json.loads((tmp_path / "summary.json").read_text())
    evil = "<script>alert(1)</script>"
    v = verdict(30.0, 27.0, 28.0)
    s.update(model=evil, images=evil, mismatches=evil, method=evil, recipe=evil,
             quality={"level": v.level, "ok": v.ok, "text": v.text + evil},
             calibrate={"holdout": {"images": evil, "quantized_psnr_db": 1.0, "verdict_text": evil}})
    (tmp_path / "summary.json").write_text(json.dumps(s))
    html = build_report(tmp_path).read_text()
    assert "<script>" not in html
    assert "quality BAD: below bicubic" in html and 'class="bad"' in html


def _cost_dir(tmp_path):
    d = _run_dir(tmp_path)
    return d, json.loads((d / "cost.json").read_text()), json.loads((d / "cost_compare.json").read_text())


def test_hostile_names_in_cost_records_are_escaped_and_drawn_as_text(tmp_path):
    """Issue 18: crafted cost.json strings reach the page escaped, and a `$` in a layer name is a
    label, not a matplotlib formula (mathtext would fail on `$\\frac{$`)."""
    pytest.importorskip("matplotlib")
    d, cost, cmp = _cost_dir(tmp_path)
    evil = '<script>alert(1)</script>$\\frac{$'
    cost["accelerator"]["name"] = evil
    cost["scheme"] = evil
    cost["warnings"] = [evil]
    for layer in cost["layers"]:
        layer["name"] = evil + layer["name"]
    cmp[0]["scheme"] = evil
    (d / "cost.json").write_text(json.dumps(cost))
    (d / "cost_compare.json").write_text(json.dumps(cmp))
    html = build_report(d).read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "per-layer energy" in {a for a, _ in _pngs(html)}


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


@pytest.mark.parametrize("which,path,value,expect", [
    ("cost", ("totals", "energy_pj", "total"), "x", "totals.energy_pj.total must be a number, got str"),
    ("cost", ("totals", "latency_s"), float("nan"), "totals.latency_s must be a finite number"),
    ("cost", ("totals", "utilisation"), 5.0, "totals.utilisation must be a finite number in [0, 1]"),
    ("cost", ("totals", "energy_pj", "mac"), -1.0, "totals.energy_pj.mac must be a finite number"),
    ("cost", ("accelerator",), "edge", "accelerator must be an object with a name"),
    ("cost", ("accelerator", "name"), "n" * 10_000, "accelerator.name is 10000 characters long"),
    ("cost", ("layers",), [{"name": "a", "kind": "conv", "op": "conv2d", "energy_pj": {}}] * 10_001,
     "layers has 10001 entries"),
    ("cost", ("layers", 0, "energy_pj"), [1, 2], "layers[0].energy_pj must be an object of energies"),
    ("cost", ("layers", 0, "kind"), None, "layers[0].kind must be a string"),
    ("cost", ("warnings",), "careful", "warnings must be a list"),
    ("cmp", (0, "energy_uj"), "1e9", "compare[0].energy_uj must be a number, got str"),
    ("cmp", (0, "conv_input_bits"), [0], "compare[0].conv_input_bits must be a list of integers in 1..64"),
    ("cmp", (0, "dram_mib"), 1e308, "compare[0].dram_mib must be a finite number"),
])
def test_crafted_cost_records_are_refused_in_one_line(tmp_path, which, path, value, expect):
    d, cost, cmp = _cost_dir(tmp_path)
    doc, name = (cost, "cost.json") if which == "cost" else (cmp, "cost_compare.json")
    _set(doc, path, value)
    (d / name).write_text(json.dumps(doc))
    with pytest.raises(ReportError) as e:
        build_report(d)
    msg = str(e.value)
    assert "\n" not in msg and str(d / name) in msg and expect in msg, msg
    assert not (d / "report.html").exists()


def test_crafted_cost_record_found_by_content_is_refused(tmp_path):
    """A hand-made folder (no summary.json): a file recognised as a cost result by its keys is checked too."""
    d, cost, _ = _cost_dir(tmp_path)
    (d / "summary.json").unlink()
    cost["totals"]["latency_s"] = "soon"
    (d / "cost.json").write_text(json.dumps(cost))
    with pytest.raises(ReportError, match="totals.latency_s must be a number"):
        build_report(d)
