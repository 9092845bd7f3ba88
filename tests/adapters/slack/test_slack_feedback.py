"""Feedback buttons: a press is acknowledged, recorded as the user's vote and answered privately;
`/export` shows it. Real slack-bolt over Socket Mode (interactive envelope) and HTTP (signed POST)."""

from __future__ import annotations

import json
import logging
from typing import Any

from bot.wording import refusal
from tests.adapters.slack.slack_standin import SlackStandIn
from tests.hooks import forced_answer

CHANNEL = "C0HELP"
ANSWER = "Restart the print spooler, then print again."


def mention(slack: SlackStandIn, text: str, **kw: Any) -> dict[str, Any]:
    return slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> {text}", kind="app_mention", **kw)


async def test_a_thumbs_down_is_acked_recorded_and_exported(make_bot) -> None:
    async with make_bot(max_new_tokens=128) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER)
        event = mention(slack, "why does it not print?")
        await bot.deliver(event)
        await bot.settle()
        (answer,) = slack.bot_messages(CHANNEL, event["ts"])
        await bot.interact(slack.block_actions(CHANNEL, answer.ts, user="U0ALICE", choice="negative"))
        await bot.settle()
        assert max(bot.acks) < 3
        (note,) = slack.ephemerals
        assert (note.channel, note.user, note.thread_ts) == (CHANNEL, "U0ALICE", event["ts"])
        assert note.text.startswith("Thanks - marked as not helpful")
        # the same user changes their mind: one vote per user and answer
        await bot.interact(slack.block_actions(CHANNEL, answer.ts, user="U0ALICE", choice="positive"))
        await bot.interact(slack.block_actions(CHANNEL, answer.ts, user="U0ALICE", choice="negative"))
        await bot.settle()
        assert slack.ephemerals[-1].text.startswith("Changed your vote: marked as not helpful")
        await bot.deliver(mention(slack, "export", thread_ts=event["ts"]))
        await bot.settle()
        (upload,) = slack.uploads
        (turn,) = json.loads(upload.data)["turns"]
        assert [(f["user"], f["vote"]) for f in turn["feedback"]] == [("U0ALICE", "down")]


async def test_a_vote_from_someone_without_access_is_refused_privately(make_bot) -> None:
    async with make_bot(max_new_tokens=128, slack_allow_everyone=False, slack_allowed_users=("U0ALICE",)) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER)
        event = mention(slack, "why does it not print?")
        await bot.deliver(event)
        await bot.settle()
        (answer,) = slack.bot_messages(CHANNEL, event["ts"])
        await bot.interact(slack.block_actions(CHANNEL, answer.ts, user="U0MALLORY", choice="negative"))
        await bot.settle()
        (note,) = slack.ephemerals
        assert note.user == "U0MALLORY" and note.text == refusal("U0MALLORY").replace("&", "&amp;")
        export = json.loads(await service.conversations.export_session(
            (await service.store.list_sessions(platform="slack", thread_key=f"{CHANNEL}/{event['ts']}"))[0].id))
        assert export["turns"][0]["feedback"] == []


async def test_a_forged_vote_value_records_nothing(make_bot, caplog) -> None:
    caplog.set_level(logging.INFO, logger="adapters.slack.adapter")
    async with make_bot(max_new_tokens=128) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER)
        event = mention(slack, "why does it not print?")
        await bot.deliver(event)
        await bot.settle()
        (answer,) = slack.bot_messages(CHANNEL, event["ts"])
        payload = slack.block_actions(CHANNEL, answer.ts, choice="negative")
        payload["actions"][0]["value"] = "vote:down:999999"  # a turn of another conversation
        await bot.interact(payload)
        await bot.settle()
        (note,) = slack.ephemerals
        assert note.text.startswith("That answer is not in this conversation")
        payload["actions"][0]["value"] = "drop table"
        await bot.interact(payload)
        payload["container"] = "not an object"
        await bot.interact(payload)
        await bot.settle()
        assert len(slack.ephemerals) == 1
        assert sum("ignored a malformed vote press" in r.getMessage() for r in caplog.records) == 2
