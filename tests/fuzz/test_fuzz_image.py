"""Fuzz the image reader: ``read_image(path, channels)`` may only raise ``ImageError`` naming the file.

Seeds: small PNG (RGB, L, RGBA, P, LA, 16-bit), JPEG, BMP, TIFF, PPM/PGM, GIF, WebP.
Strategies: byte mutations (with PNG chunk CRCs recomputed half of the time, so that
mutated headers — e.g. huge dimensions — reach the decoder), header-field rewrites,
and fully random bytes; ``channels`` in {1, 3} mostly, sometimes 0/2/4.
"""
from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from intsim.images import ImageError, read_image
from tests.fuzz.common import check, fuzz_settings, mutated_bytes, random_bytes, scratch

TARGET = "image"


@cache
def seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    out = []
    for im, fmt in ((rgb, "PNG"), (rgb.convert("L"), "PNG"), (rgb.convert("RGBA"), "PNG"),
                    (rgb.convert("P"), "PNG"), (rgb.convert("LA"), "PNG"),
                    (Image.fromarray(rng.integers(0, 65535, (4, 3), dtype=np.uint16)), "PNG"),
                    (rgb, "JPEG"), (rgb, "BMP"), (rgb, "TIFF"), (rgb, "PPM"), (rgb.convert("L"), "PPM"),
                    (rgb.convert("P"), "GIF"), (rgb, "WEBP"), (rgb.convert("CMYK"), "JPEG"),
                    (rgb.convert("1"), "PNG"), (rgb.convert("F"), "TIFF")):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC of a (possibly mutated) PNG so decoders see the mutation."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, i = bytearray(data[:8]), 8
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        end = i + 8 + n
        if end + 4 > len(data):
            out += data[i:]
            return bytes(out)
        body = data[i + 4:end]
        out += data[i:end] + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        i = end + 4
    out += data[i:]
    return bytes(out)


@st.composite
def header_rewrite(draw) -> bytes:
    """A PNG whose IHDR width/height/depth/colour type are rewritten (CRC fixed)."""
    data = bytearray(draw(st.sampled_from(seeds()[:6])))
    w = draw(st.sampled_from([0, 1, 2**16, 2**31 - 1, 2**32 - 1, 100000])) if draw(st.booleans()) else None
    h = draw(st.sampled_from([0, 1, 2**16, 2**31 - 1, 2**32 - 1, 100000])) if draw(st.booleans()) else None
    if w is not None:
        data[16:20] = struct.pack(">I", w)
    if h is not None:
        data[20:24] = struct.pack(">I", h)
    if draw(st.booleans()):
        data[24] = draw(st.sampled_from([0, 1, 2, 4, 8, 16, 32, 255]))
    if draw(st.booleans()):
        data[25] = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 7, 255]))
    return fix_png_crcs(bytes(data))


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(["bytes", "bytes", "bytes+crc", "header", "random"]))
    if kind == "bytes":
        data = draw(mutated_bytes(seeds))
    elif kind == "bytes+crc":
        data = fix_png_crcs(draw(mutated_bytes(lambda: seeds()[:6])))
    elif kind == "header":
        data = draw(header_rewrite())
    else:
        data = draw(random_bytes)
    channels = draw(st.sampled_from([3, 3, 1, 1, 0, 2, 4]))
    return data, channels, kind


def run_case(data: bytes, channels: int, kind: str) -> None:
    with scratch() as d:
        p = d / "img.png"
        p.write_bytes(data)
        check(TARGET, lambda: read_image(p, channels), ImageError, str(p),
              f"{kind}, channels={channels}, bytes={data[:400]!r}")


@fuzz_settings()
@given(case=cases())
# found by the full run: a PNG cut inside its IHDR made the size check's struct.unpack fail (struct.error)
@example(case=(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x05\x00\x00", 1, "bytes+crc"))
def test_fuzz_image(case):
    run_case(*case)
