"""Waiting prompts are read oldest first, except short ones: a long prompt is not starved by newer,
slightly shorter ones (a 1056-token picture waited 54 s behind newcomers a few tokens shorter)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path

from engine.interface import PromptTurn
from tests.engine.support import SYSTEM, answer, ask, started_engine
from tests.engine.test_prefill_batch import Gate

LONG_TEXT = "Where is the power button on the left side of the grey printer in room four? " * 24


class Order(Gate):
    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        super().on_prefill_chunk(request_id, start, end)
        self.order.append(request_id)


async def test_an_older_long_prompt_is_read_before_newer_slightly_shorter_ones(tiny_qwen25_dir: Path) -> None:
    async with started_engine(tiny_qwen25_dir, prefill_chunk_tokens=64, batch_size=8) as eng:
        hook = Order()
        eng.generate_hook = hook
        gate = asyncio.create_task(answer(eng, ask("gate", "gate", [SYSTEM, PromptTurn("user", "Hi")], 1)))
        await asyncio.to_thread(hook.reached.wait, 30)
        old = ask("old", "s-old", [SYSTEM, PromptTurn("user", LONG_TEXT + "Please answer in detail, step by step.")], 2)
        newer = [ask(f"new{i}", f"s-new{i}", [SYSTEM, PromptTurn("user", LONG_TEXT)], 2) for i in range(3)]
        tasks = [asyncio.create_task(answer(eng, old))]
        while not ((job := eng._jobs.get("old")) and job.ready()):
            await asyncio.sleep(0.005)
        for request in newer:  # queued after "old", each a few tokens shorter
            tasks.append(asyncio.create_task(answer(eng, request)))
            while not ((job := eng._jobs.get(request.request_id)) and job.ready()):
                await asyncio.sleep(0.005)
        hook.release.set()
        await gate
        results = await asyncio.gather(*tasks)
        assert results[0][1].prompt_tokens > results[1][1].prompt_tokens > 256
        chunks = [rid for rid in hook.order if rid != "gate"]
        old_chunks = chunks.count("old")
        assert old_chunks > 2 and chunks[:old_chunks] == ["old"] * old_chunks  # read first, to its end


class Timeline(Order):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        super().on_prefill_chunk(request_id, start, end)
        self.events.append(("read", request_id))

    def on_step(self, request_ids: Sequence[str]) -> None:
        super().on_step(request_ids)
        self.events.append(("step", ",".join(request_ids)))


async def test_on_a_cpu_long_newcomers_are_read_whole_one_after_another_while_an_answer_streams(
    tiny_qwen25_dir: Path,
) -> None:
    """Several long prompts waiting: each in one forward (the cheapest way to read it), alone (on a
    CPU a forward over several costs their sum: reading them together only holds back the first
    one's first token), oldest first, and the running answers step between them."""
    async with started_engine(tiny_qwen25_dir, prefill_chunk_tokens=2048, batch_size=8) as eng:
        hook = Timeline()
        eng.generate_hook = hook
        gate = asyncio.create_task(answer(eng, ask("gate", "gate", [SYSTEM, PromptTurn("user", "Hi")], 40)))
        await asyncio.to_thread(hook.reached.wait, 30)
        names = ["a", "b", "c"]
        tasks = []
        for name in names:
            request = ask(name, f"s-{name}", [SYSTEM, PromptTurn("user", f"{name}: {LONG_TEXT}")], 2)
            tasks.append(asyncio.create_task(answer(eng, request)))
            while not ((job := eng._jobs.get(name)) and job.ready()):
                await asyncio.sleep(0.005)
        hook.release.set()
        results = await asyncio.gather(*tasks)
        await gate
        assert all(stats.prompt_tokens > 256 for _, stats in results)
        assert eng.cache_stats().batched_prefills == 0
        reads = [rid for kind, rid in hook.events if kind == "read" and rid != "gate"]
        # a and b (c waiting behind them) each whole, in one forward, oldest first; c, left alone,
        # is read in chunks sized to the running answer's steps.
        assert reads[:2] == ["a", "b"] and set(reads[2:]) == {"c"}
        # The running answer took a step between any two reads (and each newcomer joined it).
        places = [i for i, (kind, rid) in enumerate(hook.events) if kind == "read" and rid != "gate"]
        for before, after in itertools.pairwise(places[:3]):
            steps = [rid for kind, rid in hook.events[before:after] if kind == "step"]
            assert any("gate" in step.split(",") for step in steps)
