"""Answer streaming on the wire: drafts (sendMessageDraft) in private chats, throttled edits in groups
and forum topics, and the fall back to edits in a chat that refuses drafts. The real Application, the
real core on the tiny model with its answer forced through the decode loop, the Bot API stand-in."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from bot.votes import Vote, encode_vote
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    FORUM,
    GROUP,
    OTHER_USER,
    running_adapter,
    settle,
)
from tests.hooks import forced_answer

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER  # a private chat's id is the user's id
ANSWER = " ".join(f"word{i}" for i in range(40)) + "."


def keyboard_of(turn_id: int) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": "👍", "callback_data": encode_vote(turn_id, Vote.UP)},
                                 {"text": "👎", "callback_data": encode_vote(turn_id, Vote.DOWN)}]]}


async def turn_ids(service: Any, thread_key: str) -> list[int]:
    [session] = await service.store.list_sessions(platform="telegram", thread_key=thread_key)
    return [t.id for t in await service.store.turns(session.id)]


def answer_writes(standin: BotApiStandIn, chat_id: int) -> list[Any]:
    return [r for r in standin.requests
            if r.method in ("sendMessage", "editMessageText", "sendMessageDraft") and int(r.params["chat_id"]) == chat_id]


async def test_a_private_chat_streams_the_answer_as_drafts_then_sends_it_once(standin, service_factory):
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=4, delay=0.1)
        async with running_adapter(standin, service) as (adapter, _):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Tell me"))
            await settle(standin, adapter, timeout=60)
        [turn] = await turn_ids(service, f"chat:{CHAT}")
    drafts = [d for d in standin.drafts if d.chat_id == CHAT]
    assert len(drafts) >= 3  # several growing drafts ...
    texts = [d.text for d in drafts]
    assert all(a != b and b.startswith(a) for a, b in itertools.pairwise(texts)) and ANSWER.startswith(texts[-1])
    draft_ids = {d.draft_id for d in drafts}
    assert len(draft_ids) == 1 and 0 not in draft_ids  # ... of one non-zero draft id for the answer
    assert all(c.params.get("parse_mode") == "HTML" for c in standin.calls("sendMessageDraft"))
    assert standin.calls("editMessageText") == []  # the answer body is never streamed by edits here
    [final] = standin.calls("sendMessage")  # ... and sent once, complete, with the vote buttons
    assert final.status == 200 and final.params["parse_mode"] == "HTML"
    [message] = standin.chat_messages(CHAT)
    assert message.text == ANSWER and message.history == [] and message.reply_markup == keyboard_of(turn)
    assert standin.visible_draft(CHAT) is None  # the final message replaced the draft
    assert answer_writes(standin, CHAT)[-1].method == "sendMessage"


async def test_each_answer_in_a_private_chat_has_its_own_draft_id(standin, service_factory):
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=8, delay=0.1)
        async with running_adapter(standin, service) as (adapter, _):
            for question in ("One", "Two"):
                await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text=question))
                await settle(standin, adapter, timeout=60)
        first, second = await turn_ids(service, f"chat:{CHAT}")
    ids = [d.draft_id for d in standin.drafts]
    assert len(set(ids)) == 2 and ids == sorted(ids)  # one per answer, never mixed
    messages = standin.chat_messages(CHAT)
    assert [m.reply_markup for m in messages] == [keyboard_of(first), keyboard_of(second)]


async def test_a_group_keeps_throttled_edits(standin, service_factory):
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=4, delay=0.1)
        async with running_adapter(standin, service) as (adapter, _):
            await standin.inject(standin.message(chat_id=GROUP, user_id=OTHER_USER, chat_type="supergroup",
                                                 text="@vlm_test_bot tell me"))
            await settle(standin, adapter, timeout=60)
        [turn] = await turn_ids(service, f"chat:{GROUP}")
    assert standin.calls("sendMessageDraft") == []
    [message] = standin.chat_messages(GROUP)
    assert message.text == ANSWER and message.history  # grown by edits before the final version
    assert len(standin.calls("sendMessage")) == 1 and standin.calls("editMessageText")
    assert message.reply_markup == keyboard_of(turn)  # the final edit put the vote buttons on
    assert [h for h in message.markup_history if h is not None] == []  # no buttons on a partial answer


async def test_a_forum_topic_keeps_edits_and_the_buttons_land_in_the_topic(standin, service_factory):
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=4, delay=0.1)
        async with running_adapter(standin, service) as (adapter, _):
            await standin.inject(standin.message(chat_id=FORUM, user_id=OTHER_USER, chat_type="supergroup",
                                                 is_forum=True, topic_id=20, text="@vlm_test_bot tell me"))
            await settle(standin, adapter, timeout=60)
        [turn] = await turn_ids(service, f"chat:{FORUM}/topic:20")
    assert standin.calls("sendMessageDraft") == []
    [message] = standin.chat_messages(FORUM, 20)
    assert message.text == ANSWER and message.history and message.reply_markup == keyboard_of(turn)


async def test_a_refused_draft_falls_back_to_edits_for_that_chat(standin, service_factory, caplog):
    caplog.set_level(logging.WARNING, logger="adapters.telegram.drafts")
    standin.reject_next("sendMessageDraft", "Bad Request: TEXTDRAFT_PEER_INVALID")
    async with service_factory(max_new_tokens=256) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=4, delay=0.1)
        async with running_adapter(standin, service) as (adapter, _):
            for question in ("One", "Two"):
                await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text=question))
                await settle(standin, adapter, timeout=60)
        first, second = await turn_ids(service, f"chat:{CHAT}")
    [refused] = standin.calls("sendMessageDraft")  # tried once; the chat is remembered
    assert refused.status == 400 and standin.drafts == []
    messages = standin.chat_messages(CHAT)
    assert [m.text for m in messages] == [ANSWER, ANSWER]
    assert all(m.history for m in messages)  # both answers grew by edits, the first from the failed draft on
    assert [m.reply_markup for m in messages] == [keyboard_of(first), keyboard_of(second)]
    assert all(r.status == 200 for r in answer_writes(standin, CHAT) if r.method != "sendMessageDraft")
    assert len([r for r in caplog.records if "sendMessageDraft refused" in r.getMessage()]) == 1  # logged once
