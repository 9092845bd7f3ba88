"""Boxes and points drawn on the picture land where the coordinates say."""

from __future__ import annotations

import io

from PIL import Image

from bot.drawing import PALETTE, colour_for_labels, draw_marks, oriented_size
from bot.grounding import Box, Point

WHITE = (255, 255, 255)


def png(size: tuple[int, int], color: tuple[int, int, int] = WHITE) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.convert("RGB")


def test_box_pixels_where_expected() -> None:
    result = opened(draw_marks(png((600, 400)), [Box("", 100, 120, 300, 320)]))
    assert result.size == (600, 400)
    colour = PALETTE[0]
    for xy in [(100, 200), (299, 200), (200, 120), (200, 319), (100, 120), (299, 319)]:
        assert result.getpixel(xy) == colour, xy  # on each edge and corner
    for xy in [(200, 220), (98, 200), (302, 200), (200, 117), (200, 323), (10, 10), (590, 390)]:
        assert result.getpixel(xy) == WHITE, xy  # inside, just outside, far away


def test_line_width_scales_with_the_picture() -> None:
    def width_of_left_edge(size: tuple[int, int], box: Box) -> int:
        result = opened(draw_marks(png(size), [box]))
        y = (box.y1 + box.y2) // 2
        return sum(1 for x in range(box.x1, box.x2) if result.getpixel((x, y)) != WHITE)

    small = width_of_left_edge((300, 200), Box("", 50, 50, 250, 150))
    large = width_of_left_edge((2400, 1600), Box("", 400, 400, 2000, 1200))
    assert small >= 2 and large >= 3 * small


def test_distinct_colours_per_label_and_readable_labels() -> None:
    marks = [Box("printer", 50, 100, 250, 300), Box("cup", 300, 100, 500, 300), Box("printer", 50, 320, 250, 390)]
    colours = colour_for_labels(marks)
    assert list(colours) == ["printer", "cup"] and colours["printer"] != colours["cup"]
    result = opened(draw_marks(png((600, 400)), marks))
    assert result.getpixel((50, 200)) == colours["printer"]
    assert result.getpixel((300, 200)) == colours["cup"]
    assert result.getpixel((50, 350)) == colours["printer"]
    # The label sits on a filled tag in the box colour just above the box, with text in a contrasting colour.
    tag = [result.getpixel((x, y)) for x in range(50, 110) for y in range(80, 99)]
    assert tag.count(colours["printer"]) > len(tag) // 3
    assert any(pixel in ((0, 0, 0), (255, 255, 255)) for pixel in tag)


def test_label_of_a_box_at_the_top_goes_inside() -> None:
    result = opened(draw_marks(png((400, 300)), [Box("top", 0, 0, 200, 150)]))
    assert result.getpixel((5, 10)) != WHITE  # the tag is drawn inside the box, not cut off


def test_points_are_drawn_as_dots() -> None:
    result = opened(draw_marks(png((400, 300)), [Point("button", 200, 150)]))
    assert result.getpixel((200, 150)) == PALETTE[0]
    assert result.getpixel((100, 150)) == WHITE


def test_large_pictures_are_scaled_down_with_their_marks() -> None:
    result = opened(draw_marks(png((5120, 2560)), [Box("", 1000, 1000, 3000, 2000)], max_side=2560))
    assert result.size == (2560, 1280)
    assert result.getpixel((500, 750)) == PALETTE[0]  # the left edge, at half scale
    assert result.getpixel((1000, 750)) == WHITE


def test_exif_orientation_is_applied() -> None:
    """A phone photo stored sideways: the model sees it upright, so size and drawing use upright pixels."""
    image = Image.new("RGB", (300, 200), WHITE)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    data = out.getvalue()
    assert oriented_size(data) == (200, 300)
    result = opened(draw_marks(data, [Box("", 20, 250, 180, 290)]))
    assert result.size == (200, 300)
    assert result.getpixel((100, 250))[0] > 150 and result.getpixel((100, 250))[1] < 100
