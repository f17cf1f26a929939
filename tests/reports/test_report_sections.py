"""report.html sections a new user reads first: the verdicts with Δ to FP and to bicubic, bar
charts that start at zero, histograms of meaningful layers, saturation/overflow per layer, SSIM,
the HR crop and an error map (torch-free)."""
from __future__ import annotations

import base64
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim.engine import run
from intsim.images import write_png
from reports.html_report import build_report
from calib.metrics import ssim_y
from reports.report_images import ImageRow, crops
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden

ATTENTION_INPUTS = {"att.enc1.codes", "att.enc2.codes"}  # 1×1×8 and 1×1×4 after the global pools


def _smooth(h, w, seed):
    """A smooth uint8 RGB image (SSIM of a noisy copy stays well inside (0, 1))."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 3 + y, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 40, size=3)
    return np.clip(base, 0, 255).astype(np.uint8)


def _write_summary(d, psnr, per=(), **extra):
    s = {"model": "m", "scale": 2, "bits": "W4A4", "code_bits": 5, "images": len(per), "psnr_db": psnr,
         "bit_exact": True, "mismatches": 0, "seconds": 1.0, "per_image": list(per), **extra}
    (d / "summary.json").write_text(json.dumps(s))
    return d


def _verdict_cells(html):
    table = re.search(r'<table class="verdict">(.*?)</table>', html).group(1)
    heads = re.findall(r"<th>(.*?)</th>", table)
    cells = re.findall(r'<td class="([^"]*)">(.*?)</td>', table)
    return dict(zip(heads, cells))


# --------------------------------------------------------------------------- 1. verdicts
def test_verdict_shows_delta_to_fp_and_bicubic_red_below_bicubic(tmp_path):
    d = _write_summary(tmp_path, {"float": 30.0, "intsim": 27.4, "golden": 27.4, "bicubic": 28.0})
    cells = _verdict_cells(build_report(d).read_text())
    assert "BIT-EXACT" in cells["bit-exactness"][1]
    assert cells["Δ to FP"][1] == "−2.60 dB"
    cls, text = cells["Δ to bicubic"]
    assert cls == "bad" and text.startswith("−0.60 dB") and "below bicubic" in text
    assert cells["quality"][0] == "bad" and "BAD" in cells["quality"][1]


def test_verdict_above_bicubic_is_not_red(tmp_path):
    d = _write_summary(tmp_path, {"float": 30.0, "intsim": 29.9, "bicubic": 28.0})
    cells = _verdict_cells(build_report(d).read_text())
    assert cells["Δ to FP"] == ("", "−0.10 dB") and cells["Δ to bicubic"] == ("", "+1.90 dB")
    assert "GOOD" in cells["quality"][1] and "bad" not in {c for c, _ in cells.values()}


def test_verdict_without_verify_record_says_not_verified(tmp_path):
    d = _write_summary(tmp_path, {"intsim": 27.0, "bicubic": 28.0}, bit_exact=None)
    cells = _verdict_cells(build_report(d).read_text())
    assert "NOT VERIFIED" in cells["bit-exactness"][1] and "MISMATCH" not in cells["bit-exactness"][1]
    assert cells["Δ to FP"][1] == "—" and cells["Δ to bicubic"][0] == "bad"  # below bicubic even without FP


# --------------------------------------------------------------------------- 2. charts
def test_psnr_bars_show_the_gain_over_bicubic_from_zero():
    pytest.importorskip("matplotlib")
    from reports.report_plots import psnr_gain_plot

    ps = {"bicubic": 31.5, "float": 33.4, "fake_quant": 32.4, "intsim": 32.4}
    ax = psnr_gain_plot({"psnr_db": ps}).axes[0]
    assert ax.get_xlim()[0] == 0.0 and "over bicubic" in ax.get_xlabel()
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths == sorted(round(ps[k] - 31.5, 6) for k in ("float", "fake_quant", "intsim"))
    ax = psnr_gain_plot({"psnr_db": {"bicubic": 30.0, "intsim": 29.0, "float": 31.0}}).axes[0]
    assert ax.get_xlim()[0] < -1.0 < 1.0 < ax.get_xlim()[1]  # a loss is drawn left of zero
    ax = psnr_gain_plot({"psnr_db": {"float": 33.0, "intsim": 32.0}}).axes[0]  # no bicubic: absolute, from 0
    assert ax.get_xlim()[0] == 0.0 and sorted(p.get_width() for p in ax.patches) == [32.0, 33.0]


@pytest.fixture(scope="module")
def att_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("att") / "m.intsim"
    save_artifact(make_random_artifact(2), path)
    art = load_artifact(path)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return art, img, run(art, img, keep_tensors=False).counters


def test_histograms_skip_attention_inputs_and_label_units(att_run, tmp_path):
    pytest.importorskip("matplotlib")
    from reports.report_plots import MIN_HISTOGRAM_VALUES, activation_histograms, histogram_panels

    art, img, counters = att_run
    codes = {op.outputs[0] for op in art.ops if op.op == "encode"}  # a pad's codes copy its encoder's (§5.8)
    for rf in (SimpleNamespace(art=art, counters=[counters], golden=None),
               SimpleNamespace(art=art, counters=None, golden=engine_golden(art, tmp_path / "g", [("a.png", img)]))):
        panels, source = histogram_panels(rf)
        names = {n for n, _ in panels}
        assert names == codes - ATTENTION_INPUTS
        assert f"fewer than {MIN_HISTOGRAM_VALUES} values" in source and "2 conv input(s)" in source
        fig = activation_histograms(art, panels)
        drawn = [ax for ax in fig.axes if ax.get_title()]
        assert len(drawn) == len(panels)
        for ax in drawn:
            assert "float-model units" in ax.get_xlabel() and "log" in ax.get_ylabel()
    by_out = {op.outputs[0]: op.name for op in art.ops if op.op == "encode"}
    panels, _ = histogram_panels(SimpleNamespace(art=art, counters=[counters, counters], golden=None))
    name, counts = panels[0]
    assert counts.tolist() == [2 * v for v in counters["ops"][by_out[name]]["code_histogram"]]  # every image


# --------------------------------------------------------------------------- 3. events, SSIM, crops
def _counter_run(tmp_path, att_run, alter):
    art, img, counters = att_run
    save_artifact(art, tmp_path / "m.intsim")
    c = json.loads(json.dumps(counters))
    alter(c["ops"])
    (tmp_path / "counters.json").write_text(json.dumps(
        {"artifact_sha256": art.sha256,
         "images": [{"source": "a.png", "output": "a.png", "counters": c}]}))
    return _write_summary(tmp_path, {"intsim": 30.0}, artifact="m.intsim", counters="counters.json")


def _events_table(html):
    sec = html.split("<h2>Saturation and overflow per layer</h2>")[1].split("<h2>")[0]
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", sec)[1:]:
        cells = re.findall(r'<td class="([^"]*)">(.*?)</td>', tr)
        rows[cells[0][1]] = cells
    return sec, rows


def test_saturation_and_overflow_per_layer_from_counters(tmp_path, att_run):
    def alter(ops):
        for oc in ops.values():
            oc.update(saturations=0, acc_overflow=0, stream_overflow=0)
        ops["body.enc1"].update(saturations=4096)
        ops["body.conv1"].update(acc_overflow=7)

    d = _counter_run(tmp_path, att_run, alter)
    sec, rows = _events_table(build_report(d).read_text())
    assert "From run counters, 1 image(s)" in sec
    assert set(rows) == {"body.enc1", "body.conv1"}
    values = 32 * 32 * 8
    assert [c for _, c in rows["body.enc1"][2:5]] == [f"{values:,}", "4,096", f"{100 * 4096 / values:.2f} %"]
    assert rows["body.enc1"][4][0] == "warn"
    assert rows["body.conv1"][5] == ("bad", "7")
    n_ops = len(att_run[2]["ops"])
    assert f"{n_ops - 2} of the {n_ops} ops had no events" in sec


def test_no_events_is_said(tmp_path, att_run):
    def alter(ops):
        for oc in ops.values():
            oc.update(saturations=0, acc_overflow=0, stream_overflow=0)

    sec, rows = _events_table(build_report(_counter_run(tmp_path, att_run, alter)).read_text())
    assert not rows and "No saturation or overflow in any of the" in sec


def _pngs(html):
    return {alt: base64.b64decode(b) for alt, b in
            re.findall(r'alt="([^"]*)" src="data:image/png;base64,([^"]+)"', html)}


def _decode(png):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_ssim_hr_crop_and_error_map(tmp_path):
    hr = _smooth(40, 40, 0)
    noisy = np.clip(hr.astype(int) + np.random.default_rng(1).integers(-6, 7, hr.shape), 0, 255).astype(np.uint8)
    files = {"lr": "lr/a.png", "intsim": "sr/a.png", "hr": "hr/a.png"}
    write_png(tmp_path / files["lr"], hr[::2, ::2])
    write_png(tmp_path / files["intsim"], noisy)
    write_png(tmp_path / files["hr"], hr)
    per = [{"name": "a", "lr_size": "20×20", "files": files, "psnr_db": {"intsim": 31.0}}]
    html = build_report(_write_summary(tmp_path, {"intsim": 31.0}, per)).read_text()
    want = ssim_y(noisy, hr, 2)
    assert 0.2 < want < 0.999
    assert "intsim SSIM" in html and f"{want:.4f}" in html
    pngs = _pngs(html)
    caps = [a for a in pngs if a.startswith("a: ")]
    assert caps[0] == "a: LR (nearest-upsampled)" and "a: HR (target)" in caps
    err = [a for a in caps if "|intsim − HR|" in a]
    assert len(err) == 1 and f"SSIM {want:.3f}" in next(a for a in caps if a.startswith("a: intsim"))
    shapes = {_decode(pngs[a]).shape for a in caps}
    assert shapes == {(40, 40, 3)}


def test_crops_share_one_window_and_leave_out_other_sizes():
    yy, xx = np.mgrid[0:300, 0:260]
    hr = np.stack([yy % 256, xx % 256, (yy // 256) * 100 + (xx // 256) * 50], axis=-1).astype(np.uint8)
    lr_up = hr[::2, ::2].repeat(2, 0).repeat(2, 1)
    row = ImageRow("x", {"lr": lr_up, "intsim": hr.copy(), "hr": hr, "float": hr[:298, :258]}, {"intsim": 30.0})
    out = dict(crops(row, crop=64, colour=False))
    got = {cap.split(" ")[0]: _decode(png) for cap, png in out.items()}
    y0, x0 = (300 - 64) // 2, (260 - 64) // 2
    assert np.array_equal(got["HR"], hr[y0:y0 + 64, x0:x0 + 64])
    assert np.array_equal(got["intsim"], got["HR"]) and np.array_equal(got["LR"], lr_up[y0:y0 + 64, x0:x0 + 64])
    assert not got["|intsim"].any()  # intsim == HR: a black error map
    assert "float" not in got and any("float: 258×298, not 260×300" in p for p in row.problems)
