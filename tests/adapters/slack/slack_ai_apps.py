"""The Slack stand-in's Agents & AI Apps surface: text streaming, assistant threads and feedback buttons.

Web API methods, each as its reference page documents it (arguments, errors):
- chat.startStream / chat.appendStream / chat.stopStream
  (https://docs.slack.dev/reference/methods/chat.startStream, .../chat.appendStream, .../chat.stopStream;
  errors as listed in slack-ruby/slack-api-ref methods/chat/chat.*Stream.json). Text arrives as
  `markdown_text` or as `markdown_text` chunks (slack_sdk's `chat_stream` helper sends chunks), at most
  12,000 characters per call; the final message text is the concatenation of every accepted piece.
- assistant.threads.setStatus / setSuggestedPrompts / setTitle
  (https://docs.slack.dev/reference/methods/assistant.threads.setStatus, ...setSuggestedPrompts, ...setTitle).
Event and payload builders: `assistant_thread_started`, `assistant_thread_context_changed`
(https://docs.slack.dev/reference/events/assistant_thread_started) and `block_actions`, a user pressing a
feedback button (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.adapters.slack.slack_blocks import (
    BlocksError,
    check_blocks,
    feedback_elements,
)
from tests.adapters.slack.slack_text import Shown, shown

__all__ = ["AiAppsMethods", "Status", "Stream", "SuggestedPrompts", "Title"]

MARKDOWN_LIMIT = 12_000  # "Limit this field to 12,000 characters" (chat.startStream / appendStream / stopStream)
MAX_PROMPTS = 4  # "Use this method to set up to four suggested prompts" (assistant.threads.setSuggestedPrompts)
MAX_LOADING_MESSAGES = 10  # "Maximum of 10 messages" (assistant.threads.setStatus, loading_messages)


@dataclass
class Stream:
    """A message the app streams: every accepted piece of text and chunk, in order."""

    channel: str
    ts: str
    thread_ts: str
    recipient_team_id: str | None
    recipient_user_id: str | None
    task_display_mode: str | None
    pieces: list[str] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    state: str = "streaming"  # "streaming", "stopped" (chat.stopStream) or "expired" (expire_stream)
    blocks: list[dict[str, Any]] | None = None
    metadata: Any = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def shown(self) -> Shown:
        """What a reader sees of the streamed Markdown (slack_text.py)."""
        return shown(self.text, markdown=True)


@dataclass(frozen=True)
class Status:
    channel_id: str
    thread_ts: str
    status: str
    loading_messages: tuple[str, ...] | None


@dataclass(frozen=True)
class SuggestedPrompts:
    channel_id: str
    thread_ts: str | None
    title: str | None
    prompts: tuple[tuple[str, str], ...]  # (title, message)


@dataclass(frozen=True)
class Title:
    channel_id: str
    thread_ts: str
    title: str


def _fail(error: str, *, status: int = 200, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error": error, **extra}, status=status)


def _invalid(message: str) -> web.Response:
    """Slack's answer to arguments that break the method's schema."""
    return _fail("invalid_arguments", response_metadata={"messages": [f"[ERROR] {message}"]})


def _as_list(raw: Any) -> Any:
    if isinstance(raw, str):  # form-encoded arrays arrive as JSON text
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


class AiAppsMethods:
    """Mixed into SlackStandIn, which provides messages, scopes, ids and `_bot_post`."""

    scopes: set[str]
    team_id: str
    base_url: str
    messages: list[Any]

    def _init_ai_apps(self) -> None:
        self.streams: list[Stream] = []
        self.statuses: list[Status] = []  # every setStatus accepted, in order
        self.suggested_prompts: list[SuggestedPrompts] = []
        self.titles: list[Title] = []
        self.streaming_error: str | None = None  # set: chat.startStream answers ok:false with it
        self._status: dict[tuple[str, str], str] = {}

    if TYPE_CHECKING:  # provided by SlackStandIn

        def _bot_post(self, channel: str, text: str, thread_ts: str | None, blocks: Any = None) -> Any: ...

        def _find(self, channel: str | None, ts: str | None) -> Any: ...

        def _next_ts(self) -> str: ...

        def post_user_message(self, channel: str, text: str, user: str, *, thread_ts: str | None = None) -> str: ...

    # --- test controls -------------------------------------------------------------------------

    def stream(self, ts: str) -> Stream:
        """The stream whose message has this ts."""
        (found,) = [s for s in self.streams if s.ts == ts]
        return found

    def expire_stream(self, ts: str) -> None:
        """End a stream as Slack does when it times out server-side (slack_sdk's ChatStream.ts docstring:
        "Can be used with chat.update as a fallback if the stream expires server-side")."""
        self.stream(ts).state = "expired"

    def thread_status(self, channel_id: str, thread_ts: str) -> str | None:
        """The status shown in a thread now: set by setStatus, cleared by "" or by the app's reply."""
        return self._status.get((channel_id, thread_ts))

    def _clear_status(self, channel: str, thread_ts: str | None) -> None:
        # setStatus: "A two minute timeout applies, which will cause the status to be removed if no
        # message has been sent" - a reply from the app ends the status.
        if thread_ts:
            self._status.pop((channel, thread_ts), None)

    def _missing_scope(self, *needed: str) -> web.Response | None:
        if any(scope in self.scopes for scope in needed):
            return None
        return _fail("missing_scope", needed=",".join(needed), provided=",".join(sorted(self.scopes)))

    # --- chat.startStream / appendStream / stopStream -----------------------------------------

    def _stream_text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | web.Response:
        text = params.get("markdown_text") or ""
        chunks = _as_list(params.get("chunks")) or []
        if not isinstance(chunks, list) or not all(isinstance(c, dict) and c.get("type") for c in chunks):
            return _invalid("must provide an array of chunk objects [json-pointer:/chunks]")
        text += "".join(c.get("text") or "" for c in chunks if c["type"] == "markdown_text")
        if len(text) > MARKDOWN_LIMIT:
            return _invalid(f"must be less than {MARKDOWN_LIMIT + 1} characters [json-pointer:/markdown_text]")
        return text, chunks

    async def _m_chat_startStream(self, params: dict[str, Any]) -> web.Response:
        if self.streaming_error:
            if self.streaming_error == "missing_scope":
                return _fail("missing_scope", needed="chat:write", provided=",".join(sorted(self.scopes - {"chat:write"})))
            return _fail(self.streaming_error)
        if (refused := self._missing_scope("chat:write")) is not None:
            return refused
        channel, thread_ts = params.get("channel"), params.get("thread_ts")
        if not channel:
            return _fail("channel_not_found")
        if not thread_ts:
            return _invalid("missing required field: thread_ts")
        # recipient_team_id / recipient_user_id: "Required when streaming to channels" (DMs are D...).
        if not channel.startswith("D"):
            if not params.get("recipient_team_id"):
                return _fail("missing_recipient_team_id")
            if not params.get("recipient_user_id"):
                return _fail("missing_recipient_user_id")
        got = self._stream_text(params)
        if isinstance(got, web.Response):
            return got
        text, chunks = got
        message = self._bot_post(channel, text, thread_ts)
        stream = Stream(
            channel, message.ts, thread_ts, params.get("recipient_team_id"), params.get("recipient_user_id"),
            params.get("task_display_mode"), [text] if text else [], list(chunks),  # a copy: `requests` keeps the wire
        )
        self.streams.append(stream)
        return web.json_response({"ok": True, "channel": channel, "ts": message.ts})

    def _streaming(self, params: dict[str, Any]) -> Stream | web.Response:
        message = self._find(params.get("channel"), params.get("ts"))
        if message is None:
            return _fail("message_not_found")
        found = [s for s in self.streams if s.channel == message.channel and s.ts == message.ts]
        if not found or found[0].state != "streaming":
            return _fail("message_not_in_streaming_state")
        return found[0]

    def _extend(self, stream: Stream, text: str, chunks: list[dict[str, Any]]) -> Any:
        if text:
            stream.pieces.append(text)
        stream.chunks += chunks
        message = self._find(stream.channel, stream.ts)
        message.text = stream.text
        return message

    async def _m_chat_appendStream(self, params: dict[str, Any]) -> web.Response:
        stream = self._streaming(params)
        if isinstance(stream, web.Response):
            return stream
        got = self._stream_text(params)
        if isinstance(got, web.Response):
            return got
        text, chunks = got
        if not text and not chunks:
            return _fail("no_text")
        self._extend(stream, text, chunks)
        return web.json_response({"ok": True, "channel": stream.channel, "ts": stream.ts})

    async def _m_chat_stopStream(self, params: dict[str, Any]) -> web.Response:
        stream = self._streaming(params)
        if isinstance(stream, web.Response):
            return stream
        got = self._stream_text(params)
        if isinstance(got, web.Response):
            return got
        blocks = None
        if params.get("blocks") is not None:
            try:
                blocks = check_blocks(params["blocks"])
            except BlocksError as err:
                return web.json_response(err.body())
        message = self._extend(stream, *got)
        stream.state, stream.blocks, stream.metadata = "stopped", blocks, _as_list(params.get("metadata"))
        message.blocks = blocks  # "rendered at the bottom of the finalized message"
        return web.json_response({"ok": True, "channel": stream.channel, "ts": stream.ts, "message": message.as_dict()})

    # --- assistant.threads.* -------------------------------------------------------------------

    def _thread(self, params: dict[str, Any], *, required: bool = True) -> tuple[str, str | None] | web.Response:
        channel, thread_ts = params.get("channel_id"), params.get("thread_ts")
        if not channel:
            return _fail("channel_not_found")
        if not thread_ts:
            return _invalid("missing required field: thread_ts") if required else (channel, None)
        if self._find(channel, thread_ts) is None:
            return _fail("invalid_thread_ts")
        return channel, thread_ts

    async def _m_assistant_threads_setStatus(self, params: dict[str, Any]) -> web.Response:
        # "accepts either the assistant:write or chat:write scope" (changelog 2026-03-05).
        if (refused := self._missing_scope("chat:write", "assistant:write")) is not None:
            return refused
        where = self._thread(params)
        if isinstance(where, web.Response):
            return where
        if "status" not in params:
            return _invalid("missing required field: status")
        loading = _as_list(params.get("loading_messages"))
        if loading is not None and (not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES):
            return _invalid(f"must provide at most {MAX_LOADING_MESSAGES} items [json-pointer:/loading_messages]")
        channel, thread_ts = where
        assert thread_ts is not None
        status = params["status"] or ""
        self.statuses.append(Status(channel, thread_ts, status, tuple(loading) if loading else None))
        if status:
            self._status[(channel, thread_ts)] = status
        else:
            self._status.pop((channel, thread_ts), None)  # an empty status clears it
        return web.json_response({"ok": True})

    async def _m_assistant_threads_setSuggestedPrompts(self, params: dict[str, Any]) -> web.Response:
        if (refused := self._missing_scope("assistant:write")) is not None:
            return refused
        where = self._thread(params, required=False)
        if isinstance(where, web.Response):
            return where
        prompts = _as_list(params.get("prompts"))
        if not isinstance(prompts, list) or not prompts:
            return _invalid("missing required field: prompts")
        if len(prompts) > MAX_PROMPTS:
            # The exact wording is undocumented; the documented rule is "up to four suggested prompts".
            return _invalid(f"must provide at most {MAX_PROMPTS} items [json-pointer:/prompts]")
        if not all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts):
            return _invalid("each prompt must have a title and a message [json-pointer:/prompts]")
        pairs = tuple((p["title"], p["message"]) for p in prompts)
        self.suggested_prompts.append(SuggestedPrompts(where[0], where[1], params.get("title"), pairs))
        return web.json_response({"ok": True})

    async def _m_assistant_threads_setTitle(self, params: dict[str, Any]) -> web.Response:
        if (refused := self._missing_scope("assistant:write")) is not None:
            return refused
        where = self._thread(params)
        if isinstance(where, web.Response):
            return where
        if not params.get("title"):
            return _invalid("missing required field: title")
        assert where[1] is not None
        self.titles.append(Title(where[0], where[1], params["title"]))
        return web.json_response({"ok": True})

    # --- events and interaction payloads ---------------------------------------------------------

    def assistant_thread_started(
        self, *, user: str = "U0ALICE", channel: str = "D0ALICE", context_channel: str | None = None,
    ) -> dict[str, Any]:
        """A user opened a new assistant thread: Slack creates its root message (subtype
        assistant_app_thread) in the app's DM and announces the thread. Returns the event."""
        ts = self.post_user_message(channel, "New chat", user)
        self._find(channel, ts).subtype = "assistant_app_thread"
        return self._assistant_event("assistant_thread_started", channel, ts, user, context_channel)

    def assistant_thread_context_changed(
        self, channel: str, thread_ts: str, *, user: str = "U0ALICE", context_channel: str | None = None,
    ) -> dict[str, Any]:
        """The user moved to another channel while the assistant thread stayed open."""
        return self._assistant_event("assistant_thread_context_changed", channel, thread_ts, user, context_channel)

    def _assistant_event(
        self, kind: str, channel: str, thread_ts: str, user: str, context_channel: str | None,
    ) -> dict[str, Any]:
        context: dict[str, Any] = {"team_id": self.team_id, "enterprise_id": None}
        if context_channel:
            context["channel_id"] = context_channel
        return {
            "type": kind,
            "assistant_thread": {"user_id": user, "context": context, "channel_id": channel, "thread_ts": thread_ts},
            "event_ts": self._next_ts(),
        }

    def block_actions(
        self, channel: str, ts: str, *, user: str = "U0ALICE", choice: str = "positive",
    ) -> dict[str, Any]:
        """The payload of `user` pressing the positive or negative feedback button of a bot message.

        Only a button the message shows can be pressed: a message without feedback_buttons fails the test."""
        assert choice in ("positive", "negative"), choice
        message = self._find(channel, ts)
        shown = feedback_elements(message.blocks if message is not None else None)
        if not shown:
            raise AssertionError(f"stand-in: message {ts} in {channel} shows no feedback buttons")
        block_id, element = shown[0]
        button = element[f"{choice}_button"]
        container: dict[str, Any] = {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
        trigger = f"{int(time.time())}.{uuid.uuid4().hex[:12]}"
        return {
            "type": "block_actions",
            "user": {"id": user, "username": "alice", "name": "alice", "team_id": self.team_id},
            "api_app_id": "A0APP",
            "token": "legacy-verification-token",
            "container": container,
            "trigger_id": trigger,
            "team": {"id": self.team_id, "domain": "standin"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else "helpdesk"},
            "message": message.as_dict(),
            "state": {"values": {}},
            "response_url": f"{self.base_url}/response/{trigger}",
            "actions": [{
                "type": "feedback_buttons",
                "action_id": element["action_id"],
                "block_id": block_id,
                "value": button["value"],
                "text": button["text"],
                "action_ts": f"{time.time():.6f}",
            }],
        }
