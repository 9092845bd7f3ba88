"""Long screenshots cut into overlapping tiles, and thin strips padded, so their text stays legible.

The engine shrinks every picture to its pixel budget (`max_pixels`) keeping the aspect ratio: a
1080x8000 scrolling screenshot becomes about 370x2700 and 14 px text becomes 5 px. A picture at
least `LONG_ASPECT` times longer than wide (or wider than long) that would be shrunk is instead cut
across its long side into tiles of the budget's size, each at the largest scale (1 when the short
side allows) that gives a tile at least half as long as wide, overlapping by `OVERLAP` of a tile so a
line cut at one tile's edge is whole in the next. Tiles run in reading order (top to bottom, left to
right); at most `max_tiles`, the rest is left out and `TilePlan.complete` says so. A picture whose
sides are more than `max_aspect` apart (a 4000x12 strip), or a tile of one, is padded on its short
side up to `PAD_ASPECT` with the colour of its corner, which the engine's resize accepts.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image

__all__ = ["LONG_ASPECT", "OVERLAP", "PAD_ASPECT", "STRIP_ASPECT", "TilePlan", "cut", "plan_tiles"]

LONG_ASPECT = 2.5  # sides this far apart, and shrunk by the budget: tiled
OVERLAP = 0.08  # of a tile's length, shared with the next tile (74 px of a 929 px tile: 5 lines of 14 px text)
PAD_ASPECT = 50.0  # a padded strip's sides end this far apart at most
STRIP_ASPECT = 10_000.0  # the thinnest strip accepted at all (1 x 10000); the engine's own limit is 200
_MIN_TILE_RATIO = 0.5  # a tile's length / its width, at least


@dataclass(frozen=True)
class TilePlan:
    """Boxes (left, top, right, bottom) in the picture's own pixels, each resized by `scale`."""

    boxes: tuple[tuple[int, int, int, int], ...]
    scale: float
    needed: int  # tiles the whole picture takes
    tall: bool  # cut top to bottom (else left to right)
    extent: int  # the picture's long side, in its own pixels

    @property
    def complete(self) -> bool:
        return len(self.boxes) == self.needed

    @property
    def read_fraction(self) -> float:
        """How much of the long side the tiles cover (1.0 when complete)."""
        last = self.boxes[-1]
        return 1.0 if self.complete else (last[3] if self.tall else last[2]) / self.extent


def plan_tiles(width: int, height: int, *, max_pixels: int, max_tiles: int, max_aspect: float = 200.0) -> TilePlan | None:
    """How to cut a `width` x `height` picture; None when it goes to the engine as it is (or only padded)."""
    tall = height >= width
    long, short = (height, width) if tall else (width, height)
    if long / short < LONG_ASPECT or width * height <= max_pixels:
        return None
    scale = min(1.0, math.sqrt(max_pixels / (short * short * _MIN_TILE_RATIO)))
    tile_short = max(1, round(short * scale))
    # A tile as long as the budget allows, but no longer than a padded strip may be within the budget.
    tile_long = min(max_pixels // tile_short, _longest_padded(max_pixels), round(long * scale))
    step = max(1, tile_long - round(tile_long * OVERLAP))
    scaled_long = round(long * scale)
    needed = 1 + max(0, math.ceil((scaled_long - tile_long) / step))
    boxes = []
    for index in range(min(needed, max_tiles)):
        start = min(index * step, scaled_long - tile_long)
        a, b = round(start / scale), min(long, round((start + tile_long) / scale))
        boxes.append((0, a, short, b) if tall else (a, 0, b, short))
    return TilePlan(tuple(boxes), scale, needed, tall, long)


def _longest_padded(max_pixels: int) -> int:
    """The longest side a strip may have so that, padded to PAD_ASPECT, it stays within the budget."""
    side = int(math.sqrt(max_pixels * PAD_ASPECT))
    while side * math.ceil(side / PAD_ASPECT) > max_pixels:
        side -= 1
    return side


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _pad(image: Image.Image, max_aspect: float) -> Image.Image:
    width, height = image.size
    if max(width, height) / min(width, height) <= max_aspect:
        return image
    colour = image.getpixel((0, 0))
    if width >= height:
        canvas = Image.new("RGB", (width, math.ceil(width / PAD_ASPECT)), colour)
        canvas.paste(image, (0, (canvas.height - height) // 2))
    else:
        canvas = Image.new("RGB", (math.ceil(height / PAD_ASPECT), height), colour)
        canvas.paste(image, ((canvas.width - width) // 2, 0))
    return canvas


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def cut(image: Image.Image, plan: TilePlan | None, *, max_aspect: float = 200.0) -> list[bytes]:
    """The tiles as PNGs, in reading order (a padded copy alone for a strip; [] when nothing changes).

    Decodes the picture: call it from a worker thread, under `engine.pictures.decode_slot()`.
    """
    if plan is None:
        width, height = image.size
        if max(width, height) / min(width, height) <= max_aspect:
            return []
        return [_png(_pad(_flatten(image), max_aspect))]
    flat = _flatten(image)
    tiles = []
    for box in plan.boxes:
        tile = flat.crop(box)
        if plan.scale < 1.0:
            size = (max(1, round(tile.width * plan.scale)), max(1, round(tile.height * plan.scale)))
            tile = tile.resize(size, Image.Resampling.LANCZOS)
        tiles.append(_png(_pad(tile, max_aspect)))
    return tiles
