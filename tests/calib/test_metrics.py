"""Y-PSNR / SSIM (calib.metrics) on known cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from calib import metrics as M


def _fspecial_gaussian(size=11, sigma=1.5):
    r = (size - 1) / 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    return h / h.sum()


def _ssim_bruteforce(a, b, L=255.0):
    """Straight transcription of ssim_index.m with explicit window loops ('valid')."""
    w = _fspecial_gaussian()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            m1, m2 = (w * pa).sum(), (w * pb).sum()
            s1 = (w * pa * pa).sum() - m1 * m1
            s2 = (w * pb * pb).sum() - m2 * m2
            s12 = (w * pa * pb).sum() - m1 * m2
            vals.append(((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1 * m1 + m2 * m2 + c1) * (s1 + s2 + c2)))
    return float(np.mean(vals))


def test_rgb2y_matlab_values():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(M.rgb2y(img)[0], [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966])


def test_identical_images():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 30, 3), dtype=np.uint8)
    assert M.psnr_y(img, img, 2) == math.inf
    assert M.ssim_y(img, img, 2) == pytest.approx(1.0, abs=1e-12)


def test_psnr_constant_offset_hand_computed():
    hr = np.full((20, 20), 100, np.uint8)
    sr = np.full((20, 20), 105, np.uint8)
    assert M.psnr_y(sr, hr, 2) == pytest.approx(20 * math.log10(255 / 5))
    # RGB: a uniform offset d in every channel moves Y by 219/255·d
    hr3 = np.full((20, 20, 3), 100, np.uint8)
    sr3 = np.full((20, 20, 3), 110, np.uint8)
    assert M.psnr_y(sr3, hr3, 3) == pytest.approx(20 * math.log10(255 / (10 * 219 / 255)))


def test_psnr_small_case_by_hand():
    a = np.array([[10, 20], [30, 40]], float)
    b = np.array([[12, 20], [30, 37]], float)  # squared errors 4, 0, 0, 9 -> MSE 13/4
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 3.25))


def test_border_crop_ignores_edges():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert M.psnr_y(sr, hr, 3) == math.inf
    assert M.psnr_y(sr, hr, 2) < 30


def test_sr_rounded_to_uint8_first():
    hr = np.full((16, 16, 3), 100, np.uint8)
    sr = np.full((16, 16, 3), 100.4)  # rounds to 100
    assert M.psnr_y(sr, hr, 2) == math.inf
    over = np.full((16, 16, 3), 300.0)  # clipped to 255
    assert M.psnr_y(over, np.full((16, 16, 3), 255, np.uint8), 2) == math.inf
    assert M.to_uint8(np.array([-4.0, 0.5, 1.5, 254.6])).tolist() == [0, 0, 2, 255]


def test_ssim_constant_images_closed_form():
    a = np.full((15, 15), 100.0)
    b = np.full((15, 15), 120.0)
    c1 = (0.01 * 255) ** 2
    assert M.ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1))


def test_ssim_matches_bruteforce_ssim_index():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 255, (23, 19))
    b = np.clip(a + rng.normal(0, 15, a.shape), 0, 255)
    assert M.ssim(a, b) == pytest.approx(_ssim_bruteforce(a, b), abs=1e-12)


def test_ssim_window():
    g = M.gaussian_window()
    np.testing.assert_allclose(np.outer(g, g), _fspecial_gaussian(), atol=1e-15)


def test_ssim_matches_skimage_if_available():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 255, (40, 37))
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255)
    assert M.ssim(a, b) == pytest.approx(ref, abs=1e-12)


def test_y_plane_policy():
    """A 2-D SR is a Y plane; against an RGB HR it is compared with the HR's uint8 Y plane."""
    rng = np.random.default_rng(4)
    hr = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    y8 = M.y_plane_uint8(hr)
    assert y8.dtype == np.uint8
    np.testing.assert_array_equal(y8, np.round(M.rgb2y(hr)).astype(np.uint8))
    assert M.psnr_y(y8, hr, 2) == math.inf
    assert M.ssim_y(y8[:, :, None], hr, 2) == pytest.approx(1.0)
    # gray replicated to RGB: Y = 16 + 219/255 · gray
    g = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    np.testing.assert_allclose(M.rgb2y(np.repeat(g[:, :, None], 3, 2)), 16 + 219 / 255 * g.astype(float))


def test_errors():
    with pytest.raises(ValueError):
        M.psnr_y(np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8), 1)
    with pytest.raises(ValueError):
        M.ssim(np.zeros((8, 8)), np.zeros((8, 8)))  # smaller than the window
    with pytest.raises(ValueError):
        M.shave(np.zeros((4, 4)), 2)
