"""Batched decoding gives every request what it would get alone; one can be cancelled alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.decode import ImageBudget
from engine.interface import GenerationRequest, PromptTurn
from engine.local import LocalEngine
from tests.engine.support import SYSTEM, HeldAt, Recorder, answer, ask, noisy_picture, reference_logits, started_engine

SMALL = 64 * 28 * 28
ATOL = 1e-4


def mixed_requests(prefix: str) -> list[GenerationRequest]:
    """Pictures of different sizes and a text-only request, with different lengths."""
    big, tall = noisy_picture((96, 64), seed=11), noisy_picture((56, 168), seed=12)
    return [
        ask(f"{prefix}-big", f"{prefix}-s1", [SYSTEM, PromptTurn("user", "What is in the picture?", (big,))], 7),
        ask(f"{prefix}-tall", f"{prefix}-s2", [SYSTEM, PromptTurn("user", "Read the text in this picture.", (tall,))], 9),
        ask(f"{prefix}-text", f"{prefix}-s3", [SYSTEM, PromptTurn("user", "Where is the power button?")], 5),
    ]


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    # No feature cache: every request reads its pictures itself, alone or batched.
    async with started_engine(tiny_model_dir, max_pixels=SMALL, feature_cache_bytes=0) as eng:
        yield eng


async def alone(engine: LocalEngine, requests: list[GenerationRequest]) -> tuple[Recorder, dict[str, str]]:
    hook = Recorder()
    engine.generate_hook = hook
    texts = {}
    for request in requests:
        texts[request.request_id], _ = await answer(engine, request)
    assert set(hook.batch_sizes) == {1}
    return hook, texts


def assert_same(alone_hook: Recorder, batched_hook: Recorder, alone_id: str, batched_id: str, steps: int) -> None:
    solo, together = alone_hook.logits[alone_id], batched_hook.logits[batched_id]
    assert len(solo) >= steps and len(together) >= steps
    for step in range(steps):
        diff = (solo[step] - together[step]).abs().max()
        assert diff < ATOL, (batched_id, step, float(diff))


async def test_batched_equals_alone_with_requests_joining_mid_flight(engine: LocalEngine) -> None:
    solo_hook, solo_texts = await alone(engine, mixed_requests("solo"))
    hook = HeldAt(step=3)
    engine.generate_hook = hook
    first, *later = mixed_requests("batch")
    tasks = [asyncio.create_task(answer(engine, first))]
    await asyncio.to_thread(hook.reached.wait, 10)  # the first is a few steps in, held there
    tasks += [asyncio.create_task(answer(engine, request)) for request in later]
    while not all((job := engine._jobs.get(r.request_id)) and job.ready() for r in later):  # prepared, off the worker
        await asyncio.sleep(0.005)
    hook.release.set()  # the others join the running batch at the next step boundary
    results = await asyncio.gather(*tasks)
    assert hook.batch_sizes[0] == 1 and max(hook.batch_sizes) == 3
    for request, (text, stats) in zip([first, *later], results, strict=True):
        name = request.request_id.removeprefix("batch-")
        assert stats.output_tokens == request.limits.max_new_tokens
        assert_same(solo_hook, hook, f"solo-{name}", request.request_id, request.limits.max_new_tokens)
        assert text == solo_texts[f"solo-{name}"]
    assert engine.health().running == 0
    # The KV cache a batched row left behind (padding removed) serves its session's follow-up.
    turns = [*first.turns, PromptTurn("assistant", results[0][0]), PromptTurn("user", "And?")]
    await answer(engine, ask("follow", first.session_id, turns))
    assert hook.prefill["follow"]["cached_tokens"] >= len(hook.prefill[first.request_id]["input_ids"][0])
    expected = reference_logits(engine, turns, ImageBudget(4 * 28 * 28, SMALL, True))
    assert torch.allclose(hook.logits["follow"][0], expected, atol=ATOL)


async def test_requests_submitted_together_run_as_one_batch(engine: LocalEngine) -> None:
    solo_hook, _ = await alone(engine, mixed_requests("solo"))
    hook = Recorder(delay=0.02)  # slow steps: on a loaded machine the first must not finish before the third is prepared
    engine.generate_hook = hook
    requests = mixed_requests("batch")
    await asyncio.gather(*(answer(engine, r) for r in requests))
    # All three decode together (each joins as soon as its pictures are prepared, off the worker).
    assert max(hook.batch_sizes) == 3
    for request in requests:
        name = request.request_id.removeprefix("batch-")
        assert_same(solo_hook, hook, f"solo-{name}", request.request_id, request.limits.max_new_tokens)


class CancelInFullBatch(Recorder):
    """Cancels `victim` at its first step in a batch of three (not at a fixed token count: on a loaded
    machine the first request could finish before the third one joined)."""

    def __init__(self, victim: str, cancel: Any) -> None:
        super().__init__(delay=0.02)  # slow steps: the three overlap however loaded the machine is
        self._victim, self._cancel, self._fired = victim, cancel, False

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        super().on_logits(request_ids, logits)
        if not self._fired and len(request_ids) == 3 and self._victim in request_ids:
            self._fired = True
            self._cancel()


async def test_cancelling_one_request_leaves_the_others_unchanged(engine: LocalEngine) -> None:
    solo_hook, solo_texts = await alone(engine, mixed_requests("solo"))
    requests = mixed_requests("batch")
    victim = requests[1].request_id
    loop = asyncio.get_running_loop()
    hook = CancelInFullBatch(victim, lambda: asyncio.run_coroutine_threadsafe(engine.cancel(victim), loop))
    engine.generate_hook = hook
    results = await asyncio.gather(*(answer(engine, r) for r in requests))
    cancelled = results[1][1]
    assert cancelled.finish_reason == "cancelled" and cancelled.output_tokens < requests[1].limits.max_new_tokens
    assert max(hook.batch_sizes) == 3 and hook.batch_sizes[-1] == 1  # the batch went on without it
    for index in (0, 2):
        request = requests[index]
        name = request.request_id.removeprefix("batch-")
        assert results[index][1].finish_reason == "length"
        assert results[index][0] == solo_texts[f"solo-{name}"]
        assert_same(solo_hook, hook, f"solo-{name}", request.request_id, request.limits.max_new_tokens)


async def test_same_session_requests_are_not_batched_together(engine: LocalEngine) -> None:
    hook = Recorder()
    engine.generate_hook = hook
    turns = [SYSTEM, PromptTurn("user", "Where is the power button?")]
    await asyncio.gather(*(answer(engine, ask(f"r{i}", "one-session", turns, 3)) for i in range(3)))
    assert set(hook.batch_sizes) == {1}


async def test_batch_size_limits_the_batch(tiny_model_dir: Path) -> None:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, batch_size=2) as eng:
        hook = Recorder()
        eng.generate_hook = hook
        turns = [SYSTEM, PromptTurn("user", "Where is the power button?")]
        await asyncio.gather(*(answer(eng, ask(f"r{i}", f"s{i}", turns, 4)) for i in range(5)))
        assert max(hook.batch_sizes) == 2
        logits = [hook.logits[f"r{i}"] for i in range(5)]
        for other in logits[1:]:  # the same prompt gives the same logits in any batch
            assert all(torch.allclose(a, b, atol=ATOL) for a, b in zip(logits[0], other, strict=True))


async def test_queue_positions_when_the_batch_is_full(tiny_model_dir: Path) -> None:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, batch_size=2) as eng:
        hook = Recorder(delay=0.02)
        eng.generate_hook = hook
        turns = [SYSTEM, PromptTurn("user", "Where is the power button?")]
        tasks = [asyncio.create_task(answer(eng, ask(f"r{i}", f"s{i}", turns, 12))) for i in range(2)]
        while eng.health().running < 2:  # each starts once prepared (off the worker), not necessarily together
            await asyncio.sleep(0.005)
        waiting = []
        for i in range(2):  # queued in this order: each joins the queue once prepared
            waiting.append(asyncio.create_task(answer(eng, ask(f"w{i}", f"t{i}", turns, 3))))
            while eng.queue_position(f"w{i}") is None:
                await asyncio.sleep(0.005)
        assert [eng.queue_position(r) for r in ("r0", "r1", "w0", "w1")] == [0, 0, 1, 2]
        assert eng.health().running == 2 and eng.health().queue_depth == 2
        results = await asyncio.gather(*tasks, *waiting)
        waits = [stats.queue_wait_s for _, stats in results]
        assert min(waits[2:]) > max(waits[:2])  # the last two waited for a place in the batch
        assert max(hook.batch_sizes) == 2
