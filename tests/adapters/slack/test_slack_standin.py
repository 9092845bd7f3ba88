"""The stand-in itself, driven by the real slack_sdk clients it stands in for."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.adapters.slack.slack_standin import LOGIN_PAGE, EventsSender, SlackStandIn


def client_for(slack: SlackStandIn, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token or slack.bot_token, base_url=slack.api_url)


async def test_auth_test_reports_granted_scopes(slack: SlackStandIn) -> None:
    slack.scopes.discard("files:read")
    resp = await client_for(slack).auth_test()
    assert resp["user_id"] == slack.bot_user_id
    granted = set(resp.headers["x-oauth-scopes"].split(","))
    assert "chat:write" in granted and "files:read" not in granted


async def test_bad_token_is_invalid_auth(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as err:
        await client_for(slack, "xoxb-wrong").auth_test()
    assert err.value.response["error"] == "invalid_auth"


async def test_params_merge_query_form_and_json(slack: SlackStandIn) -> None:
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {slack.bot_token}"}
        await http.post(slack.api_url + "chat.postMessage?channel=C1", data={"text": "form"}, headers=auth)
        await http.post(slack.api_url + "chat.postMessage?thread_ts=1.2", json={"channel": "C2", "text": "json"},
                        headers=auth)
    first, second = slack.calls("chat.postMessage")
    assert first.params == {"channel": "C1", "text": "form"}
    assert second.params == {"thread_ts": "1.2", "channel": "C2", "text": "json"}
    assert [m.text for m in slack.bot_messages()] == ["form", "json"]


async def test_post_and_update_in_a_thread(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message("C1", "question", "U1")
    posted = await client.chat_postMessage(channel="C1", thread_ts=root, text="Thinking")
    await client.chat_update(channel="C1", ts=posted["ts"], text="The answer")
    (message,) = slack.bot_messages("C1", root)
    assert message.text == "The answer" and message.edits == ["Thinking"]
    replies = await client.conversations_replies(channel="C1", ts=root)
    assert [m.get("bot_id") for m in replies["messages"]] == [None, slack.bot_id]


async def test_update_of_unknown_message_fails(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as err:
        await client_for(slack).chat_update(channel="C1", ts="1.1", text="x")
    assert err.value.response["error"] == "message_not_found"


async def test_files_upload_v2_three_steps(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "export", "U1")
    await client_for(slack).files_upload_v2(
        channel="C1", thread_ts=root, content=b'{"turns": []}', filename="export.json",
        title="Export", initial_comment="Here it is",
    )
    assert [r.method for r in slack.requests] == [
        "files.getUploadURLExternal", "/upload", "files.completeUploadExternal",
    ]
    (upload,) = slack.uploads
    assert (upload.filename, upload.data, upload.thread_ts, upload.initial_comment) == (
        "export.json", b'{"turns": []}', root, "Here it is",
    )


async def test_downloads_need_bearer_and_files_read(slack: SlackStandIn) -> None:
    entry = slack.host_file(b"\x89PNG...", "shot.png", "image/png")
    async with aiohttp.ClientSession() as http:
        async with http.get(entry["url_private"], headers={"Authorization": f"Bearer {slack.bot_token}"}) as r:
            assert r.content_type == "image/png" and await r.read() == b"\x89PNG..."
        async with http.get(entry["url_private"]) as r:
            assert r.status == 200 and r.content_type == "text/html" and await r.read() == LOGIN_PAGE
        slack.scopes.discard("files:read")
        async with http.get(entry["url_private"], headers={"Authorization": f"Bearer {slack.bot_token}"}) as r:
            assert await r.read() == LOGIN_PAGE


async def test_planned_429_carries_retry_after(slack: SlackStandIn) -> None:
    slack.fail("chat.postMessage", retry_after=7)
    client = client_for(slack)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    await client.chat_postMessage(channel="C1", text="again")  # only the planned count fails
    assert len(slack.bot_messages()) == 1


async def test_socket_mode_hello_envelope_and_ack(slack: SlackStandIn) -> None:
    opened = await client_for(slack).apps_connections_open(app_token=slack.app_token)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(opened["url"]) as ws:
            assert (await ws.receive_json())["type"] == "hello"
            envelope_id = await slack.send_envelope("events_api", slack.event_callback({"type": "app_mention"}))
            envelope = await ws.receive_json()
            assert envelope["envelope_id"] == envelope_id and envelope["payload"]["event"]["type"] == "app_mention"
            await ws.send_json({"envelope_id": envelope_id})
            assert await slack.wait_ack(envelope_id) < 3
    assert slack.acks[envelope_id] == {"envelope_id": envelope_id}


async def test_connections_open_needs_the_app_token(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError):
        await client_for(slack).apps_connections_open(app_token="xapp-wrong")


async def _receiver(delay: float, seen: list[tuple[bool, str | None]]) -> tuple[web.AppRunner, str]:
    verifier = SignatureVerifier("s3cret")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((verifier.is_valid_request(body, dict(request.headers)), request.headers.get("X-Slack-Retry-Num")))
        if len(seen) == 1:
            await asyncio.sleep(delay)
        return web.Response(status=200 if seen[-1][0] else 401)

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/slack/events"


async def test_events_sender_signs_and_retries_after_slow_ack(slack: SlackStandIn) -> None:
    seen: list[tuple[bool, str | None]] = []
    runner, url = await _receiver(0.5, seen)
    try:
        attempts = await EventsSender(url, "s3cret", ack_timeout=0.2).send(slack.event_callback({"type": "x"}))
    finally:
        await runner.cleanup()
    assert [a.status for a in attempts] == [None, 200]
    assert seen == [(True, None), (True, "1")]


async def test_events_sender_bad_signature_is_detectable(slack: SlackStandIn) -> None:
    seen: list[tuple[bool, str | None]] = []
    runner, url = await _receiver(0, seen)
    try:
        attempts = await EventsSender(url, "s3cret", max_retries=0).send({"a": 1}, bad_signature=True)
    finally:
        await runner.cleanup()
    assert [a.status for a in attempts] == [401] and seen == [(False, None)]


async def test_wait_for_sees_new_requests(slack: SlackStandIn) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await client_for(slack).chat_postMessage(channel="C1", text=json.dumps({"x": 1}))

    task = asyncio.create_task(later())
    await slack.wait_for(lambda: len(slack.bot_messages()) == 1, timeout=5)
    await task
