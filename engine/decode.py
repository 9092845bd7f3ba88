"""Request plumbing for the decoding loop (`engine.batch`): budgets, cancel/timeout control, results.

`build_inputs` (the chat template and the processor, as `model.generate` would be fed) is not used by
the loop: it serves reference computations in tests and the bare-`generate` baseline in `bench`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.interface import PromptTurn
from engine.loader import LoadedModel
from engine.pixels import prepare_pixels
from engine.videos import VideoBudget

__all__ = ["DecodeControl", "DecodeResult", "ImageBudget", "build_inputs", "messages_for", "stop_token_ids"]


@dataclass(frozen=True)
class ImageBudget:
    min_pixels: int
    max_pixels: int
    jpeg_draft: bool = True
    video: VideoBudget = VideoBudget()  # how videos are sampled and how many tokens one may cost

    def halved(self) -> ImageBudget:
        video = VideoBudget(self.video.limits, max(1, self.video.max_tokens // 2))
        return ImageBudget(min(self.min_pixels, self.max_pixels // 2), self.max_pixels // 2, self.jpeg_draft, video)


@dataclass
class DecodeControl:
    """Shared between the event loop and the worker thread."""

    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() value

    def should_stop(self) -> bool:
        return self.cancel.is_set() or (self.deadline is not None and time.monotonic() > self.deadline)


@dataclass(frozen=True)
class DecodeResult:
    prompt_tokens: int
    output_tokens: int
    finish_reason: str  # stop | length | cancelled | timeout
    first_token_at: float | None


# What Qwen's templates render for a video part; given as text to a template without video parts
# (checkpoints written before videos were read: the demo and bench models of earlier versions).
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"


def messages_for(turns: Sequence[PromptTurn], template: str | None = None) -> list[dict[str, Any]]:
    """Chat-template messages; `template` (the processor's) decides how a video part is written."""
    video: dict[str, Any] = {"type": "video"}
    if template is not None and "video" not in template:
        video = {"type": "text", "text": VIDEO_PLACEHOLDER}
    messages = []
    for turn in turns:
        content: list[dict[str, Any]] = [dict(video) for _ in turn.videos]
        content += [{"type": "image"} for _ in turn.images]
        content.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": content})
    return messages


def build_inputs(loaded: LoadedModel, turns: Sequence[PromptTurn], budget: ImageBudget) -> dict[str, Any]:
    """Chat template + processor output (with `mm_token_type_ids`), moved to the model's device."""
    from engine.video_prompt import reference_video  # it needs this module's budget type
    processor = loaded.processor
    text = processor.apply_chat_template(
        messages_for(turns, processor.chat_template), add_generation_prompt=True, tokenize=False
    )
    images = [
        prepare_pixels(
            image.data,
            factor=loaded.patch_factor,
            min_pixels=budget.min_pixels,
            max_pixels=budget.max_pixels,
            draft=budget.jpeg_draft,
        ).pixels
        for turn in turns
        for image in turn.images
    ]
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
        # Already the input size (as the engine prepares them, `engine.pixels`): only normalised here.
        kwargs["images_kwargs"] = {"do_resize": False, "input_data_format": "channels_first"}
    clips = [reference_video(loaded, video, budget.max_pixels, budget.video) for turn in turns for video in turn.videos]
    if clips:
        kwargs["videos"] = [frames for frames, _ in clips]
        kwargs["videos_kwargs"] = {
            "video_metadata": [metadata for _, metadata in clips],
            "do_sample_frames": False,
            "do_resize": False,
            "cap_pixels_per_frame": False,
        }
    inputs = processor(**kwargs)
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        out[key] = value
    return out


def stop_token_ids(loaded: LoadedModel) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    tokenizer = loaded.processor.tokenizer
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id >= 0:
            ids.add(token_id)
    return ids
