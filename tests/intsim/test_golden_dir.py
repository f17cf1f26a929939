"""Golden directory format (docs/artifact.md): roundtrip, atomic replacement, refusals."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from intsim.artifact import (
    Codebook,
    EncoderStage,
    Numerics,
    Segment,
    TensorSpec,
    array_sha256,
)
from intsim.golden_dir import (
    MANIFEST,
    GoldenError,
    is_golden_dir,
    read_golden_dir,
    storage_dtype,
    tensor_file_name,
)
from intsim.golden_stream import write_golden_dir

SHA = "ab" * 32
OPS = {"img": "", "x0": "in", "body.0/conv 1.out": "body.0/conv 1", "c": "enc", "out": "out"}


def sample(n_inputs=2, seed=0):
    rng = np.random.default_rng(seed)
    inputs, tensors, events = [], [], []
    for k in range(n_inputs):
        img = rng.integers(0, 256, size=(4 + k, 5, 3), dtype=np.uint8)
        inputs.append((f"img{k}.png", img))
        tensors.append({
            "img": img,
            "x0": rng.integers(-2**23, 2**23, size=(4 + k, 5, 3)),
            "body.0/conv 1.out": rng.integers(-2**23, 2**23, size=(4 + k, 5, 8)),
            "c": rng.integers(0, 31, size=(4 + k, 5, 8)),
            "out": rng.integers(0, 256, size=(8 + 2 * k, 10, 3), dtype=np.uint8),
        })
        events.append({"in": {"acc_overflow": 0, "stream_overflow": k, "saturations": 0, "macs": {"0": 5}},
                       "body.0/conv 1": {"acc_overflow": 3 + k, "stream_overflow": 0, "saturations": 0},
                       "enc": {"acc_overflow": 0, "stream_overflow": 0, "saturations": 7},
                       "out": {"acc_overflow": 0, "stream_overflow": 0, "saturations": 1}})
    dtypes = {"img": "uint8", "x0": "int32", "body.0/conv 1.out": "int32", "c": "int16", "out": "uint8"}
    return inputs, tensors, events, dtypes


def write(path, n_inputs=2, seed=0, **kw):
    inputs, tensors, events, dtypes = sample(n_inputs, seed)
    write_golden_dir(path, SHA, inputs, tensors, events, "test producer", OPS, dtypes=dtypes, **kw)
    return inputs, tensors, events


def test_roundtrip(tmp_path):
    d = tmp_path / "g"
    inputs, tensors, events = write(d)
    g = read_golden_dir(d)
    assert g.artifact_sha256 == SHA and g.producer == "test producer" and len(g) == 2
    for k, (source, img) in enumerate(inputs):
        assert g.inputs[k].source == source
        np.testing.assert_array_equal(g.input_image(k), img)
        assert g.tensor_names(k) == list(tensors[k])
        for name, a in tensors[k].items():
            b = g.tensor(k, name)
            np.testing.assert_array_equal(b, a)
            assert g.entry(k, name).op == OPS[name]
        assert g.events_for(k)["body.0/conv 1"] == {"acc_overflow": 3 + k, "stream_overflow": 0, "saturations": 0}
        assert "macs" not in g.events_for(k)["in"]
    assert g.tensor(0, "x0").dtype == np.int32 and g.tensor(0, "c").dtype == np.int16
    assert g.tensor(0, "out").dtype == np.uint8
    assert (d / "tensors/0/body.0_conv_1.out.npy").is_file()
    m = json.loads((d / MANIFEST).read_text())
    assert m["format"] == "intsim-golden" and m["version"] == 1
    assert m["inputs"][1] == {"index": 1, "source": "img1.png", "file": "inputs/1.npy", "shape": [5, 5, 3],
                              "dtype": "uint8", "sha256": array_sha256(inputs[1][1])}
    assert m["tensors"][0]["op"] == ""  # graph input: no producing op
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_file_names_sanitized_and_disambiguated(tmp_path):
    assert tensor_file_name("body.0/conv 1:out") == "body.0_conv_1_out"
    t = {"a/b": np.zeros((1, 1, 1), np.int64), "a_b": np.ones((1, 1, 1), np.int64)}
    write_golden_dir(tmp_path / "g", SHA, [("x", np.zeros((1, 1, 1), np.uint8))], [t], [{}], "p",
                     {"a/b": "o1", "a_b": "o2"})
    g = read_golden_dir(tmp_path / "g")
    assert g.tensor(0, "a/b").ravel().tolist() == [0] and g.tensor(0, "a_b").ravel().tolist() == [1]
    assert g.entry(0, "a/b").file != g.entry(0, "a_b").file


def test_storage_dtypes():
    cb = Codebook(1, 0, (Segment(0, 1, 0, 40000),), (), (EncoderStage(0, 1, 0),))
    small = Codebook(1, 0, (Segment(0, 1, 0, 30),), (), (EncoderStage(0, 1, 0),))
    assert storage_dtype(TensorSpec("a", "image", 3), Numerics()) == "uint8"
    assert storage_dtype(TensorSpec("a", "stream", 3, frac=4), Numerics(stream_bits=32)) == "int32"
    assert storage_dtype(TensorSpec("a", "stream", 3, frac=4), Numerics(stream_bits=40)) == "int64"
    assert storage_dtype(TensorSpec("a", "codes", 3, codebook=small), Numerics()) == "int16"
    assert storage_dtype(TensorSpec("a", "codes", 3, codebook=cb), Numerics()) == "int32"


def test_value_that_does_not_fit_storage_is_refused(tmp_path):
    inputs, tensors, events, dtypes = sample(1)
    tensors[0]["x0"][0, 0, 0] = 2**31
    with pytest.raises(GoldenError, match=r"'x0'.*do not fit storage dtype int32"):
        write_golden_dir(tmp_path / "g", SHA, inputs, tensors, events, "p", OPS, dtypes=dtypes)
    assert not (tmp_path / "g").exists()
    assert not list(tmp_path.iterdir())  # the temp folder was removed


def test_replaces_previous_golden_atomically(tmp_path):
    d = tmp_path / "g"
    write(d, n_inputs=2, seed=0)
    _, tensors, _ = write(d, n_inputs=1, seed=1)
    g = read_golden_dir(d)
    assert len(g) == 1
    np.testing.assert_array_equal(g.tensor(0, "x0"), tensors[0]["x0"])
    assert not (d / "tensors/1").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["g"]


def test_replace_uses_atomic_exchange_where_supported(tmp_path, monkeypatch):
    import intsim.golden_dir as gd

    calls = []
    real = gd._exchange_dirs
    monkeypatch.setattr(gd, "_exchange_dirs", lambda a, b: calls.append((a, b)) or real(a, b))
    d = tmp_path / "g"
    write(d, seed=0)
    write(d, n_inputs=1, seed=1)
    assert len(calls) == 1 and calls[0][1] == d
    assert len(read_golden_dir(d)) == 1 and [p.name for p in tmp_path.iterdir()] == ["g"]


def test_fallback_swap_and_stranded_old_recovered(tmp_path, monkeypatch):
    import intsim.golden_dir as gd

    monkeypatch.setattr(gd, "_exchange_dirs", lambda a, b: False)  # no renameat2: rename-old, rename-new
    d = tmp_path / "g"
    write(d, seed=0)
    _, tensors, _ = write(d, n_inputs=1, seed=1)
    assert len(read_golden_dir(d)) == 1 and [p.name for p in tmp_path.iterdir()] == ["g"]
    # a writer killed between the two renames left the old golden aside and the path missing
    d.rename(tmp_path / ".g.abc123.old")
    with pytest.raises(GoldenError, match=r"interrupted write left the previous one at .*\.g\.abc123\.old"):
        read_golden_dir(d)
    import intsim.golden_stream as gs

    monkeypatch.setattr(gs.GoldenStreamWriter, "add_input", lambda *a: (_ for _ in ()).throw(GoldenError("boom")))
    with pytest.raises(GoldenError, match="boom"):  # the next writer puts it back first, even if it fails
        write(d, n_inputs=2, seed=2)
    np.testing.assert_array_equal(read_golden_dir(d).tensor(0, "x0"), tensors[0]["x0"])
    assert [p.name for p in tmp_path.iterdir()] == ["g"]


def test_refuses_to_overwrite_foreign_folder_or_file(tmp_path):
    d = tmp_path / "g"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(GoldenError, match="not a golden directory; refusing"):
        write(d)
    assert (d / "notes.txt").read_text() == "mine"
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(GoldenError, match="not a folder"):
        write(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty)
    assert is_golden_dir(empty)


def test_bad_sha_and_mismatched_lists_refused(tmp_path):
    inputs, tensors, events, dtypes = sample(1)
    with pytest.raises(GoldenError, match="artifact_sha256"):
        write_golden_dir(tmp_path / "g", "xyz", inputs, tensors, events, "p", OPS)
    with pytest.raises(GoldenError, match="one tensors and one events entry per input"):
        write_golden_dir(tmp_path / "g", SHA, inputs, tensors * 2, events, "p", OPS)


# -- corruptions ---------------------------------------------------------------


@pytest.fixture
def golden(tmp_path):
    d = tmp_path / "g"
    write(d)
    return d


def test_missing_manifest(golden):
    (golden / MANIFEST).unlink()
    with pytest.raises(GoldenError, match=r"manifest\.json: missing"):
        read_golden_dir(golden)


def test_manifest_not_json(golden):
    (golden / MANIFEST).write_text("{not json")
    with pytest.raises(GoldenError, match=r"manifest\.json: not valid JSON"):
        read_golden_dir(golden)


@pytest.mark.parametrize("edit,msg", [
    (lambda m: m.update(format="other"), "format is 'other'"),
    (lambda m: m.update(version=2), "unsupported golden version 2"),
    (lambda m: m.pop("tensors"), "missing key 'tensors'"),
    (lambda m: m.update(artifact_sha256="00"), "artifact_sha256"),
    (lambda m: m["tensors"][1].update(file="../x.npy"), r"tensors\[1\]: unsafe or misplaced file path"),
    (lambda m: m["tensors"][1].update(input=9), r"tensors\[1\]: input 9 is not a listed input"),
    (lambda m: m["tensors"].append(dict(m["tensors"][0])), "listed twice"),
    (lambda m: m["events"][0].pop("saturations"), r"events\[0\]: missing key 'saturations'"),
    (lambda m: m["inputs"][0].update(index=3), "out of sequence"),
    (lambda m: m.update(inputs={}), "'inputs' has the wrong type"),
])
def test_bad_manifest(golden, edit, msg):
    m = json.loads((golden / MANIFEST).read_text())
    edit(m)
    (golden / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(GoldenError, match=msg):
        read_golden_dir(golden)


def test_missing_tensor_file(golden):
    (golden / "tensors/1/x0.npy").unlink()
    with pytest.raises(GoldenError, match=r"tensors/1/x0\.npy: tensor 'x0' of input 1 is listed in manifest\.json "
                                          r"but missing"):
        read_golden_dir(golden)


def test_missing_input_file(golden):
    (golden / "inputs/0.npy").unlink()
    with pytest.raises(GoldenError, match=r"inputs/0\.npy: input 0 \(img0\.png\) is listed"):
        read_golden_dir(golden)


def test_changed_byte_with_old_hash(golden):
    p = golden / "tensors/0/c.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01  # last data byte: still a valid .npy of the same dtype and shape
    p.write_bytes(bytes(data))
    with pytest.raises(GoldenError, match=r"tensors/0/c\.npy: sha256 mismatch"):
        read_golden_dir(golden)
    g = read_golden_dir(golden, check_hashes=False)  # lazy: refused on access too
    with pytest.raises(GoldenError, match=r"tensors/0/c\.npy: sha256 mismatch"):
        g.tensor(0, "c")


def test_changed_input_byte(golden):
    p = golden / "inputs/1.npy"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0x80
    p.write_bytes(bytes(data))
    with pytest.raises(GoldenError, match=r"inputs/1\.npy: sha256 mismatch"):
        read_golden_dir(golden)


def test_dtype_and_shape_mismatch(golden):
    a = np.load(golden / "tensors/0/x0.npy")
    np.save(golden / "tensors/0/x0.npy", a.astype(np.int64))
    with pytest.raises(GoldenError, match=r"tensors/0/x0\.npy: dtype is int64, manifest\.json says int32"):
        read_golden_dir(golden)
    np.save(golden / "tensors/0/x0.npy", a.reshape(-1))
    with pytest.raises(GoldenError, match=r"tensors/0/x0\.npy: shape is \[60\]"):
        read_golden_dir(golden)


def test_truncated_and_pickled_files(golden):
    p = golden / "tensors/0/x0.npy"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(GoldenError, match=r"tensors/0/x0\.npy: not a valid \.npy array"):
        read_golden_dir(golden)
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GoldenError, match=r"tensors/0/x0\.npy: holds a pickled/object array, refused"):
        read_golden_dir(golden)


def test_not_a_directory(tmp_path):
    with pytest.raises(GoldenError, match="no such golden directory"):
        read_golden_dir(tmp_path / "nope")


def test_failed_write_keeps_previous_golden(golden, monkeypatch):
    import intsim.golden_dir as gd

    before = (golden / MANIFEST).read_bytes()
    real = gd._write_file
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if Path(path).name == MANIFEST:  # the disk fills up at the last file, after every tensor was written
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(gd, "_write_file", flaky)
    with pytest.raises(OSError):
        write(golden, seed=5)
    assert (golden / MANIFEST).read_bytes() == before
    read_golden_dir(golden)
    assert sorted(os.listdir(golden.parent)) == ["g"]
