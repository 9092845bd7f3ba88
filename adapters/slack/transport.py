"""The Slack transports: a reply in a channel, thread or DM (`chat.postMessage`, growing by
`chat.update`), and a private reply to a slash command (its `response_url`)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.transport import (
    AnswerDone,
    Capabilities,
    MessageRef,
    OutgoingFile,
    TextKind,
    TransportError,
)
from bot.wording import FILES_NEED_A_THREAD

from .calls import Poster
from .mrkdwn import escape, to_mrkdwn

__all__ = ["MESSAGE_LIMIT", "ResponseTransport", "SlackTransport", "styled"]

# Slack truncates `text` at 40,000 characters but recommends staying under 4,000 for readability
# (and clients collapse long messages): the renderer keeps each message's Markdown under this, and
# mrkdwn's escaping (& -> &amp;) stays far below the hard limit.
MESSAGE_LIMIT = 3_500


def styled(text: str, kind: TextKind) -> str:
    """Markdown -> mrkdwn, with the look of its kind."""
    body = to_mrkdwn(text)
    if kind is TextKind.ERROR:
        return f":warning: {body}"
    if kind is TextKind.NOTICE:
        return f"_{body}_"
    return body


class SlackTransport:
    """A reply in one channel, thread (`thread_ts`) or DM (`thread_ts` None)."""

    def __init__(
        self, poster: Poster, channel: str, thread_ts: str | None, *, max_text: int = MESSAGE_LIMIT, interval: float = 1.0
    ) -> None:
        self.capabilities = Capabilities(max_text=max_text, min_interval_s=interval)
        self.edits = self
        self.streams = None
        self.status_line = None
        self.typing = None
        self._poster = poster
        self._client = poster.client
        self._channel = channel
        self._thread_ts = thread_ts

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        response = await self._poster.call(
            "chat.postMessage",
            lambda: self._client.chat_postMessage(channel=self._channel, thread_ts=self._thread_ts, text=styled(text, kind)),
        )
        return str(response["ts"])

    async def edit(self, message: MessageRef, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        await self._poster.call(
            "chat.update", lambda: self._client.chat_update(channel=self._channel, ts=message, text=styled(text, kind))
        )
        return message

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
        await self._send(FILES_NEED_A_THREAD)

    async def _send(self, text: str) -> None:
        try:
            await self._respond(text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"slack response_url: {type(exc).__name__}: {exc}") from exc
