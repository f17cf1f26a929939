"""Robustness cases: images (see harness.py for the contract; the policy is in intsim/images.py)."""
from __future__ import annotations

import io
import os
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np

from tests.robustness.harness import (
    Case,
    Setup,
    out_dir,
    valid_artifact,
    valid_image,
    valid_pixels,
)

# --------------------------------------------------------------------------
# builders of bad images


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _png_raw(w: int, h: int, depth: int, color_type: int, rows: bytes) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def _png16(w: int, h: int, channels: int) -> bytes:
    """A 16-bit PNG (gray: color type 0, RGB: color type 2)."""
    px = np.random.default_rng(0).integers(0, 65536, (h, w * channels)).astype(">u2")
    rows = b"".join(b"\x00" + px[y].tobytes() for y in range(h))
    return _png_raw(w, h, 16, 0 if channels == 1 else 2, rows)


def _pil_bytes(mode: str, fmt: str = "PNG", h: int = 12, w: int = 10) -> bytes:
    from PIL import Image

    im = Image.fromarray(valid_pixels(h, w))
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _write(folder: Path, name: str, data: bytes) -> Path:
    p = folder / name
    p.write_bytes(data)
    return p


def _run(folder: Path, img: Path | str, *extra, names: str | None = None, art: Path | None = None) -> Setup:
    art = art or valid_artifact(folder)
    out = out_dir(folder)
    return Setup(["run", art, img, "-o", out, *extra], str(img) if names is None else names, [out])


def _golden(folder: Path, img: Path | str, *extra, art: Path | None = None) -> Setup:
    art = art or valid_artifact(folder)
    out = folder / "golden"
    return Setup(["golden", art, img, "-o", out, *extra], str(img), [out])


# --------------------------------------------------------------------------
# small special artifacts (built with the factory's builder)


@cache
def _special_artifact_bytes(kind: str) -> bytes:
    import tempfile

    from intsim.artifact import Numerics, save_artifact
    from tests.artifact_factory import _Builder, _calibration_image, _finish

    rng = np.random.default_rng(7)
    img = _calibration_image(rng)
    B = _Builder(rng, Numerics(rounding="half_up", realization="split", overflow="saturate", acc_bits=32,
                               stream_bits=24, mult_bits=31), img[:, :, :1] if kind == "gray" else img)
    c = B.encode("head.enc", B.image_in("head.image_in", "input"), "uniform", 8)
    if kind == "gray":  # a 1-channel (luma) model
        y = B.conv("head.conv", c, 1, wbits=8)
    elif kind == "valid":  # unpadded 3×3 convs: each takes 2 rows and columns off
        y = B.conv("head.conv", c, 4, padding=(0, 0), wbits=8)
        y = B.conv("tail.conv", B.encode("body.enc", y, "uniform", 8), 3, padding=(0, 0), wbits=8)
    elif kind == "unet":  # a stride-2 path re-joining the full-resolution skip path
        s = B.conv("head.conv", c, 4, wbits=8)
        d = B.conv("down.conv", c, 4, stride=(2, 2), wbits=8)
        u = B.upsample_nearest("up.nearest", d, 2)
        y = B.conv("tail.conv", B.encode("tail.enc", B.add("join.add", s, u), "uniform", 8), 3, wbits=8)
    else:
        raise ValueError(kind)
    B.image_out("tail.image_out", y)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.intsim"
        save_artifact(_finish(B, 7, "minimal"), p)
        return p.read_bytes()


def _special_artifact(folder: Path, kind: str) -> Path:
    p = folder / f"{kind}.intsim"
    p.write_bytes(_special_artifact_bytes(kind))
    return p


# --------------------------------------------------------------------------
# the cases


def _missing(folder: Path) -> Setup:
    return _run(folder, folder / "nowhere.png")


def _broken_link(folder: Path) -> Setup:
    p = folder / "img.png"
    p.symlink_to(folder / "deleted.png")
    return _run(folder, p)


def _unreadable(folder: Path) -> Setup:
    # As root no permission bit blocks a read; a file whose read fails with EIO is genuinely unreadable.
    p = folder / "img.png"
    p.symlink_to("/proc/self/mem")
    return _run(folder, p)


def _is_folder(folder: Path) -> Setup:
    p = folder / "x.png"
    p.mkdir()
    return _run(folder, p)


def _not_image(folder: Path) -> Setup:
    return _run(folder, _write(folder, "notes.png", b"these are my notes, not a picture\n"))


def _truncated_png(folder: Path) -> Setup:
    data = _pil_bytes("RGB", "PNG", 64, 64)
    return _run(folder, _write(folder, "cut.png", data[: len(data) // 2]))


def _truncated_jpeg(folder: Path) -> Setup:
    data = _pil_bytes("RGB", "JPEG", 64, 64)
    return _run(folder, _write(folder, "cut.jpg", data[: len(data) // 2]))


def _one_bad_in_folder(folder: Path) -> Setup:
    d = folder / "lr"
    d.mkdir()
    valid_image(d, "a.png")
    data = _pil_bytes("RGB", "PNG", 64, 64)
    bad = _write(d, "b.png", data[: len(data) // 2])
    return _run(folder, d, names=str(bad))


def _png16_gray(folder: Path) -> Setup:
    return _run(folder, _write(folder, "depth16.png", _png16(10, 12, 1)))


def _png16_rgb(folder: Path) -> Setup:
    return _run(folder, _write(folder, "depth48.png", _png16(10, 12, 3)))


def _mode(mode: str):
    def build(folder: Path) -> Setup:
        return _run(folder, _write(folder, f"{mode.lower()}.png", _pil_bytes(mode)))

    return build


def _rgb_for_gray_model(folder: Path) -> Setup:
    return _run(folder, valid_image(folder), art=_special_artifact(folder, "gray"))


def _gray_for_gray_model(folder: Path) -> Setup:
    return _run(folder, _write(folder, "luma.png", _pil_bytes("L")), art=_special_artifact(folder, "gray"))


def _bomb(folder: Path) -> Setup:
    # 20000×20000 RGB declared in a 60-byte file: PIL's decompression-bomb limit is 2 × 89.5 Mpixel.
    return _run(folder, _write(folder, "bomb.png", _png_raw(20000, 20000, 8, 2, b"")))


def _tiny(h: int, w: int, cmd=_run):
    def build(folder: Path) -> Setup:
        return cmd(folder, valid_image(folder, f"tiny{w}x{h}.png", h, w))

    return build


def _too_small_valid(cmd=_run):
    def build(folder: Path) -> Setup:
        return cmd(folder, valid_image(folder, "small.png", 3, 3), art=_special_artifact(folder, "valid"))

    return build


def _odd_for_unet(folder: Path) -> Setup:
    return _run(folder, valid_image(folder, "odd.png", 13, 10), art=_special_artifact(folder, "unet"))


def _odd_size(folder: Path) -> Setup:
    return _run(folder, valid_image(folder, "odd.png", 13, 11))


def _cost(folder: Path, img: Path | str, *extra) -> Setup:
    art = valid_artifact(folder)
    out = folder / "cost.json"
    return Setup(["cost", art, "--images", img, "-o", out, *extra], str(img), [out])


def _large(mb: str, cmd=_run):
    def build(folder: Path) -> Setup:
        return cmd(folder, valid_image(folder, "large.png", 64, 64), "--max-memory", mb)

    return build


def _padded_png(size: int):
    """A valid 10×12 PNG followed by a hole up to ``size`` bytes (sparse: no disk space, no time to make)."""

    def build(folder: Path) -> Setup:
        p = valid_image(folder, "padded.png")
        os.truncate(p, size)
        return _run(folder, p)

    return build


def _ppm(maxval: int):
    """A binary 10×12 RGB PPM with ``maxval`` (2-byte samples above 255, as the format says)."""

    def build(folder: Path) -> Setup:
        width = 2 if maxval > 255 else 1
        body = np.random.default_rng(0).integers(0, maxval + 1, 10 * 12 * 3).astype(">u2" if width == 2 else "u1")
        return _run(folder, _write(folder, f"maxval{maxval}.ppm", b"P6\n10 12\n%d\n" % maxval + body.tobytes()))

    return build


def _empty_folder(folder: Path) -> Setup:
    d = folder / "lr"
    d.mkdir()
    (d / "readme.txt").write_text("no pictures here\n")
    return _run(folder, d)


_RF = ("an image smaller than the network's receptive field but on which every op has a non-empty output runs "
       "unchanged, with a notice (zero padding is part of the arithmetic, §5.1; benchmark LR images are often "
       "smaller than a deep net's receptive field); the receptive field is computed from the graph (kernel, "
       "stride, dilation, upsampling over every path, global pools excluded)")
_MEM = ("`run` estimates the untiled run's peak memory from the graph (live tensors + op temporaries); above "
        "the budget (--max-memory MB, default half of the available memory) it runs in bit-exact bands "
        "(`run_tiled`, same outputs and counters) with a notice")

CASES: list[Case] = [
    Case("image-missing", "Images", "image path does not exist", _missing, "no such file or folder"),
    Case("image-broken-link", "Images", "image path is a broken symbolic link", _broken_link,
         "broken symbolic link"),
    Case("image-unreadable", "Images", "image file cannot be read (I/O error)", _unreadable, "cannot read"),
    Case("image-is-folder", "Images", "image path is a folder named like an image (x.png)", _is_folder,
         "is a folder, not an image file"),
    Case("image-not-an-image", "Images", "a text file named .png", _not_image, "not a readable image"),
    Case("image-truncated-png", "Images", "truncated PNG", _truncated_png, "not a readable image",
         policy="the whole file is decoded before anything runs; a partial image is never used"),
    Case("image-truncated-jpeg", "Images", "truncated JPEG", _truncated_jpeg, "not a readable image",
         policy="the whole file is decoded before anything runs; a partial image is never used"),
    Case("image-folder-one-bad", "Images", "a folder of inputs, one of them truncated", _one_bad_in_folder,
         "not a readable image",
         policy="every input is read and checked before any output is written: nothing is written"),
    Case("image-16bit-gray", "Images", "16-bit grayscale PNG", _png16_gray, "16-bit images",
         policy="refused: the engine's input is 8-bit; rescaling would change the numbers being verified"),
    Case("image-16bit-rgb", "Images", "16-bit RGB PNG (48-bit colour)", _png16_rgb, "16-bit images",
         policy="refused (PIL alone would silently truncate it to 8 bits)"),
    Case("image-grayscale", "Images", "grayscale (L) image for an RGB model", _mode("L"),
         "converted L image to RGB", kind="accepted", policy="converted to RGB (gray replicated), with a notice"),
    Case("image-rgba", "Images", "RGBA image for an RGB model", _mode("RGBA"), "converted RGBA image to RGB",
         kind="accepted", policy="converted to RGB (alpha dropped), with a notice"),
    Case("image-palette", "Images", "palette (P) image for an RGB model", _mode("P"),
         "converted P image to RGB", kind="accepted", policy="converted to RGB, with a notice"),
    Case("image-rgb-for-gray-model", "Images", "RGB image for a 1-channel (luma) model", _rgb_for_gray_model,
         "takes 1-channel (L) images",
         policy="refused: the right luma conversion depends on the model (e.g. MATLAB Y)"),
    Case("image-gray-for-gray-model", "Images", "grayscale image for a 1-channel model", _gray_for_gray_model,
         "wrote 1 image(s)", kind="accepted", policy="L images feed 1-channel models as they are"),
    Case("image-decompression-bomb", "Images", "PNG header declaring 20000×20000 pixels (decompression bomb)",
         _bomb, "decompression bomb",
         policy="refused before decoding (PIL's limit, Image.MAX_IMAGE_PIXELS), with the size"),
    Case("image-tiny-1x1", "Images", "1×1 image (smaller than the receptive field)", _tiny(1, 1),
         "smaller than the network's receptive field", kind="accepted", policy=_RF),
    Case("image-tiny-2x2-golden", "Images", "2×2 image through `golden`", _tiny(2, 2, _golden),
         "smaller than the network's receptive field", kind="accepted", needs=("torch",), policy=_RF),
    Case("image-too-small-for-graph", "Images", "image too small for an unpadded conv (graph cannot run)",
         _too_small_valid(), "needs at least 5×5 pixels",
         policy="refused with the minimum size, computed from the graph (every op's output must be non-empty)"),
    Case("image-too-small-for-graph-golden", "Images", "image too small for an unpadded conv, through `golden`",
         _too_small_valid(_golden), "needs at least 5×5 pixels",
         policy="refused before torch is imported, with the minimum size"),
    Case("image-size-does-not-fit-graph", "Images", "odd size through a stride-2 path re-joining a skip path",
         _odd_for_unet, "the nearest larger size that runs is 10×14",
         policy="refused with the nearest larger size that runs (no silent crop or pad)"),
    Case("image-size-not-multiple", "Images", "LR size not a multiple of anything (13×11)", _odd_size,
         "wrote 1 image(s)", kind="accepted",
         policy="`run` takes LR inputs of any size and never crops; `eval` crops each HR image to a multiple "
                "of the scale (MATLAB modcrop) before making its LR (calib/datasets.py)"),
    Case("image-too-large-tiled", "Images", "image whose untiled run exceeds the memory budget", _large("4"),
         "running in bands of", kind="accepted", policy=_MEM),
    Case("image-too-large-refused", "Images", "image that exceeds the memory budget even in bands",
         _large("0.5"), "above the memory budget",
         policy="refused with the untiled and tiled estimates when even bands of one row do not fit"),
    Case("image-too-large-golden", "Images", "image whose golden run exceeds the memory budget even in bands",
         _large("0.05", _golden), "even in bands of 1 row",
         policy="golden runs one input at a time in bands of rows, writing each tensor as it is produced; "
                "refused with the estimate only when even 1-row bands (and the tensors the band plan holds "
                "whole) do not fit"),
    Case("image-too-large-cost-tiled", "Images", "`cost --images` on an image whose untiled run exceeds the "
         "memory budget", _large("4", _cost), "running in bands of", kind="accepted",
         policy="`cost --images` takes `run`'s budget and tiling: bit-exact bands give the same counters"),
    Case("image-too-large-cost-refused", "Images", "`cost --images` on an image that exceeds the memory budget "
         "even in bands", _large("0.5", _cost), "above the memory budget",
         policy="refused with the estimates before anything runs, as `run` does"),
    Case("image-too-large-to-decode", "Images", "image whose decoded pixels alone exceed the memory budget",
         _large("0.005"), "just to decode",
         policy="refused from the header, before any pixel is decoded"),
    Case("image-folder-empty", "Images", "input folder holds no images", _empty_folder, "folder holds no images"),
    Case("image-sparse-3gib", "Images", "a 3 GiB image file (a small PNG and a sparse hole)", _padded_png(3 << 30),
         "accepted for an image", policy="judged by stat before it is opened: a file larger than the largest image "
         "PIL decodes is refused unread"),
    Case("image-png-trailing-data", "Images", "a 10×12 PNG followed by 64 MiB of other data", _padded_png(64 << 20),
         "more than a 10×12 PNG can need", policy="a PNG is judged from its IHDR header before any chunk is read"),
    Case("image-ppm-16bit", "Images", "16-bit PPM (maxval 65535)", _ppm(65535), "16-bit images (PPM/PGM maxval 65535)",
         policy="refused, as 16-bit PNG is: PIL would scale it to 8 bits silently"),
    Case("image-ppm-maxval-100", "Images", "PPM with maxval 100", _ppm(100), "PPM/PGM images with maxval 100",
         policy="refused: PIL would stretch its samples to 0..255 silently"),
]

