"""A project-owned Slack stand-in: Web API, file hosting, Socket Mode and an Events API sender.

A real aiohttp server on 127.0.0.1 with an ephemeral port. It keeps what Slack would keep (messages
by channel and ts with their blocks and metadata, uploaded files) and records every request so tests
assert on the wire. The Agents & AI Apps surface (chat.*Stream, assistant.threads.*, assistant thread
events, feedback button presses) lives in slack_ai_apps.py, Block Kit checks in slack_blocks.py.

Events reach the app over Socket Mode (`send_envelope` + `wait_ack`: "events_api", "slash_commands",
"interactive") or over HTTP (`EventsSender.send` for events, `EventsSender.interact` for the
interactivity POST), signed like Slack signs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from tests.adapters.slack.slack_ai_apps import AiAppsMethods
from tests.adapters.slack.slack_blocks import BlocksError, check_blocks
from tests.adapters.slack.slack_text import Shown, shown

__all__ = ["Ephemeral", "EventsSender", "Failure", "Recorded", "SlackStandIn", "sign"]

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass(frozen=True)
class Recorded:
    """One request the stand-in received."""

    method: str  # Web API method ("chat.postMessage"), or the path for non-API requests
    params: dict[str, Any]
    headers: Mapping[str, str]
    at: float


@dataclass
class Failure:
    """A planned error answer for the next `count` calls of a method."""

    status: int = 429  # 200: an ok:false answer with `error`
    retry_after: int = 1
    count: int = 1
    error: str = "ratelimited"


@dataclass
class _Message:
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    user: str
    bot_id: str | None
    edits: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    subtype: str | None = None

    @property
    def shown(self) -> Shown:
        """What a reader sees: a message with `markdown` blocks shows them (not its `text`), else its mrkdwn `text`."""
        markdown = [str(b.get("text") or "") for b in self.blocks or () if b.get("type") == "markdown"]
        if markdown:
            parts = [shown(text, markdown=True) for text in markdown]
            return Shown("\n".join(p.text for p in parts), tuple(t for p in parts for t in p.tokens))
        return shown(self.text, markdown=False)

    def as_dict(self, *, with_metadata: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.subtype:
            data["subtype"] = self.subtype
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.bot_id:
            data["bot_id"] = self.bot_id
        if self.blocks:
            data["blocks"] = self.blocks
        elif self.text:
            # Slack returns a text-only message with a rich_text block made from its text (slack-bolt's
            # assistant thread-context store reads `message["blocks"]` and fails without it).
            data["blocks"] = [{
                "type": "rich_text", "block_id": f"r{self.ts}",
                "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": self.text}]}],
            }]
        if with_metadata and self.metadata:
            data["metadata"] = self.metadata
        return data


@dataclass(frozen=True)
class Ephemeral:
    """A chat.postEphemeral message: seen by `user` only."""

    channel: str
    user: str
    text: str
    thread_ts: str | None
    message_ts: str


@dataclass(frozen=True)
class Upload:
    """A file the bot uploaded (files_upload_v2), as shared in a channel or thread."""

    file_id: str
    filename: str
    title: str | None
    data: bytes
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackStandIn(AiAppsMethods):
    """Start with `async with SlackStandIn() as slack:`; `slack.api_url` is the Web API base URL."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        team_id: str = "T0TEAM",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        scopes: tuple[str, ...] = (
            "app_mentions:read", "channels:history", "groups:history", "im:history", "mpim:history",
            "chat:write", "files:read", "files:write", "commands", "assistant:write", "users:read",
        ),
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.scopes = set(scopes)
        self.locales: dict[str, str] = {}  # user id -> their Slack locale (users.info); others are "en-US"
        self.requests: list[Recorded] = []
        self.messages: list[_Message] = []
        self.ephemerals: list[Ephemeral] = []  # every chat.postEphemeral accepted, in order
        self.uploads: list[Upload] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.responses: list[dict[str, Any]] = []  # what was posted to slash commands' response_url
        self.failures: dict[str, Failure] = {}
        self._hosted: dict[str, tuple[bytes, str, str]] = {}
        self._pending_uploads: dict[str, tuple[str, bytes | None]] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._ack_events: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._init_ai_apps()

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SlackStandIn:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files/{file_id}/{name}", self._download)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/response/{trigger}", self._response_url)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # --- test controls -----------------------------------------------------------------------

    def fail(
        self, method: str, *, status: int = 429, retry_after: int = 1, count: int = 1, error: str | None = None,
    ) -> None:
        """Answer the next `count` calls of `method` with `status` (429 carries Retry-After); with
        status=200, `{"ok": false, "error": error}` as Slack answers refused calls."""
        default = "ratelimited" if status == 429 else "fatal_error"
        self.failures[method] = Failure(status=status, retry_after=retry_after, count=count, error=error or default)

    def host_file(self, data: bytes, name: str, mimetype: str, *, size: int | None = None) -> dict[str, Any]:
        """Host a file the way a user upload is hosted; returns its entry for a message event's `files`."""
        file_id = f"F{next(self._ids):06d}"
        self._hosted[file_id] = (data, name, mimetype)
        url = f"{self.base_url}/files/{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(data) if size is None else size,
            "url_private": url,
            "url_private_download": url + "?download=1",
        }

    def post_user_message(self, channel: str, text: str, user: str, *, thread_ts: str | None = None) -> str:
        """Record a user's message (as Slack would store it) and return its ts."""
        ts = self._next_ts()
        self.messages.append(_Message(channel, ts, text, thread_ts, user, None))
        return ts

    def calls(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    def bot_messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[_Message]:
        return [
            m for m in self.messages
            if m.bot_id == self.bot_id
            and (channel is None or m.channel == channel)
            and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        """Wait until `predicate()` is true, re-checked after every request."""
        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(check(), timeout)

    # --- Web API -----------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        body = await request.read()
        ctype = request.content_type
        if body and ctype == "application/json":
            params.update(json.loads(body))
        elif body and ctype == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        elif body and ctype.startswith("multipart/"):
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params

    async def _record(self, method: str, params: dict[str, Any], headers: Mapping[str, str]) -> None:
        self.requests.append(Recorded(method, params, dict(headers), time.monotonic()))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _token(self, request: web.Request, params: Mapping[str, Any]) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):]
        return params.get("token")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        await self._record(method, params, request.headers)
        try:
            return await self._answer(request, method, params)
        finally:
            await self._notify()

    async def _answer(self, request: web.Request, method: str, params: dict[str, Any]) -> web.Response:
        failure = self.failures.get(method)
        if failure is not None and failure.count > 0:
            failure.count -= 1
            headers = {"Retry-After": str(failure.retry_after)} if failure.status == 429 else {}
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status, headers=headers)
        token = self._token(request, params)
        if method == "apps.connections.open":
            if token != self.app_token:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            ws_url = self.base_url.replace("http://", "ws://") + f"/link?ticket={uuid.uuid4()}"
            return web.json_response({"ok": True, "url": ws_url})
        if token != self.bot_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return await handler(params)

    async def _m_auth_test(self, params: dict[str, Any]) -> web.Response:
        body = {
            "ok": True, "url": "https://standin.slack.test/", "team": "Stand-in", "user": "vlmbot",
            "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }
        return web.json_response(body, headers={"x-oauth-scopes": ",".join(sorted(self.scopes))})

    async def _m_users_info(self, params: dict[str, Any]) -> web.Response:
        """As Slack answers: needs users:read; `locale` only with include_locale=true (sent as "1" or "true")."""
        if "users:read" not in self.scopes:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": "users:read"})
        user_id = params.get("user")
        if not user_id or not str(user_id).startswith(("U", "W")):
            return web.json_response({"ok": False, "error": "user_not_found"})
        user: dict[str, Any] = {"id": user_id, "team_id": self.team_id, "name": f"user-{user_id.lower()}", "is_bot": False}
        if str(params.get("include_locale", "")).lower() in ("1", "true"):
            user["locale"] = self.locales.get(user_id, "en-US")
        return web.json_response({"ok": True, "user": user})

    def _bot_post(self, channel: str, text: str, thread_ts: str | None, blocks: Any = None) -> _Message:
        message = _Message(channel, self._next_ts(), text, thread_ts or None, self.bot_user_id, self.bot_id,
                           blocks=blocks)
        self.messages.append(message)
        self._clear_status(channel, thread_ts)
        return message

    @staticmethod
    def _blocks_and_metadata(params: dict[str, Any]) -> tuple[Any, Any] | web.Response:
        blocks = params.get("blocks")
        if blocks is not None:
            try:
                blocks = check_blocks(blocks)
            except BlocksError as err:
                return web.json_response(err.body())
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return web.json_response({"ok": False, "error": "invalid_metadata_format"})
        return blocks, metadata

    async def _m_chat_postMessage(self, params: dict[str, Any]) -> web.Response:
        channel = params.get("channel")
        if not channel:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        extras = self._blocks_and_metadata(params)
        if isinstance(extras, web.Response):
            return extras
        blocks, metadata = extras
        text = params.get("text") or ""
        if not text and not blocks:
            return web.json_response({"ok": False, "error": "no_text"})
        if len(text) > 40_000:
            return web.json_response({"ok": False, "error": "msg_too_long"})
        message = self._bot_post(channel, text, params.get("thread_ts"), blocks)
        message.metadata = metadata
        return web.json_response({"ok": True, "channel": channel, "ts": message.ts, "message": message.as_dict()})

    async def _m_chat_update(self, params: dict[str, Any]) -> web.Response:
        message = self._find(params.get("channel"), params.get("ts"))
        if message is None:
            return web.json_response({"ok": False, "error": "message_not_found"})
        if message.bot_id != self.bot_id:
            return web.json_response({"ok": False, "error": "cant_update_message"})
        extras = self._blocks_and_metadata(params)
        if isinstance(extras, web.Response):
            return extras
        blocks, metadata = extras
        text = params.get("text") or ""
        if len(text) > 40_000:
            return web.json_response({"ok": False, "error": "msg_too_long"})
        message.edits.append(message.text)
        message.text = text
        if blocks is not None:  # left out, the message keeps its blocks
            message.blocks = blocks or None
        if metadata is not None:
            message.metadata = metadata
        return web.json_response({"ok": True, "channel": message.channel, "ts": message.ts, "text": text,
                                  "message": message.as_dict()})

    async def _m_chat_postEphemeral(self, params: dict[str, Any]) -> web.Response:
        """https://docs.slack.dev/reference/methods/chat.postEphemeral: shown only to `user`, never stored
        in the conversation; answers `message_ts` (no `ts`, no message)."""
        channel, user = params.get("channel"), params.get("user")
        if not channel:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not user:
            return web.json_response({"ok": False, "error": "user_not_found"})
        extras = self._blocks_and_metadata(params)
        if isinstance(extras, web.Response):
            return extras
        text = params.get("text") or params.get("markdown_text") or ""
        if not text and not extras[0]:
            return web.json_response({"ok": False, "error": "no_text"})
        ts = self._next_ts()
        self.ephemerals.append(Ephemeral(channel, user, text, params.get("thread_ts") or None, ts))
        return web.json_response({"ok": True, "message_ts": ts})

    async def _m_chat_delete(self, params: dict[str, Any]) -> web.Response:
        message = self._find(params.get("channel"), params.get("ts"))
        if message is None or message.bot_id != self.bot_id:
            return web.json_response({"ok": False, "error": "message_not_found"})
        self.messages.remove(message)
        return web.json_response({"ok": True, "channel": message.channel, "ts": message.ts})

    async def _m_conversations_replies(self, params: dict[str, Any]) -> web.Response:
        channel, ts = params.get("channel"), params.get("ts")
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        thread = [m for m in self.messages if m.channel == channel and (m.ts == ts or m.thread_ts == ts)]
        if not thread:
            return web.json_response({"ok": False, "error": "thread_not_found"})
        # "oldest: Only messages after this Unix timestamp"; "inclusive: Include messages with oldest or
        # latest timestamps in results" (https://docs.slack.dev/reference/methods/conversations.replies).
        if params.get("oldest"):
            oldest = float(params["oldest"])
            inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
            thread = [m for m in thread if float(m.ts) > oldest or (inclusive and float(m.ts) == oldest)]
        limit = int(params.get("limit") or 1000)
        return web.json_response({
            "ok": True, "messages": [m.as_dict(with_metadata=with_metadata) for m in thread[:limit]],
            "has_more": len(thread) > limit,
        })

    async def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> web.Response:
        filename, length = params.get("filename"), params.get("length")
        if not filename or not length:
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        file_id = f"F{next(self._ids):06d}"
        self._pending_uploads[file_id] = (filename, None)
        return web.json_response({"ok": True, "file_id": file_id, "upload_url": f"{self.base_url}/upload/{file_id}"})

    async def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> web.Response:
        files = params.get("files")
        entries = json.loads(files) if isinstance(files, str) else files
        done = []
        for entry in entries or []:
            pending = self._pending_uploads.pop(entry.get("id"), None)
            if pending is None or pending[1] is None:
                return web.json_response({"ok": False, "error": "file_not_found"})
            filename, data = pending
            upload = Upload(
                entry["id"], filename, entry.get("title"), data, params.get("channel_id"),
                params.get("thread_ts") or None, params.get("initial_comment"),
            )
            self.uploads.append(upload)
            done.append({"id": upload.file_id, "name": filename, "title": upload.title})
        if not done:
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        return web.json_response({"ok": True, "files": done})

    # --- files -------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        await self._record("/upload", {"file_id": file_id, "size": len(data)}, request.headers)
        if file_id not in self._pending_uploads:
            return web.Response(status=404, text="unknown upload")
        self._pending_uploads[file_id] = (self._pending_uploads[file_id][0], data)
        await self._notify()
        return web.Response(text="OK - " + str(len(data)))

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """Bearer-guarded like files.slack.com: without access, a 200 HTML login page, not an error."""
        file_id = request.match_info["file_id"]
        await self._record("/files", {"file_id": file_id}, request.headers)
        await self._notify()
        auth = request.headers.get("Authorization", "")
        hosted = self._hosted.get(file_id)
        if auth != f"Bearer {self.bot_token}" or "files:read" not in self.scopes or hosted is None:
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        data, _name, mimetype = hosted
        # Streamed in small chunks with pauses, as a real download arrives: a client that reads only
        # what is buffered gets a truncated file.
        response = web.StreamResponse(headers={"Content-Type": mimetype, "Content-Length": str(len(data))})
        await response.prepare(request)
        for start in range(0, len(data), 4096):
            await response.write(data[start : start + 4096])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self._record("/response", body, request.headers)
        self.responses.append(body)
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode -------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await self._record("/link", dict(request.query), request.headers)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0APP"}})
        await self._notify()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                envelope_id = data.get("envelope_id")
                if envelope_id:
                    self.acks[envelope_id] = data
                    self._ack_events.setdefault(envelope_id, asyncio.Event()).set()
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def send_envelope(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Send an envelope ("events_api", "slash_commands" or "interactive") over the open Socket Mode
        connection; returns its envelope_id, which the app must send back to acknowledge it.

        https://docs.slack.dev/apis/events-api/using-socket-mode: `accepts_response_payload` is true
        where an answer can carry a payload (slash commands, view submissions, options), not for events
        or block_actions. Slack retries only events (retry_attempt / retry_reason)."""
        await self.wait_for(lambda: self.socket_connected)
        envelope_id = str(uuid.uuid4())
        self._ack_events[envelope_id] = asyncio.Event()
        accepts = kind == "slash_commands" or (
            kind == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")
        )
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": accepts,
        }
        if kind == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else ""}
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 3.0) -> float:
        """Seconds until the envelope was acknowledged; raises TimeoutError after `timeout`."""
        start = time.monotonic()
        await asyncio.wait_for(self._ack_events[envelope_id].wait(), timeout)
        return time.monotonic() - start

    # --- payload builders --------------------------------------------------------------------

    def event_callback(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token", "team_id": self.team_id, "api_app_id": "A0APP",
            "event": event, "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }

    def message_event(
        self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None, channel_type: str = "channel", kind: str = "message",
    ) -> dict[str, Any]:
        """A user message as Slack stores and announces it (`kind` "message" or "app_mention")."""
        ts = self.post_user_message(channel, text, user, thread_ts=thread_ts)
        return self.event_for(channel, ts, text, user=user, thread_ts=thread_ts, files=files,
                              channel_type=channel_type, kind=kind)

    def event_for(
        self, channel: str, ts: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None, channel_type: str = "channel", kind: str = "message",
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": kind, "user": user, "text": text, "ts": ts, "channel": channel,
            "team": self.team_id, "event_ts": ts,
        }
        if kind == "message":
            event["channel_type"] = channel_type
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"] = files
            if kind == "message":
                event["subtype"] = "file_share"
        return event

    def command_payload(self, command: str, text: str, *, channel: str, user: str = "U0ALICE") -> dict[str, str]:
        trigger = f"{next(self._ids)}.{uuid.uuid4().hex[:8]}"
        return {
            "token": "legacy-verification-token", "team_id": self.team_id, "team_domain": "standin",
            "channel_id": channel, "channel_name": "helpdesk", "user_id": user, "user_name": "alice",
            "command": command, "text": text, "api_app_id": "A0APP",
            "response_url": f"{self.base_url}/response/{trigger}", "trigger_id": trigger,
        }

    # --- internals ---------------------------------------------------------------------------

    def _next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _find(self, channel: str | None, ts: str | None) -> _Message | None:
        for message in self.messages:
            if message.channel == channel and message.ts == ts:
                return message
        return None


@dataclass(frozen=True)
class Delivery:
    """What the Events API sender saw for one attempt."""

    retry_num: int
    status: int | None  # None: no answer within the acknowledgement timeout
    seconds: float
    body: str


class EventsSender:
    """Sends signed Events API requests like Slack: retries with X-Slack-Retry-Num when the
    acknowledgement is slower than `ack_timeout` or not a 2xx (at most `max_retries` times)."""

    def __init__(self, url: str, signing_secret: str, *, ack_timeout: float = 3.0, max_retries: int = 3) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.ack_timeout = ack_timeout
        self.max_retries = max_retries

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, content_type: str, retry_num: int,
        *, bad_signature: bool, timestamp: int | None,
    ) -> Delivery:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = sign("not-the-secret" if bad_signature else self.signing_secret, ts, body)
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
        if retry_num:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        start = time.monotonic()
        try:
            async with session.post(self.url, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=self.ack_timeout)) as resp:
                text = await resp.text()
                return Delivery(retry_num, resp.status, time.monotonic() - start, text)
        except TimeoutError:
            return Delivery(retry_num, None, time.monotonic() - start, "")

    async def interact(
        self, payload: dict[str, Any], *, bad_signature: bool = False, timestamp: int | None = None,
    ) -> Delivery:
        """POST an interaction payload (block_actions, ...) the way Slack posts it to the Interactivity
        Request URL: form-encoded, one `payload` field holding the JSON, signed
        (https://docs.slack.dev/interactivity/handling-user-interaction). Slack does not retry these."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        async with aiohttp.ClientSession() as session:
            return await self._post(session, body, "application/x-www-form-urlencoded", 0,
                                    bad_signature=bad_signature, timestamp=timestamp)

    async def send(
        self, payload: dict[str, Any], *, extra_retries: int = 0, bad_signature: bool = False,
        timestamp: int | None = None, form: bool = False,
    ) -> list[Delivery]:
        """Deliver one event (or a slash command with form=True); returns every attempt.

        `extra_retries` resends as if the acknowledgements were lost, whatever the answer was."""
        if form:
            body, ctype = urlencode(payload).encode(), "application/x-www-form-urlencoded"
        else:
            body, ctype = json.dumps(payload).encode(), "application/json"
        attempts: list[Delivery] = []
        async with aiohttp.ClientSession() as session:
            for retry_num in range(self.max_retries + 1):
                attempt = await self._post(session, body, ctype, retry_num, bad_signature=bad_signature,
                                           timestamp=timestamp)
                attempts.append(attempt)
                acked = attempt.status is not None and 200 <= attempt.status < 300
                if acked and retry_num >= extra_retries:
                    break
        return attempts
