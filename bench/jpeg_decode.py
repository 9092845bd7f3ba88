"""Benchmark 3: a 4000x3000 JPEG to the model's input size, draft decode on vs off, and the pixel difference.

    .venv/bin/python -m bench.jpeg_decode [--repeat 15] [--threads 1] [--stages]

Every path gives the same output size (1148x840 for Qwen2.5-VL's default 1280 x 28 x 28 budget,
1152x864 for Qwen3-VL's). Timed, interleaved in one run so other load falls on all of them:

- plain: the full decode and Pillow's bicubic resize (`prepare_image(draft=False)`); the reference
  for both speed and pixels, and the path before draft decoding.
- engine draft: what the local engine does (`engine.pixels.prepare_pixels`): libjpeg decodes at 1/2
  scale (DCT scaling, the smallest scale at or above the target), torchvision resizes the uint8
  tensor bilinear (antialiased) to the target.
- engine full: the same with drafting off (`VLMBOT_JPEG_DRAFT=false`): a full decode, which at 12 times
  the target's pixels Pillow resizes bicubic before the copy out (`engine.pixels.COPY_AT_MOST`).
- Pillow draft: the draft and Pillow's bilinear resize (`prepare_image(draft=True)`; the remote
  engine re-encodes this picture).

The "to pixel values" columns add what the Qwen image processor still does (rescale, normalise,
patch layout) to the plain and engine-draft paths. The pixel difference of the engine's draft
picture against the plain one: mean and max absolute difference per channel (0-255) and PSNR.
Two photos: a clean one (~1 MB) and a grainy one (~2.5 MB): the grainier, the more of the decode is
entropy decoding, which DCT scaling does not shorten. Target: plain / engine draft >= 3 x.
`--stages` first times each step on its own (decode at each scale, colour conversion, EXIF, copies,
each resize, the processor's normalisation), to show where the time goes.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as tvf
from transformers import Qwen2VLImageProcessor

from bench.common import machine, photo_jpeg, table
from engine.arch import ARCHS, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ArchName
from engine.images import prepare_image, smart_resize
from engine.pixels import model_input, prepare_pixels

MIN_PIXELS, MAX_PIXELS = DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS  # the defaults of bot/config.py


def difference(picture: np.ndarray, reference: np.ndarray) -> tuple[float, int, float]:
    """Mean and max absolute difference per channel (0-255) and PSNR in dB of two same-size HxWx3 pictures."""
    diff = np.abs(picture.astype(np.int16) - reference.astype(np.int16))
    mse = float((diff.astype(np.float64) ** 2).mean())
    return float(diff.mean()), int(diff.max()), 10 * math.log10(255**2 / mse) if mse else math.inf


def best_ms(runs: dict[str, Callable[[], Any]], repeat: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Best time of each run (ms) and its last output; interleaved, so other load falls on all of them."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, Any] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            t0 = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - t0)
    return {name: min(values) * 1000 for name, values in times.items()}, outputs


def decoded(data: bytes, scale: int, mode: str = "RGB") -> Image.Image:
    """The JPEG decoded by libjpeg at 1/scale (Pillow's draft), in `mode` (RGB or libjpeg's own YCbCr)."""
    image = Image.open(io.BytesIO(data))
    if scale > 1 or mode != "RGB":
        image.draft(mode, (image.width // scale, image.height // scale))
    image.load()
    return image


def stages(data: bytes, target: tuple[int, int], repeat: int) -> list[tuple[str, float]]:
    """Each step of the preparation timed alone (best of `repeat`, ms)."""
    full, half = decoded(data, 1), decoded(data, 2)
    width, height = target
    full_t = torch.from_numpy(np.array(full)).permute(2, 0, 1).unsqueeze(0)
    half_t = torch.from_numpy(np.array(half)).permute(2, 0, 1).unsqueeze(0)
    resized = tvf.resize(half_t, [height, width], interpolation=tvf.InterpolationMode.BILINEAR, antialias=True)[0]
    processor = Qwen2VLImageProcessor()
    values = model_input(processor, resized.contiguous())[0]
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("open, read the header and EXIF", lambda: Image.open(io.BytesIO(data)).getexif()),
        *((f"decode at 1/{scale} to RGB", lambda scale=scale: decoded(data, scale)) for scale in (1, 2, 4, 8)),
        ("decode at 1/2 to YCbCr (no colour conversion)", lambda: decoded(data, 2, "YCbCr")),
        ("copy out of Pillow, full (np.array)", lambda: np.array(full)),
        ("copy out of Pillow, 1/2 (np.array)", lambda: np.array(half)),
        ("Pillow bicubic, full -> target", lambda: full.resize(target, Image.Resampling.BICUBIC)),
        ("Pillow bilinear, 1/2 -> target", lambda: half.resize(target, Image.Resampling.BILINEAR)),
        ("Pillow box, 1/2 -> target", lambda: half.resize(target, Image.Resampling.BOX)),
        ("torch bicubic, full -> target", lambda: tvf.resize(full_t, [height, width], interpolation=tvf.InterpolationMode.BICUBIC, antialias=True)),
        ("torch bilinear, 1/2 -> target", lambda: tvf.resize(half_t, [height, width], interpolation=tvf.InterpolationMode.BILINEAR, antialias=True)),
        ("to a planar tensor (contiguous)", lambda: resized.contiguous()),
        ("processor: rescale, normalise, patch layout", lambda: model_input(processor, resized.contiguous())),
        ("pixel values to bfloat16", lambda: values.to(torch.bfloat16)),
    ]
    best, _ = best_ms(dict(steps), repeat)
    return list(best.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the resize (1: as Pillow's)")
    parser.add_argument("--stages", action="store_true", help="first time each step alone (Qwen2.5-VL's target)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    print(f"{args.width}x{args.height} JPEGs, default budget {MAX_PIXELS} pixels, best of {args.repeat}")
    started = time.perf_counter()
    photos = {label: photo_jpeg((args.width, args.height), noise=noise) for label, noise in (("clean", 0.03), ("grainy", 0.15))}
    if args.stages:
        h, w = smart_resize(args.height, args.width, ARCHS[ArchName.QWEN2_5_VL].patch_factor, MIN_PIXELS, MAX_PIXELS)
        timed = {label: stages(data, (w, h), args.repeat) for label, data in photos.items()}
        print(table(["step", *(f"{label} ms" for label in timed)], [
            [name, *(dict(timed[label])[name] for label in timed)] for name, _ in timed["clean"]
        ]))
    rows, ratios = [], []
    for label, data in photos.items():
        for arch in ARCHS.values():
            factor = arch.patch_factor
            processor = Qwen2VLImageProcessor(patch_size=arch.patch_size, merge_size=arch.merge_size)
            budget: dict[str, Any] = {"factor": factor, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
            paths: dict[str, Callable[[], Any]] = {
                "plain": lambda: prepare_image(data, draft=False, **budget).image,
                "engine draft": lambda: prepare_pixels(data, draft=True, **budget).pixels,
                "engine full": lambda: prepare_pixels(data, draft=False, **budget).pixels,
                "pillow draft": lambda: prepare_image(data, draft=True, **budget).image,
                "plain to pixel values": lambda: processor(
                    images=[prepare_image(data, draft=False, **budget).image], do_resize=False, return_tensors="pt"
                ),
                "engine draft to pixel values": lambda: model_input(processor, prepare_pixels(data, draft=True, **budget).pixels),
            }
            best, outputs = best_ms(paths, args.repeat)
            plain = np.asarray(outputs["plain"])
            engine = outputs["engine draft"].permute(1, 2, 0).numpy()
            assert engine.shape == plain.shape and np.asarray(outputs["pillow draft"]).shape == plain.shape
            mean, peak, psnr = difference(engine, plain)
            ratio = best["plain"] / best["engine draft"]
            ratios.append((f"{label} {arch.name}", ratio))
            rows.append(
                [f"{label} {len(data) / 1e6:.1f} MB", str(arch.name), f"{plain.shape[1]}x{plain.shape[0]}",
                 best["plain"], best["engine draft"], best["engine full"], best["pillow draft"], ratio,
                 best["engine full"] / best["engine draft"], mean, peak, psnr,
                 best["plain to pixel values"], best["engine draft to pixel values"],
                 best["plain to pixel values"] / best["engine draft to pixel values"]]
            )
    print(table(
        ["photo", "arch", "output", "plain ms", "engine draft ms", "engine full ms", "pillow draft ms",
         "plain / engine draft", "engine full / engine draft", "mean abs diff", "max abs diff", "PSNR dB",
         "plain to pixel values ms", "engine draft to pixel values ms", "ratio"],
        rows,
    ))
    for name, ratio in ratios:
        print(f"{name}: {ratio:.2f} x (target >= 3): {'met' if ratio >= 3 else 'MISSED'}")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
