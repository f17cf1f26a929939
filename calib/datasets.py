"""Benchmark and calibration image sets (numpy + PIL, torch-free).

Two layouts:

* an **HR folder** (:class:`HRFolder`): HR images only; the LR input is made on the fly with the
  MATLAB-compatible bicubic (``imresize(modcrop(HR, s), 1/s)`` on uint8, :mod:`calib.bicubic`),
  kept in memory and optionally in a cache folder (PNG, written atomically);
* the **EDSR benchmark layout** (:class:`BenchmarkFolder`): ``HR/`` plus
  ``LR_bicubic/X{s}/<name>x{s}.png``; when the LR folder for a scale is absent the LR is
  generated as above (Set14, B100-68 and Urban100 ship HR only).

Images are returned as uint8 H×W×3 RGB, read as ``intsim run`` reads its inputs (intsim/images.py):
grayscale, palette, RGBA/LA and CMYK are converted to RGB (alpha dropped); gray is replicated to 3
channels as EDSR-PyTorch and BasicSR do (Set14 ``bridge.png`` is mode L). 16-bit and float images,
and PPM/PGM with a maxval other than 255, are refused with a clear error.

Each item is an :class:`SRPair` ``(name, lr, hr, scale)`` with ``hr`` already modcropped to a
multiple of the scale, so ``hr.shape[:2] == (lr.shape[0] * s, lr.shape[1] * s)``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib.bicubic import bicubic_downsample, modcrop
from calib.data_root import data_root, require
from intsim.images import write_png

__all__ = ["SRPair", "ImageReadError", "read_rgb", "list_images", "HRFolder",
           "BenchmarkFolder", "benchmark", "BENCHMARKS", "hr_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")

#: benchmark name -> folder under ``<data root>/data`` and the name tables must print.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "set5": ("Set5", "Set5"),
    "set14": ("Set14", "Set14"),
    "b100": ("B100", "B100-68"),
    "urban100": ("Urban100", "Urban100"),
}


class ImageReadError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


ImageError = ImageReadError


@dataclass(frozen=True)
class SRPair:
    name: str  # file stem
    lr: np.ndarray  # uint8 H×W×3
    hr: np.ndarray  # uint8 (sH)×(sW)×3, modcropped
    scale: int


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as uint8 H×W×3 RGB under ``intsim run``'s input policy (:func:`intsim.images.read_image`:
    regular files of bounded size, 8-bit only, modes converted to RGB), so a calibration or benchmark image is
    read exactly as the engine's inputs are."""
    from intsim.images import ImageError as IntsimImageError
    from intsim.images import read_image

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image not found")
    try:
        return read_image(p, 3).pixels
    except IntsimImageError as exc:
        raise ImageError(str(exc)) from None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name, non-recursive)."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: image folder not found")
    found = sorted(q for q in d.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                   and not q.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"{d}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


class _PairSet:
    """Common sequence behaviour: len, indexing, iteration, name lookup; in-memory LR cache."""

    display_name: str
    scale: int
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.paths]

    def __iter__(self) -> Iterator[SRPair]:
        for i in range(len(self)):
            yield self[i]

    def by_name(self, name: str) -> SRPair:
        for i, p in enumerate(self.paths):
            if p.stem == name:
                return self[i]
        raise KeyError(f"{self.display_name}: no image named {name!r}")

    def __getitem__(self, i: int) -> SRPair:
        p = self.paths[i]
        hr = modcrop(read_rgb(p), self.scale)
        key = p.stem
        lr = self._mem.get(key)
        if lr is None:
            lr = self._make_lr(p, hr)
            self._mem[key] = lr
        return SRPair(name=p.stem, lr=lr, hr=hr, scale=self.scale)

    def _make_lr(self, hr_path: Path, hr: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display_name!r}, ×{self.scale}, {len(self)} images)"


class HRFolder(_PairSet):
    """HR images in a folder; LR made with the MATLAB bicubic (memory cache + optional disk cache).

    ``cache_dir``: LR PNGs are stored as ``cache_dir/X{s}/<name>x{s}.png`` (atomic writes) and
    reused when their size is right.
    """

    def __init__(self, folder: str | os.PathLike, scale: int, cache_dir: str | os.PathLike | None = None,
                 display_name: str | None = None, limit: int | None = None):
        self.folder = Path(folder)
        self.scale = _check_scale(scale)
        self.paths = list_images(self.folder)[:limit] if limit else list_images(self.folder)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.display_name = display_name or self.folder.name
        self._mem: dict[str, np.ndarray] = {}

    def _make_lr(self, hr_path: Path, hr: np.ndarray) -> np.ndarray:
        s = self.scale
        want = (hr.shape[0] // s, hr.shape[1] // s, 3)
        cached = None
        if self.cache_dir is not None:
            cached = self.cache_dir / f"X{s}" / f"{hr_path.stem}x{s}.png"
            if cached.is_file():
                try:
                    lr = read_rgb(cached)
                    if lr.shape == want:
                        return lr
                except ImageError:
                    pass  # unreadable cache entry: regenerate and overwrite
        lr = bicubic_downsample(hr, s)
        if cached is not None:
            write_png(cached, lr)  # atomic: a killed run never leaves a partial cache entry
        return lr


class BenchmarkFolder(_PairSet):
    """EDSR benchmark layout: ``HR/`` + ``LR_bicubic/X{s}/<name>x{s}.png`` (LR generated if absent)."""

    def __init__(self, folder: str | os.PathLike, scale: int, display_name: str | None = None,
                 cache_dir: str | os.PathLike | None = None, generate_missing: bool = True):
        self.folder = Path(folder)
        self.scale = _check_scale(scale)
        hr_dir = self.folder / "HR"
        if not hr_dir.is_dir():
            raise FileNotFoundError(f"{self.folder}: not a benchmark folder (no HR/ inside)")
        self.paths = list_images(hr_dir)
        self.lr_dir = self.folder / "LR_bicubic" / f"X{self.scale}"
        if not self.lr_dir.is_dir():
            if not generate_missing:
                raise FileNotFoundError(f"{self.lr_dir}: no official LR files for ×{self.scale}")
            self.lr_dir = None
        self.display_name = display_name or self.folder.name
        self._gen = HRFolder(hr_dir, self.scale, cache_dir=cache_dir, display_name=self.display_name)
        self._mem: dict[str, np.ndarray] = {}

    @property
    def official_lr(self) -> bool:
        """True when the LR comes from the official ``LR_bicubic`` files."""
        return self.lr_dir is not None

    def _make_lr(self, hr_path: Path, hr: np.ndarray) -> np.ndarray:
        s = self.scale
        if self.lr_dir is None:
            return self._gen._make_lr(hr_path, hr)
        lp = self.lr_dir / f"{hr_path.stem}x{s}{hr_path.suffix}"
        if not lp.is_file():
            lp = self.lr_dir / f"{hr_path.stem}x{s}.png"
        if not lp.is_file():
            raise FileNotFoundError(f"{lp}: LR file for {hr_path.name} missing from {self.lr_dir}")
        lr = read_rgb(lp)
        want = (hr.shape[0] // s, hr.shape[1] // s, 3)
        if lr.shape != want:
            raise ImageError(f"{lp}: LR shape {lr.shape} does not match modcrop(HR)/{s} = {want}")
        return lr


def _check_scale(scale: int) -> int:
    s = int(scale)
    if s < 1 or s != scale:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return s


def benchmark(name: str, scale: int, root: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None) -> BenchmarkFolder:
    """Set5, Set14, B100 (the 68-image colour subset, printed "B100-68") or Urban100 at ``scale``.

    ``root`` is the data root (default :func:`calib.data_root.data_root`); the folder is
    ``<root>/data/<Name>``. Raises :class:`FileNotFoundError` with a hint when it is absent.
    """
    folder, display = BENCHMARKS[benchmark_key(name)]
    path = require(Path("data") / folder, root)
    return BenchmarkFolder(path, scale, display_name=display, cache_dir=cache_dir)


def benchmark_key(name: str) -> str:
    """The :data:`BENCHMARKS` key of a set's name as users write it (``B100-68``, ``set_5``), or a
    :class:`KeyError` naming the known sets; touches no file, so a list of names can be checked first."""
    key = name.strip().lower().replace("-68", "").replace("_", "")
    if key not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(v[0] for v in BENCHMARKS.values())}")
    return key


def hr_folder(folder: str | os.PathLike, scale: int, cache_dir: str | os.PathLike | None = None,
              limit: int | None = None) -> HRFolder:
    """An HR-only folder (e.g. ``<data root>/data/SunHays80``, the DIV2K stand-in for calibration).

    A relative ``folder`` that does not exist as given is looked up under the data root.
    """
    p = Path(folder)
    if not p.is_dir() and not p.is_absolute():
        p = data_root() / p
    return HRFolder(p, scale, cache_dir=cache_dir, limit=limit)
