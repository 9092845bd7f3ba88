"""Drawing located boxes and points on the user's picture with Pillow, returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.grounding import Box, Mark, Point

__all__ = ["MAX_SIDE", "PALETTE", "colour_for_labels", "draw_marks", "oriented_size"]

# Chat apps recompress anything larger (Telegram photos at 2560 px): a bigger PNG only costs upload time.
MAX_SIDE = 2560

# Distinct, saturated colours that stay visible on screenshots (mostly white) and photos alike.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
)


def oriented_size(data: bytes) -> tuple[int, int]:
    """(width, height) as the picture is shown, i.e. after its EXIF orientation, as the model saw it."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            return height, width
        return width, height


def colour_for_labels(marks: Sequence[Mark]) -> dict[str, tuple[int, int, int]]:
    """One palette colour per distinct label, in order of first appearance."""
    colours: dict[str, tuple[int, int, int]] = {}
    for mark in marks:
        if mark.label not in colours:
            colours[mark.label] = PALETTE[len(colours) % len(PALETTE)]
    return colours


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw_marks(data: bytes, marks: Sequence[Mark], *, max_side: int = MAX_SIDE) -> bytes:
    """The picture (EXIF-oriented, RGB, scaled down to `max_side` if larger) with every mark drawn.

    `marks` are in original picture pixels; line width and label size follow the picture's size so
    they stay readable on a phone screen whether the picture is 300 or 3000 pixels wide.
    """
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    out_w, out_h = image.size
    longest = max(out_w, out_h)
    line = max(2, round(longest / 300))
    font = ImageFont.load_default(size=max(12, round(longest / 45)))
    draw = ImageDraw.Draw(image)
    colours = colour_for_labels(marks)

    def label_at(x: float, y: float, text: str, colour: tuple[int, int, int]) -> None:
        if not text:
            return
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(2, line)
        w, h = right - left + 2 * pad, bottom - top + 2 * pad
        x = min(max(0, x), max(0, out_w - w))
        y = y - h if y - h >= 0 else min(y, max(0, out_h - h))  # above the mark, else inside it
        draw.rectangle((x, y, x + w, y + h), fill=colour)
        draw.text((x + pad - left, y + pad - top), text, font=font, fill=_text_colour(colour))

    for mark in marks:
        colour = colours[mark.label]
        if isinstance(mark, Box):
            x1, y1 = mark.x1 * scale, mark.y1 * scale
            x2 = min(out_w - 1, mark.x2 * scale - 1)
            y2 = min(out_h - 1, mark.y2 * scale - 1)
            draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=line)
            label_at(x1, y1, mark.label, colour)
        elif isinstance(mark, Point):
            x, y = mark.x * scale, mark.y * scale
            r = max(4, line * 3)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(255, 255, 255), width=max(1, line // 2))
            label_at(x + r, y - r, mark.label, colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
