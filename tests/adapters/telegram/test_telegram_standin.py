"""The Bot API stand-in speaks the wire protocol python-telegram-bot expects."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from telegram import Bot, InputFile
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
