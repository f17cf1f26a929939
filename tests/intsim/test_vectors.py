"""export-vectors: $readmemh hex files and C headers of golden tensors (torch-free)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim.golden_dir import read_golden_dir
from intsim.vectors import export_vectors, hex_words
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    d = tmp_path_factory.mktemp("vec")
    save_artifact(make_random_artifact(1), d / "m.intsim")
    art = load_artifact(d / "m.intsim")
    rng = np.random.default_rng(0)
    inputs = [(f"i{k}.png", rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)) for k in range(2)]
    engine_golden(art, d / "g", inputs)
    return d / "g"


def test_hex_words_twos_complement():
    assert hex_words(np.array([0, 1, -1, -32768, 32767], np.int16), 16) == ["0000", "0001", "ffff", "8000", "7fff"]
    assert hex_words(np.array([255, 0], np.uint8), 8) == ["ff", "00"]
    assert hex_words(np.array([-2], np.int32), 32) == ["fffffffe"]


def _read_hex(path):
    vals, header = [], []
    for line in path.read_text().splitlines():
        if line.startswith("//"):
            header.append(line)
        elif line.strip():
            vals.append(line.strip())
    return header, vals


def test_readmemh_round_trip(golden, tmp_path):
    index = export_vectors(golden, tmp_path / "v", "readmemh")
    g = read_golden_dir(golden)
    n_expected = sum(len(g.tensor_names(k)) for k in range(len(g)))
    assert len(index["files"]) == n_expected
    assert json.loads((tmp_path / "v" / "index.json").read_text())["files"] == index["files"]
    for f in index["files"]:
        header, vals = _read_hex(tmp_path / "v" / f["file"])
        a = g.tensor(f["input"], f["tensor"])
        bits = np.dtype(a.dtype).itemsize * 8
        assert len(vals) == a.size and all(len(v) == bits // 4 for v in vals)
        got = np.array([int(v, 16) for v in vals], np.int64)
        if a.dtype.kind == "i":
            got = np.where(got >= 1 << (bits - 1), got - (1 << bits), got)
        assert np.array_equal(got.reshape(a.shape), a.astype(np.int64)), f["tensor"]
        text = "\n".join(header)
        assert f["tensor"] in text and "x".join(map(str, a.shape)) in text
        assert (f"{bits}-bit two's complement" in text) or a.dtype == np.uint8
        if a.ndim == 3:
            assert "HWC" in text


def test_c_headers(golden, tmp_path):
    index = export_vectors(golden, tmp_path / "c", "c", inputs=[1])
    g = read_golden_dir(golden)
    assert {f["input"] for f in index["files"]} == {1}
    for f in index["files"]:
        text = (tmp_path / "c" / f["file"]).read_text()
        a = g.tensor(1, f["tensor"])
        m = re.search(r"static const (u?int\d+_t) (\w+)\[(\w+)_LEN\] = \{(.*?)\};", text, re.S)
        assert m, text[:400]
        assert m.group(1) == {"uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t"}[str(a.dtype)]
        assert f"#define {m.group(3)}_LEN {a.size}" in text
        if a.ndim == 3:
            for name, n in zip("HWC", a.shape):
                assert f"#define {m.group(3)}_{name} {n}" in text
        vals = [int(v.rstrip("L")) for v in m.group(4).replace("\n", " ").split(",") if v.strip()]
        assert np.array_equal(np.array(vals, np.int64).reshape(a.shape), a.astype(np.int64))
        assert text.count("#ifndef") == 1 and text.rstrip().endswith("*/")


def test_compiles_with_gcc(golden, tmp_path):
    import shutil
    import subprocess

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    index = export_vectors(golden, tmp_path / "c", "c", inputs=[0])
    inc = "\n".join(f'#include "{f["file"]}"' for f in index["files"])
    src = tmp_path / "c" / "all.c"
    src.write_text(inc + "\nint main(void) { return 0; }\n")
    r = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-c", str(src), "-o", str(tmp_path / "all.o")],
                       capture_output=True, text=True, cwd=tmp_path / "c")
    assert r.returncode == 0, r.stderr[:2000]


def test_selection_and_errors(golden, tmp_path):
    g = read_golden_dir(golden)
    t = g.tensor_names(0)[2]
    index = export_vectors(golden, tmp_path / "s", "readmemh", tensors=[t])
    assert [f["tensor"] for f in index["files"]] == [t, t]
    with pytest.raises(ValueError, match="format"):
        export_vectors(golden, tmp_path / "x", "vhdl")
    with pytest.raises(ValueError, match="no_such"):
        export_vectors(golden, tmp_path / "x", "c", tensors=["no_such"])
    with pytest.raises(ValueError, match="input 5"):
        export_vectors(golden, tmp_path / "x", "c", inputs=[5])
