"""Request plumbing shared by the decoding paths, and the legacy `model.generate` path.

`engine.batch` is the engine's decoding loop. `build_inputs` + `run_generate` (the processor and
`model.generate` with a streamer) serve only a legacy `generate_hook` (a callable that replaces
`model.generate`) and reference computations in tests. Runs on the engine's worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from engine.images import prepare_image
from engine.interface import GenerationLimits, PromptTurn
from engine.loader import LoadedModel

__all__ = ["DecodeControl", "DecodeResult", "ImageBudget", "build_inputs", "messages_for", "run_generate", "stop_token_ids"]


@dataclass(frozen=True)
class ImageBudget:
    min_pixels: int
    max_pixels: int
    jpeg_draft: bool = True

    def halved(self) -> ImageBudget:
        return ImageBudget(min(self.min_pixels, self.max_pixels // 2), self.max_pixels // 2, self.jpeg_draft)


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


def messages_for(turns: Sequence[PromptTurn]) -> list[dict[str, Any]]:
    messages = []
    for turn in turns:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in turn.images]
        content.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": content})
    return messages


def build_inputs(loaded: LoadedModel, turns: Sequence[PromptTurn], budget: ImageBudget) -> dict[str, Any]:
    """Chat template + processor output (with `mm_token_type_ids`), moved to the model's device."""
    processor = loaded.processor
    text = processor.apply_chat_template(messages_for(turns), add_generation_prompt=True, tokenize=False)
    images = [
        prepare_image(
            image.data,
            factor=loaded.patch_factor,
            min_pixels=budget.min_pixels,
            max_pixels=budget.max_pixels,
            draft=budget.jpeg_draft,
        ).image
        for turn in turns
        for image in turn.images
    ]
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
        # Our resize already fits the budget; the same bounds keep the processor from resizing again.
        kwargs["size"] = {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}
    inputs = processor(**kwargs)
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        out[key] = value
    return out


class _Stop(StoppingCriteria):
    def __init__(self, control: DecodeControl) -> None:
        self._control = control

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        stop = self._control.should_stop()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _TextStreamer(BaseStreamer):
    """Decodes new tokens incrementally and hands complete characters to `emit`."""

    def __init__(self, tokenizer: Any, emit: Callable[[str], None], stop_ids: set[int]) -> None:
        self._tokenizer = tokenizer
        self._emit = emit
        self._stop_ids = stop_ids
        self._ids: list[int] = []
        self._sent = 0
        self._seen_prompt = False
        self.count = 0
        self.first_token_at: float | None = None
        self.ended_with_stop = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:  # generate() first passes the prompt itself
            self._seen_prompt = True
            return
        for token in value.reshape(-1).tolist():
            self.count += 1
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            if token in self._stop_ids:
                self.ended_with_stop = True
                continue
            self._ids.append(token)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        # Hold back an incomplete multi-byte character until its remaining bytes arrive.
        if text.endswith("\ufffd"):
            return
        if len(text) > self._sent:
            self._emit(text[self._sent :])
            self._sent = len(text)

    def end(self) -> None:
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if len(text) > self._sent:
            self._emit(text[self._sent :])
            self._sent = len(text)


def stop_token_ids(loaded: LoadedModel) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    tokenizer = loaded.processor.tokenizer
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id >= 0:
            ids.add(token_id)
    return ids


def run_generate(
    loaded: LoadedModel,
    inputs: dict[str, Any],
    limits: GenerationLimits,
    control: DecodeControl,
    emit: Callable[[str], None],
    generate: Callable[..., Any] | None = None,
) -> DecodeResult:
    """`model.generate` with a streamer and a stopping criterion for cancel and timeout."""
    stop_ids = stop_token_ids(loaded)
    streamer = _TextStreamer(loaded.processor.tokenizer, emit, stop_ids)
    sampling: dict[str, Any] = {"do_sample": False}
    if limits.temperature > 0:
        sampling = {"do_sample": True, "temperature": limits.temperature, "top_p": limits.top_p}
    prompt_tokens = int(inputs["input_ids"].shape[1])
    with torch.inference_mode():
        (generate or loaded.model.generate)(
            **inputs,
            max_new_tokens=limits.max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Stop(control)]),
            eos_token_id=sorted(stop_ids),
            pad_token_id=loaded.processor.tokenizer.pad_token_id,
            **sampling,
        )
    if control.cancel.is_set():
        reason = "cancelled"
    elif control.deadline is not None and time.monotonic() > control.deadline and not streamer.ended_with_stop:
        reason = "timeout"
    elif streamer.ended_with_stop:
        reason = "stop"
    else:
        reason = "length"
    return DecodeResult(prompt_tokens, streamer.count, reason, streamer.first_token_at)
