"""Every kind of bad picture gets a one-line reason; good ones pass with their hash."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from bot.i18n import speaking
from bot.language import Language
from bot.pictures import PictureRejected, check_picture
from tests.conftest import picture_bytes

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 40_000_000}


def huge_png_header(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG that claims to be 30000x30000: a decompression bomb must be refused before decoding."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_good_picture() -> None:
    data = picture_bytes()
    checked = check_picture(data, **LIMITS)
    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert (checked.width, checked.height, checked.mime_type) == (96, 64, "image/png")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not a picture at all", "not a file I can read"),
        (picture_bytes()[:60], "damaged"),
        (huge_png_header(), "too large"),
        (b"\x00" * 2_000_000, "limit"),
    ],
    ids=["empty", "non-image", "corrupt", "decompression-bomb", "oversized"],
)
def test_bad_pictures(data: bytes, words: str) -> None:
    with pytest.raises(PictureRejected) as info:
        check_picture(data, **LIMITS, name="upload.bin")
    message = info.value.user_message
    assert words in message and "\n" not in message
    assert "please" in message.lower()


def test_bomb_under_pillow_limit_but_over_ours() -> None:
    with pytest.raises(PictureRejected) as info:
        check_picture(huge_png_header(8000, 6000), max_bytes=10_000_000, max_pixels=20_000_000)
    assert "8000x6000" in info.value.user_message


def test_a_text_file_named_like_a_video_is_told_what_can_be_read() -> None:
    with pytest.raises(PictureRejected) as info:
        check_picture(b"just some text", **LIMITS, name="fake.mp4")
    message = info.value.user_message
    assert message.startswith("'fake.mp4' is not a file I can read") and "PDF" in message and "MP4" in message
    with speaking(Language.ZH), pytest.raises(PictureRejected) as info:
        check_picture(b"just some text", **LIMITS, name="fake.mp4")
    assert info.value.user_message.startswith("“fake.mp4”") and "PDF" in info.value.user_message
