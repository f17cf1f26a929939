"""Real zoo checkpoints → MinMax calibration → artifact → golden == intsim, bit for bit.

IMDN ×4 (W8A8 and W4A4, split and grid) exercises every attention op (split, concat,
leaky_relu, std_pool, mean_pool, sigmoid LUT, mul); CARN-M (shared modules, forward(x, scale)),
VDSR (Y on the upsampled LR, residual from the input image), FSRCNN (PReLU, transposed conv) and
RDN idealo (concat chains, nearest upsampling) get a lighter W8A8 smoke test. Calibration: a
few SunHays80 LR patches (the offline stand-in for DIV2K); evaluation on a Set5 LR crop.
Tests skip with the reason when the shared data or a checkpoint is absent.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.calibrate import calibrate_minmax, load_calibration_images
from calib.data_root import available, data_root
from calib.datasets import read_rgb
from calib.evaluate import artifact_input
from calib.export import export_artifact, model_source
from calib.graph import capture
from calib.models.zoo import get_model
from golden.executor import run_golden
from intsim.engine import run
from calib.metrics import psnr, to_y

CALIB_DIR = "data/SunHays80"
CROP = 24


def _require(rel: str) -> None:
    if not available(rel):
        pytest.skip(f"{rel} not present under the data root {data_root()} (set INTSIM_DATA_ROOT)")


def _setup(name: str, scale: int, n_images: int = 2, patch: int = 32):
    entry = get_model(name)
    rel = entry.default_checkpoint(scale)
    _require(rel)
    _require(CALIB_DIR)
    _require(f"data/Set5/LR_bicubic/X{scale}")
    path = data_root() / rel
    model = entry.load(path, scale).eval()
    g = capture(model, rgb_range=entry.rgb_range, in_channels=entry.in_channels)
    imgs = load_calibration_images(data_root() / CALIB_DIR, n_images, patch, scale, 0, rgb_range=entry.rgb_range)
    if entry.color == "y":  # Y models calibrate on their own input (Y of the LR, or of the upsampled LR)
        imgs = [entry.preprocess(np.round(t.numpy().transpose(1, 2, 0) * 255 / entry.rgb_range).astype(np.uint8),
                                 scale)[0] for t in imgs]
    return entry, model, g, imgs, model_source(name, scale, path)


def _lr_crop(scale: int, crop: int = CROP) -> np.ndarray:
    lr = read_rgb(data_root() / f"data/Set5/LR_bicubic/X{scale}/babyx{scale}.png")
    return np.ascontiguousarray(lr[40:40 + crop, 40:40 + crop])


def _bit_exact(art, img: np.ndarray) -> np.ndarray:
    """golden == intsim on every tensor and every event; returns the output image."""
    res = run(art, img)
    gold = run_golden(art, img)
    for t, ref in gold.tensors.items():
        got = res.tensors[t]
        assert got.shape == ref.shape, t
        if not np.array_equal(np.asarray(got, dtype=np.int64), np.asarray(ref, dtype=np.int64)):
            idx = np.argwhere(np.asarray(got, dtype=np.int64) != np.asarray(ref, dtype=np.int64))[0]
            pytest.fail(f"tensor {t}: first mismatch at {idx.tolist()}: golden {ref[tuple(idx)]}, "
                        f"intsim {got[tuple(idx)]}")
    for op, ev in gold.events.items():
        got = res.counters["ops"][op]
        for k, v in ev.items():
            assert got.get(k, 0) == v, (op, k)
    return res.tensors[art.outputs[0]]


def _fp_output(entry, model, g, img: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32)) * (entry.rgb_range / 255.0)
    with torch.no_grad():
        y = g.run(x)
    return y[0].double().numpy().transpose(1, 2, 0) * (255.0 / entry.rgb_range)


def _ypsnr(a: np.ndarray, b: np.ndarray) -> float:
    from calib.metrics import to_uint8

    a, b = to_uint8(a), to_uint8(b)
    ya = to_y(a) if a.shape[-1] == 3 else a[..., 0].astype(np.float64)
    yb = to_y(b) if b.shape[-1] == 3 else b[..., 0].astype(np.float64)
    return psnr(ya, yb)


@pytest.fixture(scope="module")
def imdn():
    return _setup("imdn", 4)


def _imdn_case(imdn, bits: tuple[int, int], min_psnr: float | None):
    entry, model, g, imgs, src = imdn
    cal = calibrate_minmax(model, imgs, *bits, graph=g)
    img = artifact_input_for(entry, _lr_crop(4))
    fp = _fp_output(entry, model, g, img)
    out = {}
    for real in ("split", "grid"):
        art = export_artifact(model, cal, realization=real, model_meta={"name": "imdn", "scale": 4}, source=src)
        ops = {o.op for o in art.ops}
        assert {"split", "concat", "leaky_relu", "std_pool", "mean_pool", "lut", "mul"} <= ops
        assert art.metadata["source"]["checkpoint_sha256"] == entry.sha256[4]
        sr = _bit_exact(art, img)
        out[real] = _ypsnr(sr, fp)
        if min_psnr is not None:
            assert out[real] > min_psnr, (real, out[real])
    return out


def artifact_input_for(entry, lr: np.ndarray, scale: int = 4) -> np.ndarray:
    class _A:  # the artifact's input convention without an artifact
        tensors = {"input": type("T", (), {"channels": entry.in_channels})()}
        inputs = ("input",)
        model = {"name": entry.name, "scale": scale}
        metadata = {"source": {"model": entry.name}}

    return artifact_input(_A, lr)


def test_imdn_x4_w8a8_bit_exact_and_close_to_fp(imdn):
    _imdn_case(imdn, (8, 8), 35.0)


@pytest.mark.slow
def test_imdn_x4_w4a4_bit_exact(imdn):
    res = _imdn_case(imdn, (4, 4), None)
    assert all(np.isfinite(v) and v > 10.0 for v in res.values()), res


@pytest.mark.slow
@pytest.mark.parametrize("name,scale,real", [
    ("carn_m", 4, "split"), ("vdsr", 4, "grid"), ("fsrcnn", 4, "split"), ("rdn_idealo", 2, "grid"),
])
def test_zoo_w8a8_export_bit_exact(name, scale, real):
    entry, model, g, imgs, src = _setup(name, scale, n_images=2, patch=24)
    cal = calibrate_minmax(model, imgs, 8, 8, graph=g)
    art = export_artifact(model, cal, realization=real, model_meta={"name": name, "scale": scale}, source=src)
    lr = _lr_crop(scale, 10 if entry.upsampled_input else 16)
    img = artifact_input_for(entry, lr, scale) if entry.color == "y" else lr
    if entry.upsampled_input:
        assert img.shape[:2] == (10 * scale, 10 * scale)
    sr = _bit_exact(art, img)
    fp = _fp_output(entry, model, g, img)
    assert _ypsnr(sr, fp) > 30.0
