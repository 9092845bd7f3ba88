"""The bot with VLMBOT_ENGINE_URL: the conversation service on a remote engine, this project's engine
server on 127.0.0.1, end to end (pictures, streaming, follow-up, cancel, server down, restarts)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.messages import Answer, AnswerDelta, Attachment, Generating, IncomingMessage, Reply, Text
from engine.local import LocalEngine
from engine.remote import LOST_MID_ANSWER, RemoteEngine
from engine.server import EngineServerOptions, running_engine_server
from tests.conftest import picture_bytes
from tests.engine.test_local_engine import slow_hook
from tests.engine.test_server import local_engine  # noqa: F401  (fixture)

UNAVAILABLE = "The model server is unavailable; please try again shortly."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def message(text: str, *pictures: bytes, thread: str = "chat:1") -> IncomingMessage:
    attachments = tuple(Attachment(data, f"p{i}.png", "image/png") for i, data in enumerate(pictures))
    return IncomingMessage("telegram", thread, "u1", text, attachments, "Ann")


async def ask(service: Any, text: str, *pictures: bytes) -> list[Reply]:
    return [reply async for reply in service.conversations.handle(message(text, *pictures))]


async def answer_under_way(service: Any) -> tuple[asyncio.Task[None], list[Reply]]:
    """Ask a long question; return once its answer streams (the task goes on collecting replies)."""
    replies: list[Reply] = []
    first_delta = asyncio.Event()

    async def run() -> None:
        async for reply in service.conversations.handle(message("Tell me everything.")):
            replies.append(reply)
            if isinstance(reply, AnswerDelta):
                first_delta.set()

    task = asyncio.create_task(run())
    await asyncio.wait_for(first_delta.wait(), 10)
    return task, replies


class EngineHost:
    """This project's engine server on a fixed port, which tests stop and start again."""

    def __init__(self, engine: LocalEngine, max_new_tokens: int = 64) -> None:
        self.engine = engine
        self.max_new_tokens = max_new_tokens  # the server refuses a request asking for more
        self.port = free_port()
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        options = EngineServerOptions(port=self.port, max_new_tokens=self.max_new_tokens, shutdown_timeout_s=0.5)
        self._server = running_engine_server(self.engine, options)
        await self._server.__aenter__()

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.__aexit__(None, None, None)


@pytest.fixture
async def host(local_engine: LocalEngine) -> AsyncIterator[EngineHost]:  # noqa: F811
    host = EngineHost(local_engine)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


async def test_pictures_streaming_and_follow_up(service_factory, host: EngineHost, tiny_qwen25_dir: Path) -> None:
    host.engine.generate_hook = slow_hook(host.engine, delay=0)
    pictures_per_request: list[int] = []  # what the server parsed off the wire
    generate = host.engine.generate

    def recording_generate(request: Any) -> Any:
        pictures_per_request.append(sum(len(turn.images) for turn in request.turns))
        return generate(request)

    host.engine.generate = recording_generate  # type: ignore[method-assign]
    async with service_factory(engine_url=host.url, max_new_tokens=6) as service:
        assert isinstance(service.engine, RemoteEngine) and not service.demo_model
        acknowledged = await ask(service, "", picture_bytes(color=(220, 0, 0)))
        assert isinstance(acknowledged[-1], Text) and "what would you like" in acknowledged[-1].text
        replies = await ask(service, "What colour is it?", picture_bytes(color=(0, 0, 220), fmt="JPEG"))
        kinds = [type(r) for r in replies]
        assert Generating in kinds and kinds.count(AnswerDelta) >= 2 and kinds[-1] is Answer
        assert replies[-1].text == "".join(r.text for r in replies if isinstance(r, AnswerDelta)).strip()
        await ask(service, "And the shape?")
        assert pictures_per_request == [2, 2]  # the follow-up re-sends the conversation's pictures
        session = await service.store.active_session("telegram", "chat:1")
        turns = await service.store.turns(session.id)
        assert [t.status for t in turns] == ["attached", "done", "done"]
        assert turns[1].model == tiny_qwen25_dir.name and turns[1].output_tokens == 6 and turns[1].ttft_ms is not None
        status = await ask(service, "/status")
        assert "remote http://127.0.0.1" in status[-1].text and "ready" in status[-1].text
        assert "quantization none" in status[-1].text  # as the server's /v1/models says


async def test_clear_stops_the_answer_on_the_server(service_factory, host: EngineHost) -> None:
    host.engine.generate_hook = slow_hook(host.engine, delay=0.1)  # 64 tokens: 6.4 s
    async with service_factory(engine_url=host.url, max_new_tokens=64) as service:
        task, replies = await answer_under_way(service)
        await service.conversations.clear("telegram", "chat:1")
        await asyncio.wait_for(task, 5)
        assert isinstance(replies[-1], Text) and replies[-1].text.startswith("Stopped")
        begin = time.monotonic()
        while host.engine.health().running:
            assert time.monotonic() - begin < 1, "the server kept generating after /clear"
            await asyncio.sleep(0.02)


async def test_server_down_gives_a_clear_reply(service_factory) -> None:
    async with service_factory(engine_url=f"http://127.0.0.1:{free_port()}") as service:
        replies = await ask(service, "Hello?")
        assert replies[-1] == Text(UNAVAILABLE, kind="error")
        session = await service.store.active_session("telegram", "chat:1")
        assert [t.status for t in await service.store.turns(session.id)] == ["failed"]


async def test_server_restarted_mid_stream(service_factory, host: EngineHost) -> None:
    host.engine.generate_hook = slow_hook(host.engine, delay=0.1)
    async with service_factory(engine_url=host.url, max_new_tokens=64) as service:
        task, replies = await answer_under_way(service)
        await host.stop()  # the engine server goes away in the middle of the answer...
        await host.start()  # ...and comes back on the same port
        await asyncio.wait_for(task, 10)
        assert replies[-1] == Text(LOST_MID_ANSWER, kind="error")
        host.engine.generate_hook = slow_hook(host.engine, delay=0)
        again = [reply async for reply in service.conversations.handle(message("/retry"))]
        assert isinstance(again[-1], Answer)
        session = await service.store.active_session("telegram", "chat:1")
        assert [t.status for t in await service.store.turns(session.id)] == ["failed", "done"]


async def test_server_restarting_before_the_answer_is_retried(service_factory, host: EngineHost) -> None:
    host.engine.generate_hook = slow_hook(host.engine, delay=0)
    async with service_factory(engine_url=host.url, max_new_tokens=4) as service:
        assert isinstance((await ask(service, "Hi"))[-1], Answer)
        await host.stop()
        question = asyncio.create_task(ask(service, "Still there?"))
        await asyncio.sleep(0.3)  # the first attempt fails; the retry after 0.5 s finds the server back
        await host.start()
        replies = await asyncio.wait_for(question, 10)
        assert isinstance(replies[-1], Answer)


async def test_clear_releases_the_servers_cache_and_anonymous_requests_keep_none(
    service_factory, host: EngineHost
) -> None:
    host.engine.generate_hook = slow_hook(host.engine, delay=0)
    async with service_factory(engine_url=host.url, max_new_tokens=4) as service:
        await ask(service, "Remember this conversation", picture_bytes())
        assert host.engine.cache_stats().kv.entries == 1  # the server keeps the session's prefix
        await ask(service, "/clear")
        assert host.engine.cache_stats().kv.entries == 0
        assert host.engine.cache_stats().kv.releases >= 1
    # A plain OpenAI client sends no `user`: there is no conversation to continue, so nothing is kept.
    import aiohttp

    body = {"model": host.engine.model_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    async with aiohttp.ClientSession() as http, http.post(f"{host.url}/chat/completions", json=body) as response:
        assert response.status == 200
    assert host.engine.cache_stats().kv.entries == 0


async def test_a_bot_allowed_more_tokens_than_the_server_gives_still_answers(service_factory, host: EngineHost) -> None:
    """VLMBOT_MAX_NEW_TOKENS above the server's cap: the bot asks for the cap (advertised on
    /v1/models) instead of having every question refused with 400."""
    host.engine.generate_hook = slow_hook(host.engine, delay=0)  # never stops early: runs to the limit
    asked: list[int] = []
    generate = host.engine.generate

    def recording_generate(request: Any) -> Any:
        asked.append(request.limits.max_new_tokens)
        return generate(request)

    host.engine.generate = recording_generate  # type: ignore[method-assign]
    async with service_factory(engine_url=host.url, max_new_tokens=host.max_new_tokens * 4) as service:
        replies = await ask(service, "What colour is it?", picture_bytes(color=(0, 0, 220)))
    assert isinstance(replies[-1], Answer) and replies[-1].text
    assert asked == [host.max_new_tokens]
