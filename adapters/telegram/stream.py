"""A reply that grows while the model generates: throttled edits, more messages past 4096 characters.

The text is kept here, never in a request, so a flood-control pause (RetryAfter) only delays the
next edit; the final `Answer` replaces whatever was streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from dataclasses import dataclass

from telegram.error import RetryAfter, TelegramError

from .outbox import MessageGone, Outbox, Target
from .render import Chunk, split

__all__ = ["ReplyStream", "Typing"]

log = logging.getLogger(__name__)
EMPTY_ANSWER = "The model returned an empty answer. Try /retry or rephrase the question."


@dataclass
class _Shown:
    message_id: int
    html: str


class ReplyStream:
    """Owns the messages of one answer; `interval` is the minimum time between edits."""

    def __init__(self, outbox: Outbox, target: Target, interval: float) -> None:
        self._outbox = outbox
        self._target = target
        self._interval = interval
        self._shown: list[_Shown] = []
        self._status: str | None = None
        self._status_at = 0.0
        self._text = ""
        self._dirty = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._stopping = False
        self._writing = False

    @property
    def started(self) -> bool:
        return bool(self._shown)

    def status(self, text: str, after: float = 0.0) -> None:
        """A status line (queue position) shown until the answer starts, not before `after` seconds."""
        if self._status is None:
            self._status_at = time.monotonic() + after
        self._status = text
        self._poke()

    def delta(self, text: str) -> None:
        self._text += text
        self._poke()

    def _poke(self) -> None:
        self._dirty.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name=f"telegram-stream-{self._target.chat_id}")

    def _chunks(self) -> list[Chunk]:
        if self._text.strip():
            return split(self._text)
        if self._status and time.monotonic() >= self._status_at:
            return [Chunk(html.escape(self._status, quote=False), self._status)]
        return []

    async def _run(self) -> None:
        while not self._stopping:
            await self._dirty.wait()
            ready = self._last_write + self._interval
            if not self._text.strip():
                ready = max(ready, self._status_at)
            pause = ready - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self._dirty.clear()
            self._writing = True
            try:
                await self._sync(self._chunks(), final=False)
            except RetryAfter:
                self._dirty.set()  # the outbox remembers the pause; the next pass waits it out
            except TelegramError as err:  # BadRequest, NetworkError, Forbidden (the user blocked the bot), ...
                log.warning("telegram streaming edit failed in chat %s: %s", self._target.chat_id, err)
            finally:
                self._writing = False

    async def _sync(self, chunks: list[Chunk], *, final: bool) -> None:
        for i, chunk in enumerate(chunks):
            if i < len(self._shown):
                shown = self._shown[i]
                if shown.html == chunk.html:
                    continue
                self._last_write = time.monotonic()
                try:
                    await self._outbox.edit(self._target, shown.message_id, chunk, wait=final)
                except MessageGone:
                    message, _ = await self._outbox.send(self._target, chunk, quote=i == 0, wait=final)
                    shown.message_id = message.message_id
                shown.html = chunk.html
            else:
                self._last_write = time.monotonic()
                message, _ = await self._outbox.send(self._target, chunk, quote=i == 0, wait=final)
                self._shown.append(_Shown(message.message_id, chunk.html))
        if final:
            for extra in self._shown[len(chunks) :]:
                await self._outbox.delete(self._target, extra.message_id)
            del self._shown[len(chunks) :]

    async def _stop_pump(self) -> None:
        # A request in flight is let finish: cancelling it could leave a sent message we never saw.
        if self._pump is not None:
            self._stopping = True
            if not self._writing:
                self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None

    async def finish(self, markdown: str) -> None:
        """Show the final answer, replacing the streamed text (waits out flood control)."""
        await self._stop_pump()
        self._text = markdown or EMPTY_ANSWER
        chunks = split(markdown) or split(EMPTY_ANSWER)
        await self._sync(chunks, final=True)

    async def close(self) -> None:
        """Stop editing; what is shown stays (used when a request ends without an Answer)."""
        await self._stop_pump()
        if not self._text.strip() and self._shown:  # only a queue status: remove it
            for shown in self._shown:
                await self._outbox.delete(self._target, shown.message_id)
            self._shown.clear()


class Typing:
    """Repeats the typing action (Telegram shows it for about 5 seconds) until stopped."""

    def __init__(self, outbox: Outbox, target: Target, every: float = 4.0) -> None:
        self._outbox = outbox
        self._target = target
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"telegram-typing-{self._target.chat_id}")

    async def _run(self) -> None:
        while True:
            await self._outbox.typing(self._target)
            await asyncio.sleep(self._every)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
