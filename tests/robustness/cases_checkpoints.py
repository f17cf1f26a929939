"""Robustness cases: checkpoints handed to ``intsim calibrate --weights`` (see harness.py for the contract).

Every case is refused while the model is built, before any calibration image is read, so each
runs in well under a second. The output ``-o`` is a pre-existing artifact with old content: a
refusal must leave it unchanged.
"""
from __future__ import annotations

import os
from pathlib import Path

from tests.robustness.harness import DATA_ROOT as _DATA_ROOT
from tests.robustness.harness import Case, Setup, valid_image


def _calibrate(folder: Path, model: str, weights: Path, scale: int = 2, extra: tuple = ()) -> Setup:
    cal = folder / "calib"
    cal.mkdir(exist_ok=True)
    valid_image(cal, "a.png", 24, 24)
    valid_image(cal, "b.png", 20, 28)
    out = folder / "model.intsim"
    out.write_bytes(b"an earlier artifact")
    argv = ["calibrate", "--model", model, "--weights", weights, "--scale", str(scale), "--bits", "W8A8",
            "--calib-data", cal, "--n-images", "1", "--patch", "8", "-o", out]
    return Setup(argv, str(weights), [out, *extra])


def _tiny_state_dict(**extra):
    import torch

    from reports.demo import build_tiny_sr

    torch.manual_seed(0)
    return {**build_tiny_sr().state_dict(), **extra}


# ---------------------------------------------------------------- wrong architecture
def _imdn_to_carn(folder: Path) -> Setup:
    return _calibrate(folder, "carn_m", _DATA_ROOT / "weights" / "imdn" / "IMDN_x2.pth")


def _synthetic_wrong_arch(folder: Path) -> Setup:
    import torch

    sd = _tiny_state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("tail.")}  # missing the upsampler …
    sd["head.1.weight"] = torch.zeros(8, 3, 3, 3)  # … and a key no tiny_sr has
    p = folder / "other_net.pt"
    torch.save(sd, p)
    return _calibrate(folder, "tiny_sr", p)


def _wrong_scale(folder: Path) -> Setup:
    return _calibrate(folder, "imdn", _DATA_ROOT / "weights" / "imdn" / "IMDN_x2.pth", scale=4)


# ---------------------------------------------------------------- pickled code
class _Payload:
    """Unpickling this would create ``marker`` (a folder): proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _pickled_code(folder: Path) -> Setup:
    import torch

    marker = folder / "PICKLED_CODE_RAN"
    p = folder / "finetuned.pt"
    torch.save({"weight": _Payload(marker)}, p)
    setup = _calibrate(folder, "tiny_sr", p, extra=(marker,))
    return setup


def _pickled_module(folder: Path) -> Setup:
    import torch

    from reports.demo import build_tiny_sr

    p = folder / "whole_model.pt"
    torch.save(build_tiny_sr(), p)  # the nn.Module object, not its state_dict
    return _calibrate(folder, "tiny_sr", p)


# ---------------------------------------------------------------- damaged / not a checkpoint
def _sha_mismatch(folder: Path) -> Setup:
    import torch

    p = folder / "IMDN_x4.pth"  # the official file name: the file claims to be the published checkpoint
    torch.save({"fea_conv.weight": torch.zeros(1)}, p)
    return _calibrate(folder, "imdn", p, scale=4)


def _truncated(folder: Path) -> Setup:
    from reports.demo import DEMO_WEIGHTS

    data = DEMO_WEIGHTS.read_bytes()
    p = folder / "tiny_sr_download.pt"
    p.write_bytes(data[: len(data) * 2 // 3])
    return _calibrate(folder, "tiny_sr", p)


def _not_a_checkpoint(folder: Path) -> Setup:
    p = valid_image(folder, "weights.pt")  # a PNG under a checkpoint's name
    return _calibrate(folder, "tiny_sr", p)


def _text_file(folder: Path) -> Setup:
    p = folder / "weights.pth"
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0000\nsize 5490680\n")
    return _calibrate(folder, "tiny_sr", p)


def _empty(folder: Path) -> Setup:
    p = folder / "weights.pt"
    p.write_bytes(b"")
    return _calibrate(folder, "tiny_sr", p)


def _no_tensors(folder: Path) -> Setup:
    import torch

    p = folder / "optimizer_only.pt"
    torch.save({"epoch": 300, "optimizer": {"lr": 1e-4}}, p)
    return _calibrate(folder, "tiny_sr", p)


def _missing(folder: Path) -> Setup:
    return _calibrate(folder, "tiny_sr", folder / "nowhere.pt")


# ---------------------------------------------------------------- Keras HDF5
def _hdf5_to_torch_model(folder: Path) -> Setup:
    return _calibrate(folder, "imdn", _DATA_ROOT / "weights" / "rdn-idealo" / "psnr-small-x2.h5")


def _idealo_wrong_layers(folder: Path) -> Setup:
    import h5py
    import numpy as np

    p = folder / "rdn-other.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("model_weights")
        g.create_dataset("F_m1/F_m1/kernel:0", data=np.zeros((3, 3, 3, 32), np.float32))  # G0=32, not 64
        g.create_dataset("F_m1/F_m1/bias:0", data=np.zeros(32, np.float32))
        g.create_dataset("conv_extra/conv_extra/kernel:0", data=np.zeros((1, 1, 3, 3), np.float32))
    return _calibrate(folder, "rdn_idealo", p)


def _torch_to_idealo(folder: Path) -> Setup:
    from reports.demo import DEMO_WEIGHTS

    p = folder / "tiny_sr_x2.pt"
    p.write_bytes(DEMO_WEIGHTS.read_bytes())
    return _calibrate(folder, "rdn_idealo", p)


# ---------------------------------------------------------------- crafted HDF5: data or links outside the file
_F_M1_KERNEL = "F_m1/F_m1/kernel:0"  # the first conv of the idealo RDN: (3, 3, 3, 64) float32, 6912 bytes


def _keras_h5(folder: Path, fill, name: str = "rdn-weights.h5", config: str | None = None) -> Path:
    """A Keras-layout HDF5 file (``model_weights/<layer>/<layer>/kernel:0``); ``fill(group)`` adds the crafted part."""
    import h5py

    p = folder / name
    with h5py.File(p, "w") as f:
        if config is not None:
            f.attrs["model_config"] = config
        fill(f.create_group("model_weights"))
    return p


def _external_storage(folder: Path) -> Setup:
    secret = folder / "shadow"  # stands for /etc/shadow: before the fix its bytes became conv weights
    secret.write_bytes(b"root:$6$not-a-real-hash:19000:0:99999:7:::\n" * 200)

    def fill(g):
        g.create_dataset(_F_M1_KERNEL, shape=(3, 3, 3, 64), dtype="<f4", external=[(str(secret), 0, 6912)])

    return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill))


def _external_fifo(folder: Path) -> Setup:
    fifo = folder / "pipe"  # before the fix, reading the dataset waited forever for a writer
    os.mkfifo(fifo)

    def fill(g):
        g.create_dataset(_F_M1_KERNEL, shape=(3, 3, 3, 64), dtype="<f4", external=[(str(fifo), 0, 6912)])

    return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill))


def _virtual_dataset(folder: Path) -> Setup:
    import h5py
    import numpy as np

    other = folder / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.ones((3, 3, 3, 64), np.float32))

    def fill(g):
        layout = h5py.VirtualLayout(shape=(3, 3, 3, 64), dtype="<f4")
        layout[...] = h5py.VirtualSource(str(other), "data", shape=(3, 3, 3, 64))
        g.create_group("F_m1/F_m1").create_virtual_dataset("kernel:0", layout)

    return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill))


def _soft_link(folder: Path) -> Setup:
    import h5py
    import numpy as np

    def fill(g):
        g.file.create_dataset("stash/kernel:0", data=np.zeros((3, 3, 3, 64), np.float32))
        g.create_group("F_m1/F_m1")["kernel:0"] = h5py.SoftLink("/stash/kernel:0")

    return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill))


def _external_link(folder: Path) -> Setup:
    import h5py
    import numpy as np

    other = folder / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("F_m1/kernel:0", data=np.zeros((3, 3, 3, 64), np.float32))

    def fill(g):
        g["F_m1"] = h5py.ExternalLink(str(other), "/F_m1")

    return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill))


def _oversized_dataset(folder: Path) -> Setup:
    def fill(g):  # 4 TiB declared, nothing written: the file stays a few KiB; before the fix: MemoryError, exit 3
        g.create_dataset(_F_M1_KERNEL, shape=(1 << 20, 1 << 20), dtype="<f4", chunks=(64, 64))

    return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill))


def _keras_config(config: str):
    def build(folder: Path) -> Setup:
        import numpy as np

        def fill(g):
            g.create_dataset(_F_M1_KERNEL, data=np.zeros((3, 3, 3, 64), np.float32))

        return _calibrate(folder, "rdn_idealo", _keras_h5(folder, fill, config=config))

    return build


# ---------------------------------------------------------------- not a regular file, too big, pickle protocol
def _fifo(folder: Path) -> Setup:
    p = folder / "weights.pt"
    os.mkfifo(p)
    return _calibrate(folder, "tiny_sr", p)


def _directory(folder: Path) -> Setup:
    p = folder / "weights.pt"
    p.mkdir()
    return _calibrate(folder, "tiny_sr", p)


def _device(folder: Path) -> Setup:
    return _calibrate(folder, "tiny_sr", Path("/dev/zero"))


def _oversized_file(folder: Path) -> Setup:
    p = folder / "huge.pt"
    with open(p, "wb") as f:  # sparse: 2 GiB long, a few bytes on disk
        f.write(b"PK\x03\x04")
        f.truncate(2 << 30)
    return _calibrate(folder, "tiny_sr", p)


def _zip_record_bomb(folder: Path) -> Setup:
    """tiny_sr's committed checkpoint (a torch zip) whose central directory says one record inflates to 2 GiB:
    torch would allocate the declared size and inflate into it (the issue's 14 MB deflated checkpoint took 3.4 GB)."""
    import struct

    from reports.demo import DEMO_WEIGHTS

    data = bytearray(DEMO_WEIGHTS.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last central-directory entry: a tensor record
    data[at + 24:at + 28] = struct.pack("<I", 2 << 30)  # its uncompressed size
    p = folder / "bomb.pt"
    p.write_bytes(bytes(data))
    return _calibrate(folder, "tiny_sr", p)


def _pickle_protocol_4(folder: Path) -> Setup:
    import torch

    p = folder / "tiny_sr_p4.pt"
    torch.save(_tiny_state_dict(), p, pickle_protocol=4)
    return _calibrate(folder, "tiny_sr", p)


_T, _TD = ("torch",), ("torch", "data")
_SHA_POLICY = ("a file named like an official checkpoint (IMDN_x4.pth, carn_m.pth, edsr_baseline_x2-1bc95232.pt…) "
               "must carry its published sha256; any other name (a finetuned checkpoint) is not hashed but loaded strictly")
def _models_verify(folder: Path) -> Setup:
    """``intsim models --verify`` over a data root whose IMDN ×4 checkpoint is not the official file."""
    fake = folder / "root" / "weights" / "imdn" / "IMDN_x4.pth"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the published checkpoint")
    return Setup(["models", "--verify", "--data-root", folder / "root"], str(fake), [fake])


_SAFE = "only torch.load(weights_only=True): pickled objects are refused unread, never unpickled"
_UNREAD = ("links, external storage and virtual datasets are refused before any data is read; "
           "nothing outside the file is opened")
_REGULAR = "only a regular file of at most 1 GiB is opened (checked with stat before anything reads it)"

CASES: list[Case] = [
    Case("checkpoint-sha256-mismatch-listing", "Checkpoints", "`intsim models --verify` finds a checkpoint "
         "whose sha256 is not the published one", _models_verify, "sha256 does not match the published",
         policy="the listing is printed (MISMATCH in its column), then the refusal", needs=("torch",)),
    Case("checkpoint-wrong-architecture", "Checkpoints", "an IMDN checkpoint given to --model carn_m",
         _imdn_to_carn, "missing keys (58)", policy="strict load: missing and unexpected keys listed", needs=_TD),
    Case("checkpoint-wrong-architecture-synthetic", "Checkpoints",
         "a state_dict of another network (keys missing and extra)", _synthetic_wrong_arch, "unexpected keys (1): head.1.weight",
         policy="strict load: missing and unexpected keys listed", needs=_T),
    Case("checkpoint-wrong-scale", "Checkpoints", "the ×2 IMDN checkpoint with --scale 4", _wrong_scale,
         "shape mismatches (2): upsampler.0.weight", policy="strict load: shapes compared", needs=_TD),
    Case("checkpoint-pickled-code", "Checkpoints",
         "a checkpoint whose pickle would run code (a __reduce__ that creates a folder)", _pickled_code,
         "holds pickled Python objects (it references os.makedirs)",
         policy=_SAFE + "; the test watches the folder the payload would create", needs=_T),
    Case("checkpoint-pickled-module", "Checkpoints", "torch.save(model) instead of torch.save(model.state_dict())",
         _pickled_module, "save a plain state_dict", policy=_SAFE, needs=_T),
    Case("checkpoint-sha256-mismatch", "Checkpoints", "a file named IMDN_x4.pth that is not the published checkpoint",
         _sha_mismatch, "does not match the published e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714",
         policy=_SHA_POLICY, needs=_T),
    Case("checkpoint-truncated", "Checkpoints", "a checkpoint cut short (interrupted download)", _truncated,
         "is truncated or corrupt", needs=_T),
    Case("checkpoint-not-a-checkpoint", "Checkpoints", "a PNG image passed as --weights", _not_a_checkpoint,
         "is a PNG image, not a torch checkpoint", needs=_T),
    Case("checkpoint-text-file", "Checkpoints", "a text file (a Git LFS pointer) passed as --weights", _text_file,
         "is not a torch checkpoint", needs=_T),
    Case("checkpoint-empty", "Checkpoints", "an empty checkpoint file", _empty, "is empty (0 bytes)", needs=_T),
    Case("checkpoint-no-tensors", "Checkpoints", "a training-state file with no weights in it", _no_tensors,
         "holds no tensors", needs=_T),
    Case("checkpoint-missing", "Checkpoints", "--weights path does not exist", _missing, "does not exist", needs=_T),
    Case("checkpoint-hdf5-to-torch-model", "Checkpoints", "the idealo Keras HDF5 file given to --model imdn",
         _hdf5_to_torch_model, "is an HDF5 (Keras) file, not a torch checkpoint", needs=_TD),
    Case("checkpoint-keras-wrong-layers", "Checkpoints", "a Keras HDF5 file of another network for rdn_idealo",
         _idealo_wrong_layers, "does not fit the idealo RDN", policy="strict load: missing and unexpected layers listed",
         needs=_T),
    Case("checkpoint-torch-to-keras-model", "Checkpoints", "a torch checkpoint given to rdn_idealo (Keras HDF5)",
         _torch_to_idealo, "not a readable HDF5 file", needs=_T),
    Case("checkpoint-hdf5-external-storage", "Checkpoints",
         "a Keras HDF5 file whose dataset keeps its bytes in another file (it could be /etc/shadow)",
         _external_storage, "keeps its data in another file", policy=_UNREAD, needs=_T),
    Case("checkpoint-hdf5-external-fifo", "Checkpoints",
         "a Keras HDF5 file whose dataset's external storage is a FIFO (reading it would wait forever)",
         _external_fifo, "keeps its data in another file", policy=_UNREAD, needs=_T),
    Case("checkpoint-hdf5-virtual-dataset", "Checkpoints",
         "a Keras HDF5 file with a virtual dataset (data mapped from another HDF5 file)", _virtual_dataset,
         "is a virtual dataset", policy=_UNREAD, needs=_T),
    Case("checkpoint-hdf5-soft-link", "Checkpoints", "a Keras HDF5 file whose kernel is a soft link",
         _soft_link, "is a soft link", policy=_UNREAD, needs=_T),
    Case("checkpoint-hdf5-external-link", "Checkpoints",
         "a Keras HDF5 file whose layer is an external link into another file", _external_link,
         "is an external link", policy=_UNREAD, needs=_T),
    Case("checkpoint-hdf5-oversized-dataset", "Checkpoints",
         "a small Keras HDF5 file declaring a 4 TiB dataset", _oversized_dataset, "over the",
         policy="shapes and sizes are checked before any data is read", needs=_T),
    Case("checkpoint-keras-config-not-json", "Checkpoints", "a Keras HDF5 file whose model_config is not JSON",
         _keras_config("{not json"), "model_config attribute is not JSON", needs=_T),
    Case("checkpoint-keras-config-wrong-type", "Checkpoints",
         "a Keras HDF5 file whose model_config is JSON but not a model config (a list)",
         _keras_config('["not", "a", "model"]'), "model_config attribute is not a Keras model config", needs=_T),
    Case("checkpoint-keras-config-missing-key", "Checkpoints",
         "a Keras HDF5 file whose model_config has an UpSampling2D layer without its config",
         _keras_config('{"class_name": "Model", "config": {"layers": [{"class_name": "UpSampling2D"}]}}'),
         "model_config attribute is not a Keras model config", needs=_T),
    Case("checkpoint-fifo", "Checkpoints", "--weights is a FIFO (reading it would wait for a writer)", _fifo,
         "is not a regular file (a FIFO)", policy=_REGULAR, needs=_T),
    Case("checkpoint-directory", "Checkpoints", "--weights is a folder", _directory,
         "is not a regular file (a directory)", policy=_REGULAR, needs=_T),
    Case("checkpoint-device", "Checkpoints", "--weights /dev/zero (endless)", _device,
         "is not a regular file (a character device)", policy=_REGULAR, needs=_T),
    Case("checkpoint-oversized-file", "Checkpoints", "a 2 GiB file passed as --weights", _oversized_file,
         "larger than the 1 GiB", policy=_REGULAR, needs=_T),
    Case("checkpoint-zip-record-bomb", "Checkpoints", "a torch checkpoint whose zip directory declares a 2 GiB "
         "record (a deflated bomb)", _zip_record_bomb, "once inflated, over the 1 GiB",
         policy="the zip directory's declared sizes are summed before torch.load: refused unread", needs=_T),
    Case("checkpoint-pickle-protocol-4", "Checkpoints",
         "a state_dict saved with torch.save(..., pickle_protocol=4)", _pickle_protocol_4,
         "pickle protocol 4", policy="torch's own warning is not shown; the one line says what to do", needs=_T),
]
