"""`vlmbot engine serve` over real HTTP on 127.0.0.1, driven by the official `openai` client."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from engine.local import LocalEngine
from engine.server import EngineServerOptions, RunningServer, running_engine_server
from tests.conftest import picture_bytes
from tests.engine.support import started_engine
from tests.engine.test_local_engine import slow_hook

SMALL = 64 * 28 * 28


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_uri(data, mime)}}


def question(text: str, *images: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a helpdesk assistant."},
        {"role": "user", "content": [*images, {"type": "text", "text": text}]},
    ]


@pytest.fixture
async def local_engine(tiny_qwen25_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, queue_size=4) as engine:
        yield engine


@pytest.fixture
def server_options() -> EngineServerOptions:
    return EngineServerOptions(port=0, max_images=2, max_new_tokens=16, shutdown_timeout_s=1)


@pytest.fixture
async def server(local_engine: LocalEngine, server_options: EngineServerOptions) -> AsyncIterator[RunningServer]:
    async with running_engine_server(local_engine, server_options) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0) as client:
        yield client


async def test_models_and_health(client: openai.AsyncOpenAI, server: RunningServer, tiny_qwen25_dir: Path) -> None:
    models = [model.id async for model in client.models.list()]
    assert models == [tiny_qwen25_dir.name]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/health") as response:
            body = await response.json()
    assert response.status == 200 and body["status"] == "ok" and body["device"] == "cpu"
    assert body["quantization"] == "none"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/models") as response:
            listed = await response.json()
    assert listed["data"][0]["vlmbot"]["quantization"] == "none"


async def test_chat_with_a_picture(client: openai.AsyncOpenAI, local_engine: LocalEngine, tiny_qwen25_dir: Path) -> None:
    seen: list[dict] = []
    local_engine.generate_hook = slow_hook(local_engine, delay=0, log=seen)
    plain = await client.chat.completions.create(
        model=tiny_qwen25_dir.name, messages=question("Hello?"), max_tokens=3
    )
    pictured = await client.chat.completions.create(
        model=tiny_qwen25_dir.name,
        messages=question("What is shown?", image_part(picture_bytes(color=(250, 0, 0)))),
        max_tokens=5,
    )
    assert pictured.object == "chat.completion"
    assert isinstance(pictured.choices[0].message.content, str) and pictured.choices[0].message.role == "assistant"
    assert pictured.choices[0].finish_reason == "length"  # the slow hook never stops early
    assert pictured.usage.completion_tokens == 5
    assert pictured.usage.prompt_tokens > plain.usage.prompt_tokens
    assert seen[0].get("image_grid_thw") is None and seen[1]["image_grid_thw"].shape[0] == 1


async def test_streaming_chat(client: openai.AsyncOpenAI, local_engine: LocalEngine, tiny_qwen25_dir: Path) -> None:
    local_engine.generate_hook = slow_hook(local_engine, delay=0)
    stream = await client.chat.completions.create(
        model=tiny_qwen25_dir.name,
        messages=question("Describe it.", image_part(picture_bytes(fmt="JPEG"), "image/jpeg")),
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 2  # streamed piece by piece, not in one block
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/png;base64,not base64!!", "invalid_image_url"),
        ("data:image/png,plain-not-base64", "invalid_image_url"),
        ("https://example.com/cat.png", "invalid_image_url"),
        (data_uri(b"this is not a picture"), "invalid_image"),
    ],
)
async def test_malformed_data_uri_is_a_bad_request(
    client: openai.AsyncOpenAI, tiny_qwen25_dir: Path, url: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=tiny_qwen25_dir.name,
            messages=question("What?", {"type": "image_url", "image_url": {"url": url}}),
        )
    error = caught.value.body
    assert caught.value.status_code == 400 and error["code"] == code and error["type"] == "invalid_request_error"
    assert error["param"] == "messages[1].content[0].image_url.url" and error["message"]


async def test_too_many_images(client: openai.AsyncOpenAI, tiny_qwen25_dir: Path) -> None:
    pictures = [image_part(picture_bytes(color=(i * 60, 0, 0))) for i in range(3)]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=tiny_qwen25_dir.name, messages=question("Compare", *pictures))
    assert caught.value.body["code"] == "too_many_images"
    assert "3 pictures" in caught.value.body["message"] and "at most 2" in caught.value.body["message"]


async def test_unknown_model(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-17", messages=question("Hi"))
    assert caught.value.body == {
        "message": caught.value.body["message"],
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert "gpt-17" in caught.value.body["message"]


async def test_bad_json_and_bad_shapes(server: RunningServer) -> None:
    url = f"{server.url}/chat/completions"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400
            body = await response.json()
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == "invalid_json"
        async with http.post(url, json={"messages": [{"role": "robot", "content": "hi"}]}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "messages[0].role"
        async with http.post(url, json={"messages": "hello"}) as response:
            assert (await response.json())["error"]["param"] == "messages"


async def test_metrics(client: openai.AsyncOpenAI, server: RunningServer, local_engine: LocalEngine, tiny_qwen25_dir: Path) -> None:
    local_engine.generate_hook = slow_hook(local_engine, delay=0.01)
    await client.chat.completions.create(model=tiny_qwen25_dir.name, messages=question("Hi"), max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=question("Hi"))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
            text = await response.text()
            assert response.headers["Content-Type"].startswith("text/plain")
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"}
    assert samples["vlmbot_engine_queue_depth"] == 0
    assert samples["vlmbot_engine_up"] == 1
    assert samples['vlmbot_engine_requests_total{outcome="length"}'] == 1
    assert samples['vlmbot_engine_errors_total{code="model_not_found"}'] == 1
    assert samples["vlmbot_engine_time_to_first_token_seconds_count"] == 1
    assert samples["vlmbot_engine_queue_wait_seconds_count"] == 1
    assert samples["vlmbot_engine_tokens_per_second_count"] == 1 and samples["vlmbot_engine_tokens_per_second_sum"] > 0
    assert samples["vlmbot_engine_output_tokens_total"] == 4
    assert "# TYPE vlmbot_engine_time_to_first_token_seconds histogram" in text
    assert not any(name.startswith("vlmbot_engine_gpu") for name in samples)  # CPU only here


async def test_client_disconnect_cancels_generation(server: RunningServer, local_engine: LocalEngine) -> None:
    started = threading.Event()
    local_engine.generate_hook = slow_hook(local_engine, delay=0.1, started=started)  # 16 tokens: 1.6 s
    body = {"messages": question("Write a long story."), "max_tokens": 16, "stream": True}
    async with aiohttp.ClientSession() as http:
        response = await http.post(f"{server.url}/chat/completions", json=body)
        async for line in response.content:
            if b'"content": "' in line and b'"role"' not in line:
                break  # the first token arrived
        response.close()  # the user went away
    begin = time.monotonic()
    while local_engine.health().running or local_engine.health().queue_depth:
        assert time.monotonic() - begin < 0.6, "generation went on after the client disconnected"
        await asyncio.sleep(0.02)
    # The model is free for the next request at once.
    local_engine.generate_hook = slow_hook(local_engine, delay=0)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/chat/completions", json={"messages": question("Hi"), "max_tokens": 2}) as r:
            assert r.status == 200 and (await r.json())["usage"]["completion_tokens"] == 2


async def test_queue_positions_are_sse_comments(server: RunningServer, local_engine: LocalEngine) -> None:
    local_engine.generate_hook = slow_hook(local_engine, delay=0.03)
    body = {"messages": question("Hi"), "max_tokens": 5, "stream": True, "user": "session-a"}

    async def run(session_user: str) -> list[str]:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/chat/completions", json={**body, "user": session_user}) as response:
                return [line.decode().strip() async for line in response.content if line.strip()]

    first = asyncio.create_task(run("a"))
    await asyncio.sleep(0.2)
    second = await run("b")
    await first
    assert ": queued 1" in second and second[-1] == "data: [DONE]"
    first_text = next(i for i, line in enumerate(second) if '"content": "' in line and '"role"' not in line)
    assert second.index(": queued 1") < second.index(": started") < first_text  # waited, read, then wrote
    assert json.loads(second[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "length"


class TestApiKeys:
    @pytest.fixture
    def server_options(self) -> EngineServerOptions:
        return EngineServerOptions(port=0, api_keys=("key-one", "key-two"), max_new_tokens=4, shutdown_timeout_s=1)

    async def test_key_required_on_v1_only(self, server: RunningServer) -> None:
        async with openai.AsyncOpenAI(base_url=server.url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.models.list()
            assert caught.value.body["code"] == "invalid_api_key"
        async with openai.AsyncOpenAI(base_url=server.url, api_key="key-two", max_retries=0) as client:
            reply = await client.chat.completions.create(model="tiny-qwen2_5_vl", messages=question("Hi"))
            assert reply.choices[0].message.content is not None
        async with aiohttp.ClientSession() as http:
            for path in ("/health", "/metrics"):
                async with http.get(f"http://127.0.0.1:{server.port}{path}") as response:
                    assert response.status == 200
