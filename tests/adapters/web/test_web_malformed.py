"""Malformed requests to every /api route get a JSON 4xx, never a 500 (issue 11, finding 8).

Before: 100k-deep JSON was a plain-text 500 (RecursionError), a lone surrogate reached the database
and failed the answer after the stream had started, UTF-16 bodies were accepted, a turn id too big
for the database and an unparseable Origin were 500s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.adapters.web.conftest import Browser, new_thread, running_web
from tests.adapters.web.test_web_api import ask_with_picture

ADMIN = "admin-token-0123456789"
DEEP = b"[" * 100_000 + b"]" * 100_000

BODIES: dict[str, bytes] = {
    "deep-100k": DEEP,
    "deep-in-a-field": b'{"text": ' + DEEP + b', "title": ' + DEEP + b', "token": ' + DEEP + b"}",
    "deep-objects": b'{"a":' * 500 + b"1" + b"}" * 500,
    "not-utf-8": b'{"text": "\xff\xfe caf\xe9", "title": "\xc3", "token": "\x80"}',
    "utf-16": '{"text": "hi", "title": "x", "token": "y"}'.encode("utf-16"),
    "utf-8-bom": b'\xef\xbb\xbf{"text": "hi"}',
    "lone-surrogates": b'{"text": "\\ud800", "title": "a\\udfffb", "token": "\\ud83d"}',
    "surrogate-key": b'{"\\ud800": 1, "text": "hi", "title": "x", "token": "y"}',
    "nan": b'{"text": NaN, "title": Infinity, "token": -Infinity}',
    "list": b"[1, 2]",
    "string": b'"text"',
    "null": b"null",
    "number": b"1e999999",
    "truncated": b'{"text": "hi',
    "binary": bytes(range(256)),
    "nul-bytes": b'{"text": "a\\u0000b", "title": "a\\u0000b", "token": "a\\u0000b"}',
}
WRONG_TYPES: list[Any] = [None, True, 0, -1.5, 10**400, [], {}, ["x"], {"text": "x"}, [None]]
FIELDS = {"login": ["token"], "rename": ["title"], "ask-json": ["text", "refs"]}


@pytest.fixture
async def site(service_factory: Any, browsers: Any) -> AsyncIterator[tuple[Browser, dict[str, tuple[str, str]]]]:
    async with service_factory() as service, running_web(service, web_admin_token=ADMIN) as adapter:
        async with browsers(adapter.url) as browser:
            thread = new_thread()
            view = await ask_with_picture(browser, thread)
            session, turn = view["session"]["id"], view["turns"][0]["id"]
            sha = view["turns"][0]["images"][0]
            routes = {
                "me": ("GET", "/api/me"),
                "login": ("POST", "/api/login"),
                "logout": ("POST", "/api/logout"),
                "sessions": ("GET", "/api/sessions"),
                "session": ("GET", f"/api/sessions/{session}"),
                "rename": ("PATCH", f"/api/sessions/{session}"),
                "remove-turn": ("DELETE", f"/api/sessions/{session}/turns/{turn}"),
                "export": ("GET", f"/api/sessions/{session}/export"),
                "image": ("GET", f"/api/sessions/{session}/images/{sha}"),
                "thread": ("GET", f"/api/threads/{thread}"),
                "ask-json": ("POST", f"/api/threads/{new_thread()}/messages"),
                "clear": ("POST", f"/api/threads/{new_thread()}/clear"),
                "admin-sessions": ("GET", "/api/admin/sessions"),
                "admin-session": ("GET", f"/api/admin/sessions/{session}"),
                "admin-export": ("GET", f"/api/admin/sessions/{session}/export"),
                "admin-image": ("GET", f"/api/admin/sessions/{session}/images/{sha}"),
            }
            yield browser, routes


async def send(browser: Browser, method: str, path: str, body: bytes, content_type: str = "application/json",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {ADMIN}", **(headers or {})}
    if method != "GET":
        headers = browser.headers(headers)
    async with browser.http.request(method, f"{browser.base}{path}", data=body, headers=headers) as response:
        raw = await response.read()
        if response.status == 200 and response.content_type == "image/png":
            return response.status, {}  # the picture routes ignore bodies
        assert response.content_type == "application/json", (method, path, response.status, raw[:200])
        answer = json.loads(raw)
        return response.status, answer


def _reads_a_body(name: str) -> bool:
    return name in FIELDS


async def test_malformed_bodies_on_every_route(site: Any) -> None:
    browser, routes = site
    for route, (method, path) in routes.items():
        for label, body in BODIES.items():
            status, answer = await send(browser, method, path, body)
            assert status < 500, (route, label, status, answer)
            if _reads_a_body(route):
                assert 400 <= status < 500, (route, label, status, answer)
                assert answer["error"] and "\n" not in answer["error"], (route, label, answer)


async def test_wrong_types_in_every_json_field(site: Any) -> None:
    browser, routes = site
    for route, fields in FIELDS.items():
        method, path = routes[route]
        for field in fields:
            for value in WRONG_TYPES:
                if field == "refs" and value == []:
                    continue  # no earlier pictures: a valid question
                body = json.dumps({field: value}).encode() if value != 10**400 else f'{{"{field}": {value}}}'.encode()
                status, answer = await send(browser, method, path, body)
                assert 400 <= status < 500, (route, field, value, status, answer)
                assert "\n" not in answer["error"]
    method, path = routes["ask-json"]
    for refs in (["\ud800"], ["x" * 10_000], [f"{'0' * 36}/{'0' * 64}"] * 1000):
        body = json.dumps({"text": "hi", "refs": refs}).encode()
        status, answer = await send(browser, method, path, body)
        assert 400 <= status < 500, (refs[:1], status, answer)


async def test_malformed_forms_paths_and_headers(site: Any) -> None:
    browser, routes = site
    ask = routes["ask-json"][1]
    forms = [
        (b"text=%ff%fe&ref=%ff", "application/x-www-form-urlencoded; charset=no-such-charset"),
        (b"text=hi", "application/x-www-form-urlencoded; charset=utf-16"),
        (b"--x\r\nContent-Disposition: form-data; name=text\r\n\r\nhi\r\n--x--\r\n", "multipart/form-data"),
        (b"--x\r\nContent-Disposition: form-data; name=text\r\n\r\nhi\r\n--x--\r\n", "multipart/form-data; boundary=\u00e9"),
        (b"--x\r\nContent-Disposition: form-data; name=text\r\n\r\nhi", "multipart/form-data; boundary=x"),
        (b"no boundary anywhere", "multipart/form-data; boundary=x"),
        (b"--x\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y--\r\n--x--\r\n", "multipart/form-data; boundary=x"),
        (b"--x\r\n" + b"X-Junk: a\r\n" * 500 + b"\r\nhi\r\n--x--\r\n", "multipart/form-data; boundary=x"),
        (b"--x\r\nContent-Disposition: form-data; name=file; filename=\"a\xff.png\"\r\nContent-Type: image/png\r\n\r\n"
         b"\x89PNG\r\n--x--\r\n", "multipart/form-data; boundary=x"),
        (b"text=hi", "text/plain"),
    ]
    for body, content_type in forms:
        status, answer = await send(browser, "POST", ask, body, content_type)
        assert 400 <= status < 500, (content_type, body[:40], status, answer)
    session = routes["session"][1]
    for path, refused in (
        (f"{session}/turns/{'9' * 30}", True),  # too big for a database integer
        (f"{session}/turns/-1", True),
        (f"{session}/turns/%EF%BC%91", True),  # a fullwidth 1, which int() would take
        ("/api/sessions/%ED%A0%80", True),
        ("/api/threads/%ff%fe", True),
        ("/api/threads/abcdef%0A", True),  # a trailing newline, which a regex's $ lets through
        (f"{session}%0A", True),
        ("/api/threads/" + "a" * 5000, True),
        ("/api/admin/sessions?platform=%00", True),
        ("/api/admin/sessions?search=%ED%A0%80%ff%00", False),  # decoded with replacement characters: a search
        ("/api/admin/sessions?search=" + "x" * 7000, False),
    ):
        method = "DELETE" if "/turns/" in path else "GET"
        status, answer = await send(browser, method, path, b"")
        assert (400 <= status < 500) if refused else status < 500, (path, status, answer)
    for headers in (
        {"Origin": "http://[::1"},
        {"Origin": "http://\u00e9xample"},
        {"Cookie": "vlmbot_client=\u00e9\u00e9; vlmbot_auth=" + "x" * 4000},
        {"Authorization": "Bearer \u00ff\u00fe"},
        {"Authorization": "Bearer"},
        {"X-CSRF-Token": "\u00e9" * 30},
    ):
        status, answer = await send(browser, "POST", routes["clear"][1], b"", headers=headers)
        assert status < 500, (headers, status, answer)
