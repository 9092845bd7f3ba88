"""A seam for tests and benchmarks into the engine's own decoding loop.

Assign an instance to `LocalEngine.generate_hook`. Methods run on the engine's worker thread, so a
hook may sleep (to slow decoding down), raise (to simulate a failure or `torch.OutOfMemoryError`),
record what the model saw, or steer the answer by editing the logits (`on_logits`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["DecodeHook"]


class DecodeHook:
    # True: end-of-answer tokens do not stop a request, so every request runs to max_new_tokens.
    ignore_eos: bool = False

    def on_prefill(self, request_id: str, inputs: Mapping[str, Any]) -> None:
        """Before the language model starts reading a request's prompt.

        `inputs`: input_ids (the whole prompt, 1 x n),
        image_grid_thw (every picture in it, or None), pixel_values (the pictures that will be
        encoded for it, or None), cached_tokens (prefix reused from the session's KV cache),
        feature_hits (pictures whose features came from the feature cache)."""

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        """Before the model reads prompt tokens [start, end) of a request (prompts are read in chunks)."""

    def on_step(self, request_ids: Sequence[str]) -> None:
        """Before each token is chosen for these requests (the first token, then every batched step)."""

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        """The next-token logits (float32, one row per request, in `request_ids` order).

        This is the tensor the token is chosen from (argmax, or sampling when the request has a
        temperature), so editing it in place forces the choice."""
