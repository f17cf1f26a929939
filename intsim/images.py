"""uint8 image input/output for the engine (torch-free).

Policy for the image modes a user may hand us (arithmetic.md §1.4):

* 3-channel artifacts take RGB. Grayscale (L), palette (P), RGBA/LA and CMYK
  are converted to RGB (alpha dropped) and a notice is reported to the caller.
* 1-channel artifacts take grayscale (L) only; anything else is refused,
  because the right luma conversion depends on the model (e.g. MATLAB Y).
* 16-bit and float images (I;16, I, F, and 16-bit RGB/RGBA PNGs, which PIL
  would otherwise truncate to 8 bits silently) are refused: the engine's input
  is 8-bit and silently rescaling would change the numbers being verified. So
  is a PPM/PGM whose maxval is not 255 (PIL would rescale its samples).
* Unreadable files (missing, a broken symbolic link, a folder named like an
  image, a FIFO or device, an I/O error), files that are not images, and truncated
  images (PNG, JPEG: the whole file is decoded, never a partial image) are refused
  with one line naming the file. The file is never read whole up front: only
  regular files of a bounded size are opened (:func:`intsim.artifact.open_regular`),
  and a PNG larger than its header's image can need is refused from the header.
* Size (checked before any pixel is decoded): an image whose decoded pixels
  alone exceed the memory budget is refused, and so is one above PIL's
  decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), with its size.

What the *graph* needs of an image's size is decided by the caller (``intsim run``
and ``golden``, with :mod:`intsim.footprint`): an image on which some op's
output would be empty (e.g. an unpadded conv) or whose paths would not re-join
(odd sizes through a stride-2 path) is refused with the minimum / nearest size
that runs; an image smaller than the receptive field but runnable is run, with
a notice (every output pixel then reads zero padding, which is part of the
arithmetic spec, arithmetic.md §5.1); an image whose untiled run would exceed
the memory budget is run in bit-exact bands (:func:`intsim.tiling.run_tiled`),
or refused with the estimate when even that cannot fit. Inputs are LR images
of any size: nothing is cropped.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intsim.artifact import atomic_write_bytes, open_regular

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
_CONVERTIBLE_TO_RGB = {"L", "P", "RGBA", "LA", "CMYK", "PA", "1"}
#: room for an image file's metadata (ICC profiles, EXIF, text) beyond its pixel data
_METADATA_BYTES = 16 << 20


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
            try:
                found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            except OSError as e:
                raise ImageError(f"{p}: cannot list the folder ({e.strerror})") from None
            if not found:
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    raise ImageError(f"{p}: is a folder, not an image file (and holds no images)")
                raise ImageError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        elif p.is_symlink():
            raise ImageError(f"{p}: broken symbolic link (its target {os.readlink(p)} does not exist)")
        elif p.exists():
            raise ImageError(f"{p}: not a regular file or folder")
        else:
            raise ImageError(f"{p}: no such file or folder")
    if not paths:
        raise ImageError("no input images given")
    return paths


def read_image(path: str | os.PathLike, channels: int, max_bytes: int | None = None) -> LoadedImage:
    """Read an image file as uint8 H×W×``channels`` under the module's mode policy.

    ``max_bytes``: refuse (before decoding) an image whose decoded pixels would
    take more bytes than this (the caller's memory budget).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    # the largest file PIL decodes: 2 × MAX_IMAGE_PIXELS (its hard limit) of RGBA, uncompressed, plus metadata
    with open_regular(path, 8 * Image.MAX_IMAGE_PIXELS + _METADATA_BYTES, ImageError, "an image") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            _check_png_size(f, path, size)
            f.seek(0)
            with warnings.catch_warnings():
                # sizes are checked against the memory budget below; PIL's hard limit still applies
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im_file = Image.open(f)
        except ImageError:
            raise
        except Image.DecompressionBombError as e:
            raise ImageError(f"{path}: refusing to decode a possible decompression bomb ({e})") from None
        except UnidentifiedImageError:
            raise ImageError(f"{path}: not a readable image (no image format recognises its "
                             f"{size} bytes)") from None
        except OSError as e:
            if e.errno is not None:  # a failed read (PIL's own complaints carry no errno)
                raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
            raise ImageError(f"{path}: not a readable image ({e})") from None
        except (SyntaxError, ValueError) as e:
            raise ImageError(f"{path}: not a readable image ({e})") from None
        return _decode(im_file, path, channels, max_bytes)


def _check_png_size(f, path: Path, size: int) -> None:
    """Refuse a PNG file larger than its header's image can need, before PIL reads any chunk: what lies
    beyond (data after the image, a bloated metadata chunk, a sparse hole) would otherwise be read whole."""
    head = f.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 26:
        return  # not a PNG, or one cut inside its IHDR: PIL refuses it as truncated (found by fuzzing)
    w, h, depth, color = struct.unpack(">IIBB", head[16:26])
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 4)
    raw = h * (1 + (w * samples * depth + 7) // 8)  # filtered scanlines, the data deflate compresses
    # stored (incompressible) deflate blocks and IDAT framing add well under 1 %; Adam7 interlacing adds
    # filter bytes per pass; 2× and room for metadata (ICC profiles, text) cover every encoder
    limit = 2 * raw + _METADATA_BYTES
    if size > limit:
        raise ImageError(f"{path}: is {size} bytes, more than a {w}×{h} PNG can need (at most {limit}): data after "
                         f"the image or an oversized chunk; refused unread")


def _decode(im_file, path: Path, channels: int, max_bytes: int | None) -> LoadedImage:
    """The pixels of an opened image under the module's policy (mode, bits, size)."""
    from PIL import UnidentifiedImageError

    try:
        with im_file as im:
            w, h = im.size
            if w < 1 or h < 1:
                raise ImageError(f"{path}: image is empty ({w}×{h})")
            decoded = w * h * max(len(im.getbands()), channels)
            if max_bytes is not None and decoded > max_bytes:
                from intsim.footprint import mib

                raise ImageError(f"{path}: a {w}×{h} image needs {mib(decoded)} just to decode, above the memory "
                                 f"budget of {mib(max_bytes)} (--max-memory MB)")
            mode = im.mode
            args = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else ""
            maxval = args[1] if im.format == "PPM" and isinstance(args, tuple) and len(args) == 2 else 255
            if maxval > 255:  # PIL would scale the samples down to 8 bits
                raise ImageError(f"{path}: 16-bit images (PPM/PGM maxval {maxval}) are not supported; convert to 8-bit")
            if maxval != 255:  # PIL would stretch the samples to 0..255
                raise ImageError(f"{path}: PPM/PGM images with maxval {maxval} are not supported (their samples would "
                                 f"be rescaled to 0..255); convert to 8-bit with maxval 255")
            raw = str(args)  # the raw mode, e.g. RGB;16B
            if mode in ("I;16", "I;16B", "I;16L", "I", "F") or ";16" in raw:
                bits = "32-bit" if mode in ("I", "F") else "16-bit"
                raise ImageError(f"{path}: {bits} images ({mode}{'' if mode.startswith('I') else ', ' + raw}) are "
                                 f"not supported; convert to 8-bit")
            im.load()  # forces full decode: truncated files fail here
            notice = None
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
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
