"""The notes an answer came with (notices, refused files) outlive the stream: stored with the turn, they come
back in the conversation view a reloaded page draws from, in the language the user read them in. Real aiohttp,
the real core on the tiny model, a SQLite file."""

from __future__ import annotations

import json
from typing import Any

from bot.turn_notes import NoteKind, TurnNote
from bot.wording import PDF_DAMAGED
from tests.adapters.web.conftest import new_thread, running_web
from tests.conftest import picture_bytes
from tests.pdfs import coloured_pdf, corrupt_pdf, tall_screenshot


def of(events: Any, name: str) -> list[str]:
    assert isinstance(events, list), events
    return [data["text"] for event, data in events if event == name]


async def test_a_notice_and_a_refused_file_come_back_with_their_turn(service_factory: Any, browsers: Any) -> None:
    async with service_factory(max_new_tokens=8, max_pdf_pages=2) as service, running_web(service) as adapter:
        thread = new_thread()
        async with browsers(adapter.url) as browser:
            status, pdf = await browser.ask(thread, "What do these say?", files=[("guide.pdf", coloured_pdf(5), "application/pdf")])
            assert status == 200 and of(pdf, "answer")
            [notice] = of(pdf, "notice")
            assert notice.startswith("'guide.pdf' has 5 pages; I read pages 1-2.")
            status, mixed = await browser.ask(
                thread, "What colour?",
                files=[("broken.pdf", corrupt_pdf(), "application/pdf"), ("red.png", picture_bytes(), "image/png")],
            )
            assert status == 200 and of(mixed, "answer")
            refused = PDF_DAMAGED.format(name="'broken.pdf'")
            assert of(mixed, "text") == [refused] and of(mixed, "notice") == []
            status, plain = await browser.ask(thread, "Thanks")
            assert status == 200 and of(plain, "answer") and of(plain, "notice") == []

            status, view = await browser.get(f"/api/threads/{thread}")  # what a reloaded page draws
            assert status == 200
            assert [(t["notices"], t["refused"]) for t in view["turns"]] == [([notice], []), ([], [refused]), ([], [])]
            status, again = await browser.get(f"/api/sessions/{view['session']['id']}")
            assert status == 200 and again["turns"] == view["turns"]
            turns = await service.store.turns(view["session"]["id"])
            assert [t.notes for t in turns] == [
                (TurnNote(NoteKind.NOTICE, notice),), (TurnNote(NoteKind.REFUSED, refused),), ()
            ]
            status, raw = await browser.get(f"/api/sessions/{view['session']['id']}/export")  # /export's file
            assert status == 200
            exported = json.loads(raw) if isinstance(raw, bytes) else raw
            assert [t["notes"] for t in exported["turns"]] == [
                [{"kind": "notice", "text": notice}], [{"kind": "refused", "text": refused}], []
            ]


async def test_notes_are_kept_in_the_words_the_user_read(service_factory: Any, browsers: Any) -> None:
    """A Chinese browser's notice is stored as it was shown, in Chinese; an English one reading it later
    (the operator's view) sees the same words."""
    async with service_factory(max_new_tokens=8, max_pdf_pages=2) as service, running_web(service) as adapter:
        thread = new_thread()
        async with browsers(adapter.url, headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as browser:
            status, events = await browser.ask(thread, "这些页写了什么？", files=[("guide.pdf", coloured_pdf(5), "application/pdf")])
            [notice] = of(events, "notice")
            assert "guide.pdf" in notice and "I read" not in notice
            status, view = await browser.get(f"/api/threads/{thread}", headers={"Accept-Language": "en"})
            assert status == 200 and view["turns"][0]["notices"] == [notice]


async def test_the_notes_of_pictures_kept_for_the_next_question_come_back_too(service_factory: Any, browsers: Any) -> None:
    """A long screenshot sent with no question is kept ("attached"); what was said about reading it stays with it."""
    async with service_factory(max_new_tokens=8, max_tiles=2) as service, running_web(service) as adapter:
        thread = new_thread()
        async with browsers(adapter.url) as browser:
            status, events = await browser.ask(thread, "", files=[("long.png", tall_screenshot((200, 3000)), "image/png")])
            notices = of(events, "notice")
            assert status == 200 and notices, events
            status, view = await browser.get(f"/api/threads/{thread}")
            [turn] = view["turns"]
            assert turn["status"] == "attached" and turn["notices"] == notices


async def test_a_notice_said_after_the_answer_is_kept_too(service_factory: Any, browsers: Any) -> None:
    """/table on an answer with no table: the core says so after the answer (the preset's presenter)."""
    from tests.hooks import forced_answer

    async with service_factory(max_new_tokens=64) as service, running_web(service) as adapter:
        service.engine.generate_hook = forced_answer(service, "There is no table here.")
        thread = new_thread()
        async with browsers(adapter.url) as browser:
            status, events = await browser.ask(thread, "/table", files=[("red.png", picture_bytes(), "image/png")])
            assert status == 200 and isinstance(events, list)
            names = [event for event, _data in events]
            assert names.index("notice") > names.index("answer"), names
            status, view = await browser.get(f"/api/threads/{thread}")
            [turn] = view["turns"]
            assert turn["status"] == "done" and turn["notices"] == of(events, "notice")
            assert turn["notices"] == ["No table was found in the answer, so there is no CSV file."]
