"""The web chat speaks the browser's language (Accept-Language, q-values weighed), over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.web import WebAdapter
from tests.adapters.web.conftest import new_thread, running_web
from tests.conftest import picture_bytes

CHINESE = {"Accept-Language": "zh-CN,zh;q=0.9"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9,zh-CN;q=0.8"}
RED = picture_bytes(color=(220, 20, 20))


@pytest.fixture
async def web(service_factory: Any) -> AsyncIterator[WebAdapter]:
    async with service_factory() as service, running_web(service) as adapter:
        yield adapter


def texts(events: Any) -> list[str]:
    return [data["text"] for name, data in events if name == "text"]


async def test_a_chinese_and_an_english_browser(web: WebAdapter, browsers: Any) -> None:
    async with browsers(web.url, headers=CHINESE) as chinese, browsers(web.url, headers=ENGLISH) as english:
        thread = new_thread()
        status, events = await chinese.ask(thread, "", files=[("red.png", RED, "image/png")])
        assert status == 200 and texts(events) == ["收到——你想了解什么？"]
        status, events = await chinese.ask(thread, "/help")
        assert "命令：" in texts(events)[0]
        status, body = await chinese.request("POST", f"/api/threads/{thread}/clear")
        assert status == 200 and body["message"] == "已清空。下一条消息将开始新的对话。"
        labels = {p["id"]: p["label"] for p in chinese.me["presets"]}
        assert labels["ocr"] == "读取文字"
        status, body = await chinese.ask(new_thread(), "?", files=[("a.svg", b"<svg/>", "image/svg+xml")])
        assert status == 415 and body["error"] == "“a.svg”是 SVG 矢量图；请发送 PNG、JPEG 或 WebP 图片（截图即可）。"
        status, body = await chinese.request("PATCH", f"/api/sessions/{'0' * 8}-0000-0000-0000-{'0' * 12}", json={"title": "x"})
        assert status == 404 and body["error"] == "这里没有这个对话。"

        other = new_thread()
        status, events = await english.ask(other, "", files=[("red.png", RED, "image/png")])
        assert texts(events) == ["Got it - what would you like to know?"]
        assert {p["id"]: p["label"] for p in english.me["presets"]}["ocr"] == "Read the text"
        status, body = await english.ask(new_thread(), "?", files=[("a.svg", b"<svg/>", "image/svg+xml")])
        assert status == 415 and body["error"].startswith("'a.svg' is an SVG drawing")


async def test_a_browser_without_a_language_the_bot_speaks_gets_english(web: WebAdapter, browsers: Any) -> None:
    async with browsers(web.url, headers={"Accept-Language": "fr-FR,de;q=0.9"}) as browser:
        status, events = await browser.ask(new_thread(), "/undo")
        assert texts(events) == ["Nothing to undo."]


async def test_vlmbot_language_en_forces_english(service_factory: Any, browsers: Any) -> None:
    async with service_factory(language="en") as service, running_web(service) as adapter:
        async with browsers(adapter.url, headers=CHINESE) as browser:
            status, events = await browser.ask(new_thread(), "/undo")
            assert texts(events) == ["Nothing to undo."]
