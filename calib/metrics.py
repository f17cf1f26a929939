"""Y-PSNR and SSIM with the protocol every SR paper uses (numpy only).

In calib, not reports: calibration's held-out check and the evaluation score with them, and calib sits
below reports (pyproject.toml, [tool.importlinter]); reports imports them from here.

Protocol (shared README, "Evaluation protocol"):

* the SR output is rounded to uint8 first (:func:`to_uint8`: round half to even
  after clipping to [0, 255], as ``np.round`` / ``torch.round`` do; the caller may
  also pass uint8 directly);
* both images go to the Y channel of MATLAB ``rgb2ycbcr`` on the 0–255 scale,
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, kept in float64 (not rounded,
  as MATLAB evaluation scripts do with ``rgb2ycbcr(im2double(.))`` × 255);
* ``scale`` pixels are cropped from every border;
* PSNR = 10 log10(255² / MSE); SSIM is Wang et al.'s ``ssim_index.m``: 11×11 Gaussian
  window with σ = 1.5 (normalised), K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering
  (no padding, no downsampling), mean of the SSIM map.

Single-channel policy:

* a 2-D array (or H×W×1) is a **Y plane** on the 0–255 scale — what Y-only models (VDSR, FSRCNN)
  produce after rounding to uint8;
* when SR is a Y plane and HR is RGB, the reference is the HR's **uint8 Y plane**
  (``round(rgb2y(HR))``, what MATLAB ``rgb2ycbcr`` and BasicSR ``bgr2ycbcr`` return for uint8
  input): two uint8 Y images are compared. This reproduces the shared README's VDSR/FSRCNN
  numbers within 0.01 dB (an unrounded reference Y measures 0.01–0.04 dB higher);
* when both are RGB, both Y planes stay float (unrounded), which reproduces IMDN/CARN-M;
* a grayscale *image file* (Set14 ``bridge.png`` is mode L) is replicated to RGB when it is read
  (``calib.datasets``, as EDSR-PyTorch and BasicSR do), so its Y is ``16 + 219/255 · gray`` like
  any other RGB image; never pass a raw gray plane as HR for an RGB model (it would be taken as Y).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "rgb2y",
    "to_uint8",
    "to_y",
    "shave",
    "psnr",
    "ssim",
    "psnr_y",
    "ssim_y",
    "gaussian_window",
    "y_plane_uint8",
]

_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round (half to even) to uint8; uint8 input is returned unchanged."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.number):
        raise TypeError(f"expected a numeric image, got {img.dtype}")
    return np.round(np.clip(img.astype(np.float64), 0.0, 255.0)).astype(np.uint8)


def rgb2y(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` Y channel on the 0–255 scale (float64, unrounded). Input H×W×3 RGB on 0–255."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb2y needs an H×W×3 RGB image, got shape {img.shape}")
    return 16.0 + (img @ _Y_COEFFS) / 255.0


def to_y(img: np.ndarray) -> np.ndarray:
    """Y plane (float64, 0–255 scale) of an RGB image; a 2-D / H×W×1 array is taken as Y already."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img.astype(np.float64)
    return rgb2y(img)


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Crop ``border`` pixels from every side."""
    border = int(border)
    if border < 0:
        raise ValueError("border must be >= 0")
    if border == 0:
        return img
    h, w = img.shape[0], img.shape[1]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"image {h}×{w} is too small to crop {border} pixels from each border")
    return img[border:h - border, border:w - border, ...]


def y_plane_uint8(img: np.ndarray) -> np.ndarray:
    """uint8 Y plane of a uint8 RGB image (``rgb2y`` rounded); a 2-D / H×W×1 input is returned as is."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return to_uint8(img)
    return to_uint8(rgb2y(to_uint8(img)))


def _is_plane(img: np.ndarray) -> bool:
    return img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)


def _prepare(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    sr = to_uint8(sr)
    hr = to_uint8(hr)
    if _is_plane(sr) and not _is_plane(hr):
        ys, yh = to_y(sr), y_plane_uint8(hr).astype(np.float64)  # Y model vs RGB HR: uint8 Y planes
    else:
        ys, yh = to_y(sr), to_y(hr)
    if ys.shape != yh.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in size")
    return shave(ys, border), shave(yh, border)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR between two same-shaped float arrays (no conversion, no cropping). ``inf`` when identical."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D normalised Gaussian taps; MATLAB ``fspecial('gaussian', size, sigma)`` is its outer product."""
    r = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - r
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2-D 'valid' correlation with the separable window ``outer(g, g)``."""
    n = g.size
    h, w = img.shape
    if h < n or w < n:
        raise ValueError(f"image {h}×{w} is smaller than the {n}×{n} SSIM window")
    rows = np.lib.stride_tricks.sliding_window_view(img, n, axis=0) @ g  # (h-n+1, w)
    return np.lib.stride_tricks.sliding_window_view(rows, n, axis=1) @ g  # (h-n+1, w-n+1)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """Wang et al. ``ssim_index.m`` on two 2-D float arrays (mean of the 'valid' SSIM map)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two same-shaped 2-D arrays, got {a.shape} and {b.shape}")
    g = gaussian_window(win_size, sigma)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu1 = _filter_valid(a, g)
    mu2 = _filter_valid(b, g)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter_valid(a * a, g) - mu1_sq
    s2 = _filter_valid(b * b, g) - mu2_sq
    s12 = _filter_valid(a * b, g) - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


def psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Y-PSNR of SR against HR, ``scale`` border pixels cropped (SR rounded to uint8 first)."""
    ys, yh = _prepare(sr, hr, scale)
    return psnr(ys, yh)


def ssim_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Y-SSIM of SR against HR, ``scale`` border pixels cropped (SR rounded to uint8 first)."""
    ys, yh = _prepare(sr, hr, scale)
    return ssim(ys, yh)
