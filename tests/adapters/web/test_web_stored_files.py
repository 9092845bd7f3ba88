"""The picture route serves stored files with HTTP Range (a clip in the history is sought before it has
loaded), to their owner only, and answers every refusal in JSON: real aiohttp on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.web import WebAdapter
from tests.adapters.web.conftest import new_thread, running_web
from tests.conftest import picture_bytes
from tests.engine.videos import clip

CACHE = "private, max-age=86400"


@pytest.fixture
async def web(service_factory: Any) -> AsyncIterator[tuple[Any, WebAdapter]]:
    async with service_factory(max_new_tokens=4) as service, running_web(service) as adapter:
        yield service, adapter


async def _sent_clip(browser: Any) -> tuple[str, str, bytes]:
    """A clip asked about: (its session, its hash, its bytes)."""
    data = clip(2.0)
    thread = new_thread()
    status, events = await browser.ask(thread, "What happens?", files=[("screen.mp4", data, "video/mp4")])
    assert status == 200 and isinstance(events, list)
    status, view = await browser.get(f"/api/threads/{thread}")
    [turn] = view["turns"]
    return view["session"]["id"], turn["images"][0], data


async def _fetch(browser: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    async with browser.http.get(f"{browser.base}{path}", headers=headers) as response:
        return response.status, response.headers, await response.read()


async def test_a_range_of_a_clip_is_sent_as_partial_content(web: Any, browsers: Any) -> None:
    _service, adapter = web
    async with browsers(adapter.url) as browser:
        session, sha, data = await _sent_clip(browser)
        path = f"/api/sessions/{session}/images/{sha}"
        size = len(data)
        assert size > 100
        status, headers, body = await _fetch(browser, path)
        assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"
        assert headers["Content-Type"] == "video/mp4" and headers["Cache-Control"] == CACHE
        for wanted, start, end in (("bytes=10-49", 10, 49), ("bytes=-16", size - 16, size - 1), (f"bytes={size - 5}-", size - 5, size - 1),
                                   (f"bytes=0-{size * 2}", 0, size - 1)):
            status, headers, body = await _fetch(browser, path, {"Range": wanted})
            assert status == 206, wanted
            assert body == data[start : end + 1], wanted
            assert headers["Content-Range"] == f"bytes {start}-{end}/{size}", wanted
            assert headers["Content-Type"] == "video/mp4" and headers["Cache-Control"] == CACHE
            assert headers["X-Content-Type-Options"] == "nosniff"
        # A browser revalidating what it has: nothing is sent again.
        status, headers, _body = await _fetch(browser, path)
        status, _headers, body = await _fetch(browser, path, {"If-None-Match": headers["ETag"]})
        assert status == 304 and body == b""


@pytest.mark.parametrize(
    "wanted",
    ["bytes=abc", "bytes=50-10", "bytes=0-1,4-5", "bytes=-", "items=0-10", "bytes=-0", "bytes=99999999-", "bytes=" + "9" * 5000 + "-"],
)
async def test_a_bad_range_is_a_json_416(web: Any, browsers: Any, wanted: str) -> None:
    _service, adapter = web
    async with browsers(adapter.url) as browser:
        session, sha, data = await _sent_clip(browser)
        status, headers, body = await _fetch(browser, f"/api/sessions/{session}/images/{sha}", {"Range": wanted})
    assert status == 416, (wanted, body)
    assert headers["Content-Type"].startswith("application/json") and b'"error"' in body
    assert headers["Content-Range"] == f"bytes */{len(data)}"


async def test_someone_elses_file_stays_theirs_with_or_without_a_range(web: Any, browsers: Any) -> None:
    _service, adapter = web
    async with browsers(adapter.url) as alice, browsers(adapter.url) as bob:
        session, sha, _data = await _sent_clip(alice)
        status, _view = await bob.ask(new_thread(), "Hi", files=[("blue.png", picture_bytes(color=(0, 0, 200)), "image/png")])
        [bob_session] = [s["id"] for s in (await bob.get("/api/sessions"))[1]["sessions"]]
        for who, path in ((bob, f"/api/sessions/{session}/images/{sha}"), (bob, f"/api/sessions/{bob_session}/images/{sha}")):
            for headers in (None, {"Range": "bytes=0-9"}, {"Range": "bytes=abc"}):
                status, got, body = await _fetch(who, path, headers)
                assert status == 404 and got["Content-Type"].startswith("application/json"), (path, headers, body)
                assert b"ftyp" not in body


async def test_a_stored_file_that_cannot_be_read_is_a_json_404(web: Any, browsers: Any) -> None:
    """Before, reading it raised and the route answered 500; opening a directory fails even for root."""
    service, adapter = web
    async with browsers(adapter.url) as browser:
        session, sha, _data = await _sent_clip(browser)
        stored: Path = service.conversations.pictures.path(sha)
        stored.unlink()
        stored.mkdir()
        for headers in (None, {"Range": "bytes=0-9"}):
            status, got, body = await _fetch(browser, f"/api/sessions/{session}/images/{sha}", headers)
            assert status == 404 and got["Content-Type"].startswith("application/json"), body
            assert b"missing from storage" in body
        stored.rmdir()
        status, got, body = await _fetch(browser, f"/api/sessions/{session}/images/{sha}")
        assert status == 404 and b"missing from storage" in body
