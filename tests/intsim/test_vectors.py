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


# ---------------------------------------------------------------- hostile manifest names
# A golden manifest is free text anyone can edit: its names must never become code or data words.

INJECTED = re.compile(r"\binjected\b|passwd|\bevil\b")
HOSTILE_SOURCES = {0: "cam*/b.png", 1: 'x.png\n#include "/etc/passwd"\nint injected = 1;\r\n// \\'}
HOSTILE_TENSORS = {  # (input, position in the manifest) -> name
    (0, 0): "a */ int injected = 1; /* b", (0, 1): "a-b", (0, 2): "a_b", (0, 3): "A_B",
    (0, 4): "x\n0badf00d\n@10\n", (0, 5): "y" * 300, (0, 6): "", (0, 7): "t\u202eevil\u2028\x7f\x00",
    (1, 0): "a */ int injected = 1; /* b", (1, 1): "/*/ int injected; //",
}
HOSTILE_OPS = {(0, 8): "op\\", (0, 9): "op ??/", (0, 10): "\n#define golden 1\n", (1, 2): "*/ evil /*"}


def hostile_names(golden, sources=None, tensors=None, ops=None):
    """Rename inputs' sources, tensors and ops of ``golden`` (a folder) in its manifest; the arrays and
    their sha256 stay as they are, so the golden still reads as valid."""
    path = golden / "manifest.json"
    m = json.loads(path.read_text())
    for k, name in (sources or {}).items():
        m["inputs"][k]["source"] = name
    for field, edits in (("tensor", tensors or {}), ("op", ops or {})):
        for (k, pos), name in edits.items():
            [d for d in m["tensors"] if d["input"] == k][pos][field] = name
    path.write_text(json.dumps(m))
    return golden


@pytest.fixture
def hostile(golden, tmp_path):
    import shutil

    shutil.copytree(golden, tmp_path / "hostile")
    return hostile_names(tmp_path / "hostile", HOSTILE_SOURCES, HOSTILE_TENSORS, HOSTILE_OPS)


def test_comment_text_is_one_safe_line():
    from intsim.vectors import comment_text

    for name in [*HOSTILE_SOURCES.values(), *HOSTILE_TENSORS.values(), *HOSTILE_OPS.values(),
                 "/*/", "**//**", "?" * 5, "\\", " pad ", "\u2029\x1b[2J\x85", "ok_name-1.out"]:
        s = comment_text(name)
        assert s.isascii() and s.isprintable(), repr(s)
        assert "*/" not in s and "/*" not in s and "??" not in s and not s.endswith("\\"), repr(s)
    assert comment_text("head.conv.out") == "head.conv.out"  # plain names stay readable
    assert comment_text("cam*/b.png") == '"cam* /b.png"'


def test_hostile_names_compile_without_injection(hostile, tmp_path):
    """Every header of a golden with hostile names compiles (-Wall -Wextra -Werror, C99 with trigraphs),
    the preprocessed program holds no injected token or macro, and the arrays equal the golden's."""
    import shutil
    import subprocess

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    notices = []
    index = export_vectors(hostile, tmp_path / "c", "c", notices=notices)
    assert len(notices) == 2 and "escaped" in notices[0] and "suffix" in notices[1], notices
    idents = [f["c_identifier"] for f in index["files"]]
    assert len({i.upper() for i in idents}) == len(idents)
    assert all(re.fullmatch(r"golden_in\d+_[A-Za-z0-9_]*", i) for i in idents)
    assert all(len(f["file"].split("/")[-1]) <= 120 for f in index["files"])
    src = tmp_path / "c" / "all.c"
    src.write_text("\n".join(f'#include "{f["file"]}"' for f in index["files"])
                   + "\n#ifdef golden\n#error a manifest name defined a macro\n#endif\nint main(void) { return 0; }\n")
    for std in ("-std=c99", "-std=gnu11"):
        r = subprocess.run([cc, std, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", str(src)],
                           capture_output=True, text=True, cwd=tmp_path / "c")
        assert r.returncode == 0, r.stderr[:2000]
    r = subprocess.run([cc, "-std=c99", "-E", "-P", str(src)], capture_output=True, text=True, cwd=tmp_path / "c")
    assert r.returncode == 0 and not INJECTED.search(r.stdout), INJECTED.search(r.stdout)
    assert sorted(re.findall(r"static const \w+ (\w+)\[", r.stdout)) == sorted(idents)
    g = read_golden_dir(hostile)
    for f in index["files"]:
        text = (tmp_path / "c" / f["file"]).read_text()
        m = re.search(r"static const u?int\d+_t (\w+)\[\w+\] = \{(.*?)\};", text, re.S)
        assert m.group(1) == f["c_identifier"]
        vals = [int(v.rstrip("L")) for v in m.group(2).replace("\n", " ").split(",") if v.strip()]
        a = g.tensor(f["input"], f["tensor"])
        assert np.array_equal(np.array(vals, np.int64).reshape(a.shape), a.astype(np.int64)), f["tensor"]


def test_hostile_names_never_become_hex_words(hostile, tmp_path):
    index = export_vectors(hostile, tmp_path / "v", "readmemh")
    g = read_golden_dir(hostile)
    plain = export_vectors(hostile, tmp_path / "p", "readmemh", tensors=["A_B"])  # selection renames nothing
    assert plain["files"][0]["file"] in {f["file"] for f in index["files"]}
    for f in index["files"]:
        lines = (tmp_path / "v" / f["file"]).read_text().split("\n")
        assert lines.pop() == ""
        header = [ln for ln in lines if ln.startswith("//")]
        words = [ln for ln in lines if not ln.startswith("//")]
        assert len(header) == 7 and lines[:7] == header, header  # one comment line per header line, no more
        assert all(ln.isascii() and ln.isprintable() and not ln.endswith("\\") for ln in header), header
        a = g.tensor(f["input"], f["tensor"])
        bits = np.dtype(a.dtype).itemsize * 8
        assert all(re.fullmatch(f"[0-9a-f]{{{bits // 4}}}", w) for w in words), f["tensor"]
        assert words == hex_words(a, bits), f["tensor"]


def test_notices_without_a_list_go_to_the_intsim_logger(hostile, tmp_path, caplog):
    """A library caller that passes no ``notices`` list still hears of escaped names, through logging
    (``intsim.vectors``), where it can silence or redirect them."""
    import logging

    with caplog.at_level(logging.INFO, logger="intsim"):
        export_vectors(hostile, tmp_path / "c", "c")
    got = [r for r in caplog.records if r.name == "intsim.vectors"]
    assert len(got) == 2 and "escaped" in got[0].getMessage() and "suffix" in got[1].getMessage()
    assert all(r.levelno == logging.INFO for r in got)
