"""End to end: the real slack-bolt app (Socket Mode and HTTP mode) on the tiny model, against the stand-in."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from typing import Any

import pytest
from PIL import Image

from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.transport import MESSAGE_LIMIT
from bot.markdown import split
from bot.wording import EMPTY_ANSWER, FAILED, refusal
from tests.adapters.slack.slack_standin import EventsSender, SlackStandIn
from tests.engine.test_local_engine import record_hook

CHANNEL = "C0HELP"


def shown(answer: str | None, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The messages an answer makes: the renderer's cut of its Markdown, each converted to mrkdwn."""
    return [to_mrkdwn(chunk) for chunk in split((answer or "").strip() or EMPTY_ANSWER, limit)]


def mention(slack: SlackStandIn, text: str, **kw: Any) -> dict[str, Any]:
    return slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> {text}", kind="app_mention", **kw)


def thread_texts(slack: SlackStandIn, root: str) -> list[str]:
    return [m.text for m in slack.bot_messages(CHANNEL, root)]


async def test_mention_with_screenshot_is_answered_in_its_thread(make_bot, red_png: bytes) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        shot = slack.host_file(red_png, "error.png", "image/png")
        event = mention(slack, "What does this error mean?", files=[shot])
        await bot.deliver(event)
        await bot.settle()
        root = event["ts"]
        (turn,) = await bot.turns(f"{CHANNEL}/{root}")
        assert turn.user_text == "What does this error mean?" and len(turn.image_hashes) == 1
        (download,) = slack.calls("/files")
        assert download.headers["Authorization"] == f"Bearer {slack.bot_token}"
        assert thread_texts(slack, root) == shown(turn.answer)  # one message: the answer grew in it
        assert max(bot.acks) < 3


async def test_a_large_screenshot_arrives_whole(make_bot) -> None:
    """Real downloads arrive in many chunks: the picture must be read to its end, not to the first one."""
    noise = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    data = out.getvalue()
    assert len(data) > 300_000
    async with make_bot() as bot:
        event = mention(bot.slack, "What is on this?", files=[bot.slack.host_file(data, "big.png", "image/png")])
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        assert turn.status == "done" and turn.image_hashes == (hashlib.sha256(data).hexdigest(),)


async def test_a_screenshot_then_its_question_are_answered_in_order(make_bot) -> None:
    """The question arrives while the screenshot before it is still downloading: it waits for it."""
    noise = Image.frombytes("RGB", (800, 600), os.urandom(800 * 600 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    async with make_bot() as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = record_hook(calls)
        await bot.deliver(dm(slack, "", files=[slack.host_file(out.getvalue(), "error.png", "image/png")]))
        await bot.deliver(dm(slack, "What does the error say?"))
        await bot.settle()
        turns = await bot.turns(DM)
        assert [(t.user_text, t.status, len(t.image_hashes)) for t in turns] == [
            ("", "attached", 1), ("What does the error say?", "done", 0)]
        assert calls[0]["image_grid_thw"].shape[0] == 1  # the question was asked with the screenshot
        texts = [m.text for m in slack.bot_messages(DM)]
        assert texts[0] == "Got it - what would you like to know?" and len(texts) == 2


async def test_follow_up_in_the_thread_needs_no_mention(make_bot, red_png: bytes) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        first = mention(slack, "What is this?", files=[slack.host_file(red_png, "a.png", "image/png")])
        await bot.deliver(first)
        await bot.settle()
        root = first["ts"]
        await bot.deliver(slack.message_event(CHANNEL, "and the colour?", thread_ts=root, user="U0BOB"))
        # an unrelated thread the bot never joined stays silent
        other = slack.post_user_message(CHANNEL, "lunch?", "U0BOB")
        await bot.deliver(slack.message_event(CHANNEL, "pizza", thread_ts=other, user="U0CAROL"))
        await bot.settle()
        turns = await bot.turns(f"{CHANNEL}/{root}")
        assert [t.user_text for t in turns] == ["What is this?", "and the colour?"]
        assert [t.user_id for t in turns] == ["U0ALICE", "U0BOB"]
        assert len(thread_texts(slack, root)) == 2
        assert slack.bot_messages(CHANNEL, other) == [] and await bot.turns(f"{CHANNEL}/{other}") == []


async def test_two_threads_are_two_conversations(make_bot, red_png: bytes, blue_jpeg: bytes) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        a = mention(slack, "first?", files=[slack.host_file(red_png, "a.png", "image/png")])
        b = mention(slack, "second?", files=[slack.host_file(blue_jpeg, "b.jpg", "image/jpeg")])
        await bot.deliver(a)
        await bot.deliver(b)
        await bot.settle()
        turns_a = await bot.turns(f"{CHANNEL}/{a['ts']}")
        turns_b = await bot.turns(f"{CHANNEL}/{b['ts']}")
        assert [t.user_text for t in turns_a] == ["first?"] and [t.user_text for t in turns_b] == ["second?"]
        assert turns_a[0].image_hashes != turns_b[0].image_hashes
        assert len(thread_texts(slack, a["ts"])) == 1 and len(thread_texts(slack, b["ts"])) == 1


async def test_clear_in_a_thread_resets_only_that_thread(make_bot, red_png: bytes) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        a = mention(slack, "first?", files=[slack.host_file(red_png, "a.png", "image/png")])
        b = mention(slack, "second?", files=[slack.host_file(red_png, "b.png", "image/png")])
        await bot.deliver(a)
        await bot.deliver(b)
        await bot.settle()
        await bot.deliver(mention(slack, "clear", thread_ts=a["ts"]))
        await bot.settle()
        assert thread_texts(slack, a["ts"])[-1].startswith("Cleared.")
        store = bot.service.store
        (old_a,) = await store.list_sessions(platform="slack", thread_key=f"{CHANNEL}/{a['ts']}")
        (still_b,) = await store.list_sessions(platform="slack", thread_key=f"{CHANNEL}/{b['ts']}")
        assert old_a.status == "archived" and still_b.status == "active"
        # the thread goes on (without a mention) in a fresh conversation
        await bot.deliver(slack.message_event(CHANNEL, "new question", thread_ts=a["ts"]))
        await bot.settle()
        active = await store.list_sessions(platform="slack", thread_key=f"{CHANNEL}/{a['ts']}", active_only=True)
        assert [t.user_text for t in await store.turns(active[0].id)] == ["new question"]


async def test_a_retried_event_is_answered_once(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        event = mention(slack, "hello?")
        await bot.deliver(event, event_id="Ev0RETRY", retries=2)
        await bot.settle()
        assert len(bot.acks) == 3 and max(bot.acks) < 3
        assert len(await bot.turns(f"{CHANNEL}/{event['ts']}")) == 1
        assert len(thread_texts(slack, event["ts"])) == 1
        assert len(slack.calls("chat.startStream")) == 1


async def test_message_and_app_mention_pair_is_answered_once(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        as_message = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> what now?")
        as_mention = slack.event_for(CHANNEL, as_message["ts"], as_message["text"], kind="app_mention")
        await bot.deliver(as_message)
        await bot.deliver(as_mention)
        await bot.settle()
        assert [t.user_text for t in await bot.turns(f"{CHANNEL}/{as_message['ts']}")] == ["what now?"]
        assert len(slack.calls("chat.startStream")) == 1


async def test_missing_files_read_is_told_to_user_and_operator(
    make_bot, red_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.slack")
    async with make_bot() as bot:
        pass  # restarted below with the scope removed
    bot.slack.scopes.discard("files:read")
    async with make_bot() as bot:
        slack = bot.slack
        assert any("files:read" in r.getMessage() for r in caplog.records if r.name.startswith("adapters.slack.adapter"))
        event = mention(slack, "what is this?", files=[slack.host_file(red_png, "a.png", "image/png")])
        await bot.deliver(event)
        await bot.settle()
        (reply,) = thread_texts(slack, event["ts"])
        assert "files:read" in reply
        assert any(r.name == "adapters.slack.files" and r.levelno == logging.ERROR for r in caplog.records)
        assert await bot.turns(f"{CHANNEL}/{event['ts']}") == []


async def test_a_non_image_file_gets_a_clear_reply_and_is_not_downloaded(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        document = slack.host_file(b"PK\x03\x04 ...", "report.docx", docx)
        event = mention(slack, "", files=[document])
        await bot.deliver(event)
        await bot.settle()
        (reply,) = thread_texts(slack, event["ts"])
        assert "only read pictures" in reply and "report.docx" in reply
        assert slack.calls("/files") == []
        assert await bot.turns(f"{CHANNEL}/{event['ts']}") == []


async def test_a_file_too_big_is_refused_from_its_metadata(make_bot, red_png: bytes) -> None:
    async with make_bot(max_image_bytes=1000) as bot:
        slack = bot.slack
        big = slack.host_file(red_png, "huge.png", "image/png", size=5_000_000)
        event = mention(slack, "what is this?", files=[big])
        await bot.deliver(event)
        await bot.settle()
        (reply,) = thread_texts(slack, event["ts"])
        assert "limit" in reply and slack.calls("/files") == []


async def test_several_files_form_one_turn(make_bot, red_png: bytes, blue_jpeg: bytes) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        files = [slack.host_file(red_png, "a.png", "image/png"), slack.host_file(blue_jpeg, "b.jpg", "image/jpeg")]
        event = mention(slack, "what changed?", files=files)
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        assert len(turn.image_hashes) == 2 and len(thread_texts(slack, event["ts"])) == 1


async def test_a_429_during_a_native_stream_loses_no_text(make_bot) -> None:
    async with make_bot(max_new_tokens=24) as bot:
        slack = bot.slack
        slack.fail("chat.appendStream", retry_after=1)
        event = mention(slack, "tell me more")
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        (stream,) = slack.streams
        assert stream.text == turn.answer and thread_texts(slack, event["ts"]) == [turn.answer]
        appends = slack.calls("chat.appendStream")
        assert len(appends) >= 2
        assert appends[1].at - appends[0].at >= 0.9  # Retry-After was honoured


async def test_a_429_during_streaming_by_updates_loses_no_text(make_bot) -> None:
    """A workspace without native streams: the answer grows by chat.update."""
    async with make_bot(max_new_tokens=24) as bot:
        slack = bot.slack
        slack.streaming_error = "not_allowed_token_type"
        slack.fail("chat.update", retry_after=1)
        event = mention(slack, "tell me more")
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        assert thread_texts(slack, event["ts"]) == shown(turn.answer)
        updates = slack.calls("chat.update")
        assert len(updates) >= 2
        assert updates[1].at - updates[0].at >= 0.9  # Retry-After was honoured


async def test_an_answer_too_long_for_one_message_continues_in_the_thread(make_bot) -> None:
    async with make_bot(max_new_tokens=48, adapter={"message_limit": 20}) as bot:
        slack = bot.slack
        event = mention(slack, "write a lot")
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        texts = thread_texts(slack, event["ts"])
        assert len(texts) >= 2 and texts == shown(turn.answer, 20)


async def test_a_disallowed_channel_gets_one_line_and_nothing_is_kept(make_bot, red_png: bytes) -> None:
    async with make_bot(slack_allow_everyone=False, slack_allowed_channels=("C0OTHER",)) as bot:
        slack = bot.slack
        event = mention(slack, "what is this?", files=[slack.host_file(red_png, "a.png", "image/png")])
        await bot.deliver(event, retries=1)
        await bot.settle()
        (reply,) = thread_texts(slack, event["ts"])
        assert "not enabled" in reply and "\n" not in reply
        assert slack.calls("/files") == []
        assert await bot.service.store.list_sessions(platform="slack") == []
        registry = bot.service.conversations.metrics.registry  # counted in the core, once however often Slack retries
        assert registry.get_sample_value("vlmbot_refusals_total", {"reason": "access"}) == 1


@pytest.mark.parametrize("mode", ["http"])  # signatures belong to the HTTP Events API
async def test_a_bad_signature_is_rejected(make_bot, mode: str) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        event = mention(slack, "hello?")
        sender = EventsSender(bot.adapter.http_url, "test-signing-secret", max_retries=0)
        (attempt,) = await sender.send(slack.event_callback(event), bad_signature=True)
        await bot.settle()
        assert attempt.status == 401
        assert slack.bot_messages() == [] and await bot.service.store.list_sessions(platform="slack") == []
        (good,) = await sender.send(slack.event_callback(event))
        await bot.settle()
        assert good.status == 200 and len(slack.bot_messages()) == 1  # the same event, signed, works


DM = "D0ALICE"


def dm(slack: SlackStandIn, text: str, **kw: Any) -> dict[str, Any]:
    return slack.message_event(DM, text, channel_type="im", **kw)


async def test_direct_messages_form_one_conversation_with_plain_clear(make_bot, red_png: bytes) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        await bot.deliver(dm(slack, "what is this?", files=[slack.host_file(red_png, "a.png", "image/png")]))
        await bot.settle()
        await bot.deliver(dm(slack, "and now?"))
        await bot.settle()
        assert [t.user_text for t in await bot.turns(DM)] == ["what is this?", "and now?"]
        assert [m.thread_ts for m in slack.bot_messages(DM)] == [None, None]  # answered in the DM itself
        threaded = dm(slack, "side question")
        await bot.deliver(dm(slack, "in a DM thread", thread_ts=threaded["ts"]))
        await bot.settle()
        assert [t.user_text for t in await bot.turns(f"{DM}/{threaded['ts']}")] == ["in a DM thread"]
        await bot.deliver(dm(slack, "clear"))
        await bot.settle()
        assert slack.bot_messages(DM)[-1].text.startswith("Cleared.")
        assert await bot.service.store.list_sessions(platform="slack", thread_key=DM, active_only=True) == []


async def test_export_uploads_the_json_into_the_thread(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        event = mention(slack, "hello?")
        await bot.deliver(event)
        await bot.settle()
        await bot.deliver(mention(slack, "export", thread_ts=event["ts"]))
        await bot.settle()
        (upload,) = slack.uploads
        assert upload.channel == CHANNEL and upload.thread_ts == event["ts"]
        exported = json.loads(upload.data)
        assert "hello?" in json.dumps(exported)


async def test_slash_command_in_a_dm_and_in_a_channel(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        await bot.command("help", channel=DM)
        await bot.settle()
        (help_message,) = slack.bot_messages(DM)
        assert "/clear" in help_message.text and help_message.thread_ts is None
        await bot.command("status", channel=CHANNEL)
        await bot.settle()
        assert len(slack.responses) == 1 and "Model:" in slack.responses[0]["text"]
        assert slack.bot_messages(CHANNEL) == []  # command output in a channel is private
        await bot.command("what is an MTU?", channel=CHANNEL)
        await bot.settle()
        root = next(m for m in slack.bot_messages(CHANNEL) if m.thread_ts is None)
        assert root.text == "<@U0ALICE> asked: what is an MTU?"
        assert [t.user_text for t in await bot.turns(f"{CHANNEL}/{root.ts}")] == ["what is an MTU?"]
        assert len(slack.bot_messages(CHANNEL, root.ts)) == 1


async def test_slash_preset_in_a_channel_explains_where_it_works(make_bot) -> None:
    async with make_bot() as bot:
        await bot.command("find the serial number", channel=CHANNEL)
        await bot.settle()
        (response,) = bot.slack.responses
        assert "`find` works on a picture" in response["text"] and "find THING" in response["text"]
        assert bot.slack.bot_messages(CHANNEL) == []
        assert await bot.turns(CHANNEL) == []  # nothing was asked or stored


async def test_a_disallowed_user_gets_a_private_refusal_for_the_slash_command(make_bot) -> None:
    async with make_bot(slack_allow_everyone=False, slack_allowed_users=("U0BOB",)) as bot:
        await bot.command("what is this?", channel=CHANNEL)
        await bot.settle()
        assert [r["text"] for r in bot.slack.responses] == [refusal("U0ALICE")]
        assert bot.slack.bot_messages() == []


async def test_a_slack_error_while_streaming_is_told_to_the_user(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        slack.fail("chat.appendStream", status=500, count=100)
        slack.fail("chat.stopStream", status=500, count=100)
        event = mention(slack, "hello?")
        await bot.deliver(event)
        await bot.settle()
        texts = thread_texts(slack, event["ts"])
        assert texts[-1] == f":warning: {FAILED}"


async def test_a_slack_error_while_answering_is_told_to_the_user(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        slack.streaming_error = "not_allowed_token_type"
        slack.fail("chat.update", status=500, count=100)
        event = mention(slack, "hello?")
        await bot.deliver(event)
        await bot.settle()
        texts = thread_texts(slack, event["ts"])
        assert texts[-1] == f":warning: {FAILED}"


@pytest.mark.parametrize("mode", ["http"])
async def test_url_verification_challenge_is_answered(make_bot, mode: str) -> None:
    async with make_bot() as bot:
        sender = EventsSender(bot.adapter.http_url, "test-signing-secret", max_retries=0)
        (attempt,) = await sender.send({"token": "t", "challenge": "c-123", "type": "url_verification"})
        assert attempt.status == 200 and "c-123" in attempt.body
