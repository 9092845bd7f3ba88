"""What an adapter hands the core for each platform event: who sent it, where, and what it carries.

A `Delivery` is built from the event alone, without network calls, so the core can put it in its
thread's lane at once, in arrival order. Files are described, not downloaded: the core fetches them
through the adapter's `FileFetcher` when the message's turn comes, after the access check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from bot.language import Language
from bot.messages import Attachment

__all__ = ["Addressing", "Delivery", "FetchFailed", "FileFetcher", "IncomingFile", "LanguageLookup", "Sender"]


@dataclass(frozen=True)
class Sender:
    """Who wrote the message, as the access policy sees them."""

    user_id: str
    chat_id: str | None = None  # Telegram chat, Slack channel
    team_id: str | None = None  # Slack workspace (the user's own, in shared channels)
    name: str | None = None
    # The language the platform says the user reads (bot.language.from_tag); None when it does not say.
    # The inbox decides what the bot speaks (bot.language.choose): VLMBOT_LANGUAGE may force one.
    language: Language | None = None


class Addressing(StrEnum):
    DIRECT = "direct"  # to the bot: a private chat, a mention, a command, a reply to the bot
    FOLLOW_UP = "follow_up"  # in a thread the bot may take part in: answered when it does
    OVERHEARD = "overheard"  # not for the bot, unless another part of the same message is (an album's other photos)


@dataclass(frozen=True)
class IncomingFile:
    """A file attached to a message, as the platform describes it before any download."""

    name: str
    mime_type: str | None
    size: int | None  # bytes, as the platform reports it; None when unknown
    ref: str = ""  # the adapter's handle for fetching it (a file id, a URL)

    @property
    def is_picture(self) -> bool:
        return (self.mime_type or "").startswith("image/")

    @property
    def is_video(self) -> bool:
        """A screen recording or clip (MP4, MOV, WebM...); the core checks what it really is once fetched."""
        return (self.mime_type or "").startswith("video/")

    @property
    def is_pdf(self) -> bool:
        return (self.mime_type or "").lower() == "application/pdf" or self.name.lower().endswith(".pdf")

    @property
    def readable(self) -> bool:
        """A file the core fetches: a picture, a video, or a PDF whose pages it reads as pictures."""
        return self.is_picture or self.is_video or self.is_pdf


@dataclass(frozen=True)
class Delivery:
    """One platform event carrying a user message.

    `text` is raw text with the platform's command forms already turned into "/name args"; the core
    parses commands. `delivery_id` is the same for every redelivery of the event (exactly-once); None
    where the platform never redelivers. Parts of one message that the platform delivers separately
    (a Telegram album: one update per photo) share `group`; the core answers them as one message once
    no part has arrived for `group_wait_s`.
    """

    platform: str
    thread_key: str
    sender: Sender
    text: str = ""
    files: tuple[IncomingFile, ...] = ()
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)  # already in hand (web uploads, console)
    delivery_id: str | None = None
    addressing: Addressing = Addressing.DIRECT
    group: str | None = None
    group_wait_s: float = 1.0


class FetchFailed(Exception):
    """A file could not be fetched; `user_message` tells the user why, in one line."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class FileFetcher(Protocol):
    """The adapter's side of getting a message's pictures."""

    def check(self, file: IncomingFile) -> str | None:
        """A problem known from the description alone (over the platform's download limit), or None."""
        ...

    async def fetch(self, file: IncomingFile) -> bytes:
        """The file's bytes; raises FetchFailed."""
        ...


class LanguageLookup(Protocol):
    """The adapter's side of a user's language where the event does not carry it (Slack's user locale)."""

    async def language(self, sender: Sender) -> Language | None:
        """The user's language, None when unknown; never raises (a failed lookup is None)."""
        ...
