"""The presets end to end in Slack: the real slack-bolt app (Socket Mode and HTTP mode) on the tiny model,
its output forced through the engine's decode hook, against the Slack stand-in."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from PIL import Image

from bot.conversations import NO_PICTURE
from bot.drawing import PALETTE
from tests.adapters.slack.slack_standin import SlackStandIn
from tests.hooks import forced_answer
from tests.preset_answers import DESCRIPTION, FOUND, PAGE, TABLE, images_in, label_picture, prompt_of

CHANNEL = "C0HELP"
DM = "D0ALICE"

def mention(slack: SlackStandIn, text: str, **kw: Any) -> dict[str, Any]:
    return slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> {text}", kind="app_mention", **kw)


def thread_texts(slack: SlackStandIn, root: str, channel: str = CHANNEL) -> list[str]:
    return [m.text for m in slack.bot_messages(channel, root)]


async def test_table_in_a_thread_uploads_the_csv_and_stays_in_the_session(make_bot, red_png: bytes) -> None:
    async with make_bot(max_new_tokens=4096) as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, TABLE, calls)
        event = mention(slack, "table", files=[slack.host_file(red_png, "parts.png", "image/png")])
        root = event["ts"]
        await bot.deliver(event)
        await bot.settle()
        await bot.deliver(slack.message_event(CHANNEL, "which part is cheaper?", thread_ts=root))
        await bot.settle()
        turns = await bot.turns(f"{CHANNEL}/{root}")
        (upload,) = slack.uploads
        assert (upload.filename, upload.channel, upload.thread_ts) == ("table.csv", CHANNEL, root)
        assert upload.initial_comment == "Table as CSV (2 rows)."
        rows = list(csv.reader(io.StringIO(upload.data.decode("utf-8-sig"))))
        assert rows == [["Part", "Qty"], ["Toner, black", "2"], ['Drum "XL"', "1"]]
        texts = thread_texts(slack, root)
        assert len(texts) == 2 and "Toner, black" in texts[0]  # the table is shown too
        # One session: the preset's turn holds the picture, and the follow-up is asked after it.
        assert [t.status for t in turns] == ["done", "done"] and len(turns[0].image_hashes) == 1
        assert turns[0].answer == TABLE and turns[1].user_text == "which part is cheaper?"
        assert images_in(calls[0]) == 1 and "Convert every table" in prompt_of(service, calls[0])
        assert images_in(calls[1]) == 1 and "Convert every table" in prompt_of(service, calls[1])


async def test_code_uploads_exactly_one_html_file(make_bot, red_png: bytes) -> None:
    # A long forced answer through the real decode loop: minutes, not seconds, on a loaded machine.
    async with make_bot(max_new_tokens=4096, request_timeout_s=300) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, f"```html\n{PAGE}\n```", piece=32)
        event = mention(slack, "code", files=[slack.host_file(red_png, "mockup.png", "image/png")])
        await bot.deliver(event)
        await bot.settle(timeout=300)
        # page.html only, not also the adapter's own answer-N-1.html
        assert [(u.filename, u.thread_ts) for u in slack.uploads] == [("page.html", event["ts"])]
        assert slack.uploads[0].data == (PAGE + "\n").encode()
        (text,) = thread_texts(slack, event["ts"])
        assert "Row 39: the login form field" in text


async def test_find_uploads_the_marked_picture_and_lists_original_pixels(make_bot) -> None:
    async with make_bot(max_new_tokens=4096) as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, FOUND, calls)
        shot = slack.host_file(label_picture(), "device.png", "image/png")
        event = mention(slack, "find serial number", files=[shot])
        await bot.deliver(event)
        await bot.settle()
        assert calls[0]["image_grid_thw"].tolist() == [[1, 10, 22]]
        (text,) = thread_texts(slack, event["ts"])
        assert 'Located "serial number" (1), in pixels of the original 560x280 picture:' in text
        assert "1. serial number: box (140, 70) - (280, 210), 140x140 px" in text
        (upload,) = slack.uploads
        assert (upload.filename, upload.thread_ts) == ("find-serial-number.png", event["ts"])
        assert upload.initial_comment == '"serial number" marked on the picture.'
        drawn = Image.open(io.BytesIO(upload.data)).convert("RGB")
        assert drawn.size == (560, 280)  # the original picture, not the model's resized input
        assert drawn.getpixel((140, 140)) == PALETTE[0] and drawn.getpixel((279, 140)) == PALETTE[0]
        assert drawn.getpixel((50, 140)) == (255, 255, 255) and drawn.getpixel((210, 140)) == (30, 30, 30)
        # the list is posted before the picture is uploaded
        post = next(r for r in slack.requests if r.method == "chat.stopStream")  # the streamed list, finished
        complete = next(r for r in slack.requests if r.method == "files.completeUploadExternal")
        assert post.at < complete.at


@pytest.mark.parametrize("mode", ["socket"])
async def test_ocr_and_describe_are_answered_as_text_in_the_thread(make_bot, red_png: bytes, mode: str) -> None:
    async with make_bot(max_new_tokens=4096) as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, DESCRIPTION, calls)
        event = mention(slack, "ocr", files=[slack.host_file(red_png, "note.png", "image/png")])
        root = event["ts"]
        await bot.deliver(event)
        await bot.settle()
        await bot.deliver(slack.message_event(CHANNEL, "describe", thread_ts=root, user="U0BOB"))  # no mention needed
        await bot.settle()
        assert "Read all the text" in prompt_of(service, calls[0])
        assert "Describe this picture" in prompt_of(service, calls[1])
        assert thread_texts(slack, root) == [DESCRIPTION, DESCRIPTION]
        assert [m.thread_ts for m in slack.bot_messages()] == [root, root] and slack.uploads == []
        assert [t.user_id for t in await bot.turns(f"{CHANNEL}/{root}")] == ["U0ALICE", "U0BOB"]


@pytest.mark.parametrize("mode", ["socket"])
async def test_a_preset_without_any_picture_gets_one_line(make_bot, mode: str) -> None:
    async with make_bot(max_new_tokens=4096) as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, TABLE, calls)
        event = mention(slack, "table")
        await bot.deliver(event)
        await bot.settle()
        assert thread_texts(slack, event["ts"]) == [NO_PICTURE] and "\n" not in NO_PICTURE
        assert NO_PICTURE.startswith("There is no picture to work on")
        assert calls == [] and slack.uploads == []


@pytest.mark.parametrize("mode", ["socket"])
async def test_a_preset_after_an_earlier_picture_in_the_thread_uses_it(make_bot, red_png: bytes, mode: str) -> None:
    async with make_bot(max_new_tokens=4096) as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, DESCRIPTION, calls)
        event = mention(slack, "what is this?", files=[slack.host_file(red_png, "a.png", "image/png")])
        root = event["ts"]
        await bot.deliver(event)
        await bot.settle()
        await bot.deliver(slack.message_event(CHANNEL, "describe", thread_ts=root))
        await bot.settle()
        turns = await bot.turns(f"{CHANNEL}/{root}")
        assert len(calls) == 2 and "Describe this picture" in prompt_of(service, calls[1])
        # The earlier picture is put next to the instruction again (the first turn keeps its own).
        assert len(turns[0].image_hashes) == 1 and turns[1].image_hashes == turns[0].image_hashes
        assert images_in(calls[0]) == 1 and images_in(calls[1]) == 2
        assert thread_texts(slack, root)[-1] == DESCRIPTION


async def test_slash_command_preset_in_a_dm_uses_the_dm_picture(make_bot, red_png: bytes) -> None:
    async with make_bot(max_new_tokens=4096) as bot:
        slack, service = bot.slack, bot.service
        calls: list[dict[str, Any]] = []
        service.engine.generate_hook = forced_answer(service, TABLE, calls)
        picture = slack.message_event(DM, "", channel_type="im", files=[slack.host_file(red_png, "a.png", "image/png")])
        await bot.deliver(picture)
        await bot.settle()
        await bot.command("table", channel=DM)
        await bot.settle()
        assert slack.bot_messages(DM)[0].text.startswith("Got it")
        assert images_in(calls[0]) == 1 and "Convert every table" in prompt_of(service, calls[0])
        (upload,) = slack.uploads
        assert (upload.filename, upload.channel, upload.thread_ts) == ("table.csv", DM, None)
        assert list(csv.reader(io.StringIO(upload.data.decode("utf-8-sig"))))[1] == ["Toner, black", "2"]
        [session] = await service.store.list_sessions(platform="slack", thread_key=DM)
        assert [t.status for t in await service.store.turns(session.id)] == ["attached", "done"]
