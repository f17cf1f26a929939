"""Checkpoint loading never runs pickled code; the sha256 policy of official file names (issue 7)."""
from __future__ import annotations

import os

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
