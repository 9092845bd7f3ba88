"""Slack screen recordings (MP4, WebM, MOV files) and GIFs: the real slack-bolt app on the tiny model,
against the stand-in; the engine gets the clip as video input, bad files get one clear reply."""

from __future__ import annotations

import pytest

from bot.videos import REFUSAL_TEXTS
from bot.wording import video_refused
from engine.videos import VideoProblem
from tests.adapters.slack.test_slack_adapter import mention, thread_texts
from tests.engine.test_local_engine import record_hook
from tests.engine.videos import clip, sound_only


@pytest.mark.parametrize(
    ("name", "mime", "container"),
    [("recording.mp4", "video/mp4", "mp4"), ("recording.webm", "video/webm", "webm"), ("loop.gif", "image/gif", "gif")],
)
async def test_a_recording_in_a_thread_is_answered_as_video(make_bot, name: str, mime: str, container: str) -> None:
    async with make_bot() as bot:
        calls: list[dict] = []
        bot.service.engine.generate_hook = record_hook(calls)
        slack = bot.slack
        hosted = slack.host_file(clip(seconds=3.0, container=container), name, mime)
        event = mention(slack, "What happens after the click?", files=[hosted])
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"C0HELP/{event['ts']}")
        assert turn.status == "done" and len(turn.image_hashes) == 1
        assert thread_texts(slack, event["ts"])
        [call] = calls
        assert int(call["video_grid_thw"][0, 0]) == 3 and float(call["second_per_grid_ts"][0]) == 1.0


async def test_bad_recordings_get_a_clear_reply(make_bot) -> None:
    async with make_bot() as bot:
        calls: list[dict] = []
        bot.service.engine.generate_hook = record_hook(calls)
        slack = bot.slack
        for name, data, problem in [
            ("long.mp4", clip(seconds=70.0, rate=1), "too_long"),
            ("voice.mp4", sound_only(), "no_video"),
            ("broken.mov", b"\x00\x00\x00\x14ftypqt  " + b"\x01" * 200, "damaged"),
        ]:
            event = mention(slack, "what is this?", files=[slack.host_file(data, name, "video/mp4")])
            await bot.deliver(event)
            await bot.settle()
            assert thread_texts(slack, event["ts"]) == [":warning: " + video_refused(REFUSAL_TEXTS[VideoProblem(problem)], name, "60")]
        assert calls == []
