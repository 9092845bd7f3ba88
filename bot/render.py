"""The one reply renderer: the core's `Reply` stream becomes writes on a `Transport`, the same way on
every platform.

Every decision about how a reply looks is made here:
- Statuses. The queue position and "working" ("reading the picture") go to the transport's status
  line; without one, into a placeholder message that the answer (or an error) then replaces, except
  that a new "working" message is left to a typing indicator or a native stream where there is one (a
  queue message already shown becomes it); a transport that can neither edit nor show a status gets the
  queue position as a message of its own. "Next in the queue" is shown only once the wait has lasted
  `queue_notice_delay_s`: usually the answer starts at once.
- The answer. It grows in a native stream, else by edits, else arrives once complete; updates are at
  least `capabilities.min_interval_s` apart, and each carries the whole text so far, so an update
  delayed or refused (rate limits) loses nothing. It is cut into messages of at most
  `capabilities.max_text` (`bot.markdown.split`). The final answer replaces whatever was streamed,
  leftover messages are deleted, and its last write carries `AnswerDone`. Long code also goes as a
  file (`bot.codefiles`).
- The wording of statuses and of an empty answer (`bot.wording`).
Updates are written by one pump task per reply. A refused update is logged and the next one carries
everything; a refused final write reaches the caller. Once the platform says the recipient is gone,
nothing more is written, but the replies are still read to their end (the answer is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from bot.codefiles import code_files
from bot.i18n import _
from bot.markdown import split
from bot.messages import (
    Answer,
    AnswerDelta,
    Document,
    Generating,
    Notice,
    Picture,
    QueuePosition,
    Reply,
    Text,
)
from bot.transport import (
    AnswerDone,
    MessageRef,
    OutgoingFile,
    Status,
    StatusKind,
    StreamRef,
    TextKind,
    Transport,
    TransportError,
)
from bot.wording import EMPTY_ANSWER, queued, reading

__all__ = ["RenderOptions", "Renderer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderOptions:
    code_file_chars: int = 1500  # code blocks at least this long also go as files
    queue_notice_delay_s: float = 1.0  # "next in the queue" only after waiting this long


class Renderer:
    def __init__(self, options: RenderOptions | None = None) -> None:
        self.options = options or RenderOptions()

    async def render(self, replies: AsyncIterator[Reply], transport: Transport) -> None:
        """Show every reply; returns when `replies` is exhausted and everything is written."""
        run = _Run(transport, self.options)
        try:
            run.begin()
            async for reply in replies:
                await run.handle(reply)
            await run.complete()
        finally:
            await run.stop()

    async def say(self, transport: Transport, text: str, kind: TextKind = TextKind.INFO) -> None:
        """One message outside any conversation (a refusal, a failure report)."""
        await _Run(transport, self.options).handle(Text(text, kind="error" if kind is TextKind.ERROR else "info"))


class _Mode(StrEnum):
    STREAM = "stream"  # native streams
    EDIT = "edit"  # post, then edit
    FINAL = "final"  # post once complete


@dataclass
class _Slot:
    """One message of the answer: an open stream, or a posted message and the text it shows."""

    text: str
    ref: MessageRef | None = None
    stream: StreamRef | None = None


class _Run:
    """The state of one reply being rendered."""

    def __init__(self, transport: Transport, options: RenderOptions) -> None:
        self.t = transport
        self.options = options
        self.limit = transport.capabilities.max_text
        self.interval = transport.capabilities.min_interval_s
        self.mode = _Mode.STREAM if transport.streams else _Mode.EDIT if transport.edits else _Mode.FINAL
        self.text = ""  # the answer streamed so far
        self.slots: list[_Slot] = []  # the answer's messages
        self.placeholder: _Slot | None = None  # a status message, replaced by what comes next
        self.status: Status | None = None  # the status to show
        self.status_due = 0.0
        self.shown_status: Status | None = None
        self.gone = False
        self._poked = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None
        self._writing = False
        self._stopping = False
        self._last_write = 0.0

    # --- the reply stream -------------------------------------------------------------------------

    def begin(self) -> None:
        if self.t.typing is not None:
            self._typing = asyncio.create_task(self._typing_loop(), name="reply-typing")

    async def handle(self, reply: Reply) -> None:
        if self.gone:
            return
        try:
            await self._dispatch(reply)
        except TransportError as exc:
            if not exc.gone:
                raise
            self._lost(exc)

    async def _dispatch(self, reply: Reply) -> None:
        match reply:
            case QueuePosition():
                delay = self.options.queue_notice_delay_s if reply.position <= 1 else 0.0
                self._want_status(Status(StatusKind.QUEUED, queued(reply.position), reply.position), delay)
            case Generating(pictures=pictures, videos=videos, pages=pages):
                self._want_status(Status(StatusKind.WORKING, reading(pictures, videos, pages)), 0.0)
            case AnswerDelta():
                self.text += reply.text
                self._poke()
            case Answer():
                await self._final_answer(reply)
            case Text():
                await self._text(reply.text, TextKind.ERROR if reply.kind == "error" else TextKind.INFO)
            case Notice():
                await self.t.post(reply.text, TextKind.NOTICE)
            case Document() | Picture():
                await self._flush()
                await self.t.post_file(
                    OutgoingFile(reply.filename, reply.data, reply.mime_type, reply.caption, isinstance(reply, Picture))
                )
                await self._content_shown()
            case _:
                assert_never(reply)

    async def complete(self) -> None:
        """The replies ended normally: show a partial answer whole, and take away a lone status."""
        if self.gone:
            return
        try:
            await self._flush()
            await self._drop_status()
        except TransportError as exc:
            if not exc.gone:
                raise
            self._lost(exc)

    async def stop(self) -> None:
        """Always runs last, also when the reply was cancelled (/clear): end the pump and the typing
        indicator, and take away a status nobody will replace."""
        tasks = [t for t in (self._pump, self._typing) if t is not None]
        self._pump = self._typing = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self.gone:
            return
        try:
            await self._close_streams()
            await self._drop_status()
        except (TransportError, OSError, RuntimeError) as exc:  # after a cancel the platform session may be closing
            log.info("could not tidy up after the reply: %s", exc)

    async def _close_streams(self) -> None:
        """A reply stopped mid-answer (/clear) leaves what it showed, as edits do: a native stream left
        open would vanish (a Telegram draft) or stay "streaming" until the platform times it out (Slack)."""
        streams = self.t.streams
        for slot in self.slots:
            if streams is not None and slot.stream is not None and slot.text:
                stream, slot.stream = slot.stream, None
                slot.ref = await streams.finish_stream(stream, slot.text)

    def _lost(self, exc: TransportError) -> None:
        self.gone = True
        log.info("the recipient is gone (%s); the rest of the reply is not shown", exc)

    # --- statuses ---------------------------------------------------------------------------------

    def _want_status(self, status: Status, delay: float) -> None:
        if self.slots or self.text.strip():
            return  # the answer shows already
        now = time.monotonic()
        # An update of a status on screen is shown at once; a first "next in line" may wait.
        self.status_due = now if self.shown_status is not None or self.placeholder is not None else now + delay
        self.status = status
        self._poke()

    async def _show_status(self, status: Status) -> None:
        shown, self.shown_status = self.shown_status, status
        try:
            await self._write_status(status)
        except TransportError:
            self.shown_status = shown  # not shown: the next update tries again
            raise

    async def _write_status(self, status: Status) -> None:
        t = self.t
        if t.status_line is not None:
            await t.status_line.show_status(status)
        elif self.placeholder is not None and t.edits is not None:
            if self.placeholder.text == status.text:
                return
            assert self.placeholder.ref is not None
            self.placeholder.ref = await t.edits.edit(self.placeholder.ref, status.text, TextKind.STATUS)
            self.placeholder.text = status.text
        elif status.kind is StatusKind.WORKING and (t.typing is not None or t.streams is not None):
            return  # the typing indicator says it; a native stream shows the answer growing in a moment
        elif t.edits is not None:
            self.placeholder = _Slot(status.text, await t.post(status.text, TextKind.STATUS))
        elif status.kind is StatusKind.QUEUED:
            await t.post(status.text, TextKind.STATUS)
        else:
            return
        self._last_write = time.monotonic()  # nothing written, nothing to space the next write from

    async def _content_shown(self) -> None:
        """Something besides a status is visible: the typing indicator and the status line stop."""
        self.status = None
        if self._typing is not None:
            self._typing.cancel()
            await asyncio.wait([self._typing])
            self._typing = None
        if self.t.status_line is not None and self.shown_status is not None:
            self.shown_status = None
            await self.t.status_line.show_status(None)

    async def _drop_status(self) -> None:
        placeholder, self.placeholder = self.placeholder, None
        if placeholder is not None and placeholder.ref is not None and self.t.edits is not None:
            await self.t.edits.delete(placeholder.ref)
        if self.t.status_line is not None and self.shown_status is not None:
            self.shown_status = None
            await self.t.status_line.show_status(None)

    async def _typing_loop(self) -> None:
        typing = self.t.typing
        assert typing is not None
        while True:
            await typing.show_typing()
            await asyncio.sleep(typing.typing_every_s)

    # --- the pump: throttled updates ----------------------------------------------------------------

    def _poke(self) -> None:
        self._poked.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._pump_loop(), name="reply-updates")

    def _ready_at(self) -> float:
        if self.text.strip():
            return self._last_write + self.interval
        if self.status is not None and self.status != self.shown_status:
            return self.status_due
        return 0.0

    async def _pump_loop(self) -> None:
        while not self._stopping:
            await self._poked.wait()
            while (pause := self._ready_at() - time.monotonic()) > 0 and not self._stopping:
                self._poked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poked.wait(), pause)
            self._poked.clear()
            if self._stopping or self.gone:
                return
            self._writing = True
            try:
                if self.text.strip():
                    await self._show_answer(self.text, final=False)
                elif self.status is not None and self.status != self.shown_status:
                    await self._show_status(self.status)
            except TransportError as exc:
                if exc.gone:
                    self._lost(exc)
                    return
                log.warning("a reply update was refused (the next one carries the whole text): %s", exc)
            finally:
                self._writing = False

    async def _stop_pump(self) -> None:
        """End the pump; a write in progress is let finish (cancelling it could lose a message it sent)."""
        pump = self._pump
        if pump is None:
            return
        self._stopping = True
        if self._writing:
            self._poked.set()
        else:
            pump.cancel()
        await asyncio.wait([pump])  # cancelled here, `stop` ends the pump
        self._pump = None
        self._stopping = False

    # --- the answer ---------------------------------------------------------------------------------

    async def _final_answer(self, answer: Answer) -> None:
        await self._stop_pump()
        text = answer.text if answer.text.strip() else _(EMPTY_ANSWER)
        done = AnswerDone(answer.turn_id, text, answer.latency_ms, answer.output_tokens)
        await self._show_answer(text, final=True, done=done)
        self.text, self.slots = "", []
        if not answer.files_follow:  # a preset that sends its own files says so
            for file in code_files(answer.text, answer.turn_id, self.options.code_file_chars):
                await self.t.post_file(file)

    async def _flush(self) -> None:
        """An answer streamed without its final version (an error ended it) is shown up to where it got."""
        await self._stop_pump()
        if self.text.strip():
            await self._show_answer(self.text, final=True)
        self.text, self.slots = "", []

    async def _show_answer(self, text: str, *, final: bool, done: AnswerDone | None = None) -> None:
        chunks = split(text, self.limit)
        if not chunks or (self.mode is _Mode.FINAL and not final):
            return
        if not self.slots:
            await self._content_shown()
        if self.mode is _Mode.STREAM and not await self._stream(chunks, final, done):
            return await self._show_answer(text, final=final, done=done)  # fell back to another mode
        if self.mode is _Mode.EDIT:
            await self._edit(chunks, final, done)
        elif self.mode is _Mode.FINAL and final:
            for i, chunk in enumerate(chunks):
                await self.t.post(chunk, TextKind.ANSWER, answer=done if i == len(chunks) - 1 else None)
        self._last_write = time.monotonic()

    async def _edit(self, chunks: list[str], final: bool, done: AnswerDone | None) -> None:
        edits = self.t.edits
        assert edits is not None
        if not self.slots and self.placeholder is not None:
            self.slots.append(self.placeholder)  # the status message becomes the answer's first message
            self.placeholder = None
        for i, chunk in enumerate(chunks):
            info = done if i == len(chunks) - 1 else None
            if i < len(self.slots):
                slot = self.slots[i]
                if slot.text != chunk or info is not None:
                    assert slot.ref is not None
                    slot.ref = await edits.edit(slot.ref, chunk, TextKind.ANSWER, answer=info)
                    slot.text = chunk
            else:
                self.slots.append(_Slot(chunk, await self.t.post(chunk, TextKind.ANSWER, answer=info)))
        if final:
            for extra in self.slots[len(chunks) :]:
                if extra.ref is not None:
                    await edits.delete(extra.ref)
            del self.slots[len(chunks) :]

    async def _stream(self, chunks: list[str], final: bool, done: AnswerDone | None) -> bool:
        """Show `chunks` in native streams, all but the last finished; False when the transport
        refused a new stream and the mode changed."""
        streams = self.t.streams
        assert streams is not None
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            info = done if last else None
            if i >= len(self.slots):
                stream = await streams.start_stream()
                if stream is None:
                    self.mode = _Mode.EDIT if self.t.edits is not None else _Mode.FINAL
                    log.info("no native stream here; the answer continues in %s mode", self.mode)
                    return False
                if not self.slots and self.placeholder is not None and self.placeholder.ref is not None and self.t.edits:
                    await self.t.edits.delete(self.placeholder.ref)  # the stream replaces the status message
                    self.placeholder = None
                self.slots.append(_Slot("", stream=stream))
            slot = self.slots[i]
            if slot.stream is not None:
                if not last or final:
                    slot.ref = await streams.finish_stream(slot.stream, chunk, answer=info)
                    slot.stream, slot.text = None, chunk
                elif slot.text != chunk:
                    await streams.update_stream(slot.stream, chunk)
                    slot.text = chunk
            elif final and (slot.text != chunk or info is not None):
                # A finished message whose text the final answer changed (e.g. a preset's own answer).
                if self.t.edits is not None and slot.ref is not None:
                    slot.ref = await self.t.edits.edit(slot.ref, chunk, TextKind.ANSWER, answer=info)
                else:
                    slot.ref = await self.t.post(chunk, TextKind.ANSWER, answer=info)
                slot.text = chunk
        if final:
            for extra in self.slots[len(chunks) :]:
                ref = extra.ref
                if extra.stream is not None:
                    ref = await streams.finish_stream(extra.stream, extra.text)
                if ref is not None and self.t.edits is not None:
                    await self.t.edits.delete(ref)
            del self.slots[len(chunks) :]
        return True

    # --- other messages -----------------------------------------------------------------------------

    async def _text(self, text: str, kind: TextKind) -> None:
        await self._flush()
        chunks = split(text, self.limit) or [text]
        first = 0
        if self.placeholder is not None and self.placeholder.ref is not None and self.t.edits is not None:
            await self.t.edits.edit(self.placeholder.ref, chunks[0], kind)  # the text replaces the status
            self.placeholder, first = None, 1
        await self._content_shown()
        for chunk in chunks[first:]:
            await self.t.post(chunk, kind)
