"""A transport that writes down what the renderer asks of it, with the abilities a test gives it.

`messages` is what a user would see (deleted messages removed); `calls` is every write in order.
`block_next(method, seconds)` makes the next call of a method wait, as a transport waiting out a rate
limit does; `refuse_next(method, gone=...)` makes it raise TransportError.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from bot.transport import AnswerDone, Capabilities, MessageRef, OutgoingFile, Status, StreamRef, TextKind, TransportError

__all__ = ["Recording", "Shown"]


@dataclass
class Shown:
    text: str
    kind: TextKind
    answer: AnswerDone | None = None
    history: list[str] = field(default_factory=list)


class Recording:
    def __init__(
        self,
        *,
        max_text: int = 4096,
        interval: float = 0.0,
        edits: bool = True,
        streams: bool = False,
        status_line: bool = False,
        typing: bool = False,
        refuse_streams: bool = False,
    ) -> None:
        self.capabilities = Capabilities(max_text=max_text, min_interval_s=interval)
        self.edits = self if edits else None
        self.streams = self if streams else None
        self.status_line = self if status_line else None
        self.typing = self if typing else None
        self.typing_every_s = 0.05
        self.refuse_streams = refuse_streams
        self.calls: list[tuple[str, Any]] = []
        self.messages: dict[str, Shown] = {}
        self.streamed: dict[str, list[str]] = {}  # stream -> the texts it was updated with
        self.files: list[OutgoingFile] = []
        self.statuses: list[Status | None] = []
        self.typings = 0
        self._ids = itertools.count(1)
        self._blocks: dict[str, list[float]] = {}
        self._refusals: dict[str, list[bool]] = {}
        self._holds: dict[str, list[asyncio.Event]] = {}

    # --- test controls --------------------------------------------------------------------------

    def block_next(self, method: str, seconds: float) -> None:
        self._blocks.setdefault(method, []).append(seconds)

    def hold_next(self, method: str) -> asyncio.Event:
        """The next call of `method` waits until the returned event is set."""
        event = asyncio.Event()
        self._holds.setdefault(method, []).append(event)
        return event

    async def wait_calls(self, count: int, timeout: float = 5.0) -> None:
        async def reached() -> None:
            while len(self.calls) < count:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(reached(), timeout)

    def refuse_next(self, method: str, *, gone: bool = False, count: int = 1) -> None:
        self._refusals.setdefault(method, []).extend([gone] * count)

    def texts(self, kind: TextKind | None = None) -> list[str]:
        return [m.text for m in self.messages.values() if kind is None or m.kind is kind]

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def _call(self, method: str, args: Any) -> None:
        self.calls.append((method, args))
        if self._refusals.get(method):
            gone = self._refusals[method].pop(0)
            raise TransportError(f"{method} refused", gone=gone)
        if self._blocks.get(method):
            await asyncio.sleep(self._blocks[method].pop(0))
        if self._holds.get(method):
            await self._holds[method].pop(0).wait()

    # --- Transport --------------------------------------------------------------------------------

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        await self._call("post", (text, kind, answer))
        ref = f"m{next(self._ids)}"
        self.messages[ref] = Shown(text, kind, answer)
        return ref

    async def post_file(self, file: OutgoingFile) -> None:
        await self._call("post_file", file)
        self.files.append(file)

    async def edit(self, message: MessageRef, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        await self._call("edit", (message, text, kind, answer))
        shown = self.messages[message]
        shown.history.append(shown.text)
        shown.text, shown.kind, shown.answer = text, kind, answer
        return message

    async def delete(self, message: MessageRef) -> None:
        await self._call("delete", message)
        del self.messages[message]

    async def start_stream(self) -> StreamRef | None:
        await self._call("start_stream", None)
        if self.refuse_streams:
            return None
        stream = f"s{next(self._ids)}"
        self.streamed[stream] = []
        return stream

    async def update_stream(self, stream: StreamRef, text: str) -> None:
        await self._call("update_stream", (stream, text))
        self.streamed[stream].append(text)

    async def finish_stream(self, stream: StreamRef, text: str, *, answer: AnswerDone | None = None) -> MessageRef:
        await self._call("finish_stream", (stream, text, answer))
        self.messages[stream] = Shown(text, TextKind.ANSWER, answer, list(self.streamed[stream]))
        return stream

    async def show_status(self, status: Status | None) -> None:
        await self._call("show_status", status)
        self.statuses.append(status)

    async def show_typing(self) -> None:
        self.typings += 1
