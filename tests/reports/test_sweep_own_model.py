"""``[own_models]`` in SWEEP.toml: a model that is not in the zoo, swept like a zoo model — its cells calibrate
from the recorded spec and checkpoint, and the FP column comes from the artifact's rebuilt float model."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from calib.data_root import available, data_root
from intsim.cost._toml import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _files(tmp_path: Path) -> Path:
    shutil.copy(REPO / "examples" / "espcn_like.py", tmp_path / "net.py")
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_own_net", tmp_path / "net.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(2)
    torch.save(mod.build(3).state_dict(), tmp_path / "w.pt")
    return tmp_path


def _toml(folder: Path, own: str, models: str = '"espcn:3"') -> Path:
    p = folder / "s.toml"
    p.write_text(f'[sweep]\nout="o"\nmodels=[{models}]\nbits=["W8A8"]\nmethods=["minmax"]\ndatasets=["Set5"]\n'
                 f'[recipe]\nn_images=2\npatch=24\nepochs=0\n{own}')
    return p


def test_own_models_are_parsed_and_checked(tmp_path):
    from reports.sweep import load_sweep

    _files(tmp_path)
    s = load_sweep(_toml(tmp_path, '[own_models.espcn]\nmodel="net.py:build"\nweights="w.pt"\n'))
    (cell,) = s.cells
    assert cell.config.model == "espcn" and cell.config.scale == 3
    assert cell.config.spec == f"{tmp_path / 'net.py'}:build" and cell.config.weights == str(tmp_path / "w.pt")
    assert cell.id == "espcn_x3_w8a8_minmax_set5"
    for own, msg in [('[own_models.espcn]\nmodel="nope.py:build"\nweights="w.pt"\n', "is not a file"),
                     ('[own_models.espcn]\nmodel="net.py:build"\n', "weights: required"),
                     ('[own_models.imdn]\nmodel="net.py:build"\nweights="w.pt"\n', "not a zoo model's"),
                     ('[own_models.espcn]\nmodel="net.py:build"\nweights="w.pt"\nscale=3\n', "unknown key 'scale'")]:
        with pytest.raises(ConfigError, match=msg):
            load_sweep(_toml(tmp_path, own))


def test_own_model_cell_with_fp_from_the_artifact(tmp_path):
    if not available("data/Set5") or not available("data/SunHays80"):
        pytest.skip(f"needs data/Set5 and data/SunHays80 under the data root {data_root()}")
    from reports.sweep import load_sweep
    from reports.sweep_cell import _fp_scores, calibrate_config, evaluate_cell

    _files(tmp_path)
    s = load_sweep(_toml(tmp_path, '[own_models.espcn]\nmodel="net.py:build"\nweights="w.pt"\n'))
    (cell,) = s.cells
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        quick = replace(s.recipe, limit=1, crop=24)
        rec = calibrate_config(cell.config, quick, str(tmp_path / "o"), reuse=False)
        out = evaluate_cell(rec, cell, quick)
        assert out["golden_equals_intsim"] and out["model"] == "espcn" and out["intsim"]["n"] == 1
        fp = _fp_scores(cell.config, "Set5", s.recipe, rec["artifact"])  # whole Set5, rebuilt from the artifact
    finally:
        torch.set_num_threads(n)
    assert fp["n"] == 5 and 10 < fp["psnr"] < 60
