"""calib.quality: the verdict every report shows next to bit-exactness."""
from __future__ import annotations

from calib.quality import verdict


def test_verdict_levels():
    assert verdict(32.0, 31.9, 28.0).level == "good"
    assert verdict(32.0, 31.2, 28.0).level == "fair"
    assert verdict(32.0, 30.0, 28.0).level == "degraded"
    v = verdict(32.0, 27.6, 28.4)
    assert v.level == "bad" and not v.ok and "below bicubic" in v.text and "-0.80 dB vs bicubic" in v.text
    assert verdict(32.0, None, 28.0).level == "unknown"
    assert verdict(32.0, 31.9, None).level == "good"


def _folder(tmp_path, n):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(tmp_path / f"im{i:02d}.png")
    return tmp_path


def test_held_out_images_stay_unseen_however_many_patches(tmp_path):
    """More patches than images cycle over the calibration pool, never over the held-out images."""
    import numpy as np

    from calib.calibrate import HOLDOUT_RESERVE, calibration_pool, load_calibration_images
    from calib.datasets import list_images
    from calib.quality import holdout_pairs

    n_files = 2 * HOLDOUT_RESERVE + 4
    folder = _folder(tmp_path, n_files)
    assert calibration_pool(n_files) == n_files - HOLDOUT_RESERVE and calibration_pool(10) == 10
    pairs, disjoint = holdout_pairs(folder, 2, 5 * n_files, seed=1, n_eval=8, patch=6)
    assert disjoint and len(pairs) == 8
    held = {name for name, _, _ in pairs}
    order = np.random.default_rng(1).permutation(n_files)
    files = list_images(folder)
    used = {files[int(order[i % calibration_pool(n_files)])].name for i in range(5 * n_files)}
    assert not held & used
    # the patches really come from the pool only: whole images (patch None) match pool files, never held-out ones
    from calib.datasets import read_rgb

    pixels = {f.name: read_rgb(f) for f in files}
    imgs = load_calibration_images(folder, 3 * n_files, None, 1, seed=1)
    seen = {name for t in imgs for name, px in pixels.items()
            if np.array_equal(np.rint(t.numpy().transpose(1, 2, 0)).astype(np.uint8), px)}
    assert len(imgs) == 3 * n_files and seen == used


def test_stressed_held_out_pairs_are_the_same_images_saturated(tmp_path):
    from calib.quality import holdout_pairs

    folder = _folder(tmp_path, 6)
    plain, _ = holdout_pairs(folder, 2, 2, seed=0, n_eval=3, patch=8)
    st, _ = holdout_pairs(folder, 2, 2, seed=0, n_eval=3, patch=8, stressed=True)
    assert [n for n, _, _ in plain] == [n for n, _, _ in st]
    assert all(a.shape == b.shape and (a != b).any() for (_, a, _), (_, b, _) in zip(plain, st))
