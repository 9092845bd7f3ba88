"""Screen recordings and GIFs in the web chat: real aiohttp, the real core on the tiny model.

A clip is answered with the engine given video input and its timing; a bad one is a JSON 400 with
one clear line before any answer starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.web import WebAdapter
from adapters.web.views import image_type
from bot.videos import REFUSAL_TEXTS
from bot.wording import VIDEO_OVER_WEB_LIMIT, video_refused
from engine.videos import VideoProblem
from tests.adapters.web.conftest import new_thread, running_web
from tests.engine.test_local_engine import record_hook
from tests.engine.videos import clip, sound_only


@pytest.fixture
async def web(service_factory: Any) -> AsyncIterator[tuple[Any, WebAdapter]]:
    async with service_factory() as service, running_web(service) as adapter:
        yield service, adapter


@pytest.mark.parametrize(
    ("name", "mime", "container"),
    [("screen.mp4", "video/mp4", "mp4"), ("screen.webm", "video/webm", "webm"), ("loop.gif", "image/gif", "gif")],
)
async def test_a_recording_is_answered_as_video(web: Any, browsers: Any, name: str, mime: str, container: str) -> None:
    service, adapter = web
    calls: list[dict] = []
    service.engine.generate_hook = record_hook(calls)
    async with browsers(adapter.url) as browser:
        status, events = await browser.ask(new_thread(), "What happens?", files=[(name, clip(3.0, container=container), mime)])
    assert status == 200 and isinstance(events, list)
    assert [event for event, _ in events][-2:] == ["answer", "done"], events
    [call] = calls
    assert int(call["video_grid_thw"][:, 0].sum()) == 3 and float(call["second_per_grid_ts"][0]) == 1.0


@pytest.mark.parametrize(
    ("data", "problem"),
    [(lambda: clip(seconds=70.0, rate=1), "too_long"), (sound_only, "no_video"), (lambda: b"GIF89a" + b"\x00" * 40, "damaged")],
    ids=["over-long", "sound-only", "corrupt"],
)
async def test_a_bad_recording_is_a_json_400_with_one_line(web: Any, browsers: Any, data: Any, problem: str) -> None:
    service, adapter = web
    calls: list[dict] = []
    service.engine.generate_hook = record_hook(calls)
    async with browsers(adapter.url) as browser:
        status, body = await browser.ask(new_thread(), "What is this?", files=[("clip.mp4", data(), "video/mp4")])
    assert calls == []
    assert status == 400 and isinstance(body, dict), body
    if problem == "damaged":  # a GIF that is not even a picture is refused as one
        assert "\n" not in body["error"] and "clip.mp4" in body["error"]
    else:
        assert body["error"] == video_refused(REFUSAL_TEXTS[VideoProblem(problem)], "clip.mp4", "60")


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (lambda: clip(1.0, container="mp4"), "video/mp4"),
        (lambda: clip(1.0, container="webm"), "video/webm"),
        (lambda: b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (lambda: clip(1.0, container="gif"), "image/gif"),
        (lambda: b"<!DOCTYPE html><script>alert(1)</script>", "application/octet-stream"),
    ],
    ids=["mp4", "webm", "mov", "gif", "html"],
)
def test_a_stored_file_is_served_as_what_its_bytes_are(data: Any, mime: str) -> None:
    assert image_type(data()) == mime


async def test_a_sent_clip_is_served_as_video_and_marked_as_one(web: Any, browsers: Any) -> None:
    """Review finding 7: the history says which files are recordings, and the picture route serves them as video."""
    _service, adapter = web
    thread = new_thread()
    async with browsers(adapter.url) as browser:
        status, events = await browser.ask(thread, "What happens?", files=[("screen.mp4", clip(2.0), "video/mp4")])
        assert status == 200 and isinstance(events, list)
        status, view = await browser.get(f"/api/threads/{thread}")
        [turn] = view["turns"]
        assert turn["videos"] == turn["images"] and len(turn["images"]) == 1
        async with browser.http.get(f"{adapter.url.rstrip('/')}/api/sessions/{view['session']['id']}/images/{turn['images'][0]}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "video/mp4"
            assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_clip_over_the_web_limit_is_refused_as_a_video(service_factory: Any, browsers: Any) -> None:
    """Review finding 10: the web holds a clip to VLMBOT_MAX_IMAGE_BYTES (not VLMBOT_MAX_VIDEO_BYTES) and says
    so in a video's words; a picture over it keeps the picture's."""
    big = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (1024 * 1024 + 10)
    async with service_factory(max_image_bytes=1024 * 1024) as service, running_web(service) as adapter:
        assert service.settings.max_video_bytes > 1024 * 1024
        async with browsers(adapter.url) as browser:
            status, body = await browser.ask(new_thread(), "What happens?", files=[("long.mp4", big, "video/mp4")])
            assert status == 413 and isinstance(body, dict)
            assert body["error"] == "'long.mp4' is over the 1 MB limit for files on the web chat; please send a shorter clip."
            assert body["error"] == video_refused(VIDEO_OVER_WEB_LIMIT, "long.mp4", "1 MB")
            status, body = await browser.ask(new_thread(), "What is it?", files=[("shot.png", big, "image/png")])
            assert status == 413 and isinstance(body, dict) and "smaller picture" in body["error"]
