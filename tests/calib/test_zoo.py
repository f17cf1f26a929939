"""Model zoo: every shipped checkpoint reproduces the shared README's Set5 FP Y-PSNR; loaders fail clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.data_root import data_root
from calib.models import zoo
from calib.models._loading import CheckpointError

# (model, scale, README Set5 FP Y-PSNR, tolerance in dB)
README_SET5 = [
    ("imdn", 2, 38.00, 0.01), ("imdn", 3, 34.36, 0.01), ("imdn", 4, 32.21, 0.01),
    ("carn_m", 2, 37.68, 0.02), ("carn_m", 3, 34.06, 0.02), ("carn_m", 4, 31.88, 0.02),
    ("vdsr", 2, 37.51, 0.02), ("vdsr", 3, 33.70, 0.02), ("vdsr", 4, 31.34, 0.02),
    ("fsrcnn", 2, 37.06, 0.02), ("fsrcnn", 3, 32.57, 0.02), ("fsrcnn", 4, 30.49, 0.02),
]

# Our measurement for idealo RDN psnr-small ×2 (README says 35.99; see test below).
RDN_IDEALO_OURS = 36.653


def _need(model: str, scale: int):
    rel = zoo.get_model(model).default_checkpoint(scale)
    root = data_root()
    if not (root / rel).is_file():
        pytest.skip(f"{model} ×{scale} checkpoint {rel} not found under {root} (set INTSIM_DATA_ROOT)")
    if not (root / "data" / "Set5" / "HR").is_dir():
        pytest.skip(f"Set5 not found under {root}/data (set INTSIM_DATA_ROOT)")


@pytest.mark.slow
@pytest.mark.parametrize("model,scale,ref,tol", README_SET5, ids=[f"{m}-x{s}" for m, s, _, _ in README_SET5])
def test_fp_psnr_matches_readme(model, scale, ref, tol):
    from calib.fp_eval import evaluate_fp

    _need(model, scale)
    res = evaluate_fp(model, scale, "Set5")
    assert len(res["per_image"]) == 5
    assert abs(res["psnr"] - ref) <= tol, f"{model} ×{scale}: {res['psnr']:.4f} dB vs README {ref:.2f}"
    assert 0.8 < res["ssim"] < 1.0


class ReadmeMismatch(AssertionError):
    """Our measurement is stable but differs from the README's published number."""


@pytest.mark.slow
@pytest.mark.xfail(raises=ReadmeMismatch, strict=True,
                   reason="README lists 35.99 dB for idealo RDN psnr-small x2; this port of the Keras graph "
                          "(wiring checked against the HDF5 model_config below) measures 36.65 dB with the same "
                          "protocol; the 0.66 dB gap is unexplained")
def test_rdn_idealo_fp_psnr():
    """Regression pin on our own number (a plain failure if it moves), then the README comparison (xfail)."""
    from calib.fp_eval import evaluate_fp

    _need("rdn_idealo", 2)
    res = evaluate_fp("rdn_idealo", 2, "Set5", with_ssim=False)
    assert abs(res["psnr"] - RDN_IDEALO_OURS) <= 0.02, f"idealo RDN x2 moved: {res['psnr']:.4f} dB"
    if abs(res["psnr"] - 35.99) > 0.02:
        raise ReadmeMismatch(f"idealo RDN x2: {res['psnr']:.4f} dB vs README 35.99")


def test_rdn_idealo_graph_matches_keras_config():
    """Every layer of the HDF5 model_config is wired as RDNIdealo.forward assumes."""
    h5py = pytest.importorskip("h5py")
    _need("rdn_idealo", 2)
    path = data_root() / zoo.get_model("rdn_idealo").default_checkpoint(2)
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    layers = {lay["name"]: lay for lay in cfg["config"]["layers"]}
    exp = {"F_m1": ["LR"], "F_0": ["F_m1"]}
    prev = "F_0"
    for d in range(1, 11):
        x = prev
        for c in range(1, 4):
            exp[f"F_{d}_{c}"] = [x]
            exp[f"F_{d}_{c}_Relu"] = [f"F_{d}_{c}"]
            exp[f"RDB_Concat_{d}_{c}"] = [x, f"F_{d}_{c}_Relu"]
            x = f"RDB_Concat_{d}_{c}"
        exp[f"LFF_{d}"] = [x]
        exp[f"LRL_{d}"] = [f"LFF_{d}", prev]
        prev = f"LRL_{d}"
    exp["LRLs_Concat"] = [f"LRL_{d}" for d in range(1, 11)]
    exp.update({"GFF_1": ["LRLs_Concat"], "GFF_2": ["GFF_1"], "FDF": ["GFF_2", "F_m1"], "UPN1": ["FDF"],
                "UPN1_Relu": ["UPN1"], "UPN2": ["UPN1_Relu"], "UPN2_Relu": ["UPN2"], "UPN3": ["UPN2_Relu"],
                "UPsample": ["UPN3"], "SR": ["UPsample"]})
    assert set(layers) - {"LR"} == set(exp)
    for name, lay in layers.items():
        if name == "LR":
            continue
        assert [n[0] for n in lay["inbound_nodes"][0]] == exp[name], name
        c = lay["config"]
        if lay["class_name"] == "Conv2D":
            assert c["activation"] == "linear" and c["strides"] == [1, 1] and c["use_bias"]
        if lay["class_name"] == "UpSampling2D":
            assert c["interpolation"] == "nearest" and c["size"] == [2, 2]


# ------------------------------------------------------------------ architectures with random weights
ARCHS = [(name, s) for name, e in zoo.MODELS.items() for s in e.scales]


@pytest.mark.parametrize("name,scale", ARCHS, ids=[f"{n}-x{s}" for n, s in ARCHS])
def test_build_forward_shapes_and_state_dict_roundtrip(name, scale, tmp_path):
    entry = zoo.get_model(name)
    if name == "edsr_baseline":
        pytest.importorskip("calib.models.edsr")
    torch.manual_seed(0)
    model = entry.build(scale).eval()
    lr = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    x = entry.preprocess(lr, scale)
    with torch.no_grad():
        out = model(x)
    sr = entry.postprocess(out)
    assert sr.dtype == np.uint8
    assert sr.shape[:2] == (10 * scale, 12 * scale)
    assert sr.ndim == (2 if entry.color == "y" else 3)
    if entry.checkpoint_format != "torch state_dict":
        return
    sd = model.state_dict()
    if sum(v.numel() for v in sd.values()) > 5_000_000:  # RDN config B: strict in-memory load only
        from calib.models._loading import load_state_dict_strict

        loaded = load_state_dict_strict(entry.build(scale), sd, name).eval()
    else:
        p = tmp_path / "ckpt.pth"
        torch.save(sd, p)
        loaded = entry.load(p, scale)
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def test_basicsr_params_wrapper_and_module_prefix(tmp_path):
    entry = zoo.get_model("msrresnet")
    sd = entry.build(4).state_dict()
    p = tmp_path / "msrresnet.pth"
    torch.save({"params": {f"module.{k}": v for k, v in sd.items()}}, p)
    m = entry.load(p, 4)
    assert torch.equal(m.state_dict()["conv_last.weight"], sd["conv_last.weight"])


def test_wrong_architecture_lists_missing_and_unexpected_keys(tmp_path):
    p = tmp_path / "fsrcnn_as_imdn.pth"
    torch.save(zoo.get_model("fsrcnn").build(2).state_dict(), p)
    with pytest.raises(CheckpointError) as ei:
        zoo.get_model("imdn").load(p, 2)
    msg = str(ei.value)
    assert "IMDN" in msg and "missing keys" in msg and "unexpected keys" in msg
    assert "IMDB1.c1.weight" in msg and "first_part.0.weight" in msg


def test_wrong_scale_reports_shape_mismatch(tmp_path):
    p = tmp_path / "imdn_x2.pth"
    torch.save({f"module.{k}": v for k, v in zoo.get_model("imdn").build(2).state_dict().items()}, p)
    with pytest.raises(CheckpointError, match=r"shape mismatches .*upsampler\.0\.weight"):
        zoo.get_model("imdn").load(p, 3)


def test_unsupported_scale_and_unknown_model():
    with pytest.raises(ValueError, match="supports scales"):
        zoo.get_model("rdn_idealo").build(3)
    with pytest.raises(KeyError, match="unknown model"):
        zoo.get_model("srcnn")


def test_non_state_dict_file_is_refused(tmp_path):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
        zoo.get_model("vdsr").load(p, 2)


def test_verify_sha256(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert zoo.verify_sha256(p, good.upper()) == good
    with pytest.raises(zoo.ChecksumError, match="does not match the published"):
        zoo.verify_sha256(p, "0" * 64)
    with pytest.raises(FileNotFoundError):
        zoo.verify_sha256(tmp_path / "missing.pt", good)


def test_edsr_official_sha256_registered():
    e = zoo.get_model("edsr_baseline")
    assert e.sha256[2].startswith("1bc95232") and e.sha256[3].startswith("abf2a44e")
    assert e.sha256[4].startswith("6b446fab")
    assert all(e.default_checkpoint(s).endswith(f"-{e.sha256[s][:8]}.pt") for s in (2, 3, 4))


def test_list_models(tmp_path):
    rows = zoo.list_models(tmp_path)
    assert {r["model"] for r in rows} == set(zoo.MODELS)
    assert not any(r["found"] for r in rows)
    root = data_root()
    if not (root / "weights").is_dir():
        pytest.skip(f"no weights/ under {root}")
    rows = zoo.list_models(root)
    found = {(r["model"], r["scale"]) for r in rows if r["found"]}
    for m, s, _, _ in README_SET5:
        assert (m, s) in found
    assert ("rdn_idealo", 2) in found


def test_shipped_checkpoint_hashes():
    root = data_root()
    if not (root / "weights").is_dir():
        pytest.skip(f"no weights/ under {root}")
    rows = [r for r in zoo.list_models(root, verify=True) if r["found"] and r["sha256"]]
    assert rows
    assert all(r["verified"] for r in rows), [r["path"] for r in rows if not r["verified"]]


def test_resolve_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no default checkpoint"):
        zoo.resolve_checkpoint("rdn", 2)
    with pytest.raises(FileNotFoundError, match="INTSIM_DATA_ROOT"):
        zoo.resolve_checkpoint("imdn", 2, data_root=tmp_path)


def test_imdn_contrast_gradient_is_finite_on_a_constant_channel():
    """A fake-quantized feature map can be constant over a patch: std's gradient there is 0, not NaN
    (it turned W3A3 finetuning's parameters into NaN), and the values are sqrt's, unchanged."""
    from calib.models.imdn import stdv_channels

    f = torch.rand(2, 3, 6, 5, dtype=torch.float32)
    f[0, 1] = 0.25  # one constant channel: variance exactly 0
    f.requires_grad_(True)
    s = stdv_channels(f)
    v = (f - f.mean(dim=(2, 3), keepdim=True)).pow(2).mean(dim=(2, 3), keepdim=True)
    assert s[0, 1].item() == 0.0
    torch.testing.assert_close(s, v.pow(0.5), rtol=1e-6, atol=0)
    s.sum().backward()
    assert torch.isfinite(f.grad).all() and float(f.grad[0, 1].abs().max()) == 0.0
    g = torch.autograd.grad(v.pow(0.5)[1].sum(), f)[0][1]  # elsewhere: the plain sqrt gradient
    torch.testing.assert_close(f.grad[1], g)
