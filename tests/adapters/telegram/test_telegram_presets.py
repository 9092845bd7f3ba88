"""The presets (/table /code /find /ocr /describe) end to end: the real python-telegram-bot Application,
the real core on the tiny model (its output forced through the engine's decode hook), the Bot API stand-in."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from PIL import Image

from bot.conversations import NO_PICTURE
from bot.drawing import PALETTE
from bot.messages import QueuePosition
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    FORUM,
    OTHER_USER,
    photo_sizes,
    png,
    running_adapter,
    settle,
    shown_text,
)
from tests.hooks import forced_answer
from tests.preset_answers import DESCRIPTION, FOUND, PAGE, TABLE, images_in, label_picture, prompt_of

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER  # a private chat's id is the user's id

def photo(standin, data: bytes, caption: str | None = None, **kw: Any) -> dict[str, Any]:
    return standin.message(chat_id=kw.pop("chat_id", CHAT), user_id=kw.pop("user_id", ALLOWED_USER),
                           photo=photo_sizes(standin, data), caption=caption, **kw)


async def sessions(service: Any, thread_key: str) -> list[Any]:
    return await service.store.list_sessions(platform="telegram", thread_key=thread_key)


async def test_table_on_a_photo_sends_the_csv_and_stays_in_the_session(standin, service_factory):
    async with service_factory(max_new_tokens=4096) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, TABLE, calls)
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(photo(standin, png(), caption="/table"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Which part is cheaper?"))
            await settle(standin, adapter)
            [session] = await sessions(service, f"chat:{CHAT}")
            turns = await service.store.turns(session.id)
    assert rec.handled[0].text == "/table" and len(rec.handled[0].attachments) == 1
    [document] = standin.calls("sendDocument")
    filename, data = document.files["document"]
    assert filename == "table.csv" and document.params["caption"].startswith("Table as CSV")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [["Part", "Qty"], ["Toner, black", "2"], ['Drum "XL"', "1"]]
    # The Markdown table is shown first (in monospace), the CSV follows it; then the follow-up's answer.
    kinds = [m.kind for m in standin.chat_messages(CHAT)]
    assert kinds == ["text", "document", "text"]
    assert "| Toner, black | 2 |" in shown_text(standin, CHAT)[0]
    # One session: the preset's turn holds the photo, and the follow-up is asked with the exchange before it.
    assert [t.status for t in turns] == ["done", "done"] and len(turns[0].image_hashes) == 1
    assert turns[0].answer == TABLE and turns[1].user_text == "Which part is cheaper?"
    assert images_in(calls[0]) == 1 and "Convert every table" in prompt_of(service, calls[0])
    assert images_in(calls[1]) == 1 and "Convert every table" in prompt_of(service, calls[1])


async def test_code_sends_exactly_one_html_file(standin, service_factory):
    # A long forced answer through the real decode loop: minutes, not seconds, on a loaded machine.
    async with service_factory(max_new_tokens=4096, request_timeout_s=300) as service:
        service.engine.generate_hook = forced_answer(service, f"```html\n{PAGE}\n```", piece=32)
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(photo(standin, png(), caption="/code"))
            await settle(standin, adapter, timeout=300)
    [answer] = rec.answers()
    assert answer.files_follow
    [document] = standin.calls("sendDocument")  # page.html, not also the adapter's own answer-N.html
    assert document.files["document"] == ("page.html", (PAGE + "\n").encode())
    [shown] = shown_text(standin, CHAT)
    assert '<div class="row" id="row39">Row 39: the login form field</div>' in shown


async def test_find_sends_the_marked_photo_and_boxes_in_original_pixels(standin, service_factory):
    async with service_factory(max_new_tokens=4096) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, FOUND, calls)
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(photo(standin, label_picture(), caption="/find serial number"))
            await settle(standin, adapter)
    assert calls[0]["image_grid_thw"].tolist() == [[1, 10, 22]]
    expected = ('Located "serial number" (1), in pixels of the original 560x280 picture:\n'
                "1. serial number: box (140, 70) - (280, 210), 140x140 px")
    assert shown_text(standin, CHAT) == [expected]
    [sent] = standin.calls("sendPhoto")
    assert sent.content_type == "multipart/form-data"
    filename, data = sent.files["photo"]
    assert filename == "find-serial-number.png" and sent.params["caption"] == '"serial number" marked on the picture.'
    drawn = Image.open(io.BytesIO(data)).convert("RGB")
    assert drawn.size == (560, 280)  # the original picture, not the model's resized input
    assert drawn.getpixel((140, 140)) == PALETTE[0] and drawn.getpixel((279, 140)) == PALETTE[0]
    assert drawn.getpixel((50, 140)) == (255, 255, 255) and drawn.getpixel((210, 140)) == (30, 30, 30)
    assert [m.kind for m in standin.chat_messages(CHAT)] == ["text", "photo"]  # the list, then the picture


async def test_ocr_and_describe_are_answered_as_text_in_the_same_topic(standin, service_factory):
    async with service_factory(max_new_tokens=4096) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, DESCRIPTION, calls)

        def in_topic(**kw: Any) -> dict[str, Any]:
            return standin.message(chat_id=FORUM, user_id=OTHER_USER, chat_type="supergroup", is_forum=True,
                                   topic_id=10, **kw)

        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(in_topic(photo=photo_sizes(standin, png()), caption="/ocr@vlm_test_bot"))
            await settle(standin, adapter)
            await standin.inject(in_topic(text="/describe"))
            await settle(standin, adapter)
    assert [m.text for m in rec.handled] == ["/ocr", "/describe"]
    assert {m.thread_key for m in rec.handled} == {f"chat:{FORUM}/topic:10"}
    assert "Read all the text" in prompt_of(service, calls[0])
    assert "Describe this picture" in prompt_of(service, calls[1])
    messages = standin.chat_messages(FORUM)
    assert [m.text for m in messages] == [DESCRIPTION, DESCRIPTION]
    assert {m.thread_id for m in messages} == {10} and all(m.reply_to for m in messages)
    assert standin.calls("sendDocument") == [] and standin.calls("sendPhoto") == []


async def test_a_preset_without_any_picture_gets_one_line(standin, service_factory):
    async with service_factory(max_new_tokens=4096) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, TABLE, calls)
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/table"))
            await settle(standin, adapter)
    assert shown_text(standin, CHAT) == [NO_PICTURE] and "\n" not in NO_PICTURE
    assert NO_PICTURE.startswith("There is no picture to work on")
    assert calls == [] and standin.calls("sendDocument") == []


async def test_a_preset_after_an_earlier_photo_uses_it(standin, service_factory):
    async with service_factory(max_new_tokens=4096) as service:
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, DESCRIPTION, calls)
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(photo(standin, png(), caption="What is this?"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="Thanks. And the colour?"))
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/describe"))
            await settle(standin, adapter)
            [session] = await sessions(service, f"chat:{CHAT}")
            turns = await service.store.turns(session.id)
    assert rec.handled[-1].attachments == ()
    assert len(calls) == 3 and "Describe this picture" in prompt_of(service, calls[-1])
    # The photo of the first message is put next to the instruction again (the earlier turn keeps its own).
    assert len(turns[0].image_hashes) == 1 and turns[-1].image_hashes == turns[0].image_hashes
    assert images_in(calls[1]) == 1 and images_in(calls[-1]) == 2
    assert turns[-1].status == "done" and turns[-1].answer == DESCRIPTION
    assert shown_text(standin, CHAT)[-1] == DESCRIPTION


async def test_a_preset_waits_in_the_same_queue_and_says_so(standin, service_factory):
    async with service_factory(max_new_tokens=4096) as service:
        calls: list[dict[str, Any]] = []
        # Every request takes about a second, so the second one waits behind the first.
        service.engine.generate_hook = forced_answer(service, DESCRIPTION, calls, piece=4, delay=0.05)
        async with running_adapter(standin, service, settings={"queue_notice_delay_s": 0.0}) as (adapter, rec):
            await standin.inject(standin.message(chat_id=FORUM, user_id=OTHER_USER, chat_type="supergroup",
                                                 is_forum=True, topic_id=20, text="@vlm_test_bot describe the office"))
            await standin.wait_for(lambda: len(calls) == 1)
            await standin.inject(photo(standin, png(), caption="/describe"))
            await settle(standin, adapter)
    mine = [r for m, r in rec.replies if m.text == "/describe"]
    assert QueuePosition(1) in mine
    status, message = (m for (chat, _), m in sorted(standin.messages.items()) if chat == CHAT)
    # The queue message turns into the reading status when the model starts, and goes when the draft begins.
    assert status.history == ["⏳ You are next in the queue."] and status.text == "⏳ Reading the picture…" and status.deleted
    assert message.text == DESCRIPTION and standin.draft_texts(CHAT)
    assert len(calls) == 2 and images_in(calls[1]) == 1 and "Describe this picture" in prompt_of(service, calls[1])


async def test_find_on_a_long_screenshot_falls_back_to_a_document(standin, service_factory):
    """Telegram refuses photos with a side ratio over 20; the marked picture then arrives as a file."""
    tall = Image.new("RGB", (100, 2500), "white")
    out = io.BytesIO()
    tall.save(out, format="PNG")
    async with service_factory(max_new_tokens=4096) as service:
        service.engine.generate_hook = forced_answer(service, '[{"bbox_2d": [1, 1, 20, 40], "label": "x"}]')
        async with running_adapter(standin, service) as (adapter, rec):
            await standin.inject(photo(standin, out.getvalue(), caption="/find x"))
            await settle(standin, adapter)
    assert len(standin.calls("sendPhoto")) == 1  # tried as a photo, refused with PHOTO_INVALID_DIMENSIONS
    [document] = standin.calls("sendDocument")
    filename, data = document.files["document"]
    assert filename == "find-x.png" and Image.open(io.BytesIO(data)).size[1] > 20 * Image.open(io.BytesIO(data)).size[0]
    assert [m.kind for m in standin.chat_messages(CHAT)] == ["text", "document"]
    assert not any("went wrong" in text for text in shown_text(standin, CHAT))
