"""Each Slack user gets the bot's own words in their Slack locale (`users.info` with include_locale,
cached per user): messages, the slash command, refusals, and the assistant thread's greeting and
suggestions."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from adapters.slack.assistant import SUGGESTED
from tests.adapters.slack.slack_blocks import feedback_elements

CHINESE_DM = "D0LI"
ENGLISH_DM = "D0ALICE"


def dm(slack, channel: str, text: str, user: str):
    return slack.message_event(channel, text, channel_type="im", user=user)


async def test_a_user_whose_slack_locale_is_chinese_is_answered_in_chinese(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        slack.locales["U0LI"] = "zh-CN"
        await bot.deliver(dm(slack, CHINESE_DM, "undo", "U0LI"))
        await bot.deliver(dm(slack, ENGLISH_DM, "undo", "U0ALICE"))
        await bot.settle()
        await bot.deliver(dm(slack, CHINESE_DM, "help", "U0LI"))
        await bot.settle()
        undo, help_message = slack.bot_messages(CHINESE_DM)
        assert undo.text == "没有可撤销的内容。"
        assert "命令：" in help_message.text and "重新开始此对话" in help_message.text
        (english,) = slack.bot_messages(ENGLISH_DM)
        assert english.text == "Nothing to undo."
        await bot.deliver(dm(slack, CHINESE_DM, "这是什么错误？", "U0LI"))
        await bot.settle()
        answer = slack.bot_messages(CHINESE_DM)[-1]
        ((_, buttons),) = feedback_elements(answer.blocks)
        assert buttons["positive_button"]["text"]["text"] == "有帮助"
        assert buttons["negative_button"]["text"]["text"] == "没有帮助"
        lookups = slack.calls("users.info")
        assert sorted(c.params["user"] for c in lookups) == ["U0ALICE", "U0LI"]  # once per user: cached
        assert all(str(c.params.get("include_locale")).lower() in ("1", "true") for c in lookups)


async def test_the_slash_command_and_a_refusal_follow_the_locale(make_bot) -> None:
    async with make_bot(slack_allow_everyone=False, slack_allowed_users=("U0ALICE",)) as bot:
        slack = bot.slack
        slack.locales["U0LI"] = "zh-CN"
        slack.locales["U0ALICE"] = "zh-TW"  # Traditional Chinese readers get Simplified (bot/language.py)
        await bot.command("undo", channel=ENGLISH_DM, user="U0ALICE")
        await bot.deliver(dm(slack, CHINESE_DM, "hello", "U0LI"))
        await bot.settle()
        (undo,) = slack.bot_messages(ENGLISH_DM)
        assert undo.text == "没有可撤销的内容。"
        (refusal,) = slack.bot_messages(CHINESE_DM)
        assert refusal.text.startswith("抱歉，我在这里没有为你开放。") and "U0LI" in refusal.text


async def test_an_assistant_thread_greets_and_suggests_in_the_users_language(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        slack.locales["U0LI"] = "zh-CN"
        event = slack.assistant_thread_started(user="U0LI", channel=CHINESE_DM)
        await bot.deliver(event)
        await bot.settle()
        (greeting,) = slack.bot_messages(CHINESE_DM, event["assistant_thread"]["thread_ts"])
        assert greeting.text.startswith("你好！发送截图或照片并提问")
        (offered,) = slack.suggested_prompts
        assert offered.title == "对图片试试这些："
        titles = [title for title, _ in offered.prompts]
        assert titles[0] == "读取图片中的全部文字"
        assert [message for _, message in offered.prompts][-1] == "/find 错误信息"
        assert [message.split(" ")[0] for _, message in offered.prompts] == [f"/{name}" for name, _ in SUGGESTED]


async def test_without_users_read_the_bot_speaks_english_and_asks_once(make_bot) -> None:
    async with make_bot() as bot:
        slack = bot.slack
        slack.locales["U0LI"] = "zh-CN"
        slack.scopes.discard("users:read")
        await bot.deliver(dm(slack, CHINESE_DM, "undo", "U0LI"))
        await bot.settle()
        await bot.deliver(dm(slack, CHINESE_DM, "undo", "U0LI"))
        await bot.settle()
        assert [m.text for m in slack.bot_messages(CHINESE_DM)] == ["Nothing to undo.", "Nothing to undo."]
        assert len(slack.calls("users.info")) == 1  # the failure is remembered too


async def test_vlmbot_language_en_forces_english_without_asking_slack(make_bot) -> None:
    async with make_bot(language="en") as bot:
        slack = bot.slack
        slack.locales["U0LI"] = "zh-CN"
        await bot.deliver(dm(slack, CHINESE_DM, "undo", "U0LI"))
        await bot.settle()
        assert [m.text for m in slack.bot_messages(CHINESE_DM)] == ["Nothing to undo."]
        assert slack.calls("users.info") == []


def test_the_manifest_speaks_both_languages() -> None:
    """A manifest has no per-locale texts: what users read before talking to the bot carries both."""
    manifest = yaml.safe_load((Path(__file__).parents[3] / "adapters/slack/manifest.yaml").read_text())
    (command,) = manifest["features"]["slash_commands"]
    for text in (command["description"], command["usage_hint"], manifest["features"]["assistant_view"]["assistant_description"]):
        assert re.search(r"[a-z]{3}", text) and re.search(r"[\u4e00-\u9fff]", text), text
    assert "users:read" in manifest["oauth_config"]["scopes"]["bot"]
