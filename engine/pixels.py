"""A picture as the local model reads it: checked, decoded, upright, RGB, and resized in torch.

The decode is `engine.images.decode_upright` (a large JPEG at libjpeg's draft scale). The resize
runs on the uint8 tensor with torchvision's antialiased filters, which give Pillow's results (mean
difference 0.004 of 255 for bicubic, 0.001 for bilinear) in a fraction of its time: 2000x1500 ->
1148x840 bilinear in 2 ms instead of 12 ms (one thread; bench/RESULTS.md section 3c). With it a
drafted 4000x3000 photo is ready 3.1-4.4x sooner than a full decode resized by Pillow. A drafted
picture is resized bilinear, any other bicubic (`UprightPicture.resample`). A picture more than
`COPY_AT_MOST` times the target's pixels (a large PNG, or drafting off) is resized by Pillow
instead, before it is copied out, so a decode takes no more memory than before. The result is
already the model's input size, so the processor only normalises it (`do_resize=False`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as tvf

from engine.images import decode_upright
from engine.pictures import DEFAULT_LIMITS, PictureLimits, decode_slot, open_picture

__all__ = ["COPY_AT_MOST", "PreparedPixels", "model_input", "prepare_pixels"]

# Pictures up to this many times the target's pixels are copied into torch and resized there (a
# drafted JPEG is, unless even 1/8 scale is over twice the target per side); larger ones by Pillow.
COPY_AT_MOST = 4
# `UprightPicture.resample`, as torchvision names it (antialiased: the same filter as Pillow's).
_TORCH_FILTER = {Image.Resampling.BILINEAR: tvf.InterpolationMode.BILINEAR, Image.Resampling.BICUBIC: tvf.InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class PreparedPixels:
    pixels: torch.Tensor  # (3, height, width) uint8 at the model's input size
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    drafted: bool


def prepare_pixels(
    data: bytes,
    *,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    draft: bool = True,
    limits: PictureLimits = DEFAULT_LIMITS,
) -> PreparedPixels:
    """Check, decode (at the draft scale with `draft`), turn upright, convert to RGB, resize to the budget.

    Raises `engine.pictures.PictureRejected` for a picture the checks refuse or that does not decode."""
    with open_picture(data, limits) as image, decode_slot():
        upright = decode_upright(image, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels, draft=draft)
        picture = upright.image
        width, height = upright.target
        if picture.width * picture.height > COPY_AT_MOST * width * height:
            # Pillow resizes a picture many times the target itself: copying it out first would add
            # 3 bytes a pixel to its own 4 while it is decoded (192 MB more for 64 megapixels).
            picture = picture.resize(upright.target, upright.resample)
        picture.load()  # the decode, inside the checks (numpy would hide a decoder's error)
        # One copy out of Pillow (its RGB rows are padded to 4 bytes), writable so torch may own it.
        pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1)
    if pixels.shape[1:] != (height, width):
        mode = _TORCH_FILTER[upright.resample]
        pixels = tvf.resize(pixels.unsqueeze(0), [height, width], interpolation=mode, antialias=True)[0]
    # Planar, as the processor lays it out: its normalisation and patch reshape run faster on it.
    return PreparedPixels(pixels=pixels.contiguous(), original_size=upright.original_size, drafted=upright.drafted)


def model_input(image_processor: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """The Qwen image processor's `pixel_values` (float32) and grid of one prepared picture.

    Only rescaling, normalisation and the patch layout remain: the picture is already its input size.
    `do_resize=False`: the processor's own resize would leave it alone, but first refuses a picture
    over 200:1, and a picture the checks accept (up to 200:1) can be 226:1 once its short side is one
    visual token."""
    out = image_processor(images=[pixels], do_resize=False, input_data_format="channels_first", return_tensors="pt")
    t, h, w = (int(x) for x in out["image_grid_thw"][0].tolist())
    return out["pixel_values"], (t, h, w)
