"""The prompt never exceeds VLMBOT_CONTEXT_TOKENS as the model counts it: a long Chinese conversation on
both tiny architectures, with the in-process engine and through a model server (its usage report)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.messages import Answer, Attachment, IncomingMessage, Notice, Reply, Text
from engine.server import EngineServerOptions, running_engine_server
from tests.conftest import picture_bytes
from tests.engine.support import started_engine

BUDGET = 640
QUESTIONS = [
    "这张截图里的错误是什么意思？打印机一直显示 E42。",
    "我已经换了碳粉盒，但是错误还在，下一步应该怎么做？",
    "设置菜单在哪里？我找不到“维护”这个选项。",
    "重启以后出现了新的提示：纸张尺寸不匹配。",
    "纸盒里放的是 A4 纸，驱动程序里设置的是 Letter。",
    "改成 A4 以后可以打印了，但是颜色很淡。",
    "请把刚才的步骤整理成一个简短的清单，发给同事。",
    "最后一个问题：这台打印机的序列号在哪里？",
]


def message(text: str, *pictures: bytes) -> IncomingMessage:
    attachments = tuple(Attachment(data, f"p{i}.png", "image/png") for i, data in enumerate(pictures))
    return IncomingMessage("telegram", "chat:86", "86", text, attachments, "李雷")


async def ask(service: Any, text: str, *pictures: bytes) -> list[Reply]:
    return [reply async for reply in service.conversations.handle(message(text, *pictures))]


async def long_chinese_conversation(service: Any) -> list[list[Reply]]:
    everything = [await ask(service, QUESTIONS[0], picture_bytes(size=(160, 120)))]
    for question in QUESTIONS[1:]:
        everything.append(await ask(service, question))
    return everything


async def assert_budget_held(service: Any, everything: list[list[Reply]]) -> None:
    assert all(isinstance(replies[-1], Answer) for replies in everything), everything
    session = await service.store.active_session("telegram", "chat:86")
    turns = await service.store.turns(session.id)
    counts = [t.prompt_tokens for t in turns]  # as the engine counted the prompt it ran
    assert len(counts) == len(QUESTIONS) and all(c is not None and c <= BUDGET for c in counts), counts
    # the history was used up to the budget, then the oldest exchanges were left out (and the user told)
    assert max(counts) > BUDGET * 0.85, counts
    notices = [r for replies in everything for r in replies if isinstance(r, Notice)]
    assert notices and "left out" in notices[-1].text
    assert not any(isinstance(r, Notice) for r in everything[1])  # the second question still fits whole
    # each turn keeps the notices its answer came with, as they were said (bot.turn_notes)
    said = [[r.text for r in replies if isinstance(r, Notice)] for replies in everything]
    assert [[note.text for note in t.notes] for t in turns] == said
    assert counts[1] > counts[0]


async def test_long_chinese_conversation_in_process(service_factory, tiny_model_dir: Path) -> None:
    async with service_factory(model=tiny_model_dir, context_tokens=BUDGET, max_new_tokens=24) as service:
        await assert_budget_held(service, await long_chinese_conversation(service))


@asynccontextmanager
async def model_server(model: Path, max_pixels: int) -> AsyncIterator[str]:
    async with started_engine(model, max_pixels=max_pixels, device="cpu") as engine:
        async with running_engine_server(engine, EngineServerOptions(port=0, max_new_tokens=64)) as server:
            yield server.url


async def test_long_chinese_conversation_through_a_model_server(service_factory, tiny_model_dir: Path) -> None:
    """The remote bound: the server's own count (its usage report) stays within the budget."""
    async with service_factory(context_tokens=BUDGET, max_new_tokens=24) as probe:
        max_pixels = probe.settings.max_pixels
    async with (
        model_server(tiny_model_dir, max_pixels) as url,
        service_factory(engine_url=url, context_tokens=BUDGET, max_new_tokens=24) as service,
    ):
        everything = [await ask(service, QUESTIONS[0], picture_bytes(size=(160, 120)))]
        for question in QUESTIONS[1:4]:
            everything.append(await ask(service, question))
        assert all(isinstance(replies[-1], Answer) for replies in everything), everything
        session = await service.store.active_session("telegram", "chat:86")
        counts = [t.prompt_tokens for t in await service.store.turns(session.id)]
        assert all(c is not None and 0 < c <= BUDGET for c in counts), counts
        assert any(isinstance(r, Notice) for replies in everything for r in replies)


@pytest.mark.parametrize("pictures", [0, 3])
async def test_a_question_too_long_on_its_own_is_refused(service_factory, pictures: int) -> None:
    async with service_factory(context_tokens=260, max_images_per_turn=4) as service:
        text = "为什么？" * (60 if not pictures else 1)
        replies = await ask(service, text, *[picture_bytes(size=(600, 400), color=(c, 0, 0)) for c in range(pictures)])
        [refusal] = replies
        assert isinstance(refusal, Text) and refusal.kind == "error"
        assert "more than the 260 this bot can read at once" in refusal.text
        session = await service.store.active_session("telegram", "chat:86")
        [turn] = await service.store.turns(session.id)
        assert turn.status == "failed" and turn.prompt_tokens is None and not turn.in_context
        if pictures:  # pictures sent ahead of the question are set aside with it
            await ask(service, "", *[picture_bytes(size=(600, 400), color=(0, c, 0)) for c in range(pictures)])
            assert "more than the 260" in (await ask(service, "为什么？"))[-1].text
            assert not any(t.in_context for t in await service.store.turns(session.id))
        assert isinstance((await ask(service, "好的"))[-1], Answer)  # nothing set aside blocks the next question
