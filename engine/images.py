"""Preparing pictures for Qwen vision encoders: orientation, RGB, and a pixel budget.

Qwen2.5-VL cuts a picture into 14x14 patches and merges 2x2 of them into one visual token, so
sides must be multiples of 28 and a picture of P pixels costs P / 784 tokens. Qwen3-VL uses 16x16
patches: multiples of 32 and P / 1024 tokens. The default budget of 1280 x 28 x 28 = 1,003,520
pixels (about 1000x1000) costs at most 1280 tokens on Qwen2.5-VL and 980 on Qwen3-VL, which leaves
room for several pictures and a long conversation on a 24 GB card with a 7-8 B model in bf16.
The factor comes from `engine.arch.ModelArch.patch_factor`.

Every picture goes through `engine.pictures` first (size, format allowlist, pixels, aspect), and
its decode counts against the process's cap on concurrent decodes. A picture whose sides are far
apart (up to the 200:1 the checks allow) still fits the budget: `smart_resize` never lets one side's
minimum of one patch push the area over `max_pixels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageOps

from engine.pictures import DEFAULT_LIMITS, PictureLimits, decode_slot, open_picture

__all__ = ["PreparedImage", "UprightPicture", "decode_upright", "prepare_image", "smart_resize"]


@dataclass(frozen=True)
class PreparedImage:
    image: Image.Image
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    drafted: bool


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Sides rounded to multiples of `factor`, area within [min_pixels, max_pixels], aspect kept.

    When rounding would exceed `max_pixels` (a very thin picture keeps its short side at one
    `factor`; enlarging to `min_pixels` rounds up), the long side is cut to fit: the aspect changes
    a little rather than the budget being exceeded."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar * w_bar > max_pixels:  # a side held at one factor, or rounded up: shorten the long side
        longest = max(factor, max_pixels // min(h_bar, w_bar) // factor * factor)
        if h_bar >= w_bar:
            h_bar = min(h_bar, longest)
        else:
            w_bar = min(w_bar, longest)
    return h_bar, w_bar


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def prepare_image(
    data: bytes,
    *,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    draft: bool = True,
    limits: PictureLimits = DEFAULT_LIMITS,
) -> PreparedImage:
    """Check, decode, apply EXIF orientation, convert to RGB and resize to the budget (with Pillow).

    Raises `engine.pictures.PictureRejected` for a picture the checks refuse or that does not
    decode. With `draft`, a JPEG much larger than the target is decoded at 1/2, 1/4 or 1/8 scale by
    libjpeg itself (see `decode_upright`), then resized with a bilinear filter. The local engine
    reads pictures through `engine.pixels` instead (the same decode, a faster resize in torch).
    """
    with open_picture(data, limits) as image, decode_slot():
        upright = decode_upright(image, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels, draft=draft)
        picture = upright.image
        if picture.size != upright.target:
            picture = picture.resize(upright.target, upright.resample)
        picture.load()  # still inside the checks: a picture already at its target size decodes only here
        return PreparedImage(image=picture, original_size=upright.original_size, drafted=upright.drafted)


@dataclass(frozen=True)
class UprightPicture:
    """A picture turned upright and in RGB, not yet resized: `target` is the (width, height) it is resized to."""

    image: Image.Image  # lazy until loaded or resized: keep using it inside `open_picture`
    target: tuple[int, int]
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    drafted: bool  # decoded by libjpeg at 1/2, 1/4 or 1/8 scale

    @property
    def resample(self) -> Image.Resampling:
        """The filter to the target. A drafted picture is usually less than twice the target per side:
        a triangle filter is enough there (against the full decode resized bicubic, the mean pixel
        difference stays about 0.35 of 255, as with a bicubic resize of the draft; bench/jpeg_decode.py)
        and it is faster. Any other picture: bicubic, as the Qwen processors resize."""
        return Image.Resampling.BILINEAR if self.drafted else Image.Resampling.BICUBIC


def decode_upright(image: Image.Image, *, factor: int, min_pixels: int, max_pixels: int, draft: bool) -> UprightPicture:
    """The opened picture at its draft scale, upright and RGB, and the size the budget gives it.

    With `draft`, a JPEG at least twice the target on both sides is decoded by libjpeg at the
    smallest of 1/2, 1/4, 1/8 scale still at or above the target (DCT scaling, Pillow's draft mode),
    several times faster than a full decode; the entropy decoding of every coefficient remains.
    Call inside `open_picture` and `decode_slot`: the decode happens on first use of the pixels.
    """
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    target_h, target_w = smart_resize(height, width, factor, min_pixels, max_pixels)
    drafted = False
    if draft and image.format == "JPEG" and (width >= 2 * target_w and height >= 2 * target_h):
        request = (target_w, target_h) if orientation not in (5, 6, 7, 8) else (target_h, target_w)
        image.draft("RGB", request)
        drafted = image.size != (width, height) and image.size != (height, width)
    if orientation != 1:  # exif_transpose copies the whole picture even when there is nothing to turn
        image = ImageOps.exif_transpose(image)
    return UprightPicture(_to_rgb(image), (target_w, target_h), (width, height), drafted)
