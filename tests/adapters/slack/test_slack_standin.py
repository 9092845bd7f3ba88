"""The stand-in itself, driven by the real slack_sdk clients it stands in for."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ContextActionsBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
)
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


async def test_socket_mode_envelope_kinds(slack: SlackStandIn) -> None:
    opened = await client_for(slack).apps_connections_open(app_token=slack.app_token)
    async with aiohttp.ClientSession() as http, http.ws_connect(opened["url"]) as ws:
        await ws.receive_json()  # hello
        sent = [
            await slack.send_envelope("events_api", slack.event_callback({"type": "app_mention"}), retry_attempt=1),
            await slack.send_envelope("interactive", {"type": "block_actions", "actions": []}),
            await slack.send_envelope("slash_commands", {"command": "/vlm", "text": "help"}),
        ]
        envelopes = [await ws.receive_json() for _ in sent]
        assert [e["envelope_id"] for e in envelopes] == sent
        assert [(e["type"], e["accepts_response_payload"]) for e in envelopes] == [
            ("events_api", False), ("interactive", False), ("slash_commands", True)]
        assert (envelopes[0]["retry_attempt"], envelopes[0]["retry_reason"]) == (1, "timeout")
        assert "retry_attempt" not in envelopes[1]  # Slack retries only events
        with pytest.raises(TimeoutError):
            await slack.wait_ack(sent[1], timeout=0.2)  # not acknowledged yet
        await ws.send_json({"envelope_id": sent[1]})
        await slack.wait_ack(sent[1])


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


# --- text streaming ------------------------------------------------------------------------------

DM = "D0ALICE"


def feedback_blocks(turn: str = "t1") -> list[ContextActionsBlock]:
    return [ContextActionsBlock(elements=[FeedbackButtonsElement(
        action_id="feedback",
        positive_button=FeedbackButtonObject(text="👍", value=f"{turn}:up"),
        negative_button=FeedbackButtonObject(text="👎", value=f"{turn}:down"),
    )])]


async def _error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as err:
        await call
    return err.value


async def test_chat_stream_helper_streams_then_stops_with_feedback_buttons(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message(DM, "What is this?", "U0ALICE")
    streamer = await client.chat_stream(channel=DM, thread_ts=root, buffer_size=10)
    for piece in ("The picture ", "shows a ", "red square ", "on white."):
        await streamer.append(markdown_text=piece)
    stopped = await streamer.stop(blocks=feedback_blocks())
    assert [r.method for r in slack.requests] == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    assert slack.calls("chat.startStream")[0].params["chunks"] == [{"type": "markdown_text", "text": "The picture "}]
    stream = slack.stream(streamer.ts)
    assert stream.pieces == ["The picture ", "shows a red square ", "on white."]
    assert (stream.text, stream.state, stream.thread_ts) == ("The picture shows a red square on white.", "stopped", root)
    (message,) = slack.bot_messages(DM, root)
    assert message.text == stream.text and stopped["message"]["text"] == stream.text
    (block,) = message.blocks
    assert block["type"] == "context_actions" and block["block_id"]  # Slack fills in a block_id
    for late in (client.chat_appendStream(channel=DM, ts=streamer.ts, markdown_text="more"),
                 client.chat_stopStream(channel=DM, ts=streamer.ts)):
        assert (await _error(late)).response["error"] == "message_not_in_streaming_state"
    assert slack.stream(streamer.ts).text == "The picture shows a red square on white."


async def test_streams_in_channels_name_their_recipient(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message("C1", "question", "U0ALICE")
    start = client.chat_startStream
    assert (await _error(start(channel="C1", thread_ts=root))).response["error"] == "missing_recipient_team_id"
    err = await _error(start(channel="C1", thread_ts=root, recipient_team_id=slack.team_id))
    assert err.response["error"] == "missing_recipient_user_id"
    assert (await _error(start(channel="C1", thread_ts=""))).response["error"] == "invalid_arguments"
    started = await start(channel="C1", thread_ts=root, recipient_team_id=slack.team_id,
                          recipient_user_id="U0ALICE", markdown_text="Hello")
    stream = slack.stream(started["ts"])
    assert (stream.recipient_team_id, stream.recipient_user_id, stream.text) == (slack.team_id, "U0ALICE", "Hello")
    await start(channel=DM, thread_ts=slack.post_user_message(DM, "q", "U0ALICE"))  # a DM needs no recipient


async def test_start_stream_can_be_refused_so_the_fallback_runs(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message(DM, "question", "U0ALICE")
    slack.streaming_error = "not_allowed_token_type"
    assert (await _error(client.chat_startStream(channel=DM, thread_ts=root))).response["error"] == "not_allowed_token_type"
    slack.streaming_error = "missing_scope"
    refused = (await _error(client.chat_startStream(channel=DM, thread_ts=root))).response
    assert refused["error"] == "missing_scope" and refused["needed"] == "chat:write"
    slack.streaming_error = None
    slack.fail("chat.startStream", status=200, error="team_not_found")  # one refusal, then it works
    assert (await _error(client.chat_startStream(channel=DM, thread_ts=root))).response["error"] == "team_not_found"
    await client.chat_startStream(channel=DM, thread_ts=root)
    # The fallback: post, update, and the feedback buttons on the final message.
    posted = await client.chat_postMessage(channel=DM, thread_ts=root, text="Thinking")
    await client.chat_update(channel=DM, ts=posted["ts"], text="The answer", blocks=feedback_blocks())
    message = next(m for m in slack.bot_messages(DM, root) if m.ts == posted["ts"])
    assert message.text == "The answer" and message.blocks[0]["type"] == "context_actions"
    slack.scopes.discard("chat:write")
    assert (await _error(client.chat_startStream(channel=DM, thread_ts=root))).response["error"] == "missing_scope"


async def test_a_429_on_append_loses_nothing_when_retried(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message(DM, "question", "U0ALICE")
    ts = (await client.chat_startStream(channel=DM, thread_ts=root, markdown_text="one "))["ts"]
    slack.fail("chat.appendStream", retry_after=3)
    err = await _error(client.chat_appendStream(channel=DM, ts=ts, markdown_text="two "))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "3"
    await client.chat_appendStream(channel=DM, ts=ts, markdown_text="two ")
    slack.fail("chat.stopStream", retry_after=1)
    await _error(client.chat_stopStream(channel=DM, ts=ts, markdown_text="three"))
    await client.chat_stopStream(channel=DM, ts=ts, markdown_text="three")
    assert slack.stream(ts).text == "one two three"
    assert [r.method for r in slack.requests[1:]] == ["chat.appendStream"] * 2 + ["chat.stopStream"] * 2


async def test_an_expired_stream_refuses_appends_but_takes_chat_update(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message(DM, "question", "U0ALICE")
    ts = (await client.chat_startStream(channel=DM, thread_ts=root, markdown_text="partial"))["ts"]
    slack.expire_stream(ts)
    err = await _error(client.chat_appendStream(channel=DM, ts=ts, markdown_text=" more"))
    assert err.response["error"] == "message_not_in_streaming_state"
    await client.chat_update(channel=DM, ts=ts, text="partial more")
    assert slack.bot_messages(DM, root)[0].text == "partial more"
    missing = await _error(client.chat_appendStream(channel=DM, ts="1.2", markdown_text="x"))
    assert missing.response["error"] == "message_not_found"


async def test_stream_text_and_block_limits(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message(DM, "question", "U0ALICE")
    ts = (await client.chat_startStream(channel=DM, thread_ts=root))["ts"]
    assert (await _error(client.chat_appendStream(channel=DM, ts=ts))).response["error"] == "no_text"
    too_long = await _error(client.chat_appendStream(channel=DM, ts=ts, markdown_text="x" * 12_001))
    assert too_long.response["error"] == "invalid_arguments"
    await client.chat_appendStream(channel=DM, ts=ts, markdown_text="x" * 12_000)
    six = [{"type": "context_actions", "elements": [feedback_blocks()[0].elements[0].to_dict()] * 6}]
    refused = (await _error(client.chat_stopStream(channel=DM, ts=ts, blocks=six))).response
    assert refused["error"] == "invalid_blocks" and "/blocks/0/elements" in refused["errors"][0]
    wordy = feedback_blocks()[0].to_dict()
    wordy["elements"][0]["positive_button"]["text"]["text"] = "y" * 76
    refused = (await _error(client.chat_stopStream(channel=DM, ts=ts, blocks=[wordy]))).response
    assert "positive_button/text/text" in refused["response_metadata"]["messages"][0]
    assert slack.stream(ts).state == "streaming"  # a refused stop leaves the stream open
    await client.chat_stopStream(channel=DM, ts=ts, blocks=feedback_blocks())
    assert len(slack.stream(ts).text) == 12_000


async def test_messages_keep_blocks_and_metadata(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message(DM, "question", "U0ALICE")
    posted = await client.chat_postMessage(channel=DM, thread_ts=root, blocks=feedback_blocks(),
                                           metadata={"event_type": "answer", "event_payload": {"turn": "t1"}})
    assert (await _error(client.chat_postMessage(channel=DM, text=""))).response["error"] == "no_text"
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {slack.bot_token}"}
        async with http.post(slack.api_url + "chat.postMessage", headers=auth,
                             data={"channel": DM, "text": "x", "blocks": "not json"}) as resp:
            assert (await resp.json())["error"] == "invalid_blocks_format"
    replies = await client.conversations_replies(channel=DM, ts=root, include_all_metadata=True)
    bot = replies["messages"][1]
    assert bot["ts"] == posted["ts"] and bot["metadata"]["event_payload"] == {"turn": "t1"}
    assert bot["blocks"][0]["elements"][0]["action_id"] == "feedback"
    plain = await client.conversations_replies(channel=DM, ts=root, oldest=root)
    assert [m["ts"] for m in plain["messages"]] == [posted["ts"]] and "metadata" not in plain["messages"][0]
    inclusive = await client.conversations_replies(channel=DM, ts=root, oldest=root, inclusive=True, limit=1)
    assert [m["ts"] for m in inclusive["messages"]] == [root] and inclusive["has_more"] is True
    assert replies["messages"][0]["blocks"][0]["type"] == "rich_text"  # text-only messages get a rich_text block


# --- assistant threads ---------------------------------------------------------------------------


async def test_assistant_thread_status_prompts_and_title(slack: SlackStandIn) -> None:
    client = client_for(slack)
    event = slack.assistant_thread_started(user="U0ALICE", channel=DM, context_channel="C0HELP")
    thread = event["assistant_thread"]
    assert event["type"] == "assistant_thread_started" and thread["context"]["channel_id"] == "C0HELP"
    ts = thread["thread_ts"]
    assert slack.messages[-1].subtype == "assistant_app_thread" and slack.messages[-1].ts == ts
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=ts, status="is reading the picture…",
                                             loading_messages=["Looking closely…"])
    assert slack.thread_status(DM, ts) == "is reading the picture…"
    assert slack.statuses[-1].loading_messages == ("Looking closely…",)
    too_many = await _error(client.assistant_threads_setStatus(
        channel_id=DM, thread_ts=ts, status="x", loading_messages=[str(i) for i in range(11)]))
    assert too_many.response["error"] == "invalid_arguments"
    await client.chat_postMessage(channel=DM, thread_ts=ts, text="Hello")  # the reply ends the status
    assert slack.thread_status(DM, ts) is None
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=ts, status="queued: 2 ahead")
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=ts, status="")
    assert slack.thread_status(DM, ts) is None and [s.status for s in slack.statuses][-1] == ""
    unknown = await _error(client.assistant_threads_setStatus(channel_id=DM, thread_ts="9.9", status="x"))
    assert unknown.response["error"] == "invalid_thread_ts"

    four = [{"title": f"Preset {i}", "message": f"/preset{i}"} for i in range(4)]
    await client.assistant_threads_setSuggestedPrompts(channel_id=DM, thread_ts=ts, prompts=four, title="Try")
    assert slack.suggested_prompts[-1].prompts[0] == ("Preset 0", "/preset0")
    five = four + [{"title": "Fifth", "message": "/fifth"}]
    err = await _error(client.assistant_threads_setSuggestedPrompts(channel_id=DM, thread_ts=ts, prompts=five))
    assert err.response["error"] == "invalid_arguments" and len(slack.suggested_prompts) == 1
    await client.assistant_threads_setTitle(channel_id=DM, thread_ts=ts, title="A red square")
    assert slack.titles[-1].title == "A red square"

    slack.scopes.discard("assistant:write")  # setStatus also takes chat:write; the others need assistant:write
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=ts, status="still fine")
    refused = await _error(client.assistant_threads_setTitle(channel_id=DM, thread_ts=ts, title="x"))
    assert refused.response["error"] == "missing_scope" and refused.response["needed"] == "assistant:write"


async def test_block_actions_payload_presses_a_button_the_message_shows(slack: SlackStandIn) -> None:
    client = client_for(slack)
    root = slack.post_user_message("C1", "question", "U0ALICE")
    posted = await client.chat_postMessage(channel="C1", thread_ts=root, text="Answer", blocks=feedback_blocks("t7"))
    payload = slack.block_actions("C1", posted["ts"], user="U0BOB", choice="negative")
    (action,) = payload["actions"]
    assert (action["type"], action["action_id"], action["value"]) == ("feedback_buttons", "feedback", "t7:down")
    assert action["text"] == {"type": "plain_text", "text": "👎", "emoji": True} and action["block_id"]
    assert payload["container"] == {"type": "message", "message_ts": posted["ts"], "channel_id": "C1",
                                     "is_ephemeral": False, "thread_ts": root}
    assert payload["user"]["id"] == "U0BOB" and payload["message"]["blocks"][0]["type"] == "context_actions"
    plain = await client.chat_postMessage(channel="C1", thread_ts=root, text="no buttons")
    with pytest.raises(AssertionError, match="no feedback buttons"):
        slack.block_actions("C1", plain["ts"])


# --- delivery to a real slack-bolt app: Socket Mode and HTTP -------------------------------------


def _bolt_app(slack: SlackStandIn, *, socket: bool) -> tuple[AsyncApp, list[tuple]]:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    app = AsyncApp(client=client, signing_secret="s3cret", request_verification_enabled=not socket,
                   process_before_response=True)
    seen: list[tuple] = []
    assistant = AsyncAssistant()

    @assistant.thread_started
    async def started(say, set_suggested_prompts, payload) -> None:
        seen.append(("started", payload["assistant_thread"]["thread_ts"]))
        await say("Hi! Send me a picture.")
        await set_suggested_prompts(prompts=[{"title": "Describe", "message": "/describe"}], title="Try")

    app.assistant(assistant)

    @app.action("feedback")
    async def feedback(ack, body, action) -> None:
        await ack()
        seen.append(("feedback", action["value"], body["user"]["id"]))

    return app, seen


async def _answered_thread(slack: SlackStandIn) -> tuple[str, str]:
    thread_ts = slack.messages[-2].ts  # the assistant thread's root; the greeting is the last message
    posted = await client_for(slack).chat_postMessage(channel=DM, thread_ts=thread_ts, text="Answer",
                                                      blocks=feedback_blocks())
    return thread_ts, posted["ts"]


async def test_socket_mode_delivers_assistant_events_and_button_presses(slack: SlackStandIn) -> None:
    app, seen = _bolt_app(slack, socket=True)
    handler = AsyncSocketModeHandler(app, slack.app_token, web_client=app.client)
    await handler.connect_async()
    try:
        envelope_id = await slack.send_envelope("events_api", slack.event_callback(
            slack.assistant_thread_started(channel=DM, context_channel="C0HELP")))
        await slack.wait_ack(envelope_id, timeout=10)
        await slack.wait_for(lambda: len(slack.suggested_prompts) == 1, timeout=10)
        thread_ts, answer_ts = await _answered_thread(slack)
        pressed = await slack.send_envelope("interactive", slack.block_actions(DM, answer_ts, choice="negative"))
        await slack.wait_ack(pressed, timeout=10)
        greeting = slack.bot_messages(DM, thread_ts)[0]
        assert greeting.metadata["event_payload"]["channel_id"] == "C0HELP"
        # bolt's default listener keeps the new context in the greeting's metadata (chat.update).
        moved = await slack.send_envelope("events_api", slack.event_callback(
            slack.assistant_thread_context_changed(DM, thread_ts, context_channel="C0OTHER")))
        await slack.wait_ack(moved, timeout=10)
        await slack.wait_for(lambda: greeting.metadata["event_payload"]["channel_id"] == "C0OTHER", timeout=10)
    finally:
        await handler.close_async()
    assert seen == [("started", thread_ts), ("feedback", "t1:down", "U0ALICE")]
    assert slack.acks[pressed] == {"envelope_id": pressed}
    assert greeting.text == "Hi! Send me a picture." and greeting.edits == ["Hi! Send me a picture."]
    connections = [r for r in slack.requests if r.method == "/link"]
    assert len(connections) == 1  # one Socket Mode connection carried all three envelopes


async def test_http_delivers_assistant_events_and_signed_interactivity_posts(slack: SlackStandIn) -> None:
    app, seen = _bolt_app(slack, socket=False)

    async def endpoint(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", endpoint)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    sender = EventsSender(f"http://{host}:{port}/slack/events", "s3cret", max_retries=0)
    try:
        attempts = await sender.send(slack.event_callback(slack.assistant_thread_started(channel=DM)))
        assert [a.status for a in attempts] == [200]
        thread_ts, answer_ts = await _answered_thread(slack)
        pressed = slack.block_actions(DM, answer_ts, choice="positive")
        forged = await sender.interact(pressed, bad_signature=True)
        stale = await sender.interact(pressed, timestamp=int(time.time()) - 600)
        delivery = await sender.interact(pressed)
    finally:
        await runner.cleanup()
    assert (forged.status, stale.status, delivery.status) == (401, 401, 200)
    assert seen == [("started", thread_ts), ("feedback", "t1:up", "U0ALICE")]
    assert slack.suggested_prompts[0].prompts == (("Describe", "/describe"),)
