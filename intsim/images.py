"""uint8 image input/output for the engine (torch-free).

Policy for the image modes a user may hand us (arithmetic.md §1.4):

* 3-channel artifacts take RGB. Grayscale (L), palette (P), RGBA/LA and CMYK
  are converted to RGB (alpha dropped) and a notice is reported to the caller.
* 1-channel artifacts take grayscale (L) only; anything else is refused,
  because the right luma conversion depends on the model (e.g. MATLAB Y).
* 16-bit and float images (I;16, I, F) are refused: the engine's input is
  8-bit and silently rescaling would change the numbers being verified.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intsim.artifact import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
_CONVERTIBLE_TO_RGB = {"L", "P", "RGBA", "LA", "CMYK", "PA", "1"}


class ImageError(ValueError):
    """An unusable image input; the message names the file."""


@dataclass(frozen=True)
class LoadedImage:
    path: str
    name: str  # file stem, used for output names
    pixels: np.ndarray  # uint8 H×W×C
    notice: str | None = None  # set when the mode was converted


def collect_image_paths(inputs: list[str]) -> list[Path]:
    """Expand files and folders (sorted, non-recursive) into image paths."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    if not paths:
        raise ImageError("no input images given")
    return paths


def read_image(path: str | os.PathLike, channels: int) -> LoadedImage:
    """Read an image file as uint8 H×W×``channels`` under the module's mode policy."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # forces full decode: truncated files fail here
            mode = im.mode
            notice = None
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise ImageError(f"{path}: {mode} ({'16-bit' if '16' in mode else '32-bit'}) images are not supported; convert to 8-bit")
            if channels == 3:
                if mode != "RGB":
                    if mode not in _CONVERTIBLE_TO_RGB:
                        raise ImageError(f"{path}: image mode {mode} is not supported")
                    notice = f"{path}: converted {mode} image to RGB"
                    im = im.convert("RGB")
            elif channels == 1:
                if mode != "L":
                    raise ImageError(f"{path}: this artifact takes 1-channel (L) images, got mode {mode}")
            else:
                raise ImageError(f"{path}: artifacts with {channels} input channels are not supported")
            arr = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return LoadedImage(str(path), path.stem, np.ascontiguousarray(arr), notice)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    arr = np.asarray(pixels, dtype=np.uint8)
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write a uint8 H×W×C image as PNG atomically."""
    atomic_write_bytes(path, png_bytes(pixels))
