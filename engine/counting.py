"""Counting a prompt's tokens in process, exactly as the decoding loop will.

`PromptCounter` runs the engine's own prompt builder (`engine.prompt.build_prompt`) on a private
copy of the processor, with each picture's grid computed from its header and the pixel budget by
the same `smart_resize` the engine applies: the count is the engine's `prompt_tokens`, and no
picture is decoded. (Remote engines use `engine.prompt_bound` instead.)
"""

from __future__ import annotations

import copy
import dataclasses
import io
import threading
from collections.abc import Sequence

from PIL import Image

from engine.decode import ImageBudget
from engine.images import smart_resize
from engine.interface import PromptImage, PromptTurn, PromptVideo
from engine.loader import LoadedModel
from engine.prompt import build_prompt, image_key, video_key
from engine.video_prompt import VideoPlan, probe_plan, slot_key

__all__ = ["PromptCounter"]

_GRID_MEMO = 4096  # pictures whose grid is remembered


class PromptCounter:
    """Exact prompt length for a loaded checkpoint. Thread-safe; call from a worker thread."""

    def __init__(self, loaded: LoadedModel, budget: ImageBudget) -> None:
        # A private processor: the engine's worker thread uses the loaded one at the same time.
        self._loaded = dataclasses.replace(loaded, processor=copy.deepcopy(loaded.processor))
        self._budget = budget
        self._patch = int(loaded.processor.image_processor.patch_size)
        self._factor = loaded.patch_factor
        self._lock = threading.Lock()
        self._grids: dict[str, tuple[int, int, int]] = {}  # sha256 -> grid under this budget
        self._plans: dict[str, VideoPlan] = {}  # sha256 -> a video's plan under this budget

    def _grid(self, image: PromptImage) -> tuple[int, int, int]:
        grid = self._grids.get(image.sha256)
        if grid is None:
            with Image.open(io.BytesIO(image.data)) as picture:
                width, height = picture.size
                orientation = picture.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):  # turned upright by the engine, as in `prepare_image`
                width, height = height, width
            budget = self._budget
            h, w = smart_resize(height, width, self._factor, budget.min_pixels, budget.max_pixels)
            grid = (1, h // self._patch, w // self._patch)
            if len(self._grids) >= _GRID_MEMO:
                self._grids.clear()
            self._grids[image.sha256] = grid
        return grid

    def _plan(self, video: PromptVideo) -> VideoPlan:
        """A video's plan from its container's header (decoded only when the header has no duration)."""
        plan = self._plans.get(video.sha256)
        if plan is None:
            plan = probe_plan(self._loaded, video, self._budget.max_pixels, self._budget.video)
            if len(self._plans) >= _GRID_MEMO:
                self._plans.clear()
            self._plans[video.sha256] = plan
        return plan

    def count(self, turns: Sequence[PromptTurn]) -> int:
        """Raises `engine.videos.VideoRejected` for a video that cannot be read."""
        with self._lock:
            grids = {
                image_key(self._loaded, image, self._budget): self._grid(image)
                for turn in turns
                for image in turn.images
            }
            plans = {}
            for video in (video for turn in turns for video in turn.videos):
                key, plan = video_key(self._loaded, video, self._budget), self._plan(video)
                plans[key] = plan
                grids.update({slot_key(key, i): grid for i, grid in enumerate(plan.grids)})
            return len(build_prompt(self._loaded, turns, self._budget, grids.get, known_video=plans.get).ids)
