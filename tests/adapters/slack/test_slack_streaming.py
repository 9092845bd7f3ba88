"""Answers stream natively (chat.startStream / appendStream / stopStream) and carry feedback buttons;
a workspace that refuses streams gets postMessage + chat.update. Real slack-bolt, both modes."""

from __future__ import annotations

import logging
from typing import Any

from bot.votes import Vote, encode_vote
from tests.adapters.slack.slack_blocks import feedback_elements
from tests.adapters.slack.slack_standin import SlackStandIn
from tests.hooks import forced_answer

CHANNEL = "C0HELP"
DM = "D0ALICE"
ANSWER = "The printer is out of paper. Load paper into tray 2, close it and press OK on the panel."


def mention(slack: SlackStandIn, text: str, **kw: Any) -> dict[str, Any]:
    return slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> {text}", kind="app_mention", **kw)


def votes_offered(blocks: list[dict[str, Any]] | None) -> tuple[str, str]:
    ((_, element),) = feedback_elements(blocks)
    return element["positive_button"]["value"], element["negative_button"]["value"]


async def test_a_thread_answer_streams_to_its_recipient_and_ends_with_feedback(make_bot) -> None:
    async with make_bot(max_new_tokens=128, adapter={"update_interval": 0.01}) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=3, delay=0.05)
        event = mention(slack, "what now?", user="U0BOB")
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        assert turn.answer == ANSWER
        (start,) = slack.calls("chat.startStream")
        assert start.params["thread_ts"] == event["ts"]
        assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == (slack.team_id, "U0BOB")
        (stream,) = slack.streams
        assert stream.state == "stopped" and stream.text == ANSWER
        assert len(slack.calls("chat.appendStream")) >= 2  # it grew in pieces
        assert len(stream.pieces) >= 3
        (stop,) = slack.calls("chat.stopStream")
        assert "blocks" in stop.params
        assert votes_offered(stream.blocks) == (encode_vote(turn.id, Vote.UP), encode_vote(turn.id, Vote.DOWN))
        assert slack.calls("chat.update") == [] and slack.calls("chat.postMessage") == []
        (message,) = slack.bot_messages(CHANNEL, event["ts"])
        assert message.ts == stream.ts and message.text == ANSWER


async def test_a_dm_thread_streams_without_recipients(make_bot) -> None:
    async with make_bot(max_new_tokens=128) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER)
        root = slack.message_event(DM, "side question", channel_type="im")
        await bot.deliver(slack.message_event(DM, "why?", thread_ts=root["ts"], channel_type="im"))
        await bot.settle()
        (stream,) = slack.streams
        assert stream.channel == DM and stream.thread_ts == root["ts"] and stream.text == ANSWER
        assert stream.recipient_user_id is None


async def test_a_refused_stream_falls_back_to_updates_and_is_logged_once(make_bot, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.slack.transport")
    async with make_bot(max_new_tokens=128) as bot:
        slack, service = bot.slack, bot.service
        slack.streaming_error = "not_allowed_token_type"
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=3, delay=0.02)
        first, second = mention(slack, "what now?"), mention(slack, "and here?")
        await bot.deliver(first)
        await bot.settle()
        await bot.deliver(second)
        await bot.settle()
        assert len(slack.calls("chat.startStream")) == 1  # the workspace's refusal is remembered
        assert slack.streams == []
        refusals = [r for r in caplog.records if "refused chat.startStream" in r.getMessage()]
        assert len(refusals) == 1 and "not_allowed_token_type" in refusals[0].getMessage()
        for event in (first, second):
            (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
            (message,) = slack.bot_messages(CHANNEL, event["ts"])
            assert message.text == ANSWER and turn.answer == ANSWER
            assert votes_offered(message.blocks)[1] == encode_vote(turn.id, Vote.DOWN)
        assert slack.calls("chat.update")  # the answer grew by edits
        assert slack.calls("chat.update")[-1].params.get("blocks")  # the final update carries the buttons


async def test_a_stream_that_expires_is_finished_by_an_update(make_bot) -> None:
    async with make_bot(max_new_tokens=128, adapter={"update_interval": 0.01}) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=3, delay=0.05)
        event = mention(slack, "what now?")
        await bot.deliver(event)
        await slack.wait_for(lambda: slack.streams and slack.calls("chat.appendStream"))
        slack.expire_stream(slack.streams[0].ts)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        (message,) = slack.bot_messages(CHANNEL, event["ts"])
        assert turn.answer == ANSWER and message.text == ANSWER
        assert votes_offered(message.blocks)[0] == encode_vote(turn.id, Vote.UP)
