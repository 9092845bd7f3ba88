"""Rendering the core's reply stream through the real Application: long answers, broken markup,
queue position, files. A scripted core supplies the exact replies; everything else is real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.telegram import TelegramAdapter
from adapters.telegram.render import render
from bot.access import AccessConfigError
from bot.config import Settings
from bot.inbox import Inbox
from bot.messages import (
    Answer,
    AnswerDelta,
    Document,
    Generating,
    Notice,
    Picture,
    QueuePosition,
    Text,
)
from bot.wording import FAILED
from tests.adapters.telegram.botapi_standin import parse_html
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    GROUP,
    OTHER_USER,
    Scripted,
    SettingsOnly,
    png,
    running_adapter,
    settle,
    shown_text,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings.model_construct().model_copy(update={"data_dir": tmp_path, **kw})


def _answer(text: str) -> Answer:
    return Answer(text=text, turn_id=7, latency_ms=10, output_tokens=100)


async def _run(standin, tmp_path, core, text="question", **kw):
    async with running_adapter(standin, SettingsOnly(_settings(tmp_path)), conversations=core, **kw) as (adapter, _):
        await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text=text))
        await settle(standin, adapter)


LONG = "\n\n".join(f"Paragraph {i}. " + " ".join(f"word{j} <tag> & **bold**" for j in range(40)) for i in range(25))


async def test_answer_over_4096_characters_is_split_at_paragraphs(standin, tmp_path):
    deltas = [AnswerDelta(LONG[i : i + 700]) for i in range(0, len(LONG), 700)]
    await _run(standin, tmp_path, Scripted(Generating(), *deltas, _answer(LONG), pause=0.02))
    texts = shown_text(standin, CHAT)
    assert len(LONG) > 4096 * 2 and len(texts) >= 3
    assert all(len(t) <= 4096 and t.startswith("Paragraph ") for t in texts)
    whole = parse_html(render(LONG))[0]  # nothing lost or repeated across the messages
    assert "".join(texts).replace("\n", "") == whole.replace("\n", "")
    assert all(r.status == 200 for r in standin.requests)


async def test_final_answer_replaces_streamed_text_and_removes_extra_messages(standin, tmp_path):
    await _run(standin, tmp_path, Scripted(AnswerDelta(LONG), 0.3, _answer("Short **final** answer.")))
    assert shown_text(standin, CHAT) == ["Short final answer."]
    assert standin.calls("deleteMessage")  # the streamed overflow messages are gone


async def test_markup_that_breaks_html_is_escaped(standin, tmp_path):
    nasty = "Use <div class=\"x\"> & </span> then **bold _nested** `a<b` [x](javascript:alert(1)) <br>"
    await _run(standin, tmp_path, Scripted(AnswerDelta(nasty[:20]), _answer(nasty)))
    assert all(r.status == 200 for r in standin.requests)
    [text] = shown_text(standin, CHAT)
    assert '<div class="x"> & </span>' in text and "<br>" in text


async def test_rejected_html_is_resent_as_plain_text(standin, tmp_path):
    standin.reject_next("sendMessage", "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0")
    await _run(standin, tmp_path, Scripted(_answer("**Answer** with <odd> text")))
    first, second = standin.calls("sendMessage")
    assert first.status == 400 and first.params["parse_mode"] == "HTML"
    assert second.status == 200 and "parse_mode" not in second.params
    assert shown_text(standin, CHAT) == ["**Answer** with <odd> text"]


async def test_queue_position_then_answer_as_drafts_in_a_private_chat(standin, tmp_path):
    script = Scripted(QueuePosition(3), 0.2, QueuePosition(2), 0.2, Generating(), AnswerDelta("Hello"), 0.2,
                      AnswerDelta(" world"), _answer("Hello world"))
    await _run(standin, tmp_path, script)
    status, answer = (m for (chat, _), m in sorted(standin.messages.items()) if chat == CHAT)
    assert status.deleted and status.history == [  # the status message went when the draft began
        "⏳ Waiting in the queue: 2 questions ahead of yours.", "⏳ Waiting in the queue: 1 question ahead of yours."]
    assert standin.draft_texts(CHAT)[0] == "Hello"  # streamed: the partial answer was shown before the whole
    assert answer.text == "Hello world" and answer.history == [] and standin.visible_draft(CHAT) is None
    actions = standin.calls("sendChatAction")
    assert actions and actions[0].at < standin.calls("sendMessage")[0].at  # typing while queued


async def test_queue_position_then_answer_in_the_same_message_in_a_group(standin, tmp_path):
    script = Scripted(QueuePosition(3), 0.2, QueuePosition(2), 0.2, Generating(), AnswerDelta("Hello"), 0.3,
                      AnswerDelta(" world"), _answer("Hello world"))
    async with running_adapter(standin, SettingsOnly(_settings(tmp_path)), conversations=script) as (adapter, _):
        await standin.inject(standin.message(chat_id=GROUP, user_id=OTHER_USER, chat_type="supergroup",
                                             text="@vlm_test_bot question"))
        await settle(standin, adapter)
    [message] = standin.chat_messages(GROUP)
    assert message.text == "Hello world"
    assert [h for h in message.history if "ahead" in h] == [
        "⏳ Waiting in the queue: 2 questions ahead of yours.", "⏳ Waiting in the queue: 1 question ahead of yours."]
    assert "Hello" in message.history and standin.calls("sendMessageDraft") == []


async def test_next_in_line_starting_at_once_shows_no_queue_notice(standin, tmp_path):
    await _run(standin, tmp_path, Scripted(QueuePosition(1), Generating(), AnswerDelta("Hi"), _answer("Hi")))
    [message] = standin.chat_messages(CHAT)
    assert message.text == "Hi" and message.history == []


async def test_long_code_is_also_sent_as_a_file(standin, tmp_path):
    html_code = "\n".join(f"<div id=\"row{i}\">Row {i}</div>" for i in range(80))
    await _run(standin, tmp_path, Scripted(_answer(f"Here is the page:\n\n```html\n{html_code}\n```")))
    [doc] = standin.calls("sendDocument")
    assert doc.files["document"] == ("answer-7.html", html_code.encode())
    assert '<div id="row79">Row 79</div>' in shown_text(standin, CHAT)[0]


async def test_export_document_picture_notice_and_text(standin, tmp_path):
    export = json.dumps({"turns": []}).encode()
    script = Scripted(
        Document("vlmbot-session-1.json", export, "application/json", "This conversation as JSON."),
        Picture("located.png", png(), caption="Found 2 objects"),
        Notice("Older turns were left out."),
        Text("Something failed; try again.", kind="error"),
    )
    await _run(standin, tmp_path, script, text="/export@vlm_test_bot")
    assert script.handled[0].text == "/export"
    [doc] = standin.calls("sendDocument")
    assert doc.files["document"] == ("vlmbot-session-1.json", export) and doc.params["caption"] == "This conversation as JSON."
    [photo] = standin.calls("sendPhoto")
    assert photo.files["photo"][1] == png()
    assert shown_text(standin, CHAT) == ["Older turns were left out.", "Something failed; try again."]


async def test_webhook_rejects_a_wrong_secret(standin, tmp_path):
    import aiohttp

    core = Scripted(_answer("hi"))
    async with running_adapter(standin, SettingsOnly(_settings(tmp_path)), conversations=core, mode="webhook") as (adapter, _):
        url = standin.webhook["url"]
        update = {"update_id": 1, **standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="hi")}
        async with aiohttp.ClientSession() as http:
            for secret in ("wrong", None):
                headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
                async with http.post(url, json=update, headers=headers) as resp:
                    assert resp.status == 403
        await settle(standin, adapter)
    assert core.handled == [] and standin.calls("sendMessage") == []


async def test_refuses_to_start_without_an_allowlist(tmp_path):
    settings = _settings(tmp_path, telegram_token="1:x")
    with pytest.raises(AccessConfigError, match="TELEGRAM_ALLOW_EVERYONE"):
        TelegramAdapter(settings, Inbox(Scripted(), settings))
    everyone = settings.model_copy(update={"telegram_allow_everyone": True})
    TelegramAdapter(everyone, Inbox(Scripted(), everyone))


async def test_clear_stops_a_running_answer(standin, tmp_path):
    core = Scripted(Generating(), AnswerDelta("Working"), 1.5, _answer("Working done"),
                    by_text={"/clear": (Text("Cleared."),)})
    async with running_adapter(standin, SettingsOnly(_settings(tmp_path)), conversations=core) as (adapter, _):
        await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="question"))
        await standin.wait_for(lambda: standin.draft_texts(CHAT) == ["Working"])
        await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/clear"))
        await standin.wait_for(lambda: "Cleared." in shown_text(standin, CHAT), timeout=1.0)
        await settle(standin, adapter)
    # The answer stopped where it was, and what its draft showed stays as a message (as edits leave
    # theirs): an unsent draft would simply vanish.
    assert shown_text(standin, CHAT) == ["Working", "Cleared."] and standin.draft_texts(CHAT) == ["Working"]


async def test_a_failing_core_is_reported_and_the_thread_goes_on(standin, tmp_path):
    core = Scripted(_answer("fine"), by_text={"boom": (RuntimeError("core bug"),)})
    async with running_adapter(standin, SettingsOnly(_settings(tmp_path)), conversations=core) as (adapter, _):
        await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="boom"))
        await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="next"))
        await settle(standin, adapter)
    assert shown_text(standin, CHAT) == [FAILED, "fine"]
