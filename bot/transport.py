"""The transport protocol: what the reply renderer needs from a platform to show one reply.

A transport is made per reply (one incoming message's destination: a chat, a thread, an HTTP
response) and carries out writes; the renderer (`bot.render`) makes every decision about them. Texts
are the model's Markdown; each transport converts them to its platform's markup and styles them by
`TextKind`. Optional abilities are optional attributes: a transport that cannot edit has `edits =
None`, and so on; the renderer never calls what a transport does not offer.

Writes wait out the platform's rate limits themselves (Telegram RetryAfter, Slack 429 Retry-After)
and raise `TransportError` when the platform refuses. The renderer never loses text to a refused or
delayed update: every update carries the full text so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "AnswerDone",
    "Capabilities",
    "Edits",
    "MessageRef",
    "OutgoingFile",
    "Status",
    "StatusKind",
    "StatusLine",
    "StreamRef",
    "Streams",
    "TextKind",
    "Transport",
    "TransportError",
    "Typing",
]

MessageRef = str  # a posted message, as its transport identifies it (Telegram message id, Slack ts)
StreamRef = str  # an open native stream


class TextKind(StrEnum):
    ANSWER = "answer"  # (a part of) the model's answer
    INFO = "info"  # command output, acknowledgements
    ERROR = "error"  # something failed; says what to do
    NOTICE = "notice"  # a short note that belongs with the answer
    STATUS = "status"  # queue position or "working", replaced by the answer


class StatusKind(StrEnum):
    QUEUED = "queued"
    WORKING = "working"


@dataclass(frozen=True)
class Status:
    kind: StatusKind
    text: str  # worded by the renderer
    position: int | None = None  # for QUEUED: 1 = next


@dataclass(frozen=True)
class Capabilities:
    max_text: int  # longest message, in UTF-16 units of the Markdown handed over; longer answers are split
    min_interval_s: float = 0.0  # shortest time between two updates of one growing message


@dataclass(frozen=True)
class OutgoingFile:
    filename: str
    data: bytes = field(repr=False)
    mime_type: str
    caption: str | None = None
    picture: bool = False  # show it as a picture where the platform can


@dataclass(frozen=True)
class AnswerDone:
    """Rides on the write that completes an answer, so a transport can attach controls (feedback) to it."""

    turn_id: int
    text: str  # the whole answer, every message of it
    latency_ms: int
    output_tokens: int


class TransportError(Exception):
    """The platform refused a write. `gone`: nobody can be told any more (blocked, removed, disconnected)."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


@runtime_checkable
class Edits(Protocol):
    """Changing what was posted: answers then grow by edits (throttled by `min_interval_s`)."""

    async def edit(
        self, message: MessageRef, text: str, kind: TextKind, *, answer: AnswerDone | None = None
    ) -> MessageRef:
        """Make `message` show `text`; returns the message now showing it (a new one if the old was deleted)."""
        ...

    async def delete(self, message: MessageRef) -> None: ...


@runtime_checkable
class Streams(Protocol):
    """A native answer stream (Slack chat.startStream, Telegram drafts, server-sent events)."""

    async def start_stream(self) -> StreamRef | None:
        """Open a stream; None when the platform refuses here, and the renderer falls back to edits."""
        ...

    async def update_stream(self, stream: StreamRef, text: str) -> None:
        """`text` is the stream's whole text so far. It usually extends the previous text; when it does
        not (a paragraph moved on to the next message), show what can be shown: `finish_stream` fixes it."""
        ...

    async def finish_stream(self, stream: StreamRef, text: str, *, answer: AnswerDone | None = None) -> MessageRef:
        """End the stream showing exactly `text`; returns the message it left."""
        ...


@runtime_checkable
class StatusLine(Protocol):
    """A status shown apart from the messages (an assistant thread's status, the web chat's status bar)."""

    async def show_status(self, status: Status | None) -> None:
        """Show `status`; None clears it."""
        ...


@runtime_checkable
class Typing(Protocol):
    """A "typing…" indicator that lasts about `typing_every_s` seconds per call."""

    @property
    def typing_every_s(self) -> float: ...

    async def show_typing(self) -> None:
        """Best effort: failures are the transport's to log, never raised."""
        ...


class Transport(Protocol):
    """One reply's destination. `edits`, `streams`, `status_line` and `typing` are the transport
    itself when it offers that ability, else None (plain attributes in implementations)."""

    @property
    def capabilities(self) -> Capabilities: ...
    @property
    def edits(self) -> Edits | None: ...
    @property
    def streams(self) -> Streams | None: ...
    @property
    def status_line(self) -> StatusLine | None: ...
    @property
    def typing(self) -> Typing | None: ...

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        """A new message; `answer` when it completes an answer."""
        ...

    async def post_file(self, file: OutgoingFile) -> None: ...
