"""Hostile and broken pictures for the engine's tests, built in memory (the attacks of issue 11)."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 16 16
%%EndComments
0 0 moveto 16 16 lineto stroke
showpage
%%EOF
"""

SVG = b"""<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><script>alert(1)</script>
<rect width="64" height="64" fill="red"/></svg>
"""


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def huge_png(width: int, height: int) -> bytes:
    """A complete, valid black 1-bit PNG of any size: a few kB that decode to width x height pixels."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def bomb_header(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG header claiming a huge size, with almost no data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def noise(size: tuple[int, int], fmt: str = "PNG", seed: int = 0) -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    data = noise((128, 96), "JPEG", seed=3)
    return data[: len(data) // 2]


def thin_png(width: int = 1, height: int = 20000) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
    return out.getvalue()


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 100).save(out, format=fmt)
    return out.getvalue()



def photo(size: tuple[int, int], seed: int = 0, grain: float = 0.15) -> Image.Image:
    """A photo-like picture: smooth colour fields, a sharp-edged label and sensor-like grain (what phones send)."""
    rng = random.Random(seed)
    small = Image.frombytes("RGB", (16, 12), bytes(rng.randrange(256) for _ in range(16 * 12 * 3)))
    image = small.resize(size, Image.Resampling.BICUBIC)
    image.paste((250, 250, 250), (size[0] // 8, size[1] // 8, size[0] // 3, size[1] // 3))
    return Image.blend(image, Image.effect_noise(size, 24).convert("RGB"), grain)


def jpeg(image: Image.Image, orientation: int = 1) -> bytes:
    """`image` as a quality-90 JPEG, with an EXIF orientation tag unless it is 1."""
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()
