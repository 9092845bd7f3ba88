"""Videos for remote engines: `video_url` data URIs where the server reads them (vLLM's stand-in, and
this project's own server, which hands them to the local engine as video input), sampled frames as
pictures otherwise; and the server's JSON 400 for bad `video_url` parts."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from engine.interface import GenerationLimits, GenerationRequest, GenerationStats, PromptTurn
from engine.local import LocalEngine
from engine.remote import RemoteEngine, RemoteEngineOptions
from engine.server import RunningServer
from engine.videos import VideoBudget, VideoLimits
from tests.engine.openai_standin import OpenAIStandIn
from tests.engine.support import running
from tests.engine.test_local_engine import slow_hook
from tests.engine.test_server import local_engine, server, server_options  # noqa: F401  (fixtures)
from tests.engine.videos import clip, prompt_video

CLIP = clip(seconds=3.0)
VIDEO = VideoBudget(VideoLimits(max_seconds=10), max_tokens=120)


def request(rid: str, data: bytes = CLIP) -> GenerationRequest:
    turns = (PromptTurn("system", "You are helpful."), PromptTurn("user", "What happens at 0:02?", videos=(prompt_video(data),)))
    return GenerationRequest(rid, "s", turns, GenerationLimits(max_new_tokens=4))


async def run(options: RemoteEngineOptions, req: GenerationRequest) -> list[Any]:
    async with running(RemoteEngine(options)) as engine:
        return [event async for event in engine.generate(req)]


@pytest.fixture
async def standin() -> AsyncIterator[OpenAIStandIn]:
    async with OpenAIStandIn() as stand_in:
        yield stand_in


async def test_a_server_that_reads_videos_gets_a_video_url(standin: OpenAIStandIn) -> None:
    events = await run(RemoteEngineOptions(base_url=standin.url, video=VIDEO, video_url=True), request("u1"))
    assert isinstance(events[-1], GenerationStats)
    parts = standin.received[-1].body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["video_url", "text"]
    header, data = parts[0]["video_url"]["url"].split(",", 1)
    assert header == "data:video/mp4;base64" and base64.b64decode(data) == CLIP  # the clip itself, as sent


async def test_other_servers_get_the_frames_with_their_times(standin: OpenAIStandIn) -> None:
    events = await run(RemoteEngineOptions(base_url=standin.url, video=VIDEO), request("f1"))
    assert isinstance(events[-1], GenerationStats)
    parts = standin.received[-1].body["messages"][1]["content"]
    labels = [p["text"] for p in parts[:-1] if p["type"] == "text"]
    frames = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert labels == ["<0.2 seconds>", "<0.8 seconds>", "<1.2 seconds>", "<1.8 seconds>", "<2.2 seconds>", "<2.8 seconds>"]
    assert len(frames) == 6 and parts[-1]["type"] == "text"
    sizes = [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size for url in frames]
    assert sum(w * h for w, h in sizes) // (32 * 32) <= VIDEO.max_tokens  # Qwen3-VL: the video's budget as pictures


async def test_our_server_reads_video_url_as_video_input(
    server: RunningServer, local_engine: LocalEngine  # noqa: F811
) -> None:
    seen: list[dict] = []
    local_engine.generate_hook = slow_hook(local_engine, delay=0, log=seen)
    events = await run(RemoteEngineOptions(base_url=server.url, video=VIDEO, video_url=True), request("o1"))
    assert isinstance(events[-1], GenerationStats) and events[-1].output_tokens == 4
    [call] = seen
    assert call["image_grid_thw"] is None and int(call["video_grid_thw"][0, 0]) == 3
    assert float(call["second_per_grid_ts"][0]) == 1.0


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://example.com/clip.mp4", "invalid_video_url"),
        ("data:video/mp4;base64,not base64!!", "invalid_video_url"),
        ("data:video/mp4;base64," + base64.b64encode(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 64).decode(), "invalid_video"),
        ("data:video/mp4;base64," + base64.b64encode(clip(seconds=70.0, rate=1)).decode(), "video_too_large"),
    ],
    ids=["remote-url", "bad-base64", "corrupt", "too-long"],
)
async def test_bad_video_url_parts_are_json_400(server: RunningServer, url: str, code: str) -> None:  # noqa: F811
    body = {
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "?"}]}],
        "max_tokens": 2,
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/chat/completions", json=body) as response:
            error = (await response.json())["error"]
    assert response.status == 400 and error["code"] == code and "\n" not in error["message"]
    assert error["param"] in ("messages[0].content[0].video_url.url", "messages")
