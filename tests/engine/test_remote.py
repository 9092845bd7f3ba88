"""The remote engine over real HTTP: against this project's engine server and a vLLM-like stand-in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine.interface import (
    EngineError,
    EngineUnavailable,
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
from engine.remote import LOST_MID_ANSWER, RemoteEngine, api_base
from engine.server import EngineServerOptions, RunningServer, running_engine_server
from tests.conftest import picture_bytes
from tests.engine.openai_standin import OpenAIStandIn
from tests.engine.support import started_remote
from tests.engine.test_local_engine import slow_hook
from tests.engine.test_server import local_engine, server, server_options  # noqa: F401  (fixtures)

TINY_BUDGET = 16 * 28 * 28


def image(size: tuple[int, int] = (96, 64), color: tuple[int, int, int] = (200, 0, 0), fmt: str = "PNG") -> PromptImage:
    data = picture_bytes(size=size, color=color, fmt=fmt)
    return PromptImage(hashlib.sha256(data).hexdigest(), data)


def request(
    rid: str, *images: PromptImage, session: str = "s1", max_new_tokens: int = 6, timeout_s: float | None = 30
) -> GenerationRequest:
    return GenerationRequest(
        request_id=rid,
        session_id=session,
        turns=(PromptTurn("system", "You are helpful."), PromptTurn("user", "What is this?", tuple(images))),
        limits=GenerationLimits(max_new_tokens=max_new_tokens, timeout_s=timeout_s),
    )


@pytest.fixture
async def remote(server: RunningServer) -> AsyncIterator[RemoteEngine]:  # noqa: F811
    async with started_remote(server.url, max_pixels=TINY_BUDGET, retry_backoff_s=0.01) as engine:
        yield engine


@pytest.fixture
async def standin() -> AsyncIterator[OpenAIStandIn]:
    async with OpenAIStandIn() as stand_in:
        yield stand_in


async def collect(engine: RemoteEngine, req: GenerationRequest) -> list[Any]:
    return [event async for event in engine.generate(req)]


async def wait_idle(engine: LocalEngine, within: float) -> None:
    begin = time.monotonic()
    while engine.health().running or engine.health().queue_depth:
        assert time.monotonic() - begin < within, "the server kept generating"
        await asyncio.sleep(0.02)


def decode_data_uri(url: str) -> tuple[str, Image.Image]:
    header, data = url.split(",", 1)
    return header, Image.open(io.BytesIO(base64.b64decode(data)))


# --- against this project's engine server --------------------------------------------------------


async def test_picture_resized_then_streamed(
    remote: RemoteEngine, local_engine: LocalEngine, tiny_qwen25_dir: Path  # noqa: F811
) -> None:
    seen: list[dict] = []
    local_engine.generate_hook = slow_hook(local_engine, delay=0, log=seen)
    events = await collect(remote, request("r1", image(size=(1200, 800), fmt="JPEG"), max_new_tokens=6))
    assert remote.model_name == tiny_qwen25_dir.name  # asked the server for its model
    pieces = [e for e in events if isinstance(e, TextPiece)]
    stats = events[-1]
    assert len(pieces) >= 2 and isinstance(stats, GenerationStats)
    kinds = [type(e) for e in events]
    assert kinds.count(Started) == 1 and kinds.index(Started) < kinds.index(TextPiece)  # the server's `: started`
    assert stats.finish_reason == "length" and stats.output_tokens == 6 and stats.prompt_tokens > 0
    assert stats.time_to_first_token_s is not None and stats.model == tiny_qwen25_dir.name
    _, height, width = (int(v) for v in seen[0]["image_grid_thw"][0])  # 14 px patches the server's model saw
    assert height * width * 14 * 14 <= TINY_BUDGET  # the bot's budget, smaller than the server's own
    assert remote.health().ok


async def test_local_queue_positions_with_one_request_in_flight(
    server: RunningServer, local_engine: LocalEngine  # noqa: F811
) -> None:
    local_engine.generate_hook = slow_hook(local_engine, delay=0.02)
    async with started_remote(server.url, concurrency=1, retry_backoff_s=0.01) as engine:
        results = await asyncio.gather(*[collect(engine, request(f"r{i}", session=f"s{i}")) for i in range(3)])
    positions = [[e.position for e in events if isinstance(e, Queued)] for events in results]
    assert positions[1][:1] == [1] and positions[2][:2] == [2, 1]
    assert all(isinstance(events[-1], GenerationStats) for events in results)


async def test_cancel_closes_the_stream_and_frees_the_server(
    remote: RemoteEngine, local_engine: LocalEngine  # noqa: F811
) -> None:
    local_engine.generate_hook = slow_hook(local_engine, delay=0.1)  # 16 tokens: 1.6 s
    events: list[Any] = []
    async for event in remote.generate(request("c1", max_new_tokens=16)):
        events.append(event)
        if isinstance(event, TextPiece):
            assert remote.queue_position("c1") == 0
            assert await remote.cancel("c1")
    assert isinstance(events[-1], GenerationStats) and events[-1].finish_reason == "cancelled"
    await wait_idle(local_engine, within=0.6)


async def test_closing_the_iterator_frees_the_server(
    remote: RemoteEngine, local_engine: LocalEngine  # noqa: F811
) -> None:
    local_engine.generate_hook = slow_hook(local_engine, delay=0.1)
    stream = remote.generate(request("c2", max_new_tokens=16))
    async for event in stream:
        if isinstance(event, TextPiece):
            break
    await stream.aclose()
    await wait_idle(local_engine, within=0.6)
    assert remote.health().queue_depth == 0 and remote.health().running == 0


async def test_wrong_api_key_is_an_unavailable_server(local_engine: LocalEngine) -> None:  # noqa: F811
    options = EngineServerOptions(port=0, api_keys=("right",), shutdown_timeout_s=1)
    async with running_engine_server(local_engine, options) as running:
        async with started_remote(running.url, api_key="wrong", model="tiny-qwen2_5_vl") as engine:
            with pytest.raises(EngineUnavailable):
                await collect(engine, request("k1"))
            assert not engine.health().ok and "401" in engine.health().detail
        async with started_remote(running.url, api_key="right") as engine:
            assert isinstance((await collect(engine, request("k2", max_new_tokens=2)))[-1], GenerationStats)


async def test_server_down_gives_the_unavailable_message() -> None:
    # Starting does not fail: the server may come up later.
    async with started_remote("http://127.0.0.1:9/v1", connect_attempts=3, retry_backoff_s=0.01) as engine:
        assert not engine.health().ok
        with pytest.raises(EngineUnavailable) as caught:
            await collect(engine, request("d1"))
        assert caught.value.user_message == "The model server is unavailable; please try again shortly."
        assert engine.health().queue_depth == 0 and engine.health().running == 0


# --- against a vLLM-like stand-in ----------------------------------------------------------------


async def test_request_on_the_wire(standin: OpenAIStandIn) -> None:
    async with started_remote(standin.url.removesuffix("/v1"), api_key="sk-test", max_pixels=TINY_BUDGET) as engine:
        events = await collect(engine, request("w1", image((900, 600), fmt="JPEG"), image((300, 500)), session="sess-9"))
    assert "".join(e.text for e in events if isinstance(e, TextPiece)) == "The printer is out of toner."
    stats = events[-1]
    assert stats.prompt_tokens == 321 and stats.output_tokens == 4 and stats.finish_reason == "stop"
    sent = standin.received[-1]
    assert sent.headers["Authorization"] == "Bearer sk-test" and sent.headers["X-Request-Id"] == "w1"
    body = sent.body
    assert body["model"] == "Qwen3-VL-8B-Instruct" and body["stream"] is True and body["max_tokens"] == 6
    assert body["user"] == "sess-9" and body["messages"][0] == {"role": "system", "content": "You are helpful."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    (jpeg_header, jpeg), (png_header, png) = (decode_data_uri(p["image_url"]["url"]) for p in parts[:2])
    assert jpeg_header == "data:image/jpeg;base64" and png_header == "data:image/png;base64"
    for picture in (jpeg, png):  # Qwen3-VL: sides in multiples of 32, within the bot's budget
        assert picture.width % 32 == 0 and picture.height % 32 == 0
        assert picture.width * picture.height <= TINY_BUDGET
    assert jpeg.width > jpeg.height and png.height > png.width


async def test_gateway_errors_are_retried_with_backoff(standin: OpenAIStandIn) -> None:
    standin.statuses = [503, 502]
    async with started_remote(standin.url, retry_backoff_s=0.05) as engine:
        begin = time.monotonic()
        events = await collect(engine, request("g1"))
    assert isinstance(events[-1], GenerationStats) and len(standin.received) == 3
    assert time.monotonic() - begin >= 0.05 + 0.1  # 0.05 s, then 0.1 s


async def test_bad_request_is_not_retried(standin: OpenAIStandIn) -> None:
    standin.statuses = [400]
    async with started_remote(standin.url, retry_backoff_s=0.01) as engine:
        with pytest.raises(EngineError) as caught:
            await collect(engine, request("b1"))
    assert not isinstance(caught.value, EngineUnavailable) and len(standin.received) == 1
    assert "HTTP 400" in str(caught.value)


async def test_connection_lost_mid_answer(standin: OpenAIStandIn) -> None:
    standin.drop_after = 2
    async with started_remote(standin.url, retry_backoff_s=0.01) as engine:
        events: list[Any] = []
        with pytest.raises(EngineError) as caught:
            async for event in engine.generate(request("m1")):
                events.append(event)
        assert "/retry" in caught.value.user_message
        assert [e.text for e in events if isinstance(e, TextPiece)] == ["The ", "printer "]
        assert len(standin.received) == 1  # a half answer is not silently restarted
        again = await collect(engine, request("m2"))  # the next request goes through
        assert isinstance(again[-1], GenerationStats)


def test_base_url() -> None:
    assert api_base("http://engine:8000") == api_base("http://engine:8000/v1/") == "http://engine:8000/v1"


async def test_cancel_during_retry_backoff_is_immediate() -> None:
    async with started_remote("http://127.0.0.1:9", model="m", retry_backoff_s=5) as engine:
        task = asyncio.create_task(collect(engine, request("x1")))
        await asyncio.sleep(0.2)  # the first attempt failed; waiting 5 s before the next
        assert await engine.cancel("x1")
        events = await asyncio.wait_for(task, 2)
        assert events[-1].finish_reason == "cancelled"


@pytest.mark.parametrize(
    ("chunk", "busy"),
    [
        ({"error": {"message": "queue is full", "type": "server_busy", "param": None, "code": "queue_full"}}, True),
        ({"object": "error", "message": "bad things", "type": "BadRequestError", "code": 400}, False),
    ],
)
async def test_error_chunks_end_the_answer(standin: OpenAIStandIn, chunk: dict, busy: bool) -> None:
    from engine.interface import EngineBusy

    standin.pieces = ()
    standin.error_chunk = chunk
    async with started_remote(standin.url) as engine:
        with pytest.raises(EngineError) as caught:
            await collect(engine, request("e1"))
    assert isinstance(caught.value, EngineBusy) == busy and len(standin.received) == 1


# --- how a stream ends: `[DONE]` is optional (transformers serve never sends it) -----------------


@pytest.mark.parametrize(("send_done", "send_usage"), [(True, True), (False, True), (False, False)])
async def test_a_finished_choice_completes_the_answer_with_or_without_done(
    standin: OpenAIStandIn, send_done: bool, send_usage: bool
) -> None:
    standin.send_done, standin.send_usage = send_done, send_usage
    async with started_remote(standin.url, retry_backoff_s=0.01) as engine:
        events = await collect(engine, request("d1"))
    assert "".join(e.text for e in events if isinstance(e, TextPiece)) == "The printer is out of toner."
    stats = events[-1]
    assert isinstance(stats, GenerationStats) and stats.finish_reason == "stop"
    assert stats.prompt_tokens == (321 if send_usage else 0)
    assert len(standin.received) == 1  # complete: not retried


async def test_an_empty_answer_is_an_empty_answer_not_unavailable(standin: OpenAIStandIn) -> None:
    standin.pieces, standin.send_done = (), False
    async with started_remote(standin.url, retry_backoff_s=0.01) as engine:
        events = await collect(engine, request("d2"))
    assert [e for e in events if isinstance(e, TextPiece)] == []
    assert isinstance(events[-1], GenerationStats) and events[-1].finish_reason == "stop"
    assert len(standin.received) == 1


async def test_a_stream_that_ends_before_any_finish_reason_is_an_interrupted_answer(standin: OpenAIStandIn) -> None:
    standin.cut_before_finish = True
    async with started_remote(standin.url, retry_backoff_s=0.01) as engine:
        with pytest.raises(EngineError) as caught:
            await collect(engine, request("d3"))
    assert caught.value.user_message == LOST_MID_ANSWER
    assert len(standin.received) == 1
