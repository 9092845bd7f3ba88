"""Model answers and pictures shared by the preset tests of every adapter."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

TABLE = "| Part | Qty |\n|---|---|\n| Toner, black | 2 |\n| Drum \"XL\" | 1 |"
# 40 lines (over 1500 characters) of code: long enough that an adapter would also send its own code file.
PAGE = "<!DOCTYPE html>\n<html><head><style>.row{padding:4px}</style></head><body>\n" + "\n".join(
    f'<div class="row" id="row{i}">Row {i}: the login form field</div>' for i in range(40)
) + "\n</body></html>"
# 560x280 at the tests' 64x28x28 pixel budget is read by the model as 308x140 (a 22x10 grid of 14 px
# patches): the label at (140, 70)-(280, 210) of the original is at (77, 35)-(154, 105) there.
FOUND = 'Here it is:\n```json\n[{"bbox_2d": [77, 35, 154, 105], "label": "serial number"}]\n```'
DESCRIPTION = "Type: photo\nSummary: a red rectangle on a plain background."


def label_picture() -> bytes:
    image = Image.new("RGB", (560, 280), "white")
    ImageDraw.Draw(image).rectangle((140, 70, 279, 209), fill=(30, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def images_in(call: dict[str, Any]) -> int:
    grid = call.get("image_grid_thw")
    return 0 if grid is None else int(grid.shape[0])


def prompt_of(service: Any, call: dict[str, Any]) -> str:
    return service.engine.loaded.processor.tokenizer.decode(call["input_ids"][0])
