"""Waiting prompts are read oldest first, except short ones: a long prompt is not starved by newer,
slightly shorter ones (a 1056-token picture waited 54 s behind newcomers a few tokens shorter)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.interface import PromptTurn
from engine.local import LocalEngine, LocalEngineOptions
from tests.engine.support import SYSTEM, answer, ask
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
    eng = LocalEngine(LocalEngineOptions(model_path=tiny_qwen25_dir, prefill_chunk_tokens=64, batch_size=8))
    await eng.start()
    try:
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
    finally:
        await eng.close()
