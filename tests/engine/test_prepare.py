"""Requests are prepared off the worker, refused before the queue when they cannot be served, and read in chunks.

Issue 11 finding 2 (one request stalled the GPU worker: pictures decoded and prompts tokenized on it,
cancel and timeout checked only between decode steps) and issue 14's "prepare pictures off the worker".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

import engine.prompt as prompt_module
from engine.decode import ImageBudget
from engine.interface import EngineRejected, EngineTimeout, PromptImage, PromptTurn
from engine.local import LocalEngine
from tests.engine.pictures import truncated_jpeg
from tests.engine.support import (
    SYSTEM,
    Recorder,
    answer,
    ask,
    noisy_picture,
    reference_logits,
    started_engine,
)

SMALL = 64 * 28 * 28
BUDGET = ImageBudget(4 * 28 * 28, SMALL, True)
QUESTION = [SYSTEM, PromptTurn("user", "Where is the power button?")]
LONG_TEXT = "Where is the power button on the left side of the grey printer in room four? " * 12


class Timeline(Recorder):
    """A Recorder that also keeps the order of prompt chunks and decode steps, and can slow chunks down."""

    def __init__(self, chunk_delay: float = 0.0, step_delay: float = 0.0) -> None:
        super().__init__(delay=step_delay)
        self.chunk_delay = chunk_delay
        self.events: list[tuple[str, Any]] = []
        self.chunks: dict[str, list[tuple[int, int]]] = {}
        self.on_chunk: dict[str, tuple[int, Any]] = {}  # rid -> (chunk number, callable run then)

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        self.events.append(("chunk", request_id))
        self.chunks.setdefault(request_id, []).append((start, end))
        action = self.on_chunk.get(request_id)
        if action is not None and len(self.chunks[request_id]) == action[0]:
            action[1]()
        if self.chunk_delay:
            time.sleep(self.chunk_delay)

    def on_step(self, request_ids: Sequence[str]) -> None:
        self.events.append(("step", tuple(request_ids)))
        super().on_step(request_ids)


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, prefill_chunk_tokens=32) as eng:
        yield eng


@pytest.fixture
async def engine25(tiny_qwen25_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, prefill_chunk_tokens=16) as eng:
        yield eng


async def test_pictures_are_prepared_off_the_worker_while_others_answer(
    engine25: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose pictures take long to decode does not hold up a "hi" sent after it."""
    heavy = noisy_picture((96, 64), seed=41)
    gate = threading.Event()
    threads: list[str] = []
    original = prompt_module.prepare_picture

    def slow_to_decode(loaded: Any, image: PromptImage, budget: Any, limits: Any) -> Any:
        threads.append(threading.current_thread().name)
        if image.sha256 == heavy.sha256:
            gate.wait(30)  # stands for a picture that takes long to decode
        return original(loaded, image, budget, limits)

    monkeypatch.setattr(prompt_module, "prepare_picture", slow_to_decode)
    hook = Recorder()
    engine25.generate_hook = hook
    pictured = [SYSTEM, PromptTurn("user", "What is in the picture?", (heavy,))]
    slow = asyncio.create_task(answer(engine25, ask("heavy", "h", pictured)))
    while not threads:
        await asyncio.sleep(0.005)
    _, stats = await answer(engine25, ask("hi", "s", QUESTION, 4))
    assert stats.output_tokens == 4
    assert "heavy" not in hook.prefill and not slow.done()  # "hi" was answered while the picture was decoded
    gate.set()
    _, heavy_stats = await slow
    assert heavy_stats.output_tokens == 5 and hook.prefill["heavy"]["pixel_values"] is not None
    assert threads and all(name.startswith("vlmbot-prepare") for name in threads)
    assert engine25.cache_stats().worker_prepared_images == 0


async def test_a_picture_that_does_not_decode_is_refused_before_the_queue(engine25: LocalEngine) -> None:
    hook = Recorder()
    engine25.generate_hook = hook
    good = noisy_picture((96, 64), seed=42)
    bad = PromptImage("0" * 64, truncated_jpeg())
    turns = [SYSTEM, PromptTurn("user", "Compare these.", (good, bad))]
    with pytest.raises(EngineRejected) as caught:
        await answer(engine25, ask("broken", "s", turns))
    assert caught.value.code == "invalid_image" and caught.value.image_index == 1
    assert "Picture 2 of 2" in caught.value.user_message and "damaged" in caught.value.user_message
    assert hook.prefill == {} and engine25.health().queue_depth == 0
    _, stats = await answer(engine25, ask("next", "s", QUESTION, 2))
    assert stats.output_tokens == 2


async def test_a_prompt_over_the_context_is_refused_before_the_queue(tiny_qwen25_dir: Path) -> None:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, context_tokens=120) as eng:
        hook = Recorder()
        eng.generate_hook = hook
        long = [SYSTEM, PromptTurn("user", LONG_TEXT)]
        with pytest.raises(EngineRejected) as caught:
            await answer(eng, ask("long", "s", long, 8))
        assert caught.value.code == "context_length_exceeded" and "120 tokens" in caught.value.user_message
        with pytest.raises(EngineRejected):  # a short prompt asking for an answer that cannot fit
            await answer(eng, ask("greedy", "s", QUESTION, 200))
        assert hook.prefill == {}
        _, stats = await answer(eng, ask("fits", "s", QUESTION, 8))
        assert stats.output_tokens == 8


async def test_a_long_prompt_is_read_in_chunks_between_the_steps_of_a_running_answer(engine: LocalEngine) -> None:
    hook = Timeline(step_delay=0.005)
    engine.generate_hook = hook
    running = asyncio.create_task(answer(engine, ask("running", "a", QUESTION, 1000)))
    await asyncio.to_thread(hook.stepped.wait, 10)
    picture = noisy_picture((96, 64), seed=43)
    long_turns = [SYSTEM, PromptTurn("user", LONG_TEXT, (picture,)), PromptTurn("assistant", "Yes."), PromptTurn("user", LONG_TEXT)]
    _, stats = await answer(engine, ask("long", "b", long_turns, 3))
    assert not running.done()
    await engine.cancel("running")
    await running
    chunks = hook.chunks["long"]
    assert stats.prompt_tokens == chunks[-1][1] and len(chunks) >= 8
    assert all(end - start <= 32 for start, end in chunks)
    first = hook.events.index(("chunk", "long"))
    last = len(hook.events) - 1 - hook.events[::-1].index(("chunk", "long"))
    steps_between = [e for e in hook.events[first:last] if e[0] == "step" and "running" in e[1]]
    assert len(steps_between) >= len(chunks) - 2  # the running answer kept streaming while the prompt was read
    # Reading in chunks gives the same first token scores as reading the prompt at once.
    expected = reference_logits(engine, long_turns, BUDGET)
    assert torch.allclose(hook.logits["long"][0], expected, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 5])
async def test_a_picture_split_across_chunks_gives_the_same_first_token_scores(tiny_model_dir: Path, chunk: int) -> None:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, prefill_chunk_tokens=chunk) as eng:
        hook = Timeline()
        eng.generate_hook = hook
        pictures = (noisy_picture((96, 64), seed=44), noisy_picture((56, 112), seed=45))
        turns = [SYSTEM, PromptTurn("user", "Compare these two.", pictures)]
        await answer(eng, ask("pics", "s", turns, 2))
        ids = hook.prefill["pics"]["input_ids"][0]
        image_token = eng.loaded.model.config.image_token_id
        spans = hook.chunks["pics"]
        assert all(end - start <= chunk for start, end in spans)
        # Each picture was fed in several chunks, each with its own slice of the picture's features.
        assert sum(bool((ids[s:e] == image_token).any()) for s, e in spans) > 2
        assert eng.cache_stats().encoded_images == 2
        assert torch.allclose(hook.logits["pics"][0], reference_logits(eng, turns, BUDGET), atol=1e-4)


async def test_cancel_while_a_prompt_is_read_takes_effect_at_the_next_chunk(engine25: LocalEngine) -> None:
    hook = Timeline()
    engine25.generate_hook = hook
    # What a cancel (or the caller going away) does, at a known moment: during the third chunk.
    hook.on_chunk["long"] = (3, lambda: engine25._jobs["long"].control.cancel.set())
    turns = [SYSTEM, PromptTurn("user", LONG_TEXT)]
    _, stats = await answer(engine25, ask("long", "s", turns, 5))
    assert stats.finish_reason == "cancelled" and stats.output_tokens == 0
    assert len(hook.chunks["long"]) == 3 and hook.chunks["long"][-1][1] < stats.prompt_tokens  # no fourth chunk
    while engine25.health().running:
        await asyncio.sleep(0.005)
    # What was read before the cancel is kept for the session: asking again reuses it.
    await answer(engine25, ask("again", "s", turns, 2))
    assert hook.prefill["again"]["cached_tokens"] > 0
    assert hook.chunks["again"][0][0] == hook.prefill["again"]["cached_tokens"]


async def test_timeout_while_a_prompt_is_read(engine25: LocalEngine) -> None:
    hook = Timeline(chunk_delay=0.1)
    engine25.generate_hook = hook
    turns = [SYSTEM, PromptTurn("user", LONG_TEXT * 2)]
    with pytest.raises(EngineTimeout):
        await answer(engine25, ask("slow", "s", turns, 5, timeout_s=1.0))
    while engine25.health().running:
        await asyncio.sleep(0.005)
    chunks = hook.chunks["slow"]
    assert chunks[-1][1] < len(hook.prefill["slow"]["input_ids"][0])  # it did not read the whole prompt
    engine25.generate_hook = None
    _, stats = await answer(engine25, ask("after", "t", QUESTION, 2))
    assert stats.output_tokens == 2


async def test_a_short_question_is_not_held_behind_a_long_prompt(engine25: LocalEngine) -> None:
    hook = Timeline(chunk_delay=0.05)
    engine25.generate_hook = hook
    second_chunk = threading.Event()
    hook.on_chunk["long"] = (2, second_chunk.set)
    long = asyncio.create_task(answer(engine25, ask("long", "a", [SYSTEM, PromptTurn("user", LONG_TEXT * 2)], 2)))
    await asyncio.to_thread(second_chunk.wait, 30)
    _, stats = await answer(engine25, ask("hi", "b", QUESTION, 2))
    await long
    hi_first_token = hook.events.index(("step", ("hi",)))
    long_chunks = [i for i, event in enumerate(hook.events) if event == ("chunk", "long")]
    assert stats.output_tokens == 2
    assert long_chunks[1] < hi_first_token < long_chunks[-1]  # "hi" was read while the long prompt still was


async def test_a_sessions_requests_keep_their_order_while_prepared(
    engine25: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request has its queue place from the start; a quick one does not overtake its session's slow one."""
    heavy = noisy_picture((96, 64), seed=46)
    gate = threading.Event()
    original = prompt_module.prepare_picture

    def slow_to_decode(loaded: Any, image: PromptImage, budget: Any, limits: Any) -> Any:
        if image.sha256 == heavy.sha256:
            gate.wait(30)
        return original(loaded, image, budget, limits)

    monkeypatch.setattr(prompt_module, "prepare_picture", slow_to_decode)
    hook = Recorder()
    engine25.generate_hook = hook
    first = asyncio.create_task(answer(engine25, ask("first", "s", [SYSTEM, PromptTurn("user", "What is it?", (heavy,))])))
    second = asyncio.create_task(answer(engine25, ask("second", "s", QUESTION, 2)))
    while not (engine25._jobs.get("second") and engine25._jobs["second"].ready()):
        await asyncio.sleep(0.005)
    assert [engine25.queue_position(r) for r in ("first", "second")] == [1, 2]
    assert hook.prefill == {}  # ready, but behind its session's first request
    gate.set()
    await asyncio.gather(first, second)
    assert list(hook.prefill) == ["first", "second"]


async def test_newcomers_pictures_go_through_the_vision_tower_together(engine: LocalEngine) -> None:
    hook = Timeline()
    engine.generate_hook = hook
    release = threading.Event()
    # The worker is held inside the first chunk of a one-token request until both newcomers are prepared.
    hook.on_chunk["gate"] = (1, lambda: release.wait(10))
    gate = asyncio.create_task(answer(engine, ask("gate", "g", QUESTION, 1)))
    await asyncio.to_thread(lambda: [time.sleep(0.005) for _ in range(2000) if not hook.chunks.get("gate")])
    pictures = {"one": noisy_picture((96, 64), seed=61), "two": noisy_picture((56, 112), seed=62)}
    turns = {name: [SYSTEM, PromptTurn("user", f"What is in picture {name}?", (pic,))] for name, pic in pictures.items()}
    tasks = [asyncio.create_task(answer(engine, ask(name, name, turns[name], 2))) for name in pictures]
    while not all((job := engine._jobs.get(name)) and job.ready() for name in pictures):
        await asyncio.sleep(0.005)
    calls_before = engine._runner.counters["encoder_calls"]  # type: ignore[union-attr]
    release.set()
    await gate
    await asyncio.gather(*tasks)
    assert engine._runner.counters["encoder_calls"] == calls_before + 1  # type: ignore[union-attr]
    assert engine.cache_stats().encoded_images == 2
    # Encoded together, each prompt's first token scores are those of reading it alone.
    for name in pictures:
        assert torch.allclose(hook.logits[name][0], reference_logits(engine, turns[name], BUDGET), atol=1e-4)
