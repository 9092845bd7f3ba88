"""Each Telegram user gets the bot's own words in their app's language (`from.language_code`), and the
command menu is set per language (setMyCommands with language_code) — through the real
python-telegram-bot against the Bot API stand-in, on the real core."""

from __future__ import annotations

import pytest

from bot.commands import COMMANDS
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    GROUP,
    OTHER_USER,
    STRANGER,
    photo_sizes,
    png,
    running_adapter,
    settle,
    shown_text,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def test_a_chinese_and_an_english_user_in_the_same_run(standin, service_factory):
    standin.language_codes[ALLOWED_USER] = "zh-hans"
    standin.language_codes[OTHER_USER] = "en-GB"
    standin.language_codes[STRANGER] = "zh-hans"
    async with service_factory() as service:
        async with running_adapter(standin, service) as (adapter, _rec):
            await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="/help"))
            await standin.inject(standin.message(chat_id=GROUP, user_id=OTHER_USER, text="/help", chat_type="group"))
            await standin.inject(standin.message(chat_id=STRANGER, user_id=STRANGER, text="hello"))
            await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="/undo"))
            await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, extra={"sticker": {
                "file_id": "st", "file_unique_id": "st", "width": 1, "height": 1, "is_animated": False,
                "is_video": False, "type": "regular"}}))
            await settle(standin, adapter)
    chinese_help, undo, sticker = shown_text(standin, ALLOWED_USER)
    assert sticker == (
        "我只能读取图片（PNG、JPEG、WebP、GIF 等）、PDF 和短视频（MP4、MOV、WebM），所以跳过了贴纸。请发送照片、截图、PDF 或录屏并就其提问。"
    )
    assert chinese_help.startswith("发送照片、截图、PDF 或短录屏") and "命令：" in chinese_help
    assert "/clear - 重新开始此对话" in chinese_help and "/find 要找的东西 - 找到某样东西并在图上标出" in chinese_help
    assert undo == "没有可撤销的内容。"
    [english_help] = shown_text(standin, GROUP)
    assert english_help.startswith("Send me a photo or screenshot") and "/clear - Start this conversation afresh" in english_help
    [refusal] = shown_text(standin, STRANGER)
    assert refusal == f"抱歉，我在这里没有为你开放。请让机器人的管理员添加你的用户 ID（{STRANGER}）或此聊天。"


async def test_the_command_menu_is_set_in_english_and_in_chinese(standin, service_factory):
    async with service_factory() as service:
        async with running_adapter(standin, service):
            pass
    calls = standin.calls("setMyCommands")
    assert [c.params.get("language_code") for c in calls] == [None, "zh"]
    names = [c.name for c in COMMANDS]
    assert [c["command"] for c in standin.commands] == names
    assert [c["description"] for c in standin.commands] == [c.description for c in COMMANDS]
    chinese = standin.commands_by_language["zh"]
    assert [c["command"] for c in chinese] == names
    descriptions = {c["command"]: c["description"] for c in chinese}
    assert descriptions["clear"] == "重新开始此对话" and descriptions["ocr"] == "读取图片中的全部文字"
    # /forget erases every kind of file sent (pictures, PDFs, recordings): the menu says files
    assert standin.commands[names.index("forget")]["description"] == "Erase your messages, the answers and the files you sent here"
    assert descriptions["forget"] == "删除你在这里发送的消息、文件及相应回答"


async def test_vlmbot_language_en_forces_english(standin, service_factory):
    standin.language_codes[ALLOWED_USER] = "zh-hans"
    standin.language_codes[STRANGER] = "zh-CN"
    async with service_factory(language="en") as service:
        async with running_adapter(standin, service) as (adapter, _rec):
            await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="/help"))
            await standin.inject(standin.message(chat_id=STRANGER, user_id=STRANGER, text="hello"))
            await settle(standin, adapter)
    [help_text] = shown_text(standin, ALLOWED_USER)
    assert help_text.startswith("Send me a photo or screenshot") and "Commands:" in help_text
    [refusal] = shown_text(standin, STRANGER)
    assert refusal.startswith("Sorry, I'm not enabled for you here.")
    # Chinese clients are shown the English menu too, not one a previous run left behind.
    assert [c["description"] for c in standin.commands_by_language["zh"]] == [c.description for c in COMMANDS]


async def test_vlmbot_language_zh_forces_chinese(standin, service_factory):
    async with service_factory(language="zh") as service:
        async with running_adapter(standin, service) as (adapter, _rec):
            await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="/undo"))
            await settle(standin, adapter)
    assert shown_text(standin, ALLOWED_USER) == ["没有可撤销的内容。"]
    assert standin.commands[0]["description"] == "介绍和示例"


async def test_a_preset_asks_the_model_to_answer_in_the_users_language(standin, service_factory):
    standin.language_codes[ALLOWED_USER] = "zh-hans"
    standin.language_codes[OTHER_USER] = "en"
    async with service_factory(max_new_tokens=4) as service:
        async with running_adapter(standin, service) as (adapter, _rec):
            for user, chat, kind in ((ALLOWED_USER, ALLOWED_USER, "private"), (OTHER_USER, GROUP, "group")):
                sizes = photo_sizes(standin, png())
                await standin.inject(standin.message(chat_id=chat, user_id=user, photo=sizes, caption="/describe", chat_type=kind))
            await settle(standin, adapter)
            asked = {}
            for chat in (ALLOWED_USER, GROUP):
                [session] = await service.store.list_sessions(platform="telegram", thread_key=f"chat:{chat}")
                [turn] = await service.store.turns(session.id)
                asked[chat] = turn.user_text
    assert asked[ALLOWED_USER].endswith("\n请用简体中文回答；图片中的文字请按原文照抄，不要翻译。")
    assert asked[ALLOWED_USER].startswith("Describe this picture in a structured way")
    assert "中文" not in asked[GROUP] and asked[GROUP].startswith("Describe this picture in a structured way")
