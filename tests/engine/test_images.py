"""Picture preparation: EXIF orientation, colour modes, the pixel budget per architecture, draft decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.arch import ARCHS, ArchName
from engine.images import prepare_image, smart_resize

BUDGET = {"min_pixels": 4 * 28 * 28, "max_pixels": 1280 * 28 * 28}


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize("arch", list(ArchName))
def test_resize_fits_budget_and_factor(arch: ArchName) -> None:
    factor = ARCHS[arch].patch_factor
    prepared = prepare_image(encode(Image.new("RGB", (4000, 3000))), factor=factor, **BUDGET)
    w, h = prepared.image.size
    assert w % factor == 0 and h % factor == 0
    assert w * h <= BUDGET["max_pixels"]
    assert abs(w / h - 4 / 3) < 0.05
    assert prepared.original_size == (4000, 3000)


def test_patch_factors_are_documented_values() -> None:
    assert ARCHS[ArchName.QWEN2_5_VL].patch_factor == 28 and ARCHS[ArchName.QWEN3_VL].patch_factor == 32


def test_small_picture_is_enlarged_to_minimum() -> None:
    h, w = smart_resize(10, 10, 28, 4 * 28 * 28, 1280 * 28 * 28)
    assert h * w >= 4 * 28 * 28 and h % 28 == 0


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    prepared = prepare_image(encode(image, "JPEG", exif=exif), factor=28, **BUDGET)
    w, h = prepared.image.size
    assert h > w  # portrait after orientation
    assert prepared.original_size == (100, 200)


@pytest.mark.parametrize("mode", ["P", "RGBA", "CMYK", "L", "LA", "I;16"])
def test_modes_become_rgb(mode: str) -> None:
    base = Image.new("RGB", (64, 64), (10, 200, 10))
    image = base.convert(mode) if mode != "I;16" else Image.new("I;16", (64, 64), 1000)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I;16" else "PNG"
    prepared = prepare_image(encode(image, fmt), factor=28, **BUDGET)
    assert prepared.image.mode == "RGB"


def test_transparent_areas_become_white() -> None:
    image = Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    prepared = prepare_image(encode(image), factor=28, **BUDGET)
    assert prepared.image.getpixel((10, 10)) == (255, 255, 255)


def test_large_jpeg_uses_draft_decode_with_same_output_size() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (120, 60, 30)), "JPEG", quality=85)
    fast = prepare_image(data, factor=28, draft=True, **BUDGET)
    slow = prepare_image(data, factor=28, draft=False, **BUDGET)
    assert fast.drafted and not slow.drafted
    assert fast.image.size == slow.image.size
    assert abs(fast.image.getpixel((50, 50))[0] - slow.image.getpixel((50, 50))[0]) <= 3
