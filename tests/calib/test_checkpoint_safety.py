"""Checkpoint loading never runs pickled code; the sha256 policy of official file names (issue 7);
only regular files of bounded size are read, and Keras HDF5 files never make the loader leave the file
or read a dataset before its shape matched (Reliability II)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calib.models import zoo
from calib.models._loading import CheckpointError, read_torch_checkpoint


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling would create the marker folder
        return (os.makedirs, (self.marker,))


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "RAN"
    p = tmp_path / "evil.pt"
    torch.save({"w": _Payload(marker)}, p)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects \(it references os\.makedirs\)"):
        read_torch_checkpoint(p)
    assert not marker.exists(), "the pickled payload ran"


def test_message_never_advises_weights_only_false(tmp_path):
    p = tmp_path / "module.pt"
    torch.save(torch.nn.Conv2d(3, 3, 3), p)
    with pytest.raises(CheckpointError) as ei:
        read_torch_checkpoint(p)
    msg = str(ei.value)
    assert "\n" not in msg and "weights_only=False" not in msg and "`weights_only` set to `False`" not in msg
    assert "torch.nn.modules.conv.Conv2d" in msg


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty (0 bytes)"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 8, "is an HDF5 (Keras) file"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "is a PNG image"),
    (b"hello world", "is not a torch checkpoint"),
])
def test_not_a_checkpoint(tmp_path, content, fragment):
    p = tmp_path / "w.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_torch_checkpoint(p)


def test_truncated(tmp_path):
    p = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1000)}, p)
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        read_torch_checkpoint(p)


def test_official_name_is_verified_other_names_are_not(tmp_path):
    official = tmp_path / "IMDN_x3.pth"
    official.write_bytes(b"not the published file")
    with pytest.raises(zoo.ChecksumError, match=zoo.MODELS["imdn"].sha256[3]) as ei:
        zoo.verify_if_official("imdn", official)
    assert zoo.sha256_file(official) in str(ei.value)
    renamed = tmp_path / "imdn_x3_finetuned.pth"
    renamed.write_bytes(b"not the published file")
    assert zoo.verify_if_official("imdn", renamed) is None
    assert zoo.verify_if_official("rdn", renamed) is None  # no published sha256


def test_official_file_passes(tmp_path):
    from calib.data_root import data_root

    p = data_root() / "weights" / "imdn" / "IMDN_x2.pth"
    if not p.is_file():
        pytest.skip(f"needs the data root ({p})")
    assert zoo.verify_if_official("imdn", p) == zoo.MODELS["imdn"].sha256[2]


# --------------------------------------------------------------------------- file kinds and size caps
@pytest.mark.parametrize("make, kind", [
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: p.symlink_to("/dev/zero"), "a character device"),
])
def test_non_regular_file_is_refused_unopened(tmp_path, make, kind):
    from calib.models.rdn import load_idealo

    p = tmp_path / "w.pt"
    make(p)
    for load in (read_torch_checkpoint, lambda q: load_idealo(q, 2)):  # a FIFO would block either reader
        with pytest.raises(CheckpointError, match=rf"is not a regular file \({kind}\)"):
            load(p)


def test_size_cap(tmp_path, monkeypatch):
    from calib.models import _checkpoint_io

    p = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1000)}, p)
    assert read_torch_checkpoint(p)["a"].shape == (1000,)
    monkeypatch.setattr(_checkpoint_io, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match=r"larger than the 1 GiB"):
        read_torch_checkpoint(p)


def test_zip_records_inflating_past_the_cap_are_refused(tmp_path, monkeypatch):
    import zipfile

    from calib.models import _loading

    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(100_000)}, plain)  # 400 kB of zeros: deflates to a few hundred bytes
    bomb = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    assert torch.equal(read_torch_checkpoint(bomb)["a"], torch.zeros(100_000))  # torch inflates such records
    monkeypatch.setattr(_loading, "MAX_CHECKPOINT_BYTES", 100_000)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match=r"its zip records declare \d+ bytes once inflated"):
        read_torch_checkpoint(bomb)


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_protocol_4_5_one_line_no_warning(tmp_path, protocol, zip_format):
    p = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(3)}, p, pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=rf"saved with pickle protocol {protocol}, which") as ei:
            read_torch_checkpoint(p)
    assert not caught, [str(w.message) for w in caught]
    assert "\n" not in str(ei.value) and "weights_only=False" not in str(ei.value)


# --------------------------------------------------------------------------- Keras HDF5 (rdn_idealo)
def _idealo_h5(path, scale=2, dtype="<f4", config=None, edit=None):
    """A complete idealo RDN weights file of random weights (HWIO kernels); returns the OIHW state."""
    h5py = pytest.importorskip("h5py")
    import numpy as np

    from calib.models.rdn import build_idealo

    rng = np.random.default_rng(0)
    state = {}
    with h5py.File(path, "w") as f:
        if config is not None:
            f.attrs["model_config"] = config
        g = f.create_group("model_weights")
        for name, conv in build_idealo(scale).keras_names().items():
            o, i, kh, kw = conv.weight.shape
            w = rng.standard_normal((kh, kw, i, o)).astype(np.float32)
            b = rng.standard_normal(o).astype(np.float32)
            g.create_dataset(f"{name}/{name}/kernel:0", data=w.astype(dtype))
            g.create_dataset(f"{name}/{name}/bias:0", data=b.astype(dtype))
            state[name] = (w.astype(dtype).astype(np.float32).transpose(3, 2, 0, 1), b.astype(dtype).astype(np.float32))
        g.create_group("F_1_1_Relu")  # Keras keeps empty groups for layers without weights
        if edit is not None:
            edit(f)
    return state


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f2"])
def test_idealo_roundtrip(tmp_path, dtype):
    from calib.models.rdn import load_idealo

    p = tmp_path / "rdn.h5"
    state = _idealo_h5(p, dtype=dtype, config='{"class_name": "Model", "config": {"layers": ['
                       '{"class_name": "UpSampling2D", "config": {"size": [2, 2]}}]}}')
    model = load_idealo(p, 2)
    for name, conv in model.keras_names().items():
        assert conv.weight.dtype == torch.float32
        assert torch.equal(conv.weight, torch.from_numpy(state[name][0])), name
        assert torch.equal(conv.bias, torch.from_numpy(state[name][1])), name


def test_idealo_reads_nothing_before_shapes_match(tmp_path, monkeypatch):
    from calib.models import rdn

    def wrong_f0(f):
        del f["model_weights/F_0/F_0/kernel:0"]
        f["model_weights/F_0/F_0"].create_dataset("kernel:0", data=np.zeros((3, 3, 64, 32), np.float32))

    p = tmp_path / "rdn.h5"
    _idealo_h5(p, edit=wrong_f0)
    h5py = pytest.importorskip("h5py")
    reads = []
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda ds, key: reads.append(ds.name))  # any read path
    with pytest.raises(CheckpointError, match=r"shape mismatches \(1\): F_0: kernel \(3, 3, 64, 32\)"):
        rdn.load_idealo(p, 2)
    assert reads == []


def _soft_link_bias(f):
    import h5py

    del f["model_weights/LFF_1/LFF_1/bias:0"]
    f["model_weights/LFF_1/LFF_1/bias:0"] = h5py.SoftLink("/model_weights/LFF_2/LFF_2/bias:0")


@pytest.mark.parametrize("edit, fragment", [
    (lambda f: f["model_weights/F_0/F_0"].create_dataset("step:0", data=np.arange(3)), "holds int64 values"),
    (lambda f: f["model_weights/F_0"].__setitem__("again", f["model_weights/F_0"]), "nested more than 8 groups"),
    (_soft_link_bias, "is a soft link (to /model_weights/LFF_2/LFF_2/bias:0)"),
    (lambda f: f.attrs.__setitem__("model_config", 7), "model_config attribute is not JSON text"),
    (lambda f: f.attrs.__setitem__("model_config", '{"config": {"layers": [3]}}'), "layer 0 has no class_name"),
    (lambda f: f.attrs.__setitem__("model_config", "[" * 100_000), "model_config attribute is not JSON"),
    (lambda f: f.attrs.__setitem__("model_config",  # the Keras 2.2 Sequential layout, an int size
                                   '{"config": [{"class_name": "UpSampling2D", "config": {"size": 3}}]}'),
     "is an idealo RDN for ×3, not ×2"),
])
def test_idealo_refusals(tmp_path, edit, fragment):
    from calib.models.rdn import load_idealo

    p = tmp_path / "rdn.h5"
    _idealo_h5(p, edit=edit)
    with pytest.raises(CheckpointError) as ei:
        load_idealo(p, 2)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg
    assert fragment in msg
