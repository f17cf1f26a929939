"""calib.quantize: the README's example runs as written; the data API's forms and its one-line refusals."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import calib

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- own-model-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its own-model example"
    return m.group(1)


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(readme_example(), "README.md:own-model-example", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out == "W8A8 (32, 32, 3) uint8"
    from intsim.artifact import load_artifact

    art = load_artifact(tmp_path / "tiny_w8a8.intsim")
    assert art.metadata["source"]["kind"] == "object" and art.model["scale"] == 2


class _Y(nn.Module):
    """A 1-channel (Y) model with the EDSR-style 0..255 range."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.c(x))


def _images(n=3, side=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]


def test_channels_inferred_and_range_an_argument(tmp_path):
    from calib.graph import capture

    torch.manual_seed(1)
    net = _Y()
    art = calib.quantize(net, iter(_images()), scale=2, bits="W8A8", method="minmax", n_images=3, patch=16,
                         rgb_range=255, holdout=False)  # a generator is an iterable too
    assert art.tensors[art.inputs[0]].channels == 1  # from the first conv's in_channels
    assert art.metadata["source"]["rgb_range"] == 255.0 and art.metadata["capture"]["rgb_range"] == 255.0
    assert not hasattr(net, "rgb_range") and not hasattr(net, "n_colors")
    assert capture(net, rgb_range=255.0, in_channels=1).in_channels == 1


def test_folder_array_list_and_lr_layout_agree(tmp_path):
    """The same images as a list or as a folder give the same artifact; 'lr' skips the downsampling."""
    from intsim.images import write_png

    imgs = _images(4, 48, seed=2)
    folder = tmp_path / "hr"
    folder.mkdir()
    for k, a in enumerate(imgs):
        write_png(folder / f"calib_{k:05d}.png", a)
    kw = dict(scale=2, bits="W8A8", method="minmax", n_images=4, patch=16, holdout=False)
    torch.manual_seed(3)
    net = _Y()
    a = calib.quantize(net, imgs, **kw)
    b = calib.quantize(net, str(folder), calib_layout="hr", **kw)
    c = calib.quantize(net, imgs, calib_layout="lr", **kw)
    assert a.graph_json()["arrays"] == b.graph_json()["arrays"]
    assert a.metadata["layers"] == b.metadata["layers"]  # the observed ranges too
    # LR patches are other patches: the conv's observed input range differs (its codes span [0, 1] either way)
    assert a.metadata["layers"]["c"]["observer"] != c.metadata["layers"]["c"]["observer"]


def test_numerics_and_policy_reach_the_artifact(tmp_path):
    torch.manual_seed(4)
    art = calib.quantize(_Y(), _images(), scale=2, bits="W4A4", method="minmax", n_images=3, patch=16,
                         holdout=False, policy="all", numerics={"rounding": "half_even", "acc_bits": 24})
    assert art.numerics.rounding == "half_even" and art.numerics.acc_bits == 24
    assert set(art.model["code_bits"].values()) <= {4, 5}  # policy 'all': no 8-bit head/tail


@pytest.mark.parametrize("kwargs,needle", [
    (dict(calib_data=[np.zeros((8, 8, 3), np.float32)]), "expected uint8 pixels"),
    (dict(calib_data=[np.zeros((8, 8, 2), np.uint8)]), "expected H×W×3"),
    (dict(calib_data=[]), "holds no images"),
    (dict(calib_data=np.zeros((8, 8, 3), np.uint8)), "a folder or an iterable"),
    (dict(calib_data=[np.zeros((8, 8, 3), np.uint8)], numerics={"round": "x"}), "unknown numerics setting"),
    (dict(calib_data=[np.zeros((8, 8, 3), np.uint8)], in_channels=2), "takes 2 image channels"),
    (dict(calib_data=[np.zeros((8, 8, 3), np.uint8)], rgb_range=-1), "rgb_range must be a positive number"),
    (dict(calib_data=[np.zeros((8, 8, 3), np.uint8)], weights="w.pt"), "brings its own"),
])
def test_bad_input_is_one_line_value_error(kwargs, needle):
    with pytest.raises(ValueError) as e:
        calib.quantize(_Y(), scale=2, bits="W8A8", **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_no_model_no_attribute_error():
    with pytest.raises(ValueError, match="torch.nn.Module or a string"):
        calib.quantize(object(), [np.zeros((8, 8, 3), np.uint8)], scale=2, bits="W8A8")
    with pytest.raises(ValueError, match="no conv to infer the image channels"):
        calib.quantize(nn.PixelShuffle(2), [np.zeros((8, 8, 3), np.uint8)], scale=2, bits="W8A8")
