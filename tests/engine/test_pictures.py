"""The one picture check (engine.pictures): format allowlist, size, pixels, aspect, damage; no EPS plugin ever runs."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from PIL import Image, ImageFile

from engine.images import prepare_image, smart_resize
from engine.pictures import DECODE_SLOTS, PictureLimits, PictureProblem, PictureRejected, check_picture
from engine.pixels import prepare_pixels
from tests.engine.pictures import EPS, SVG, bomb_header, encoded, huge_png, noise, thin_png, truncated_jpeg

LIMITS = PictureLimits(max_bytes=1_000_000, max_pixels=40_000_000)


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif"),
     ("BMP", "image/bmp"), ("TIFF", "image/tiff")],
)
def test_allowed_formats_pass(fmt: str, mime: str) -> None:
    info = check_picture(encoded(fmt), LIMITS)
    assert (info.format, info.mime_type, info.width, info.height) == (fmt, mime, 40, 30)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", PictureProblem.EMPTY),
        (EPS, PictureProblem.UNSUPPORTED),
        (SVG, PictureProblem.UNSUPPORTED),
        (b"%PDF-1.4 not a picture at all", PictureProblem.UNSUPPORTED),
        (encoded("ICO", (32, 32)), PictureProblem.UNSUPPORTED),  # Pillow reads it; the allowlist does not
        (encoded("PPM"), PictureProblem.UNSUPPORTED),
        (truncated_jpeg(), PictureProblem.DAMAGED),
        (noise((64, 64))[:200], PictureProblem.DAMAGED),
        (thin_png(1, 20000), PictureProblem.TOO_THIN),
        (thin_png(20000, 1), PictureProblem.TOO_THIN),
        (bomb_header(30000, 30000), PictureProblem.TOO_MANY_PIXELS),  # over Pillow's own hard limit
        (huge_png(12000, 12000), PictureProblem.TOO_MANY_PIXELS),  # between Pillow's warning and its limit
        (bomb_header(8000, 6000), PictureProblem.TOO_MANY_PIXELS),  # under Pillow's limit, over ours
        (b"\x00" * 2_000_000, PictureProblem.TOO_MANY_BYTES),
    ],
    ids=["empty", "eps", "svg", "pdf", "ico", "ppm", "truncated-jpeg", "truncated-png", "1x20000", "20000x1",
         "bomb-30000", "12000x12000", "8000x6000", "oversized"],
)
def test_bad_pictures_are_refused_with_their_reason(data: bytes, problem: PictureProblem) -> None:
    with pytest.raises(PictureRejected) as caught:
        check_picture(data, LIMITS)
    assert caught.value.problem == problem
    assert caught.value.message and "\n" not in caught.value.message
    # The same check guards every decode the engine does.
    with pytest.raises(PictureRejected):
        prepare_image(data, factor=28, min_pixels=3136, max_pixels=50176, limits=LIMITS)
    with pytest.raises(PictureRejected):  # the local engine's path
        prepare_pixels(data, factor=28, min_pixels=3136, max_pixels=50176, limits=LIMITS)


def test_pixel_refusal_names_the_size() -> None:
    with pytest.raises(PictureRejected) as caught:
        check_picture(bomb_header(8000, 6000), PictureLimits(max_bytes=10_000_000, max_pixels=20_000_000))
    assert "8000x6000" in caught.value.message and (caught.value.width, caught.value.height) == (8000, 6000)


def test_the_eps_plugin_never_sees_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """EPS would be handed to Ghostscript: Pillow must not even ask the EPS plugin whether it can read it."""
    Image.init()
    calls: list[str] = []
    factory, accept = Image.OPEN["EPS"]

    def spying_accept(prefix: bytes) -> Any:
        calls.append("accept")
        return accept(prefix) if accept else True

    def spying_factory(*args: Any) -> Any:
        calls.append("factory")
        return factory(*args)

    monkeypatch.setitem(Image.OPEN, "EPS", (spying_factory, spying_accept))
    with pytest.raises(PictureRejected):
        check_picture(EPS, LIMITS)
    with pytest.raises(PictureRejected):
        prepare_image(EPS, factor=28, min_pixels=3136, max_pixels=50176)
    assert calls == []
    # The spy works: Pillow without an allowlist does hand the bytes to the EPS plugin.
    with Image.open(io.BytesIO(EPS)) as image:
        assert image.format == "EPS"
    assert "accept" in calls and "factory" in calls


@pytest.mark.parametrize("size", [(5600, 28), (28, 5600), (20000, 100), (100, 20000), (40000, 200), (3, 600)])
def test_thin_pictures_still_fit_the_budget(size: tuple[int, int]) -> None:
    width, height = size
    for factor, max_pixels in ((28, 64 * 28 * 28), (32, 64 * 32 * 32), (28, 1280 * 28 * 28)):
        h, w = smart_resize(height, width, factor, 4 * 28 * 28, max_pixels)
        assert h % factor == 0 and w % factor == 0 and h * w <= max_pixels, (size, factor, h, w)
    prepared = prepare_image(thin_png(width, height), factor=28, min_pixels=3136, max_pixels=64 * 28 * 28)
    w, h = prepared.image.size
    assert w * h <= 64 * 28 * 28 and (w >= h) == (width >= height)
    pixels = prepare_pixels(thin_png(width, height), factor=28, min_pixels=3136, max_pixels=64 * 28 * 28).pixels
    assert pixels.shape == (3, h, w)


def test_full_decodes_are_capped_process_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most DECODE_SLOTS pictures decode at once, however many threads ask."""
    active, peak, lock = 0, 0, threading.Lock()
    real_load = ImageFile.ImageFile.load

    def slow_load(self: ImageFile.ImageFile) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        try:
            return real_load(self)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", slow_load)
    data = noise((32, 32))
    threads = [threading.Thread(target=check_picture, args=(data, LIMITS)) for _ in range(DECODE_SLOTS * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 < peak <= DECODE_SLOTS  # they did overlap, and never more than the cap
