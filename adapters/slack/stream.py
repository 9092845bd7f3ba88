"""Rendering one reply stream into a Slack thread: a placeholder, throttled `chat.update`s as the
answer grows, further messages when it outgrows one, and back-off on 429 without losing text.

Slack rate-limits per method and workspace (chat.update is tier 3, about 50 a minute) and answers
429 with `Retry-After`. While a method is blocked, streaming updates are skipped (the newest text
waits in `pending`); the final render waits for the block to pass and always sends the full text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .mrkdwn import MESSAGE_LIMIT, split_message

__all__ = ["Poster", "ReplyStream"]

log = logging.getLogger(__name__)

EMPTY_ANSWER = "_(The model returned an empty answer.)_"


class Poster:
    """Web API writes shared by every reply of the adapter, with one back-off clock per method."""

    def __init__(self, client: AsyncWebClient, *, max_attempts: int = 5) -> None:
        self.client = client
        self._blocked_until: dict[str, float] = {}
        self._max_attempts = max_attempts

    def blocked_for(self, method: str) -> float:
        return max(0.0, self._blocked_until.get(method, 0.0) - time.monotonic())

    async def call(
        self, method: str, send: Callable[[], Awaitable[Any]], *, wait: bool = True
    ) -> Any | None:
        """Run `send`; on 429 remember Retry-After for `method`. With wait=False a blocked method
        is skipped (None); with wait=True it sleeps the block out and tries again."""
        for _ in range(self._max_attempts):
            delay = self.blocked_for(method)
            if delay > 0:
                if not wait:
                    return None
                await asyncio.sleep(delay)
            try:
                return await send()
            except SlackApiError as exc:
                if exc.response.status_code != 429:
                    raise
                retry_after = float(exc.response.headers.get("Retry-After", "1") or 1)
                self._blocked_until[method] = time.monotonic() + retry_after
                log.warning("slack %s rate-limited: retrying after %.0f s", method, retry_after)
                if not wait:
                    return None
        raise RuntimeError(f"slack {method} still rate-limited after {self._max_attempts} attempts")


class ReplyStream:
    """The messages one reply occupies in a channel or thread; `show` makes them display `text`."""

    def __init__(
        self, poster: Poster, channel: str, thread_ts: str | None, *,
        limit: int = MESSAGE_LIMIT, interval: float = 1.0,
    ) -> None:
        self._poster = poster
        self._channel = channel
        self._thread_ts = thread_ts
        self._limit = limit
        self._interval = interval
        self._ts: list[str] = []
        self._shown: list[str] = []
        self._last = 0.0
        self.pending: str | None = None

    @property
    def started(self) -> bool:
        return bool(self._ts)

    async def show(self, text: str, *, final: bool = False) -> None:
        """Display `text` (mrkdwn). Intermediate calls are throttled to one per `interval`; a final
        call always lands, waiting out rate limits."""
        text = text if text.strip() else EMPTY_ANSWER
        if not final and self._ts and time.monotonic() - self._last < self._interval:
            self.pending = text
            return
        self.pending = text
        self._last = time.monotonic()
        done = await self._apply(split_message(text, self._limit), wait=final)
        if done:
            self.pending = None

    async def flush(self) -> None:
        """Send text held back by throttling or a rate limit."""
        if self.pending is not None:
            await self.show(self.pending, final=True)

    async def _apply(self, chunks: list[str], *, wait: bool) -> bool:
        complete = True
        for i, chunk in enumerate(chunks):
            if i < len(self._ts):
                if self._shown[i] == chunk:
                    continue
                ts = self._ts[i]
                sent = await self._poster.call(
                    "chat.update",
                    lambda ts=ts, chunk=chunk: self._poster.client.chat_update(channel=self._channel, ts=ts, text=chunk),
                    wait=wait,
                )
                if sent is None:
                    complete = False
                    continue
                self._shown[i] = chunk
            else:
                resp = await self._poster.call(
                    "chat.postMessage",
                    lambda chunk=chunk: self._poster.client.chat_postMessage(
                        channel=self._channel, thread_ts=self._thread_ts, text=chunk
                    ),
                    wait=wait,
                )
                if resp is None:
                    return False  # later chunks must come after this one
                self._ts.append(resp["ts"])
                self._shown.append(chunk)
        if wait and len(self._ts) > len(chunks):
            # the final text is shorter than what was streamed: remove the extra messages
            for ts in self._ts[len(chunks):]:
                await self._poster.call(
                    "chat.delete", lambda ts=ts: self._poster.client.chat_delete(channel=self._channel, ts=ts)
                )
            del self._ts[len(chunks):], self._shown[len(chunks):]
        return complete
