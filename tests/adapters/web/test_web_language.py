"""The web chat speaks the browser's language (Accept-Language, q-values weighed), over real HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from adapters.web import WebAdapter
from adapters.web.page_words import PAGE_WORDS, page_words
from bot.i18n import speaking
from bot.language import Language
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


# --- the page's own words ----------------------------------------------------------------------------

STATIC = Path(__file__).resolve().parents[3] / "adapters" / "web" / "static"


class _MarkedWords(HTMLParser):
    """The words index.html marks for translation: data-i18n texts and data-i18n-attrs attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self._text_of: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in (values.get("data-i18n-attrs") or "").split():
            self.words.append(values.get(name) or "")
        if tag not in ("input", "meta", "link", "br", "img"):
            self._text_of.append("data-i18n" in values)

    def handle_endtag(self, tag: str) -> None:
        if self._text_of:
            self._text_of.pop()

    def handle_data(self, data: str) -> None:
        if self._text_of and self._text_of[-1] and data.strip():
            self.words.append(data.strip())


def test_every_word_the_page_shows_is_translatable() -> None:
    parser = _MarkedWords()
    parser.feed((STATIC / "index.html").read_text())
    in_page = set(parser.words)
    in_script = set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', (STATIC / "app.js").read_text()))
    assert len(in_page) > 20 and len(in_script) > 20
    assert in_page | in_script == set(PAGE_WORDS), (in_page | in_script) ^ set(PAGE_WORDS)
    with speaking(Language.ZH):
        words = page_words()
    assert words["Send"] == "发送" and words["I can look at {count} pictures at a time."] == "我一次最多只能看 {count} 张图片。"


async def test_the_page_gets_its_words_in_the_browsers_language(web: WebAdapter, browsers: Any) -> None:
    async with browsers(web.url, headers=CHINESE) as chinese, browsers(web.url, headers=ENGLISH) as english:
        assert chinese.me["language"] == "zh" and chinese.me["words"]["Send"] == "发送"
        assert chinese.me["words"]["Drop pictures to attach them"] == "拖放图片即可附加"
        assert english.me["language"] == "en" and english.me["words"] == {}


async def test_api_errors_are_in_the_browsers_language(web: WebAdapter, browsers: Any) -> None:
    """Review finding 9: a malformed body, a bad vote, an unknown route and a missing CSRF token are
    JSON 4xx errors in Chinese for a Chinese browser (and stay English for an English one)."""
    async with browsers(web.url, headers=CHINESE) as chinese, browsers(web.url, headers=ENGLISH) as english:
        thread = new_thread()
        status, events = await chinese.ask(thread, "What colour?", files=[("red.png", RED, "image/png")])
        assert status == 200 and isinstance(events, list)
        [answer] = [data for name, data in events if name == "answer"]
        status, view = await chinese.get(f"/api/threads/{thread}")
        session = view["session"]["id"]

        json_type = {"Content-Type": "application/json"}
        status, body = await chinese.request("PATCH", f"/api/sessions/{session}", data=b'{"title": ', headers=json_type)
        assert (status, body) == (400, {"error": "请求体不是有效的 JSON。"})
        status, body = await chinese.request("PATCH", f"/api/sessions/{session}", json={"title": 5})
        assert (status, body) == (400, {"error": "“title”必须是字符串。"})
        vote = f"/api/sessions/{session}/turns/{answer['turn_id']}/vote"
        status, body = await chinese.request("POST", vote, json={"vote": "sideways"})
        assert (status, body) == (400, {"error": "“vote”必须是“up”或“down”。"})
        status, body = await chinese.get("/api/no/such/route")
        assert (status, body) == (404, {"error": "这里什么也没有；请检查地址。"})
        status, body = await chinese.request("POST", f"/api/threads/{thread}/clear", headers={"X-CSRF-Token": "stale"})
        assert (status, body) == (403, {"error": "CSRF 令牌缺失或已过期；请刷新页面后重试。"})

        status, body = await english.request("POST", vote, json={"vote": "sideways"})
        assert status == 404  # another browser's session
        status, body = await english.get("/api/no/such/route")
        assert (status, body) == (404, {"error": "There is nothing here; check the address."})
        status, body = await english.request("POST", "/api/login", data=b"[1]", headers=json_type)
        assert (status, body) == (400, {"error": "The request body must be a JSON object."})
        status, body = await chinese.request("POST", "/api/login", data=b"[1]", headers=json_type)
        assert (status, body) == (400, {"error": "请求体必须是 JSON 对象。"})
