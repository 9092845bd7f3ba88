"""Fuzzing the web chat's request parsing with hypothesis, bounded for CI (issue 11).

The parsers alone (JSON bodies, identity cookies) take many examples; the running chat takes fewer,
each a real HTTP request with an arbitrary body, content type and field values. Every answer must
be a JSON 4xx (or a real answer for a valid question), never a 500. Examples are derandomized (CI
does not draw new inputs on every run) and nothing is written to an example database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.web.bodies import MAX_DEPTH, parse_json_object
from adapters.web.errors import ApiError
from adapters.web.identity import Identities
from tests.adapters.web.conftest import Browser, new_thread, running_web
from tests.conftest import picture_bytes

PARSERS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
OVER_HTTP = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as JSON can carry it: any character, lone surrogates, NUL and BOMs included.
# (lists joined, not st.text: st.text leaves surrogates out even when its alphabet has them)
CHARACTERS = st.characters() | st.characters(categories=["Cs"]) | st.sampled_from("\x00\ufeff\u2028")
TEXT = st.lists(CHARACTERS, max_size=24).map("".join)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=16
)
FIELDS = st.sampled_from(["text", "refs", "title", "token", "x"])
OBJECTS = st.dictionaries(FIELDS, VALUES, max_size=4) | st.dictionaries(TEXT, VALUES, max_size=3)


def encoded(value: Any, ascii_only: bool) -> bytes:
    # ensure_ascii=False keeps surrogates raw: "surrogatepass" then makes bytes that are not UTF-8.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "mutated", "deep", "binary"]))
    if kind == "binary":
        return draw(st.binary(max_size=512))
    if kind == "deep":
        depth = draw(st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 2_000, 100_000]) | st.integers(1, 5_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"text":', b"}")]))
        return opener * depth + b"1" + closer * depth
    body = encoded(draw(OBJECTS if draw(st.integers(0, 3)) else VALUES), draw(st.booleans()))
    if kind == "mutated" and body:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at + draw(st.integers(0, 3)) :]
    return body


# --- the parsers alone -------------------------------------------------------------------------


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    return True


@PARSERS
@given(bodies())
def test_json_bodies_parse_to_a_storable_object_or_a_400(raw: bytes) -> None:
    try:
        body = parse_json_object(raw)
    except ApiError as exc:
        assert exc.status == 400 and exc.message and "\n" not in exc.message
        return
    assert isinstance(body, dict) and _storable(body)
    depth, stack = 0, [(body, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    assert depth <= MAX_DEPTH


IDENTITIES = Identities(b"k" * 32)
ISSUED = IDENTITIES.issue()


@PARSERS
@given(st.one_of(TEXT, st.text(max_size=120), st.builds(lambda i, c: ISSUED[:i] + c + ISSUED[i + 1 :],
                                                       st.integers(0, len(ISSUED) - 1), st.characters())))
def test_only_issued_identity_cookies_are_identities(cookie: str) -> None:
    user = IDENTITIES.user_id(cookie)
    assert user is None or cookie == ISSUED
    assert IDENTITIES.user_id(ISSUED) is not None


# --- the running chat ---------------------------------------------------------------------------

ADMIN = "admin-token-0123456789"
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 4
    + ["multipart/form-data; boundary=b"] * 2
    + [
        "application/json; charset=utf-16",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/x-www-form-urlencoded; charset=no-such",
        "multipart/form-data",
        "multipart/form-data; boundary=\"\"",
        "text/plain",
        "",
        ";;=; boundary",
    ]
)


@pytest.fixture
async def chat(service_factory: Any, browsers: Any) -> AsyncIterator[tuple[Browser, dict[str, tuple[str, str]]]]:
    async with service_factory(max_new_tokens=1) as service, running_web(service, web_admin_token=ADMIN) as adapter:
        async with browsers(adapter.url) as browser:
            thread = new_thread()
            status, _ = await browser.ask(thread, "First", files=[("a.png", picture_bytes(), "image/png")])
            assert status == 200
            view = (await browser.get(f"/api/threads/{thread}"))[1]
            session, turn = view["session"]["id"], view["turns"][0]["id"]
            routes = {
                "login": ("POST", "/api/login"),
                "logout": ("POST", "/api/logout"),
                "rename": ("PATCH", f"/api/sessions/{session}"),
                "remove": ("DELETE", f"/api/sessions/{session}/turns/{turn}"),
                "ask": ("POST", f"/api/threads/{new_thread()}/messages"),
                "clear": ("POST", f"/api/threads/{new_thread()}/clear"),
                "admin": ("GET", "/api/admin/sessions"),
                "me": ("GET", "/api/me"),
            }
            yield browser, routes


@st.composite
def multipart(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["text", "ref", "file", "other", ""]))
        headers = f'Content-Disposition: form-data; name="{name}"'
        if name == "file" or draw(st.booleans()):
            headers += f'; filename="{draw(st.text(max_size=8))}"'
            headers += "\r\nContent-Type: " + draw(st.sampled_from(["image/png", "image/svg+xml", "text/html", "x/y"]))
        data = draw(st.binary(max_size=64) | st.sampled_from([picture_bytes(), b"\x89PNG\r\n\x1a\n"]))
        parts.append(b"--b\r\n" + headers.encode("utf-8", "surrogatepass") + b"\r\n\r\n" + data + b"\r\n")
    tail = draw(st.sampled_from([b"--b--\r\n", b"", b"--b", b"--c--\r\n"]))
    return b"".join(parts) + tail


Request = tuple[str, str, bytes, dict[str, str] | None]  # route, content type, body, query


@st.composite
def raw_requests(draw: st.DrawFn) -> Request:
    """Any route, any content type, any body: JSON, mutated JSON, deep nesting, bytes or multipart."""
    route = draw(st.sampled_from(["login", "logout", "rename", "remove", "ask", "ask", "clear", "admin", "me"]))
    query = draw(st.none() | st.dictionaries(st.sampled_from(["search", "platform"]), TEXT, max_size=2))
    return route, draw(CONTENT_TYPES), draw(bodies() | multipart()), query


@st.composite
def field_requests(draw: st.DrawFn) -> Request:
    """A route that reads a JSON body, with arbitrary values (mostly text) in the fields it reads."""
    route = draw(st.sampled_from(["login", "rename", "ask"]))
    field = {"login": "token", "rename": "title", "ask": "text"}[route]
    if draw(st.integers(0, 5)) == 0:  # the field nested deeper than any parser's recursion
        depth = draw(st.sampled_from([MAX_DEPTH + 1, 2_000, 100_000]))
        return route, "application/json", f'{{"{field}": '.encode() + b"[" * depth + b"]" * depth + b"}", None
    fields = {field: draw(TEXT if draw(st.integers(0, 3)) else VALUES)}
    if route == "ask" and draw(st.booleans()):
        fields["refs"] = draw(st.lists(TEXT, max_size=2) | VALUES)
    return route, "application/json", encoded(fields, draw(st.sampled_from([True, True, False]))), None


@OVER_HTTP
@given(case=raw_requests() | field_requests())
async def test_arbitrary_requests_get_json_and_never_a_500(chat: Any, case: Request) -> None:
    browser, routes = chat
    route, content_type, body, query = case
    method, path = routes[route]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if content_type:
        headers["Content-Type"] = content_type
    if method != "GET":
        headers = browser.headers(headers)
    async with browser.http.request(
        method, f"{browser.base}{path}", data=body, headers=headers, params=query, skip_auto_headers=["Content-Type"]
    ) as response:
        raw = await response.read()
        assert response.status < 500, (route, content_type, body[:80], raw[:200])
        if response.content_type == "text/event-stream":
            assert route == "ask" and response.status == 200 and raw.rstrip().endswith(b"data: {}")
            assert b"Something went wrong" not in raw, (body[:80], raw[:300])  # accepted, then failed
            return
        assert response.content_type == "application/json", (route, response.status, raw[:200])
        answer = json.loads(raw)
        if response.status >= 400:
            assert answer["error"] and "\n" not in answer["error"], answer
