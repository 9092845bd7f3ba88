"""Reading located objects out of a model answer and mapping them onto the user's original picture.

Qwen VL models answer grounding questions with JSON such as
``[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}, {"point_2d": [x, y], "label": "eye"}]``, but in
different coordinate systems: Qwen2.5-VL in absolute pixels of the picture AFTER the engine resized
it to the pixel budget, Qwen3-VL in relative coordinates from 0 to 1000. Answers also come wrapped
in code fences, with prose around them, cut off by the token limit, with corners swapped or values
outside the picture; the parser keeps whatever is usable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, assert_never

from bot.i18n import _
from engine.arch import Coordinates, ModelArch
from engine.images import smart_resize

__all__ = [
    "Box",
    "CoordinateFrame",
    "Mark",
    "Point",
    "RawMark",
    "coordinate_frame",
    "describe_marks",
    "locate",
    "parse_marks",
    "to_original",
]

RELATIVE_SCALE = 1000  # Qwen3-VL answers in 0..1000 on both axes


@dataclass(frozen=True)
class RawMark:
    """A box (4 numbers) or point (2 numbers) exactly as the model wrote it."""

    kind: Literal["box", "point"]
    coords: tuple[float, ...]
    label: str


@dataclass(frozen=True)
class Box:
    """A box in ORIGINAL picture pixels: x1 < x2 <= width, y1 < y2 <= height."""

    label: str
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Point:
    """A point in ORIGINAL picture pixels."""

    label: str
    x: int
    y: int


Mark = Box | Point


@dataclass(frozen=True)
class CoordinateFrame:
    """The space the model's numbers live in: `width` x `height` units spanning the whole picture."""

    width: float
    height: float


def coordinate_frame(
    arch: ModelArch, original_size: tuple[int, int], *, min_pixels: int, max_pixels: int
) -> CoordinateFrame:
    """Relative coordinates (Qwen3-VL): 1000 x 1000 units. Resized pixels (Qwen2.5-VL): the resized
    input's pixels (same smart_resize as the engine, with the same budget and the architecture's patch
    factor), because that is the picture the model actually saw."""
    match arch.coordinates:
        case Coordinates.RELATIVE_1000:
            return CoordinateFrame(RELATIVE_SCALE, RELATIVE_SCALE)
        case Coordinates.RESIZED_PIXELS:
            width, height = original_size
            resized_h, resized_w = smart_resize(height, width, arch.patch_factor, min_pixels, max_pixels)
            return CoordinateFrame(resized_w, resized_h)
        case _:
            assert_never(arch.coordinates)


# --- parsing ------------------------------------------------------------------------------------

_KEYS = {"bbox_2d": "box", "bbox": "box", "box_2d": "box", "point_2d": "point", "point": "point"}
_LABEL_KEYS = ("label", "text_content", "text", "name", "description")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)(?:```|\Z)", re.DOTALL)
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# Fallback for answers that are not valid JSON (single quotes, trailing commas, a cut-off list).
_LOOSE = re.compile(
    r"""["']?(bbox_2d|box_2d|bbox|point_2d|point)["']?\s*[:=]\s*[\[(]\s*((?:""" + _NUMBER + r"""\s*,\s*)*"""
    + _NUMBER + r""")\s*[\])]"""
)
_LOOSE_LABEL = re.compile(r"""["']?label["']?\s*[:=]\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def parse_marks(text: str, default_label: str = "") -> list[RawMark]:
    """Every box and point in `text`, in order, duplicates removed; [] when the answer has none."""
    found: list[RawMark] = []
    for chunk in _candidates(text):
        found.extend(_from_json(chunk, default_label))
        if found:
            break
    if not found:
        found = _from_loose(text, default_label)
    unique: list[RawMark] = []
    for mark in found:
        if mark not in unique:
            unique.append(mark)
    return unique


def _candidates(text: str) -> Iterator[str]:
    """Fenced blocks first (an unterminated fence runs to the end), then the whole answer."""
    for match in _FENCE.finditer(text):
        yield match.group(1)
    yield text


def _from_json(text: str, default_label: str) -> list[RawMark]:
    """Decode every JSON value that starts at a '[' or '{' and keep the marks in it.

    Scanning from each bracket means a list cut off by the token limit still yields its complete
    objects, and prose before or after the JSON is skipped.
    """
    decoder = json.JSONDecoder()
    marks: list[RawMark] = []
    position = 0
    while True:
        starts = [i for i in (text.find("[", position), text.find("{", position)) if i >= 0]
        if not starts:
            return marks
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        found = list(_walk(value, default_label))
        marks.extend(found)
        position = end if found else start + 1


def _walk(value: Any, default_label: str) -> Iterator[RawMark]:
    if isinstance(value, list):
        for item in value:
            yield from _walk(item, default_label)
    elif isinstance(value, dict):
        mark = _mark_from_dict(value, default_label)
        if mark is not None:
            yield mark
            return
        for item in value.values():  # e.g. {"objects": [...]}
            if isinstance(item, list | dict):
                yield from _walk(item, default_label)


def _mark_from_dict(item: dict[str, Any], default_label: str) -> RawMark | None:
    label = next((str(item[k]).strip() for k in _LABEL_KEYS if isinstance(item.get(k), str | int | float)), "")
    for key, kind in _KEYS.items():
        if key in item:
            return _make(kind, item[key], label or default_label)
    return None


def _make(kind: str, raw: Any, label: str) -> RawMark | None:
    if isinstance(raw, list | tuple) and len(raw) == 2 and all(isinstance(p, list | tuple) for p in raw):
        raw = [*raw[0], *raw[1]]  # [[x1, y1], [x2, y2]]
    if not isinstance(raw, list | tuple):
        return None
    try:
        coords = tuple(float(v) for v in raw)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in coords):
        return None
    if len(coords) == 4 and kind == "box":
        return RawMark("box", coords, label)
    if len(coords) == 2:
        return RawMark("point", coords, label)
    if len(coords) == 4:  # a "point" with four numbers is a box
        return RawMark("box", coords, label)
    return None


def _from_loose(text: str, default_label: str) -> list[RawMark]:
    marks: list[RawMark] = []
    # Each object's label may come before or after its coordinates: look within the object's braces.
    for match in _LOOSE.finditer(text):
        begin = text.rfind("{", 0, match.start())
        end = text.find("}", match.end())
        segment = text[begin + 1 if begin >= 0 else match.start() : end if end >= 0 else len(text)]
        label_match = _LOOSE_LABEL.search(segment)
        label = (label_match.group(1) or label_match.group(2) or "").strip() if label_match else ""
        kind = _KEYS[match.group(1)]
        numbers = [float(n) for n in re.findall(_NUMBER, match.group(2))]
        mark = _make(kind, numbers, label or default_label)
        if mark is not None:
            marks.append(mark)
    return marks


# --- mapping ------------------------------------------------------------------------------------


def to_original(marks: list[RawMark], frame: CoordinateFrame, original_size: tuple[int, int]) -> list[Mark]:
    """Scale from the model's frame to original pixels; corners sorted, values clamped to the picture,
    marks entirely outside it or with no area dropped."""
    width, height = original_size
    sx, sy = width / frame.width, height / frame.height
    out: list[Mark] = []
    for mark in marks:
        if mark.kind == "point":
            x, y = mark.coords
            if not (0 <= x <= frame.width and 0 <= y <= frame.height):
                continue
            point = Point(mark.label, min(width - 1, round(x * sx)), min(height - 1, round(y * sy)))
            if point not in out:
                out.append(point)
            continue
        x1, y1, x2, y2 = mark.coords
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        if x1 >= frame.width or y1 >= frame.height or x2 <= 0 or y2 <= 0:
            continue  # entirely outside the picture
        bx1 = max(0, round(x1 * sx))
        by1 = max(0, round(y1 * sy))
        bx2 = min(width, round(x2 * sx))
        by2 = min(height, round(y2 * sy))
        if bx2 <= bx1 or by2 <= by1:
            continue
        box = Box(mark.label, bx1, by1, bx2, by2)
        if box not in out:
            out.append(box)
    return out


def locate(
    text: str,
    *,
    arch: ModelArch,
    original_size: tuple[int, int],
    min_pixels: int,
    max_pixels: int,
    default_label: str = "",
) -> list[Mark]:
    """Parse `text` and map what it locates onto a picture of `original_size` (width, height)."""
    frame = coordinate_frame(arch, original_size, min_pixels=min_pixels, max_pixels=max_pixels)
    return to_original(parse_marks(text, default_label), frame, original_size)


def describe_marks(marks: list[Mark], limit: int = 20) -> str:
    """One line per mark, in original pixel coordinates (x from the left, y from the top)."""
    lines = []
    for index, mark in enumerate(marks[:limit], start=1):
        label = mark.label or _("object")
        if isinstance(mark, Box):
            box = _("box ({x1}, {y1}) - ({x2}, {y2}), {width}x{height} px").format(
                x1=mark.x1, y1=mark.y1, x2=mark.x2, y2=mark.y2, width=mark.x2 - mark.x1, height=mark.y2 - mark.y1
            )
            lines.append(f"{index}. {label}: {box}")
        else:
            lines.append(f"{index}. {label}: " + _("point ({x}, {y})").format(x=mark.x, y=mark.y))
    if len(marks) > limit:
        lines.append(_("... and {count} more.").format(count=len(marks) - limit))
    return "\n".join(lines)
