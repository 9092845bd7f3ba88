"""Reading boxes and points out of model answers, and mapping them onto the original picture."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from bot.grounding import (
    Box,
    CoordinateFrame,
    Point,
    RawMark,
    coordinate_frame,
    describe_marks,
    locate,
    parse_marks,
    to_original,
)
from engine.arch import ARCHS, QWEN2_5_VL, QWEN3_VL, ArchName
from engine.images import prepare_image

DEFAULT_MIN = 4 * 28 * 28
DEFAULT_MAX = 1280 * 28 * 28

# --- parsing: the same fixtures in the shape each architecture answers ---------------------------

QWEN25_BARE = '[{"bbox_2d": [112, 40, 560, 392], "label": "printer"}, {"bbox_2d": [600, 10, 700, 90], "label": "cup"}]'
QWEN3_FENCED = (
    "```json\n[\n"
    '  {"bbox_2d": [100, 50, 500, 440], "label": "printer"},\n'
    '  {"bbox_2d": [535, 12, 625, 110], "label": "cup"}\n'
    "]\n```"
)


def boxes(marks: list[RawMark]) -> list[tuple[str, tuple[float, ...]]]:
    return [(m.label, m.coords) for m in marks]


def test_bare_json_list() -> None:
    assert boxes(parse_marks(QWEN25_BARE)) == [
        ("printer", (112, 40, 560, 392)),
        ("cup", (600, 10, 700, 90)),
    ]


def test_fenced_json_list() -> None:
    assert boxes(parse_marks(QWEN3_FENCED)) == [
        ("printer", (100, 50, 500, 440)),
        ("cup", (535, 12, 625, 110)),
    ]


@pytest.mark.parametrize("body", [QWEN25_BARE, QWEN3_FENCED])
def test_prose_around_the_json(body: str) -> None:
    text = f"Sure! I found these objects in the image:\n\n{body}\n\nThe printer is on the left, the cup on the right."
    assert [m.label for m in parse_marks(text)] == ["printer", "cup"]


def test_truncated_list_keeps_complete_objects() -> None:
    text = (
        '```json\n[\n  {"bbox_2d": [10, 20, 30, 40], "label": "key"},\n'
        '  {"bbox_2d": [50, 60, 70, 80], "label": "key"},\n  {"bbox_2d": [90, 1'
    )
    assert boxes(parse_marks(text)) == [("key", (10, 20, 30, 40)), ("key", (50, 60, 70, 80))]


def test_truncated_inside_a_label() -> None:
    text = '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "label": "unfinis'
    marks = parse_marks(text)
    assert marks[0] == RawMark("box", (1, 2, 3, 4), "a")
    # The loose fallback is not needed: the complete first object is enough, the broken one is dropped.
    assert len(marks) == 1


def test_single_object_not_in_a_list() -> None:
    assert boxes(parse_marks('{"bbox_2d": [135, 114, 1016, 672], "label": "house"}')) == [
        ("house", (135, 114, 1016, 672))
    ]


def test_points_and_nested_lists() -> None:
    text = '{"objects": [{"point_2d": [346, 328], "label": "person"}, {"point_2d": [238, 158], "label": "person"}]}'
    assert parse_marks(text) == [RawMark("point", (346, 328), "person"), RawMark("point", (238, 158), "person")]


def test_not_quite_json_single_quotes_and_trailing_comma() -> None:
    text = "Result: [{'bbox_2d': [10, 20, 30, 40], 'label': 'logo'}, {'label': 'text', 'bbox_2d': [1.5, 2, 3, 4]},]"
    assert boxes(parse_marks(text)) == [("logo", (10, 20, 30, 40)), ("text", (1.5, 2, 3, 4))]


def test_missing_label_uses_the_thing_asked_for() -> None:
    assert parse_marks('[{"bbox_2d": [1, 2, 3, 4]}]', "serial number")[0].label == "serial number"


def test_duplicates_and_junk_entries_are_dropped() -> None:
    text = (
        '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [1, 2, 3, 4], "label": "a"},'
        ' {"bbox_2d": [1, 2, 3], "label": "short"}, {"bbox_2d": "here", "label": "words"},'
        ' {"bbox_2d": [1, null, 3, 4], "label": "null"}, {"label": "no coordinates"}]'
    )
    assert boxes(parse_marks(text)) == [("a", (1, 2, 3, 4))]


@pytest.mark.parametrize(
    "text",
    [
        "There is no cat in this picture.",
        "Not found. The picture shows a white printer on a desk.",
        "The values are [1, 2, 3, 4] and {5}.",
        "",
    ],
)
def test_plain_text_has_no_marks(text: str) -> None:
    assert parse_marks(text) == []


# --- mapping -------------------------------------------------------------------------------------


def test_swapped_corners_are_sorted() -> None:
    marks = to_original([RawMark("box", (300, 400, 100, 200), "x")], CoordinateFrame(1000, 1000), (1000, 1000))
    assert marks == [Box("x", 100, 200, 300, 400)]


def test_out_of_range_values_are_clamped_and_outside_marks_dropped() -> None:
    frame = CoordinateFrame(1000, 1000)
    raw = [
        RawMark("box", (-20, 900, 400, 1100), "clamped"),
        RawMark("box", (1200, 10, 1400, 50), "outside"),
        RawMark("box", (10, 10, 10, 50), "no area"),
        RawMark("point", (500, 1001), "point outside"),
        RawMark("point", (1000, 1000), "corner"),
    ]
    assert to_original(raw, frame, (200, 100)) == [Box("clamped", 0, 90, 80, 100), Point("corner", 199, 99)]


def test_qwen3_frame_is_relative_1000() -> None:
    assert coordinate_frame(QWEN3_VL, (4032, 3024), min_pixels=DEFAULT_MIN, max_pixels=DEFAULT_MAX) == CoordinateFrame(
        1000, 1000
    )
    marks = locate(
        '[{"bbox_2d": [250, 500, 750, 1000], "label": "a"}, {"point_2d": [500, 500], "label": "b"}]',
        arch=QWEN3_VL,
        original_size=(4032, 3024),
        min_pixels=DEFAULT_MIN,
        max_pixels=DEFAULT_MAX,
    )
    assert marks == [Box("a", 1008, 1512, 3024, 3024), Point("b", 2016, 1512)]


@pytest.mark.parametrize(
    ("size", "max_pixels", "resized"),
    [
        ((4032, 3024), DEFAULT_MAX, (1148, 840)),  # a 12 MP phone photo at the default budget
        ((1920, 1080), DEFAULT_MAX, (1316, 728)),  # a full-HD screenshot
        ((1000, 500), 64 * 28 * 28, (308, 140)),  # the tests' small budget
        ((100, 60), DEFAULT_MAX, (112, 56)),  # small pictures are rounded, not scaled up
    ],
)
def test_qwen25_frame_is_the_resized_input(size: tuple[int, int], max_pixels: int, resized: tuple[int, int]) -> None:
    frame = coordinate_frame(QWEN2_5_VL, size, min_pixels=DEFAULT_MIN, max_pixels=max_pixels)
    assert (frame.width, frame.height) == resized
    # The engine resizes to exactly this size before the model sees the picture.
    data = _png(Image.new("RGB", size, "white"))
    assert prepare_image(data, factor=28, min_pixels=DEFAULT_MIN, max_pixels=max_pixels).image.size == resized


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _red_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The bounding box (x1, y1, x2 exclusive, y2 exclusive) of the strongly red pixels."""
    red = Image.eval(image.getchannel("R"), lambda v: 255 if v > 180 else 0)
    not_green = Image.eval(image.getchannel("G"), lambda v: 255 if v < 80 else 0)
    found = Image.composite(red, Image.new("L", image.size, 0), not_green).getbbox()
    assert found is not None
    return found


@pytest.mark.parametrize("arch", list(ArchName))
@pytest.mark.parametrize(
    ("size", "rect", "max_pixels"),
    [
        ((1600, 1000), (400, 300, 1000, 700), 64 * 28 * 28),
        ((3000, 2000), (2100, 150, 2900, 650), DEFAULT_MAX),
        ((640, 480), (20, 400, 200, 470), DEFAULT_MAX),
    ],
)
def test_box_on_synthetic_picture_lands_on_original_pixels(
    arch: ArchName, size: tuple[int, int], rect: tuple[int, int, int, int], max_pixels: int
) -> None:
    """Make the answer a perfect model would give (from the picture the engine really feeds it) and
    check it comes back on the rectangle drawn in the original."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=(255, 0, 0))
    factor = 28 if arch == "qwen2_5_vl" else 32
    seen = prepare_image(_png(image), factor=factor, min_pixels=DEFAULT_MIN, max_pixels=max_pixels).image
    x1, y1, x2, y2 = _red_box(seen)
    if arch == "qwen3_vl":
        w, h = seen.size
        x1, x2 = round(x1 * 1000 / w), round(x2 * 1000 / w)
        y1, y2 = round(y1 * 1000 / h), round(y2 * 1000 / h)
    answer = f'```json\n[{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "red"}}]\n```'
    [box] = locate(answer, arch=ARCHS[arch], original_size=size, min_pixels=DEFAULT_MIN, max_pixels=max_pixels)
    assert isinstance(box, Box)
    # One pixel of the model's input spans size/resized original pixels; allow for that rounding.
    tolerance = max(size) / min(seen.size) * 1.5 + 2
    for got, want in zip((box.x1, box.y1, box.x2, box.y2), rect, strict=True):
        assert abs(got - want) <= tolerance, (box, rect, tolerance)


def test_qwen25_answer_is_scaled_up_from_resized_pixels() -> None:
    """308x140 is what the model saw of a 1000x500 picture: its pixels are scaled back up, not used as is."""
    answer = '[{"bbox_2d": [77, 35, 154, 105]}]'
    [resized] = locate(answer, arch=QWEN2_5_VL, original_size=(1000, 500), min_pixels=DEFAULT_MIN, max_pixels=64 * 28 * 28)
    assert (resized.x1, resized.y1, resized.x2, resized.y2) == (250, 125, 500, 375)


def test_describe_marks_lists_original_coordinates() -> None:
    text = describe_marks([Box("printer", 10, 20, 110, 220), Point("button", 5, 6)])
    assert text == "1. printer: box (10, 20) - (110, 220), 100x200 px\n2. button: point (5, 6)"
    many = describe_marks([Point("p", i, i) for i in range(25)], limit=3)
    assert many.endswith("... and 22 more.")
