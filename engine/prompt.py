"""Turning a conversation into token ids with picture spans, without touching pictures already known.

The Qwen processors expand each `<|image_pad|>` of the chat template into one token per merged
patch, which needs the picture's grid; they also decode and normalise every picture. Here the grid
of a picture seen before comes from the session's KV entry or the feature cache, so a follow-up
about a 12-megapixel photo neither decodes it nor runs the vision tower; only pictures whose
features are actually needed are prepared (`prepare_picture`, which runs the shared picture checks
first). The ids equal the processor's output. `engine.prepare` calls all of this before a request
is queued; the worker falls back to it only for a picture it unexpectedly has to read again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from engine import video_prompt as videos
from engine.decode import ImageBudget, messages_for
from engine.features import ImageFeatures, ImageKey
from engine.interface import PromptImage, PromptTurn, PromptVideo
from engine.loader import LoadedModel
from engine.pictures import DEFAULT_LIMITS, PictureLimits
from engine.pixels import model_input, prepare_pixels
from engine.video_prompt import VideoPlan

__all__ = [
    "ImageSlot",
    "Prompt",
    "build_prompt",
    "image_key",
    "model_inputs_view",
    "pixels_for",
    "prepare_picture",
    "rope_positions",
    "video_key",
]

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class ImageSlot:
    """A run of visual tokens: a picture, or a video's frames (all of them, or one pair: `engine.video_prompt`)."""

    key: ImageKey
    source: PromptImage | PromptVideo
    start: int  # index of the first visual token in `Prompt.ids`
    length: int
    grid: Grid
    video_part: int | None = None  # which slot of its video; None for a picture
    seconds_per_grid: float = 1.0  # a video's time from one frame pair to the next

    @property
    def video(self) -> bool:
        return self.video_part is not None


@dataclass
class Prompt:
    ids: list[int]
    images: list[ImageSlot]
    budget: ImageBudget
    limits: PictureLimits = DEFAULT_LIMITS
    # Pixel values of pictures prepared ahead (their features were not known), by slot index.
    pixels: dict[int, torch.Tensor] = field(default_factory=dict)
    # Features taken from the feature cache when the request was prepared, by slot index: held
    # here, an eviction while the request waits does not send the picture back to be decoded.
    features: dict[int, ImageFeatures] = field(default_factory=dict)
    positions: torch.Tensor | None = None  # (3, len(ids)) M-RoPE positions, see `rope_positions`
    videos: dict[ImageKey, VideoPlan] = field(default_factory=dict)  # the plan of each video, by `video_key`


def image_key(loaded: LoadedModel, image: PromptImage, budget: ImageBudget, tenant: str = "") -> ImageKey:
    return ImageKey(image.sha256, loaded.patch_factor, budget.min_pixels, budget.max_pixels, budget.jpeg_draft, tenant)


def prepare_picture(
    loaded: LoadedModel, image: PromptImage, budget: ImageBudget, limits: PictureLimits
) -> tuple[torch.Tensor, Grid]:
    """Check, decode, resize and normalise one picture: its pixel values (in the model's dtype) and grid.

    Raises `engine.pictures.PictureRejected`."""
    prepared = prepare_pixels(
        image.data,
        factor=loaded.patch_factor,
        min_pixels=budget.min_pixels,
        max_pixels=budget.max_pixels,
        draft=budget.jpeg_draft,
        limits=limits,
    )
    pixel_values, grid = model_input(loaded.processor.image_processor, prepared.pixels)
    # The model's dtype already: half the memory while the request waits, when that is bf16.
    return pixel_values.to(loaded.dtype), grid


def video_key(loaded: LoadedModel, video: PromptVideo, budget: ImageBudget, tenant: str = "") -> ImageKey:
    return videos.video_key(loaded, video, budget.min_pixels, budget.max_pixels, budget.video, tenant)


def build_prompt(
    loaded: LoadedModel,
    turns: Sequence[PromptTurn],
    budget: ImageBudget,
    known_grid: Callable[[ImageKey], Grid | None] = lambda key: None,
    *,
    limits: PictureLimits = DEFAULT_LIMITS,
    tenant: str = "",
    known_video: Callable[[ImageKey], VideoPlan | None] = lambda key: None,
) -> Prompt:
    """The prompt's ids and picture slots; a picture whose grid (a video whose plan) is not known is prepared here."""
    processor = loaded.processor
    text = processor.apply_chat_template(
        messages_for(turns, processor.chat_template), add_generation_prompt=True, tokenize=False
    )
    image_token, video_token = processor.image_token, processor.video_token
    merge = int(processor.image_processor.merge_size) ** 2
    pictures = [image for turn in turns for image in turn.images]
    clips = [video for turn in turns for video in turn.videos]
    parts = re.split(f"({re.escape(image_token)}|{re.escape(video_token)})", text)
    marks = parts[1::2]
    if marks.count(image_token) != len(pictures) or marks.count(video_token) != len(clips):
        raise ValueError(
            f"the chat template produced {marks.count(image_token)} picture and {marks.count(video_token)} video "
            f"slots for {len(pictures)} pictures and {len(clips)} videos"
        )
    tokenizer = processor.tokenizer
    config = loaded.model.config
    prompt = Prompt([], [], budget, limits)
    ids, slots = prompt.ids, prompt.images

    def add_text(part: str) -> None:
        if part:
            ids.extend(tokenizer(part, add_special_tokens=False)["input_ids"])

    next_picture = iter(pictures)
    next_clip = iter(clips)
    for index, part in enumerate(parts):
        if index % 2 == 0:
            add_text(part)
        elif part == image_token:
            source = next(next_picture)
            key = image_key(loaded, source, budget, tenant)
            grid = known_grid(key)
            if grid is None:
                prompt.pixels[len(slots)], grid = prepare_picture(loaded, source, budget, limits)
            length = grid[0] * grid[1] * grid[2] // merge
            slots.append(ImageSlot(key, source, len(ids), length, grid))
            ids.extend([config.image_token_id] * length)
        else:
            clip = next(next_clip)
            base = video_key(loaded, clip, budget, tenant)
            plan = known_video(base)
            prepared = None
            if plan is None or any(known_grid(videos.slot_key(base, i)) is None for i in range(len(plan.grids))):
                prepared = videos.prepare_video(loaded, clip, budget.max_pixels, budget.video)
                plan = prepared.plan
            prompt.videos[base] = plan
            for piece in videos.video_pieces(loaded, plan):
                if isinstance(piece, str):
                    add_text(piece)
                    continue
                grid = plan.grids[piece]
                if prepared is not None:
                    prompt.pixels[len(slots)] = prepared.pixels[piece]
                length = grid[0] * grid[1] * grid[2] // merge
                key = videos.slot_key(base, piece)
                slots.append(ImageSlot(key, clip, len(ids), length, grid, piece, plan.seconds_per_grid))
                ids.extend([config.video_token_id] * length)
    return prompt


def pixels_for(loaded: LoadedModel, prompt: Prompt, index: int) -> torch.Tensor:
    """Pixel values of picture `index`, preparing it now if it was not prepared ahead."""
    found = prompt.pixels.get(index)
    slot = prompt.images[index]
    if found is None and isinstance(slot.source, PromptVideo):
        prepared = videos.prepare_video(loaded, slot.source, prompt.budget.max_pixels, prompt.budget.video)
        for other, each in enumerate(prompt.images):
            if each.source is slot.source and each.video_part is not None:
                if prepared.plan.grids[each.video_part] != each.grid:
                    raise RuntimeError(f"video grid changed: {prepared.plan.grids[each.video_part]} != {each.grid}")
                prompt.pixels[other] = prepared.pixels[each.video_part]
        return prompt.pixels[index]
    if found is None:
        assert isinstance(slot.source, PromptImage)
        found, grid = prepare_picture(loaded, slot.source, prompt.budget, prompt.limits)
        if grid != prompt.images[index].grid:  # a stale grid memo would corrupt the prompt
            raise RuntimeError(f"picture grid changed: {grid} != {prompt.images[index].grid}")
        prompt.pixels[index] = found
    return found


def rope_positions(loaded: LoadedModel, prompt: Prompt) -> torch.Tensor:
    """The (3, len) M-RoPE positions of the whole prompt, computed for this request alone.

    transformers keeps `rope_deltas` on the model instance between calls; we never let the model
    use it (positions are always passed in), so interleaved sessions cannot see each other's.
    """
    length = len(prompt.ids)
    if not prompt.images:
        return torch.arange(length).view(1, -1).expand(3, -1)
    input_ids = torch.tensor([prompt.ids])
    token_types = torch.zeros_like(input_ids, dtype=torch.int32)
    for slot in prompt.images:
        token_types[0, slot.start : slot.start + slot.length] = 2 if slot.video else 1
    pictures = [slot for slot in prompt.images if not slot.video]
    clips = [slot for slot in prompt.images if slot.video]
    positions, _ = loaded.model.model.get_rope_index(
        input_ids,
        mm_token_type_ids=token_types,
        image_grid_thw=torch.tensor([slot.grid for slot in pictures]) if pictures else None,
        video_grid_thw=torch.tensor([slot.grid for slot in clips]) if clips else None,
        second_per_grid_ts=torch.tensor([slot.seconds_per_grid for slot in clips]) if clips else None,
        attention_mask=None,
    )
    return positions[:, 0, :]


def model_inputs_view(prompt: Prompt, pixel_values: torch.Tensor | None, cached_tokens: int) -> dict[str, Any]:
    """What a request looks like to a hook: the full prompt, every picture's and video's grid (with a
    video's time per frame pair), the pixels to encode."""
    pictures = [slot.grid for slot in prompt.images if not slot.video]
    clips = [slot for slot in prompt.images if slot.video]
    return {
        "input_ids": torch.tensor([prompt.ids]),
        "image_grid_thw": torch.tensor(pictures) if pictures else None,
        "video_grid_thw": torch.tensor([slot.grid for slot in clips]) if clips else None,
        "second_per_grid_ts": torch.tensor([slot.seconds_per_grid for slot in clips]) if clips else None,
        "pixel_values": pixel_values,
        "cached_tokens": cached_tokens,
    }
