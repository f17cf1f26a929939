"""`intsim calibrate` (run_calibrate) on every zoo model → artifact → golden == intsim, bit for bit.

Method dual_region at W4A4 and W8A8, 4 SunHays80 calibration patches of 24×24 LR
(the offline stand-in for DIV2K), one small Set5 LR crop as the verification input
(the artifact's own input convention: RGB, or for Y models the uint8 Y plane of
the model's preprocessing, :func:`calib.evaluate.artifact_input`). The golden
folder is written by :func:`golden.writer.write_golden` and checked by
:func:`intsim.verification.verify` — what ``intsim golden`` / ``intsim verify`` run.
Models without an offline checkpoint (EDSR-baseline, MSRResNet) use a seeded
random init. Skips when the shared data root is absent.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib.data_root import available, data_root

CALIB_DIR = "data/SunHays80"

#: (model, scale, checkpoint under the data root or None = random init, LR crop side)
CASES = [
    ("edsr_baseline", 2, None, 24),
    ("imdn", 2, "weights/imdn/IMDN_x2.pth", 24),
    ("imdn", 3, "weights/imdn/IMDN_x3.pth", 24),
    ("imdn", 4, "weights/imdn/IMDN_x4.pth", 24),
    ("carn_m", 2, "weights/carn/carn_m.pth", 24),
    ("carn_m", 3, "weights/carn/carn_m.pth", 24),
    ("carn_m", 4, "weights/carn/carn_m.pth", 24),
    ("vdsr", 4, "weights/vdsr/vdsr_state_dict.pth", 12),  # input is the ×4 upsampled crop (48×48)
    ("fsrcnn", 4, "weights/fsrcnn/fsrcnn_x4.pth", 24),
    ("rdn_idealo", 2, "weights/rdn-idealo/psnr-small-x2.h5", 24),
    ("msrresnet", 4, None, 24),
]


def _need(rel: str) -> None:
    if not available(rel):
        pytest.skip(f"{rel} not present under the data root {data_root()} (set INTSIM_DATA_ROOT to the shared "
                    f"data folder)")


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-core CI machines: one thread per xdist worker
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("bits", ["W4A4", "W8A8"])
@pytest.mark.parametrize("name,scale,ckpt,crop", CASES, ids=[f"{c[0]}-x{c[1]}" for c in CASES])
def test_calibrate_export_verify_bit_exact(tmp_path, one_thread, name, scale, ckpt, crop, bits):
    _need(CALIB_DIR)
    _need(f"data/Set5/LR_bicubic/X{scale}")
    if ckpt is not None:
        _need(ckpt)
    from calib.cli_calibrate import run_calibrate
    from calib.datasets import read_rgb
    from calib.evaluate import artifact_input
    from calib.models.zoo import get_model, sha256_file
    from golden.writer import write_golden
    from intsim.artifact import load_artifact
    from intsim.golden_dir import read_golden_dir
    from intsim.verification import verify

    weights = str(data_root() / ckpt) if ckpt else None
    out = tmp_path / f"{name}_x{scale}_{bits}.intsim"
    s = run_calibrate(name, weights, scale, bits, "dual_region", None, str(out), n_images=4, patch=24, seed=0,
                      random_init=weights is None)
    art = load_artifact(out)
    entry = get_model(name)

    # the artifact records where the float model came from
    src = art.metadata["source"]
    assert src["model"] == name and src["scale"] == scale
    if weights:
        assert src["checkpoint_sha256"] == sha256_file(weights)
    else:
        assert art.model["weights"] == "random-init(seed=0)"
    assert art.tensors[art.inputs[0]].channels == entry.in_channels
    # the float fake-quant model (build_fakequant_model) ran: shared modules, transposed convs
    assert s["fakequant_vs_fp_psnr_db"] is not None and math.isfinite(s["fakequant_vs_fp_psnr_db"])

    lr = read_rgb(data_root() / f"data/Set5/LR_bicubic/X{scale}/babyx{scale}.png")
    img = artifact_input(art, np.ascontiguousarray(lr[40:40 + crop, 40:40 + crop]))
    side = crop * scale if entry.upsampled_input else crop
    assert img.shape == (side, side, entry.in_channels)
    gdir = write_golden(out, [("babyx_crop", img)], tmp_path / "golden", progress=False, art=art)
    rep = verify(art, read_golden_dir(gdir))
    assert rep.ok and rep.mismatches == 0 and rep.event_mismatches == 0, rep.first
    assert rep.compared_tensors > 0
