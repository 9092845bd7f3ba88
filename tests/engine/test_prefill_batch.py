"""Several prompts read in one forward give each the first-token scores it gets alone and in a full recompute."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.decode import ImageBudget
from engine.interface import GenerationRequest, PromptTurn
from engine.local import LocalEngine
from tests.engine.support import SYSTEM, Recorder, answer, ask, noisy_picture, reference_logits, started_engine

SMALL = 64 * 28 * 28
BUDGET = ImageBudget(4 * 28 * 28, SMALL, True)
ATOL = 1e-4


class Gate(Recorder):
    """Holds the worker inside the "gate" request's admission until `release` is set, so the
    requests queued meanwhile are admitted (and read) together."""

    def __init__(self) -> None:
        super().__init__()
        self.reached, self.release = threading.Event(), threading.Event()
        self.chunks: dict[str, list[tuple[int, int]]] = {}
        self.forwards: list[set[str]] = []  # request ids whose chunks were announced back to back

    def on_prefill(self, request_id: str, inputs: Any) -> None:
        super().on_prefill(request_id, inputs)
        if request_id == "gate":
            self.reached.set()
            self.release.wait(30)

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        self.chunks.setdefault(request_id, []).append((start, end))


def newcomers(prefix: str, follow_up: list[PromptTurn]) -> list[GenerationRequest]:
    """A follow-up with a cached prefix, two new pictures of different sizes, a text question."""
    big, tall = noisy_picture((96, 64), seed=61), noisy_picture((56, 168), seed=62)
    return [
        ask(f"{prefix}-follow", f"{prefix}-s0", follow_up, 3),
        ask(f"{prefix}-big", f"{prefix}-s1", [SYSTEM, PromptTurn("user", "What is in the picture?", (big,))], 3),
        ask(f"{prefix}-tall", f"{prefix}-s2", [SYSTEM, PromptTurn("user", "Read the text in this picture.", (tall,))], 3),
        ask(f"{prefix}-text", f"{prefix}-s3", [SYSTEM, PromptTurn("user", "Where is the power button?")], 3),
    ]


async def conversation_start(engine: LocalEngine, session: str) -> list[PromptTurn]:
    """A first turn with a picture, answered, so the session's KV is cached; the follow-up's turns."""
    first = [SYSTEM, PromptTurn("user", "Look at this.", (noisy_picture((64, 64), seed=60),))]
    text, _ = await answer(engine, ask(f"{session}-first", session, first, 4))
    return [*first, PromptTurn("assistant", text), PromptTurn("user", "And what colour is it?")]


@pytest.mark.parametrize("chunk", [2048, 24])
async def test_prompts_read_together_match_alone_and_a_full_recompute(tiny_model_dir: Path, chunk: int) -> None:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, prefill_chunk_tokens=chunk) as eng:
        solo = Recorder()
        eng.generate_hook = solo
        follow = await conversation_start(eng, "solo-s0")
        alone = newcomers("solo", follow)
        for request in alone:
            await answer(eng, request)
        assert eng.cache_stats().batched_prefills == 0

        hook = Gate()
        eng.generate_hook = hook
        follow = await conversation_start(eng, "batch-s0")
        together = newcomers("batch", follow)
        gate = asyncio.create_task(answer(eng, ask("gate", "gate", [SYSTEM, PromptTurn("user", "Hi")], 1)))
        await asyncio.to_thread(hook.reached.wait, 30)
        tasks = [asyncio.create_task(answer(eng, request)) for request in together]
        while not all((job := eng._jobs.get(r.request_id)) and job.ready() for r in together):
            await asyncio.sleep(0.005)
        hook.release.set()
        await gate
        await asyncio.gather(*tasks)

        assert eng.cache_stats().batched_prefills >= 1
        assert hook.prefill["batch-follow"]["cached_tokens"] > 0  # one row came with a cached prefix
        if chunk < 2048:  # prompts were read in several chunks each, rows of different cache lengths
            assert all(len(hook.chunks[r.request_id]) > 1 for r in together if r.request_id != "batch-text")
        for solo_request, request in zip(alone, together, strict=True):
            mine, theirs = hook.logits[request.request_id][0], solo.logits[solo_request.request_id][0]
            assert (mine - theirs).abs().max() < ATOL, request.request_id
            expected = reference_logits(eng, request.turns, BUDGET)
            assert torch.allclose(mine, expected, atol=ATOL), request.request_id
            # The cache each row kept (padding cut out) decodes on as if read alone.
            for step, (a, b) in enumerate(zip(hook.logits[request.request_id], solo.logits[solo_request.request_id], strict=True)):
                assert (a - b).abs().max() < ATOL, (request.request_id, step)
