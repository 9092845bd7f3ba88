"""PDFs and long screenshots through the console adapter on the tiny Qwen2.5-VL model: what the engine
receives (pages and tiles in order, named), what the user is told, and what /export lists."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.messages import Attachment, IncomingMessage
from bot.wording import PDF_DAMAGED, PDF_EMPTY, PDF_NO_PAGES, PDF_PASSWORD, PDF_TOO_SLOW
from engine.arch import DEFAULT_MAX_PIXELS
from tests.adapters.test_console import Chat, session_turns, write_picture
from tests.pdfs import coloured_pdf, corrupt_pdf, encrypted_pdf, no_pages_pdf, slow_pdf, tall_screenshot


def dominant_channels(call: dict[str, Any]) -> list[int]:
    """Per picture of a prefill: the colour channel (0 red, 1 green, 2 blue) strongest on average.

    Qwen2.5-VL's processor flattens each patch as (channel, time, row, column): a row's first third is red.
    """
    grid, pixels = call["image_grid_thw"], call["pixel_values"]
    channels, start = [], 0
    for t, h, w in grid.tolist():
        rows = pixels[start : start + t * h * w]
        start += t * h * w
        third = rows.shape[1] // 3
        means = [float(rows[:, i * third : (i + 1) * third].mean()) for i in range(3)]
        channels.append(max(range(3), key=means.__getitem__))
    return channels


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def test_a_pdf_is_asked_about_as_its_pages_in_order(service_factory, tmp_path: Path) -> None:
    pdf = write(tmp_path, "invoice.pdf", coloured_pdf(3))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {pdf}", "What is the total?")
        assert "bot> " in out and "pages" not in out.split("bot> ")[0]  # all 3 pages read: nothing to say
        assert dominant_channels(chat.calls[-1]) == [0, 1, 2]  # red, green, blue: pages 1, 2, 3
        assert "(The 3 pictures above are, in order: Page 1, Page 2, Page 3.)" in chat.last_prompt_text()
        await chat.send("/retry")  # asked again with its pages named the same way
        assert chat.last_prompt_text().count("(The 3 pictures above are, in order: Page 1, Page 2, Page 3.)") == 1
        await chat.send("/export")
        [export] = list((tmp_path / "exports").glob("*.json"))
        turns = json.loads(export.read_bytes())["turns"]
        assert [t["sources"] for t in turns][0] == turns[1]["sources"]  # the retried turn keeps them too
        [source] = turns[0]["sources"]
        assert source["kind"] == "pdf" and source["name"] == "invoice.pdf" and source["total"] == 3
        assert [p["page"] for p in source["parts"]] == [1, 2, 3]
        assert [p["sha256"] for p in source["parts"]] == turns[0]["image_hashes"]
        for sha in turns[0]["image_hashes"]:  # pages are stored like pictures
            assert service.conversations.pictures.path(sha).exists()


async def test_pages_named_in_the_question_are_read_and_the_reply_says_which(service_factory, tmp_path: Path) -> None:
    pdf = write(tmp_path, "manual.pdf", coloured_pdf(12))
    async with service_factory(max_pdf_pages=4) as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {pdf}", "What is on pages 2-3?")
        assert "'manual.pdf' has 12 pages; I read pages 2-3." in out
        assert "(The 2 pictures above are, in order: Page 2, Page 3.)" in chat.last_prompt_text()
        assert dominant_channels(chat.calls[-1]) == [1, 2]
        chat = Chat(service, tmp_path, thread="chinese")
        out = await chat.send(f"/image {pdf}", "第7-8页是什么?")
        assert "I read pages 7-8" in out and dominant_channels(chat.calls[-1]) == [0, 1]  # pages 7, 8: red, green
        chat = Chat(service, tmp_path, thread="beyond")
        out = await chat.send(f"/image {pdf}", "What is on page 40?")  # the first pages instead, and why
        assert "'manual.pdf' has only 12 pages, so I can't read page 40." in out
        assert "'manual.pdf' has 12 pages; I read pages 1-4." in out and "bot> " in out
        out = await chat.send(f"/image {pdf}", "Compare page 3 with page 40")
        assert "so I can't read page 40." in out and "I read page 3." in out
        chat = Chat(service, tmp_path, thread="unnamed")
        out = await chat.send(f"/image {pdf}", "Summarise it")
        assert "'manual.pdf' has 12 pages; I read pages 1-4." in out and "up to 4 at a time" in out
        assert "Page 1, Page 2, Page 3, Page 4.)" in chat.last_prompt_text()


async def test_a_long_screenshot_is_read_as_tiles_in_reading_order(service_factory, tmp_path: Path) -> None:
    shot = write(tmp_path, "settings.png", tall_screenshot((200, 1500)))
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {red}", f"/image {shot}", "Which setting is off?")
        grid = chat.calls[-1]["image_grid_thw"].tolist()
        assert len(grid) == 8  # the red picture and 7 tiles
        parts = ", ".join(f"Picture 2, part {k}" for k in range(1, 8))
        assert f"(The 8 pictures above are, in order: Picture 1, {parts}.)" in chat.last_prompt_text()
        assert dominant_channels(chat.calls[-1])[0] == 0
        [turn] = await session_turns(service)
        [source] = turn.image_sources
        assert source.kind == "tiles" and source.total == 7 and source.parts == turn.image_hashes[1:]


async def test_a_screenshot_too_long_says_how_much_was_read(service_factory, tmp_path: Path) -> None:
    shot = write(tmp_path, "chat.png", tall_screenshot((200, 1500)))
    async with service_factory(max_tiles=3) as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {shot}", "What did they say last?")
        assert "'chat.png' is too long to read whole; I read its top part (4" in out  # 3 tiles of 250 px, overlapping
        assert chat.calls[-1]["image_grid_thw"].shape[0] == 3


async def test_a_thin_strip_is_padded_not_refused(service_factory, tmp_path: Path) -> None:
    from tests.conftest import picture_bytes

    strip = write(tmp_path, "strip.png", picture_bytes(size=(4000, 12), color=(10, 10, 10)))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {strip}", "What does it say?")
        assert "too thin" not in out and chat.images_in_last_prompt() == 1


async def test_bad_pdfs_get_one_line_and_the_rest_of_the_message_goes_on(service_factory, tmp_path: Path) -> None:
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    bad = {
        "locked.pdf": (encrypted_pdf(), PDF_PASSWORD),
        "broken.pdf": (corrupt_pdf(), PDF_DAMAGED),
        "empty.pdf": (b"", PDF_EMPTY),
        "blank.pdf": (no_pages_pdf(), PDF_NO_PAGES),
    }
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        for name, (data, wording) in bad.items():
            path = write(tmp_path, name, data)
            calls = len(chat.calls)
            out = await chat.send(f"/image {path}", "What does it say?")
            assert wording.format(name=f"'{name}'") in out and "bot> " not in out
            assert len(chat.calls) == calls  # nothing readable: no question to the model
        locked = tmp_path / "locked.pdf"
        out = await chat.send(f"/image {locked}", f"/image {red}", "What colour is the picture?")
        assert PDF_PASSWORD.format(name="'locked.pdf'") in out
        assert chat.images_in_last_prompt() == 1 and dominant_channels(chat.calls[-1]) == [0]
        turns = await session_turns(service)
        assert [t.status for t in turns] == ["done"] and turns[0].user_text == "What colour is the picture?"


async def test_a_hostile_pdf_does_not_hold_up_other_answers(service_factory, tmp_path: Path) -> None:
    hostile = write(tmp_path, "hostile.pdf", slow_pdf())
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory(pdf_timeout_s=8.0) as service:
        slow_chat = Chat(service, tmp_path, thread="a")
        other = Chat(service, tmp_path, thread="b")
        stuck = asyncio.create_task(slow_chat.send(f"/image {hostile}", "What is in it?"))
        await asyncio.sleep(0.5)  # let its renderer start
        out = await other.send(f"/image {red}", "What colour is it?")
        assert "bot> " in out and not stuck.done()  # answered while PDFium still works on the other PDF
        assert PDF_TOO_SLOW.format(name="'hostile.pdf'") in await asyncio.wait_for(stuck, 30)


def new_picture_weakest_channel(call: dict[str, Any]) -> int:
    """The colour channel weakest on average in the one picture a follow-up's prefill encoded (the
    history's come from the caches): 0 for a cyan page, 1 for a magenta one."""
    pixels = call["pixel_values"]
    t, h, w = call["image_grid_thw"].tolist()[-1]
    assert pixels.shape[0] == t * h * w  # only the new picture was encoded
    third = pixels.shape[1] // 3
    means = [float(pixels[:, i * third : (i + 1) * third].mean()) for i in range(3)]
    return min(range(3), key=means.__getitem__)


async def test_a_later_question_reads_the_pages_it_names_from_the_kept_pdf(service_factory, tmp_path: Path) -> None:
    data = coloured_pdf(12)
    pdf = write(tmp_path, "manual.pdf", data)
    digest = hashlib.sha256(data).hexdigest()
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {pdf}", "Summarise it")
        assert "'manual.pdf' has 12 pages; I read pages 1-8." in out
        kept = service.conversations.pictures.path(digest)
        assert kept.read_bytes() == data  # the PDF itself is kept, by its hash
        out = await chat.send("What is on page 11?")
        assert "bot> " in out and "pages" not in out.split("bot> ")[0]  # nothing to tell: page 11 was read
        assert "(The picture above is Page 11.)\nWhat is on page 11?" in chat.last_prompt_text()
        assert new_picture_weakest_channel(chat.calls[-1]) == 0  # page 11 is cyan
        await chat.send("第12页写了什么")
        assert "(The picture above is Page 12.)\n第12页写了什么" in chat.last_prompt_text()
        assert new_picture_weakest_channel(chat.calls[-1]) == 1  # page 12 is magenta
        asked = len(chat.calls)
        out = await chat.send("And page 40?")  # said, and the question is answered all the same
        assert "'manual.pdf' has only 12 pages, so I can't read page 40." in out and len(chat.calls) == asked + 1
        assert "bot> " in out.split("12 pages, so I can't read page 40.")[1]
        await chat.send("Is page 11 about the same thing as page 3?")  # both read already: no new picture
        assert "The picture above" not in chat.last_prompt_text().rsplit("<|im_start|>user", 1)[-1]
        turns = await session_turns(service)
        assert [(t.image_sources[0].numbers if t.image_sources else ()) for t in turns] == [
            tuple(range(1, 9)), (11,), (12,), (), ()
        ]
        assert {s.sha256 for t in turns for s in t.image_sources} == {digest}
        await chat.send("/export")
        [export] = list((tmp_path / "exports").glob("*.json"))
        listed = json.loads(export.read_bytes())["turns"][1]["sources"]
        assert listed == [{"kind": "pdf", "sha256": digest, "name": "manual.pdf", "total": 12,
                           "parts": [{"page": 11, "sha256": turns[1].image_hashes[0]}]}]
        pages = [service.conversations.pictures.path(sha) for t in turns for sha in t.image_hashes]
        out = await chat.send("/forget confirm")
        assert not kept.exists() and not any(page.exists() for page in pages)
        assert "conversation(s), and 1 PDF document." in out  # its 10 pages read are the PDF, not pictures


async def test_with_several_pdfs_the_most_recent_one_with_the_pages_is_read(service_factory, tmp_path: Path) -> None:
    manual = write(tmp_path, "manual.pdf", coloured_pdf(12))
    short = write(tmp_path, "short.pdf", coloured_pdf(3))
    async with service_factory(max_pdf_pages=2) as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {manual}", "Summarise it")
        await chat.send(f"/image {short}", "And this one?")
        asked = len(chat.calls)
        await chat.send("What is on page 2?")  # short.pdf's page 2 was read: it is in the history
        assert len(chat.calls) == asked + 1 and "The picture above" not in chat.last_prompt_text().rsplit("<|im_start|>user", 1)[-1]
        await chat.send("What is on page 11?")  # only manual.pdf has it: the first PDF sent
        assert "(The picture above is Document 1, page 11.)\nWhat is on page 11?" in chat.last_prompt_text()
        out = await chat.send("Compare pages 3-6")  # short.pdf has page 3 only; manual.pdf has them all
        assert "'manual.pdf' has 12 pages; I read pages 3-4." in out  # two at a time
        assert "(The 2 pictures above are, in order: Document 1, page 3, Document 1, page 4.)" in chat.last_prompt_text()


async def test_pages_named_after_a_pdf_sent_alone_join_its_pages_in_the_question(service_factory, tmp_path: Path) -> None:
    manual = write(tmp_path, "manual.pdf", coloured_pdf(12))
    async with service_factory(max_pdf_pages=2) as service:
        chat = Chat(service, tmp_path)
        alone = IncomingMessage("console", "main", "local", "", (Attachment(manual.read_bytes(), "manual.pdf"),))
        replies = [reply async for reply in service.conversations.handle(alone)]  # kept for the next question
        assert "I read pages 1-2" in replies[0].text  # as a Telegram document without a caption
        await chat.send("What is on page 11?")
        assert "(The 3 pictures above are, in order: Page 1, Page 2, Page 11.)\nWhat is on page 11?" in chat.last_prompt_text()


async def test_a_question_that_merely_says_page_n_is_answered(service_factory, tmp_path: Path) -> None:
    pdf = write(tmp_path, "manual.pdf", coloured_pdf(12))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {pdf}", "Summarise it")
        asked = len(chat.calls)
        out = await chat.send("The intranet page 404s when I click the link, why?")
        assert "bot> " in out and "error" not in out and "pages" not in out and len(chat.calls) == asked + 1
        out = await chat.send("Our wiki page 404 is broken, why?")  # names a page no PDF here has: said, then answered
        assert "'manual.pdf' has only 12 pages, so I can't read page 404." in out and len(chat.calls) == asked + 2
        assert "error" not in out and "The picture above" not in chat.last_prompt_text().rsplit("<|im_start|>user", 1)[-1]


async def test_a_preset_with_a_pdf_says_what_it_read_and_keeps_the_pdf(service_factory, tmp_path: Path) -> None:
    data = coloured_pdf(12)
    pdf = write(tmp_path, "manual.pdf", data)
    digest = hashlib.sha256(data).hexdigest()
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {pdf}", "/ocr")
        assert "'manual.pdf' has 12 pages; I read pages 1-8." in out and "bot> " in out
        assert "Page 1, Page 2, Page 3, Page 4, Page 5, Page 6, Page 7, Page 8.)" in chat.last_prompt_text()
        assert service.conversations.pictures.path(digest).read_bytes() == data  # kept for pages named later
        await chat.send("/retry")  # asked again with its pages named the same way
        assert "Page 1, Page 2, Page 3, Page 4, Page 5, Page 6, Page 7, Page 8.)" in chat.last_prompt_text()
        await chat.send("What is on page 11?")
        assert "(The picture above is Page 11.)\nWhat is on page 11?" in chat.last_prompt_text()
        assert new_picture_weakest_channel(chat.calls[-1]) == 0  # page 11 is cyan
        await chat.send("/export")
        [export] = list((tmp_path / "exports").glob("*.json"))
        turns = json.loads(export.read_bytes())["turns"]
        assert [t["user_input"] for t in turns] == ["/ocr", "/ocr", "What is on page 11?"]
        said = "'manual.pdf' has 12 pages; I read pages 1-8. Name others in your question"
        notes = [[(n["kind"], n["text"][: len(said)]) for n in t["notes"]] for t in turns]
        assert notes == [[("notice", said)], [], []]  # what each turn showed: /retry did not say it again
        assert turns[0]["sources"] == turns[1]["sources"] and [s["sha256"] for s in turns[0]["sources"]] == [digest]
        assert [p["page"] for p in turns[0]["sources"][0]["parts"]] == list(range(1, 9))
        assert [p["page"] for p in turns[2]["sources"][0]["parts"]] == [11]


async def test_two_pdfs_in_one_message_share_the_pages_read(service_factory, tmp_path: Path) -> None:
    first = write(tmp_path, "first.pdf", coloured_pdf(12))
    second = write(tmp_path, "second.pdf", coloured_pdf(12))
    # The default context, pixels and budgets: 16 pages would not fit (20 887 tokens of 16 384)
    async with service_factory(max_pixels=DEFAULT_MAX_PIXELS) as service:
        assert service.settings.context_tokens == Settings.model_construct().context_tokens == 16384
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {first}", f"/image {second}", "Compare them")
        assert "'first.pdf' has 12 pages; I read pages 1-5." in out and "'second.pdf' has 12 pages; I read pages 1-5." in out
        assert "bot> " in out and "error" not in out and chat.images_in_last_prompt() == 10
        short = write(tmp_path, "short.pdf", coloured_pdf(3))
        chat = Chat(service, tmp_path, thread="short first")
        out = await chat.send(f"/image {short}", f"/image {second}", "Compare them")  # its unused share goes on
        assert "'second.pdf' has 12 pages; I read pages 1-7." in out and chat.images_in_last_prompt() == 10
        chat = Chat(service, tmp_path, thread="one")
        out = await chat.send(f"/image {first}", "Summarise it")  # alone, a PDF gets its own budget
        assert "'first.pdf' has 12 pages; I read pages 1-8." in out


async def test_two_long_screenshots_in_one_message_share_the_tiles(service_factory, tmp_path: Path) -> None:
    first = write(tmp_path, "first.png", tall_screenshot((1080, 8000)))
    second = write(tmp_path, "second.png", tall_screenshot((1080, 8000)))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {first}", f"/image {second}", "What differs?")
        shared = re.findall(r"'(\w+).png' is too long to read whole; I read its top part \((\d+)%\)", out)
        assert [name for name, _ in shared] == ["first", "second"] and shared[0][1] == shared[1][1]
        assert "bot> " in out and "error" not in out and chat.images_in_last_prompt() == 10  # 5 tiles each
        chat = Chat(service, tmp_path, thread="one")
        out = await chat.send(f"/image {first}", "What is this?")  # alone: all 10 tiles, as before
        [alone] = re.findall(r"I read its top part \((\d+)%\)", out)
        assert chat.images_in_last_prompt() == 10 and int(alone) > int(shared[0][1])
