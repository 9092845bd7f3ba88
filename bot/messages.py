"""Values that cross the boundary between an adapter and the bot core.

An adapter turns a platform event into an `IncomingMessage` and renders the `Reply` stream that
`Conversations.handle` yields. The core never sees a platform object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.language import Language

__all__ = [
    "Answer",
    "AnswerDelta",
    "Attachment",
    "Document",
    "Generating",
    "IncomingMessage",
    "Notice",
    "Picture",
    "QueuePosition",
    "Reply",
    "Text",
]


@dataclass(frozen=True)
class Attachment:
    """A file the user sent, already downloaded by the adapter."""

    data: bytes = field(repr=False)
    filename: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """One user message, in platform-neutral form.

    `thread_key` identifies the conversation within the platform (e.g. "chat:123/topic:7").
    Text starting with "/" is a command; adapters translate their own command forms to it.
    """

    platform: str
    thread_key: str
    user_id: str
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    user_name: str | None = None
    language: Language = Language.EN  # what the bot speaks to this user, decided by the inbox


@dataclass(frozen=True)
class QueuePosition:
    """The request waits behind others; 1 means it is next."""

    position: int


@dataclass(frozen=True)
class Generating:
    """The model started working on the answer (sent once, before the first delta): it is reading
    the question with its `pictures`, `videos` and a PDF's `pages`, then writes."""

    pictures: int = 0  # pictures the user sent (or tiles of a long screenshot), not a PDF's pages
    videos: int = 0
    pages: int = 0


@dataclass(frozen=True)
class AnswerDelta:
    """A new piece of the answer being generated."""

    text: str


@dataclass(frozen=True)
class Answer:
    """The complete answer; adapters replace whatever they streamed with `text`."""

    text: str
    turn_id: int
    latency_ms: int
    output_tokens: int
    files_follow: bool = False  # the answer's code comes next as a Document: adapters add no file of their own


@dataclass(frozen=True)
class Text:
    """A complete message for the user: command output, acknowledgement or error."""

    text: str
    kind: Literal["info", "error"] = "info"


@dataclass(frozen=True)
class Notice:
    """A short note that belongs with the answer (e.g. older turns left out of the prompt)."""

    text: str


@dataclass(frozen=True)
class Document:
    """A file for the user, e.g. the session export."""

    filename: str
    data: bytes = field(repr=False)
    mime_type: str
    caption: str | None = None


@dataclass(frozen=True)
class Picture:
    """A picture for the user, e.g. with located objects drawn on it."""

    filename: str
    data: bytes = field(repr=False)
    mime_type: str = "image/png"
    caption: str | None = None


Reply = QueuePosition | Generating | AnswerDelta | Answer | Text | Notice | Document | Picture
