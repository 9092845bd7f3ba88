"""PDFs and long screenshots sent as Telegram documents: the real python-telegram-bot Application, the
real core on the tiny model, the Bot API stand-in; assertions on what the engine's prefill received."""

from __future__ import annotations

from typing import Any

import pytest

from bot.wording import PDF_DAMAGED, PDF_PASSWORD
from tests.adapters.telegram.harness import ALLOWED_USER, exported, png, running_adapter, settle, shown_text
from tests.adapters.test_console_documents import dominant_channels
from tests.engine.test_local_engine import record_hook
from tests.pdfs import coloured_pdf, corrupt_pdf, encrypted_pdf, tall_screenshot

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER


def last_prompt(service: Any, calls: list[dict[str, Any]]) -> str:
    return service.engine.loaded.processor.tokenizer.decode(calls[-1]["input_ids"][0])


async def test_a_pdf_document_is_answered_from_the_page_asked_for(standin, service_factory):
    calls: list[dict[str, Any]] = []
    async with service_factory(max_new_tokens=8) as service:
        service.engine.generate_hook = record_hook(calls)
        async with running_adapter(standin, service) as (adapter, rec):
            pdf = standin.add_file(coloured_pdf(3), ext="pdf")
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, document=(pdf, "bill.pdf", "application/pdf"),
                caption="What is on page 2?"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="/export"))
            await settle(standin, adapter)
    [answer] = rec.answers()
    texts = shown_text(standin, CHAT)
    assert texts[0].startswith("'bill.pdf' has 3 pages; I read page 2.") and len(texts) == 2
    assert "(The picture above is Page 2.)\nWhat is on page 2?" in last_prompt(service, calls)
    assert dominant_channels(calls[-1]) == [1]  # page 2 is the green one
    [source] = exported(standin, CHAT)["turns"][0]["sources"]
    assert source["kind"] == "pdf" and [p["page"] for p in source["parts"]] == [2] and source["total"] == 3


async def test_a_long_screenshot_document_is_read_in_tiles(standin, service_factory):
    calls: list[dict[str, Any]] = []
    async with service_factory(max_new_tokens=8) as service:
        service.engine.generate_hook = record_hook(calls)
        async with running_adapter(standin, service) as (adapter, rec):
            shot = standin.add_file(tall_screenshot((200, 1500)), ext="png")
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, document=(shot, "scroll.png", "image/png"), caption="Summarise"))
            await settle(standin, adapter)
    assert len(rec.answers()) == 1
    assert calls[-1]["image_grid_thw"].shape[0] == 7
    names = ", ".join(f"Picture 1, part {k}" for k in range(1, 8))
    assert f"(The 7 pictures above are, in order: {names}.)\nSummarise" in last_prompt(service, calls)


async def test_bad_pdf_documents_get_one_line_each(standin, service_factory):
    async with service_factory(max_new_tokens=8) as service:
        async with running_adapter(standin, service) as (adapter, rec):
            for data, name in ((encrypted_pdf(), "locked.pdf"), (corrupt_pdf(), "broken.pdf")):
                file_id = standin.add_file(data, ext="pdf")
                await standin.inject(standin.message(
                    chat_id=CHAT, user_id=ALLOWED_USER, document=(file_id, name, "application/pdf"), caption="Total?"))
                await settle(standin, adapter)
            # an album: a bad PDF and a good photo, one question: the photo is still answered
            locked = standin.add_file(encrypted_pdf(), ext="pdf")
            photo = standin.add_file(png((230, 10, 10)), ext="png")
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, document=(locked, "again.pdf", "application/pdf"),
                caption="What colour?", media_group_id="album1"))
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, photo=[photo], media_group_id="album1"))
            await settle(standin, adapter)
    texts = shown_text(standin, CHAT)
    assert texts[:3] == [
        PDF_PASSWORD.format(name="'locked.pdf'"),
        PDF_DAMAGED.format(name="'broken.pdf'"),
        PDF_PASSWORD.format(name="'again.pdf'"),
    ]
    assert len(rec.answers()) == 1 and len(texts) == 4


async def test_a_later_message_reads_the_pdf_pages_it_names_in_chinese(standin, service_factory):
    standin.language_codes[ALLOWED_USER] = "zh-hans"
    calls: list[dict[str, Any]] = []
    async with service_factory(max_new_tokens=8) as service:
        service.engine.generate_hook = record_hook(calls)
        async with running_adapter(standin, service) as (adapter, rec):
            pdf = standin.add_file(coloured_pdf(3), ext="pdf")
            await standin.inject(standin.message(
                chat_id=CHAT, user_id=ALLOWED_USER, document=(pdf, "bill.pdf", "application/pdf"), caption="第2页是什么？"))
            await settle(standin, adapter)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="第3页呢？"))
            await settle(standin, adapter)
            prompt = last_prompt(service, calls)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, text="第9页呢？"))
            await settle(standin, adapter)
    assert len(rec.answers()) == 3 and len(calls) == 3  # page 9 does not exist: said, and answered all the same
    assert "(The picture above is Page 3.)\n第3页呢？" in prompt
    assert calls[1]["image_grid_thw"].shape[0] == 2 and dominant_channels({
        "image_grid_thw": calls[1]["image_grid_thw"][-1:], "pixel_values": calls[1]["pixel_values"]
    }) == [2]  # only page 3 (blue) was encoded: page 2 came from the cache
    assert "“bill.pdf”只有 3 页，所以无法读取第 9 页。" in shown_text(standin, CHAT)[-2:]
