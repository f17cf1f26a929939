"""The default recipe end to end on real weights and images (IMDN ×4, SunHays80), kept small for CI,
and ``intsim calibrate --budget`` / ``--policy`` through the CLI on the embedded model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.data_root import data_root
from intsim_cli import main as cli_main

ROOT = data_root()
IMDN = ROOT / "weights" / "imdn" / "IMDN_x4.pth"
SUN = ROOT / "data" / "SunHays80"
SET5 = ROOT / "data" / "Set5" / "LR_bicubic" / "X4"

torch.set_num_threads(2)


@pytest.mark.skipif(not (IMDN.is_file() and SUN.is_dir() and SET5.is_dir()),
                    reason=f"IMDN ×4 checkpoint / SunHays80 / Set5 not found under {ROOT} (set INTSIM_DATA_ROOT)")
def test_default_calibration_of_imdn_beats_its_init_and_bicubic_and_is_bit_exact(tmp_path):
    from calib.cli_calibrate import calibrate_run
    from golden.executor import run_golden
    from intsim.engine import run
    from intsim.images import read_image

    common = dict(model="imdn", weights=str(IMDN), scale=4, bits="W4A4", n_images=8, patch=32, seed=0)
    rec = calibrate_run(out=str(tmp_path / "recon.intsim"), recon={"iters": 40}, **common)
    init = calibrate_run(out=str(tmp_path / "init.intsim"), method="dual_region", bp_init="search", per_channel=True,
                         **common)
    s, s0 = rec.summary, init.summary
    assert s["method"] == "recon" and "learned rounding" in s["recipe_text"]
    ho, ho0 = s["holdout"], s0["holdout"]
    assert ho["disjoint"] and ho["images"] == 8
    assert ho["quantized_psnr_db"] > ho0["quantized_psnr_db"] + 0.2  # reconstruction helps, on held-out images
    assert ho["quantized_psnr_db"] > ho["bicubic_psnr_db"] and ho["verdict"] != "bad"
    px = np.ascontiguousarray(read_image(SET5 / "babyx4.png", 3).pixels[:40, :48])
    a, g = run(rec.artifact, px), run_golden(rec.artifact, px)
    for t, ref in g.tensors.items():
        assert np.array_equal(np.asarray(a.tensors[t], np.int64), np.asarray(ref, np.int64)), t
    # `eval --engine fakequant` rebuilds the fake-quant model from the artifact's learned integers
    from calib.evaluate import FloatFakeQuant
    from calib.quant.fakequant import build_fakequant_model
    from intsim.artifact import load_artifact

    ffq = FloatFakeQuant(load_artifact(tmp_path / "recon.intsim"))
    names = {c.call_node: c.name for c in ffq.graph.convs()}
    assert sorted(names.values()) == sorted(rec.calibration.layers)
    for node, (_, act, w, mod, _) in ffq.quant.items():  # every conv: the learned quantizer and integers
        layer = rec.calibration.layers[names[node]]
        assert act == layer.act, names[node]
        w_mem = (layer.w_int.double() * layer.weight.scale_tensor(mod.weight.detach().double())).float()
        assert torch.allclose(w, w_mem, rtol=0, atol=1e-6), names[node]
    fq_art = ffq(px).astype(np.int64)
    with torch.no_grad():
        y = build_fakequant_model(rec.net, rec.calibration)(torch.from_numpy(px.transpose(2, 0, 1))[None].float() / 255)
    fq_mem = np.clip(np.floor(y[0].numpy().transpose(1, 2, 0) * 255 + 0.5), 0, 255).astype(np.int64)
    # Both are float32 models with the same parameters but another evaluation order (fx interpreter vs
    # modules): a ~1e-7 difference can move one activation across a 4-bit code boundary, and that one code
    # spreads through the convs after it (measured: one input element of the 37th conv, then 2.8 % of the
    # output pixels by at most 5 levels). So the outputs agree closely, not exactly; the parameters above do.
    mse = float(((fq_art - fq_mem) ** 2).mean())
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) > 40


def _hr_folder(tmp_path):
    from intsim.images import write_png
    from reports.demo import CALIB_FILES, load_sample

    d = tmp_path / "hr"
    for name in CALIB_FILES[:4]:
        img = load_sample(name)
        write_png(d / f"{name.split('.')[0]}.png", np.ascontiguousarray(img[:96, :96]))
    return d


def test_cli_budget_and_policy_on_the_embedded_model(tmp_path, capsys):
    hr = _hr_folder(tmp_path)
    out = tmp_path / "mp.intsim"
    base = ["calibrate", "--model", "tiny_sr", "--scale", "2", "--bits", "W4A4", "--calib-data", str(hr),
            "--n-images", "3", "--patch", "24", "--iters", "5"]
    code = cli_main(base + ["--budget", "energy=1.1xW4A4", "--candidates", "3,4,8", "-o", str(out), "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    s = json.loads(cap.out)
    mp = s["mixed_precision"]
    assert set(mp["bits"].values()) <= {3, 4, 8} and mp["cost"] <= mp["limit"] + 1e-6
    assert len(mp["front"]) >= 4 and all("energy" in p for p in mp["front"])
    assert json.loads((tmp_path / "mp.intsim.pareto.json").read_text())["bits"] == mp["bits"]
    assert "chosen:" in cap.err and "vs bicubic" in cap.err
    from intsim.artifact import load_artifact

    layers = load_artifact(out).metadata["layers"]
    assert {k: layers[k]["bits_w"] for k in mp["bits"]} == mp["bits"]

    pol = tmp_path / "p.toml"
    name = next(iter(mp["bits"]))
    pol.write_text(f'[bits]\n"{name}" = [8, 6]\n')
    code = cli_main(base + ["--policy", str(pol), "-o", str(tmp_path / "p.intsim")])
    assert code == 0
    lay = load_artifact(tmp_path / "p.intsim").metadata["layers"][name]
    assert (lay["bits_w"], lay["bits_a"]) == (8, 6)
    pol.write_text('[bits]\n"no_such_layer" = 4\n')
    code = cli_main(base + ["--policy", str(pol), "-o", str(tmp_path / "q.intsim")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown layer" in err and not (tmp_path / "q.intsim").exists()


def test_cli_loss_weighting_is_recorded_and_overrides_the_recipe(tmp_path, capsys):
    """W4 reconstructs with the Fisher-weighted loss by default; --loss-weighting none turns it off."""
    from intsim.artifact import load_artifact

    hr = _hr_folder(tmp_path)
    base = ["calibrate", "--model", "tiny_sr", "--scale", "2", "--bits", "W4A4", "--calib-data", str(hr),
            "--n-images", "3", "--patch", "24", "--iters", "3"]
    for flag, want in (([], "fisher"), (["--loss-weighting", "none"], None)):
        out = tmp_path / f"w{len(flag)}.intsim"
        code = cli_main(base + flag + ["-o", str(out)])
        assert code == 0, capsys.readouterr().err
        recon = load_artifact(out).metadata["calibration"]["recipe"]["recon"]
        assert recon.get("weighting") == want
        assert ("Fisher-weighted" in capsys.readouterr().err) == (want == "fisher")
