"""The Slack transports: a reply in a channel, thread or DM, and a private reply to a slash command
(its `response_url`).

A reply in a thread streams natively (`chat.startStream` / `appendStream` / `stopStream`, Markdown);
where a workspace refuses streams (an older workspace, a missing scope) it grows by `chat.update`
instead, and `StreamGate` remembers that per workspace. Top-level DM messages are answered outside a
thread, where this adapter does not stream (see `SlackTransport.__init__`), so they grow by `chat.update`
too. An
assistant thread shows queue position and progress with `assistant.threads.setStatus`. The final
answer carries the feedback buttons (`feedback.py`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.i18n import _
from bot.transport import (
    AnswerDone,
    Capabilities,
    MessageRef,
    OutgoingFile,
    Status,
    StreamRef,
    TextKind,
    TransportError,
)
from bot.wording import FILES_NEED_A_THREAD

from .calls import Poster
from .feedback import answer_blocks, feedback_block
from .mrkdwn import escape, escape_markdown, to_mrkdwn

__all__ = ["MESSAGE_LIMIT", "Recipient", "ResponseTransport", "SlackTransport", "StreamGate", "styled"]

log = logging.getLogger(__name__)

# Slack truncates `text` at 40,000 characters but recommends staying under 4,000 for readability
# (and clients collapse long messages): the renderer keeps each message's Markdown under this, and
# mrkdwn's escaping (& -> &amp;) stays far below the hard limit.
MESSAGE_LIMIT = 3_500


def as_markdown(text: str) -> str:
    """The model's Markdown for Slack's `markdown_text` and `markdown` blocks (`escape_markdown` says
    what Slack's docs require there); the fallback `text` is mrkdwn (`styled`)."""
    return escape_markdown(text)


def _markdown_delta(sent: str, text: str) -> str:
    """What to append to a stream that shows `sent` so that it shows `text` (`text` extends `sent`).
    Escaped as a whole: a link's URL may begin in one piece and go on in the next."""
    return as_markdown(text)[len(as_markdown(sent)):]


def styled(text: str, kind: TextKind) -> str:
    """Markdown -> mrkdwn, with the look of its kind."""
    body = to_mrkdwn(text)
    if kind is TextKind.ERROR:
        return f":warning: {body}"
    if kind is TextKind.NOTICE:
        return f"_{body}_"
    return body


# chat.*Stream errors that end nothing but this stream (the message stays and chat.update can fix it).
_STREAM_ENDED = "message_not_in_streaming_state"


@dataclass(frozen=True)
class Recipient:
    """Whom a stream in a channel thread is for: streams there must name the user and their workspace."""

    team_id: str | None
    user_id: str


class StreamGate:
    """Whether the workspace the bot token belongs to (one per adapter) takes `chat.startStream`. After
    its first refusal answers grow by chat.update, and the reason is logged once."""

    def __init__(self) -> None:
        self.team: str | None = None  # set from auth.test, for the log
        self.refused: str | None = None  # the reason, once refused

    def refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason
            log.warning("slack: workspace %s refused chat.startStream (%s); answers grow by chat.update "
                        "instead (check the app's chat:write scope and the workspace's plan)", self.team, reason)


class SlackTransport:
    """A reply in one channel, thread (`thread_ts`) or DM (`thread_ts` None). Streams when `gate` is
    given and there is a thread; shows a status line when `assistant` (an assistant thread)."""

    def __init__(
        self, poster: Poster, channel: str, thread_ts: str | None, *, max_text: int = MESSAGE_LIMIT,
        interval: float = 1.0, gate: StreamGate | None = None, recipient: Recipient | None = None,
        assistant: bool = False,
    ) -> None:
        self.capabilities = Capabilities(max_text=max_text, min_interval_s=interval)
        self.edits = self
        # Streams only in a thread. chat.startStream (https://docs.slack.dev/reference/methods/chat.startStream)
        # lists `thread_ts` as optional but says "Streamed messages should always be replies to a user
        # request", and slack_sdk 3.48's `chat_startStream` takes `thread_ts` as a required argument; no
        # Slack page documents a top-level stream in a DM. The documented way would be to stream into the
        # thread of the user's top-level DM message, which moves the answer out of the DM's one running
        # conversation (a reply there is a new thread: events.py) - a product change, not made here.
        self.streams = self if gate is not None and thread_ts is not None else None
        self.status_line = self if assistant and thread_ts is not None else None
        self.typing = None
        self._poster = poster
        self._client = poster.client
        self._channel = channel
        self._thread_ts = thread_ts
        self._gate = gate
        self._recipient = recipient
        self._streamed: dict[StreamRef, str] = {}  # each open stream's text as Slack has it
        self._ended: set[StreamRef] = set()  # streams Slack ended early (expired): chat.update finishes them

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        blocks = answer_blocks(as_markdown(text), answer) if answer is not None else None
        response = await self._poster.call(
            "chat.postMessage",
            lambda: self._client.chat_postMessage(
                channel=self._channel, thread_ts=self._thread_ts, text=styled(text, kind), blocks=blocks
            ),
        )
        return str(response["ts"])

    async def edit(self, message: MessageRef, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        blocks = answer_blocks(as_markdown(text), answer) if answer is not None else None
        await self._poster.call(
            "chat.update",
            lambda: self._client.chat_update(channel=self._channel, ts=message, text=styled(text, kind), blocks=blocks),
        )
        return message

    # --- Streams ----------------------------------------------------------------------------------

    async def start_stream(self) -> StreamRef | None:
        assert self._thread_ts is not None and self._gate is not None
        if self._gate.refused is not None:
            return None
        recipient: dict[str, Any] = {}
        if not self._channel.startswith("D") and self._recipient is not None:
            recipient = {"recipient_team_id": self._recipient.team_id, "recipient_user_id": self._recipient.user_id}
        thread_ts = self._thread_ts
        try:
            response = await self._poster.call(
                "chat.startStream",
                lambda: self._client.chat_startStream(channel=self._channel, thread_ts=thread_ts, **recipient),
            )
        except TransportError as exc:
            if exc.gone:
                raise
            self._gate.refuse(str(exc))
            return None
        stream = str(response["ts"])
        self._streamed[stream] = ""
        return stream

    async def update_stream(self, stream: StreamRef, text: str) -> None:
        sent = self._streamed[stream]
        if stream in self._ended or not text.startswith(sent) or text == sent:
            return  # finish_stream shows the exact text
        try:
            await self._poster.call(
                "chat.appendStream",
                lambda: self._client.chat_appendStream(
                    channel=self._channel, ts=stream, markdown_text=_markdown_delta(sent, text)
                ),
            )
        except TransportError as exc:
            if _STREAM_ENDED not in str(exc):
                raise
            self._ended.add(stream)
            log.info("slack: stream %s in %s ended early; its answer is finished by chat.update", stream, self._channel)
            return
        self._streamed[stream] = text

    async def finish_stream(self, stream: StreamRef, text: str, *, answer: AnswerDone | None = None) -> MessageRef:
        sent = self._streamed.pop(stream)
        blocks = [feedback_block(answer)] if answer is not None else None
        if stream not in self._ended:
            rest = text[len(sent):] if text.startswith(sent) else ""
            try:
                await self._poster.call(
                    "chat.stopStream",
                    lambda: self._client.chat_stopStream(
                        channel=self._channel, ts=stream, markdown_text=_markdown_delta(sent, text) if rest else None,
                        blocks=blocks if text.startswith(sent) else None,
                    ),
                )
                if text.startswith(sent):
                    return stream
            except TransportError as exc:
                if _STREAM_ENDED not in str(exc):
                    raise
        self._ended.discard(stream)
        # The stream showed other text, or ended before all of it: the message is set to the answer.
        final = answer_blocks(as_markdown(text), answer) if answer is not None else [{"type": "markdown", "text": as_markdown(text)}]
        await self._poster.call(
            "chat.update",
            lambda: self._client.chat_update(
                channel=self._channel, ts=stream, text=styled(text, TextKind.ANSWER), blocks=final
            ),
        )
        return stream

    # --- StatusLine -----------------------------------------------------------------------------

    async def show_status(self, status: Status | None) -> None:
        """assistant.threads.setStatus; "" clears it. Best effort: a status that cannot be shown
        costs nothing but the status."""
        assert self._thread_ts is not None
        thread_ts, text = self._thread_ts, status.text if status is not None else ""
        try:
            await self._poster.call(
                "assistant.threads.setStatus",
                lambda: self._client.assistant_threads_setStatus(
                    channel_id=self._channel, thread_ts=thread_ts, status=text
                ),
            )
        except TransportError as exc:
            log.info("slack: could not show a status in %s/%s: %s", self._channel, thread_ts, exc)

    async def delete(self, message: MessageRef) -> None:
        await self._poster.call("chat.delete", lambda: self._client.chat_delete(channel=self._channel, ts=message))

    async def post_file(self, file: OutgoingFile) -> None:
        """files_upload_v2 (get an upload URL, upload, complete) into the channel or thread."""
        await self._poster.call(
            "files.upload",
            lambda: self._client.files_upload_v2(
                channel=self._channel, thread_ts=self._thread_ts, content=file.data, filename=file.filename,
                title=file.filename,
                initial_comment=escape(file.caption) if file.caption else None,  # plain text: it may quote the user
            ),
        )


class ResponseTransport:
    """A slash command's private reply in a channel: only the user who asked sees it. It cannot be
    edited, and files cannot be sent this way."""

    def __init__(self, respond: Callable[[str], Awaitable[Any]]) -> None:
        self.capabilities = Capabilities(max_text=MESSAGE_LIMIT)
        self.edits = None
        self.streams = None
        self.status_line = None
        self.typing = None
        self._respond = respond
        self._ids = itertools.count(1)

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        await self._send(styled(text, kind))
        return f"response-{next(self._ids)}"

    async def post_file(self, file: OutgoingFile) -> None:
        await self._send(_(FILES_NEED_A_THREAD))

    async def _send(self, text: str) -> None:
        try:
            await self._respond(text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"slack response_url: {type(exc).__name__}: {exc}") from exc
