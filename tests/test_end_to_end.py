"""End to end on real images: calibrate → export → golden (torch float64) → intsim → verify.

EDSR-baseline architecture (16 res-blocks, 64 features; random weights, MinMax
two-region calibration on real images), W8A8 and W4A4, both realizations, two
rounding modes: intsim must equal golden on every stored tensor (zero
tolerance), plus the 16-bit-accumulator overflow cases and the CLI's verify
error paths.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from intsim.artifact import load_artifact  # noqa: E402
from intsim_cli import main as cli  # noqa: E402
from intsim.engine import run  # noqa: E402
from intsim.golden_dir import read_golden_dir  # noqa: E402
from intsim.images import read_image  # noqa: E402
from intsim.overflow import EngineOverflowError  # noqa: E402
from intsim.verification import verify  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INTSIM_DATA_ROOT", REPO.parent / "shared"))
SET5 = DATA / "data" / "Set5" / "LR_bicubic"
CALIB = SET5  # calibration images: the LR set itself is fine for a random-weight model

pytestmark = pytest.mark.skipif(not SET5.is_dir(), reason=f"real Set5 LR images not found under {SET5} (set INTSIM_DATA_ROOT)")


def _calibrate(tmp: Path, *, scale: int, bits: str, realization: str, rounding: str,
               overflow: str = "saturate", acc_bits: int = 32) -> Path:
    from calib.cli_calibrate import run_calibrate

    out = tmp / f"edsr_x{scale}_{bits}_{realization}_{rounding}_{overflow}_{acc_bits}.intsim"
    run_calibrate(model="edsr_baseline", weights=None, scale=scale, bits=bits, method="dual_region",
                  calib_data=str(SET5 / f"X{scale}"), out=str(out), realization=realization,
                  rounding=rounding, overflow=overflow, acc_bits=acc_bits, stream_bits=24,
                  n_images=4, patch=32, seed=0, random_init=True)
    return out


def _crops(scale: int, size: int, names=("baby", "bird")) -> list[tuple[str, np.ndarray]]:
    out = []
    for n in names:
        px = read_image(SET5 / f"X{scale}" / f"{n}x{scale}.png", 3).pixels
        out.append((f"{n}x{scale}.png[crop {size}]", np.ascontiguousarray(px[:size, 5:5 + size])))
    return out


def _golden_and_verify(art_path: Path, inputs, gdir: Path):
    from golden.writer import write_golden

    write_golden(str(art_path), inputs, str(gdir), progress=False)
    art = load_artifact(art_path)
    report = verify(art, read_golden_dir(gdir))
    return art, report


MATRIX = [
    (4, "W4A4", "split", "half_up"),
    (4, "W4A4", "grid", "half_up"),
    (4, "W4A4", "split", "half_even"),
    (4, "W4A4", "grid", "half_even"),
    (2, "W8A8", "split", "half_up"),
    (2, "W8A8", "grid", "half_up"),
    (2, "W8A8", "split", "floor"),
    (2, "W8A8", "grid", "half_away"),
]


@pytest.mark.slow
@pytest.mark.parametrize("scale,bits,realization,rounding", MATRIX)
def test_intsim_equals_golden_on_real_images(tmp_path, scale, bits, realization, rounding):
    art_path = _calibrate(tmp_path, scale=scale, bits=bits, realization=realization, rounding=rounding)
    art, report = _golden_and_verify(art_path, _crops(scale, 20), tmp_path / "golden")
    assert report.ok, report.format()
    assert report.mismatches == 0
    # every graph tensor of every input was compared, not just the output
    assert report.compared_tensors == 2 * len(art.tensors)
    assert art.numerics.realization == realization and art.numerics.rounding == rounding
    # the body really uses two-region codes: 2 segments after ReLU, 3 on the signed residual stream
    segments = {len(t.codebook.segments) for t in art.tensors.values() if t.kind == "codes"}
    assert {2, 3} <= segments, segments


@pytest.mark.slow
def test_full_size_image_bit_exact(tmp_path):
    """One whole Set5 image (butterfly, 64×64 LR → 256×256) through the full EDSR ×4 at W4A4."""
    art_path = _calibrate(tmp_path, scale=4, bits="W4A4", realization="split", rounding="half_up")
    px = read_image(SET5 / "X4" / "butterflyx4.png", 3).pixels
    art, report = _golden_and_verify(art_path, [("butterflyx4.png", px)], tmp_path / "golden")
    assert report.ok, report.format()
    out = run(art, px, keep_tensors=False).tensors[art.outputs[0]]
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["saturate", "wrap"])
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_16bit_accumulator_overflow_identical(tmp_path, policy, realization):
    """A 16-bit accumulator overflows on real input; both executors emulate it in order, identically."""
    art_path = _calibrate(tmp_path, scale=2, bits="W8A8", realization=realization, rounding="half_up",
                          overflow=policy, acc_bits=16)
    inputs = _crops(2, 16)
    art, report = _golden_and_verify(art_path, inputs, tmp_path / "golden")
    assert report.ok, report.format()
    manifest = json.loads((tmp_path / "golden" / "manifest.json").read_text())
    golden_events = sum(e["acc_overflow"] for e in manifest["events"])
    counters = [run(art, px, keep_tensors=False).counters for _, px in inputs]
    intsim_events = sum(c["totals"]["acc_overflow"] for c in counters)
    ordered = [n for n, c in counters[0]["ops"].items() if c.get("ordered")]
    assert ordered, "a 16-bit accumulator must force ordered accumulation"
    assert golden_events == intsim_events > 0


@pytest.mark.slow
def test_16bit_accumulator_error_policy_names_the_layer(tmp_path):
    from golden.executor import run_golden

    art_path = _calibrate(tmp_path, scale=2, bits="W8A8", realization="split", rounding="half_up",
                          overflow="error", acc_bits=16)
    art = load_artifact(art_path)
    px = _crops(2, 16)[0][1]
    conv_names = [op.name for op in art.ops if op.op == "conv2d"]
    with pytest.raises(EngineOverflowError) as e_int:
        run(art, px)
    with pytest.raises(OverflowError) as e_gold:
        run_golden(art, px)
    named_int = [n for n in conv_names if n in str(e_int.value)]
    named_gold = [n for n in conv_names if n in str(e_gold.value)]
    assert named_int and named_gold and named_int[0] == named_gold[0]


# --------------------------------------------------------------------------
# the verify command's exit codes and messages


@pytest.fixture(scope="module")
def small_golden(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    art_path = _calibrate(tmp, scale=2, bits="W4A4", realization="split", rounding="half_up")
    from golden.writer import write_golden

    write_golden(str(art_path), _crops(2, 12, names=("head",)), str(tmp / "golden"), progress=False)
    return art_path, tmp / "golden"


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_verify_passes_and_reports_json(small_golden, capsys):
    art, gdir = small_golden
    assert cli(["verify", str(art), str(gdir), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is True and rep["mismatches"] == 0


def test_verify_exit1_names_layer_when_golden_byte_changed(small_golden, tmp_path, capsys):
    import hashlib

    art, gdir = small_golden
    g = _copy_tree(gdir, tmp_path / "g")
    manifest = json.loads((g / "manifest.json").read_text())
    body_convs = [op.name for op in load_artifact(art).ops if op.op == "conv2d"][1:-1]
    entry = next(t for t in manifest["tensors"] if t["op"] == body_convs[3])
    arr = np.load(g / entry["file"], allow_pickle=False)
    arr.flat[7] += 1
    np.save(g / entry["file"], arr, allow_pickle=False)
    entry["sha256"] = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    (g / "manifest.json").write_text(json.dumps(manifest))
    assert cli(["verify", str(art), str(g)]) == 1
    out = capsys.readouterr().out
    assert entry["op"] in out and entry["tensor"] in out
    assert "expected" in out and "got" in out


def test_verify_exit2_truncated_artifact(small_golden, tmp_path, capsys):
    art, gdir = small_golden
    bad = tmp_path / "truncated.intsim"
    data = art.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert cli(["verify", str(bad), str(gdir)]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and err.count("\n") == 1


def test_verify_exit2_changed_array_old_hash(small_golden, tmp_path, capsys):
    art, gdir = small_golden
    bad = tmp_path / "tampered.intsim"
    with zipfile.ZipFile(art) as zin, zipfile.ZipFile(bad, "w") as zout:
        victim = next(n for n in zin.namelist() if n.startswith("arrays/") and "weight" in n)
        for n in zin.namelist():
            data = zin.read(n)
            if n == victim:
                data = data[:-1] + bytes([(data[-1] + 1) % 256])
            zout.writestr(n, data)
    assert cli(["verify", str(bad), str(gdir)]) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and victim[len("arrays/"):-4] in err


def test_verify_exit2_golden_missing_file(small_golden, tmp_path, capsys):
    art, gdir = small_golden
    g = _copy_tree(gdir, tmp_path / "g")
    victim = sorted((g / "tensors").rglob("*.npy"))[3]
    victim.unlink()
    assert cli(["verify", str(art), str(g)]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and err.count("\n") == 1
