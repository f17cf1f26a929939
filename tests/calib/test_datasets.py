"""Data root resolver and benchmark / HR-folder readers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from calib import datasets as D
from calib.bicubic import bicubic_downsample
from calib.data_root import ENV_VAR, available, data_root, require


def _has(rel: str) -> bool:
    return (data_root() / rel).is_dir()


def test_data_root_env_and_require(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert data_root() == tmp_path.resolve()
    (tmp_path / "data").mkdir()
    assert require("data") == tmp_path.resolve() / "data"
    assert available("data") and not available("weights")
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        require("weights/imdn/IMDN_x2.pth")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        require("data")
    monkeypatch.delenv(ENV_VAR)
    assert data_root().name == "shared"


def test_read_rgb_modes_and_errors(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgb = D.read_rgb(tmp_path / "g.png")
    assert rgb.shape == (3, 4, 3) and all(np.array_equal(rgb[:, :, c], gray) for c in range(3))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert D.read_rgb(tmp_path / "a.png")[0, 0].tolist() == [200, 0, 0]
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(tmp_path / "w.png")
    with pytest.raises(D.ImageReadError, match="16-bit"):
        D.read_rgb(tmp_path / "w.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(D.ImageReadError, match="bad.png"):
        D.read_rgb(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        D.read_rgb(tmp_path / "missing.png")


def test_hr_folder_generates_and_caches(tmp_path):
    rng = np.random.default_rng(0)
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    imgs = {f"im{i}": rng.integers(0, 256, (26 + i, 31, 3), dtype=np.uint8) for i in range(2)}
    for n, a in imgs.items():
        Image.fromarray(a).save(hr_dir / f"{n}.png")
    (hr_dir / "notes.txt").write_text("ignored")
    cache = tmp_path / "cache"
    ds = D.HRFolder(hr_dir, 4, cache_dir=cache)
    assert len(ds) == 2 and ds.names == ["im0", "im1"]
    p = ds[1]
    assert p.hr.shape == (24, 28, 3) and p.lr.shape == (6, 7, 3)
    assert np.array_equal(p.lr, bicubic_downsample(imgs["im1"], 4))
    cached = cache / "X4" / "im1x4.png"
    assert cached.is_file() and not list(cache.glob("X4/.*tmp"))
    # a fresh reader takes the cached file
    marker = p.lr.copy()
    marker[0, 0] = 255 - marker[0, 0]
    Image.fromarray(marker).save(cached)
    assert np.array_equal(D.HRFolder(hr_dir, 4, cache_dir=cache).by_name("im1").lr, marker)
    # a wrong-size cache entry is regenerated
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(cached)
    assert np.array_equal(D.HRFolder(hr_dir, 4, cache_dir=cache)[1].lr, p.lr)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        D.HRFolder(empty, 2)


def test_benchmark_layout_with_official_lr(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "data" / "Set5"
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    hr = rng.integers(0, 256, (21, 20, 3), dtype=np.uint8)
    Image.fromarray(hr).save(root / "HR" / "a.png")
    lr = bicubic_downsample(hr, 2)
    Image.fromarray(lr).save(root / "LR_bicubic" / "X2" / "ax2.png")
    ds = D.benchmark("set5", 2, root=tmp_path)
    assert ds.official_lr and np.array_equal(ds[0].lr, lr) and ds[0].hr.shape == (20, 20, 3)
    ds3 = D.benchmark("Set5", 3, root=tmp_path)  # no X3 folder: generated
    assert not ds3.official_lr and ds3[0].lr.shape == (7, 6, 3)
    Image.fromarray(lr[:-1]).save(root / "LR_bicubic" / "X2" / "ax2.png")
    with pytest.raises(D.ImageReadError, match="does not match"):
        D.benchmark("Set5", 2, root=tmp_path)[0]
    with pytest.raises(KeyError, match="unknown benchmark"):
        D.benchmark("DIV2K", 2, root=tmp_path)
    with pytest.raises(FileNotFoundError):
        D.benchmark("Urban100", 2, root=tmp_path)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_real_set5_official_equals_generated(scale):
    if not _has("data/Set5/HR"):
        pytest.skip(f"Set5 not found under {data_root()}")
    ds = D.benchmark("Set5", scale)
    assert ds.official_lr and len(ds) == 5
    for pair in ds:
        assert np.array_equal(pair.lr, bicubic_downsample(pair.hr, scale)), pair.name


def test_real_benchmarks_present():
    if not _has("data"):
        pytest.skip(f"no data/ under {data_root()}")
    counts = {"Set5": 5, "Set14": 14, "B100": 68, "Urban100": 100}
    for name, n in counts.items():
        ds = D.benchmark(name, 4)
        assert len(ds) == n
    assert D.benchmark("b100-68", 2).display_name == "B100-68"
    bridge = D.benchmark("Set14", 3).by_name("bridge")  # mode L on disk
    assert bridge.hr.ndim == 3 and np.array_equal(bridge.hr[..., 0], bridge.hr[..., 2])
    assert bridge.lr.shape == (bridge.hr.shape[0] // 3, bridge.hr.shape[1] // 3, 3)
