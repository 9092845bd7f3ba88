"""A conversation view tells recordings from pictures by the types the store recorded, without opening a file.

Real aiohttp, the real core on the tiny model, a SQLite file: the turns list a picture and clips, and the
chat's view and the operator's view mark the clips as videos. The stored files are swapped or taken away
afterwards, so a view that sniffed them would answer differently."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from adapters.web import WebAdapter
from bot.schema import ImageRow
from tests.adapters.web.conftest import Browser, new_thread, running_web
from tests.conftest import picture_bytes
from tests.engine.videos import clip

TOKEN = "admin-token-123456"
TURN_KEYS = {
    "id", "text", "images", "videos", "answer", "notices", "refused", "status", "error", "in_context", "latency_ms",
    "output_tokens", "created_at", "vote",
}


@dataclass(frozen=True)
class Sent:
    picture: str
    mp4: str
    mov: str
    data: dict[str, bytes]


@pytest.fixture
async def web(service_factory: Any) -> AsyncIterator[tuple[Any, WebAdapter]]:
    async with service_factory() as service, running_web(service, web_admin_token=TOKEN) as adapter:
        yield service, adapter


async def send_picture_and_clips(browser: Browser, thread: str) -> Sent:
    """One question with a picture and an MP4 clip, a second with a QuickTime clip."""
    png, mp4, mov = picture_bytes(color=(30, 160, 60)), clip(2.0, container="mp4"), clip(2.0, container="mov")
    status, events = await browser.ask(thread, "What happens?", files=[("shot.png", png, "image/png"), ("screen.mp4", mp4, "video/mp4")])
    assert status == 200 and isinstance(events, list) and events[-1][0] == "done", events
    status, events = await browser.ask(thread, "And here?", files=[("screen.mov", mov, "video/quicktime")])
    assert status == 200 and isinstance(events, list) and events[-1][0] == "done", events
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in (("picture", png), ("mp4", mp4), ("mov", mov))}
    return Sent(**hashes, data={hashes["picture"]: png, hashes["mp4"]: mp4, hashes["mov"]: mov})


async def marked(browser: Browser, operator: Browser, thread: str) -> tuple[list[tuple[list[str], list[str]]], dict[str, Any]]:
    """(images, videos) of each turn as the chat's view gives them, checked equal to the operator's; and the chat's view."""
    status, view = await browser.get(f"/api/threads/{thread}")
    assert status == 200, view
    chat = [(turn["images"], turn["videos"]) for turn in view["turns"]]
    status, detail = await operator.get(f"/api/admin/sessions/{view['session']['id']}")
    assert status == 200, detail
    assert [(turn["images"], turn["videos"]) for turn in detail["turns"]] == chat
    return chat, view


async def sign_in(operator: Browser) -> None:
    status, body = await operator.request("POST", "/api/login", json={"token": TOKEN})
    assert status == 200, body


async def test_a_conversation_shows_clips_as_videos_and_pictures_as_images(web: Any, browsers: Any) -> None:
    service, adapter = web
    thread = new_thread()
    async with browsers(adapter.url) as browser, browsers(adapter.url) as operator:
        sent = await send_picture_and_clips(browser, thread)
        await sign_in(operator)
        turns, view = await marked(browser, operator, thread)
        assert turns == [([sent.picture, sent.mp4], [sent.mp4]), ([sent.mov], [sent.mov])]
        assert all(set(turn) == TURN_KEYS for turn in view["turns"])  # the JSON keeps its shape
        # Each clip was recorded as the video it is (a MOV as QuickTime, as the picture route serves it).
        recorded = await service.store.mime_types({sent.picture, sent.mp4, sent.mov})
        assert recorded == {sent.picture: "image/png", sent.mp4: "video/mp4", sent.mov: "video/quicktime"}
        session = view["session"]["id"]
        for sha, served in recorded.items():
            async with browser.http.get(f"{adapter.url.rstrip('/')}/api/sessions/{session}/images/{sha}") as response:
                assert response.status == 200 and response.headers["Content-Type"] == served


async def test_the_views_open_no_stored_file(web: Any, browsers: Any) -> None:
    """The picture's file now holds a clip and the clips' files a picture or nothing: the views still say what
    each one was recorded as (a view reading the files' first bytes would mark the picture as the video)."""
    service, adapter = web
    thread = new_thread()
    pictures = service.conversations.pictures
    async with browsers(adapter.url) as browser, browsers(adapter.url) as operator:
        sent = await send_picture_and_clips(browser, thread)
        pictures.path(sent.picture).write_bytes(sent.data[sent.mp4])
        pictures.path(sent.mp4).write_bytes(sent.data[sent.picture])
        pictures.path(sent.mov).unlink()
        await sign_in(operator)
        turns, _view = await marked(browser, operator, thread)
    assert turns == [([sent.picture, sent.mp4], [sent.mp4]), ([sent.mov], [sent.mov])]


async def test_a_file_with_no_recorded_type_is_told_by_its_first_bytes(web: Any, browsers: Any) -> None:
    """Only the files with no row in the store are opened: the MP4's is read and found a video; the picture's
    (recorded, its file now holding a clip) is not; the MOV, with no row and no readable file, is a picture
    whose own route says it is missing, and the view is no 500."""
    service, adapter = web
    thread = new_thread()
    pictures = service.conversations.pictures
    async with browsers(adapter.url) as browser, browsers(adapter.url) as operator:
        sent = await send_picture_and_clips(browser, thread)
        async with service.store.engine.begin() as db:
            await db.execute(delete(ImageRow).where(ImageRow.sha256.in_([sent.mp4, sent.mov])))
        assert set(await service.store.mime_types({sent.picture, sent.mp4, sent.mov})) == {sent.picture}
        pictures.path(sent.picture).write_bytes(sent.data[sent.mp4])
        mov: Path = pictures.path(sent.mov)
        mov.unlink()
        mov.mkdir()  # opening it fails (even for root), as an unreadable file would
        await sign_in(operator)
        turns, _view = await marked(browser, operator, thread)
    assert turns == [([sent.picture, sent.mp4], [sent.mp4]), ([sent.mov], [])]
