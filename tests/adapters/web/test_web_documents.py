"""PDFs and long screenshots uploaded to the web chat: real aiohttp on a loopback port, the real core on the
tiny model; assertions on the event stream and on what the engine's prefill received."""

from __future__ import annotations

from typing import Any

from bot.wording import PDF_DAMAGED, PDF_NO_PAGES
from tests.adapters.test_console_documents import dominant_channels
from tests.adapters.web.conftest import new_thread, running_web
from tests.conftest import picture_bytes
from tests.engine.test_local_engine import record_hook
from tests.pdfs import coloured_pdf, corrupt_pdf, no_pages_pdf, tall_screenshot


def last_prompt(service: Any, calls: list[dict[str, Any]]) -> str:
    return service.engine.loaded.processor.tokenizer.decode(calls[-1]["input_ids"][0])


def of(events: list[tuple[str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [data for event, data in events if event == name]


async def test_an_uploaded_pdf_is_answered_from_its_pages(service_factory: Any, browsers: Any) -> None:
    calls: list[dict[str, Any]] = []
    async with service_factory(max_new_tokens=8, max_pdf_pages=2) as service, running_web(service) as adapter:
        service.engine.generate_hook = record_hook(calls)
        async with browsers(adapter.url) as browser:
            status, events = await browser.ask(
                new_thread(), "What do these say?", files=[("guide.pdf", coloured_pdf(5), "application/pdf")]
            )
    assert status == 200 and of(events, "answer")
    [notice] = of(events, "notice")
    assert notice["text"].startswith("'guide.pdf' has 5 pages; I read pages 1-2.")
    assert "(The 2 pictures above are, in order: Page 1, Page 2.)" in last_prompt(service, calls)
    assert dominant_channels(calls[-1]) == [0, 1]


async def test_an_uploaded_long_screenshot_and_a_strip_are_read(service_factory: Any, browsers: Any) -> None:
    calls: list[dict[str, Any]] = []
    strip = picture_bytes(size=(4000, 12), color=(10, 10, 10))
    async with service_factory(max_new_tokens=8) as service, running_web(service) as adapter:
        service.engine.generate_hook = record_hook(calls)
        async with browsers(adapter.url) as browser:
            status, events = await browser.ask(
                new_thread(), "Read them",
                files=[("strip.png", strip, "image/png"), ("long.png", tall_screenshot((200, 1500)), "image/png")],
            )
    assert status == 200 and of(events, "answer"), events
    tiles = ", ".join(f"Picture 2, part {k}" for k in range(1, 8))
    assert f"(The 8 pictures above are, in order: Picture 1, {tiles}.)" in last_prompt(service, calls)


async def test_bad_pdfs_get_their_line_and_the_picture_beside_them_is_answered(
    service_factory: Any, browsers: Any
) -> None:
    async with service_factory(max_new_tokens=8) as service, running_web(service) as adapter:
        async with browsers(adapter.url) as browser:
            status, alone = await browser.ask(new_thread(), "Total?", files=[("blank.pdf", no_pages_pdf(), "application/pdf")])
            assert status == 200
            status, mixed = await browser.ask(
                new_thread(), "What colour?",
                files=[("broken.pdf", corrupt_pdf(), "application/pdf"), ("red.png", picture_bytes(), "image/png")],
            )
    assert [t["text"] for t in of(alone, "text")] == [PDF_NO_PAGES.format(name="'blank.pdf'")] and not of(alone, "answer")
    assert [t["text"] for t in of(mixed, "text")] == [PDF_DAMAGED.format(name="'broken.pdf'")] and of(mixed, "answer")
