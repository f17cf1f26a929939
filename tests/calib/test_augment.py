"""calib.augment: photometric stress of calibration patches."""
from __future__ import annotations

import numpy as np
import pytest

from calib.augment import Stress, stress, stress_patches


def _img(seed=0, h=9, w=7):
    return np.random.default_rng(seed).integers(40, 200, size=(h, w, 3), dtype=np.uint8)


def test_identity_factors_leave_the_image_unchanged():
    img = _img()
    assert np.array_equal(stress(img, 1.0, 1.0), img)


def test_saturation_pivots_on_luma_and_contrast_on_the_mean():
    img = _img(1)
    out = stress(img, 2.0, 1.0).astype(np.float64)
    x = img.astype(np.float64)
    grey = x @ np.array([0.299, 0.587, 0.114])
    # luma is preserved up to rounding and clipping (the pivot), chroma doubles
    unclipped = (np.abs(2 * x - grey[..., None]) <= 255).all(axis=2) & (2 * x - grey[..., None] >= 0).all(axis=2)
    assert np.abs((out @ np.array([0.299, 0.587, 0.114]))[unclipped] - grey[unclipped]).max() <= 0.5
    chroma_in = np.abs(x - grey[..., None])[unclipped].mean()
    chroma_out = np.abs(out - grey[..., None])[unclipped].mean()
    assert chroma_out == pytest.approx(2 * chroma_in, rel=0.05)
    c = stress(img, 1.0, 1.5).astype(np.float64)
    assert c.std() > 1.4 * x.std() and abs(c.mean() - x.mean()) < 1.0


def test_output_is_uint8_and_grey_images_work():
    img = np.full((4, 4, 3), 250, np.uint8)
    img[0, 0] = 5
    out = stress(img, 2.0, 1.5)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert stress(grey, 2.0, 1.0).shape == (4, 4)


def test_fraction_is_seeded_and_leaves_the_rest_alone():
    patches = [_img(i) for i in range(40)]
    a = stress_patches(patches, Stress(fraction=0.5), seed=3)
    b = stress_patches(patches, Stress(fraction=0.5), seed=3)
    changed = [not np.array_equal(p, q) for p, q in zip(patches, a)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert 10 <= sum(changed) <= 30
    assert not any(not np.array_equal(p, q) for p, q in zip(patches, stress_patches(patches, Stress(0.0), 3)))


@pytest.mark.parametrize("kw", [dict(fraction=1.5), dict(fraction=-0.1), dict(saturation=(2.0, 1.0)),
                                dict(contrast=(0.0, 1.0))])
def test_bad_specs_are_refused(kw):
    with pytest.raises(ValueError):
        Stress(**kw)


def test_calibration_patches_keep_their_positions_under_stress(tmp_path):
    from PIL import Image

    from calib.calibrate import load_calibration_images

    for i in range(3):
        Image.fromarray(_img(i, 40, 50)).save(tmp_path / f"im{i}.png")
    plain = load_calibration_images(tmp_path, 6, 8, 1, seed=2)
    full = load_calibration_images(tmp_path, 6, 8, 1, seed=2, stress=Stress(fraction=1.0, saturation=(1.0, 1.0),
                                                                            contrast=(1.0, 1.0)))
    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(plain, full))
    some = load_calibration_images(tmp_path, 6, 8, 1, seed=2, stress=Stress(fraction=1.0))
    assert any(not np.array_equal(p.numpy(), q.numpy()) for p, q in zip(plain, some))
