"""The engine's picture path (engine.pixels): a draft-decoded JPEG comes out close to the full decode,
upright, at the model's input size, and the processor only normalises it (issue 14, JPEG target)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from engine import pixels as pixels_module
from engine.images import prepare_image
from engine.interface import PromptImage, PromptTurn
from engine.pixels import COPY_AT_MOST, PreparedPixels, model_input, prepare_pixels
from tests.engine.pictures import encoded, jpeg, noise, photo, thin_png
from tests.engine.support import SYSTEM, answer, ask, started_engine

BUDGET = {"min_pixels": 4 * 28 * 28, "max_pixels": 256 * 28 * 28}  # a 1600x1200 photo drafts at 1/2


def hwc(prepared: PreparedPixels) -> np.ndarray:
    return prepared.pixels.permute(1, 2, 0).numpy().astype(np.int16)


def full_quality(data: bytes, factor: int) -> np.ndarray:
    """The reference: a full decode resized bicubic by Pillow, as before draft decoding existed."""
    return np.asarray(prepare_image(data, factor=factor, draft=False, **BUDGET).image).astype(np.int16)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b).astype(np.float64) ** 2).mean())
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


@pytest.mark.parametrize("factor", [28, 32])
@pytest.mark.parametrize("grain", [0.03, 0.15], ids=["clean", "grainy"])
def test_a_drafted_photo_is_close_to_the_full_decode(grain: float, factor: int) -> None:
    data = jpeg(photo((1600, 1200), seed=7, grain=grain))
    fast = prepare_pixels(data, factor=factor, draft=True, **BUDGET)
    reference = full_quality(data, factor)
    assert fast.drafted and fast.original_size == (1600, 1200)
    assert fast.pixels.dtype == torch.uint8 and fast.pixels.is_contiguous()
    assert fast.pixels.shape == (3, *reference.shape[:2])
    assert reference.shape[0] % factor == 0 and reference.shape[1] % factor == 0
    diff = np.abs(hwc(fast) - reference)
    # Measured 0.29-0.42 mean, about 50 dB; a picture off by one pixel or a channel swap is tens.
    assert diff.mean() < 1.0 and psnr(hwc(fast), reference) > 40, (diff.mean(), psnr(hwc(fast), reference))


@pytest.mark.parametrize(
    ("data", "factor"),
    [
        (jpeg(photo((1600, 1200), seed=3)), 28),  # a downscale
        (noise((300, 200), "PNG", seed=4), 32),  # a screenshot-sized PNG
        (noise((40, 30), "PNG", seed=5), 28),  # enlarged to the minimum
    ],
    ids=["photo", "png", "small"],
)
def test_without_draft_the_engine_resize_gives_pillows_picture(data: bytes, factor: int) -> None:
    """torchvision's antialiased bicubic is Pillow's: the pictures differ by rounding only."""
    prepared = prepare_pixels(data, factor=factor, draft=False, **BUDGET)
    reference = full_quality(data, factor)
    assert not prepared.drafted and prepared.pixels.shape == (3, *reference.shape[:2])
    diff = np.abs(hwc(prepared) - reference)
    assert diff.mean() < 0.05 and diff.max() <= 2, (diff.mean(), diff.max())


@pytest.mark.parametrize(
    ("data", "draft", "copied"),
    [
        (jpeg(photo((1600, 1200), seed=8)), True, (800, 600)),  # the 1/2-scale draft
        (jpeg(photo((1600, 1200), seed=8)), False, (504, 364)),  # a full decode: resized by Pillow first
        (encoded("BMP", (2400, 1800)), True, (504, 364)),  # not a JPEG: no draft
    ],
    ids=["draft", "full", "bmp"],
)
def test_a_large_picture_is_resized_before_it_is_copied(
    monkeypatch: pytest.MonkeyPatch, data: bytes, draft: bool, copied: tuple[int, int]
) -> None:
    """Only a picture at most COPY_AT_MOST x the target's pixels is copied out of Pillow (a 64-megapixel
    one would take 192 MB more while decoded)."""
    sizes = []

    def array(picture: Image.Image) -> np.ndarray:
        sizes.append(picture.size)
        return np.array(picture)

    monkeypatch.setattr(pixels_module, "np", SimpleNamespace(array=array))
    prepared = prepare_pixels(data, factor=28, draft=draft, **BUDGET)
    assert sizes == [copied] and prepared.pixels.shape == (3, 364, 504)
    assert copied[0] * copied[1] <= COPY_AT_MOST * 504 * 364


# How each EXIF orientation is stored, from the upright picture (EXIF 2.3, tag 0x0112): the inverse
# of the turn a viewer applies. Pillow's ROTATE_90 turns counter-clockwise.
STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # "rotate 90 CW to display": stored turned 90 counter-clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_is_honoured_on_the_draft_path(orientation: int) -> None:
    upright = photo((1200, 1600), seed=11, grain=0.03)  # portrait, with a white label top left
    data = jpeg(upright.transpose(STORED[orientation]), orientation)
    fast = prepare_pixels(data, factor=28, draft=True, **BUDGET)
    assert fast.drafted and fast.original_size == (1200, 1600)
    height, width = fast.pixels.shape[1:]
    assert height > width
    expected = np.asarray(upright.resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    turned = np.asarray(upright.transpose(Image.Transpose.ROTATE_180).resize((width, height))).astype(np.int16)
    assert np.abs(hwc(fast) - expected).mean() < 1.5  # measured 0.53
    assert np.abs(hwc(fast) - turned).mean() > 20  # the comparison tells orientations apart


@pytest.mark.parametrize("data", [jpeg(photo((1600, 1200), seed=2)), thin_png(20000, 100)], ids=["photo", "thin"])
def test_the_processor_keeps_the_prepared_size(tiny_model_dir: Path, data: bytes) -> None:
    """The processor only normalises: its grid is the prepared picture's, its values those of the same pixels."""
    processor = AutoProcessor.from_pretrained(tiny_model_dir).image_processor
    factor = int(processor.patch_size) * int(processor.merge_size)
    prepared = prepare_pixels(data, factor=factor, **BUDGET)
    pixel_values, grid = model_input(processor, prepared.pixels)
    height, width = prepared.pixels.shape[1:]
    assert grid == (1, height // processor.patch_size, width // processor.patch_size)
    assert pixel_values.shape[0] == grid[1] * grid[2]
    as_pil = Image.fromarray(prepared.pixels.permute(1, 2, 0).numpy())
    assert torch.equal(processor(images=[as_pil], do_resize=False, return_tensors="pt")["pixel_values"], pixel_values)


async def test_a_picture_at_the_aspect_limit_gets_an_answer(tiny_model_dir: Path) -> None:
    """A 20000x100 picture passes the checks (200:1) and is resized to 6328x28 for 256 tokens (226:1).
    The processor's own resize refuses more than 200:1 with a ValueError, and it used to be asked
    again: the request failed. It only normalises now."""
    async with started_engine(tiny_model_dir, max_pixels=256 * 28 * 28) as engine:
        data = thin_png(20000, 100)
        turns = [SYSTEM, PromptTurn("user", "What is this?", (PromptImage(hashlib.sha256(data).hexdigest(), data),))]
        _, stats = await answer(engine, ask("thin", "s", turns, max_new_tokens=2))
    assert stats.finish_reason == "length" and stats.prompt_tokens > 6328 * 28 // 1024
