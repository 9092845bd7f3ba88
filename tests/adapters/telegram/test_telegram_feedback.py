"""Votes on answers through the real Application: the thumbs up/down buttons pressed (callback_query,
delivered by getUpdates or the webhook only because the adapter asks for it), answered with
answerCallbackQuery, stored with the turn and shown by /export; forged presses refused."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.votes import Vote, VoteOutcome, VoteResult, encode_vote
from bot.wording import NOT_A_VOTE, refusal
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    FORUM,
    GROUP,
    OTHER_USER,
    STRANGER,
    exported,
    running_adapter,
    settle,
)
from tests.hooks import forced_answer

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER  # a private chat's id is the user's id
ANSWER = "The picture shows a red square."


@pytest.fixture(params=["polling", "webhook"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def answer_message(standin: BotApiStandIn, chat_id: int, topic: int | None = None) -> Any:
    [message] = [m for m in standin.chat_messages(chat_id, topic) if m.reply_markup]
    return message


async def press(standin: BotApiStandIn, adapter: Any, chat_id: int, message_id: int, *, user_id: int,
                label: str | None = None, forge: dict[str, Any] | None = None) -> str:
    """Press a button (or a forged variant of it); returns the text of the answerCallbackQuery."""
    update = standin.callback_query(chat_id, message_id, user_id=user_id, label=label)
    query = update["callback_query"]
    for key, value in (forge or {}).items():  # None removes the field
        if value is None:
            query.pop(key)
        else:
            query[key] = value
    await standin.inject(update)
    await settle(standin, adapter)
    answered = standin.callback_queries[query["id"]]
    assert answered.answered, f"press {query['id']} was not answered: {standin.summary()}"
    return answered.answer["text"]


async def ask_and_export(standin: BotApiStandIn, adapter: Any, chat_id: int, **kw: Any) -> list[dict[str, Any]]:
    await standin.inject(standin.message(chat_id=chat_id, text="/export", **kw))
    await settle(standin, adapter)
    return exported(standin, chat_id)["turns"]


async def test_thumbs_down_is_recorded_answered_and_exported_and_can_be_changed(standin, service_factory, mode):
    async with service_factory(max_new_tokens=64) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER)
        async with running_adapter(standin, service, mode=mode) as (adapter, _):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="What is it?"))
            await settle(standin, adapter)
            # Telegram delivers button presses only to a bot that asked for them (the stand-in too).
            [asked] = {tuple(c.params["allowed_updates"]) for c in standin.calls("setWebhook" if mode == "webhook" else "getUpdates")}
            assert set(asked) == {"message", "callback_query"} and standin.allowed_updates == list(asked)
            message = answer_message(standin, CHAT)
            down = await press(standin, adapter, CHAT, message.message_id, user_id=ALLOWED_USER, label="👎")
            assert down == VoteResult(VoteOutcome.RECORDED, vote=Vote.DOWN).text
            [turn] = await ask_and_export(standin, adapter, CHAT, user_id=ALLOWED_USER)
            [entry] = turn["feedback"]
            assert (entry["user"], entry["vote"]) == (str(ALLOWED_USER), "down") and entry["time"]

            again = await press(standin, adapter, CHAT, message.message_id, user_id=ALLOWED_USER, label="👎")
            assert again == VoteResult(VoteOutcome.UNCHANGED, vote=Vote.DOWN).text
            up = await press(standin, adapter, CHAT, message.message_id, user_id=ALLOWED_USER, label="👍")
            assert up == VoteResult(VoteOutcome.CHANGED, vote=Vote.UP).text
            [turn] = await ask_and_export(standin, adapter, CHAT, user_id=ALLOWED_USER)
    assert [(e["user"], e["vote"]) for e in turn["feedback"]] == [(str(ALLOWED_USER), "up")]  # one vote, changed
    assert answer_message(standin, CHAT).reply_markup == message.reply_markup  # the buttons stay for a change of mind
    assert all(r.status == 200 for r in standin.calls("answerCallbackQuery"))


async def test_votes_in_a_forum_topic_count_per_user(standin, service_factory):
    async with service_factory(max_new_tokens=64) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER)
        async with running_adapter(standin, service) as (adapter, _):
            ask: dict[str, Any] = {"chat_id": FORUM, "chat_type": "supergroup", "is_forum": True, "topic_id": 20}
            await standin.inject(standin.message(user_id=OTHER_USER, text="@vlm_test_bot what is it?", **ask))
            await settle(standin, adapter)
            message = answer_message(standin, FORUM, 20)
            assert await press(standin, adapter, FORUM, message.message_id, user_id=OTHER_USER, label="👎") == (
                VoteResult(VoteOutcome.RECORDED, vote=Vote.DOWN).text)
            # The chat allowlist covers every member of the group, as it does for messages.
            assert await press(standin, adapter, FORUM, message.message_id, user_id=STRANGER, label="👍") == (
                VoteResult(VoteOutcome.RECORDED, vote=Vote.UP).text)
            [turn] = await ask_and_export(standin, adapter, FORUM, user_id=OTHER_USER, chat_type="supergroup",
                                          is_forum=True, topic_id=20)
    assert sorted((e["user"], e["vote"]) for e in turn["feedback"]) == [(str(OTHER_USER), "down"), (str(STRANGER), "up")]


async def test_forged_and_malformed_presses_are_refused_with_one_line(standin, service_factory):
    async with service_factory(max_new_tokens=64) as service:
        service.engine.generate_hook = forced_answer(service, ANSWER)
        async with running_adapter(standin, service) as (adapter, _):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="What is it?"))
            await standin.inject(standin.message(chat_id=GROUP, user_id=OTHER_USER, chat_type="supergroup",
                                                 text="@vlm_test_bot what is it?"))
            await settle(standin, adapter)
            private, group = answer_message(standin, CHAT), answer_message(standin, GROUP)
            [private_turn] = [int(b["callback_data"].rsplit(":", 1)[1])
                              for b in private.reply_markup["inline_keyboard"][0] if b["text"] == "👎"]

            # A press in the group carrying the private chat's turn: refused, that turn keeps no vote.
            forged = {"data": encode_vote(private_turn, Vote.DOWN)}
            assert await press(standin, adapter, GROUP, group.message_id, user_id=OTHER_USER, forge=forged) == (
                VoteResult(VoteOutcome.UNKNOWN_TURN, private_turn).text)
            # Data that is not a vote, a turn that does not exist, no data, a message Telegram no longer shows.
            inaccessible = {"message_id": private.message_id, "date": 0, "chat": {"id": CHAT, "type": "private"}}
            for bad in ({"data": "vote:up:0"}, {"data": "vote:maybe:1"}, {"data": "x" * 64}, {"data": ""},
                        {"data": None}, {"message": inaccessible}, {"message": None}):
                assert await press(standin, adapter, CHAT, private.message_id, user_id=ALLOWED_USER, forge=bad) == NOT_A_VOTE
            unknown = await press(standin, adapter, CHAT, private.message_id, user_id=ALLOWED_USER,
                                  forge={"data": encode_vote(999_999, Vote.UP)})
            assert unknown == VoteResult(VoteOutcome.UNKNOWN_TURN, 999_999).text
            # Someone the allowlist does not cover, in the private chat: the access check as for messages.
            stranger = await press(standin, adapter, CHAT, private.message_id, user_id=STRANGER, label="👎")
            assert stranger == refusal(str(STRANGER))
            [turn] = await ask_and_export(standin, adapter, CHAT, user_id=ALLOWED_USER)
    assert turn["feedback"] == []
    assert all(r.status == 200 for r in standin.calls("answerCallbackQuery"))  # every press answered, no exception


async def test_a_malformed_callback_query_on_the_webhook_is_a_400(standin, service_factory):
    headers = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret_1"}
    queries = ({"id": "1"}, {"id": "1", "from": None, "chat_instance": "1"}, "not an object")
    async with (
        service_factory(max_new_tokens=8) as service,
        running_adapter(standin, service, mode="webhook") as (adapter, _),
        aiohttp.ClientSession() as http,
    ):
        for query in queries:
            update = {"update_id": 77, "callback_query": query}
            async with http.post(standin.webhook["url"], json=update, headers=headers) as resp:
                assert resp.status == 400 and "error" in await resp.json()
        await settle(standin, adapter)
    assert standin.calls("answerCallbackQuery") == []
