"""Decode hooks that force the model's answer, for tests above the engine (bot, adapters).

The answer still goes through the engine's real decoding loop (prefill, batching, detokenizer, stop
tokens, `max_new_tokens`): only the choice of each token is forced, so an answer longer than the
service's `max_new_tokens` is cut at that length like any other.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from engine.hooks import DecodeHook

__all__ = ["ForcedAnswer", "forced_answer"]


class ForcedAnswer(DecodeHook):
    """Makes each request answer with fixed text, then `<|im_end|>`; requests without one decode freely.

    `answer` applies to every request not in `answers` (request id -> text). What each prefill saw
    (input_ids of the whole prompt, image_grid_thw, ...) is appended to `log`. Every `piece` tokens
    the worker sleeps `delay` seconds, so tests can watch an answer stream.
    """

    def __init__(
        self,
        tokenizer: Any,
        answer: str | None = None,
        log: list[dict[str, Any]] | None = None,
        *,
        answers: Mapping[str, str] | None = None,
        piece: int = 8,
        delay: float = 0.0,
    ) -> None:
        self._tokenizer = tokenizer
        self._end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._default = None if answer is None else self._ids(answer)
        self._answers = {rid: self._ids(text) for rid, text in (answers or {}).items()}
        self._chosen: dict[str, int] = {}  # request id -> tokens forced so far
        self.log = log
        self.piece = max(1, piece)
        self.delay = delay

    def _ids(self, text: str) -> list[int]:
        return [*self._tokenizer.encode(text, add_special_tokens=False), self._end]

    def force(self, request_id: str, text: str) -> None:
        self._answers[request_id] = self._ids(text)

    def on_prefill(self, request_id: str, inputs: Mapping[str, Any]) -> None:
        if self.log is not None:
            self.log.append(dict(inputs))

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        pause = False
        for row, rid in enumerate(request_ids):
            ids = self._answers.get(rid, self._default)
            if ids is None:
                continue
            count = self._chosen.get(rid, 0)
            # Past the end (only if the end token does not stop the request) the end token repeats.
            token = ids[min(count, len(ids) - 1)]
            logits[row].fill_(-torch.inf)
            logits[row, token] = 0.0  # the argmax, and the only token sampling can pick
            self._chosen[rid] = count + 1
            pause = pause or (count > 0 and count % self.piece == 0)
        if pause and self.delay:
            time.sleep(self.delay)


def forced_answer(
    service: Any, answer: str, log: list[dict[str, Any]] | None = None, *, piece: int = 8, delay: float = 0.0
) -> ForcedAnswer:
    """`service.engine.generate_hook = forced_answer(service, "text", calls)` on a running service.

    Refuses an answer the service's `max_new_tokens` would cut, so a test says so instead of failing later."""
    tokenizer = service.engine.loaded.processor.tokenizer
    needed = len(tokenizer.encode(answer, add_special_tokens=False)) + 1  # and the end token
    limit = service.conversations.limits.max_new_tokens
    if needed > limit:
        raise ValueError(f"the forced answer takes {needed} tokens; start the service with max_new_tokens >= {needed}")
    return ForcedAnswer(tokenizer, answer, log, piece=piece, delay=delay)
