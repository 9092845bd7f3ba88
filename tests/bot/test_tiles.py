"""Long screenshots cut into tiles at full size, strips padded, and the names the prompt gives them."""

from __future__ import annotations

import io

from PIL import Image

from bot.picture_sources import PictureSource, SourceKind, picture_names
from bot.prompt import label_pictures
from bot.tiles import OVERLAP, cut, plan_tiles

BUDGET = 1280 * 28 * 28


def test_a_1080x8000_screenshot_is_read_whole_at_full_size() -> None:
    plan = plan_tiles(1080, 8000, max_pixels=BUDGET, max_tiles=10)
    assert plan is not None and plan.complete and plan.scale == 1.0 and plan.tall
    assert all(box[0] == 0 and box[2] == 1080 for box in plan.boxes)  # full width: text keeps its size
    assert all((b[2] - b[0]) * (b[3] - b[1]) <= BUDGET for b in plan.boxes)
    assert plan.boxes[0][1] == 0 and plan.boxes[-1][3] == 8000  # top to bottom, nothing left out
    for before, after in zip(plan.boxes, plan.boxes[1:], strict=False):
        assert before[3] - after[1] >= round((before[3] - before[1]) * OVERLAP) - 1  # overlapping


def test_wide_pictures_go_left_to_right_and_ordinary_ones_are_left_alone() -> None:
    plan = plan_tiles(8000, 1080, max_pixels=BUDGET, max_tiles=10)
    assert plan is not None and not plan.tall and plan.boxes[0][0] == 0 and plan.boxes[-1][2] == 8000
    assert plan_tiles(4000, 3000, max_pixels=BUDGET, max_tiles=10) is None  # a photo: shrunk as before
    assert plan_tiles(1080, 2000, max_pixels=BUDGET, max_tiles=10) is None  # not much taller than wide
    assert plan_tiles(300, 1500, max_pixels=BUDGET, max_tiles=10) is None  # within the budget


def test_a_screenshot_too_long_is_read_in_part_and_says_how_much() -> None:
    plan = plan_tiles(1080, 30000, max_pixels=BUDGET, max_tiles=10)
    assert plan is not None and not plan.complete and plan.needed > 10 and len(plan.boxes) == 10
    assert 0.25 < plan.read_fraction < 0.35


def test_strips_are_padded_not_refused() -> None:
    strip = Image.new("RGB", (4000, 12), (40, 40, 40))
    [padded] = cut(strip, plan_tiles(4000, 12, max_pixels=BUDGET, max_tiles=10))
    image = Image.open(io.BytesIO(padded))
    assert image.width == 4000 and 12 < image.height and image.width / image.height <= 200
    long_strip = plan_tiles(100_000, 12, max_pixels=BUDGET, max_tiles=10)
    assert long_strip is not None
    for tile in cut(Image.new("RGB", (100_000, 12), (0, 0, 0)), long_strip):
        width, height = Image.open(io.BytesIO(tile)).size
        assert width * height <= BUDGET and width / height <= 200


def test_tiles_keep_their_pixels() -> None:
    image = Image.new("RGB", (200, 1500), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 200, 10))
    plan = plan_tiles(200, 1500, max_pixels=64 * 28 * 28, max_tiles=10)
    assert plan is not None and plan.scale == 1.0
    tiles = [Image.open(io.BytesIO(t)).convert("RGB") for t in cut(image, plan)]
    assert len(tiles) == plan.needed and tiles[0].getpixel((5, 5)) == (255, 0, 0) and tiles[0].width == 200


def test_names_of_pages_tiles_and_pictures() -> None:
    pdf = PictureSource(SourceKind.PDF, "f" * 64, "a.pdf", ("p3", "p4"), (3, 4), 10)
    tiles = PictureSource(SourceKind.TILES, "e" * 64, "long.png", ("t1", "t2"), (1, 2), 2)
    names = picture_names(["x", "p3", "p4", "t1", "t2", "y"], [pdf, tiles])
    assert names == ["Picture 1", "Page 3", "Page 4", "Picture 2, part 1", "Picture 2, part 2", "Picture 3"]
    other = PictureSource(SourceKind.PDF, "d" * 64, "b.pdf", ("q1",), (1,), 1)
    assert picture_names(["p3", "q1"], [pdf, other]) == ["Document 1, page 3", "Document 2, page 1"]
    assert label_pictures("Total?", 1, ["Page 2"]) == "(The picture above is Page 2.)\nTotal?"
    assert label_pictures("Same?", 1) == "Same?" and label_pictures("Same?", 2).startswith("(The 2 pictures")
    assert PictureSource.from_json(pdf.to_json()) == pdf


def test_pages_read_later_keep_the_conversations_document_number() -> None:
    manual = PictureSource(SourceKind.PDF, "f" * 64, "manual.pdf", ("p1", "p2"), (1, 2), 12)
    later = PictureSource(SourceKind.PDF, "f" * 64, "manual.pdf", ("p11",), (11,), 12)
    assert picture_names(["p1", "p2", "p11"], [manual, later]) == ["Page 1", "Page 2", "Page 11"]  # one PDF
    other = PictureSource(SourceKind.PDF, "d" * 64, "short.pdf", ("q1",), (1,), 3)
    numbered = PictureSource(SourceKind.PDF, "f" * 64, "manual.pdf", ("p11",), (11,), 12, document=1)
    assert picture_names(["q1", "p11"], [other, numbered]) == ["Document 2, page 1", "Document 1, page 11"]
    assert picture_names(["p11"], [numbered]) == ["Document 1, page 11"]
    assert PictureSource.from_json(numbered.to_json()) == numbered and numbered.to_json()["document"] == 1
