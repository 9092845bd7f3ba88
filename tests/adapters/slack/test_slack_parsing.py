"""Events, commands and access rules as plain values."""

from __future__ import annotations

import pytest

from adapters.slack.commands import from_slash_command, from_text
from adapters.slack.events import parse_message, strip_mention

BOT = "U0BOT"


def event(**kw):
    base = {"type": "message", "user": "U1", "text": "hi", "ts": "10.1", "channel": "C1", "channel_type": "channel"}
    base.update(kw)
    return base


def test_top_level_mention_starts_a_thread_at_the_message() -> None:
    msg = parse_message(event(type="app_mention", text=f"<@{BOT}> hi"), bot_user_id=BOT, team="T1")
    assert msg is not None and msg.mentioned
    assert (msg.thread_key, msg.reply_thread_ts, msg.delivery_key) == ("C1/10.1", "10.1", "C1/10.1")


def test_thread_reply_uses_the_root() -> None:
    msg = parse_message(event(ts="12.0", thread_ts="10.1"), bot_user_id=BOT, team="T1")
    assert msg is not None and not msg.mentioned and msg.in_thread
    assert (msg.thread_key, msg.reply_thread_ts, msg.delivery_key) == ("C1/10.1", "10.1", "C1/12.0")


def test_dm_top_level_is_one_conversation_and_dm_threads_their_own() -> None:
    top = parse_message(event(channel="D1", channel_type="im"), bot_user_id=BOT, team="T1")
    threaded = parse_message(event(channel="D1", channel_type="im", ts="11.0", thread_ts="10.1"), bot_user_id=BOT, team="T1")
    assert top is not None and threaded is not None
    assert (top.thread_key, top.reply_thread_ts) == ("D1", None)
    assert (threaded.thread_key, threaded.reply_thread_ts) == ("D1/10.1", "10.1")


@pytest.mark.parametrize(
    "extra",
    [{"subtype": "message_changed"}, {"bot_id": "B2"}, {"user": BOT}, {"subtype": "channel_join"}, {"user": None}],
)
def test_ignored_messages(extra) -> None:
    assert parse_message(event(**extra), bot_user_id=BOT, team="T1") is None


def test_file_share_keeps_files() -> None:
    files = [{"id": "F1", "name": "a.png", "mimetype": "image/png", "size": 10, "url_private": "http://x/a.png"}]
    msg = parse_message(event(subtype="file_share", files=files), bot_user_id=BOT, team="T1")
    assert msg is not None and msg.files[0].is_picture and msg.files[0].size == 10


def test_strip_mention() -> None:
    assert strip_mention(f"<@{BOT}> what is  this?", BOT) == "what is this?"
    assert strip_mention(f"hey <@{BOT}|vlmbot>, clear", BOT) == "hey , clear"


@pytest.mark.parametrize(
    ("text", "core"),
    [
        ("clear", "/clear"), ("Clear", "/clear"), ("/undo", "/undo"), ("name Printer jam", "/name Printer jam"),
        ("clear this error?", "clear this error?"), ("help me read this", "help me read this"),
        ("what is this?", "what is this?"), ("export", "/export"),
    ],
)
def test_text_commands(text: str, core: str) -> None:
    assert from_text(text) == core


def test_slash_command_text() -> None:
    assert from_slash_command("") == "/help"
    assert from_slash_command("clear") == "/clear"
    assert from_slash_command("name  Invoices") == "/name Invoices"
    assert from_slash_command("what is an MTU?") == "what is an MTU?"


def test_manifest_asks_for_what_the_adapter_needs() -> None:
    from pathlib import Path

    import yaml

    from adapters.slack.adapter import REQUIRED_SCOPES
    from bot.config import Settings

    manifest = yaml.safe_load((Path(__file__).parents[3] / "adapters/slack/manifest.yaml").read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(REQUIRED_SCOPES)
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "app_mention", "message.channels", "message.groups", "message.im", "message.mpim",
        "assistant_thread_started", "assistant_thread_context_changed",
    }
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True  # feedback buttons
    assert manifest["features"]["assistant_view"]["assistant_description"]
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == Settings.model_construct().slack_slash_command


def test_adapter_refuses_to_start_open_or_without_a_mode() -> None:
    from adapters.slack import SlackAdapter
    from bot.config import Settings
    from bot.inbox import Inbox

    def adapter(settings: Settings) -> SlackAdapter:
        return SlackAdapter(settings, Inbox(None, settings))  # type: ignore[arg-type]

    base = Settings.model_construct().model_copy(update={"slack_bot_token": "xoxb-1", "slack_app_token": "xapp-1"})
    with pytest.raises(ValueError, match="SLACK_ALLOW_EVERYONE"):
        adapter(base)
    no_mode = base.model_copy(update={"slack_app_token": None, "slack_allow_everyone": True})
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        adapter(no_mode)
    adapter(base.model_copy(update={"slack_allowed_channels": ("C1",)}))
