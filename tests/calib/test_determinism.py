"""Calibration gives the same artifact bytes whatever the caller's thread count (issue: goldens made on one
machine failed on another)."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    from intsim.images import write_png
    from reports.demo import CALIB_FILES, load_sample

    d = tmp_path_factory.mktemp("hr")
    for name in CALIB_FILES[:4]:
        write_png(d / f"{name.split('.')[0]}.png", np.ascontiguousarray(load_sample(name)[:128, :128]))
    return d


@pytest.mark.parametrize("method,extra", [(None, {"recon": {"iters": 15}}), ("oaq", {"finetune": {"epochs": 2}})])
def test_same_artifact_with_one_and_two_threads(tmp_path, hr_folder, method, extra):
    from calib.cli_calibrate import run_calibrate
    from reports.demo import DEMO_WEIGHTS, register_tiny_sr

    register_tiny_sr()
    old = torch.get_num_threads()
    digests = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            s = run_calibrate("tiny_sr", str(DEMO_WEIGHTS), 2, "W4A4", method, str(hr_folder),
                              str(tmp_path / f"t{threads}.intsim"), n_images=4, patch=24, holdout=False, **extra)
            digests.append(s["sha256"])
            assert torch.get_num_threads() == threads  # the caller's setting is restored
    finally:
        torch.set_num_threads(old)
    assert digests[0] == digests[1]
