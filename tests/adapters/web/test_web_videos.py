"""Screen recordings and GIFs in the web chat: real aiohttp, the real core on the tiny model.

A clip is answered with the engine given video input and its timing; a bad one is a JSON 400 with
one clear line before any answer starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.web import WebAdapter
from bot.videos import REFUSAL_TEXTS
from bot.wording import video_refused
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
