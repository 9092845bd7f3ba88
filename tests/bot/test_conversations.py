"""The conversation service's own rules: questions waiting behind /clear, and failures that are bugs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from bot.conversations import CLEARED_WHILE_WAITING, INTERNAL_ERROR
from bot.messages import Answer, IncomingMessage, Text
from tests.engine.test_local_engine import slow_hook


async def collect(service: Any, text: str, thread: str = "t") -> list[Any]:
    return [r async for r in service.conversations.handle(IncomingMessage("web", thread, "u", text))]


async def test_question_waiting_behind_clear_is_not_asked_in_the_archived_session(service_factory) -> None:
    async with service_factory(max_new_tokens=400) as service:
        started = threading.Event()
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05, started=started)
        first = asyncio.create_task(collect(service, "Long question"))
        await asyncio.to_thread(started.wait, 10)
        waiting = asyncio.create_task(collect(service, "Sent before the clear"))
        await asyncio.sleep(0.1)  # it now waits for the session's lock
        old = await service.store.active_session("web", "t")
        await collect(service, "/clear")
        assert (await asyncio.wait_for(first, 10))[-1] == Text("Stopped: this conversation was cleared.")
        assert await asyncio.wait_for(waiting, 10) == [Text(CLEARED_WHILE_WAITING, kind="error")]
        assert [t.user_text for t in await service.store.turns(old.id)] == ["Long question"]
        assert not await service.conversations.has_conversation("web", "t")


async def test_an_unexpected_error_fails_the_turn_and_the_session_goes_on(service_factory, monkeypatch) -> None:
    async with service_factory() as service:
        engine = service.engine
        real = engine.generate

        async def broken(request: Any) -> Any:
            async for event in real(request):
                yield event
                raise ValueError("a malformed stream line")  # e.g. a remote server's bad JSON

        monkeypatch.setattr(engine, "generate", broken)
        replies = await collect(service, "First")
        assert replies[-1] == Text(INTERNAL_ERROR, kind="error")
        monkeypatch.setattr(engine, "generate", real)
        assert isinstance((await collect(service, "Second"))[-1], Answer)
        session = await service.store.active_session("web", "t")
        turns = await service.store.turns(session.id)
        assert [(t.status, (t.error or "").split(":")[0]) for t in turns] == [("failed", "ValueError"), ("done", "")]
