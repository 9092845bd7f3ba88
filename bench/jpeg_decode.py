"""Benchmark 3: decode plus resize of a 4000x3000 JPEG to the default budget, draft decode on vs off.

    .venv/bin/python -m bench.jpeg_decode [--repeat 9]

Both produce the same output size (1148x840 for Qwen2.5-VL's default 1280 x 28 x 28 budget); with
draft on, libjpeg decodes at 1/2 scale (DCT scaling, the smallest at or above the target) and a
bilinear resize follows; off is the full decode and a bicubic resize. Two photos: a clean one
(~1 MB) and a grainy one (~2.5 MB): the grainier, the more of the decode is entropy decoding, which
DCT scaling does not shorten. The pixel difference between the two outputs is shown as a mean
absolute error (0-255 per channel). Target: >= 3 x.
"""

from __future__ import annotations

import argparse
import time

from PIL import Image, ImageChops

from bench.common import machine, photo_jpeg, table
from engine.arch import ARCHS, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from engine.images import prepare_image

MIN_PIXELS, MAX_PIXELS = DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS  # the defaults of bot/config.py


def timed(data: bytes, factor: int, draft: bool) -> tuple[float, Image.Image]:
    started = time.perf_counter()
    prepared = prepare_image(data, factor=factor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, draft=draft)
    return time.perf_counter() - started, prepared.image


def mean_abs_error(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two same-size RGB pictures, per channel, 0-255."""
    diff = ImageChops.difference(a, b)
    histogram = diff.histogram()  # 256 bins per channel
    total = sum(value * count for i, count in enumerate(histogram) for value in [i % 256])
    return total / (a.size[0] * a.size[1] * 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    print(machine())
    print(f"{args.width}x{args.height} JPEGs, default budget {MAX_PIXELS} pixels, best of {args.repeat}")
    rows = []
    for label, noise in (("clean", 0.03), ("grainy", 0.15)):
        data = photo_jpeg((args.width, args.height), noise=noise)
        for arch in ARCHS.values():
            factor = arch.patch_factor
            on, off = [], []
            for _ in range(args.repeat):  # interleaved, so other load falls on both
                t, image_on = timed(data, factor, True)
                on.append(t)
                t, image_off = timed(data, factor, False)
                off.append(t)
            assert image_on.size == image_off.size
            size = image_on.size
            rows.append(
                [f"{label} {len(data) / 1e6:.1f} MB", str(arch.name), f"{size[0]}x{size[1]}",
                 min(on) * 1000, min(off) * 1000, min(off) / min(on), mean_abs_error(image_on, image_off)]
            )
    print(table(["photo", "arch", "output", "draft on ms", "draft off ms", "speed-up", "on vs off mean abs error (0-255)"], rows))
    for row in rows:
        print(f"{row[0]} {row[1]}: {row[5]:.2f} x (target >= 3): {'met' if row[5] >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
