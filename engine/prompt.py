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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.decode import ImageBudget, messages_for
from engine.features import ImageFeatures, ImageKey
from engine.interface import PromptImage, PromptTurn
from engine.loader import LoadedModel
from engine.pictures import DEFAULT_LIMITS, PictureLimits
from engine.pixels import model_input, prepare_pixels

__all__ = [
    "ImageSlot",
    "Prompt",
    "build_prompt",
    "image_key",
    "model_inputs_view",
    "pixels_for",
    "prepare_picture",
    "rope_positions",
]

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class ImageSlot:
    key: ImageKey
    source: PromptImage
    start: int  # index of the first visual token in `Prompt.ids`
    length: int
    grid: Grid


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


def build_prompt(
    loaded: LoadedModel,
    turns: Sequence[PromptTurn],
    budget: ImageBudget,
    known_grid: Callable[[ImageKey], Grid | None] = lambda key: None,
    *,
    limits: PictureLimits = DEFAULT_LIMITS,
    tenant: str = "",
) -> Prompt:
    """The prompt's ids and picture slots; a picture whose grid is not known is prepared here."""
    processor = loaded.processor
    text = processor.apply_chat_template(messages_for(turns), add_generation_prompt=True, tokenize=False)
    image_token = processor.image_token
    merge = int(processor.image_processor.merge_size) ** 2
    sources = [image for turn in turns for image in turn.images]
    parts = text.split(image_token)
    if len(parts) != len(sources) + 1:
        raise ValueError(f"the chat template produced {len(parts) - 1} picture slots for {len(sources)} pictures")
    tokenizer = processor.tokenizer
    image_token_id = loaded.model.config.image_token_id
    ids: list[int] = []
    slots: list[ImageSlot] = []
    pixels: dict[int, torch.Tensor] = {}
    for index, part in enumerate(parts):
        if part:
            ids.extend(tokenizer(part, add_special_tokens=False)["input_ids"])
        if index == len(sources):
            break
        source = sources[index]
        key = image_key(loaded, source, budget, tenant)
        grid = known_grid(key)
        if grid is None:
            pixels[index], grid = prepare_picture(loaded, source, budget, limits)
        length = grid[0] * grid[1] * grid[2] // merge
        slots.append(ImageSlot(key, source, len(ids), length, grid))
        ids.extend([image_token_id] * length)
    return Prompt(ids, slots, budget, limits, pixels)


def pixels_for(loaded: LoadedModel, prompt: Prompt, index: int) -> torch.Tensor:
    """Pixel values of picture `index`, preparing it now if it was not prepared ahead."""
    found = prompt.pixels.get(index)
    if found is None:
        found, grid = prepare_picture(loaded, prompt.images[index].source, prompt.budget, prompt.limits)
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
        token_types[0, slot.start : slot.start + slot.length] = 1
    grids = torch.tensor([slot.grid for slot in prompt.images])
    positions, _ = loaded.model.model.get_rope_index(
        input_ids, mm_token_type_ids=token_types, image_grid_thw=grids, attention_mask=None
    )
    return positions[:, 0, :]


def model_inputs_view(prompt: Prompt, pixel_values: torch.Tensor | None, cached_tokens: int) -> dict[str, Any]:
    """What a request looks like to a hook: the full prompt, every picture's grid, the pixels to encode."""
    grids = torch.tensor([slot.grid for slot in prompt.images]) if prompt.images else None
    return {
        "input_ids": torch.tensor([prompt.ids]),
        "image_grid_thw": grids,
        "pixel_values": pixel_values,
        "cached_tokens": cached_tokens,
    }
