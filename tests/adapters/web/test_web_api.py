"""Every endpoint of the web chat over real HTTP on loopback, against the tiny model."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from adapters import configured_adapters
from adapters.web import WebAdapter, WebConfigError
from adapters.web.adapter import parse_listen
from bot.messages import Attachment, IncomingMessage
from bot.wording import queued as queued_text
from tests.adapters.web.conftest import Browser, new_thread, running_web
from tests.bot.test_pictures import huge_png_header
from tests.conftest import picture_bytes
from tests.engine.test_local_engine import record_hook, slow_hook

MAX_BYTES = 300_000
RED = picture_bytes(color=(220, 20, 20))
BLUE = picture_bytes(size=(120, 90), color=(20, 20, 220), fmt="JPEG")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/api/sessions")</script></svg>'


@pytest.fixture
async def web(service_factory: Any) -> AsyncIterator[tuple[Any, WebAdapter]]:
    async with service_factory(max_image_bytes=MAX_BYTES) as service, running_web(service) as adapter:
        yield service, adapter


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in events]


def payload(events: list[tuple[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    return next(data for event, data in events if event == name)


async def ask_with_picture(browser: Browser, thread: str, text: str = "What colour is this?") -> dict[str, Any]:
    status, events = await browser.ask(thread, text, files=[("red.png", RED, "image/png")])
    assert status == 200 and isinstance(events, list)
    assert names(events)[-2:] == ["answer", "done"], events
    status, view = await browser.get(f"/api/threads/{thread}")
    assert status == 200
    return view


# --- the page ------------------------------------------------------------------------------------


async def test_page_and_static_files_with_security_headers(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url, start=False) as browser:
        async with browser.http.get(adapter.url) as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            page = await response.text()
        assert '<script src="/static/app.js"' in page and "http" not in page.split("<body>")[0].replace("http-equiv", "")
        for name, kind in [("app.js", "text/javascript"), ("markdown.js", "text/javascript"), ("app.css", "text/css")]:
            async with browser.http.get(f"{adapter.url}static/{name}") as response:
                assert response.status == 200 and response.content_type == kind
        for bad in ("static/nope.js", "static/..%2Fadapter.py", "static/%2E%2E/__init__.py"):
            async with browser.http.get(f"{adapter.url}{bad}") as response:
                assert response.status == 404


async def test_me_issues_identity_and_csrf_and_lists_presets(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as browser:
        me = browser.me
        assert me["authenticated"] is True and me["admin"] is False and me["token_required"] is False
        assert me["user"].startswith("b-") and len(me["csrf"]) >= 16
        cookies = {c.key: c for c in browser.http.cookie_jar}
        assert cookies["vlmbot_client"]["httponly"] and cookies["vlmbot_client"]["samesite"] == "Strict"
        assert cookies["vlmbot_csrf"]["samesite"] == "Strict"
        assert me["user"] not in cookies["vlmbot_client"].value  # the owner id is a hash of the cookie
        assert [p["label"] for p in me["presets"]] == [
            "Read the text", "Table to Markdown", "Describe", "Screenshot to HTML", "Locate an object"
        ]
        assert me["limits"] == {"max_image_bytes": MAX_BYTES, "max_images": 8}
        again = await browser.start()
        assert again["user"] == me["user"] and again["csrf"] == me["csrf"]  # stable per browser


# --- asking ---------------------------------------------------------------------------------------


async def test_question_streams_and_follow_up_sees_the_picture(web: Any, browsers: Any) -> None:
    service, adapter = web
    calls: list[dict[str, Any]] = []
    service.engine.generate_hook = record_hook(calls)
    async with browsers(adapter.url) as browser:
        thread = new_thread()
        status, events = await browser.ask(thread, "What colour is this?", files=[("red.png", RED, "image/png")])
        assert status == 200
        assert names(events)[0] in ("status", "generating") and "delta" in names(events)
        answer = payload(events, "answer")
        deltas = "".join(data["text"] for name, data in events if name == "delta")
        assert answer["text"] == deltas.strip() and answer["output_tokens"] > 0 and answer["turn_id"] > 0
        status, events = await browser.ask(thread, "And what shape is it?")
        assert names(events)[-2:] == ["answer", "done"]
        assert int(calls[-1]["image_grid_thw"].shape[0]) == 1  # the follow-up still sees the picture

        status, view = await browser.get(f"/api/threads/{thread}")
        assert status == 200
        assert [t["text"] for t in view["turns"]] == ["What colour is this?", "And what shape is it?"]
        assert [t["status"] for t in view["turns"]] == ["done", "done"]
        assert len(view["turns"][0]["images"]) == 1 and view["session"]["thread"] == thread
        assert view["session"]["label"] == "What colour is this?"

        status, listing = await browser.get("/api/sessions")
        assert [s["id"] for s in listing["sessions"]] == [view["session"]["id"]]
        status, detail = await browser.get(f"/api/sessions/{view['session']['id']}")
        assert detail["turns"] == view["turns"]

        status, empty = await browser.get(f"/api/threads/{new_thread()}")
        assert status == 200 and empty == {"session": None, "turns": []}


async def test_pictures_without_question_json_questions_and_commands(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as browser:
        thread = new_thread()
        status, events = await browser.ask(thread, "", files=[("blue.jpg", BLUE, "image/jpeg")])
        assert events[0] == ("text", {"text": "Got it - what would you like to know?", "kind": "info"})
        status, events = await browser.request("POST", f"/api/threads/{thread}/messages", json={"text": "Which colour?"})
        assert status == 200 and b"event: answer" in events
        status, events = await browser.ask(thread, "/help")
        assert "/clear" in payload(events, "text")["text"]
        status, events = await browser.ask(thread, "/export")
        document = payload(events, "document")
        assert document["mime_type"] == "application/json"
        exported = json.loads(base64.b64decode(document["data"]))
        assert [t["user_input"] for t in exported["turns"]] == ["", "Which colour?"]
        status, events = await browser.ask(thread, "/name Blue photo")
        assert "Blue photo" in payload(events, "text")["text"]
        status, view = await browser.get(f"/api/threads/{thread}")
        assert view["session"]["title"] == "Blue photo"


async def test_clicking_an_earlier_picture_attaches_it_again(web: Any, browsers: Any) -> None:
    service, adapter = web
    async with browsers(adapter.url) as browser:
        first = await ask_with_picture(browser, new_thread())
        sha = first["turns"][0]["images"][0]
        session_id = first["session"]["id"]
        other_thread = new_thread()
        status, events = await browser.ask(other_thread, "Same picture?", refs=[f"{session_id}/{sha}"])
        assert names(events)[-2:] == ["answer", "done"]
        status, view = await browser.get(f"/api/threads/{other_thread}")
        assert view["turns"][0]["images"] == [sha]
        status, body = await browser.ask(other_thread, "x", refs=[f"{session_id}/{'0' * 64}"])
        assert status == 404 and "not in your conversations" in body["error"]
        status, body = await browser.ask(other_thread, "x", refs=["not-a-ref"])
        assert status == 400


async def test_queue_position_while_waiting(service_factory: Any, browsers: Any) -> None:
    async with (
        service_factory(batch_size=1, max_new_tokens=12, queue_notice_delay_s=0.0) as service,
        running_web(service) as adapter,
    ):
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05)
        engine = service.engine

        async def until(check: Any) -> None:
            for _ in range(200):
                if check():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("timed out")

        async with browsers(adapter.url) as a, browsers(adapter.url) as b, browsers(adapter.url) as c:
            first = asyncio.create_task(a.ask(new_thread(), "One?", files=[("red.png", RED, "image/png")]))
            await until(lambda: engine.health().running == 1)
            second = asyncio.create_task(b.ask(new_thread(), "Two?"))
            await until(lambda: engine.health().queue_depth >= 1)
            third = asyncio.create_task(c.ask(new_thread(), "Three?"))
            results = [await first, await second, await third]
        queued = [[(i, d) for i, (n, d) in enumerate(events) if n == "status" and d["kind"] == "queued"]
                  for _, events in results]
        positions = [[d["position"] for _, d in q] for q in queued]
        assert positions[1][0] == 1 and positions[2][0] == 2, positions  # the third waited behind two
        assert queued[2][0][1]["text"] == queued_text(2)  # worded by the core
        for (_, events), waits in zip(results, queued):
            assert names(events)[-2:] == ["answer", "done"]
            assert not waits or names(events).index("generating") > waits[-1][0]


async def test_closing_the_stream_stops_the_answer(service_factory: Any, browsers: Any) -> None:
    async with service_factory(max_new_tokens=400) as service, running_web(service) as adapter:
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05)
        async with browsers(adapter.url) as browser:
            form = aiohttp.FormData()
            form.add_field("text", "Write a long story.")
            thread = new_thread()
            async with browser.http.post(
                f"{browser.base}/api/threads/{thread}/messages", data=form, headers=browser.headers()
            ) as response:
                async for line in response.content:
                    if line.startswith(b"event: delta"):
                        break
                response.close()  # the browser's Stop button
            for _ in range(100):
                status, view = await browser.get(f"/api/threads/{thread}")
                if view["turns"][0]["status"] != "pending":
                    break
                await asyncio.sleep(0.1)
            assert view["turns"][0]["status"] == "interrupted"
            assert service.engine.health().running == 0


# --- rename, remove a turn, export, clear ------------------------------------------------------


async def test_rename_remove_export_clear(web: Any, browsers: Any) -> None:
    service, adapter = web
    async with browsers(adapter.url) as browser:
        thread = new_thread()
        await ask_with_picture(browser, thread)
        status, events = await browser.ask(thread, "Second question")
        view = (await browser.get(f"/api/threads/{thread}"))[1]
        session_id = view["session"]["id"]
        first_id, second_id = (t["id"] for t in view["turns"])

        status, body = await browser.request("PATCH", f"/api/sessions/{session_id}", json={"title": "  Red   thing "})
        assert status == 200 and body["session"]["title"] == "Red thing" and body["session"]["label"] == "Red thing"
        status, body = await browser.request("PATCH", f"/api/sessions/{session_id}", json={"title": "   "})
        assert status == 400
        status, body = await browser.request("PATCH", f"/api/sessions/{session_id}", data=b"{not json")
        assert status == 400

        status, body = await browser.request("DELETE", f"/api/sessions/{session_id}/turns/{second_id}")
        assert status == 200 and body == {"removed": second_id}
        view = (await browser.get(f"/api/threads/{thread}"))[1]
        assert [t["id"] for t in view["turns"]] == [first_id]
        for missing in (second_id, 999_999, "abc"):
            status, body = await browser.request("DELETE", f"/api/sessions/{session_id}/turns/{missing}")
            assert status == 404

        status, raw = await browser.get(f"/api/sessions/{session_id}/export")
        assert status == 200
        exported = json.loads(raw) if isinstance(raw, bytes) else raw
        assert exported["name"] == "Red thing" and exported["platform"] == "web"
        assert [(t["id"], t["in_context"]) for t in exported["turns"]] == [(first_id, True), (second_id, False)]
        async with browser.http.get(f"{browser.base}/api/sessions/{session_id}/export") as response:
            assert response.headers["Content-Disposition"] == f'attachment; filename="vlmbot-session-{session_id[:8]}.json"'

        status, body = await browser.request("POST", f"/api/threads/{thread}/clear")
        assert status == 200 and body["message"].startswith("Cleared")
        status, view = await browser.get(f"/api/threads/{thread}")
        assert view == {"session": None, "turns": []}
        status, listing = await browser.get("/api/sessions")
        assert [(s["id"], s["status"]) for s in listing["sessions"]] == [(session_id, "archived")]
        status, detail = await browser.get(f"/api/sessions/{session_id}")
        assert status == 200 and [t["id"] for t in detail["turns"]] == [first_id]  # history kept, read-only
        await ask_with_picture(browser, thread, "Fresh start?")
        status, listing = await browser.get("/api/sessions")
        assert len(listing["sessions"]) == 2


async def exported_votes(browser: Browser, session_id: str) -> list[tuple[str, str]]:
    """(user, vote) of the first turn in the session's /export."""
    status, exported = await browser.get(f"/api/sessions/{session_id}/export")
    assert status == 200
    return [(f["user"], f["vote"]) for f in exported["turns"][0]["feedback"]]


async def test_votes_on_answers_are_changeable_and_shown_again(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as alice, browsers(adapter.url) as bob:
        thread = new_thread()
        view = await ask_with_picture(alice, thread)
        session_id, turn_id = view["session"]["id"], view["turns"][0]["id"]
        assert view["turns"][0]["vote"] is None
        path = f"/api/sessions/{session_id}/turns/{turn_id}/vote"

        status, body = await alice.request("POST", path, json={"vote": "down"})
        assert status == 200 and body["vote"] == "down" and body["outcome"] == "recorded"
        assert "not helpful" in body["message"]
        status, body = await alice.request("POST", path, json={"vote": "down"})
        assert status == 200 and body["outcome"] == "unchanged"
        status, body = await alice.request("POST", path, json={"vote": "up"})
        assert status == 200 and body == {
            "turn_id": turn_id, "vote": "up", "outcome": "changed", "message": "Changed your vote: marked as helpful."
        }
        # The reloaded session and the thread show Alice's current vote; the export lists it once.
        for view_path in (f"/api/threads/{thread}", f"/api/sessions/{session_id}"):
            assert [t["vote"] for t in (await alice.get(view_path))[1]["turns"]] == ["up"]
        assert await exported_votes(alice, session_id) == [(alice.me["user"], "up")]

        # Bob cannot vote on Alice's answer: not through her session, nor with her turn id in his own.
        bob_view = await ask_with_picture(bob, new_thread())
        bob_session = bob_view["session"]["id"]
        status, body = await bob.request("POST", path, json={"vote": "down"})
        assert status == 404 and body == {"error": "There is no such conversation here."}
        status, body = await bob.request("POST", f"/api/sessions/{bob_session}/turns/{turn_id}/vote", json={"vote": "down"})
        assert status == 404 and body == {"error": "There is no such answer in this conversation."}
        assert await exported_votes(alice, session_id) == [(alice.me["user"], "up")]

        # Malformed votes are one-line JSON 400s; odd turn ids are 404s; no CSRF token is a 403.
        for data in (b"{not json", b"[1]", b'{"vote": 1}', b'{"vote": "meh"}', b"{}", b'{"vote": "\\ud800"}', "é".encode("latin-1")):
            status, body = await alice.request("POST", path, data=data, headers={"Content-Type": "application/json"})
            assert status == 400 and isinstance(body["error"], str), (data, status, body)
        status, body = await alice.request("POST", path, json={"vote": "u" * 100})
        assert status == 413
        for turn in ("abc", "0x1", "9" * 16, "999999"):
            status, body = await alice.request("POST", f"/api/sessions/{session_id}/turns/{turn}/vote", json={"vote": "up"})
            assert status == 404 and "error" in body, turn
        async with alice.http.post(f"{alice.base}{path}", json={"vote": "down"}, headers={"Origin": alice.base}) as response:
            assert response.status == 403 and "error" in await response.json()
        assert [t["vote"] for t in (await alice.get(f"/api/threads/{thread}"))[1]["turns"]] == ["up"]


async def test_only_final_answers_take_a_vote(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as browser:
        thread = new_thread()
        status, _ = await browser.ask(thread, files=[("red.png", RED, "image/png")])  # a picture, no question
        assert status == 200
        view = (await browser.get(f"/api/threads/{thread}"))[1]
        turn = view["turns"][0]
        assert turn["status"] == "attached"
        status, body = await browser.request(
            "POST", f"/api/sessions/{view['session']['id']}/turns/{turn['id']}/vote", json={"vote": "up"}
        )
        assert status == 409 and body == {"error": "Only a finished answer can take a vote."}


async def test_a_pending_turn_cannot_be_removed(service_factory: Any, browsers: Any) -> None:
    async with service_factory(max_new_tokens=200) as service, running_web(service) as adapter:
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05)
        async with browsers(adapter.url) as browser:
            thread = new_thread()
            asking = asyncio.create_task(browser.ask(thread, "Long?", files=[("red.png", RED, "image/png")]))
            for _ in range(100):
                view = (await browser.get(f"/api/threads/{thread}"))[1]
                if view["turns"]:
                    break
                await asyncio.sleep(0.05)
            turn = view["turns"][0]
            assert turn["status"] == "pending"
            status, body = await browser.request("DELETE", f"/api/sessions/{view['session']['id']}/turns/{turn['id']}")
            assert status == 409
            status, body = await browser.request("POST", f"/api/threads/{thread}/clear")
            assert status == 200
            status, events = await asking  # /clear stopped the answer where it was
            assert "answer" not in names(events) and names(events)[-1] == "done"
            [stopped] = await service.store.turns(view["session"]["id"])
            assert stopped.status == "cancelled"


# --- bad uploads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "status", "words"),
    [
        ([("broken.png", RED[:60], "image/png")], 400, "damaged"),
        ([("empty.png", b"", "image/png")], 400, "is empty"),
        ([("notes.txt", b"hello, not a picture", "text/plain")], 415, "not a picture"),
        ([("fake.png", b"hello, not a picture at all", "image/png")], 400, "not a file I can read"),
        ([("big.png", b"\x89PNG" + b"\x00" * (MAX_BYTES + 10), "image/png")], 413, "over the"),
        ([("bomb.png", huge_png_header(), "image/png")], 400, "too large to read"),
        ([(f"p{i}.png", RED, "image/png") for i in range(9)], 400, "at a time"),
        ([("logo.svg", SVG, "image/svg+xml")], 415, "SVG"),
        ([("logo.png", SVG, "image/png")], 400, "not a file I can read"),
        ([("page.html", b"<script>alert(1)</script>", "text/html")], 415, "not a picture"),
    ],
    ids=[
        "corrupt", "empty", "non-image", "image-named-text", "oversized", "decompression-bomb", "too-many",
        "svg", "svg-named-png", "html",
    ],
)
async def test_bad_uploads_are_refused_before_any_answer(
    web: Any, browsers: Any, files: list[tuple[str, bytes, str]], status: int, words: str
) -> None:
    service, adapter = web
    async with browsers(adapter.url) as browser:
        got, body = await browser.ask(new_thread(), "What is this?", files=files)
        assert got == status and isinstance(body, dict), body
        assert words in body["error"] and "\n" not in body["error"]
        assert await service.store.list_sessions(platform="web") == []  # nothing was stored


async def test_oversized_and_odd_requests(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as browser:
        thread = new_thread()
        huge = b"\x00" * (8 * MAX_BYTES + 2 * 1024 * 1024)
        status, body = await browser.request(
            "POST", f"/api/threads/{thread}/messages", data=huge, headers={"Content-Type": "multipart/form-data; boundary=x"}
        )
        assert status == 413
        status, body = await browser.ask(thread, "x" * 16_001)
        assert status == 413 and "too long" in body["error"]
        status, body = await browser.request("POST", f"/api/threads/{thread}/messages", data=b"text=hi")
        assert status == 415
        status, body = await browser.request("POST", f"/api/threads/{thread}/messages", data=b"[1]", headers={"Content-Type": "application/json"})
        assert status == 400
        status, body = await browser.ask("bad thread!", "Hi")
        assert status in (400, 404)
        status, body = await browser.get("/api/sessions/not-a-session")
        assert status == 404


# --- tokens, CSRF and other people's pictures ---------------------------------------------------


async def test_access_token_required_when_set(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_token="s3cret-token-value") as adapter:
        async with browsers(adapter.url) as browser:
            assert browser.me["authenticated"] is False and browser.me["token_required"] is True
            assert browser.me["user"] is None
            assert (await browser.get("/api/sessions"))[0] == 401
            status, body = await browser.ask(new_thread(), "Hi")
            assert status == 401 and "token" in body["error"]
            bearer = {"Authorization": "Bearer s3cret-token-value"}
            assert (await browser.get("/api/sessions", headers={"Authorization": "Bearer wrong"}))[0] == 401
            status, body = await browser.get("/api/sessions", headers=bearer)
            assert status == 401 and "identity" in body["error"]  # identities go only to allowed browsers
            assert (await browser.get("/api/me", headers=bearer))[1]["user"] is not None
            assert (await browser.get("/api/sessions", headers=bearer))[0] == 200
            assert (await browser.get("/api/sessions"))[0] == 401  # the identity alone is not a sign-in
            status, body = await browser.request("POST", "/api/login", json={"token": "wrong"})
            assert status == 401 and "not right" in body["error"]
            status, body = await browser.request("POST", "/api/login", json={})
            assert status == 400
            status, body = await browser.request("POST", "/api/login", json={"token": "s3cret-token-value"})
            assert status == 200 and body == {"authenticated": True, "admin": False}
            cookie = next(c for c in browser.http.cookie_jar if c.key == "vlmbot_auth")
            assert "s3cret" not in cookie.value and cookie["httponly"]
            assert (await browser.get("/api/sessions"))[0] == 200
            assert (await browser.start())["authenticated"] is True
            status, events = await browser.ask(new_thread(), "Hi")
            assert status == 200 and names(events)[-2:] == ["answer", "done"]
            await browser.request("POST", "/api/logout")
            assert (await browser.get("/api/sessions"))[0] == 401


async def test_cross_site_requests_are_refused(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as browser:
        path = f"{browser.base}/api/threads/{new_thread()}/clear"
        cases = [
            {},  # no CSRF header at all
            {"X-CSRF-Token": "wrong-token-wrong-token"},
            {"X-CSRF-Token": browser.csrf, "Origin": "https://evil.example"},
            {"X-CSRF-Token": browser.csrf, "Sec-Fetch-Site": "cross-site"},
        ]
        for headers in cases:
            async with browser.http.post(path, headers=headers) as response:
                assert response.status == 403, headers
                assert "refused" in (await response.json())["error"] or "CSRF" in (await response.json())["error"]
        async with browser.http.post(path, headers={"X-CSRF-Token": browser.csrf, "Sec-Fetch-Site": "same-origin"}) as response:
            assert response.status == 200
        # Behind a TLS reverse proxy: the page's origin is https://chat.example, forwarded as such.
        proxied = {"X-CSRF-Token": browser.csrf, "Origin": "https://chat.example", "X-Forwarded-Host": "chat.example"}
        async with browser.http.post(path, headers=proxied) as response:
            assert response.status == 200
        async with browser.http.post(path, headers={"X-CSRF-Token": browser.csrf, "Origin": "null"}) as response:
            assert response.status == 403
        # DNS rebinding: a page on another name that resolves to 127.0.0.1 is not served.
        async with browser.http.get(f"{browser.base}/api/me", headers={"Host": "evil.example:8080"}) as response:
            assert response.status == 403
        async with browser.http.get(browser.base + "/", headers={"Host": f"localhost:{adapter.url.rsplit(':', 1)[1]}"}) as response:
            assert response.status == 200


async def test_pictures_are_served_only_to_their_session(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as alice, browsers(adapter.url) as bob:
        view = await ask_with_picture(alice, new_thread())
        session_id, sha = view["session"]["id"], view["turns"][0]["images"][0]
        async with alice.http.get(f"{alice.base}/api/sessions/{session_id}/images/{sha}") as response:
            assert response.status == 200 and response.content_type == "image/png"
            assert await response.read() == RED and "private" in response.headers["Cache-Control"]
            # Opened as a document, an API answer runs nothing and has no origin of the chat's.
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in response.headers["Content-Security-Policy"]
        # Bob sees none of Alice's session, picture, export or turns, and cannot change them.
        bob_view = await ask_with_picture(bob, new_thread())
        bob_session = bob_view["session"]["id"]
        assert bob_view["turns"][0]["images"] == [sha]  # the same bytes, stored once
        for path in (
            f"/api/sessions/{session_id}",
            f"/api/sessions/{session_id}/export",
            f"/api/sessions/{session_id}/images/{sha}",
        ):
            assert (await bob.get(path))[0] == 404, path
        assert (await bob.request("PATCH", f"/api/sessions/{session_id}", json={"title": "mine"}))[0] == 404
        turn_id = view["turns"][0]["id"]
        assert (await bob.request("DELETE", f"/api/sessions/{session_id}/turns/{turn_id}"))[0] == 404
        assert (await bob.request("DELETE", f"/api/sessions/{bob_session}/turns/{turn_id}"))[0] == 404
        status, body = await bob.ask(new_thread(), "Steal?", refs=[f"{session_id}/{sha}"])
        assert status == 404
        # A picture that is in Bob's session is served to him through his own session only.
        assert (await bob.get(f"/api/sessions/{bob_session}/images/{sha}"))[0] == 200
        assert (await bob.get(f"/api/sessions/{bob_session}/images/{'a' * 64}"))[0] == 404
        # A browser without an identity cookie gets nothing.
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"{alice.base}/api/sessions/{session_id}/images/{sha}") as response:
                assert response.status == 401
        listing = (await bob.get("/api/sessions"))[1]["sessions"]
        assert [s["id"] for s in listing] == [bob_session]


# --- the operator view --------------------------------------------------------------------------


async def test_admin_browses_searches_and_exports_every_platform(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_admin_token="admin-token-123456") as adapter:
        conversations = service.conversations
        telegram = IncomingMessage(
            platform="telegram", thread_key="chat:42", user_id="7", text="Telegram invoice question",
            attachments=(Attachment(RED, "red.png"),),
        )
        async for _ in conversations.handle(telegram):
            pass
        slack = IncomingMessage(platform="slack", thread_key="T1:C1:1700.1", user_id="U1", text="Slack error dialog")
        async for _ in conversations.handle(slack):
            pass
        async with browsers(adapter.url) as user, browsers(adapter.url) as operator:
            await ask_with_picture(user, new_thread(), "Web question")
            assert (await user.get("/api/admin/sessions"))[0] == 401
            assert user.me["admin_available"] is True and user.me["admin"] is False

            status, body = await operator.request("POST", "/api/login", json={"token": "admin-token-123456"})
            assert status == 200 and body["admin"] is True
            assert (await operator.start())["admin"] is True
            status, body = await operator.get("/api/admin/sessions")
            assert status == 200
            assert sorted(s["platform"] for s in body["sessions"]) == ["slack", "telegram", "web"]
            status, body = await operator.get("/api/admin/sessions", params={"search": "invoice"})
            assert [s["platform"] for s in body["sessions"]] == ["telegram"]
            tg = body["sessions"][0]
            assert tg["thread"] == "chat:42" and tg["owner"] == "7" and tg["label"] == "Telegram invoice question"
            status, body = await operator.get("/api/admin/sessions", params={"platform": "slack"})
            assert [s["label"] for s in body["sessions"]] == ["Slack error dialog"]
            assert (await operator.get("/api/admin/sessions", params={"platform": "irc"}))[0] == 400

            status, detail = await operator.get(f"/api/admin/sessions/{tg['id']}")
            assert status == 200 and detail["read_only"] is True
            assert detail["turns"][0]["user"] == "7"
            sha = detail["turns"][0]["images"][0]
            async with operator.http.get(f"{operator.base}/api/admin/sessions/{tg['id']}/images/{sha}") as response:
                assert response.status == 200 and await response.read() == RED
            status, raw = await operator.get(f"/api/admin/sessions/{tg['id']}/export")
            exported = raw if isinstance(raw, dict) else json.loads(raw)
            assert exported["platform"] == "telegram" and exported["turns"][0]["user_input"] == "Telegram invoice question"
            # Read-only: the operator's own chat API does not reach other platforms' sessions.
            assert (await operator.get(f"/api/sessions/{tg['id']}"))[0] == 404
            assert (await operator.request("PATCH", f"/api/sessions/{tg['id']}", json={"title": "x"}))[0] == 404
            assert (await operator.request("POST", f"/api/admin/sessions/{tg['id']}"))[0] == 405
            # The bearer form works for scripts.
            async with aiohttp.ClientSession() as script:
                async with script.get(
                    f"{operator.base}/api/admin/sessions", headers={"Authorization": "Bearer admin-token-123456"}
                ) as response:
                    assert response.status == 200
            await operator.request("POST", "/api/logout")
            assert (await operator.get("/api/admin/sessions"))[0] == 401


async def test_admin_view_is_off_without_its_token(web: Any, browsers: Any) -> None:
    _, adapter = web
    async with browsers(adapter.url) as browser:
        assert browser.me["admin_available"] is False
        status, body = await browser.get("/api/admin/sessions")
        assert status == 404 and "VLMBOT_WEB_ADMIN_TOKEN" in body["error"]
        status, body = await browser.request("POST", "/api/login", json={"token": "anything"})
        assert status == 401


# --- binding and wiring ---------------------------------------------------------------------------


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9000") == ("", 9000)
    for bad in ("8080", "host:port", "127.0.0.1:70000"):
        with pytest.raises(WebConfigError):
            parse_listen(bad)


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", ":8080", "10.1.2.3:8080", "[::]:8080", "chat.intranet:80"])
async def test_refuses_to_listen_beyond_loopback_without_a_token(service_factory: Any, listen: str) -> None:
    async with service_factory() as service:
        settings = service.settings.model_copy(update={"web_listen": listen})
        with pytest.raises(WebConfigError, match="VLMBOT_WEB_TOKEN"):
            WebAdapter(settings, service.inbox)
        WebAdapter(settings.model_copy(update={"web_token": "a-long-random-token"}), service.inbox)


async def test_loopback_names_need_no_token_and_busy_port_is_reported(service_factory: Any) -> None:
    async with service_factory() as service:
        for listen in ("127.0.0.1:0", "localhost:0", "[::1]:0"):
            WebAdapter(service.settings.model_copy(update={"web_listen": listen}), service.inbox)
        async with running_web(service) as first:
            port = first.url.rsplit(":", 1)[1].strip("/")
            with pytest.raises(WebConfigError, match="cannot listen"):
                async with running_web(service, web_listen=f"127.0.0.1:{port}"):
                    pass


async def test_configured_adapters_include_the_web_chat_and_keep_the_console(service_factory: Any) -> None:
    async with service_factory() as service:
        on = service.settings.model_copy(update={"web_enabled": True, "web_listen": "127.0.0.1:0"})
        adapters = configured_adapters(on, service)
        assert [a.name for a in adapters] == ["console", "web"]
        off = service.settings.model_copy(update={"web_enabled": False})
        assert [a.name for a in configured_adapters(off, service)] == ["console"]
