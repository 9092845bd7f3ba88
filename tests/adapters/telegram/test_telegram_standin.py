"""The Bot API stand-in speaks the wire protocol python-telegram-bot expects."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.error import BadRequest, Conflict, RetryAfter

from tests.adapters.telegram.harness import png

pytestmark = pytest.mark.asyncio(loop_scope="function")


def _bot(standin) -> Bot:
    return Bot(standin.token, base_url=f"{standin.url}/bot", base_file_url=f"{standin.url}/file/bot")


async def test_envelope_and_get_me(standin):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{standin.url}/bot{standin.token}/getMe") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["ok"] is True and body["result"]["username"] == "vlm_test_bot"
        async with http.post(f"{standin.url}/botWRONG/getMe") as resp:
            assert resp.status == 401 and (await resp.json())["ok"] is False
        async with http.post(f"{standin.url}/bot{standin.token}/noSuchMethod") as resp:
            assert resp.status == 404
    async with _bot(standin) as bot:
        assert bot.username == "vlm_test_bot"


async def test_send_and_edit_with_html_rules(standin):
    async with _bot(standin) as bot:
        sent = await bot.send_message(42, "<b>hi</b> &lt;x&gt;", parse_mode="HTML")
        assert sent.text == "hi <x>" and sent.entities[0].type == "bold"
        assert standin.calls("sendMessage")[0].content_type == "application/x-www-form-urlencoded"
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            await bot.send_message(42, "<b>open", parse_mode="HTML")
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message(42, "x" * 4097)
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text("<b>hi</b> &lt;x&gt;", chat_id=42, message_id=sent.message_id, parse_mode="HTML")
        await bot.edit_message_text("bye", chat_id=42, message_id=sent.message_id)
        assert standin.texts(42) == ["bye"]
        assert [r.status for r in standin.requests if r.method != "getMe"] == [200, 400, 400, 400, 200]


async def test_injected_429_carries_retry_after(standin):
    standin.fail_next("sendMessage", 1, retry_after=3)
    async with _bot(standin) as bot:
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(1, "x")
        assert "3" in str(info.value)
        await bot.send_message(1, "x")
    assert [r.status for r in standin.calls("sendMessage")] == [429, 200]


async def test_long_poll_waits_and_offset_confirms(standin):
    async with _bot(standin) as bot:
        waiting = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        uid = await standin.inject(standin.message(chat_id=5, user_id=5, text="hello"))
        updates = await asyncio.wait_for(waiting, 3)
        assert [u.update_id for u in updates] == [uid] and updates[0].message.text == "hello"
        assert await bot.get_updates(offset=uid + 1, timeout=0) == ()
        await bot.set_webhook("http://127.0.0.1:1/hook")
        with pytest.raises(Conflict):
            await bot.get_updates(timeout=0)


async def test_files_download_and_uploads(standin):
    fid = standin.add_file(b"\x89PNG-data", ext="png")
    big = standin.add_file(b"x", file_size=25 * 1024 * 1024)
    async with _bot(standin) as bot:
        f = await bot.get_file(fid)
        assert bytes(await f.download_as_bytearray()) == b"\x89PNG-data"
        with pytest.raises(BadRequest, match="too big"):
            await bot.get_file(big)
        await bot.send_document(7, InputFile(b'{"a": 1}', filename="export.json"), caption="Export")
        await bot.send_photo(7, InputFile(png(), filename="p.png"))
        with pytest.raises(BadRequest, match="Image_process_failed"):
            await bot.send_photo(7, InputFile(b"not a picture", filename="q.png"))
        with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
            await bot.send_photo(7, InputFile(png(size=(20, 500)), filename="tall.png"))
    doc = standin.calls("sendDocument")[0]
    assert doc.content_type == "multipart/form-data" and doc.files["document"] == ("export.json", b'{"a": 1}')
    assert doc.params["caption"] == "Export" and standin.calls("sendPhoto")[0].files["photo"][1] == png()


async def test_webhook_push_carries_secret(standin):
    received: list[tuple[str | None, dict]] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return aiohttp.web.Response(status=200 if len(received) > 1 else 500)

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with _bot(standin) as bot:
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        uid = await standin.inject(standin.message(chat_id=5, user_id=5, text="hi"))
        # The stand-in records a delivery once the response is back, after the handler has run.
        await standin.wait_for(lambda: len(standin.webhook_deliveries) >= 2)
        assert [s for s, _ in received] == ["s3cret", "s3cret"]  # a failed delivery is retried
        assert standin.webhook_deliveries[:2] == [(uid, 500), (uid, 200)]
    finally:
        await runner.cleanup()


async def test_set_my_commands_validates(standin):
    async with _bot(standin) as bot:
        await bot.set_my_commands([("clear", "Start afresh")])
        with pytest.raises(BadRequest):
            await bot.set_my_commands([("Bad-Name", "x")])
    assert standin.commands == [{"command": "clear", "description": "Start afresh"}]


# --- answer streaming with drafts ----------------------------------------------------------------


async def test_drafts_grow_in_a_private_chat_until_the_final_message(standin):
    async with _bot(standin) as bot:
        assert await bot.send_message_draft(42, 7) is True  # no text: the "Thinking..." placeholder
        await bot.send_message_draft(42, 7, "The pic")
        await bot.send_message_draft(42, 7, "The picture shows <b>a cat</b>", parse_mode="HTML")
        assert standin.visible_draft(42).text == "The picture shows a cat"
        await bot.send_message(42, "The picture shows <b>a cat</b>.", parse_mode="HTML")
    assert standin.draft_texts(42) == ["", "The pic", "The picture shows a cat"]
    assert standin.draft_texts(42, draft_id=7)[-1] == "The picture shows a cat"
    assert standin.drafts[-1].entities == [{"type": "bold", "offset": 18, "length": 5}]
    assert standin.visible_draft(42) is None  # the final message replaced the draft
    draft = standin.calls("sendMessageDraft")[1]
    assert draft.params == {"chat_id": "42", "draft_id": "7", "text": "The pic"}


async def test_drafts_are_refused_outside_private_chats_and_checked_like_messages(standin):
    async with _bot(standin) as bot:
        with pytest.raises(BadRequest, match="Textdraft_peer_invalid"):
            await bot.send_message_draft(-100200, 1, "in a group")
        with pytest.raises(BadRequest, match="(?i)draft_id must be non-zero"):
            await bot.send_message_draft(42, 0, "x")
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message_draft(42, 1, "x" * 4097)
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            await bot.send_message_draft(42, 1, "<b>open", parse_mode="HTML")
        await bot.send_message_draft(42, 1, "&lt;" * 4096, parse_mode="HTML")  # the limit is after parsing
        standin.fail_next("sendMessageDraft", retry_after=2)
        with pytest.raises(RetryAfter):
            await bot.send_message_draft(42, 1, "later")
    assert [r.status for r in standin.calls("sendMessageDraft")] == [400, 400, 400, 400, 200, 429]
    assert standin.draft_texts(42) == ["<" * 4096] and standin.draft_texts(-100200) == []


# --- inline keyboards and callback queries -------------------------------------------------------


def _feedback_keyboard(turn: str = "t1") -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton("👍", callback_data=f"fb:{turn}:up"),
        InlineKeyboardButton("👎", callback_data=f"fb:{turn}:down"),
    ]])


async def test_inline_keyboards_are_kept_and_their_limits_enforced(standin):
    async with _bot(standin) as bot:
        sent = await bot.send_message(42, "Answer", reply_markup=_feedback_keyboard())
        assert [b.callback_data for b in sent.reply_markup.inline_keyboard[0]] == ["fb:t1:up", "fb:t1:down"]
        await bot.send_message(42, "64 bytes", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("ok", callback_data="é" * 32)]]))
        for data in ("x" * 65, "é" * 33, ""):  # callback_data is 1-64 bytes, not characters
            with pytest.raises(BadRequest, match="Button_data_invalid"):
                await bot.send_message(42, "too long", reply_markup=InlineKeyboardMarkup(
                    [[InlineKeyboardButton("no", callback_data=data)]]))
    async with aiohttp.ClientSession() as http:
        url = f"{standin.url}/bot{standin.token}/sendMessage"
        bad = {
            '{"inline_keyboard": {"text": "x"}}': "must be an Array",
            '{"inline_keyboard": [{"text": "x"}]}': "must be an Array of Arrays",
            '{"inline_keyboard": [[{"text": "plain"}]]}': "Text buttons are unallowed",
            '{"inline_keyboard": [[{"callback_data": "x"}]]}': 'Field "text" must be of type String',
            "not json": "can't parse reply keyboard markup",
        }
        for markup, description in bad.items():
            async with http.post(url, data={"chat_id": 42, "text": "x", "reply_markup": markup}) as resp:
                body = await resp.json()
            assert resp.status == 400 and description in body["description"], (markup, body)
    assert standin.texts(42) == ["Answer", "64 bytes"]


async def test_edits_replace_or_remove_the_keyboard(standin):
    async with _bot(standin) as bot:
        sent = await bot.send_message(42, "Answer", reply_markup=_feedback_keyboard())
        chosen = InlineKeyboardMarkup([[InlineKeyboardButton("👍 ✓", callback_data="fb:t1:up")]])
        edited = await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=chosen)
        assert edited.reply_markup == chosen
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=chosen)
        # The same text with the same keyboard is no change; without a keyboard the edit removes it.
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text("Answer", 42, sent.message_id, reply_markup=chosen)
        await bot.edit_message_text("Answer", 42, sent.message_id)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_reply_markup(42, 999, reply_markup=chosen)
    msg = standin.messages[(42, sent.message_id)]
    assert msg.reply_markup is None and msg.history == []
    assert [m["inline_keyboard"][0][0]["text"] for m in msg.markup_history] == ["👍", "👍 ✓"]


async def test_a_button_press_arrives_by_polling_and_is_answered_once(standin):
    async with _bot(standin) as bot:
        sent = await bot.send_message(42, "Answer", reply_markup=_feedback_keyboard())
        uid = await standin.inject(standin.callback_query(42, sent.message_id, user_id=42, data="fb:t1:down"))
        (update,) = await bot.get_updates(timeout=1)
        query = update.callback_query
        assert update.update_id == uid and query.data == "fb:t1:down" and query.from_user.id == 42
        assert query.message.message_id == sent.message_id and query.message.reply_markup == _feedback_keyboard()
        assert query.message.chat.type == "private" and query.chat_instance
        assert await bot.answer_callback_query(query.id, text="Thanks for the feedback") is True
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query(query.id)
        second = standin.callback_query(42, sent.message_id, user_id=42, label="👍")["callback_query"]["id"]
        with pytest.raises(BadRequest, match="Message_too_long"):
            await bot.answer_callback_query(second, text="x" * 201)
        standin.expire_callback(second)
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query(second)
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query("12345")
        await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=None)
    assert standin.callback_queries[query.id].answer == {"text": "Thanks for the feedback"}
    assert not standin.callback_queries[second].answered
    with pytest.raises(AssertionError, match="no such button"):  # the keyboard is gone
        standin.callback_query(42, sent.message_id, user_id=42, data="fb:t1:up")
    with pytest.raises(AssertionError, match="no message"):
        standin.callback_query(42, 999, user_id=42, data="fb:t1:up")


async def test_a_button_press_in_a_group_arrives_by_webhook(standin):
    received: list[dict] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append(await request.json())
        return aiohttp.web.Response()

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with _bot(standin) as bot:
            sent = await bot.send_message(-100200, "Answer", reply_markup=_feedback_keyboard("t9"))
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
            await standin.inject(standin.callback_query(-100200, sent.message_id, user_id=222, data="fb:t9:up"))
            await standin.wait_for(lambda: len(received) == 1)
            update = Update.de_json(received[0], bot)
    finally:
        await runner.cleanup()
    query = update.callback_query
    assert query.data == "fb:t9:up" and query.from_user.id == 222 and query.message.chat.id == -100200
    assert query.message.chat.type == "supergroup"


async def test_button_presses_reach_only_a_bot_that_asks_for_them(standin):
    async with _bot(standin) as bot:
        sent = await bot.send_message(42, "Answer", reply_markup=_feedback_keyboard())
        press = lambda: standin.callback_query(42, sent.message_id, user_id=42, data="fb:t1:up")  # noqa: E731
        assert await bot.get_updates(timeout=0, allowed_updates=["message"]) == ()
        await standin.inject(press())
        assert await bot.get_updates(timeout=0) == ()  # the setting holds until the bot changes it
        assert [u["callback_query"]["data"] for u in standin.undelivered] == ["fb:t1:up"]
        await bot.get_updates(timeout=0, allowed_updates=["message", "callback_query"])
        uid = await standin.inject(press())
        (update,) = await bot.get_updates(timeout=1)
        assert update.update_id == uid and update.callback_query.data == "fb:t1:up"
        await bot.set_webhook("http://127.0.0.1:1/hook", allowed_updates=["message"])
        assert (await bot.get_webhook_info()).allowed_updates == ("message",)
        await standin.inject(press())
    assert len(standin.undelivered) == 2
