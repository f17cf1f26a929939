"""Golden writing: tensors streamed to disk in bands, ``--tensors`` selections, ``--compress``.

A selection keeps fewer files but every kept tensor is the one ``all`` keeps (same sha256 in the
manifest); verify compares what a golden holds, refuses one without a graph output, and passes on
``outputs``/``conv-io`` goldens; export-vectors works on them; a compressed golden reads back to the
same arrays, and a damaged .npz is refused.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("torch")

from golden.numerics import GoldenError as GoldenRunError  # noqa: E402
from golden.writer import tensor_selection, write_golden  # noqa: E402
from intsim.golden_dir import MANIFEST, GoldenError, read_golden_dir  # noqa: E402
from intsim.vectors import export_vectors  # noqa: E402
from intsim.verification import verify  # noqa: E402
from tests.artifact_factory import make_random_artifact  # noqa: E402


@pytest.fixture(scope="module")
def art():
    a = make_random_artifact(42)
    a.sha256 = "ab" * 32
    return a


def imgs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"im{k}", rng.integers(0, 256, (int(rng.integers(9, 17)), int(rng.integers(6, 12)), 3)).astype(np.uint8))
            for k in range(n)]


def manifest(path):
    return json.loads((path / MANIFEST).read_text())


def by_key(m):
    return {(e["input"], e["tensor"]): e for e in m["tensors"]}


def test_selection_sets(art):
    convs = [op for op in art.ops if op.op in ("conv2d", "conv_transpose2d")]
    assert tensor_selection(art, "all") == set(art.tensors)
    assert tensor_selection(art, "outputs") == set(art.outputs)
    cio = tensor_selection(art, "conv-io")
    assert cio == set(art.outputs) | {t for op in convs for t in (*op.inputs, *op.outputs)}
    name = convs[0].outputs[0]
    assert tensor_selection(art, [name]) == set(art.outputs) | {name}
    with pytest.raises(GoldenRunError, match="neither"):
        tensor_selection(art, ["no-such-tensor"])


@pytest.mark.parametrize("which", ["outputs", "conv-io"])
def test_selected_golden_matches_all_and_verifies(tmp_path, art, which):
    inputs = imgs()
    write_golden(None, inputs, tmp_path / "all", progress=False, art=art)
    write_golden(None, inputs, tmp_path / "sel", progress=False, art=art, tensors=which, band_rows=3)
    full, sel = by_key(manifest(tmp_path / "all")), by_key(manifest(tmp_path / "sel"))
    keep = tensor_selection(art, which)
    assert {t for _, t in sel} == keep and len(sel) == 2 * len(keep) < len(full)
    for key, e in sel.items():  # the same arrays as the full golden (written in bands of 3 rows here)
        assert (e["sha256"], e["shape"], e["dtype"]) == (full[key]["sha256"], full[key]["shape"], full[key]["dtype"])
    assert manifest(tmp_path / "sel")["events"] == manifest(tmp_path / "all")["events"]
    assert manifest(tmp_path / "sel")["tensors_kept"] == [which]
    g = read_golden_dir(tmp_path / "sel")
    rep = verify(art, g)
    assert rep.ok and rep.compared_tensors == len(sel), rep.format(verbose=True)
    index = export_vectors(tmp_path / "sel", tmp_path / "vec", "readmemh")
    assert len(index["files"]) == len(sel)


def test_verify_catches_a_wrong_intermediate_in_a_selection(tmp_path, art):
    """A selection is compared, not skipped: a changed stored conv output fails verify."""
    inputs = imgs(1)
    write_golden(None, inputs, tmp_path / "g", progress=False, art=art, tensors="conv-io")
    m = manifest(tmp_path / "g")
    e = next(e for e in m["tensors"] if e["tensor"] not in art.outputs and e["op"])
    a = np.load(tmp_path / "g" / e["file"])
    a.reshape(-1)[0] += 1
    np.save(tmp_path / "g" / e["file"], a)
    from intsim.artifact import array_sha256

    e["sha256"] = array_sha256(a)
    (tmp_path / "g" / MANIFEST).write_text(json.dumps(m))
    rep = verify(art, read_golden_dir(tmp_path / "g"))
    assert not rep.ok and rep.first["tensor"] == e["tensor"]


@pytest.mark.parametrize("recorded", [None, ["conv-io"]])
def test_verify_refuses_a_golden_missing_a_tensor_its_selection_implies(tmp_path, art, recorded):
    """Dropping an intermediate entry from a golden (of every tensor, or of conv-io) is refused: verify
    demands what the recorded selection (no record: all) implies, not only the graph outputs."""
    write_golden(None, imgs(1), tmp_path / "g", progress=False, art=art, tensors=recorded or "all")
    m = manifest(tmp_path / "g")
    if recorded is None:
        del m["tensors_kept"]
    drop = next(e for e in m["tensors"] if e["tensor"] not in art.outputs and e["op"])
    m["tensors"] = [e for e in m["tensors"] if e is not drop]
    (tmp_path / "g" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(GoldenError, match=f"lacks tensor '{drop['tensor']}'"):
        verify(art, read_golden_dir(tmp_path / "g"))


def test_golden_without_an_output_tensor_refused(tmp_path, art):
    write_golden(None, imgs(1), tmp_path / "g", progress=False, art=art, tensors="outputs")
    m = manifest(tmp_path / "g")
    m["tensors"] = [e for e in m["tensors"] if e["tensor"] != art.outputs[0]]
    (tmp_path / "g" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(GoldenError, match="lacks graph output"):
        verify(art, read_golden_dir(tmp_path / "g"))


def test_compressed_golden_round_trip(tmp_path, art):
    inputs = imgs()
    write_golden(None, inputs, tmp_path / "raw", progress=False, art=art)
    write_golden(None, inputs, tmp_path / "z", progress=False, art=art, compress=True, band_rows=2)
    raw, z = read_golden_dir(tmp_path / "raw"), read_golden_dir(tmp_path / "z")
    assert all(e.file.endswith(".npz") for e in z.entries)
    mr, mz = by_key(manifest(tmp_path / "raw")), by_key(manifest(tmp_path / "z"))
    assert {k: (e["sha256"], e["shape"]) for k, e in mr.items()} == {k: (e["sha256"], e["shape"]) for k, e in mz.items()}
    for k in range(2):
        for t in raw.tensor_names(k):
            np.testing.assert_array_equal(z.tensor(k, t), raw.tensor(k, t))
    assert verify(art, z).ok
    f = z.entries[-1].file
    assert np.load(tmp_path / "z" / f)["arr_0"].shape == tuple(z.entries[-1].shape)  # plain numpy reads it


def test_damaged_npz_refused(tmp_path, art):
    write_golden(None, imgs(1), tmp_path / "z", progress=False, art=art, compress=True)
    e = read_golden_dir(tmp_path / "z").entries[-1]
    p = tmp_path / "z" / e.file
    with zipfile.ZipFile(p, "w") as zf:  # a second member beside arr_0.npy
        zf.writestr("arr_0.npy", b"x")
        zf.writestr("evil.npy", b"y")
    with pytest.raises(GoldenError, match="holds exactly arr_0.npy"):
        read_golden_dir(tmp_path / "z")
    p.write_bytes(b"not a zip")
    with pytest.raises(GoldenError, match="not a valid .npz"):
        read_golden_dir(tmp_path / "z")


def test_failed_run_leaves_no_golden(tmp_path, art):
    """A refused input (after an earlier one was written) publishes nothing and leaves no temp folder."""
    bad = ("bad", np.zeros((5, 5, 3), np.int16))
    with pytest.raises(GoldenRunError, match="uint8"):
        write_golden(None, [*imgs(1), bad], tmp_path / "g", progress=False, art=art)
    assert list(tmp_path.iterdir()) == []


def test_cli_tensors_and_compress(tmp_path, capsys, art):
    """``intsim golden --tensors conv-io --compress``, then verify and export-vectors on it; a bad name is
    one stderr line and exit 2, before anything is written."""
    from intsim.artifact import load_artifact, save_artifact
    from intsim.images import write_png
    from intsim_cli.main import main
    from tests.test_cli import one_line_error

    p = tmp_path / "m.intsim"
    save_artifact(make_random_artifact(42), p)
    for name, px in imgs():
        write_png(tmp_path / f"{name}.png", px)
    inputs = [str(tmp_path / f"{n}.png") for n, _ in imgs()]
    code = main(["golden", str(p), *inputs, "-o", str(tmp_path / "g"), "--tensors", "conv-io", "--compress",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["tensors"] == "conv-io" and json.loads(out)["compressed"] is True
    keep = tensor_selection(load_artifact(p), "conv-io")
    g = read_golden_dir(tmp_path / "g")
    assert {e.tensor for e in g.entries} == keep and all(e.file.endswith(".npz") for e in g.entries)
    assert main(["verify", str(p), str(tmp_path / "g")]) == 0
    assert main(["export-vectors", str(tmp_path / "g"), "-o", str(tmp_path / "v")]) == 0
    capsys.readouterr()
    code = main(["golden", str(p), inputs[0], "-o", str(tmp_path / "g2"), "--tensors", "nope"])
    _, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, "--tensors", "nope")
    assert not (tmp_path / "g2").exists()
