"""Your own model (calib/models/user.py): ``--model path/net.py:factory`` end to end, its one-line refusals,
the provenance checks of the rebuild, and ``intsim eval --engine fp|intsim`` on Set5 with no patching."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from calib.data_root import available, data_root
from intsim_cli.main import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "espcn_like.py"
FAST = ("--method", "minmax", "--n-images", "4", "--patch", "24")


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def calib_folder(path: Path, n: int = 6, side: int = 72) -> Path:
    """Smooth-plus-texture HR images (uint8 PNG), deterministic: calibration data without the data root."""
    from intsim.images import write_png

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for k in range(n):
        base = np.stack([np.sin(6 * xx + k), np.cos(5 * yy - k), np.sin(4 * (xx + yy) + 2 * k)], -1)
        img = 127.5 + 90 * base + rng.normal(0, 12, base.shape)
        write_png(path / f"img{k}.png", np.clip(img, 0, 255).astype(np.uint8))
    return path


@pytest.fixture
def model_files(tmp_path):
    """A copy of the example network and a checkpoint of its seeded random weights."""
    import importlib.util

    src = tmp_path / "net.py"
    shutil.copy(EXAMPLE, src)
    spec = importlib.util.spec_from_file_location("own_model_example", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(5)
    w = tmp_path / "w.pt"
    torch.save(mod.build(3).state_dict(), w)
    return src, w


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_calibrate_records_the_source_and_eval_rebuilds_it(tmp_path, capsys, model_files, one_thread):
    from calib.evaluate import FloatModel, make_runner
    from calib.models.zoo import sha256_file
    from intsim.artifact import load_artifact

    src, w = model_files
    art_path = tmp_path / "own.intsim"
    code, out, err = cli(capsys, "calibrate", "--model", f"{src}:build", "--weights", w, "--scale", 3, "--bits",
                         "W8A8", *FAST, "--calib-data", calib_folder(tmp_path / "cal"), "-o", art_path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    art = load_artifact(art_path)
    s = art.metadata["source"]
    assert s["kind"] == "python" and s["model"] == f"{src}:build" and s["scale"] == 3
    assert s["source_file"] == str(src.resolve()) and s["source_sha256"] == sha256_file(src)
    assert s["checkpoint_sha256"] == sha256_file(w) and s["rgb_range"] == 1.0 and s["in_channels"] == 3
    assert summary["model"] == f"{src}:build" and art.model["scale"] == 3

    # the FP model rebuilt from the artifact alone is the calibrated one: the fake-quant runner and FP agree
    lr = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    fp = FloatModel(art)
    assert fp(lr).shape == (36, 30, 3)
    assert make_runner(art, "fakequant")(lr).shape == (36, 30, 3)

    # a changed source or checkpoint is refused with one line, exit 2
    src.write_text(src.read_text() + "\n# edited\n")
    code, _, err = cli(capsys, "eval", art_path, "--engine", "fp", "--dataset", calib_folder(tmp_path / "hr", 1))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "changed since the artifact was exported" in err
    src.unlink()
    code, _, err = cli(capsys, "eval", art_path, "--engine", "fp", "--dataset", tmp_path / "hr")
    assert code == 2 and "is missing" in err and len(err.strip().splitlines()) == 1, err


def test_random_init_source_rebuilds_from_the_seed(tmp_path, capsys, model_files, one_thread):
    """No checkpoint: the recorded seed rebuilds the same weights (the state-dict fingerprint checks it)."""
    from calib.evaluate import FloatModel
    from intsim.artifact import load_artifact

    src, _ = model_files
    art_path = tmp_path / "r.intsim"
    code, _, err = cli(capsys, "calibrate", "--model", f"{src}:build", "--random-init", "--seed", 4, "--scale", 3,
                       "--bits", "W8A8", *FAST, "--calib-data", calib_folder(tmp_path / "cal"), "-o", art_path)
    assert code == 0, err
    art = load_artifact(art_path)
    assert art.metadata["source"]["random_init_seed"] == 4 and art.metadata["source"]["checkpoint"] is None
    FloatModel(art)  # raises unless the rebuilt state dict is the exported one


BAD_FACTORIES = """
import torch.nn as nn

def raises(scale):
    raise RuntimeError("no such variant")

def not_a_module(scale):
    return 42

def fixed_x4(scale):
    return nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.PixelShuffle(4))


class Wide(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.c = nn.Conv2d(5, 3, 3, padding=1)

    def forward(self, x):
        return self.c(x)
"""


@pytest.mark.parametrize("spec,needle", [
    ("{d}/missing.py:build", "is not a file"),
    ("{d}/bad.py:nope", "has no callable 'nope'"),
    ("{d}/bad.py:raises", "the factory raised RuntimeError: no such variant"),
    ("{d}/bad.py:not_a_module", "returned int, not a torch.nn.Module"),
    ("{d}/bad.py:Wide", "takes 5 image channels"),
    ("{d}/broken.py:build", "importing"),
    ("no_such_package_xyz.mod:Net", "cannot import module 'no_such_package_xyz.mod'"),
    ("{d}/missing.onnx", "no such ONNX file"),
    ("{d}/bad.py:fixed_x4", "at scale 2 a 1×3×16×16 input should give 1×3×32×32, the model gives 1×3×64×64"),
])
def test_bad_specs_are_one_line_exit_2(tmp_path, capsys, spec, needle):
    (tmp_path / "bad.py").write_text(BAD_FACTORIES)
    (tmp_path / "broken.py").write_text("def build(scale):\n    return (\n")
    spec = spec.format(d=tmp_path)
    extra = () if spec.endswith(".onnx") else ("--random-init",)
    code, _, err = cli(capsys, "calibrate", "--model", spec, *extra, "--scale", 2, "--bits", "W8A8",
                       "--calib-data", calib_folder(tmp_path / "cal", 1), "-o", tmp_path / "x.intsim")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "x.intsim").exists()


def test_wrong_in_channels_is_named_before_calibration(tmp_path, capsys):
    code, _, err = cli(capsys, "calibrate", "--model", f"{EXAMPLE}:build", "--random-init", "--in-channels", 1,
                       "--scale", 2, "--bits", "W8A8", "--calib-data", calib_folder(tmp_path / "cal", 1),
                       "-o", tmp_path / "x.intsim")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "its forward fails on a 1×1×16×16 input" in err and "check --in-channels" in err


def test_a_spec_needs_weights_or_random_init(tmp_path, capsys):
    code, _, err = cli(capsys, "calibrate", "--model", f"{EXAMPLE}:build", "--scale", 2, "--bits", "W8A8",
                       "--calib-data", calib_folder(tmp_path / "cal", 1), "-o", tmp_path / "x.intsim")
    assert code == 2 and "pass --weights FILE, or --random-init" in err and len(err.strip().splitlines()) == 1


def test_weights_are_read_without_unpickling_code(tmp_path, capsys):
    """A checkpoint holding a pickled object (not tensors) is refused by the weights_only reader."""
    import collections

    w = tmp_path / "evil.pt"
    torch.save({"head.weight": collections.Counter(a=1)}, w)
    code, _, err = cli(capsys, "calibrate", "--model", f"{EXAMPLE}:build", "--weights", w, "--scale", 3, "--bits",
                       "W8A8", "--calib-data", calib_folder(tmp_path / "cal", 1), "-o", tmp_path / "x.intsim")
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_set5_eval_fp_and_intsim_without_patching(tmp_path, capsys, model_files, one_thread):
    """A model that is not in the zoo, evaluated on Set5 with the FP baseline and the integer engine."""
    if not available("data/Set5/LR_bicubic/X3"):
        pytest.skip(f"data/Set5 not present under the data root {data_root()} (set INTSIM_DATA_ROOT)")
    src, w = model_files
    art = tmp_path / "own.intsim"
    code, _, err = cli(capsys, "calibrate", "--model", f"{src}:build", "--weights", w, "--scale", 3, "--bits",
                       "W8A8", *FAST, "--calib-data", calib_folder(tmp_path / "cal"), "-o", art)
    assert code == 0, err
    res = {}
    for engine in ("fp", "intsim"):
        code, out, err = cli(capsys, "eval", art, "--dataset", "Set5", "--engine", engine, "--limit", 2,
                             "--crop", 48, "--json", "--baselines")
        assert code == 0, err
        res[engine] = json.loads(out)
    fp, q = res["fp"]["datasets"]["Set5"], res["intsim"]["datasets"]["Set5"]
    assert fp["n"] == q["n"] == 2 and res["intsim"]["model"] == f"{src}:build"
    # the intsim run's FP baseline is the fp engine's own result, image for image
    assert q["baselines"]["fp"]["psnr"] == pytest.approx(fp["psnr"], abs=0)
    assert np.isfinite(q["psnr"]) and abs(q["psnr"] - fp["psnr"]) < 1.0  # W8A8 of a smooth random net


def test_demo_and_report_with_own_model(tmp_path, capsys, model_files, one_thread):
    """`intsim demo --model SPEC`: the demo's whole pipeline (calibrate … report) on a model not in the zoo."""
    for rel in ("data/Set5/LR_bicubic/X3", "data/SunHays80"):
        if not available(rel):
            pytest.skip(f"{rel} not present under the data root {data_root()} (set INTSIM_DATA_ROOT)")
    src, w = model_files
    out = tmp_path / "demo"
    code, stdout, err = cli(capsys, "demo", "--model", f"{src}:build", "--weights", w, "--scale", 3, "--quick",
                            "--bits", "W8A8", "--method", "minmax", "--out", out, "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["model"] == f"{src}:build" and s["scale"] == 3 and s["bit_exact"] is True
    assert s["psnr_db"]["golden"] == s["psnr_db"]["intsim"] and s["images"] == 2
    assert (out / "report.html").is_file() and (out / "net_py_build_x3_w8a8.intsim").is_file()
    code, _, err = cli(capsys, "report", out, "-o", tmp_path / "again.html")
    assert code == 0 and (tmp_path / "again.html").is_file(), err
    code, _, err = cli(capsys, "demo", "--model", f"{src}:build", "--scale", 3, "--out", tmp_path / "d2")
    assert code == 2 and "needs --weights" in err and len(err.strip().splitlines()) == 1


def test_module_class_spec(tmp_path, capsys, one_thread):
    """``--model package.module:function``: an importable module; its file is what the artifact records."""
    import calib.models.fsrcnn as fsrcnn
    from calib.models.zoo import sha256_file
    from intsim.artifact import load_artifact

    out = tmp_path / "m.intsim"
    code, _, err = cli(capsys, "calibrate", "--model", "calib.models.fsrcnn:build", "--random-init", "--scale", 2,
                       "--bits", "W8A8", *FAST, "--calib-data", calib_folder(tmp_path / "cal"), "-o", out)
    assert code == 0, err
    art = load_artifact(out)
    src = art.metadata["source"]
    assert src["kind"] == "module" and src["source_file"] == str(Path(fsrcnn.__file__).resolve())
    assert src["source_sha256"] == sha256_file(fsrcnn.__file__)
    assert src["in_channels"] == 1 and art.tensors[art.inputs[0]].channels == 1  # FSRCNN's first conv: Y
