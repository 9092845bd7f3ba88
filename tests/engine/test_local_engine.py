"""The in-process engine on tiny Qwen2.5-VL and Qwen3-VL checkpoints: real generate, queue behaviour."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers.utils import logging as hf_logging

import engine as engine_package
from engine.hooks import DecodeHook
from engine.interface import (
    EngineBusy,
    EngineError,
    EngineTimeout,
    GenerationLimits,
    GenerationRequest,
    GenerationStats,
    PromptImage,
    PromptTurn,
    Queued,
    Started,
    TextPiece,
)
from engine.local import LocalEngine
from tests.conftest import picture_bytes
from tests.engine.support import started_engine
from tests.hooks import ForcedAnswer

SMALL = 64 * 28 * 28
ENGINE_DIR = Path(engine_package.__file__).parent


def _image(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> PromptImage:
    import hashlib

    data = picture_bytes(size=size, color=color)
    return PromptImage(hashlib.sha256(data).hexdigest(), data)


def request(
    rid: str,
    session: str = "s1",
    images: tuple[PromptImage, ...] = (),
    text: str = "What is in the picture?",
    max_new_tokens: int = 8,
    timeout_s: float | None = 60,
) -> GenerationRequest:
    return GenerationRequest(
        request_id=rid,
        session_id=session,
        turns=(PromptTurn("system", "You are helpful."), PromptTurn("user", text, images)),
        limits=GenerationLimits(max_new_tokens=max_new_tokens, timeout_s=timeout_s),
    )


async def collect(engine: LocalEngine, req: GenerationRequest) -> list[Any]:
    return [event async for event in engine.generate(req)]


class SlowHook(DecodeHook):
    """Makes each decoding step take a while and never end early, so tests can act mid-generation.

    Records what each request's prefill saw (input_ids of the whole prompt, image_grid_thw,
    pixel_values of the pictures encoded then, cached_tokens, feature_hits) in `log`.
    """

    ignore_eos = True

    def __init__(self, delay: float, started: threading.Event | None = None, log: list | None = None) -> None:
        self.delay = delay
        self.started = started
        self.log = log
        self.batch_sizes: list[int] = []

    def on_prefill(self, request_id: str, inputs: Any) -> None:
        if self.log is not None:
            self.log.append(dict(inputs))

    def on_step(self, request_ids: Any) -> None:
        self.batch_sizes.append(len(request_ids))
        if self.started is not None:
            self.started.set()
        time.sleep(self.delay)


def slow_hook(engine: LocalEngine, delay: float = 0.05, started: threading.Event | None = None, log: list | None = None) -> SlowHook:
    return SlowHook(delay, started, log)


class RecordHook(DecodeHook):
    """Records what each request's prefill saw, without changing how it decodes."""

    def __init__(self, log: list) -> None:
        self.log = log

    def on_prefill(self, request_id: str, inputs: Any) -> None:
        self.log.append(dict(inputs))


def record_hook(log: list) -> RecordHook:
    """`engine.generate_hook = record_hook(calls)`: calls[-1]["input_ids"] is the whole last prompt."""
    return RecordHook(log)


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_model_dir, max_pixels=SMALL, queue_size=6) as eng:
        yield eng


@pytest.fixture
async def serial_engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    """Batching off: one request decodes at a time, so the queue order is observable."""
    async with started_engine(tiny_model_dir, max_pixels=SMALL, queue_size=6, batch_size=1) as eng:
        yield eng


async def test_generates_with_one_image_and_streams(engine: LocalEngine) -> None:
    events = await collect(engine, request("r1", images=(_image((250, 0, 0)),), max_new_tokens=10))
    pieces = [e for e in events if isinstance(e, TextPiece)]
    stats = events[-1]
    assert isinstance(stats, GenerationStats)
    assert isinstance(events[0], Queued)
    kinds = [type(e) for e in events]
    assert kinds.count(Started) == 1 and kinds.index(Queued) < kinds.index(Started)
    assert all(kind is TextPiece for kind in kinds[kinds.index(Started) + 1 : -1])  # reading, then only text
    assert stats.output_tokens >= 1 and stats.output_tokens <= 10
    assert stats.prompt_tokens > 20  # the picture's visual tokens are in the prompt
    assert stats.finish_reason in ("stop", "length")
    assert stats.total_s >= stats.queue_wait_s >= 0
    if stats.finish_reason == "length":
        assert pieces, "ten tokens without an end must produce text"
    health = engine.health()
    assert health.attention == "sdpa" and health.device == "cpu" and health.dtype == "float32"
    assert health.queue_depth == 0 and health.running == 0


async def test_two_images_are_both_in_the_prompt(engine: LocalEngine) -> None:
    seen: list[dict] = []
    engine.generate_hook = record_hook(seen)
    one = await collect(engine, request("a", images=(_image((250, 0, 0)),), max_new_tokens=2))
    two = await collect(engine, request("b", images=(_image((250, 0, 0)), _image((0, 0, 250), (64, 128))), max_new_tokens=2))
    image_token = engine.loaded.model.config.image_token_id
    counts = [int((kw["input_ids"] == image_token).sum()) for kw in seen]
    grids = [kw["image_grid_thw"].shape[0] for kw in seen]
    assert grids == [1, 2]
    assert counts[1] > counts[0] > 0
    assert one[-1].prompt_tokens < two[-1].prompt_tokens


async def test_cancel_running_request_stops_and_frees_slot(engine: LocalEngine) -> None:
    started = threading.Event()
    engine.generate_hook = slow_hook(engine, delay=0.05, started=started)
    events: list[Any] = []

    async def consume() -> None:
        async for event in engine.generate(request("long", max_new_tokens=400)):
            events.append(event)

    task = asyncio.create_task(consume())
    await asyncio.to_thread(started.wait, 10)
    assert engine.queue_position("long") == 0
    t0 = time.monotonic()
    assert await engine.cancel("long")
    assert engine.health().running == 0  # the slot is free at once
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - t0 < 2
    stats = events[-1]
    assert isinstance(stats, GenerationStats) and stats.finish_reason == "cancelled"
    assert stats.output_tokens < 400


async def test_cancel_queued_request(serial_engine: LocalEngine) -> None:
    started = threading.Event()
    serial_engine.generate_hook = slow_hook(serial_engine, delay=0.05, started=started)
    first = asyncio.create_task(collect(serial_engine, request("first", max_new_tokens=40)))
    await asyncio.to_thread(started.wait, 10)
    waiting: list[Any] = []

    async def consume() -> None:
        async for event in serial_engine.generate(request("second", session="s2")):
            waiting.append(event)

    second = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert serial_engine.queue_position("second") == 1
    assert await serial_engine.cancel("second")
    await asyncio.wait_for(second, 5)
    assert waiting[0] == Queued(1)
    assert isinstance(waiting[-1], GenerationStats) and waiting[-1].finish_reason == "cancelled"
    assert not any(isinstance(e, TextPiece | Started) for e in waiting)  # never read
    assert serial_engine.health().queue_depth == 0
    await first


async def test_closing_the_stream_cancels_the_request(engine: LocalEngine) -> None:
    started = threading.Event()
    engine.generate_hook = slow_hook(engine, delay=0.05, started=started)
    stream = engine.generate(request("gone", max_new_tokens=400))
    async for event in stream:
        if isinstance(event, TextPiece):
            break
    await stream.aclose()
    assert engine.queue_position("gone") is None
    assert engine.health().running == 0
    # The worker is free again soon: a new request completes.
    engine.generate_hook = None
    events = await asyncio.wait_for(collect(engine, request("next", max_new_tokens=2)), 10)
    assert isinstance(events[-1], GenerationStats)


async def test_fair_across_sessions(serial_engine: LocalEngine) -> None:
    started = threading.Event()
    serial_engine.generate_hook = slow_hook(serial_engine, delay=0.01, started=started)
    order: list[str] = []

    async def run(rid: str, session: str, tokens: int = 2) -> None:
        async for event in serial_engine.generate(request(rid, session=session, max_new_tokens=tokens)):
            if isinstance(event, TextPiece) and rid not in order:
                order.append(rid)

    blocker = asyncio.create_task(run("block", "busy", tokens=40))
    await asyncio.to_thread(started.wait, 10)
    tasks = [asyncio.create_task(run(f"a{i}", "alice")) for i in range(3)]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(run("b0", "bob")))
    await asyncio.sleep(0.05)
    assert serial_engine.queue_position("b0") == 2  # after alice's first, before her second
    assert serial_engine.queue_position("a2") == 4
    await asyncio.gather(blocker, *tasks)
    assert order[1:] == ["a0", "b0", "a1", "a2"]


async def test_queue_full_is_refused_clearly(engine: LocalEngine) -> None:
    started = threading.Event()
    engine.generate_hook = slow_hook(engine, delay=0.05, started=started)
    tasks = [asyncio.create_task(collect(engine, request(f"r{i}", session=f"s{i}", max_new_tokens=20))) for i in range(6)]
    await asyncio.to_thread(started.wait, 10)
    await asyncio.sleep(0.05)
    with pytest.raises(EngineBusy) as info:
        await collect(engine, request("extra", session="s9"))
    assert "busy" in info.value.user_message
    for rid in [f"r{i}" for i in range(6)]:
        await engine.cancel(rid)
    await asyncio.gather(*tasks)


async def test_timeout_while_running(engine: LocalEngine) -> None:
    engine.generate_hook = slow_hook(engine, delay=0.05)
    with pytest.raises(EngineTimeout):
        await collect(engine, request("slow", max_new_tokens=400, timeout_s=0.5))
    assert engine.health().running == 0


async def test_timeout_while_queued(serial_engine: LocalEngine) -> None:
    started = threading.Event()
    serial_engine.generate_hook = slow_hook(serial_engine, delay=0.05, started=started)
    blocker = asyncio.create_task(collect(serial_engine, request("block", max_new_tokens=60)))
    await asyncio.to_thread(started.wait, 10)
    with pytest.raises(EngineTimeout):
        await collect(serial_engine, request("waits", session="s2", timeout_s=0.2))
    assert serial_engine.queue_position("waits") is None
    await serial_engine.cancel("block")
    await blocker


class _Raise(DecodeHook):
    def __init__(self, error: BaseException, *, at_step: int | None = None) -> None:
        self.error = error
        self.at_step = at_step
        self.steps = 0

    def on_prefill(self, request_id: str, inputs: Any) -> None:
        if self.at_step is None:
            raise self.error

    def on_step(self, request_ids: Any) -> None:
        self.steps += 1
        if self.at_step is not None and self.steps == self.at_step:
            raise self.error


async def test_worker_survives_a_failing_request(engine: LocalEngine) -> None:
    engine.generate_hook = _Raise(RuntimeError("boom"))
    with pytest.raises(EngineError) as info:
        await collect(engine, request("bad"))
    assert "try again" in info.value.user_message
    engine.generate_hook = None
    events = await collect(engine, request("good", max_new_tokens=2))
    assert isinstance(events[-1], GenerationStats)
    assert engine.health().ok


async def test_out_of_memory_retries_at_half_budget(engine: LocalEngine) -> None:
    seen: list[int] = []

    class OomOnce(DecodeHook):
        def on_prefill(self, request_id: str, inputs: Any) -> None:
            seen.append(int(inputs["pixel_values"].shape[0]))
            if len(seen) == 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    engine.generate_hook = OomOnce()
    big = _image((10, 200, 10), size=(640, 480))
    events = await collect(engine, request("oom", images=(big,), max_new_tokens=2))
    stats = events[-1]
    assert isinstance(stats, GenerationStats)
    assert stats.note and "reduced resolution" in stats.note
    assert len(seen) == 2 and seen[1] < seen[0]  # fewer patches the second time


async def test_out_of_memory_twice_is_a_clear_error(engine: LocalEngine) -> None:
    engine.generate_hook = _Raise(torch.OutOfMemoryError("CUDA out of memory (simulated)"))
    with pytest.raises(EngineError) as info:
        await collect(engine, request("oom", images=(_image((1, 2, 3), (640, 480)),)))
    assert "smaller" in info.value.user_message
    engine.generate_hook = None
    assert isinstance((await collect(engine, request("after", max_new_tokens=1)))[-1], GenerationStats)


async def test_flash_attention_request_falls_back_to_sdpa(tiny_qwen25_dir: Path) -> None:
    async with started_engine(tiny_qwen25_dir, attention="flash_attention_2", max_pixels=SMALL) as eng:
        health = eng.health()
        assert health.attention == "sdpa"
        assert "flash_attention_2 unavailable" in health.attention_reason
        events = await collect(eng, request("fa", max_new_tokens=2))
        assert isinstance(events[-1], GenerationStats)


async def test_failure_mid_batch_fails_that_batch_and_the_worker_goes_on(engine: LocalEngine) -> None:
    started = threading.Event()
    engine.generate_hook = slow_hook(engine, delay=0.02, started=started)
    tasks = [asyncio.create_task(collect(engine, request(f"r{i}", session=f"s{i}", max_new_tokens=50))) for i in range(2)]
    await asyncio.to_thread(started.wait, 10)
    engine.generate_hook = _Raise(RuntimeError("boom"), at_step=3)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, EngineError) and "try again" in r.user_message for r in results)
    engine.generate_hook = None
    assert isinstance((await collect(engine, request("after", max_new_tokens=2)))[-1], GenerationStats)
    assert engine.health().ok and engine.health().running == 0


async def test_out_of_memory_while_joining_the_batch_fails_fast(engine: LocalEngine, monkeypatch) -> None:
    """Growing the batch's cache can run out of memory: nobody may be left waiting for a timeout."""
    started = threading.Event()
    engine.generate_hook = slow_hook(engine, delay=0.02, started=started)
    running = asyncio.create_task(collect(engine, request("running", session="s1", max_new_tokens=200)))
    await asyncio.to_thread(started.wait, 10)
    runner = engine._runner
    real_join = runner._join

    def join_oom(row: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated, growing the batch cache)")

    monkeypatch.setattr(runner, "_join", join_oom)
    t0 = time.monotonic()
    joining = asyncio.create_task(collect(engine, request("joining", session="s2", max_new_tokens=5, timeout_s=60)))
    results = await asyncio.wait_for(asyncio.gather(running, joining, return_exceptions=True), 20)
    assert time.monotonic() - t0 < 10  # not the 60 s timeout
    assert all(isinstance(r, EngineError) and "smaller" in r.user_message for r in results), results
    monkeypatch.setattr(runner, "_join", real_join)
    engine.generate_hook = None
    assert isinstance((await collect(engine, request("after", max_new_tokens=2)))[-1], GenerationStats)
    assert engine.health().running == 0


async def test_forced_answers_per_request_in_one_batch(engine: LocalEngine) -> None:
    """`tests.hooks.ForcedAnswer` steers each row of a batch on its own; a row without an answer decodes freely."""
    sizes: list[int] = []

    class Watched(ForcedAnswer):
        def on_step(self, request_ids: Any) -> None:
            sizes.append(len(request_ids))

    tokenizer = engine.loaded.processor.tokenizer
    answers = {"a": "Grüße aus 東京 ✓ - the serial number is 42.", "b": '[{"bbox_2d": [1, 2, 3, 4]}]'}
    engine.generate_hook = Watched(tokenizer, answers=answers, piece=1, delay=0.005)
    requests = [request(rid, session=rid, max_new_tokens=100) for rid in ("a", "b")]
    requests.append(request("free", session="free", max_new_tokens=4))
    results = await asyncio.gather(*(collect(engine, r) for r in requests))
    for (rid, text), events in zip(answers.items(), results, strict=False):
        pieces = [e.text for e in events if isinstance(e, TextPiece)]
        assert "".join(pieces) == text and not any("\ufffd" in piece for piece in pieces), rid
        stats = events[-1]
        assert isinstance(stats, GenerationStats) and stats.finish_reason == "stop"
        assert stats.output_tokens == len(tokenizer.encode(text, add_special_tokens=False)) + 1
    free = results[2][-1]
    assert isinstance(free, GenerationStats) and 1 <= free.output_tokens <= 4
    assert max(sizes) == 3  # the three decoded together


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_chat_turn_uses_no_deprecated_transformers_api(engine: LocalEngine, recwarn: pytest.WarningsRecorder) -> None:
    """Prefill, decode steps, a follow-up reusing the session's KV cache and a request joining the batch,
    without one deprecation: transformers 5.24 warned on every forward given `past_key_values`, an
    argument it removes in 5.40 (issue 13)."""
    said = _Messages()  # transformers' logger (e.g. reading `output.past_key_values`) does not propagate
    library_log = logging.getLogger("transformers")
    hf_logging.warning_once.cache_clear()  # else a message logged before stays silent
    library_log.addHandler(said)
    recwarn.clear()
    try:
        started = threading.Event()
        hook = slow_hook(engine, delay=0.02, started=started)
        engine.generate_hook = hook
        first = request("d1", images=(_image((250, 0, 0)),), max_new_tokens=3)
        await collect(engine, first)
        follow_up = GenerationRequest(
            "d2", "s1", (*first.turns, PromptTurn("assistant", "Red."), PromptTurn("user", "And the shape?")),
            GenerationLimits(max_new_tokens=8, timeout_s=60),
        )
        running = asyncio.create_task(collect(engine, follow_up))
        await asyncio.to_thread(started.wait, 10)
        await collect(engine, request("d3", session="s2", max_new_tokens=3))
        await running
    finally:
        library_log.removeHandler(said)
    assert engine.cache_stats().prefix_hits == 1 and 2 in hook.batch_sizes  # every path of the loop ran
    deprecations = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in recwarn
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
        and ("transformers" in w.filename or Path(w.filename).is_relative_to(ENGINE_DIR))
    ]
    assert deprecations == []
    assert [m for m in said.messages if "deprecat" in m.lower()] == []
