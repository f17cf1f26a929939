"""`intsim compare GOLDEN_DIR DUMP_DIR` (intsim/compare.py): hex dumps in the exported layout and .npy,
mapped by file names or an index; first mismatch and per-tensor counts; exit 0/1/2; a subset of layers."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim.compare import DumpError, compare_dumps
from intsim.golden_dir import read_golden_dir
from intsim.vectors import export_vectors, hex_words
from intsim_cli.main import main
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    save_artifact(make_random_artifact(1), d / "m.intsim")
    art = load_artifact(d / "m.intsim")
    rng = np.random.default_rng(2)
    engine_golden(art, d / "g", [(f"i{k}.png", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)) for k in range(2)])
    export_vectors(d / "g", d / "v", "readmemh")
    return art, d


def _dumps(setup, tmp_path, keep=None):
    """The exported golden vectors as a perfect simulator's dump folder (``keep``: only these file stems)."""
    _, d = setup
    out = tmp_path / "dumps"
    shutil.copytree(d / "v", out)
    (out / "index.json").unlink()
    if keep is not None:
        for f in out.rglob("*.hex"):
            if not any(f.name.endswith(f"_{k}.hex") for k in keep):
                f.unlink()
    return out


def test_identical_dumps_pass(setup, tmp_path, capsys):
    art, d = setup
    out = _dumps(setup, tmp_path)
    rep = compare_dumps(d / "g", out)
    g = read_golden_dir(d / "g")
    assert rep.ok and rep.compared_tensors == sum(len(g.tensor_names(k)) for k in range(len(g)))
    assert main(["compare", str(d / "g"), str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK")


def test_first_mismatch_and_counts(setup, tmp_path, capsys):
    art, d = setup
    out = _dumps(setup, tmp_path)
    g = read_golden_dir(d / "g")
    conv = next(op for op in art.ops if op.name == "body.conv2")
    t = conv.outputs[0]
    pos = g.tensor_names(1).index(t)
    f = out / "in1" / f"{pos:03d}_{t}.hex"
    lines = f.read_text().splitlines()
    a = g.tensor(1, t)
    body = [i for i, ln in enumerate(lines) if not ln.startswith("//")]
    flat = [3, 7, 8]  # elements changed; the first is the one reported
    for i in flat:
        lines[body[i]] = hex_words(np.array([int(a.reshape(-1)[i]) + 1]), 32)[0]
    f.write_text("\n".join(lines) + "\n")
    rep = compare_dumps(d / "g", out)
    assert not rep.ok and rep.mismatches == 3 and rep.mismatched_tensors == 1
    idx = [int(v) for v in np.unravel_index(3, a.shape)]
    assert rep.first == {"input": 1, "op": "body.conv2", "tensor": t, "index": idx,
                         "expected": int(a.reshape(-1)[3]), "got": int(a.reshape(-1)[3]) + 1}
    assert main(["compare", str(d / "g"), str(out)]) == 1
    text = capsys.readouterr().out
    assert f"op body.conv2 tensor {t} index {tuple(idx)}" in text and "3 of" in text
    assert main(["compare", str(d / "g"), str(out), "--json"]) == 1
    js = json.loads(capsys.readouterr().out)
    assert js["first"]["index"] == idx and [x["mismatches"] for x in js["tensors"] if x["mismatches"]] == [3]
    # the same folder checked on another layer only passes
    assert compare_dumps(d / "g", out, ops=["head.conv"]).ok
    assert compare_dumps(d / "g", out, inputs=[0]).ok


def test_npy_and_index_with_region(setup, tmp_path):
    art, d = setup
    g = read_golden_dir(d / "g")
    op = next(o for o in art.ops if o.name == "head.conv")
    t = op.outputs[0]
    a = g.tensor(0, t).astype(np.int64)
    out = tmp_path / "d"
    out.mkdir()
    np.save(out / "whole.npy", a)
    part = a[1:3, :, 1::2].copy()
    (out / "part.hex").write_text("\n".join(hex_words(part, 32)) + "\n")
    idx = {"dumps": [{"input": 0, "tensor": t, "file": "whole.npy"},
                     {"input": 1, "tensor": t, "file": "part.hex", "region": {"y": [1, 3], "c": [1, a.shape[2], 2]}}]}
    (out / "dumps.json").write_text(json.dumps(idx))
    rep = compare_dumps(d / "g", out)
    assert rep.compared_tensors == 2
    b = g.tensor(1, t)
    if np.array_equal(a[1:3, :, 1::2], b[1:3, :, 1::2]):
        pytest.skip("inputs agree on the region")
    assert not rep.ok and rep.first["input"] == 1
    y, x, c = rep.first["index"]  # reported in the full tensor's coordinates
    assert 1 <= y < 3 and c % 2 == 1 and rep.first["expected"] == int(b[y, x, c]) and rep.first["got"] == int(a[y, x, c])
    # the right region of input 1 passes
    (out / "part.hex").write_text("\n".join(hex_words(b[1:3, :, 1::2], 32)) + "\n")
    assert compare_dumps(d / "g", out).ok


@pytest.mark.parametrize("make, needle", [
    (lambda out, t: (out / "in0").mkdir() or (out / "in0" / "zz.hex").write_text("1\n"), "no dump matches"),
    (lambda out, t: (out / "in0").mkdir() or (out / "in0" / f"{t}.hex").write_text("12\nxyz\n"), "not a hex word"),
    (lambda out, t: (out / "in0").mkdir() or (out / "in0" / f"{t}.hex").write_text("1ffffffff\n"), "does not fit"),
    (lambda out, t: (out / "in0").mkdir() or (out / "in0" / f"{t}.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00junk"), "not a valid .npy"),
    (lambda out, t: (out / "dumps.json").write_text('{"dumps": [{"input": 9, "tensor": "x", "file": "a"}]}'),
     "not in the golden"),
    (lambda out, t: (out / "dumps.json").write_text("{"), "not valid JSON"),
])
def test_bad_input_exit_2(setup, tmp_path, capsys, make, needle):
    art, d = setup
    t = next(o for o in art.ops if o.name == "head.conv").outputs[0]
    out = tmp_path / "bad"
    out.mkdir()
    make(out, t)
    with pytest.raises(ValueError, match=needle):
        compare_dumps(d / "g", out)
    assert main(["compare", str(d / "g"), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("intsim: error:") and needle in err[0]


def test_wrong_length_is_a_mismatch_and_layer_needs_a_dump(setup, tmp_path):
    art, d = setup
    t = next(o for o in art.ops if o.name == "head.conv").outputs[0]
    out = tmp_path / "short"
    (out / "in0").mkdir(parents=True)
    (out / "in0" / f"{t}.hex").write_text("0\n")
    rep = compare_dumps(d / "g", out)
    assert not rep.ok and rep.first["index"] is None and "1 values" in rep.first["reason"]
    with pytest.raises(DumpError, match="no dump of a tensor of op 'body.conv1'"):
        compare_dumps(d / "g", out, ops=["body.conv1"])
    with pytest.raises(ValueError, match="produces no tensor"):
        compare_dumps(d / "g", out, ops=["nope"])
