"""Legibility of a long screenshot: text height in pixels as the model sees it, whole vs tiled.

    .venv/bin/python -m bench.legibility [--width 1080] [--height 8000] [--font 14] [--max-tiles 10]

Draws a scrolling screenshot of `--width` x `--height` with lines of `--font` px text every two
lines' height, then measures the ink height of each text line (consecutive rows holding dark pixels)
in the picture the engine's own resize (`engine.images.prepare_image`, factor 28, the default
`VLMBOT_MAX_PIXELS`) makes of it: once for the whole screenshot as before, once for each tile the bot
now cuts it into (`bot.tiles`). Prints the median height, the tiles, and how much of the picture
was read.
"""

from __future__ import annotations

import argparse
import io
import statistics

from PIL import Image, ImageDraw, ImageFont

from bench.common import table
from bot.tiles import cut, plan_tiles
from engine.arch import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from engine.images import prepare_image

FACTOR = 28  # Qwen2.5-VL: patch 14 x merge 2


def screenshot(width: int, height: int, font_px: int) -> bytes:
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_px)
    for number, top in enumerate(range(10, height - 2 * font_px, 2 * font_px)):
        draw.text((16, top), f"Setting {number}: Bluetooth headset pairing code HJ{number:05d} (tap to copy)",
                  fill=(20, 20, 20), font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def ink_heights(image: Image.Image) -> list[int]:
    """Height of each run of rows that hold ink: one per text line while lines stay apart.

    Ink is darker than half way between the picture's darkest pixel and white, so text that a
    shrink has turned grey still counts as ink."""
    grey = image.convert("L")
    width, height = grey.size
    pixels = grey.load()
    darkest = min(min(pixels[x, y] for x in range(width)) for y in range(height))
    threshold = (darkest + 255) / 2
    runs, current = [], 0
    for y in range(height):
        if any(pixels[x, y] < threshold for x in range(0, width)):
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def model_view(data: bytes) -> Image.Image:
    return prepare_image(
        data, factor=FACTOR, min_pixels=DEFAULT_MIN_PIXELS, max_pixels=DEFAULT_MAX_PIXELS, draft=False
    ).image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1080)
    parser.add_argument("--height", type=int, default=8000)
    parser.add_argument("--font", type=int, default=14, help="font size in px")
    parser.add_argument("--max-tiles", type=int, default=10)
    args = parser.parse_args()
    data = screenshot(args.width, args.height, args.font)
    source = Image.open(io.BytesIO(data))
    original = statistics.median(ink_heights(source))
    whole = model_view(data)
    plan = plan_tiles(args.width, args.height, max_pixels=DEFAULT_MAX_PIXELS, max_tiles=args.max_tiles)
    tiles = [model_view(tile) for tile in cut(source, plan)] if plan else []
    tile_heights = [h for tile in tiles for h in ink_heights(tile)]
    rows = [
        ["original", f"{args.width}x{args.height}", 1, 1.0, original],
        ["whole picture, resized by the engine", f"{whole.width}x{whole.height}", 1, whole.width / args.width,
         statistics.median(ink_heights(whole))],
    ]
    if tiles:
        sizes = sorted({f"{t.width}x{t.height}" for t in tiles})
        rows.append(["tiles, each resized by the engine", " / ".join(sizes), len(tiles), tiles[0].width / args.width,
                     statistics.median(tile_heights)])
    print(f"{args.font} px text, budget {DEFAULT_MAX_PIXELS} pixels per picture (factor {FACTOR})")
    print(table(["picture the model sees", "size", "pictures", "linear scale", "text ink height px (median)"], rows))
    if plan:
        print(f"tiles needed {plan.needed}, read {len(plan.boxes)} ({plan.read_fraction:.0%} of the height), "
              f"scale {plan.scale:.3f}")


if __name__ == "__main__":
    main()
