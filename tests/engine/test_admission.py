"""Memory-aware admission: the estimate against measured allocations, and a queue that holds what does not fit."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from engine.admission import (
    MemoryShape,
    cuda_budgets,
    kv_bytes,
    prompt_bytes,
    vision_bytes,
)
from engine.interface import PromptTurn, Queued
from engine.kvstore import cache_nbytes
from engine.local import LocalEngine
from tests.engine.support import SYSTEM, HeldAt, Recorder, answer, ask, noisy_picture, started_engine

SMALL = 64 * 28 * 28


def started(path: Path, **options: Any) -> AbstractAsyncContextManager[LocalEngine]:
    return started_engine(path, max_pixels=SMALL, feature_cache_bytes=0, **options)


@pytest.mark.parametrize("words", [1, 40, 200])
@pytest.mark.parametrize("picture", [False, True])
async def test_the_kv_estimate_matches_the_cache_the_loop_built(tiny_model_dir: Path, words: int, picture: bool) -> None:
    async with started(tiny_model_dir) as engine:
        engine.generate_hook = Recorder(ignore_eos=True)  # every answer runs to its limit
        images = (noisy_picture((96, 64), seed=3),) if picture else ()
        turns = [SYSTEM, PromptTurn("user", " ".join(["word"] * words), images)]
        await answer(engine, ask("r", "s", turns, max_new_tokens=7))
        entry = engine._kv.take(("", "s"))
        assert entry is not None
        measured = cache_nbytes(entry.cache)
    shape = MemoryShape.of(engine.loaded.model.config, engine.loaded.dtype)
    prompt_tokens = len(engine.generate_hook.prefill["r"]["input_ids"][0])
    estimated = kv_bytes(shape, prompt_tokens, 7)
    # The cache holds every token but the last one chosen (it is never fed back): one token's worth less.
    assert estimated - measured == shape.kv_bytes_per_token, (estimated, measured)


@pytest.mark.parametrize("side", [8, 16, 32])
def test_the_vision_estimate_covers_the_measured_peak(tiny_qwen25_dir: Path, side: int) -> None:
    """The CPU allocator's peak while the vision tower reads one picture, as torch.profiler reports it."""
    from engine.loader import load_model

    loaded = load_model(tiny_qwen25_dir, device_setting="cpu")
    shape = MemoryShape.of(loaded.model.config, loaded.dtype)
    patches = side * side
    grid = torch.tensor([[1, side, side]])
    pixels = torch.randn(patches, loaded.model.config.vision_config.in_channels * 2 * 14 * 14)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loaded.model.model.visual(pixels, grid_thw=grid)
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    held = peak = 0
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    estimated = vision_bytes(shape, patches)
    # An upper bound, and not a loose one: within 1.5x of what was really allocated.
    assert peak <= estimated <= 1.5 * peak, (peak, estimated)


async def test_a_request_that_does_not_fit_waits_in_the_queue_with_its_position(tiny_qwen25_dir: Path) -> None:
    picture = (noisy_picture((96, 64), seed=5),)
    first = ask("first", "s1", [SYSTEM, PromptTurn("user", "What is this?", picture)], max_new_tokens=6)
    second = ask("second", "s2", [SYSTEM, PromptTurn("user", "And this?", picture)], max_new_tokens=6)
    async with started(tiny_qwen25_dir) as probe:
        assert probe._ledger is not None and probe._preparer is not None
        prepared = await probe._preparer.prepare(first, cached_grids={}, features=None)
        need = prompt_bytes(probe._ledger.shape, prepared, 6)
    async with started(tiny_qwen25_dir, admission_bytes=need + need // 2) as engine:  # room for one, not two
        hook = HeldAt(1)
        engine.generate_hook = hook
        running = asyncio.create_task(answer(engine, first))
        await asyncio.to_thread(hook.reached.wait, 30)
        events: list[object] = []

        async def collect() -> None:
            async for event in engine.generate(second):
                events.append(event)

        waiting = asyncio.create_task(collect())
        while not ((job := engine._jobs.get("second")) and job.ready()):
            await asyncio.sleep(0.005)
        engine._wake.set()
        hook.release.set()  # the loop yields at step boundaries and tries to admit the second: it must wait
        await running
        await waiting
        assert max(hook.batch_sizes) == 1  # never decoded together
        assert Queued(1) in events  # it was told its place in the queue
        assert hook.logits["second"]  # and it ran once the first had left


async def test_without_a_budget_both_decode_together(tiny_qwen25_dir: Path) -> None:
    async with started(tiny_qwen25_dir) as engine:
        hook = HeldAt(1)
        engine.generate_hook = hook
        picture = (noisy_picture((96, 64), seed=5),)
        requests = [ask(n, f"s-{n}", [SYSTEM, PromptTurn("user", "What?", picture)], 6) for n in ("a", "b")]
        tasks = [asyncio.create_task(answer(engine, r)) for r in requests]
        await asyncio.to_thread(hook.reached.wait, 30)
        while not all((job := engine._jobs.get(r.request_id)) and job.ready() for r in requests):
            await asyncio.sleep(0.005)
        hook.release.set()
        await asyncio.gather(*tasks)
        assert max(hook.batch_sizes) == 2


def test_cuda_budgets_split_what_the_weights_leave() -> None:
    gib = 1024**3
    assert cuda_budgets(16 * gib, 0.9, 8 * gib, None) == (int(6.4 * gib) // 2, int(6.4 * gib) - int(6.4 * gib) // 2)
    assert cuda_budgets(16 * gib, 0.9, 8 * gib, 1 * gib) == (1 * gib, int(14.4 * gib) - 8 * gib - 1 * gib)
    assert cuda_budgets(8 * gib, 0.9, 16 * gib, None) == (0, 0)
