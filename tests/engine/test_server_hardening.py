"""The attacks of issue 11 on `vlmbot engine serve`, replayed over real HTTP on 127.0.0.1 (findings 1, 2, 3 and 8).

Each test sends what an attacker holding an API key sent, and checks that the answer is a JSON 4xx
in OpenAI's error shape and that other keys' answers go on unharmed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.local import LocalEngine
from engine.server import EngineServerOptions, RunningServer, running_engine_server
from tests.engine.pictures import EPS, SVG, bomb_header, huge_png, noise, thin_png, truncated_jpeg
from tests.engine.support import RealisticScores, Recorder, started_engine
from tests.engine.test_prepare import LONG_TEXT, Timeline

SMALL = 64 * 28 * 28
KEY_A, KEY_B = "key-alice-0123456789", "key-bob-9876543210"
ERROR_FIELDS = {"message", "type", "param", "code"}


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def picture_part(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_uri(data, mime)}}


def chat(text: str, *parts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}], **fields}


@pytest.fixture
async def engine(tiny_qwen25_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, queue_size=8, prefill_chunk_tokens=16) as eng:
        yield eng


@pytest.fixture
async def server(engine: LocalEngine) -> AsyncIterator[RunningServer]:
    options = EngineServerOptions(
        port=0, api_keys=(KEY_A, KEY_B), max_images=16, max_new_tokens=64, shutdown_timeout_s=1,
        max_image_pixels=64_000_000,
    )
    async with running_engine_server(engine, options) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    server: RunningServer,
    body: dict[str, Any] | bytes,
    *,
    key: str = KEY_A,
    method: str = "POST",
    path: str = "/v1/chat/completions",
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with http.request(method, f"http://127.0.0.1:{server.port}{path}", data=data, headers=headers) as response:
        raw = await response.read()
        assert response.content_type == "application/json" or response.status == 204, (response.status, raw[:200])
        return response.status, (json.loads(raw) if raw else None)


def assert_refused(status: int, body: Any, code: str | None = None, param: str | None = None, expected: int = 400) -> None:
    assert status == expected, body
    assert set(body["error"]) == ERROR_FIELDS and body["error"]["message"] and "\n" not in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body


async def stream_lines(http: aiohttp.ClientSession, server: RunningServer, body: dict[str, Any], key: str) -> AsyncIterator[str]:
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{server.url}/chat/completions", json={**body, "stream": True}, headers=headers) as response:
        assert response.status == 200
        async for line in response.content:
            if line.strip():
                yield line.decode().strip()


async def long_answer(http: aiohttp.ClientSession, server: RunningServer, started: asyncio.Event, tokens: int = 60) -> list[str]:
    """Key A's long streamed answer: every line of it; `started` is set at its first token."""
    lines = []
    async for line in stream_lines(http, server, chat("Write a long story.", max_tokens=tokens, user="victim"), KEY_A):
        lines.append(line)
        if '"content": "' in line and '"role"' not in line:
            started.set()
    return lines


def completed(lines: list[str], tokens: int) -> bool:
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: {")]
    assert not any("error" in chunk for chunk in chunks), chunks[-1]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0]["finish_reason"]]
    return finish == ["length"] and lines[-1] == "data: [DONE]"


# --- finding 1: sampling parameters -------------------------------------------------------------


async def test_a_tiny_temperature_does_not_end_anothers_answer(
    server: RunningServer, engine: LocalEngine, http: aiohttp.ClientSession
) -> None:
    """The attack: temperature 1e-38 made the sampling step NaN and the batch fail; a 493-chunk answer died."""
    hook = RealisticScores(delay=0.01)
    engine.generate_hook = hook
    started = asyncio.Event()
    victim = asyncio.create_task(long_answer(http, server, started))
    await asyncio.wait_for(started.wait(), 30)
    status, body = await call(http, server, chat("hi", temperature=1e-38, top_p=1e-38, max_tokens=8), key=KEY_B)
    assert status == 200 and body["usage"]["completion_tokens"] >= 1
    assert completed(await victim, 60)
    assert max(hook.batch_sizes) == 2  # the attacker's request decoded in the victim's batch


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}', None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', "temperature", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 2.5}', "temperature", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -0.1}', "temperature", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "0.5"}', "temperature", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": true}', "temperature", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}', "top_p", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5}', "top_p", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": [1]}', "top_p", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}', "max_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}', "max_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "9"}', "max_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": true}', "max_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}', "max_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 100000}',
         "max_completion_tokens", "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 5000 + b"}", None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', "n", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "user": 5}', "user", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "user": "' + b"u" * 300 + b'"}', "user", None),
    ],
)
async def test_out_of_range_and_mistyped_parameters_are_400(
    server: RunningServer, http: aiohttp.ClientSession, raw: bytes, param: str | None, code: str | None
) -> None:
    status, body = await call(http, server, raw)
    assert_refused(status, body, code, param)


async def test_max_tokens_at_the_cap_is_served_not_cut(server: RunningServer, http: aiohttp.ClientSession, engine: LocalEngine) -> None:
    engine.generate_hook = Recorder()  # never stops early
    status, body = await call(http, server, chat("hi", max_completion_tokens=64, max_tokens=9999))
    assert status == 200 and body["usage"]["completion_tokens"] == 64


# --- finding 2: pictures and prompts ------------------------------------------------------------


async def test_sixteen_huge_pictures_are_refused_without_stalling_anyone(
    server: RunningServer, engine: LocalEngine, http: aiohttp.ClientSession
) -> None:
    """The attack: sixteen 12000x12000 PNGs (2.2 MB of request) held the worker 29 s; a "hi" waited 28.8 s."""
    hook = Recorder(delay=0.01)
    engine.generate_hook = hook
    started = asyncio.Event()
    victim = asyncio.create_task(long_answer(http, server, started))
    await asyncio.wait_for(started.wait(), 30)
    huge = huge_png(12000, 12000)
    status, body = await call(http, server, chat("What is this?", *[picture_part(huge)] * 16), key=KEY_B)
    assert_refused(status, body, "image_too_large", "messages[0].content[0].image_url.url")
    assert "12000x12000" in body["error"]["message"]
    assert not victim.done()  # refused while the victim was still streaming
    status, hi = await call(http, server, chat("hi", max_tokens=3), key=KEY_B)
    assert status == 200 and hi["usage"]["completion_tokens"] == 3
    assert completed(await victim, 60)
    assert len(hook.prefill) == 2  # the worker only ever saw the victim and the "hi"


@pytest.mark.parametrize(
    ("data", "mime", "code", "words"),
    [
        (truncated_jpeg(), "image/jpeg", "invalid_image", "damaged"),
        (EPS, "image/png", "invalid_image", "accepted format"),
        (SVG, "image/svg+xml", "invalid_image", "accepted format"),
        (thin_png(1, 20000), "image/png", "invalid_image", "1x20000"),
        (bomb_header(30000, 30000), "image/png", "image_too_large", "too many pixels"),
        (bomb_header(12000, 12000), "image/png", "image_too_large", "12000x12000"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png", "invalid_image", "accepted format"),
    ],
    ids=["truncated-jpeg", "eps", "svg", "1x20000", "bomb", "12000x12000", "png-signature-only"],
)
async def test_bad_pictures_are_400_with_a_clear_message(
    server: RunningServer, engine: LocalEngine, http: aiohttp.ClientSession, data: bytes, mime: str, code: str, words: str
) -> None:
    hook = Recorder()
    engine.generate_hook = hook
    good = picture_part(noise((96, 64), seed=50))
    status, body = await call(http, server, chat("What is this?", good, picture_part(data, mime), max_tokens=2))
    assert_refused(status, body, code, "messages[0].content[1].image_url.url")
    assert words in body["error"]["message"]
    assert hook.prefill == {}  # refused before the worker
    assert engine.health().ok and engine.health().running == 0 and engine.health().queue_depth == 0


async def test_a_prompt_over_the_context_is_400(tiny_qwen25_dir: Path, http: aiohttp.ClientSession) -> None:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, context_tokens=150) as eng:
        async with running_engine_server(eng, EngineServerOptions(port=0, max_new_tokens=16, shutdown_timeout_s=1)) as running:
            status, body = await call(http, running, chat(LONG_TEXT * 4))
            assert_refused(status, body, "context_length_exceeded", "messages")
            assert "150 tokens" in body["error"]["message"]
            status, body = await call(http, running, chat("hi", max_tokens=4))
            assert status == 200


async def test_a_client_that_goes_away_while_its_prompt_is_read_frees_the_worker(
    server: RunningServer, engine: LocalEngine, http: aiohttp.ClientSession
) -> None:
    """The attack: a client that disconnected at once still left the victim waiting 35 s."""
    hook = Timeline(chunk_delay=0.05)
    engine.generate_hook = hook
    body = chat(LONG_TEXT * 3, max_tokens=5, stream=True)
    response = await http.post(f"{server.url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY_B}"})
    while not hook.chunks:
        await asyncio.sleep(0.01)
    response.close()  # the attacker goes away while its long prompt is read
    for _ in range(600):  # (a bound against hanging, not a speed requirement)
        if not engine.health().running and not engine.health().queue_depth:
            break
        await asyncio.sleep(0.02)
    assert engine.health().running == 0
    (rid, chunks), = hook.chunks.items()
    assert chunks[-1][1] < len(hook.prefill[rid]["input_ids"][0])  # it stopped before reading it all
    status, hi = await call(http, server, chat("hi", max_tokens=2))
    assert status == 200 and hi["usage"]["completion_tokens"] == 2


# --- finding 3: caches per API key -----------------------------------------------------------------


async def test_a_key_cannot_release_or_reuse_another_keys_conversation(
    server: RunningServer, engine: LocalEngine, http: aiohttp.ClientSession
) -> None:
    hook = Recorder()
    engine.generate_hook = hook
    picture = picture_part(noise((96, 64), seed=51))
    question = chat("What does the screen say?", picture, max_tokens=4, user="alice")
    status, first = await call(http, server, question, key=KEY_A)
    assert status == 200
    held = engine._kv.sessions()
    assert len(held) == 1 and held[0][1] == "alice"
    # Key B sends the same conversation under the same `user`: no reuse, so no timing oracle either.
    status, _ = await call(http, server, question, key=KEY_B)
    assert status == 200
    seen_b = hook.prefill[list(hook.prefill)[-1]]
    assert seen_b["cached_tokens"] == 0 and seen_b["feature_hits"] == 0
    # Key B cannot release key A's conversation.
    status, _ = await call(http, server, b"", key=KEY_B, method="DELETE", path="/v1/vlmbot/sessions/alice")
    assert status == 204
    assert held[0] in engine._kv.sessions()
    # Key A's follow-up still reuses its own cache; then A releases it.
    follow = {"messages": [*question["messages"], {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                           {"role": "user", "content": "And?"}], "max_tokens": 2, "user": "alice"}
    status, _ = await call(http, server, follow, key=KEY_A)
    assert status == 200 and hook.prefill[list(hook.prefill)[-1]]["cached_tokens"] > 0
    status, _ = await call(http, server, b"", key=KEY_A, method="DELETE", path="/v1/vlmbot/sessions/alice")
    assert status == 204 and held[0] not in engine._kv.sessions()


# --- finding 8: malformed input on every route ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
        (b'{"messages": [{"role": [], "content": "hi"}]}', "messages[0].role"),
        (b'{"messages": [{"role": {"a": 1}, "content": "hi"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', None),
        (b"\xff\xfe\x00garbage", None),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content"),
        (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfffb"}]}]}', "messages[0].content[0].text"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "user": "\\ud83d"}', "user"),
        (b'{"messages": [{"role": "user", "content": [{"type": ["text"]}]}]}', "messages[0].content[0].type"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": ["x"]}}]}]}',
         "messages[0].content[0].image_url.url"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,\\u00e9"}]}]}',
         "messages[0].content[0].image_url.url"),
        (b'{"model": ["x"], "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (b"[]", None),
        (b"", None),
        (b"null", None),
    ],
    ids=["deep-array", "deep-messages", "role-list", "role-dict", "latin-1", "utf-16-garbage", "lone-surrogate",
         "lone-surrogate-part", "surrogate-user", "type-list", "url-list", "url-non-ascii", "model-list",
         "content-number", "array", "empty", "null"],
)
async def test_malformed_chat_requests_are_json_400(server: RunningServer, http: aiohttp.ClientSession, raw: bytes, param: str | None) -> None:
    status, body = await call(http, server, raw)
    assert_refused(status, body, None, param)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/nothing-here", 404),
        ("GET", "/nothing-here", 404),
        ("PUT", "/v1/chat/completions", 405),
        ("POST", "/v1/models", 405),
        ("POST", "/health", 405),
        ("GET", "/v1/vlmbot/sessions/x", 405),
    ],
)
async def test_unknown_routes_and_methods_are_json(
    server: RunningServer, http: aiohttp.ClientSession, method: str, path: str, expected: int
) -> None:
    status, body = await call(http, server, b"{}", method=method, path=path)
    assert_refused(status, body, expected=expected)


async def test_odd_but_valid_input_on_the_other_routes(server: RunningServer, http: aiohttp.ClientSession) -> None:
    for session in ("%FF%FE", "%ED%A0%80", "a" * 5000, "..%2F..%2Fetc"):
        status, _ = await call(http, server, b"\xff", key=KEY_A, method="DELETE", path=f"/v1/vlmbot/sessions/{session}")
        assert status == 204
    status, body = await call(http, server, b"\xff", method="GET", path="/v1/models")
    assert status == 200 and body["data"]
    headers = {"Authorization": "Bearer k\u00e9y".encode().decode("latin-1")}
    async with http.get(f"{server.url}/models", headers=headers) as response:
        assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_api_key"
