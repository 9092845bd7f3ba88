"""Telegram videos, GIF animations and video notes: the real python-telegram-bot Application, the
real core on the tiny model and the stand-in Bot API; the engine gets the clip as video input."""

from __future__ import annotations

from typing import Any

import pytest

from bot.messages import Text
from bot.videos import REFUSAL_TEXTS
from bot.wording import video_refused
from engine.videos import VideoProblem
from tests.adapters.telegram.harness import ALLOWED_USER, running_adapter, settle, shown_text
from tests.engine.test_local_engine import record_hook
from tests.engine.videos import clip, sound_only

pytestmark = pytest.mark.asyncio(loop_scope="function")
CHAT = ALLOWED_USER


def media(standin: Any, data: bytes, kind: str) -> dict[str, Any]:
    """The `video`, `animation` or `video_note` object of a message, as the Bot API sends it."""
    file_id = standin.add_file(data, ext="mp4")
    meta = standin.file_meta(file_id)
    if kind == "video_note":
        return {kind: {**meta, "length": 64, "duration": 3}}
    extra = {"width": 96, "height": 64, "duration": 3, "mime_type": "video/mp4"}
    if kind == "animation":  # Telegram describes an animation as a document too
        return {kind: {**meta, **extra, "file_name": "loop.mp4"}, "document": {**meta, "file_name": "loop.mp4", "mime_type": "video/mp4"}}
    return {kind: {**meta, **extra}}


@pytest.mark.parametrize("kind", ["video", "animation", "video_note"])
async def test_a_clip_gets_an_answer_and_the_engine_sees_video(standin, service_factory, kind: str) -> None:
    calls: list[dict] = []
    async with service_factory(max_new_tokens=8) as service:
        service.engine.generate_hook = record_hook(calls)
        async with running_adapter(standin, service) as (adapter, rec):
            extra = media(standin, clip(seconds=3.0), kind)
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, caption="What happens?", extra=extra))
            await settle(standin, adapter)
    [answer] = rec.answers()
    assert shown_text(standin, CHAT)[-1].strip() and answer.output_tokens > 0
    [call] = calls
    assert call["image_grid_thw"] is None and int(call["video_grid_thw"][0, 0]) == 3
    assert float(call["second_per_grid_ts"][0]) == 1.0


@pytest.mark.parametrize(
    ("data", "problem"),
    [(lambda: clip(seconds=70.0, rate=1), "too_long"), (sound_only, "no_video"), (lambda: b"\x1a\x45\xdf\xa3junk" * 20, "damaged")],
    ids=["over-long", "sound-only", "corrupt"],
)
async def test_bad_videos_get_a_clear_reply(standin, service_factory, data, problem: str) -> None:
    calls: list[dict] = []
    async with service_factory() as service:
        service.engine.generate_hook = record_hook(calls)
        async with running_adapter(standin, service) as (adapter, rec):
            extra = media(standin, data(), "video")
            await standin.inject(standin.message(chat_id=CHAT, user_id=ALLOWED_USER, caption="What is this?", extra=extra))
            await settle(standin, adapter)
    assert rec.answers() == [] and calls == []
    [error] = [r for _, r in rec.replies if isinstance(r, Text)]
    assert error.text == video_refused(REFUSAL_TEXTS[VideoProblem(problem)], None, "60")
    assert shown_text(standin, CHAT) == [error.text]
